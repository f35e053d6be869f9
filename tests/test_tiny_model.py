"""Model-level exactness: llama.cpp (se-local's build) on a tiny random llama
GGUF vs the NumPy forward pass of tests/reference.py.

The tiny model has a trained length L = 256; a fixed random sequence of
T = 400 tokens runs past it, with Self-Extend G = 4, W = 32 (largest relative
position seen: 399//4 + 32 - 8 = 123 < L).

Tolerances (max |llama.cpp - reference| over all compared logits, relative to
max |reference logit| ~ 4.5), measured on the CPU build, vanilla and
Self-Extend alike:
  * f32 weights, f32 KV cache, flash attention off: <= 1.5e-5  -> TOL_EXACT 2e-4
  * anything in f16 (f16 weights, f16 KV cache, or flash attention, whose CPU
    kernel works in f16): 1.6e-3 .. 4.9e-3                     -> TOL_F16 1e-2
The Self-Extend effect on the same logits (SE reference vs vanilla reference)
is ~1.1 relative overall and >= 0.24 at every position past 2W: 100x the
loose tolerance, so a vanilla result cannot pass a Self-Extend check.
"""

import ctypes
import logging
import re

import numpy as np
import pytest

from reference import llama_forward, se_bounds

T = 400            # tokens decoded (> L)
L = 256            # n_ctx_train of the tiny model
N_CTX = 512
SE_G, SE_W = 4, 32

TOL_EXACT = 2e-4   # relative to max |reference logit|
TOL_F16 = 1e-2

F32, F16 = 0, 1    # ggml_type

# micro-batch splits: (n_batch, n_ubatch, chunk sizes handed to llama_decode)
SPLITS = {
    "b64": (64, 64, None),
    "b128-ub32": (128, 32, None),
    "odd37": (37, 37, None),
    "prompt+decode": (512, 512, "decode24"),   # prefill, then the last 24 one by one
}


def tokens_for(hparams, n=T, seed=7):
    rng = np.random.default_rng(seed)
    return rng.integers(3, hparams["n_vocab"], n)    # no special tokens


def tolerance(dtype, flash_attn, kv_type):
    exact = dtype == "f32" and not flash_attn and kv_type == F32
    return TOL_EXACT if exact else TOL_F16


# -----------------------------------------------------------------------------
# llama.cpp through llama-cpp-python's low-level ctypes API


def self_extend_fn(lc):
    """ctypes handle of llama_set_self_extend, or skip when the library
    predates the patch."""
    fn = getattr(lc.llama_cpp._lib, "llama_set_self_extend", None)
    if fn is None:
        pytest.skip("library lacks llama_set_self_extend")
    fn.argtypes = [lc.llama_context_p_ctypes, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
    fn.restype = ctypes.c_int32
    return fn


class Model:
    def __init__(self, lc, path):
        self.lc = lc
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.ptr = lc.llama_model_load_from_file(path.encode(), mp)
        assert self.ptr, f"llama.cpp failed to load {path}"
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.ptr))

    def close(self):
        if self.ptr:
            self.lc.llama_model_free(self.ptr)
            self.ptr = None

    def new_context(self, *, n_ctx=N_CTX, n_batch=64, n_ubatch=64, flash_attn=True,
                    type_k=F16, type_v=F16):
        lc = self.lc
        cp = lc.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_ubatch, 1
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = (lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                              else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.type_k, cp.type_v = type_k, type_v
        ctx = lc.llama_init_from_model(self.ptr, cp)
        assert ctx, "llama_init_from_model failed"
        return ctx

    def decode(self, tokens, *, split="b64", flash_attn=True, kv_type=F16, v_type=None,
               self_extend=None, all_logits=True, stats=None):
        """Decode `tokens` at positions 0..T-1 in micro-batches; return the
        logits of every token (T, n_vocab) or of the last one (1, n_vocab).
        v_type: the V cache type when it differs from kv_type (K's).
        stats: a dict that receives llama.cpp's graph reuse count (n_reused)."""
        lc = self.lc
        n_batch, n_ubatch, chunks = SPLITS[split]
        n = len(tokens)
        if chunks == "decode24":
            chunks = [n - 24] + [1] * 24
        chunks = chunks or [n_batch] * (-(-n // n_batch))
        ctx = self.new_context(n_batch=n_batch, n_ubatch=n_ubatch, flash_attn=flash_attn,
                               type_k=kv_type, type_v=kv_type if v_type is None else v_type)
        batch = lc.llama_batch_init(n_batch, 0, 1)
        out = []
        try:
            if self_extend is not None:
                rc = self_extend_fn(lc)(ctx, *self_extend)
                assert rc == 0, f"llama_set_self_extend{self_extend} returned {rc}"
            s = 0
            for size in chunks:
                e = min(s + size, n)
                if e <= s:
                    break
                batch.n_tokens = e - s
                for b, p in enumerate(range(s, e)):
                    batch.token[b] = int(tokens[p])
                    batch.pos[b] = p
                    batch.n_seq_id[b] = 1
                    batch.seq_id[b][0] = 0
                    batch.logits[b] = 1 if (all_logits or p == n - 1) else 0
                rc = lc.llama_decode(ctx, batch)
                assert rc == 0, f"llama_decode returned {rc} at tokens {s}..{e}"
                n_out = (e - s) if all_logits else int(e == n)
                if n_out:
                    buf = lc.llama_get_logits(ctx)
                    a = np.ctypeslib.as_array(buf, shape=(n_out * self.n_vocab,))
                    out.append(a.reshape(n_out, self.n_vocab).astype(np.float64))
                s = e
            assert s == n
            if stats is not None:
                stats["n_reused"] = lc.llama_perf_context(ctx).n_reused
        finally:
            lc.llama_batch_free(batch)
            lc.llama_free(ctx)
        return np.concatenate(out)


@pytest.fixture(scope="module", params=["f32", "f16"])
def tiny(request, oracle_llama_cpp, oracle_tiny_llama_factory):
    """(Model, weights, hparams, dtype) for the tiny llama in f32 and f16."""
    path, weights, hparams = oracle_tiny_llama_factory(request.param)
    m = Model(oracle_llama_cpp, path)
    yield m, weights, hparams, request.param
    m.close()


_REF_CACHE = {}


def reference_logits(weights, hparams, dtype, **se):
    key = (dtype, tuple(sorted(se.items())))
    if key not in _REF_CACHE:
        _REF_CACHE[key] = llama_forward(weights, hparams, tokens_for(hparams), **se)
    return _REF_CACHE[key]


def assert_close(got, ref, tol, what):
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max() / scale
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert err <= tol, f"{what}: max rel err {err:.3g} > {tol:g} (logit scale {scale:.3g})"
    return err


# -----------------------------------------------------------------------------
# Pure Python: the file and the reference forward pass


def test_gguf_stores_the_returned_weights(oracle_tiny_llama_factory):
    """What GGUFReader reads back (ggml ne = [n_in, n_out] -> NumPy (n_out,
    n_in)) is exactly the returned weight dict."""
    gguf = pytest.importorskip("gguf")
    for dtype in ("f32", "f16"):
        path, weights, hp = oracle_tiny_llama_factory(dtype)
        r = gguf.GGUFReader(path)
        seen = {}
        for t in r.tensors:
            seen[t.name] = np.asarray(t.data, dtype=np.float64).reshape(weights[t.name].shape)
            assert list(t.shape) == list(reversed(weights[t.name].shape)), t.name
        assert set(seen) == set(weights)
        for name, a in seen.items():
            np.testing.assert_array_equal(a, weights[name], err_msg=name)
        arch = r.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() == "llama"


def test_reference_forward_properties(oracle_tiny_llama_factory):
    """Causality, Self-Extend visibly active past W, adaptive rows < L vanilla."""
    _, w, hp = oracle_tiny_llama_factory("f32")
    toks = tokens_for(hp)
    van = llama_forward(w, hp, toks)
    se = llama_forward(w, hp, toks, group=SE_G, window=SE_W)
    ad = llama_forward(w, hp, toks, group=SE_G, window=SE_W, pos_min=-1)
    # causal: a prefix gives the same logits
    np.testing.assert_allclose(llama_forward(w, hp, toks[:100], group=SE_G, window=SE_W),
                               se[:100], rtol=1e-10, atol=1e-10)
    # rows < W are vanilla; past W the logits change by far more than TOL_F16
    np.testing.assert_allclose(se[:SE_W], van[:SE_W], rtol=1e-12, atol=1e-12)
    scale = np.abs(van).max()
    effect = np.abs(se - van).max(axis=1) / scale            # per position
    assert effect[2 * SE_W:].min() > 10 * TOL_F16, effect    # measured >= 0.24
    assert np.median(effect[SE_W:]) > 20 * TOL_F16, effect   # measured ~0.6
    # adaptive (pos_min = -1 -> L): rows < L vanilla, rows >= L Self-Extended
    np.testing.assert_allclose(ad[:L], van[:L], rtol=1e-12, atol=1e-12)
    assert (np.abs(ad - van)[L:].max(axis=1) / scale > 2 * TOL_F16).all()


# -----------------------------------------------------------------------------
# llama.cpp vs the reference


def test_model_metadata(tiny):
    m, _, hp, _ = tiny
    lc = m.lc
    assert lc.llama_model_n_ctx_train(m.ptr) == hp["n_ctx_train"] == L
    assert lc.llama_model_n_embd(m.ptr) == hp["n_embd"]
    assert lc.llama_model_n_layer(m.ptr) == hp["n_layer"]
    assert lc.llama_model_n_head(m.ptr) == hp["n_head"]
    assert lc.llama_model_n_head_kv(m.ptr) == hp["n_head_kv"]
    assert m.n_vocab == hp["n_vocab"]
    assert lc.llama_model_rope_type(m.ptr) == lc.LLAMA_ROPE_TYPE_NORM


VANILLA_CASES = [(fa, F16, s) for fa in (True, False) for s in SPLITS] + \
                [(fa, F32, "b64") for fa in (True, False)]


@pytest.mark.parametrize("flash_attn,kv_type,split", VANILLA_CASES)
def test_vanilla_matches_reference(tiny, flash_attn, kv_type, split):
    m, w, hp, dtype = tiny
    ref = reference_logits(w, hp, dtype)
    toks = tokens_for(hp)
    tol = tolerance(dtype, flash_attn, kv_type)
    got = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=kv_type)
    assert_close(got, ref, tol, "all-token logits")
    last = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=kv_type, all_logits=False)
    assert_close(last, ref[-1:], tol, "last-token logits")


SE_CASES = [(fa, F16, s) for fa in (True, False) for s in SPLITS] + \
           [(fa, F32, "b64") for fa in (True, False)]


@pytest.mark.parametrize("pos_min", [0, -1])
@pytest.mark.parametrize("flash_attn,kv_type,split", SE_CASES)
def test_self_extend_matches_reference(tiny, flash_attn, kv_type, split, pos_min):
    """llama_set_self_extend(ctx, 4, 32, pos_min) == Algorithm 1 (pos_min=0)
    or its adaptive form (pos_min=-1 -> L: rows < L vanilla)."""
    m, w, hp, dtype = tiny
    self_extend_fn(m.lc)
    ref = reference_logits(w, hp, dtype, group=SE_G, window=SE_W, pos_min=pos_min)
    toks = tokens_for(hp)
    tol = tolerance(dtype, flash_attn, kv_type)
    se = (SE_G, SE_W, pos_min)
    got = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=kv_type, self_extend=se)
    assert_close(got, ref, tol, "all-token logits")
    last = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=kv_type,
                    self_extend=se, all_logits=False)
    assert_close(last, ref[-1:], tol, "last-token logits")


@pytest.mark.parametrize("split", ["b64", "prompt+decode"])
@pytest.mark.parametrize("flash_attn", [True, False])
def test_group1_bit_identical_to_stock(tiny, flash_attn, split):
    """Self-Extend set with G = 1 (off), within L: logits bit-identical to a
    context where it was never set."""
    m, _, hp, _ = tiny
    self_extend_fn(m.lc)
    toks = tokens_for(hp, n=L)
    stock = m.decode(toks, split=split, flash_attn=flash_attn)
    for pos_min in (0, -1):
        g1 = m.decode(toks, split=split, flash_attn=flash_attn, self_extend=(1, SE_W, pos_min))
        np.testing.assert_array_equal(g1, stock)


@pytest.mark.parametrize("split", ["b64", "prompt+decode"])
@pytest.mark.parametrize("flash_attn", [True, False])
def test_adaptive_within_L_bit_identical_to_stock(tiny, flash_attn, split):
    """G = 4 with pos_min = -1 (L): a sequence within L runs plain attention,
    bit for bit."""
    m, _, hp, _ = tiny
    self_extend_fn(m.lc)
    toks = tokens_for(hp, n=L)
    stock = m.decode(toks, split=split, flash_attn=flash_attn)
    ad = m.decode(toks, split=split, flash_attn=flash_attn, self_extend=(SE_G, SE_W, -1))
    np.testing.assert_array_equal(ad, stock)


def test_set_self_extend_rejects_bad_arguments(tiny):
    m, _, _, _ = tiny
    fn = self_extend_fn(m.lc)
    ctx = m.new_context()
    try:
        assert fn(ctx, 0, SE_W, 0) < 0       # group must be >= 1
        assert fn(ctx, -2, SE_W, 0) < 0
        assert fn(ctx, SE_G, -1, 0) < 0      # window must be >= 0
        assert fn(ctx, SE_G, SE_W, 0) == 0
        assert fn(ctx, 1, SE_W, 0) == 0      # back off
    finally:
        m.lc.llama_free(ctx)


def llama_log_lines(caplog):
    """llama.cpp's log lines that se_local routed to the logger se_local.llama (skip if none arrive)."""
    lines = [r.getMessage() for r in caplog.records if r.name == "se_local.llama"]
    if not lines:
        pytest.skip("llama.cpp's log does not reach Python logging here (se_local not importable)")
    return lines


@pytest.mark.parametrize("split,pos_min,n_reserve", [
    ("b64", 0, 1),          # every ubatch Self-Extended: one reserve, at the first decode
    ("b64", -1, 2),         # adaptive (L = 256): once for the plain ubatches, once at the first past L
    ("b128-ub32", -1, 2),   # ... also when that ubatch is in the middle of a llama_decode call
])
def test_self_extend_reserves_compute_buffers_once(tiny, split, pos_min, n_reserve, caplog):
    """Setting Self-Extend changes the graphs (its inputs): the compute buffers are reserved for them at
    once, and again only when a ubatch first needs the other kind of graph, never per ubatch (the
    scheduler would re-plan and, on a GPU, synchronise on every ubatch whose KV length grew; H200 model
    bench: several ms per ubatch at 32k-64k). Counted from llama.cpp's 'reserving' log line, which
    se_local routes to the logger se_local.llama."""
    m, w, hp, dtype = tiny
    self_extend_fn(m.lc)
    caplog.set_level(logging.DEBUG, logger="se_local.llama")
    got = m.decode(tokens_for(hp), split=split, self_extend=(SE_G, SE_W, pos_min))
    lines = llama_log_lines(caplog)
    ref = reference_logits(w, hp, dtype, group=SE_G, window=SE_W, pos_min=pos_min)
    assert_close(got, ref, TOL_F16, "all-token logits")
    reserves = sum(ln.strip().startswith("sched_reserve: reserving ...") for ln in lines)
    # one at context creation (before Self-Extend is set), then n_reserve
    assert reserves == 1 + n_reserve, [ln for ln in lines if "reserv" in ln]


def test_self_extend_decode_reuses_the_graph(tiny):
    """One-token ubatches keep llama.cpp's graph reuse with Self-Extend on: the promise of
    ggml_flash_attn_ext_set_self_extend_bounds (which keys are grouped for every query) moves with
    every token and is part of the graph, so it is given for prefill-sized ubatches only (the H200
    model bench lost a quarter of its decode speed when every step rebuilt the graph)."""
    m, w, hp, dtype = tiny
    self_extend_fn(m.lc)
    stats = {}
    got = m.decode(tokens_for(hp), split="prompt+decode", self_extend=(SE_G, SE_W, 0), stats=stats)
    ref = reference_logits(w, hp, dtype, group=SE_G, window=SE_W, pos_min=0)
    assert_close(got, ref, TOL_F16, "all-token logits")
    # 24 one-token ubatches after the prompt: all but the first reuse the graph, except where the
    # padded KV length grows
    assert stats["n_reused"] >= 20, stats


def test_self_extend_bounds_promise_of_each_prefill_ubatch(tiny, caplog):
    """llama's graph gives each prefill ubatch the promise of ggml_flash_attn_ext_set_self_extend_bounds
    (the CUDA prefill computes the promised keys with stock attention and needs it to be there and
    exact; the CPU op aborts on a false one). Each ubatch's bounds, from llama.cpp's debug log, against
    the rule recomputed here from the cells: cells 0..a+63 hold positions 0..a+63, the rest are empty."""
    m, w, hp, dtype = tiny
    self_extend_fn(m.lc)
    caplog.set_level(logging.DEBUG, logger="se_local.llama")
    m.decode(tokens_for(hp), split="b64", self_extend=(SE_G, SE_W, 0), all_logits=False)
    pat = re.compile(r"Self-Extend bounds: (\d+) grouped, (\d+) neighbor keys of (\d+), queries (\d+)\.\.(\d+)")
    lines = llama_log_lines(caplog)
    found = [tuple(map(int, g.groups())) for g in (pat.search(ln) for ln in lines) if g]
    assert found, "no Self-Extend bounds in llama.cpp's log"
    seen = set()
    for n_g, n_n, n_kv, q0, q1 in found:
        if q0 == q1:
            continue  # the reserve graphs' placeholder batch
        if q1 - q0 + 1 < 32:
            assert (n_g, n_n) == (0, 0), (q0, q1)  # small ubatches get none (graph reuse in decode)
            continue
        pos_k = list(range(q1 + 1)) + [0] * (n_kv - q1 - 1)
        empty = [False] * (q1 + 1) + [True] * (n_kv - q1 - 1)
        want = se_bounds(range(q0, q1 + 1), pos_k, SE_W, empty=empty)
        assert (n_g, n_n) == want, (q0, n_kv)
        seen.add(q0)
    assert seen == set(range(0, T - T % 64, 64)), sorted(seen)  # every full ubatch of the prompt
    assert any(g > 0 for g, *_ in found)


PORTABLE_LINE = "Self-Extend: the portable path (existing ggml ops)"


@pytest.mark.parametrize("split", ["b64", "prompt+decode"])
@pytest.mark.parametrize("pos_min", [0, -1])
def test_portable_path_under_flash_attention(tiny, split, pos_min, monkeypatch, caplog):
    """Where a layer's device does not support the fused Self-Extend op (CUDA: head sizes other than 64
    and 128; Metal), a flash-attention context runs Self-Extend through the portable path on that device,
    with the V cache in flash attention's layout. LLAMA_SE_PORTABLE=1 takes that route here: the same
    reference within the f16 tolerance, the log line that says so, and not the fused op's rounding."""
    m, w, hp, dtype = tiny
    self_extend_fn(m.lc)
    caplog.set_level(logging.INFO, logger="se_local.llama")
    ref = reference_logits(w, hp, dtype, group=SE_G, window=SE_W, pos_min=pos_min)
    toks = tokens_for(hp)
    se = (SE_G, SE_W, pos_min)
    fused = m.decode(toks, split=split, flash_attn=True, self_extend=se)
    assert PORTABLE_LINE not in "\n".join(llama_log_lines(caplog))
    monkeypatch.setenv("LLAMA_SE_PORTABLE", "1")
    caplog.clear()
    got = m.decode(toks, split=split, flash_attn=True, self_extend=se)
    assert PORTABLE_LINE in "\n".join(llama_log_lines(caplog))
    assert_close(got, ref, TOL_F16, "all-token logits, portable path under flash attention")
    assert not np.array_equal(got[L:], fused[L:]), "the fused op ran, not the portable path"
    if pos_min == -1 and split == "b64":   # ubatches within L: stock flash attention on both routes
        np.testing.assert_array_equal(got[:L], fused[:L])


def test_portable_fallback_keeps_a_quantized_v_cache_on_the_op(oracle_llama_cpp, oracle_tiny_llama_factory,
                                                               monkeypatch, caplog):
    """A quantized V cache has no portable path (it needs V transposed): the op stays where the scheduler
    puts it, with a log line, instead of an abort."""
    Q8_0 = 8
    path, w, hp = oracle_tiny_llama_factory("f32", n_embd=128, n_head=4, n_head_kv=2)   # head size 32
    m = Model(oracle_llama_cpp, path)
    try:
        self_extend_fn(m.lc)
        caplog.set_level(logging.INFO, logger="se_local.llama")
        toks = tokens_for(hp)
        se = (SE_G, SE_W, 0)
        fused = m.decode(toks, kv_type=Q8_0, self_extend=se)
        monkeypatch.setenv("LLAMA_SE_PORTABLE", "1")
        caplog.clear()
        got = m.decode(toks, kv_type=Q8_0, self_extend=se)
        log = "\n".join(llama_log_lines(caplog))
        assert "the op runs on the CPU (a quantized V cache has no portable path)" in log
        assert PORTABLE_LINE not in log
        np.testing.assert_array_equal(got, fused)
        ref = llama_forward(w, hp, toks, group=SE_G, window=SE_W, pos_min=0)
        assert_close(got, ref, 5e-2, "all-token logits, q8_0 KV")
    finally:
        m.close()


Q8_0 = 8
TOL_Q8_0 = 0.1   # q8_0 K and V: vanilla attention measured 0.057 of the logit scale (head size 64), SE 0.066


@pytest.mark.parametrize("flash_attn", [True, False])
def test_self_extend_with_a_quantized_k_cache(oracle_llama_cpp, oracle_tiny_llama_factory, flash_attn):
    """llama.cpp stores a quantized K cache Hadamard-rotated when the head size is a multiple of 64 (queries
    rotated alike, so q.k is unchanged), but a RoPE re-rotation of such keys is not the grouped key: with
    Self-Extend set, K is stored without that rotation. Head size 64, q8_0 K and V, against Algorithm 1
    (with the rotation the error was 1.14 of the logit scale, as large as Self-Extend's own effect)."""
    path, w, hp = oracle_tiny_llama_factory("f32", n_embd=256, n_head=4, n_head_kv=2)   # head size 64
    m = Model(oracle_llama_cpp, path)
    try:
        self_extend_fn(m.lc)
        toks = tokens_for(hp)
        ref = llama_forward(w, hp, toks, group=SE_G, window=SE_W, pos_min=0)
        van = llama_forward(w, hp, toks)
        assert np.abs(ref - van).max() / np.abs(ref).max() > 5 * TOL_Q8_0   # the SE effect, ~1
        # q8_0 K; V q8_0 too with flash attention (llama.cpp needs it for a quantized V cache), else f16
        ctx_kw = dict(flash_attn=flash_attn, kv_type=Q8_0, v_type=Q8_0 if flash_attn else F16)
        got = m.decode(toks, self_extend=(SE_G, SE_W, 0), **ctx_kw)
        assert_close(got, ref, TOL_Q8_0, "all-token logits, q8_0 KV, Self-Extend")
        vanilla = m.decode(toks, **ctx_kw)     # the rotation stays on without Self-Extend
        assert_close(vanilla, van, TOL_Q8_0, "all-token logits, q8_0 KV, vanilla")
    finally:
        m.close()


def test_self_extend_switch_refused_on_a_rotated_k_cache_with_keys(oracle_llama_cpp, oracle_tiny_llama_factory):
    """Turning Self-Extend on or off changes how a quantized K cache stores keys: refused (-5) while the cache
    holds keys, allowed once it is cleared."""
    path, w, hp = oracle_tiny_llama_factory("f32", n_embd=256, n_head=4, n_head_kv=2)   # head size 64
    m = Model(oracle_llama_cpp, path)
    lc = m.lc
    fn = self_extend_fn(lc)
    batch = lc.llama_batch_init(8, 0, 1)
    ctxs = []
    try:
        def decode8(ctx):
            batch.n_tokens = 8
            for b in range(8):
                batch.token[b], batch.pos[b], batch.n_seq_id[b], batch.logits[b] = 5 + b, b, 1, 0
                batch.seq_id[b][0] = 0
            assert lc.llama_decode(ctx, batch) == 0

        rotated = m.new_context(type_k=Q8_0, type_v=Q8_0)
        plain = m.new_context(type_k=F16, type_v=F16)
        ctxs += [rotated, plain]
        for ctx in (rotated, plain):
            decode8(ctx)
        assert fn(plain, SE_G, SE_W, 0) == 0          # an f16 cache has no rotation
        assert fn(rotated, SE_G, SE_W, 0) == -5
        assert fn(rotated, 1, SE_W, 0) == 0           # no change: allowed
        lc.llama_memory_clear(lc.llama_get_memory(rotated), True)
        assert fn(rotated, SE_G, SE_W, 0) == 0
        decode8(rotated)
        assert fn(rotated, SE_G, SE_W, -1) == 0       # new parameters, same layout
        assert fn(rotated, 1, SE_W, 0) == -5          # off again: the keys were stored without the rotation
    finally:
        lc.llama_batch_free(batch)
        for ctx in ctxs:
            lc.llama_free(ctx)
        m.close()


@pytest.mark.parametrize("split", ["b64", "prompt+decode"])
@pytest.mark.parametrize("flash_attn", [True, False])
def test_self_extend_with_neox_rope(oracle_llama_cpp, oracle_tiny_llama_factory, flash_attn, split):
    """NEOX RoPE pairs (d, d + n_rot/2), as llama.cpp runs Qwen2/2.5/3, Phi-3 and Gemma: a tiny qwen2 (llama's
    layers without biases) through llama's graph, the fused op (flash attention) and the portable path, against
    Algorithm 1 with NEOX pairs. The same weights with NORM pairs give other logits, so the test sees which
    layout ran."""
    path, w, hp = oracle_tiny_llama_factory("f32", arch="qwen2")
    assert hp["neox"]
    m = Model(oracle_llama_cpp, path)
    try:
        self_extend_fn(m.lc)
        toks = tokens_for(hp)
        ref = llama_forward(w, hp, toks, group=SE_G, window=SE_W, pos_min=0)
        as_norm = llama_forward(w, dict(hp, neox=False), toks, group=SE_G, window=SE_W, pos_min=0)
        assert np.abs(ref - as_norm).max() / np.abs(ref).max() > 10 * TOL_F16
        got = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=F16, self_extend=(SE_G, SE_W, 0))
        assert_close(got, ref, TOL_F16, "all-token logits, NEOX, Self-Extend")
        vanilla = m.decode(toks, split=split, flash_attn=flash_attn, kv_type=F16)
        assert_close(vanilla, llama_forward(w, hp, toks), TOL_F16, "all-token logits, NEOX, vanilla")
    finally:
        m.close()
