# Sourced by the device scripts that run Python against the build installed into $K/inst (FULL=1 of
# bench/cuda_mma_device.sh, bench/cuda_device_build.sh; K defaults to /tmp/keep, the machine's keep folder).
# se_use_install [PYTHONPATH]: exports what points se_local and llama-cpp-python's Python layer at that build: its
# libllama (SE_LOCAL_LIB_PATH), the system's libstdc++ first (LD_PRELOAD), PYTHONPATH (default: the carried packages in
# $K/site and the working tree) and unbuffered output. Returns 1 where nothing is installed.
se_use_install() {
    local k=${K:-/tmp/keep} lib
    lib=$(find "$k/inst" -name 'libllama.so*' 2>/dev/null | head -1)
    [ -n "$lib" ] || { echo "no installed build in $k/inst (run a FULL=1 build first, on the same warm machine)"; return 1; }
    export SE_LOCAL_LIB_PATH=$(dirname "$lib") LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6 \
        PYTHONPATH=${1:-$k/site:$PWD} PYTHONUNBUFFERED=1
}
