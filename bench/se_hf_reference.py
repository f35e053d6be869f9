#!/usr/bin/env python3
"""Self-Extend on Hugging Face transformers' Llama: a third oracle, sharing nothing with llama.cpp.

bench/se_torch_reference.py already computes Algorithm 1 without llama.cpp, but it is given the token
ids our library tokenized and reads the GGUF tensors in llama.cpp's layout (RoPE on adjacent pairs of
the permuted Q/K weights). Here transformers loads the same GGUF itself (`gguf_file=`: its own
dequantization, Q/K weights un-permuted to the Hugging Face layout, a tokenizer built from the GGUF's
vocabulary) and the prompt is tokenized by that tokenizer. Only the attention is replaced, with
Algorithm 1 in the Hugging Face RoPE convention (rotate_half), float32, both score matrices merged
before the softmax, chunked over queries; the pre-RoPE keys are cached for greedy decoding.

    python bench/se_hf_reference.py -m SmolLM2-135M-Instruct.Q4_1.gguf --blocks 660 1320 \
        --depths 0.1,0.5,0.9 --se 6:1024 --se 8:512 --new 8 --dump-logits hf_logits.npz

--se G:W (G=1: vanilla). The first-step logits go to --dump-logits under the keys of
bench/passkey_probe.py ("blocks|depth|G:W:0"), so bench/cuda_compare_logits.py compares the two.
Needs torch, transformers, accelerate and gguf.
"""

import argparse
import importlib.util
import json
import os
import time

import numpy as np
import torch


def load_passkey_prompt():
    """se_local.passkey.passkey_prompt without importing se_local (no native library needed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "se_local", "passkey.py")
    spec = importlib.util.spec_from_file_location("se_local_passkey", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.passkey_prompt


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class SelfExtendLlama:
    def __init__(self, path, device):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = os.path.split(os.path.abspath(path))
        self.tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        self.model = self.model.to(device).eval()
        cfg = self.model.config
        self.device = device
        self.n_head, self.n_head_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_head
        self.inv_freq = self.model.model.rotary_emb.inv_freq.to(device=device, dtype=torch.float64)
        self.n_ctx_train = cfg.max_position_embeddings

    def rope(self, x, pos):
        th = pos.to(torch.float64)[:, None] * self.inv_freq[None]
        emb = torch.cat((th, th), -1)
        return x * emb.cos().float() + rotate_half(x) * emb.sin().float()

    def attend(self, q, k, v, qpos, kpos, G, W, chunk=2048):
        r = self.n_head // self.n_head_kv
        k, v = k.repeat_interleave(r, 0), v.repeat_interleave(r, 0)
        kn = self.rope(k, kpos)
        kg = self.rope(k, kpos // G) if G > 1 else None
        out = torch.empty(q.shape[0], q.shape[1], v.shape[-1], device=q.device)
        scale = 1.0 / np.sqrt(self.hd)
        for a in range(0, q.shape[1], chunk):
            b = min(q.shape[1], a + chunk)
            qp = qpos[a:b]
            s = self.rope(q[:, a:b], qp) @ kn.transpose(1, 2)
            dist = qp[:, None] - kpos[None, :]
            if G > 1:
                sg = self.rope(q[:, a:b], qp // G + (W - W // G)) @ kg.transpose(1, 2)
                s = torch.where((dist < W)[None], s, sg)
            s = (s * scale).masked_fill((dist < 0)[None], float("-inf"))
            out[:, a:b] = torch.softmax(s, -1) @ v
        return out

    @torch.no_grad()
    def forward(self, ids, cache, G, W):
        """Run `ids` after the cached tokens; cache: one [k, v] (pre-RoPE) per layer. Last token's logits."""
        m = self.model.model
        n0 = cache[0][0].shape[1] if cache[0] else 0
        T, H, Hkv, hd = len(ids), self.n_head, self.n_head_kv, self.hd
        qpos = torch.arange(n0, n0 + T, device=self.device)
        x = m.embed_tokens(torch.tensor(ids, device=self.device))
        for il, layer in enumerate(m.layers):
            at = layer.self_attn
            h = layer.input_layernorm(x)
            q = at.q_proj(h).view(T, H, hd).transpose(0, 1)
            k = at.k_proj(h).view(T, Hkv, hd).transpose(0, 1)
            v = at.v_proj(h).view(T, Hkv, hd).transpose(0, 1)
            if cache[il]:
                k, v = torch.cat([cache[il][0], k], 1), torch.cat([cache[il][1], v], 1)
            cache[il] = [k, v]
            o = self.attend(q, k, v, qpos, torch.arange(k.shape[1], device=self.device), G, W)
            x = x + at.o_proj(o.transpose(0, 1).reshape(T, H * hd))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.lm_head(m.norm(x[-1:]))[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--blocks", type=int, nargs="+", default=[660])
    ap.add_argument("--depths", default="0.1,0.5,0.9")
    ap.add_argument("--key", default="71432")
    ap.add_argument("--se", action="append", default=[], help="G:W (G=1: vanilla)")
    ap.add_argument("--new", type=int, default=8)
    ap.add_argument("--dump-logits", default=None)
    ap.add_argument("--save-tokens", default=None, help="folder: write each prompt's token ids as .npy")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    passkey_prompt = load_passkey_prompt()
    t = time.time()
    llm = SelfExtendLlama(args.model, args.device)
    print(json.dumps({"loaded_s": round(time.time() - t, 1), "device": args.device,
                      "torch": torch.__version__, "n_ctx_train": llm.n_ctx_train}), flush=True)
    dumps = {}
    for blocks in args.blocks:
        for depth in [float(d) for d in args.depths.split(",")]:
            ids = llm.tok(passkey_prompt(blocks, depth, args.key), add_special_tokens=False)["input_ids"]
            if args.save_tokens:
                np.save(os.path.join(args.save_tokens, f"hf_passkey_{blocks}_{depth}.npy"), np.array(ids, np.int32))
            for se in args.se or ["1:0"]:
                G, W = (int(x) for x in se.split(":"))
                t = time.time()
                cache = [None] * len(llm.model.model.layers)
                lg = llm.forward(ids, cache, G, W)
                dumps[f"{blocks}|{depth}|{G}:{W}:0"] = lg.float().cpu().numpy()
                top = torch.topk(lg, 5)
                top5 = [[llm.tok.decode([int(i)]), round(float(s), 2)] for s, i in zip(top.values, top.indices)]
                out = []
                for _ in range(args.new):
                    out.append(int(lg.argmax()))
                    lg = llm.forward([out[-1]], cache, G, W)
                ans = llm.tok.decode(out)
                print(json.dumps({"impl": "transformers", "tokens": len(ids), "blocks": blocks, "depth": depth,
                                  "G": G, "W": W, "pos_min": 0, "answer": ans, "ok": args.key in ans,
                                  "top5": top5, "s": round(time.time() - t, 1)}), flush=True)
    if args.dump_logits:
        np.savez(args.dump_logits, **dumps)


if __name__ == "__main__":
    main()
