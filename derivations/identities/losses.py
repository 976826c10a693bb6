"""The identities of the section "Loss functions": MSE as the Gaussian negative
log-likelihood, and cross-entropy against MSE through a sigmoid for a confidently wrong
prediction."""

from __future__ import annotations

import sympy as sp

from derivations import losses
from derivations.identities.proof import is_zero, is_zero_rational, real_symbol
from symflop.derive import derive
from symflop.report.identities import Identity, Step


def mse_gaussian_nll() -> Identity:
    c = losses.mse()
    B, d = c.dims["B"], c.dims["d"]
    (rhs,) = [a.rhs for a in c.passes["forward"].assignments]
    (mse_sum,) = rhs.atoms(sp.Sum)
    yhat, y = c.tensors["yhat"].symbol, c.tensors["y"].symbol
    i, j = (lim[0] for lim in mse_sum.limits)
    sigma2 = sp.Symbol("sigma", positive=True) ** 2  # the variance, printed sigma^2
    nll_body = (y[i, j] - yhat[i, j]) ** 2 / (2 * sigma2) + sp.log(2 * sp.pi * sigma2) / 2
    nll = sp.Sum(nll_body, *mse_sum.limits)
    scale = B * d / (2 * sigma2)
    const = B * d * sp.log(2 * sp.pi * sigma2) / 2
    # L = coef * Sum(body): scale*L is one sum over the same limits, of scale*coef*body
    coef = rhs / mse_sum
    assert not coef.has(sp.Sum)
    rest = sp.Sum(sp.expand(nll_body - scale * coef * mse_sum.function), *mse_sum.limits)
    per_output = sp.log(2 * sp.pi * sigma2) / 2
    assert is_zero(rest.function - sp.expand(per_output))
    assert is_zero(rest.doit() - sp.expand(const))
    f = derive(c).fused["yhat"]
    g_nll = sp.diff(nll_body, yhat[i, j])
    ratio = sp.cancel(g_nll / f.expr)
    assert ratio == scale
    return Identity(
        name="mse-gaussian-nll",
        title="MSE as the Gaussian negative log-likelihood",
        statement="The negative log-likelihood of y under a Gaussian of mean yhat and variance "
                  "sigma^2 in every coordinate, summed over the "
                  "B*d outputs, is a positive multiple of the MSE plus a constant: "
                  "NLL = B*d/(2*sigma^2) * MSE + B*d/2*log(2*pi*sigma^2).",
        holds=True,
        condition="a fixed variance sigma^2 shared by every output (not a function of the "
                  "parameters)",
        derivation=(
            Step("MSE (component mse): L =", rhs),
            Step("Gaussian NLL summed over the outputs: NLL =", nll),
            Step("scale (positive):", scale),
            Step("NLL - scale*L is one sum over the same indices, of (expanded)",
                 rest.function),
            Step("  i.e. of the constant", per_output),
            Step("  which sums over the B*d outputs to", const),
            Step("gradients: dNLL/dyhat =", g_nll),
            Step("  dL/dyhat (component mse, derived) =", f.expr),
            Step("  ratio, the same constant scale:", ratio),
            Step("so the two losses have the same minimizers and gradient directions; "
                 "gradient descent on the NLL with rate lr is descent on the MSE with rate "
                 "lr*scale. torch's gaussian_nll_loss (mean reduction, full=True) is the "
                 "NLL divided by B*d: MSE/(2*sigma^2) + log(2*pi*sigma^2)/2"),
        ),
        document="Minimizing MSE is equivalent to maximizing the log-likelihood under a "
                 "Gaussian model of mean yhat with fixed variance sigma^2",
        document_agrees=True,
        notes=("with a learned (heteroscedastic) variance the log-variance term depends on "
               "the parameters and the equivalence is lost.",),
        numeric_check="mse-gaussian-nll",
    )


# -- cross-entropy against MSE for a confidently wrong prediction ------------------------

def _softmax_limits() -> tuple[sp.Expr, sp.Expr]:
    """Softmax over three classes, the true class 0 driven to probability 0 (z0 -> -oo):
    the limits of the cross-entropy and squared-error gradients wrt z0."""
    zs = sp.symbols("z0 z1 z2", real=True)
    ex = [sp.exp(zk) for zk in zs]
    soft = [e / sum(ex) for e in ex]
    ce_soft = sp.diff(-sp.log(soft[0]), zs[0])
    mse_soft = sp.diff(sum((s - (1 if k == 0 else 0)) ** 2 for k, s in enumerate(soft)),
                       zs[0])
    lim_soft = (sp.limit(ce_soft, zs[0], -sp.oo), sp.limit(mse_soft, zs[0], -sp.oo))
    assert lim_soft == (-1, 0)
    return lim_soft


def ce_vs_mse_sigmoid() -> Identity:
    bce, mse = losses.bce(), losses.mse()
    fb, fm = derive(bce).fused["z"], derive(mse).fused["yhat"]
    z = real_symbol("z")
    p = sp.Symbol("p", positive=True)
    sig = 1 / (1 + sp.exp(-z))
    one = {bce.dims["B"]: 1}
    ce_grad = fb.expr.xreplace({bce.tensors["z"].symbol[fb.idx]: z,
                                bce.tensors["y"].symbol[fb.idx]: 1, **one}).rewrite(sp.exp)
    ce_grad = sp.cancel(ce_grad)
    dyhat = fm.expr.xreplace({mse.tensors["yhat"].symbol[fm.idx]: sig,
                              mse.tensors["y"].symbol[fm.idx]: 1,
                              mse.dims["B"]: 1, mse.dims["d"]: 1})
    mse_grad = dyhat * sp.diff(sig, z)
    assert is_zero_rational(ce_grad - (sig - 1))
    lim_ce = sp.limit(ce_grad, z, -sp.oo)
    lim_mse = sp.limit(mse_grad, z, -sp.oo)
    rate = sp.limit(mse_grad / sp.exp(z), z, -sp.oo)
    assert (lim_ce, lim_mse, rate) == (-1, 0, -2)
    # in terms of the predicted probability p = sigma(z): sigma'(z) = p*(1 - p)
    ce_p, mse_p = p - 1, 2 * (p - 1) * p * (1 - p)
    zp = sp.log(p / (1 - p))
    assert is_zero_rational(ce_grad.xreplace({z: zp}) - ce_p)
    assert is_zero_rational(mse_grad.xreplace({z: zp}) - mse_p)
    lim_p = (sp.limit(ce_p, p, 0, "+"), sp.limit(mse_p, p, 0, "+"))
    assert lim_p == (-1, 0)
    lim_soft = _softmax_limits()
    return Identity(
        name="ce-vs-mse-sigmoid",
        title="Cross-entropy against MSE through a sigmoid, confidently wrong prediction",
        statement="For a true label 1 and a predicted probability yhat = sigma(z) -> 0, the "
                  "cross-entropy gradient wrt the logit tends to -1 while the gradient of "
                  "the squared error through the sigmoid tends to 0.",
        holds=True,
        derivation=(
            Step("BCE gradient wrt the logit (component bce, derived; B = 1, y = 1):",
                 ce_grad),
            Step("MSE gradient wrt yhat (component mse, derived; B = d = 1, y = 1) times "
                 "dyhat/dz:", mse_grad),
            Step("in the limit of z to minus infinity (yhat to 0), the CE gradient is",
                 lim_ce),
            Step("  and the MSE gradient", lim_mse),
            Step("  the MSE gradient divided by exp(z) tends to", rate),
            Step("  (to first order it equals -2*yhat: it vanishes with yhat)"),
            Step("in terms of p = yhat: CE gradient", ce_p),
            Step("  MSE gradient", mse_p),
            Step("  limits as p -> 0+:", sp.Tuple(*lim_p)),
            Step("softmax over three classes, true class 0, z_0 to minus infinity: CE "
                 "gradient wrt z_0 and squared-error gradient wrt z_0 tend to",
                 sp.Tuple(*lim_soft)),
        ),
        document="CE gradient dL/dz_k ~ yhat_k - 1 ~ -1; MSE gradient ~ yhat_k - 1 ~ -1, "
                 "but it passes through dyhat_k/dz_k, near zero when yhat_k is near 0 or 1: "
                 "the gradient vanishes",
        document_agrees=True,
        notes=("with a softmax the squared error's gradient passes through the softmax "
               "Jacobian rather than dyhat_k/dz_k, but it carries the factor p_k and vanishes "
               "in the same way.",),
        numeric_check="ce-vs-mse-sigmoid",
    )
