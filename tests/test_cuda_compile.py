"""patches/0003 (the CUDA kernels) compiles, on a machine without a GPU.

CI has no GPU, so the CUDA code is verified on a lent GPU machine (docs/CUDA.md); this test catches
what can be caught without one: the patch set applies to the pinned llama.cpp and nvcc compiles
se-local's CUDA files, the stock kernels they extend, the dispatch and the device probe
bench/cuda_vec_probe.cu for sm_90 (C++ front end and device code generation; nothing is linked or
run). It needs nvcc and the pristine llama.cpp tree that the README's install lays out in build/;
without them it is skipped.

cuBLAS is not needed by any of these files, but ggml-cuda's common header includes
<cublas_v2.h>; the test writes a stub with the few declarations that header refers to.
"""

import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CUBLAS_STUB = """\
// compile-check stub (tests/test_cuda_compile.py): declarations only, nothing here is linked
#pragma once
#include <cuda_runtime.h>
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct cublasContext * cublasHandle_t;
cublasStatus_t cublasCreate(cublasHandle_t * handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
const char *   cublasGetStatusString(cublasStatus_t status);
"""

# (file under ggml/src/ggml-cuda, full compile or device code only)
FILES = [
    ("fattn-se.cu", "-c"),                        # the dispatcher, the kernels of fattn-se.cu, the vector-kernel SE cases
    ("fattn.cu", "-c"),                           # llama.cpp's dispatch, with the Self-Extend branch
    ("fattn-se-mma-d128-n128.cu", "-ptx"),        # llama.cpp's mma kernel with Self-Extend, its instance files
    ("fattn-se-mma-d128-n64.cu", "-ptx"),
    ("fattn-se-mma-d128-n16.cu", "-ptx"),
    ("fattn-se-mma-d128-n8.cu", "-ptx"),          # one query in 8 columns, K tiles of 128 keys rotated in place
    ("fattn-se-mma-d96-n8.cu", "-ptx"),
    ("fattn-se-mma-d64-n128.cu", "-ptx"),
    ("fattn-se-mma-d64-n64.cu", "-ptx"),
    ("fattn-se-mma-d64-n16.cu", "-ptx"),
    ("fattn-se-mma-d80.cu", "-ptx"),              # head sizes 80/96/112: 64 and 16 columns (80: a partial rotation step)
    ("fattn-se-mma-d96.cu", "-ptx"),
    ("fattn-se-split-d128.cu", "-c"),             # the prefill split route (fattn-se-split.cuh), host code and kernels
    ("fattn-se-split-d64.cu", "-c"),
    ("fattn-se-split-d96.cu", "-c"),             # (MHA only: 12 threads a key in the rotation, idle threads)
    ("template-instances/fattn-mma-f16-instance-ncols1_16-ncols2_4.cu", "-ptx"),  # a stock instance, same header
    ("template-instances/fattn-vec-instance-f16-f16.cu", "-ptx"),                 # stock vector kernel, same header
    ("template-instances/fattn-vec-instance-q8_0-q8_0.cu", "-ptx"),               # its q8_0 path (the SE one shares code)
    (str(ROOT / "bench" / "cuda_vec_probe.cu"), "-c"),  # the device probe of fattn-se.cu's vector kernel (includes it)
]


def _pristine_tree():
    for cand in sorted(ROOT.glob("build/*/upstream/llama.cpp-pristine")):
        if (cand / "ggml" / "src" / "ggml-cuda" / "fattn-mma-f16.cuh").exists():
            return cand
    return None


def _fa_type_defines(tree: Path):
    """-D flags for the K/V type combinations that ggml's CMake defines (all of them compiled in)."""
    text = (tree / "ggml" / "cmake" / "common.cmake").read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("set(FA_TYPES"))
    types = line.strip()[len("set(FA_TYPES"):].rstrip(")").split()
    assert "f16" in types and "q8_0" in types, line
    return ['-DGGML_CUDA_FA_QUANTS="all"'] + [f"-DGGML_CUDA_FA_{k.upper()}_{v.upper()}=1" for k in types for v in types]


def _prepare_module():
    spec = importlib.util.spec_from_file_location("se_prepare_llama", ROOT / "cmake" / "prepare_llama.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def apply_all_patches(pristine: Path, dest: Path) -> Path:
    """patches/*.patch applied to a copy of the pristine tree at dest (exits with a message if one does not apply)."""
    _prepare_module().apply_patches(pristine, dest, sorted((ROOT / "patches").glob("*.patch")))
    return dest


def write_cublas_stub(folder: Path) -> Path:
    """folder with the cublas_v2.h stub, for -I."""
    folder.mkdir()
    (folder / "cublas_v2.h").write_text(CUBLAS_STUB)
    return folder


@pytest.fixture(scope="module")
def patched_tree(tmp_path_factory):
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on PATH")
    pristine = _pristine_tree()
    if pristine is None:
        pytest.skip("no pristine llama.cpp tree under build/ (run the README's install first)")
    dest = apply_all_patches(pristine, tmp_path_factory.mktemp("cuda") / "llama.cpp")
    stub = write_cublas_stub(dest.parent / "stub")
    return dest, stub, _fa_type_defines(dest)


def _out(out_dir: Path, name: str, mode: str) -> Path:
    return out_dir / (name.replace("/", "_") + (".o" if mode == "-c" else ".ptx"))


def _nvcc(cuda_dir: Path, stub: Path, defines, out_dir: Path, name: str, mode: str):
    out = _out(out_dir, name, mode)
    cmd = ["nvcc", "-std=c++17", "-arch=sm_90", "-O0", "--extended-lambda", "-DGGML_USE_CUDA", *defines,
           f"-I{stub}", "-I../../include", "-I..", "-I.", mode, name, "-o", str(out)]
    r = subprocess.run(cmd, cwd=cuda_dir, capture_output=True, text=True, timeout=900)
    return name, r.returncode, (r.stdout + r.stderr)[-6000:]


def test_cuda_sources_compile(patched_tree, tmp_path):
    dest, stub, defines = patched_tree
    cuda_dir = dest / "ggml" / "src" / "ggml-cuda"
    assert (cuda_dir / "fattn-se.cu").exists(), "patch 0003 did not add fattn-se.cu"
    workers = max(1, min(len(FILES), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda f: _nvcc(cuda_dir, stub, defines, tmp_path, *f), FILES))
    failed = [(name, log) for name, rc, log in results if rc != 0]
    assert not failed, "\n\n".join(f"nvcc {name} failed:\n{log}" for name, log in failed)
    for name, mode in FILES:
        assert _out(tmp_path, name, mode).stat().st_size > 0, f"nvcc wrote nothing for {name}"
