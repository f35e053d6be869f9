#!/usr/bin/env python3
"""Code size, registers, spills and local memory of the flash-attention kernels of patch 0003, without a GPU.

The twentieth session's profile (docs/CUDA.md) found the one-query Self-Extend launches waiting mostly for
instructions, and a build with one more set-up path (never taken) 6-7 % slower at 4k keys: the kernels' code size is
a lever that can be measured here. This compiles CUDA instance files of the patched llama.cpp for sm_90 with the
flags of ggml's CMake (-O3 -use_fast_math), as tests/test_cuda_compile.py prepares the tree (patches applied to the
pristine tree of the README's install, a cuBLAS declaration stub), and prints for every flash_attn_ext_f16 kernel
(or --kernel NAME) its template arguments (DKQ, DV, ncols1, ncols2, ..., se_mode), its SASS instructions (the size of
its .text section / 16 bytes), registers, spill bytes and stack frame (ptxas -v), and, where nvdisasm is found
($NVDISASM or PATH; the package nvidia-cuda-nvdisasm has it), its local-memory loads and stores (LDL, STL): the
twenty-first session's out-of-line set-up was slower with fewer instructions because the block state it wrote through
a reference lived in local memory from then on (63 LDL instead of 6). Checked against the H100 build of the twentieth
session: the same instructions and registers as Nsight Compute reported there for the Llama-3 shape's one-query
instance (14,064, 255) and the stock 8-column one (5,296, 242), and the same registers for the 16-column NEOX one
(212).

    python bench/cuda_sass_size.py                                   # the one-query instance files
    python bench/cuda_sass_size.py fattn-se-mma-d128-n8.cu --apply variant.diff   # patch 0003 + a change to try
    NVDISASM=/path/to/nvdisasm python bench/cuda_sass_size.py fattn-se-mma-d128-n8.cu   # with LDL/STL counts
    python bench/cuda_sass_size.py fattn-se.cu --tree NEW --same-as OLD   # which kernels a change leaves byte-identical
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import test_cuda_compile as cc  # noqa: E402  (the compile check's tree and stub, one source)

DEFAULT_FILES = ["fattn-se-mma-d128-n8.cu", "fattn-se-mma-d128-n16.cu", "fattn-se-mma-d96-n8.cu",
                 "template-instances/fattn-mma-f16-instance-ncols1_1-ncols2_8.cu"]


def text_code(cubin: bytes):
    """{section name: its bytes} of the .text sections of an ELF64 file (a cubin)."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff = struct.unpack_from("<Q", cubin, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i*shentsize) for i in range(shnum)]
    strtab = hdrs[shstrndx][4]

    def name(off):
        end = cubin.index(b"\0", strtab + off)
        return cubin[strtab + off:end].decode()
    return {name(h[0]): cubin[h[4]:h[4] + h[5]] for h in hdrs if name(h[0]).startswith(".text.")}


def text_sections(cubin: bytes):
    """{section name: size in bytes} of an ELF64 file (a cubin)."""
    return {k: len(v) for k, v in text_code(cubin).items()}


def kernel_args(mangled: str, kernel: str = "flash_attn_ext_f16") -> str:
    """The template arguments of kernel<...> from its mangled name, e.g. 128,128,2,4,0,0,0,1 (ggml_type values as
    numbers)."""
    m = re.search(kernel + r"I(.*?)EEv", mangled)
    return ",".join(re.findall(r"L(?:[ib]|9ggml_type|S\d*_)(\d+)E?", m.group(1))) if m else mangled


def ptxas_info(log: str):
    """{mangled kernel name: (registers, spill store bytes, stack frame bytes)} from nvcc -Xptxas -v output."""
    out, cur, spill, stack = {}, None, 0, 0
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur, spill, stack = m.group(1), 0, 0
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores", line)
        if m and cur:
            stack, spill = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and cur:
            out[cur] = (int(m.group(1)), spill, stack)
            cur = None
    return out


def nvdisasm_path():
    """nvdisasm from $NVDISASM or PATH (e.g. the package nvidia-cuda-nvdisasm, bin/ under nvidia/cu13), or None."""
    p = os.environ.get("NVDISASM") or shutil.which("nvdisasm")
    return p if p and Path(p).is_file() else None


def local_memory_ops(nvdisasm: str, cubin: Path):
    """{kernel section name: (LDL count, STL count)}: local-memory loads and stores in each kernel's SASS (spills, the
    stack frame of out-of-line calls, local arrays), from nvdisasm."""
    out = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
    counts, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"\.text\.(\S+):", line)
        if m:
            cur = m.group(1)
            counts[cur] = [0, 0]
        elif cur and re.search(r"\bLDL\b", line):
            counts[cur][0] += 1
        elif cur and re.search(r"\bSTL\b", line):
            counts[cur][1] += 1
    return {k: tuple(v) for k, v in counts.items()}


# nvcc flags of ggml's CMake for these files (sm_90 only); bench/cuda_vec_probe.sh compiles the probe with them too
NVCC_FLAGS = ["-std=c++17", "-arch=sm_90", "-O3", "-use_fast_math", "--extended-lambda", "-DGGML_USE_CUDA"]


def compile_file(cuda_dir: Path, stub: Path, defines, name: str, out_dir: Path, nvdisasm=None,
                 kernel="flash_attn_ext_f16"):
    cubin = out_dir / (name.replace("/", "_") + ".cubin")
    cmd = ["nvcc", *NVCC_FLAGS, *defines, f"-I{stub}", "-I../../include", "-I..", "-I.", "-cubin", "-Xptxas", "-v", name, "-o", str(cubin)]
    r = subprocess.run(cmd, cwd=cuda_dir, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"nvcc {name} failed:\n{(r.stdout + r.stderr)[-4000:]}")
    info = ptxas_info(r.stdout + r.stderr)
    local = local_memory_ops(nvdisasm, cubin) if nvdisasm else {}
    rows = []
    for sec, size in sorted(text_sections(cubin.read_bytes()).items()):
        kname = sec[len(".text."):]
        if kernel not in kname:
            continue
        # (a __noinline__ device function of the kernel is in the kernel's section, without -rdc: counted with it)
        regs, spill, stack = info.get(kname, (None, None, None))
        rows.append({"file": name, "kernel": kernel_args(kname, kernel), "instructions": size // 16, "registers": regs,
                     "spill_bytes": spill, "stack_bytes": stack})
        if nvdisasm:
            rows[-1]["ldl"], rows[-1]["stl"] = local.get(kname, (None, None))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", default=DEFAULT_FILES, help="files under ggml/src/ggml-cuda")
    ap.add_argument("--tree", default=None, help="a patched llama.cpp tree (default: patches/*.patch applied to the "
                    "pristine tree of the README's install, in a temporary folder)")
    ap.add_argument("--apply", default=None,
                    help="a diff (-p1, paths from the llama.cpp root) applied on top of the patches")
    ap.add_argument("--json", default=None, help="append one JSON line per kernel here")
    ap.add_argument("--tag", default="", help="a label stored with each JSON line (e.g. the variant)")
    ap.add_argument("--kernel", default="flash_attn_ext_f16", help="the kernels to list (default flash_attn_ext_f16; "
                    "flash_attn_ext_vec for the vector kernel, whose Self-Extend instances are in fattn-se.cu)")
    ap.add_argument("--same-as", default=None, metavar="TREE",
                    help="also compile the files in this other patched tree and say, for every kernel (all of them, not "
                    "only --kernel), whether its code is byte-identical, else how many 16-byte instructions differ")
    args = ap.parse_args()
    if args.apply and args.tree:
        raise SystemExit("--apply patches the temporary tree only; give --tree or --apply")
    if shutil.which("nvcc") is None:
        raise SystemExit("nvcc is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.tree:
            tree = Path(args.tree)
        else:
            pristine = cc._pristine_tree()
            if pristine is None:
                raise SystemExit("no pristine llama.cpp tree under build/ (run the README's install first)")
            tree = cc.apply_all_patches(pristine, tmp / "llama.cpp")
        if args.apply:
            r = subprocess.run(["patch", "-p1", "-s", "-d", str(tree), "-i", str(Path(args.apply).resolve())],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"{args.apply} does not apply:\n{r.stdout}{r.stderr}")
        stub = cc.write_cublas_stub(tmp / "stub")
        defines = cc._fa_type_defines(tree)
        cuda_dir = tree / "ggml" / "src" / "ggml-cuda"
        nvdisasm = nvdisasm_path()
        if nvdisasm is None:
            print("(no nvdisasm on PATH or in $NVDISASM: LDL/STL not counted)", file=sys.stderr)
        cols = ["instructions", "registers", "spill_bytes", "stack_bytes"] + (["ldl", "stl"] if nvdisasm else [])
        heads = {"instructions": "instr", "registers": "regs", "spill_bytes": "spill", "stack_bytes": "stack",
                 "ldl": "LDL", "stl": "STL"}
        print(f"{'file':48s} {args.kernel + '<...>':28s} " + " ".join(f"{heads[c]:>6s}" for c in cols))
        for name in args.files:
            for row in compile_file(cuda_dir, stub, defines, name, tmp, nvdisasm, args.kernel):
                print(f"{row['file']:48s} {row['kernel']:28s} " +
                      " ".join(f"{row[c] if row[c] is not None else '-':>6}" for c in cols))
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({"tag": args.tag, **row}) + "\n")
            if args.same_as:
                same_as(Path(args.same_as) / "ggml" / "src" / "ggml-cuda", stub, defines, name, tmp)
    return 0


def same_as(other_dir: Path, stub: Path, defines, name: str, tmp: Path):
    """Prints, for every kernel of file name, whether the two trees compile it to the same code (--same-as): this
    tree's cubin is the one compile_file has just written into tmp, the other tree's is compiled into tmp/other."""
    cubin = name.replace("/", "_") + ".cubin"
    (tmp / "other").mkdir(exist_ok=True)
    compile_file(other_dir, stub, defines, name, tmp / "other")
    code = {"a": text_code((tmp / cubin).read_bytes()), "b": text_code((tmp / "other" / cubin).read_bytes())}
    same = 0
    for sec in sorted(set(code["a"]) | set(code["b"])):
        a, b = code["a"].get(sec), code["b"].get(sec)
        if a == b:
            same += 1
            continue
        if a is None or b is None:
            print(f"  {name}: {sec[6:80]} only in {'the other tree' if a is None else 'this tree'}")
            continue
        n = max(len(a), len(b)) // 16
        diff = sum(1 for i in range(n) if a[16*i:16*i + 16] != b[16*i:16*i + 16])
        print(f"  {name}: {sec[6:80]}: {diff} of {n} instructions differ ({len(a)//16} here, {len(b)//16} there)")
    print(f"  {name}: {same} of {len(set(code['a']) | set(code['b']))} kernels byte-identical in both trees")


if __name__ == "__main__":
    sys.exit(main())
