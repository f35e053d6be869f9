#!/bin/bash
# Issue 6, fifteenth session, on a lent GPU (one call): the model-level checks of NEOX RoPE pairs and of head sizes
# 80/96/112 in llama.cpp's mma kernel with Self-Extend. Builds everything (FULL=1 of bench/cuda_mma_device.sh: the op
# check program and the library, installed; its decode check), then
#   - bench/cuda_route_check.py with tiny qwen2 models (NEOX; head sizes 64/96/128 f16 and q8_0, 80/112 f16): route
#     and all-token logits against the NumPy forward, every layer on the GPU;
#   - bench/cuda_model_bench.py: a 4-layer Qwen-like model (32/8 heads of 128, NEOX) and the Llama-3-shaped one
#     (NORM), SE vs stock flash attention at $LENGTHS (default 4096,16384,32768).
#   bash bench/cuda_neox_device.sh CARRY      CARRY: a folder with llama.cpp.tar.xz and site.tar.xz (as .carry/a)
# Logs and JSON to $OUT.
C=$1
K=/tmp/keep
O=${OUT:-/tmp/out}
L=${LENGTHS:-4096,16384,32768}
mkdir -p "$K/site" "$O" && tar -C "$K/site" -xJf "$C/site.tar.xz"
set -o pipefail
FULL=1 BUDGET=${BUILD_BUDGET:-420} bash bench/cuda_mma_device.sh "$C/llama.cpp.tar.xz" checkdec 2>&1 | grep -v "^D=.* ok " | tee "$O/run.log" \
    || exit 1
[ -e "$K/build.done" ] || exit 1
. bench/cuda_device_env.sh && se_use_install || exit 1
q() { grep -v '^llama\|^load\|^wrote' | tee -a "$O/run.log"; }
timeout 60 python3 bench/cuda_route_check.py --arch qwen2 --head-sizes 64,96,128 --json "$O/route_gpu.jsonl" 2>&1 | q
timeout 40 python3 bench/cuda_route_check.py --arch qwen2 --head-sizes 80,112 --kv f16 --json "$O/route_gpu.jsonl" 2>&1 | q
timeout 120 python3 bench/cuda_model_bench.py --write "$K/qwen.gguf" --arch qwen2 --lengths "$L" --n-gen 16 \
    --tag qwen2-neox --json "$O/model_bench.jsonl" 2>&1 | q
timeout 120 python3 bench/cuda_model_bench.py --write "$K/l3.gguf" --lengths "$L" --n-gen 16 \
    --tag llama-norm --json "$O/model_bench.jsonl" 2>&1 | q
