"""The exceptions se-local raises.

Every error that a user can cause (a wrong path, an unreachable target length, a
prompt longer than the context) is a :class:`SeLocalError` whose message is one
readable line that names the numbers and says how to fix it. The command line
prints that line and exits with status 1; anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "SeLocalError",
    "ConfigError",
    "ContextLengthError",
    "GenerationCancelled",
    "MemoryLimitError",
    "ModelBusyError",
    "ModelFileError",
    "NativeLibraryError",
    "PlanError",
    "PlanWarning",
    "SelfExtendError",
    "SelfExtendUnavailableWarning",
]


class SeLocalError(Exception):
    """Base class of every error se-local raises on purpose."""


class ModelFileError(SeLocalError):
    """The model file is missing, not a GGUF file, truncated, or lacks required metadata."""


class PlanError(SeLocalError, ValueError):
    """No valid Self-Extend plan (group G, window W) exists for the request."""


class ConfigError(SeLocalError, ValueError):
    """An option has an invalid value (a thread count, a KV cache type, ...)."""


class ContextLengthError(SeLocalError):
    """The prompt does not fit the context the model was opened with."""


class MemoryLimitError(SeLocalError):
    """The context (KV cache and compute buffers) would not fit in the memory available."""


class ModelBusyError(SeLocalError):
    """The model is running another generation; one ``Model`` generates one thing at a time."""


class GenerationCancelled(SeLocalError):
    """:meth:`Model.cancel` stopped the computation (generation itself ends quietly instead)."""


class NativeLibraryError(SeLocalError):
    """se-local's native library (the patched llama.cpp) is missing or failed."""


class SelfExtendError(SeLocalError):
    """llama.cpp refused the Self-Extend parameters for this model or context."""


class SelfExtendUnavailableWarning(UserWarning):
    """The native library has no Self-Extend: a target beyond L runs vanilla attention."""


class PlanWarning(UserWarning):
    """User-given G/W reach the target but break the paper's rule ``L/2 > W + (N-W)/G``."""
