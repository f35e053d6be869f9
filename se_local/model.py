"""``Model``: a GGUF model opened for a target context length, with Self-Extend when needed.

Opening a model goes in this order, and each step can fail with a clear
:class:`~se_local.errors.SeLocalError` before the next one costs anything:

1. check the file's header for what would make llama.cpp abort the process
   (:func:`~se_local.validate.check_model_file`), read its metadata
   (:func:`~se_local.gguf_info.read_info`; no weights);
2. plan the group ``G`` and window ``W`` for the target length (:func:`~se_local.planner.plan`);
3. load the weights (memory-mapped), check that the context fits in memory
   (:func:`~se_local.memory.check_memory`), create a llama.cpp context of ``plan.N`` tokens;
4. switch Self-Extend on when the plan says so (or warn when the library lacks it).

Generation itself lives in :mod:`se_local.generate`; the methods here are the
low-level steps it is built from (tokenize, prefill, decode one token, sample).
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Union

from . import _lib
from .default_model import default_model_path
from ._abort import AbortFlag
from .errors import (
    ConfigError,
    ContextLengthError,
    GenerationCancelled,
    ModelBusyError,
    ModelFileError,
    PlanError,
    PlanWarning,
    SelfExtendError,
    SelfExtendUnavailableWarning,
    SeLocalError,
)
from .gguf_info import ModelInfo, read_info
from .planner import Plan, plan
from .memory import check_memory
from .validate import check_model_file

if TYPE_CHECKING:
    from .generate import GenerationResponse

__all__ = ["Model", "KV_TYPES"]

llama_cpp = _lib.llama_cpp

ProgressCallback = Callable[[int, int], None]

DEFAULT_N_BATCH = 512
"""Tokens per prefill micro-batch (and llama.cpp's ``n_batch``/``n_ubatch``)."""

KV_TYPES: Dict[str, int] = {
    "f32": llama_cpp.GGML_TYPE_F32,
    "f16": llama_cpp.GGML_TYPE_F16,
    "bf16": 30,  # GGML_TYPE_BF16
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q5_1": llama_cpp.GGML_TYPE_Q5_1,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0,
    "q4_1": llama_cpp.GGML_TYPE_Q4_1,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
    "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL,
}
"""KV cache element types by name (quantized V needs flash attention)."""

_ALL_LAYERS = 0x7FFFFFFF  # n_gpu_layers: llama.cpp clamps it to the model's layer count


def default_threads() -> int:
    """CPU threads to use by default: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Model:
    """A GGUF model with a context for ``target_ctx`` tokens.

    Args:
        path: the ``.gguf`` file; default ``None`` = the embedded SmolLM2-135M-Instruct.
        target_ctx: context length to allocate, in tokens; default ``None`` = the
            model's trained length ``L``. Beyond ``L``, Self-Extend is planned.
        group: Self-Extend group size ``G``; default ``None`` = the planner's choice.
        window: Self-Extend neighbor window ``W``; default ``None`` = ``min(1024, L // 4)``.
        n_threads: CPU threads; default ``None`` = every CPU this process may use.
        n_gpu_layers: layers to offload to the GPU; default 0; -1 = all.
        flash_attn: use flash attention; default ``True``.
        n_batch: tokens per prefill micro-batch; default 512.
        kv_type: KV cache type, a key of :data:`KV_TYPES`; default ``"f16"``.

    Raises:
        ModelFileError: the file is missing, not GGUF, malformed (see :mod:`se_local.validate`),
            or llama.cpp cannot load it.
        PlanError: no Self-Extend plan reaches ``target_ctx``.
        ConfigError: an option is out of range.
        SelfExtendError: llama.cpp refused the plan's Self-Extend parameters.
        MemoryLimitError: the context would not fit in the memory available (checked
            before allocating; see :mod:`se_local.memory`).
        SeLocalError: llama.cpp could not create the context (e.g. out of memory).

    Warns:
        PlanWarning: the given group/window break the paper's rule.
        SelfExtendUnavailableWarning: the plan needs Self-Extend but the library
            lacks it; the model then runs vanilla attention beyond ``L``.

    One model runs one generation at a time: starting another while one runs (from
    any thread) raises :class:`~se_local.errors.ModelBusyError`; two ``Model`` objects
    generate in parallel. :meth:`cancel` (any thread) stops the running generation
    within one micro-batch. Native calls are serialized, so :meth:`close` from another
    thread waits for (and cancels) the computation in flight. Close the model (or use
    ``with``) to free native memory.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike, None] = None,
        *,
        target_ctx: Optional[int] = None,
        group: Optional[int] = None,
        window: Optional[int] = None,
        n_threads: Optional[int] = None,
        n_gpu_layers: int = 0,
        flash_attn: bool = True,
        n_batch: int = DEFAULT_N_BATCH,
        kv_type: str = "f16",
    ) -> None:
        self._stack = ExitStack()
        self._model = None
        self._ctx = None
        self._vocab = None
        self._kv_tokens: List[int] = []  # the tokens the KV cache holds, in order (see keep_prefix)
        self._abort = AbortFlag()  # set by cancel(); llama.cpp's compute loop polls it
        self._busy = threading.Lock()  # held by the one generation running (see session)
        self._native = threading.RLock()  # held during every native call on the model or context
        self.self_extend_active = False
        """Whether Self-Extend is switched on in the native context."""
        self.self_extend_path = "off"
        """How it runs there: ``"fused"`` (the flash-attention op), ``"portable"`` (existing ggml ops: flash
        attention off, or a GPU without the fused op for this model) or ``"off"``."""

        self.path = Path(path).expanduser() if path is not None else default_model_path()
        check_model_file(self.path)  # what would make llama.cpp abort the process
        self._info = read_info(self.path)
        L = self._info.context_length
        self._plan = plan(L, L if target_ctx is None else target_ctx, window=window, group=group)
        self.n_threads = _positive("n_threads", n_threads) if n_threads is not None else default_threads()
        self.n_batch = min(_positive("n_batch", n_batch), self._plan.N)
        if kv_type not in KV_TYPES:
            raise ConfigError(f"kv_type={kv_type!r} is unknown; use one of {', '.join(KV_TYPES)}")
        if isinstance(n_gpu_layers, bool) or not isinstance(n_gpu_layers, int):
            raise ConfigError(f"n_gpu_layers must be an integer (-1 = all), got {n_gpu_layers!r}")
        if self._plan.warning:
            warnings.warn(self._plan.warning, PlanWarning, stacklevel=2)
        try:
            self._load(n_gpu_layers, flash_attn, kv_type)
        except BaseException:
            self.close()
            raise

    # -----------------------------------------------------------------------
    # Opening and closing
    # -----------------------------------------------------------------------

    def _load(self, n_gpu_layers: int, flash_attn: bool, kv_type: str) -> None:
        _lib.backend_init()
        _lib.clear_recent_errors()

        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = _ALL_LAYERS if n_gpu_layers < 0 else n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode("utf-8"), mparams)
        if not model:
            raise ModelFileError(f"llama.cpp could not load {self.path}{_why()}")
        self._model = model
        self._stack.callback(llama_cpp.llama_model_free, model)
        # llama.cpp has checked the hyperparameters against the tensors; before it allocates
        # the KV cache and compute buffers: MemoryLimitError with the estimate
        n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        check_memory(
            self._info, self._plan.N, n_batch=self.n_batch, kv_type=kv_type, flash_attn=flash_attn,
            n_gpu_layers=n_gpu_layers, n_vocab=n_vocab,
        )

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self._plan.N
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.type_k = KV_TYPES[kv_type]
        cparams.type_v = KV_TYPES[kv_type]
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            raise SeLocalError(
                f"llama.cpp could not create a context of {self._plan.N} tokens for {self.path.name}{_why()}"
            )
        self._ctx = ctx
        self._stack.callback(llama_cpp.llama_free, ctx)
        self._abort.install(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(model)

        if self._plan.self_extend:
            self._enable_self_extend()

    def _enable_self_extend(self) -> None:
        p = self._plan
        if not _lib.HAS_SELF_EXTEND:
            msg = (
                f"this build of se-local has no Self-Extend yet: the context of N={p.N} tokens runs vanilla "
                f"attention, and text beyond the trained L={p.L} tokens will likely be garbled"
            )
            warnings.warn(msg, SelfExtendUnavailableWarning, stacklevel=3)
            return
        rc = _lib.set_self_extend(self._ctx, p.G, p.W, -1)
        if rc < 0:
            raise SelfExtendError(
                f"llama.cpp refused Self-Extend G={p.G} W={p.W} for {self.path.name} "
                f"({self._info.architecture}, code {rc}){_why()}"
            )
        self.self_extend_active = True
        self.self_extend_path = _lib.self_extend_path(self._ctx)

    def close(self) -> None:
        """Free the native context and model (safe to call twice, or after a failed init).

        From another thread it cancels the computation in flight and waits for it to stop;
        the generation there then ends with :class:`~se_local.errors.SeLocalError`
        ("the model is closed").
        """
        self._abort.set()
        with self._native:
            self._stack.close()
            self._model = self._ctx = self._vocab = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        p = self._plan
        se = f"G={p.G} W={p.W}" if p.self_extend else "off"
        return f"Model({self.path.name!r}, L={p.L}, n_ctx={p.N}, self_extend={se})"

    # -----------------------------------------------------------------------
    # Cancelling, and one generation at a time
    # -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the generation running now, from any thread; no effect when none runs.

        The prefill stops within the micro-batch being computed (llama.cpp drops that
        micro-batch from the KV cache; the finished ones stay) and generation stops
        before the next token; the stream then ends with ``finish_reason="cancelled"``.
        The model stays usable.
        """
        if self._busy.locked():
            self._abort.set()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold the model for one generation (:func:`se_local.generate.stream_generate` does).

        Raises:
            ModelBusyError: another generation holds the model.
        """
        if not self._busy.acquire(blocking=False):
            raise ModelBusyError(
                f"{self.path.name} is busy with another generation; finish (or close) that one first, "
                "or open a second Model for parallel generations"
            )
        self._abort.clear()
        try:
            yield
        finally:
            self._abort.clear()
            self._busy.release()

    # -----------------------------------------------------------------------
    # Properties
    # -----------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        """The model file's metadata."""
        return self._info

    @property
    def plan(self) -> Plan:
        """The Self-Extend plan this context was opened with."""
        return self._plan

    @property
    def n_ctx(self) -> int:
        """Tokens the context holds (llama.cpp's ``llama_n_ctx``)."""
        with self._native:
            return int(llama_cpp.llama_n_ctx(self._live_ctx()))

    # -----------------------------------------------------------------------
    # Tokens
    # -----------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> List[int]:
        """Text → token ids.

        Args:
            text: the text.
            add_special: add BOS/EOS as the model's tokenizer asks; default ``True``.
            parse_special: turn special-token text (``<|im_start|>``) into the special
                tokens; default ``True``.
        """
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            with self._native:
                n = llama_cpp.llama_tokenize(
                    self._live_vocab(), data, len(data), buf, capacity, add_special, parse_special
                )
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """Token ids → text.

        Args:
            tokens: the ids.
            special: render special tokens (``<|im_end|>``) as text; default ``False``.
        """
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        capacity = 8 * len(tokens) + 16
        while True:
            buf = ctypes.create_string_buffer(capacity)
            with self._native:
                n = llama_cpp.llama_detokenize(
                    self._live_vocab(), arr, len(tokens), buf, capacity, False, special
                )
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            capacity = -n

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character); special tokens → ``b""``."""
        buf = ctypes.create_string_buffer(32)
        with self._native:
            n = llama_cpp.llama_token_to_piece(self._live_vocab(), token, buf, 32, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._live_vocab(), token, buf, -n, 0, False)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, ...)."""
        with self._native:
            return bool(llama_cpp.llama_vocab_is_eog(self._live_vocab(), token))

    def apply_chat_template(
        self,
        messages: Sequence[Dict[str, str]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
    ) -> Union[str, List[int]]:
        """Render ``messages`` with the model's own (Jinja2) chat template.

        Args:
            messages: ``[{"role": "user", "content": "..."}, ...]``.
            add_generation_prompt: end with the header of the assistant's turn; default ``True``.
            tokenize: return token ids (the template's own special tokens, nothing added)
                instead of text; default ``False``.

        Raises:
            SeLocalError: the model file has no chat template.
        """
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama_cpp.llama_model_chat_template(self._model, None) if self._model else None
        if not template:
            raise SeLocalError(
                f"{self.path.name} has no chat template; pass the prompt as plain text (--raw)"
            )
        vocab = self._live_vocab()

        def text(token: int) -> str:
            return (
                ""
                if token < 0
                else (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode("utf-8", "replace")
            )

        formatter = Jinja2ChatFormatter(
            template.decode("utf-8"),
            eos_token=text(llama_cpp.llama_vocab_eos(vocab)),
            bos_token=text(llama_cpp.llama_vocab_bos(vocab)),
            add_generation_prompt=add_generation_prompt,
        )
        try:
            rendered = formatter(messages=list(messages)).prompt
        except Exception as e:  # jinja2 errors and the template's raise_exception
            raise SeLocalError(f"the chat template of {self.path.name} failed: {e}") from e
        return self.tokenize(rendered, add_special=False) if tokenize else rendered

    # -----------------------------------------------------------------------
    # Compute steps (used by se_local.generate)
    # -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every token in the context (clears the KV memory)."""
        with self._native:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._live_ctx()), True)
        self._kv_tokens.clear()

    @property
    def n_past(self) -> int:
        """Tokens the context holds now (evaluated by :meth:`prefill`/:meth:`decode` since the last reset)."""
        return len(self._kv_tokens)

    def keep_prefix(self, tokens: Sequence[int]) -> int:
        """Keep the longest prefix of ``tokens`` the context already holds; drop the rest of the cache.

        The prefix is capped at ``len(tokens) - 1`` so that evaluating the remaining
        tokens yields fresh logits. After it, prefill ``tokens[n:]`` to continue.

        Args:
            tokens: the full prompt about to be evaluated.

        Returns:
            ``n``, the number of leading tokens kept (0 = the cache was cleared).
        """
        cached = self._kv_tokens
        limit = min(len(cached), len(tokens) - 1)
        n = 0
        while n < limit and cached[n] == tokens[n]:
            n += 1
        # also drops positions evaluated but not recorded (a decode interrupted by Ctrl-C)
        with self._native:
            kept = llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._live_ctx()), -1, n, -1)
        if not kept:
            self.reset()  # this memory cannot drop a tail (recurrent models): start over
            return 0
        del cached[n:]
        return n

    def check_fits(self, n_prompt: int, max_tokens: int = 1) -> None:
        """Raise :class:`ContextLengthError` unless ``n_prompt`` tokens plus one fit the context.

        Args:
            n_prompt: prompt length, in tokens.
            max_tokens: tokens the caller means to generate, for the suggested fix; default 1.
        """
        n_ctx = self.n_ctx
        if n_prompt > n_ctx - 1:
            want = -(-(n_prompt + max(1, max_tokens)) // 1024) * 1024
            p = self._plan
            now = f"Self-Extend G={p.G} W={p.W}" if p.self_extend else "no Self-Extend"
            try:  # what the planner would choose for the larger context
                nxt = plan(p.L, want, window=p.W if p.self_extend else None)
                then = f" (Self-Extend then plans G={nxt.G} W={nxt.W})" if nxt.self_extend else ""
            except PlanError:
                then = ""
            raise ContextLengthError(
                f"the prompt has {n_prompt} tokens but the context holds {n_ctx} (L={p.L}, {now}; "
                f"the prompt plus at least one generated token must fit); pass --target-ctx {want} "
                f"(target_ctx={want}){then} or a shorter prompt"
            )

    def prefill(self, tokens: Sequence[int], progress: Optional[ProgressCallback] = None) -> None:
        """Evaluate ``tokens`` after what the context already holds, ``n_batch`` at a time.

        Args:
            tokens: the token ids.
            progress: called as ``progress(done, total)`` after each micro-batch; default none.

        Ctrl-C between micro-batches, or :meth:`cancel` during one
        (:class:`~se_local.errors.GenerationCancelled`), stops it; the finished
        micro-batches stay in the context.
        """
        total = len(tokens)
        for start in range(0, total, self.n_batch):
            self.decode(tokens[start : start + self.n_batch])
            if progress is not None:
                progress(min(start + self.n_batch, total), total)

    def decode(self, tokens: Sequence[int]) -> None:
        """Evaluate one batch of at most ``n_batch`` tokens; logits of the last one become available."""
        if self._abort.is_set():
            raise GenerationCancelled("cancelled")
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        with self._native:
            rc = llama_cpp.llama_decode(self._live_ctx(), llama_cpp.llama_batch_get_one(arr, len(tokens)))
        if rc == 1:
            raise ContextLengthError(
                f"the context of {self.n_ctx} tokens is full; pass a larger --target-ctx"
            )
        if rc == 2:  # the abort callback: cancel() (llama.cpp dropped this micro-batch)
            raise GenerationCancelled("cancelled")
        if rc != 0:
            raise SeLocalError(f"llama_decode failed with code {rc}{_why()}")
        self._kv_tokens.extend(tokens)

    def make_sampler(self, *, temperature: float, top_p: float, top_k: int, seed: Optional[int]) -> Sampler:
        """A llama.cpp sampler chain: greedy if ``temperature <= 0``, else top-k → top-p → temp → dist."""
        return Sampler(self, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)

    # -----------------------------------------------------------------------
    # Generation (see se_local.generate)
    # -----------------------------------------------------------------------

    def stream_generate(self, prompt: Union[str, Sequence[int]], **kwargs) -> Iterator[GenerationResponse]:
        """Generate from ``prompt``, one :class:`~se_local.generate.GenerationResponse` per token.

        See :func:`se_local.generate.stream_generate` for the arguments and their defaults.
        """
        from .generate import stream_generate

        return stream_generate(self, prompt, **kwargs)

    def generate(self, prompt: Union[str, Sequence[int]], **kwargs) -> Iterator[str]:
        """Generate from ``prompt``, yielding text pieces (whole UTF-8 characters).

        See :func:`se_local.generate.generate` for the arguments and their defaults.
        """
        from .generate import generate

        return generate(self, prompt, **kwargs)

    def chat(
        self, messages: Sequence[Dict[str, str]], *, stream: bool = True, **kwargs
    ) -> Union[Iterator[str], str]:
        """Answer ``messages`` with the model's chat template, reusing the cached prefix.

        See :func:`se_local.chat.chat` for the arguments and their defaults.
        """
        from .chat import chat

        return chat(self, messages, stream=stream, **kwargs)

    # -----------------------------------------------------------------------

    def _live_ctx(self):
        if self._ctx is None:
            raise SeLocalError("the model is closed")
        return self._ctx

    def _live_vocab(self):
        if self._vocab is None:
            raise SeLocalError("the model is closed")
        return self._vocab


class Sampler:
    """A llama.cpp sampler chain bound to a model's context; free it with :meth:`close`.

    Args:
        model: the model whose last logits it samples.
        temperature: ``<= 0`` = greedy (argmax); else the softmax temperature.
        top_p: nucleus mass kept (``1.0`` = off).
        top_k: candidates kept (``<= 0`` = off).
        seed: RNG seed; ``None`` = random.
    """

    def __init__(
        self, model: Model, *, temperature: float, top_p: float, top_k: int, seed: Optional[int]
    ) -> None:
        self._model = model
        self._chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda s: llama_cpp.llama_sampler_chain_add(self._chain, s)  # noqa: E731
        if temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(top_k))
            if top_p < 1.0:
                add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
            add(llama_cpp.llama_sampler_init_temp(temperature))
            add(
                llama_cpp.llama_sampler_init_dist(
                    llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF
                )
            )

    def sample(self) -> int:
        """Sample (and accept) the next token from the last evaluated position."""
        with self._model._native:
            return int(llama_cpp.llama_sampler_sample(self._chain, self._model._live_ctx(), -1))

    def close(self) -> None:
        """Free the chain (and the samplers in it)."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _why() -> str:
    """``": <llama.cpp's last error lines>"`` or ``""``."""
    errors = _lib.recent_errors()
    return f": {' / '.join(errors[-3:])}" if errors else " (see the se_local.llama log)"
