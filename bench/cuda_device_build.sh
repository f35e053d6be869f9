#!/bin/bash
# Build se-local's libraries with the CUDA backend (sm_90 only) and native/se-backend-check on a GPU
# machine, for bench/cuda_device_run.sh.
#   bash bench/cuda_device_build.sh KEEP    (run from the repository root; KEEP/llama.cpp holds an unpacked,
#                                            unpatched llama.cpp tree; writes KEEP/b and KEEP/inst and then
#                                            KEEP/build.done or KEEP/build.fail)
K=$1
t0=$(date +%s)
if cmake -S . -B "$K/b" -G Ninja -DSE_LLAMA_SOURCE_DIR="$K/llama.cpp" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        && cmake --build "$K/b" -j16 && cmake --install "$K/b" --prefix "$K/inst"; then
    echo "build ok in $(( $(date +%s) - t0 )) s"
    touch "$K/build.done"
else
    echo "build FAILED after $(( $(date +%s) - t0 )) s"
    touch "$K/build.fail"
fi
