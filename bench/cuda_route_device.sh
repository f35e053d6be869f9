#!/bin/bash
# Issue 6, fourteenth session, on a lent GPU: the route Self-Extend takes per head size (fused CUDA op, or the
# portable path on the GPU where the op has no kernel), the quantized-K-cache fix, and SmolLM2 passkey prompts
# through our library next to a transformers-based Algorithm 1 (bench/se_hf_reference.py). Two calls, the second
# within 30 s of the first (the 98 MB model travels in two halves):
#   call 1, carry .carry/a (llama.cpp.tar.xz: the pinned tree, trimmed; site.tar.xz: llama_cpp, diskcache and gguf
#           with its dist-info folder (transformers reads gguf's version; without it the reference step fails);
#           smol.part.aa: the first 50,000,000 bytes of SmolLM2-135M-Instruct.Q4_1.gguf):
#           bash bench/cuda_route_device.sh stage1 .carry/a      (starts the CUDA build in the background)
#   call 2, carry .carry/b (smol.part.ab: the rest of the GGUF):
#           bash bench/cuda_route_device.sh stage2 .carry/b      (everything else; logs and JSON to $OUT)
# PK16 / PK32 (default 660 / 1320 filler blocks: 15,908 / 31,748 tokens) shorten the prompts for a dry run.
K=${KEEP:-/tmp/keep}
O=${OUT:-/tmp/out}
. "$(dirname "$0")/cuda_device_env.sh"
C=$2
A=${PK16:-660}
B=${PK32:-1320}
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$O" "$K"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

case "$1" in
stage1)
    mkdir -p "$K/site" "$K/llama.cpp" "$K/src"
    cp "$C/smol.part.aa" "$K/"
    tar -C "$K/llama.cpp" -xJf "$C/llama.cpp.tar.xz"
    tar -C "$K/site" -xJf "$C/site.tar.xz"
    tar --exclude=./.carry --exclude=./.git --exclude=./build --exclude='./.venv*' -cf - . | tar -C "$K/src" -xf -
    (cd "$K/src" && setsid nohup bash bench/cuda_device_build.sh "$K" > "$K/build.log" 2>&1 < /dev/null &)
    el "build started in the background"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    ;;
stage2)
    M=$K/SmolLM2-135M-Instruct.Q4_1.gguf
    [ -e "$M" ] || cat "$K/smol.part.aa" "$C/smol.part.ab" > "$M"
    [ "$(sha256sum "$M" | cut -d' ' -f1)" = "$MODEL_SHA" ] || { echo "model sha256 mismatch"; exit 1; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$O/gpu.txt"
    cd "$K/src" || exit 1
    export PYTHONPATH=$K/site:$K/src PYTHONUNBUFFERED=1
    el "transformers reference (GPU) while the build runs"
    (timeout 400 python3 bench/se_hf_reference.py -m "$M" --blocks $A --depths 0.1,0.5,0.9 --se 6:1024 --se 8:512 \
        --dump-logits "$K/hf$A.npz" && timeout 200 python3 bench/se_hf_reference.py -m "$M" --blocks $B \
        --depths 0.1,0.5,0.9 --se 12:1024 --dump-logits "$K/hf$B.npz") > "$O/hf_passkey.jsonl" 2> "$K/hf.err" &
    hf=$!
    while [ ! -e "$K/build.done" ] && [ ! -e "$K/build.fail" ]; do sleep 2; done
    el "build: $(tail -1 "$K/build.log")"
    [ -e "$K/build.fail" ] && { grep -n -A12 -m4 'error' "$K/build.log" | head -80; exit 1; }
    se_use_install "$K/site:$K/src" || exit 1
    el "route check, every layer on the GPU"
    timeout 120 python3 bench/cuda_route_check.py --head-sizes 64,96,128,256 --gpu-layers 99 --json "$O/route_gpu.jsonl" 2>&1 | grep -v '^llama\|^load'
    el "passkey prompts through the library (GPU, flash attention on)"
    for a in "$A 6:1024:0 8:512:0" "$B 12:1024:0"; do set -- $a
        timeout 100 python3 bench/passkey_probe.py -m "$M" --blocks $1 --depths 0.1,0.5,0.9 ${2:+--se $2} ${3:+--se $3} \
            --gpu-layers 99 --threads 16 --dump-logits "$K/lib$1.npz" 2>&1 | grep '^{' | tee -a "$O/lib_passkey.jsonl"
    done
    timeout 60 python3 bench/passkey_probe.py -m "$M" --blocks $A --depths 0.1,0.5,0.9 --se 6:1024:0 --kv q8_0 \
        --gpu-layers 99 --threads 16 2>&1 | grep '^{' | tee -a "$O/lib_passkey.jsonl"
    el "model bench, head size 96 (no CUDA kernel for Self-Extend): stock, the portable path, the op on the CPU"
    timeout 100 python3 bench/cuda_model_bench.py --write "$K/d96.gguf" --head-size 96 --lengths 4096,16384 \
        --modes stock,se --n-gen 16 --json "$O/model_d96.jsonl" 2>&1 | grep -v '^llama\|^load\|^wrote'
    timeout 100 python3 bench/cuda_model_bench.py -m "$K/d96.gguf" --lengths 4096 --modes stock,se-op --n-gen 16 \
        --json "$O/model_d96.jsonl" 2>&1 | grep -v '^llama\|^load\|^wrote'
    el "waiting for the transformers reference"
    wait $hf; tail -3 "$K/hf.err" | grep -v Warn
    cat "$O/hf_passkey.jsonl"
    for n in $A $B; do python3 bench/cuda_compare_logits.py "$K/hf$n.npz" "$K/lib$n.npz" --label-a transformers \
        --label-b lib_gpu_fused | tee -a "$O/compare_logits.jsonl"; done
    el "done"
    ;;
esac
