#!/usr/bin/env python3
"""Independent Self-Extend forward of a llama GGUF model in PyTorch (float32, GPU).

A second oracle beside tests/reference.py for lengths NumPy cannot reach on a laptop:
the GGUF weights are dequantized with `gguf`, attention is Algorithm 1 computed chunk by
chunk over queries (both score matrices, merged before the softmax), decoding is greedy
by recomputing the whole sequence. Nothing of llama.cpp is used, so it checks the patched
library at 16k-32k tokens.

    python bench/se_torch_reference.py -m MODEL.gguf --tokens prompt.npy --se 6:1024:0 --se 1:0:0 \
        --new 8 --dump-logits out.npz

--tokens takes an .npy/.npz of token ids (tokenize with the library under test, so that both
see the same ids). --se G:W:pos_min as in bench/passkey_probe.py (pos_min -1: trained length).
"""

import argparse
import json
import time

import numpy as np
import torch

import gguf


def load(path, device):
    r = gguf.GGUFReader(path)
    f = lambda k: r.fields[k].parts[r.fields[k].data[0]]
    arch = bytes(f("general.architecture")).decode()
    assert arch == "llama", arch
    hp = dict(
        n_ctx_train=int(f("llama.context_length")[0]),
        n_layer=int(f("llama.block_count")[0]),
        n_head=int(f("llama.attention.head_count")[0]),
        n_head_kv=int(f("llama.attention.head_count_kv")[0]),
        rope_base=float(f("llama.rope.freq_base")[0]),
        eps=float(f("llama.attention.layer_norm_rms_epsilon")[0]),
    )
    toks = r.fields["tokenizer.ggml.tokens"]
    vocab = [bytes(toks.parts[i]).decode("utf-8", "replace") for i in toks.data]
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        ne = [int(x) for x in t.shape]
        a = a.reshape(list(reversed(ne)))
        w[t.name] = torch.from_numpy(np.ascontiguousarray(a)).to(device)
    if "output.weight" not in w:
        w["output.weight"] = w["token_embd.weight"]
    hp["n_embd"] = w["token_embd.weight"].shape[1]
    return w, hp, vocab


def rope(x, pos, base):
    """NORM RoPE (adjacent pairs), x (H, T, D) float32, pos (T,) int64; angles in float64."""
    D = x.shape[-1]
    inv = base ** (-torch.arange(0, D // 2, dtype=torch.float64, device=x.device) * 2.0 / D)
    th = pos.to(torch.float64)[:, None] * inv[None]
    c, s = torch.cos(th).float(), torch.sin(th).float()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def attention(q, k, v, pos, G, W, pos_min, base, chunk=2048):
    H, T, D = q.shape
    r = H // k.shape[0]
    k = k.repeat_interleave(r, 0)
    v = v.repeat_interleave(r, 0)
    qn, kn = rope(q, pos, base), rope(k, pos, base)
    if G > 1:
        qg, kg = rope(q, pos // G + (W - W // G), base), rope(k, pos // G, base)
    out = torch.empty_like(q)
    scale = 1.0 / np.sqrt(D)
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        s = qn[:, a:b] @ kn[:, :b].transpose(1, 2)
        dist = pos[a:b, None] - pos[None, :b]
        if G > 1:
            sg = qg[:, a:b] @ kg[:, :b].transpose(1, 2)
            use = (dist < W) | (pos[a:b, None] < pos_min)
            s = torch.where(use[None], s, sg)
        s = (s * scale).masked_fill((dist < 0)[None], float("-inf"))
        out[:, a:b] = torch.softmax(s, -1) @ v[:, :b]
    return out


@torch.no_grad()
def forward(w, hp, tokens, G, W, pos_min):
    dev = w["token_embd.weight"].device
    T = len(tokens)
    pos = torch.arange(T, device=dev)
    H, Hkv = hp["n_head"], hp["n_head_kv"]
    hd = hp["n_embd"] // H
    if pos_min < 0:
        pos_min = hp["n_ctx_train"]
    norm = lambda x, g: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + hp["eps"]) * g
    x = w["token_embd.weight"][torch.as_tensor(tokens, device=dev)]
    for il in range(hp["n_layer"]):
        p = lambda n: w[f"blk.{il}.{n}.weight"]
        h = norm(x, p("attn_norm"))
        q = (h @ p("attn_q").T).view(T, H, hd).transpose(0, 1)
        k = (h @ p("attn_k").T).view(T, Hkv, hd).transpose(0, 1)
        v = (h @ p("attn_v").T).view(T, Hkv, hd).transpose(0, 1)
        o = attention(q.contiguous(), k.contiguous(), v.contiguous(), pos, G, W, pos_min, hp["rope_base"])
        x = x + o.transpose(0, 1).reshape(T, H * hd) @ p("attn_output").T
        h = norm(x, p("ffn_norm"))
        x = x + (torch.nn.functional.silu(h @ p("ffn_gate").T) * (h @ p("ffn_up").T)) @ p("ffn_down").T
    x = norm(x[-1:], w["output_norm.weight"])
    return (x @ w["output.weight"].T)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--tokens", required=True, nargs="+", help=".npy files of token ids")
    ap.add_argument("--se", action="append", default=[], help="G:W:pos_min")
    ap.add_argument("--new", type=int, default=8)
    ap.add_argument("--dump-logits", default=None, help=".npz with the first-step logits of each run")
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    w, hp, vocab = load(args.model, dev)
    dumps = {}
    for tf in args.tokens:
        prompt = [int(t) for t in np.load(tf)]
        for se in args.se or ["1:0:0"]:
            G, W, P = (int(x) for x in se.split(":"))
            t0 = time.time()
            toks, out = list(prompt), []
            for step in range(args.new):
                lg = forward(w, hp, toks, G, W, P)
                if step == 0:
                    dumps[f"{tf}|{se}"] = lg.float().cpu().numpy()
                nxt = int(lg.argmax())
                out.append(nxt)
                toks.append(nxt)
            text = "".join(vocab[t] for t in out).replace("\u0120", " ").replace("\u010a", "\n")
            print(json.dumps({"tokens": tf, "n": len(prompt), "G": G, "W": W, "pos_min": P,
                              "answer": text, "ids": out, "s": round(time.time() - t0, 1)}), flush=True)
    if args.dump_logits:
        np.savez(args.dump_logits, **dumps)


if __name__ == "__main__":
    main()
