"""se_local.Llama: the same llama-cpp-python calls as llama_cpp.Llama, with Self-Extend beyond L."""

import pickle
import warnings

import pytest

THREADS = 2
CHAT = [{"role": "user", "content": "Tell me a story about a lighthouse."}]
PROMPT = "Once upon a time, in a small village by the sea,"


def _llama_kwargs():
    return dict(n_threads=THREADS, n_threads_batch=THREADS, flash_attn=True, verbose=False)


@pytest.fixture(scope="module")
def both(smollm2_path, pkg_native):
    """(llama_cpp.Llama, se_local.Llama) on SmolLM2 with n_ctx 1024 (within L: no Self-Extend)."""
    import llama_cpp

    from se_local import Llama

    plain = llama_cpp.Llama(model_path=str(smollm2_path), n_ctx=1024, **_llama_kwargs())
    ours = Llama(smollm2_path, n_ctx=1024, **_llama_kwargs())
    yield plain, ours
    plain.close()
    ours.close()


def test_is_a_llama_cpp_llama(both):
    import llama_cpp

    plain, ours = both
    assert isinstance(ours, llama_cpp.Llama)
    assert ours.n_ctx() == plain.n_ctx() == 1024
    assert (ours.plan.L, ours.plan.N, ours.plan.self_extend) == (8192, 1024, False)
    assert not ours.self_extend_active
    assert ours.chat_format == plain.chat_format


def test_create_completion_same_both_ways(both):
    outs = [llm.create_completion(PROMPT, max_tokens=16, temperature=0) for llm in both]
    assert outs[0]["choices"][0]["text"] == outs[1]["choices"][0]["text"]
    assert outs[0]["usage"] == outs[1]["usage"]
    assert outs[0]["choices"][0]["text"]


def test_create_chat_completion_same_both_ways(both):
    outs = [llm.create_chat_completion(messages=CHAT, max_tokens=16, temperature=0) for llm in both]
    contents = [o["choices"][0]["message"]["content"] for o in outs]
    assert contents[0] == contents[1] and contents[0]
    assert outs[0]["usage"] == outs[1]["usage"]


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_streaming_same_both_ways(both, kind):
    texts = []
    for llm in both:
        if kind == "completion":
            chunks = llm.create_completion(PROMPT, max_tokens=12, temperature=0, stream=True)
            texts.append("".join(c["choices"][0]["text"] for c in chunks))
        else:
            chunks = llm.create_chat_completion(messages=CHAT, max_tokens=12, temperature=0, stream=True)
            texts.append("".join(c["choices"][0]["delta"].get("content") or "" for c in chunks))
    assert texts[0] == texts[1] and texts[0]


def test_same_as_model_chat(both, smollm2):
    """The conversation through se_local.Llama and through Model.chat: the same greedy reply."""
    _, ours = both
    smollm2.reset()
    expected = smollm2.chat(CHAT, stream=False, temperature=0, max_tokens=16)
    out = ours.create_chat_completion(messages=CHAT, max_tokens=16, temperature=0)
    assert out["choices"][0]["message"]["content"] == expected


def test_n_ctx_and_target_ctx(oracle_tiny_llama_factory, pkg_native):
    from se_local import ConfigError, Llama, PlanError

    path, _, _ = oracle_tiny_llama_factory("f32")
    with Llama(path, n_ctx=1024, **_llama_kwargs()) as llm:  # llama-cpp-python's n_ctx: planned alike
        assert (llm.plan.N, llm.plan.G, llm.plan.W) == (1024, 16, 64)
    with Llama(path, n_ctx=0, **_llama_kwargs()) as llm:  # 0 = the trained length, as upstream
        assert llm.n_ctx() == 256 and not llm.self_extend_active
    with pytest.raises(ConfigError, match="disagree"):
        Llama(path, n_ctx=512, target_ctx=1024)
    with pytest.raises(PlanError, match="beyond the reach"):
        Llama(path, target_ctx=100_000, group=2)


# ---------------------------------------------------------------------------
# Beyond L: the tiny model (L = 256) with a 601-token prompt
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_long(oracle_tiny_llama_factory, pkg_native):
    """(path, se_local.Llama with target_ctx 1024 and Self-Extend, a 601-token prompt)."""
    from se_local import Llama

    path, _, _ = oracle_tiny_llama_factory("f32")
    llm = Llama(path, target_ctx=1024, **_llama_kwargs())
    prompt = [1] + [259 + (7 * i) % 61 for i in range(600)]  # BOS, then plain tokens
    yield path, llm, prompt
    llm.close()


def _greedy(llm, prompt, n=8):
    llm.reset()
    out = []
    for token in llm.generate(prompt, temp=0.0):
        out.append(token)
        if len(out) == n:
            return out


def test_self_extend_is_on_in_the_context(tiny_long, pkg_native):
    _, llm, _ = tiny_long
    if not pkg_native.HAS_SELF_EXTEND:
        pytest.skip("the library has no Self-Extend")
    assert llm.self_extend_active and llm.self_extend_path == "fused"
    assert pkg_native.get_self_extend(llm._ctx.ctx) == (16, 64, 256)
    assert "G=16 W=64" in repr(llm)


def test_prompt_longer_than_L(tiny_long, pkg_native):
    """Same tokens as se_local.Model with the same plan; not what vanilla attention gives."""
    import llama_cpp

    from se_local import Model

    path, llm, prompt = tiny_long
    ours = _greedy(llm, prompt)
    with Model(path, target_ctx=1024, n_threads=THREADS) as model:
        assert model.self_extend_active
        expected = [r.token for r in model.stream_generate(prompt, max_tokens=8, temperature=0)]
    assert ours == expected
    vanilla = llama_cpp.Llama(model_path=path, n_ctx=1024, **_llama_kwargs())
    try:
        assert _greedy(vanilla, prompt) != ours
    finally:
        vanilla.close()

    out = llm.create_completion(prompt, max_tokens=4, temperature=0)
    assert out["usage"]["prompt_tokens"] == 601 > llm.plan.L
    chunks = list(llm.create_completion(prompt, max_tokens=4, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == out["choices"][0]["text"]


def test_self_extend_survives_reset_state_and_pickle(tiny_long, pkg_native):
    from se_local import Llama

    _, llm, prompt = tiny_long
    before = _greedy(llm, prompt, n=4)
    state = llm.save_state()
    llm.reset()
    llm.load_state(state)
    assert pkg_native.get_self_extend(llm._ctx.ctx)[:2] == (16, 64)
    clone = pickle.loads(pickle.dumps(llm))
    try:
        assert isinstance(clone, Llama) and clone.self_extend_active
        assert pkg_native.get_self_extend(clone._ctx.ctx)[:2] == (16, 64)
        assert _greedy(clone, prompt, n=4) == before
    finally:
        clone.close()


def test_refused_self_extend_is_an_error(oracle_tiny_llama_factory, pkg_native):
    import llama_cpp

    from se_local import Llama, SelfExtendError

    if not pkg_native.HAS_SELF_EXTEND:
        pytest.skip("the library has no Self-Extend")
    path, _, _ = oracle_tiny_llama_factory("f32")
    with pytest.raises(SelfExtendError, match="refused Self-Extend G=16 W=64"):  # YaRN does not combine
        Llama(path, target_ctx=1024, rope_scaling_type=llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN, **_llama_kwargs())


def test_smollm2_beyond_L(smollm2_path, pkg_native):
    """The real model with a context slightly beyond L = 8192: Self-Extend on, a short chat works."""
    from se_local import Llama

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llm = Llama(smollm2_path, target_ctx=9216, **_llama_kwargs())
    try:
        assert (llm.n_ctx(), llm.plan.G, llm.plan.W) == (9216, 3, 1024)
        assert llm.self_extend_active == pkg_native.HAS_SELF_EXTEND
        out = llm.create_chat_completion(messages=CHAT, max_tokens=4, temperature=0)
        assert out["choices"][0]["message"]["content"]
    finally:
        llm.close()


def test_state_with_the_other_key_layout_is_refused(oracle_tiny_llama_factory, pkg_native):
    """llama.cpp stores a quantized K cache Hadamard-rotated (head size a multiple of 64), but not while Self-Extend
    is on: a state saved with one layout and loaded into a context with the other would attend wrongly, silently.
    se_local.Llama tags its states and refuses the mismatch; the same layout loads as before."""
    from se_local import Llama, SelfExtendError

    if not pkg_native.HAS_SELF_EXTEND:
        pytest.skip("the library has no Self-Extend")
    path, _, hp = oracle_tiny_llama_factory("f32", n_embd=256, n_head=4, n_head_kv=2)   # head size 64, L 256
    q8 = dict(type_k=8, type_v=8, **_llama_kwargs())                                     # GGML_TYPE_Q8_0
    prompt = [1] + [259 + (5 * i) % 61 for i in range(100)]
    with Llama(path, target_ctx=hp["n_ctx_train"], **q8) as plain, Llama(path, target_ctx=1024, **q8) as se, \
            Llama(path, target_ctx=1024, **_llama_kwargs()) as se_f16:
        assert not plain.self_extend_active and se.self_extend_active
        assert pkg_native.k_cache_rotated(plain._ctx.ctx) and not pkg_native.k_cache_rotated(se._ctx.ctx)
        assert not pkg_native.k_cache_rotated(se_f16._ctx.ctx)
        plain.eval(prompt)
        rotated = plain.save_state()
        with pytest.raises(SelfExtendError, match="Hadamard-rotated"):
            se.load_state(rotated)
        assert se.n_tokens == 0                        # nothing was loaded
        se.eval(prompt)
        with pytest.raises(SelfExtendError, match="Hadamard-rotated"):
            plain.load_state(se.save_state())
        plain.reset()
        plain.load_state(rotated)                      # the same layout loads
        assert plain.n_tokens == len(prompt)
        se_f16.eval(prompt)
        se.reset()
        state = se_f16.save_state()
        assert state.se_k_rotated is False
