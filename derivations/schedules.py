"""Learning-rate schedules (section "Learning-rate schedules" of the reference document).

Each schedule is one ``schedule`` pass: a closed form ``eta(t)`` of the step
counter ``t`` (a scalar input; torch's ``last_epoch``, 0 at the first step) and
positive hyperparameters.  The document gives the shape of most schedules in
words only; the formulas here are the standard ones, written to agree with
``torch.optim.lr_scheduler`` (https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate)
step by step, which the tests check.

The two-phase schedules are written with Min/Max rather than Piecewise: the
engine's ``where`` fails on Python-scalar inputs under both backends (NumPy's
``where`` is bound as a method; torch's rejects a Python bool).  Both phases
stay at or below the peak and the phase not in force is held at the peak by a
clamp of t, so ``Min(phase1(t), phase2(Max(t - W, 0)))`` is the same function
as ``Piecewise((phase1, t < W), (phase2, True))`` (up to one rounding at the
peak), at the same cost of two compare/selects per step (a Max and a Min
instead of a compare and a select).
"""

from __future__ import annotations

import sympy as sp

from symflop import Component

SCHEDULE = "schedule"


def _cosine(lo, hi, x):
    """From ``hi`` at x = 0 to ``lo`` at x = 1 along half a cosine period."""
    return lo + (hi - lo) * (1 + sp.cos(sp.pi * x)) / 2


def step_decay() -> Component:
    """Step decay: eta(t) = eta0 * gamma**floor(t / S).

    The learning rate is multiplied by gamma every S steps (He et al. 2016 used
    gamma = 0.1 every 30 epochs).  torch: ``StepLR(step_size=S, gamma=gamma)``,
    whose ``_get_closed_form_lr`` is ``base_lr * gamma ** (last_epoch // step_size)``
    (its ``step()`` multiplies by gamma recursively instead).
    """
    c = Component("step-decay", "Learning-rate schedules",
                  "step decay: eta0 * gamma**floor(t/S)",
                  reference="torch.optim.lr_scheduler.StepLR")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    eta0, gamma, S = c.hyper("eta0 gamma S", eta0=0.1, gamma=0.1, S=30)
    eta = c.output("eta", doc="learning rate")
    c.assign(SCHEDULE, eta, eta0 * gamma ** sp.floor(t / S))
    return c


def cosine() -> Component:
    """Cosine annealing: eta(t) = eta_min + (eta_max - eta_min) * (1 + cos(pi t / T)) / 2.

    Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR, eq. (5) within one run of length T.  torch:
    ``CosineAnnealingLR(T_max=T, eta_min=eta_min)`` with initial lr eta_max (its
    ``_get_closed_form_lr`` is this formula; ``step()`` computes it recursively).
    """
    c = Component("cosine", "Learning-rate schedules",
                  "cosine annealing from eta_max to eta_min over T steps",
                  reference="Loshchilov & Hutter (2017), ICLR; torch CosineAnnealingLR")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    eta_max, eta_min, T = c.hyper("eta_max eta_min T", eta_max=0.1, eta_min=1e-4, T=100)
    eta = c.output("eta", doc="learning rate")
    c.assign(SCHEDULE, eta, _cosine(eta_min, eta_max, t / T))
    return c


def cosine_restarts() -> Component:
    """Cosine annealing with warm restarts of fixed period T0 (SGDR with T_mult = 1).

    eta(t) = eta_min + (eta_max - eta_min) * (1 + cos(pi * (t mod T0) / T0)) / 2;
    Loshchilov & Hutter (2017), ICLR, eq. (5) with T_cur = t mod T0.  torch:
    ``CosineAnnealingWarmRestarts(T_0=T0, T_mult=1, eta_min=eta_min)``.
    """
    c = Component("cosine-restarts", "Learning-rate schedules",
                  "cosine annealing with warm restarts every T0 steps (SGDR, T_mult=1)",
                  reference="Loshchilov & Hutter (2017), ICLR; torch CosineAnnealingWarmRestarts")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    eta_max, eta_min, T0 = c.hyper("eta_max eta_min T0", eta_max=0.1, eta_min=1e-4, T0=10)
    eta = c.output("eta", doc="learning rate")
    c.assign(SCHEDULE, eta, _cosine(eta_min, eta_max, sp.Mod(t, T0) / T0))
    return c


def warmup() -> Component:
    """Linear warmup for W steps, then cosine annealing to eta_min at step T.

    Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour", sec. 2.2 (gradual warmup), followed by cosine annealing (Loshchilov
    & Hutter 2017).  The warmup is torch's ``LinearLR(start_factor=s,
    total_iters=W)``: eta = eta_max * (s + (1 - s) * t / W) for t < W, so it
    starts at s * eta_max and would reach eta_max at t = W, where
    ``SequentialLR([LinearLR, CosineAnnealingLR(T_max=T - W, eta_min)],
    milestones=[W])`` starts the cosine phase at eta_max.

    Written as ``Min(linear(t), cosine(Max(t - W, 0)))``: for t < W the cosine
    term is held at eta_max, above the linear term (s <= 1, as torch requires);
    for t >= W the linear term is at least eta_max, above the cosine term.
    """
    c = Component("warmup", "Learning-rate schedules",
                  "linear warmup for W steps, then cosine annealing to eta_min at T",
                  reference="Goyal et al. (2017), arXiv:1706.02677; torch LinearLR + "
                            "CosineAnnealingLR in SequentialLR")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    eta_max, eta_min, s, W, T = c.hyper("eta_max eta_min s W T", eta_max=0.1, eta_min=1e-4,
                                        s=0.01, W=5, T=100)
    eta = c.output("eta", doc="learning rate")
    linear = eta_max * (s + (1 - s) * t / W)
    cosine_phase = _cosine(eta_min, eta_max, sp.Max(t - W, 0) / (T - W))
    c.assign(SCHEDULE, eta, sp.Min(linear, cosine_phase))
    return c


def one_cycle() -> Component:
    """torch's one-cycle policy (``OneCycleLR``, anneal_strategy="cos", three_phase=False).

    Smith & Topin (2019), "Super-Convergence", AISTATS.  With total_steps T, the
    start lr eta_0 = max_lr / div_factor and the final lr eta_0 / final_div_factor,
    torch's phase boundaries (from its source) are e1 = pct_start * T - 1 and
    e2 = T - 1: for t <= e1 the lr anneals by cosine from eta_0 up to max_lr
    with pct = t / e1, after that from max_lr down to the final lr with
    pct = (t - e1) / (e2 - e1); each phase is ``end + (start - end)/2 * (cos(pi pct) + 1)``.

    Written with u = Min(t, e1) as ``Min(up(u), down(t - u))``: up(u) is held at
    max_lr (exactly: cos(pi) = -1) once t > e1, and down(0) = max_lr before,
    and neither phase exceeds max_lr.  Like torch, it extrapolates the cosine
    past t = T - 1 (torch raises for t > T).
    """
    c = Component("one-cycle", "Learning-rate schedules",
                  "one-cycle policy as torch OneCycleLR: cosine up to max_lr, cosine down",
                  reference="Smith & Topin (2019), AISTATS; torch OneCycleLR")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    max_lr, T, pct_start, div_factor, final_div_factor = c.hyper(
        "max_lr T pct_start div_factor final_div_factor",
        max_lr=0.1, T=100, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    eta = c.output("eta", doc="learning rate")
    initial = max_lr / div_factor
    final = initial / final_div_factor
    e1 = pct_start * T - 1
    e2 = T - 1
    u = sp.Min(t, e1)  # time spent in the first phase
    up = _cosine(max_lr, initial, u / e1)
    down = _cosine(final, max_lr, (t - u) / (e2 - e1))
    c.assign(SCHEDULE, eta, sp.Min(up, down))
    return c


def one_cycle_doc() -> Component:
    """The document's one-cycle shape: linear up, then cosine down to eta_low / 10.

    For the first fraction pct of the T steps (the document: ~30%) the lr rises
    linearly from eta_low to eta_max; then it falls along half a cosine period
    from eta_max to eta_low / 10 at t = T (Smith & Topin 2019, "Super-Convergence",
    AISTATS, as the document describes it).  With W = pct * T an integer this is
    torch's ``SequentialLR([LinearLR(start_factor=eta_low/eta_max, total_iters=W),
    CosineAnnealingLR(T_max=T - W, eta_min=eta_low/10)], milestones=[W])``.
    The peak is at t = pct * T, one step later than OneCycleLR's (pct * T - 1).
    Written as ``Min(linear(t), cosine(Max(t - W, 0)))`` (see ``warmup``;
    needs eta_low < eta_max).
    """
    c = Component("one-cycle-doc", "Learning-rate schedules",
                  "one-cycle as the document states it: linear up for ~30%, cosine down",
                  reference="Smith & Topin (2019), AISTATS")
    t = c.input("t", doc="step counter (0 at the first step)").symbol
    eta_low, eta_max, T, pct = c.hyper("eta_low eta_max T pct",
                                       eta_low=0.004, eta_max=0.1, T=100, pct=0.3)
    eta = c.output("eta", doc="learning rate")
    W = pct * T
    linear = eta_low + (eta_max - eta_low) * t / W
    cosine_phase = _cosine(eta_low / 10, eta_max, sp.Max(t - W, 0) / (T - W))
    c.assign(SCHEDULE, eta, sp.Min(linear, cosine_phase))
    return c


COMPONENTS = {
    "step-decay": step_decay,
    "cosine": cosine,
    "cosine-restarts": cosine_restarts,
    "warmup": warmup,
    "one-cycle": one_cycle,
    "one-cycle-doc": one_cycle_doc,
}
