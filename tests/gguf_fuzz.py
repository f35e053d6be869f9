"""Fuzzing se-local's model loading with mutated GGUF files.

Each case takes a small, valid seed file (a tiny random llama from
``tinymodel.py``; or the real SmolLM2-135M header -- GPT-2 BPE vocabulary,
merges, chat template -- with tiny weights), mutates it, and opens it with
``se_local.Model`` in a forked child process with a time limit, then tokenizes
and generates two tokens. A case passes when the child

* loads and generates (the mutation was harmless), or
* raises a :class:`se_local.SeLocalError` that names the file;

it fails when the child dies by a signal (llama.cpp's ``GGML_ASSERT`` aborts,
segfaults), hangs past the limit, or raises anything else.

Mutations, each case one or two of them (see ``MUTATORS``):

* ``bits``/``bytes``: flip bits or overwrite bytes in the header;
* ``field``: set one header field (a count, a length, a value type, a tensor
  dimension, type or offset, a scalar value) to an interesting value;
* ``splice``: insert or delete bytes inside the header;
* ``truncate``: cut the file, mostly inside the header;
* ``kv``/``tensor``/``vocab``/``arch``: rewrite the file with a metadata key
  deleted, re-typed or set to an edge value, a tensor dropped, renamed,
  reshaped or re-typed, the vocabulary damaged, another architecture named.

Run as a script to fuzz more cases than CI does::

    python tests/gguf_fuzz.py --cases 5000 --seed 1 --jobs 2
    python tests/gguf_fuzz.py --case 1234 --seed 1 -v      # replay one case

``--raw`` loads through llama.cpp directly (no se-local validation): what the
validator is there to prevent.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if (HERE.parent / "se_local").is_dir() and str(HERE.parent) not in sys.path:
    sys.path.insert(1, str(HERE.parent))  # the source tree's se_local, as the tests use it

# ---------------------------------------------------------------------------
# A GGUF file as an editable document
# ---------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
              U64: "Q", I64: "q", F64: "d"}
INT_TYPES = (U8, I8, U16, I16, U32, I32, U64, I64)


@dataclass
class KV:
    key: str
    vtype: int                     # value type; ARRAY for arrays
    value: Any                     # scalar, str, or list of items
    itype: Optional[int] = None    # item type of an array


@dataclass
class Tensor:
    name: str
    dims: List[int]                # ne[0], ne[1], ... (GGUF order)
    ttype: int
    data: bytes
    offset: Optional[int] = None   # None: computed at serialization


@dataclass
class Doc:
    version: int
    kvs: List[KV]
    tensors: List[Tensor]
    n_kv: Optional[int] = None       # None: len(kvs)
    n_tensors: Optional[int] = None  # None: len(tensors)

    def get(self, key: str) -> Optional[KV]:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def arch(self) -> str:
        kv = self.get("general.architecture")
        return kv.value if kv and isinstance(kv.value, str) else "llama"

    def alignment(self) -> int:
        """The data layout's alignment; 32 when the key is invalid or too large to lay out (2**31)."""
        kv = self.get("general.alignment")
        v = kv.value if kv is not None and kv.vtype == U32 else 32
        return v if isinstance(v, int) and 0 < v <= 1 << 20 and v & (v - 1) == 0 else 32


class _Reader:
    def __init__(self, b: bytes) -> None:
        self.b, self.pos = b, 0

    def take(self, fmt: str) -> Any:
        v = struct.unpack_from("<" + fmt, self.b, self.pos)[0]
        self.pos += struct.calcsize("<" + fmt)
        return v

    def string(self) -> str:
        n = self.take("Q")
        s = self.b[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "surrogateescape")

    def value(self, vtype: int) -> Any:
        if vtype == STRING:
            return self.string()
        return self.take(SCALAR_FMT[vtype])


def parse(b: bytes) -> Doc:
    """Parse a valid little-endian GGUF v2/v3 file (the seeds)."""
    r = _Reader(b)
    assert b[:4] == b"GGUF"
    r.pos = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kvs = []
    for _ in range(n_kv):
        key, vtype = r.string(), r.take("I")
        if vtype == ARRAY:
            itype, n = r.take("I"), r.take("Q")
            kvs.append(KV(key, ARRAY, [r.value(itype) for _ in range(n)], itype))
        else:
            kvs.append(KV(key, vtype, r.value(vtype)))
    infos = []
    for _ in range(n_tensors):
        name, nd = r.string(), r.take("I")
        dims = [r.take("Q") for _ in range(nd)]
        infos.append((name, dims, r.take("I"), r.take("Q")))
    doc = Doc(version, kvs, [])
    align = doc.alignment()
    start = -(-r.pos // align) * align
    for name, dims, ttype, off in infos:
        size = nbytes(dims, ttype)
        doc.tensors.append(Tensor(name, dims, ttype, b[start + off:start + off + size]))
    return doc


def nbytes(dims: List[int], ttype: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


@dataclass
class Span:
    """Where a header field lies in the serialized bytes."""

    kind: str  # magic, version, count, strlen, vtype, itype, value, ndims, dim, ttype, offset
    start: int
    fmt: str       # struct format of the field ("I", "Q", ...); "" for raw bytes
    size: int


class _Writer:
    def __init__(self) -> None:
        self.b = bytearray()
        self.spans: List[Span] = []

    def put(self, kind: str, fmt: str, v: Any) -> None:
        data = struct.pack("<" + fmt, v)
        self.spans.append(Span(kind, len(self.b), fmt, len(data)))
        self.b += data

    def string(self, s: str, kind: str = "strlen") -> None:
        data = s.encode("utf-8", "surrogateescape")
        self.put(kind, "Q", len(data))
        self.b += data

    def value(self, vtype: int, v: Any) -> None:
        if vtype == STRING:
            self.string(v)
        else:
            self.put("value", SCALAR_FMT[vtype], v)


_ARRAYS: Dict[int, Tuple[list, int, bytes]] = {}
"""Serialized big arrays (the vocabulary) by identity: the seeds' arrays are shared, not copied."""


def serialize(doc: Doc) -> Tuple[bytes, List[Span], int]:
    """Bytes of ``doc``, the spans of its header fields, and where the data section starts."""
    w = _Writer()
    w.spans.append(Span("magic", 0, "", 4))
    w.b += b"GGUF"
    w.put("version", "I", doc.version)
    w.put("count", "Q", len(doc.tensors) if doc.n_tensors is None else doc.n_tensors)
    w.put("count", "Q", len(doc.kvs) if doc.n_kv is None else doc.n_kv)
    for kv in doc.kvs:
        w.string(kv.key)
        w.put("vtype", "I", kv.vtype)
        if kv.vtype == ARRAY:
            w.put("itype", "I", kv.itype)
            w.put("count", "Q", len(kv.value))
            cached = _ARRAYS.get(id(kv.value))
            if cached is not None and cached[0] is kv.value and cached[1] == kv.itype:
                w.b += cached[2]
                continue
            start = len(w.b)
            for item in kv.value:
                w.value(kv.itype, item)
            if len(kv.value) > 1000:
                _ARRAYS[id(kv.value)] = (kv.value, kv.itype, bytes(w.b[start:]))
        else:
            w.value(kv.vtype, kv.value)
    align = doc.alignment()
    offsets, off = [], 0
    for t in doc.tensors:
        offsets.append(off if t.offset is None else t.offset)
        off = -(-(off + len(t.data)) // align) * align
    for t, o in zip(doc.tensors, offsets):
        w.string(t.name)
        w.put("ndims", "I", len(t.dims))
        for d in t.dims:
            w.put("dim", "Q", d)
        w.put("ttype", "I", t.ttype)
        w.put("offset", "Q", o)
    header_end = len(w.b)
    data_start = -(-header_end // align) * align
    out = bytearray(w.b) + bytes(data_start - header_end)
    off = 0
    for t in doc.tensors:
        out += t.data
        pad = -(-(off + len(t.data)) // align) * align - (off + len(t.data))
        out += bytes(pad)
        off += len(t.data) + pad
    return bytes(out), w.spans, data_start


def clone(doc: Doc) -> Doc:
    """A copy whose KVs and tensors can be edited; array values stay shared (see :func:`own`)."""
    return Doc(doc.version, [replace(kv) for kv in doc.kvs],
               [replace(t, dims=list(t.dims)) for t in doc.tensors], doc.n_kv, doc.n_tensors)


def own(kv: KV) -> list:
    """The array of ``kv``, copied so that it can be changed in place."""
    kv.value = list(kv.value)
    return kv.value


# ---------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------


def seed_tiny(tmp: Path) -> bytes:
    """A tiny random llama (SPM vocabulary of 320 tokens, 2 layers, f32), ~0.5 MB."""
    from tinymodel import write_tiny_llama

    p = tmp / "seed-tiny.gguf"
    write_tiny_llama(p, n_ctx_train=256)
    return p.read_bytes()


def seed_smol_header(tmp: Path) -> Optional[bytes]:
    """SmolLM2-135M's real metadata (GPT-2 BPE vocabulary of 49152 tokens, merges, chat
    template) with tiny random weights (2 layers, width 64, f16), ~7 MB; ``None`` if the
    embedded model is not installed."""
    import numpy as np

    try:
        from se_local.default_model import default_model_path

        real = default_model_path()
    except Exception:
        return None
    with open(real, "rb") as f:
        head = f.read(8 << 20)  # the header of SmolLM2 is ~2.6 MB
    r = _Reader(head)
    r.pos = 4
    version = r.take("I")
    r.take("Q")  # the tensor count: the seed gets tiny tensors of its own
    n_kv = r.take("Q")
    kvs = []
    for _ in range(n_kv):
        key, vtype = r.string(), r.take("I")
        if vtype == ARRAY:
            itype, n = r.take("I"), r.take("Q")
            kvs.append(KV(key, ARRAY, [r.value(itype) for _ in range(n)], itype))
        else:
            kvs.append(KV(key, vtype, r.value(vtype)))
    arch = next(kv.value for kv in kvs if kv.key == "general.architecture")
    n_vocab = len(next(kv.value for kv in kvs if kv.key == "tokenizer.ggml.tokens"))
    n_embd, n_head, n_head_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    hd = n_embd // n_head
    tiny = {
        f"{arch}.embedding_length": n_embd, f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_head_kv, f"{arch}.feed_forward_length": n_ff,
        f"{arch}.block_count": n_layer, f"{arch}.rope.dimension_count": hd,
        "general.file_type": 1,
    }
    for kv in kvs:
        if kv.key in tiny:
            kv.value = tiny[kv.key]
    rng = np.random.default_rng(0)

    def t(name: str, *shape: int, f32: bool = False) -> Tensor:
        a = rng.standard_normal(shape[::-1]) / np.sqrt(shape[0])
        a = a.astype(np.float32 if f32 or len(shape) == 1 else np.float16)
        return Tensor(name, list(shape), 0 if a.dtype == np.float32 else 1, a.tobytes())

    tensors = [t("token_embd.weight", n_embd, n_vocab)]
    for il in range(n_layer):
        p = f"blk.{il}."
        tensors += [
            t(p + "attn_norm.weight", n_embd), t(p + "attn_q.weight", n_embd, n_embd),
            t(p + "attn_k.weight", n_embd, hd * n_head_kv), t(p + "attn_v.weight", n_embd, hd * n_head_kv),
            t(p + "attn_output.weight", n_embd, n_embd), t(p + "ffn_norm.weight", n_embd),
            t(p + "ffn_gate.weight", n_embd, n_ff), t(p + "ffn_up.weight", n_embd, n_ff),
            t(p + "ffn_down.weight", n_ff, n_embd),
        ]
    tensors.append(t("output_norm.weight", n_embd))
    data, _, _ = serialize(Doc(version, kvs, tensors))
    return data


# ---------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 100, 127, 128, 255, 256, 511, 512, 1000,
               1024, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
               2**63 - 1, 2**63, 2**64 - 1]


def _interesting(rng: random.Random, fmt: str, old: Any = None) -> Any:
    if fmt in ("f", "d"):
        return rng.choice([0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, float("inf"), float("-inf"),
                           float("nan"), 3.4e38, -5.0, 0.5])
    if fmt == "?":
        return rng.random() < 0.5
    bits = struct.calcsize(fmt) * 8
    signed = fmt.islower()
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    choices = [v for v in INTERESTING if lo <= v <= hi] + [lo, hi]
    if signed:
        choices += [-1, -2, -128, lo + 1]
    if isinstance(old, int):
        choices += [old + 1, old - 1, old * 2, old // 2, old + rng.randint(-1000, 1000)]
    v = rng.choice(choices)
    return min(max(v, lo), hi)


Mutation = Tuple[str, bytes]


class Mutator:
    """One case: the seed's document and bytes in, (description, file bytes) out."""

    def __init__(self, rng: random.Random, doc: Doc, data: bytes, spans: List[Span], data_start: int):
        self.rng, self.doc, self.data, self.spans, self.data_start = rng, doc, data, spans, data_start

    # ---- byte level ------------------------------------------------------

    def _header_pos(self) -> int:
        # bias toward the fixed header and the tensor table (the vocabulary is most of the bytes)
        r = self.rng.random()
        table = [s.start for s in self.spans if s.kind in ("ndims", "dim", "ttype", "offset")]
        if r < 0.2:
            return self.rng.randrange(0, 24)
        if r < 0.6 and table:
            return self.rng.randrange(min(table), self.data_start)
        return self.rng.randrange(0, self.data_start)

    def bits(self) -> Mutation:
        b = bytearray(self.data)
        n = self.rng.choice([1, 1, 2, 3, 4, 8])
        where = []
        for _ in range(n):
            pos = self._header_pos()
            b[pos] ^= 1 << self.rng.randrange(8)
            where.append(pos)
        return f"bits flipped at {where}", bytes(b)

    def bytes(self) -> Mutation:
        b = bytearray(self.data)
        n = self.rng.choice([1, 2, 4, 8, 16])
        pos = self._header_pos()
        fill = self.rng.choice([0x00, 0xFF, 0x7F, 0x80, None])
        for i in range(pos, min(pos + n, len(b))):
            b[i] = self.rng.randrange(256) if fill is None else fill
        return f"{n} bytes at {pos} set to {fill}", bytes(b)

    def splice(self) -> Mutation:
        pos = self._header_pos()
        n = self.rng.choice([1, 2, 4, 7, 8, 16, 64])
        if self.rng.random() < 0.5:
            return f"{n} bytes deleted at {pos}", self.data[:pos] + self.data[pos + n:]
        junk = bytes(self.rng.randrange(256) for _ in range(n))
        return f"{n} bytes inserted at {pos}", self.data[:pos] + junk + self.data[pos:]

    def truncate(self) -> Mutation:
        r = self.rng.random()
        if r < 0.6:
            pos = self.rng.randrange(0, self.data_start + 1)
        elif r < 0.7:
            pos = self.rng.choice([0, 1, 4, 8, 16, 23, 24])
        else:
            pos = self.rng.randrange(self.data_start, len(self.data))
        return f"truncated to {pos} of {len(self.data)} bytes", self.data[:pos]

    def field(self) -> Mutation:
        kinds = ["version", "count", "strlen", "vtype", "itype", "value", "ndims", "dim", "ttype", "offset"]
        kind = self.rng.choice(kinds)
        spans = [s for s in self.spans if s.kind == kind] or [s for s in self.spans if s.fmt]
        s = self.rng.choice(spans)
        old = struct.unpack_from("<" + s.fmt, self.data, s.start)[0]
        if kind in ("vtype", "itype", "ttype"):
            new = self.rng.choice([0, 1, 4, 8, 9, 12, 13, 31, 36, 42, 43, 99, 2**31, 2**32 - 1,
                                   self.rng.randrange(0, 45)])
        elif kind == "ndims":
            new = self.rng.choice([0, 1, 2, 3, 4, 5, 8, 2**32 - 1])
        else:
            new = _interesting(self.rng, s.fmt, old)
        b = bytearray(self.data)
        struct.pack_into("<" + s.fmt, b, s.start, new)
        return f"{kind} field at {s.start}: {old!r} -> {new!r}", bytes(b)

    # ---- document level --------------------------------------------------

    def _emit(self, what: str, doc: Doc) -> Mutation:
        data, _, _ = serialize(doc)
        return what, data

    def kv(self) -> Mutation:
        doc = clone(self.doc)
        arch = doc.arch()
        important = [kv for kv in doc.kvs if kv.key.startswith(arch + ".") or kv.key in (
            "general.architecture", "general.alignment", "tokenizer.ggml.model",
            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "general.file_type")]
        kv = self.rng.choice(important if self.rng.random() < 0.8 else doc.kvs)
        r = self.rng.random()
        if r < 0.25:
            doc.kvs.remove(kv)
            return self._emit(f"key {kv.key} deleted", doc)
        if r < 0.45:  # another value type
            vtype = self.rng.choice([U8, I8, U16, I32, U32, F32, BOOL, STRING, U64, I64, F64, ARRAY])
            old = (kv.vtype, kv.value if not isinstance(kv.value, list) else f"[{len(kv.value)} items]")
            if vtype == ARRAY:
                kv.vtype, kv.itype = ARRAY, self.rng.choice([U32, I32, F32, STRING])
                n = self.rng.choice([0, 1, 2, 3, 64])
                kv.value = ["x"] * n if kv.itype == STRING else [self.rng.randrange(0, 9)] * n
            elif vtype == STRING:
                kv.vtype, kv.itype, kv.value = STRING, None, self.rng.choice(["", "64", "x" * 300])
            else:
                kv.vtype, kv.itype = vtype, None
                kv.value = _interesting(self.rng, SCALAR_FMT[vtype])
            return self._emit(f"key {kv.key} {old} re-typed to {vtype}={kv.value!r:.40}", doc)
        if r < 0.55 and kv.key != "general.architecture":  # a duplicate key
            doc.kvs.insert(self.rng.randrange(len(doc.kvs) + 1), replace(kv))
            return self._emit(f"key {kv.key} duplicated", doc)
        if kv.vtype in SCALAR_FMT:
            old = kv.value
            kv.value = _interesting(self.rng, SCALAR_FMT[kv.vtype], old)
            return self._emit(f"key {kv.key} = {old!r} -> {kv.value!r}", doc)
        if kv.vtype == STRING:
            old = kv.value
            kv.value = self.rng.choice(["", "x", old[: len(old) // 2], old + "\x00junk", "{{ raise }}",
                                        "{% for %}", "\udcff\udcfe"])
            return self._emit(f"key {kv.key} string {old[:20]!r} -> {kv.value[:20]!r}", doc)
        items = own(kv)
        r2 = self.rng.random()
        if r2 < 0.4:
            kv.value = items[: self.rng.randrange(0, max(1, len(items)))]
            return self._emit(f"array {kv.key} cut to {len(kv.value)} of {len(items)}", doc)
        if r2 < 0.6:
            kv.value = items + items[: self.rng.randrange(1, 64)]
            return self._emit(f"array {kv.key} extended to {len(kv.value)}", doc)
        if items and kv.itype in SCALAR_FMT:
            i = self.rng.randrange(len(items))
            items[i] = _interesting(self.rng, SCALAR_FMT[kv.itype], items[i])
            return self._emit(f"array {kv.key}[{i}] = {items[i]!r}", doc)
        if items and kv.itype == STRING:
            i = self.rng.randrange(len(items))
            items[i] = self.rng.choice(["", " ", items[0], "\udcff", "a" * 1000])
            return self._emit(f"array {kv.key}[{i}] = {items[i][:20]!r}", doc)
        doc.kvs.remove(kv)
        return self._emit(f"key {kv.key} deleted", doc)

    def vocab(self) -> Mutation:
        doc = clone(self.doc)
        tok = doc.get("tokenizer.ggml.tokens")
        choice = self.rng.randrange(9)
        if choice == 0:
            keys = [kv.key for kv in doc.kvs if kv.key.startswith("tokenizer.")]
            for k in keys:
                doc.kvs.remove(doc.get(k))
            return self._emit("no tokenizer keys at all", doc)
        if choice == 1:
            model = doc.get("tokenizer.ggml.model")
            new = self.rng.choice(["gpt2", "llama", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab", "x", ""])
            if model:
                model.value = new
            return self._emit(f"tokenizer model -> {new!r}", doc)
        if choice == 2 and tok:
            n = self.rng.choice([0, 1, 3, 10, 259, len(tok.value) // 2, len(tok.value) - 1])
            tok.value = tok.value[:n]
            return self._emit(f"token list cut to {n}", doc)
        if choice == 3:
            key = self.rng.choice(["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                   "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                                   "tokenizer.ggml.eot_token_id", "tokenizer.ggml.sep_token_id"])
            n = len(tok.value) if tok else 0
            v = self.rng.choice([n, n + 1, 2**31 - 1, 2**32 - 1, 2**31])
            kv = doc.get(key)
            if kv is None:
                doc.kvs.append(KV(key, U32, v))
            else:
                kv.vtype, kv.value = U32, v
            return self._emit(f"{key} = {v} (vocabulary of {n})", doc)
        if choice == 4:
            types = doc.get("tokenizer.ggml.token_type")
            if types and types.value:
                own(types)
                i = self.rng.randrange(len(types.value))
                types.value[i] = self.rng.choice([0, 6, 7, 99, -1, 2**31 - 1])
                return self._emit(f"token_type[{i}] = {types.value[i]}", doc)
        if choice == 5 and tok:
            # drop the byte tokens (SPM) or the newline token
            keep = [t for t in tok.value if not (t.startswith("<0x") or t in ("\n", "Ċ"))]
            dropped = len(tok.value) - len(keep)
            tok.value = keep
            for name in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
                kv = doc.get(name)
                if kv:
                    kv.value = kv.value[: len(keep)]
            return self._emit(f"{dropped} byte/newline tokens dropped", doc)
        if choice == 6:
            merges = doc.get("tokenizer.ggml.merges")
            if merges:
                r = self.rng.random()
                if r < 0.3:
                    doc.kvs.remove(merges)
                    return self._emit("merges deleted", doc)
                i = self.rng.randrange(len(own(merges)))
                merges.value[i] = self.rng.choice(["", "a", "a b c", "zz qq", " ", "Ġ Ġ"])
                return self._emit(f"merges[{i}] = {merges.value[i]!r}", doc)
        if choice == 7 and tok and self.rng.random() < 0.3:
            # a byte-fallback token renamed: SentencePiece text using that byte has no token
            own(tok)
            byte_tokens = [i for i, t in enumerate(tok.value) if t.startswith("<0x")] or [0]
            i = self.rng.choice(byte_tokens)
            old, tok.value[i] = tok.value[i], self.rng.choice(["zz" + tok.value[i], "<0x", "<0xZZ>", ""])
            return self._emit(f"token {i} {old!r} renamed {tok.value[i]!r}", doc)
        if choice == 7 and tok:
            i = self.rng.randrange(len(own(tok)))
            j = self.rng.randrange(len(tok.value))
            tok.value[i] = tok.value[j]
            return self._emit(f"token {i} duplicates token {j}", doc)
        for name in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.tokens"):
            kv = doc.get(name)
            if kv and self.rng.random() < 0.5:
                doc.kvs.remove(kv)
                return self._emit(f"{name} deleted", doc)
        return self.kv()

    def arch(self) -> Mutation:
        doc = clone(self.doc)
        old = doc.arch()
        new = self.rng.choice(["", "unknown-arch", "llama", "qwen2", "qwen3", "mistral3", "gemma", "gemma2",
                               "gemma3", "phi3", "gpt2", "bert", "mamba", "rwkv6", "t5", "t5encoder",
                               "deepseek2", "granite", "olmo", "starcoder2", "falcon", "bloom", "clip",
                               "llama4", "command-r", "cohere2", "exaone", "nemotron", "jamba", "qwen2moe",
                               "mixtral", "stablelm", "internlm2", "baichuan", "minicpm", "plamo"])
        arch_kv = doc.get("general.architecture")
        arch_kv.vtype, arch_kv.itype, arch_kv.value = STRING, None, new
        if self.rng.random() < 0.8:  # rename the hyperparameters with it
            for kv in doc.kvs:
                if kv.key.startswith(old + "."):
                    kv.key = new + kv.key[len(old):]
            return self._emit(f"architecture {old} -> {new} (keys renamed)", doc)
        return self._emit(f"architecture {old} -> {new}", doc)

    def tensor(self) -> Mutation:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        doc = clone(self.doc)
        i = self.rng.randrange(len(doc.tensors))
        t = doc.tensors[i]
        r = self.rng.randrange(10)
        if r == 0:
            del doc.tensors[i]
            return self._emit(f"tensor {t.name} deleted", doc)
        if r == 1:
            old = t.name
            t.name = self.rng.choice([doc.tensors[0].name, "", "x" * 70, old.replace("blk.1", "blk.7"),
                                      old.replace("blk.0", "blk.512"), "blk.0.unknown.weight", old + "x"])
            return self._emit(f"tensor {old} renamed {t.name!r}", doc)
        if r in (2, 3, 4):  # another shape; the data resized to match (r == 2: not resized)
            old = list(t.dims)
            j = self.rng.randrange(len(t.dims))
            choice = self.rng.randrange(6)
            if choice == 0:
                t.dims[j] = self.rng.choice([0, 1, t.dims[j] + 1, t.dims[j] * 2, t.dims[j] // 2])
            elif choice == 1:
                t.dims = t.dims[::-1]
            elif choice == 2:
                t.dims = t.dims + [self.rng.choice([1, 2, 3])]
            elif choice == 3:
                t.dims = t.dims[:-1] or [1]
            elif choice == 4:
                t.dims[j] = self.rng.choice([2**31, 2**32, 2**40, 2**62])
            else:
                t.dims = []
            if r != 2:
                try:
                    size = nbytes(t.dims, t.ttype)
                except Exception:
                    size = len(t.data)
                if size <= 64 << 20:
                    t.data = (t.data * (size // max(1, len(t.data)) + 1))[:size]
            kept = "data kept" if r == 2 else "data resized"
            return self._emit(f"tensor {t.name} dims {old} -> {t.dims} ({kept})", doc)
        if r in (5, 6):  # another type; data resized (r == 5) or kept
            old = t.ttype
            t.ttype = self.rng.choice([0, 1, 2, 3, 8, 10, 12, 14, 16, 20, 24, 26, 27, 28, 30, 34, 39, 40, 41])
            if r == 5:
                try:
                    block, _ = GGML_QUANT_SIZES[GGMLQuantizationType(t.ttype)]
                    if t.dims and t.dims[0] % block == 0:
                        size = nbytes(t.dims, t.ttype)
                        t.data = (t.data * (size // max(1, len(t.data)) + 1))[:size]
                except Exception:
                    pass
            return self._emit(f"tensor {t.name} type {old} -> {t.ttype}", doc)
        if r == 7:
            t.offset = self.rng.choice([1, 3, 31, 33, 2**32, 2**63, 2**64 - 1, len(self.data)])
            return self._emit(f"tensor {t.name} offset -> {t.offset}", doc)
        if r == 8:
            doc.tensors.insert(self.rng.randrange(len(doc.tensors) + 1), replace(t))
            return self._emit(f"tensor {t.name} duplicated", doc)
        doc.n_tensors = self.rng.choice([0, len(doc.tensors) - 1, len(doc.tensors) + 1, 2**32, 2**63 - 1])
        return self._emit(f"tensor count -> {doc.n_tensors} of {len(doc.tensors)}", doc)

    def header(self) -> Mutation:
        doc = clone(self.doc)
        r = self.rng.randrange(4)
        if r == 0:
            doc.version = self.rng.choice([0, 1, 2, 4, 0x03000000, 2**32 - 1])
            return self._emit(f"version -> {doc.version}", doc)
        if r == 1:
            doc.n_kv = self.rng.choice([0, len(doc.kvs) - 1, len(doc.kvs) + 1, 2**31, 2**63 - 1, 2**64 - 1])
            return self._emit(f"kv count -> {doc.n_kv} of {len(doc.kvs)}", doc)
        if r == 2:
            v = self.rng.choice([0, 1, 3, 8, 64, 4096, 2**31])
            kv = doc.get("general.alignment")
            if kv is None:
                vtype = self.rng.choice([U32, U32, U64, I32])
                doc.kvs.append(KV("general.alignment", vtype, min(v, 2**31 - 1) if vtype == I32 else v))
            else:
                kv.value = v
            return self._emit(f"alignment -> {v}", doc)
        data = bytearray(self.data)
        if self.rng.random() < 0.5:
            data[:4] = self.rng.choice([b"GGUG", b"FUGG", b"\0\0\0\0", b"ggjt", b"GGML"])
            return "magic changed", bytes(data)
        return "random bytes", bytes(self.rng.randrange(256) for _ in range(self.rng.choice([0, 3, 24, 4096])))

    def add_key(self) -> Mutation:
        """Set a hyperparameter llama.cpp reads optionally (experts, rope scaling, softcaps, ...)."""
        doc = clone(self.doc)
        arch = doc.arch()
        ints = ["expert_count", "expert_used_count", "expert_group_count", "expert_group_used_count",
                "expert_shared_count", "leading_dense_block_count", "nextn_predict_layers",
                "attention.key_length", "attention.value_length", "attention.sliding_window",
                "rope.dimension_count", "vocab_size", "embedding_length_out", "pooling_type",
                "rope.scaling.original_context_length", "attention.q_lora_rank", "attention.kv_lora_rank",
                "context_length", "block_count", "feed_forward_length", "attention.head_count",
                "attention.head_count_kv", "expert_feed_forward_length"]
        floats = ["rope.freq_base", "rope.scaling.factor", "rope.scaling.attn_factor", "logit_scale",
                  "attn_logit_softcapping", "final_logit_softcapping", "residual_scale", "embedding_scale",
                  "attention.clamp_kqv", "attention.layer_norm_epsilon", "attention.layer_norm_rms_epsilon",
                  "attention.scale", "rope.scaling.yarn_log_multiplier"]
        r = self.rng.random()
        if r < 0.5:
            name = self.rng.choice(ints)
            if self.rng.random() < 0.3:  # per-layer array
                n = self.rng.choice([0, 1, 2, 3, 600])
                value, vtype, itype = [self.rng.choice([0, 1, 2, 4, 8, 3]) for _ in range(n)], ARRAY, \
                    self.rng.choice([U32, I32])
            else:
                value, vtype, itype = _interesting(self.rng, "I"), U32, None
        elif r < 0.85:
            name = self.rng.choice(floats)
            value, vtype, itype = _interesting(self.rng, "f"), F32, None
        else:
            name = self.rng.choice(["rope.scaling.type", "attention.causal", "hidden_activation",
                                    "rope.scaling.finetuned"])
            if name in ("attention.causal", "rope.scaling.finetuned"):
                value, vtype, itype = self.rng.random() < 0.5, BOOL, None
            else:
                value, vtype, itype = self.rng.choice(["none", "linear", "yarn", "longrope", "", "dynamic",
                                                       "ntk", "gelu"]), STRING, None
        key = f"{arch}.{name}"
        old = doc.get(key)
        if old is not None:
            doc.kvs.remove(old)
        doc.kvs.insert(self.rng.randrange(len(doc.kvs) + 1), KV(key, vtype, value, itype))
        shown = f"[{len(value)} items]" if isinstance(value, list) else repr(value)
        return self._emit(f"key {key} set to {shown}", doc)

    def shapes(self) -> Mutation:
        """A consistent llama of odd proportions: heads that do not divide, odd head dims, few rotary dims."""
        import numpy as np

        doc = clone(self.doc)
        arch = doc.arch()
        tok = doc.get("tokenizer.ggml.tokens")
        n_vocab = len(tok.value) if tok is not None and isinstance(tok.value, list) else 320
        n_head = self.rng.choice([1, 2, 3, 4, 5, 8])
        n_head_kv = self.rng.choice([1, 2, 3, 4, n_head, n_head])
        hd = self.rng.choice([4, 6, 8, 12, 16, 32, 64, 72, 80, 96, 128, 256])
        n_embd = self.rng.choice([n_head * hd, n_head * hd, 32, 48, 64, 96])
        n_ff = self.rng.choice([1, 16, 33, 64, 128])
        n_layer = self.rng.choice([1, 2, 3])
        n_rot = self.rng.choice([hd, hd, hd // 2, 2, 0, hd - 1 if hd > 1 else 1])
        if n_vocab * n_embd > 4_000_000:
            n_embd = min(n_embd, 64)
        rng = np.random.default_rng(self.rng.randrange(2**32))

        def t(name: str, *shape: int) -> Tensor:
            a = (rng.standard_normal(shape[::-1]) / np.sqrt(max(1, shape[0]))).astype(np.float32)
            return Tensor(name, list(shape), 0, a.tobytes())

        tensors = [t("token_embd.weight", n_embd, n_vocab)]
        for il in range(n_layer):
            p = f"blk.{il}."
            tensors += [
                t(p + "attn_norm.weight", n_embd), t(p + "attn_q.weight", n_embd, n_head * hd),
                t(p + "attn_k.weight", n_embd, n_head_kv * hd), t(p + "attn_v.weight", n_embd, n_head_kv * hd),
                t(p + "attn_output.weight", n_head * hd, n_embd), t(p + "ffn_norm.weight", n_embd),
                t(p + "ffn_gate.weight", n_embd, n_ff), t(p + "ffn_up.weight", n_embd, n_ff),
                t(p + "ffn_down.weight", n_ff, n_embd),
            ]
        tensors += [t("output_norm.weight", n_embd), t("output.weight", n_embd, n_vocab)]
        doc.tensors = tensors
        hp = {"embedding_length": n_embd, "attention.head_count": n_head, "attention.head_count_kv": n_head_kv,
              "feed_forward_length": n_ff, "block_count": n_layer, "rope.dimension_count": n_rot,
              "attention.key_length": hd, "attention.value_length": hd}
        for name, value in hp.items():
            old = doc.get(f"{arch}.{name}")
            if old is not None:
                doc.kvs.remove(old)
            doc.kvs.append(KV(f"{arch}.{name}", U32, value))
        what = (f"shapes n_embd={n_embd} heads={n_head}/{n_head_kv} head_dim={hd} n_rot={n_rot} "
                f"n_ff={n_ff} n_layer={n_layer}")
        return self._emit(what, doc)

    def shapes_arch(self) -> Mutation:
        """Odd proportions under another llama-like architecture: reaches other graph builders."""
        what, data = self.shapes()
        doc = parse(data)
        old = doc.arch()
        new = self.rng.choice(LLAMA_LIKE)
        doc.get("general.architecture").value = new
        for kv in doc.kvs:
            if kv.key.startswith(old + "."):
                kv.key = new + kv.key[len(old):]
        return self._emit(f"{what}; architecture {new}", doc)

    def data_bytes(self) -> Mutation:
        """Garbage in the tensor data (NaN/Inf weights): loading must still work or fail cleanly."""
        b = bytearray(self.data)
        for _ in range(self.rng.choice([1, 16, 256])):
            pos = self.rng.randrange(self.data_start, len(b))
            b[pos] = self.rng.choice([0xFF, 0x7F, 0x80, self.rng.randrange(256)])
        return "tensor data bytes overwritten", bytes(b)


MUTATORS: List[Tuple[str, float]] = [
    ("bits", 12), ("bytes", 8), ("field", 20), ("splice", 5), ("truncate", 8),
    ("kv", 18), ("vocab", 8), ("arch", 5), ("tensor", 12), ("header", 3), ("data_bytes", 1),
    ("add_key", 8), ("shapes", 6), ("shapes_arch", 4),
]

LLAMA_LIKE = [
    "llama", "mistral3", "granite", "granitemoe", "minicpm", "smollm3", "apertus", "arcee", "deci", "exaone",
    "exaone4", "internlm2", "orion", "xverse", "olmo", "olmo2", "qwen2", "qwen3", "starcoder2", "seed_oss",
    "hunyuan-dense", "llama-embed", "maincoder", "mellum", "pangu-embedded", "rnd1", "baichuan", "stablelm",
    "nemotron", "phi3", "command-r", "cohere2", "gemma", "gemma2", "gemma3", "falcon", "bitnet", "plamo",
]
"""Architectures that take (some of) llama's tensor names: odd shapes under them reach their builders."""


SMOL_SHARE = 0.15
"""Share of the cases mutating the SmolLM2 header seed (slower to load: a 49k-token BPE vocabulary)."""


def make_case(index: int, seed: int, seeds: List[Tuple[str, Doc, bytes, List[Span], int]]) -> Tuple[str, bytes]:
    """The ``index``-th case of fuzz run ``seed``: (description, file bytes). Deterministic."""
    rng = random.Random(seed * 1_000_003 + index)
    name, doc, data, spans, data_start = seeds[0] if len(seeds) == 1 or rng.random() >= SMOL_SHARE else seeds[1]
    names, weights = zip(*MUTATORS)
    what = []
    n_mutations = 2 if rng.random() < 0.15 else 1
    for k in range(n_mutations):
        m = Mutator(rng, doc, data, spans, data_start)
        try:
            desc, data = getattr(m, rng.choices(names, weights)[0])()
        except Exception:  # a second mutation that does not apply to what the first one left
            if not what:
                raise
            break
        what.append(desc)
        if k + 1 == n_mutations:
            break
        try:  # a second mutation works on the result when it still parses
            doc = parse(data)
            data2, spans, data_start = serialize(doc)
            if data2 != data:
                break
        except Exception:
            break
    return f"[{name}] " + "; ".join(what), data


# ---------------------------------------------------------------------------
# Running a case in a child process
# ---------------------------------------------------------------------------


def probe(path: str, raw: bool) -> Dict[str, Any]:
    """Open ``path`` and generate two tokens; what happened, as a dict (runs in the child)."""
    if raw:
        return _probe_raw(path)
    from se_local import SeLocalError, read_info
    from se_local.model import Model

    try:
        # a short trained context: open twice as long a context (Self-Extend on) and fill it past L
        L = read_info(path).context_length
        target, n_prompt = (2 * L, L + 8) if L <= 512 else (128, 16)
        with Model(path, target_ctx=target, n_threads=1, n_batch=64) as m:
            if m.info.has_chat_template:
                m.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True)
            prompt = m.tokenize("Hello world, " * n_prompt)[:n_prompt]
            text = "".join(m.generate(prompt, max_tokens=2, temperature=0))
            m.detokenize(m.tokenize("Hello world"))
        return {"outcome": "ok", "text": text}
    except SeLocalError as e:
        return {"outcome": "error", "type": type(e).__name__, "message": str(e)}
    except BaseException as e:  # noqa: BLE001 - everything else is a finding
        return {"outcome": "exception", "type": type(e).__name__, "message": str(e),
                "traceback": traceback.format_exc()}


def _probe_raw(path: str) -> Dict[str, Any]:
    """llama.cpp alone: load, context, decode two tokens (no se-local validation)."""
    from se_local import _lib

    llama_cpp = _lib.llama_cpp
    _lib.backend_init()
    model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
    if not model:
        return {"outcome": "error", "type": "load", "message": " / ".join(_lib.recent_errors())}
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_threads, cp.n_threads_batch = 128, 64, 64, 1, 1
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        llama_cpp.llama_model_free(model)
        return {"outcome": "error", "type": "context", "message": " / ".join(_lib.recent_errors())}
    vocab = llama_cpp.llama_model_get_vocab(model)
    buf = (llama_cpp.llama_token * 64)()
    n = llama_cpp.llama_tokenize(vocab, b"Hello world", 11, buf, 64, True, True)
    if n > 0:
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(buf, n))
    else:
        rc = None
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return {"outcome": "ok", "text": f"n_tokens={n} decode={rc}"}


@dataclass
class Result:
    index: int
    what: str
    outcome: str                # ok | error | exception | crash | hang | lost
    detail: str = ""
    seconds: float = 0.0
    error_type: str = ""


@dataclass
class _Running:
    index: int
    what: str
    pid: int
    fd: int
    path: Path
    err_path: Path
    started: float
    chunks: List[bytes] = field(default_factory=list)


def _start(index: int, what: str, data: bytes, workdir: Path, raw: bool, mem_limit: int) -> _Running:
    path = workdir / f"case-{index}.gguf"
    path.write_bytes(data)
    err_path = workdir / f"case-{index}.stderr"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            os.dup2(fd, 1)
            os.environ["GGML_NO_BACKTRACE"] = "1"  # no gdb backtrace on an abort: the assert line is enough
            import faulthandler

            faulthandler.disable()  # (pytest's) Python traceback on a crash: noise on the parent's stderr
            if mem_limit:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            result = probe(str(path), raw)
            os.write(w, json.dumps(result).encode())
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    return _Running(index, what, pid, r, path, err_path, time.monotonic())


def _finish(run: _Running, status: int, timed_out: bool) -> Result:
    dt = time.monotonic() - run.started
    os.close(run.fd)
    stderr = run.err_path.read_text(errors="replace") if run.err_path.exists() else ""
    lines = stderr.strip().splitlines()
    asserts = [line for line in lines if "GGML_ASSERT" in line or "error" in line.lower()]
    tail = " | ".join((asserts or lines)[-3:])
    for p in (run.path, run.err_path):
        try:
            p.unlink()
        except OSError:
            pass
    if timed_out:
        return Result(run.index, run.what, "hang", f"killed after {dt:.0f} s; {tail}", dt)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return Result(run.index, run.what, "crash", f"{sig}: {tail}", dt)
    try:
        res = json.loads(b"".join(run.chunks) or b"{}")
    except ValueError:
        res = {}
    if not res:
        return Result(run.index, run.what, "lost", f"exit {os.WEXITSTATUS(status)}: {tail}", dt)
    detail = res.get("message") or res.get("text") or ""
    if res["outcome"] == "exception":
        detail += "\n" + res.get("traceback", "")
    return Result(run.index, run.what, res["outcome"], detail, dt, res.get("type", ""))


def run_cases(
    indices: List[int],
    seed: int,
    *,
    jobs: int = 2,
    timeout: float = 60.0,
    raw: bool = False,
    mem_limit: int = 4 << 30,
    on_result: Optional[Callable[[Result], None]] = None,
) -> List[Result]:
    """Run the cases ``indices`` of fuzz run ``seed``, ``jobs`` children at a time."""
    with tempfile.TemporaryDirectory(prefix="se-local-fuzz-seeds-") as tmp:
        seeds = []
        for name, make in (("tiny", seed_tiny), ("smol-header", seed_smol_header)):
            data = make(Path(tmp))
            if data is not None:
                doc = parse(data)
                data, spans, start = serialize(doc)
                seeds.append((name, doc, data, spans, start))
    cases = ((i, *make_case(i, seed, seeds)) for i in indices)
    return run_files(cases, jobs=jobs, timeout=timeout, raw=raw, mem_limit=mem_limit, on_result=on_result)


def run_files(
    cases: Iterable[Tuple[int, str, bytes]],
    *,
    jobs: int = 2,
    timeout: float = 60.0,
    raw: bool = False,
    mem_limit: int = 4 << 30,
    on_result: Optional[Callable[[Result], None]] = None,
) -> List[Result]:
    """Open each ``(index, description, file bytes)`` in a child process, ``jobs`` at a time."""
    # load the native library and the modules a probe uses once, before forking
    import gc

    import se_local.model  # noqa: F401 - first: it points llama_cpp at se-local's library
    import se_local.generate  # noqa: F401
    import llama_cpp.llama_chat_format  # noqa: F401

    results: List[Result] = []
    cases = iter(cases)
    with tempfile.TemporaryDirectory(prefix="se-local-fuzz-") as tmp:
        workdir = Path(tmp)
        gc.collect()
        gc.freeze()  # the children leave the parent's objects alone: fewer copy-on-write pages
        running: Dict[int, _Running] = {}
        exhausted = False
        while not exhausted or running:
            while not exhausted and len(running) < jobs:
                case = next(cases, None)
                if case is None:
                    exhausted = True
                    break
                run = _start(*case, workdir, raw, mem_limit)
                running[run.fd] = run
            if not running:
                break
            ready, _, _ = select.select(list(running), [], [], 0.5)
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    running[fd].chunks.append(chunk)
                    continue
                run = running.pop(fd)
                _, status = os.waitpid(run.pid, 0)
                results.append(_finish(run, status, False))
                if on_result:
                    on_result(results[-1])
            now = time.monotonic()
            for fd, run in list(running.items()):
                if now - run.started > timeout:
                    os.kill(run.pid, signal.SIGKILL)
                    _, status = os.waitpid(run.pid, 0)
                    del running[fd]
                    results.append(_finish(run, status, True))
                    if on_result:
                        on_result(results[-1])
        gc.unfreeze()
    results.sort(key=lambda r: r.index)
    return results


def is_clean(r: Result) -> bool:
    """A passing case: loaded fine, or a SeLocalError that names the file."""
    if r.outcome == "ok":
        return True
    return r.outcome == "error" and f"case-{r.index}.gguf" in r.detail


def summarize(results: List[Result]) -> Dict[str, Any]:
    outcomes = collections.Counter(r.outcome for r in results)
    errors = collections.Counter(r.error_type for r in results if r.outcome == "error")
    return {
        "cases": len(results),
        "outcomes": dict(outcomes.most_common()),
        "error_types": dict(errors.most_common()),
        "unclean": sum(not is_clean(r) for r in results),
        "seconds_max": round(max((r.seconds for r in results), default=0.0), 2),
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--case", type=int, action="append", help="run only this case (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--raw", action="store_true", help="llama.cpp alone, without se-local's validation")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = ap.parse_args(argv)

    indices = args.case or list(range(args.start, args.start + args.cases))

    def show(r: Result) -> None:
        if args.verbose or not is_clean(r):
            print(f"{r.index:6d} {r.outcome:9s} {r.seconds:5.2f}s {r.what}\n         {r.detail[:600]}", flush=True)

    t0 = time.monotonic()
    results = run_cases(indices, args.seed, jobs=args.jobs, timeout=args.timeout, raw=args.raw, on_result=show)
    summary = summarize(results)
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    summary["seed"] = args.seed
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0 if summary["unclean"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
