"""Text generation, in layers (as mlx-lm does it).

* :func:`stream_generate` yields one :class:`GenerationResponse` per sampled token:
  the text that token made safe to show, the token, timings, and at the end a
  ``finish_reason``.
* :func:`generate` yields just the non-empty text pieces.

Each call starts from an empty context: the prompt is tokenized, checked against
the context size before any compute, prefilled in micro-batches of ``n_batch``
tokens (``progress(done, total)`` after each), then tokens are sampled with
llama.cpp's sampler chain until an end-of-generation token (``"stop"``), a stop
string (``"stop"``), ``max_tokens`` or a full context (``"length"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Sequence, Union

from .errors import ConfigError
from .textstream import TextStream

if TYPE_CHECKING:
    from .model import Model

__all__ = ["GenerationResponse", "generate", "stream_generate"]

DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 40

Prompt = Union[str, Sequence[int]]


@dataclass(frozen=True)
class GenerationResponse:
    """One step of generation.

    Attributes:
        text: text this step made safe to emit (may be ``""``: an incomplete UTF-8
            character or a possible stop-string start is held back).
        token: the sampled token id.
        finish_reason: ``None`` while generating; ``"stop"`` (end-of-generation token
            or stop string) or ``"length"`` (``max_tokens`` or a full context) at the end.
        prompt_tokens: prompt length, in tokens.
        prompt_tps: prefill speed, prompt tokens per second.
        generation_tokens: tokens sampled so far, this one included.
        generation_tps: sampled tokens per second since the prefill ended.
    """

    text: str
    token: int
    finish_reason: Optional[str]
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen.

    Attributes:
        temperature: ``<= 0`` = greedy; default 0.8.
        top_p: nucleus sampling mass; default 0.95 (1.0 = off).
        top_k: candidates kept; default 40 (0 = off).
        seed: RNG seed; default ``None`` = random.
    """

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int = DEFAULT_TOP_K
    seed: Optional[int] = None


def stream_generate(
    model: Model,
    prompt: Prompt,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    seed: Optional[int] = None,
    stop: Union[str, Sequence[str], None] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Iterator[GenerationResponse]:
    """Generate from ``prompt``, one :class:`GenerationResponse` per sampled token.

    The prompt is checked here, when the function is called; the work happens as the
    returned iterator is consumed.

    Args:
        model: the model.
        prompt: text (tokenized with the model's BOS rule, special tokens parsed) or token ids.
        max_tokens: most tokens to sample; default 256.
        temperature: sampling temperature; default 0.8; ``<= 0`` = greedy.
        top_p: nucleus sampling mass; default 0.95.
        top_k: top-k candidates; default 40.
        seed: RNG seed; default ``None`` = random.
        stop: a string or strings that end generation (not emitted); default none.
        progress: called as ``progress(done, total)`` after each prefill micro-batch;
            default none.

    Returns:
        An iterator of responses; the last one has ``finish_reason`` set.

    Raises:
        ContextLengthError: the prompt does not fit the context (before any compute).
        ConfigError: ``max_tokens < 1`` or an empty prompt.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    tokens = model.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not tokens:
        raise ConfigError("the prompt is empty (and the model adds no BOS token): nothing to continue from")
    model.check_fits(len(tokens), max_tokens)
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    params = SamplingParams(temperature, top_p, top_k, seed)
    return _run(model, tokens, max_tokens, params, stops, progress)


def generate(model: Model, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
    """Generate from ``prompt``, yielding the text in pieces of whole UTF-8 characters.

    Takes the arguments of :func:`stream_generate`, with the same defaults.
    """
    responses = stream_generate(model, prompt, **kwargs)
    return (r.text for r in responses if r.text)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


def _run(
    model: Model,
    tokens: List[int],
    max_tokens: int,
    params: SamplingParams,
    stops: List[str],
    progress: Optional[Callable[[int, int], None]],
) -> Iterator[GenerationResponse]:
    sampler = model.make_sampler(
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, seed=params.seed
    )
    try:
        n_prompt, n_ctx = len(tokens), model.n_ctx
        model.reset()
        t0 = time.perf_counter()
        model.prefill(tokens, progress)
        t1 = time.perf_counter()
        prompt_tps = n_prompt / max(t1 - t0, 1e-9)
        text_stream = TextStream(stops)
        n_past = n_prompt

        def response(text: str, token: int, finish: Optional[str], n: int) -> GenerationResponse:
            tps = n / max(time.perf_counter() - t1, 1e-9)
            return GenerationResponse(text, token, finish, n_prompt, prompt_tps, n, tps)

        for n in range(1, max_tokens + 1):
            token = sampler.sample()
            if model.is_eog(token):
                yield response(text_stream.flush(), token, "stop", n)
                return
            text, stopped = text_stream.push(model.token_bytes(token))
            if stopped:
                yield response(text, token, "stop", n)
                return
            if n == max_tokens or n_past >= n_ctx:
                yield response(text + text_stream.flush(), token, "length", n)
                return
            yield response(text, token, None, n)
            model.decode([token])
            n_past += 1
    finally:
        sampler.close()
