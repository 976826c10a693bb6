"""The first slice against torch.autograd, torch's modules and an element-wise SymPy run."""

import numpy as np
import pytest
import torch
from conftest import derived

from validation.harness import run_passes
from validation.inputs import random_inputs
from validation.references import REFERENCES, adam_reference
from validation.sympy_eval import evaluate
from validation.tolerances import TOLERANCES

SIZES = {
    "mse": {"B": 5, "d": 3},
    "cross-entropy": {"B": 6, "C": 7},
    "cross-entropy-soft": {"B": 6, "C": 7},
    "batchnorm": {"N": 9, "d": 4},
    "adam": {"P": 11},
}
TINY = {
    "mse": {"B": 2, "d": 3},
    "cross-entropy": {"B": 2, "C": 3},
    "cross-entropy-soft": {"B": 2, "C": 3},
    "batchnorm": {"N": 3, "d": 2},
    "adam": {"P": 3},
}
DIFFERENTIABLE = ["mse", "cross-entropy", "cross-entropy-soft", "batchnorm"]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))]


def _inputs(name, dims, seed, dtype=torch.float64, scale=1.0, device="cpu"):
    c, d = derived(name)
    ref = REFERENCES[name]
    rng = np.random.default_rng(seed)
    initial = ref.initial(dims, dtype, "cpu") if ref.initial else None
    values = random_inputs(c, d, dims, rng, ref.hypers)
    out = {}
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            v = torch.tensor(v * (scale if k in ("z", "yhat", "x") else 1.0), dtype=dtype,
                             device=device)
        out[k] = v
    if initial:
        out.update(initial)
    return out


def _np(v):
    return v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", DIFFERENTIABLE)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_torch_autograd(name, seed, device):
    c, d = derived(name)
    values = _inputs(name, SIZES[name], seed, device=device)
    ours = run_passes(d, values, backend="torch")
    theirs = REFERENCES[name].run(values)
    fused = run_passes(d, values, backend="torch", passes=(next(iter(c.passes)), "gradient"))
    tol = TOLERANCES[torch.float64]
    for key, expected in theirs.items():
        torch.testing.assert_close(ours[key], expected, **tol, msg=f"{name}: {key}")
        if key.startswith("grad_"):
            torch.testing.assert_close(fused[key], expected, **tol,
                                       msg=f"{name}: fused {key}")


@pytest.mark.parametrize("name", sorted(SIZES))
def test_generated_numpy_and_torch_agree_with_sympy(name):
    c, d = derived(name)
    dims = TINY[name]
    values = _inputs(name, dims, seed=7)
    as_numpy = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
    np_out = run_passes(d, as_numpy, backend="numpy")
    torch_out = run_passes(d, values, backend="torch")
    env = dict(as_numpy)
    checked = 0
    for pass_name, program in d.programs.items():
        sym = evaluate(program, env, dims)
        env.update(sym)
        for key, want in sym.items():
            if key in np_out:
                np.testing.assert_allclose(np_out[key], want, rtol=1e-10, atol=1e-12,
                                           err_msg=f"{name}.{pass_name}: {key} (numpy)")
                np.testing.assert_allclose(_np(torch_out[key]), want, rtol=1e-10,
                                           atol=1e-12,
                                           err_msg=f"{name}.{pass_name}: {key} (torch)")
                checked += 1
    assert checked >= len(d.programs)


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
    values = _inputs(name, {"B": 16, "C": 10}, seed=5, dtype=torch.float32, scale=1e4)
    assert values["z"].abs().max() > 1e4
    ours = run_passes(d, values, backend="torch")
    for key in ("L", "grad_z"):
        assert torch.isfinite(ours[key]).all(), key
    exact = REFERENCES[name].run({k: (v.double() if isinstance(v, torch.Tensor) else v)
                                  for k, v in values.items()})
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(ours["grad_z"].double(), exact["grad_z"], **tol)
    torch.testing.assert_close(ours["L"].double(), exact["L"], rtol=tol["rtol"], atol=1.0)
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
    values = _inputs("mse", SIZES["mse"], seed=0)
    ours = run_passes(dv, values, backend="torch")
    theirs = REFERENCES["mse"].run(values)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(ours["grad_yhat"], theirs["grad_yhat"],
                                   **TOLERANCES[torch.float64])
    assert sp.Symbol("d", integer=True, positive=True) not in dv.fused["yhat"].expr.free_symbols
