#!/bin/bash
# Issue 5 on a lent GPU (nvidia-h100-x1): `se-local eval passkey|ppl` for SmolLM2-135M-Instruct Q4_1
# (L = 8192) with every layer on the GPU (CUDA build of the patched llama.cpp, flash attention on: the
# fused CUDA Self-Extend kernel of patch 0003), all five methods, 16k / 32k (and more if time is left).
# Results: bench/results/eval_smollm2_h100/, write-up: docs/EVAL.md ("On an H100").
#
# The model (98 MB) is larger than what one device call carries (64 MiB), so two calls, the second
# within 30 s of the first (the machine is given back after 30 s idle):
#   call 1, carry .carry_eval1 (smol.part.aa = first 50,000,000 bytes of the GGUF, llama.cpp.tar.xz =
#           the pinned llama.cpp tree, site.tar.xz = llama_cpp/gguf/... pure-python packages):
#           bash bench/eval_smollm2_h100.sh stage1 .carry_eval1
#           (unpacks, copies this tree to KEEP/src, starts bench/cuda_device_build.sh in the background)
#   call 2, carry .carry_eval2 (smol.part.ab = the rest of the GGUF, licenses.txt = the default PPL text,
#           `se_local.eval.ppl.default_text()` of Debian's /usr/share/common-licenses written to a file,
#           sha256 of its UTF-8 text 0679b1c8..., the same as the CPU results' text_sha256):
#           bash bench/eval_smollm2_h100.sh stage2 .carry_eval2
#           (joins and checks the model, waits for the build, runs the evaluations; JSON and logs -> $OUT)
# As run for bench/results/eval_smollm2_h100/ (commit 94ffe1b + this script; it then also carried a fallback
# driver for images where `python3 -m se_local` does not start, unused there and since removed):
#   run(kind=nvidia-h100-x1, carry=[.carry_eval1]):  bash bench/eval_smollm2_h100.sh stage1 .carry_eval1
#   run(carry=[.carry_eval2], timeout_s=480):        BUDGET=420 bash bench/eval_smollm2_h100.sh stage2 .carry_eval2
# so the evaluations were, with COMMON = -m KEEP/m/SmolLM2-135M-Instruct.Q4_1.gguf --gpu-layers -1 --threads 16 --out KEEP/ev:
#   python3 -m se_local eval passkey --lengths 16k,32k --depths 0.1,0.5,0.9 --trials 1 --method se,vanilla,grp-attn,yarn,linear COMMON
#   python3 -m se_local eval ppl -f KEEP/licenses.txt --lengths 8k,16k,32k --windows 1 --method se,vanilla,grp-attn,yarn,linear COMMON
#   python3 -m se_local eval ppl -f KEEP/licenses.txt --lengths 8k,16k,32k --method se,vanilla,grp-attn,yarn,linear COMMON
# (the last two steps, 3 trials and 64k, were skipped by the time guard).
# Environment: KEEP (default /tmp/keep), OUT, BUDGET (seconds stage 2 may run, default 430; each step is
# skipped or cut with `timeout` so that the call ends by then; every eval resumes from its JSON),
# GPU_LAYERS (-1), PK_LENGTHS / PPL_LENGTHS / PK64 / EXTRA and LIB (a built library folder: skip the wait
# for the build) for a dry run on a CPU.
K=${KEEP:-/tmp/keep}
O=${OUT:-/tmp/out}
C=$2
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
TEXT_SHA=0679b1c8d169f0ea6ba90385a1b7df9653864e3556238f4b2264b59c59cfcc59
mkdir -p "$O"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$O/eval_log.txt"; }

case "$1" in
stage1)
    mkdir -p "$K/site" "$K/llama.cpp" "$K/src" "$K/m"
    cp "$C/smol.part.aa" "$K/"
    tar -C "$K/llama.cpp" -xJf "$C/llama.cpp.tar.xz"
    tar -C "$K/site" -xJf "$C/site.tar.xz"
    tar --exclude=./.carry_eval1 --exclude=./.carry_eval2 --exclude=./.git -cf - . | tar -C "$K/src" -xf -
    if [ -z "$NO_BUILD" ]; then
        (cd "$K/src" && setsid nohup bash bench/cuda_device_build.sh "$K" > "$K/build.log" 2>&1 < /dev/null &)
        el "build started in the background"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    PYTHONPATH=$K/site:$K/src python3 -c "import sys, numpy, typer, rich; print(sys.version.split()[0], 'numpy', numpy.__version__, 'typer', typer.__version__)"
    ;;
stage2)
    BUDGET=${BUDGET:-430}
    left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
    cp "$C/licenses.txt" "$K/licenses.txt"
    M=$K/m/SmolLM2-135M-Instruct.Q4_1.gguf     # the file name the CPU results record
    [ -e "$M" ] || cat "$K/smol.part.aa" "$C/smol.part.ab" > "$M"
    sha=$(sha256sum "$M" | cut -d' ' -f1)
    [ "$sha" = "$MODEL_SHA" ] || { el "model sha256 $sha != $MODEL_SHA"; exit 1; }
    tsha=$(python3 -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1], encoding='utf-8', errors='replace').read().encode()).hexdigest())" "$K/licenses.txt")
    [ "$tsha" = "$TEXT_SHA" ] || { el "text sha256 $tsha != $TEXT_SHA"; exit 1; }
    el "model and text checked (sha256 ok)"
    if [ -z "$LIB" ]; then
        while [ ! -e "$K/build.done" ] && [ ! -e "$K/build.fail" ] && [ "$(left)" -gt 60 ]; do sleep 2; done
        el "build: $(tail -1 "$K/build.log")"
        if [ ! -e "$K/build.done" ]; then
            grep -n -B3 -A12 -m4 'error' "$K/build.log" | head -80; tail -30 "$K/build.log"
            cp "$K/build.log" "$O/build.log"; exit 1
        fi
        grep -E 'build ok|CUDA|patch' "$K/build.log" | head -20 > "$O/build_log_excerpt.txt"
        LIB=$(dirname "$(find "$K/inst" -name 'libllama.so*' | head -1)")
        export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
    fi
    export SE_LOCAL_LIB_PATH=$LIB PYTHONPATH=$K/site:$K/src PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$O/eval_log.txt"
    cd "$K/src" || exit 1
    EV=$K/ev
    G=${GPU_LAYERS:--1}
    COMMON="-m $M --gpu-layers $G --threads 16 --out $EV"
    ALL=se,vanilla,grp-attn,yarn,linear
    SE="python3 -m se_local"
    if ! $SE eval passkey --help > /dev/null 2>&1; then
        el "python3 -m se_local does not start here (its packages: typer, rich, gguf, numpy)"
        $SE eval passkey --help 2>&1 | tail -5
        exit 1
    fi
    step() {  # step MIN_SECONDS ARGS...: run `$SE eval ARGS $COMMON` if MIN_SECONDS are left, cut at the budget
        local need=$1; shift
        if [ "$(left)" -lt "$need" ]; then el "SKIPPED (time): eval $*"; return; fi
        el "eval $*"
        timeout "$(left)" $SE eval "$@" $COMMON 2>&1 | grep -v '^llama_\|^load\|^print_info\|^\.\.\.\|^ggml_\|^graph_\|^sched_\|^set_abort' | tee -a "$O/eval_log.txt"
        el "rc=${PIPESTATUS[0]}"
        cp "$EV"/*.json "$O/" 2>/dev/null
    }
    PKL=${PK_LENGTHS:-16k,32k}
    PPLL=${PPL_LENGTHS:-8k,16k,32k}
    # the issue's runs: passkey 16k/32k x 10/50/90% x all methods, PPL first window at 8k/16k/32k
    step 30 passkey --lengths "$PKL" --depths 0.1,0.5,0.9 --trials 1 --method $ALL
    step 20 ppl -f "$K/licenses.txt" --lengths "$PPLL" --windows 1 --method $ALL
    if [ -z "$NO_EXTRA" ]; then
        # then, while time is left: every window of the text, two more keys per cell, 64k
        step 20 ppl -f "$K/licenses.txt" --lengths "$PPLL" --method $ALL
        step 30 passkey --lengths "$PKL" --depths 0.1,0.5,0.9 --trials 3 --method $ALL
        step 40 passkey --lengths "${PK64:-64k}" --depths 0.1,0.5,0.9 --trials 1 --method $ALL
    fi
    el "done"
    ;;
*)
    echo "usage: $0 stage1|stage2 CARRY_FOLDER"; exit 2 ;;
esac
