

# =============================================================================
# >>> exactness-oracle fixtures (tests/reference.py, tests/tinymodel.py,
#     tests/test_tiny_model.py). Self-contained block: other fixtures live
#     outside it; names here are prefixed to avoid collisions.
# =============================================================================
import os as _oracle_os
import sys as _oracle_sys

import pytest as _oracle_pytest

_ORACLE_STATE = {}


def _oracle_find_lib_dir():
    """Directory holding our patched libllama: SE_LOCAL_LIB_PATH, else an
    se_local/lib next to an importable se_local package (installed or not)."""
    env = _oracle_os.environ.get("SE_LOCAL_LIB_PATH")
    if env:
        return env
    import importlib.util
    roots = []
    spec = importlib.util.find_spec("se_local")
    if spec is not None and spec.submodule_search_locations:
        roots += list(spec.submodule_search_locations)
    roots += [_oracle_os.path.join(p, "se_local") for p in _oracle_sys.path if p]
    for root in roots:
        lib = _oracle_os.path.join(root, "lib")
        if any(_oracle_os.path.exists(_oracle_os.path.join(lib, n))
               for n in ("libllama.so", "libllama.dylib", "llama.dll")):
            return lib
    return None


def _oracle_import_llama_cpp():
    """llama-cpp-python's ctypes module bound to se-local's library.

    Prefers se_local._lib (it sets LLAMA_CPP_LIB_PATH, imports llama_cpp and
    routes llama.cpp's log to Python logging); falls back to setting
    LLAMA_CPP_LIB_PATH here and silencing the log. Returns the llama_cpp
    package or raises with the reason."""
    if "llama_cpp" in _ORACLE_STATE:
        return _ORACLE_STATE["llama_cpp"]
    try:
        import se_local._lib as selib
    except ModuleNotFoundError as e:
        if e.name not in ("se_local._lib", "se_local"):
            raise
        selib = None
        lib_dir = _oracle_find_lib_dir()
        if lib_dir is None:
            raise RuntimeError("no se-local llama.cpp library found "
                               "(build it or set SE_LOCAL_LIB_PATH)")
        _oracle_os.environ["LLAMA_CPP_LIB_PATH"] = lib_dir
    import llama_cpp

    if selib is not None:
        selib.backend_init()
    else:
        @llama_cpp.llama_log_callback
        def _quiet(level, text, user_data):
            pass

        llama_cpp.llama_log_set(_quiet, None)
        _ORACLE_STATE["log_cb"] = _quiet          # keep the callback alive
        llama_cpp.llama_backend_init()
    _ORACLE_STATE["llama_cpp"] = llama_cpp
    return llama_cpp


@_oracle_pytest.fixture(scope="session")
def oracle_llama_cpp():
    """llama_cpp (low-level ctypes) on se-local's library; skips if absent."""
    try:
        return _oracle_import_llama_cpp()
    except Exception as e:  # library not built / not loadable
        _oracle_pytest.skip(f"llama.cpp library unavailable: {e}")


@_oracle_pytest.fixture(scope="session")
def oracle_tiny_llama_factory(tmp_path_factory):
    """Callable(dtype="f32", **kw) -> (path, weights, hparams); cached per
    argument set for the whole session."""
    cache = {}

    def make(dtype="f32", **kw):
        from tinymodel import write_tiny_llama
        key = (dtype, tuple(sorted(kw.items())))
        if key not in cache:
            d = tmp_path_factory.mktemp("tiny_llama")
            path = d / f"tiny-{dtype}.gguf"
            weights, hparams = write_tiny_llama(path, dtype=dtype, **kw)
            cache[key] = (str(path), weights, hparams)
        return cache[key]

    return make
# <<< end of exactness-oracle fixtures


# =============================================================================
# >>> se_local package fixtures (tests/test_planner.py, test_gguf_info.py,
#     test_generate.py, test_cli.py). Self-contained block; names prefixed
#     with "pkg_" / "smollm2" to avoid collisions with other blocks.
# =============================================================================
import os as _pkg_os
import subprocess as _pkg_subprocess
import sys as _pkg_sys
from pathlib import Path as _PkgPath

import pytest as _pkg_pytest

PKG_TEST_THREADS = 2
PKG_TEST_CTX = 1024


@_pkg_pytest.fixture(scope="session")
def smollm2_path():
    """Path of the embedded default model (SmolLM2-135M-Instruct Q4_1); skips if absent."""
    from se_local import SeLocalError, default_model_path

    try:
        return default_model_path()
    except SeLocalError as e:
        _pkg_pytest.skip(str(e))


@_pkg_pytest.fixture(scope="session")
def pkg_native():
    """se_local._lib (the native library loaded); skips if it is not built."""
    from se_local import SeLocalError

    try:
        import se_local._lib as lib
    except SeLocalError as e:
        _pkg_pytest.skip(str(e))
    return lib


@_pkg_pytest.fixture(scope="session")
def smollm2(smollm2_path, pkg_native):
    """One SmolLM2 Model for the session: n_ctx 1024, 2 threads, flash attention."""
    from se_local import Model

    model = Model(smollm2_path, target_ctx=PKG_TEST_CTX, n_threads=PKG_TEST_THREADS)
    yield model
    model.close()


@_pkg_pytest.fixture(scope="session")
def pkg_cli():
    """Run ``python -m se_local ARGS`` in a subprocess with the se_local the tests import.

    Returns a function ``(*args, input=None, timeout=300, merge_stderr=False) -> CompletedProcess`` (text mode).
    """
    import se_local

    env = dict(_pkg_os.environ)
    root = str(_PkgPath(se_local.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (_pkg_os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"

    def run(*args, input=None, timeout=300, merge_stderr=False):
        # merge_stderr: stderr into the same pipe as stdout (as `2>&1` does), returned as stdout
        sp = _pkg_subprocess
        streams = dict(stdout=sp.PIPE, stderr=sp.STDOUT) if merge_stderr else dict(capture_output=True)
        return sp.run(
            [_pkg_sys.executable, "-m", "se_local", *map(str, args)],
            input=input if input is not None else "", text=True,
            encoding="utf-8", env=env, timeout=timeout, **streams,
        )

    return run
# <<< end of se_local package fixtures
