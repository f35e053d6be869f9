"""How fast does ``Model.cancel()`` stop a long prefill? Seconds from cancel() to the stream's end.

A thread prefills a long prompt in micro-batches of ``--n-batch`` tokens; after
``--after`` micro-batches the main thread waits a random part of a micro-batch's time
and calls ``cancel()``. Reported: the micro-batch times, and the time from ``cancel()``
until the generation has ended, with llama.cpp's abort callback (the default) and with
only the check between micro-batches (``--no-callback``).

    python bench/cancel_latency.py                      # SmolLM2, 16k context, 512-token micro-batches
    python bench/cancel_latency.py --no-callback
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "se_local").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--target-ctx", type=int, default=16384)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--after", type=int, default=3, help="micro-batches before cancelling")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-callback", action="store_true", help="check between micro-batches only")
    args = ap.parse_args()

    from se_local import _abort

    if args.no_callback:
        _abort._STRLEN = None
    from se_local import Model

    model = Model(args.model, target_ctx=args.target_ctx, n_threads=args.threads, n_batch=args.n_batch)
    prompt = model.tokenize("The quick brown fox jumps over the lazy dog. " * 2000)[: args.target_ctx - 16]
    rng = random.Random(0)
    batch_s, latency_s = [], []
    for _ in range(args.repeat):
        stamps = []
        ended = threading.Event()

        def run() -> None:
            for _r in model.stream_generate(prompt, max_tokens=1, temperature=0,
                                            progress=lambda d, t: stamps.append(time.perf_counter())):
                pass
            ended.set()

        t0 = time.perf_counter()
        worker = threading.Thread(target=run)
        worker.start()
        while len(stamps) < args.after:
            time.sleep(0.001)
        times = [b - a for a, b in zip([t0] + stamps, stamps)][1:]  # the first includes setup
        batch = statistics.median(times) if times else stamps[0] - t0
        time.sleep(rng.random() * batch)
        t_cancel = time.perf_counter()
        model.cancel()
        ended.wait()
        latency_s.append(time.perf_counter() - t_cancel)
        batch_s.append(batch)
        worker.join()
    report = {
        "model": model.path.name,
        "n_batch": args.n_batch,
        "abort_callback": not args.no_callback and _abort._STRLEN is not None,
        "micro_batch_s_median": round(statistics.median(batch_s), 3),
        "cancel_to_end_s": [round(x, 3) for x in latency_s],
        "cancel_to_end_s_max": round(max(latency_s), 3),
    }
    print(json.dumps(report, indent=1))
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
