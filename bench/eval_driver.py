"""`se-local eval passkey|ppl` without the command-line layer (typer, rich tables, matplotlib figures).

For machines whose Python lacks or has other versions of the CLI's packages (the lent GPU machine of
bench/eval_smollm2_h100.sh): the same options, the same ``run_passkey`` / ``run_ppl`` calls and the
same JSON (``--out DIR``) as the CLI; figures can be drawn elsewhere from the JSON
(``se_local.eval.plot``).

    python bench/eval_driver.py eval passkey -m MODEL --lengths 16k,32k --depths 0.1,0.5,0.9 --trials 1 \
        --method all --gpu-layers -1 --threads 16 --out DIR
    python bench/eval_driver.py eval ppl -m MODEL -f TEXT --lengths 8k,16k,32k --windows 1 --method all ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from se_local.eval import passkey as pk  # noqa: E402
from se_local.eval import ppl  # noqa: E402
from se_local.eval.methods import parse_methods  # noqa: E402


def _lengths(text: str) -> list:
    """"16k,32k" -> [16384, 32768] (se_local.cli.parse_token_count, without importing typer)."""
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}
    out = []
    for t in (t.strip() for t in text.split(",")):
        if t:
            unit = t[-1].lower() if t[-1].lower() in "km" else ""
            out.append(int(float(t[: len(t) - len(unit)]) * scale[unit]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval", choices=["eval"])
    ap.add_argument("what", choices=["passkey", "ppl"])
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("-f", "--file", default=None)
    ap.add_argument("--lengths", required=True)
    ap.add_argument("--depths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--windows", type=int, default=None)
    ap.add_argument("--method", default="se,vanilla")
    ap.add_argument("--group", type=int, default=None)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--no-flash-attn", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("se-local-eval"))
    a = ap.parse_args(argv)
    methods = parse_methods(a.method)

    def progress(done: int, total: int, what: str) -> None:
        print(f"  [{done}/{total}] {what}", flush=True)

    if a.what == "passkey":
        cfg = pk.PasskeyConfig(model=a.model, lengths=_lengths(a.lengths),
                               depths=[float(d) for d in a.depths.split(",")], trials=a.trials, methods=methods,
                               group=a.group, window=a.window, threads=a.threads, gpu_layers=a.gpu_layers,
                               flash_attn=not a.no_flash_attn, seed=a.seed, max_new_tokens=a.max_new_tokens)
        data = pk.run_passkey(cfg, a.out, progress=progress)
        for r in data["runs"]:
            print(json.dumps({k: r[k] for k in ("method", "length", "depth", "trial", "key", "answer", "correct",
                                                "prefill_s")}))
    else:
        cfg = ppl.PplConfig(model=a.model, file=a.file, lengths=_lengths(a.lengths), methods=methods,
                            windows=a.windows, group=a.group, window=a.window, threads=a.threads,
                            gpu_layers=a.gpu_layers, flash_attn=not a.no_flash_attn)
        data = ppl.run_ppl(cfg, a.out, progress=progress)
        for r in data["results"]:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
