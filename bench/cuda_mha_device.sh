#!/bin/bash
# Issue 6, sixteenth session, on a lent GPU: the split route for MHA (one query head per KV head, ncols2 1) at head
# sizes 96 and 128.
#   bash bench/cuda_mha_device.sh ops CARRY     (call 1) builds everything (FULL=1 of bench/cuda_mma_device.sh: the op
#       check program and the library, installed into /tmp/keep) and runs its steps $STEPS (default: check checkdec
#       checksplit perf perffused perfdec: the op against the CPU op, its speed against stock on the default routes and
#       without the split route)
#   bash bench/cuda_mha_device.sh models CARRY  (call 2, on the same warm machine) bench/cuda_model_bench.py on two
#       4-layer MHA models (32/32 heads), SE vs stock flash attention at $LENGTHS (default 4096,16384,32768): head size
#       128 with NORM pairs (Llama-2-7B) and 96 with NEOX pairs (Phi-3-mini)
#   CARRY: a folder with llama.cpp.tar.xz and site.tar.xz (as .carry/c). Logs and JSON to $OUT.
what=$1
C=$2
K=/tmp/keep
O=${OUT:-/tmp/out}
L=${LENGTHS:-4096,16384,32768}
mkdir -p "$K/site" "$O"
set -o pipefail
case $what in
    ops)
        tar -C "$K/site" -xJf "$C/site.tar.xz"
        FULL=1 BUDGET=${BUDGET:-560} bash bench/cuda_mma_device.sh "$C/llama.cpp.tar.xz" \
            ${STEPS:-check checkdec checksplit perf perffused perfdec} 2>&1 | grep -v "^D=.* ok " | tee "$O/run.log" ;;
    models)
        [ -e "$K/build.done" ] || { echo "no build in $K (run the ops call first, on the same warm machine)"; exit 1; }
        . bench/cuda_device_env.sh && se_use_install || exit 1
        q() { grep -v '^llama\|^load\|^wrote' | tee -a "$O/run.log"; }
        timeout 200 python3 bench/cuda_model_bench.py --write "$K/mha128.gguf" --n-head-kv 32 --lengths "$L" --n-gen 16 \
            --tag mha-d128-norm --json "$O/model_bench.jsonl" 2>&1 | q
        timeout 200 python3 bench/cuda_model_bench.py --write "$K/mha96.gguf" --n-head-kv 32 --head-size 96 --arch qwen2 \
            --lengths "$L" --n-gen 16 --tag mha-d96-neox --json "$O/model_bench.jsonl" 2>&1 | q ;;
    *)  echo "usage: $0 ops|models CARRY"; exit 2 ;;
esac
