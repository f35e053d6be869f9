#!/usr/bin/env python3
"""Summarise Nsight Compute's per-instruction source page (SASS) of one kernel launch.

Input: the CSV of `ncu --import REPORT --page source --print-source sass --csv` (bench/cuda_mma_device.sh, step
ncusrc). The instructions are split by how often they ran: "loop" = executed at least 20% as often as the most
executed instruction (the K-tile loop), "per_tile" = executed, but less often (set-up and write-back of an output
tile, the fixup), "never". For each class: instructions, warp-instructions executed, stall samples by reason.

    python bench/ncu_source_summary.py NAME=ncusrc_stock.csv NAME2=ncusrc_se.csv [--json OUT]
"""

import argparse
import csv
import json
import sys


def _num(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def summarise(path):
    rows = list(csv.reader(open(path, newline="")))
    # first row: the kernel name, second: the header
    head = rows[1]
    data = rows[2:]
    i_samples = head.index("Warp Stall Sampling (All Samples)")
    i_exec = head.index("Instructions Executed")
    stall_cols = [i for i, c in enumerate(head) if c.startswith("stall_") and "Not Issued" not in c]
    executed = [_num(r[i_exec]) for r in data]
    top = max(executed) if executed else 0.0
    out = {"kernel": rows[0][1] if len(rows[0]) > 1 else "", "instructions": len(data),
           "code_kb": round(len(data) * 16 / 1024, 1)}
    loop_idx = [i for i, e in enumerate(executed) if e >= 0.2 * top]
    if loop_idx:
        out["loop_span_kb"] = round((loop_idx[-1] - loop_idx[0] + 1) * 16 / 1024, 1)
    for name, pick in (("loop", lambda e: e >= 0.2 * top), ("per_tile", lambda e: 0 < e < 0.2 * top),
                       ("never", lambda e: e == 0)):
        idx = [i for i, e in enumerate(executed) if pick(e)]
        stalls = {head[j]: int(sum(_num(data[i][j]) for i in idx)) for j in stall_cols}
        out[name] = {"instructions": len(idx), "executed": int(sum(executed[i] for i in idx)),
                     "samples": int(sum(_num(data[i][i_samples]) for i in idx)),
                     "stalls": {k: v for k, v in sorted(stalls.items(), key=lambda kv: -kv[1]) if v}}
    out["samples"] = sum(out[c]["samples"] for c in ("loop", "per_tile", "never"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="NAME=FILE.csv")
    ap.add_argument("--json", default=None, help="append one JSON line per input here")
    args = ap.parse_args()
    res = []
    for spec in args.inputs:
        name, _, path = spec.partition("=")
        s = summarise(path)
        s["name"] = name
        res.append(s)
        print(f"{name}: {s['instructions']} instructions ({s['code_kb']} KB), loop span {s.get('loop_span_kb')} KB, "
              f"{s['samples']} samples")
        for c in ("loop", "per_tile"):
            st = ", ".join(f"{k[6:]} {v}" for k, v in list(s[c]["stalls"].items())[:8])
            print(f"  {c:8s} {s[c]['instructions']:6d} instr, {s[c]['executed']:10d} executed, "
                  f"{s[c]['samples']:6d} samples: {st}")
    if args.json:
        with open(args.json, "a") as f:
            for s in res:
                f.write(json.dumps(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
