"""The ``se-local`` command line (typer + rich).

stdout carries only what the command produces (the generated text for ``run``, the
plan or the metadata table for ``plan``/``info``); progress, statistics, warnings and
errors go to stderr. A :class:`~se_local.errors.SeLocalError` becomes one line on
stderr and exit status 1 (``--debug`` shows the traceback); usage errors exit with 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import ConfigError, SeLocalError
from .gguf_info import ModelInfo, read_info
from .planner import Plan, plan

app = typer.Typer(
    name="se-local",
    help="Run GGUF models on prompts longer than their trained context, by Self-Extend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


@dataclass
class _State:
    debug: bool = False


state = _State()


# ---------------------------------------------------------------------------
# Token counts: "16k", "32768", "1M"
# ---------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_token_count(text: str) -> int:
    """A token count from ``"32768"``, ``"16k"`` (= 16 * 1024) or ``"1M"`` (= 1024 * 1024).

    Raises:
        ValueError: not a positive count.
    """
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a token count (examples: 16384, 16k, 1M)")
    value = float(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    if value < 1 or value != int(value):
        raise ValueError(f"{text!r} is not a whole positive number of tokens")
    return int(value)


def _token_count_option(value: Any) -> int:
    """typer parser of ``--target-ctx``: :func:`parse_token_count`, usage error on bad input."""
    if isinstance(value, int):
        return value
    try:
        return parse_token_count(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


# ---------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------

ModelOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--model",
        "-m",
        help="GGUF model file. [default: the embedded SmolLM2-135M-Instruct]",
        show_default=False,
    ),
]
TargetCtxOpt = Annotated[
    Optional[int],
    typer.Option(
        "--target-ctx",
        parser=_token_count_option,
        metavar="TOKENS",
        help="Context length to read, in tokens (16384, 16k). Beyond the trained length L, "
        "Self-Extend is planned. [default: L]",
        show_default=False,
    ),
]
GroupOpt = Annotated[
    Optional[int],
    typer.Option(
        "--group",
        help="Self-Extend group size G. [default: the smallest G with L/2 > W + (N-W)/G]",
        show_default=False,
    ),
]
WindowOpt = Annotated[
    Optional[int],
    typer.Option(
        "--window",
        help="Self-Extend neighbor window W, in tokens. [default: min(1024, L/4)]",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            upstream = f" (llama.cpp of llama-cpp-python {version('llama-cpp-python')})"
        except PackageNotFoundError:
            upstream = ""
        out.print(f"se-local {__version__}{upstream}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Show llama.cpp's log (-vv: debug).")
    ] = 0,
) -> None:
    """Run GGUF models on prompts longer than their trained context, by Self-Extend."""
    state.debug = debug
    _setup_logging(verbose)
    warnings.showwarning = _show_warning


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger("se_local")
    root.addHandler(handler)
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    # llama.cpp's own log is noise unless asked for; its errors reach the user inside our messages
    logging.getLogger("se_local.llama").setLevel(logging.CRITICAL if verbose == 0 else root.level)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def _show_warning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """``warnings.showwarning`` for the command line: one ``warning:`` line on stderr."""
    _warn(str(message))


def _model_path(model: Optional[Path]) -> Path:
    if model is not None:
        return model
    from .default_model import default_model_path

    return default_model_path()


# ---------------------------------------------------------------------------
# se-local run
# ---------------------------------------------------------------------------


@app.command()
def run(
    prompt: Annotated[
        Optional[str],
        typer.Argument(
            help="The prompt. With -f, it follows the file's text. [default: stdin]", show_default=False
        ),
    ] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", "-f", help="Read the prompt (or its first part) from a file; - = stdin."),
    ] = None,
    model: ModelOpt = None,
    target_ctx: TargetCtxOpt = None,
    group: GroupOpt = None,
    window: WindowOpt = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", "-n", min=1, help="Most tokens to generate.")
    ] = 256,
    temp: Annotated[float, typer.Option("--temp", help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")] = 0.95,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Top-k candidates; 0 = off.")] = 40,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Random seed. [default: random]", show_default=False)
    ] = None,
    stop: Annotated[
        Optional[List[str]], typer.Option("--stop", help="Stop when this text appears (repeatable).")
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="CPU threads. [default: all available]", show_default=False),
    ] = None,
    gpu_layers: Annotated[
        int, typer.Option("--gpu-layers", help="Layers to offload to the GPU; -1 = all.")
    ] = 0,
    no_flash_attn: Annotated[
        bool, typer.Option("--no-flash-attn", help="Use plain attention kernels.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Send the prompt as is, without the model's chat template.")
    ] = False,
) -> None:
    """Generate from a prompt and stream the answer to stdout."""
    text = _read_prompt(prompt, file)
    from .model import Model  # loads the native library

    with err.status("loading model…", spinner="dots"):
        m = Model(
            _model_path(model),
            target_ctx=target_ctx,
            group=group,
            window=window,
            n_threads=threads,
            n_gpu_layers=gpu_layers,
            flash_attn=not no_flash_attn,
        )
    with m:
        if m.info.has_chat_template and not raw:
            tokens = m.apply_chat_template([{"role": "user", "content": text}], tokenize=True)
        else:
            tokens = m.tokenize(text)
        m.check_fits(len(tokens), max_tokens)  # before any compute
        progress = _PrefillProgress(len(tokens), enabled=len(tokens) > m.n_batch and err.is_terminal)
        responses = m.stream_generate(
            tokens,
            max_tokens=max_tokens,
            temperature=temp,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stop,
            progress=progress.update,
        )
        last = _write_stream(responses, progress)
        if last is not None:
            err.print(f"[dim]{escape(_stats(last, m))}[/]", soft_wrap=True)


def _write_stream(responses: Iterator[Any], progress: _PrefillProgress) -> Any:
    """Write the text of ``responses`` to stdout as it comes; return the last response.

    Ctrl-C ends the command with status 130. On a terminal, or where stderr goes to the same
    file or pipe (``2>&1``), a final line break goes to stderr so that the status line starts a
    line of its own while stdout holds exactly the generated text.
    """
    last = None
    ends_newline = True
    try:
        for r in _stop_progress_on_first(responses, progress):
            last = r
            if r.text:
                sys.stdout.write(r.text)
                sys.stdout.flush()
                ends_newline = r.text.endswith("\n")
    except KeyboardInterrupt:
        progress.stop()
        if not ends_newline and _shares_a_line_with_stderr():
            err.print()
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # the reader went away (`se-local run ... | head`): stop quietly
        progress.stop()
        sys.stdout = open(os.devnull, "w")  # the interpreter flushes stdout at exit: keep that quiet
        raise typer.Exit(0) from None
    if not ends_newline and _shares_a_line_with_stderr():
        err.print()
    return last


def _shares_a_line_with_stderr() -> bool:
    """Whether what stderr prints next lands after stdout's text: a terminal, or one file or pipe for both."""
    try:
        if sys.stdout.isatty():
            return True
        a, b = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (an embedding host's streams)
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_prompt(prompt: Optional[str], file: Optional[Path]) -> str:
    parts = []
    if file is not None:
        if str(file) == "-":
            parts.append(sys.stdin.read())
        else:
            try:
                parts.append(file.read_text(encoding="utf-8", errors="replace"))
            except OSError as e:
                raise ConfigError(f"cannot read the prompt file {file}: {e.strerror}") from e
    if prompt is not None:
        parts.append(prompt)
    if not parts:
        if sys.stdin.isatty():
            raise typer.BadParameter(
                "no prompt: give PROMPT, -f FILE, or pipe text on stdin", param_hint="PROMPT"
            )
        parts.append(sys.stdin.read())
    text = "\n\n".join(part.rstrip("\n") for part in parts[:-1])
    text = f"{text}\n\n{parts[-1]}" if text else parts[-1]
    if not text.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    return text


class _PrefillProgress:
    """A transient rich progress bar on stderr for a prefill of more than one micro-batch."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("prefill"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("tokens"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self._task = self._progress.add_task("prefill", total=total)
            self._progress.start()

    def update(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _stop_progress_on_first(responses: Iterator[Any], progress: _PrefillProgress) -> Iterator[Any]:
    """Yield ``responses``; the progress bar goes away when the first one (the prefill's end) arrives."""
    try:
        first = next(responses)
    except StopIteration:
        return
    finally:
        progress.stop()
    yield first
    yield from responses


def _portable(m: Any) -> str:
    """A note when Self-Extend runs through the portable path (slower; more compute memory)."""
    return ", portable path" if m.self_extend_path == "portable" else ""


def _stats(r: Any, m: Any) -> str:
    p: Plan = m.plan
    if p.self_extend and m.self_extend_active:
        se = f"Self-Extend G={p.G} W={p.W}" + _portable(m)
    elif p.self_extend:
        se = f"Self-Extend unavailable (plan G={p.G} W={p.W}), vanilla"
    else:
        se = "Self-Extend off"
    return (
        f"prompt {r.prompt_tokens} tok, {r.prompt_tps:.1f} tok/s | generated {r.generation_tokens} tok, "
        f"{r.generation_tps:.1f} tok/s | finish: {r.finish_reason} | {se} (L={p.L}, n_ctx={p.N})"
    )


# ---------------------------------------------------------------------------
# se-local plan
# ---------------------------------------------------------------------------


@app.command("plan")
def plan_cmd(
    target_ctx: Annotated[
        int,
        typer.Option(
            "--target-ctx",
            parser=_token_count_option,
            metavar="TOKENS",
            help="Context length to read, in tokens (16384, 16k).",
        ),
    ],
    model: ModelOpt = None,
    window: WindowOpt = None,
    group: GroupOpt = None,
) -> None:
    """Show the Self-Extend plan (G, W, reach) for a target length, and why. Loads no weights."""
    info = read_info(_model_path(model))
    p = plan(info.context_length, target_ctx, window=window, group=group)
    if p.warning:
        _warn(p.warning)
    table = _kv_table()
    table.add_row("model", f"{info.path.name} ({info.architecture})")
    table.add_row("L", f"{p.L}  trained context")
    table.add_row("N", f"{p.N}  target context")
    table.add_row("G", f"{p.G}  group size" + ("" if p.self_extend else " (Self-Extend off)"))
    table.add_row("W", f"{p.W}  neighbor window" + ("" if p.self_extend else " (unused)"))
    table.add_row("reach", f"{p.reach}  longest length, (L-W)*G+W")
    out.print(table)
    out.print(f"why: {escape(p.explanation)}", soft_wrap=True)
    for line in p.reasoning() if p.self_extend else []:
        out.print(f"  {escape(line)}", soft_wrap=True)


# ---------------------------------------------------------------------------
# se-local info
# ---------------------------------------------------------------------------


@app.command()
def info(
    path: Annotated[
        Optional[Path],
        typer.Argument(
            help="GGUF model file. [default: the embedded SmolLM2-135M-Instruct]", show_default=False
        ),
    ] = None,
) -> None:
    """Show a model file's metadata. Loads no weights."""
    mi: ModelInfo = read_info(_model_path(path))
    table = _kv_table()
    rows = [
        ("file", str(mi.path)),
        ("size", f"{mi.file_size / 2**20:.1f} MiB"),
        ("name", mi.name),
        ("architecture", mi.architecture),
        ("parameters", f"{mi.n_params / 1e6:.1f} M"),
        ("trained context L", str(mi.context_length)),
        ("layers", str(mi.n_layer)),
        ("heads (q / kv)", f"{mi.n_head} / {mi.n_head_kv}"),
        ("embedding / head dim", f"{mi.n_embd} / {mi.head_dim}"),
        ("vocabulary", "?" if mi.vocab_size is None else str(mi.vocab_size)),
        ("rope base", "default" if mi.rope_freq_base is None else f"{mi.rope_freq_base:g}"),
        ("rope scaling", _rope_scaling(mi)),
        ("file type", mi.file_type or "?"),
        ("tensor types", ", ".join(f"{k} x{v}" for k, v in mi.tensor_types.items())),
        ("chat template", "yes" if mi.has_chat_template else "no"),
    ]
    for k, v in rows:
        table.add_row(k, escape(v))
    out.print(table)


def _rope_scaling(mi: ModelInfo) -> str:
    if mi.rope_scaling_type is None:
        return "none"
    factor = "" if mi.rope_scaling_factor is None else f" x{mi.rope_scaling_factor:g}"
    return f"{mi.rope_scaling_type}{factor}"


def _kv_table() -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    return table


# ---------------------------------------------------------------------------
# se-local chat and se-local serve (the work is in chat_ui.py and server.py)
# ---------------------------------------------------------------------------

ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="CPU threads. [default: all available]", show_default=False),
]
GpuLayersOpt = Annotated[int, typer.Option("--gpu-layers", help="Layers to offload to the GPU; -1 = all.")]
NoFlashAttnOpt = Annotated[bool, typer.Option("--no-flash-attn", help="Use plain attention kernels.")]


@app.command()
def chat(
    model: ModelOpt = None,
    target_ctx: TargetCtxOpt = None,
    group: GroupOpt = None,
    window: WindowOpt = None,
    system: Annotated[
        Optional[str],
        typer.Option("--system", help="System prompt. [default: the chat template's own]", show_default=False),
    ] = None,
    max_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--max-tokens", "-n", min=1, help="Most tokens per reply. [default: until the model ends its turn]",
            show_default=False,
        ),
    ] = None,
    temp: Annotated[float, typer.Option("--temp", help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")] = 0.95,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Top-k candidates; 0 = off.")] = 40,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Random seed. [default: random]", show_default=False)
    ] = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = 0,
    no_flash_attn: NoFlashAttnOpt = False,
) -> None:
    """Chat in the terminal with the model's own chat template (/help inside lists the commands).

    With stdin not a terminal, each line is a message and each reply goes to stdout.
    """
    from .chat_ui import run_chat  # loads the native library

    status = run_chat(
        _model_path(model),
        target_ctx=target_ctx,
        group=group,
        window=window,
        n_threads=threads,
        n_gpu_layers=gpu_layers,
        flash_attn=not no_flash_attn,
        system=system,
        max_tokens=max_tokens,
        temperature=temp,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
    )
    raise typer.Exit(status)


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    target_ctx: TargetCtxOpt = None,
    group: GroupOpt = None,
    window: WindowOpt = None,
    alias: Annotated[
        Optional[str],
        typer.Option("--alias", help="The model's name in the API. [default: the file name]", show_default=False),
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", help="Require this bearer token. [default: none]", show_default=False),
    ] = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = 0,
    no_flash_attn: NoFlashAttnOpt = False,
) -> None:
    r"""Serve the model over an OpenAI-compatible HTTP API (llama-cpp-python's server, with Self-Extend).

    Needs the optional server dependencies: pip install 'se-local\[server]'.
    """
    from . import server

    server.check_server_extra()  # before the model costs anything
    server.check_port_free(host, port)
    from .compat import Llama  # loads the native library
    from .model import default_threads

    n_threads = threads or default_threads()
    with err.status("loading model…", spinner="dots"):
        llm = Llama(
            _model_path(model),
            target_ctx=target_ctx,
            group=group,
            window=window,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=gpu_layers,
            flash_attn=not no_flash_attn,
        )
    try:
        web_app = server.create_app(llm, model_alias=alias, api_key=api_key, host=host, port=port)
        p: Plan = llm.plan
        se = f"Self-Extend G={p.G} W={p.W}{_portable(llm)}" if llm.self_extend_active else "plain attention"
        err.print(
            f"serving {escape(Path(llm.model_path).name)} (n_ctx={llm.n_ctx()}, {se}, L={p.L}) "
            f"at http://{host}:{port}/v1 · Ctrl-C stops",
            soft_wrap=True,
        )
        server.serve(web_app, host=host, port=port)
    finally:
        llm.close()


# ---------------------------------------------------------------------------
# se-local eval passkey|ppl and se-local bench (the work is in se_local/eval/)
# ---------------------------------------------------------------------------

eval_app = typer.Typer(
    name="eval",
    help="Evaluate long-context methods on one model: passkey retrieval, perplexity.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(eval_app, name="eval")

_METHODS_HELP = "Methods, comma-separated: se, vanilla, grp-attn, yarn, linear (or all)."


def _token_counts(text: str, what: str, zero: bool = False) -> List[int]:
    try:
        values = [0 if zero and t.strip() == "0" else parse_token_count(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=what) from None
    if not values:
        raise typer.BadParameter("give at least one length", param_hint=what)
    return values


def _depth_list(text: str) -> List[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of numbers (0.1,0.5,0.9)", param_hint="--depths") from None
    if not values or any(not 0.0 <= d <= 1.0 for d in values):
        raise typer.BadParameter("depths must be within 0..1", param_hint="--depths")
    return values


def _methods(text: str) -> List[str]:
    from .eval.methods import parse_methods

    try:
        return parse_methods(text)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--method") from None


class _RunProgress:
    """A transient rich progress bar on stderr: runs, and the tokens of the current prefill."""

    def __init__(self, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
        self._runs = self._p.add_task(what, total=None)
        self._tokens = self._p.add_task("prefill", total=None, visible=False)

    def __enter__(self) -> _RunProgress:
        self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.stop()

    def runs(self, done: int, total: int, what: str) -> None:
        self._p.update(self._runs, completed=done, total=total, description=escape(what))
        self._p.update(self._tokens, visible=False)

    def tokens(self, done: int, total: int) -> None:
        self._p.update(self._tokens, completed=done, total=total, visible=done < total)


EvalOutOpt = Annotated[
    Path, typer.Option("--out", help="Folder for the JSON results and the PNG figures; runs already there are skipped.")
]


@eval_app.command("passkey")
def eval_passkey(
    model: ModelOpt = None,
    lengths: Annotated[str, typer.Option("--lengths", help="Context lengths, comma-separated (8k,16k,32k).")] = "8k,16k",
    depths: Annotated[str, typer.Option("--depths", help="Key depths within the filler, 0..1.")] = "0.1,0.3,0.5,0.7,0.9",
    trials: Annotated[int, typer.Option("--trials", min=1, help="Random keys per length and depth.")] = 1,
    method: Annotated[str, typer.Option("--method", help=_METHODS_HELP)] = "se,vanilla",
    group: GroupOpt = None,
    window: WindowOpt = None,
    out_dir: EvalOutOpt = Path("se-local-eval"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random keys.")] = 0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens of the answer.")] = 8,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = 0,
    no_flash_attn: NoFlashAttnOpt = False,
) -> None:
    """Passkey retrieval by length x depth for each method: table, passkey.json, a heatmap PNG per method."""
    from .eval import passkey as pk
    from .eval.plot import passkey_heatmaps

    cfg = pk.PasskeyConfig(
        model=str(model) if model else None, lengths=_token_counts(lengths, "--lengths"),
        depths=_depth_list(depths), trials=trials, methods=_methods(method), group=group, window=window,
        threads=threads, gpu_layers=gpu_layers, flash_attn=not no_flash_attn, seed=seed,
        max_new_tokens=max_new_tokens,
    )
    with _RunProgress("passkey") as bar:
        data = pk.run_passkey(cfg, out_dir, progress=bar.runs, prefill_progress=bar.tokens)
    out.print(pk.summary_table(data, cfg.methods))
    pngs = passkey_heatmaps(data, out_dir, cfg.methods)
    err.print(f"wrote {escape(str(out_dir / pk.RESULTS_FILE))} and {', '.join(escape(p.name) for p in pngs)}",
              soft_wrap=True)


@eval_app.command("ppl")
def eval_ppl(
    model: ModelOpt = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", "-f", help="Text to score. [default: the licence texts of /usr/share/common-licenses]",
                     show_default=False),
    ] = None,
    lengths: Annotated[str, typer.Option("--lengths", help="Window lengths, comma-separated.")] = "4k,8k,16k,32k",
    method: Annotated[str, typer.Option("--method", help=_METHODS_HELP)] = "se,vanilla",
    windows: Annotated[
        Optional[int],
        typer.Option("--windows", min=1, help="Score only the first K windows of each length. [default: all]",
                     show_default=False),
    ] = None,
    group: GroupOpt = None,
    window: WindowOpt = None,
    out_dir: EvalOutOpt = Path("se-local-eval"),
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = 0,
    no_flash_attn: NoFlashAttnOpt = False,
) -> None:
    """Perplexity by window length for each method (llama-perplexity's protocol): table, ppl.json, ppl.png."""
    from .eval import ppl
    from .eval.plot import ppl_plot

    cfg = ppl.PplConfig(
        model=str(model) if model else None, file=str(file) if file else None,
        lengths=_token_counts(lengths, "--lengths"), methods=_methods(method), windows=windows, group=group,
        window=window, threads=threads, gpu_layers=gpu_layers, flash_attn=not no_flash_attn,
    )
    with _RunProgress("ppl") as bar:
        data = ppl.run_ppl(cfg, out_dir, progress=bar.runs, window_progress=bar.tokens)
    for n in data.get("skipped_lengths", []):
        _warn(f"the text has {data['text']['tokens']} tokens, fewer than one window of {n}: length {n} skipped")
    if not data["results"]:
        raise ConfigError("nothing was scored: every length is longer than the text")
    out.print(ppl.summary_table(data))
    png = ppl_plot(data, out_dir / "ppl.png")
    err.print(f"wrote {escape(str(out_dir / ppl.RESULTS_FILE))} and {escape(png.name)}", soft_wrap=True)


@app.command()
def bench(
    model: ModelOpt = None,
    ctx: Annotated[str, typer.Option("--ctx", help="Depths (tokens already in the cache), comma-separated.")] = "4k,16k",
    variants: Annotated[
        str, typer.Option("--variants", help="Of se (fused), se-nofa (portable), fa (stock), nofa (stock, flash off).")
    ] = "se,fa,nofa",
    gpu_layers: GpuLayersOpt = 0,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Measurements of each, round-robin.")] = 3,
    threads: ThreadsOpt = None,
    lib: Annotated[
        Optional[List[Path]],
        typer.Option("--lib", help="Another llama.cpp library folder to measure (e.g. a stock build); repeatable."),
    ] = None,
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Prefill micro-batch timed at each depth.")] = 512,
    gen: Annotated[int, typer.Option("--gen", min=1, help="Tokens decoded one by one at each depth.")] = 32,
    group: GroupOpt = None,
    window: WindowOpt = None,
    pos_min: Annotated[
        int, typer.Option("--pos-min", help="Self-Extend for queries at positions >= this; -1 = from L (adaptive).")
    ] = 0,
    out_file: Annotated[Path, typer.Option("--out", help="JSON results file.")] = Path("se-local-bench.json"),
    no_streaming: Annotated[
        bool, typer.Option("--no-streaming", help="Skip the Model.generate vs raw decode loop measurement.")
    ] = False,
) -> None:
    """Prefill and decode tok/s at depth: Self-Extend vs stock attention of the same build, and other builds."""
    from .eval import bench as b

    cfg = b.BenchConfig(
        model=str(model) if model else None, depths=_token_counts(ctx, "--ctx", zero=True),
        variants=[v.strip() for v in variants.split(",") if v.strip()], repeat=repeat, chunk=chunk, gen=gen,
        threads=threads, gpu_layers=gpu_layers, group=group, window=window, pos_min=pos_min,
        libs=[str(p) for p in lib or []], streaming=not no_streaming,
    )
    with _RunProgress("bench") as bar:
        result = b.run_bench(cfg, progress=bar.runs, out_path=out_file)
    out.print(b.summary_table(result))
    line = b.streaming_line(result)
    if line:
        out.print(escape(line), soft_wrap=True)
    err.print(f"wrote {escape(str(out_file))}", soft_wrap=True)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``se-local`` script."""
    try:
        status = app(args=argv, prog_name="se-local", standalone_mode=False)
    except SeLocalError as e:
        if state.debug:
            raise
        err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        sys.exit(1)
    except Exception as e:
        if not any(c.__name__ == "ClickException" for c in type(e).__mro__):
            raise
        sys.exit(_usage_error(e))
    except BaseException as e:
        if type(e).__name__ != "Abort":  # click's Abort: Ctrl-D / EOF at a prompt
            raise
        err.print("[yellow]aborted[/]")
        sys.exit(1)
    if isinstance(status, int) and status:
        sys.exit(status)


def _usage_error(e: Any) -> int:
    """Show click's usage error ``e`` as one ``error:`` line; return its exit code."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
        return int(getattr(e, "exit_code", 2))
    where = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
    err.print(f"[red]error:[/] {escape(e.format_message())}{escape(where)}", soft_wrap=True)
    return int(getattr(e, "exit_code", 2))
