"""``se-local eval passkey``: passkey retrieval at given lengths and depths, per method.

The prompt is the paper's (Appendix D; Landmark Attention's task), built from the
strings of :mod:`se_local.passkey` at the token level so that the key lands at the
requested depth to the token:

``[BOS] INSTRUCTION | haystack[:k] | " The pass key is K. Remember it. K is the pass key." | haystack[k:] | QUESTION``

* the haystack is the filler block ``" The grass is green. ... There and back again."``
  tokenized once and repeated, cut to the number of tokens that makes the whole prompt
  ``length - max_new_tokens - 1`` tokens (so prompt and answer fit a context of
  ``length`` tokens);
* ``k = round(depth * len(haystack))``: the key sentence starts at token
  ``len(prefix) + k``, ``depth`` being the fraction of the haystack before it. The ``k``
  filler tokens before the key are the *end* of a run of whole blocks and those after it
  the *start* of one, so the key sits between complete sentences, as in the paper; only
  the sentence right after the instruction and the one before the question may be cut;
* the key is 5 random digits from ``random.Random(f"{seed}:{length}:{depth}:{trial}")``
  (the same for every method, and independent of which runs are already done);
* the model answers greedily, ``max_new_tokens`` tokens (default 8); the run is correct
  when the key's digits appear in the answer.

Results go to ``DIR/passkey.json`` after every run; a later call with the same
``--out`` skips the runs already there (same model, seed and answer length), so a long
evaluation can be resumed or extended with more lengths, depths, trials or methods.
Methods that run plain attention for a length (every method within the trained length
``L``, see :mod:`.methods`) are computed once and the result recorded for each of them
(``same_as``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..passkey import FILLER, INSTRUCTION, QUESTION
from .methods import METHODS, MethodSpec, NativeModel, Runner, configure

__all__ = ["SCHEMA", "PasskeyConfig", "PasskeyPrompt", "build_prompt", "passkey_key", "run_passkey",
           "accuracy_grid", "is_correct"]

SCHEMA = "se-local/eval-passkey/1"
RESULTS_FILE = "passkey.json"

KEY_SENTENCE = " The pass key is {key}. Remember it. {key} is the pass key."
BLOCK = " " + FILLER.strip()


@dataclass(frozen=True)
class PasskeyPrompt:
    """A passkey prompt as token ids.

    Attributes:
        tokens: the prompt.
        key: the pass key.
        key_start: index of the key sentence's first token in ``tokens``.
        key_len: tokens of the key sentence.
        prefix_len: tokens before the haystack (BOS and instruction).
        haystack_len: filler tokens (before and after the key).
        depth: the requested depth.
    """

    tokens: List[int]
    key: str
    key_start: int
    key_len: int
    prefix_len: int
    haystack_len: int
    depth: float

    @property
    def actual_depth(self) -> float:
        """Fraction of the haystack before the key."""
        return (self.key_start - self.prefix_len) / max(1, self.haystack_len)


def passkey_key(seed: int, length: int, depth: float, trial: int) -> str:
    """The 5-digit key of one run (deterministic)."""
    return str(random.Random(f"{seed}:{length}:{depth:g}:{trial}").randint(10000, 99999))


def build_prompt(
    tokenize: Callable[[str], List[int]], n_tokens: int, depth: float, key: str, *, bos: Optional[int] = None
) -> PasskeyPrompt:
    """The passkey prompt of exactly ``n_tokens`` tokens with the key at ``depth``.

    Args:
        tokenize: text → ids, no special tokens added.
        n_tokens: prompt length, in tokens.
        depth: 0.0 (key first) to 1.0 (key last).
        key: the pass key.
        bos: the BOS id to put first, or ``None``.

    Raises:
        ConfigError: ``depth`` out of range or ``n_tokens`` too small for the fixed parts.
    """
    if not 0.0 <= depth <= 1.0:
        raise ConfigError(f"depth must be within 0..1, got {depth}")
    prefix = ([bos] if bos is not None else []) + tokenize(INSTRUCTION)
    key_t = tokenize(KEY_SENTENCE.format(key=key))
    question = tokenize(QUESTION)
    n_hay = n_tokens - len(prefix) - len(key_t) - len(question)
    if n_hay < 0:
        raise ConfigError(f"{n_tokens} tokens are too few for a passkey prompt (it needs {n_tokens - n_hay})")
    block = tokenize(BLOCK)
    stream = block * (n_hay // max(1, len(block)) + 1)
    k = int(round(depth * n_hay))
    # whole filler sentences on both sides of the key: the part before it is the *end* of
    # a run of blocks, the part after it the *start* of one (cut sentences only at the far ends)
    before = stream[len(stream) - k:] if k else []
    after = stream[: n_hay - k]
    tokens = prefix + before + key_t + after + question
    return PasskeyPrompt(tokens, key, len(prefix) + k, len(key_t), len(prefix), n_hay, depth)


def is_correct(answer: str, key: str) -> bool:
    """Whether the answer holds the key."""
    return key in answer


@dataclass
class PasskeyConfig:
    """What ``se-local eval passkey`` runs."""

    model: Optional[str] = None
    lengths: Sequence[int] = (8192, 16384)
    depths: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9)
    trials: int = 1
    methods: Sequence[str] = ("se", "vanilla")
    group: Optional[int] = None
    window: Optional[int] = None
    threads: Optional[int] = None
    gpu_layers: int = 0
    flash_attn: bool = True
    seed: int = 0
    max_new_tokens: int = 8

    def check(self) -> None:
        if self.trials < 1 or self.max_new_tokens < 1:
            raise ConfigError("trials and max_new_tokens must be >= 1")
        if not self.lengths or not self.depths:
            raise ConfigError("give at least one length and one depth")
        for d in self.depths:
            if not 0.0 <= d <= 1.0:
                raise ConfigError(f"depth must be within 0..1, got {d}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown method {', '.join(bad)}")


RunKey = Tuple[str, int, float, int]


def _run_key(r: Dict[str, Any]) -> RunKey:
    return (r["method"], int(r["length"]), round(float(r["depth"]), 6), int(r["trial"]))


def load_results(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a passkey results file ({data.get('schema')!r})")
    return data


def _write(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _plain(spec: MethodSpec) -> bool:
    return spec.G <= 1 and spec.rope_scale <= 1.0


ProgressFn = Callable[[int, int, str], None]


def run_passkey(
    cfg: PasskeyConfig,
    out_dir: Optional[Path] = None,
    progress: Optional[ProgressFn] = None,
    prefill_progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, Any]:
    """Run the passkey evaluation (resuming ``out_dir/passkey.json``); return the results dict."""
    from ..model import default_threads

    cfg.check()
    threads = cfg.threads or default_threads()
    path = Path(out_dir) / RESULTS_FILE if out_dir is not None else None
    nm = NativeModel(cfg.model, n_gpu_layers=cfg.gpu_layers)
    try:
        L = nm.L
        meta = {"model": nm.path.name, "model_size": nm.info.file_size, "seed": cfg.seed,
                "max_new_tokens": cfg.max_new_tokens, "flash_attn": cfg.flash_attn}
        data = load_results(path) if path else None
        if data is not None:
            old = {k: data["meta"].get(k) for k in meta}
            if old != meta:
                raise ConfigError(
                    f"{path} holds runs with other settings ({old}); use another --out or the same settings"
                )
        else:
            data = {"schema": SCHEMA, "meta": meta, "model": {"path": str(nm.path), "name": nm.info.name, "L": L},
                    "runs": []}
        data["meta"]["group"], data["meta"]["window"] = cfg.group, cfg.window
        done = {_run_key(r) for r in data["runs"]}
        plan_runs = [(length, m, d, t) for length in cfg.lengths for m in cfg.methods
                     for d in cfg.depths for t in range(cfg.trials)]
        total = len(plan_runs)
        count = 0
        bos = nm.bos if nm.add_bos else None
        tok = nm.tokenize
        for length in cfg.lengths:
            specs = {m: configure(m, L, length, group=cfg.group, window=cfg.window) for m in cfg.methods}
            plain_ref: Dict[RunKey, Dict[str, Any]] = {}  # a plain run of this length, by (depth, trial)
            for r in data["runs"]:
                if int(r["length"]) == length and r.get("plain"):
                    plain_ref[("", length, round(float(r["depth"]), 6), int(r["trial"]))] = r
            for m in cfg.methods:
                spec = specs[m]
                runner: Optional[Runner] = None
                try:
                    for d in cfg.depths:
                        for t in range(cfg.trials):
                            count += 1
                            key = (m, length, round(d, 6), t)
                            if key in done:
                                if progress:
                                    progress(count, total, f"{m} {length} {d:g} (done)")
                                continue
                            pkey = passkey_key(cfg.seed, length, d, t)
                            ref = plain_ref.get(("", length, round(d, 6), t)) if _plain(spec) else None
                            if ref is not None:
                                run = dict(ref, method=m, spec=spec.to_dict(), same_as=ref.get("same_as") or ref["method"])
                            else:
                                if progress:
                                    progress(count - 1, total, f"{m} {length} {d:g}")
                                if runner is None:
                                    runner = Runner(nm, spec, n_threads=threads, flash_attn=cfg.flash_attn)
                                p = build_prompt(tok, length - cfg.max_new_tokens - 1, d, pkey, bos=bos)
                                t0 = time.perf_counter()
                                cached = runner.eval_prompt(p.tokens, progress=prefill_progress)
                                t1 = time.perf_counter()
                                out = runner.greedy(cfg.max_new_tokens)
                                answer = nm.detokenize(out)
                                run = {
                                    "method": m, "length": length, "depth": d, "trial": t, "key": pkey,
                                    "answer": answer, "correct": is_correct(answer, pkey),
                                    "n_tokens": len(p.tokens), "key_token": p.key_start,
                                    "actual_depth": round(p.actual_depth, 6), "cached_tokens": cached,
                                    "prefill_s": round(t1 - t0, 3), "answer_s": round(time.perf_counter() - t1, 3),
                                    "spec": spec.to_dict(), "plain": _plain(spec),
                                }
                                if _plain(spec):
                                    plain_ref[("", length, round(d, 6), t)] = run
                            data["runs"].append(run)
                            done.add(key)
                            if path:
                                _write(path, data)
                            if progress:
                                progress(count, total, f"{m} {length} {d:g}")
                finally:
                    if runner is not None:
                        runner.close()
        return data
    finally:
        nm.close()


def accuracy_grid(
    data: Dict[str, Any], method: str, lengths: Optional[Sequence[int]] = None,
    depths: Optional[Sequence[float]] = None,
) -> Tuple[List[int], List[float], List[List[Optional[float]]]]:
    """``(lengths, depths, grid)`` with ``grid[i][j]`` the accuracy at ``depths[i]``, ``lengths[j]``
    (``None`` where no run exists)."""
    runs = [r for r in data["runs"] if r["method"] == method]
    lengths = sorted({int(r["length"]) for r in runs}) if lengths is None else list(lengths)
    depths = sorted({float(r["depth"]) for r in runs}) if depths is None else list(depths)
    cells: Dict[Tuple[float, int], List[bool]] = {}
    for r in runs:
        cells.setdefault((round(float(r["depth"]), 6), int(r["length"])), []).append(bool(r["correct"]))
    grid = []
    for d in depths:
        row = []
        for n in lengths:
            c = cells.get((round(d, 6), n))
            row.append(sum(c) / len(c) if c else None)
        grid.append(row)
    return lengths, depths, grid


def summary_table(data: Dict[str, Any], methods: Optional[Sequence[str]] = None):
    """A rich table: accuracy by length (columns) and depth (rows), a block per method."""
    from rich.table import Table

    methods = [m for m in (methods or METHODS) if any(r["method"] == m for r in data["runs"])]
    lengths = sorted({int(r["length"]) for r in data["runs"]})
    table = Table(title=f"passkey retrieval — {data['model'].get('name') or data['meta']['model']} "
                        f"(L={data['model']['L']})")
    table.add_column("method")
    table.add_column("depth", justify="right")
    for n in lengths:
        table.add_column(_fmt_len(n), justify="right")
    for m in methods:
        ls, ds, grid = accuracy_grid(data, m, lengths)
        for i, (d, row) in enumerate(zip(ds, grid)):
            table.add_row(m if i == 0 else "", f"{d:g}",
                          *["–" if v is None else f"{100 * v:.0f}%" for v in row],
                          end_section=i == len(ds) - 1)
    return table


def _fmt_len(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)
