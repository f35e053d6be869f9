#!/usr/bin/env python3
"""Which route Self-Extend takes on a GPU, and whether it is right there, per head size.

For each head size a tiny random llama GGUF (tests/tinymodel.py: L = 256, 4 query heads, 2 KV heads,
2 layers) decodes 400 tokens in ubatches of 64 with Self-Extend G = 4, W = 32, pos_min = 0, flash
attention on, every layer on the GPU; the logits of every token are compared with the NumPy forward of
tests/reference.py (Algorithm 1, float64). The route is read from llama.cpp's log: the fused op on the
GPU ("Self-Extend flash attention enabled"), the portable path on the GPU where the fused op has no
kernel for that shape ("the portable path (existing ggml ops)"), or the op left to the CPU (a quantized V
cache). The same runs with --gpu-layers 0 are the CPU yardstick.

    python bench/cuda_route_check.py --head-sizes 64,96,128,256 --gpu-layers 99 --json route.jsonl
    python bench/cuda_route_check.py --arch qwen2 ...      (NEOX RoPE pairs, as Qwen2/2.5/3 run)
"""

import argparse
import json
import logging
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cuda_model_bench import _Grab  # noqa: E402  (collects llama.cpp's log lines)
from reference import llama_forward  # noqa: E402
from tinymodel import write_tiny_llama  # noqa: E402

T, UB, G, W = 400, 64, 4, 32
ROUTES = [("the portable path (existing ggml ops)", "portable"),
          ("a quantized V cache has no portable path", "op on the CPU (quantized V)"),
          ("Self-Extend flash attention enabled", "fused op")]


def decode_all(lib, path, toks, gpu_layers, kv_type, grab):
    lc = lib.llama_cpp
    mp = lc.llama_model_default_params()
    mp.n_gpu_layers = gpu_layers
    model = lc.llama_model_load_from_file(path.encode(), mp)
    assert model, path
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    cp = lc.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 512, UB, UB, 1
    cp.flash_attn_type = 1
    cp.type_k = cp.type_v = kv_type
    ctx = lc.llama_init_from_model(model, cp)
    assert ctx
    grab.lines.clear()
    assert lib.set_self_extend(ctx, G, W, 0) == 0
    batch = lc.llama_batch_init(UB, 0, 1)
    out = []
    for s in range(0, T, UB):
        e = min(T, s + UB)
        batch.n_tokens = e - s
        for b, p in enumerate(range(s, e)):
            batch.token[b], batch.pos[b], batch.n_seq_id[b], batch.logits[b] = int(toks[p]), p, 1, 1
            batch.seq_id[b][0] = 0
        assert lc.llama_decode(ctx, batch) == 0
        a = np.ctypeslib.as_array(lc.llama_get_logits(ctx), shape=((e - s) * n_vocab,))
        out.append(a.reshape(e - s, n_vocab).astype(np.float64))
    route = next((name for key, name in ROUTES if any(key in ln for ln in grab.lines)), "?")
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return np.concatenate(out), route


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--head-sizes", default="64,96,128,256")
    ap.add_argument("--gpu-layers", type=int, default=99)
    ap.add_argument("--kv", default="f16,q8_0", help="KV cache types to run (f16, q8_0)")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2"],
                    help="the tiny model's architecture (qwen2: the same layers with NEOX RoPE pairs)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from se_local import _lib as lib
    grab = _Grab()
    logging.getLogger("se_local.llama").addHandler(grab)
    logging.getLogger("se_local.llama").setLevel(logging.INFO)
    lib.backend_init()
    out = open(args.json, "a") if args.json else None
    tmp = tempfile.mkdtemp()
    print(f"{args.arch}: {'D':>4} {'KV':>5} {'route':>30} {'max rel err':>12} {'SE effect':>10}  pass", flush=True)
    worst_ok = True
    for D in (int(x) for x in args.head_sizes.split(",")):
        path = os.path.join(tmp, f"tiny_d{D}.gguf")
        weights, hp = write_tiny_llama(path, n_embd=4 * D, n_head=4, n_head_kv=2, dtype="f32", seed=D, arch=args.arch)
        toks = np.random.default_rng(7).integers(3, hp["n_vocab"], T)
        ref = llama_forward(weights, hp, toks, group=G, window=W, pos_min=0)
        van = llama_forward(weights, hp, toks)
        scale = np.abs(ref).max()
        effect = np.abs(ref - van).max() / scale
        for kv in args.kv.split(","):
            got, route = decode_all(lib, path, toks, args.gpu_layers, {"f16": 1, "q8_0": 8}[kv], grab)
            err = float(np.abs(got - ref).max() / scale)
            tol = 1e-2 if kv == "f16" else 0.1   # q8_0: stock attention alone measured 0.057 (D=64)
            ok = bool(err <= tol and np.isfinite(got).all())
            worst_ok &= ok
            print(f"{args.arch}: {D:>4} {kv:>5} {route:>30} {err:>12.2e} {effect:>10.2f}  {'ok' if ok else 'FAIL'}", flush=True)
            if out:
                out.write(json.dumps({"arch": args.arch, "head_size": D, "kv": kv, "gpu_layers": args.gpu_layers, "route": route,
                                      "max_rel_err": err, "tol": tol, "se_effect": float(effect), "ok": ok,
                                      "G": G, "W": W, "tokens": T, "ubatch": UB}) + "\n")
                out.flush()
    sys.exit(0 if worst_ok else 1)


if __name__ == "__main__":
    main()
