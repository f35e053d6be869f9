"""bench/cuda_model_bench.py, the whole-model SE vs stock bench of the CUDA docs, on the CPU with a tiny model.

Its numbers come from a GPU, but its bookkeeping does not: each run's record, the ratios against the stock run of
the same round, and with --reps the medians of the rounds (single runs of the 4-layer GPU models moved between calls:
0.84x and 1.05x for the same decode ratio, twenty-fourth and twenty-fifth sessions).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_rounds_and_their_medians(tmp_path, pkg_native):
    out = tmp_path / "mb.jsonl"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cuda_model_bench.py"), "--write", str(tmp_path / "m.gguf"),
         "--layers", "1", "--head-size", "16", "--n-ff", "64", "--lengths", "128,192", "--reps", "3",
         "--gpu-layers", "0", "--threads", "2", "--ubatch", "64", "--n-gen", "2", "--se", "4:32", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    # stock, se in turn, three rounds per length
    assert [(x["n_tokens"], x["rep"], x["mode"]) for x in recs] == [
        (n, rep, mode) for n in (128, 192) for rep in range(3) for mode in ("stock", "se")]
    for x in recs:
        assert (x["G"], x["W"]) == ((1, 0) if x["mode"] == "stock" else (4, 32))
    for stock, se in zip(recs[0::2], recs[1::2]):
        # each ratio against the stock run of its own round
        assert se["prefill_vs_stock"] == se["prefill_tok_s"] / stock["prefill_tok_s"]
        assert se["decode_median_vs_stock"] == stock["decode_step_ms_median"] / se["decode_step_ms_median"]
        assert se["state_bytes_vs_stock"] == 1.0
        assert "prefill_vs_stock" not in stock
    # one median line per length, the median of its three rounds
    lines = [ln for ln in r.stdout.splitlines() if "median of" in ln]
    assert len(lines) == 2, r.stdout
    for n, line in zip((128, 192), lines):
        m = re.match(rf"\s*{n}\s+se median of 3 rounds: prefill ([\d.]+)x .* decode step ([\d.]+)x", line)
        assert m, line
        se = [x for x in recs if x["n_tokens"] == n and x["mode"] == "se"]
        assert float(m.group(1)) == round(float(np.median([x["prefill_vs_stock"] for x in se])), 3)
        assert float(m.group(2)) == round(float(np.median([x["decode_median_vs_stock"] for x in se])), 3)
