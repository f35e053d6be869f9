"""PNG figures of the evaluations (matplotlib with the Agg backend: no display needed).

* :func:`passkey_heatmap` — accuracy by depth (rows) and length (columns), one per method,
  as in the paper's figures;
* :func:`ppl_plot` — perplexity against context length, a line per method.

Figures are small (a few tens of kB) so that they can live in ``docs/img``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["passkey_heatmap", "passkey_heatmaps", "ppl_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt_len(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def passkey_heatmap(data: Dict[str, Any], method: str, path: Path) -> Path:
    """Write the accuracy heatmap of ``method`` to ``path`` (PNG); return the path."""
    from .passkey import accuracy_grid

    plt = _pyplot()
    lengths, depths, grid = accuracy_grid(data, method)
    fig, ax = plt.subplots(figsize=(max(3.2, 1.4 + 0.9 * len(lengths)), 1.3 + 0.45 * max(1, len(depths))), dpi=100)
    import numpy as np

    values = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    ax.imshow(values, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(lengths)), [_fmt_len(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("length (tokens)")
    ax.set_ylabel("depth")
    name = _short(data["model"].get("name") or data["meta"].get("model", ""))
    ax.set_title(f"passkey · {method}\n{name}", fontsize=9)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, "–" if v is None else f"{100 * v:.0f}", ha="center", va="center", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def passkey_heatmaps(data: Dict[str, Any], out_dir: Path, methods: Optional[Sequence[str]] = None) -> List[Path]:
    """One heatmap per method present in ``data``: ``out_dir/passkey_{method}.png``."""
    present = [m for m in dict.fromkeys(r["method"] for r in data["runs"])]
    methods = [m for m in (methods or present) if m in present]
    return [passkey_heatmap(data, m, Path(out_dir) / f"passkey_{m}.png") for m in methods]


def ppl_plot(data: Dict[str, Any], path: Path) -> Path:
    """Write PPL vs length (log-log), a line per method, to ``path`` (PNG); return the path."""
    from .methods import METHODS

    plt = _pyplot()
    rows = data["results"]
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    markers = dict(zip(METHODS, "os^Dv"))
    for m in methods:
        pts = sorted((r["length"], r["ppl"]) for r in rows if r["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers.get(m, "o"), label=m)
    ax.set_xscale("log", base=2)
    values = [r["ppl"] for r in rows if r["ppl"] > 0]
    if values and max(values) / min(values) > 10:  # vanilla past L explodes: log scale
        ax.set_yscale("log")
    lengths = sorted({r["length"] for r in rows})
    ax.set_xticks(lengths, [_fmt_len(n) for n in lengths])
    ax.xaxis.set_minor_locator(matplotlib_ticker().NullLocator())
    L = data["model"].get("L")
    if L:
        ax.axvline(L, color="grey", linestyle="--", linewidth=0.8)
        ax.text(L, ax.get_ylim()[1], " L", va="top", fontsize=8, color="grey")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity")
    name = _short(data["model"].get("name") or data["meta"].get("model", ""), 40)
    ax.set_title(f"perplexity vs length · {name}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
