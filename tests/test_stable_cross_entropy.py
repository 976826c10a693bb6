"""Cross-entropy with a large common offset in the logits, and with masked (-inf) logits:
the generated code against torch, both measured against torch in float64."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from derivations import CATALOGUE
from symflop import derive

B, C = 64, 100


def _case(name: str, offset: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z64 = torch.randn(B, C, dtype=torch.float64, generator=gen) + offset
    if name == "cross-entropy":
        y64 = y32 = torch.randint(0, C, (B,), generator=gen)
    else:
        y64 = torch.softmax(torch.randn(B, C, dtype=torch.float64, generator=gen), -1)
        y32 = y64.float()
    return z64, y64, y32


@pytest.mark.parametrize("offset", [1e4, 1e6])
@pytest.mark.parametrize("name", ["cross-entropy", "cross-entropy-soft"])
def test_a_common_offset_cancels_per_sample(name, offset):
    """Once the two sums (log-sum-exp, and the logits at the labels) were each about
    B * offset and their difference lost the loss: error 5.7e-5 at 1e4, torch 1.6e-7."""
    z64, y64, y32 = _case(name, offset)
    truth = float(F.cross_entropy(z64, y64))
    theirs = abs(float(F.cross_entropy(z64.float(), y32)) - truth)
    ours = float(derive(CATALOGUE[name]()).compiled("forward")(
        backend="torch", z=z64.float(), y=y32)["L"])
    assert abs(ours - truth) <= 4 * theirs + 1e-7, (ours, truth, theirs)


def test_the_rule_that_cancels_the_offset_fires_and_is_counted():
    d = derive(CATALOGUE["cross-entropy"]())
    stage = next(s for s in d.stages if s.name == "stabilized")
    assert ("center-logsumexp", "forward", "L_sum_part2") in stage.fired
    # Hand count of what the stabilize stage adds to the forward: the max (B*C - B
    # comparisons), the shift (B*C subtractions), adding the max back (B), and the
    # centering at the labels (B subtractions): 2*B*C + B.
    import sympy as sp
    reused = d.counts("forward", "default", "reused").total
    stabilized = d.counts("forward", "default", "stabilized").total
    Bs, Cs = sorted(stabilized.free_symbols, key=str)
    assert sp.expand(stabilized - reused) == 2 * Bs * Cs + Bs


def test_masked_logits_give_torchs_finite_loss():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(B, C, generator=gen)
    z[:, :10] = -float("inf")  # masked classes, never the label
    y = torch.randint(10, C, (B,), generator=gen)
    ours = derive(CATALOGUE["cross-entropy"]()).compiled("forward")(
        backend="torch", z=z, y=y, check=False)["L"]
    assert torch.isfinite(ours) and torch.allclose(ours, F.cross_entropy(z, y), rtol=1e-6)
