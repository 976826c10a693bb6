"""The equivalences and non-equivalences the reference document asserts, proved or
refuted in SymPy from the catalogue's own equations.

Each function returns an ``Identity`` (symflop.identities): the statement, the verdict,
the derivation step by step, and what the document says.  Optimizer steps, the L2
penalty's gradient, BatchNorm at inference and its fold, and the MSE and BCE
gradients are taken from the catalogue components (``step`` runs a component's pass on
one element, symbolically; ``derive(...).fused`` gives a component's gradient), so that
a proof is about the equations the rest of symflop counts and checks.  The numeric
checks with torch are in validation/identities_torch.py, imported only when they run.

Every simplification here is targeted (``expand`` of small expressions, limits of one
variable); no blanket ``simplify`` of a large expression.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from derivations import losses, normalization, optimizers, regularization
from symflop.core.model import size_symbol
from symflop.derive import derive
from symflop.errors import UsageError
from symflop.report.identities import FORMATS, Identity, Step, evaluate, render, step

NUMERIC = "validation.identities_torch:numeric_check"


def _zero(e: sp.Expr) -> bool:
    return sp.expand(e) == 0


def _zero_rational(e: sp.Expr) -> bool:
    """Zero as a rational function (nested fractions brought over one denominator)."""
    return sp.cancel(sp.together(e)) == 0


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _l2_gradient(theta: sp.Expr) -> tuple[sp.Expr, sp.Symbol]:
    """The L2 penalty's gradient lam*w (component ``l2``, derived), at w = theta."""
    c = regularization.l2()
    f = derive(c).fused["w"]
    w = c.tensors["w"].symbol
    return f.expr.xreplace({w[f.idx]: theta}), c.tensors["lam"].symbol


def _hypers(c, names: str):
    return tuple(c.tensors[n].symbol for n in names.split())


# -- Nesterov ---------------------------------------------------------------------------

class GradL(sp.Function):
    """The loss's gradient at a point, an unknown function: printed nabla L(x)."""

    def _latex(self, printer, exp=None) -> str:
        tex = r"\nabla L\left(" + ", ".join(printer._print(a) for a in self.args) + r"\right)"
        return tex if exp is None else f"{tex}^{{{exp}}}"


def nesterov_lookahead() -> Identity:
    la, tf = optimizers.nesterov_lookahead(), optimizers.nesterov()
    lr, mu = _hypers(la, "lr mu")
    theta, v_prev = _sym("theta_t"), _sym("v_prev")
    grad_l = GradL
    phi = theta - lr * mu * v_prev               # the look-ahead point of step t
    g = grad_l(phi)
    a = step(la, "step", {"theta": theta, "v": v_prev, "g": g})
    b = step(tf, "step", {"theta": phi, "v": v_prev, "g": g})
    assert _zero(a["theta_ahead"] - b["theta"]) and _zero(a["v"] - b["v"])
    # the document's look-ahead point, and Sutskever et al.'s form with v_S = -lr*v
    doc_point = theta + mu * v_prev
    gap = sp.factor(doc_point - phi)
    v_s, g_s = -lr * v_prev, _sym("g")
    v_s_new = mu * v_s - lr * g_s                 # Sutskever et al. (2013), eq. 3
    sutskever_point = theta + mu * v_s
    assert _zero(sutskever_point - phi) and _zero(v_s_new + lr * (mu * v_prev + g_s))
    # the literal document point as a change of variables: not torch's step
    psi = doc_point
    a_doc = step(la, "step", {"theta": theta, "v": v_prev, "g": grad_l(psi)})
    psi_next = a_doc["theta"] + mu * a_doc["v"]
    b_doc = step(tf, "step", {"theta": psi, "v": v_prev, "g": grad_l(psi)})
    doc_gap = sp.factor(sp.expand(psi_next - b_doc["theta"]))
    assert not _zero(doc_gap)
    return Identity(
        name="nesterov-lookahead",
        title="Nesterov momentum: the look-ahead form against torch's nesterov=True",
        statement="The look-ahead recursion g_t = gradL(theta_t - lr*mu*v_{t-1}), "
                  "v_t = mu*v_{t-1} + g_t, theta_{t+1} = theta_t - lr*v_t (component "
                  "nesterov-lookahead) and torch's recursion v_t = mu*v_{t-1} + gradL(p_t), "
                  "p_{t+1} = p_t - lr*(gradL(p_t) + mu*v_t) (component nesterov) produce "
                  "the same sequence of gradients and buffers.",
        holds=True,
        condition="the change of variables p_t = theta_t - lr*mu*v_{t-1} (torch's "
                  "parameters are the look-ahead point), from v_0 = 0 so that p_0 = theta_0",
        derivation=(
            Step("look-ahead point of step t: phi_t =", phi),
            Step("nesterov-lookahead step at gradient gradL(phi_t): v_t =", a["v"]),
            Step("  theta_{t+1} =", a["theta"]),
            Step("  its next look-ahead point theta_{t+1} - lr*mu*v_t =", a["theta_ahead"]),
            Step("torch's step (component nesterov) from p_t = phi_t, same gradient: "
                 "p_{t+1} =", b["theta"]),
            Step("difference of the two next points (expanded):",
                 sp.expand(a["theta_ahead"] - b["theta"])),
            Step("difference of the two buffers:", sp.expand(a["v"] - b["v"])),
            Step("so if p_t = phi_t and the buffers agree, both take the gradient at the "
                 "same point and p_{t+1} = phi_{t+1}; with v_0 = 0 (torch's first buffer is "
                 "g_1 = mu*0 + g_1) p_0 = theta_0 = phi_0, and induction gives every step. "
                 "The map back is theta_t = p_t + lr*mu*v_{t-1}."),
            Step("Sutskever et al. (2013) write v <- mu*v - lr*gradL(theta + mu*v), "
                 "theta <- theta + v; with their v = -lr*v_t their look-ahead point "
                 "theta + mu*v is", sutskever_point),
            Step("the document evaluates the gradient at theta_t + mu*v_{t-1}, which differs "
                 "from phi_t by", gap),
            Step("taken as a change of variables psi_t = theta_t + mu*v_{t-1}, psi_{t+1} "
                 "minus torch's step from psi_t is", doc_gap),
        ),
        document="Step 1: evaluate the gradient at theta_t + mu*v_{t-1} (the anticipated "
                 "next position), with v_t = mu*v_{t-1} + g_t and theta_{t+1} = theta_t - "
                 "eta*v_t",
        document_agrees=False,
        notes=("the document's look-ahead point has the wrong sign and lacks the factor "
               "lr: with its own update theta_{t+1} = theta_t - lr*v_t, momentum carries "
               "the parameters to theta_t - lr*mu*v_{t-1}; theta_t + mu*v_{t-1} is "
               "Sutskever et al.'s expression, written for their velocity (which is -lr "
               "times the document's).",
               "in torch's form the network is evaluated at the parameters themselves, so "
               "no separate look-ahead vector is computed or stored."),
        numeric_check=NUMERIC,
    )


# -- L2 regularization against weight decay ----------------------------------------------

def l2_weight_decay_sgd() -> Identity:
    c = optimizers.sgd()
    (lr,) = _hypers(c, "lr")
    theta, g = _sym("theta"), _sym("g")
    l2g, lam = _l2_gradient(theta)
    lam_wd = sp.Symbol("lam_wd", positive=True)
    with_l2 = step(c, "step", {"theta": theta, "g": g + l2g})["theta"]
    decoupled = theta * (1 - lr * lam_wd) - lr * g
    diff = sp.factor(sp.expand(with_l2 - decoupled))
    sol = sp.solve(diff, lam_wd)
    assert sol == [lam]
    return Identity(
        name="l2-weight-decay-sgd",
        title="L2 regularization against weight decay, plain SGD",
        statement="One SGD step on L + (lam/2)*||theta||^2 equals the weight-decay step "
                  "theta*(1 - lr*lam_wd) - lr*gradL with lam_wd = lam.",
        holds=True,
        derivation=(
            Step("gradient of the L2 penalty (component l2, derived):", l2g),
            Step("SGD step (component sgd) on the regularized gradient g + lam*theta:",
                 with_l2),
            Step("decoupled weight decay with coefficient lam_wd:", decoupled),
            Step("difference:", diff),
            Step("zero for every theta and g if and only if lam_wd =", sol[0]),
            Step("(with the penalty lam*||theta||^2, without the 1/2, lam_wd = 2*lam; in "
                 "Loshchilov & Hutter's form theta*(1 - lam_LH) - lr*g, lam_LH = lr*lam)"),
        ),
        document="In SGD, L2 regularization is equivalent to weight decay: w <- w(1 - "
                 "eta*lambda) - eta*dL/dw",
        document_agrees=True,
        notes=("torch.optim.SGD(weight_decay=lam) adds lam*theta to the gradient, i.e. it is "
               "L2 regularization, which for plain SGD is this weight decay.",),
        numeric_check=NUMERIC,
    )


def l2_weight_decay_momentum() -> Identity:
    c = optimizers.momentum()
    lr, mu = _hypers(c, "lr mu")
    theta0, g1, g2 = _sym("theta_0"), _sym("g_1"), _sym("g_2")
    l2g0, lam = _l2_gradient(theta0)
    # L2: the penalty's gradient goes into the momentum buffer (torch SGD weight_decay)
    s1 = step(c, "step", {"theta": theta0, "v": 0, "g": g1 + l2g0})
    l2g1, _ = _l2_gradient(s1["theta"])
    s2 = step(c, "step", {"theta": s1["theta"], "v": s1["v"], "g": g2 + l2g1})
    # decoupled (SGDW): the buffer sees only the loss gradient, the decay acts on theta
    d1 = step(c, "step", {"theta": theta0, "v": 0, "g": g1})
    d1_theta = d1["theta"] - lr * lam * theta0
    d2 = step(c, "step", {"theta": d1_theta, "v": d1["v"], "g": g2})
    d2_theta = d2["theta"] - lr * lam * d1_theta
    first = sp.expand(s1["theta"] - d1_theta)
    second = sp.factor(sp.expand(s2["theta"] - d2_theta))
    assert first == 0 and second == -lr * lam * mu * theta0
    return Identity(
        name="l2-weight-decay-momentum",
        title="L2 regularization against weight decay, SGD with momentum",
        statement="SGD with momentum on L + (lam/2)*||theta||^2 (torch SGD(momentum=mu, "
                  "weight_decay=lam)) equals momentum SGD with decoupled weight decay "
                  "theta <- theta - lr*v - lr*lam*theta (SGDW).",
        holds=False,
        derivation=(
            Step("L2: the buffer accumulates g + lam*theta (component momentum). From "
                 "theta_0, v_0 = 0: theta_1 =", s1["theta"]),
            Step("  theta_2 =", sp.expand(s2["theta"])),
            Step("decoupled: the buffer accumulates g only, theta also shrinks by "
                 "lr*lam*theta: theta_1 =", sp.expand(d1_theta)),
            Step("  theta_2 =", sp.expand(d2_theta)),
            Step("first steps differ by", first),
            Step("both second gradients are taken at the same theta_1, so g_2 is shared; "
                 "second steps differ by", second),
            Step("nonzero whenever mu*lam*theta_0 != 0: the decay of theta_0 stays in the "
                 "buffer and is applied again, mu times smaller, at every later step; no "
                 "constant lam_wd fixes it (the first step forces lam_wd = lam)"),
        ),
        notes=("the document's SGD statement holds for plain SGD (l2-weight-decay-sgd); "
               "with momentum, torch's weight_decay is L2 regularization and is not "
               "decoupled weight decay.",),
        numeric_check=NUMERIC,
    )


def l2_weight_decay_adam() -> Identity:
    adam, adamw = optimizers.adam(), optimizers.adamw()
    lr, eps, beta1, beta2 = _hypers(adam, "lr epsilon beta1 beta2")
    theta, g = _sym("theta"), _sym("g")
    l2g, lam = _l2_gradient(theta)
    start = {"theta": theta, "m": 0, "v": 0, "t": 0}
    with_l2 = step(adam, "step", {**start, "g": g + l2g})["theta"]
    decoupled = step(adamw, "step", {**start, "g": g})["theta"]
    diff = with_l2 - decoupled
    point = {g: 1, theta: 1, lam: sp.Rational(1, 100), lr: sp.Rational(1, 1000)}
    at_eps0 = sp.nsimplify(diff.xreplace({**point, eps: 0}))
    at_eps = diff.xreplace({**point, eps: sp.Rational(1, 10 ** 8)})
    assert at_eps0 == sp.Rational(1, 100000) and at_eps != 0
    # which decoupled coefficient would reproduce the L2 step: it depends on g
    lam_wd = sp.Symbol("lam_wd", positive=True)
    decoupled_wd = step(adamw, "step", {**start, "g": g})["theta"].xreplace({lam: lam_wd})
    needed = sp.solve(sp.Eq(with_l2, decoupled_wd), lam_wd)
    assert len(needed) == 1
    needed = needed[0]
    pos_g, pos_t = sp.Symbol("g", positive=True), sp.Symbol("theta", positive=True)
    needed_eps0 = sp.simplify(needed.xreplace({g: pos_g, theta: pos_t, eps: 0}))
    flip = {g: sp.Rational(-1, 1000), theta: 1, lam: sp.Rational(1, 100), eps: 0}
    needed_flip = needed.xreplace(flip)
    assert needed_eps0 == 0 and needed_flip == 2
    return Identity(
        name="l2-weight-decay-adam",
        title="L2 regularization against weight decay, Adam: Adam with L2 against AdamW",
        statement="An Adam step on L + (lam/2)*||theta||^2 (torch Adam(weight_decay=lam)) "
                  "equals the AdamW step theta - lr*(mhat/(sqrt(vhat) + eps) + lam*theta) "
                  "(torch AdamW(weight_decay=lam)).",
        holds=False,
        derivation=(
            Step("gradient of the L2 penalty (component l2, derived):", l2g),
            Step("first Adam step (component adam) from m = v = 0, t = 0 on g + lam*theta: "
                 "theta_1 =", with_l2),
            Step("first AdamW step (component adamw) from the same state on g: theta_1 =",
                 decoupled),
            Step("difference (for any beta1, beta2: the bias correction makes mhat_1, "
                 "vhat_1 the gradient and its square):", diff),
            Step("counterexample g = 1, theta = 1, lam = 1/100, lr = 1/1000, eps = 0:",
                 at_eps0),
            Step("  the same with eps = 1e-8:", at_eps.evalf(6)),
            Step("the L2 gradient passes through the adaptive denominator: the decoupled "
                 "coefficient that would reproduce the L2 step is", needed),
            Step("  it depends on g (so no constant lam_wd works); for g, theta > 0 and "
                 "eps = 0 it is", needed_eps0),
            Step("  i.e. Adam's normalization cancels the L2 term of the first step entirely "
                 "unless it flips the sign of g + lam*theta; at g = -1/1000, theta = 1, "
                 "lam = 1/100, eps = 0, where it does, it is", needed_flip),
        ),
        document="In Adam, L2 regularization and weight decay are not equivalent (unlike "
                 "in SGD), because Adam's adaptive scaling distorts the regularization "
                 "gradient",
        document_agrees=True,
        numeric_check=NUMERIC,
    )


# -- BatchNorm folding -------------------------------------------------------------------

def batchnorm_fold() -> Identity:
    bn, fold = normalization.batchnorm(), normalization.batchnorm_fold()
    (eps,) = _hypers(bn, "epsilon")
    K = size_symbol("K")
    k = sp.Idx("k", K)
    W, u = sp.IndexedBase("W", real=True), sp.IndexedBase("u", real=True)
    b, gamma, beta, rm = (_sym(n) for n in ("b", "gamma", "beta", "running_mean"))
    rv = sp.Symbol("running_var", nonnegative=True)
    z = sp.Sum(W[k] * u[k], (k, 0, K - 1)) + b       # one output of the linear layer
    stats = {"gamma": gamma, "beta": beta, "running_mean": rm, "running_var": rv}
    y = step(bn, "inference", {**stats, "x": z})["y_inf"]
    folded = step(fold, "fold", {**stats, "W": W[k], "b": b})
    y_f = sp.Sum(folded["W_f"] * u[k], (k, 0, K - 1)) + folded["b_f"]
    diff = y - y_f
    # linearity of the sum: a factor that does not depend on k moves out of it
    diff_out = diff.replace(lambda e: isinstance(e, sp.Sum), lambda e: sp.factor_terms(e))
    assert _zero(diff_out)
    small = {K: 3}
    assert _zero(diff.xreplace(small).doit())
    sigma = sp.sqrt(rv + eps)
    x = _sym("x")
    y_x = step(bn, "inference", {**stats, "x": x})["y_inf"]
    def doc_affine(sd):
        return gamma / sd * x + (beta - gamma * rm / sd)

    doc_form, no_eps = doc_affine(sigma), doc_affine(sp.sqrt(rv))
    assert _zero(y_x - doc_form) and not _zero(y_x - no_eps)
    return Identity(
        name="batchnorm-fold",
        title="Inference BatchNorm folded into the preceding linear or convolution layer",
        statement="BatchNorm at inference (running statistics) applied to z = W u + b equals "
                  "the layer W_f u + b_f with W_f = s*W, b_f = s*(b - running_mean) + beta, "
                  "s = gamma/sqrt(running_var + eps), per output feature or channel.",
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
                 sp.expand(y_x - doc_form)),
            Step("  with sigma = sqrt(running_var) (eps left out) it is instead",
                 sp.factor(y_x - no_eps)),
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
        numeric_check=NUMERIC,
    )


# -- Adam's bias correction --------------------------------------------------------------

def adam_bias_correction() -> Identity:
    c = optimizers.adam()
    lr, eps, beta1, beta2 = _hypers(c, "lr epsilon beta1 beta2")
    theta, g = _sym("theta"), _sym("g")
    first = step(c, "step", {"theta": theta, "g": g, "m": 0, "v": 0, "t": 0})
    assert _zero(first["mhat"] - g) and _zero(first["vhat"] - g ** 2)
    assert first["t"] == 1
    # constant gradient: m_t = (1 - beta1**t)*g for every t (induction with the same step)
    t = sp.Symbol("t", integer=True, nonnegative=True)
    m_t, v_t = (1 - beta1 ** t) * g, (1 - beta2 ** t) * g ** 2
    nxt = step(c, "step", {"theta": theta, "g": g, "m": m_t, "v": v_t, "t": t})
    assert _zero(nxt["m"] - m_t.xreplace({t: t + 1}))
    assert _zero(nxt["v"] - v_t.xreplace({t: t + 1}))
    assert sp.simplify(nxt["mhat"] - g) == 0 and sp.simplify(nxt["vhat"] - g ** 2) == 0
    doc = {beta1: sp.Rational(9, 10), beta2: sp.Rational(999, 1000)}
    m1_raw = first["m"].xreplace(doc)
    v1_raw = first["v"].xreplace(doc)
    gp = sp.Symbol("g", positive=True)
    lr_factor = gp / sp.sqrt(v1_raw.xreplace({g: gp}))         # (eta/sqrt(v_1)) / (eta/|g|)
    raw_step = m1_raw.xreplace({g: gp}) / sp.sqrt(v1_raw.xreplace({g: gp}))  # eps = 0
    return Identity(
        name="adam-bias-correction",
        title="Adam's bias correction at t = 1",
        statement="From m_0 = v_0 = 0, Adam's bias-corrected moments at t = 1 are "
                  "mhat_1 = g_1 and vhat_1 = g_1**2, for any beta1, beta2 in (0, 1).",
        holds=True,
        derivation=(
            Step("first step of component adam from m = v = 0, t = 0: m_1 =", first["m"]),
            Step("  v_1 =", first["v"]),
            Step("  mhat_1 =", sp.cancel(first["mhat"])),
            Step("  vhat_1 =", sp.cancel(first["vhat"])),
            Step("  theta_1 =", first["theta"].xreplace({first["mhat"]: g})),
            Step("more generally, for a constant gradient g, m_t = (1 - beta1**t)*g solves "
                 "the recursion (the step maps it to the same form at t + 1), so mhat_t = g "
                 "at every t; likewise vhat_t = g**2"),
            Step("at the document's betas (0.9, 0.999): m_1 =", m1_raw),
            Step("  v_1 =", v1_raw),
            Step("  eta/sqrt(v_1) is eta/|g_1| times", lr_factor),
            Step("  =", lr_factor.evalf(4)),
            Step("  with neither moment corrected the first step is eta*sign(g_1) times",
                 raw_step),
            Step("  =", raw_step.evalf(4)),
        ),
        document="the correction divides by (1 - 0.9) = 0.1, recovering mhat_1 = g_1; ... "
                 "vhat_1 = g_1^2; without correction eta/sqrt(0.001 g_1^2) is about 30x too "
                 "large",
        document_agrees=True,
        notes=("the document's 'about 30x' (31.6x) is the factor on eta/sqrt(v) alone; an "
               "Adam step with neither moment corrected would be 3.16x the corrected one, "
               "since m_1 is also 10x too small.",),
        numeric_check=NUMERIC,
    )


# -- MSE and the Gaussian likelihood -----------------------------------------------------

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
    assert _zero(rest.function - sp.expand(per_output))
    assert _zero(rest.doit() - sp.expand(const))
    f = derive(c).fused["yhat"]
    g_nll = sp.diff(nll_body, yhat[i, j])
    ratio = sp.cancel(g_nll / f.expr)
    assert ratio == scale
    return Identity(
        name="mse-gaussian-nll",
        title="MSE as the Gaussian negative log-likelihood",
        statement="The negative log-likelihood of y under N(yhat, sigma^2*I), summed over the "
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
                 "Gaussian model N(yhat, sigma^2 I) with fixed variance",
        document_agrees=True,
        notes=("with a learned (heteroscedastic) variance the log-variance term depends on "
               "the parameters and the equivalence is lost.",),
        numeric_check=NUMERIC,
    )


# -- cross-entropy against MSE for a confidently wrong prediction ------------------------

def ce_vs_mse_sigmoid() -> Identity:
    bce, mse = losses.bce(), losses.mse()
    fb, fm = derive(bce).fused["z"], derive(mse).fused["yhat"]
    z = _sym("z")
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
    assert _zero_rational(ce_grad - (sig - 1))
    lim_ce = sp.limit(ce_grad, z, -sp.oo)
    lim_mse = sp.limit(mse_grad, z, -sp.oo)
    rate = sp.limit(mse_grad / sp.exp(z), z, -sp.oo)
    assert (lim_ce, lim_mse, rate) == (-1, 0, -2)
    # in terms of the predicted probability p = sigma(z): sigma'(z) = p*(1 - p)
    ce_p, mse_p = p - 1, 2 * (p - 1) * p * (1 - p)
    zp = sp.log(p / (1 - p))
    assert _zero_rational(ce_grad.xreplace({z: zp}) - ce_p)
    assert _zero_rational(mse_grad.xreplace({z: zp}) - mse_p)
    lim_p = (sp.limit(ce_p, p, 0, "+"), sp.limit(mse_p, p, 0, "+"))
    assert lim_p == (-1, 0)
    # softmax over three classes, the true class 0 driven to probability 0
    zs = sp.symbols("z0 z1 z2", real=True)
    ex = [sp.exp(zk) for zk in zs]
    soft = [e / sum(ex) for e in ex]
    ce_soft = sp.diff(-sp.log(soft[0]), zs[0])
    mse_soft = sp.diff(sum((s - (1 if k == 0 else 0)) ** 2 for k, s in enumerate(soft)),
                       zs[0])
    lim_soft = (sp.limit(ce_soft, zs[0], -sp.oo), sp.limit(mse_soft, zs[0], -sp.oo))
    assert lim_soft == (-1, 0)
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
                 "sigma'(z):", mse_grad),
            Step("as z -> -oo (yhat -> 0): CE gradient ->", lim_ce),
            Step("  MSE gradient ->", lim_mse),
            Step("  MSE gradient / exp(z) ->", rate),
            Step("  (it vanishes like -2*exp(z) = -2*yhat to first order)"),
            Step("in terms of p = yhat: CE gradient", ce_p),
            Step("  MSE gradient", mse_p),
            Step("  limits as p -> 0+:", sp.Tuple(*lim_p)),
            Step("softmax over three classes, true class 0, z0 -> -oo: CE gradient wrt z0 "
                 "and squared-error gradient wrt z0 tend to", sp.Tuple(*lim_soft)),
        ),
        document="CE gradient dL/dz_k ~ yhat_k - 1 ~ -1; MSE gradient ~ yhat_k - 1 ~ -1, "
                 "but it passes through sigma'(z_k), near zero when yhat_k is near 0 or 1: "
                 "the gradient vanishes",
        document_agrees=True,
        notes=("with a softmax the squared error's gradient passes through the softmax "
               "Jacobian rather than sigma'(z_k), but it carries the factor p_k and vanishes "
               "in the same way.",),
        numeric_check=NUMERIC,
    )


IDENTITIES = {
    "nesterov-lookahead": nesterov_lookahead,
    "l2-weight-decay-sgd": l2_weight_decay_sgd,
    "l2-weight-decay-momentum": l2_weight_decay_momentum,
    "l2-weight-decay-adam": l2_weight_decay_adam,
    "batchnorm-fold": batchnorm_fold,
    "adam-bias-correction": adam_bias_correction,
    "mse-gaussian-nll": mse_gaussian_nll,
    "ce-vs-mse-sigmoid": ce_vs_mse_sigmoid,
}


@lru_cache(maxsize=2)
def _evaluated(numeric: bool) -> tuple[Identity, ...]:
    return tuple(evaluate(IDENTITIES, numeric))


def report(fmt: str = "text", numeric: bool = True) -> str:
    """Every identity of this catalogue, evaluated and rendered ("text", "markdown", "json").

    The numeric checks run when torch and the validation package can be imported; without
    them each says it did not run.  The evaluation is done once per process and
    ``numeric`` setting; each format renders the same records.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    return render(list(_evaluated(bool(numeric))), fmt)
