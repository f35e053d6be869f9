"""Checking a GGUF model file before llama.cpp opens it.

llama.cpp turns most malformed files into a clean load failure, but some reach a
``GGML_ASSERT`` or a bad memory access and take the whole process down (found by
``tests/gguf_fuzz.py``): duplicate vocabulary entries, a vocabulary-free tokenizer,
a layer count beyond 512, tensor data not 32-byte aligned in the file, norm weights
that are not f32, integer-typed weight matrices, a negative normalization epsilon,
head sizes the architecture's graph builder asserts on, and more (docs/ERRORS.md).
:func:`check_model_file` walks the whole header with the same limits as llama.cpp's
reader (``ggml/src/gguf.cpp``) plus those checks, and raises a
:class:`~se_local.errors.ModelFileError` that names the file and what is wrong.

It reads only the header (metadata and tensor table), never the weights: a few
milliseconds for a small model, ~0.1 s for a 128k-token vocabulary.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ._llama_rules import SAME_KV_HEAD, SAME_ROT_HEAD
from .errors import ModelFileError
from .gguf_info import _check_file

__all__ = ["check_model_file"]

# limits of the pinned llama.cpp (ggml.h, gguf.cpp, llama-hparams.h)
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64
GGUF_MAX_STRING_LENGTH = 1 << 30
GGUF_MAX_ARRAY_ELEMENTS = 1 << 30
LLAMA_MAX_LAYERS = 512
TENSOR_ALIGNMENT = 32
"""Tensor data in a memory-mapped file must start at a multiple of this (ggml-backend.cpp)."""

MIN_TRAINED_CONTEXT = 16
"""A ``context_length`` below this is taken for corruption (no language model is that short)."""

_INT64_MAX = (1 << 63) - 1
_SIZE_MAX = (1 << 64) - 1

# GGUF value types -> struct code (gguf.h); 8 = string, 9 = array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "b", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
               8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64"}
_INTEGER_TYPES = {0, 1, 2, 3, 4, 5, 10, 11}
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")
LLAMA_MAX_EXPERTS = 1024
_TOKEN_TYPE_BYTE = 6

# ggml types no language-model weight has: llama.cpp's matrix products crash on them
_GGML_F32 = 0
_NON_WEIGHT_TYPES = {24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64"}

_REDO = "the file is damaged or was written by a faulty converter; download or convert it again"


@dataclass
class _Array:
    itype: int
    count: int
    start: int  # offset of the first item


@dataclass
class _Tensor:
    name: str
    ne: Tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


class _Header:
    """What the strict walk found."""

    def __init__(self) -> None:
        self.version = 0
        self.kv: Dict[str, Tuple[int, Any]] = {}  # key -> (value type, value or _Array)
        self.tensors: List[_Tensor] = []
        self.alignment = 32
        self.data_start = 0
        self.buffer: Any = None  # the file's bytes (a memory map), for arrays read on demand

    def scalar(self, key: str) -> Any:
        entry = self.kv.get(key)
        return None if entry is None or entry[0] == _ARRAY else entry[1]


def check_model_file(path: Union[str, os.PathLike]) -> None:
    """Check that llama.cpp can open ``path`` without aborting the process.

    Args:
        path: the ``.gguf`` file.

    Raises:
        ModelFileError: the path is missing, a directory or unreadable; the file is not
            GGUF, truncated, or its header breaks a rule that llama.cpp asserts on.
    """
    p = Path(path).expanduser()
    _check_file(p)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                header = _Walker(p, buf).header()
                _check_tensors(p, header, size)
                _check_metadata(p, header)
                _check_vocab(p, header, buf)
    except OSError as e:
        raise ModelFileError(f"cannot read {p}: {e.strerror or e}") from e


# ---------------------------------------------------------------------------
# The header walk: gguf.cpp's rules
# ---------------------------------------------------------------------------


class _Walker:
    def __init__(self, p: Path, buf: mmap.mmap) -> None:
        self.p, self.buf, self.pos = p, buf, 0

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.p} is corrupt: {what}; {_REDO}")

    def truncated(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.p} is truncated: the header ends inside {what} (at byte {self.pos} of {len(self.buf)}); "
            "download it again"
        )

    def take(self, code: str, what: str) -> Any:
        s = struct.calcsize("<" + code)
        if self.pos + s > len(self.buf):
            raise self.truncated(what)
        (v,) = struct.unpack_from("<" + code, self.buf, self.pos)
        self.pos += s
        return v

    def string(self, what: str) -> bytes:
        n = self.take("Q", what)
        if n > GGUF_MAX_STRING_LENGTH:
            raise self.fail(f"{what} claims a length of {n} bytes (the limit is {GGUF_MAX_STRING_LENGTH})")
        if self.pos + n > len(self.buf):
            raise self.truncated(what)
        self.pos += n
        return self.buf[self.pos - n : self.pos]

    def skip_items(self, itype: int, count: int, what: str) -> None:
        if itype == _STRING:
            buf, pos, end = self.buf, self.pos, len(self.buf)
            unpack = struct.Struct("<Q").unpack_from
            for _ in range(count):
                if pos + 8 > end:
                    self.pos = pos
                    raise self.truncated(what)
                (n,) = unpack(buf, pos)
                if n > GGUF_MAX_STRING_LENGTH:
                    raise self.fail(f"a string in {what} claims a length of {n} bytes")
                pos += 8 + n
            if pos > end:
                raise self.truncated(what)
            self.pos = pos
        else:
            n = count * struct.calcsize(_SCALARS[itype])
            if self.pos + n > len(self.buf):
                raise self.truncated(what)
            self.pos += n

    def header(self) -> _Header:
        h = _Header()
        h.buffer = self.buf
        self.pos = 4  # the magic was checked
        h.version = self.take("I", "the version")
        if h.version & 0xFFFF == 0:
            raise ModelFileError(
                f"{self.p} is a big-endian GGUF file (version field {h.version:#010x}) or corrupt; "
                "llama.cpp reads little-endian files on this machine"
            )
        if h.version == 1:
            raise ModelFileError(
                f"{self.p} is GGUF version 1, which llama.cpp no longer reads; convert the model again"
            )
        if h.version > 3:
            raise ModelFileError(
                f"{self.p} is GGUF version {h.version}; this se-local reads versions 2 and 3 (update se-local)"
            )
        n_tensors = self.take("q", "the tensor count")
        n_kv = self.take("q", "the key count")
        if n_tensors < 0 or n_kv < 0:
            raise self.fail(f"negative counts: {n_tensors} tensors, {n_kv} metadata keys")
        # a key takes at least 13 bytes (length, 1 byte, type, 1-byte value), a tensor entry 24
        if 13 * n_kv + 24 * n_tensors > len(self.buf) - self.pos:
            raise self.fail(
                f"the header claims {n_tensors} tensors and {n_kv} metadata keys, more than "
                f"{len(self.buf)} bytes can hold"
            )

        for i in range(n_kv):
            raw = self.string(f"metadata key #{i}")
            key = bytes(raw).decode("utf-8", errors="replace")
            if not key:
                raise self.fail(f"metadata key #{i} is empty")
            if key in h.kv:
                raise self.fail(f"metadata key '{key}' appears twice")
            vtype = self.take("I", f"the type of '{key}'")
            if vtype == _ARRAY:
                itype = self.take("I", f"the item type of '{key}'")
                count = self.take("Q", f"the length of '{key}'")
                if itype == _ARRAY or (itype not in _SCALARS and itype != _STRING):
                    raise self.fail(f"'{key}' is an array of unknown type {itype}")
                if count > GGUF_MAX_ARRAY_ELEMENTS:
                    raise self.fail(f"'{key}' claims {count} items (the limit is {GGUF_MAX_ARRAY_ELEMENTS})")
                min_size = 8 if itype == _STRING else struct.calcsize(_SCALARS[itype])
                if count * min_size > len(self.buf) - self.pos:
                    raise self.truncated(f"'{key}' ({count} items)")
                h.kv[key] = (_ARRAY, _Array(itype, count, self.pos))
                self.skip_items(itype, count, f"'{key}'")
            elif vtype == _STRING:
                h.kv[key] = (vtype, bytes(self.string(f"'{key}'")).decode("utf-8", errors="replace"))
            elif vtype in _SCALARS:
                h.kv[key] = (vtype, self.take(_SCALARS[vtype], f"'{key}'"))
            else:
                raise self.fail(f"'{key}' has unknown value type {vtype}")

        align = h.kv.get("general.alignment")
        if align is not None:
            if align[0] != 4:
                raise self.fail(f"'general.alignment' must be a u32, found {_TYPE_NAMES.get(align[0], align[0])}")
            if align[1] == 0 or align[1] & (align[1] - 1):
                raise self.fail(f"'general.alignment' = {align[1]} is not a power of two")
            h.alignment = align[1]

        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        names = set()
        expected_offset = 0
        for i in range(n_tensors):
            raw = self.string(f"the name of tensor #{i}")
            name = bytes(raw).decode("utf-8", errors="replace")
            if len(raw) >= GGML_MAX_NAME:
                raise self.fail(f"tensor #{i} has a name of {len(raw)} bytes (the limit is {GGML_MAX_NAME - 1})")
            if name in names:
                raise self.fail(f"tensor '{name}' appears twice")
            names.add(name)
            n_dims = self.take("I", f"the shape of tensor '{name}'")
            if n_dims > GGML_MAX_DIMS:
                raise self.fail(f"tensor '{name}' has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
            ne = tuple(self.take("q", f"the shape of tensor '{name}'") for _ in range(n_dims))
            if any(d < 0 for d in ne):
                raise self.fail(f"tensor '{name}' has a negative dimension {list(ne)}")
            n_elements = 1
            for d in ne:
                n_elements *= d
            if n_elements > _INT64_MAX:
                raise self.fail(f"tensor '{name}' has {n_elements} elements, more than llama.cpp can count")
            ggml_type = self.take("I", f"the type of tensor '{name}'")
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            except (ValueError, KeyError):
                raise ModelFileError(
                    f"{self.p}: tensor '{name}' has unknown type {ggml_type}; the file is corrupt or needs a "
                    "newer se-local"
                ) from None
            if ne and ne[0] % block:
                raise self.fail(
                    f"tensor '{name}' has rows of {ne[0]} elements, not a multiple of its type's block of {block}"
                )
            nbytes = n_elements // block * type_size
            if nbytes > _SIZE_MAX:
                raise self.fail(f"tensor '{name}' would take {nbytes} bytes")
            offset = self.take("Q", f"the offset of tensor '{name}'")
            if offset != expected_offset:
                raise self.fail(
                    f"tensor '{name}' data is at offset {offset} of the data section, expected {expected_offset}"
                )
            expected_offset += -(-nbytes // h.alignment) * h.alignment
            h.tensors.append(_Tensor(name, ne, ggml_type, offset, nbytes))
        h.data_start = -(-self.pos // h.alignment) * h.alignment if n_tensors else self.pos
        return h


# ---------------------------------------------------------------------------
# What llama.cpp asserts on later
# ---------------------------------------------------------------------------


def _check_tensors(p: Path, h: _Header, file_size: int) -> None:
    if not h.tensors:
        raise ModelFileError(
            f"{p} holds no tensors (a vocabulary-only file?); se-local needs a model with its weights"
        )
    for t in h.tensors:
        start = h.data_start + t.offset
        if start + t.nbytes > file_size:
            raise ModelFileError(
                f"{p} is truncated: tensor '{t.name}' ends at byte {start + t.nbytes} but the file has "
                f"{file_size} bytes; download it again"
            )
        if start % TENSOR_ALIGNMENT:
            raise ModelFileError(
                f"{p}: tensor '{t.name}' data starts at byte {start}, not a multiple of {TENSOR_ALIGNMENT} "
                f"(general.alignment = {h.alignment}); llama.cpp needs {TENSOR_ALIGNMENT}-byte aligned "
                "tensor data, convert the model again"
            )
        if t.ggml_type in _NON_WEIGHT_TYPES:
            raise ModelFileError(
                f"{p}: tensor '{t.name}' has type {_NON_WEIGHT_TYPES[t.ggml_type]}, which llama.cpp cannot "
                f"compute with; {_REDO}"
            )
        if len(t.ne) == 1 and t.ggml_type != _GGML_F32:
            from gguf import GGMLQuantizationType

            raise ModelFileError(
                f"{p}: vector tensor '{t.name}' has type {GGMLQuantizationType(t.ggml_type).name}; llama.cpp "
                f"needs norms and biases in F32; {_REDO}"
            )


def _check_metadata(p: Path, h: _Header) -> None:
    arch = h.scalar("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{p} has no 'general.architecture' string; the file is not a language model")

    def integer(key: str, lo: int, hi: Optional[int], why: str) -> None:
        entry = h.kv.get(key)
        if entry is None:
            return  # a missing key is llama.cpp's (clean) error to report
        vtype, value = entry
        if vtype not in _INTEGER_TYPES:
            raise ModelFileError(f"{p}: '{key}' should be an integer, found {_TYPE_NAMES.get(vtype, vtype)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ModelFileError(f"{p}: '{key}' = {value} must be {bound} ({why}); {_REDO}")

    integer(f"{arch}.block_count", 1, LLAMA_MAX_LAYERS, "llama.cpp's layer limit")
    integer(
        f"{arch}.context_length", MIN_TRAINED_CONTEXT, None, "the trained context length of a language model"
    )
    for key, (vtype, value) in h.kv.items():
        if key.startswith(arch + ".") and key.endswith("epsilon") and vtype in (6, 12):
            if not (math.isfinite(value) and value >= 0):
                raise ModelFileError(f"{p}: '{key}' = {value} must be a finite number >= 0; {_REDO}")

    n_layer = _uint(h, f"{arch}.block_count")
    if n_layer is None:
        return  # llama.cpp reports the missing key
    nextn = _uint(h, f"{arch}.nextn_predict_layers") or 0
    if nextn > n_layer:
        raise ModelFileError(
            f"{p}: '{arch}.nextn_predict_layers' = {nextn} exceeds the {n_layer} layers; {_REDO}"
        )

    # experts (llama-model.cpp, load_hparams)
    n_expert = _uint(h, f"{arch}.expert_count") or 0
    used = _per_layer(p, h, f"{arch}.expert_used_count", n_layer)
    n_used = max(used) if used else 0
    groups = _uint(h, f"{arch}.expert_group_count") or 0
    group_used = _uint(h, f"{arch}.expert_group_used_count") or 0
    bad = None
    if n_expert > LLAMA_MAX_EXPERTS:
        bad = f"{n_expert} experts, more than llama.cpp's {LLAMA_MAX_EXPERTS}"
    elif n_used > n_expert:
        bad = f"{n_used} experts used per token out of {n_expert}"
    elif n_expert and not n_used:
        bad = f"{n_expert} experts but none used per token"
    elif n_expert and groups >= n_expert:
        bad = f"{groups} expert groups for {n_expert} experts"
    elif n_expert and groups > 1 and (n_expert % groups or not 0 < group_used < groups):
        bad = f"{n_expert} experts in {groups} groups, {group_used} groups used"
    elif not n_expert and groups:
        bad = f"{groups} expert groups but no experts"
    if bad:
        raise ModelFileError(f"{p}: the expert counts are inconsistent ({bad}); {_REDO}")

    # attention heads: each layer's query heads are shared evenly by its key/value heads
    heads = _per_layer(p, h, f"{arch}.attention.head_count", n_layer)
    heads_kv = _per_layer(p, h, f"{arch}.attention.head_count_kv", n_layer) or heads
    for il, (nh, nkv) in enumerate(zip(heads, heads_kv)):
        if nh and nkv and nh % nkv:
            raise ModelFileError(
                f"{p}: layer {il} has {nh} attention heads and {nkv} key/value heads; the heads must be a "
                f"multiple of the key/value heads; {_REDO}"
            )

    # head sizes the architecture's graph builder asserts on (see _llama_rules.py)
    n_embd = _uint(h, f"{arch}.embedding_length")
    if heads and heads[0] and n_embd:
        head_k = _uint(h, f"{arch}.attention.key_length") or n_embd // heads[0]
        head_v = _uint(h, f"{arch}.attention.value_length") or n_embd // heads[0]
        n_rot = _uint(h, f"{arch}.rope.dimension_count") or head_k
        if arch in SAME_KV_HEAD and head_k != head_v:
            raise ModelFileError(
                f"{p}: key heads of {head_k} and value heads of {head_v}; llama.cpp's '{arch}' needs them "
                f"equal; {_REDO}"
            )
        if arch in SAME_ROT_HEAD and n_rot != head_v:
            raise ModelFileError(
                f"{p}: '{arch}.rope.dimension_count' = {n_rot} but the heads have {head_v} dimensions; "
                f"llama.cpp's '{arch}' needs RoPE over the whole head; {_REDO}"
            )

    scaling = h.scalar(f"{arch}.rope.scaling.type")
    if isinstance(scaling, str) and scaling not in _ROPE_SCALING_TYPES:
        raise ModelFileError(
            f"{p}: '{arch}.rope.scaling.type' = {scaling!r} is unknown (llama.cpp knows "
            f"{', '.join(_ROPE_SCALING_TYPES)}); {_REDO}"
        )


def _uint(h: _Header, key: str) -> Optional[int]:
    """An integer scalar key's value, ``None`` if absent or of another type (llama.cpp's error then)."""
    entry = h.kv.get(key)
    if entry is None or entry[0] not in _INTEGER_TYPES:
        return None
    return entry[1] & 0xFFFFFFFF  # llama.cpp reads these into uint32_t


def _per_layer(p: Path, h: _Header, key: str, n_layer: int) -> List[int]:
    """A per-layer integer hyperparameter (a scalar for every layer, or an array); ``[]`` if absent."""
    entry = h.kv.get(key)
    if entry is None:
        return []
    vtype, value = entry
    if vtype in _INTEGER_TYPES:
        return [value & 0xFFFFFFFF] * n_layer
    if vtype == _ARRAY and value.itype in (4, 5) and value.count == n_layer:  # u32/i32 arrays
        code = _SCALARS[value.itype]
        return [v & 0xFFFFFFFF for v in struct.unpack_from(f"<{value.count}{code}", h.buffer, value.start)]
    return []  # llama.cpp rejects other shapes itself


def _check_vocab(p: Path, h: _Header, buf: mmap.mmap) -> None:
    model = h.kv.get("tokenizer.ggml.model")
    if model is None:
        raise ModelFileError(f"{p} has no tokenizer ('tokenizer.ggml.model' is missing); se-local needs one")
    if model[0] != _STRING:
        raise ModelFileError(f"{p}: 'tokenizer.ggml.model' should be a string; {_REDO}")
    if model[1] in ("none", "no_vocab"):
        raise ModelFileError(
            f"{p} has no vocabulary (tokenizer.ggml.model = '{model[1]}'): se-local needs a model that "
            "tokenizes text"
        )
    entry = h.kv.get("tokenizer.ggml.tokens")
    if entry is None:
        raise ModelFileError(f"{p} has no vocabulary ('tokenizer.ggml.tokens' is missing)")
    tokens = entry[1]
    if entry[0] != _ARRAY or tokens.itype != _STRING:
        raise ModelFileError(f"{p}: 'tokenizer.ggml.tokens' should be an array of strings; {_REDO}")
    if tokens.count == 0:
        raise ModelFileError(f"{p}: the vocabulary ('tokenizer.ggml.tokens') is empty; {_REDO}")
    # llama.cpp keys its token map by the C string (up to a NUL) and renames empty tokens
    seen: Dict[bytes, int] = {}
    pos = tokens.start
    unpack = struct.Struct("<Q").unpack_from
    for i in range(tokens.count):
        (n,) = unpack(buf, pos)
        word = buf[pos + 8 : pos + 8 + n].split(b"\0", 1)[0] or f"[EMPTY_{i}]".encode()
        pos += 8 + n
        j = seen.setdefault(word, i)
        if j != i:
            text = word.decode("utf-8", errors="replace")
            raise ModelFileError(
                f"{p}: the vocabulary has token {text!r} twice (ids {j} and {i}); {_REDO}"
            )
    if model[1] == "llama":
        # SentencePiece falls back to byte tokens for text its pieces do not cover; llama.cpp
        # aborts on a byte it finds neither as <0xXX> nor as a one-byte token
        for byte in range(256):
            if f"<0x{byte:02X}>".encode() not in seen and bytes([byte]) not in seen:
                raise ModelFileError(
                    f"{p}: the SentencePiece vocabulary has no token for byte 0x{byte:02X} (<0x{byte:02X}>); "
                    f"llama.cpp would abort on text containing it; {_REDO}"
                )
    types = h.kv.get("tokenizer.ggml.token_type")
    if model[1] == "bert" and types is not None and types[0] == _ARRAY and types[1].itype == 5:
        arr = types[1]
        count = min(arr.count, tokens.count)
        if _TOKEN_TYPE_BYTE in struct.unpack_from(f"<{count}i", buf, arr.start):
            raise ModelFileError(
                f"{p}: the WordPiece ('bert') vocabulary marks tokens as bytes, which llama.cpp cannot "
                f"render; {_REDO}"
            )
