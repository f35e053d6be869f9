"""What a GGUF file says about its model, read before any weights load.

:func:`read_info` parses the file's header (metadata key/values and the tensor table)
and returns a :class:`ModelInfo`. The planner needs only ``context_length``; the rest
is for ``se-local info`` and for checks such as "does this model have a chat template".

Why not ``gguf.GGUFReader``: it builds a NumPy view for every element of every array,
and the tokenizer tables are arrays of 50k to 500k strings, so it spends 3 s (SmolLM2)
to 10+ s (Llama-3) on data we skip. The header walk below takes milliseconds; the
``gguf`` package still provides the type enums and quantization block sizes.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import ModelFileError

__all__ = ["ModelInfo", "read_info"]

GGUF_MAGIC = b"GGUF"
MAX_ARRAY_KEPT = 64
"""Arrays longer than this (tokenizer tables) are skipped, not decoded."""


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a GGUF model file.

    Attributes:
        path: the file.
        file_size: its size in bytes.
        architecture: ``general.architecture`` (e.g. ``"llama"``).
        name: ``general.name``, or the file name without suffix if absent.
        context_length: the trained context length ``L`` (``{arch}.context_length``).
        n_layer: number of transformer blocks (``{arch}.block_count``).
        n_head: attention (query) heads (``{arch}.attention.head_count``).
        n_head_kv: key/value heads (``{arch}.attention.head_count_kv``; default ``n_head``).
        n_embd: embedding width (``{arch}.embedding_length``).
        head_dim: per-head width (``{arch}.attention.key_length``; default ``n_embd // n_head``).
        vocab_size: tokens in the vocabulary, ``None`` if the file does not say.
        rope_freq_base: RoPE base frequency, ``None`` if absent (llama.cpp then uses 10000).
        rope_scaling_type: RoPE scaling type (``"linear"``, ``"yarn"``, ...), ``None`` if absent.
        rope_scaling_factor: RoPE scaling factor, ``None`` if absent.
        file_type: the file's declared quantization (``general.file_type``), e.g. ``"MOSTLY_Q4_1"``.
        tensor_types: number of tensors per tensor type, e.g. ``{"Q4_1": 210, "F32": 61}``.
        n_params: total number of weights over all tensors.
        has_chat_template: whether ``tokenizer.chat_template`` is present.
        metadata: every scalar key/value of the header (and arrays of at most 64 items).
    """

    path: Path
    file_size: int
    architecture: str
    name: str
    context_length: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_embd: int
    head_dim: int
    vocab_size: Optional[int]
    rope_freq_base: Optional[float]
    rope_scaling_type: Optional[str]
    rope_scaling_factor: Optional[float]
    file_type: Optional[str]
    tensor_types: Dict[str, int] = field(default_factory=dict)
    n_params: int = 0
    has_chat_template: bool = False
    metadata: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def read_info(path: Union[str, os.PathLike]) -> ModelInfo:
    """Read a GGUF file's metadata without loading its weights.

    Results are cached per file path, size and modification time.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The model's metadata.

    Raises:
        ModelFileError: the path is missing or a directory, the file is not GGUF, is
            truncated or corrupt, or lacks a required key.
    """
    p = Path(path).expanduser()
    _check_file(p)
    st = p.stat()
    try:
        return _read_info(p, st.st_size, st.st_mtime_ns)
    except (TypeError, ValueError, OverflowError) as e:  # a value of the wrong type (a corrupt file)
        raise ModelFileError(f"{p} is corrupt: a metadata value has the wrong type ({e})") from None


@lru_cache(maxsize=16)
def _read_info(p: Path, file_size: int, mtime_ns: int) -> ModelInfo:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    fields, tensors, data_start, array_lengths = _parse_header(p, file_size)

    def get(key: str, default: Any = None) -> Any:
        return fields.get(key, default)

    def require(key: str) -> Any:
        if key not in fields:
            raise ModelFileError(
                f"{p} lacks the required GGUF key '{key}'; the file is incomplete or not a language model"
            )
        return fields[key]

    arch = require("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"{p}: 'general.architecture' is not a string")
    n_embd = _int(p, f"{arch}.embedding_length", require(f"{arch}.embedding_length"))
    n_head = _int(p, f"{arch}.attention.head_count", require(f"{arch}.attention.head_count"))
    n_head_kv = _int(p, f"{arch}.attention.head_count_kv", get(f"{arch}.attention.head_count_kv", n_head))
    if n_head <= 0:
        raise ModelFileError(
            f"{p}: '{arch}.attention.head_count' is {n_head}; a model with attention needs at least 1 head"
        )

    tensor_types: Counter = Counter()
    n_params = 0
    for name, n_elements, ggml_type, offset in tensors:
        try:
            qtype = GGMLQuantizationType(ggml_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
            type_name = qtype.name
        except (ValueError, KeyError):
            raise ModelFileError(
                f"{p}: tensor '{name}' has unknown type {ggml_type}; the file is corrupt or too new"
            ) from None
        end = data_start + offset + n_elements // block * type_size
        if end > file_size:
            raise ModelFileError(
                f"{p} is truncated: tensor '{name}' ends at byte {end} but the file has {file_size} bytes; "
                "download it again"
            )
        tensor_types[type_name] += 1
        n_params += n_elements

    vocab = get(f"{arch}.vocab_size", array_lengths.get("tokenizer.ggml.tokens"))

    return ModelInfo(
        path=p,
        file_size=file_size,
        architecture=arch,
        name=str(get("general.name", p.stem)),
        context_length=_int(p, f"{arch}.context_length", require(f"{arch}.context_length")),
        n_layer=_int(p, f"{arch}.block_count", require(f"{arch}.block_count")),
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_embd=n_embd,
        head_dim=_int(
            p, f"{arch}.attention.key_length", get(f"{arch}.attention.key_length", n_embd // n_head)
        ),
        vocab_size=None if vocab is None else _int(p, f"{arch}.vocab_size", vocab),
        rope_freq_base=_opt_float(get(f"{arch}.rope.freq_base")),
        rope_scaling_type=get(f"{arch}.rope.scaling.type"),
        rope_scaling_factor=_opt_float(get(f"{arch}.rope.scaling.factor")),
        file_type=_file_type_name(get("general.file_type")),
        tensor_types=dict(tensor_types.most_common()),
        n_params=n_params,
        has_chat_template="tokenizer.chat_template" in fields,
        metadata=fields,
    )


# ---------------------------------------------------------------------------
# The header walk
# ---------------------------------------------------------------------------
#
# GGUF v2/v3 layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
# n_kv x (string key, u32 type, value), n_tensors x (string name, u32 n_dims,
# u64 dims[n_dims], u32 type, u64 offset), padding to general.alignment, data.
# string = u64 length + bytes; array = u32 item type + u64 count + items.

_SCALARS = {  # GGUFValueType value -> struct code
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Bounds-checked little/big-endian reads over a memory map."""

    def __init__(self, buf: mmap.mmap, endian: str) -> None:
        self.buf, self.endian, self.pos = buf, endian, 0

    def take(self, code: str) -> Any:
        s = struct.Struct(self.endian + code)
        if self.pos + s.size > len(self.buf):
            raise EOFError
        (value,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise EOFError
        self.pos += n

    def string(self) -> str:
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        return bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, lengths: Dict[str, int]) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.take("I"), self.take("Q")
            lengths[key] = count
            if count <= MAX_ARRAY_KEPT:
                return [self.value(itype, key, {}) for _ in range(count)]
            if itype in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[itype]))
            else:
                for _ in range(count):
                    self.value(itype, key, {})
            return None
        raise ValueError(f"unknown value type {vtype} for key '{key}'")


def _parse_header(
    p: Path, file_size: int
) -> Tuple[Dict[str, Any], List[Tuple[str, int, int, int]], int, Dict[str, int]]:
    """Metadata, tensor table ``(name, n_elements, type, offset)``, data start, array lengths."""
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        version = struct.unpack_from("<I", buf, 4)[0] if file_size >= 8 else 0
        endian = "<" if version & 0xFFFF else ">"  # a byte-swapped file reads as 0x0?000000
        c = _Cursor(buf, endian)
        try:
            c.skip(4)
            version = c.take("I")
            if version < 2:
                raise ModelFileError(
                    f"{p} is GGUF version {version}; se-local reads versions 2 and 3 "
                    "(convert the model again)"
                )
            n_tensors, n_kv = c.take("Q"), c.take("Q")
            fields: Dict[str, Any] = {}
            lengths: Dict[str, int] = {}
            for _ in range(n_kv):
                key = c.string()
                value = c.value(c.take("I"), key, lengths)
                if value is not None:
                    fields[key] = value
            tensors = []
            for _ in range(n_tensors):
                name = c.string()
                n_dims = c.take("I")
                if n_dims > 4:  # GGML_MAX_DIMS; also keeps a corrupt count from multiplying for ever
                    raise ValueError(f"tensor '{name}' has {n_dims} dimensions (at most 4)")
                n_elements = 1
                for _ in range(n_dims):
                    n_elements *= c.take("Q")
                tensors.append((name, n_elements, c.take("I"), c.take("Q")))
        except (EOFError, struct.error):
            raise ModelFileError(f"{p} is truncated: its header ends early; download it again") from None
        except ValueError as e:
            raise ModelFileError(f"{p} is corrupt: {e}") from None
        alignment = fields.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ModelFileError(f"{p} is corrupt: general.alignment = {alignment!r} is not a power of two")
        data_start = -(-c.pos // alignment) * alignment
    return fields, tensors, data_start, lengths


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _check_file(p: Path) -> None:
    """Fail early, with a clear message, on what is not a readable GGUF file."""
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory; pass the path of a .gguf file")
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelFileError(f"cannot read {p}: {e.strerror}") from e
    if magic != GGUF_MAGIC:
        what = "empty" if not magic else f"starts with {magic!r}, not {GGUF_MAGIC!r}"
        raise ModelFileError(f"{p} is not a GGUF file ({what}); se-local reads llama.cpp's .gguf models")


def _int(p: Path, key: str, value: Any) -> int:
    """An integer value; a per-layer array (some architectures) gives its largest item."""
    if isinstance(value, list):
        value = max(value) if value else 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelFileError(f"{p}: '{key}' should be an integer, found {value!r}")
    return value


def _opt_float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _file_type_name(value: Any) -> Optional[str]:
    if value is None:
        return None
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name
    except (ValueError, TypeError, OverflowError):  # unknown, or not a number (a corrupt file)
        return str(value)
