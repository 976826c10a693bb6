"""Losses (section "Loss functions" of the reference document)."""

from __future__ import annotations

import sympy as sp

from symflop import Component, Fact, total


def mse() -> Component:
    """Mean squared error over a batch of B d-dimensional predictions.

    L = 1/(B d) sum_ij (yhat_ij - y_ij)^2 (Goodfellow et al., Deep Learning, 6.2.1.1;
    the document gives only the gradient, 2/(B d) (yhat - y)).
    """
    c = Component("mse", "Losses", "mean squared error, averaged over batch and outputs",
                  reference="Goodfellow et al. (2016), Deep Learning, 6.2.1.1")
    B, d = c.dim("B d")
    i, j = c.index(i=B, j=d)
    yhat = c.input("yhat", (B, d), doc="predictions")
    y = c.target("y", (B, d), doc="targets")
    L = c.output("L", doc="mean squared error")
    c.assign("forward", L, total((yhat[i, j] - y[i, j]) ** 2, i, j) / (B * d))
    c.set_gradient(L, (yhat,))
    return c


def _cross_entropy(name: str, summary: str, fact: Fact) -> Component:
    c = Component(name, "Losses", summary,
                  reference="Goodfellow et al. (2016), Deep Learning, 6.2.2.3")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    z = c.input("z", (B, C), doc="logits")
    y = c.target("y", (B, C), facts=(fact,), doc="target distribution per row")
    lse = c.intermediate("lse", (B,), doc="log-sum-exp of the logits of each row")
    L = c.output("L", doc="mean cross-entropy")
    c.assign("forward", lse[i], sp.log(total(sp.exp(z[i, k]), k)))
    c.assign("forward", L, -total(y[i, k] * (z[i, k] - lse[i]), i, k) / B)
    c.set_gradient(L, (z,))
    return c


def cross_entropy() -> Component:
    """Softmax cross-entropy from logits, one-hot class labels.

    L = -1/B sum_i log softmax(z_i)_{k_i}, written with the one-hot rows y_i:
    log softmax(z)_ik = z_ik - log sum_k' exp(z_ik').  The one-hot fact makes the
    label sum a gather in the counts and lets the fused gradient use sum_k y_ik = 1.
    """
    return _cross_entropy("cross-entropy", "softmax cross-entropy from logits, one-hot labels",
                          Fact.ONE_HOT)


def cross_entropy_soft() -> Component:
    """Softmax cross-entropy from logits against soft target distributions.

    Same equations as ``cross-entropy``; the targets are any rows that sum to 1
    (label smoothing, distillation), so the label sum is a dense multiply-add.
    """
    return _cross_entropy("cross-entropy-soft",
                          "softmax cross-entropy from logits, soft target distributions",
                          Fact.ROWS_SUM_TO_ONE)


COMPONENTS = {
    "mse": mse,
    "cross-entropy": cross_entropy,
    "cross-entropy-soft": cross_entropy_soft,
}
