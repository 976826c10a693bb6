"""Learning-rate schedules: every step of a run against torch.optim.lr_scheduler, and the
cost per step against a hand count."""

import pytest
import sympy as sp
from conftest import derived

from validation.ref_schedules import one_cycle_doc_lr, torch_lrs
from validation.references import REFERENCES

# Tolerance, relative, atol 0.  The formulas are the same as torch's; only rounding differs.
# Measured at the REFERENCES hyperparameters over the runs below (both backends):
#   step-decay 3.1e-16 (StepLR multiplies by gamma once per decay: <= 21 roundings here),
#   cosine 1.3e-15 (CosineAnnealingLR is recursive, eta_t = f(eta_{t-1}); against an exact
#     mpmath evaluation its drift is 3.4e-15 over 2T steps at T = 60, and grows with the run:
#     1.3e-14 at T = 200, 1.2e-13 at T = 1000, 6.3e-12 at T = 5000),
#   cosine-restarts 0 (torch evaluates the same closed form on t mod T0),
#   warmup 7.8e-16 (LinearLR is recursive too), one-cycle-doc 6.0e-16,
#   one-cycle 1.1e-14 (torch computes cos(pi * (t / e)) where the code computes
#     cos((pi * t) / e): one rounding of the argument, relatively largest near the end of the
#     run, where the lr is ~1/200 of max_lr).
# rtol 1e-13 is ~10x the largest of these and far below any real error: one step of offset
# changes the lr by >= 1e-4 relative somewhere in every run (checked below).
RTOL = 1e-13

RUNS = {  # steps in each run: every phase, boundary and restart is crossed
    "step-decay": 150,       # 21 decays (S = 7)
    "cosine": 2 * 60 + 5,    # past T, where torch's recursion keeps following the cosine
    "cosine-restarts": 150,  # 8 restarts (T0 = 17)
    "warmup": 121,           # t = 0 .. T; warmup ends at W = 12
    "one-cycle": 121,        # t = 0 .. T (OneCycleLR raises after T steps); peak at 29
    "one-cycle-doc": 121,    # t = 0 .. T; peak at W = 30
}
NAMES = list(RUNS)


def _ours(name, hypers, steps, backend):
    c, d = derived(name)
    fn = d.compiled("schedule")
    out = []
    for t in range(steps):
        as_int = float(fn(backend=backend, t=t, **hypers)["eta"])
        as_float = float(fn(backend=backend, t=float(t), **hypers)["eta"])
        assert as_int == as_float, (name, t)
        out.append(as_int)
    return out


def _worst(ours, theirs):
    return max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", NAMES)
def test_every_step_matches_torch_lr_scheduler(name, backend):
    hypers = REFERENCES[name].hypers
    steps = RUNS[name]
    theirs = torch_lrs(name, hypers, steps)
    ours = _ours(name, hypers, steps, backend)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert a == pytest.approx(b, rel=RTOL, abs=0), f"{name} ({backend}) at t = {t}"
    # The comparison can fail: the schedule shifted by one step is far outside the tolerance.
    assert _worst(ours[1:], theirs[:-1]) > 1e-4


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_one_cycle_with_fractional_phase_boundary(backend):
    """pct_start * T not a whole number: torch's first phase ends at 0.35 * 77 - 1 = 25.95."""
    hypers = {"max_lr": 0.02, "T": 77, "pct_start": 0.35, "div_factor": 8.0,
              "final_div_factor": 50.0}
    theirs = torch_lrs("one-cycle", hypers, 78)
    ours = _ours("one-cycle", hypers, 78, backend)
    assert _worst(ours, theirs) < RTOL
    assert max(theirs) == theirs[26]  # the peak is the first step past the boundary


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_one_cycle_doc_matches_its_definition_with_fractional_peak(backend):
    """The document's definition in plain Python, at W = 0.35 * 77 = 26.95 (no SequentialLR
    can express that); the closed forms agree to a few roundings."""
    hypers = {"eta_low": 0.003, "eta_max": 0.05, "T": 77, "pct": 0.35}
    ours = _ours("one-cycle-doc", hypers, 78, backend)
    theirs = [one_cycle_doc_lr(t, **hypers) for t in range(78)]
    assert _worst(ours, theirs) < RTOL
    assert theirs[0] == pytest.approx(0.003) and theirs[77] == pytest.approx(0.0003)


def test_peaks_torch_one_cycle_one_step_before_the_documents():
    """OneCycleLR ends its first phase at pct * T - 1, the document's at pct * T."""
    torch_peak = torch_lrs("one-cycle", REFERENCES["one-cycle"].hypers, 121)
    doc_peak = _ours("one-cycle-doc", REFERENCES["one-cycle-doc"].hypers, 121, "numpy")
    assert torch_peak.index(max(torch_peak)) == 29
    assert doc_peak.index(max(doc_peak)) == 30


def test_warmup_reaches_eta_max_at_step_W_not_before():
    """LinearLR(total_iters=W) under SequentialLR: eta_max * (s + (1 - s) t / W) for t < W,
    eta_max at t = W, where the cosine starts (torch 2.13: no off-by-one at the milestone)."""
    h = REFERENCES["warmup"].hypers
    theirs = torch_lrs("warmup", h, 14)
    W = h["W"]
    assert theirs[W - 1] == pytest.approx(h["eta_max"] * (h["s"] + (1 - h["s"]) * (W - 1) / W),
                                          rel=RTOL)
    assert theirs[W] == pytest.approx(h["eta_max"], rel=RTOL)
    assert theirs[W + 1] < h["eta_max"]


# Hand counts per step, default convention (every +, -, *, /, cos, power, floor, mod, min,
# max is one operation; a hyperparameter-only subexpression such as T - W is recomputed on
# every call, since each call computes eta from nothing).
HAND = {
    # eta0 * gamma**floor(t / S): t/S (div) + floor (compare) + gamma**k (general power,
    # transcendental) + eta0 * (mul) = 4
    "step-decay": {"div": 1, "compare": 1, "transcendental": 1, "mul": 1},
    # eta_min + (eta_max - eta_min) * (1 + cos(pi * t / T)) / 2:
    # pi*t (mul), /T (div), cos, 1 + (add), * 1/2 (mul), eta_max - eta_min (add),
    # product (mul), eta_min + (add) = add 3, mul 3, div 1, cos 1 = 8
    "cosine": {"add": 3, "mul": 3, "div": 1, "transcendental": 1},
    # the same, with t mod T0 (one more div-kind operation) = 9
    "cosine-restarts": {"add": 3, "mul": 3, "div": 2, "transcendental": 1},
    # Min(linear, cosine):
    # linear eta_max * (s + t * (1 - s) / W): 1 - s, s + (add 2); t *, eta_max * (mul 2);
    #   / W (div 1) = 5
    # cosine: t - W, T - W, 1 + cos, eta_max - eta_min, eta_min + (add 5); pi *, * 1/2,
    #   product (mul 3); / (T - W) (div 1); cos; Max(t - W, 0) (compare 1) = 11
    # Min (compare 1).  Total add 7, mul 5, div 2, cos 1, compare 2 = 17
    "warmup": {"add": 7, "mul": 5, "div": 2, "transcendental": 1, "compare": 2},
    # shared: T * pct_start (mul), e1 = that - 1 (add), u = Min(t, e1) (compare),
    #   div_factor * final_div_factor (mul), final = max_lr / that (div)
    # up: pi * u, * 1/2, product (mul 3); / e1, max_lr / div_factor (div 2); cos;
    #   1 + cos, initial - max_lr, max_lr + (add 3) = 9
    # down: t - u, T - T*pct_start, 1 + cos, max_lr - final, final + (add 5);
    #   pi *, * 1/2, product (mul 3); / (T - T*pct_start) (div 1); cos = 10
    # Min (compare 1).  Total add 9, mul 8, div 4, cos 2, compare 2 = 25
    "one-cycle": {"add": 9, "mul": 8, "div": 4, "transcendental": 2, "compare": 2},
    # shared: W = T * pct (mul), eta_low / 10 (one mul by 0.1)
    # linear eta_low + t * (eta_max - eta_low) / W: add 2, mul 1, div 1
    # cosine: t - W, T - W, 1 + cos, eta_max - eta_low/10, eta_low/10 + (add 5);
    #   pi *, * 1/2, product (mul 3); / (T - W) (div 1); cos; Max (compare 1)
    # Min (compare 1).  Total add 7, mul 6, div 2, cos 1, compare 2 = 18
    "one-cycle-doc": {"add": 7, "mul": 6, "div": 2, "transcendental": 1, "compare": 2},
}


@pytest.mark.parametrize("name", NAMES)
def test_cost_per_step_matches_the_hand_count(name):
    c, d = derived(name)
    counts = d.counts("schedule")
    derived_kinds = {k: v for k, v in counts.by_kind.items() if v != 0}
    assert derived_kinds == {k: sp.Integer(v) for k, v in HAND[name].items()}
    assert counts.total == sum(HAND[name].values())


def test_the_document_undercounts_step_decay_and_cosine():
    """The document: step decay '1 floor division + 1 power + 1 multiplication' (3) and
    cosine '1 cosine + 3 multiplications + 2 additions' (6).  The floor division is a
    division and a floor (2); the cosine's pi*t/T is a multiply and a divide, and its
    eta_max - eta_min is counted here too (not hoisted out of the per-step cost)."""
    assert derived("step-decay")[1].counts("schedule").total == 3 + 1
    assert derived("cosine")[1].counts("schedule").total == 6 + 2


def test_no_schedule_keeps_state_parameters_or_saved_tensors():
    """The document's table: an LR schedule needs 0 extra bytes.  The engine agrees: eta is
    a function of t alone, with nothing kept between steps."""
    for name in NAMES:
        memory = derived(name)[1].memory
        for what in ("parameters", "state", "saved"):
            assert memory.bytes(what) == 0, (name, what)
        assert memory.elements("moved") == 2, name  # reads t, writes eta
