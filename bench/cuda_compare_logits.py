#!/usr/bin/env python3
"""Compare the first-step logits that bench/passkey_probe.py --dump-logits wrote for two runs.

    python bench/cuda_compare_logits.py A.npz B.npz --label-a gpu_fused --label-b gpu_portable

One JSON line per prompt present in both files: max |logit difference|, max |logit|, whether the
greedy next token agrees, and how many of the top-5 tokens agree.
"""

import argparse
import json

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--label-a", default="a")
    ap.add_argument("--label-b", default="b")
    args = ap.parse_args()
    a = np.load(args.a)
    b = np.load(args.b)
    for key in sorted(set(a.files) & set(b.files)):
        la = a[key].astype(np.float64)
        lb = b[key].astype(np.float64)
        ta = np.argsort(-la)[:5]
        tb = np.argsort(-lb)[:5]
        print(json.dumps({"compare": f"{args.label_a} vs {args.label_b}", "prompt": key,
                          "max_abs_logit_diff": float(np.abs(la - lb).max()),
                          "max_abs_logit": float(np.abs(lb).max()),
                          "argmax_equal": bool(ta[0] == tb[0]), "top5_common": int(len(set(ta) & set(tb))),
                          "argmax_a": int(ta[0]), "argmax_b": int(tb[0])}), flush=True)


if __name__ == "__main__":
    main()
