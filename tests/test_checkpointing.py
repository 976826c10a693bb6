"""Activation checkpointing: a plan's saved bytes and recomputed FLOPs, derived by
``symflop estimate``, against torch.utils.checkpoint on a real step (saved-tensor hooks
and the executed-operation counter)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from symflop.errors import UsageError  # noqa: E402
from symflop.estimate import estimate  # noqa: E402
from validation.estimate_checks import measure_step  # noqa: E402
from validation.step_count import step_counts  # noqa: E402

KINDS = ("add", "mul", "div", "transcendental", "compare", "random")


class Net(nn.Module):
    """Two blocks; ``plan`` names the blocks whose forward runs under checkpoint."""

    def __init__(self, plan: tuple[str, ...] = ()):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                               nn.Linear(128, 128), nn.ReLU())
        self.b = nn.Sequential(nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10))
        self.plan = plan

    def forward(self, x):
        for name in ("a", "b"):
            block = getattr(self, name)
            x = checkpoint(block, x, use_reentrant=False) if name in self.plan else block(x)
        return x


@pytest.mark.parametrize("plan", [(), ("a",), ("b",), ("a", "b")])
def test_plan_saved_bytes_and_recomputation(plan):
    B = 4
    est = estimate(Net(), ("B", 64), checkpoint=plan, use_cache=False, flop_counter=False)
    model, x = Net(plan), torch.randn(B, 64)
    step = measure_step(model, x)
    # torch's nll_loss also keeps its total weight (4 bytes); nothing else differs
    assert step.saved_bytes - est.at(est.activation_bytes, B=B) == 4
    counters = step_counts(model, x)
    lines = [ln for ln in est.lines if ln.what != "optimizer"]
    for phase in ("forward", "backward"):
        ours = {k: est.at(sum((getattr(ln, phase)[k] for ln in lines), 0), B=B)
                for k in KINDS}
        executed = counters[phase].by_kind
        whole = sum(executed.values())
        assert counters[phase].unknown == []
        assert abs(sum(ours.values()) - whole) <= 0.005 * whole, phase
        # the dropout mask is drawn again when block a is recomputed (its RNG restored)
        assert ours["random"] == executed["random"], phase
    recomputed = {ln.name: ln for ln in est.lines if ln.what == "checkpoint"}
    assert set(recomputed) == {f"{p} (recomputed)" for p in plan}
    # torch stops recomputing once every tensor the block keeps exists again: block a
    # ends in a ReLU, which keeps its output, so all of a runs again; block b's last
    # Linear keeps only its input (the GELU's output), so b runs again up to the GELU
    again = {"a": ("a.0", "a.1", "a.2", "a.3", "a.4"), "b": ("b.0", "b.1")}
    for p in plan:
        forward = sum((ln.flops_forward for ln in est.lines if ln.name in again[p]), 0)
        assert recomputed[f"{p} (recomputed)"].flops_backward == forward


def test_checkpointing_trades_memory_for_flops():
    none, both = (estimate(Net(), ("B", 64), checkpoint=p, use_cache=False,
                           flop_counter=False) for p in ((), ("a", "b")))
    assert both.at(both.activation_bytes, B=64) < none.at(none.activation_bytes, B=64)
    assert both.at(both.flops("step"), B=64) > none.at(none.flops("step"), B=64)


def test_a_plan_names_modules_that_ran():
    with pytest.raises(UsageError, match="no module 'c' ran in the forward pass"):
        estimate(Net(), ("B", 64), checkpoint=("c",), use_cache=False, flop_counter=False)
