"""Fuzzing model loading: 1,000 mutated GGUF files, each opened in a child process.

See ``tests/gguf_fuzz.py`` for the mutations and the rules: no child may die by a
signal or hang, and every failure must be a ``SeLocalError`` that names the file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gguf_fuzz as fz
from test_errors import ABORTS

HERE = Path(__file__).resolve().parent
CASES = 1000
SEED = 1


def _env():
    import se_local

    env = dict(os.environ)
    root = str(Path(se_local.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzz runner forks")
def test_fuzz_1000_mutated_files(pkg_native, tmp_path):
    out = tmp_path / "results.json"
    r = subprocess.run(
        [sys.executable, str(HERE / "gguf_fuzz.py"), "--cases", str(CASES), "--seed", str(SEED),
         "--jobs", "2", "--timeout", "120", "--json", str(out)],
        capture_output=True, text=True, env=_env(), timeout=1800,
    )
    results = json.loads(out.read_text()) if out.exists() else []
    summary = r.stdout[r.stdout.rfind("{"):] if "{" in r.stdout else r.stdout
    print(summary)  # the counts, for the log (pytest -s)
    assert len(results) == CASES, r.stdout[-3000:] + r.stderr[-3000:]
    outcomes = {}
    for res in results:
        outcomes[res["outcome"]] = outcomes.get(res["outcome"], 0) + 1
    bad = [res for res in results if not fz.is_clean(fz.Result(**res))]
    assert not bad, "\n".join(f"{b['index']} {b['outcome']} {b['what']}: {b['detail'][:300]}" for b in bad[:20])
    assert r.returncode == 0, r.stdout[-3000:]
    # a fuzz that only ever fails, or never, tests little
    assert outcomes.get("error", 0) > CASES // 2 and outcomes.get("ok", 0) > CASES // 20, outcomes


def test_fuzz_cases_are_deterministic():
    seeds = []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = fz.seed_tiny(Path(tmp))
    doc = fz.parse(data)
    data, spans, start = fz.serialize(doc)
    seeds.append(("tiny", doc, data, spans, start))
    assert fz.make_case(7, SEED, seeds) == fz.make_case(7, SEED, seeds)
    assert fz.make_case(7, SEED, seeds) != fz.make_case(8, SEED, seeds)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzz runner forks")
def test_what_the_validator_prevents(pkg_native, tmp_path):
    """Each file of ``ABORTS`` kills a process that hands it to llama.cpp alone (load, tokenize,
    decode); through se-local it is a ModelFileError."""
    seed = (fz.parse(fz.seed_tiny(tmp_path)), fz.seed_tiny(tmp_path))
    files = [(i, name, make(*seed)) for i, (name, (make, _)) in enumerate(ABORTS.items())]
    raw = fz.run_files(files, raw=True, timeout=120)
    checked = fz.run_files(files, raw=False, timeout=120)
    crashed = {r.what: r.detail for r in raw if r.outcome == "crash"}
    survived = sorted(set(ABORTS) - set(crashed))
    assert not survived, f"llama.cpp alone no longer aborts on: {survived}"
    for r in checked:
        assert r.outcome == "error" and r.error_type == "ModelFileError", (r.what, r.outcome, r.detail)
        assert f"case-{r.index}.gguf" in r.detail
