"""References for the losses."""

from __future__ import annotations

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


REFERENCES = {
    "mse": Reference(sizes={"B": 5, "d": 3}, tiny={"B": 2, "d": 3}, run=_mse),
    "cross-entropy": Reference(sizes={"B": 6, "C": 7}, tiny={"B": 2, "C": 3},
                               run=_cross_entropy(lambda y: y.argmax(dim=-1))),
    "cross-entropy-soft": Reference(sizes={"B": 6, "C": 7}, tiny={"B": 2, "C": 3},
                                    run=_cross_entropy(lambda y: y)),
}
