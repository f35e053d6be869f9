#!/usr/bin/env python3
"""Passkey probe: one model, raw llama.cpp calls, Self-Extend settings given explicitly.

The paper's passkey prompt (Appendix D: an instruction, repeated filler, the key sentence at
a given depth, more filler, then the question), greedy decoding, one JSON line per run.
A quick check of a model and a build; the evaluation harness is `se-local eval passkey`.

    python bench/passkey_probe.py -m MODEL --blocks 660 --depths 0.1,0.5,0.9 --se 6:1024:-1 --se 1:0:0
"""

import argparse
import ctypes
import json
import time

import numpy as np

from se_local import _lib
from se_local.passkey import passkey_prompt

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--blocks", type=int, nargs="+", default=[660])
    ap.add_argument("--depths", default="0.1,0.5,0.9")
    ap.add_argument("--se", action="append", default=[], help="G:W:pos_min (G=1: vanilla)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--flash-attn", type=int, default=1)
    ap.add_argument("--kv", choices=["f16", "f32", "q8_0"], default="f16", help="KV cache type")
    ap.add_argument("--key", default="71432")
    ap.add_argument("--dump-logits", default=None, help=".npz with the first-step logits of each run")
    ap.add_argument("--tokens-only", action="store_true", help="with --save-tokens: only tokenize")
    ap.add_argument("--save-tokens", default=None, help="folder: write each prompt's token ids as .npy")
    args = ap.parse_args()

    lc = _lib.llama_cpp
    _lib.backend_init()
    mp = lc.llama_model_default_params()
    mp.n_gpu_layers = args.gpu_layers
    model = lc.llama_model_load_from_file(args.model.encode(), mp)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    dumps = {}
    for blocks in args.blocks:
        for depth in [float(d) for d in args.depths.split(",")]:
            text = passkey_prompt(blocks, depth, args.key).encode()
            buf = (lc.llama_token * (len(text) + 16))()
            n = lc.llama_tokenize(vocab, text, len(text), buf, len(buf), True, False)
            if args.save_tokens:
                np.save(f"{args.save_tokens}/passkey_{blocks}_{depth}.npy", np.array(buf[:n], dtype=np.int32))
                if args.tokens_only:
                    continue
            for se in args.se or ["1:0:0"]:
                G, W, P = (int(x) for x in se.split(":"))
                cp = lc.llama_context_default_params()
                cp.n_ctx = n + 64
                cp.n_batch = cp.n_ubatch = 512
                cp.n_threads = cp.n_threads_batch = args.threads
                cp.flash_attn_type = args.flash_attn
                cp.type_k = cp.type_v = {"f32": 0, "f16": 1, "q8_0": 8}[args.kv]
                ctx = lc.llama_init_from_model(model, cp)
                if G > 1:
                    assert _lib.set_self_extend(ctx, G, W, P) == 0
                t = time.time()
                for i in range(0, n, 512):
                    m = min(512, n - i)
                    arr = (lc.llama_token * m)(*buf[i:i + m])
                    assert lc.llama_decode(ctx, lc.llama_batch_get_one(arr, m)) == 0
                t_pre = time.time() - t
                out = b""
                for step in range(8):
                    lg = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
                    if step == 0:
                        dumps[f"{blocks}|{depth}|{se}"] = lg.copy()
                    tok = int(lg.argmax())
                    piece = ctypes.create_string_buffer(64)
                    k = lc.llama_token_to_piece(vocab, tok, piece, 64, 0, True)
                    out += piece.raw[:k]
                    arr = (lc.llama_token * 1)(tok)
                    assert lc.llama_decode(ctx, lc.llama_batch_get_one(arr, 1)) == 0
                lc.llama_free(ctx)
                ans = out.decode(errors="replace")
                print(json.dumps({"tokens": n, "depth": depth, "G": G, "W": W, "pos_min": P,
                                  "flash_attn": args.flash_attn, "kv": args.kv,
                                  "answer": ans, "ok": args.key in ans, "prefill_s": round(t_pre, 1)}), flush=True)
    if args.dump_logits:
        np.savez(args.dump_logits, **dumps)


if __name__ == "__main__":
    main()
