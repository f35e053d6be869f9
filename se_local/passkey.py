"""The passkey retrieval prompt of the Self-Extend paper (Appendix D; Landmark Attention's task).

An instruction, a filler sentence block repeated, the key sentence at a chosen depth, more
filler, then the question. The answer is correct when the key appears in the continuation.
"""

from __future__ import annotations

INSTRUCTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there.\n\n"
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\n\nWhat is the pass key? The pass key is"


def passkey_prompt(blocks: int, depth: float, key: str) -> str:
    """The prompt with ``blocks`` filler blocks and the key sentence after ``int(blocks * depth)``.

    Args:
        blocks: number of filler blocks (660 is about 15.9k tokens for SmolLM2's tokenizer).
        depth: where the key goes, 0.0 (start) to 1.0 (end).
        key: the pass key, e.g. ``"71432"``.
    """
    if blocks < 0 or not 0.0 <= depth <= 1.0:
        raise ValueError(f"need blocks >= 0 and 0 <= depth <= 1, got {blocks}, {depth}")
    before = int(blocks * depth)
    return (INSTRUCTION + FILLER * before + f"The pass key is {key}. Remember it. {key} is the pass key. "
            + FILLER * (blocks - before) + QUESTION)
