"""ctypes binding of native/se-op-eval.c: one attention layer through ggml's CPU paths."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0 = 0, 1, 8
K_TYPES = {"f32": GGML_TYPE_F32, "f16": GGML_TYPE_F16, "q8_0": GGML_TYPE_Q8_0}
PATHS = {"stock": 0, "fused": 1, "portable": 2}

_lib = None


def _load():
    global _lib
    if _lib is None:
        from se_local import _lib as native  # finds the library folder, loads ggml

        lib = ctypes.CDLL(str(Path(native.LIB_DIR) / "libse_local_ops.so"))
        f = lib.se_local_attn_eval
        i32, fp = ctypes.c_int32, ctypes.POINTER(ctypes.c_float)
        ip = ctypes.POINTER(ctypes.c_int32)
        f.argtypes = [fp, fp, fp, ip, ip] + [i32] * 5 + [i32, i32] + [i32, i32, i32] + [i32, i32, ctypes.c_float] + [i32, fp]
        f.restype = ctypes.c_int
        lib.se_local_attn_set_bounds.argtypes = [ctypes.c_int32, ctypes.c_int32]
        lib.se_local_attn_set_bounds.restype = None
        lib.se_local_attn_set_kv_layout.argtypes = [ctypes.c_int32]
        lib.se_local_attn_set_kv_layout.restype = None
        lib.se_local_attn_set_repeat.argtypes = [ctypes.c_int32]
        lib.se_local_attn_set_repeat.restype = None
        lib.se_local_attn_best_us.argtypes = []
        lib.se_local_attn_best_us.restype = ctypes.c_int64
        lib.se_local_attn_best_cpu_us.argtypes = []
        lib.se_local_attn_best_cpu_us.restype = ctypes.c_int64
        _lib = lib
    return _lib


def attn_eval(q, k, v, pos_q, pos_k, *, path, k_type="f16", group=1, window=1, pos_min=0,
              n_dims=None, neox=False, base=10000.0, n_threads=2, bounds=(0, 0), kv_layout="cells"):
    """q (n_head, Tq, D), k/v (n_head_kv, Tk, D) already RoPE-rotated -> (n_head, Tq, D) float32.

    bounds: the promise (n_kv_grouped, n_kv_neighbor) of ggml_flash_attn_ext_set_self_extend_bounds
    for the fused path; the CPU op aborts the process when it does not hold.
    kv_layout: "cells" (llama's cache: the rows of all heads of a key adjacent) or "heads" (each
    head's rows contiguous; flash-attention paths only).
    """
    lib = _load()
    lib.se_local_attn_set_bounds(*bounds)
    lib.se_local_attn_set_kv_layout({"cells": 0, "heads": 1}[kv_layout])
    q = np.ascontiguousarray(q, dtype=np.float32)
    k = np.ascontiguousarray(k, dtype=np.float32)
    v = np.ascontiguousarray(v, dtype=np.float32)
    pq = np.ascontiguousarray(pos_q, dtype=np.int32)
    pk = np.ascontiguousarray(pos_k, dtype=np.int32)
    n_head, n_q, d = q.shape
    n_head_kv, n_kv, _ = k.shape
    out = np.zeros((n_head, n_q, d), dtype=np.float32)
    fp = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    ip = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
    rc = lib.se_local_attn_eval(fp(q), fp(k), fp(v), ip(pq), ip(pk), n_q, n_kv, n_head, n_head_kv, d,
                                K_TYPES[k_type], PATHS[path], group, window, pos_min,
                                n_dims or d, 2 if neox else 0, base, n_threads, fp(out))
    lib.se_local_attn_set_bounds(0, 0)
    lib.se_local_attn_set_kv_layout(0)
    if rc != 0:
        raise RuntimeError(f"se_local_attn_eval failed with {rc}")
    return out


def attn_time_us(*args, repeat=5, cpu_time=False, **kwargs):
    """Run attn_eval with the graph computed `repeat` times; return (out, fastest compute in us).

    cpu_time: the process's CPU time instead of wall time (use with n_threads=1)."""
    lib = _load()
    lib.se_local_attn_set_repeat(repeat)
    try:
        out = attn_eval(*args, **kwargs)
        return out, int(lib.se_local_attn_best_cpu_us() if cpu_time else lib.se_local_attn_best_us())
    finally:
        lib.se_local_attn_set_repeat(1)
