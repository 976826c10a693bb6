"""The ledger of the document's loss sections (mean squared error, cross-entropy, other
losses): their claims, and the stated gradients and losses those claims compare with."""

from __future__ import annotations

import sympy as sp

from derivations.claims.query import (
    S_CE,
    S_LOSS,
    S_MSE,
    cannot_derive,
    claim,
    computed,
    flops,
    fused_gradient,
    inlined_step,
    size_symbol,
    tensor_symbol,
)
from symflop import Component, derive, total
from symflop.report.claims import Claim, Equation


def _grad_mse(_conv):
    f = fused_gradient("mse", "yhat")
    i, j = f.idx
    B, d = size_symbol("B"), size_symbol("d")
    yhat, y = tensor_symbol("mse", "yhat"), tensor_symbol("mse", "y")
    return Equation(f.expr, 2 / (B * d) * (yhat[i, j] - y[i, j]), {B: 2, d: 3},
                    assumptions=f.assumptions)


def _grad_mse_proportional(_conv):
    f = fused_gradient("mse", "yhat")
    i, j = f.idx
    yhat, y = tensor_symbol("mse", "yhat"), tensor_symbol("mse", "y")
    return Equation(f.expr, yhat[i, j] - y[i, j], {size_symbol("B"): 2, size_symbol("d"): 3},
                    proportional=True)


def _sigmoid(u):
    return 1 / (1 + sp.exp(-u))


def _grad_bce(_conv):
    f = fused_gradient("bce", "z")
    (i,) = f.idx
    z, y = tensor_symbol("bce", "z"), tensor_symbol("bce", "y")
    B = size_symbol("B")
    return Equation(f.expr, (_sigmoid(z[i]) - y[i]) / B, {B: 3}, assumptions=f.assumptions)


def _softmax(z, i, k, classes):
    c = sp.Idx("c", classes)
    return sp.exp(z[i, k]) / sp.Sum(sp.exp(z[i, c]), (c, 0, classes - 1))


def _grad_ce(_conv):
    f = fused_gradient("cross-entropy", "z")
    i, k = f.idx
    z, y = tensor_symbol("cross-entropy", "z"), tensor_symbol("cross-entropy", "y")
    B, C = size_symbol("B"), size_symbol("C")
    return Equation(f.expr, (_softmax(z, i, k, C) - y[i, k]) / B, {B: 2, C: 3},
                    assumptions=f.assumptions)


def _one_for(base: str):
    def values(v: dict) -> dict:
        return {leaf: (1.0 if isinstance(leaf, sp.Indexed) and str(leaf.base) == base else x)
                for leaf, x in v.items()}
    return values


def _grad_ce_true_class(_conv):
    """One sample (B = 1) whose true class is k: dL/dz_k = yhat_k - 1."""
    f = fused_gradient("cross-entropy", "z")
    i, k = f.idx
    z = tensor_symbol("cross-entropy", "z")
    B, C = size_symbol("B"), size_symbol("C")
    return Equation(f.expr, _softmax(z, i, k, C) - 1, {B: 1, C: 3}, at=({i: 0, k: 1},),
                    values=_one_for("y"),
                    assumptions=f.assumptions + ("B = 1, y one-hot at the true class k",))


def _one_hot_rows(v: dict) -> dict:
    """y[i, k] = 1 for k = i mod C, else 0: a one-hot label per sample."""
    width = 1 + max(int(leaf.indices[1]) for leaf in v
                    if isinstance(leaf, sp.Indexed) and str(leaf.base) == "y")
    return {leaf: (float(int(leaf.indices[1]) == int(leaf.indices[0]) % width)
                   if isinstance(leaf, sp.Indexed) and str(leaf.base) == "y" else x)
            for leaf, x in v.items()}


def _ce_one_hot_loss(_conv):
    """The forward pass as one expression against -1/B sum_i log(yhat_{i, k_i})."""
    expr, _ = inlined_step("cross-entropy", "forward", "L")
    z, y = tensor_symbol("cross-entropy", "z"), tensor_symbol("cross-entropy", "y")
    B, C = size_symbol("B"), size_symbol("C")
    i, k = sp.Idx("i", B), sp.Idx("k", C)
    claimed = -sp.Sum(y[i, k] * sp.log(_softmax(z, i, k, C)), (i, 0, B - 1), (k, 0, C - 1)) / B
    return Equation(expr, claimed, {B: 2, C: 3}, values=_one_hot_rows,
                    assumptions=("y one-hot: y_{i,k_i} = 1, the log picks yhat_{i,k_i}",))


def _mse_on_sigmoid() -> Component:
    """MSE on a sigmoid output, L = 1/B sum_i (sigma(z_i) - y_i)^2: the document's
    "MSE gradient ... must pass through sigma'(z_k)" (Goodfellow et al. 2016, 6.2.2.2)."""
    c = Component("mse-on-sigmoid", "Losses", "MSE on a sigmoid output")
    B = c.dim("B")
    i = c.index(i=B)
    z, y = c.input("z", (B,)), c.target("y", (B,))
    L = c.output("L")
    c.assign("forward", L, total((_sigmoid(z[i]) - y[i]) ** 2, i) / B)
    c.set_gradient(L, (z,))
    return c


def _grad_mse_sigmoid(_conv):
    c = _mse_on_sigmoid()
    f = derive(c).fused["z"]
    (i,) = f.idx
    yhat = _sigmoid(c.tensors["z"].symbol[i])
    return Equation(f.expr, (yhat - 1) * yhat * (1 - yhat), {size_symbol("B"): 3},
                    proportional=True, values=_one_for("y"),
                    assumptions=("y = 1 (the true class)",))


CLAIMS: list[Claim] = [
    # ---- Losses: MSE -------------------------------------------------------------
    claim("mse-gradient", S_MSE,
          r"\pd{L}{\hat{y}_{ij}} = \frac{2}{Bd}(\hat{y}_{ij} - y_{ij})",
          "2/(B d) (yhat - y)", computed(_grad_mse, "mse: fused gradient wrt yhat", False)),
    claim("mse-forward-sub-and-sum", S_MSE,
          r"Difference: $\hat{y}_{ij} - y_{ij}$ | $Bd$ subtractions; "
          r"Sum over $d$ and $B$ | $Bd - 1$ additions",
          "add: B*d + B*d - 1", flops("mse", "forward", ("L_sum",), kinds=True),
          how="mse: additions and subtractions (one kind, add) of the summed step L_sum"),
    claim("mse-forward-square", S_MSE, r"Square: $(\cdot)^2$ | $Bd$ multiplications",
          "mul: B*d", flops("mse", "forward", ("L_sum",), kinds=True)),
    claim("mse-forward-division", S_MSE, r"Division by $Bd$ | 1 division",
          "div: 1", flops("mse", "forward", ("L",), kinds=True)),
    claim("mse-forward-total", S_MSE, r"Total forward | $\approx 3Bd$ FLOPs", "≈3*B*d",
          flops("mse", "forward")),
    claim("mse-gradient-flops", S_MSE,
          r"Gradient computation | $Bd$ subtractions + $Bd$ multiplications = $2Bd$ FLOPs",
          "add: B*d, mul: B*d", flops("mse", "gradient", kinds=True)),
    claim("mse-gradient-linear", S_MSE,
          r"The gradient $\propto (\hat{y} - y)$ pushes predictions toward targets linearly",
          "∝ (yhat - y)", computed(_grad_mse_proportional, "mse: fused gradient wrt yhat", False)),
    # ---- Losses: cross-entropy ---------------------------------------------------------
    claim("bce-gradient", S_CE,
          r"Gradient w.r.t. logit $z_i$ (fused with sigmoid); "
          r"\pd{L}{z_i} = \frac{1}{B}(\hat{y}_i - y_i)",
          "(sigmoid(z) - y)/B", computed(_grad_bce, "bce: fused gradient wrt z", False)),
    claim("ce-gradient", S_CE,
          r"Gradient w.r.t. logits (fused with softmax); "
          r"\pd{L}{\bm{z}_i} = \frac{1}{B}(\hat{\bm{y}}_i - \bm{y}_i)",
          "(softmax(z) - y)/B", computed(_grad_ce, "cross-entropy: fused gradient wrt z", False)),
    claim("ce-one-hot-loss", S_CE,
          r"For one-hot labels (standard case): $L_{\text{CE}} = -\frac{1}{B}\sum_{i=1}^{B}"
          r"\log(\hat{y}_{i,k_i})$", "-1/B sum_i log(yhat_{i,k_i})",
          computed(_ce_one_hot_loss, "cross-entropy: its forward pass as one expression "
                                     "(log-sum-exp substituted)", False)),
    claim("bce-forward", S_CE, r"BCE (one-hot) | $\approx 4B$ (2 logs, 2 mults, sum)",
          "≈4*B", flops("bce", "forward")),
    claim("bce-gradient-flops", S_CE, r"BCE (one-hot) | ... | $B$ (subtraction)", "B",
          flops("bce", "gradient"),
          reason="the optimized gradient from the logits is (sigmoid(z) - y)/B: a sigmoid, a "
                 "subtraction and the division by B per sample; the document counts the "
                 "subtraction alone, with yhat given and the 1/B left out"),
    claim("ce-forward", S_CE, r"CE, one-hot labels | $\approx 2B$ (1 log per sample + sum)",
          "≈2*B", flops("cross-entropy", "forward"),
          assumed=flops("ce-from-probabilities", "forward"),
          assumption="the probabilities yhat given, as the document's table counts (from "
                     "the logits the log-sum-exp comes first)"),
    claim("ce-gradient-flops", S_CE, r"CE, one-hot labels | ... | $BC$ (subtraction)", "B*C",
          flops("cross-entropy", "gradient"),
          assumed=flops("ce-gradient-from-softmax", "softmax-kept"),
          assumption="the softmax yhat kept from the forward pass; (yhat - y)/B with "
                     "one-hot y subtracts at the labels only"),
    claim("ce-soft-forward", S_CE, r"CE, soft labels | $\approx 3BC$ (C logs per sample)",
          "≈3*B*C", flops("cross-entropy-soft", "forward"),
          assumed=flops("ce-soft-from-probabilities", "forward"),
          assumption="the probabilities yhat given, as the document's table counts"),
    claim("ce-soft-gradient-flops", S_CE, r"CE, soft labels | ... | $BC$ (subtraction)",
          "B*C", flops("cross-entropy-soft", "gradient"),
          assumed=flops("ce-soft-gradient-from-softmax", "softmax-kept"),
          assumption="the softmax yhat kept from the forward pass",
          reason="even with the softmax kept, (yhat - y)/B is a subtraction and a division "
                 "by B per element with soft targets; the document counts the subtraction "
                 "alone"),
    claim("ce-logsumexp", S_CE,
          r"This log-sum-exp trick costs $\approx 3C$ FLOPs per sample "
          r"(max + shift + sum of exp + log)", "≈3*C",
          flops("cross-entropy", "forward", ("lse_sum_max", "lse_sum_shifted"),
                stage="code", per="B"),
          reason="the code stage computes the max, the shift, the exponentials and their "
                 "sum (the log is taken once per sample, in the loss's sum over the batch; "
                 "the backward reads the max and the sum, not a log-sum-exp); the document "
                 "counts the sum of exponentials as one operation per class"),
    claim("ce-gradient-wrong-prediction", S_CE,
          r"CE gradient: $\pd{L}{z_k} \approx \hat{y}_k - 1 \approx -1$",
          "yhat_k - 1", computed(_grad_ce_true_class, "cross-entropy: fused gradient wrt z, "
                                                      "one sample, true class k", False)),
    claim("mse-gradient-through-sigmoid", S_CE,
          r"MSE gradient: $\pd{L}{\hat{y}_k} \propto \hat{y}_k - 1 \approx -1$, but this "
          r"must pass through $\sigma'(z_k)$",
          "∝ (yhat_k - 1) sigmoid'(z_k)",
          computed(_grad_mse_sigmoid, "MSE on a sigmoid output (written here): fused gradient "
                                      "wrt the logit", False)),
    cannot_derive("ce-faster-convergence", S_CE,
                  r"Cross-entropy's gradient is stronger when predictions are badly wrong, which "
                  r"leads to faster convergence and therefore fewer total training FLOPs",
                  "fewer training FLOPs",
                  "the number of steps to a given accuracy is an empirical outcome of training, "
                  "not a consequence of one step's equations"),
    # ---- Losses: other losses ----------------------------------------------------------
    claim("hinge-forward", S_LOSS, r"Hinge | $\max(0, 1 - y \cdot \hat{y})$ | $3B$ "
          r"(mult, sub, max)", "mul: B, add: B, compare: B", flops("hinge", "forward",
                                                                  kinds=True),
          scope="the document counts the per-sample loss max(0, 1 - y*yhat); the tool "
                "counts the batch's loss, its mean included (B - 1 additions, a division)"),
    claim("huber-forward", S_LOSS, r"Huber | ... | $\approx 4Bd$", "≈4*B*d",
          flops("huber", "forward"),
          reason="vectorized code evaluates both branches of the Piecewise per element "
                 "(yhat - y, (yhat - y)^2/2, |yhat - y|, delta*|yhat - y| - delta^2/2), "
                 "the comparison with delta "
                 "and the select, then the mean; the document counts one branch"),
    claim("focal-forward", S_LOSS, r"Focal | $-\alpha_t(1-\hat{y}_t)^\gamma "
          r"\log(\hat{y}_t)$ | $\approx 6BC$", "≈6*B*C", flops("focal", "forward"),
          assumed=flops("focal-from-pt", "forward"),
          assumption="p_t and alpha_t given, as the document's formula reads (from the "
                     "logits, as torchvision defines it, the sigmoid, both logs and the "
                     "blends come first)"),
    claim("kl-forward", S_LOSS, r"KL Divergence | $\sum p(x)\log\frac{p(x)}{q(x)}$ | "
          r"$\approx 5BC$", "≈5*B*C", flops("kl-div", "forward"),
          assumed=flops("kl-from-probabilities", "forward"),
          assumption="q given as probabilities and its log taken (torch's kl_div takes "
                     "log q, one log fewer per element)"),
]
