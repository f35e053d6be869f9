"""``se-local eval ppl``: perplexity by context length and method, llama-perplexity's protocol.

Protocol (``tools/perplexity/perplexity.cpp`` of llama.cpp, its default mode):

* the whole text is tokenized once, with BOS if the model adds one;
* it is cut into consecutive, non-overlapping windows of ``n`` tokens (stride ``n``;
  the tail shorter than ``n`` is dropped); ``--windows K`` keeps the first ``K``;
* each window is evaluated from an empty cache, its first token replaced by BOS
  (when the model adds one);
* the tokens of the second half are scored: the logits at positions
  ``n/2 .. n-2`` predict tokens ``n/2+1 .. n-1`` (``n/2 - 1`` tokens per window);
* PPL = ``exp(mean NLL)`` over all scored tokens; ``±`` is llama-perplexity's
  uncertainty ``PPL * sqrt((mean(NLL²) - mean(NLL)²) / (count - 1))``.

The default text: the licence texts in ``/usr/share/common-licenses`` (Debian package
``base-files``), files in sorted order, symlinks resolved and duplicates skipped, joined
with a blank line — Apache-2.0, Artistic, BSD, CC0-1.0, GFDL-1.2, GFDL-1.3, GPL-1, GPL-2,
GPL-3, LGPL-2, LGPL-2.1, LGPL-3, MPL-1.1, MPL-2.0 on Debian 12 (each text is its own
licence's document; they are read, not redistributed). ``--file`` takes any text.

Results go to ``DIR/ppl.json`` after every window; a later call with the same ``--out``
skips windows already there. Methods that run plain attention at a length (every method
within ``L``) are computed once (``same_as``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .methods import METHODS, MethodSpec, NativeModel, Runner, configure

__all__ = ["SCHEMA", "PplConfig", "default_text", "score_logits", "run_ppl", "aggregate", "summary_table"]

SCHEMA = "se-local/eval-ppl/1"
RESULTS_FILE = "ppl.json"
LICENSES_DIR = Path("/usr/share/common-licenses")


def default_text(folder: Path = LICENSES_DIR) -> Tuple[str, List[str]]:
    """The licence texts of ``folder`` concatenated; returns ``(text, file names used)``.

    Raises:
        ConfigError: the folder is missing or empty (pass ``--file``).
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist (Debian's base-files package); pass --file TEXT")
    files = sorted({p.resolve() for p in folder.iterdir() if p.resolve().is_file()}, key=lambda p: p.name)
    names = [p.name for p in files]
    parts = [p.read_text(encoding="utf-8", errors="replace").strip("\n") for p in files]
    if not parts:
        raise ConfigError(f"{folder} holds no text files; pass --file TEXT")
    return "\n\n".join(parts) + "\n", names


def score_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each ``targets[i]`` under ``softmax(logits[i])`` (float64)."""
    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    return lse - x[np.arange(len(targets)), targets]


@dataclass
class PplConfig:
    """What ``se-local eval ppl`` runs."""

    model: Optional[str] = None
    file: Optional[str] = None
    lengths: Sequence[int] = (4096, 8192, 16384, 32768)
    methods: Sequence[str] = ("se", "vanilla")
    windows: Optional[int] = None
    group: Optional[int] = None
    window: Optional[int] = None
    threads: Optional[int] = None
    gpu_layers: int = 0
    flash_attn: bool = True

    def check(self) -> None:
        if not self.lengths or any(n < 4 for n in self.lengths):
            raise ConfigError("lengths must be >= 4 tokens")
        if self.windows is not None and self.windows < 1:
            raise ConfigError("windows must be >= 1")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown method {', '.join(bad)}")


def _plain(spec: MethodSpec) -> bool:
    return spec.G <= 1 and spec.rope_scale <= 1.0


def _write(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def aggregate(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """PPL and ± per (method, length) from the per-window sums."""
    groups: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    for w in data["windows"]:
        groups.setdefault((w["method"], int(w["length"])), []).append(w)
    rows = []
    for (m, n), ws in groups.items():
        count = sum(w["count"] for w in ws)
        nll = sum(w["nll"] for w in ws) / count
        nll2 = sum(w["nll2"] for w in ws) / count - nll * nll
        ppl = math.exp(nll)
        err = ppl * math.sqrt(nll2 / (count - 1)) if nll2 > 0 and count > 1 else None
        same = {w.get("same_as") for w in ws} - {None}
        rows.append({"method": m, "length": n, "ppl": ppl, "ppl_err": err, "windows": len(ws),
                     "scored_tokens": count, "seconds": sum(w["seconds"] for w in ws),
                     "spec": ws[0]["spec"], "same_as": same.pop() if same else None})
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (order.get(r["method"], 99), r["length"]))
    return rows


ProgressFn = Callable[[int, int, str], None]


def run_ppl(
    cfg: PplConfig,
    out_dir: Optional[Path] = None,
    progress: Optional[ProgressFn] = None,
    window_progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, Any]:
    """Run the perplexity evaluation (resuming ``out_dir/ppl.json``); return the results dict."""
    from ..model import default_threads

    cfg.check()
    threads = cfg.threads or default_threads()
    if cfg.file:
        try:
            text = Path(cfg.file).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f"cannot read {cfg.file}: {e.strerror}") from e
        sources = [str(cfg.file)]
    else:
        text, sources = default_text()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = Path(out_dir) / RESULTS_FILE if out_dir is not None else None
    nm = NativeModel(cfg.model, n_gpu_layers=cfg.gpu_layers)
    try:
        L = nm.L
        tokens = nm.tokenize(text, add_special=True)
        meta = {"model": nm.path.name, "model_size": nm.info.file_size, "text_sha256": digest,
                "flash_attn": cfg.flash_attn}
        data = None
        if path is not None and path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SCHEMA:
                raise ConfigError(f"{path} is not a perplexity results file")
            old = {k: data["meta"].get(k) for k in meta}
            if old != meta:
                raise ConfigError(f"{path} holds windows with other settings ({old}); use another --out")
        if data is None:
            data = {"schema": SCHEMA, "meta": meta,
                    "model": {"path": str(nm.path), "name": nm.info.name, "L": L},
                    "text": {"sources": sources, "chars": len(text), "tokens": len(tokens),
                             "default": cfg.file is None},
                    "protocol": "llama-perplexity: non-overlapping windows of n tokens, BOS first, "
                                "second half scored (n/2-1 tokens per window)",
                    "windows": [], "results": []}
        data["meta"]["group"], data["meta"]["window"] = cfg.group, cfg.window
        done = {(w["method"], int(w["length"]), int(w["index"])) for w in data["windows"]}
        work: List[Tuple[int, str, int]] = []
        skipped = []
        for n in cfg.lengths:
            n_win = len(tokens) // n
            if cfg.windows is not None:
                n_win = min(n_win, cfg.windows)
            if n_win == 0:
                skipped.append(n)
                continue
            work += [(n, m, i) for m in cfg.methods for i in range(n_win)]
        data["skipped_lengths"] = skipped
        total, count = len(work), 0
        runners: Dict[Tuple[str, int], Runner] = {}
        try:
            for n, m, i in work:
                count += 1
                if (m, n, i) in done:
                    if progress:
                        progress(count, total, f"{m} {n} #{i + 1} (done)")
                    continue
                spec = configure(m, L, n, group=cfg.group, window=cfg.window)
                ref = None
                if _plain(spec):
                    ref = next((w for w in data["windows"] if int(w["length"]) == n and int(w["index"]) == i
                                and w.get("plain")), None)
                if ref is not None:
                    row = dict(ref, method=m, spec=spec.to_dict(), same_as=ref.get("same_as") or ref["method"])
                else:
                    if progress:
                        progress(count - 1, total, f"{m} {n} #{i + 1}")
                    for k in [k for k in runners if k != (m, n)]:
                        runners.pop(k).close()
                    if (m, n) not in runners:
                        runners[(m, n)] = Runner(nm, spec, n_threads=threads, flash_attn=cfg.flash_attn)
                    runner = runners[(m, n)]
                    window = list(tokens[i * n:(i + 1) * n])
                    if nm.add_bos:
                        window[0] = nm.bos
                    first = n // 2
                    targets = np.asarray(window, dtype=np.int64)
                    acc = {"nll": 0.0, "nll2": 0.0, "count": 0}

                    def on_logits(i0: int, logits: np.ndarray) -> None:
                        # logits[j] is at position i0 + j and predicts window[i0 + j + 1]
                        j_end = min(len(logits), n - 1 - i0)
                        if j_end <= 0:
                            return
                        nll = score_logits(logits[:j_end], targets[i0 + 1:i0 + 1 + j_end])
                        acc["nll"] += float(nll.sum())
                        acc["nll2"] += float((nll * nll).sum())
                        acc["count"] += int(j_end)

                    runner.reset()
                    t0 = time.perf_counter()
                    runner.eval(window, outputs_from=first, on_logits=on_logits, progress=window_progress)
                    row = {"method": m, "length": n, "index": i, "seconds": round(time.perf_counter() - t0, 3),
                           "spec": spec.to_dict(), "plain": _plain(spec), **acc}
                data["windows"].append(row)
                done.add((m, n, i))
                data["results"] = aggregate(data)
                if path:
                    _write(path, data)
                if progress:
                    progress(count, total, f"{m} {n} #{i + 1}")
        finally:
            for r in runners.values():
                r.close()
        data["results"] = aggregate(data)
        if path:
            _write(path, data)
        return data
    finally:
        nm.close()


def summary_table(data: Dict[str, Any]):
    """A rich table: PPL by method (rows) and length (columns)."""
    from rich.table import Table

    rows = data["results"]
    lengths = sorted({r["length"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    table = Table(title=f"perplexity — {data['model'].get('name') or data['meta']['model']} "
                        f"(L={data['model']['L']}), {data['text']['tokens']} tokens of text")
    table.add_column("method")
    for n in lengths:
        table.add_column(f"{n // 1024}k" if n % 1024 == 0 else str(n), justify="right")
    cell = {(r["method"], r["length"]): r for r in rows}
    for m in methods:
        vals = []
        for n in lengths:
            r = cell.get((m, n))
            if r is None:
                vals.append("–")
            else:
                err = f" ±{r['ppl_err']:.2f}" if r["ppl_err"] is not None else ""
                vals.append(f"{r['ppl']:.2f}{err}")
        table.add_row(m, *vals)
    return table
