"""Generation on SmolLM2: greedy equals llama-cpp-python's Llama, whole UTF-8, stop strings, errors."""

import warnings

import pytest

from se_local.errors import ConfigError, ContextLengthError, PlanError, SeLocalError
from se_local.textstream import TextStream

RAW_PROMPT = "Once upon a time, in a small village by the sea,"
CHAT = [{"role": "user", "content": "Tell me a story about a lighthouse."}]


def greedy_tokens(model, prompt, n=32):
    responses = list(model.stream_generate(prompt, max_tokens=n, temperature=0))
    return [r.token for r in responses], responses


# ---------------------------------------------------------------------------
# TextStream (no model)
# ---------------------------------------------------------------------------


def test_utf8_split_across_tokens():
    s = TextStream()
    assert s.push(b"caf\xc3") == ("caf", False)
    assert s.push(b"\xa9 ok") == ("\u00e9 ok", False)
    emoji = "\U0001f600".encode()
    assert [s.push(emoji[i : i + 1])[0] for i in range(4)] == ["", "", "", "\U0001f600"]
    assert s.flush() == ""


def test_utf8_incomplete_at_end_is_replaced():
    s = TextStream()
    assert s.push(b"a\xe2\x82") == ("a", False)
    assert s.flush() == "\ufffd"


def test_stop_string_across_tokens_is_not_emitted():
    s = TextStream(stop=["END"])
    assert s.push(b"abc E") == ("abc ", False)  # "E" could start "END": held back
    assert s.push(b"N") == ("", False)
    assert s.push(b"Dxyz") == ("", True)
    assert s.stopped and s.push(b"more") == ("", True) and s.flush() == ""


def test_held_back_text_is_released_when_no_stop_follows():
    s = TextStream(stop=["END"])
    assert s.push(b"x EN") == ("x ", False)
    assert s.push(b"O") == ("ENO", False)
    assert s.push(b" E") == (" ", False)
    assert s.flush() == "E"


def test_earliest_of_several_stops():
    s = TextStream(stop=["\n\n", "b", ""])
    assert s.push(b"aab\n\n") == ("aa", True)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def test_model_properties(smollm2):
    assert smollm2.n_ctx == 1024
    assert smollm2.info.context_length == 8192
    p = smollm2.plan
    assert (p.L, p.N, p.G, p.self_extend) == (8192, 1024, 1, False)
    assert not smollm2.self_extend_active
    assert smollm2.detokenize(smollm2.tokenize("Hello world", add_special=False)) == "Hello world"


def test_greedy_is_deterministic(smollm2):
    a, _ = greedy_tokens(smollm2, RAW_PROMPT)
    b, _ = greedy_tokens(smollm2, RAW_PROMPT)
    assert a == b and len(a) == 32


def test_seeded_sampling_is_deterministic(smollm2):
    def run():
        responses = smollm2.stream_generate(RAW_PROMPT, max_tokens=16, temperature=0.9, seed=1234)
        return [r.token for r in responses]

    assert run() == run()


@pytest.fixture(scope="module")
def reference_llama(smollm2, smollm2_path):
    """llama-cpp-python's high-level Llama on the same library, same context settings."""
    import llama_cpp  # se_local._lib has pointed it at se-local's library

    llm = llama_cpp.Llama(
        model_path=str(smollm2_path),
        n_ctx=smollm2.n_ctx,
        n_batch=smollm2.n_batch,
        n_ubatch=smollm2.n_batch,
        n_threads=smollm2.n_threads,
        n_threads_batch=smollm2.n_threads,
        flash_attn=True,
        verbose=False,
    )
    yield llm
    llm.close()


@pytest.mark.parametrize("kind", ["raw", "chat"])
def test_greedy_equals_llama_cpp_python(smollm2, reference_llama, kind):
    if kind == "raw":
        ours_prompt = smollm2.tokenize(RAW_PROMPT)
        theirs_prompt = reference_llama.tokenize(RAW_PROMPT.encode(), add_bos=True, special=True)
    else:
        text = smollm2.apply_chat_template(CHAT)
        ours_prompt = smollm2.apply_chat_template(CHAT, tokenize=True)
        theirs_prompt = reference_llama.tokenize(text.encode(), add_bos=False, special=True)
    assert ours_prompt == theirs_prompt

    ours, responses = greedy_tokens(smollm2, ours_prompt)
    theirs = []
    for token in reference_llama.generate(theirs_prompt, temp=0.0):
        theirs.append(token)
        if len(theirs) == 32 or smollm2.is_eog(token):
            break
    assert ours == theirs
    text = "".join(r.text for r in responses)
    n_text = len(ours) - (responses[-1].finish_reason == "stop")
    assert text == reference_llama.detokenize(theirs[:n_text]).decode("utf-8")


def test_response_fields(smollm2):
    responses = list(smollm2.stream_generate(RAW_PROMPT, max_tokens=8, temperature=0))
    assert [r.generation_tokens for r in responses] == list(range(1, 9))
    assert [r.finish_reason for r in responses] == [None] * 7 + ["length"]
    n_prompt = len(smollm2.tokenize(RAW_PROMPT))
    assert all(r.prompt_tokens == n_prompt and r.prompt_tps > 0 and r.generation_tps > 0 for r in responses)


def test_generate_yields_the_text_of_stream_generate(smollm2):
    pieces = list(smollm2.generate(RAW_PROMPT, max_tokens=16, temperature=0))
    responses = list(smollm2.stream_generate(RAW_PROMPT, max_tokens=16, temperature=0))
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == "".join(r.text for r in responses)


def test_end_of_generation_token_stops(smollm2):
    # the instruct model answers a raw question and ends its turn quickly
    responses = list(
        smollm2.stream_generate(
            smollm2.apply_chat_template([{"role": "user", "content": "Say OK."}], tokenize=True),
            max_tokens=64,
            temperature=0,
        )
    )
    last = responses[-1]
    assert last.finish_reason == "stop" and smollm2.is_eog(last.token)
    assert len(responses) < 64


def test_stop_string(smollm2):
    full = "".join(smollm2.generate(RAW_PROMPT, max_tokens=32, temperature=0))
    stop = full[len(full) // 2 : len(full) // 2 + 4]
    assert len(stop) == 4
    responses = list(smollm2.stream_generate(RAW_PROMPT, max_tokens=32, temperature=0, stop=[stop]))
    text = "".join(r.text for r in responses)
    assert text == full[: full.index(stop)]
    assert responses[-1].finish_reason == "stop"


def test_streaming_yields_whole_utf8(smollm2):
    word = "\u65e5\u672c\u8a9e \u00e9t\u00e9 \U0001f600"  # CJK, accents, emoji
    tokens = smollm2.tokenize(word, add_special=False)
    pieces = [smollm2.token_bytes(t) for t in tokens]
    assert any(_broken_utf8(p) for p in pieces), "expected a character split across tokens"
    stream = TextStream()
    out = [stream.push(p)[0] for p in pieces] + [stream.flush()]
    assert "".join(out) == word
    assert all("\ufffd" not in piece for piece in out)


def test_generated_non_ascii_text(smollm2):
    prompt = smollm2.apply_chat_template(
        [{"role": "user", "content": "Write the French word caf\u00e9 five times."}], tokenize=True
    )
    responses = list(smollm2.stream_generate(prompt, max_tokens=24, temperature=0))
    tokens = [r.token for r in responses if r.finish_reason != "stop" or not smollm2.is_eog(r.token)]
    text = "".join(r.text for r in responses)
    assert "\ufffd" not in text
    assert text == smollm2.detokenize(tokens)


@pytest.fixture(scope="module")
def small_batches(smollm2_path, pkg_native):
    """SmolLM2 with 64-token prefill micro-batches and a 512-token context."""
    from se_local import Model

    with Model(smollm2_path, target_ctx=512, n_threads=2, n_batch=64) as m:
        yield m


PROGRESS_TEXT = "one two three four five six seven eight nine ten " * 15


def test_progress_callback(small_batches):
    calls = []
    prompt = small_batches.tokenize(PROGRESS_TEXT)
    assert 128 < len(prompt) < 500
    list(
        small_batches.stream_generate(
            prompt, max_tokens=2, temperature=0, progress=lambda d, t: calls.append((d, t))
        )
    )
    n = len(prompt)
    assert calls == [(min(i + 64, n), n) for i in range(0, n, 64)]


def test_interrupted_prefill_leaves_the_model_usable(small_batches):
    expected = [r.token for r in small_batches.stream_generate(PROGRESS_TEXT, max_tokens=8, temperature=0)]

    def interrupt(done, total):
        if done >= 128:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(small_batches.stream_generate(PROGRESS_TEXT, max_tokens=8, temperature=0, progress=interrupt))
    again = [r.token for r in small_batches.stream_generate(PROGRESS_TEXT, max_tokens=8, temperature=0)]
    assert again == expected


def test_prompt_too_long_fails_before_compute(smollm2):
    long_prompt = "word " * 2000
    with pytest.raises(
        ContextLengthError, match=r"the prompt has \d+ tokens but the context holds 1024.*--target-ctx 2048"
    ) as e:
        smollm2.stream_generate(long_prompt, max_tokens=16)  # raised at the call, not on iteration
    assert "\n" not in str(e.value)


def test_bad_arguments(smollm2):
    with pytest.raises(ConfigError, match="max_tokens"):
        smollm2.stream_generate(RAW_PROMPT, max_tokens=0)
    with pytest.raises(ConfigError, match="empty"):
        smollm2.stream_generate([], max_tokens=4)


def test_model_errors(tmp_path, smollm2_path, pkg_native):
    from se_local import Model, ModelFileError

    with pytest.raises(ModelFileError, match="not found"):
        Model(tmp_path / "missing.gguf")
    with pytest.raises(PlanError, match="beyond the reach"):
        Model(smollm2_path, target_ctx=100_000, group=2)
    with pytest.raises(ConfigError, match="kv_type"):
        Model(smollm2_path, kv_type="q3")
    with pytest.raises(ConfigError, match="n_threads"):
        Model(smollm2_path, n_threads=0)


def test_closed_model(smollm2_path, pkg_native):
    from se_local import Model

    m = Model(smollm2_path, target_ctx=256, n_threads=2)
    m.close()
    m.close()  # twice is fine
    with pytest.raises(SeLocalError, match="closed"):
        m.tokenize("hi")


def test_beyond_trained_length_plans_self_extend(smollm2_path, pkg_native):
    from se_local import Model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Model(smollm2_path, target_ctx=16384, n_threads=2) as m:
            assert (m.plan.G, m.plan.W, m.n_ctx) == (6, 1024, 16384)
            assert m.self_extend_active == pkg_native.HAS_SELF_EXTEND
            if pkg_native.HAS_SELF_EXTEND:
                assert pkg_native.get_self_extend(m._ctx)[:2] == (6, 1024)
                assert m.self_extend_path == "fused"   # flash attention on, the CPU has the fused op
    unavailable = [w for w in caught if "no Self-Extend" in str(w.message)]
    assert bool(unavailable) == (not pkg_native.HAS_SELF_EXTEND)


@pytest.mark.parametrize("how", ["flash_attn=False", "LLAMA_SE_PORTABLE=1"])
def test_self_extend_path_reports_the_portable_path(smollm2_path, pkg_native, monkeypatch, how):
    """Model.self_extend_path says when Self-Extend runs through the portable path: flash attention off, or a
    device without the fused op (on a GPU; LLAMA_SE_PORTABLE=1 takes that route on the CPU too)."""
    from se_local import Model

    if not pkg_native.HAS_SELF_EXTEND:
        pytest.skip("the library has no Self-Extend")
    kw = {}
    if how == "flash_attn=False":
        kw["flash_attn"] = False
    else:
        monkeypatch.setenv("LLAMA_SE_PORTABLE", "1")
    with Model(smollm2_path, target_ctx=16384, n_threads=2, **kw) as m:
        assert m.self_extend_active and m.self_extend_path == "portable"
        assert pkg_native.self_extend_path(m._ctx) == "portable"
    with Model(smollm2_path, target_ctx=1024, n_threads=2, **kw) as m:   # within L: no Self-Extend
        assert not m.self_extend_active and m.self_extend_path == "off"


def _broken_utf8(data):
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True
