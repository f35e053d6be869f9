"""Text generation, in layers (as mlx-lm does it).

* :func:`stream_generate` yields one :class:`GenerationResponse` per sampled token:
  the text that token made safe to show, the token, timings, and at the end a
  ``finish_reason``.
* :func:`generate` yields just the non-empty text pieces.

Each call starts from an empty context (or, with ``reuse_cache=True``, from the
longest prefix of the prompt the context already holds): the prompt is tokenized,
checked against the context size before any compute, prefilled in micro-batches of ``n_batch``
tokens (``progress(done, total)`` after each), then tokens are sampled with
llama.cpp's sampler chain until an end-of-generation token (``"stop"``), a stop
string (``"stop"``), ``max_tokens`` or a full context (``"length"``).
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Sequence, Union

from .errors import ConfigError, GenerationCancelled
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
        token: the sampled token id (-1 on the last response of a cancelled generation).
        finish_reason: ``None`` while generating; ``"stop"`` (end-of-generation token
            or stop string), ``"length"`` (``max_tokens`` or a full context) or
            ``"cancelled"`` (:meth:`Model.cancel`) at the end.
        prompt_tokens: prompt length, in tokens.
        prompt_tps: prefill speed, prompt tokens per second.
        generation_tokens: tokens sampled so far, this one included.
        generation_tps: sampled tokens per second since the prefill ended.
        cached_tokens: leading prompt tokens found in the context's cache and not
            evaluated again (``reuse_cache=True``); ``prompt_tps`` counts the others.
    """

    text: str
    token: int
    finish_reason: Optional[str]
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    cached_tokens: int = 0


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
    reuse_cache: bool = False,
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
        reuse_cache: keep the longest prefix of the prompt that the context already
            holds (from the previous call) and prefill only the rest; default ``False``
            = start from an empty context. Chat turns use it.

    Returns:
        An iterator of responses; the last one has ``finish_reason`` set. After
        :meth:`Model.cancel <se_local.model.Model.cancel>` the last one has
        ``finish_reason="cancelled"``, ``text=""`` and ``token=-1``.

    Raises:
        ContextLengthError: the prompt does not fit the context (before any compute).
        ConfigError: ``max_tokens < 1`` or an empty prompt.
        ModelBusyError: (from the iterator's first step) another generation holds the model.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    tokens = model.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not tokens:
        raise ConfigError("the prompt is empty (and the model adds no BOS token): nothing to continue from")
    model.check_fits(len(tokens), max_tokens)
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    params = SamplingParams(temperature, top_p, top_k, seed)
    responses = _run(model, tokens, max_tokens, params, stops, progress, reuse_cache)
    return _exclusive(model, len(tokens), responses)


def generate(model: Model, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
    """Generate from ``prompt``, yielding the text in pieces of whole UTF-8 characters.

    Takes the arguments of :func:`stream_generate`, with the same defaults.
    """
    responses = stream_generate(model, prompt, **kwargs)
    return (r.text for r in responses if r.text)


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


def _exclusive(
    model: Model, n_prompt: int, responses: Iterator[GenerationResponse]
) -> Iterator[GenerationResponse]:
    """Run ``responses`` as the model's only generation; end it quietly on ``model.cancel()``."""
    with model.session(), closing(responses):
        last = None
        try:
            for last in responses:
                yield last
        except GenerationCancelled:
            if last is None:
                yield GenerationResponse("", -1, "cancelled", n_prompt, 0.0, 0, 0.0)
            else:
                yield replace(last, text="", token=-1, finish_reason="cancelled")


def _run(
    model: Model,
    tokens: List[int],
    max_tokens: int,
    params: SamplingParams,
    stops: List[str],
    progress: Optional[Callable[[int, int], None]],
    reuse_cache: bool = False,
) -> Iterator[GenerationResponse]:
    sampler = model.make_sampler(
        temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, seed=params.seed
    )
    try:
        n_prompt, n_ctx = len(tokens), model.n_ctx
        if reuse_cache:
            n_cached = model.keep_prefix(tokens)
        else:
            model.reset()
            n_cached = 0
        t0 = time.perf_counter()
        model.prefill(tokens[n_cached:], progress)
        t1 = time.perf_counter()
        prompt_tps = (n_prompt - n_cached) / max(t1 - t0, 1e-9)
        text_stream = TextStream(stops)
        n_past = n_prompt

        def response(text: str, token: int, finish: Optional[str], n: int) -> GenerationResponse:
            tps = n / max(time.perf_counter() - t1, 1e-9)
            return GenerationResponse(text, token, finish, n_prompt, prompt_tps, n, tps, n_cached)

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
