"""Optimizers (section "Optimizers" of the reference document): one ``step`` pass each.

Every optimizer updates P parameters ``theta`` from a gradient ``g``; state that persists
across steps is declared with ``c.state`` so that the engine derives its memory.  Where
torch.optim and the document write an update differently (the place of epsilon in AdaGrad
and RMSProp, Nesterov's look-ahead), both forms are catalogued under separate names.
Hyperparameter defaults are torch.optim's, except where noted.
"""

from __future__ import annotations

import sympy as sp

from symflop import Component, Fact


def _params(name: str, summary: str, reference: str):
    """A component with P parameters ``theta`` and gradient ``g``: (c, p, theta, g)."""
    c = Component(name, "Optimizers", summary, reference=reference)
    P = c.dim("P")
    p = c.index(p=P)
    theta = c.parameter("theta", (P,), doc="parameters")
    g = c.input("g", (P,), doc="gradient")
    return c, p, theta, g


def _bias_corrected_moments(c: Component, p, g):
    """Adam's first and second moment EMAs and their bias correction (Kingma & Ba 2015,
    Algorithm 1); returns (mhat, vhat).  Shared by adam and adamw."""
    P = (c.dims["P"],)
    m = c.state("m", P, doc="first moment estimate")
    v = c.state("v", P, facts=(Fact.NONNEGATIVE,), doc="second moment estimate")
    t = c.state("t", doc="step count").symbol
    beta1, beta2 = c.hyper("beta1 beta2", beta1=0.9, beta2=0.999)
    mhat = c.intermediate("mhat", P, doc="bias-corrected first moment")
    vhat = c.intermediate("vhat", P, doc="bias-corrected second moment")
    s = "step"
    c.assign(s, t, t + 1)
    c.assign(s, m[p], beta1 * m[p] + (1 - beta1) * g[p])
    c.assign(s, v[p], beta2 * v[p] + (1 - beta2) * g[p] ** 2)
    c.assign(s, mhat[p], m[p] / (1 - beta1 ** t))
    c.assign(s, vhat[p], v[p] / (1 - beta2 ** t))
    return mhat, vhat


def adam() -> Component:
    """Adam with bias correction (Kingma & Ba 2015, Algorithm 1), every hyperparameter symbolic.

    The step counter t is state (torch keeps it per parameter); epsilon is added
    outside the square root, as in the paper, the document and torch.optim.Adam.
    Defaults are torch's: lr=1e-3, betas (0.9, 0.999), eps=1e-8.
    """
    c, p, theta, g = _params("adam",
                             "Adam step: m and v moving averages of g and g^2, bias-corrected "
                             "to mhat and vhat, theta <- theta - lr*mhat/(sqrt(vhat) + eps)",
                             "Kingma & Ba (2015), ICLR")
    mhat, vhat = _bias_corrected_moments(c, p, g)
    lr, eps = c.hyper("lr epsilon", lr=1e-3, epsilon=1e-8)
    c.assign("step", theta[p], theta[p] - lr * mhat[p] / (sp.sqrt(vhat[p]) + eps))
    return c


def sgd() -> Component:
    """Plain gradient descent: theta <- theta - lr*g (torch.optim.SGD, momentum=0)."""
    c, p, theta, g = _params("sgd", "SGD step: theta <- theta - lr*g",
                             "torch.optim.SGD; Goodfellow et al. (2016), Algorithm 8.1")
    lr = c.hyper("lr", lr=1e-3)
    c.assign("step", theta[p], theta[p] - lr * g[p])
    return c


def momentum() -> Component:
    """SGD with heavy-ball momentum (Polyak 1964), as the document and torch write it.

    v <- mu*v + g; theta <- theta - lr*v.  This is torch.optim.SGD(momentum=mu,
    dampening=0): torch's first step sets the buffer to g, which is mu*0 + g from a zero
    buffer.  The default mu = 0.9 is the document's typical value (torch's default is 0,
    which is plain SGD and not a positive value).
    """
    c, p, theta, g = _params("momentum", "SGD with momentum: v <- mu*v + g, theta <- theta - lr*v",
                             "Polyak (1964); torch.optim.SGD(momentum=mu, dampening=0)")
    v = c.state("v", theta.shape, doc="velocity (momentum buffer)")
    lr, mu = c.hyper("lr mu", lr=1e-3, mu=0.9)
    c.assign("step", v[p], mu * v[p] + g[p])
    c.assign("step", theta[p], theta[p] - lr * v[p])
    return c


def nesterov() -> Component:
    """Nesterov momentum in torch's reformulation (torch.optim.SGD(momentum=mu, nesterov=True)).

    v <- mu*v + g; theta <- theta - lr*(g + mu*v), with g the gradient at theta.  Here
    theta is the look-ahead point of the document's form (see ``nesterov-lookahead``), so
    the gradient is taken at the parameters themselves and no separate look-ahead
    position is stored.  Default mu = 0.9 as for ``momentum``.
    """
    c, p, theta, g = _params("nesterov",
                             "Nesterov momentum, torch's form: theta <- theta - lr*(g + mu*v)",
                             "Sutskever et al. (2013), ICML; torch.optim.SGD(nesterov=True)")
    v = c.state("v", theta.shape, doc="velocity (momentum buffer)")
    lr, mu = c.hyper("lr mu", lr=1e-3, mu=0.9)
    c.assign("step", v[p], mu * v[p] + g[p])
    c.assign("step", theta[p], theta[p] - lr * (g[p] + mu * v[p]))
    return c


def nesterov_lookahead() -> Component:
    """Nesterov momentum in the document's look-ahead form (Sutskever et al. 2013, eq. 3-4).

    The gradient g is evaluated at the look-ahead point; the step updates
    v <- mu*v + g and theta <- theta - lr*v, and outputs the point at which the next
    gradient must be evaluated, theta_ahead = theta - lr*mu*v (with the updated theta and v).

    Sign: with the document's update theta_{t+1} = theta_t - lr*v_t, momentum alone would
    carry the parameters to theta_t - lr*mu*v_{t-1}; that is the anticipated next
    position.  The document writes the look-ahead point as theta_t + mu*v_{t-1}, which is
    Sutskever et al.'s expression for their convention v <- mu*v - lr*g, theta <- theta + v
    (v there is -lr times the v here); mixed with the document's own update rule it has
    the wrong sign and lacks the factor lr.

    Under the change of variables theta_ahead = theta - lr*mu*v this is exactly torch's
    reformulation (component ``nesterov``): theta_ahead_{t+1} = theta_ahead_t
    - lr*(g + mu*v_t).  Storing theta, v and the look-ahead point at which the network is
    evaluated costs one P-vector more than torch's form, which keeps only the look-ahead
    point (as its parameters) and v.
    """
    c, p, theta, g = _params("nesterov-lookahead",
                             "Nesterov momentum, look-ahead form: theta <- theta - lr*v, next "
                             "gradient "
                             "at theta - lr*mu*v",
                             "Sutskever et al. (2013), ICML, eqs. 3-4")
    v = c.state("v", theta.shape, doc="velocity (momentum buffer)")
    ahead = c.output("theta_ahead", theta.shape,
                     doc="look-ahead point at which the next gradient is evaluated")
    lr, mu = c.hyper("lr mu", lr=1e-3, mu=0.9)
    c.assign("step", v[p], mu * v[p] + g[p])
    c.assign("step", theta[p], theta[p] - lr * v[p])
    c.assign("step", ahead[p], theta[p] - lr * mu * v[p])
    return c


def _adagrad(name: str, eps_inside: bool) -> Component:
    form = "sqrt(G + eps)" if eps_inside else "(sqrt(G) + eps)"
    c, p, theta, g = _params(name, f"AdaGrad step: G <- G + g^2, theta <- theta - lr*g/{form}",
                             "Duchi et al. (2011), JMLR; torch.optim.Adagrad")
    G = c.state("G", theta.shape, facts=(Fact.NONNEGATIVE,),
                doc="sum of squared gradients")
    lr, eps = c.hyper("lr epsilon", lr=1e-2, epsilon=1e-10)
    c.assign("step", G[p], G[p] + g[p] ** 2)
    denom = sp.sqrt(G[p] + eps) if eps_inside else sp.sqrt(G[p]) + eps
    c.assign("step", theta[p], theta[p] - lr * g[p] / denom)
    return c


def adagrad() -> Component:
    """AdaGrad as torch.optim.Adagrad computes it (lr_decay=0, initial_accumulator_value=0).

    G <- G + g**2; theta <- theta - lr*g/(sqrt(G) + eps).  Epsilon outside the square
    root, as in torch (``std = state_sum.sqrt().add_(eps)``); defaults lr=1e-2,
    eps=1e-10 are torch's.  torch also keeps a step count, used only by lr_decay.
    """
    return _adagrad("adagrad", eps_inside=False)


def adagrad_eps_inside() -> Component:
    """AdaGrad as the document writes it: theta <- theta - lr*g/sqrt(G + eps).

    Epsilon inside the square root; it differs from torch's optimizer by a relative
    amount of order eps/G (and is not the same update for any fixed eps).
    """
    return _adagrad("adagrad-eps-inside", eps_inside=True)


def _rmsprop(name: str, eps_inside: bool, defaults: dict) -> Component:
    form = "sqrt(v + eps)" if eps_inside else "(sqrt(v) + eps)"
    c, p, theta, g = _params(name, "RMSProp step: v <- alpha*v + (1 - alpha)*g^2, "
                             f"theta <- theta - lr*g/{form}",
                             "Hinton (2012), Coursera lecture 6e; torch.optim.RMSprop")
    v = c.state("v", theta.shape, facts=(Fact.NONNEGATIVE,),
                doc="moving average of squared gradients")
    lr, alpha, eps = c.hyper("lr alpha epsilon", **defaults)
    c.assign("step", v[p], alpha * v[p] + (1 - alpha) * g[p] ** 2)
    denom = sp.sqrt(v[p] + eps) if eps_inside else sp.sqrt(v[p]) + eps
    c.assign("step", theta[p], theta[p] - lr * g[p] / denom)
    return c


def rmsprop() -> Component:
    """RMSProp as torch.optim.RMSprop computes it (momentum=0, centered=False).

    v <- alpha*v + (1 - alpha)*g**2; theta <- theta - lr*g/(sqrt(v) + eps), with torch's
    defaults lr=1e-2, alpha=0.99, eps=1e-8.  The document calls alpha beta.
    """
    return _rmsprop("rmsprop", eps_inside=False,
                    defaults={"lr": 1e-2, "alpha": 0.99, "epsilon": 1e-8})


def rmsprop_eps_inside() -> Component:
    """RMSProp as the document writes it: theta <- theta - lr*g/sqrt(v + eps).

    Decay alpha (the document's beta) defaults to its typical 0.9 (Hinton's lecture);
    lr=1e-3 as Hinton suggests, eps=1e-8.
    """
    return _rmsprop("rmsprop-eps-inside", eps_inside=True,
                    defaults={"lr": 1e-3, "alpha": 0.9, "epsilon": 1e-8})


def adamw() -> Component:
    """AdamW, decoupled weight decay (Loshchilov & Hutter 2019), as the document writes it.

    Moments and bias correction as in ``adam``; then
    theta <- theta - lr*(mhat/(sqrt(vhat) + eps) + lam*theta).
    torch.optim.AdamW(weight_decay=lam) first sets theta <- theta*(1 - lr*lam) and then
    subtracts lr*mhat/(sqrt(vhat) + eps): expanded, the same update.  (In the paper the
    decay is scaled by a schedule multiplier eta_t instead of lr; torch and the document
    use lr.)  Defaults are torch's: lr=1e-3, betas (0.9, 0.999), eps=1e-8, lam=1e-2.
    """
    c, p, theta, g = _params("adamw", "AdamW step: Adam's moments, decay decoupled: "
                             "theta <- theta - lr*(mhat/(sqrt(vhat) + eps) + lam*theta)",
                             "Loshchilov & Hutter (2019), ICLR; torch.optim.AdamW")
    mhat, vhat = _bias_corrected_moments(c, p, g)
    lr, eps, lam = c.hyper("lr epsilon lam", lr=1e-3, epsilon=1e-8, lam=1e-2)
    c.assign("step", theta[p],
             theta[p] - lr * (mhat[p] / (sp.sqrt(vhat[p]) + eps) + lam * theta[p]))
    return c


COMPONENTS = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "nesterov-lookahead": nesterov_lookahead,
    "adagrad": adagrad,
    "adagrad-eps-inside": adagrad_eps_inside,
    "rmsprop": rmsprop,
    "rmsprop-eps-inside": rmsprop_eps_inside,
    "adam": adam,
    "adamw": adamw,
}
