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


def bce() -> Component:
    """Binary cross-entropy from logits, sigmoid fused, over a batch of B logits.

    L = -1/B sum_i [y_i log sigma(z_i) + (1 - y_i) log(1 - sigma(z_i))],
    sigma(z) = 1/(1 + exp(-z)) (Goodfellow et al., Deep Learning, 6.2.2.2; torch's
    binary_cross_entropy_with_logits).  Written as the mathematical definition: the
    engine's stability rewrites turn both logarithms into softplus terms
    (log sigma(z) = -softplus(-z), log(1 - sigma(z)) = -softplus(z)), so the code and
    the gradient stay finite for logits of any magnitude.  Targets y_i in [0, 1].
    """
    c = Component("bce", "Losses", "binary cross-entropy from logits, sigmoid fused",
                  reference="Goodfellow et al. (2016), Deep Learning, 6.2.2.2")
    B = c.dim("B")
    i = c.index(i=B)
    z = c.input("z", (B,), doc="logits")
    y = c.target("y", (B,), doc="targets in [0, 1]")
    L = c.output("L", doc="mean binary cross-entropy")
    p = 1 / (1 + sp.exp(-z[i]))
    c.assign("forward", L, -total(y[i] * sp.log(p) + (1 - y[i]) * sp.log(1 - p), i) / B)
    c.set_gradient(L, (z,))
    return c


def hinge() -> Component:
    """Hinge loss, mean over a batch of B scalar scores, labels y_i in {-1, +1}.

    L = 1/B sum_i max(0, 1 - y_i yhat_i) (the document's table; Cortes & Vapnik 1995).
    The gradient wrt yhat is -y_i/B where the margin is violated (y_i yhat_i < 1), 0
    where it holds; at the kink y_i yhat_i = 1 the derived Heaviside gives half of
    -y_i/B (torch's clamp passes the whole of it); random inputs never land there.
    """
    c = Component("hinge", "Losses", "hinge loss, labels in {-1, +1}",
                  reference="Cortes & Vapnik (1995), Machine Learning 20")
    B = c.dim("B")
    i = c.index(i=B)
    yhat = c.input("yhat", (B,), doc="scores")
    y = c.target("y", (B,), doc="labels in {-1, +1}")
    L = c.output("L", doc="mean hinge loss")
    c.assign("forward", L, total(sp.Max(0, 1 - y[i] * yhat[i]), i) / B)
    c.set_gradient(L, (yhat,))
    return c


def huber() -> Component:
    """Huber loss with threshold delta over (B, d), mean over all elements.

    r = yhat - y; l(r) = r^2/2 if |r| <= delta, else delta |r| - delta^2/2 (the
    document's table; Huber 1964; torch.nn.functional.huber_loss, reduction "mean").
    """
    c = Component("huber", "Losses", "Huber loss with threshold delta, mean reduction",
                  reference="Huber (1964), Ann. Math. Statist. 35")
    B, d = c.dim("B d")
    i, j = c.index(i=B, j=d)
    yhat = c.input("yhat", (B, d), doc="predictions")
    y = c.target("y", (B, d), doc="targets")
    delta = c.hyper("delta", delta=1.0)
    L = c.output("L", doc="mean Huber loss")
    r = y[i, j] - yhat[i, j]
    ell = sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta),
                       (delta * sp.Abs(r) - delta ** 2 / 2, True))
    c.assign("forward", L, total(ell, i, j) / (B * d))
    c.set_gradient(L, (yhat,))
    return c


def focal() -> Component:
    """Sigmoid focal loss over (B, C) logits with binary targets, mean over all elements.

    As Lin et al. (2017) and torchvision.ops.sigmoid_focal_loss define it:
    p = sigma(z), ce = -[y log p + (1 - y) log(1 - p)] (BCE with logits),
    p_t = p y + (1 - p)(1 - y), alpha_t = alpha y + (1 - alpha)(1 - y),
    loss = alpha_t ce (1 - p_t)^gamma, averaged over the B*C elements.  The document's
    -alpha_t (1 - yhat_t)^gamma log(yhat_t) is the same for y in {0, 1}.  ce is written
    from the logits (log sigma(z)), so the stability rewrites make it softplus terms as
    in BCE; p_t uses p.  gamma is a hyperparameter, so (1 - p_t)^gamma is a general
    power (one transcendental).
    """
    c = Component("focal", "Losses", "sigmoid focal loss (alpha, gamma), mean reduction",
                  reference="Lin et al. (2017), Focal Loss for Dense Object Detection, ICCV")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    z = c.input("z", (B, C), doc="logits")
    y = c.target("y", (B, C), doc="binary targets")
    alpha, gamma = c.hyper("alpha gamma", alpha=0.25, gamma=2.0)
    p = c.intermediate("p", (B, C), doc="sigmoid of the logits")
    L = c.output("L", doc="mean focal loss")
    f = "forward"
    sigma = 1 / (1 + sp.exp(-z[i, k]))
    c.assign(f, p[i, k], sigma)
    yy = y[i, k]
    ce = -(yy * sp.log(sigma) + (1 - yy) * sp.log(1 - sigma))
    p_t = p[i, k] * yy + (1 - p[i, k]) * (1 - yy)
    alpha_t = alpha * yy + (1 - alpha) * (1 - yy)
    c.assign(f, L, total(alpha_t * ce * (1 - p_t) ** gamma, i, k) / (B * C))
    c.set_gradient(L, (z,))
    return c


def kl_div() -> Component:
    """KL divergence KL(p || q) per row, averaged over the batch ("batchmean").

    L = 1/B sum_i sum_c p_ic (log p_ic - logq_ic) (Kullback & Leibler 1951;
    torch.nn.functional.kl_div(logq, p, reduction="batchmean")).  The input is the
    log-probabilities logq (as torch takes them); the target p has rows summing to 1
    and, as written, entries > 0 (p log p at p = 0 is 0 by convention; torch's xlogy
    gives that, log(0) here would not).
    """
    c = Component("kl-div", "Losses", "KL divergence from log-probabilities, batchmean",
                  reference="Kullback & Leibler (1951), Ann. Math. Statist. 22")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    logq = c.input("logq", (B, C), doc="log-probabilities of the model")
    p = c.target("p", (B, C), facts=(Fact.ROWS_SUM_TO_ONE,), doc="target distribution per row")
    L = c.output("L", doc="batch-mean KL divergence")
    c.assign("forward", L, total(p[i, k] * (sp.log(p[i, k]) - logq[i, k]), i, k) / B)
    c.set_gradient(L, (logq,))
    return c


COMPONENTS = {
    "mse": mse,
    "cross-entropy": cross_entropy,
    "cross-entropy-soft": cross_entropy_soft,
    "bce": bce,
    "hinge": hinge,
    "huber": huber,
    "focal": focal,
    "kl-div": kl_div,
}
