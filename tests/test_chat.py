"""Chat: Model.chat and ChatSession (cache reuse, history, overflow), `se-local chat` piped
and through a pseudo-terminal (typing, streaming, Ctrl-C, /file, /clear, /stats, /exit)."""

import os
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest

from se_local.errors import ContextLengthError

THREADS = 2
CTX = 1024  # the smollm2 fixture's context: replies computed here equal the subprocess's

SAY_OK = "Say OK."
STORY = "Write a long story about a dragon who learns to cook."
LONG_FILE_TEXT = (
    "The lighthouse keeper wrote in his log every evening. " * 40
    + "The secret word is PINEAPPLE.\n"
)  # about 450 tokens: two of them do not fit the 1024-token context


@pytest.fixture()
def model(smollm2):
    """The session's SmolLM2 (n_ctx 1024) with an empty cache."""
    smollm2.reset()
    return smollm2


def fresh_reply(model, messages, **kwargs):
    """The reply computed from an empty cache."""
    model.reset()
    return "".join(model.chat(messages, temperature=0, **kwargs))


# ---------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------


def test_second_turn_prefills_only_the_new_tokens(model):
    from se_local import ChatSession

    session = ChatSession(model, temperature=0, max_tokens=12)
    first = "".join(r.text for r in session.send("What is the capital of France?"))
    r1 = session.last
    assert r1.cached_tokens == 0 and first and len(session.messages) == 2

    prefilled = []
    second = "".join(r.text for r in session.send("And of Germany?", progress=lambda d, t: prefilled.append(t)))
    r2 = session.last
    new_message = len(model.tokenize("And of Germany?", add_special=False))
    assert r2.cached_tokens > r1.prompt_tokens  # the first prompt and most of the reply
    assert prefilled and prefilled[-1] == r2.prompt_tokens - r2.cached_tokens
    assert prefilled[-1] < new_message + 16  # the message, its template tokens, a re-rendered tail
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 2
    assert session.tokens_used() >= r2.prompt_tokens

    # the same as a second turn computed from scratch. Only the first tokens must agree: one long
    # prefill and a prefill in pieces round differently (llama.cpp picks its CPU kernels by batch
    # size), and 12 greedy tokens can end on a flipped near tie (seen on an AVX2 CPU: "...the
    # Américas" vs "...the Amérike"); a wrong cached prefix changes the reply from its start
    fresh = fresh_reply(model, session.messages[:3], max_tokens=12)
    head = lambda text: model.tokenize(text, add_special=False)[:4]
    assert len(head(second)) == 4 and head(second) == head(fresh)


def test_model_chat_stream_and_whole(model):
    messages = [{"role": "user", "content": SAY_OK}]
    pieces = list(model.chat(messages, temperature=0, max_tokens=16))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    whole = model.chat(messages, stream=False, temperature=0, max_tokens=16)
    assert whole == "".join(pieces)


def test_system_argument(model):
    from se_local.chat import with_system

    messages = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]
    assert with_system(messages, "new") == [{"role": "system", "content": "new"}, messages[1]]
    assert with_system(messages[1:], None) == messages[1:]
    text = model.apply_chat_template(with_system(messages[1:], "You answer in French."))
    assert "You answer in French." in text
    reply = model.chat(messages[1:], system="You answer in French.", stream=False, temperature=0, max_tokens=4)
    assert isinstance(reply, str)


def test_cache_survives_other_generation(model):
    """generate() between turns resets the context: the next turn must not trust stale tokens."""
    messages = [{"role": "user", "content": SAY_OK}]
    expected = fresh_reply(model, messages, max_tokens=12)
    list(model.generate("Once upon a time", max_tokens=4, temperature=0))
    assert "".join(model.chat(messages, temperature=0, max_tokens=12)) == expected


def test_keep_prefix_drops_a_diverging_tail(model):
    a = model.tokenize("The cat sat on the mat. ")
    b = model.tokenize("It was happy.", add_special=False)
    c = model.tokenize("It was sad.", add_special=False)
    model.prefill(a + b)
    assert model.n_past == len(a) + len(b)
    common = len(a) + 2  # "It was"
    assert b[:2] == c[:2] and b[2] != c[2]
    assert model.keep_prefix(a + c) == common
    assert model.n_past == common
    assert model.keep_prefix(a[:5]) == 4  # at most len - 1: the last token is evaluated again
    model.reset()
    assert model.n_past == 0 and model.keep_prefix(a) == 0


def test_conversation_too_long_is_refused_before_compute(model):
    from se_local import ChatSession

    session = ChatSession(model, temperature=0, max_tokens=4)
    list(session.send(SAY_OK))
    before = list(session.messages)
    with pytest.raises(ContextLengthError, match=r"conversation has \d+ tokens but the context holds 1024") as e:
        session.send("word " * 1200)
    assert "/clear" in str(e.value) and "--target-ctx 3072" in str(e.value)
    assert session.messages == before  # nothing added
    assert "".join(r.text for r in session.send(SAY_OK))  # still usable


def test_closing_a_reply_early_keeps_the_partial_reply(model):
    from se_local import ChatSession

    session = ChatSession(model, temperature=0, max_tokens=16)
    responses = session.send(STORY)
    texts = [next(responses).text for _ in range(5)]
    responses.close()
    assert session.messages[-1] == {"role": "assistant", "content": "".join(texts)}
    assert session.last.finish_reason is None
    list(session.send("Thanks."))
    assert session.last.finish_reason is not None and len(session.messages) == 4


def test_cancel_keeps_the_partial_reply(model):
    from se_local import ChatSession

    session = ChatSession(model, temperature=0, max_tokens=16)
    texts = []
    for r in session.send(STORY):
        texts.append(r.text)
        if len(texts) == 4:
            model.cancel()  # as another thread (a UI's stop button) would
    assert session.last.finish_reason == "cancelled" and session.last.generation_tokens <= 5
    assert session.messages[-1] == {"role": "assistant", "content": "".join(texts)}
    assert "".join(r.text for r in session.send("Thanks.")) and session.last.finish_reason != "cancelled"


def test_attachments(model, tmp_path):
    from se_local import ChatSession, ConfigError

    f = tmp_path / "notes.txt"
    f.write_text(LONG_FILE_TEXT)
    session = ChatSession(model, temperature=0, max_tokens=4)
    a = session.attach(f)
    assert a.name == "notes.txt" and 300 < a.n_tokens < 600
    list(session.send("What is the secret word?"))
    sent = session.messages[0]["content"]
    assert sent.startswith("File notes.txt:") and "PINEAPPLE" in sent and sent.endswith("What is the secret word?")
    assert session.attachments == [] and session.tokens_used() > a.n_tokens
    with pytest.raises(ConfigError, match="cannot read"):
        session.attach(tmp_path / "missing.txt")
    session.clear()
    assert session.messages == [] and session.tokens_used() == 0


# ---------------------------------------------------------------------------
# se-local chat, piped
# ---------------------------------------------------------------------------

CHAT = ["chat", "--target-ctx", str(CTX), "--threads", str(THREADS), "--temp", "0"]


def test_piped_chat_prints_each_reply(pkg_cli, model):
    from se_local import ChatSession

    session = ChatSession(model, temperature=0, max_tokens=24)
    expected = ["".join(r.text for r in session.send(q)) for q in (SAY_OK, "What is 2+2?")]
    r = pkg_cli(*CHAT, "-n", "24", input=f"{SAY_OK}\n\n/stats\nWhat is 2+2?\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(e + "\n" for e in expected)
    assert "KV cache" in r.stderr  # /stats answers on stderr


def test_piped_chat_multiline_and_overflow(pkg_cli):
    long_message = "word " * 400
    text = f'"""\n{long_message}\n"""\n/system Answer briefly.\n/nonsense\n{SAY_OK}\n'
    r = pkg_cli("chat", "--target-ctx", "256", "--threads", "2", "--temp", "0", "-n", "8", input=text)
    assert r.returncode == 1  # one message failed
    assert "does not fit" in r.stderr and "/clear" in r.stderr and "--target-ctx" in r.stderr
    assert "Traceback" not in r.stderr
    assert "system prompt set" in r.stderr and "unknown command /nonsense" in r.stderr
    assert r.stdout.strip() and r.stdout.count("\n") == 1  # the refused message printed nothing there


def test_chat_needs_a_chat_template(pkg_cli, oracle_tiny_llama_factory):
    path, _, _ = oracle_tiny_llama_factory("f32")
    r = pkg_cli("chat", "-m", path, "--threads", "2", input="hi\n")
    assert r.returncode == 1 and "no chat template" in r.stderr and "se-local run --raw" in r.stderr


# ---------------------------------------------------------------------------
# se-local chat in a pseudo-terminal
# ---------------------------------------------------------------------------

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")


class Terminal:
    """``python -m se_local ARGS`` on a pseudo-terminal: type, read, expect."""

    def __init__(self, args, env, *, cols=200):
        import fcntl
        import pty
        import struct
        import termios

        pid, fd = pty.fork()
        if pid == 0:  # the child: stdin, stdout and stderr are the terminal
            try:
                # a person's terminal delivers Ctrl-C: undo an "ignore" inherited from a
                # background job that started the tests
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execve(sys.executable, [sys.executable, "-m", "se_local", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
        self.raw = ""
        self.pos = 0  # where the next expect() starts looking, in the cleaned text
        self.status = None

    @property
    def text(self):
        """What the terminal showed, without escape sequences and carriage returns."""
        return ANSI.sub("", self.raw).replace("\r", "")

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            raise EOFError
        self.raw += data.decode("utf-8", errors="replace")
        return True

    def expect(self, pattern, timeout=120):
        """Wait until ``pattern`` (a regex) shows after the last match; return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; the terminal shows:\n{self.text[-3000:]}")
            try:
                self._read(min(left, 1.0))
            except EOFError:
                raise AssertionError(f"the chat exited waiting for {pattern!r}:\n{self.text[-3000:]}") from None

    def wait_for_input(self, timeout=30):
        """Wait until the program reads the terminal (readline puts it in non-canonical mode)."""
        import termios

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not termios.tcgetattr(self.fd)[3] & termios.ICANON:
                time.sleep(0.1)
                return
            time.sleep(0.02)
        raise AssertionError("the program does not read the terminal")

    def type(self, text):
        os.write(self.fd, text.encode())

    def line(self, text):
        self.type(text + "\r")

    def wait(self, timeout=60):
        """Wait for the child to exit (reading what it still shows); return its exit status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._read(0.2)
            except EOFError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"the chat did not exit; the terminal shows:\n{self.text[-3000:]}")

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture()
def terminal():
    """A function ``(*args) -> Terminal`` running se-local; the terminals are closed after the test."""
    import se_local

    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    env = dict(os.environ)
    root = str(Path(se_local.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8", COLUMNS="200", LINES="50")
    env.pop("FORCE_COLOR", None)
    opened = []

    def start(*args):
        t = Terminal([str(a) for a in args], env)
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


def test_terminal_chat(terminal, model, tmp_path):
    first = fresh_reply(model, [{"role": "user", "content": SAY_OK}], max_tokens=80)
    doc = tmp_path / "logbook.txt"
    doc.write_text(LONG_FILE_TEXT)

    t = terminal(*CHAT, "-n", "80")
    t.expect(r"se-local chat .*context 1,024 tokens .*plain attention")
    t.expect(">>> ")

    # typing, and the reply streamed as the model computes it
    t.line(SAY_OK)
    t.expect(re.escape(first))
    used = t.expect(r"context (\d+) / 1,024 tokens")
    assert int(used.group(1)) > 0
    t.expect(">>> ")

    # Ctrl-C during a reply stops it and stays in the chat
    t.line(STORY)
    t.expect(r"Once upon a time, \w+ \w+")
    t.type("\x03")
    t.expect(r"\nstopped\n")
    t.expect(r"context \d+ / 1,024 tokens")
    t.expect(">>> ")

    # /clear starts over; /file attaches a long file to the next message
    t.line("/clear")
    t.expect("new conversation")
    t.expect(r"context 0 / 1,024 tokens")
    t.line(f"/file {doc}")
    n_file = int(t.expect(r"attached logbook.txt \((\d+) tokens\)").group(1))
    t.line("What is the secret word? Answer in one word.")
    after = int(t.expect(r"context (\d+) / 1,024 tokens").group(1))
    assert after > n_file
    t.expect(">>> ")

    # /stats, /help
    t.line("/stats")
    t.expect(r"last prompt\s+\d+ tokens, \d+ from the cache")
    t.line("/help")
    t.expect(r"/file PATH\s+attach a text file")

    # a message beyond the context: refused with the way on, the chat goes on
    t.line(f"/file {doc}")
    t.expect(r"attached logbook\.txt")
    t.line(f"/file {doc}")
    t.expect(r"/clear first, or restart with --target-ctx \d+")
    t.line("Compare the two files.")
    t.expect(r"does not fit: the conversation has \d+ tokens but the context holds 1024")
    t.expect(">>> ")

    t.line("/exit")
    assert t.wait() == 0


def test_terminal_ctrl_c_at_the_prompt_and_ctrl_d(terminal):
    t = terminal(*CHAT, "-n", "8")
    t.expect(">>> ")
    # a person types once the prompt waits, and presses Ctrl-C once the text shows; a SIGINT in
    # the instant before readline waits takes effect at the next key only (CPython's readline
    # checks signals as it waits), and under load the terminal can leave canonical mode a while
    # before readline reads (a full CI-style run once typed into that gap and lost the SIGINT)
    t.wait_for_input()
    t.type("half a mess")
    t.expect("half a mess", timeout=30)
    t.type("\x03")
    t.expect(r"Ctrl-D or /exit leaves the chat")
    t.expect(">>> ")
    t.wait_for_input()
    t.type("\x04")
    assert t.wait() == 0


def test_terminal_ctrl_c_during_a_long_prefill(terminal, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(LONG_FILE_TEXT * 7)  # about 2,900 tokens: seconds of prefill on 2 cores
    t = terminal("chat", "--target-ctx", "4096", "--threads", str(THREADS), "--temp", "0", "-n", "8")
    t.expect(">>> ")
    t.line(f"/file {doc}")
    t.expect(r"attached long\.txt \(2,\d{3} tokens\)")
    t.line("Summarize the file.")
    time.sleep(1.0)
    t.type("\x03")
    # cancel() stops llama.cpp within the graph it computes: well before the prefill's end
    t.expect("stopped during the prefill; the message was not sent", timeout=30)
    t.expect(r"context 0 / 4,096 tokens")
    t.line("/clear")
    t.line(SAY_OK)
    t.expect(r"context [1-9]\d* / 4,096 tokens")
    t.line("/exit")
    assert t.wait() == 0
