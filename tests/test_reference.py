"""Sanity of the NumPy oracle itself (tests/reference.py). Pure NumPy, fast.

Every check here uses an independent formulation (complex numbers, explicit
rotation matrices, per-row loops) so the oracle is not validated against
itself.
"""

import numpy as np
import pytest

from reference import (rope, self_extend_attention, self_extend_scores,
                       vanilla_attention)

RNG = np.random.default_rng(1234)


def rand(*shape, seed=None):
    rng = RNG if seed is None else np.random.default_rng(seed)
    return rng.standard_normal(shape)


# -----------------------------------------------------------------------------
# Independent formulations


def rope_complex(x, pos, base=10000.0, n_dims=None, neox=False):
    """RoPE as a complex multiplication, one position at a time."""
    T, D = x.shape
    n_dims = D if n_dims is None else n_dims
    half = n_dims // 2
    out = x.astype(np.float64).copy()
    for t in range(T):
        for d in range(half):
            a, b = (d, d + half) if neox else (2 * d, 2 * d + 1)
            z = complex(x[t, a], x[t, b]) * np.exp(1j * pos[t] * base ** (-2.0 * d / n_dims))
            out[t, a], out[t, b] = z.real, z.imag
    return out


def rotation_matrix(p, D, base=10000.0):
    """(D, D) block-diagonal NORM-mode rotation by position p."""
    R = np.zeros((D, D))
    for d in range(D // 2):
        th = p * base ** (-2.0 * d / D)
        c, s = np.cos(th), np.sin(th)
        R[2 * d:2 * d + 2, 2 * d:2 * d + 2] = [[c, -s], [s, c]]
    return R


def rel_pos(i, j, G, W, pos_min=0):
    """Relative position Self-Extend uses for query i, key j (j <= i)."""
    if i - j < W or i < pos_min:
        return i - j
    return (i // G + W - W // G) - j // G


def naive_attention(q, k, v, pos_q, pos_k, G, W, pos_min=0, base=10000.0):
    """Loop over heads and query rows; scores in relative-position form
    q_i^T R(rel) k_j (RoPE rotations compose: R(a)^T R(b) = R(b - a))."""
    H, Tq, D = q.shape
    Hkv = k.shape[0]
    out = np.zeros((H, Tq, D))
    for h in range(H):
        hk = h // (H // Hkv)
        for a in range(Tq):
            i = pos_q[a]
            js = [b for b in range(len(pos_k)) if pos_k[b] <= i]
            s = np.array([q[h, a] @ rotation_matrix(rel_pos(i, pos_k[b], G, W, pos_min), D, base).T
                          @ k[hk, b] for b in js]) / np.sqrt(D)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[h, a] = p @ v[hk, js]
    return out


def plain_softmax_attention(q, k, v):
    """Textbook causal attention on already-rotated q, k (positions 0..T-1)."""
    H, T, D = q.shape
    k = np.repeat(k, H // k.shape[0], axis=0)
    v = np.repeat(v, H // v.shape[0], axis=0)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(D)
    s[:, np.triu(np.ones((T, T), bool), 1)] = -np.inf
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


# -----------------------------------------------------------------------------
# RoPE


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("n_dims", [None, 8])
def test_rope_matches_complex_form(neox, n_dims):
    x = rand(7, 16)
    pos = np.array([0, 1, 2, 5, 17, 300, 4095])
    got = rope(x, pos, base=10000.0, n_dims=n_dims, neox=neox)
    np.testing.assert_allclose(got, rope_complex(x, pos, n_dims=n_dims, neox=neox),
                               rtol=0, atol=1e-12)
    if n_dims is not None:                       # dims >= n_dims untouched
        np.testing.assert_array_equal(got[:, n_dims:], x[:, n_dims:])
    np.testing.assert_allclose(got[0], x[0], atol=0)   # position 0: identity


@pytest.mark.parametrize("neox", [False, True])
def test_rope_preserves_norm(neox):
    x = rand(3, 50, 64)
    y = rope(x, RNG.integers(0, 100000, 50), neox=neox, base=500000.0)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1),
                               rtol=1e-12)


@pytest.mark.parametrize("neox", [False, True])
def test_rope_dot_depends_only_on_relative_position(neox):
    q, k = rand(1, 64), rand(1, 64)
    for i, j in [(0, 0), (10, 3), (1000, 17), (5000, 4990)]:
        ref = rope(q, [i], neox=neox) @ rope(k, [j], neox=neox).T
        for shift in (1, 37, 12345):
            got = rope(q, [i + shift], neox=neox) @ rope(k, [j + shift], neox=neox).T
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
        # and equals the relative form q^T R(j - i) k with only k rotated
        rel = q @ rope(k, [j - i], neox=neox).T
        np.testing.assert_allclose(rel, ref, rtol=1e-9, atol=1e-9)


def test_rope_norm_is_rotation_matrix():
    x = rand(1, 16)
    for p in (0, 3, 99):
        np.testing.assert_allclose(rope(x, [p])[0], rotation_matrix(p, 16) @ x[0], atol=1e-12)


# -----------------------------------------------------------------------------
# Self-Extend attention, one layer


def qkv(H=4, Hkv=2, T=48, D=16, seed=0, gain=3.0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((H, T, D)) * gain
    k = rng.standard_normal((Hkv, T, D)) * gain
    v = rng.standard_normal((Hkv, T, D))
    return q, k, v


@pytest.mark.parametrize("H,Hkv", [(4, 4), (4, 2), (6, 2), (4, 1)])
def test_group1_is_plain_softmax_attention(H, Hkv):
    q, k, v = qkv(H, Hkv, T=40)
    pos = np.arange(40)
    expected = plain_softmax_attention(rope(q, pos), rope(k, pos), v)
    for W in (0, 4, 1000):
        got = self_extend_attention(q, k, v, pos, pos, group=1, window=W)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(vanilla_attention(q, k, v, pos, pos), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("G", [2, 3, 4, 8])
def test_window_covering_everything_is_plain(G):
    T = 40
    q, k, v = qkv(T=T)
    pos = np.arange(T)
    plain = vanilla_attention(q, k, v, pos, pos)
    got = self_extend_attention(q, k, v, pos, pos, group=G, window=T)
    np.testing.assert_allclose(got, plain, rtol=1e-10, atol=1e-12)
    # and so is pos_min beyond every query (adaptive: prompt within L)
    got = self_extend_attention(q, k, v, pos, pos, group=G, window=4, pos_min=T)
    np.testing.assert_allclose(got, plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("G,W", [(2, 4), (3, 16), (4, 8), (8, 4)])
def test_grouped_differs_beyond_window_only(G, W):
    T = 64
    q, k, v = qkv(T=T)
    pos = np.arange(T)
    plain = vanilla_attention(q, k, v, pos, pos)
    se = self_extend_attention(q, k, v, pos, pos, group=G, window=W)
    # rows i < W see only keys with i - j < W: exactly vanilla
    np.testing.assert_allclose(se[:, :W], plain[:, :W], rtol=1e-10, atol=1e-12)
    # rows beyond the window differ clearly
    diff = np.abs(se[:, W + G:] - plain[:, W + G:]).max(axis=(0, 2))
    assert (diff > 1e-3).all(), diff


def test_adaptive_pos_min_splits_rows():
    T, G, W, pm = 64, 4, 8, 40
    q, k, v = qkv(T=T)
    pos = np.arange(T)
    plain = vanilla_attention(q, k, v, pos, pos)
    se = self_extend_attention(q, k, v, pos, pos, group=G, window=W)
    ad = self_extend_attention(q, k, v, pos, pos, group=G, window=W, pos_min=pm)
    np.testing.assert_allclose(ad[:, :pm], plain[:, :pm], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ad[:, pm:], se[:, pm:], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("G,W,pm", [(2, 4, 0), (3, 5, 0), (4, 16, 0), (8, 4, 0), (4, 8, 30)])
@pytest.mark.parametrize("H,Hkv", [(4, 2), (3, 1)])
def test_matches_relative_position_form(G, W, pm, H, Hkv):
    """Algorithm 1 (two rotated score matrices + merge) equals the per-(i, j)
    relative form with explicit rotation matrices, on non-contiguous
    positions too."""
    T, D = 40, 8
    q, k, v = qkv(H, Hkv, T=T, D=D, seed=G * 100 + W)
    for pos in (np.arange(T), np.sort(RNG.choice(200, T, replace=False))):
        got = self_extend_attention(q, k, v, pos, pos, group=G, window=W, pos_min=pm)
        np.testing.assert_allclose(got, naive_attention(q, k, v, pos, pos, G, W, pm),
                                   rtol=1e-9, atol=1e-10)


def test_grouped_scores_relative_form_unscaled():
    """The grouped branch alone: rope(q, i//G + W - W//G) . rope(k, j//G)."""
    G, W, D = 4, 6, 16
    q, k, _ = qkv(2, 2, T=30, D=D)
    pos = np.arange(30)
    s = self_extend_scores(q, k, pos, pos, group=G, window=W, scale=1.0)
    for h in range(2):
        for i in range(30):
            for j in range(30):   # also j > i: the merge is defined everywhere
                rel = (i // G + W - W // G) - j // G if i - j >= W else i - j
                ref = q[h, i] @ rotation_matrix(rel, D).T @ k[h, j]
                assert abs(s[h, i, j] - ref) < 1e-9


def test_grouped_relative_positions_continue_the_window():
    """For i - j >= W the grouped relative position is >= W (it continues where
    the window ends) and the largest one is (N-1)//G + W - W//G, below L
    whenever (N - W)/G + W < L (DESIGN.md section 1)."""
    for G, W, N in [(2, 4, 50), (3, 7, 80), (4, 32, 400), (8, 16, 300)]:
        rels = [rel_pos(i, j, G, W) for i in range(N) for j in range(i - W + 1)]
        assert min(rels) >= W
        assert max(rels) == (N - 1) // G + W - W // G
        assert max(rels) < (N - W) / G + W + 1


@pytest.mark.parametrize("G,W", [(1, 0), (4, 8), (3, 5)])
@pytest.mark.parametrize("chunks", [[64], [1] * 64, [7, 20, 1, 36], [32, 32], [10, 1, 1, 52]])
def test_micro_batch_split_is_identical(G, W, chunks):
    """Queries computed chunk by chunk against the whole prefix (what a KV
    cache does) give the same rows as the full computation."""
    T = 64
    q, k, v = qkv(T=T)
    pos = np.arange(T)
    full = self_extend_attention(q, k, v, pos, pos, group=G, window=W)
    s, parts = 0, []
    for n in chunks:
        e = s + n
        parts.append(self_extend_attention(q[:, s:e], k[:, :e], v[:, :e], pos[s:e], pos[:e],
                                           group=G, window=W))
        s = e
    assert s == T
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-13)


def test_gqa_head_mapping():
    """Query head h reads KV head h // (n_head // n_head_kv)."""
    H, Hkv, T = 6, 2, 24
    q, k, v = qkv(H, Hkv, T=T)
    pos = np.arange(T)
    got = self_extend_attention(q, k, v, pos, pos, group=3, window=5)
    for h in range(H):
        one = self_extend_attention(q[h:h + 1], k[h // 3:h // 3 + 1], v[h // 3:h // 3 + 1],
                                    pos, pos, group=3, window=5)
        np.testing.assert_allclose(got[h], one[0], rtol=1e-12, atol=1e-13)


def test_extra_mask_and_causality():
    T = 20
    q, k, v = qkv(T=T)
    pos = np.arange(T)
    full = self_extend_attention(q, k, v, pos, pos, group=2, window=4)
    # future keys never matter: perturb v and k after row t, row t unchanged
    k2, v2 = k.copy(), v.copy()
    k2[:, 11:] += 5.0
    v2[:, 11:] -= 3.0
    got = self_extend_attention(q, k2, v2, pos, pos, group=2, window=4)
    np.testing.assert_allclose(got[:, :11], full[:, :11], rtol=1e-12, atol=1e-13)
    # an extra mask that hides keys 0..4 equals dropping them
    mask = np.ones((T, T), bool)
    mask[:, :5] = False
    mask[:5, :5] = True    # rows 0..4 would have nothing left
    got = self_extend_attention(q, k, v, pos, pos, group=2, window=4, mask=mask)
    drop = self_extend_attention(q[:, 5:], k[:, 5:], v[:, 5:], pos[5:], pos[5:],
                                 group=2, window=4)
    np.testing.assert_allclose(got[:, 5:], drop, rtol=1e-12, atol=1e-13)
