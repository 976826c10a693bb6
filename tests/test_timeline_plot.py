"""The peak's timeline: the memory after each operation of a step, and its plot."""

import pytest
from torch import nn

from symflop.estimate.step import estimate
from symflop.estimate.timeline import plot_timeline


@pytest.fixture(scope="module")
def est():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return estimate(model, ("B", 32), flop_counter=False, use_cache=False)


def test_the_curve_runs_through_the_step_and_tops_at_the_peak(est):
    for peak in (est.peak, est.first_step_peak):
        phases = [p for p, _w, _b in peak.curve]
        # forward, then backward, then the optimizer step, each a run of its own
        runs = [p for k, p in enumerate(phases) if k == 0 or phases[k - 1] != p]
        assert runs == ["forward", "backward", "optimizer step"]
        assert max(b for _p, _w, b in peak.curve) == est.at(peak.total)
        assert any(w == peak.where for _p, w, _b in peak.curve)


def test_the_plot_is_a_png_written_whole(est, tmp_path):
    path = tmp_path / "timeline.png"
    plot_timeline({"first step": est.first_step_peak, "later step": est.peak}, path, "mlp")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["timeline.png"]


@pytest.mark.parametrize("argv,message", [
    (("--timeline", "/nonexistent/t.png"), "a .png file in an existing folder"),
    (("--timeline", "t.svg"), "a .png file"),
    (("--timeline", "t.png", "--checkpoint", "layer"), "no timeline for this step"),
])
def test_timeline_refusals_in_one_line(capsys, tmp_path, monkeypatch, argv, message):
    from conftest import run_cli
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:OneLayerSmall",
                             "--input", "sx64", "--at", "s=4", "--loss", "mse",
                             "--input-dtype", "bfloat16", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.png").exists()
