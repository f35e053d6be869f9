"""The native library: where it is, how it is loaded, what our patches add to it.

This module is the one home of library discovery. Importing it

1. finds the folder holding ``libllama`` (and the ``libggml*`` libraries beside it):
   the environment variable ``SE_LOCAL_LIB_PATH`` if set, else ``se_local/lib`` next to
   this package, else ``se_local/lib`` of the installed ``se-local`` distribution
   (so a source checkout imported ahead of the installed package still finds it);
2. points ``LLAMA_CPP_LIB_PATH`` at it and imports llama-cpp-python's ``llama_cpp``,
   whose ctypes declarations of ``llama.h`` then run against *our* patched library;
3. routes llama.cpp's log to the Python logger ``se_local.llama``;
4. declares, with ctypes, only the functions our patches add (Self-Extend).

``HAS_SELF_EXTEND`` is ``False`` on a library built without the Self-Extend patch;
callers then run vanilla attention and warn.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Deque, List, Optional, Tuple

from .errors import MemoryLimitError, NativeLibraryError

__all__ = [
    "HAS_SELF_EXTEND",
    "LIB_DIR",
    "backend_init",
    "get_self_extend",
    "k_cache_rotated",
    "lib",
    "llama_cpp",
    "recent_errors",
    "self_extend_path",
    "set_self_extend",
]

ENV_LIB_PATH = "SE_LOCAL_LIB_PATH"
"""Environment variable that overrides where the native library is loaded from."""

_REINSTALL_HINT = (
    "reinstall with `pip install --force-reinstall --no-deps .` from the se-local source folder, "
    f"or set {ENV_LIB_PATH} to a folder that holds libllama"
)

log = logging.getLogger("se_local.llama")


# ---------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------


def _lib_names() -> Tuple[str, ...]:
    if sys.platform == "win32":
        return ("llama.dll", "libllama.dll")
    if sys.platform == "darwin":
        return ("libllama.dylib", "libllama.so")
    return ("libllama.so",)


def _has_lib(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _lib_names())


def find_lib_dir() -> Path:
    """The folder holding se-local's ``libllama``.

    Raises:
        NativeLibraryError: no folder holds it.
    """
    override = os.environ.get(ENV_LIB_PATH)
    if override:
        folder = Path(override).expanduser()
        if not _has_lib(folder):
            raise NativeLibraryError(
                f"{ENV_LIB_PATH}={override} holds no {_lib_names()[0]}; {_REINSTALL_HINT}"
            )
        return folder.resolve()
    candidates: List[Path] = [Path(__file__).resolve().parent / "lib"]
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            candidates.append(Path(str(distribution("se-local").locate_file("se_local/lib"))))
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - Python < 3.8
        pass
    for folder in candidates:
        if _has_lib(folder):
            return folder.resolve()
    raise NativeLibraryError(
        f"se-local's native library is not built (no {_lib_names()[0]} in {candidates[0]}); {_REINSTALL_HINT}"
    )


def _import_llama_cpp(folder: Path):
    """Import ``llama_cpp`` against the library in ``folder``; return its ``llama_cpp.llama_cpp``."""
    already = sys.modules.get("llama_cpp.llama_cpp")
    if already is None:
        os.environ["LLAMA_CPP_LIB_PATH"] = str(folder)
    try:
        import llama_cpp.llama_cpp as module  # the package import runs its loader
    except (OSError, RuntimeError, FileNotFoundError) as e:
        raise NativeLibraryError(
            f"se-local's native library in {folder} failed to load ({e}); {_REINSTALL_HINT}"
        ) from e
    loaded = Path(getattr(module._lib, "_name", "") or "")
    if already is not None and loaded.parent.resolve() != folder:
        log.warning(
            "llama_cpp was imported before se_local and runs %s, not se-local's library in %s; "
            "import se_local first (or set LLAMA_CPP_LIB_PATH=%s) to get Self-Extend",
            loaded,
            folder,
            folder,
        )
    return module


LIB_DIR: Path = find_lib_dir()
llama_cpp = _import_llama_cpp(LIB_DIR)
lib: ctypes.CDLL = llama_cpp._lib


# ---------------------------------------------------------------------------
# llama.cpp's log → logging
# ---------------------------------------------------------------------------

# enum ggml_log_level (ggml.h of the pinned llama.cpp; llama_cpp/_logger.py has an older order):
#     NONE = 0, DEBUG = 1, INFO = 2, WARN = 3, ERROR = 4, CONT = 5 (continue previous log)
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_LOG_LEVEL_CONT = 5

_pending: List[str] = []  # text of the current line, until its newline arrives
_pending_level = logging.INFO
_recent_errors: Deque[str] = collections.deque(maxlen=8)


def _emit(level: int, text: str) -> None:
    text = text.rstrip()
    if not text:
        return
    if level >= logging.ERROR:
        _recent_errors.append(text)
    log.log(level, "%s", text)


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: Optional[bytes], user_data: ctypes.c_void_p) -> None:
    """Receive one piece of llama.cpp log text; emit a log record per complete line."""
    global _pending_level
    try:
        piece = (text or b"").decode("utf-8", errors="replace")
        if level != _GGML_LOG_LEVEL_CONT:
            if _pending:  # a new message starts: flush the unfinished one
                _emit(_pending_level, "".join(_pending))
                _pending.clear()
            _pending_level = _LEVELS.get(level, logging.INFO)
        _pending.append(piece)
        if piece.endswith("\n"):
            _emit(_pending_level, "".join(_pending))
            _pending.clear()
    except Exception:  # never let an exception cross into C
        pass


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def recent_errors() -> List[str]:
    """The last few error lines llama.cpp logged (to explain a failed load), oldest first."""
    return list(_recent_errors)


def clear_recent_errors() -> None:
    """Forget the error lines collected so far."""
    _recent_errors.clear()


_backend_ready = False


def backend_init() -> None:
    """Initialize llama.cpp's backends once per process (idempotent)."""
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True


# ---------------------------------------------------------------------------
# What our patches add
# ---------------------------------------------------------------------------

HAS_SELF_EXTEND: bool = all(
    hasattr(lib, name)
    for name in ("llama_set_self_extend", "llama_get_self_extend", "llama_get_self_extend_fused", "llama_get_k_cache_rotated")
)
"""Whether the loaded library carries the Self-Extend patch."""

if HAS_SELF_EXTEND:
    from llama_cpp._ctypes_extensions import ctypes_function_for_shared_library

    _ctypes_function = ctypes_function_for_shared_library(lib)

    # // n_group = 1 turns Self-Extend off. pos_min: queries at positions < pos_min attend plainly
    # // (adaptive mode); -1 = the model's trained context length; 0 = Self-Extend for every query.
    # // returns 0 on success, < 0 if the parameters are invalid or the model's attention cannot use it
    # LLAMA_API int32_t llama_set_self_extend(struct llama_context * ctx,
    #                                         int32_t n_group, int32_t n_window, int32_t pos_min);
    @_ctypes_function(
        "llama_set_self_extend",
        [llama_cpp.llama_context_p_ctypes, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32],
        ctypes.c_int32,
    )
    def llama_set_self_extend(ctx, n_group: int, n_window: int, pos_min: int, /) -> int:
        """Set Self-Extend's group size and neighbor window on a context."""
        ...

    # LLAMA_API void llama_get_self_extend(const struct llama_context * ctx,
    #                                      int32_t * n_group, int32_t * n_window, int32_t * pos_min);
    @_ctypes_function(
        "llama_get_self_extend",
        [
            llama_cpp.llama_context_p_ctypes,
            ctypes.POINTER(ctypes.c_int32),
            ctypes.POINTER(ctypes.c_int32),
            ctypes.POINTER(ctypes.c_int32),
        ],
        None,
    )
    def llama_get_self_extend(ctx, n_group, n_window, pos_min, /) -> None:
        """Read a context's Self-Extend group size, neighbor window and ``pos_min``."""
        ...

    # LLAMA_API bool llama_get_self_extend_fused(const struct llama_context * ctx);
    @_ctypes_function("llama_get_self_extend_fused", [llama_cpp.llama_context_p_ctypes], ctypes.c_bool)
    def llama_get_self_extend_fused(ctx, /) -> bool:
        """Whether Self-Extend is set and runs in the fused flash-attention op (else the portable path)."""
        ...

    # LLAMA_API bool llama_get_k_cache_rotated(const struct llama_context * ctx);
    @_ctypes_function("llama_get_k_cache_rotated", [llama_cpp.llama_context_p_ctypes], ctypes.c_bool)
    def llama_get_k_cache_rotated(ctx, /) -> bool:
        """Whether the K cache stores keys Hadamard-rotated (quantized K, head size % 64 == 0, Self-Extend not set)."""
        ...


def set_self_extend(ctx, n_group: int, n_window: int, pos_min: int = -1) -> int:
    """Set Self-Extend on ``ctx``; return llama.cpp's code (0 = success, < 0 = refused).

    Args:
        ctx: a ``llama_context`` pointer.
        n_group: group size ``G``; 1 turns Self-Extend off.
        n_window: neighbor window ``W``, in tokens.
        pos_min: queries at positions below it attend plainly; default -1 = the model's
            trained context length (adaptive mode); 0 = Self-Extend for every query.

    Raises:
        NativeLibraryError: the library has no Self-Extend (check ``HAS_SELF_EXTEND``).
        MemoryLimitError: the compute buffers for the Self-Extend graphs, which llama.cpp
            reserves right away, do not fit (code -4; the previous parameters stay in effect).
    """
    if not HAS_SELF_EXTEND:
        raise NativeLibraryError(f"the native library in {LIB_DIR} has no Self-Extend; {_REINSTALL_HINT}")
    rc = int(llama_set_self_extend(ctx, n_group, n_window, pos_min))
    if rc == -4:
        raise MemoryLimitError(
            f"not enough memory for the compute buffers of Self-Extend (G={n_group}, W={n_window}); "
            "try a smaller --target-ctx or batch size, or fewer GPU layers (the se_local.llama log has details)"
        )
    return rc


def self_extend_path(ctx) -> str:
    """How Self-Extend runs on ``ctx``: ``"fused"`` (the flash-attention op), ``"portable"`` (existing ggml ops:
    flash attention off, or a GPU without the fused op for this model, e.g. CUDA at head size 256 or with
    logit softcap at head sizes 80/96/112, or Metal) or ``"off"``."""
    if get_self_extend(ctx)[0] <= 1:
        return "off"
    return "fused" if llama_get_self_extend_fused(ctx) else "portable"


def k_cache_rotated(ctx) -> bool:
    """Whether ``ctx`` stores keys Hadamard-rotated: llama.cpp does so for a quantized K cache whose head size is a
    multiple of 64, except while Self-Extend is set. State saved with one layout must not be loaded into a context with
    the other (``se_local.Llama.load_state`` checks it)."""
    return bool(HAS_SELF_EXTEND and llama_get_k_cache_rotated(ctx))


def get_self_extend(ctx) -> Tuple[int, int, int]:
    """``(n_group, n_window, pos_min)`` of ``ctx``; ``(1, 0, -1)`` without the patch."""
    if not HAS_SELF_EXTEND:
        return (1, 0, -1)
    g, w, p = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
    llama_get_self_extend(ctx, ctypes.byref(g), ctypes.byref(w), ctypes.byref(p))
    return (g.value, w.value, p.value)
