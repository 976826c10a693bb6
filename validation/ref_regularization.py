"""References for the regularizers."""

from __future__ import annotations

from validation.ref_common import Reference, leaf


def _l1(v):
    w = leaf(v["w"])
    R = v["lam"] * w.abs().sum()
    R.backward()
    return {"R": R.detach(), "grad_w": w.grad}


def _l2(v):
    w = leaf(v["w"])
    R = v["lam"] / 2 * (w ** 2).sum()
    R.backward()
    return {"R": R.detach(), "grad_w": w.grad}


def _dropout(v):
    """Inverted dropout on our own uniform draws ``u`` (the generic check passes our
    outputs in): the mask is recomputed from them, so our mask is checked too."""
    a, p = leaf(v["a"]), v["p"]
    mask = (v["u"] >= p).to(a.dtype)
    y = a * mask / (1 - p)
    y.backward(v["grad_y"])
    return {"mask": mask, "y": y.detach(), "grad_a": a.grad, "y_inf": v["a"].clone()}


REFERENCES = {
    "l1": Reference(sizes={"P": 11}, tiny={"P": 5}, hypers={"lam": 0.3}, run=_l1),
    "l2": Reference(sizes={"P": 11}, tiny={"P": 5}, hypers={"lam": 0.3}, run=_l2),
    "dropout": Reference(sizes={"B": 6, "n": 8}, tiny={"B": 2, "n": 3}, hypers={"p": 0.3},
                         run=_dropout),
    # CPU input pipeline: nothing on the accelerator to compare.
    "data-augmentation": Reference(sizes={}, run=None),
}
