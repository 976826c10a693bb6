"""Checks of the optimizers beyond the per-component ones: counts by hand, state memory,
twenty steps against torch.optim (or the document's formula in plain torch), the place of
epsilon, and Nesterov's look-ahead form against torch's reformulation."""

import pytest
import sympy as sp
import torch
from checks import DEVICES
from conftest import as_written, derived

from validation.ref_optimizers import REFERENCES, TRAJECTORY_REFERENCES, run_optimizer
from validation.tolerances import TOLERANCES

TOL = TOLERANCES[torch.float64]
P_SYM = sp.Symbol("P", integer=True, positive=True)

# Step FLOPs at P = 10 (default convention), counted by hand from the equations.
HAND_COUNTS = {
    # theta - lr*g: 10 mul + 10 sub
    "sgd": 10 + 10,
    # v = mu*v + g: 10 mul + 10 add; theta - lr*v: 10 mul + 10 sub
    "momentum": 20 + 20,
    # v: 20; theta - lr*(g + mu*v): 10 mul (mu*v) + 10 add + 10 mul (lr) + 10 sub
    "nesterov": 20 + 40,
    # v: 20; theta: 20; theta_ahead = theta - lr*mu*v: 1 mul (lr*mu) + 10 mul + 10 sub
    "nesterov-lookahead": 20 + 20 + 21,
    # G + g**2: 10 mul + 10 add; theta - lr*g/(sqrt(G) + eps):
    # 10 sqrt + 10 add + 10 mul + 10 div + 10 sub
    "adagrad": 20 + 50,
    # the same with sqrt(G + eps): 10 add + 10 sqrt, the rest unchanged
    "adagrad-eps-inside": 20 + 50,
    # alpha*v (10 mul) + (1 - alpha) (1 sub) * g**2 (10 mul, 10 mul) + 10 add; theta as AdaGrad
    "rmsprop": 41 + 50,
    "rmsprop-eps-inside": 41 + 50,
    # t + 1: 1; m: 10 mul + 1 sub + 10 mul + 10 add = 31; v: 41 (as RMSProp);
    # mhat: beta1**t (1) + 1 - (1) + 10 div = 12; vhat: 12;
    # theta: 10 sqrt + 10 add + 10 mul + 10 div + 10 sub = 50
    "adam": 1 + 31 + 41 + 12 + 12 + 50,
    # as Adam, plus lam*theta (10 mul) and its addition to the update (10 add)
    "adamw": 1 + 31 + 41 + 12 + 12 + 70,
}

# State in float32 bytes, at P = 10, by hand: 4 bytes per state element.
HAND_STATE_BYTES = {
    "sgd": 0,
    "momentum": 40, "nesterov": 40, "nesterov-lookahead": 40,  # v
    "adagrad": 40, "adagrad-eps-inside": 40,                   # G
    "rmsprop": 40, "rmsprop-eps-inside": 40,                   # v
    "adam": 4 * (10 + 10 + 1), "adamw": 4 * (10 + 10 + 1),     # m, v, t
}

OPTIMIZERS = list(HAND_COUNTS)

# Hyperparameters of the twenty-step runs: none is a component's default, all differ from
# one another within a component, and epsilon is large enough (1e-3 against sqrt(v) of
# order 1) to change the trajectory by far more than the tolerance.
TRAJECTORY_HYPERS = {
    "sgd": {"lr": 0.05},
    "momentum": {"lr": 0.05, "mu": 0.7},
    "nesterov": {"lr": 0.05, "mu": 0.7},
    "adagrad": {"lr": 0.05, "epsilon": 1e-3},
    "adagrad-eps-inside": {"lr": 0.05, "epsilon": 1e-3},
    "rmsprop": {"lr": 0.02, "alpha": 0.8, "epsilon": 1e-3},
    "rmsprop-eps-inside": {"lr": 0.02, "alpha": 0.8, "epsilon": 1e-3},
    "adam": {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-3},
    "adamw": {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-3, "lam": 0.3},
}
WITH_TORCH_OPTIM = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
EPS_INSIDE = {"adagrad-eps-inside": "adagrad", "rmsprop-eps-inside": "rmsprop"}


def _initial_state(c, P, device):
    """The state torch.optim starts from: zeros, and a step count of 0."""
    return {n: (0.0 if t.is_scalar else torch.zeros(P, dtype=torch.float64, device=device))
            for n, t in c.tensors.items() if t.role.value == "state"}


def _ours(name, theta0, grads, hypers):
    """Parameters and state after the generated step (torch backend) runs once per gradient."""
    c, d = derived(name)
    step = d.compiled("step")
    state = {"theta": theta0, **_initial_state(c, theta0.numel(), theta0.device)}
    for g in grads:
        out = step(backend="torch", g=g, **hypers, **state)
        state = {k: out[k] for k in state}
    return state


def _random_run(device, P=50, steps=20, seed=3):
    gen = torch.Generator().manual_seed(seed)
    theta0 = torch.randn(P, dtype=torch.float64, generator=gen).to(device)
    grads = [torch.randn(P, dtype=torch.float64, generator=gen).to(device)
             for _ in range(steps)]
    return theta0, grads


def _assert_same(ours, want, name):
    assert set(ours) == set(want), name
    for k, expected in want.items():
        if isinstance(expected, float):
            assert ours[k] == expected, f"{name}: {k}"
        else:
            torch.testing.assert_close(ours[k], expected, **TOL, msg=f"{name}: {k}")


# -- counts and memory ----------------------------------------------------------------------

@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_flops_match_a_hand_count(name):
    c, d = derived(name)
    assert as_written(d, "step")(P=10) == HAND_COUNTS[name]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_memory_matches_a_hand_count(name):
    c, d = derived(name)
    assert d.memory.bytes("state", "float32").subs(P_SYM, 10) == HAND_STATE_BYTES[name]


def test_every_optimizer_is_counted_and_checked():
    from derivations.optimizers import COMPONENTS
    assert set(COMPONENTS) == set(HAND_COUNTS) == set(REFERENCES)
    assert set(TRAJECTORY_HYPERS) | {"nesterov-lookahead"} == set(COMPONENTS)


@pytest.mark.parametrize("name", list(TRAJECTORY_HYPERS))
def test_trajectory_hyperparameters_are_distinct_and_not_defaults(name):
    c, _ = derived(name)
    hypers = TRAJECTORY_HYPERS[name]
    assert set(hypers) == {n for n, t in c.tensors.items() if t.role.value == "hyperparameter"}
    assert len(set(hypers.values())) == len(hypers)
    for k, v in hypers.items():
        assert c.defaults.get(k) != v, f"{name}: {k} is the default"


# -- twenty steps against torch.optim ---------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", WITH_TORCH_OPTIM)
def test_step_matches_torch_optim_over_twenty_steps(name, foreach, device):
    theta0, grads = _random_run(device)
    hypers = TRAJECTORY_HYPERS[name]
    ours = _ours(name, theta0, grads, hypers)
    want = TRAJECTORY_REFERENCES[name](theta0, grads, foreach=foreach, **hypers)
    _assert_same(ours, want, name)
    if "t" in want:
        assert want["t"] == 20
    # The run moved the parameters by far more than the tolerance.
    assert (ours["theta"] - theta0).abs().max() > 1e-2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(EPS_INSIDE))
def test_eps_inside_variant_matches_the_documents_formula(name, device):
    theta0, grads = _random_run(device)
    hypers = TRAJECTORY_HYPERS[name]
    _assert_same(_ours(name, theta0, grads, hypers),
                 TRAJECTORY_REFERENCES[name](theta0, grads, **hypers), name)


@pytest.mark.parametrize("name", list(EPS_INSIDE))
def test_eps_placement_matters_at_large_epsilon(name):
    """With eps = 0.1 the document's sqrt(v + eps) and torch's sqrt(v) + eps give
    trajectories further apart than the tolerance; the torch-form component follows torch."""
    torch_form = EPS_INSIDE[name]
    theta0, grads = _random_run("cpu")
    hypers = {**TRAJECTORY_HYPERS[name], "epsilon": 0.1}
    inside = _ours(name, theta0, grads, hypers)
    outside = _ours(torch_form, theta0, grads, hypers)
    optim = TRAJECTORY_REFERENCES[torch_form](theta0, grads, **hypers)
    torch.testing.assert_close(outside["theta"], optim["theta"], **TOL)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(inside["theta"], optim["theta"], **TOL)
    assert (inside["theta"] - optim["theta"]).abs().max() > 1e-3
    # The accumulated state is the same: only the update differs.
    state = "G" if "G" in inside else "v"
    torch.testing.assert_close(inside[state], optim[state], **TOL)


# -- Nesterov: the look-ahead form against torch's reformulation -----------------------------

def _quadratic(P=8, seed=5):
    """A random positive-definite quadratic 0.5*x'Ax - b'x: its gradient is A x - b."""
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(P, P, dtype=torch.float64, generator=gen)
    A = M @ M.T / P + 0.5 * torch.eye(P, dtype=torch.float64)
    b = torch.randn(P, dtype=torch.float64, generator=gen)
    x0 = torch.randn(P, dtype=torch.float64, generator=gen)
    return A, b, x0


@pytest.mark.parametrize("foreach", [False, True])
def test_nesterov_lookahead_follows_torch_nesterov_on_a_quadratic(foreach):
    """torch.optim.SGD(nesterov=True)'s parameter is the look-ahead point theta - lr*mu*v;
    the gradient at each step is taken at that point, so the loss couples the steps."""
    A, b, x0 = _quadratic()
    hypers = {"lr": 0.1, "mu": 0.8}
    steps = 20
    _, s, torch_path = run_optimizer(
        lambda ps: torch.optim.SGD(ps, lr=hypers["lr"], momentum=hypers["mu"], dampening=0,
                                   nesterov=True, foreach=foreach),
        x0, range(steps), grad_fn=lambda x: A @ x - b)
    _, d = derived("nesterov-lookahead")
    step = d.compiled("step")
    theta, v, ahead = x0, torch.zeros_like(x0), x0      # v = 0: the look-ahead point is theta
    for k in range(steps):
        out = step(backend="torch", g=A @ ahead - b, theta=theta, v=v, **hypers)
        theta, v, ahead = out["theta"], out["v"], out["theta_ahead"]
        torch.testing.assert_close(ahead, torch_path[k], **TOL, msg=f"step {k + 1}")
        torch.testing.assert_close(ahead, theta - hypers["lr"] * hypers["mu"] * v, **TOL)
    torch.testing.assert_close(v, s["momentum_buffer"], **TOL)
    # The parameters moved, and theta itself is not torch's parameter.
    assert (ahead - x0).abs().max() > 1e-1
    assert (theta - ahead).abs().max() > 1e-3


def test_the_documents_lookahead_sign_gives_another_trajectory():
    """The document's look-ahead point theta + mu*v (with theta <- theta - lr*v) does not
    reproduce Nesterov's method: on the same quadratic it leaves torch's trajectory."""
    A, b, x0 = _quadratic()
    lr, mu = 0.1, 0.8
    _, _, torch_path = run_optimizer(
        lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu, dampening=0, nesterov=True),
        x0, range(20), grad_fn=lambda x: A @ x - b)
    theta, v = x0.clone(), torch.zeros_like(x0)
    for _ in range(20):
        v = mu * v + (A @ (theta + mu * v) - b)
        theta = theta - lr * v
    assert (theta + mu * v - torch_path[-1]).abs().max() > 1e-3
    assert (theta - lr * mu * v - torch_path[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_nesterov_forms_agree_on_random_gradients(device):
    """Fed the same gradients, torch's form and the look-ahead point of the document's form
    move identically (the change of variables holds whatever the gradients are)."""
    theta0, grads = _random_run(device)
    hypers = TRAJECTORY_HYPERS["nesterov"]
    torch_form = _ours("nesterov", theta0, grads, hypers)
    _, d = derived("nesterov-lookahead")
    step = d.compiled("step")
    state = {"theta": theta0, "v": torch.zeros_like(theta0)}
    for g in grads:
        out = step(backend="torch", g=g, **hypers, **state)
        state = {"theta": out["theta"], "v": out["v"]}
    torch.testing.assert_close(out["theta_ahead"], torch_form["theta"], **TOL)
    torch.testing.assert_close(out["v"], torch_form["v"], **TOL)
