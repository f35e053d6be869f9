"""A cancel flag that llama.cpp's compute loop polls without Python.

``llama_set_abort_callback(ctx, callback, data)`` makes ggml call ``callback(data)``
after every node of the compute graph and stop the graph when it returns true;
``llama_decode`` then returns 2 and drops the unfinished micro-batch from the KV
cache (the finished ones stay). A Python callback would take the GIL some hundred
times per token (a measurable slowdown, and a stall whenever another Python thread
is busy), so the callback is the C library's ``strlen`` and ``data`` a two-byte
buffer: ``strlen`` returns 0 while the buffer holds ``""`` and 1 once :meth:`AbortFlag.set`
wrote ``"x"``, and a C ``bool`` result is read from the same register. Where libc
cannot be found the flag is still checked between micro-batches and tokens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

from . import _lib

__all__ = ["AbortFlag"]

llama_cpp = _lib.llama_cpp


def _strlen() -> Optional[int]:
    """The address of the C library's ``strlen``, ``None`` if not found."""
    try:
        if sys.platform == "win32":
            libc = ctypes.cdll.msvcrt
        else:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        return ctypes.cast(libc.strlen, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


_STRLEN = _strlen()


class AbortFlag:
    """A flag another thread sets to stop llama.cpp's computation on a context."""

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(2)  # b"\0\0": strlen = 0 = keep going

    def install(self, ctx) -> bool:
        """Make llama.cpp poll this flag while it computes on ``ctx``; ``False`` if it cannot."""
        if _STRLEN is None:
            return False
        callback = ctypes.cast(ctypes.c_void_p(_STRLEN), llama_cpp.ggml_abort_callback)
        llama_cpp.llama_set_abort_callback(ctx, callback, ctypes.cast(self._buf, ctypes.c_void_p))
        return True

    def set(self) -> None:
        """Ask the computation to stop (any thread)."""
        self._buf[0] = b"x"

    def clear(self) -> None:
        """Let computations run again."""
        self._buf[0] = b"\0"

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._buf[0] != b"\0"
