#!/usr/bin/env python3
"""Model-level speed of Self-Extend vs stock flash attention, all layers on the GPU.

A random-weight llama GGUF with Llama-3-8B attention shapes (n_embd 4096, 32 query heads,
8 KV heads, head size 128, RoPE base 500000) and a few layers (a small FFN so that attention
is a large share of the time) is written with the `gguf` package, then for each length N:
prefill of N random tokens in ubatches of 512 (tok/s), one untimed decode step, then 32 single-token
decode steps at depth N (tok/s over the 32, and the median step time), stock (G=1) and Self-Extend
(G, W, pos_min=0), same build, same model,
flash attention on, f16 KV cache. The KV cache size is read from llama.cpp's log. Single runs of a 4-layer model move
between calls (the Llama-3-heads model's decode at 64k: 0.84x of stock in one call, 1.05x in another): --reps N runs
stock and Self-Extend N times in turn and prints the medians of the rounds' ratios.

    python bench/cuda_model_bench.py --write /tmp/l3shape.gguf --lengths 4096,16384,32768,65536 \
        --gpu-layers 99 --json bench/results/cuda_model_bench.jsonl
"""

import argparse
import ctypes
import json
import logging
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

_lib = None  # se_local._lib, imported once a model is run (writing the GGUF needs no native library)


class _Grab(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def write_model(path, n_layer, n_ff, head_size=128, arch="llama", n_head_kv=8):
    from tests.tinymodel import write_tiny_llama
    t = time.time()
    write_tiny_llama(path, n_ctx_train=8192, n_embd=32 * head_size, n_layer=n_layer, n_head=32, n_head_kv=n_head_kv,
                     n_ff=n_ff, n_vocab=320, rope_base=500000.0, dtype="f16", seed=0, arch=arch)
    print(f"wrote {path} ({os.path.getsize(path)/1e6:.0f} MB) in {time.time() - t:.1f} s", flush=True)


def run(model, n, se, args, grab):
    lc = _lib.llama_cpp
    cp = lc.llama_context_default_params()
    cp.n_ctx = n + 64
    cp.n_batch = cp.n_ubatch = args.ubatch
    cp.n_threads = cp.n_threads_batch = args.threads
    cp.flash_attn_type = 1
    cp.type_k = cp.type_v = {"f16": 1, "q8_0": 8}[args.kv]
    grab.lines.clear()
    ctx = lc.llama_init_from_model(model, cp)
    assert ctx
    G, W = se
    if G > 1:
        assert _lib.set_self_extend(ctx, G, W, 0) == 0
    route = [ln.strip() for ln in grab.lines if "Self-Extend" in ln and ("portable" in ln or "enabled" in ln)]
    kv_lines = [ln.strip() for ln in grab.lines if "llama_kv_cache: size" in ln or "KV buffer size" in ln]
    rng = np.random.default_rng(n)
    toks = rng.integers(3, 320, size=n + 64).astype(np.int32)
    mem = lc.llama_get_memory(ctx)

    def decode(seq):
        arr = (lc.llama_token * len(seq))(*[int(x) for x in seq])
        assert lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(seq))) == 0

    # warm-up (kernel loading, CUDA graphs), then start over
    decode(toks[:args.ubatch])
    decode(toks[args.ubatch:args.ubatch + 1])
    lc.llama_synchronize(ctx)
    lc.llama_memory_clear(mem, True)

    prof = _profiler() if args.profile_steps or args.profile_ubatch is not None else None
    t_calls = 0.0  # time inside llama_decode (host work; the GPU work is asynchronous unless something syncs)
    t = time.time()
    for u, i in enumerate(range(0, n, args.ubatch)):
        if prof and u == args.profile_ubatch:
            lc.llama_synchronize(ctx)
            prof.cuProfilerStart()
        tc = time.time()
        decode(toks[i:min(n, i + args.ubatch)])
        t_calls += time.time() - tc
        if prof and u == args.profile_ubatch:
            lc.llama_synchronize(ctx)
            prof.cuProfilerStop()
    lc.llama_synchronize(ctx)
    t_pre = time.time() - t

    # one decode step at depth n first, untimed: it may be the first launch of the kernel that this length selects
    # (CUDA loads kernels lazily, several ms) and the first of a new graph shape
    ts = time.time()
    decode(toks[n:n + 1])
    lc.llama_synchronize(ctx)
    first_step = time.time() - ts

    steps = []
    t = time.time()
    for i in range(1, args.n_gen + 1):
        if prof and args.profile_steps and i == 1:
            prof.cuProfilerStart()
        ts = time.time()
        decode(toks[n + i:n + i + 1])
        lc.llama_synchronize(ctx)
        steps.append(time.time() - ts)
        if prof and args.profile_steps and i == args.profile_steps:
            prof.cuProfilerStop()
    t_gen = time.time() - t
    state = lc.llama_state_get_size(ctx)
    lc.llama_free(ctx)
    return dict(prefill_tok_s=n / t_pre, decode_tok_s=args.n_gen / t_gen, prefill_s=t_pre, decode_s=t_gen,
                prefill_in_decode_calls_s=t_calls,
                decode_step_ms_median=1e3 * float(np.median(steps)), decode_step_ms_min=1e3 * min(steps),
                first_step_ms=1e3 * first_step,
                kv_log=kv_lines, route_log=route, state_bytes=int(state))


def bench_round(model, n, rep, se_gw, args, grab, out):
    """One round at length n: each of args.modes once, in order. Prints and writes a record per run; returns
    {mode: (prefill, decode step median) vs the round's stock run} for the modes after a stock run."""
    lc = _lib.llama_cpp
    rows = {}
    ratios = {}
    for mode in args.modes.split(","):
        se = (1, 0) if mode == "stock" else se_gw
        env = {"se-portable": "1", "se-op": "0"}.get(mode)
        if env is not None:
            os.environ["LLAMA_SE_PORTABLE"] = env
        try:
            r = run(model, n, se, args, grab)
        finally:
            os.environ.pop("LLAMA_SE_PORTABLE", None)
        rows[mode] = r
        kv = next((re.sub(r".*size\s*=\s*", "", ln) for ln in r["kv_log"] if "size" in ln), "?")
        print(f"{n:>6} {mode:>8} {r['prefill_tok_s']:>14.0f} {r['decode_tok_s']:>13.1f} {kv:>24}"
              f"  step median {r['decode_step_ms_median']:.3f} ms, first {r['first_step_ms']:.1f} ms;"
              f" prefill {r['prefill_s']:.3f} s, {r['prefill_in_decode_calls_s']:.3f} s in llama_decode", flush=True)
        shape = (f"{lc.llama_model_n_head(model)}/{lc.llama_model_n_head_kv(model)} heads,"
                 f" D{lc.llama_model_n_embd(model) // lc.llama_model_n_head(model)}")
        rec = {"mode": mode, "n_tokens": n, "G": se[0], "W": se[1], "pos_min": 0, "layers": args.layers,
               "n_ff": args.n_ff, "shape": shape, "kv_type": args.kv,
               "ubatch": args.ubatch, "gpu_layers": args.gpu_layers, "tag": args.tag, "rep": rep, **r}
        if mode != "stock" and "stock" in rows:
            s = rows["stock"]
            rec["prefill_vs_stock"] = r["prefill_tok_s"] / s["prefill_tok_s"]
            rec["decode_vs_stock"] = r["decode_tok_s"] / s["decode_tok_s"]
            rec["decode_median_vs_stock"] = s["decode_step_ms_median"] / r["decode_step_ms_median"]
            rec["state_bytes_vs_stock"] = r["state_bytes"] / s["state_bytes"]
            ratios[mode] = (rec["prefill_vs_stock"], rec["decode_median_vs_stock"])
            print(f"{'':>6} {'ratio':>8} {rec['prefill_vs_stock']:>14.3f} {rec['decode_vs_stock']:>13.3f}"
                  f" {'state ' + format(rec['state_bytes_vs_stock'], '.3f'):>24}"
                  f"  step median {rec['decode_median_vs_stock']:.3f}", flush=True)
        if out:
            out.write(json.dumps(rec) + "\n")
            out.flush()
    return ratios


def _profiler():
    """The CUDA driver, for cuProfilerStart/Stop around the decode steps (ncu --profile-from-start off)."""
    return ctypes.CDLL("libcuda.so.1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=None, help="an existing GGUF (else --write)")
    ap.add_argument("--write", default=None, help="write the random Llama-3-8B-shaped GGUF here")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--n-ff", type=int, default=2048)
    ap.add_argument("--head-size", type=int, default=128,
                    help="with --write: n_embd = 32 x this (128: Llama-3-8B; 96: Phi-3-mini's head size)")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2"],
                    help="with --write: the architecture (qwen2: the same layers with NEOX RoPE pairs)")
    ap.add_argument("--n-head-kv", type=int, default=8,
                    help="with --write: KV heads of the 32 query heads (8: Llama-3-8B; 32: MHA, Llama-2-7B, Phi-3-mini)")
    ap.add_argument("--write-only", action="store_true")
    ap.add_argument("--lengths", default="4096,16384,32768,65536")
    ap.add_argument("--se", default="8:1024", help="G:W of the Self-Extend runs")
    ap.add_argument("--gpu-layers", type=int, default=99)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--ubatch", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=32)
    ap.add_argument("--kv", choices=["f16", "q8_0"], default="f16")
    ap.add_argument("--modes", default="stock,se",
                    help="which runs, in this order (a ratio needs stock first): stock, se (the route llama.cpp picks), "
                         "se-portable / se-op (LLAMA_SE_PORTABLE=1 / =0: the portable path, the op where it is scheduled)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="bracket the first K decode steps with cuProfilerStart/Stop (for ncu --profile-from-start off)")
    ap.add_argument("--profile-ubatch", type=int, default=None,
                    help="bracket prefill ubatch K (0-based) with cuProfilerStart/Stop, synchronized before and after")
    ap.add_argument("--reps", type=int, default=1,
                    help="run the modes this many times per length, in turn (stock, se, stock, se, ...); each ratio is "
                         "against the stock run of its own round, and the medians of the rounds are printed")
    ap.add_argument("--tag", default="", help="a label stored with each JSON record (e.g. the environment)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if not 1 <= args.n_gen <= 63:
        ap.error("--n-gen must be 1..63 (the context holds N + 64 tokens, one decode step is a warm-up)")

    path = args.model or args.write
    if args.write and not (args.model and os.path.exists(args.model)):
        write_model(args.write, args.layers, args.n_ff, args.head_size, args.arch, args.n_head_kv)
    if args.write_only:
        return

    global _lib
    from se_local import _lib as lib
    _lib = lib

    grab = _Grab()
    logging.getLogger("se_local.llama").addHandler(grab)
    logging.getLogger("se_local.llama").setLevel(logging.DEBUG)

    lc = _lib.llama_cpp
    _lib.backend_init()
    mp = lc.llama_model_default_params()
    mp.n_gpu_layers = args.gpu_layers
    model = lc.llama_model_load_from_file(path.encode(), mp)
    assert model
    G, W = (int(x) for x in args.se.split(":"))
    out = open(args.json, "a") if args.json else None
    print(f"{'N':>6} {'mode':>8} {'prefill tok/s':>14} {'decode tok/s':>13} {'KV cache':>24}", flush=True)
    for n in [int(x) for x in args.lengths.split(",")]:
        ratios = {}  # mode: [(prefill, decode step median) vs stock, one per round]
        for rep in range(args.reps):
            for mode, ratio in bench_round(model, n, rep, (G, W), args, grab, out).items():
                ratios.setdefault(mode, []).append(ratio)
        for mode, rs in ratios.items():
            if args.reps > 1:
                pre, dec = (sorted(x) for x in zip(*rs))
                print(f"{n:>6} {mode:>8} median of {len(rs)} rounds: prefill {float(np.median(pre)):.3f}x"
                      f" ({pre[0]:.3f} - {pre[-1]:.3f}), decode step {float(np.median(dec)):.3f}x"
                      f" ({dec[0]:.3f} - {dec[-1]:.3f})", flush=True)
    lc.llama_model_free(model)


if __name__ == "__main__":
    main()
