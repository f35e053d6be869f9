#!/bin/bash
# Issue 6: bench/cuda_vec_probe.cu on the device in one call, without building llama.cpp (about 30 s of compile instead
# of a se-backend-check build): the patches (and a variant diff, if given) applied to the carried llama.cpp tree, the
# probe compiled against that tree's fattn-se.cu, then run. Output: stdout, and $OUT/vec_probe.txt.
#   bash bench/cuda_vec_probe.sh TARBALL [VARIANT.diff] [-- PROBE ARGS...]
#       PROBE ARGS: --reps N, --splits N,N,..., --mask, --stock-vec (llama.cpp's vector kernel with Self-Extend instead)
#       TARBALL: a carried copy of the unpatched llama.cpp tree (.carry/c/llama.cpp.tar.xz)
set -eo pipefail
TARBALL=$1; shift
VARIANT=
if [ $# -gt 0 ] && [ "$1" != "--" ]; then VARIANT=$1; shift; fi
[ "$1" = "--" ] && shift
O=${OUT:-/tmp/out}
W=/tmp/vec_probe
rm -rf "$W" && mkdir -p "$W/src" "$O"
tar -C "$W/src" -xJf "$TARBALL"
python3 cmake/prepare_llama.py --version probe --sha256 none --work "$W" --source "$W/src" \
    --patches "$PWD"/patches/*.patch ${VARIANT:+"$(realpath "$VARIANT")"}
T=$W/llama.cpp
# ggml's nvcc flags (bench/cuda_sass_size.py), its FA type defines and the cuBLAS declaration stub (the compile test)
FLAGS=$(python3 -c "
import sys; sys.path[:0] = ['.', 'bench']
from pathlib import Path
from tests import test_cuda_compile as cc
from cuda_sass_size import NVCC_FLAGS
cc.write_cublas_stub(Path('$W/stub'))
print(' '.join(NVCC_FLAGS + cc._fa_type_defines(Path('$T'))))")
nvcc $FLAGS -I"$W/stub" \
    -I"$T/ggml/src/ggml-cuda" -I"$T/ggml/src" -I"$T/ggml/include" -c bench/cuda_vec_probe.cu -o "$W/vec_probe.o"
# the rest of ggml-cuda is not linked: fattn-se.cu's host functions that call into it are never called by the probe
nvcc -arch=sm_90 "$W/vec_probe.o" -o "$W/vec_probe" -Xcompiler -no-pie -Xlinker --unresolved-symbols=ignore-all
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$O/vec_probe.txt"
"$W/vec_probe" "$@" 2>&1 | tee -a "$O/vec_probe.txt"
