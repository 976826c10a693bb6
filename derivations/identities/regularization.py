"""The identities of the section "Regularization": L2 regularization against weight
decay, with plain SGD (equal), SGD with momentum and Adam (not equal)."""

from __future__ import annotations

import sympy as sp

from derivations import optimizers, regularization
from derivations.identities.proof import hypers, real_symbol
from symflop.derive import derive
from symflop.report.identities import Identity, Step, step


def _l2_gradient(theta: sp.Expr) -> tuple[sp.Expr, sp.Symbol]:
    """The L2 penalty's gradient lam*w (component ``l2``, derived), at w = theta."""
    c = regularization.l2()
    f = derive(c).fused["w"]
    w = c.tensors["w"].symbol
    return f.expr.xreplace({w[f.idx]: theta}), c.tensors["lam"].symbol


def l2_weight_decay_sgd() -> Identity:
    c = optimizers.sgd()
    (lr,) = hypers(c, "lr")
    theta, g = real_symbol("theta"), real_symbol("g")
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
        numeric_check="l2-weight-decay-sgd",
    )


def l2_weight_decay_momentum() -> Identity:
    c = optimizers.momentum()
    lr, mu = hypers(c, "lr mu")
    theta0, g1, g2 = real_symbol("theta_0"), real_symbol("g_1"), real_symbol("g_2")
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
        numeric_check="l2-weight-decay-momentum",
    )


def l2_weight_decay_adam() -> Identity:
    adam, adamw = optimizers.adam(), optimizers.adamw()
    lr, eps, beta1, beta2 = hypers(adam, "lr epsilon beta1 beta2")
    theta, g = real_symbol("theta"), real_symbol("g")
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
        numeric_check="l2-weight-decay-adam",
    )
