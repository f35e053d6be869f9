"""Chat on a :class:`~se_local.model.Model`: the model's own template, streaming, and a
KV cache kept across turns.

* :func:`stream_chat` formats ``messages`` with the chat template stored in the GGUF
  file, checks the result against the context before any compute, and generates with
  ``reuse_cache=True``: the leading tokens that the context already holds (the previous
  turns, typically) are not evaluated again; a diverging tail is dropped from the cache.
* :func:`chat` yields just the text pieces (or returns the whole reply).
* :class:`ChatSession` keeps a conversation: the history, a system prompt, files
  attached to the next message, and what the last turn cost. The terminal UI
  (:mod:`se_local.chat_ui`) and desktop apps drive it; it never prints.

Example::

    from se_local import Model, ChatSession

    with Model(target_ctx=16384) as model:
        session = ChatSession(model, system="Answer briefly.")
        session.attach("report.txt")
        for piece in session.send("What does the report conclude?"):
            print(piece.text, end="", flush=True)
        print(f"\\n{session.tokens_used()} / {model.n_ctx} tokens")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Union

from .errors import ConfigError, ContextLengthError, SeLocalError
from .generate import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P, GenerationResponse

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Attachment", "ChatSession", "chat", "stream_chat"]

Message = Dict[str, str]
ProgressCallback = Callable[[int, int], None]


# ---------------------------------------------------------------------------
# One turn
# ---------------------------------------------------------------------------


def stream_chat(
    model: Model,
    messages: Sequence[Message],
    *,
    system: Optional[str] = None,
    max_tokens: Optional[int] = None,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    seed: Optional[int] = None,
    stop: Union[str, Sequence[str], None] = None,
    progress: Optional[ProgressCallback] = None,
) -> Iterator[GenerationResponse]:
    """Answer ``messages``, one :class:`~se_local.generate.GenerationResponse` per sampled token.

    The conversation is checked here, when the function is called; the work happens as
    the returned iterator is consumed. Only the tokens after the longest prefix that
    the context already holds are prefilled (``GenerationResponse.cached_tokens``).

    Args:
        model: the model; its GGUF file must carry a chat template.
        messages: ``[{"role": "user", "content": "..."}, ...]`` (roles ``system``,
            ``user``, ``assistant``), the whole conversation so far.
        system: a system message put first (replacing one that ``messages`` starts
            with); default ``None`` = as ``messages`` say (the template may add its own).
        max_tokens: most tokens in the reply; default ``None`` = until the model ends
            its turn or the context is full.
        temperature: sampling temperature; default 0.8; ``<= 0`` = greedy.
        top_p: nucleus sampling mass; default 0.95.
        top_k: top-k candidates; default 40.
        seed: RNG seed; default ``None`` = random.
        stop: a string or strings that end the reply (not emitted); default none.
        progress: called as ``progress(done, total)`` after each prefill micro-batch of
            the new tokens; default none.

    Raises:
        ContextLengthError: the formatted conversation does not fit the context.
        SeLocalError: the model has no chat template, or the template failed.
        ConfigError: ``max_tokens < 1``.
    """
    tokens = model.apply_chat_template(with_system(messages, system), tokenize=True)
    check_conversation_fits(model, len(tokens))
    room = model.n_ctx - len(tokens)
    return model.stream_generate(
        tokens,
        max_tokens=room if max_tokens is None else max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        stop=stop,
        progress=progress,
        reuse_cache=True,
    )


def chat(
    model: Model, messages: Sequence[Message], *, stream: bool = True, **kwargs
) -> Union[Iterator[str], str]:
    """Answer ``messages`` with the model's chat template, reusing the cached prefix.

    Takes the arguments of :func:`stream_chat`, with the same defaults.

    Args:
        model: the model.
        messages: the conversation so far.
        stream: yield the reply in text pieces (whole UTF-8 characters); default
            ``True``. ``False`` returns the whole reply as one string.
    """
    responses = stream_chat(model, messages, **kwargs)
    pieces = (r.text for r in responses if r.text)
    return pieces if stream else "".join(pieces)


def with_system(messages: Sequence[Message], system: Optional[str]) -> List[Message]:
    """``messages`` with ``system`` as the first message (replacing a system message already first)."""
    out = [dict(m) for m in messages]
    if system is None:
        return out
    if out and out[0].get("role") == "system":
        out = out[1:]
    return [{"role": "system", "content": system}, *out]


def check_conversation_fits(model: Model, n_tokens: int) -> None:
    """Raise :class:`ContextLengthError` unless ``n_tokens`` of conversation plus one reply token fit.

    The message names both ways on: a new conversation, or a larger context.
    """
    n_ctx = model.n_ctx
    if n_tokens <= n_ctx - 1:
        return
    want = suggested_target_ctx(n_tokens)
    raise ContextLengthError(
        f"the conversation has {n_tokens} tokens but the context holds {n_ctx}: start a new "
        f"conversation (/clear, or fewer messages) or open the model with a larger context "
        f"(--target-ctx {want}, target_ctx={want})"
    )


def suggested_target_ctx(n_tokens: int, reply: int = 1024) -> int:
    """A context for ``n_tokens`` plus a reply of ``reply`` tokens, rounded up to a multiple of 1024."""
    return -(-(n_tokens + reply) // 1024) * 1024


# ---------------------------------------------------------------------------
# A conversation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """A text file attached to the next message.

    Attributes:
        name: the file's name, shown to the model.
        text: the file's text.
        n_tokens: its length in tokens (no special tokens).
    """

    name: str
    text: str
    n_tokens: int


class ChatSession:
    """A conversation with a model: history, system prompt, attachments, and cache reuse.

    Each :meth:`send` formats the whole conversation with the model's template; the
    model's KV cache still holds the previous turns, so only the new message (and
    whatever the template renders differently) is prefilled.

    Args:
        model: the model (with a chat template).
        system: the system prompt; default ``None`` = the template's own default.
        max_tokens: most tokens per reply; default ``None`` = until the model ends its
            turn or the context is full.
        temperature: sampling temperature; default 0.8; ``<= 0`` = greedy.
        top_p: nucleus sampling mass; default 0.95.
        top_k: top-k candidates; default 40.
        seed: RNG seed; default ``None`` = random.

    Not thread-safe; one session per model at a time (the cache is the model's).
    """

    def __init__(
        self,
        model: Model,
        *,
        system: Optional[str] = None,
        max_tokens: Optional[int] = None,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
        top_k: int = DEFAULT_TOP_K,
        seed: Optional[int] = None,
    ) -> None:
        self.model = model
        self.system = system
        """The system prompt (``None`` = the template's default)."""
        self.messages: List[Message] = []
        """The conversation: user and assistant messages, oldest first."""
        self.attachments: List[Attachment] = []
        """Files that go with the next message."""
        self.last: Optional[GenerationResponse] = None
        """The last response of the last turn (its statistics), ``None`` before the first."""
        self._sampling = dict(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
        )

    # -----------------------------------------------------------------------

    def attach(self, path: Union[str, os.PathLike]) -> Attachment:
        """Attach a text file to the next message.

        Args:
            path: the file (read as UTF-8; undecodable bytes become U+FFFD).

        Raises:
            ConfigError: the file cannot be read.
        """
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
        attachment = Attachment(path.name, text, len(self.model.tokenize(text, add_special=False)))
        self.attachments.append(attachment)
        return attachment

    def set_system(self, text: Optional[str]) -> None:
        """Set the system prompt (``None`` or ``""`` = the template's default); the history stays."""
        self.system = text or None

    def clear(self) -> None:
        """Start a new conversation: forget the messages and attachments (the system prompt stays)."""
        self.messages.clear()
        self.attachments.clear()
        self.last = None

    def conversation(self) -> List[Message]:
        """The messages as the template sees them, the system prompt first."""
        return with_system(self.messages, self.system)

    def tokens_used(self) -> int:
        """Tokens the conversation takes in the context, as the template formats it."""
        messages = self.conversation()
        if not messages:
            return 0
        try:
            return len(self.model.apply_chat_template(messages, add_generation_prompt=False, tokenize=True))
        except SeLocalError:  # a template that wants a user message first, say
            return 0

    # -----------------------------------------------------------------------

    def send(self, content: str, *, progress: Optional[ProgressCallback] = None) -> Iterator[GenerationResponse]:
        """Send a user message (with the attached files) and stream the reply.

        The conversation is checked here, when the method is called. The message and
        the reply join the history when the iterator ends, also when it is closed
        early, interrupted or cancelled (:meth:`Model.cancel`) after the reply started
        (the partial reply is kept); if it stops during the prefill, nothing is added
        and the attachments stay for the next message.

        Args:
            content: the user's message.
            progress: called as ``progress(done, total)`` after each prefill micro-batch;
                default none.

        Returns:
            An iterator of responses; the last one has ``finish_reason`` set.

        Raises:
            ContextLengthError: the conversation with this message does not fit the
                context; nothing is added (send something shorter, or :meth:`clear`).
        """
        message = {"role": "user", "content": self._with_attachments(content)}
        responses = stream_chat(
            self.model, [*self.messages, message], system=self.system, progress=progress, **self._sampling
        )
        return self._record(message, responses)

    def _with_attachments(self, content: str) -> str:
        parts = [f"File {a.name}:\n\n{a.text.rstrip()}\n" for a in self.attachments]
        return "\n".join([*parts, content]) if parts else content

    def _record(self, message: Message, responses: Iterator[GenerationResponse]) -> Iterator[GenerationResponse]:
        pieces: List[str] = []
        started = False  # a token was sampled: the model read the message
        try:
            for r in responses:
                started = started or r.generation_tokens > 0
                pieces.append(r.text)
                self.last = r
                yield r
        finally:
            if started:
                self.messages.append(message)
                self.messages.append({"role": "assistant", "content": "".join(pieces)})
                self.attachments.clear()
