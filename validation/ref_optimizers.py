"""References for the optimizers: torch.optim, stepped on given gradients."""

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


def _zeros_state(dims, dtype, device):
    P = dims["P"]
    z = torch.zeros(P, dtype=dtype, device=device)
    return {"m": z, "v": z.clone(), "t": 0.0}


REFERENCES = {
    # Adam with non-default betas so that a swapped beta1/beta2 cannot pass.
    "adam": Reference(sizes={"P": 11}, tiny={"P": 3},
                      hypers={"lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-8},
                      initial=_zeros_state),
}
