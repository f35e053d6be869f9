#!/usr/bin/env python3
"""Summarise Nsight Compute's per-instruction source page (SASS) of one kernel launch.

Input: the CSV of `ncu --import REPORT --page source --print-source sass --csv` (bench/cuda_mma_device.sh, step
ncusrc). The instructions are split by how often they ran: "loop" = executed at least 20% as often as the most
executed instruction (the K-tile loop), "per_tile" = executed, but less often (set-up and write-back of an output
tile, the fixup), "never". For each class: instructions, warp-instructions executed, stall samples by reason.

    python bench/ncu_source_summary.py NAME=ncusrc_stock.csv NAME2=ncusrc_se.csv [--json OUT]

With --regions NAME:LO-HI=LABEL[,LO-HI=LABEL...] (offsets from the kernel's first instruction, hex), also the stall
samples, executed instructions and top stall reasons of each such range of input NAME (e.g. the per-block set-up, the
middle K tiles and the last one, as --buckets shows them).

With --buckets BYTES, also the executed code by address, in buckets of BYTES from the kernel's first instruction:
stall samples, distinct instructions executed, their mean execution count, the top stall reasons and the kinds of
instruction that mark a region (tensor-core HMMA, double-precision DMUL/DFMA, barriers, global loads).

With --opcodes N, also the warp-instructions executed and the stall samples by opcode (the N largest of the first
input, then the others' counts beside them; the twenty-fifth session compared llama.cpp's vector kernel with and
without Self-Extend this way).

With --runs, also the executed code as runs of consecutive instructions with the same execution count (straight-line
code: a count of one a warp is set-up or write-back, the largest the loop's), each with its stall samples and top
stall reasons: where a launch's samples go when its blocks run only a few tiles (the twenty-eighth session).

With --metric COLUMN[:N], also the N instructions (default 10) with the largest values of that per-instruction column,
e.g. "L1 Wavefronts Shared Excessive", and the column's total.
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


def read_page(path):
    """The source page: (its first row, with the kernel name; the header; the instruction rows; the stall columns)."""
    rows = list(csv.reader(open(path, newline="")))
    head = rows[1]
    stall_cols = [i for i, c in enumerate(head) if c.startswith("stall_") and "Not Issued" not in c]
    return rows[0], head, rows[2:], stall_cols


def summarise(page):
    first, _, data, stall_cols = page
    head, _, i_samples, i_exec = _columns(page)
    executed = [_num(r[i_exec]) for r in data]
    top = max(executed) if executed else 0.0
    out = {"kernel": first[1] if len(first) > 1 else "", "instructions": len(data),
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


MARKS = ("HMMA", "DMUL", "DFMA", "MUFU", "BAR", "LDGSTS", "LDG", "STG", "LDSM", "HFMA2", "SHFL")


def _offsets(page):
    """(rows with every column, the byte offset of each from the kernel's first instruction)."""
    _, head, rows, _ = page
    i_addr = head.index("Address")
    data = [r for r in rows if len(r) == len(head)]
    a0 = int(data[0][i_addr], 16)
    return data, [int(r[i_addr], 16) - a0 for r in data]


def _columns(page):
    """(the header, and the columns of the SASS text, the stall samples and the instructions executed)."""
    head = page[1]
    return (head, head.index("Source"), head.index("Warp Stall Sampling (All Samples)"),
            head.index("Instructions Executed"))


def _opcode(source):
    """The opcode of a SASS line, predicate and modifiers dropped ("@P1 FFMA.FTZ R0, ..." -> "FFMA")."""
    words = source.split()
    return (words[1] if words and words[0].startswith("@") and len(words) > 1 else (words[0] if words else "")).split(".")[0]


def _top_stalls(page, rows, n):
    """The n largest stall reasons (without the "stall_" prefix) summed over rows, as (reason, samples), zeros dropped."""
    stall_cols = page[3]
    head = page[1]
    stalls = {head[j][6:]: sum(_num(r[j]) for r in rows) for j in stall_cols}
    return sorted(((k, v) for k, v in stalls.items() if v), key=lambda kv: -kv[1])[:n]


def buckets(page, size):
    """Rows (offset, samples, distinct executed, mean executions, top stalls, marks) of the executed code."""
    _, i_src, i_samples, i_exec = _columns(page)
    data, offs = _offsets(page)
    out = {}
    for r, off in zip(data, offs):
        e = _num(r[i_exec])
        b = out.setdefault(off // size, {"samples": 0.0, "n": 0, "exec": 0.0, "rows": [], "marks": {}})
        b["samples"] += _num(r[i_samples])
        b["rows"].append(r)
        if e > 0:
            b["n"] += 1
            b["exec"] += e
            op = _opcode(r[i_src])
            if op in MARKS:
                b["marks"][op] = b["marks"].get(op, 0) + 1
    res = []
    for k in sorted(out):
        b = out[k]
        if b["n"] == 0:
            continue
        res.append((k*size, b["samples"], b["n"], b["exec"]/b["n"], _top_stalls(page, b["rows"], 3), b["marks"]))
    return res


def opcodes(page):
    """{opcode: [warp-instructions executed, stall samples]} of a source page (predicate and modifiers dropped)."""
    _, i_src, i_samples, i_exec = _columns(page)
    data, _ = _offsets(page)
    out = {}
    for r in data:
        op = _opcode(r[i_src])
        if not op:
            continue
        o = out.setdefault(op, [0.0, 0.0])
        o[0] += _num(r[i_exec])
        o[1] += _num(r[i_samples])
    return out


def regions(page, spans):
    """Rows (label, lo, hi, samples, executed, distinct executed, top stalls) of the address ranges spans [(lo, hi, label)]."""
    _, _, i_samples, i_exec = _columns(page)
    data, offs = _offsets(page)
    res = []
    for lo, hi, label in spans:
        sel = [r for r, off in zip(data, offs) if lo <= off < hi]
        res.append((label, lo, hi, sum(_num(r[i_samples]) for r in sel), sum(_num(r[i_exec]) for r in sel),
                    sum(1 for r in sel if _num(r[i_exec]) > 0), _top_stalls(page, sel, 4)))
    return res


def runs(page):
    """Rows (first offset, last offset, execution count, instructions, samples, top stalls) of the executed code, one
    for each run of consecutive instructions with the same execution count (never-executed ones end no run)."""
    _, _, i_samples, i_exec = _columns(page)
    data, offs = _offsets(page)
    res = []
    for r, off in zip(data, offs):
        e = _num(r[i_exec])
        if e == 0:
            continue
        if not res or res[-1]["exec"] != e:
            res.append({"lo": off, "exec": e, "rows": []})
        res[-1]["hi"] = off
        res[-1]["rows"].append(r)
    return [(u["lo"], u["hi"], u["exec"], len(u["rows"]), sum(_num(r[i_samples]) for r in u["rows"]),
             _top_stalls(page, u["rows"], 3)) for u in res]


def metric(page, column, n):
    """(the column's total, rows (value, offset, execution count, SASS) of the n instructions with its largest values)."""
    head, i_src, _, i_exec = _columns(page)
    if column not in head:
        raise SystemExit(f"--metric: no column {column!r} in this source page")
    i_col = head.index(column)
    data, offs = _offsets(page)
    vals = [(_num(r[i_col]), off, _num(r[i_exec]), r[i_src].strip()) for r, off in zip(data, offs)]
    top = sorted((v for v in vals if v[0] > 0), key=lambda v: (-v[0], v[1]))[:n]
    return sum(v[0] for v in vals), top


def parse_metric(spec):
    """(column, n) from --metric COLUMN[:N] (N defaults to 10)."""
    column, _, count = spec.rpartition(":")
    return (column, int(count)) if column and count.isdigit() else (spec, 10)


def parse_regions(specs):
    """{name: [(lo, hi, label)]} from --regions NAME:LO-HI=LABEL,..."""
    out = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        for part in rest.split(","):
            span, _, label = part.partition("=")
            lo, _, hi = span.partition("-")
            out.setdefault(name, []).append((int(lo, 16), int(hi, 16), label or span))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="NAME=FILE.csv")
    ap.add_argument("--json", default=None, help="append one JSON line per input here")
    ap.add_argument("--buckets", type=int, default=0, help="also the executed code by address, buckets of BYTES")
    ap.add_argument("--regions", action="append", default=[], help="NAME:LO-HI=LABEL[,...] (hex offsets)")
    ap.add_argument("--opcodes", type=int, default=0, help="also the N opcodes executed most (first input), by input")
    ap.add_argument("--runs", action="store_true", help="also the runs of instructions with the same execution count")
    ap.add_argument("--metric", default=None, help="COLUMN[:N]: also the N instructions with the column's largest values")
    args = ap.parse_args()
    spans = parse_regions(args.regions)
    res = []
    ops = []  # --opcodes: opcodes(page) of each input
    for spec in args.inputs:
        name, _, path = spec.partition("=")
        page = read_page(path)
        if args.opcodes:
            ops.append(opcodes(page))
        s = summarise(page)
        s["name"] = name
        res.append(s)
        print(f"{name}: {s['instructions']} instructions ({s['code_kb']} KB), loop span {s.get('loop_span_kb')} KB, "
              f"{s['samples']} samples")
        for c in ("loop", "per_tile"):
            st = ", ".join(f"{k[6:]} {v}" for k, v in list(s[c]["stalls"].items())[:8])
            print(f"  {c:8s} {s[c]['instructions']:6d} instr, {s[c]['executed']:10d} executed, "
                  f"{s[c]['samples']:6d} samples: {st}")
        for label, lo, hi, smp, ex, n, top in regions(page, spans.get(name, [])):
            st = ", ".join(f"{k} {v:.0f}" for k, v in top)
            print(f"  {label:12s} {lo:6x}-{hi:6x} {smp:6.0f} samples ({100*smp/max(s['samples'], 1):4.1f}%), "
                  f"{ex:10.0f} executed, {n:5d} instr: {st}")
        if args.buckets:
            print(f"  {'offset':>8s} {'samples':>8s} {'share':>6s} {'instr':>6s} {'mean exec':>9s}  top stalls; marks")
            for off, smp, n, mean, top, marks in buckets(page, args.buckets):
                st = ", ".join(f"{k} {v:.0f}" for k, v in top if v)
                mk = " ".join(f"{k}:{v}" for k, v in marks.items())
                print(f"  {off:8x} {smp:8.0f} {100*smp/max(s['samples'], 1):5.1f}% {n:6d} {mean:9.0f}  {st}; {mk}")
        if args.runs:
            print(f"  {'offsets':>15s} {'count':>8s} {'instr':>6s} {'samples':>8s}  top stalls")
            for lo, hi, e, n, smp, top in runs(page):
                st = ", ".join(f"{k} {v:.0f}" for k, v in top)
                print(f"  {lo:6x}-{hi:6x} {e:8.0f} {n:6d} {smp:8.0f}  {st}")
        if args.metric:
            column, count = parse_metric(args.metric)
            total, top = metric(page, column, count)
            print(f"  {column}: {total:.0f} in all")
            for v, off, e, src in top:
                print(f"  {v:10.0f} at {off:6x}, executed {e:8.0f}: {src}")
    if args.opcodes:
        names = [s["name"] for s in res]
        print("opcode    " + "".join(f"{n:>22s}" for n in names) + "   (warp-instructions executed, stall samples)")
        total = [sum(v[0] for v in o.values()) for o in ops]
        first = sorted(ops[0].items(), key=lambda kv: -kv[1][0])[:args.opcodes]
        extra = sorted({k for o in ops[1:] for k in o} - {k for k, _ in first},
                       key=lambda k: -max(o.get(k, [0, 0])[0] for o in ops[1:]))[:args.opcodes // 2]
        for op in [k for k, _ in first] + extra:
            print(f"{op:10s}" + "".join(f"{o.get(op, [0, 0])[0]:>14.0f} {o.get(op, [0, 0])[1]:>6.0f} " for o in ops))
        print(f"{'all':10s}" + "".join(f"{t:>14.0f}        " for t in total))
    if args.json:
        with open(args.json, "a") as f:
            for s in res:
                f.write(json.dumps(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
