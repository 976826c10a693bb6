"""Activation checkpointing under a memory budget (symflop.estimate.budget): the choice
against every subset of the candidates, estimated one by one."""

from itertools import combinations

import pytest
import torch

from symflop.cost.conventions import get_convention
from symflop.errors import UsageError
from symflop.estimate.budget import candidates, choose
from symflop.estimate.step import _trace, _traced_estimate
from validation.megatron import GPT


@pytest.fixture(scope="module")
def run():
    model = GPT(64, 32, 4, 1)
    shape, hints = ("B", "s"), {"B": 4, "s": 64}
    tr = _trace(model, shape, hints, torch.int64, "cross-entropy")
    cache = {}

    def estimate_with(checkpoint):
        key = tuple(sorted(checkpoint))
        if key not in cache:
            cache[key] = _traced_estimate(
                model, shape, hints, torch.int64, traced=tr, loss="cross-entropy",
                optimizer="adam", schedule=None, conv=get_convention("default"),
                checkpoint=tuple(checkpoint), name="gpt", target="cuda")
        return cache[key]
    return estimate_with


def _recomputed(est) -> int:
    return sum(est.at(ln.flops) for ln in est.lines if ln.name.endswith(" (recomputed)"))


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
    c = choose(run, budget, "children")
    assert c.memory <= budget
    assert c.recomputed == best


def test_an_impossible_budget_is_refused(run):
    with pytest.raises(UsageError, match="no choice of modules brings the step under"):
        choose(run, 1000, "children")
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
    (("--checkpoint-budget", "10B"), "no choice of modules brings the step under"),
])
def test_budget_refusals_in_one_line(capsys, argv, message):
    from conftest import run_cli
    code, out, err = run_cli(capsys, "estimate", "validation.megatron:TwoLayerGPT",
                             "--input", "s", "--input-dtype", "int64", "--at", "B=4,s=64",
                             "--no-flop-counter", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
