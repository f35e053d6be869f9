#!/bin/bash
# Issue 6 on a GPU machine: the Self-Extend CUDA flash attention checked and timed. Run from the repository root
# (the device tool's copy); logs and JSON go to $OUT. KEEP=/tmp/keep holds what the stages share.
#   stage "check":  waits for bench/cuda_device_build.sh, then the op check (GPU vs CPU), the op timing (SE vs
#                   stock) and SmolLM2 passkey prompts on the GPU (fused SE flash attention, and llama's portable
#                   SE path with flash attention off, also on the GPU); needs KEEP/smol.part.aa + .carry2
#   stage "models": the Llama-3-8B-shaped model bench (SE vs stock)
K=${KEEP:-/tmp/keep}
O=${OUT:-/tmp/out}
. "$(dirname "$0")/cuda_device_env.sh"
mkdir -p "$O"
export PYTHONPATH=$K/site:$K/src PYTHONUNBUFFERED=1
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

case "$1" in
check)
    while [ ! -e "$K/build.done" ] && [ ! -e "$K/build.fail" ]; do sleep 2; done
    el "build finished: $(tail -1 "$K/build.log")"
    if [ -e "$K/build.fail" ]; then
        grep -n -B3 -A12 -m4 'error' "$K/build.log" | head -120
        tail -40 "$K/build.log"
        exit 1
    fi
    cp "$K/build.log" "$O/build.log"
    [ -e "$K/smol.gguf" ] || cat "$K/smol.part.aa" .carry2/smol.part.ab > "$K/smol.gguf"
    CHK=$(find "$K/b" -name se-backend-check -type f | head -1)
    el "op check"
    timeout 240 "$CHK" check --threads 16 --max-seconds 180 --json "$O/cuda_op_check.jsonl" 2>&1 | tee "$O/op_check.txt"
    el "op perf"
    timeout 180 "$CHK" perf --json "$O/cuda_op_perf.jsonl" 2>&1 | tee "$O/op_perf.txt"
    se_use_install "$K/site:$K/src" || exit 1
    cd "$K/src" || exit 1
    if [ $(( $(date +%s) - t0 )) -gt 440 ]; then
        el "no time left for the passkey prompts in this call (stage models runs them)"
        exit 0
    fi
    bash bench/cuda_device_run.sh passkey
    if [ $(( $(date +%s) - t0 )) -lt 500 ]; then
        el "model bench"
        timeout 90 python3 bench/cuda_model_bench.py -m "$K/l3shape.gguf" --json "$O/cuda_model_bench.jsonl" 2>&1 | grep -v '^llama\|^load' | tee "$O/model_bench.txt"
    fi
    el "done"
    ;;
passkey)
    se_use_install "$K/site:$K/src" || exit 1
    cd "$K/src" || exit 1
    for fa in 1 0; do
        el "passkey on the GPU, flash_attn=$fa"
        timeout 150 python3 bench/passkey_probe.py -m "$K/smol.gguf" --blocks 660 --depths 0.1,0.5,0.9 --se 6:1024:0 \
            --gpu-layers 99 --flash-attn $fa --threads 16 --dump-logits "$K/pk660_fa$fa.npz" 2>&1 | grep '^{' | tee -a "$O/cuda_passkey.jsonl"
        timeout 150 python3 bench/passkey_probe.py -m "$K/smol.gguf" --blocks 1320 --depths 0.1,0.5,0.9 --se 12:1024:0 \
            --gpu-layers 99 --flash-attn $fa --threads 16 --dump-logits "$K/pk1320_fa$fa.npz" 2>&1 | grep '^{' | tee -a "$O/cuda_passkey.jsonl"
    done
    for n in 660 1320; do
        python3 bench/cuda_compare_logits.py "$K/pk${n}_fa1.npz" "$K/pk${n}_fa0.npz" --label-a gpu_fused_se --label-b gpu_portable_se \
            | tee -a "$O/cuda_passkey.jsonl"
    done
    # yardstick: how far stock llama.cpp's flash attention and its non-flash path drift apart on the same prompts
    for fa in 1 0; do
        el "vanilla passkey on the GPU, flash_attn=$fa"
        timeout 150 python3 bench/passkey_probe.py -m "$K/smol.gguf" --blocks 660 --depths 0.1,0.5,0.9 --se 1:0:0 \
            --gpu-layers 99 --flash-attn $fa --threads 16 --dump-logits "$K/pk660_vanilla_fa$fa.npz" 2>&1 | grep '^{' | tee -a "$O/cuda_passkey.jsonl"
    done
    python3 bench/cuda_compare_logits.py "$K/pk660_vanilla_fa1.npz" "$K/pk660_vanilla_fa0.npz" --label-a gpu_stock_fa --label-b gpu_stock_nofa \
        | tee -a "$O/cuda_passkey.jsonl"
    ;;
models)
    se_use_install "$K/site:$K/src" || exit 1
    cd "$K/src" || exit 1
    [ -e "$K/pk660_vanilla_fa0.npz" ] || bash bench/cuda_device_run.sh passkey
    el "model bench"
    timeout 300 python3 bench/cuda_model_bench.py -m "$K/l3shape.gguf" --json "$O/cuda_model_bench.jsonl" 2>&1 | grep -v '^llama\|^load' | tee "$O/model_bench.txt"
    el "done"
    ;;
*)
    echo "usage: $0 check|passkey|models"
    exit 2
    ;;
esac
