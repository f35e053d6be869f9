#!/bin/bash
# Issue 6, op level, in one device call: build se-backend-check with the CUDA backend (sm_90, -j16, about 250 s on
# the lent H100), then check the Self-Extend flash-attention op against the CPU op and time it against the stock op.
# Run from the repository root; logs on stdout, JSON lines to $OUT.
#   bash bench/cuda_device_op_check.sh TARBALL [decode] [batch]
#       TARBALL: an unpacked-able, unpatched llama.cpp tree (.tar.xz), e.g. a carried copy of .carry2/llama.cpp.tar.xz
#       decode / batch: check + perf for one query / for batches of queries (default: both)
# BUDGET (seconds, default 570) bounds the whole run: each stage gets what is left.
TARBALL=$1
shift
[ $# -eq 0 ] && set -- decode batch
. "$(dirname "$0")/cuda_device_common.sh"
el "configure + build"
if ! { cmake -S . -B "$K/b" -G Ninja -DSE_LLAMA_SOURCE_DIR="$K/llama.cpp" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$K/build.log" 2>&1 \
        && cmake --build "$K/b" -j16 --target se-backend-check >> "$K/build.log" 2>&1; }; then
    el "build FAILED"
    cp "$K/build.log" "$O/build.log"
    grep -n -B2 -A12 'error' "$K/build.log" | head -80
    exit 1
fi
el "build ok"
CHK=$(find "$K/b" -name se-backend-check -type f | head -1)
for st in "$@"; do
    l=$(left); [ "$l" -lt 30 ] && { el "no time for $st"; continue; }
    el "check $st (max $((l/2)) s)"
    timeout $((l/2 + 20)) "$CHK" check --threads 16 --max-seconds $((l/2)) --only "$st" --json "$O/check_$st.jsonl" 2>&1 | grep -v "^D=.* ok "
    l=$(left); [ "$l" -lt 20 ] && { el "no time for perf $st"; continue; }
    el "perf $st"
    timeout $((l - 5)) "$CHK" perf --only "$st" --json "$O/perf_$st.jsonl" 2>&1 | grep -v "graph warmup"
done
el "done"
