"""Op level: ggml's Self-Extend attention (fused kernel and portable path) vs Algorithm 1.

The inputs are random Q/K/V; ggml receives q and k already rotated with RoPE at their true
positions (as llama's KV cache stores them) and must re-rotate them itself, while the NumPy
reference (tests/reference.py) rotates the raw vectors directly to the grouped positions.

The reference sees the keys and values exactly as ggml stores them (rotated K rounded to f16 or
quantized to q8_0 and rotated back, V rounded to f16), so the comparison measures the attention
arithmetic, not the storage format. Tolerances (max absolute error, outputs of unit scale): the
fused kernel computes in f32: 5e-4. The portable path's matrix product rounds q to f16 (as
llama.cpp's non-flash attention does), and stock flash attention rounds q to f16 and accumulates
V in f16: 4e-3 for both. With K as q8_0 the portable path's matrix product also quantizes q to
q8_0: 5e-2.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from op_eval import attn_eval
from reference import rope, se_bounds, self_extend_attention

TOL_FUSED = 5e-4
TOL_F16Q = 4e-3  # paths that round q to f16
TOL_PORTABLE = {"f16": TOL_F16Q, "q8_0": 5e-2}  # with q8_0 K, the matrix product quantizes q to q8_0


def f16(x):
    return np.asarray(x, dtype=np.float16).astype(np.float64)


def q8_0(x):
    """ggml's q8_0 round trip: blocks of 32, int8 values, an f16 scale per block."""
    b = np.asarray(x, dtype=np.float32).reshape(*x.shape[:-1], -1, 32)
    d = np.abs(b).max(axis=-1, keepdims=True) / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
    q = np.clip(np.round(b * inv), -128, 127)
    return (q * f16(d)).reshape(x.shape)


STORE = {"f16": f16, "q8_0": q8_0}


def make_case(seed, n_head, n_head_kv, d, n_q, n_kv, start=0, base=10000.0):
    rng = np.random.default_rng(seed)
    # scale chosen so the softmax is far from uniform: Self-Extend visibly changes the output
    q = rng.normal(size=(n_head, n_q, d)) * 1.5
    k = rng.normal(size=(n_head_kv, n_kv, d)) * 1.5
    v = rng.normal(size=(n_head_kv, n_kv, d))
    pos_k = np.arange(n_kv)
    pos_q = np.arange(n_kv - n_q, n_kv) if start is None else np.arange(start, start + n_q)
    return q, k, v, pos_q, pos_k


def stored(q, k, v, pos_q, pos_k, k_type="f16", neox=False, base=10000.0):
    """What ggml is given (q, k rotated at their positions) and what it effectively stores.

    Returns (qs, ks, v_eff, k_eff): k_eff and v_eff are the un-rotated keys and the values as
    stored in the cache, for the reference.
    """
    qs = rope(q, pos_q, base=base, neox=neox)
    ks = rope(k, pos_k, base=base, neox=neox)
    ks_stored = STORE[k_type](ks.astype(np.float32))  # ggml receives float32
    k_eff = rope(ks_stored, -np.asarray(pos_k), base=base, neox=neox)
    return qs, ks, f16(np.asarray(v, dtype=np.float32)), k_eff


GRID = [
    # (d, n_head, n_head_kv, G, W)
    (64, 4, 4, 2, 4), (64, 6, 2, 3, 16), (64, 8, 2, 4, 64), (64, 9, 3, 8, 16),
    (128, 4, 1, 4, 16), (128, 6, 2, 8, 64), (128, 8, 2, 3, 4), (64, 3, 3, 8, 64),
    (128, 4, 4, 2, 16), (64, 8, 2, 2, 64), (128, 9, 3, 4, 4), (64, 4, 1, 3, 64),
]


@pytest.mark.parametrize("k_type", ["f16", "q8_0"])
@pytest.mark.parametrize("d,n_head,n_head_kv,G,W", GRID)
def test_fused_and_portable_match_reference(d, n_head, n_head_kv, G, W, k_type):
    n_kv = 300  # far above every W
    q, k, v, pos_q, pos_k = make_case(d * 7 + G * 3 + W, n_head, n_head_kv, d, n_q=n_kv, n_kv=n_kv)
    ref = self_extend_attention(q, k, v, pos_q, pos_k, group=G, window=W)
    plain = self_extend_attention(q, k, v, pos_q, pos_k, group=1, window=0)
    assert np.abs(ref - plain).max() > 0.1, "case does not exercise Self-Extend"

    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, k_type)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W)
    fused = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", k_type=k_type, group=G, window=W)
    portable = attn_eval(qs, ks, v, pos_q, pos_k, path="portable", k_type=k_type, group=G, window=W)
    assert np.abs(fused - ref).max() < TOL_FUSED
    assert np.abs(portable - ref).max() < TOL_PORTABLE[k_type]


@pytest.mark.parametrize("path", ["fused", "portable"])
def test_short_sequences_are_plain_attention(path):
    # every query closer than W to all of its keys: Self-Extend is plain attention
    q, k, v, pos_q, pos_k = make_case(1, 4, 2, 64, n_q=16, n_kv=16)
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k)
    se = attn_eval(qs, ks, v, pos_q, pos_k, path=path, group=4, window=16)
    stock = attn_eval(qs, ks, v, pos_q, pos_k, path="stock")
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=1, window=0)
    assert np.abs(se - stock).max() < TOL_F16Q
    assert np.abs(se - ref).max() < (TOL_FUSED if path == "fused" else TOL_F16Q)


@pytest.mark.parametrize("path", ["fused", "portable"])
@pytest.mark.parametrize("splits", [[300], [1, 299], [64, 64, 64, 64, 44], [7, 250, 43]])
def test_micro_batch_splits_give_the_same_result(path, splits):
    # a prompt decoded in micro-batches: each chunk of queries attends to the prefix so far
    G, W = 4, 16
    q, k, v, pos_q, pos_k = make_case(2, 6, 2, 64, n_q=300, n_kv=300)
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k)
    whole = attn_eval(qs, ks, v, pos_q, pos_k, path=path, group=G, window=W)
    parts, i0 = [], 0
    for n in splits:
        i1 = i0 + n
        parts.append(attn_eval(qs[:, i0:i1], ks[:, :i1], v[:, :i1], pos_q[i0:i1], pos_k[:i1],
                               path=path, group=G, window=W))
        i0 = i1
    split = np.concatenate(parts, axis=1)
    # the fused kernel is split-invariant to float rounding; the portable path's matrix
    # products block differently for other batch sizes
    assert np.abs(split - whole).max() < (1e-5 if path == "fused" else 2e-4)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W)
    assert np.abs(split - ref).max() < (TOL_FUSED if path == "fused" else TOL_F16Q)


@pytest.mark.parametrize("path", ["fused", "portable"])
def test_pos_min_keeps_early_queries_plain(path):
    G, W, P = 4, 16, 200
    q, k, v, pos_q, pos_k = make_case(3, 4, 2, 64, n_q=300, n_kv=300)
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k)
    got = attn_eval(qs, ks, v, pos_q, pos_k, path=path, group=G, window=W, pos_min=P)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, pos_min=P)
    plain = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=1, window=0)
    assert np.abs(got - ref).max() < TOL_F16Q
    assert np.abs(got[:, :P] - plain[:, :P]).max() < TOL_F16Q
    assert np.abs(got[:, P:] - plain[:, P:]).max() > 0.1


def test_decode_single_query_far_beyond_window():
    # one query at the end of a long context: the decode shape
    G, W = 8, 64
    q, k, v, _, pos_k = make_case(4, 9, 3, 64, n_q=1, n_kv=2000)
    pos_q = np.array([1999])
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W)
    for path in ("fused", "portable"):
        got = attn_eval(qs, ks, v, pos_q, pos_k, path=path, group=G, window=W)
        assert np.abs(got - ref).max() < TOL_F16Q


def test_neox_rope():
    G, W = 3, 16
    q, k, v, pos_q, pos_k = make_case(5, 4, 2, 64, n_q=200, n_kv=200)
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, neox=True)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, neox=True)
    for path in ("fused", "portable"):
        got = attn_eval(qs, ks, v, pos_q, pos_k, path=path, group=G, window=W, neox=True)
        assert np.abs(got - ref).max() < TOL_F16Q


@pytest.mark.parametrize("n_kv", [1, 63, 64, 65, 129, 700])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_tiling_edges(n_kv, n_threads):
    # lengths around the 64-key tile, a window (37) and a group (5) that cut tiles anywhere,
    # queries in the second half only (a later micro-batch), positions with a gap
    G, W = 5, 37
    q, k, v, _, _ = make_case(6 + n_kv, 6, 2, 64, n_q=max(1, n_kv // 2), n_kv=n_kv)
    pos_k = np.arange(n_kv) + np.where(np.arange(n_kv) >= n_kv // 3, 11, 0)  # a hole of 11
    pos_q = pos_k[n_kv - q.shape[1]:]
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W)
    got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=G, window=W, n_threads=n_threads)
    assert np.abs(got - ref).max() < TOL_FUSED


@pytest.mark.parametrize("heads,d,k_type,neox", [((9, 3), 64, "f16", False), ((12, 2), 96, "q8_0", False),
                                                 ((8, 2), 128, "f16", True)])
@pytest.mark.parametrize("n_threads", [1, 3, 8])
def test_work_items_of_several_sizes(heads, d, k_type, neox, n_threads):
    # a prefill of 300 queries: the kernel cuts them into work items of 64 to 384 rows (query
    # heads x queries) depending on the thread count, so the last item of a KV head is short;
    # the next tile's K/V rows are prefetched while a tile is computed (the last tile is short:
    # 1100 keys), the window (100) and the group (7) cut tiles anywhere, positions have a hole
    G, W = 7, 100
    n_head, n_head_kv = heads
    q, k, v, _, _ = make_case(21 + d + n_threads, n_head, n_head_kv, d, n_q=300, n_kv=1100)
    pos_k = np.arange(1100) + np.where(np.arange(1100) >= 400, 11, 0)
    pos_q = pos_k[800:]
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, k_type=k_type, neox=neox)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, neox=neox)
    got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", k_type=k_type, group=G, window=W, neox=neox,
                    n_threads=n_threads)
    assert np.abs(got - ref).max() < TOL_FUSED


@pytest.mark.parametrize("n_kv", [300, 512, 777, 2113])
@pytest.mark.parametrize("heads,d,k_type,neox", [((9, 3), 64, "f16", False), ((8, 2), 128, "q8_0", False),
                                                 ((4, 4), 64, "f16", True), ((8, 2), 128, "f16", True)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_decode_chunks_of_keys_for_all_heads(n_kv, heads, d, k_type, neox, n_threads):
    # one query over at least 256 keys per thread (and two chunks): the kernel cuts the keys into
    # chunks, each a work item for all heads, and merges the chunks' softmax states (300 keys on
    # one thread: a single chunk, which takes the per-head path); the window (100) and the
    # group (7) cut chunks and tiles anywhere, the positions have a hole of 11, and the last 150
    # keys lie after the query (masked: whole tiles, and a whole chunk when chunks are short)
    G, W = 7, 100
    n_head, n_head_kv = heads
    q, k, v, _, _ = make_case(8 + n_kv + n_head, n_head, n_head_kv, d, n_q=1, n_kv=n_kv)
    pos_k = np.arange(n_kv) + np.where(np.arange(n_kv) >= n_kv // 3, 11, 0)
    pos_q = pos_k[n_kv - 151:n_kv - 150]
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, k_type=k_type, neox=neox)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, neox=neox)
    got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", k_type=k_type, group=G, window=W, neox=neox,
                    n_threads=n_threads)
    assert np.abs(got - ref).max() < TOL_FUSED
    plain = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=1, window=0, neox=neox)
    assert np.abs(ref - plain).max() > 0.05  # Self-Extend matters in this case


@pytest.mark.parametrize("n_q", [1, 70])
@pytest.mark.parametrize("heads,d,k_type,neox", [((9, 3), 64, "f16", False), ((8, 2), 128, "q8_0", True),
                                                 ((4, 4), 64, "f16", False)])
def test_head_major_cache(n_q, heads, d, k_type, neox):
    # K and V with each head's rows contiguous ([d, n_kv, n_head_kv], as other ggml programs lay them out)
    # instead of llama's cells: the same results as with cells, stock and fused. One query over 777 keys on two
    # threads takes the decode items of all heads, which read a key's rows n_kv rows apart (until the
    # twenty-ninth session they prefetched the whole span between them: the same result, 50 - 470x slower than stock at 4k - 16k keys)
    G, W = 7, 100
    n_head, n_head_kv = heads
    n_kv = 777
    q, k, v, pos_q, pos_k = make_case(40 + n_q + n_head, n_head, n_head_kv, d, n_q=n_q, n_kv=n_kv, start=None)
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, k_type=k_type, neox=neox)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, neox=neox)
    plain = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=1, window=0, neox=neox)
    assert np.abs(ref - plain).max() > 0.05  # Self-Extend matters in this case
    kw = dict(k_type=k_type, neox=neox, n_threads=2, kv_layout="heads")
    got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=G, window=W, **kw)
    assert np.abs(got - ref).max() < TOL_FUSED
    cells = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=G, window=W, k_type=k_type, neox=neox,
                      n_threads=2)
    assert np.abs(got - cells).max() < 1e-6
    stock = attn_eval(qs, ks, v, pos_q, pos_k, path="stock", **kw)
    stock_cells = attn_eval(qs, ks, v, pos_q, pos_k, path="stock", k_type=k_type, n_threads=2)
    assert np.abs(stock - stock_cells).max() < 1e-6
    assert np.abs(stock - plain).max() < 2*TOL_PORTABLE[k_type]  # stock rounds q to f16 (q8_0 with q8_0 K)
    with pytest.raises(RuntimeError, match="failed with 5"):
        attn_eval(qs, ks, v, pos_q, pos_k, path="portable", group=G, window=W, **kw)


@pytest.mark.parametrize("n_q", [1, 2, 3, 5])
@pytest.mark.parametrize("heads", [(4, 4), (6, 2), (9, 3)])
@pytest.mark.parametrize("neox", [False, True])
def test_few_queries_and_an_unordered_cache(n_q, heads, neox):
    # fewer than 4 rows per work item take the kernel's dot-product path (decode), more take the
    # tiled matrix products; keys stored out of position order (as after sequence edits) give
    # masked keys inside full tiles, so the all-visible mask shortcut must not fire there
    G, W = 6, 40
    n_head, n_head_kv = heads
    n_kv = 333
    rng = np.random.default_rng(n_q * 10 + n_head)
    q, k, v, _, _ = make_case(7 + n_q + n_head, n_head, n_head_kv, 64, n_q=n_q, n_kv=n_kv)
    pos_k = rng.permutation(n_kv) * 3  # positions 0..996, scattered over the cache
    pos_q = np.sort(rng.choice(np.arange(300, 1000), size=n_q, replace=False))
    qs, ks, v_eff, k_eff = stored(q, k, v, pos_q, pos_k, neox=neox)
    ref = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=G, window=W, neox=neox)
    got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=G, window=W, neox=neox)
    assert np.abs(got - ref).max() < TOL_FUSED
    plain = self_extend_attention(q, k_eff, v_eff, pos_q, pos_k, group=1, window=0, neox=neox)
    assert np.abs(ref - plain).max() > 0.05  # Self-Extend matters in this case


_BOUNDS_CHILD = """
import sys
import numpy as np
from op_eval import attn_eval
from reference import se_bounds
from test_op import make_case, stored
n_g, n_n = int(sys.argv[1]), int(sys.argv[2])
q, k, v, pos_q, pos_k = make_case(5, 4, 2, 64, n_q=40, n_kv=200, start=None)
qs, ks, _, _ = stored(q, k, v, pos_q, pos_k)
free = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=4, window=32)
got = attn_eval(qs, ks, v, pos_q, pos_k, path="fused", group=4, window=32, bounds=(n_g, n_n))
print("maxdiff", float(np.abs(got - free).max()), se_bounds(pos_q, pos_k, 32))
"""


def _bounds_child(n_g, n_n):
    here = Path(__file__).resolve().parent
    return subprocess.run([sys.executable, "-c", _BOUNDS_CHILD, str(n_g), str(n_n)], cwd=here,
                          capture_output=True, text=True, timeout=120)


def test_bounds_promise_is_checked_by_the_cpu_op():
    # the CUDA prefill computes the promised keys with stock attention (split route): the CPU op
    # is the oracle that a promise holds, exactly at the bounds llama's graph computes and not one
    # key beyond (queries 160..199, W = 32: keys 0..128 grouped, 168..199 neighbors)
    _, _, _, pos_q, pos_k = make_case(5, 4, 2, 64, n_q=40, n_kv=200, start=None)
    n_g, n_n = se_bounds(pos_q, pos_k, 32)
    assert (n_g, n_n) == (129, 32)
    ok = _bounds_child(n_g, n_n)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "maxdiff 0.0 (129, 32)" in ok.stdout  # the promise changes nothing on the CPU
    for bad, msg in [((n_g + 1, 0), "promised as grouped"), ((0, n_n + 1), "promised as neighbor")]:
        r = _bounds_child(*bad)
        assert r.returncode != 0 and msg in r.stderr, (bad, r.returncode, r.stderr[-2000:])
