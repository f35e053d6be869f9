#!/usr/bin/env bash
# The SmolLM2-135M (L = 8192) evaluation recorded in docs/EVAL.md: this 2-core CPU, 2 threads,
# niced, one step after another, most wanted first. Every step resumes from the JSON in $OUT
# (runs already there are skipped), so the script can be stopped and started again.
set -euo pipefail
OUT=${OUT:-bench/results/eval_smollm2_cpu}
SE="nice -n 10 se-local"
ALL=se,vanilla,grp-attn,yarn,linear

# passkey at 8k (within L: every method runs plain attention, computed once)
$SE eval passkey --lengths 8k --depths 0.1,0.5,0.9 --trials 1 --method $ALL --threads 2 --out "$OUT"
# perplexity, the first window of each length (within L: every method is plain attention, computed once)
$SE eval ppl --lengths 4k,8k,16k --windows 1 --method $ALL --threads 2 --out "$OUT"
# passkey at 16k: Self-Extend and vanilla, then the other baselines
$SE eval passkey --lengths 16k --depths 0.1,0.5,0.9 --trials 1 --method se,vanilla --threads 2 --out "$OUT"
$SE eval passkey --lengths 16k --depths 0.1,0.5,0.9 --trials 1 --method $ALL --threads 2 --out "$OUT"
# speed at 4k and 16k: Self-Extend vs stock flash attention vs flash attention off
[ -f bench/results/bench_smollm2_cpu.json ] ||
    $SE bench --ctx 4k,16k --repeat 3 --threads 2 --out bench/results/bench_smollm2_cpu.json
# 32k, Self-Extend and vanilla
$SE eval ppl --lengths 32k --windows 1 --method se,vanilla --threads 2 --out "$OUT"
$SE eval passkey --lengths 32k --depths 0.5 --trials 1 --method se,vanilla --threads 2 --out "$OUT"
