"""Will the context fit? The memory a context needs, against the memory there is.

llama.cpp allocates the KV cache and the compute buffers when it creates a context.
When they do not fit, the allocation may fail cleanly, or (Linux overcommit) succeed
and get the process killed when the cache is first written. ``Model`` calls
:func:`check_memory` after llama.cpp has loaded (memory-mapped) the weights, and so
checked the hyperparameters against the tensors, and before it creates the context;
it estimates from the metadata and raises :class:`~se_local.errors.MemoryLimitError`
with the numbers:

* KV cache: ``n_ctx * sum over layers of n_head_kv * (head_dim_k * bytes(type_k) +
  head_dim_v * bytes(type_v))`` (a quantized type's bytes per element is its block
  size ratio, e.g. 34/32 for ``q8_0``); ``n_ctx`` rounded up to 256 as llama.cpp does.
* compute buffers: ``4 * n_batch * (4 * n_embd + 3 * n_ff + n_vocab)`` bytes, plus the
  ``n_head x n_ctx x n_batch`` f32 attention scores (twice) without flash attention.
* available: ``MemAvailable`` of ``/proc/meminfo`` (else free pages from
  ``os.sysconf``), lowered to the cgroup's ``memory.max`` headroom; for layers on a
  GPU, the device's free memory as ggml reports it (their KV cache and the compute
  buffers; the weights are there already).

The estimate is an upper bound (sliding-window and recurrent layers need less). Set
``SE_LOCAL_NO_MEMORY_CHECK=1`` to skip the check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from .errors import MemoryLimitError
from .gguf_info import ModelInfo

__all__ = ["MemoryEstimate", "available_memory", "check_memory", "estimate_memory", "gpu_free_memory"]

ENV_NO_CHECK = "SE_LOCAL_NO_MEMORY_CHECK"
"""Environment variable that turns :func:`check_memory` off."""

_GiB = float(1 << 30)

# bytes per element of the KV cache types (ggml block size ratios)
_KV_BYTES = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
    "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32,
}


@dataclass(frozen=True)
class MemoryEstimate:
    """What a context needs, in bytes.

    Attributes:
        kv_cpu: KV cache of the layers on the CPU.
        kv_gpu: KV cache of the layers offloaded to a GPU.
        compute: compute buffers (on the GPU when any layer is offloaded).
        kv_per_token: KV cache bytes per token of context, all layers.
        offloaded: whether any layer runs on a GPU.
    """

    kv_cpu: int
    kv_gpu: int
    compute: int
    kv_per_token: int
    offloaded: bool = False

    @property
    def cpu(self) -> int:
        """Bytes of RAM the context needs."""
        return self.kv_cpu + (0 if self.offloaded else self.compute)

    @property
    def gpu(self) -> int:
        """Bytes of GPU memory the context needs."""
        return self.kv_gpu + self.compute if self.offloaded else 0


def estimate_memory(
    info: ModelInfo,
    n_ctx: int,
    *,
    n_batch: int = 512,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_gpu_layers: int = 0,
    n_vocab: Optional[int] = None,
) -> MemoryEstimate:
    """Estimate the memory of a context of ``n_ctx`` tokens for the model ``info`` describes.

    Args:
        info: the model file's metadata.
        n_ctx: context length, in tokens.
        n_batch: tokens per micro-batch; default 512.
        kv_type: KV cache type (a key of :data:`se_local.model.KV_TYPES`); default ``"f16"``.
        flash_attn: whether flash attention is on; default ``True``.
        n_gpu_layers: layers offloaded to a GPU; default 0; -1 = all.
        n_vocab: tokens in the vocabulary; default ``None`` = the file's ``vocab_size``.
    """
    meta, arch = info.metadata, info.architecture
    n_layer = max(1, info.n_layer)
    n_ctx_pad = -(-n_ctx // 256) * 256
    heads_kv = _per_layer(meta.get(f"{arch}.attention.head_count_kv"), n_layer, info.n_head_kv)
    hd_k = info.head_dim
    hd_v = _scalar(meta.get(f"{arch}.attention.value_length"), hd_k)
    per_elem = _KV_BYTES.get(kv_type, 2.0)
    per_layer = [int(n_ctx_pad * h * (hd_k + hd_v) * per_elem) for h in heads_kv]
    n_gpu = n_layer if n_gpu_layers < 0 else min(n_gpu_layers, n_layer)
    # llama.cpp offloads the last layers first
    kv_gpu = sum(per_layer[n_layer - n_gpu :]) if n_gpu else 0
    kv_cpu = sum(per_layer) - kv_gpu

    n_ff = max(_per_layer(meta.get(f"{arch}.feed_forward_length"), n_layer, 4 * info.n_embd))
    n_vocab = n_vocab or info.vocab_size or 32000
    compute = 4 * n_batch * (4 * info.n_embd + 3 * n_ff + n_vocab)
    if not flash_attn:
        compute += 2 * 4 * info.n_head * n_ctx_pad * n_batch
    return MemoryEstimate(kv_cpu, kv_gpu, compute, sum(per_layer) // n_ctx_pad, n_gpu > 0)


def check_memory(
    info: ModelInfo,
    n_ctx: int,
    *,
    n_batch: int = 512,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_gpu_layers: int = 0,
    n_vocab: Optional[int] = None,
) -> MemoryEstimate:
    """Raise :class:`MemoryLimitError` if a context of ``n_ctx`` tokens would not fit.

    Takes the arguments of :func:`estimate_memory`. Returns the estimate when it fits
    (or when the available memory is unknown, or ``SE_LOCAL_NO_MEMORY_CHECK=1``).
    """
    vram = gpu_free_memory() if n_gpu_layers else None  # None: no GPU, every layer stays on the CPU
    est = estimate_memory(
        info, n_ctx, n_batch=n_batch, kv_type=kv_type, flash_attn=flash_attn,
        n_gpu_layers=n_gpu_layers if vram is not None else 0, n_vocab=n_vocab,
    )
    if os.environ.get(ENV_NO_CHECK, "") not in ("", "0"):
        return est
    name = Path(info.path).name
    fix = (
        f"use a smaller --target-ctx, a quantized KV cache (kv_type='q8_0' about halves it), "
        f"or set {ENV_NO_CHECK}=1 to try anyway"
    )
    ram = available_memory()
    if ram is not None and est.cpu > ram:
        fits = _tokens_that_fit(ram - (est.cpu - est.kv_cpu), est.kv_cpu / max(1, n_ctx))
        raise MemoryLimitError(
            f"a context of {n_ctx} tokens for {name} needs about {est.cpu / _GiB:.1f} GiB of RAM "
            f"(KV cache {est.kv_cpu / _GiB:.1f} GiB = {est.kv_per_token} bytes x {n_ctx} tokens, {kv_type}; "
            f"compute buffers {(est.cpu - est.kv_cpu) / _GiB:.1f} GiB) but {ram / _GiB:.1f} GiB is available"
            f"{fits}; {fix}"
        )
    if est.offloaded and vram is not None:
        if est.gpu > vram:
            layers = "all" if n_gpu_layers < 0 else str(n_gpu_layers)
            raise MemoryLimitError(
                f"a context of {n_ctx} tokens for {name} with {layers} layers on the GPU needs about "
                f"{est.gpu / _GiB:.1f} GiB of GPU memory (KV cache {est.kv_gpu / _GiB:.1f} GiB, compute "
                f"buffers {est.compute / _GiB:.1f} GiB) but {vram / _GiB:.1f} GiB is free; offload fewer "
                f"layers (--gpu-layers) or {fix}"
            )
    return est


def _tokens_that_fit(budget: float, per_token: float) -> str:
    if budget <= 0 or per_token <= 0:
        return ""
    n = int(budget // per_token) // 1024 * 1024
    return f" (about {n} tokens would fit)" if n >= 1024 else ""


# ---------------------------------------------------------------------------
# What there is
# ---------------------------------------------------------------------------


def available_memory() -> Optional[int]:
    """Bytes of RAM this process can still use, ``None`` if unknown."""
    avail: Optional[int] = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    headroom = _cgroup_headroom()
    return avail if headroom is None else min(avail, headroom)


def _cgroup_headroom() -> Optional[int]:
    """``memory.max - memory.current`` of this process's cgroup (v2), ``None`` if unlimited."""
    try:
        with open("/proc/self/cgroup") as f:
            rel = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), None)
        if rel is None:
            return None
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError, StopIteration):
        return None


def gpu_free_memory() -> Optional[int]:
    """Free bytes on the first GPU ggml sees, ``None`` if none (or unknown)."""
    try:
        return _ggml_gpu_free()
    except Exception:  # a build without the device API, or an unexpected library: no check
        return None


def _ggml_gpu_free() -> Optional[int]:
    import ctypes

    from . import _lib

    lib = _lib.lib  # libllama links libggml: its symbols resolve through the same handle
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)
    ]
    lib.ggml_backend_dev_memory.restype = None
    GPU = 1  # enum ggml_backend_dev_type: CPU = 0, GPU = 1, IGPU = 2, ACCEL = 3
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if lib.ggml_backend_dev_type(dev) == GPU:
            free, total = ctypes.c_size_t(), ctypes.c_size_t()
            lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            return int(free.value) or None
    return None


# ---------------------------------------------------------------------------


def _scalar(value: Any, default: int) -> int:
    if isinstance(value, list):
        value = max(value) if value else default
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _per_layer(value: Any, n_layer: int, default: int) -> List[int]:
    if isinstance(value, list) and len(value) == n_layer and all(isinstance(v, int) for v in value):
        return [max(0, v) for v in value]
    return [_scalar(value, default)] * n_layer
