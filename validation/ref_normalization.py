"""References for the normalization layers: torch.nn.functional, differentiated by autograd."""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812
from torch.nn.utils.fusion import fuse_linear_bn_weights

from validation.ref_common import Reference, leaf


def _batchnorm(v):
    """Training forward (updating the running statistics in place), its gradients, then
    inference with the updated running statistics, in the component's pass order."""
    x, gamma, beta = leaf(v["x"]), leaf(v["gamma"]), leaf(v["beta"])
    rm, rv = v["running_mean"].clone(), v["running_var"].clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=True,
                     momentum=v["momentum"], eps=v["epsilon"])
    y.backward(v["grad_y"])
    y_inf = F.batch_norm(v["x"], rm, rv, v["gamma"], v["beta"], training=False,
                         eps=v["epsilon"])
    return {"y": y.detach(), "running_mean": rm, "running_var": rv, "y_inf": y_inf,
            "grad_x": x.grad, "grad_gamma": gamma.grad, "grad_beta": beta.grad}


def _batchnorm_fold(v):
    W_f, b_f = fuse_linear_bn_weights(v["W"], v["b"], v["running_mean"], v["running_var"],
                                      v["epsilon"], v["gamma"], v["beta"])
    return {"W_f": W_f.detach(), "b_f": b_f.detach()}


def _layernorm(v):
    x, gamma, beta = leaf(v["x"]), leaf(v["gamma"]), leaf(v["beta"])
    y = F.layer_norm(x, (x.shape[-1],), gamma, beta, eps=v["epsilon"])
    y.backward(v["grad_y"])
    return {"y": y.detach(), "grad_x": x.grad, "grad_gamma": gamma.grad,
            "grad_beta": beta.grad}


def _groupnorm(v):
    x, gamma, beta = leaf(v["x"]), leaf(v["gamma"]), leaf(v["beta"])
    B, G, Cg, S = x.shape
    y = F.group_norm(x.reshape(B, G * Cg, S), G, gamma.reshape(-1), beta.reshape(-1),
                     eps=v["epsilon"]).reshape(B, G, Cg, S)
    y.backward(v["grad_y"])
    return {"y": y.detach(), "grad_x": x.grad, "grad_gamma": gamma.grad,
            "grad_beta": beta.grad}


def _instancenorm(v):
    x, gamma, beta = leaf(v["x"]), leaf(v["gamma"]), leaf(v["beta"])
    y = F.instance_norm(x, weight=gamma, bias=beta, use_input_stats=True, eps=v["epsilon"])
    y.backward(v["grad_y"])
    return {"y": y.detach(), "grad_x": x.grad, "grad_gamma": gamma.grad,
            "grad_beta": beta.grad}


def _flat(v):
    """Extreme inputs: every statistic over values 1e-6 * noise (variance ~1e-12, far below
    eps).  Without a common offset: with one (3 + 1e-6 * noise) float32 cannot hold the
    spread, and the naive two-pass statistics lose more of it than torch's kernels do;
    that case is checked in float64 (tests/test_normalization.py)."""
    return {**v, "x": 1e-6 * v["x"]}


REFERENCES = {
    # torch.nn.BatchNorm defaults: eps 1e-5, momentum 0.1.
    "batchnorm": Reference(sizes={"N": 9, "d": 4}, tiny={"N": 3, "d": 2},
                           hypers={"epsilon": 1e-5, "momentum": 0.1}, run=_batchnorm,
                           extreme=_flat),
    "batchnorm-fold": Reference(sizes={"d": 4, "K": 6}, tiny={"d": 2, "K": 3},
                                hypers={"epsilon": 1e-5}, run=_batchnorm_fold),
    "layernorm": Reference(sizes={"B": 5, "d": 7}, tiny={"B": 2, "d": 3},
                           hypers={"epsilon": 1e-5}, run=_layernorm, extreme=_flat),
    "groupnorm": Reference(sizes={"B": 3, "G": 2, "Cg": 3, "S": 5},
                           tiny={"B": 2, "G": 2, "Cg": 2, "S": 2},
                           hypers={"epsilon": 1e-5}, run=_groupnorm, extreme=_flat),
    "instancenorm": Reference(sizes={"B": 3, "C": 4, "S": 6}, tiny={"B": 2, "C": 2, "S": 3},
                              hypers={"epsilon": 1e-5}, run=_instancenorm, extreme=_flat),
}
