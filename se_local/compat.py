"""``se_local.Llama``: llama-cpp-python's ``Llama`` with Self-Extend.

Code written against ``llama_cpp.Llama`` keeps working: construct the model through
se-local and every call (``create_completion``, ``create_chat_completion``,
``stream=True``, ``__call__``, ``tokenize``, the chat handlers, ...) is llama-cpp-python's
own, running on se-local's patched llama.cpp::

    from se_local import Llama

    llm = Llama("mistral-7b-instruct.Q4_K_M.gguf", target_ctx=32768)  # or n_ctx=32768
    out = llm.create_chat_completion(messages=[{"role": "user", "content": long_text + "\\n\\nSummarize."}])

What se-local adds, in :meth:`Llama.__init__` only:

1. the context size comes from the planner: ``target_ctx`` (or llama-cpp-python's
   ``n_ctx``) beyond the model's trained length ``L`` plans a group ``G`` and window ``W``;
2. right after llama-cpp-python creates its context, Self-Extend is switched on in it
   (``llama_set_self_extend`` on ``self._ctx.ctx``).

llama-cpp-python 0.3.36 creates its ``llama_context`` in ``__init__`` only; ``reset()``
and ``load_state()`` keep the context, so Self-Extend stays on. Unpickling calls
``__init__`` again with :meth:`Llama.__getstate__`, which carries the plan's inputs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Union

from . import _lib
from .default_model import default_model_path
from .errors import ConfigError, PlanWarning, SelfExtendError, SelfExtendUnavailableWarning
from .gguf_info import ModelInfo, read_info
from .planner import Plan, plan

import llama_cpp  # after _lib, which points llama-cpp-python at se-local's library

__all__ = ["Llama"]


class Llama(llama_cpp.Llama):
    """``llama_cpp.Llama`` on se-local's library, with a planned context and Self-Extend.

    Args:
        model_path: the ``.gguf`` file; default ``None`` = the embedded SmolLM2-135M-Instruct.
        target_ctx: context length to allocate, in tokens; default ``None`` = ``n_ctx``
            if given (``0`` = the trained length, as in llama-cpp-python), else the
            model's trained length ``L``. Beyond ``L``, Self-Extend is planned.
        group: Self-Extend group size ``G``; default ``None`` = the planner's choice.
        window: Self-Extend neighbor window ``W``; default ``None`` = ``min(1024, L // 4)``.
        **llama_kwargs: every other argument of ``llama_cpp.Llama``, unchanged, except
            two defaults: ``flash_attn=True`` (as :class:`se_local.Model`) and
            ``verbose=False`` (llama.cpp's log goes to the ``se_local.llama`` logger).

    Raises:
        ModelFileError: the file is missing or not GGUF.
        PlanError: no Self-Extend plan reaches ``target_ctx``.
        ConfigError: ``target_ctx`` and ``n_ctx`` disagree.
        SelfExtendError: llama.cpp refused the plan's Self-Extend parameters.
        ValueError: llama-cpp-python could not load the model or create the context.

    Warns:
        PlanWarning: the given group/window break the paper's rule.
        SelfExtendUnavailableWarning: the plan needs Self-Extend but the library lacks it.
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike, None] = None,
        *,
        target_ctx: Optional[int] = None,
        group: Optional[int] = None,
        window: Optional[int] = None,
        **llama_kwargs: Any,
    ) -> None:
        self.self_extend_active = False
        """Whether Self-Extend is switched on in the native context."""
        self.self_extend_path = "off"  # "fused" or "portable" once set (see se_local.Model.self_extend_path)
        path = Path(model_path).expanduser() if model_path is not None else default_model_path()
        info = read_info(path)
        n_ctx = llama_kwargs.pop("n_ctx", None)
        if target_ctx is None:
            target_ctx = n_ctx or info.context_length
        elif n_ctx and n_ctx != target_ctx:
            raise ConfigError(f"n_ctx={n_ctx} and target_ctx={target_ctx} disagree; pass one of them")
        p = plan(info.context_length, target_ctx, window=window, group=group)
        if p.warning:
            warnings.warn(p.warning, PlanWarning, stacklevel=2)
        self._se_info = info
        self._se_plan = p
        self._se_request = dict(target_ctx=p.N, group=group, window=window)
        llama_kwargs.setdefault("flash_attn", True)
        llama_kwargs.setdefault("verbose", False)
        _lib.backend_init()
        super().__init__(model_path=str(path), n_ctx=p.N, **llama_kwargs)
        if p.self_extend:
            try:
                self._enable_self_extend()
            except BaseException:
                self.close()
                raise

    def _enable_self_extend(self) -> None:
        p = self._se_plan
        if not _lib.HAS_SELF_EXTEND:
            warnings.warn(
                f"this build of se-local has no Self-Extend yet: the context of N={p.N} tokens runs "
                f"vanilla attention, and text beyond the trained L={p.L} tokens will likely be garbled",
                SelfExtendUnavailableWarning,
                stacklevel=3,
            )
            return
        rc = _lib.set_self_extend(self._ctx.ctx, p.G, p.W, -1)
        if rc < 0:
            raise SelfExtendError(
                f"llama.cpp refused Self-Extend G={p.G} W={p.W} for {Path(self.model_path).name} "
                f"({self._se_info.architecture}, code {rc}); see the se_local.llama log"
            )
        self.self_extend_active = True
        self.self_extend_path = _lib.self_extend_path(self._ctx.ctx)

    @property
    def plan(self) -> Plan:
        """The Self-Extend plan the context was created with."""
        return self._se_plan

    @property
    def info(self) -> ModelInfo:
        """The model file's metadata."""
        return self._se_info

    def close(self) -> None:
        """Free the native context and model (safe after a failed ``__init__`` too)."""
        if hasattr(self, "_stack"):  # absent when se-local refused the arguments before loading
            super().close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        """Free the native context and model (as :meth:`close`), like :class:`se_local.Model`."""
        self.close()

    def save_state(self) -> llama_cpp.LlamaState:
        """llama-cpp-python's state, tagged with how the K cache stores keys (see :meth:`load_state`)."""
        state = super().save_state()
        state.se_k_rotated = _lib.k_cache_rotated(self._ctx.ctx)
        return state

    def load_state(self, state: llama_cpp.LlamaState) -> None:
        """llama-cpp-python's ``load_state``, refusing a state whose keys are stored another way.

        llama.cpp stores a quantized K cache (q8_0, ...) Hadamard-rotated when the head size is a multiple of 64, but
        not while Self-Extend is on (a rotated key cannot be re-rotated to its group position). A state saved with
        Self-Extend off loaded into a context with it on, or the reverse, would give wrong attention without an error.

        Raises:
            SelfExtendError: the state was saved (by ``se_local.Llama``) with the other key layout; nothing is loaded.
        """
        saved = getattr(state, "se_k_rotated", None)
        here = _lib.k_cache_rotated(self._ctx.ctx)
        if saved is not None and bool(saved) != here:
            how = {True: "Hadamard-rotated (a quantized K cache without Self-Extend)",
                   False: "as computed (Self-Extend on, or a K cache that llama.cpp does not rotate)"}
            raise SelfExtendError(
                f"this state's keys are stored {how[bool(saved)]}, but this context stores them {how[here]}; "
                "load it into a Llama with the same context size and K cache type, or use an f16 K cache"
            )
        super().load_state(state)

    def __getstate__(self) -> Dict[str, Any]:
        """llama-cpp-python's state plus the plan's inputs, so that unpickling plans the same context."""
        state = super().__getstate__()
        state.pop("n_ctx", None)
        state.update(self._se_request)
        return state

    def __repr__(self) -> str:
        p = self._se_plan
        se = f"G={p.G} W={p.W}" if self.self_extend_active else "off"
        return f"se_local.Llama({Path(self.model_path).name!r}, L={p.L}, n_ctx={p.N}, self_extend={se})"
