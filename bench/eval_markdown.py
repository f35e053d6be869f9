#!/usr/bin/env python3
"""Markdown tables of `se-local eval` / `se-local bench` results (for docs/EVAL.md).

    python bench/eval_markdown.py bench/results/eval_smollm2_cpu            # passkey.json, ppl.json
    python bench/eval_markdown.py --bench bench/results/bench_smollm2_cpu.json
"""

import argparse
import json
from pathlib import Path

METHODS = ("se", "vanilla", "grp-attn", "yarn", "linear")


def fmt_len(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def passkey(data):
    runs = data["runs"]
    lengths = sorted({r["length"] for r in runs})
    depths = sorted({r["depth"] for r in runs})
    print("| method | " + " | ".join(f"{fmt_len(n)} @ {d:g}" for n in lengths for d in depths
                                       if any(r["length"] == n and r["depth"] == d for r in runs)) + " |")
    cols = [(n, d) for n in lengths for d in depths if any(r["length"] == n and r["depth"] == d for r in runs)]
    print("|---" * (len(cols) + 1) + "|")
    for m in METHODS:
        cells = []
        for n, d in cols:
            rs = [r for r in runs if r["method"] == m and r["length"] == n and r["depth"] == d]
            if not rs:
                cells.append("not run")
                continue
            ok = sum(r["correct"] for r in rs)
            ans = rs[0]["answer"].strip().replace("|", "\\|").replace("\n", " ")
            cells.append(f"{'**yes**' if ok == len(rs) else 'no' if ok == 0 else f'{ok}/{len(rs)}'} `{ans}`")
        if any(c != "not run" for c in cells):
            print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    print("| length | depth | key | tokens | key at token | method(s) computed | G | W | scale | prefill s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r.get("same_as"):
            continue
        s = r["spec"]
        print(f"| {r['length']} | {r['depth']:g} | {r['key']} | {r['n_tokens']} | {r['key_token']} | {r['method']} | "
              f"{s['G']} | {s['W']} | {s['rope_scale']:g} | {r['prefill_s']:.0f} |")


def ppl(data):
    rows = data["results"]
    lengths = sorted({r["length"] for r in rows})
    print("| method | " + " | ".join(fmt_len(n) for n in lengths) + " |")
    print("|---" * (len(lengths) + 1) + "|")
    cell = {(r["method"], r["length"]): r for r in rows}
    for m in METHODS:
        vals = []
        for n in lengths:
            r = cell.get((m, n))
            vals.append("not run" if r is None else f"{r['ppl']:.2f} ± {r['ppl_err']:.2f}")
        if any(v != "not run" for v in vals):
            print(f"| {m} | " + " | ".join(vals) + " |")
    print()
    print("| length | method | G | W | scale | windows | scored tokens | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("same_as"):
            continue
        s = r["spec"]
        print(f"| {r['length']} | {r['method']} | {s['G']} | {s['W']} | {s['rope_scale']:g} | {r['windows']} | "
              f"{r['scored_tokens']} | {r['seconds']:.0f} |")


def bench(data):
    c = data["config"]
    print(f"G={c['G']} W={c['W']} pos_min={c['pos_min']}, {c['threads']} threads, median of {c['repeat']} "
          f"(min–max), prefill {c['chunk']} tokens, decode {c['gen']} tokens")
    print()
    print("| depth | lib | variant | prefill tok/s | × fa | decode tok/s | × fa | KV MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in data["summary"]:
        print(f"| {r['depth']} | {r['lib']} | {r['variant']} | {r['prefill_tps']:.1f} ({r['prefill_tps_min']:.1f}–"
              f"{r['prefill_tps_max']:.1f}) | {r['prefill_ratio']:.2f} | {r['decode_tps']:.1f} "
              f"({r['decode_tps_min']:.1f}–{r['decode_tps_max']:.1f}) | {r['decode_ratio']:.2f} | "
              f"{r['kv_bytes'] / 2**20:.1f} |")
    s = data.get("streaming")
    if s:
        print()
        print(f"Streaming: Model.stream_generate {s['model_generate_tps_median']:.1f} tok/s, raw decode loop "
              f"{s['raw_loop_tps_median']:.1f} tok/s (ratio {s['ratio']:.2f}; {s['prompt_tokens']}-token prompt).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", help="an `se-local eval --out` folder")
    ap.add_argument("--bench", help="an `se-local bench --out` file")
    a = ap.parse_args()
    if a.folder:
        for name, fn in (("passkey.json", passkey), ("ppl.json", ppl)):
            p = Path(a.folder) / name
            if p.is_file():
                print(f"### {name}\n")
                fn(json.loads(p.read_text()))
                print()
    if a.bench:
        bench(json.loads(Path(a.bench).read_text()))


if __name__ == "__main__":
    main()
