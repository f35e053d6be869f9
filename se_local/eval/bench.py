"""``se-local bench``: prefill and decode speed at depth, Self-Extend vs stock attention.

For each depth ``d`` (``--ctx``) and each *variant* a llama.cpp context of
``d + max(chunk, gen)`` tokens is created and filled with ``d`` tokens: the first variant
of each cache layout (flash attention on or off) prefills them (timed, reported as
``depth_prefill``) and saves the sequence state to a temporary file, which every other
variant and library with that layout loads (``depth_from_state``): the cache's size, not
its contents, is what the speed depends on. Then, ``repeat`` times, round-robin over the
libraries and variants (the starting point rotates each round):

* **prefill**: the cache is cut back to ``d`` tokens (``llama_memory_seq_rm``) and one
  micro-batch of ``chunk`` tokens (default 512) is evaluated at positions ``d..``
  (llama-bench's ``pp512 @ d``);
* **decode**: cut back to ``d`` again, ``gen`` single-token decodes (default 32) at
  positions ``d..`` (llama-bench's ``tg32 @ d``).

Variants (all of one build): ``se`` (flash attention on, Self-Extend: the fused kernel),
``se-nofa`` (flash attention off, Self-Extend: the portable path), ``fa`` (stock flash
attention), ``nofa`` (stock, flash attention off). Self-Extend runs with ``pos_min`` 0 by
default, so every query uses it even at depths below ``L`` (the adaptive default would
run stock attention there). ``G``/``W`` are the planner's for
``max(largest context, 2L)`` unless given.

``--lib DIR`` adds another llama.cpp library folder (e.g. an unpatched stock build). It
runs in a worker subprocess with ``SE_LOCAL_LIB_PATH=DIR`` (same model, same depths,
same token ids) driven over JSON lines, interleaved with the in-process measurements.
A library without the Self-Extend patch measures only ``fa``/``nofa``.

Also the Python streaming overhead: tokens per second of ``Model.stream_generate``
(greedy) against a raw ``llama_decode`` + greedy sampler loop in the same process, on
the same short prompt, for the same number of tokens, after one untimed warm-up round of
each.

Token ids of the prompts are pseudo-random (seeded) ordinary vocabulary ids: speed does
not depend on the text.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, SeLocalError
from ..planner import plan
from .methods import MethodSpec, NativeModel, Runner

__all__ = ["VARIANTS", "BenchConfig", "run_bench", "summarize", "summary_table", "streaming_line", "SCHEMA"]

SCHEMA = "se-local/bench/1"

VARIANTS: Dict[str, Dict[str, bool]] = {
    "se": {"flash_attn": True, "self_extend": True},
    "se-nofa": {"flash_attn": False, "self_extend": True},
    "fa": {"flash_attn": True, "self_extend": False},
    "nofa": {"flash_attn": False, "self_extend": False},
}
"""Variant name → flash attention on/off, Self-Extend on/off."""

DEFAULT_VARIANTS = ("se", "fa", "nofa")
BASELINE = "fa"
"""Ratios are against this variant of the in-process library (stock flash attention)."""


@dataclass
class BenchConfig:
    """What ``se-local bench`` measures (see the module docstring)."""

    model: Optional[str] = None
    depths: Sequence[int] = (4096, 16384)
    variants: Sequence[str] = DEFAULT_VARIANTS
    repeat: int = 3
    chunk: int = 512
    gen: int = 32
    threads: Optional[int] = None
    gpu_layers: int = 0
    group: Optional[int] = None
    window: Optional[int] = None
    pos_min: int = 0
    libs: Sequence[str] = ()
    streaming: bool = True
    stream_prompt: int = 256
    stream_gen: int = 64
    seed: int = 0

    def check(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ConfigError(f"unknown variant {', '.join(bad) or '(none)'}; use some of {','.join(VARIANTS)}")
        for name in ("repeat", "chunk", "gen"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if any(d < 0 for d in self.depths) or not self.depths:
            raise ConfigError("depths must be >= 0")
        for d in self.libs:
            if not Path(d).expanduser().is_dir():
                raise ConfigError(f"--lib {d}: no such folder")


# ---------------------------------------------------------------------------
# The worker: one library, the contexts of one depth
# ---------------------------------------------------------------------------


def _tokens(n: int, n_vocab: int, seed: int) -> List[int]:
    """``n`` pseudo-random ordinary token ids (the upper 90% of the vocabulary: no specials)."""
    rng = np.random.default_rng(seed)
    lo = max(1, n_vocab // 10)
    return [int(t) for t in rng.integers(lo, n_vocab, size=n)]


class Worker:
    """Measures one library in this process (the subprocess worker wraps one too)."""

    def __init__(self, model: Optional[str], *, threads: int, gpu_layers: int) -> None:
        from .. import _lib

        self._lib = _lib
        self.nm = NativeModel(model, n_gpu_layers=gpu_layers)
        self.threads = threads
        self.runners: Dict[str, Runner] = {}
        self.depth = 0
        self._chunk: Any = None
        self._gen: Any = None

    def hello(self) -> Dict[str, Any]:
        return {
            "lib_dir": str(self._lib.LIB_DIR),
            "has_self_extend": bool(self._lib.HAS_SELF_EXTEND),
            "L": self.nm.L,
            "n_vocab": self.nm.n_vocab,
        }

    def setup(self, depth: int, variants: Sequence[str], chunk: int, gen: int, G: int, W: int,
              pos_min: int, seed: int, state_dir: Optional[str] = None) -> List[Dict[str, Any]]:
        self.teardown()
        lc = self.nm.lc
        self.depth = depth
        n_ctx = depth + max(chunk, gen) + 1
        prompt = _tokens(depth, self.nm.n_vocab, seed)
        extra = _tokens(max(chunk, gen), self.nm.n_vocab, seed + 1)
        self._chunk = (lc.llama_token * chunk)(*extra[:chunk])
        self._gen = (lc.llama_token * gen)(*extra[:gen])
        out = []
        for v in variants:
            conf = VARIANTS[v]
            row: Dict[str, Any] = {"variant": v, "depth": depth, "n_ctx": n_ctx}
            if conf["self_extend"] and not self._lib.HAS_SELF_EXTEND:
                row["error"] = "library without Self-Extend"
                out.append(row)
                continue
            spec = (MethodSpec("se", n_ctx, self.nm.L, G, W) if conf["self_extend"]
                    else MethodSpec("vanilla", n_ctx, self.nm.L))
            try:
                r = Runner(self.nm, spec, n_threads=self.threads, flash_attn=conf["flash_attn"],
                           n_batch=chunk, pos_min=pos_min)
            except SeLocalError as e:
                row["error"] = str(e)
                out.append(row)
                continue
            t0 = time.perf_counter()
            from_state = False
            if depth:
                from_state = self._load_depth(r, state_dir, conf["flash_attn"], depth)
                if not from_state:
                    r.eval(prompt)
                    lc.llama_synchronize(r.ctx)
                    self._save_depth(r, state_dir, conf["flash_attn"], prompt)
            dt = time.perf_counter() - t0
            row["depth_from_state"] = from_state
            self.runners[v] = r
            self.measure(v)  # warm-up (first graph allocations), not recorded
            row.update(n_ctx=r.n_ctx, kv_bytes=r.kv_bytes, kv_bytes_logged=r.kv_bytes_logged,
                       depth_prefill_s=dt, depth_prefill_tps=(depth / dt if depth and dt > 0 else None))
            out.append(row)
        return out

    # The cache contents at a depth only matter for speed through their size, so the depth is
    # prefilled once per cache layout (flash attention on / off: V is stored transposed
    # without it) and the others, other libraries included, load that state from a file.

    @staticmethod
    def _state_file(state_dir: Optional[str], flash_attn: bool) -> Optional[Path]:
        return Path(state_dir) / ("depth_fa.state" if flash_attn else "depth_nofa.state") if state_dir else None

    def _load_depth(self, r: Runner, state_dir: Optional[str], flash_attn: bool, depth: int) -> bool:
        f = self._state_file(state_dir, flash_attn)
        if f is None or not f.exists():
            return False
        lc = self.nm.lc
        toks = (lc.llama_token * depth)()
        n = ctypes.c_size_t(0)
        ok = lc.llama_state_seq_load_file(r.ctx, str(f).encode(), 0, toks, depth, ctypes.byref(n))
        if ok == 0 or n.value != depth:
            lc.llama_memory_seq_rm(r.mem, 0, -1, -1)
            return False
        return True

    def _save_depth(self, r: Runner, state_dir: Optional[str], flash_attn: bool, prompt: List[int]) -> None:
        f = self._state_file(state_dir, flash_attn)
        if f is not None and not f.exists():
            lc = self.nm.lc
            lc.llama_state_seq_save_file(r.ctx, str(f).encode(), 0, (lc.llama_token * len(prompt))(*prompt), len(prompt))

    def measure(self, variant: str) -> Dict[str, Any]:
        r = self.runners[variant]
        lc = self.nm.lc
        n_chunk, n_gen = len(self._chunk), len(self._gen)
        lc.llama_memory_seq_rm(r.mem, 0, self.depth, -1)
        t0 = time.perf_counter()
        rc = lc.llama_decode(r.ctx, lc.llama_batch_get_one(self._chunk, n_chunk))
        lc.llama_synchronize(r.ctx)
        t_pre = time.perf_counter() - t0
        if rc != 0:
            raise SeLocalError(f"llama_decode failed with code {rc}")
        lc.llama_memory_seq_rm(r.mem, 0, self.depth, -1)
        one = lc.llama_token * 1
        t0 = time.perf_counter()
        for i in range(n_gen):
            rc = lc.llama_decode(r.ctx, lc.llama_batch_get_one(one(self._gen[i]), 1))
            if rc != 0:
                raise SeLocalError(f"llama_decode failed with code {rc}")
        lc.llama_synchronize(r.ctx)
        t_dec = time.perf_counter() - t0
        lc.llama_memory_seq_rm(r.mem, 0, self.depth, -1)
        return {
            "variant": variant, "depth": self.depth,
            "prefill_tokens": n_chunk, "prefill_s": t_pre, "prefill_tps": n_chunk / t_pre,
            "decode_tokens": n_gen, "decode_s": t_dec, "decode_tps": n_gen / t_dec,
        }

    def teardown(self) -> None:
        for r in self.runners.values():
            r.close()
        self.runners.clear()

    def close(self) -> None:
        self.teardown()
        self.nm.close()


class RemoteWorker:
    """A :class:`Worker` in a subprocess with ``SE_LOCAL_LIB_PATH=lib_dir``, over JSON lines."""

    def __init__(self, lib_dir: str, model: Optional[str], *, threads: int, gpu_layers: int) -> None:
        import se_local

        env = dict(os.environ)
        env["SE_LOCAL_LIB_PATH"] = str(Path(lib_dir).expanduser().resolve())
        env.pop("LLAMA_CPP_LIB_PATH", None)
        root = str(Path(se_local.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        args = {"model": model, "threads": threads, "gpu_layers": gpu_layers}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "se_local.eval.bench", "--worker", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8",
        )

    def _call(self, op: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SeLocalError(f"the bench worker for {op} exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise SeLocalError(f"bench worker: {reply['error']}")
        return reply["result"]

    def hello(self) -> Dict[str, Any]:
        return self._call("hello")

    def setup(self, *args: Any) -> List[Dict[str, Any]]:
        return self._call("setup", *args)

    def measure(self, variant: str) -> Dict[str, Any]:
        return self._call("measure", variant)

    def teardown(self) -> None:
        self._call("teardown")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("close")
            except Exception:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _worker_main(spec: str) -> None:
    """``python -m se_local.eval.bench --worker JSON``: serve :class:`Worker` calls on stdin/stdout."""
    a = json.loads(spec)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the protocol stream
    try:
        w = Worker(a["model"], threads=a["threads"], gpu_layers=a["gpu_layers"])
    except Exception as e:
        out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "close":
                w.close()
                out.write(json.dumps({"result": None}) + "\n")
                out.flush()
                return
            result = getattr(w, req["op"])(*req["args"])
            out.write(json.dumps({"result": result}) + "\n")
        except Exception as e:
            out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()


# ---------------------------------------------------------------------------
# Python streaming overhead
# ---------------------------------------------------------------------------


def streaming_overhead(model: Optional[str], *, threads: int, gpu_layers: int, prompt_tokens: int,
                       gen: int, repeat: int, seed: int) -> Dict[str, Any]:
    """Tokens/s of ``Model.stream_generate`` (greedy) vs a raw decode + greedy-sampler loop."""
    from ..model import Model

    with Model(model, n_threads=threads, n_gpu_layers=gpu_layers) as m:
        L = m.plan.L
        n_prompt = max(8, min(prompt_tokens, L - gen - 8))
        from ..passkey import FILLER

        text_tokens = m.tokenize(FILLER * (n_prompt // 8 + 2))[:n_prompt]
        nm = NativeModel(m.path, n_gpu_layers=gpu_layers)
        try:
            r = Runner(nm, MethodSpec("vanilla", m.n_ctx, L), n_threads=threads)
            lc = nm.lc
            chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            gen_tps, raw_tps, counts = [], [], []
            try:
                for rep in range(repeat + 1):  # the first round is a warm-up, not recorded
                    last = None
                    for last in m.stream_generate(text_tokens, max_tokens=gen, temperature=0):
                        pass
                    assert last is not None
                    n = last.generation_tokens
                    if rep:
                        gen_tps.append(last.generation_tps)
                        counts.append(n)
                    # the raw loop: the same prompt, n samples, n - 1 decodes
                    r.reset()
                    r.eval(text_tokens)
                    one = lc.llama_token * 1
                    piece = ctypes.create_string_buffer(64)
                    t0 = time.perf_counter()
                    for i in range(n):
                        tok = lc.llama_sampler_sample(chain, r.ctx, -1)
                        lc.llama_token_to_piece(nm.vocab, tok, piece, 64, 0, False)
                        if i + 1 < n:
                            lc.llama_decode(r.ctx, lc.llama_batch_get_one(one(tok), 1))
                    if rep:
                        raw_tps.append(n / (time.perf_counter() - t0))
            finally:
                lc.llama_sampler_free(chain)
                r.close()
        finally:
            nm.close()
    mg, mr = statistics.median(gen_tps), statistics.median(raw_tps)
    return {
        "prompt_tokens": n_prompt, "generated_tokens": counts,
        "model_generate_tps": gen_tps, "raw_loop_tps": raw_tps,
        "model_generate_tps_median": mg, "raw_loop_tps_median": mr,
        "ratio": mg / mr if mr else None,
    }


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

ProgressFn = Callable[[int, int, str], None]


def run_bench(cfg: BenchConfig, progress: Optional[ProgressFn] = None,
              out_path: Optional[Path] = None) -> Dict[str, Any]:
    """Run the benchmark; return (and write to ``out_path`` as it goes) the results dict."""
    from ..model import default_threads

    cfg.check()
    threads = cfg.threads or default_threads()
    depths = list(cfg.depths)
    local = Worker(cfg.model, threads=threads, gpu_layers=cfg.gpu_layers)
    workers: List[Any] = [local]
    labels = ["default"]
    try:
        for d in cfg.libs:
            workers.append(RemoteWorker(d, str(local.nm.path), threads=threads, gpu_layers=cfg.gpu_layers))
            labels.append(str(d))
        hellos = [w.hello() for w in workers]
        L = local.nm.L
        max_ctx = max(depths) + max(cfg.chunk, cfg.gen) + 1
        p = plan(L, max(max_ctx, 2 * L), window=cfg.window, group=cfg.group)
        G, W = (p.G, p.W) if p.self_extend else (cfg.group or 2, cfg.window or p.W)
        info = local.nm.info
        result: Dict[str, Any] = {
            "schema": SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": _host(),
            "model": {"path": str(info.path), "name": info.name, "L": L, "n_layer": info.n_layer,
                      "n_head": info.n_head, "n_head_kv": info.n_head_kv, "head_dim": info.head_dim,
                      "file_type": info.file_type},
            "config": {"depths": depths, "variants": list(cfg.variants), "repeat": cfg.repeat,
                       "chunk": cfg.chunk, "gen": cfg.gen, "threads": threads, "gpu_layers": cfg.gpu_layers,
                       "G": G, "W": W, "pos_min": cfg.pos_min, "seed": cfg.seed},
            "libs": [dict(label=lab, **h) for lab, h in zip(labels, hellos)],
            "setup": [], "runs": [], "summary": [], "streaming": None,
        }
        n_units = sum(len(cfg.variants) for _ in workers)
        total = len(depths) * (1 + cfg.repeat) * n_units + (1 if cfg.streaming else 0)
        done = 0

        def tick(what: str) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, total, what)

        state_tmp = tempfile.TemporaryDirectory(prefix="se-local-bench-")
        for depth in depths:
            ready: List[List[str]] = []
            state_dir = os.path.join(state_tmp.name, str(depth))
            os.makedirs(state_dir, exist_ok=True)
            for lab, w in zip(labels, workers):
                rows = w.setup(depth, list(cfg.variants), cfg.chunk, cfg.gen, G, W, cfg.pos_min, cfg.seed,
                               state_dir)
                for row in rows:
                    result["setup"].append(dict(lib=lab, **row))
                    tick(f"prefill {depth} {row['variant']}")
                ready.append([row["variant"] for row in rows if "error" not in row])
            units = [(i, v) for i in range(len(workers)) for v in ready[i]]
            for rep in range(cfg.repeat):
                k = rep % max(1, len(units))
                for i, v in units[k:] + units[:k]:  # round-robin, rotating start
                    m = workers[i].measure(v)
                    result["runs"].append(dict(lib=labels[i], repeat=rep, **m))
                    tick(f"{depth} {v} #{rep + 1}")
                for i in range(len(workers)):  # variants that failed setup still count
                    for _ in range(len(cfg.variants) - len(ready[i])):
                        tick("skip")
            for w in workers:
                w.teardown()
            shutil.rmtree(state_dir, ignore_errors=True)
            result["summary"] = summarize(result)
            _write(out_path, result)
        if cfg.streaming:
            result["streaming"] = streaming_overhead(
                cfg.model, threads=threads, gpu_layers=cfg.gpu_layers, prompt_tokens=cfg.stream_prompt,
                gen=cfg.stream_gen, repeat=cfg.repeat, seed=cfg.seed)
            tick("streaming")
        result["summary"] = summarize(result)
        _write(out_path, result)
        return result
    finally:
        for w in workers:
            w.close()


def summarize(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Medians per (library, variant, depth) and ratios to the default library's ``fa``."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in result["runs"]:
        groups.setdefault((r["lib"], r["variant"], r["depth"]), []).append(r)
    kv = {(s["lib"], s["variant"], s["depth"]): s.get("kv_bytes") for s in result["setup"]}
    rows = []
    for (lib, v, d), runs in groups.items():
        pre = [r["prefill_tps"] for r in runs]
        dec = [r["decode_tps"] for r in runs]
        rows.append({
            "lib": lib, "variant": v, "depth": d, "n": len(runs),
            "prefill_tps": statistics.median(pre), "prefill_tps_min": min(pre), "prefill_tps_max": max(pre),
            "decode_tps": statistics.median(dec), "decode_tps_min": min(dec), "decode_tps_max": max(dec),
            "kv_bytes": kv.get((lib, v, d)),
        })
    base = {(r["depth"]): r for r in rows if r["lib"] == "default" and r["variant"] == BASELINE}
    for r in rows:
        b = base.get(r["depth"])
        r["prefill_ratio"] = r["prefill_tps"] / b["prefill_tps"] if b else None
        r["decode_ratio"] = r["decode_tps"] / b["decode_tps"] if b else None
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r["depth"], r["lib"] != "default", r["lib"], order.get(r["variant"], 99)))
    return rows


def summary_table(result: Dict[str, Any]):
    """A rich table of the medians, with the ratios to the default library's stock flash attention."""
    from rich.table import Table

    c = result["config"]
    table = Table(title=f"bench — {result['model']['name']} (L={result['model']['L']}), {c['threads']} threads, "
                        f"gpu layers {c['gpu_layers']}, SE G={c['G']} W={c['W']} pos_min={c['pos_min']}, "
                        f"median of {c['repeat']}")
    for col, j in [("depth", "right"), ("lib", "left"), ("variant", "left"), (f"prefill {c['chunk']} tok/s", "right"),
                   ("x fa", "right"), (f"decode {c['gen']} tok/s", "right"), ("x fa", "right"), ("KV MiB", "right")]:
        table.add_column(col, justify=j)
    last = None
    for r in result["summary"]:
        ratio = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        table.add_row(
            str(r["depth"]) if r["depth"] != last else "", r["lib"], r["variant"],
            f"{r['prefill_tps']:.1f}", ratio(r["prefill_ratio"]), f"{r['decode_tps']:.1f}", ratio(r["decode_ratio"]),
            "–" if r["kv_bytes"] is None else f"{r['kv_bytes'] / 2**20:.1f}",
        )
        last = r["depth"]
    return table


def streaming_line(result: Dict[str, Any]) -> Optional[str]:
    """One line on the Python streaming overhead, or ``None``."""
    s = result.get("streaming")
    if not s:
        return None
    return (f"streaming ({s['prompt_tokens']}-token prompt, {max(s['generated_tokens'])} tokens): "
            f"Model.stream_generate {s['model_generate_tps_median']:.1f} tok/s, raw decode loop "
            f"{s['raw_loop_tps_median']:.1f} tok/s, ratio {s['ratio']:.3f}")


def _host() -> Dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cpus": n, "python": platform.python_version()}


def _write(path: Optional[Path], result: Dict[str, Any]) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":  # the subprocess worker
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        sys.exit("usage: python -m se_local.eval.bench --worker JSON (internal; use se-local bench)")
