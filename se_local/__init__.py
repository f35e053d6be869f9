"""se-local: run GGUF models on prompts longer than their trained context, by Self-Extend.

Quick start::

    from se_local import Model

    with Model(target_ctx=16384) as model:          # the embedded SmolLM2-135M-Instruct
        prompt = model.apply_chat_template([{"role": "user", "content": "Tell me a story."}], tokenize=True)
        for piece in model.generate(prompt, max_tokens=64, temperature=0):
            print(piece, end="", flush=True)

The planner and the metadata reader need no native library::

    from se_local import plan, read_info
    print(plan(8192, 32768))                        # G=11, W=1024

Code written against llama-cpp-python gets Self-Extend through ``se_local.Llama``
(a ``llama_cpp.Llama`` with a planned context)::

    from se_local import Llama
    llm = Llama("model.gguf", n_ctx=32768)   # Self-Extend beyond the trained length
    llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}])

``Model``, ``Llama``, ``ChatSession`` (everything that loads llama.cpp) are imported on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    ContextLengthError,
    GenerationCancelled,
    MemoryLimitError,
    ModelBusyError,
    ModelFileError,
    NativeLibraryError,
    PlanError,
    PlanWarning,
    SelfExtendError,
    SelfExtendUnavailableWarning,
    SeLocalError,
)
from .gguf_info import ModelInfo, read_info
from .planner import Plan, plan

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ChatSession",
    "ConfigError",
    "ContextLengthError",
    "GenerationCancelled",
    "GenerationResponse",
    "Llama",
    "MemoryLimitError",
    "Model",
    "ModelBusyError",
    "ModelFileError",
    "ModelInfo",
    "NativeLibraryError",
    "Plan",
    "PlanError",
    "PlanWarning",
    "SeLocalError",
    "SelfExtendError",
    "SelfExtendUnavailableWarning",
    "default_model_path",
    "plan",
    "read_info",
]

# a library logs, the application decides where it goes
logging.getLogger("se_local").addHandler(logging.NullHandler())

_LAZY = {
    "Model": ("se_local.model", "Model"),
    "GenerationResponse": ("se_local.generate", "GenerationResponse"),
    "default_model_path": ("se_local.default_model", "default_model_path"),
    "ChatSession": ("se_local.chat", "ChatSession"),
    "Llama": ("se_local.compat", "Llama"),
}

if TYPE_CHECKING:
    from .chat import ChatSession
    from .compat import Llama
    from .default_model import default_model_path
    from .generate import GenerationResponse
    from .model import Model


def __getattr__(name: str) -> Any:
    """Import ``Model`` and friends on first use (loading the native library then)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'se_local' has no attribute {name!r}")
