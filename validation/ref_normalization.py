"""References for the normalization layers."""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812

from validation.ref_common import Reference, leaf


def _batchnorm(v):
    x, gamma, beta = leaf(v["x"]), leaf(v["gamma"]), leaf(v["beta"])
    rm, rv = v["running_mean"].clone(), v["running_var"].clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True,
                     momentum=v["momentum"], eps=v["epsilon"])
    y.backward(v["grad_y"])
    return {"y": y.detach(), "running_mean": rm, "running_var": rv,
            "grad_x": x.grad, "grad_gamma": gamma.grad, "grad_beta": beta.grad}


REFERENCES = {
    # torch.nn.BatchNorm defaults: eps 1e-5, momentum 0.1.
    "batchnorm": Reference(sizes={"N": 9, "d": 4}, tiny={"N": 3, "d": 2},
                           hypers={"epsilon": 1e-5, "momentum": 0.1}, run=_batchnorm),
}
