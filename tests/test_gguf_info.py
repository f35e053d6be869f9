"""GGUF metadata: the real SmolLM2 file, small files written here, and every error path."""

import numpy as np
import pytest

from se_local.errors import ModelFileError
from se_local.gguf_info import read_info


def write_gguf(
    path, *, context_length=4096, skip=(), head_count_kv=None, extra=None, tensor=True, vocab=None
):
    """A small llama-architecture GGUF header (+ one tensor) with the given keys."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    keys = {
        "llama.context_length": context_length,
        "llama.block_count": 2,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 4,
    }
    if head_count_kv is not None:
        keys["llama.attention.head_count_kv"] = head_count_kv
    for k, v in keys.items():
        if k not in skip:
            w.add_uint32(k, v)
    for k, v in (extra or {}).items():
        if isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        else:
            w.add_uint32(k, v)
    if vocab is not None:
        w.add_token_list([f"t{i}" for i in range(vocab)])
    if tensor:
        w.add_tensor("token_embd.weight", np.ones((8, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_smollm2_metadata(smollm2_path):
    info = read_info(smollm2_path)
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert (info.n_layer, info.n_head, info.n_head_kv, info.head_dim, info.n_embd) == (30, 9, 3, 64, 576)
    assert info.rope_freq_base == 100000.0
    assert info.rope_scaling_type is None and info.rope_scaling_factor is None
    assert info.vocab_size == 49152
    assert info.has_chat_template
    assert info.file_type == "MOSTLY_Q4_1"
    assert info.tensor_types == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert sum(info.tensor_types.values()) == 272
    assert 130e6 < info.n_params < 140e6
    assert info.file_size == smollm2_path.stat().st_size
    assert info.metadata["tokenizer.ggml.eos_token_id"] == 2


def test_small_file_defaults(tmp_path):
    path = write_gguf(
        tmp_path / "m.gguf", extra={"llama.rope.freq_base": 500000.0, "general.name": "tiny"}, vocab=100
    )
    info = read_info(path)
    assert (info.name, info.context_length, info.n_layer, info.n_head) == ("tiny", 4096, 2, 4)
    assert info.n_head_kv == 4  # default: n_head
    assert info.head_dim == 16  # default: n_embd // n_head
    assert info.rope_freq_base == 500000.0
    assert info.vocab_size == 100  # from the token list
    assert info.tensor_types == {"F32": 1}
    assert info.n_params == 8 * 64
    assert not info.has_chat_template


def test_rope_scaling_and_kv_heads(tmp_path):
    path = write_gguf(
        tmp_path / "m.gguf",
        head_count_kv=2,
        extra={
            "llama.rope.scaling.type": "linear",
            "llama.rope.scaling.factor": 4.0,
            "tokenizer.chat_template": "{{x}}",
        },
    )
    info = read_info(path)
    assert (info.n_head_kv, info.rope_scaling_type, info.rope_scaling_factor) == (2, "linear", 4.0)
    assert info.has_chat_template


def test_missing_path(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        read_info(tmp_path / "nope.gguf")


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        read_info(tmp_path)


def test_not_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_text("hello, not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        read_info(p)


def test_empty(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"not a GGUF file \(empty\)"):
        read_info(p)


@pytest.mark.parametrize("keep", [4, 10, 100, 600])
def test_truncated_header(tmp_path, keep):
    full = write_gguf(tmp_path / "full.gguf").read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(full[:keep])
    with pytest.raises(ModelFileError, match="truncated"):
        read_info(p)


def test_truncated_tensor_data(tmp_path, smollm2_path):
    p = tmp_path / "cut.gguf"
    with open(smollm2_path, "rb") as f:
        p.write_bytes(f.read(5_000_000))
    with pytest.raises(
        ModelFileError,
        match=r"truncated: tensor 'token_embd.weight' ends at byte \d+ but the file has 5000000",
    ):
        read_info(p)


@pytest.mark.parametrize(
    "key",
    ["llama.context_length", "llama.block_count", "llama.embedding_length", "llama.attention.head_count"],
)
def test_missing_required_key(tmp_path, key):
    p = write_gguf(tmp_path / "m.gguf", skip=(key,))
    with pytest.raises(ModelFileError, match=f"lacks the required GGUF key '{key}'"):
        read_info(p)


def test_error_messages_are_one_line(tmp_path):
    for path in (tmp_path / "nope.gguf", tmp_path):
        with pytest.raises(ModelFileError) as e:
            read_info(path)
        assert "\n" not in str(e.value)
