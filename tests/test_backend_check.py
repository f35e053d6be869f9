"""native/se-backend-check, the device op check and timing, built and run on the CPU.

On a GPU machine se-backend-check compares the CUDA op with the CPU op and times it against the stock
op (docs/CUDA.md); CMake builds it only with a CUDA backend. Here it is compiled against the installed
CPU libraries and run with SE_CHECK_CPU_AS_GPU=1 (a second CPU backend stands in for the GPU), so that
a harness that no longer compiles or runs is found here rather than after a device build: the quick
one-query check, and the timing with --cold (K/V copies of their own per op). The CPU op checked against
itself agrees exactly; what this tests is the harness. Needs a C++ compiler and the patched llama.cpp
tree that the README's install lays out in build/; skipped without them.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _patched_include():
    for cand in sorted(ROOT.glob("build/*/upstream/llama.cpp/ggml/include")):
        if "ggml_flash_attn_ext_set_self_extend" in (cand / "ggml.h").read_text():
            return cand
    return None


@pytest.fixture(scope="module")
def backend_check(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    include = _patched_include()
    if include is None:
        pytest.skip("no patched llama.cpp tree under build/ (run the README's install first)")
    from se_local import _lib as native

    lib = Path(native.LIB_DIR)
    exe = tmp_path_factory.mktemp("backend_check") / "se-backend-check"
    cmd = [cxx, "-O2", "-std=c++17", f"-I{include}", str(ROOT / "native" / "se-backend-check.cpp"), f"-L{lib}",
           "-lggml", "-lggml-base", "-lggml-cpu", f"-Wl,-rpath,{lib}", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return exe


def _run(exe, *args):
    env = dict(os.environ, SE_CHECK_CPU_AS_GPU="1")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=900)


def test_quick_decode_check(backend_check, tmp_path):
    out = tmp_path / "check.jsonl"
    r = _run(backend_check, "check", "--quick", "--only", "decode", "--threads", "2", "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    cases = [x for x in rows if x["mode"] == "check"]
    summary = [x for x in rows if x["mode"] == "check_summary"]
    assert len(summary) == 1 and summary[0]["failed"] == 0 and summary[0]["ok"] == len(cases) >= 30
    assert all(x["n_q"] == 1 and x["pass"] for x in cases)
    assert {x["type_kv"] for x in cases} == {"f16", "q8_0"} and max(x["n_kv"] for x in cases) == 65536
    # Self-Extend changes the output in the cases it is on (G > 1): the check compares something
    assert max(x["se_effect_rel_l2"] for x in cases if x["G"] > 1) > 0.1


@pytest.mark.parametrize("cold", [False, True])
def test_perf_with_and_without_cold(backend_check, tmp_path, cold):
    out = tmp_path / "perf.jsonl"
    args = ["perf", "--only", "decode", "--kv", "4096", "--shape", "smollm2", "--rep", "3", "--threads", "2"]
    r = _run(backend_check, *args, *(["--cold"] if cold else []), "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert ("--cold" in r.stdout) == cold
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["n_kv"] == 4096 and row["n_rep"] == 3 and row["cold"] is cold
    # 4096 keys x 3 KV heads x 64 x 2 bytes x (K and V) = 3 MiB: 256 MiB would take 86 copies, capped at the 3 ops
    assert row["kv_copies"] == (3 if cold else 1)
    assert row["stock_us"] > 0 and row["se_us"] > 0
    assert row["se_vs_stock"] == pytest.approx(row["stock_us"] / row["se_us"], rel=1e-2)
