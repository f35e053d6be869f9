#!/bin/bash
# Issue 6, Self-Extend prefill in llama.cpp's mma kernel: one device call. Builds se-backend-check (CUDA, sm_90, -j16),
# then checks the batch cases against the CPU op and times them against the stock op, for the default route and the
# A/B variants selected by GGML_CUDA_SE_MMA (64: 64 columns per block; old: the mma kernel of fattn-se.cu).
# Run from the repository root; logs on stdout, JSON lines to $OUT.
#   bash bench/cuda_mma_device.sh TARBALL [STEP...]
#       TARBALL: a carried copy of .carry2/llama.cpp.tar.xz (unpatched llama.cpp)
#       STEP: check, perf, check64, perf64, perfold, checkdec, perfdec, ncu, ncu2 (default: check perf perf64);
#             checkdecmma/perfdecmma, checkdecvec/perfdecvec: one query with GGML_CUDA_SE_DEC=mma / =vec
#             perfdecmma64: one query through the mma kernel's 64-column instances (GGML_CUDA_SE_DEC_COLS=64)
#             perfdeccols/checkdeccols: one query with each of $DEC_COLS (default 8 16) in GGML_CUDA_SE_DEC_COLS: the 8- and
#                     16-column instances at head sizes 96 and 128 at every length, perf/check_decode_n<cols>.jsonl
#                     (seventeenth session; its run at commit c31ae5c had perfdec16, = perfdeccols with DEC_COLS=16)
#             perfnbr1: batches with the neighbor keys as a stock part of the split route (GGML_CUDA_SE_SPLIT_NBR=1)
#             checksplit: the batch checks with the split route's variants: the band's neighbor scores as a launch of
#                     their own (GGML_CUDA_SE_SPLIT_SEG=0), the band through the Self-Extend kernel
#                     (GGML_CUDA_SE_SPLIT_BAND=se), every part through the merge kernel (GGML_CUDA_SE_SPLIT_ACC=0), chunks
#                     of 4096 keys (GGML_CUDA_SE_SPLIT_CHUNK=4096), from 64 grouped keys on (GGML_CUDA_SE_SPLIT_MIN=64);
#                     $SPLIT_VARIANTS replaces the list (the words after GGML_CUDA_SE_SPLIT_)
#             perfab: batches with each of the settings in $PERF_ENVS (default: GGML_CUDA_SE_SPLIT_SEG=0
#                     GGML_CUDA_SE_SPLIT_BAND=se), perf_batch_<setting, = as _>.jsonl (a name with = does not come back)
#             every decode timing step (perfdec*): only the shapes whose name contains $PERF_SHAPE (default all)
#             perfdeccold: perfdec with --cold: each op of a timed graph reads K/V copies of its own (256 MiB of them),
#                     out of L2 as each layer of a model reads its cache (perf_decode_cold.jsonl; twenty-ninth session)
#             perfdecab/checkdecab: one query with each of the settings in $PERF_ENVS (default: GGML_CUDA_SE_VEC=e1),
#                     perf/check_decode_<setting, = as _>.jsonl
#             perfchunk: kv 64k batches with $CHUNKS (default 4096 65536; the word default: what the scratch holds) grouped
#                     keys per chunk (GGML_CUDA_SE_SPLIT_CHUNK), the shapes whose name contains $PERF_SHAPE (default all)
#             ncusplit: the GPU time of every kernel of the batch ops (Llama-3 shape f16 first) at kv $NS_KV (default
#                     4096 65536), stock and SE (Nsight Compute, warm caches), with each setting of $NS_ENVS (default
#                     none: the defaults; e.g. GGML_CUDA_SE_SPLIT_PREP=3), ncusplit_<kv>[_<setting>].csv
#             ncuprep: Nsight Compute sections (throughput, occupancy, warp states) of the split route's preparation at
#                     kv 4096, its three parts launched apart (GGML_CUDA_SE_SPLIT_PREP=3), ncuprep.txt
#             perfneox: the NEOX shape (Qwen2.5-7B heads) through the routes it took before NEOX pairs ran in
#                     llama.cpp's mma kernel: batches in the mma kernel of fattn-se.cu (GGML_CUDA_SE_MMA=old), one query
#                     in the vector kernel (GGML_CUDA_SE_DEC=vec); perf_batch_neox_old.jsonl, perf_decode_neox_vec.jsonl
#             checkfused/perffused: batches without the split route (GGML_CUDA_SE_SPLIT=0: the fused Self-Extend kernel
#                     for all keys, also where the grouped keys are promised)
#             ncudec: the GPU time of every kernel of the decode ops at kv 4096 (Nsight Compute, caches flushed
#                     before each kernel unless NCUDEC_OPTS="--cache-control none"), GGML_CUDA_SE_DEC= each of
#                     $NCUDEC_ROUTES (default: mma vec)
#             ncusrcdec: per-instruction stall samples (Nsight Compute source page, SASS) of the one-query mma kernel
#                     with Self-Extend (16 columns) at kv 4096
#             ncusrc: per-instruction stall samples (Nsight Compute source page, SASS) of the stock prefill kernel and
#                     of the SE kernel with W > kv (Llama-3 shape, 512 queries, kv 4096)
#             model: the Llama-3-shaped whole-model bench (bench/cuda_model_bench.py, SE vs stock, 4k-64k), needs FULL=1
#                    and the Python packages gguf and llama_cpp (its Python layer) in $K/site; the model is written
#                    once, repeated model steps append to model_bench.jsonl
#             modeldec: the model bench at $MD_LENGTHS (default 16k,32k,64k), 48 decode steps, default route,
#                    GGML_CUDA_SE_DEC=vec, =mma and GGML_CUDA_DISABLE_GRAPHS=1 (model_dec.jsonl)
#             models: bench/cuda_model_bench.py on the default routes for each of $MODELS (default: llama3 llama3:q8_0 qwen
#                    llama2 phi3; a 4-layer model each, written once into $K: llama3 Llama-3-8B heads 32/8 of 128, qwen
#                    32/4 of 128 with NEOX pairs, llama2 32/32 of 128, phi3 32/32 of 96 with NEOX pairs; :q8_0 a q8_0 KV
#                    cache) at $LENGTHS (default 4096,16384,32768,65536), $REPS rounds of stock and SE each (default 1;
#                    the medians of the rounds' ratios on stdout), needs FULL=1 (models.jsonl)
#             ncudeckv: Nsight Compute sections (speed of light, launch, occupancy, warp states, instructions) of every
#                    flash-attention launch of the one-query ops of the shapes $PERF_SHAPE at kv $NCU_KV (default 16384;
#                    per case stock, SE, SE with W > kv, each a warm-up and a timed launch), ncudeckv.txt
#             ncusrcdeckv: ncu_source (below) at kv $NCU_KV of the shapes $PERF_SHAPE for each "NAME PATTERN SKIP" of
#                    $NCUSRC (default: the stock 8-column and the SE 16-column NEOX instances, Qwen2.5-7B heads)
#             h2d: the time of one pageable host-to-device copy of 4 KiB - 512 KiB with its stream sync, as ggml's
#                    scheduler copies a graph input (bench/cuda_h2d_probe.cu, h2d_probe.json; needs only nvcc)
#             ncumodel: the GPU time of every kernel of two decode steps of the model at $NM_LENGTH (default 32k),
#                    stock and SE (Nsight Compute, warm caches; ncumodel_*.csv, summary on stdout)
#             ncuprefill: the same for prefill ubatch $NM_UBATCH (default 48) of the model at $NM_LENGTH
#             (the H200 runs 1 and 2 of docs/CUDA.md also had perfrot / perfnopipe: GGML_CUDA_SE_ROT=old / =nopipe,
#             switches of the intermediate builds at commits 0d5869d and 761ff35, not in the final patch)
#   FULL=1: build all targets and install them into /tmp/keep/inst (with KEEP/build.done, as bench/cuda_device_build.sh
#           does), so that a second call within the machine's warm time can run bench/cuda_device_run.sh passkey
TARBALL=$1
shift
[ $# -eq 0 ] && set -- check perf perf64
. "$(dirname "$0")/cuda_device_common.sh"
TGT=se-backend-check; [ -n "$FULL" ] && TGT=all
el "configure + build ($TGT)"
if ! { cmake -S . -B "$K/b" -G Ninja -DSE_LLAMA_SOURCE_DIR="$K/llama.cpp" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$K/build.log" 2>&1 \
        && cmake --build "$K/b" -j16 --target "$TGT" >> "$K/build.log" 2>&1 \
        && { [ -z "$FULL" ] || cmake --install "$K/b" --prefix "$K/inst" >> "$K/build.log" 2>&1; }; }; then
    el "build FAILED"
    cp "$K/build.log" "$O/build.log"
    grep -n -B2 -A12 'error' "$K/build.log" | head -80
    exit 1
fi
el "build ok"
[ -n "$FULL" ] && touch "$K/build.done"
# what the build spent its time on (ninja's log: start and end in ms per target), to plan shorter device builds
if [ -f "$K/b/.ninja_log" ]; then
    cp "$K/b/.ninja_log" "$O/ninja_log.txt"
    awk '!/^#/ { print $2 - $1, $4 }' "$K/b/.ninja_log" | sort -rn | head -12
fi
CHK=$(find "$K/b" -name se-backend-check -type f | head -1)
# Nsight Compute, for the steps ncu, ncu2, ncudec, ncusrc, ncusrcdec, ncusplit, ncuprep
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
. "$(dirname "$0")/cuda_device_env.sh"
# the whole-model bench (bench/cuda_model_bench.py) against the installed FULL=1 build: mb SECONDS ARGS...;
# the model is written on first use; $NCUPRE, if set, is put in front of python3 (a profiler)
mb() {
    [ -d "$K/inst" ] || { echo "model bench: needs FULL=1"; return 1; }
    local l=$1; shift
    [ -e "$K/l3shape.gguf" ] || PYTHONPATH=$K/site:$PWD python3 bench/cuda_model_bench.py --write "$K/l3shape.gguf" --write-only
    ( se_use_install && timeout "$l" $NCUPRE python3 bench/cuda_model_bench.py -m "$K/l3shape.gguf" "$@" 2>&1 ) \
        | grep -v '^llama\|^load'
}
# ncu_model NAME ARGS...: the model bench at $NM_LENGTH under Nsight Compute (GPU time of every kernel between
# cuProfilerStart/Stop, warm caches), stock and SE, into NAME_{stock,se}.csv, with a summary by kernel on stdout
ncu_model() {
    local name=$1; shift
    for mode in stock se; do
        NCUPRE="timeout 150 $NCU --profile-from-start off --clock-control none --cache-control none \
            --metrics gpu__time_duration.sum --csv" mb 150 --lengths "${NM_LENGTH:-32768}" --modes $mode "$@" > "$O/${name}_$mode.csv"
        echo "== $mode"; python3 bench/ncu_kernel_summary.py "$O/${name}_$mode.csv"
    done
}
# ncu_source NAME PATTERN SKIP ONLY: Nsight Compute's source page (SASS, per-instruction stall samples) and details of
# one launch of flash_attn_ext_f16 (or the kernel $NCU_KERNEL, e.g. flash_attn_ext_vec) whose mangled name matches
# PATTERN (after SKIP such launches) in the timing at kv
# $NCU_KV (default 4096) of se-backend-check perf --only ONLY (the shapes $PERF_SHAPE, default all): NAME.csv,
# NAME_details.txt, NAME.log (per-line counters such as "L1 Wavefronts Shared Excessive" are columns of NAME.csv:
# bench/ncu_source_summary.py --metric); $NCU_OPTS: more options for ncu (e.g. --cache-control none: caches as the launch finds them)
ncu_source() {
    local name=$1 pat=$2 skip=$3 only=$4
    timeout 120 "$NCU" --clock-control none $NCU_OPTS --kernel-name-base mangled --kernel-name "regex:${NCU_KERNEL:-flash_attn_ext_f16}.*$pat" \
        --launch-skip "$skip" --launch-count 1 --section SourceCounters --section WarpStateStats -f -o "$K/$name" \
        "$CHK" perf --only "$only" --kv "${NCU_KV:-4096}" ${PERF_SHAPE:+--shape "$PERF_SHAPE"} --rep 1 > "$O/$name.log" 2>&1
    timeout 60 "$NCU" --import "$K/$name.ncu-rep" --page source --print-source sass --csv > "$O/$name.csv" 2>> "$O/$name.log"
    timeout 60 "$NCU" --import "$K/$name.ncu-rep" --page details > "$O/${name}_details.txt" 2>> "$O/$name.log"
    echo "== $name: $(wc -c < "$O/$name.csv") bytes"; head -c 600 "$O/$name.csv"; echo
    grep -i "stall\|warp cycles\|issued" "$O/${name}_details.txt" | head -12
}
# se-backend-check MODE (check or perf) --only ONLY (batch or decode) with the settings ENV... into MODE_ONLY<NAME>.jsonl;
# for one query, the check's passing cases only in the JSON, and perf only the shapes whose name contains $PERF_SHAPE
# (default all). op ONLY MODE NAME [ENV...]
op() {
    local only=$1 mode=$2 name=$3 hide= shape=(); shift 3
    if [ "$only" = decode ]; then
        hide='\|^D=.* ok '; [ -n "$PERF_SHAPE" ] && shape=(--shape "$PERF_SHAPE")
    fi
    if [ "$mode" = check ]; then
        env "$@" timeout $l "$CHK" check --threads 16 --only $only --json "$O/check_$only$name.jsonl" 2>&1 | grep -v "ggml_cuda_init\|Device 0$hide"
    else
        env "$@" timeout $l "$CHK" perf --only $only "${shape[@]}" $PERF_ARGS --json "$O/perf_$only$name.jsonl" 2>&1 | grep -v "graph warmup\|ggml_cuda_init\|Device 0"
    fi
}
for st in "$@"; do
    l=$(left); [ "$l" -lt 20 ] && { el "no time for $st"; continue; }
    el "$st (max $l s)"
    case $st in
        check)      op batch check "" ;;
        checkfused) op batch check _fused GGML_CUDA_SE_SPLIT=0 ;;
        perffused)  op batch perf _fused GGML_CUDA_SE_SPLIT=0 ;;
        perfneox)   GGML_CUDA_SE_MMA=old timeout $l "$CHK" perf --only batch --shape NEOX --json "$O/perf_batch_neox_old.jsonl" 2>&1 | grep -v "graph warmup\|ggml_cuda_init\|Device 0"
                    GGML_CUDA_SE_DEC=vec timeout $l "$CHK" perf --only decode --shape NEOX --json "$O/perf_decode_neox_vec.jsonl" 2>&1 | grep -v "graph warmup\|ggml_cuda_init\|Device 0\|^shape\|^GPU" ;;
        perfnbr1)   op batch perf _nbr1 GGML_CUDA_SE_SPLIT_NBR=1 ;;
        checksplit) for v in ${SPLIT_VARIANTS:-SEG=0 BAND=se ACC=0 CHUNK=4096 MIN=64}; do
                        echo "== GGML_CUDA_SE_SPLIT_$v"
                        env GGML_CUDA_SE_SPLIT_$v timeout $l "$CHK" check --threads 16 --only batch --json "$O/check_batch_split_${v//=/_}.jsonl" 2>&1 | grep "^check:\|FAIL"
                    done ;;
        perfab)     for e in ${PERF_ENVS:-GGML_CUDA_SE_SPLIT_SEG=0 GGML_CUDA_SE_SPLIT_BAND=se}; do
                        echo "== $e"; sfx=${e#GGML_CUDA_}
                        env "$e" timeout $l "$CHK" perf --only batch --json "$O/perf_batch_${sfx//=/_}.jsonl" 2>&1 | grep -v "graph warmup\|ggml_cuda_init\|Device 0\|^shape\|^GPU"
                    done ;;
        perfchunk)  for c in ${CHUNKS:-4096 65536}; do
                        env $([ "$c" = default ] || echo "GGML_CUDA_SE_SPLIT_CHUNK=$c") timeout $l "$CHK" perf --only batch --kv 65536 \
                            ${PERF_SHAPE:+--shape "$PERF_SHAPE"} --json "$O/perf_batch_chunk$c.jsonl" 2>&1 | grep -v "graph warmup\|ggml_cuda_init\|Device 0\|^shape\|^GPU"
                    done ;;
        ncusplit)   for e in ${NS_ENVS:-none}; do for kv in ${NS_KV:-4096 65536}; do
                        sfx=$kv; [ "$e" = none ] || { sfx=${e#GGML_CUDA_SE_SPLIT_}; sfx=${kv}_${sfx//=/_}; }
                        env ${e/none/} timeout 120 "$NCU" --clock-control none --cache-control none --metrics gpu__time_duration.sum \
                            --csv "$CHK" perf --only batch --kv $kv --rep 1 > "$O/ncusplit_$sfx.csv" 2> "$O/ncusplit_$sfx.err"
                        echo "== kv $kv $e"; python3 - "$O/ncusplit_$sfx.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
h = rows[0]; ik, iv = h.index("Kernel Name"), h.index("Metric Value")
for r in rows[1:61]:
    print(r[iv].rjust(10), r[ik][:100])
PY
                    done; done ;;
        ncuprep)    # the split route's preparation at kv 4096 (Llama-3 shape f16 first): its three parts as launches of
                    # their own (GGML_CUDA_SE_SPLIT_PREP=3), throughput, occupancy and warp states of each
                    GGML_CUDA_SE_SPLIT_PREP=3 timeout 120 "$NCU" --clock-control none --cache-control none --kernel-name regex:fattn_se_split_prep \
                        --launch-count 3 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
                        --section MemoryWorkloadAnalysis "$CHK" perf --only batch --kv 4096 --rep 1 > "$O/ncuprep.txt" 2>&1
                    grep -i "fattn_se_split_prep\|^ *duration\|dram throughput\|memory throughput\|achieved occupancy\|grid size\|registers per\|warp cycles per issued\|theoretical occupancy" "$O/ncuprep.txt" | head -60 ;;
        check64)      op batch check _n64 GGML_CUDA_SE_MMA=64 ;;
        checkdec)     op decode check "" ;;
        perf)         op batch perf "" ;;
        perf64)       op batch perf _n64 GGML_CUDA_SE_MMA=64 ;;
        perfold)      op batch perf _old GGML_CUDA_SE_MMA=old ;;
        perfdec)      op decode perf "" ;;
        perfdeccold)  PERF_ARGS=--cold op decode perf _cold ;;
        checkdecmma)  op decode check _mma GGML_CUDA_SE_DEC=mma ;;
        perfdecmma)   op decode perf _mma GGML_CUDA_SE_DEC=mma ;;
        checkdecvec)  op decode check _vec GGML_CUDA_SE_DEC=vec ;;
        perfdeccols|checkdeccols)
                      for c in ${DEC_COLS:-8 16}; do
                          echo "== GGML_CUDA_SE_DEC_COLS=$c"; op decode "${st%deccols}" "_n$c" GGML_CUDA_SE_DEC_COLS=$c
                      done ;;
        perfdecmma64) op decode perf _mma64 GGML_CUDA_SE_DEC=mma GGML_CUDA_SE_DEC_COLS=64 ;;
        perfdecab|checkdecab)
                      for e in ${PERF_ENVS:-GGML_CUDA_SE_VEC=e1}; do
                          echo "== $e"; sfx=${e#GGML_CUDA_}; op decode "${st%decab}" "_${sfx//=/_}" "$e"
                      done ;;
        perfdecvec)   op decode perf _vec GGML_CUDA_SE_DEC=vec ;;
        ncudec)   for name in ${NCUDEC_ROUTES:-mma vec}; do
                      GGML_CUDA_SE_DEC=$name timeout 100 "$NCU" --clock-control none $NCUDEC_OPTS --metrics gpu__time_duration.sum,launch__grid_size \
                          --csv "$CHK" perf --only decode --kv 4096 --rep 1 > "$O/ncudec_$name.csv" 2> "$O/ncudec_$name.err"
                      echo "== $name"; python3 - "$O/ncudec_$name.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
h = rows[0]; ik, im, iv = h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value")
for r in rows[1:]:
    print(r[im][:22].ljust(22), r[iv].rjust(10), r[ik][:110])
PY
                  done ;;
        ncusrcdec) # per-instruction stall samples of the one-query mma kernel with Self-Extend (16 columns), kv 4096
                  ncu_source ncusrcdec "Li4ELi4E.*Li1EE" 1 decode ;;
        ncusrc)   for v in "stock Li0EE 0" "se_all_neighbor Li1EE 2"; do read -r name pat skip <<< "$v"
                      ncu_source "ncusrc_$name" "$pat" "$skip" batch
                  done ;;
        model)    mb $l --json "$O/model_bench.jsonl" ;;
        models)   [ -d "$K/inst" ] || { echo "models: needs FULL=1"; continue; }
                  for m in ${MODELS:-llama3 llama3:q8_0 qwen llama2 phi3}; do
                      tag=${m%%:*}; kv=f16; [ "$tag" = "$m" ] || kv=${m#*:}
                      case $tag in
                          llama3) w=() ;;
                          qwen)   w=(--n-head-kv 4 --arch qwen2) ;;
                          llama2) w=(--n-head-kv 32) ;;
                          phi3)   w=(--n-head-kv 32 --head-size 96 --arch qwen2) ;;
                          *)      echo "models: unknown $tag"; continue ;;
                      esac
                      l=$(left); [ "$l" -lt 30 ] && { el "no time for $m"; break; }
                      el "model $m (max $l s)"
                      [ -e "$K/m_$tag.gguf" ] || PYTHONPATH=$K/site:$PWD python3 bench/cuda_model_bench.py --write "$K/m_$tag.gguf" \
                          --write-only "${w[@]}" | grep -v '^llama\|^load'
                      ( se_use_install && timeout "$l" python3 bench/cuda_model_bench.py -m "$K/m_$tag.gguf" --kv "$kv" \
                          --lengths "${LENGTHS:-4096,16384,32768,65536}" --reps "${REPS:-1}" --tag "$m" --json "$O/models.jsonl" 2>&1 ) | grep -v '^llama\|^load'
                  done ;;
        ncudeckv) timeout "$l" "$NCU" --clock-control none --kernel-name regex:flash_attn --section SpeedOfLight --section LaunchStats \
                      --section Occupancy --section WarpStateStats --section InstructionStats "$CHK" perf --only decode \
                      --kv "${NCU_KV:-16384}" ${PERF_SHAPE:+--shape "$PERF_SHAPE"} --rep 1 > "$O/ncudeckv.txt" 2>&1
                  grep -i "^  [a-z_]*flash\|^  void\|duration\|dram throughput\|grid size\|registers per\|achieved occupancy\|warp cycles per issued\|executed instructions  \|^shape\|^qwen\|^llama\|^smollm\|^phi" "$O/ncudeckv.txt" | head -150 ;;
        ncusrcdeckv)
                  while read -r name pat skip; do
                      [ -n "$name" ] && ncu_source "ncusrcdeckv_$name" "$pat" "$skip" decode
                  done <<< "${NCUSRC:-stock Li1ELi8E.*Li0EE 1
se Li2ELi8E.*Li5EE 1}" ;;
        modeldec) # decode at the lengths where the mma route runs, by route and with CUDA graphs off
                  for e in "" GGML_CUDA_SE_DEC=vec GGML_CUDA_SE_DEC=mma GGML_CUDA_DISABLE_GRAPHS=1; do
                      echo "== ${e:-default}"
                      ( [ -n "$e" ] && export "$e"; mb "$(left)" --lengths "${MD_LENGTHS:-16384,32768,65536}" --n-gen 48 \
                          --tag "${e:-default}" --json "$O/model_dec.jsonl" )
                  done ;;
        ncumodel) # every kernel of two decode steps of the model at 32k (Nsight Compute, warm caches), stock and SE
                  ncu_model ncumodel --n-gen 2 --profile-steps 2 ;;
        ncuprefill) # every kernel of one prefill ubatch (number $NM_UBATCH, default 48: depth 24k) of the model at 32k
                  ncu_model ncuprefill --n-gen 1 --profile-ubatch "${NM_UBATCH:-48}" ;;
        h2d)      # what a graph input of N bytes costs a step (bench/cuda_h2d_probe.cu: pageable copy + stream sync)
                  "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O2 -o "$K/h2d" bench/cuda_h2d_probe.cu && "$K/h2d" | tee "$O/h2d_probe.json" ;;
        ncu)      # one launch each of the stock kernel, the SE kernel and the SE kernel with W > kv (first perf shape:
                  # Llama-3-8B, 512 queries, kv 4096), a few counters (Nsight Compute, clocks as found)
                  M=gpu__time_duration.sum,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__grid_size,launch__block_size
                  for v in "stock Li0EE 0" "se Li1EE 0" "se_all_neighbor Li1EE 48"; do read -r name pat skip <<< "$v"
                      timeout 90 "$NCU" --clock-control none --kernel-name-base mangled --kernel-name "regex:flash_attn_ext_f16.*$pat" \
                          --launch-skip $skip --launch-count 1 --metrics $M --csv "$CHK" perf --only batch --quick > "$O/ncu_$name.csv" 2> "$O/ncu_$name.err"
                      echo "== $name"; grep -v "^==PROF==\|^llama\|^smollm\|^shape\|^GPU backend\|ggml_cuda_init\|Device 0" "$O/ncu_$name.csv" | cut -c1-400 | head -12
                  done ;;
        ncu2)     # stall reasons of the same three launches, and the SASS of the stock and the SE kernel (D128, 64/128 columns)
                  for v in "stock Li0EE 0" "se Li1EE 0" "se_all_neighbor Li1EE 48"; do read -r name pat skip <<< "$v"
                      timeout 100 "$NCU" --clock-control none --kernel-name-base mangled --kernel-name "regex:flash_attn_ext_f16.*$pat" \
                          --launch-skip $skip --launch-count 1 --section WarpStateStats --section SchedulerStats --section InstructionStats \
                          --section LaunchStats --section Occupancy "$CHK" perf --only batch --quick > "$O/ncu2_$name.txt" 2>&1
                      echo "== $name"; grep -i "stall\|issue\|warp cycles\|eligible\|active warps\|Duration\|Executed Ipc" "$O/ncu2_$name.txt" | head -30
                  done
                  LIB=$(find "$K/b" -name 'libggml-cuda.so*' -type f | head -1)
                  CUOBJ=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null | head -1)
                  "$CUOBJ" -sass -fun '_Z18flash_attn_ext_f16ILi128ELi128ELi16ELi4ELb0ELb0ELb0ELi0EEvPKcS1_S1_S1_S1_PKiPfP6float2ffffjfi5uint3iiiiiiiiiiiliiliiiiil15fattn_se_params' "$LIB" > "$O/sass_stock_d128_16x4.txt" 2>&1
                  "$CUOBJ" -sass -fun '_Z18flash_attn_ext_f16ILi128ELi128ELi32ELi4ELb0ELb0ELb0ELi1EEvPKcS1_S1_S1_S1_PKiPfP6float2ffffjfi5uint3iiiiiiiiiiiliiliiiiil15fattn_se_params' "$LIB" > "$O/sass_se_d128_32x4.txt" 2>&1
                  wc -l "$O"/sass_*.txt ;;
    esac
done
el "done"
