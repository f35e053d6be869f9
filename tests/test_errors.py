"""Errors and limits: bad model files, impossible parameters, memory, the command line's error line.

Every file here would, without se-local's checks, either fail inside llama.cpp (the
message must still name the file) or abort the whole process (``GGML_ASSERT``); the
second kind is listed in ``ABORTS`` and also checked against llama.cpp alone in
``test_fuzz.py``.
"""

import os
import struct
import sys

import pytest

import gguf_fuzz as fz
from se_local import (
    ConfigError,
    ContextLengthError,
    MemoryLimitError,
    ModelFileError,
    PlanError,
    SeLocalError,
    read_info,
)
from se_local.validate import check_model_file

THREADS = 2


# ---------------------------------------------------------------------------
# Bad files, made from the tiny random llama
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """(document, bytes) of a valid tiny llama GGUF."""
    data = fz.seed_tiny(tmp_path_factory.mktemp("seed"))
    return fz.parse(data), data


def _edit(doc, fn):
    doc = fz.clone(doc)
    fn(doc)
    return fz.serialize(doc)[0]


def _set(key, value, vtype=fz.U32):
    def fn(doc):
        kv = doc.get(key)
        if kv is None:
            doc.kvs.append(fz.KV(key, vtype, value))
        else:
            kv.vtype, kv.value, kv.itype = vtype, value, None
    return fn


def _tensor(name, **changes):
    def fn(doc):
        t = next(t for t in doc.tensors if t.name == name)
        for k, v in changes.items():
            setattr(t, k, v)
    return fn


def _dup_token(doc):
    tok = doc.get("tokenizer.ggml.tokens")
    fz.own(tok)[300] = tok.value[301]


def _rename_byte_token(doc):
    tok = doc.get("tokenizer.ggml.tokens")
    fz.own(tok)[tok.value.index("<0x48>")] = "H-not-a-byte"


def _odd_heads(doc):  # 3 query heads over 2 key/value heads, every shape consistent
    import numpy as np

    rng = np.random.default_rng(0)
    for t in doc.tensors:
        if t.name.endswith(("attn_q.weight", "attn_output.weight")):  # (n_in, n_out)
            t.dims = [64, 48] if t.name.endswith("attn_q.weight") else [48, 64]
            t.data = rng.standard_normal(48 * 64).astype("float32").tobytes()
    _set("llama.attention.head_count", 3)(doc)
    _set("llama.attention.key_length", 16)(doc)
    _set("llama.attention.value_length", 16)(doc)


def _rename_arch(doc, arch="nosucharch"):
    for kv in doc.kvs:
        kv.key = kv.key.replace("llama.", arch + ".")
    doc.get("general.architecture").value = arch


def _partial_rope_mistral3(doc):  # llama's tensors under another architecture, RoPE on half the head
    _rename_arch(doc, "mistral3")
    _set("mistral3.rope.dimension_count", 8)(doc)


def _bytes_field(offset, fmt, value):
    def fn(data):
        b = bytearray(data)
        struct.pack_into(fmt, b, offset, value)
        return bytes(b)
    return fn


# name -> (function of (doc, data) giving the file's bytes, words the message must contain)
ABORTS = {
    "duplicate token": (lambda d, b: _edit(d, _dup_token), "twice"),
    "vocabulary-free tokenizer": (lambda d, b: _edit(d, _set("tokenizer.ggml.model", "none", fz.STRING)),
                                  "no vocabulary"),
    "missing byte token": (lambda d, b: _edit(d, _rename_byte_token), "byte 0x48"),
    "1000 layers": (lambda d, b: _edit(d, _set("llama.block_count", 1000)), "block_count"),
    "negative epsilon": (lambda d, b: _edit(d, _set("llama.attention.layer_norm_rms_epsilon", -1.0, fz.F32)),
                         "epsilon"),
    "misaligned data": (lambda d, b: _edit(d, _set("general.alignment", 8)), "aligned"),
    "integer weights": (lambda d, b: _edit(d, _tensor("blk.0.attn_q.weight", ttype=26)), "I32"),
    "quantized norm": (lambda d, b: _edit(d, _tensor("output_norm.weight", ttype=8, data=bytes(68))), "F32"),
    "heads not a multiple": (lambda d, b: _edit(d, _odd_heads), "multiple of the key/value heads"),
    "experts none used": (lambda d, b: _edit(d, _set("llama.expert_count", 4)), "expert"),
    "expert groups without experts": (lambda d, b: _edit(d, _set("llama.expert_group_count", 2)), "expert"),
    "nextn beyond layers": (lambda d, b: _edit(d, _set("llama.nextn_predict_layers", 5)), "nextn"),
    "unknown rope scaling": (lambda d, b: _edit(d, _set("llama.rope.scaling.type", "dynamic", fz.STRING)),
                             "rope.scaling.type"),
    "partial rope where the graph needs it whole": (lambda d, b: _edit(d, _partial_rope_mistral3),
                                                    "RoPE over the whole head"),
}

MALFORMED = {
    "empty": (lambda d, b: b"", "not a GGUF file (empty)"),
    "random bytes": (lambda d, b: bytes(range(256)) * 64, "not a GGUF file"),
    "wrong magic": (lambda d, b: b"GGML" + b[4:], "not a GGUF file"),
    "version 1": (lambda d, b: _bytes_field(4, "<I", 1)(b), "version 1"),
    "version 99": (lambda d, b: _bytes_field(4, "<I", 99)(b), "version 99"),
    "big-endian": (lambda d, b: _bytes_field(4, ">I", 3)(b), "big-endian"),
    "truncated header": (lambda d, b: b[:300], "truncated"),
    "truncated data": (lambda d, b: b[:-4096], "truncated"),
    "absurd tensor count": (lambda d, b: _bytes_field(8, "<Q", 2**40)(b), "claims 1099511627776 tensors"),
    "one tensor too many": (lambda d, b: _bytes_field(8, "<Q", 22)(b), "offset"),
    "negative key count": (lambda d, b: _bytes_field(16, "<Q", 2**63 + 5)(b), "negative"),
    "five dimensions": (lambda d, b: _edit(d, _tensor("output_norm.weight", dims=[64, 1, 1, 1, 1])), "dimensions"),
    "absurd shape": (lambda d, b: _edit(d, _tensor("output.weight", dims=[64, 2**62])), "elements"),
    "unknown tensor type": (lambda d, b: _edit(d, _tensor("output.weight", ttype=99)), "unknown type 99"),
    "tensor offset": (lambda d, b: _edit(d, _tensor("output.weight", offset=12345)), "offset"),
    "vocabulary only": (lambda d, b: _edit(d, lambda doc: doc.tensors.clear()), "no tensors"),
    "no tokenizer": (lambda d, b: _edit(d, lambda doc: doc.kvs.remove(doc.get("tokenizer.ggml.model"))),
                     "no tokenizer"),
    "empty vocabulary": (lambda d, b: _edit(d, lambda doc: setattr(doc.get("tokenizer.ggml.tokens"), "value", [])),
                         "empty"),
    "zero context": (lambda d, b: _edit(d, _set("llama.context_length", 0)), "context_length"),
    "context as a string": (lambda d, b: _edit(d, _set("llama.context_length", "256", fz.STRING)),
                            "context_length"),
}

# llama.cpp itself refuses these cleanly; se-local must pass its message on, with the path
LLAMA_REFUSES = {
    "unknown architecture": (lambda d, b: _edit(d, _rename_arch), "unknown model architecture"),
    "missing tensor": (lambda d, b: _edit(d, lambda doc: doc.tensors.pop(3)), "not found"),
    "wrong shape": (lambda d, b: _edit(d, _tensor("blk.0.attn_k.weight", dims=[64, 64],
                                                  data=bytes(64 * 64 * 4))), "wrong shape"),
}

ALL = {**ABORTS, **MALFORMED, **LLAMA_REFUSES}


def _write(tmp_path, seed, name):
    make, _ = ALL[name]
    p = tmp_path / (name.replace(" ", "-") + ".gguf")
    p.write_bytes(make(*seed))
    return p


@pytest.mark.parametrize("name", list(ABORTS) + list(MALFORMED))
def test_validator_names_the_file_and_the_fault(tmp_path, seed, name):
    p = _write(tmp_path, seed, name)
    with pytest.raises(ModelFileError) as e:
        check_model_file(p)
    assert str(p) in str(e.value)
    assert ALL[name][1] in str(e.value)


def test_llama_rules_match_the_source():
    """se_local/_llama_rules.py is what tests/llama_rules.py reads from the pinned llama.cpp."""
    from pathlib import Path

    import llama_rules
    from se_local import _llama_rules

    root = Path(__file__).resolve().parent.parent
    sources = sorted(root.glob("build/*/upstream/llama.cpp/src/models"))
    if not sources:
        pytest.skip("no llama.cpp build tree")
    same_kv, same_rot = llama_rules.rules(sources[0].parent.parent)
    assert (same_kv, same_rot) == (_llama_rules.SAME_KV_HEAD, _llama_rules.SAME_ROT_HEAD)


def test_validator_accepts_the_seeds(tmp_path, seed, smollm2_path):
    p = tmp_path / "ok.gguf"
    p.write_bytes(seed[1])
    check_model_file(p)
    check_model_file(smollm2_path)


@pytest.mark.parametrize("name", list(ALL))
def test_model_raises_model_file_error(tmp_path, seed, pkg_native, name):
    from se_local import Model

    p = _write(tmp_path, seed, name)
    with pytest.raises(ModelFileError) as e:
        Model(p, n_threads=THREADS)
    assert str(p) in str(e.value)
    assert ALL[name][1] in str(e.value)


def test_missing_path_and_directory(tmp_path, pkg_native):
    from se_local import Model

    with pytest.raises(ModelFileError, match="model file not found"):
        Model(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="is a directory"):
        Model(tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, seed):
    p = tmp_path / "locked.gguf"
    p.write_bytes(seed[1])
    p.chmod(0)
    try:
        with pytest.raises(ModelFileError, match="cannot read"):
            check_model_file(p)
    finally:
        p.chmod(0o600)


def test_unreadable_file_simulated(tmp_path, seed, monkeypatch):
    """The same path as a file without read permission, for runs as root (who reads anything)."""
    import builtins

    p = tmp_path / "locked.gguf"
    p.write_bytes(seed[1])
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(p):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ModelFileError, match="cannot read .*Permission denied"):
        check_model_file(p)


def test_model_usable_after_a_bad_file(tmp_path, seed, smollm2):
    """A failed load leaves the process (and other models) fine."""
    from se_local import Model

    before = "".join(smollm2.generate("The sky is", max_tokens=6, temperature=0))
    for name in ("truncated data", "unknown architecture", "duplicate token"):
        with pytest.raises(ModelFileError):
            Model(_write(tmp_path, seed, name), n_threads=THREADS)
    assert "".join(smollm2.generate("The sky is", max_tokens=6, temperature=0)) == before


# ---------------------------------------------------------------------------
# Parameters and limits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"n_threads": 0}, ConfigError, "n_threads"),
        ({"n_threads": -2}, ConfigError, "n_threads"),
        ({"n_batch": 0}, ConfigError, "n_batch"),
        ({"kv_type": "q3"}, ConfigError, "kv_type"),
        ({"n_gpu_layers": 1.5}, ConfigError, "n_gpu_layers"),
        ({"target_ctx": 0}, PlanError, "target"),
        ({"target_ctx": 16384, "group": 1}, PlanError, "reach"),
        ({"target_ctx": 16384, "window": 4096}, PlanError, "window"),
        ({"target_ctx": 16384, "window": 0}, PlanError, "window"),
        ({"target_ctx": 16384, "group": 0}, PlanError, "group"),
        ({"target_ctx": 100000, "group": 4, "window": 1024}, PlanError, "reach"),
    ],
)
def test_bad_parameters_raise_before_loading(smollm2_path, pkg_native, kwargs, error, words):
    from se_local import Model

    with pytest.raises(error) as e:
        Model(smollm2_path, **kwargs)
    assert words in str(e.value)


def test_prompt_beyond_the_context_is_refused_before_compute(smollm2):
    prompt = smollm2.tokenize("word " * 1500)
    smollm2.reset()
    with pytest.raises(ContextLengthError) as e:
        smollm2.stream_generate(prompt, max_tokens=10)
    msg = str(e.value)
    assert f"{len(prompt)} tokens" in msg and "1024" in msg and "--target-ctx 2048" in msg
    assert smollm2.n_past == 0  # nothing was evaluated


def test_kv_estimate_matches_llama_cpp(smollm2_path, pkg_native, caplog):
    """The memory check's KV cache size is what llama.cpp allocates (log line 'size = ... MiB')."""
    import logging
    import re

    from se_local import Model
    from se_local.memory import estimate_memory

    with caplog.at_level(logging.INFO, logger="se_local.llama"):
        m = Model(smollm2_path, target_ctx=4096, n_threads=THREADS)
    m.close()
    sizes = [float(x) for x in re.findall(r"llama_kv_cache: size =\s*([\d.]+) MiB", caplog.text)]
    assert sizes, caplog.text[-2000:]
    est = estimate_memory(m.info, 4096)
    assert est.kv_cpu / 2**20 == pytest.approx(sizes[0], rel=0.02)


def test_context_beyond_free_memory(smollm2_path, pkg_native, monkeypatch):
    from se_local import Model, memory

    monkeypatch.setattr(memory, "available_memory", lambda: 200 * 2**20)
    with pytest.raises(MemoryLimitError) as e:
        Model(smollm2_path, target_ctx=32768, n_threads=THREADS)
    msg = str(e.value)
    assert "32768 tokens" in msg and "GiB" in msg and "23040 bytes" in msg and "--target-ctx" in msg
    monkeypatch.setenv(memory.ENV_NO_CHECK, "1")  # the way around a pessimistic estimate
    memory.check_memory(read_info(smollm2_path), 32768)


def test_gpu_layers_beyond_free_vram(smollm2_path, pkg_native, monkeypatch):
    from se_local import Model, memory

    monkeypatch.setattr(memory, "gpu_free_memory", lambda: 10 * 2**20)
    with pytest.raises(MemoryLimitError, match="GPU memory"):
        Model(smollm2_path, target_ctx=8192, n_gpu_layers=-1, n_threads=THREADS)


def test_self_extend_buffers_beyond_memory(smollm2_path, pkg_native, monkeypatch):
    """llama_set_self_extend reserves the compute buffers of the Self-Extend graphs at once; when they do
    not fit it returns -4 (simulated here), which the model reports as a memory error, not a refusal."""
    from se_local import Model, _lib

    monkeypatch.setattr(_lib, "llama_set_self_extend", lambda ctx, g, w, p: -4)
    with pytest.raises(MemoryLimitError, match="compute buffers of Self-Extend") as e:
        Model(smollm2_path, target_ctx=16384, n_threads=THREADS)
    assert "--target-ctx" in str(e.value)


def test_quantized_kv_needs_less(smollm2_path):
    from se_local import read_info
    from se_local.memory import estimate_memory

    info = read_info(smollm2_path)
    f16 = estimate_memory(info, 32768).kv_cpu
    q8 = estimate_memory(info, 32768, kv_type="q8_0").kv_cpu
    assert q8 == pytest.approx(f16 * 34 / 64, rel=1e-3)
    assert estimate_memory(info, 32768, flash_attn=False).compute > estimate_memory(info, 32768).compute


# ---------------------------------------------------------------------------
# The command line: exit status, one line on stderr, nothing on stdout
# ---------------------------------------------------------------------------


def _one_error_line(r):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    "name", ["random bytes", "truncated data", "duplicate token", "unknown architecture", "vocabulary only"]
)
def test_cli_run_bad_model_file(pkg_cli, tmp_path, seed, name):
    p = _write(tmp_path, seed, name)
    r = pkg_cli("run", "-m", p, "hi", "--threads", THREADS)
    assert r.returncode == 1
    line = _one_error_line(r)
    assert str(p) in line and ALL[name][1] in line


@pytest.mark.parametrize("name", ["random bytes", "truncated header", "truncated data", "five dimensions"])
def test_cli_info_bad_model_file(pkg_cli, tmp_path, seed, name):
    """``info`` reads the metadata only, but a file it cannot read is one error line too."""
    p = _write(tmp_path, seed, name)
    r = pkg_cli("info", p)
    assert r.returncode == 1
    assert str(p) in _one_error_line(r)


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["run", "--threads", "0", "hi"], 2, "--threads"),
        (["run", "--target-ctx", "0", "hi"], 2, "--target-ctx"),
        (["run", "--target-ctx", "lots", "hi"], 2, "--target-ctx"),
        (["run", "--bogus", "hi"], 2, "--bogus"),
        (["run", "--group", "0", "--threads", "2", "hi"], 1, "group"),
        (["run", "--window", "0", "--threads", "2", "hi"], 1, "window"),
        (["run", "--target-ctx", "16k", "--group", "1", "--threads", "2", "hi"], 1, "reach"),
        (["run", "--target-ctx", "16k", "--window", "5000", "--threads", "2", "hi"], 1, "window"),
        (["run", "--target-ctx", "16M", "--threads", "2", "hi"], 1, "GiB"),
        (["plan"], 2, "--target-ctx"),
        (["nosuchcommand"], 2, "nosuchcommand"),
    ],
)
def test_cli_parameter_errors(pkg_cli, args, code, words):
    r = pkg_cli(*args)
    assert r.returncode == code, r.stderr
    assert words in _one_error_line(r)


def test_cli_debug_shows_the_traceback(pkg_cli):
    r = pkg_cli("--debug", "run", "--window", "0", "hi")
    assert r.returncode == 1 and "Traceback" in r.stderr and "PlanError" in r.stderr


def test_errors_are_se_local_errors():
    from se_local import GenerationCancelled, ModelBusyError

    for cls in (ModelFileError, PlanError, ConfigError, ContextLengthError, MemoryLimitError, ModelBusyError,
                GenerationCancelled):
        assert issubclass(cls, SeLocalError)
    assert sys.modules["se_local.validate"]
