"""The terminal chat of ``se-local chat`` (rich); the conversation itself is :mod:`se_local.chat`.

Two ways in:

* stdin is a terminal: a prompt (``>>>``), the reply streamed as it is generated, a
  context meter after each reply, commands (``/help``). Ctrl-C stops the current reply
  (or the prefill of a long message) and stays in the chat; Ctrl-D exits.
* stdin is a pipe or a file: each line is a message (a block between two ``\"\"\"``
  lines is one message), each reply goes to stdout followed by a line break; commands
  work and answer on stderr. The exit status is 1 if a message failed (say, it did
  not fit the context), else 0.

A message that does not fit the context is refused with the numbers and the ways on
(``/clear``, or a larger ``--target-ctx``); the chat goes on.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .chat import ChatSession, suggested_target_ctx
from .cli import _portable
from .errors import ContextLengthError, SeLocalError
from .generate import GenerationResponse
from .model import Model

__all__ = ["ChatUI", "HELP", "run_chat"]

PROMPT = ">>> "
"""The interactive prompt."""

MULTILINE = '"""'
"""A line of just this starts and ends a message of several lines."""

HELP = [
    ("/file PATH", "attach a text file to your next message"),
    ("/system TEXT", "set the system prompt (/system alone: back to the template's default)"),
    ("/clear", "start a new conversation (the system prompt stays)"),
    ("/stats", "the model, the plan, the context use, the last reply's speed"),
    ("/help", "this list"),
    ("/exit", "leave (or Ctrl-D)"),
    ('"""', "on a line of its own: start or end a message of several lines"),
]
"""The commands, with one line of help each."""


def run_chat(
    model_path: Path,
    *,
    target_ctx: Optional[int] = None,
    group: Optional[int] = None,
    window: Optional[int] = None,
    n_threads: Optional[int] = None,
    n_gpu_layers: int = 0,
    flash_attn: bool = True,
    system: Optional[str] = None,
    max_tokens: Optional[int] = None,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 40,
    seed: Optional[int] = None,
    stdin: Optional[TextIO] = None,
) -> int:
    """Open the model and chat on the terminal (or line by line from a pipe).

    Args:
        model_path: the GGUF file.
        target_ctx, group, window, n_threads, n_gpu_layers, flash_attn: as
            :class:`~se_local.model.Model`.
        system: the system prompt; default ``None`` = the template's default.
        max_tokens: most tokens per reply; default ``None`` = until the model ends its turn.
        temperature, top_p, top_k, seed: sampling, as :class:`~se_local.chat.ChatSession`.
        stdin: where messages come from; default ``sys.stdin``.

    Returns:
        The exit status.

    Raises:
        SeLocalError: the model cannot be opened or has no chat template.
    """
    stdin = stdin or sys.stdin
    err = Console(stderr=True, highlight=False)
    with err.status("loading model…", spinner="dots"):
        model = Model(
            model_path,
            target_ctx=target_ctx,
            group=group,
            window=window,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            flash_attn=flash_attn,
        )
    with model:
        if not model.info.has_chat_template:
            raise SeLocalError(
                f"{model.path.name} has no chat template, which se-local chat needs; "
                "use `se-local run --raw` for plain text completion"
            )
        session = ChatSession(
            model, system=system, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
        )
        return ChatUI(session, stdin).run()


class ChatUI:
    """The chat loop on a terminal or a pipe.

    Args:
        session: the conversation.
        stdin: where messages come from; a terminal makes the chat interactive.
    """

    def __init__(self, session: ChatSession, stdin: TextIO) -> None:
        self.session = session
        self.model = session.model
        self.stdin = stdin
        self.interactive = stdin.isatty()
        self.out = Console(highlight=False)  # replies (and, on a terminal, everything)
        # on a pipe, everything but the replies goes to stderr
        self.msg = self.out if self.interactive else Console(stderr=True, highlight=False)
        self.status = 0

    # -----------------------------------------------------------------------
    # The loop
    # -----------------------------------------------------------------------

    def run(self) -> int:
        """Chat until ``/exit``, Ctrl-D or the end of the input; return the exit status."""
        if self.interactive:
            _enable_line_editing()
            self._banner()
        while True:
            try:
                text = self._read_message()
            except EOFError:
                if self.interactive:
                    self.msg.print()
                return self.status
            except KeyboardInterrupt:
                if not self.interactive:
                    self.msg.print("[yellow]interrupted[/]")
                    return 130
                self.msg.print("\n[dim](Ctrl-D or /exit leaves the chat)[/]")
                continue
            if not text.strip():
                continue
            if text.startswith("/") and "\n" not in text:
                if not self._command(text.strip()):
                    return self.status
                continue
            self._reply(text)

    def _read_message(self) -> str:
        """One message: a line, or the lines between two ``\"\"\"`` lines."""
        line = self._read_line(PROMPT)
        if line.strip() != MULTILINE:
            return line
        lines: List[str] = []
        while True:
            try:
                line = self._read_line("... ")
            except EOFError:
                break
            if line.strip() == MULTILINE:
                break
            lines.append(line)
        return "\n".join(lines)

    def _read_line(self, prompt: str) -> str:
        if self.interactive:
            return self.out.input(f"[bold green]{escape(prompt)}[/]")
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    # -----------------------------------------------------------------------
    # A reply
    # -----------------------------------------------------------------------

    def _reply(self, text: str) -> None:
        progress = _PrefillProgress(self.msg, enabled=self.msg.is_terminal)
        try:
            responses = self.session.send(text, progress=progress.update)
        except ContextLengthError as e:
            self._refuse(e)
            return
        except SeLocalError as e:
            self._error(str(e))
            return
        last: Optional[GenerationResponse] = None
        ends_newline = True
        try:
            with _CtrlC(self.model) as ctrl_c:
                for r in _in_worker(responses, ctrl_c):
                    if last is None:
                        progress.stop()  # the prefill is over
                    last = r
                    if r.text:
                        self._write(r.text)
                        ends_newline = r.text.endswith("\n")
        except SeLocalError as e:  # llama.cpp failed mid-way; the model stays usable
            progress.stop()
            self._error(str(e))
            return
        finally:
            progress.stop()
        if not ends_newline or not self.interactive:
            self._write("\n")
        if last is None or (last.finish_reason == "cancelled" and last.generation_tokens == 0):
            self.msg.print("[yellow]stopped during the prefill; the message was not sent[/]")
        elif last.finish_reason == "cancelled":
            self.msg.print("[yellow]stopped[/]")
        elif last.finish_reason == "length" and last.prompt_tokens + last.generation_tokens >= self.model.n_ctx:
            self.msg.print(
                f"[yellow]the context is full ({self.model.n_ctx} tokens): /clear to start over, or restart "
                f"with --target-ctx {suggested_target_ctx(self.model.n_ctx)}[/]",
                soft_wrap=True,
            )
        if self.interactive:
            self._meter()
            self.msg.print()

    def _write(self, text: str) -> None:
        try:
            self.out.file.write(text)
            self.out.file.flush()
        except BrokenPipeError:  # the reader went away: nothing more to say
            raise SystemExit(0) from None

    def _refuse(self, e: ContextLengthError) -> None:
        if not self.interactive:  # a script learns it from the exit status; a person reads the line
            self.status = 1
        self.msg.print(f"[red]does not fit:[/] {escape(str(e))}", soft_wrap=True)
        if self.interactive:
            self._meter()

    def _error(self, message: str) -> None:
        if not self.interactive:
            self.status = 1
        self.msg.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)

    # -----------------------------------------------------------------------
    # Commands
    # -----------------------------------------------------------------------

    def _command(self, line: str) -> bool:
        """Run a command line; return ``False`` to leave the chat."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        name = name.lower()
        if name in ("/exit", "/quit", "/bye"):
            return False
        if name == "/help":
            self._help()
        elif name == "/file":
            self._attach(arg)
        elif name == "/system":
            self.session.set_system(arg)
            self.msg.print(
                f"system prompt set ({len(self.model.tokenize(arg, add_special=False))} tokens)"
                if arg
                else "system prompt: the template's default"
            )
        elif name == "/clear":
            self.session.clear()
            self.msg.print("new conversation")
            self._meter()
        elif name == "/stats":
            self._stats()
        else:
            self.msg.print(f"[yellow]unknown command {escape(name)}[/]; /help lists them")
        return True

    def _help(self) -> None:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for cmd, what in HELP:
            table.add_row(escape(cmd), escape(what))
        table.add_row("Ctrl-C", "stop the current reply")
        self.msg.print(table)

    def _attach(self, arg: str) -> None:
        if not arg:
            self.msg.print("[yellow]usage:[/] /file PATH")
            return
        path = arg[1:-1] if len(arg) > 1 and arg[0] == arg[-1] and arg[0] in "'\"" else arg
        try:
            a = self.session.attach(path)
        except SeLocalError as e:
            self._error(str(e))
            return
        self.msg.print(f"attached {escape(a.name)} ({a.n_tokens:,} tokens); it goes with your next message")
        pending = self.session.tokens_used() + sum(x.n_tokens for x in self.session.attachments)
        if pending >= self.model.n_ctx:
            self.msg.print(
                f"[yellow]with it the conversation needs about {pending:,} tokens but the context holds "
                f"{self.model.n_ctx:,}: /clear first, or restart with --target-ctx {suggested_target_ctx(pending)}[/]",
                soft_wrap=True,
            )

    def _stats(self) -> None:
        m, p, s = self.model, self.model.plan, self.session
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        rows = [
            ("model", f"{m.path.name} ({m.info.architecture}, trained context L={p.L:,})"),
            ("context", f"{s.tokens_used():,} / {m.n_ctx:,} tokens used, {m.n_past:,} in the KV cache"),
            ("attention", _attention(m)),
            ("messages", f"{len(s.messages)} ({len(s.attachments)} file(s) waiting)"),
            ("system", s.system if s.system is not None else "the template's default"),
        ]
        r = s.last
        if r is not None:
            rows += [
                ("last prompt", f"{r.prompt_tokens:,} tokens, {r.cached_tokens:,} from the cache, "
                 f"the rest at {r.prompt_tps:.1f} tok/s"),
                ("last reply", f"{r.generation_tokens:,} tokens at {r.generation_tps:.1f} tok/s, "
                 f"finish: {r.finish_reason or 'stopped'}"),
            ]
        for k, v in rows:
            table.add_row(k, escape(v))
        self.msg.print(table)

    # -----------------------------------------------------------------------

    def _banner(self) -> None:
        m = self.model
        self.msg.print(
            f"[bold]se-local chat[/] · {escape(m.path.name)} · context {m.n_ctx:,} tokens · {escape(_attention(m))}",
            soft_wrap=True,
        )
        self.msg.print("[dim]/help for commands · /file PATH attaches a file · Ctrl-C stops a reply · Ctrl-D exits[/]")

    def _meter(self) -> None:
        used, n_ctx = self.session.tokens_used(), self.model.n_ctx
        share = used / n_ctx
        color = "green" if share < 0.7 else "yellow" if share < 0.9 else "red"
        self.msg.print(
            f"[dim]context[/] [{color}]{used:,} / {n_ctx:,} tokens ({share:.0%})[/] [dim]· {escape(_attention(self.model))}[/]",
            soft_wrap=True,
        )


def _attention(m: Model) -> str:
    p = m.plan
    if p.self_extend and m.self_extend_active:
        return f"Self-Extend G={p.G} W={p.W} (L={p.L:,}, reach {p.reach:,}{_portable(m)})"
    if p.self_extend:
        return f"Self-Extend unavailable, vanilla attention beyond L={p.L:,}"
    return f"plain attention (L={p.L:,})"


def _in_worker(responses: Iterator[GenerationResponse], ctrl_c: _CtrlC) -> Iterator[GenerationResponse]:
    """Yield ``responses``, computed on a worker thread.

    llama.cpp computes a micro-batch in one C call; Python runs a signal handler only
    between bytecodes of the main thread. With the computation on a worker, the main
    thread waits here in Python, so Ctrl-C reaches :meth:`Model.cancel` at once and
    llama.cpp stops within the graph it is computing (not after the whole micro-batch).
    Errors of the worker are raised here.
    """
    items: queue.Queue = queue.Queue()
    done = object()

    def work() -> None:
        try:
            for r in responses:
                items.put(r)
        except BaseException as e:  # handed to the UI thread
            items.put(e)
        finally:
            items.put(done)

    worker = threading.Thread(target=work, name="se-local-chat-reply", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = items.get(timeout=0.1)
            except queue.Empty:
                if ctrl_c.hit:
                    ctrl_c.model.cancel()  # again: the first may have come before the generation began
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if worker.is_alive():  # the consumer stopped early (an error while writing): stop the worker too
            ctrl_c.model.cancel()
            worker.join()


def _enable_line_editing() -> None:
    try:
        import readline  # noqa: F401  (input() then has line editing and history)
    except ImportError:  # Windows
        pass


class _CtrlC:
    """While active, Ctrl-C (SIGINT) sets :attr:`hit` and calls ``model.cancel()``."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.hit = False
        self._previous = None

    def __enter__(self) -> _CtrlC:
        self.hit = False
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.hit = True
        self.model.cancel()


class _PrefillProgress:
    """A transient progress bar for a prefill of several micro-batches (updated from the worker)."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._progress = None
        self._task = None
        self._lock = threading.Lock()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._update(done, total)

    def _update(self, done: int, total: int) -> None:
        if self._progress is None and done < total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("prefill"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("tokens"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._progress.add_task("prefill", total=total)
            self._progress.start()
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
            self._progress = None
            self.enabled = False  # a late update from the worker must not start it again
