"""The planner: the one home of the Self-Extend group/window arithmetic.

Self-Extend (Jin et al., ICML 2024) lets a model trained on ``L`` tokens read ``N > L``
tokens: keys farther than the neighbor window ``W`` from a query are seen at grouped
positions ``pos // G``, so no relative distance a score sees exceeds what the model
was trained on. Given ``L`` and ``N`` this module chooses ``G`` and ``W``:

* Hard limit: the longest reachable length is ``reach = (L - W) * G + W``.
* The paper's empirical rule (eq. 5): ``L/2 > W + (N - W)/G``. The planner picks the
  smallest integer ``G`` that satisfies it. With integers that is
  ``G * (L - 2W) > 2 * (N - W)``, i.e. ``G = 2 * (N - W) // (L - 2W) + 1``.
* Default window: ``W = min(1024, L // 4)``. The paper used W of about L/4 to L/8 for
  Llama-2/Mistral-style models; Llama-3-style models prefer a smaller W (about
  100 to 512), which the caller passes explicitly (``--window``).

Everything here is pure integer arithmetic on metadata: nothing loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

from .errors import PlanError

__all__ = ["Plan", "plan", "default_window", "reach", "satisfies_rule", "smallest_group"]

MAX_DEFAULT_WINDOW = 1024
"""Cap of the default neighbor window, in tokens."""

_RULE = "L/2 > W + (N-W)/G"


# ---------------------------------------------------------------------------
# The arithmetic
# ---------------------------------------------------------------------------


def default_window(L: int) -> int:
    """Default neighbor window for a model trained on ``L`` tokens: ``min(1024, L // 4)``."""
    return max(1, min(MAX_DEFAULT_WINDOW, L // 4))


def reach(L: int, G: int, W: int) -> int:
    """Longest sequence Self-Extend can cover: ``(L - W) * G + W``."""
    return (L - W) * G + W


def satisfies_rule(L: int, N: int, G: int, W: int) -> bool:
    """Whether ``L/2 > W + (N - W)/G`` holds (exact rational arithmetic)."""
    return Fraction(L, 2) > W + Fraction(N - W, G)


def smallest_group(L: int, N: int, W: int) -> int:
    """Smallest integer ``G >= 1`` with ``L/2 > W + (N - W)/G``.

    Raises:
        PlanError: if ``W >= L/2``, where no ``G`` can satisfy the rule.
    """
    if 2 * W >= L:
        raise PlanError(
            f"window W={W} leaves no room for grouped positions: the rule {_RULE} needs "
            f"W < L/2 = {L / 2:g}; pass a smaller --window (default min(1024, L/4) = "
            f"{default_window(L)}) or give --group explicitly"
        )
    return max(1, 2 * (N - W) // (L - 2 * W) + 1)


def _rule_value(L: int, N: int, G: int, W: int) -> str:
    """The right-hand side ``W + (N-W)/G`` with its numbers, for messages."""
    value = W + (N - W) / G
    return f"{W} + ({N}-{W})/{G} = {value:.1f}"


# ---------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A Self-Extend plan for one context.

    Attributes:
        L: the model's trained context length, in tokens.
        N: the target context length, in tokens (the context llama.cpp allocates).
        G: the group size; 1 means plain attention (no Self-Extend).
        W: the neighbor window, in tokens (unused when ``G == 1``).
        reach: the longest length the plan covers, ``(L - W) * G + W``.
        self_extend: whether Self-Extend is on (``G > 1``).
        explanation: one line saying why these numbers.
        warning: set when user-given values violate the paper's rule
            ``L/2 > W + (N-W)/G`` while staying within reach; ``None`` otherwise.
    """

    L: int
    N: int
    G: int
    W: int
    reach: int
    self_extend: bool
    explanation: str
    warning: Optional[str] = None

    def reasoning(self) -> List[str]:
        """The arithmetic behind the plan, a few lines with the numbers filled in."""
        L, N, G, W = self.L, self.N, self.G, self.W
        if not self.self_extend:
            if N <= L:
                return [f"N = {N} <= L = {L}: the prompt fits the trained context, plain attention."]
            return [f"G = 1 turns Self-Extend off; reach = L = {L}."]
        holds = satisfies_rule(L, N, G, W)
        lines = [
            f"rule  {_RULE}:  {L / 2:g} {'>' if holds else '<='} {_rule_value(L, N, G, W)}"
            f"  ({'holds' if holds else 'violated'})",
        ]
        if G > 1 and holds:
            lines.append(
                f"      with G = {G - 1}:  {L / 2:g} "
                f"{'>' if satisfies_rule(L, N, G - 1, W) else '<='} {_rule_value(L, N, G - 1, W)}"
            )
        lines.append(f"reach (L-W)*G+W = ({L}-{W})*{G}+{W} = {self.reach} >= N = {N}")
        return lines


def plan(L: int, N: int, *, window: Optional[int] = None, group: Optional[int] = None) -> Plan:
    """Choose the Self-Extend group ``G`` and window ``W`` for reading ``N`` tokens.

    Rules:
        * ``N <= L`` and neither ``window`` nor ``group`` given: ``G = 1``, no Self-Extend.
        * ``W`` defaults to ``min(1024, L // 4)`` (the paper: W of L/4 to L/8 for
          Llama-2/Mistral-style models; pass a smaller ``window``, about 100 to 512,
          for Llama-3-style models).
        * ``G`` defaults to the smallest integer with ``L/2 > W + (N - W)/G``
          (needs ``W < L/2``).
        * A user-given ``G`` must be an integer ``>= 1`` and reach ``N``:
          ``N <= (L - W) * G + W``; one that reaches ``N`` but breaks the rule is
          accepted with ``Plan.warning`` set.

    Args:
        L: trained context length of the model, in tokens.
        N: target context length, in tokens.
        window: neighbor window ``W``; default ``None`` = ``min(1024, L // 4)``.
        group: group size ``G``; default ``None`` = the smallest satisfying the rule.

    Returns:
        The plan.

    Raises:
        PlanError: invalid numbers, ``W >= L/2`` with no ``group`` given, or
            ``N`` beyond the reach of the given ``group``.
    """
    _check_int("trained context L", L, minimum=1)
    _check_int("target context N", N, minimum=1, fix="pass a positive --target-ctx")
    if window is not None:
        _check_int("window W", window, minimum=1, fix=f"pass 0 < --window < L = {L}")
        if window >= L:
            raise PlanError(
                f"window W={window} is invalid: 0 < W < L = {L} is required; pass a smaller --window"
            )
    if group is not None:
        _check_int("group G", group, minimum=1, fix="pass --group >= 1 (1 turns Self-Extend off)")

    # plain attention: the prompt fits and the user asked for nothing else
    if N <= L and window is None and group is None:
        W = default_window(L)
        return Plan(
            L,
            N,
            1,
            W,
            L,
            False,
            f"N={N} <= L={L}: the prompt fits the trained context; plain attention, no Self-Extend.",
        )

    W = default_window(L) if window is None else window
    w_rule = "default min(1024, L/4)" if window is None else "given"

    if group is None:
        G = smallest_group(L, N, W)
        r = reach(L, G, W)
        if G == 1:
            return Plan(
                L,
                N,
                1,
                W,
                r,
                False,
                f"G=1 already satisfies {_RULE} for N={N}, W={W}: plain attention, no Self-Extend.",
            )
        explanation = (
            f"W={W} ({w_rule}); G={G} is the smallest group with {_RULE}: "
            f"{L / 2:g} > {_rule_value(L, N, G, W)}; reach (L-W)*G+W = {r}."
        )
        return Plan(L, N, G, W, r, True, explanation)

    G = group
    r = reach(L, G, W)
    if N > r:
        need = -(-(N - W) // (L - W))  # ceil((N - W) / (L - W))
        raise PlanError(
            f"target N={N} is beyond the reach (L-W)*G+W = ({L}-{W})*{G}+{W} = {r} of group G={G}, "
            f"window W={W}; pass --group {need} or more, or a smaller --target-ctx"
        )
    if G == 1:
        return Plan(L, N, 1, W, r, False, f"G=1 (given) turns Self-Extend off; N={N} <= L={L}.")
    warning = None
    if not satisfies_rule(L, N, G, W):
        better = smallest_group(L, N, W) if 2 * W < L else None
        fix = f"G={better} satisfies it" if better is not None else f"it needs W < L/2 = {L / 2:g}"
        warning = (
            f"G={G}, W={W} break the paper's rule {_RULE}: {L / 2:g} <= {_rule_value(L, N, G, W)}; "
            f"quality may drop ({fix})"
        )
    explanation = f"G={G} (given), W={W} ({w_rule}); reach (L-W)*G+W = {r} >= N={N}."
    return Plan(L, N, G, W, r, True, explanation, warning)


def _check_int(what: str, value: object, *, minimum: int, fix: str = "") -> None:
    """Raise :class:`PlanError` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{what} must be an integer, got {value!r}" + (f"; {fix}" if fix else ""))
    if value < minimum:
        raise PlanError(f"{what}={value} is invalid: it must be >= {minimum}" + (f"; {fix}" if fix else ""))
