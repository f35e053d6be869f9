"""``se-local serve``: an OpenAI-compatible HTTP server with Self-Extend.

The HTTP side is llama-cpp-python's own server (FastAPI + uvicorn, installed with the
optional extra: ``pip install 'se-local[server]'``): ``/v1/chat/completions``,
``/v1/completions``, ``/v1/models``, streaming by server-sent events, API key. se-local
hands it the model: a :class:`se_local.Llama` opened with a planned context and
Self-Extend on.

llama-cpp-python's ``create_app`` loads its model itself, through a ``LlamaProxy``
built from settings. :func:`create_app` here calls it with a proxy that holds a model
already loaded instead, so the model is opened once, by se-local, and every route
is llama-cpp-python's, unchanged::

    from se_local import Llama
    from se_local.server import create_app, serve

    llm = Llama("mistral-7b-instruct.Q4_K_M.gguf", target_ctx=32768)
    serve(create_app(llm), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import functools
import importlib.util
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional

from .errors import SeLocalError

if TYPE_CHECKING:
    from .compat import Llama

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "check_port_free", "check_server_extra", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
"""Listen on loopback only, unless asked otherwise."""

DEFAULT_PORT = 8000
"""The port llama-cpp-python's server uses by default."""

SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
"""What the ``server`` extra installs (llama-cpp-python's ``[server]`` dependencies)."""


def check_server_extra() -> None:
    """Raise :class:`SeLocalError` naming the fix unless the ``server`` extra is installed."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise SeLocalError(
            f"se-local serve needs the optional server dependencies ({', '.join(missing)} missing); "
            "install them with `pip install 'se-local[server]'`"
        )


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`SeLocalError` naming the fix unless ``host:port`` can be listened on now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise SeLocalError(f"cannot listen on {host}: {e.strerror}; pass another --host") from e
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise SeLocalError(
                f"cannot listen on {host}:{port} ({e.strerror}); pass another --port"
            ) from e


def create_app(
    llama: Llama,
    *,
    model_alias: Optional[str] = None,
    api_key: Optional[str] = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> Any:
    """llama-cpp-python's FastAPI app, serving ``llama``.

    Args:
        llama: the model (a :class:`se_local.Llama`; any ``llama_cpp.Llama`` works).
        model_alias: the model's name in the API (``"model"`` of requests and
            ``/v1/models``); default ``None`` = the file name without ``.gguf``.
        api_key: require ``Authorization: Bearer API_KEY``; default ``None`` = open.
        host: recorded in the server settings; default ``"127.0.0.1"``.
        port: recorded in the server settings; default 8000.

    Returns:
        The ``fastapi.FastAPI`` app (serve it with :func:`serve` or any ASGI server).

    Raises:
        SeLocalError: the ``server`` extra is not installed.
    """
    check_server_extra()
    from llama_cpp.server import app as server_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    alias = model_alias or Path(llama.model_path).name.removesuffix(".gguf")
    server_settings = ServerSettings(host=host, port=port, api_key=api_key)
    model_settings = ModelSettings(model=str(llama.model_path), model_alias=alias, n_ctx=llama.n_ctx())
    with _serving(server_app, llama):
        return server_app.create_app(server_settings=server_settings, model_settings=[model_settings])


def serve(app: Any, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until Ctrl-C (or SIGTERM).

    Args:
        app: the app of :func:`create_app`.
        host: the address to listen on; default ``"127.0.0.1"`` (this machine only).
        port: the port; default 8000.
        log_level: uvicorn's log level; default ``"info"`` (a line per request on stderr).

    Raises:
        SeLocalError: the ``server`` extra is not installed, or the port is taken.
    """
    check_server_extra()
    import uvicorn

    check_port_free(host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


# ---------------------------------------------------------------------------
# Handing llama-cpp-python's server a ready model
# ---------------------------------------------------------------------------


def _ready_proxy_class() -> type:
    from llama_cpp.server.model import LlamaProxy

    class ReadyProxy(LlamaProxy):
        """llama-cpp-python's model proxy, serving one model that is already loaded."""

        def __init__(self, llama: Llama, models: List[Any]) -> None:
            self._ready = llama
            super().__init__(models)  # "loads" the default model: load_llama_from_model_settings below

        def load_llama_from_model_settings(self, settings: Any) -> Llama:  # type: ignore[override]
            return self._ready

    return ReadyProxy


@contextmanager
def _serving(server_app: Any, llama: Llama) -> Iterator[None]:
    """While active, ``llama_cpp.server.app.create_app`` builds a proxy that serves ``llama``.

    ``create_app`` calls ``set_llama_proxy``, which builds ``LlamaProxy(models=...)``
    from the name in its module; for the duration of the call that name is a factory
    of :func:`_ready_proxy_class` holding ``llama``.
    """
    original = server_app.LlamaProxy
    server_app.LlamaProxy = functools.partial(_ready_proxy_class(), llama)
    try:
        yield
    finally:
        server_app.LlamaProxy = original
