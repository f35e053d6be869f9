#!/usr/bin/env python3
"""Sum Nsight Compute's per-launch GPU time by kernel.

Input: the CSV of `ncu --metrics gpu__time_duration.sum --csv PROGRAM` (bench/cuda_mma_device.sh, step ncumodel:
two decode steps of the whole model). Prints, per kernel name (template arguments kept, parameter list dropped),
the number of launches, the total and the mean time, largest first, and the total of all launches.

    python bench/ncu_kernel_summary.py ncumodel_se.csv [--json OUT]
"""

import argparse
import csv
import json
import re
from collections import defaultdict


def _short(name):
    # "void f<1, 2>(const char *, ...)" -> "f<1, 2>"
    name = re.sub(r"^void\s+", "", name)
    depth = 0
    for i, c in enumerate(name):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0:
            return name[:i]
    return name


def summarise(path):
    rows = [r for r in csv.reader(ln for ln in open(path, newline="") if ln.startswith('"'))]
    if not rows:
        return [], 0.0
    head = rows[0]
    ik, im, iu, iv = (head.index(k) for k in ("Kernel Name", "Metric Name", "Metric Unit", "Metric Value"))
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
    per = defaultdict(list)
    for r in rows[1:]:
        if r[im] != "gpu__time_duration.sum":
            continue
        per[_short(r[ik])].append(float(r[iv].replace(",", "")) * scale.get(r[iu], 1.0))
    out = sorted(({"kernel": k, "launches": len(v), "total_us": sum(v), "mean_us": sum(v) / len(v)}
                  for k, v in per.items()), key=lambda d: -d["total_us"])
    return out, sum(d["total_us"] for d in out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows, total = summarise(args.csv)
    for d in rows:
        print(f"{d['launches']:>5} {d['total_us']:>10.1f} us {d['mean_us']:>9.2f} us  {d['kernel'][:120]}")
    print(f"{sum(d['launches'] for d in rows):>5} {total:>10.1f} us  all kernels")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"csv": args.csv, "total_us": total, "kernels": rows}) + "\n")


if __name__ == "__main__":
    main()
