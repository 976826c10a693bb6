"""References for the losses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from validation.ref_common import Reference, leaf


def _mse(v):
    yhat = leaf(v["yhat"])
    L = F.mse_loss(yhat, v["y"])
    L.backward()
    return {"L": L.detach(), "grad_yhat": yhat.grad}


def _cross_entropy(target):
    """Reference for F.cross_entropy, given how the target is passed (labels or soft rows)."""
    def run(v):
        z = leaf(v["z"])
        L = F.cross_entropy(z, target(v["y"]))
        L.backward()
        return {"L": L.detach(), "grad_z": z.grad}
    return run


def _bce(v):
    z = leaf(v["z"])
    L = F.binary_cross_entropy_with_logits(z, v["y"])
    L.backward()
    return {"L": L.detach(), "grad_z": z.grad}


def _soft_targets(v):
    """Targets in (0, 1) (BCE accepts any probability, not only labels)."""
    return {**v, "y": 1 / (1 + np.exp(-v["y"]))}


def _hinge(v):
    yhat = leaf(v["yhat"])
    L = torch.clamp(1 - v["y"] * yhat, min=0).mean()
    L.backward()
    return {"L": L.detach(), "grad_yhat": yhat.grad}


def _signed_labels(v):
    return {**v, "y": np.where(v["y"] >= 0, 1.0, -1.0)}


def _huber(v):
    yhat = leaf(v["yhat"])
    L = F.huber_loss(yhat, v["y"], reduction="mean", delta=v["delta"])
    L.backward()
    return {"L": L.detach(), "grad_yhat": yhat.grad}


def _focal(v):
    """torchvision.ops.sigmoid_focal_loss(z, y, alpha, gamma, reduction="mean"), its
    definition written out in torch (torchvision is not a dependency)."""
    z, y, alpha, gamma = leaf(v["z"]), v["y"], v["alpha"], v["gamma"]
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    L = (alpha_t * ce * (1 - p_t) ** gamma).mean()
    L.backward()
    return {"L": L.detach(), "grad_z": z.grad}


def _binary_targets(v):
    return {**v, "y": (v["y"] > 0).astype(np.float64)}


def _kl_div(v):
    logq = leaf(v["logq"])
    L = F.kl_div(logq, v["p"], reduction="batchmean")
    L.backward()
    return {"L": L.detach(), "grad_logq": logq.grad}


def _log_softmax(v):
    """logq: a proper log-softmax of the random logits, so that q is a distribution."""
    z = v["logq"]
    m = z.max(axis=-1, keepdims=True)
    return {**v, "logq": z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))}


def _scaled(*names, by=1e4):
    """Extreme inputs: the named logits or predictions scaled to magnitude ~1e4."""
    def extreme(v):
        return {**v, **{n: v[n] * by for n in names}}
    return extreme


def _near_certain(v):
    """Extreme inputs for KL: probabilities within 1e-7 of 0 and 1 on both sides."""
    p, logq = v["p"], v["logq"]
    C = p.shape[-1]
    hot = torch.nn.functional.one_hot(p.argmax(-1), C).to(p.dtype)
    p = hot * (1 - (C - 1) * 1e-7) + (1 - hot) * 1e-7
    q = torch.roll(hot, 1, dims=-1) * (1 - (C - 1) * 1e-7) + (1 - torch.roll(hot, 1, -1)) * 1e-7
    return {**v, "p": p, "logq": torch.log(q.to(logq.dtype))}


REFERENCES = {
    "mse": Reference(sizes={"B": 5, "d": 3}, tiny={"B": 2, "d": 3}, run=_mse,
                     extreme=_scaled("yhat")),
    "cross-entropy": Reference(sizes={"B": 6, "C": 7}, tiny={"B": 2, "C": 3},
                               run=_cross_entropy(lambda y: y),  # y: labels
                               extreme=_scaled("z")),
    "cross-entropy-soft": Reference(sizes={"B": 6, "C": 7}, tiny={"B": 2, "C": 3},
                                    run=_cross_entropy(lambda y: y), extreme=_scaled("z")),
    "bce": Reference(sizes={"B": 7}, tiny={"B": 4}, prepare=_soft_targets, run=_bce,
                     extreme=_scaled("z")),
    "hinge": Reference(sizes={"B": 9}, tiny={"B": 4}, prepare=_signed_labels, run=_hinge,
                       extreme=_scaled("yhat")),
    # delta 1.0 (torch's default) with standard normal residuals: both branches occur.
    "huber": Reference(sizes={"B": 6, "d": 5}, tiny={"B": 2, "d": 3}, hypers={"delta": 1.0},
                       run=_huber, extreme=_scaled("yhat")),
    # Lin et al. (2017): alpha 0.25, gamma 2.
    "focal": Reference(sizes={"B": 6, "C": 5}, tiny={"B": 2, "C": 3},
                       hypers={"alpha": 0.25, "gamma": 2.0}, prepare=_binary_targets,
                       run=_focal, extreme=_scaled("z")),
    "kl-div": Reference(sizes={"B": 6, "C": 7}, tiny={"B": 2, "C": 3}, prepare=_log_softmax,
                        run=_kl_div, extreme=_near_certain),
}
