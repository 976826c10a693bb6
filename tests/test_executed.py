"""Executed-operation counts (validation/executed.py): the aten operations the generated
torch code runs, tallied by kind under the symbolic counter's convention, against the
engine's count of the equations."""

import re

import pytest
import sympy as sp
import torch
from checks import inputs
from conftest import derived

from derivations import CATALOGUE
from symflop import Component
from symflop.cost.conventions import KINDS
from validation.executed import (
    OpCounter,
    by_kind,
    compare,
    compare_passes,
    executed_counts,
    symbolic_array_counts,
    symbolic_counts,
    tally,
)
from validation.references import REFERENCES

NAMES = [n for n in CATALOGUE if isinstance(CATALOGUE[n](), Component)]  # with generated code
# Components whose generated code is a direct lowering of the equations: no log-sum-exp,
# no softplus, no one-hot gather, no reciprocal.  Their executed counts must equal the
# symbolic counts (without the Python-number work) exactly, kind by kind, in every pass.
FUSED = ("cross-entropy", "cross-entropy-soft", "bce", "focal")
DIRECT = [n for n in NAMES if n not in FUSED]
ATEN = re.compile(r"\baten\.\w+")

_rows: dict = {}


def rows(name):
    """compare_passes at the reference's (small) sizes, once per session."""
    if name not in _rows:
        _, d = derived(name)
        _rows[name] = compare_passes(d, inputs(name, seed=3), REFERENCES[name].sizes, seed=3)
    return _rows[name]


def zeros(**kw):
    return {k: kw.get(k, 0) for k in KINDS}


def test_mse_forward_by_hand():
    _, d = derived("mse")
    B, dd = 2, 3
    values = {"yhat": torch.randn(B, dd, dtype=torch.float64),
              "y": torch.randn(B, dd, dtype=torch.float64)}
    row = compare(d, "forward", values, {"B": B, "d": dd})
    # Executed: yhat - y (6 subtractions), **2 (int exponent 2: 6 multiplications), a sum
    # of 6 terms into 1 (5 additions), L_sum / (B*d) on a 0-dim tensor (1 division).
    assert row.executed == zeros(add=6 + 5, mul=6, div=1)
    # Symbolic: the same plus B*d, one multiplication of Python integers.
    assert row.symbolic == zeros(add=11, mul=7, div=1)
    assert row.array == zeros(add=11, mul=6, div=1)
    assert row.scalar == zeros(mul=1)
    assert row.matches and row.notes == [] and row.unknown == []


def test_scalar_state_as_a_torch_tensor_is_counted_as_array_work():
    """Adam's step count t: as a Python float, t + 1 and beta**t are Python work; as a
    0-dim torch tensor, the dispatcher sees them and the array counts include them."""
    _, d = derived("adam")
    P = 4
    base = {"g": torch.randn(P, dtype=torch.float64), "m": torch.zeros(P, dtype=torch.float64),
            "v": torch.zeros(P, dtype=torch.float64), "theta": torch.randn(P, dtype=torch.float64),
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lr": 1e-3}
    as_float = compare(d, "step", {**base, "t": 0.0}, {"P": P})
    as_tensor = compare(d, "step", {**base, "t": torch.tensor(0.0, dtype=torch.float64)},
                        {"P": P})
    assert as_float.matches and as_tensor.matches
    # t + 1, then 1 - beta1**t and 1 - beta2**t: 3 additions and 2 powers on 0-dim tensors.
    diff = {k: as_tensor.executed[k] - as_float.executed[k] for k in KINDS}
    assert diff == zeros(add=3, transcendental=2)
    # Python-only work left: 1 - beta1 and 1 - beta2 (2 additions).
    assert as_tensor.scalar == zeros(add=2)


def test_op_counter_table():
    x = torch.randn(3, 4, dtype=torch.float64)
    c = torch.randn(3, 4, dtype=torch.float64) > 0
    with OpCounter() as k:
        torch.logsumexp(x, dim=(1,), keepdim=True)
    # n = 12 inputs, m = 3 outputs: amax 9 + (abs, == inf, masked_fill) 3*3 compares;
    # shift 12 + sum 9 + add-back 3 additions; exp 12 + log 3 transcendentals.
    assert k.by_kind == zeros(compare=18, add=24, transcendental=15)
    with OpCounter() as k:
        x ** 3          # int exponent 3: 2 multiplications per element
        x ** 2.0        # a float exponent: a general power
        torch.nn.functional.softplus(x)              # 1 transcendental per element
        torch.where(c, torch.tensor(1.0, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype))
        torch.where(c, x, 0.5 * x)                   # a select (and the 0.5*x)
        torch.sum(x, dim=(0,), keepdim=True)         # 12 -> 4: 8 additions
        x.permute(1, 0).unsqueeze(0).clone()         # views and copies: nothing
        1.0 / x                                      # reciprocal, then * 1.0
    assert k.by_kind == zeros(mul=24 + 12 + 12, transcendental=12 + 12, compare=12, add=8,
                              div=12)
    assert not k.unknown
    assert [r.note for r in k.records if r.op == "aten.where"][0].startswith("indicator")


def test_unknown_operations_are_reported_not_counted():
    a = torch.randn(2, 3, dtype=torch.float64)
    with OpCounter() as k:
        a @ a.T
        torch.sigmoid(a)
    assert {r.op for r in k.unknown} == {"aten.mm", "aten.sigmoid"}
    assert k.by_kind == zeros()


@pytest.mark.parametrize("name", NAMES)
def test_symbolic_tally_is_the_engines_count(name):
    """The re-tally (same lowering, no Python-number filter) gives the engine's polynomials."""
    _, d = derived(name)
    for p in d.passes:
        ours = by_kind(tally(d.programs[p]))
        theirs = d.counts(p).by_kind
        assert all(sp.expand(ours[k] - theirs[k]) == 0 for k in KINDS), (name, p, ours, theirs)


@pytest.mark.parametrize("name", NAMES)
def test_comparison_runs_for_every_pass(name):
    _, d = derived(name)
    got = rows(name)
    assert [r.pass_name for r in got] == list(d.passes)
    sizes = REFERENCES[name].sizes
    for r in got:
        assert r.unknown == [], (name, r.pass_name, r.unknown)
        assert r.symbolic == symbolic_counts(d, r.pass_name, sizes)
        assert all(0 <= r.array[k] <= r.symbolic[k] for k in KINDS)


@pytest.mark.parametrize("name", DIRECT)
def test_direct_lowerings_execute_exactly_what_is_counted(name):
    for r in rows(name):
        assert r.executed == r.array, (name, r.pass_name, r.executed, r.array,
                                       [n.text for n in r.notes])
        assert r.notes == []


@pytest.mark.parametrize("name", NAMES)
def test_every_difference_is_explained_by_aten_operations(name):
    for r in rows(name):
        assert all(n.explained for n in r.notes), [n.text for n in r.notes]
        total = {k: sum(n.delta.get(k, 0) for n in r.notes) for k in KINDS}
        assert total == {k: r.executed[k] - r.array[k] for k in KINDS}, (name, r.pass_name)
        for kind in r.differing:
            assert any(n.delta.get(kind) and ATEN.search(n.text) for n in r.notes), \
                (name, r.pass_name, kind)


def _notes(name, pass_name):
    return " | ".join(n.text for r in rows(name) if r.pass_name == pass_name for n in r.notes)


def test_the_fused_components_differ_for_the_stated_reasons():
    ce = _notes("cross-entropy", "forward")
    assert "aten.logsumexp runs max-shifted" in ce and "one-hot" in ce
    assert "gather" not in _notes("cross-entropy-soft", "forward")
    assert "aten.logsumexp runs max-shifted" in _notes("cross-entropy-soft", "forward")
    assert "aten.softplus" in _notes("bce", "forward")
    for name in FUSED:
        assert any(not r.matches for r in rows(name)), name


def test_logsumexp_cost_at_cross_entropy_sizes():
    """cross-entropy forward at B=6, C=7: logsumexp over C, n = 42 inputs, m = 6 outputs."""
    n, m = 6 * 7, 6
    r = next(r for r in rows("cross-entropy") if r.pass_name == "forward")
    shift = next(x for x in r.notes if x.ops == ("aten.logsumexp",))
    # beyond exp, sum and log: amax (n - m) + 3m masking compares; shift n + add-back m.
    assert shift.delta == {"compare": (n - m) + 3 * m, "add": n + m}


def test_executed_counts_reports_records_and_random_draws():
    _, d = derived("dropout")
    ex = executed_counts(d, "forward", inputs("dropout", seed=1), seed=5)
    B, n = REFERENCES["dropout"].sizes["B"], REFERENCES["dropout"].sizes["n"]
    assert ex["random"] == B * n and ex.unknown == []
    assert {r.op for r in ex.records} >= {"aten.rand", "aten.ge", "aten.where"}
    assert symbolic_array_counts(d, "forward", {"B": B, "n": n}) == ex.by_kind
