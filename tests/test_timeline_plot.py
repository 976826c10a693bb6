"""The peak's timeline: the memory after each operation of a step, its plot, and the
timeline under activation checkpointing against MemTracker."""

import pytest
from torch import nn

from symflop.estimate.step import estimate
from symflop.estimate.timeline_plot import plot_timeline


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
])
def test_timeline_refusals_in_one_line(capsys, tmp_path, monkeypatch, argv, message):
    from conftest import run_cli
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:OneLayerSmall",
                             "--input", "sx64", "--at", "s=4", "--loss", "mse",
                             "--input-dtype", "bfloat16", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.png").exists()


def test_the_timeline_of_a_sequence_parallel_device(capsys, tmp_path, monkeypatch):
    from conftest import run_cli
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:OneLayerSmall",
                             "--input", "sx64", "--at", "s=4", "--loss", "mse",
                             "--input-dtype", "bfloat16", "--timeline", "t.png",
                             "--tensor-parallel", "2", "--sequence-parallel")
    assert code == 0, err
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("checkpointed", [("layers.0", "layers.1"),
                                          ("layers.0.attn.core", "layers.1.attn.core")],
                         ids=["whole layers", "attention cores"])
def test_the_peak_under_checkpointing_is_memtrackers(checkpointed):
    """torch.utils.checkpoint (non-reentrant) on the named modules of a real step under
    MemTracker: the predicted peaks of the first and a later step within 0.5 %."""
    import torch
    from torch.utils.checkpoint import checkpoint

    from validation.megatron import GPT
    from validation.peak_checks import measured_peaks

    def build():
        torch.manual_seed(0)
        return GPT(64, 32, 4, 2)

    est = estimate(build(), ("B", "s"), input_dtype="int64", flop_counter=False,
                   use_cache=False, hints={"B": 2, "s": 16}, checkpoint=checkpointed)
    model = build()
    for path in checkpointed:
        module = model.get_submodule(path)
        module.forward = (lambda f: lambda *a: checkpoint(f, *a, use_reentrant=False))(
            module.forward)
    got = measured_peaks(model, torch.randint(0, 64, (2, 16)),
                         lambda p: torch.optim.Adam(p, foreach=False))
    for peak, measured in zip((est.first_step_peak, est.peak), got):
        assert abs(est.at(peak.total) - measured["Total"]) <= 0.005 * measured["Total"]
    assert any(p == "recompute" for p, _w, _b in est.peak.curve)


class _Qwen2:
    """A transformers Qwen2 from a tiny config whose logits outweigh a layer (vocabulary
    256, width 64): the step peaks in the loss's backward, where the log-probabilities'
    gradient (cross-entropy, run below autograd and decomposed in the trace) meets the
    logits'; its attention is called with keyword arguments only."""

    @staticmethod
    def build():
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        class Logits(torch.nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.m = Qwen2ForCausalLM(Qwen2Config(
                    vocab_size=256, hidden_size=64, intermediate_size=160,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=64, attn_implementation="eager"))

            def forward(self, x):
                return self.m(input_ids=x, use_cache=False).logits
        return Logits()


@pytest.mark.parametrize("checkpointed", [(), ("m.model.layers.0.self_attn",)],
                         ids=["plain", "attention checkpointed"])
def test_a_peak_in_the_loss_backward_and_a_keyword_called_checkpoint(checkpointed):
    """MemTracker's peaks of a real SGD step within 0.5 %: the decomposed loss's
    gradients are replayed, and a checkpoint keeps its module's keyword inputs (the
    hidden states, the rotary tables), as torch.utils.checkpoint does."""
    pytest.importorskip("transformers")
    import torch
    from torch.utils.checkpoint import checkpoint

    from validation.peak_checks import measured_peaks
    est = estimate(_Qwen2.build(), ("B", "L"), input_dtype="int64", optimizer="momentum",
                   flop_counter=False, use_cache=False, hints={"B": 2, "L": 32},
                   checkpoint=checkpointed)
    model = _Qwen2.build()
    for path in checkpointed:
        module = model.get_submodule(path)
        module.forward = (lambda f: lambda *a, **k: checkpoint(
            f, *a, use_reentrant=False, **k))(module.forward)
    got = measured_peaks(model, torch.zeros(2, 32, dtype=torch.long),
                         lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=False))
    for peak, measured in zip((est.first_step_peak, est.peak), got):
        assert abs(est.at(peak.total) - measured["Total"]) <= 0.005 * measured["Total"]
    assert est.peak.where.startswith("backward: loss")


def test_the_optimizer_implementation_defaults_to_torchs_for_the_target(capsys):
    """torch.optim's default: the for-loop step on a CPU, foreach on CUDA."""
    import json

    from conftest import run_cli
    impl = {}
    for target in ("cpu", "cuda"):
        code, out, err = run_cli(capsys, "estimate", "validation.megatron:TwoLayerGPT",
                                 "--input", "s", "--input-dtype", "int64", "--at",
                                 "B=2,s=8", "--target", target, "--no-flop-counter",
                                 "--format", "json")
        assert code == 0, err
        impl[target] = json.loads(out)["optimizer_impl"]
    assert impl == {"cpu": "for-loop", "cuda": "foreach"}
