"""Activation checkpointing under a memory budget (symflop.estimate.budget): the choice
against every subset of the candidates, estimated one by one, with the budget on the
step's memory sum and on its peak."""

from itertools import combinations

import pytest
import torch

from symflop.cost.conventions import get_convention
from symflop.errors import UsageError
from symflop.estimate.budget import candidates, choose
from symflop.estimate.step import _trace, _traced_estimate
from validation.megatron import GPT


def _estimates(model, shape, hints, dtype, optimizer: str, target: str):
    """``run(checkpoint)``: the model's estimate with those modules checkpointed, one
    trace for all, each estimate made once."""
    tr = _trace(model, shape, hints, dtype, "cross-entropy")
    cache = {}

    def run(checkpoint):
        key = tuple(sorted(checkpoint))
        if key not in cache:
            cache[key] = _traced_estimate(
                model, shape, hints, dtype, traced=tr, loss="cross-entropy",
                optimizer=optimizer, schedule=None, conv=get_convention("default"),
                checkpoint=tuple(checkpoint), name=type(model).__name__, target=target)
        return cache[key]
    return run


@pytest.fixture(scope="module")
def run():
    return _estimates(GPT(64, 32, 4, 1), ("B", "s"), {"B": 4, "s": 64}, torch.int64,
                      "adam", "cuda")


def _recomputed(est) -> int:
    return sum(est.at(ln.flops) for ln in est.lines if ln.name.endswith(" (recomputed)"))


def _peak(est) -> int:
    return max(est.at(est.peak.total), est.at(est.first_step_peak.total))


class _FFN(torch.nn.Module):
    def __init__(self, d, k, act):
        super().__init__()
        self.norm, self.up = torch.nn.LayerNorm(d), torch.nn.Linear(d, k * d)
        self.act, self.down = act, torch.nn.Linear(k * d, d)

    def forward(self, x):
        return self.down(self.act(self.up(self.norm(x))))


class _Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.mix, self.ffn = _FFN(d, 2, torch.nn.Tanh()), _FFN(d, 4, torch.nn.GELU())

    def forward(self, x):
        x = x + self.mix(x)
        return x + self.ffn(x)


class _Blocks(torch.nn.Module):
    """Three residual blocks of two feed-forward children: six candidates whose
    recomputation costs differ, the peak at the start of the backward pass."""

    def __init__(self, d=32, n=3):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = torch.nn.ModuleList(_Block(d) for _ in range(n))
        self.head = torch.nn.Linear(d, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_the_choice_on_the_peak_is_the_cheapest_subset_under_it(optimizer):
    """Every subset of the six candidates estimated with its checkpoints (its own
    trace's replay); each distinct peak among them, and one byte under the least, as the
    budget: the choice is the cheapest subset whose peak fits, or a refusal."""
    run = _estimates(_Blocks(), ("B", 32), {"B": 256}, torch.float32, optimizer, "cpu")

    names = candidates(run(()), "children")
    assert len(names) == 6
    table = {subset: (_peak(run(subset)), _recomputed(run(subset)))
             for k in range(len(names) + 1) for subset in combinations(names, k)}
    least = min(p for p, _c in table.values())
    budgets = sorted({p for p, _c in table.values()}, reverse=True)
    assert len(budgets) >= 8          # the budgets ask for different choices
    for budget in budgets:
        best = min(c for p, c in table.values() if p <= budget)
        chosen = choose(run, budget, "children", on="peak")
        assert chosen.peak <= budget and chosen.recomputed == best, (budget, chosen.modules)
        assert chosen.peak == _peak(run(chosen.modules))
    with pytest.raises(UsageError, match="brings the step's peak under"):
        choose(run, least - 1, "children", on="peak")


@pytest.mark.parametrize("fraction", [0.95, 0.85, 0.75, 0.65])
def test_the_choice_is_the_cheapest_subset_under_the_budget(run, fraction):
    base = run(())
    budget = int(base.at(base.memory_bytes) * fraction)
    names = candidates(base, "children")
    assert len(names) == 7            # ln1, attn, drop1, ln2, fc1, fc2, drop2
    best = None
    for k in range(len(names) + 1):
        for subset in combinations(names, k):
            est = run(subset)
            if est.at(est.memory_bytes) <= budget:
                cost = _recomputed(est)
                best = cost if best is None else min(best, cost)
    c = choose(run, budget, "children", on="sum")
    assert c.memory <= budget
    assert c.recomputed == best


def test_an_impossible_budget_is_refused(run):
    with pytest.raises(UsageError, match="no choice of modules brings the step under"):
        choose(run, 1000, "children", on="sum")
    with pytest.raises(UsageError, match="no choice of modules brings the step's peak under"):
        choose(run, 1000, "children", on="peak")
    with pytest.raises(UsageError, match="unknown budget basis"):
        choose(run, 1000, "children", on="mean")
    with pytest.raises(UsageError, match="unknown granularity"):
        candidates(run(()), "layers")


def test_the_command_line_names_the_choice(capsys):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:TwoLayerGPT",
                             "--input", "s", "--input-dtype", "int64", "--at", "B=4,s=64",
                             "--checkpoint-budget", "3MB", "--no-flop-counter")
    assert code == 0, err
    assert "checkpointed under a budget of 3,000,000 bytes" in out
    assert "layers.0.attn (recomputed)" in out


@pytest.mark.parametrize("argv,message", [
    (("--checkpoint-budget", "lots"), "bytes, e.g. 24GB"),
    (("--checkpoint-budget", "0"), "must be positive"),
    (("--checkpoint-budget", "1MB", "--checkpoint", "layers.0"), "leave --checkpoint out"),
    (("--checkpoint-budget", "10B"), "no choice of modules brings the step's peak under"),
    (("--checkpoint-budget", "10B", "--budget-on", "sum"),
     "no choice of modules brings the step under"),
])
def test_budget_refusals_in_one_line(capsys, argv, message):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:TwoLayerGPT",
                             "--input", "s", "--input-dtype", "int64", "--at", "B=4,s=64",
                             "--no-flop-counter", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
