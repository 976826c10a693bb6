"""Dynamic loss scaling against torch.amp.GradScaler: a run of steps in which some
gradients overflow (inf, -inf, NaN), the operation counts by hand, the state memory,
and the generated code's acceptance of non-finite gradients (and only of those)."""

import math

import pytest
import sympy as sp
import torch
from conftest import derived

from symflop import InputError
from validation.ref_precision import grad_scaler_step

HYPERS = {"growth": 3.0, "backoff": 0.25, "interval": 3}
P = 9
# Which step's gradients overflow, and with what.
BAD = {2: math.inf, 5: math.nan, 6: -math.inf}


def _gradients(steps: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    out = []
    for k in range(steps):
        g = torch.randn(P, dtype=torch.float64, generator=gen) * 1e3
        if k in BAD:
            g[k % P] = BAD[k]
        out.append(g)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("backend", ["numpy", "torch", "torch-compiled"])
def test_trajectory_matches_grad_scaler(backend, dtype):
    """Ten steps from a scale of 2**12 (2**16 in float16, GradScaler's default, which
    float16 itself cannot hold: the scale stays float32): the scale, the clean-step count
    and the unscaled gradients equal GradScaler's after every step (NaN where it has
    NaN)."""
    _c, d = derived("loss-scaling")
    unscale = d.compiled("unscale")
    s = 2.0 ** (16 if dtype == torch.float16 else 12)
    ours = {"S": s, "n": 0.0}
    theirs = dict(ours)
    scales = []
    for gs in _gradients(10):
        gs = gs.to(dtype)
        arg = gs.numpy() if backend == "numpy" else gs
        got = unscale(backend=backend, gs=arg, **ours, **HYPERS)
        want = grad_scaler_step({"gs": gs, "L": 1.0, **theirs, **HYPERS})
        assert torch.as_tensor(got["g"]).dtype == dtype
        torch.testing.assert_close(torch.as_tensor(got["g"]), want["g"], equal_nan=True,
                                   rtol=0, atol=0)
        ours = {"S": float(got["S"]), "n": float(got["n"])}
        theirs = {"S": float(want["S"]), "n": float(want["n"])}
        assert ours == theirs
        scales.append(ours["S"])
    # by hand: back off (x 1/4) at steps 2, 5 and 6; steps 7, 8, 9 are three clean steps
    # in a row, so the scale grows (x 3) at step 9 (steps 0, 1 were two: no growth)
    assert scales == [s, s, s / 4, s / 4, s / 4, s / 16, s / 64, s / 64, s / 64, 3 * s / 64]


def test_counts_by_hand():
    """unscale, per gradient: 1 division (by S), 2 tests (isinf, isnan), 1 addition (of
    the two) and 1 addition of the count: 5P - 1 with the sum's P - 1.  Once per step:
    (n + 1)/interval (1 add, 1 div, 1 floor), min(count, 1) (1 compare), the new S
    (growth - 1, grow*(...), + 1, 1 - found, times it, backoff*found, the sum, times S:
    4 add, 4 mul) and the new n (n + 1, grow*interval, the difference, 1 - found, times
    it: 3 add, 2 mul) as written (n + 1 and 1 - found twice: two equations)."""
    _c, d = derived("loss-scaling")
    Psym = sp.Symbol("P", integer=True, positive=True)
    c = d.counts("unscale", stage="written")
    assert sp.expand(c.total - (5 * Psym - 1 + 3 + 1 + 8 + 5)) == 0
    kinds = dict(c.by_kind)
    assert kinds["div"] == Psym + 1
    assert kinds["compare"] == 2 * Psym + 2
    assert kinds["mul"] == 6
    assert d.counts("scale").total == 1  # S * L
    assert dict(d.memory.state) == {"S": 1, "n": 1}


def test_only_the_checked_gradients_may_be_non_finite():
    """The gradients are tested for overflow, so Inf/NaN is accepted there; a NaN scale
    is still refused, naming it."""
    unscale = derived("loss-scaling")[1].compiled("unscale")
    gs = torch.tensor([1.0, math.nan], dtype=torch.float64)
    out = unscale(backend="torch", gs=gs, S=4.0, n=0.0, **HYPERS)
    assert float(out["S"]) == 1.0 and float(out["n"]) == 0.0
    with pytest.raises(InputError, match="S is nan"):
        unscale(backend="torch", gs=gs, S=math.nan, n=0.0, **HYPERS)
