"""Which architectures' graph builders assert on head sizes, read from llama.cpp's source.

Many builders in llama.cpp's ``src/models/*.cpp`` start with
``GGML_ASSERT(n_embd_head == hparams.n_embd_head_k())`` (value and key heads of one
size) and ``GGML_ASSERT(n_embd_head == n_rot)`` (RoPE on the whole head); a file that
breaks them aborts the process at the first graph. ``se_local/_llama_rules.py`` holds
the two lists for the pinned llama.cpp; this script regenerates it::

    python tests/llama_rules.py build/*/upstream/llama.cpp > se_local/_llama_rules.py

``tests/test_errors.py`` compares the module with the source when the build tree is there.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, FrozenSet, Tuple


def rules(llama_cpp: Path) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    """(architectures asserting value head == key head, architectures asserting head == n_rot)."""
    src = Path(llama_cpp) / "src"
    names = dict(re.findall(r'\{\s*(LLM_ARCH_\w+)\s*,\s*"([^"]+)"\s*\}', (src / "llama-arch.cpp").read_text()))
    arch_class: Dict[str, str] = {}
    pending = []
    for line in (src / "llama-model.cpp").read_text().splitlines():
        m = re.match(r"\s*case (LLM_ARCH_\w+):\s*$", line)
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"\s*return new (llama_model_\w+)(?:<[^>]*>)?\(params\);", line)
        if m:
            for arch in pending:
                arch_class.setdefault(arch, m.group(1))
        if line.strip() and not line.strip().startswith("//"):
            pending = []
    code: Dict[str, str] = {}
    for f in sorted((src / "models").glob("*.cpp")):
        text = re.sub(r"//[^\n]*", "", f.read_text())
        for cls in set(re.findall(r"\b(llama_model_\w+)::", text)):
            code[cls] = code.get(cls, "") + text
    # a model may build its graph with another model's (models.h: `using graph = llama_model_Y::graph;`)
    header = re.sub(r"//[^\n]*", "", (src / "models" / "models.h").read_text())
    for cls, body in re.findall(r"struct (llama_model_\w+)\s*:[^{]*\{(.*?)\n\};", header, re.S):
        for other in set(re.findall(r"\b(llama_model_\w+)::graph\b", body)) - {cls}:
            code[cls] = code.get(cls, "") + code.get(other, "")
    same_kv, same_rot = set(), set()
    for arch, cls in arch_class.items():
        text = code.get(cls, "")
        name = names.get(arch, arch)
        if re.search(r"GGML_ASSERT\(n_embd_head == (hparams\.)?n_rot\b", text):
            same_rot.add(name)
        if re.search(r"n_embd_head\s*=\s*hparams\.n_embd_head_v\(\);", text) and re.search(
            r"GGML_ASSERT\(n_embd_head == hparams\.n_embd_head_k\(\)\)", text
        ):
            same_kv.add(name)
    return frozenset(same_kv), frozenset(same_rot)


def module_text(llama_cpp: Path) -> str:
    same_kv, same_rot = rules(llama_cpp)

    def block(items: FrozenSet[str]) -> str:
        words = [f'"{a}",' for a in sorted(items)]
        lines, line = [], "   "
        for w in words:
            if len(line) + 1 + len(w) > 100:
                lines.append(line)
                line = "   "
            line += " " + w
        lines.append(line)
        return "\n".join(lines)

    return f'''"""Architectures whose llama.cpp graph builders assert on head sizes (generated; do not edit).

Regenerate for another llama.cpp with ``python tests/llama_rules.py PATH/TO/llama.cpp``.
"""

SAME_KV_HEAD = frozenset({{
{block(same_kv)}
}})
"""``GGML_ASSERT(n_embd_head == hparams.n_embd_head_k())``: value and key heads of one size."""

SAME_ROT_HEAD = frozenset({{
{block(same_rot)}
}})
"""``GGML_ASSERT(n_embd_head == n_rot)``: RoPE over the whole head (rope.dimension_count = head size)."""
'''


if __name__ == "__main__":
    sys.stdout.write(module_text(Path(sys.argv[1])))
