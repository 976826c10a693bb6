"""Optimizers (section "Optimizers" of the reference document): one ``step`` pass each."""

from __future__ import annotations

import sympy as sp

from symflop import Component


def adam() -> Component:
    """Adam with bias correction (Kingma & Ba 2015, Algorithm 1), every hyperparameter symbolic.

    The step counter t is state (torch keeps it per parameter); epsilon is added
    outside the square root, as in the paper, the document and torch.optim.Adam.
    """
    c = Component("adam", "Optimizers",
                  "Adam step: first and second moment EMAs, bias correction, update",
                  reference="Kingma & Ba (2015), ICLR")
    P = c.dim("P")
    p = c.index(p=P)
    theta = c.parameter("theta", (P,), doc="parameters")
    g = c.input("g", (P,), doc="gradient")
    m = c.state("m", (P,), doc="first moment estimate")
    v = c.state("v", (P,), doc="second moment estimate")
    t = c.state("t", doc="step count").symbol
    lr, beta1, beta2, eps = c.hyper("lr beta1 beta2 epsilon")
    mhat = c.intermediate("mhat", (P,), doc="bias-corrected first moment")
    vhat = c.intermediate("vhat", (P,), doc="bias-corrected second moment")
    s = "step"
    c.assign(s, t, t + 1)
    c.assign(s, m[p], beta1 * m[p] + (1 - beta1) * g[p])
    c.assign(s, v[p], beta2 * v[p] + (1 - beta2) * g[p] ** 2)
    c.assign(s, mhat[p], m[p] / (1 - beta1 ** t))
    c.assign(s, vhat[p], v[p] / (1 - beta2 ** t))
    c.assign(s, theta[p], theta[p] - lr * mhat[p] / (sp.sqrt(vhat[p]) + eps))
    return c


COMPONENTS = {
    "adam": adam,
}
