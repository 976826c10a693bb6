"""The ledger of the document's optimizer sections (SGD to AdamW, Adam's bias-correction
example, the comparison and 25.6M-parameter tables), with Adam's first step evaluated
from its equations and the ResNet-50 shares those tables state."""

from __future__ import annotations

from functools import cache

import sympy as sp

from derivations import resnet50
from derivations.claims.query import (
    RESNET_P,
    S_25M,
    S_ADAG,
    S_ADAM,
    S_ADAMW,
    S_BIAS,
    S_CMP,
    S_MOM,
    S_NAG,
    S_RMS,
    S_SGD,
    Query,
    cannot_derive,
    claim,
    component,
    computed,
    count_at,
    derivation,
    difference,
    flops,
    hyperparameter_choice,
    memory,
    size_symbol,
)
from symflop.cost.counting import leading_order
from symflop.report.claims import Claim

# -- Adam's first step, evaluated from its equations ----------------------------------

@cache
def _adam_first_step() -> dict:
    """Adam's step equations at t = 0 -> 1 from zero moments, one parameter, with the
    catalogue's beta1, beta2 (exact rationals) and a gradient g > 0."""
    c = component("adam")
    g = sp.Symbol("g", positive=True)
    env: dict = {"m": sp.Integer(0), "v": sp.Integer(0), "t": sp.Integer(0), "g": g,
                 "theta": sp.Symbol("theta")}
    hyper = {k: sp.Rational(repr(c.defaults[k])) for k in ("beta1", "beta2")}
    for a in c.passes["step"].assignments:
        rhs = a.rhs.xreplace({x: env[str(x.base)] for x in a.rhs.atoms(sp.Indexed)})
        rhs = rhs.xreplace({s: env.get(s.name, hyper.get(s.name, s))
                            for s in rhs.atoms(sp.Symbol) if not isinstance(s, sp.Idx)})
        env[a.lhs.name] = sp.simplify(rhs)
    return env


def _adam_number(expr_of_env, how: str) -> Query:
    def run(_conv):
        env = _adam_first_step()
        return sp.nsimplify(expr_of_env(env, env["g"]))
    return Query(run, "adam: its step equations evaluated at t = 1 from m = v = 0 "
                 f"(beta1, beta2 the catalogue's defaults): {how}", by_convention=False)


def _resnet_backward_reason() -> str:
    macs = [resnet50.at(resnet50.network(f"macs_{p}"), 1) / 1e9 for p in ("forward", "backward")]
    return ("the document's figure is twice the ResNet paper's 3.8G forward, which counts "
            "multiply-adds (and is of ResNet v1, the stride on the first 1x1 convolution); "
            "a multiply-add is two FLOPs here, and the ResNet-50 this project ships (v1.5, "
            f"torchvision's) runs {macs[0]:.3g}G multiply-adds forward and {macs[1]:.3g}G "
            "backward per image in its products and convolutions; the table's percentages "
            "use 7.6G as the document gives it")


def _resnet_percent(name: str) -> Query:
    return Query(lambda conv, stage: sp.Float(100 * count_at(name, "step", conv, stage,
                                                             P=RESNET_P)
                                              / resnet50.backward_one_image()),
                 f"{name}: step FLOPs at P = 25.6M over ResNet-50's backward FLOPs of one "
                 "image (symflop estimate)", by_stage=True)


_SHARE_REASON = ("the document divides by its 7.6G backward (resnet-backward), a count of "
                 "multiply-adds, while the optimizer's step is counted in FLOPs: two bases")


def _lowest(_conv) -> str:
    from derivations import optimizers
    rows = []
    for name in optimizers.COMPONENTS:
        d = derivation(name)
        rows.append((leading_order(d.counts("step").total).subs(size_symbol("P"), 1),
                     d.memory.elements("state").subs(size_symbol("P"), 1), name))
    low_flops = min(r[0] for r in rows)
    low_state = min(r[1] for r in rows)
    return ", ".join(r[2] for r in rows if r[0] == low_flops and r[1] == low_state)


_BIAS_POWER = ("1 - beta^t is a power and a subtraction; the document leaves the power out, "
               "which only XLA's convention does, and under it the other rows of Adam's table "
               "(the total) no longer hold")


CLAIMS: list[Claim] = [
    # ---- Optimizers ---------------------------------------------------------------------
    claim("sgd-state", S_SGD, r"Extra state memory | 0", "0", memory("sgd", "state")),
    claim("sgd-flops", S_SGD, r"Per-step FLOPs | $P$ multiplications (scaling) + $P$ "
          r"subtractions = $2P$", "mul: P, add: P", flops("sgd", "step", kinds=True)),
    claim("sgd-lowest", S_SGD, r"SGD is the simplest optimizer with the lowest memory "
          r"footprint and per-step cost", "sgd",
          computed(_lowest, "every optimizer of the catalogue: the one(s) with both the least "
                            "state and the fewest step FLOPs (leading order)", False)),
    cannot_derive("sgd-more-iterations", S_SGD, r"it typically requires many more iterations to "
                  r"converge", "more iterations", "convergence speed is an empirical outcome of "
                  "training, not a consequence of one step's equations"),
    claim("momentum-state", S_MOM, r"Extra state memory | $\bm{v} \in \R^P$ → $4P$ bytes "
          r"(float32)", "4*P bytes", memory("momentum", "state")),
    claim("momentum-flops", S_MOM, r"Per-step FLOPs | $P$ (scale $v$) + $P$ (add $g$) + $P$ "
          r"(scale $v$) + $P$ (update $\theta$) = $4P$", "P + P + P + P",
          flops("momentum", "step")),
    cannot_derive("momentum-convergence", S_MOM, r"momentum improves convergence from $O(1/t)$ to "
                  r"$O(1/t^2)$ for convex quadratics, which can translate to $\sqrt{\kappa}$ fewer "
                  r"iterations", "O(1/t^2); sqrt(kappa)", "a convergence rate is a property of the "
                  "optimization problem and its analysis, not of one step's cost"),
    claim("nesterov-state", S_NAG, r"Extra state memory | Same as momentum: $4P$ bytes",
          "4*P bytes", memory("nesterov-lookahead", "state")),
    claim("nesterov-flops", S_NAG, r"Per-step FLOPs | Same as momentum: $4P$ (plus $P$ for "
          r"the look-ahead position computation)", "4*P + P",
          flops("nesterov-lookahead", "step"),
          reason="the look-ahead point theta - lr*mu*v is a multiplication and a "
                 "subtraction per parameter (lr*mu once), not one operation; torch's form "
                 "(nesterov) costs as much"),
    claim("adagrad-state", S_ADAG, r"Extra state memory | $\bm{G} \in \R^P$ → $4P$ bytes",
          "4*P bytes", memory("adagrad-eps-inside", "state")),
    claim("adagrad-flops", S_ADAG, r"Per-step FLOPs | $P$ (square) + $P$ (accumulate) + $P$ "
          r"(sqrt) + $P$ (add $\epsilon$) + $P$ (divide) + $P$ (scale) + $P$ (update) = "
          r"$\approx 7P$", "≈7*P", flops("adagrad-eps-inside", "step")),
    cannot_derive("adagrad-decay", S_ADAG, r"the effective learning rate $\eta/\sqrt{G_t}$ "
                  r"monotonically decreases, eventually reaching zero", "-> 0",
                  "a statement about the run of gradients over training, not about one step"),
    claim("rmsprop-state", S_RMS, r"Extra state memory | $\bm{v} \in \R^P$ → $4P$ bytes",
          "4*P bytes", memory("rmsprop-eps-inside", "state")),
    claim("rmsprop-flops", S_RMS, r"Per-step FLOPs | $\approx 8P$", "≈8*P",
          flops("rmsprop-eps-inside", "step"),
          reason="counted one by one, AdaGrad's seven operations plus the two scalings of "
                 "the moving average make 9*P; 8*P with a multiply-add fused (fma) or without "
                 "the square root as a FLOP (xla), but the comparison table repeats this "
                 "count, and neither convention fits its other rows"),
    # Adam's per-operation table, row by row (rows of one step and one kind together).
    claim("adam-m-scalings", S_ADAM, r"Scale $m_{t-1}$ | $\beta_1 \bm{m}_{t-1}$ | $P$; "
          r"Scale gradient | $(1-\beta_1)\bm{g}_t$ | $P$",
          "mul: P + P", flops("adam", "step", ("m",), kinds=True)),
    claim("adam-m-add", S_ADAM, r"Add for $\bm{m}_t$ | $+$ | $P$", "add: P",
          flops("adam", "step", ("m",), kinds=True)),
    claim("adam-v-products", S_ADAM, r"Square gradient | $\bm{g}_t \odot \bm{g}_t$ | $P$; "
          r"Scale $v_{t-1}$ | $\beta_2 \bm{v}_{t-1}$ | $P$; "
          r"Scale squared gradient | $(1-\beta_2)\bm{g}_t^2$ | $P$", "mul: P + P + P",
          flops("adam", "step", ("v",), kinds=True)),
    claim("adam-v-add", S_ADAM, r"Add for $\bm{v}_t$ | $+$ | $P$", "add: P",
          flops("adam", "step", ("v",), kinds=True)),
    claim("adam-bias-m", S_ADAM, r"Bias correct $\hat{m}$ | $\bm{m}_t / (1-\beta_1^t)$ | "
          r"$P + 1$", "P + 1", flops("adam", "step", ("mhat",)),
          reason=_BIAS_POWER),
    claim("adam-bias-v", S_ADAM, r"Bias correct $\hat{v}$ | $\bm{v}_t / (1-\beta_2^t)$ | "
          r"$P + 1$", "P + 1", flops("adam", "step", ("vhat",)),
          reason=_BIAS_POWER),
    claim("adam-sqrt", S_ADAM, r"Square root | $\sqrt{\hat{\bm{v}}_t}$ | $P$",
          "transcendental: P", flops("adam", "step", ("theta",), kinds=True)),
    claim("adam-eps-and-update", S_ADAM,
          r"Add epsilon | $\sqrt{\hat{\bm{v}}_t} + \epsilon$ | $P$; "
          r"Update params | $\bm{\theta}_t -$ | $P$", "add: P + P",
          flops("adam", "step", ("theta",), kinds=True)),
    claim("adam-division", S_ADAM, r"Division | $\hat{\bm{m}}_t / (\sqrt{\hat{\bm{v}}_t} + "
          r"\epsilon)$ | $P$", "div: P", flops("adam", "step", ("theta",), kinds=True)),
    claim("adam-lr", S_ADAM, r"Scale by LR | $\times \eta$ | $P$", "mul: P",
          flops("adam", "step", ("theta",), kinds=True)),
    claim("adam-total", S_ADAM, r"Total per step | $\approx 14P$ FLOPs", "≈14*P",
          flops("adam", "step")),
    claim("adam-state", S_ADAM, r"Memory: $2 \times 4P = 8P$ bytes extra (for $\bm{m}$ and "
          r"$\bm{v}$)", "8*P bytes", memory("adam", "state", ("m", "v"))),
    claim("adam-total-memory", S_ADAM, r"Including parameters and gradients: "
          r"$\mathbf{16P}$ bytes total", "16*P bytes",
          memory("training-step", ("parameters", "gradients", "state"), optimizer="adam")),
    claim("adam-bias-cost", S_ADAM, r"Bias correction costs $2P + 2$ FLOPs (negligible)",
          "2*P + 2", flops("adam", "step", ("mhat", "vhat")),
          reason=_BIAS_POWER),
    claim("adam-hyperparameters", S_ADAM, r"Default hyperparameters: $\beta_1 = 0.9$, "
          r"$\beta_2 = 0.999$, $\epsilon = 10^{-8}$, $\eta$ (problem-dependent, often "
          r"$10^{-3}$)", "0.9, 0.999, 1e-8, 1e-3",
          hyperparameter_choice("adam", ("beta1", "beta2", "epsilon", "lr"),
                                "a default hyperparameter")),
    # The bias-correction example (t = 1).
    claim("bias-m1", S_BIAS, r"$\bm{m}_1 = (1-\beta_1)\bm{g}_1$ ... $(1-0.9)\bm{g}_1 = "
          r"0.1\bm{g}_1$", "0.1", _adam_number(lambda e, g: e["m"] / g, "m_1 / g")),
    claim("bias-m1-factor", S_BIAS, r"biased toward zero by a factor of 10", "10",
          _adam_number(lambda e, g: g / e["m"], "g / m_1")),
    claim("bias-m1-divisor", S_BIAS, r"The correction divides by $(1-0.9^1) = 0.1$", "0.1",
          _adam_number(lambda e, g: e["m"] / e["mhat"], "m_1 / mhat_1")),
    claim("bias-mhat1", S_BIAS, r"recovering $\hat{\bm{m}}_1 = \bm{g}_1$", "1",
          _adam_number(lambda e, g: e["mhat"] / g, "mhat_1 / g")),
    claim("bias-v1", S_BIAS, r"at $t=1$, $\bm{v}_1 = 0.001 \bm{g}_1^2$", "0.001",
          _adam_number(lambda e, g: e["v"] / g ** 2, "v_1 / g^2")),
    claim("bias-v1-root", S_BIAS, r"$\eta / \sqrt{0.001 \bm{g}_1^2} = \eta / (0.0316 "
          r"|\bm{g}_1|)$", "0.0316", _adam_number(lambda e, g: sp.sqrt(e["v"]) / g,
                                                  "sqrt(v_1) / |g|")),
    claim("bias-v1-too-large", S_BIAS, r"about 30× too large", "about 30",
          _adam_number(lambda e, g: sp.sqrt(e["vhat"] / e["v"]),
                       "(lr / sqrt(v_1)) / (lr / sqrt(vhat_1))")),
    claim("bias-v1-divisor", S_BIAS, r"Correction divides by $1-0.999^1 = 0.001$", "0.001",
          _adam_number(lambda e, g: e["v"] / e["vhat"], "v_1 / vhat_1")),
    claim("bias-vhat1", S_BIAS, r"giving $\hat{\bm{v}}_1 = \bm{g}_1^2$", "1",
          _adam_number(lambda e, g: e["vhat"] / g ** 2, "vhat_1 / g^2")),
    claim("adamw-extra-flops", S_ADAMW, r"Extra FLOPs vs. Adam | $+2P$ (scale $\theta$ by "
          r"$\lambda$, add to update)", "+2*P",
          difference(flops("adamw", "step"), flops("adam", "step"),
                     "adamw step FLOPs minus adam step FLOPs")),
    claim("adamw-extra-memory", S_ADAMW, r"Extra memory vs. Adam | 0", "0",
          difference(memory("adamw", "state"), memory("adam", "state"),
                     "adamw state bytes minus adam state bytes", by_convention=False)),
    claim("momentum-typical", S_MOM, r"$\mu$ (momentum, typically 0.9)", "0.9",
          hyperparameter_choice("momentum", ("mu",), "the momentum coefficient")),
    claim("adagrad-epsilon", S_ADAG, r"$\epsilon$ (stability, $\sim10^{-8}$)", "~1e-8",
          hyperparameter_choice("adagrad-eps-inside", ("epsilon",), "epsilon")),
    claim("rmsprop-decay", S_RMS, r"$\beta$ (decay rate, typically 0.9)", "0.9",
          hyperparameter_choice("rmsprop-eps-inside", ("alpha",),
                                "the decay rate (the catalogue's alpha)")),
    claim("adamw-lambda", S_ADAMW, r"$\lambda$ (weight decay, typically $10^{-2}$)", "1e-2",
          hyperparameter_choice("adamw", ("lam",), "the weight decay coefficient")),
    # The comparison table (a summary: leading orders).
    *[claim(f"table-{n}-memory", S_CMP, rf"{label} | {mem_text} | ...", mem,
            memory(comp, "state"))
      for n, label, mem_text, mem, comp in (
          ("sgd", "SGD", "0", "0", "sgd"),
          ("momentum", "SGD + Momentum", "$4P$ bytes", "4*P bytes", "momentum"),
          ("nesterov", "Nesterov", "$4P$ bytes", "4*P bytes", "nesterov-lookahead"),
          ("adagrad", "AdaGrad", "$4P$ bytes", "4*P bytes", "adagrad-eps-inside"),
          ("rmsprop", "RMSProp", "$4P$ bytes", "4*P bytes", "rmsprop-eps-inside"),
          ("adam", "Adam", r"$\mathbf{8P}$ bytes", "8*P bytes", "adam"),
          ("adamw", "AdamW", "$8P$ bytes", "8*P bytes", "adamw"))],
    *[claim(f"table-{n}-flops", S_CMP, rf"{label} | ... | {text}", value,
            flops(comp, "step"), reason=why)
      for n, label, text, value, comp, why in (
          ("sgd", "SGD", "$2P$", "2*P", "sgd", ""),
          ("momentum", "SGD + Momentum", "$4P$", "4*P", "momentum", ""),
          ("nesterov", "Nesterov", "$5P$", "5*P", "nesterov-lookahead",
           "the look-ahead point is a multiplication and a subtraction per parameter, not "
           "one operation"),
          ("adagrad", "AdaGrad", "$7P$", "7*P", "adagrad-eps-inside", ""),
          ("rmsprop", "RMSProp", "$8P$", "8*P", "rmsprop-eps-inside",
           "counted one by one, AdaGrad's operations plus the two scalings of the moving "
           "average; fma or xla would give the document's figure, but neither fits the "
           "table's other rows"),
          ("adam", "Adam", "$14P$", "14*P", "adam", ""),
          ("adamw", "AdamW", "$16P$", "16*P", "adamw", ""))],
    # The 25.6M-parameter (ResNet-50) table.
    *[claim(f"resnet-{n}-state", S_25M, rf"{label} | {mb} MB | ...", f"{mb} MB",
            memory(n, "state", at={"P": RESNET_P}))
      for n, label, mb in (("sgd", "SGD", "0"), ("momentum", "Momentum", "97.7"),
                           ("adam", "Adam", "195.3"))],
    *[claim(f"resnet-{n}-flops", S_25M, rf"{label} | ... | {m}M | ...", f"{m}M",
            flops(n, "step", at={"P": RESNET_P}))
      for n, label, m in (("sgd", "SGD", "51.2"), ("momentum", "Momentum", "102.4"),
                          ("adam", "Adam", "358.4"))],
    *[claim(f"resnet-{n}-share", S_25M, rf"{label} | ... | {pct}%", f"{pct}%",
            _resnet_percent(n), reason=_SHARE_REASON)
      for n, label, pct in (("sgd", "SGD", "0.67"), ("momentum", "Momentum", "1.35"),
                            ("adam", "Adam", "4.72"))],
    claim("resnet-backward", S_25M, r"ResNet-50 backward pass: ~7.6G FLOPs", "~7.6G",
          computed(lambda _c: sp.Integer(resnet50.at(resnet50.network("backward"), 1)),
                   f"{resnet50.COMMAND}: the network's backward FLOPs at B = 1", False),
          reason=_resnet_backward_reason()),
    claim("resnet-at-most", S_25M, r"The optimizer update adds at most 4.7% extra FLOPs",
          "4.7%", Query(lambda conv, stage: max(_resnet_percent(n)(conv, stage)
                                                for n in ("sgd", "momentum", "adam")),
                        "the largest of the table's three shares (sgd, momentum, adam)",
                        by_stage=True), reason=_SHARE_REASON),
    claim("resnet-adam-memory", S_25M, r"the extra memory (195 MB for Adam)", "195 MB",
          memory("adam", "state", at={"P": RESNET_P})),
]
