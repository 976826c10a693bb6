"""Checks of the first slice beyond the per-component ones: Adam over twenty steps against
torch.optim, cross-entropy at extreme logits, and an injected fault."""

import pytest
import torch
from checks import DEVICES, inputs
from conftest import derived

from validation.harness import run_passes
from validation.references import REFERENCES, adam_reference
from validation.tolerances import TOLERANCES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("foreach", [False, True])
def test_adam_matches_torch_optim_over_twenty_steps(foreach, device):
    c, d = derived("adam")
    ref = REFERENCES["adam"]
    gen = torch.Generator().manual_seed(3)
    P = 50
    theta0 = torch.randn(P, dtype=torch.float64, generator=gen).to(device)
    grads = [torch.randn(P, dtype=torch.float64, generator=gen).to(device) for _ in range(20)]
    state = {"theta": theta0, **ref.initial({"P": P}, torch.float64, device)}
    step = d.compiled("step")
    for g in grads:
        out = step(backend="torch", g=g, **ref.hypers, **state)
        state = {k: out[k] for k in ("theta", "m", "v", "t")}
    want = adam_reference(theta0, grads, foreach=foreach, **ref.hypers)
    assert state["t"] == want["t"] == 20
    for k in ("theta", "m", "v"):
        torch.testing.assert_close(state[k], want[k], **TOLERANCES[torch.float64], msg=k)
    # The update moved the parameters by far more than the tolerance.
    assert (state["theta"] - theta0).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["cross-entropy", "cross-entropy-soft"])
def test_cross_entropy_is_stable_for_float32_logits_of_magnitude_1e4(name):
    c, d = derived(name)
    values = inputs(name, {"B": 16, "C": 10}, seed=5, dtype=torch.float32, scale=1e4)
    assert values["z"].abs().max() > 1e4
    ours = run_passes(d, values, backend="torch")
    for key in ("L", "grad_z"):
        assert torch.isfinite(ours[key]).all(), key
    exact = REFERENCES[name].run({k: (v.double() if isinstance(v, torch.Tensor)
                                      and v.is_floating_point() else v)
                                  for k, v in values.items()})
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(ours["grad_z"].double(), exact["grad_z"], **tol)
    # |L| is about 1e4 here; float32 rounding of the loss is about 1e-7 relative (torch's own
    # float32 loss shows the same), far inside the float32 tolerance.
    torch.testing.assert_close(ours["L"].double(), exact["L"], **tol)
    # The naive formula overflows here, so this input really exercises the rewrite.
    naive = torch.exp(values["z"]) / torch.exp(values["z"]).sum(dim=1, keepdim=True)
    assert not torch.isfinite(naive).all()


def test_a_perturbed_equation_is_caught():
    """An injected fault (MSE averaged over B only) must make the torch check fail."""
    import sympy as sp

    from symflop import Component, derive, total

    c = Component("mse-wrong", "Test", "mse with a wrong normalisation")
    B, d = c.dim("B d")
    i, j = c.index(i=B, j=d)
    yhat, y = c.input("yhat", (B, d)), c.target("y", (B, d))
    L = c.output("L")
    c.assign("forward", L, total((yhat[i, j] - y[i, j]) ** 2, i, j) / B)
    c.set_gradient(L, (yhat,))
    dv = derive(c, use_cache=False)
    values = inputs("mse", seed=0)
    ours = run_passes(dv, values, backend="torch")
    theirs = REFERENCES["mse"].run(values)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(ours["grad_yhat"], theirs["grad_yhat"],
                                   **TOLERANCES[torch.float64])
    assert sp.Symbol("d", integer=True, positive=True) not in dv.fused["yhat"].expr.free_symbols
