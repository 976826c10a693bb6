"""Torch's own implementations of the catalogue, differentiated by torch.autograd.

Each reference takes the same named inputs as the component (torch tensors and
floats) and returns the same named results: forward outputs, updated state and
gradients ``grad_<input>``.  Hyperparameter values used by the checks are
stated here, next to the reference that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812


@dataclass(frozen=True)
class Reference:
    hypers: dict = field(default_factory=dict)
    initial: Callable | None = None  # name -> value overrides for state, given dims and dtype
    run: Callable | None = None      # inputs -> results, for one forward/backward


def _leaf(x):
    return x.detach().clone().requires_grad_(True)


def _mse(v):
    yhat = _leaf(v["yhat"])
    L = F.mse_loss(yhat, v["y"])
    L.backward()
    return {"L": L.detach(), "grad_yhat": yhat.grad}


def _cross_entropy(target):
    """Reference for F.cross_entropy, given how the target is passed (labels or soft rows)."""
    def run(v):
        z = _leaf(v["z"])
        L = F.cross_entropy(z, target(v["y"]))
        L.backward()
        return {"L": L.detach(), "grad_z": z.grad}
    return run


def _batchnorm(v):
    x, gamma, beta = _leaf(v["x"]), _leaf(v["gamma"]), _leaf(v["beta"])
    rm, rv = v["running_mean"].clone(), v["running_var"].clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True,
                     momentum=v["momentum"], eps=v["epsilon"])
    y.backward(v["grad_y"])
    return {"y": y.detach(), "running_mean": rm, "running_var": rv,
            "grad_x": x.grad, "grad_gamma": gamma.grad, "grad_beta": beta.grad}


def adam_reference(theta0, grads, lr, beta1, beta2, epsilon, foreach=None):
    """Parameters and state after ``torch.optim.Adam`` takes one step per gradient."""
    p = torch.nn.Parameter(theta0.detach().clone())
    opt = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=epsilon, foreach=foreach)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    s = opt.state[p]
    return {"theta": p.detach(), "m": s["exp_avg"], "v": s["exp_avg_sq"], "t": float(s["step"])}


def _zeros_state(dims, dtype, device):
    P = dims["P"]
    z = torch.zeros(P, dtype=dtype, device=device)
    return {"m": z, "v": z.clone(), "t": 0.0}


REFERENCES: dict[str, Reference] = {
    "mse": Reference(run=_mse),
    "cross-entropy": Reference(run=_cross_entropy(lambda y: y.argmax(dim=-1))),
    "cross-entropy-soft": Reference(run=_cross_entropy(lambda y: y)),
    # torch.nn.BatchNorm defaults: eps 1e-5, momentum 0.1.
    "batchnorm": Reference(hypers={"epsilon": 1e-5, "momentum": 0.1}, run=_batchnorm),
    # Adam with non-default betas so that a swapped beta1/beta2 cannot pass.
    "adam": Reference(hypers={"lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-8},
                      initial=_zeros_state),
}
