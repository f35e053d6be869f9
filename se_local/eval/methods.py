"""The long-context methods compared by the evaluations, and the native runner they share.

Five ways to read ``n_ctx`` tokens with a model trained on ``L``, all on the *same*
llama.cpp build (se-local's patched library, through :mod:`se_local._lib`):

* ``se`` — Self-Extend, exact, inside the attention (``llama_set_self_extend``), with
  the planner's ``G`` and ``W`` (:func:`se_local.planner.plan`; ``--group/--window``
  override), adaptive as :class:`se_local.Model` runs it (queries below ``L`` attend
  plainly). Within ``L`` the planner turns it off, so it *is* vanilla there.
* ``vanilla`` — plain RoPE positions, even past ``L``.
* ``grp-attn`` — llama.cpp's own approximation of Self-Extend (``--grp-attn-n/-w`` of
  upstream's completion tool): the KV cache's positions are divided by ``G`` with
  ``llama_memory_seq_add``/``llama_memory_seq_div`` once a window of ``W`` tokens is
  full, the same loop as ``tools/completion/completion.cpp``. ``G`` is the planner's,
  ``W`` rounded down to a multiple of ``G`` (upstream requires it). Off within ``L``.
  The pinned llama.cpp's ``llama_memory_seq_div`` re-rotates the keys by the wrong sign
  (see :meth:`Runner._seq_div`), so the division is done with per-position
  ``llama_memory_seq_add`` calls, which move cells and keys exactly where ``seq_div``
  should.
* ``yarn`` — YaRN RoPE scaling through the context parameters
  (``rope_scaling_type=YARN``, ``rope_freq_scale = L/n_ctx``, ``yarn_orig_ctx = L``,
  llama.cpp's defaults for ``ext_factor``, ``attn_factor``, ``beta_fast/slow``).
* ``linear`` — linear position interpolation (``rope_scaling_type=LINEAR``,
  ``rope_freq_scale = L/n_ctx``).

``yarn`` and ``linear`` use the factor ``max(1, n_ctx / L)``: within ``L`` they are
vanilla too.

:class:`NativeModel` loads the weights once; :class:`Runner` is one llama.cpp context
for one method: it evaluates tokens in micro-batches with the method's position
bookkeeping, hands the logits of the requested outputs to a callback, and decodes
greedily.
"""

from __future__ import annotations

import ctypes
import logging
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, ModelFileError, SelfExtendError, SeLocalError
from ..gguf_info import ModelInfo, read_info
from ..planner import plan
from ..validate import check_model_file

__all__ = [
    "METHODS",
    "MethodSpec",
    "NativeModel",
    "Runner",
    "configure",
    "parse_methods",
    "capture_kv_bytes",
]

METHODS = ("se", "vanilla", "grp-attn", "yarn", "linear")
"""The method names, in the order tables list them."""

DEFAULT_N_BATCH = 512

_KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}


def parse_methods(text: Union[str, Sequence[str]]) -> List[str]:
    """``"se,vanilla"`` → ``["se", "vanilla"]``; ``"all"`` → every method.

    Raises:
        ConfigError: an unknown name.
    """
    items = text.split(",") if isinstance(text, str) else [s for t in text for s in t.split(",")]
    names = [s.strip().lower() for s in items if s.strip()]
    if names == ["all"]:
        return list(METHODS)
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise ConfigError(f"unknown method {', '.join(bad) or '(none)'}; use some of {','.join(METHODS)} or all")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class MethodSpec:
    """How one method runs one context.

    Attributes:
        method: one of :data:`METHODS`.
        n_ctx: the context length, in tokens.
        L: the model's trained length.
        G: group size (``se``/``grp-attn``); 1 = off.
        W: neighbor window (``se``/``grp-attn``); 0 when off.
        rope_scale: context extension factor of ``yarn``/``linear`` (1 = off).
        note: one line saying what runs.
    """

    method: str
    n_ctx: int
    L: int
    G: int = 1
    W: int = 0
    rope_scale: float = 1.0
    note: str = ""

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def configure(
    method: str, L: int, n_ctx: int, *, group: Optional[int] = None, window: Optional[int] = None
) -> MethodSpec:
    """The :class:`MethodSpec` of ``method`` for a context of ``n_ctx`` tokens.

    Raises:
        PlanError: ``se``/``grp-attn`` with no plan reaching ``n_ctx``.
        ConfigError: an unknown method.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method in ("se", "grp-attn"):
        p = plan(L, n_ctx, window=window, group=group)
        if not p.self_extend:
            return MethodSpec(method, n_ctx, L, note=f"n_ctx={n_ctx} <= L={L} or G=1: plain attention")
        if method == "se":
            return MethodSpec(method, n_ctx, L, p.G, p.W, note=f"Self-Extend G={p.G} W={p.W}")
        W = (p.W // p.G) * p.G
        return MethodSpec(method, n_ctx, L, p.G, W, note=f"llama.cpp grp-attn n={p.G} w={W}")
    if method in ("yarn", "linear"):
        scale = max(1.0, n_ctx / L)
        if scale == 1.0:
            return MethodSpec(method, n_ctx, L, note="factor 1: plain RoPE")
        return MethodSpec(method, n_ctx, L, rope_scale=scale, note=f"{method} RoPE scaling x{scale:g}")
    return MethodSpec(method, n_ctx, L, note="plain RoPE")


# ---------------------------------------------------------------------------
# llama.cpp's log: the KV cache size it reports
# ---------------------------------------------------------------------------

_KV_LINE = re.compile(r"llama_kv_cache[^:]*:\s+size\s*=\s*([0-9.]+)\s*MiB")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def capture_kv_bytes() -> Iterator[List[int]]:
    """Collect the KV cache sizes llama.cpp logs while a context is created.

    Yields a list that, after the block, holds the bytes of each KV cache logged
    (``llama_kv_cache: size = X MiB``, so to 0.01 MiB). The log is kept from the
    ``se_local`` handlers meanwhile.
    """
    logger = logging.getLogger("se_local.llama")
    handler = _Collect()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    found: List[int] = []
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        for line in handler.lines:
            m = _KV_LINE.search(line)
            if m:
                found.append(int(round(float(m.group(1)) * 2**20)))


# ---------------------------------------------------------------------------
# The model and one context per method
# ---------------------------------------------------------------------------


class NativeModel:
    """A GGUF model's weights loaded once through llama.cpp (contexts: :class:`Runner`).

    Args:
        path: the ``.gguf`` file; ``None`` = the embedded default model.
        n_gpu_layers: layers to offload; -1 = all.
    """

    def __init__(self, path: Union[str, Path, None] = None, *, n_gpu_layers: int = 0) -> None:
        from .. import _lib
        from ..default_model import default_model_path

        self._lib = _lib
        lc = self.lc = _lib.llama_cpp
        self.path = Path(path).expanduser() if path is not None else default_model_path()
        check_model_file(self.path)
        self.info: ModelInfo = read_info(self.path)
        _lib.backend_init()
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        self.n_gpu_layers = n_gpu_layers
        self.ptr = lc.llama_model_load_from_file(str(self.path).encode("utf-8"), mp)
        if not self.ptr:
            raise ModelFileError(f"llama.cpp could not load {self.path}")
        self.vocab = lc.llama_model_get_vocab(self.ptr)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(lc.llama_vocab_bos(self.vocab))

    @property
    def L(self) -> int:
        return self.info.context_length

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> List[int]:
        """Text → token ids (no BOS unless ``add_special``)."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        while True:
            buf = (self.lc.llama_token * cap)()
            n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            cap = -n

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids → text (special tokens rendered)."""
        out = b""
        piece = ctypes.create_string_buffer(256)
        for t in tokens:
            n = self.lc.llama_token_to_piece(self.vocab, int(t), piece, 256, 0, True)
            out += piece.raw[: max(n, 0)]
        return out.decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, int(token)))

    def close(self) -> None:
        if getattr(self, "ptr", None):
            self.lc.llama_model_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> NativeModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LogitsCallback = Callable[[int, np.ndarray], None]


class Runner:
    """One llama.cpp context running one method.

    Args:
        model: the loaded weights.
        spec: what runs (:func:`configure`).
        n_threads: CPU threads.
        flash_attn: flash attention on (the fused Self-Extend kernel) or off (portable path).
        n_batch: tokens per micro-batch (``grp-attn`` uses at most ``W``).
        kv_type: ``"f16"``, ``"f32"`` or ``"q8_0"``.
        pos_min: Self-Extend's ``pos_min`` (``-1`` = adaptive: plain below ``L``; 0 = every query).

    Raises:
        SelfExtendError: ``se`` on a library without Self-Extend, or refused.
        SeLocalError: llama.cpp could not create the context.
    """

    def __init__(
        self,
        model: NativeModel,
        spec: MethodSpec,
        *,
        n_threads: int,
        flash_attn: bool = True,
        n_batch: int = DEFAULT_N_BATCH,
        kv_type: str = "f16",
        pos_min: int = -1,
    ) -> None:
        lc = self.lc = model.lc
        self.model = model
        self.spec = spec
        self.ctx = None
        self._batch = None
        self.n_batch = max(1, min(n_batch, spec.n_ctx))
        if spec.method == "grp-attn" and spec.G > 1:
            self.n_batch = min(self.n_batch, spec.W)
        cp = lc.llama_context_default_params()
        cp.n_ctx = spec.n_ctx
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.type_k = cp.type_v = _KV_TYPES[kv_type]
        if spec.rope_scale > 1.0:
            cp.rope_scaling_type = (
                lc.LLAMA_ROPE_SCALING_TYPE_YARN if spec.method == "yarn" else lc.LLAMA_ROPE_SCALING_TYPE_LINEAR
            )
            cp.rope_freq_scale = 1.0 / spec.rope_scale
            if spec.method == "yarn":
                cp.yarn_orig_ctx = spec.L
        elif spec.method in ("yarn", "linear", "vanilla"):
            cp.rope_scaling_type = lc.LLAMA_ROPE_SCALING_TYPE_NONE
        with capture_kv_bytes() as kv:
            ctx = lc.llama_init_from_model(model.ptr, cp)
        if not ctx:
            raise SeLocalError(f"llama.cpp could not create a context of {spec.n_ctx} tokens ({spec.method})")
        self.ctx = ctx
        from ..memory import estimate_memory

        self.n_ctx = int(lc.llama_n_ctx(ctx))
        est = estimate_memory(model.info, self.n_ctx, kv_type=kv_type)
        self.kv_bytes: int = est.kv_cpu + est.kv_gpu
        """KV cache bytes of this context: ``n_ctx`` x the per-token bytes of every layer's K and V."""
        self.kv_bytes_logged: Optional[int] = sum(kv) if kv else None
        """The KV cache size llama.cpp logged for this context (to 0.01 MiB), if it did."""
        self.mem = lc.llama_get_memory(ctx)
        self.self_extend = False
        if spec.method == "se" and spec.G > 1:
            lib = model._lib
            if not lib.HAS_SELF_EXTEND:
                self.close()
                raise SelfExtendError(f"the library in {lib.LIB_DIR} has no Self-Extend")
            rc = lib.set_self_extend(ctx, spec.G, spec.W, pos_min)
            if rc < 0:
                self.close()
                raise SelfExtendError(f"llama.cpp refused Self-Extend G={spec.G} W={spec.W} (code {rc})")
            self.self_extend = True
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.n_past = 0  # position of the next token
        self.n_tokens = 0  # tokens in the cache
        self.history: List[int] = []  # the tokens the cache holds, in order
        self._ga_i = 0
        self._last: Optional[np.ndarray] = None

    # -----------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the context."""
        self.lc.llama_memory_clear(self.mem, True)
        self.n_past = self.n_tokens = self._ga_i = 0
        self.history.clear()
        self._last = None

    def eval_prompt(self, tokens: Sequence[int], progress: Optional[Callable[[int, int], None]] = None) -> int:
        """Evaluate ``tokens`` as a fresh prompt, keeping the longest prefix the cache already holds.

        The cache keeps every key at its true position for all methods but ``grp-attn``
        (which rewrites positions), so a shared prefix is exact; ``grp-attn`` starts over.

        Returns:
            the number of leading tokens reused from the cache.
        """
        n = 0
        if self.spec.method != "grp-attn":
            limit = min(len(self.history), len(tokens) - 1)
            while n < limit and self.history[n] == tokens[n]:
                n += 1
        if n == 0:
            self.reset()
        else:
            self.lc.llama_memory_seq_rm(self.mem, 0, n, -1)
            del self.history[n:]
            self.n_past = self.n_tokens = n
            self._last = None
        self.eval(tokens[n:], progress=progress)
        return n

    def _grp_shift(self) -> None:
        """llama.cpp's grp-attn: compress the positions of each full window (completion.cpp)."""
        lc, s = self.lc, self.spec
        ga_n, ga_w = s.G, s.W
        while self.n_past >= self._ga_i + ga_w:
            ga_i = self._ga_i
            ib = (ga_n * ga_i) // ga_w
            bd = (ga_w // ga_n) * (ga_n - 1)
            dd = (ga_w // ga_n) - ib * bd - ga_w
            lc.llama_memory_seq_add(self.mem, 0, ga_i, self.n_past, ib * bd)
            self._seq_div(ga_i + ib * bd, ga_i + ib * bd + ga_w, ga_n)
            lc.llama_memory_seq_add(self.mem, 0, ga_i + ib * bd + ga_w, self.n_past + ib * bd, dd)
            self.n_past -= bd
            self._ga_i += ga_w // ga_n

    def _seq_div(self, p0: int, p1: int, d: int) -> None:
        """``llama_memory_seq_div(mem, 0, p0, p1, d)``, done right.

        The pinned llama.cpp's ``seq_div`` sets a cell's position to ``p // d`` but records
        the K-shift as ``p - p // d`` instead of ``p // d - p`` (``llama_kv_cells::pos_div``),
        so the keys are re-rotated to ``2p - p // d`` rather than ``p // d``
        (``tests/test_eval.py::test_grp_attn_division_moves_keys_exactly`` shows it). Each
        position is moved with ``llama_memory_seq_add`` instead, whose K-shift is right; in
        increasing order, so a moved cell (``p // d < p``) is never selected again.
        """
        add = self.lc.llama_memory_seq_add
        for p in range(max(p0, 0), p1):
            if p // d != p:
                add(self.mem, 0, p, p + 1, p // d - p)

    def eval(
        self,
        tokens: Sequence[int],
        *,
        outputs_from: Optional[int] = None,
        on_logits: Optional[LogitsCallback] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        """Evaluate ``tokens`` after what the context holds.

        Args:
            tokens: the ids.
            outputs_from: index into ``tokens`` from which every token's logits are
                computed and passed to ``on_logits``; default ``None`` = only the last.
            on_logits: ``on_logits(i0, logits)`` per micro-batch with outputs, ``logits``
                of shape ``(k, n_vocab)`` for ``tokens[i0:i0+k]`` (valid during the call).
            progress: ``progress(done, total)`` after each micro-batch.
        """
        lc, b = self.lc, self._batch
        total = len(tokens)
        if self.n_tokens + total > self.spec.n_ctx:
            raise SeLocalError(f"{self.n_tokens + total} tokens do not fit the context of {self.spec.n_ctx}")
        grp = self.spec.method == "grp-attn" and self.spec.G > 1
        for start in range(0, total, self.n_batch):
            if grp:
                self._grp_shift()
            chunk = tokens[start : start + self.n_batch]
            n = len(chunk)
            first_out = None
            for k, t in enumerate(chunk):
                i = start + k
                b.token[k] = int(t)
                b.pos[k] = self.n_past + k
                b.n_seq_id[k] = 1
                b.seq_id[k][0] = 0
                out = i == total - 1 or (outputs_from is not None and i >= outputs_from)
                b.logits[k] = out
                if out and first_out is None:
                    first_out = k
            b.n_tokens = n
            rc = lc.llama_decode(self.ctx, b)
            if rc != 0:
                raise SeLocalError(f"llama_decode failed with code {rc} ({self.spec.method}, n_past={self.n_past})")
            self.n_past += n
            self.n_tokens += n
            self.history.extend(int(t) for t in chunk)
            if first_out is not None:
                k_out = n - first_out
                ptr = lc.llama_get_logits(self.ctx)
                logits = np.ctypeslib.as_array(ptr, shape=(k_out, self.model.n_vocab))
                self._last = logits[-1].copy()
                if on_logits is not None and outputs_from is not None:
                    on_logits(start + first_out, logits)
            if progress is not None:
                progress(min(start + n, total), total)

    def last_logits(self) -> np.ndarray:
        """Logits of the last evaluated token."""
        if self._last is None:
            raise SeLocalError("no logits: evaluate some tokens first")
        return self._last

    def greedy(self, max_tokens: int) -> List[int]:
        """Decode greedily from the last logits; stop at an end-of-generation token."""
        out: List[int] = []
        for step in range(max_tokens):
            tok = int(np.argmax(self.last_logits()))
            if self.model.is_eog(tok):
                break
            out.append(tok)
            if step + 1 < max_tokens and self.n_tokens < self.spec.n_ctx:
                self.eval([tok])
            else:
                break
        return out

    def close(self) -> None:
        if self._batch is not None:
            self.lc.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            self.lc.llama_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
