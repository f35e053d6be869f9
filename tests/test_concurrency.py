"""Threads: two models generate in parallel; one model runs one generation at a time.

The rule (see ``Model``): a second generation on a busy model is refused with
``ModelBusyError`` (from any thread, or interleaved in one thread); native calls are
serialized, so ``close()`` from another thread cancels and waits, never frees memory
under a running computation.
"""

import threading
import time

import pytest

from se_local import Model, ModelBusyError, SeLocalError
from tinymodel import write_tiny_llama

PROMPTS = ["The lighthouse keeper", "Once upon a time, in a village by the sea,"]


def _greedy(model, prompt, n=16, **kwargs):
    return [r.token for r in model.stream_generate(prompt, max_tokens=n, temperature=0, **kwargs)]


@pytest.fixture(scope="module")
def two_models(smollm2_path, pkg_native):
    models = [Model(smollm2_path, target_ctx=1024, n_threads=1) for _ in PROMPTS]
    yield models
    for m in models:
        m.close()


def test_two_models_in_two_threads_match_sequential(two_models):
    sequential = [_greedy(m, p) for m, p in zip(two_models, PROMPTS)]
    results = [None, None]

    def work(i):
        results[i] = [_greedy(two_models[i], PROMPTS[i]) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert results == [[s] * 3 for s in sequential]


def test_one_model_two_threads_second_is_refused(two_models):
    m = two_models[0]
    want = _greedy(m, PROMPTS[0])
    inside, release = threading.Event(), threading.Event()
    got = []

    def hold(done, total):  # the first generation pauses inside its prefill
        inside.set()
        release.wait(timeout=600)

    worker = threading.Thread(target=lambda: got.append(_greedy(m, PROMPTS[0], progress=hold)))
    worker.start()
    assert inside.wait(timeout=600)
    with pytest.raises(ModelBusyError, match="busy with another generation"):
        _greedy(m, PROMPTS[1])
    release.set()
    worker.join(timeout=600)
    assert got == [want]  # the refused attempt changed nothing
    assert _greedy(m, PROMPTS[0]) == want  # and the model is free again


def test_interleaved_generators_in_one_thread_are_refused(two_models):
    m = two_models[0]
    want = _greedy(m, PROMPTS[0])
    first = m.stream_generate(PROMPTS[0], max_tokens=16, temperature=0)
    tokens = [next(first).token]
    second = m.stream_generate(PROMPTS[1], max_tokens=16, temperature=0)
    with pytest.raises(ModelBusyError):
        next(second)
    tokens += [r.token for r in first]
    assert tokens == want


def test_abandoned_generator_frees_the_model(two_models):
    m = two_models[0]
    want = _greedy(m, PROMPTS[1])
    g = m.stream_generate(PROMPTS[0], max_tokens=16, temperature=0)
    next(g)
    g.close()  # or dropped: the generator's cleanup releases the model
    assert _greedy(m, PROMPTS[1]) == want


def test_tokenize_from_many_threads(two_models):
    m = two_models[0]
    texts = [f"Sentence number {i}: the quick brown fox." * 20 for i in range(8)]
    want = [m.tokenize(t) for t in texts]
    got = [None] * len(texts)

    def work(i):
        for _ in range(20):
            got[i] = m.tokenize(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert got == want


def test_close_from_another_thread_during_a_prefill(tmp_path, pkg_native):
    p = tmp_path / "tiny.gguf"
    write_tiny_llama(p, n_ctx_train=256)
    m = Model(p, target_ctx=16384, n_threads=2, n_batch=64)
    prompt = [3 + (i * 7919) % 317 for i in range(16000)]
    done, out, errors = [], [], []

    def generate():
        try:
            for r in m.stream_generate(prompt, max_tokens=4, temperature=0, progress=lambda d, t: done.append(d)):
                out.append(r)
        except SeLocalError as e:
            errors.append(e)

    worker = threading.Thread(target=generate)
    worker.start()
    t0 = time.monotonic()
    while len(done) < 2:
        assert time.monotonic() - t0 < 600
        time.sleep(0.005)
    m.close()  # cancels the computation in flight, waits for it, frees
    worker.join(timeout=600)
    assert not worker.is_alive()
    # the generation ended cleanly: cancelled, or "the model is closed" at its next native call
    assert (out and out[-1].finish_reason == "cancelled") or (errors and "closed" in str(errors[0])), (out, errors)
    with pytest.raises(SeLocalError, match="closed"):
        m.tokenize("hello")
