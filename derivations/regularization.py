"""Regularization (section "Regularization" of the reference document)."""

from __future__ import annotations

import sympy as sp

from symflop import Component, total, uniform
from symflop.core.model import Pass


def l1() -> Component:
    """L1 penalty on the P parameters w: R = lam * sum_p |w_p|.

    Its gradient is lam * sign(w) (the document's "lambda sign(w_i)"; Goodfellow et
    al., Deep Learning, 7.1.2).  Counted on its own: the addition of the penalty's
    gradient to the data gradient belongs to whoever sums the two.
    """
    c = Component("l1", "Regularization", "L1 penalty: lam times the sum of |w|",
                  reference="Goodfellow et al. (2016), Deep Learning, 7.1.2")
    P = c.dim("P")
    p = c.index(p=P)
    w = c.parameter("w", (P,), doc="parameters")
    lam = c.hyper("lam", lam=1e-4)
    R = c.output("R", doc="penalty")
    c.assign("forward", R, lam * total(sp.Abs(w[p]), p))
    c.set_gradient(R, (w,))
    return c


def l2() -> Component:
    """L2 penalty on the P parameters w: R = lam/2 * sum_p w_p^2.

    Scaling convention: the factor 1/2 is part of the penalty, so that its gradient is
    lam * w, the document's "lambda w_i" (Goodfellow et al., Deep Learning, 7.1.1,
    writes alpha/2 w^T w the same way); torch's SGD weight_decay=lam adds the same
    lam * w.  Without the 1/2 the gradient would be 2 lam w.
    """
    c = Component("l2", "Regularization", "L2 penalty: lam/2 times the sum of w^2 (gradient lam*w)",
                  reference="Goodfellow et al. (2016), Deep Learning, 7.1.1")
    P = c.dim("P")
    p = c.index(p=P)
    w = c.parameter("w", (P,), doc="parameters")
    lam = c.hyper("lam", lam=1e-4)
    R = c.output("R", doc="penalty")
    c.assign("forward", R, lam / 2 * total(w[p] ** 2, p))
    c.set_gradient(R, (w,))
    return c


def dropout() -> Component:
    """Inverted dropout on activations a of shape (B, n), drop probability p.

    Training ("forward"): u_ij ~ U(0, 1), mask_ij = 1 if u_ij >= p else 0 (kept with
    probability 1 - p, a Bernoulli(1 - p) draw), y_ij = a_ij mask_ij / (1 - p)
    (Srivastava et al. 2014; torch.nn.functional.dropout).  The mask is saved for
    the backward pass, dL/da = dL/dy * mask / (1 - p).  Inference ("inference"):
    y_inf = a, no work at all.
    """
    c = Component("dropout", "Regularization",
                  "inverted dropout (training: random mask and rescale; inference: identity)",
                  reference="Srivastava et al. (2014), JMLR 15")
    B, n = c.dim("B n")
    i, j = c.index(i=B, j=n)
    a = c.input("a", (B, n), doc="activations")
    p = c.hyper("p", p=0.5)
    u = c.intermediate("u", (B, n), doc="uniform random draws")
    mask = c.intermediate("mask", (B, n), doc="keep mask (1 kept, 0 dropped)")
    y = c.output("y", (B, n), doc="activations after dropout (training)")
    y_inf = c.output("y_inf", (B, n), doc="activations at inference")
    f = "forward"
    c.assign(f, u[i, j], uniform(i, j))
    c.assign(f, mask[i, j], sp.Piecewise((1, u[i, j] >= p), (0, True)))
    c.assign(f, y[i, j], a[i, j] * mask[i, j] / (1 - p))
    c.assign("inference", y_inf[i, j], a[i, j])
    c.set_gradient(y, (a,), pass_name=f)
    return c


def data_augmentation() -> Component:
    """Data augmentation (flips, crops, colour jitter, mixup, cutout, ...).

    It runs on the CPU, in the input pipeline, in parallel with the accelerator's
    work (the document; DeVries & Taylor 2017, Zhang et al. 2018), so its one pass
    "forward" holds no assignment: zero accelerator FLOPs and zero accelerator memory.
    """
    c = Component("data-augmentation", "Regularization",
                  "data augmentation: CPU input pipeline, no accelerator work",
                  reference="DeVries & Taylor (2017), arXiv:1708.04552")
    c.passes["forward"] = Pass("forward")
    return c


COMPONENTS = {
    "l1": l1,
    "l2": l2,
    "dropout": dropout,
    "data-augmentation": data_augmentation,
}
