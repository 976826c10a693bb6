"""The identity of the section "Normalization": BatchNorm at inference folded into the
preceding linear or convolution layer."""

from __future__ import annotations

import sympy as sp

from derivations import normalization
from derivations.identities.proof import hypers, is_zero, real_symbol
from symflop.core.model import Component, size_symbol
from symflop.report.identities import Identity, Step, step


def _document_form(bn: Component, stats: dict, eps: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """BatchNorm inference of x minus the document's affine form gamma/sigma*x + (beta -
    gamma*mu/sigma): zero with sigma = sqrt(running_var + eps) (expanded), and not zero
    with eps left out (factored)."""
    gamma, beta, rm, rv = (stats[n] for n in ("gamma", "beta", "running_mean",
                                               "running_var"))
    sigma = sp.sqrt(rv + eps)
    x = real_symbol("x")
    y_x = step(bn, "inference", {**stats, "x": x})["y_inf"]

    def doc_affine(sd):
        return gamma / sd * x + (beta - gamma * rm / sd)

    doc_form, no_eps = doc_affine(sigma), doc_affine(sp.sqrt(rv))
    assert is_zero(y_x - doc_form) and not is_zero(y_x - no_eps)
    return sp.expand(y_x - doc_form), sp.factor(y_x - no_eps)


def batchnorm_fold() -> Identity:
    bn, fold = normalization.batchnorm(), normalization.batchnorm_fold()
    (eps,) = hypers(bn, "epsilon")
    K = size_symbol("K")
    k = sp.Idx("k", K)
    W, u = sp.IndexedBase("W", real=True), sp.IndexedBase("u", real=True)
    b, gamma, beta, rm = (real_symbol(n) for n in ("b", "gamma", "beta", "running_mean"))
    rv = sp.Symbol("running_var", nonnegative=True)
    z = sp.Sum(W[k] * u[k], (k, 0, K - 1)) + b       # one output of the linear layer
    stats = {"gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv}
    y = step(bn, "inference", {**stats, "x": z})["y_inf"]
    folded = step(fold, "fold", {**stats, "W": W[k], "b": b})
    y_f = sp.Sum(folded["W_f"] * u[k], (k, 0, K - 1)) + folded["b_f"]
    diff = y - y_f
    # linearity of the sum: a factor that does not depend on k moves out of it
    diff_out = diff.replace(lambda e: isinstance(e, sp.Sum), lambda e: sp.factor_terms(e))
    assert is_zero(diff_out)
    small = {K: 3}
    assert is_zero(diff.xreplace(small).doit())
    with_eps, without_eps = _document_form(bn, stats, eps)
    return Identity(
        name="batchnorm-fold",
        title="Inference BatchNorm folded into the preceding linear or convolution layer",
        statement="BatchNorm at inference (running statistics) applied to z = W*u + b equals "
                  "the layer W_f*u + b_f, with W_f = s*W, b_f = s*(b - running_mean) + beta "
                  "and s = gamma/sqrt(running_var + eps), per output feature or channel.",
        holds=True,
        derivation=(
            Step("one output of the linear layer: z =", z),
            Step("BatchNorm inference (component batchnorm, pass inference) of z:", y),
            Step("folded weight and bias (component batchnorm-fold): W_f =",
                 folded["W_f"]),
            Step("  b_f =", folded["b_f"]),
            Step("folded layer's output:", y_f),
            Step("difference, factors free of k moved out of the sums:", sp.expand(diff_out)),
            Step("(and at K = 3, summed out term by term, the difference expands to 0)"),
            Step("a convolution is a linear layer over unfolded patches (component "
                 "conv2d-im2col: k runs over input channel and kernel offsets), with one "
                 "output channel per BatchNorm feature, so the same fold applies per channel"),
            Step("the document's affine form gamma/sigma*x + (beta - gamma*mu/sigma) minus "
                 "BatchNorm inference, with sigma = sqrt(running_var + eps):",
                 with_eps),
            Step("  with sigma = sqrt(running_var) (eps left out) it is instead",
                 without_eps),
        ),
        document="y = gamma/sigma*x + (beta - gamma*mu/sigma), folded into the preceding "
                 "conv/FC layer's weights and biases, making BN zero-cost at inference",
        document_agrees=True,
        notes=("sigma in the document's formula must include BatchNorm's eps: "
               "sigma = sqrt(running_var + eps).",
               "a layer without a bias (ResNet convolutions have bias=False) gains one: "
               "b_f = beta - s*running_mean; the folded layer then adds a bias it did not "
               "add before.",
               "training-mode BatchNorm cannot be folded: its statistics depend on the batch."),
        numeric_check="batchnorm-fold",
    )
