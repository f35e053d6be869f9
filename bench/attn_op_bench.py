#!/usr/bin/env python3
"""One attention layer on the CPU: Self-Extend flash attention vs stock flash attention.

The same ggml graph (native/se-op-eval.c) with the stock kernel (`ggml_flash_attn_ext`), the
fused Self-Extend kernel, and optionally the portable path, on random Q/K/V of a model's
attention shape, queries at the end of `--kv` keys (a prefill chunk at that depth, or one
decode query). Each configuration's graph is computed `--repeat` times and the fastest
compute time is kept (graph building and input conversion excluded); configurations are
interleaved round after round so that a noisy machine hits them alike. Prints a table with
ratios; `--json` writes the raw numbers.

    python bench/attn_op_bench.py --kv 4096,16384,32768 --nq 512,1 --threads 2
"""

import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from op_eval import attn_time_us  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kv", default="4096,16384", help="keys before and including the queries")
    ap.add_argument("--nq", default="512,1", help="queries: a prefill chunk, 1 = decode")
    ap.add_argument("--heads", default="9:3:64", help="n_head:n_head_kv:head_dim (default SmolLM2)")
    ap.add_argument("--k-type", default="f16", choices=["f16", "q8_0", "f32"])
    ap.add_argument("--group", type=int, default=6)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--base", type=float, default=1e5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="graph computes per measurement (fastest kept)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    ap.add_argument("--portable", action="store_true", help="also time the portable path")
    ap.add_argument("--cpu-time", action="store_true",
                    help="report the process's CPU time, not wall time (implies --threads 1): robust on a busy machine")
    ap.add_argument("--kv-layout", default="cells", choices=["cells", "heads"],
                    help="K/V as llama's cache stores them (cells: a key's rows of all heads adjacent) or head-major")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    H, Hkv, D = (int(x) for x in args.heads.split(":"))
    if args.cpu_time:
        args.threads = 1
    rng = np.random.default_rng(0)
    if args.portable and args.kv_layout != "cells":
        ap.error("--portable takes llama's layout only (--kv-layout cells)")
    paths = [("stock", 1), ("fused", args.group)] + ([("portable", args.group)] if args.portable else [])
    rows = []
    for n_kv in (int(x) for x in args.kv.split(",")):
        k = rng.standard_normal((Hkv, n_kv, D)).astype(np.float32)
        v = rng.standard_normal((Hkv, n_kv, D)).astype(np.float32)
        for n_q in (int(x) for x in args.nq.split(",")):
            q = rng.standard_normal((H, n_q, D)).astype(np.float32)
            pk = np.arange(n_kv)
            pq = np.arange(n_kv - n_q, n_kv)
            times = {p: [] for p, _ in paths}
            for _ in range(args.rounds):
                for path, g in paths:
                    _, us = attn_time_us(q, k, v, pq, pk, path=path, group=g, window=args.window, pos_min=0,
                                         k_type=args.k_type, base=args.base, n_threads=args.threads,
                                         repeat=args.repeat, cpu_time=args.cpu_time, kv_layout=args.kv_layout)
                    times[path].append(us)
            med = {p: float(np.median(t)) for p, t in times.items()}
            row = {"n_kv": n_kv, "n_q": n_q, "us": med, "se_vs_stock": med["stock"] / med["fused"]}
            rows.append(row)
            extra = f"  portable {med['portable'] / 1e3:8.2f} ms" if args.portable else ""
            print(f"kv {n_kv:6d}  q {n_q:4d}  stock {med['stock'] / 1e3:8.2f} ms  self-extend {med['fused'] / 1e3:8.2f} ms"
                  f"  speed SE/stock {row['se_vs_stock']:.2f}x{extra}", flush=True)
    if args.json:
        meta = {"heads": args.heads, "kv_layout": args.kv_layout, "k_type": args.k_type, "group": args.group, "window": args.window,
                "threads": args.threads, "cpu_time": args.cpu_time, "repeat": args.repeat, "rounds": args.rounds,
                "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
