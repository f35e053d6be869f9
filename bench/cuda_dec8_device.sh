#!/bin/bash
# Issue 6, seventeenth session, on a lent GPU: one query in 8 columns (llama.cpp's one-query mma instances, K tiles of
# 128 keys rotated in place) at the model level. Run after `bash bench/cuda_mha_device.sh ops CARRY` (its FULL=1 build,
# installed into /tmp/keep) on the same warm machine:
#   bash bench/cuda_dec8_device.sh
# bench/cuda_model_bench.py, SE vs stock flash attention at $LENGTHS (default 4096,16384), 4-layer models with random
# weights: head size 96 MHA with NEOX pairs (Phi-3-mini heads, written as qwen2), head size 128 with 8 query heads per
# KV head and NEOX pairs (Qwen-like, 32/4 heads), and the Llama-3-shaped one (32/8, NORM). Each first stock and
# Self-Extend with GGML_CUDA_SE_DEC_COLS=8 (8 columns at every length; the default takes them at head size 128 below 8k
# keys only), then Self-Extend alone with GGML_CUDA_SE_DEC_COLS=16 (the sixteenth session's 16 columns).
# Logs and JSON lines to $OUT (model_bench.jsonl, run.log).
K=/tmp/keep
O=${OUT:-/tmp/out}
L=${LENGTHS:-4096,16384}
mkdir -p "$O"
. bench/cuda_device_env.sh && se_use_install || exit 1
q() { grep -v '^llama\|^load\|^wrote' | tee -a "$O/run.log"; }
for m in "phi3-d96-mha --n-head-kv 32 --head-size 96 --arch qwen2" "qwen-d128-gqa8 --n-head-kv 4 --arch qwen2" \
         "llama3-d128-gqa4"; do
    set -- $m
    tag=$1; shift
    [ -e "$K/$tag.gguf" ] || timeout 60 python3 bench/cuda_model_bench.py --write "$K/$tag.gguf" --write-only "$@" 2>&1 | q
    GGML_CUDA_SE_DEC_COLS=8 timeout 150 python3 bench/cuda_model_bench.py -m "$K/$tag.gguf" --lengths "$L" --n-gen 32 \
        --tag "$tag dec_cols=8" --json "$O/model_bench.jsonl" 2>&1 | q
    GGML_CUDA_SE_DEC_COLS=16 timeout 100 python3 bench/cuda_model_bench.py -m "$K/$tag.gguf" --lengths "$L" --n-gen 32 \
        --modes se --tag "$tag dec_cols=16" --json "$O/model_bench.jsonl" 2>&1 | q
done
