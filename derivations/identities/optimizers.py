"""The identities of the section "Optimizers": Nesterov's look-ahead form against
torch's ``nesterov=True``, and Adam's bias correction at the first step."""

from __future__ import annotations

import sympy as sp

from derivations import optimizers
from derivations.identities.proof import hypers, is_zero, real_symbol
from symflop.core.model import Component
from symflop.report.identities import Identity, Step, step


class GradL(sp.Function):
    """The loss's gradient at a point, an unknown function: printed nabla L(x)."""

    def _latex(self, printer, exp=None) -> str:
        tex = r"\nabla L\left(" + ", ".join(printer._print(a) for a in self.args) + r"\right)"
        return tex if exp is None else f"{tex}^{{{exp}}}"


def _document_point(la: Component, tf: Component, theta: sp.Expr, v_prev: sp.Expr,
                    phi: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """The document's look-ahead point theta_t + mu*v_{t-1} against phi_t: their gap;
    Sutskever et al.'s point, with v_S = -lr*v (it is phi_t); and the document's point
    taken as a change of variables, whose next point is not torch's step (the gap)."""
    lr, mu = hypers(la, "lr mu")
    doc_point = theta + mu * v_prev
    gap = sp.factor(doc_point - phi)
    v_s, g_s = -lr * v_prev, real_symbol("g")
    v_s_new = mu * v_s - lr * g_s                 # Sutskever et al. (2013), eq. 3
    sutskever_point = theta + mu * v_s
    assert is_zero(sutskever_point - phi) and is_zero(v_s_new + lr * (mu * v_prev + g_s))
    # the literal document point as a change of variables: not torch's step
    psi = doc_point
    a_doc = step(la, "step", {"theta": theta, "v": v_prev, "g": GradL(psi)})
    psi_next = a_doc["theta"] + mu * a_doc["v"]
    b_doc = step(tf, "step", {"theta": psi, "v": v_prev, "g": GradL(psi)})
    doc_gap = sp.factor(sp.expand(psi_next - b_doc["theta"]))
    assert not is_zero(doc_gap)
    return gap, sutskever_point, doc_gap


def nesterov_lookahead() -> Identity:
    la, tf = optimizers.nesterov_lookahead(), optimizers.nesterov()
    lr, mu = hypers(la, "lr mu")
    theta, v_prev = real_symbol("theta_t"), real_symbol("v_prev")
    phi = theta - lr * mu * v_prev               # the look-ahead point of step t
    g = GradL(phi)
    a = step(la, "step", {"theta": theta, "v": v_prev, "g": g})
    b = step(tf, "step", {"theta": phi, "v": v_prev, "g": g})
    assert is_zero(a["theta_ahead"] - b["theta"]) and is_zero(a["v"] - b["v"])
    gap, sutskever_point, doc_gap = _document_point(la, tf, theta, v_prev, phi)
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
                 "same point and p_{t+1} = phi_{t+1}; with v_0 = 0, torch's first buffer is "
                 "v_1 = g_1, so p_0 = theta_0 = phi_0, and induction gives every step. "
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
        numeric_check="nesterov-lookahead",
    )


def adam_bias_correction() -> Identity:
    c = optimizers.adam()
    lr, eps, beta1, beta2 = hypers(c, "lr epsilon beta1 beta2")
    theta, g = real_symbol("theta"), real_symbol("g")
    first = step(c, "step", {"theta": theta, "g": g, "m": 0, "v": 0, "t": 0})
    assert is_zero(first["mhat"] - g) and is_zero(first["vhat"] - g ** 2)
    assert first["t"] == 1
    # constant gradient: m_t = (1 - beta1**t)*g for every t (induction with the same step)
    t = sp.Symbol("t", integer=True, nonnegative=True)
    m_t, v_t = (1 - beta1 ** t) * g, (1 - beta2 ** t) * g ** 2
    nxt = step(c, "step", {"theta": theta, "g": g, "m": m_t, "v": v_t, "t": t})
    assert is_zero(nxt["m"] - m_t.xreplace({t: t + 1}))
    assert is_zero(nxt["v"] - v_t.xreplace({t: t + 1}))
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
                 "vhat_1 = g_1^2; without correction eta/sqrt(0.001*g_1^2) is about 30x too "
                 "large",
        document_agrees=True,
        notes=("the document's 'about 30x' (31.6x) is the factor on eta/sqrt(v) alone; an "
               "Adam step with neither moment corrected would be 3.16x the corrected one, "
               "since m_1 is also 10x too small.",),
        numeric_check="adam-bias-correction",
    )
