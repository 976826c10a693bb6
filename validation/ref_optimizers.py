"""References for the optimizers: torch.optim, stepped on given gradients, and plain torch
implementations of the document's forms that torch.optim does not offer.

Each ``*_reference`` function takes the initial parameters, a list of gradients and the
component's hyperparameters (by the component's names), takes one step per gradient, and
returns the parameters and every state tensor under the component's names.  Optimizers
have no gradient pass, so their ``Reference.run`` is None; the multi-step comparisons are
in tests/test_optimizers.py.
"""

from __future__ import annotations

import torch

from validation.ref_common import Reference


def adam_reference(theta0, grads, lr, beta1, beta2, epsilon, foreach=None):
    """Parameters and state after ``torch.optim.Adam`` takes one step per gradient."""
    p = torch.nn.Parameter(theta0.detach().clone())
    opt = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=epsilon, foreach=foreach)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    s = opt.state[p]
    return {"theta": p.detach(), "m": s["exp_avg"], "v": s["exp_avg_sq"], "t": float(s["step"])}


def run_optimizer(make, theta0, grads, grad_fn=None):
    """Step a torch optimizer ``make([p])`` once per gradient (or per ``grad_fn(p)`` call).

    Returns the final parameter, the optimizer's state for it, and the parameter after
    each step.
    """
    p = torch.nn.Parameter(theta0.detach().clone())
    opt = make([p])
    path = []
    for g in grads:
        p.grad = (g if grad_fn is None else grad_fn(p.detach())).clone()
        opt.step()
        path.append(p.detach().clone())
    return p.detach(), opt.state[p], path


def sgd_reference(theta0, grads, lr, foreach=None):
    p, _, _ = run_optimizer(lambda ps: torch.optim.SGD(ps, lr=lr, foreach=foreach),
                            theta0, grads)
    return {"theta": p}


def momentum_reference(theta0, grads, lr, mu, nesterov=False, foreach=None):
    """``torch.optim.SGD(momentum=mu, dampening=0, nesterov=...)``; v is its momentum buffer."""
    def make(ps):
        return torch.optim.SGD(ps, lr=lr, momentum=mu, dampening=0, nesterov=nesterov,
                               foreach=foreach)
    p, s, _ = run_optimizer(make, theta0, grads)
    return {"theta": p, "v": s["momentum_buffer"]}


def nesterov_reference(theta0, grads, lr, mu, foreach=None):
    return momentum_reference(theta0, grads, lr, mu, nesterov=True, foreach=foreach)


def nesterov_lookahead_reference(theta0, grads, lr, mu, foreach=None):
    """torch's ``SGD(nesterov=True)`` parameter is the look-ahead form's look-ahead point
    (theta - lr*mu*v), when both start from the same parameters with v = 0."""
    want = momentum_reference(theta0, grads, lr, mu, nesterov=True, foreach=foreach)
    return {"theta_ahead": want["theta"], "v": want["v"]}


def adagrad_reference(theta0, grads, lr, epsilon, foreach=None):
    """``torch.optim.Adagrad`` with lr_decay=0, initial_accumulator_value=0; G is its sum."""
    def make(ps):
        return torch.optim.Adagrad(ps, lr=lr, lr_decay=0, eps=epsilon,
                                   initial_accumulator_value=0, foreach=foreach)
    p, s, _ = run_optimizer(make, theta0, grads)
    return {"theta": p, "G": s["sum"]}


def rmsprop_reference(theta0, grads, lr, alpha, epsilon, foreach=None):
    """``torch.optim.RMSprop`` (momentum=0, centered=False); v is its square_avg."""
    def make(ps):
        return torch.optim.RMSprop(ps, lr=lr, alpha=alpha, eps=epsilon, foreach=foreach)
    p, s, _ = run_optimizer(make, theta0, grads)
    return {"theta": p, "v": s["square_avg"]}


def adamw_reference(theta0, grads, lr, beta1, beta2, epsilon, lam, foreach=None):
    """``torch.optim.AdamW(weight_decay=lam)``."""
    def make(ps):
        return torch.optim.AdamW(ps, lr=lr, betas=(beta1, beta2), eps=epsilon,
                                 weight_decay=lam, foreach=foreach)
    p, s, _ = run_optimizer(make, theta0, grads)
    return {"theta": p, "m": s["exp_avg"], "v": s["exp_avg_sq"], "t": float(s["step"])}


def adagrad_eps_inside_reference(theta0, grads, lr, epsilon):
    """The document's AdaGrad, plain torch: G += g**2; theta -= lr*g/sqrt(G + eps)."""
    theta, G = theta0.clone(), torch.zeros_like(theta0)
    for g in grads:
        G = G + g * g
        theta = theta - lr * g / torch.sqrt(G + epsilon)
    return {"theta": theta, "G": G}


def rmsprop_eps_inside_reference(theta0, grads, lr, alpha, epsilon):
    """The document's RMSProp, plain torch: v = a*v + (1-a)*g**2; theta -= lr*g/sqrt(v + eps)."""
    theta, v = theta0.clone(), torch.zeros_like(theta0)
    for g in grads:
        v = alpha * v + (1 - alpha) * g * g
        theta = theta - lr * g / torch.sqrt(v + epsilon)
    return {"theta": theta, "v": v}


# By component name: the function giving parameters and state after a run from the
# optimizer's initial state (zeros; a step count of 0).
TRAJECTORY_REFERENCES = {
    "sgd": sgd_reference,
    "momentum": momentum_reference,
    "nesterov": nesterov_reference,
    "nesterov-lookahead": nesterov_lookahead_reference,
    "adagrad": adagrad_reference,
    "adagrad-eps-inside": adagrad_eps_inside_reference,
    "rmsprop": rmsprop_reference,
    "rmsprop-eps-inside": rmsprop_eps_inside_reference,
    "adam": adam_reference,
    "adamw": adamw_reference,
}


def _zeros_state(dims, dtype, device):
    P = dims["P"]
    z = torch.zeros(P, dtype=dtype, device=device)
    return {"m": z, "v": z.clone(), "t": 0.0}


def _adamw_state(dims, dtype, device):
    """A state part-way through training, so that one step exercises every term."""
    gen = torch.Generator().manual_seed(17)
    P = dims["P"]
    m = 0.1 * torch.randn(P, dtype=dtype, generator=gen)
    v = 0.1 * torch.rand(P, dtype=dtype, generator=gen)
    return {"m": m.to(device), "v": v.to(device), "t": 4.0}


# Hyperparameters differ from the components' defaults and from each other, so that a
# swapped or ignored hyperparameter changes the result.  State not given by ``initial`` is
# drawn at random (non-negative where the state tensor says so).
REFERENCES = {
    "sgd": Reference(sizes={"P": 11}, tiny={"P": 3}, hypers={"lr": 0.05}),
    "momentum": Reference(sizes={"P": 11}, tiny={"P": 3}, hypers={"lr": 0.05, "mu": 0.7}),
    "nesterov": Reference(sizes={"P": 11}, tiny={"P": 3}, hypers={"lr": 0.05, "mu": 0.7}),
    "nesterov-lookahead": Reference(sizes={"P": 11}, tiny={"P": 3},
                                    hypers={"lr": 0.05, "mu": 0.7}),
    "adagrad": Reference(sizes={"P": 11}, tiny={"P": 3},
                         hypers={"lr": 0.05, "epsilon": 1e-3}),
    "adagrad-eps-inside": Reference(sizes={"P": 11}, tiny={"P": 3},
                                    hypers={"lr": 0.05, "epsilon": 1e-3}),
    "rmsprop": Reference(sizes={"P": 11}, tiny={"P": 3},
                         hypers={"lr": 0.02, "alpha": 0.8, "epsilon": 1e-3}),
    "rmsprop-eps-inside": Reference(sizes={"P": 11}, tiny={"P": 3},
                                    hypers={"lr": 0.02, "alpha": 0.8, "epsilon": 1e-3}),
    # Adam with non-default betas so that a swapped beta1/beta2 cannot pass.
    "adam": Reference(sizes={"P": 11}, tiny={"P": 3},
                      hypers={"lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-8},
                      initial=_zeros_state),
    "adamw": Reference(sizes={"P": 11}, tiny={"P": 3},
                       hypers={"lr": 2e-2, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-3,
                               "lam": 0.3},
                       initial=_adamw_state),
}
