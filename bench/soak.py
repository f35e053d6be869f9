"""Soak test: many short generations on one model; does memory grow, do native objects leak?

Runs ``--n`` short greedy generations (default 1000) with one ``se_local.Model``,
optionally closing it and opening a fresh one every ``--reopen-every`` generations,
and reports:

* RSS (resident memory) after a warm-up and at the end, and the growth in percent;
* native objects created and freed, counted by wrapping llama.cpp's constructors and
  destructors (models, contexts, sampler chains): ``leaked`` must be 0.

Usage::

    python bench/soak.py                        # 1000 generations, the embedded SmolLM2
    python bench/soak.py --n 200 --reopen-every 50 --json soak.json
    python bench/soak.py --model ~/models/x.gguf --target-ctx 4096 --threads 8
    python bench/soak.py --open-close 20 --target-ctx 8192  # does close() free? (RSS after each)

The goal of the reliability issue: RSS growth under 5% over 1000 generations, no leaks.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "se_local").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the source tree's se_local

PROMPTS = [
    "Tell me a story about a lighthouse.",
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three colors.",
    "Explain gravity to a child.",
]

# llama.cpp functions that create a native object, and the ones that free it
_PAIRS = {
    "model": ("llama_model_load_from_file", "llama_model_free"),
    "context": ("llama_init_from_model", "llama_free"),
    "sampler": ("llama_sampler_chain_init", "llama_sampler_free"),
}


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class NativeCounter:
    """Counts llama.cpp objects created and freed, by wrapping the functions in ``llama_cpp``."""

    def __init__(self) -> None:
        self.created: Dict[str, int] = collections.Counter()
        self.freed: Dict[str, int] = collections.Counter()

    def install(self) -> None:
        from se_local import _lib

        mod = _lib.llama_cpp
        for kind, (make, free) in _PAIRS.items():
            setattr(mod, make, self._wrap(getattr(mod, make), kind, self.created, created=True))
            setattr(mod, free, self._wrap(getattr(mod, free), kind, self.freed, created=False))

    @staticmethod
    def _wrap(fn: Callable, kind: str, counter: Dict[str, int], created: bool) -> Callable:
        def wrapper(*args: Any) -> Any:
            result = fn(*args)
            if not created or result:  # a failed constructor returns NULL
                counter[kind] += 1
            return result

        return wrapper

    def live(self) -> Dict[str, int]:
        return {kind: self.created[kind] - self.freed[kind] for kind in _PAIRS}


def soak(
    n: int = 1000,
    *,
    model_path: Optional[str] = None,
    target_ctx: int = 1024,
    threads: int = 2,
    max_tokens: int = 8,
    reopen_every: int = 0,
    warmup: int = 20,
    progress: bool = False,
) -> Dict[str, Any]:
    """Run the soak; return the report (a dict, see the module docstring)."""
    counter = NativeCounter()
    counter.install()
    from se_local import Model

    def open_model() -> Model:
        return Model(model_path, target_ctx=target_ctx, n_threads=threads)

    model = open_model()
    texts = collections.Counter()
    rss_warm = None
    t0 = time.perf_counter()
    tokens = 0
    for i in range(n):
        if i == warmup:
            gc.collect()
            rss_warm = rss_bytes()
        if reopen_every and i and i % reopen_every == 0:
            model.close()
            model = open_model()
        prompt = PROMPTS[i % len(PROMPTS)]
        out = []
        for r in model.stream_generate(prompt, max_tokens=max_tokens, temperature=0):
            out.append(r.text)
            tokens = tokens + 1
        texts[(prompt, "".join(out))] += 1
        if progress and (i + 1) % 100 == 0:
            print(f"{i + 1}/{n} generations, RSS {rss_bytes() / 2**20:.1f} MiB", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    gc.collect()
    rss_end = rss_bytes()
    live_open = counter.live()
    model.close()
    gc.collect()
    rss_closed = rss_bytes()
    live = counter.live()
    if rss_warm is None:
        rss_warm = rss_end
    return {
        "generations": n,
        "max_tokens": max_tokens,
        "target_ctx": target_ctx,
        "threads": threads,
        "reopen_every": reopen_every,
        "warmup": warmup,
        "model": str(model.path),
        "seconds": round(seconds, 1),
        "tokens_generated": tokens,
        "rss_warm_mib": round(rss_warm / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_growth_pct": round(100.0 * (rss_end - rss_warm) / rss_warm, 2),
        "rss_after_close_mib": round(rss_closed / 2**20, 1),
        "native_created": dict(counter.created),
        "native_freed": dict(counter.freed),
        "native_live_before_close": live_open,
        "leaked": sum(live.values()),
        # greedy decoding: each prompt must give one and the same text every time
        "distinct_outputs_per_prompt": max(
            collections.Counter(p for p, _ in texts).values(), default=0
        ),
    }


def open_close(
    k: int = 20, *, model_path: Optional[str] = None, target_ctx: int = 8192, threads: int = 2
) -> Dict[str, Any]:
    """Open a model, generate a few tokens, close it; ``k`` times. Does ``close()`` free everything?"""
    counter = NativeCounter()
    counter.install()
    from se_local import Model

    rss = []
    for _ in range(k):
        with Model(model_path, target_ctx=target_ctx, n_threads=threads) as model:
            "".join(model.generate(PROMPTS[0], max_tokens=4, temperature=0))
        gc.collect()
        rss.append(rss_bytes())
    return {
        "cycles": k,
        "target_ctx": target_ctx,
        "rss_after_close_mib": [round(r / 2**20, 1) for r in rss],
        # the first cycles warm up allocators and caches: compare from the second one
        "rss_growth_mib": round((rss[-1] - rss[min(1, k - 1)]) / 2**20, 1),
        "native_created": dict(counter.created),
        "native_freed": dict(counter.freed),
        "leaked": sum(counter.live().values()),
    }


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="generations (default 1000)")
    ap.add_argument("--model", default=None, help="GGUF file (default: the embedded SmolLM2)")
    ap.add_argument("--target-ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--reopen-every", type=int, default=0, help="close and reopen the model every K generations")
    ap.add_argument("--warmup", type=int, default=20, help="generations before the first RSS reading")
    ap.add_argument("--open-close", type=int, default=0, metavar="K",
                    help="instead: open, use and close the model K times (checks that close() frees)")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    if args.open_close:
        report = open_close(args.open_close, model_path=args.model, target_ctx=args.target_ctx,
                            threads=args.threads)
        text = json.dumps(report, indent=1)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0 if report["leaked"] == 0 else 1
    report = soak(
        args.n,
        model_path=args.model,
        target_ctx=args.target_ctx,
        threads=args.threads,
        max_tokens=args.max_tokens,
        reopen_every=args.reopen_every,
        warmup=min(args.warmup, max(0, args.n - 1)),
        progress=True,
    )
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["leaked"] == 0 and report["distinct_outputs_per_prompt"] == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
