"""The peak memory of a training step (``symflop.estimate.timeline``) against torch's
``MemTracker`` on every zoo model: Adam (for-loop and foreach) and SGD with momentum,
the first step (state allocated in ``step()``) and a later one
(``validation.peak_checks`` runs the real steps)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from validation.peak_checks import OPTIMIZERS, compare  # noqa: E402
from validation.zoo import ZOO  # noqa: E402

TOLERANCE = 0.01   # the issue asks 3 %; measured at most 0.48 % (bert, later SGD step)


@pytest.mark.parametrize("name", [n for n in ZOO if not n.startswith("llama2_")])
def test_peak_within_three_percent_of_memtracker(name):
    for which in OPTIMIZERS:
        for step, ours, theirs, parts, measured in compare(name, which):
            err = (ours - theirs) / theirs
            assert abs(err) <= TOLERANCE, (which, step, parts, measured)
            assert parts["Parameter"] == measured["Parameter"]


def test_foreach_adam_peaks_in_step_with_a_third_parameter_copy():
    """The issue's example: an MLP with foreach Adam peaks in step(), its optimizer
    memory the state (2 P float32) and the square roots of every second moment (P),
    with torch's float32 step scalars; for-loop Adam holds the largest parameter's
    sqrt and quotient and the previous parameter's denominator instead."""
    from symflop.estimate import estimate
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 256))
    P = sum(p.numel() for p in model.parameters())
    sizes = [p.numel() for p in model.parameters()]
    for impl, temporaries in (("foreach", P),
                              ("for-loop", max(2 * n + m for m, n in
                                               zip([0] + sizes, sizes)))):
        est = estimate(model, ("B", 512), optimizer_impl=impl, use_cache=False,
                       flop_counter=False)
        for peak in (est.peak, est.first_step_peak):
            assert peak.where.startswith("optimizer step")
            assert est.at(peak.by_category["Optstate"]) == (2 * P + temporaries) * 4 + 4 * 4
            assert est.at(peak.by_category["Gradient"]) == P * 4


def test_unknown_optimizer_implementation_is_refused(capsys):
    from conftest import run_cli
    code, _out, err = run_cli(capsys, "estimate", "validation.zoo:mha", "--input", "Lx64",
                              "--optimizer-impl", "vectorized")
    assert code == 2 and "invalid choice" in err
