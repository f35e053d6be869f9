# Sourced by the bench/cuda_device_*.sh / cuda_mma_device.sh scripts after TARBALL is set: the machine's keep folder
# (/tmp/keep survives between calls while the machine is warm), $OUT, a clock, the time left of BUDGET (seconds,
# default 570), the GPU's name and clocks, and the unpacked llama.cpp tree.
K=/tmp/keep
O=${OUT:-/tmp/out}
mkdir -p "$K/llama.cpp" "$O"
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
left() { echo $(( ${BUDGET:-570} - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
[ -d "$K/llama.cpp/ggml" ] || tar -C "$K/llama.cpp" -xJf "$TARBALL"
