"""NumPy reference of Self-Extend attention and of a tiny llama forward pass.

This file is the exactness oracle of se-local: every kernel (portable ggml
graph, fused flash-attention) and the whole patched llama.cpp are checked
against it. It is written to be read in one sitting, in float64, with no
cleverness: if a kernel and this file disagree, this file is the spec.

Self-Extend (Jin et al. 2024, "LLM Maybe LongLM", Algorithm 1), for a query at
position i and a key at position j <= i, group size G and neighbor window W:

    neighbor score  s_n(i, j) = rope(q, i)                 . rope(k, j)
    grouped score   s_g(i, j) = rope(q, i//G + W - W//G)   . rope(k, j//G)
    merged score    s(i, j)   = s_n if i - j < W else s_g        (BEFORE softmax)
    then the causal mask, softmax over j, and the weighted sum of V.

Adaptive mode (se-local's addition): a query whose position i < pos_min uses
s_n for every key (pos_min = 0 is pure Algorithm 1; the C API's pos_min = -1
means "the model's trained context length", see llama_forward).

Conventions follow llama.cpp/ggml so that results are directly comparable:
  * RoPE NORM mode (LLM_ARCH_LLAMA) rotates adjacent pairs (x[2d], x[2d+1]),
    NEOX mode rotates (x[d], x[d + n_dims/2]); the angle of pair d is
    pos * base^(-2d/n_dims); dims >= n_dims are left untouched.
  * GQA: query head h reads KV head h // (n_head // n_head_kv).
  * A ggml tensor with ne = [n_in, n_out] is a NumPy array of shape
    (n_out, n_in) and is applied as y = W @ x.
"""

from __future__ import annotations

import numpy as np

# -----------------------------------------------------------------------------
# RoPE


def rope(x, pos, base=10000.0, n_dims=None, neox=False):
    """Rotary position embedding, llama.cpp conventions.

    x:   (..., T, D) float (computed in float64)
    pos: (T,) integer positions, one per row of x
    returns (..., T, D) float64
    """
    x = np.asarray(x, dtype=np.float64)
    pos = np.asarray(pos, dtype=np.float64)
    D = x.shape[-1]
    n_dims = D if n_dims is None else n_dims
    assert n_dims % 2 == 0 and n_dims <= D
    assert pos.shape == (x.shape[-2],)

    half = n_dims // 2
    inv_freq = base ** (-2.0 * np.arange(half) / n_dims)   # (half,)
    theta = pos[:, None] * inv_freq[None, :]                # (T, half)
    cos, sin = np.cos(theta), np.sin(theta)

    if neox:   # pairs (d, d + n_dims/2)
        i0 = np.arange(half)
        i1 = i0 + half
    else:      # NORM: adjacent pairs (2d, 2d+1)
        i0 = 2 * np.arange(half)
        i1 = i0 + 1

    out = x.copy()
    x0, x1 = x[..., i0], x[..., i1]                         # (..., T, half)
    out[..., i0] = x0 * cos - x1 * sin
    out[..., i1] = x0 * sin + x1 * cos
    return out


# -----------------------------------------------------------------------------
# Attention


def _softmax(s, axis=-1):
    s = s - np.max(s, axis=axis, keepdims=True)
    e = np.exp(s)
    return e / np.sum(e, axis=axis, keepdims=True)


def self_extend_scores(q, k, pos_q, pos_k, *, group, window, pos_min=0,
                       scale=None, base=10000.0, n_dims=None, neox=False):
    """Merged Self-Extend scores (before mask and softmax), Algorithm 1.

    q: (n_head, Tq, D) un-rotated,  k: (n_head_kv, Tk, D) un-rotated
    returns s (n_head, Tq, Tk) float64, already multiplied by `scale`.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    pos_q = np.asarray(pos_q, dtype=np.int64)
    pos_k = np.asarray(pos_k, dtype=np.int64)
    n_head, Tq, D = q.shape
    n_head_kv, Tk, Dk = k.shape
    assert D == Dk and n_head % n_head_kv == 0
    assert group >= 1 and window >= 0 and pos_min >= 0
    assert (pos_q >= 0).all() and (pos_k >= 0).all()
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    G, W = group, window

    # GQA: expand KV heads to query heads, head h reads KV head h // r
    r = n_head // n_head_kv
    k = np.repeat(k, r, axis=0)                             # (n_head, Tk, D)

    rp = dict(base=base, n_dims=n_dims, neox=neox)

    # neighbor scores: plain RoPE at the true positions
    ngb = rope(q, pos_q, **rp) @ np.swapaxes(rope(k, pos_k, **rp), -1, -2)

    # grouped scores: floor-divided positions, queries shifted by W - W//G
    g_pos_q = pos_q // G + (W - W // G)
    g_pos_k = pos_k // G
    grp = rope(q, g_pos_q, **rp) @ np.swapaxes(rope(k, g_pos_k, **rp), -1, -2)

    # per (i, j): neighbor inside the window (or for "plain" queries)
    dist = pos_q[:, None] - pos_k[None, :]                  # (Tq, Tk)
    use_ngb = (dist < W) | (pos_q[:, None] < pos_min)       # (Tq, Tk)

    s = np.where(use_ngb[None], ngb, grp)                   # (n_head, Tq, Tk)
    return s * scale


def self_extend_attention(q, k, v, pos_q, pos_k, *, group, window, pos_min=0,
                          scale=None, base=10000.0, n_dims=None, neox=False,
                          mask=None):
    """Self-Extend attention for one layer (Algorithm 1), GQA included.

    q:    (n_head,    Tq, D) un-rotated queries
    k, v: (n_head_kv, Tk, D) un-rotated keys, values
    pos_q (Tq,), pos_k (Tk,) integer positions
    mask: optional (Tq, Tk) bool, True where attending is allowed; combined
          with the causal mask pos_k <= pos_q.
    group=1 (or window >= every distance) is plain attention.
    returns (n_head, Tq, D) float64
    """
    v = np.asarray(v, dtype=np.float64)
    pos_q = np.asarray(pos_q, dtype=np.int64)
    pos_k = np.asarray(pos_k, dtype=np.int64)
    n_head, n_head_kv = q.shape[0], v.shape[0]

    s = self_extend_scores(q, k, pos_q, pos_k, group=group, window=window,
                           pos_min=pos_min, scale=scale, base=base,
                           n_dims=n_dims, neox=neox)        # (n_head, Tq, Tk)

    allowed = pos_k[None, :] <= pos_q[:, None]              # causal (Tq, Tk)
    if mask is not None:
        allowed = allowed & np.asarray(mask, dtype=bool)
    assert allowed.any(axis=1).all(), "a query row with nothing to attend"
    s = np.where(allowed[None], s, -np.inf)

    p = _softmax(s, axis=-1)                                # (n_head, Tq, Tk)
    v = np.repeat(v, n_head // n_head_kv, axis=0)           # (n_head, Tk, D)
    return p @ v                                            # (n_head, Tq, D)


def vanilla_attention(q, k, v, pos_q, pos_k, **kw):
    """Plain causal RoPE attention (Self-Extend with group 1)."""
    return self_extend_attention(q, k, v, pos_q, pos_k, group=1, window=0, **kw)


# -----------------------------------------------------------------------------
# Tiny llama forward pass (LLM_ARCH_LLAMA graph of llama.cpp)
#
# weights: dict of GGUF tensor name -> float64 array in NumPy layout (n_out, n_in)
#   token_embd.weight          (n_vocab, n_embd)   row t is the embedding of t
#   blk.N.attn_norm.weight     (n_embd,)
#   blk.N.attn_q.weight        (n_head*hd, n_embd)
#   blk.N.attn_k.weight        (n_head_kv*hd, n_embd)
#   blk.N.attn_v.weight        (n_head_kv*hd, n_embd)
#   blk.N.attn_output.weight   (n_embd, n_head*hd)
#   blk.N.ffn_norm.weight      (n_embd,)
#   blk.N.ffn_gate.weight      (n_ff, n_embd)
#   blk.N.ffn_up.weight        (n_ff, n_embd)
#   blk.N.ffn_down.weight      (n_embd, n_ff)
#   output_norm.weight         (n_embd,)
#   output.weight              (n_vocab, n_embd)
# hparams: n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab,
#          rope_base, rms_eps (and optionally n_rot, default head dim)


def se_bounds(pos_q, pos_k, window, pos_min=0, empty=None):
    """The promise of ggml_flash_attn_ext_set_self_extend_bounds as llama's graph computes it (for a
    ubatch of 32+ tokens): (leading keys grouped for every query, trailing keys neighbors for every
    query). empty: per key, whether its cell is empty (then masked for all; its position counts as 0)."""
    n = len(pos_k)
    empty = [False] * n if empty is None else list(empty)
    pk = [0 if e else int(p) for p, e in zip(pos_k, empty)]
    pq_min, pq_max = int(np.min(pos_q)), int(np.max(pos_q))
    if pq_max < pos_min:
        return 0, n
    n_g = 0
    while pq_min >= pos_min and n_g < n and pk[n_g] <= pq_min - window:
        n_g += 1
    n_n = 0
    while n_g + n_n < n and (empty[n - 1 - n_n] or pk[n - 1 - n_n] > pq_max - window):
        n_n += 1
    return n_g, n_n


def rms_norm(x, w, eps):
    """x (T, n_embd), w (n_embd,)"""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def llama_forward(weights, hparams, tokens, *, group=1, window=0, pos_min=0,
                  pos=None):
    """Logits (T, n_vocab) of a llama-architecture model on `tokens` (hparams["neox"]:
    NEOX RoPE pairs, as llama.cpp runs qwen2).

    group, window, pos_min: Self-Extend settings with the meaning of the C API
    llama_set_self_extend: group=1 is vanilla; pos_min=-1 means the model's
    trained length hparams["n_ctx_train"]; pos_min=0 is pure Algorithm 1.
    pos: positions of the tokens (default 0..T-1).
    """
    hp = hparams
    tokens = np.asarray(tokens, dtype=np.int64)
    T = len(tokens)
    pos = np.arange(T) if pos is None else np.asarray(pos, dtype=np.int64)
    if pos_min < 0:
        pos_min = hp["n_ctx_train"]
    n_head, n_head_kv = hp["n_head"], hp["n_head_kv"]
    hd = hp["n_embd"] // n_head                                  # head dim
    n_rot = hp.get("n_rot", hd)
    eps = hp["rms_eps"]
    attn = dict(group=group, window=window, pos_min=pos_min,
                scale=1.0 / np.sqrt(hd), base=hp["rope_base"],
                n_dims=n_rot, neox=hp.get("neox", False))        # NORM rope unless NEOX

    x = weights["token_embd.weight"][tokens]                     # (T, n_embd)

    for il in range(hp["n_layer"]):
        w = lambda name: weights[f"blk.{il}.{name}.weight"]

        # ---- attention block
        h = rms_norm(x, w("attn_norm"), eps)                     # (T, n_embd)
        q = (h @ w("attn_q").T).reshape(T, n_head, hd)           # (T, H, hd)
        k = (h @ w("attn_k").T).reshape(T, n_head_kv, hd)        # (T, Hkv, hd)
        v = (h @ w("attn_v").T).reshape(T, n_head_kv, hd)
        q, k, v = (a.transpose(1, 0, 2) for a in (q, k, v))      # (H, T, hd)
        o = self_extend_attention(q, k, v, pos, pos, **attn)     # (H, T, hd)
        o = o.transpose(1, 0, 2).reshape(T, n_head * hd)         # (T, H*hd)
        x = x + o @ w("attn_output").T

        # ---- SwiGLU feed-forward block
        h = rms_norm(x, w("ffn_norm"), eps)
        ff = silu(h @ w("ffn_gate").T) * (h @ w("ffn_up").T)     # (T, n_ff)
        x = x + ff @ w("ffn_down").T

    x = rms_norm(x, weights["output_norm.weight"], eps)
    return x @ weights["output.weight"].T                        # (T, n_vocab)
