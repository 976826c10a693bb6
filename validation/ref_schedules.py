"""References for the learning-rate schedules: torch.optim.lr_scheduler, stepped run by run.

A schedule has no gradient, so each ``Reference`` has ``run=None``; what the
tests compare instead is a whole run: ``torch_lrs(name, hypers, steps)`` drives a
dummy optimizer with the matching torch scheduler and reads ``get_last_lr()``
at every step t = 0, 1, ..., steps - 1 (t is torch's ``last_epoch``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.optim import lr_scheduler as lrs

from validation.ref_common import Reference


def _integer(x, what):
    if float(x) != int(x):
        raise ValueError(f"{what} = {x}: torch needs an integer here")
    return int(x)


def _step_decay(opt, eta0, gamma, S):
    return lrs.StepLR(opt, step_size=_integer(S, "S"), gamma=gamma)


def _cosine(opt, eta_max, eta_min, T):
    return lrs.CosineAnnealingLR(opt, T_max=_integer(T, "T"), eta_min=eta_min)


def _cosine_restarts(opt, eta_max, eta_min, T0):
    return lrs.CosineAnnealingWarmRestarts(opt, T_0=_integer(T0, "T0"), T_mult=1,
                                           eta_min=eta_min)


def _warmup(opt, eta_max, eta_min, s, W, T):
    W, T = _integer(W, "W"), _integer(T, "T")
    return lrs.SequentialLR(opt, [lrs.LinearLR(opt, start_factor=s, total_iters=W),
                                  lrs.CosineAnnealingLR(opt, T_max=T - W, eta_min=eta_min)],
                            milestones=[W])


def _one_cycle(opt, max_lr, T, pct_start, div_factor, final_div_factor):
    return lrs.OneCycleLR(opt, max_lr=max_lr, total_steps=_integer(T, "T"),
                          pct_start=float(pct_start), div_factor=div_factor,
                          final_div_factor=final_div_factor)


def _one_cycle_doc(opt, eta_low, eta_max, T, pct):
    """The document's one-cycle as a SequentialLR (needs W = pct * T an integer)."""
    T = _integer(T, "T")
    W = _integer(pct * T, "pct * T")
    return lrs.SequentialLR(
        opt, [lrs.LinearLR(opt, start_factor=eta_low / eta_max, total_iters=W),
              lrs.CosineAnnealingLR(opt, T_max=T - W, eta_min=eta_low / 10)],
        milestones=[W])


# name -> (initial lr of the optimizer, from the hyperparameters; scheduler factory)
SCHEDULERS = {
    "step-decay": (lambda h: h["eta0"], _step_decay),
    "cosine": (lambda h: h["eta_max"], _cosine),
    "cosine-restarts": (lambda h: h["eta_max"], _cosine_restarts),
    "warmup": (lambda h: h["eta_max"], _warmup),
    "one-cycle": (lambda h: h["max_lr"], _one_cycle),
    "one-cycle-doc": (lambda h: h["eta_max"], _one_cycle_doc),
}


def torch_lrs(name: str, hypers: dict, steps: int) -> list[float]:
    """Learning rates torch's scheduler gives at t = 0 .. steps - 1 (one optimizer step each)."""
    initial_lr, make = SCHEDULERS[name]
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=initial_lr(hypers), momentum=0.9)  # OneCycleLR cycles momentum
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any scheduler warning (misuse, deprecation) fails
        sched = make(opt, **hypers)
        out = []
        for k in range(steps):
            out.append(float(sched.get_last_lr()[0]))
            if k < steps - 1:
                p.grad = torch.ones_like(p)
                opt.step()
                sched.step()
    return out


def one_cycle_doc_lr(t, eta_low, eta_max, T, pct):
    """The document's one-cycle, as it reads: linear from eta_low to eta_max up to
    t = pct * T, then half a cosine period from eta_max down to eta_low / 10 at t = T."""
    W = pct * T
    if t <= W:
        return eta_low + (eta_max - eta_low) * t / W
    lo = eta_low / 10
    return lo + (eta_max - lo) * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2


def _step_counter(values):
    """A non-negative whole step count for the element-wise check (t is drawn N(0, 1))."""
    return {**values, "t": float(math.floor(abs(values["t"]) * 40))}


def _schedule(hypers, steps=None):
    """A schedule's reference: its hyperparameters and the run length ``symflop validate``
    compares (twice the period or length, past restarts and the end of the run; torch's
    OneCycleLR refuses to step past its total, so it runs exactly T steps)."""
    if steps is None:
        steps = 2 * int(max(hypers.get(k, 0) for k in ("T", "T0", "S"))) + 1
    return Reference(sizes={}, hypers=hypers, prepare=_step_counter, run=None, steps=steps)


# Non-default values throughout, so that a swapped or dropped hyperparameter shows.
REFERENCES = {
    "step-decay": _schedule({"eta0": 0.3, "gamma": 0.7, "S": 7}),
    "cosine": _schedule({"eta_max": 0.3, "eta_min": 2e-3, "T": 60}),
    "cosine-restarts": _schedule({"eta_max": 0.3, "eta_min": 2e-3, "T0": 17}),
    "warmup": _schedule({"eta_max": 0.3, "eta_min": 2e-3, "s": 0.05, "W": 12, "T": 120}),
    "one-cycle": _schedule({"max_lr": 0.3, "T": 120, "pct_start": 0.25, "div_factor": 20.0,
                            "final_div_factor": 500.0}, steps=120),
    "one-cycle-doc": _schedule({"eta_low": 0.01, "eta_max": 0.3, "T": 120, "pct": 0.25}),
}
