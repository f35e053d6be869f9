"""A tiny random-weight llama GGUF for exactness tests.

`write_tiny_llama` writes a file that llama.cpp loads as architecture "llama"
(or "qwen2": the same layers without biases, run with NEOX RoPE pairs), with an
SPM vocabulary of <unk>, <s>, </s>, the 256 byte tokens and a few plain ones,
and returns the weights exactly as stored (float64, NumPy layout
(n_out, n_in), after the f16 rounding when dtype="f16"), ready for
`reference.llama_forward`.

Weights are scaled so that attention is sharp (scores of a few units, not a
uniform average) and RoPE-position sensitive: Self-Extend must visibly change
the logits once distances exceed the window.
"""

from __future__ import annotations

import numpy as np

RMS_EPS = 1e-5
NEOX_ARCHS = ("qwen2",)  # architectures llama.cpp runs with NEOX RoPE (pairs (d, d + n_rot/2))
N_SPECIAL = 3           # <unk>=0, <s>=1, </s>=2
N_BYTE = 256            # <0x00> .. <0xFF>


def _vocab(n_vocab):
    """SPM vocabulary: special tokens, byte tokens, then plain tokens."""
    assert n_vocab >= N_SPECIAL + N_BYTE, "vocab must hold the 256 byte tokens"
    import gguf

    TT = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TT.UNKNOWN, TT.CONTROL, TT.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(N_BYTE)]
    types += [TT.BYTE] * N_BYTE
    n_plain = n_vocab - len(tokens)
    tokens += [f"\u2581t{i}" for i in range(n_plain)]    # "▁t0", "▁t1", ...
    types += [TT.NORMAL] * n_plain
    scores = [0.0] * (N_SPECIAL + N_BYTE) + [-float(i + 1) for i in range(n_plain)]
    return tokens, [int(t) for t in types], scores


def write_tiny_llama(path, *, n_ctx_train=256, n_embd=64, n_layer=2, n_head=4,
                     n_head_kv=2, n_ff=128, n_vocab=320, rope_base=10000.0,
                     dtype="f32", seed=0, arch="llama"):
    """Write a random llama GGUF to `path`; return (weights, hparams).

    weights: {gguf tensor name: float64 array (n_out, n_in)} as stored
    hparams: the keys reference.llama_forward reads
    """
    import gguf

    assert dtype in ("f32", "f16")
    assert arch in ("llama",) + NEOX_ARCHS, arch
    assert n_embd % n_head == 0 and n_head % n_head_kv == 0
    hd = n_embd // n_head
    rng = np.random.default_rng(seed)
    store = np.float32 if dtype == "f32" else np.float16

    def mat(n_out, n_in, gain):
        return rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))

    def norm(n):  # RMSNorm gains around 1; always stored f32 like llama.cpp
        return 1.0 + 0.1 * rng.standard_normal(n)

    # ---- weights (float64 masters; rounded to the stored dtype below)
    w = {}
    w["token_embd.weight"] = rng.standard_normal((n_vocab, n_embd))
    for il in range(n_layer):
        p = f"blk.{il}."
        w[p + "attn_norm.weight"] = norm(n_embd)
        # q/k gain 2.5: per-head scores q.k/sqrt(hd) with std ~ 6, so the
        # softmax is far from uniform and depends on relative positions
        w[p + "attn_q.weight"] = mat(n_head * hd, n_embd, 2.5)
        w[p + "attn_k.weight"] = mat(n_head_kv * hd, n_embd, 2.5)
        w[p + "attn_v.weight"] = mat(n_head_kv * hd, n_embd, 1.0)
        w[p + "attn_output.weight"] = mat(n_embd, n_head * hd, 1.0)
        w[p + "ffn_norm.weight"] = norm(n_embd)
        w[p + "ffn_gate.weight"] = mat(n_ff, n_embd, 1.0)
        w[p + "ffn_up.weight"] = mat(n_ff, n_embd, 1.0)
        w[p + "ffn_down.weight"] = mat(n_embd, n_ff, 1.0)
    w["output_norm.weight"] = norm(n_embd)
    w["output.weight"] = mat(n_vocab, n_embd, 1.0)

    stored = {}
    for name, a in w.items():
        a = a.astype(np.float32 if a.ndim == 1 else store)
        stored[name] = a
        w[name] = a.astype(np.float64)          # exactly what llama.cpp reads

    # ---- GGUF file
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_name(f"se-local tiny random {arch}")
    wr.add_context_length(n_ctx_train)
    wr.add_embedding_length(n_embd)
    wr.add_block_count(n_layer)
    wr.add_feed_forward_length(n_ff)
    wr.add_head_count(n_head)
    wr.add_head_count_kv(n_head_kv)
    wr.add_layer_norm_rms_eps(RMS_EPS)
    wr.add_rope_freq_base(rope_base)
    wr.add_rope_dimension_count(hd)
    wr.add_vocab_size(n_vocab)
    wr.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32"
                     else gguf.LlamaFileType.MOSTLY_F16)

    tokens, types, scores = _vocab(n_vocab)
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_unk_token_id(0)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)

    for name, a in stored.items():
        wr.add_tensor(name, np.ascontiguousarray(a))   # ne = reversed(shape)

    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()

    hparams = dict(n_ctx_train=n_ctx_train, n_embd=n_embd, n_layer=n_layer,
                   n_head=n_head, n_head_kv=n_head_kv, n_ff=n_ff,
                   n_vocab=n_vocab, rope_base=rope_base, rms_eps=RMS_EPS,
                   n_rot=hd, neox=arch in NEOX_ARCHS)
    return w, hparams
