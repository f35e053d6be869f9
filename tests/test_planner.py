"""The planner: G is the smallest group satisfying L/2 > W + (N-W)/G, and every error path."""

from fractions import Fraction

import pytest

from se_local.errors import PlanError
from se_local.planner import default_window, plan, reach, satisfies_rule, smallest_group

LS = [256, 2048, 4096, 8192, 32768]


def rule(L, N, G, W):
    """The paper's eq. 5, written independently of the planner."""
    return Fraction(L, 2) > W + Fraction(N - W, G)


def windows(L):
    return [None] + sorted({1, 16, max(1, L // 16), max(1, L // 8), L // 4, L // 2 - 1})


def targets(L):
    return sorted({L + 1, L + 7, 2 * L - 1, 2 * L, 3 * L + 5, 4 * L, 8 * L, 16 * L + 3})


# ---------------------------------------------------------------------------
# Documented examples
# ---------------------------------------------------------------------------


def test_smollm2_examples():
    p = plan(8192, 16384)
    assert (p.L, p.N, p.G, p.W, p.self_extend) == (8192, 16384, 6, 1024, True)
    assert p.reach == (8192 - 1024) * 6 + 1024
    p = plan(8192, 32768)
    assert (p.G, p.W, p.reach) == (11, 1024, 79872)
    assert p.warning is None


def test_default_window_rule():
    assert [default_window(L) for L in LS] == [64, 512, 1024, 1024, 1024]


@pytest.mark.parametrize("L", LS)
def test_within_trained_length_is_plain(L):
    for N in (1, L // 2, L - 1, L):
        p = plan(L, N)
        assert (p.G, p.self_extend, p.reach, p.warning) == (1, False, L, None)
        assert "no Self-Extend" in p.explanation


# ---------------------------------------------------------------------------
# The grid: minimal G, within reach
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("L", LS)
def test_chosen_group_is_minimal(L):
    for W in windows(L):
        for N in targets(L):
            p = plan(L, N, window=W)
            w = default_window(L) if W is None else W
            assert p.W == w
            assert rule(L, N, p.G, w), (L, N, w, p.G)
            if p.G > 1:
                assert not rule(L, N, p.G - 1, w), (L, N, w, p.G)
            assert p.self_extend == (p.G > 1)
            assert p.reach == (L - w) * p.G + w >= N
            assert p.warning is None
            assert "\n" not in p.explanation


@pytest.mark.parametrize("L", LS)
def test_integer_formula_matches_rule(L):
    for W in windows(L):
        w = default_window(L) if W is None else W
        for N in targets(L):
            G = smallest_group(L, N, w)
            assert G == max(1, 2 * (N - w) // (L - 2 * w) + 1)
            assert satisfies_rule(L, N, G, w) == rule(L, N, G, w) is True


@pytest.mark.parametrize("L", LS)
def test_given_group_up_to_reach(L):
    W = default_window(L)
    for G in (2, 3, 8):
        r = reach(L, G, W)
        for N in (L + 1, (L + r) // 2, r):
            p = plan(L, N, group=G)
            assert (p.G, p.W, p.reach, p.self_extend) == (G, W, r, True)
            assert (p.warning is None) == rule(L, N, G, W)
        with pytest.raises(PlanError, match=r"beyond the reach"):
            plan(L, r + 1, group=G)


def test_window_given_within_trained_length_enables_self_extend():
    p = plan(8192, 8192, window=1024)
    assert p.self_extend and p.G == 3 and rule(8192, 8192, 3, 1024) and not rule(8192, 8192, 2, 1024)
    p = plan(8192, 2000, window=1024)  # G = 1 already satisfies the rule
    assert not p.self_extend and p.G == 1


def test_rule_violation_is_a_warning_not_an_error():
    p = plan(8192, 16384, group=4)
    assert p.self_extend and p.G == 4
    assert p.warning and "L/2 > W + (N-W)/G" in p.warning and "G=6" in p.warning
    p = plan(8192, 16384, window=5000, group=8)  # W >= L/2: no G satisfies the rule
    assert p.warning and "W < L/2" in p.warning


def test_reasoning_has_the_numbers():
    lines = plan(8192, 32768).reasoning()
    assert any("4096 > 1024 + (32768-1024)/11" in line for line in lines)
    assert any("G = 10" in line for line in lines)
    assert any("79872" in line for line in lines)


# ---------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(L=8192, N=0), r"target context N=0 is invalid"),
        (dict(L=8192, N=-5), r"target context N=-5 is invalid"),
        (dict(L=8192, N=1.5), r"target context N must be an integer"),
        (dict(L=0, N=100), r"trained context L=0 is invalid"),
        (dict(L=8192, N=16384, window=0), r"window W=0 is invalid.*--window"),
        (dict(L=8192, N=16384, window=-1), r"window W=-1 is invalid"),
        (dict(L=8192, N=16384, window=8192), r"0 < W < L = 8192"),
        (dict(L=8192, N=16384, window=10000), r"0 < W < L = 8192"),
        (dict(L=8192, N=16384, window=4096), r"W < L/2 = 4096.*--window"),
        (dict(L=8192, N=16384, window=6000), r"W < L/2"),
        (dict(L=8192, N=16384, group=0), r"group G=0 is invalid.*--group >= 1"),
        (dict(L=8192, N=16384, group=-2), r"group G=-2 is invalid"),
        (dict(L=8192, N=16384, group=2.5), r"group G must be an integer"),
        (dict(L=8192, N=16384, group=True), r"group G must be an integer"),
        (dict(L=8192, N=16384, group=1), r"beyond the reach .* = 8192 .*--group 3 or more"),
        (dict(L=8192, N=100000, group=11), r"\(8192-1024\)\*11\+1024 = 79872.*--group 14 or more"),
        (dict(L=8192, N=16384, window=100, group=1), r"beyond the reach"),
    ],
)
def test_errors(kwargs, match):
    L, N = kwargs.pop("L"), kwargs.pop("N")
    with pytest.raises(PlanError, match=match) as e:
        plan(L, N, **kwargs)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)  # PlanError is also a ValueError
