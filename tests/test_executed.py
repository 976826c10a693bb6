"""Executed-operation counts (validation/executed.py): the aten operations the generated
torch code runs, against the engine's count of the program it was printed from (the
code stage).  Every number on the counted side is the derivation's own."""

import pytest
import sympy as sp
import torch
from checks import inputs
from conftest import derived

from derivations import CATALOGUE
from symflop import Component
from symflop.cost.conventions import KINDS
from validation.executed import OpCounter, compare, compare_passes, executed_counts
from validation.references import REFERENCES

NAMES = [n for n in CATALOGUE if isinstance(CATALOGUE[n](), Component)]  # with generated code

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
    # Counted: the same plus B*d, one multiplication of Python integers.
    assert row.symbolic == zeros(add=11, mul=7, div=1)
    assert row.host == zeros(mul=1)
    assert row.array == zeros(add=11, mul=6, div=1)
    assert row.matches and row.notes == [] and row.unknown == []


def test_cross_entropy_forward_by_hand():
    """B = 6, C = 7, integer labels: the code runs the stabilized log-sum-exp step by step."""
    _, d = derived("cross-entropy")
    B, C = 6, 7
    row = compare(d, "forward", {"z": torch.randn(B, C, dtype=torch.float64),
                                 "y": torch.randint(0, C, (B,))}, {"B": B, "C": C})
    # max over k: B*(C-1) compares; z - max: B*C subs; exp: B*C; their sum: B*(C-1) adds;
    # log of the sum: B, summed over i: B-1 adds (no log-sum-exp is stored: the backward
    # reads the max and the sum); z at the labels minus the max (centered, so that a
    # common offset cancels): B subs, summed over i: B-1 adds (a gather, no
    # multiplications); L = (that - sum)/B: 1 sub, 1 div.
    assert row.executed == zeros(compare=B * (C - 1), transcendental=B * C + B,
                                 add=B * C + B * (C - 1) + (B - 1) + B + (B - 1) + 1, div=1)
    assert row.matches
    assert {"aten.amax", "aten.gather"} <= {op for op, _ in row.by_op} | {
        r.op for r in executed_counts(d, "forward", {"z": torch.randn(B, C),
                                                     "y": torch.randint(0, C, (B,))}).records}


def test_scalar_state_is_passed_as_a_tensor_and_only_hyperparameter_work_is_python():
    """Adam's step count t: given as a Python float, it is passed to the code as a 0-dim
    tensor, so t + 1 and beta**t are seen; only 1 - beta1 and 1 - beta2 are Python work."""
    _, d = derived("adam")
    P = 4
    base = {"g": torch.randn(P, dtype=torch.float64), "m": torch.zeros(P, dtype=torch.float64),
            "v": torch.zeros(P, dtype=torch.float64), "theta": torch.randn(P, dtype=torch.float64),
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "lr": 1e-3}
    as_float = compare(d, "step", {**base, "t": 0.0}, {"P": P})
    as_tensor = compare(d, "step", {**base, "t": torch.tensor(0.0, dtype=torch.float64)},
                        {"P": P})
    assert as_float.matches and as_tensor.matches
    assert as_float.executed == as_tensor.executed
    assert as_tensor.host == zeros(add=2)


def test_op_counter_table():
    x = torch.randn(3, 4, dtype=torch.float64)
    c = torch.randn(3, 4, dtype=torch.float64) > 0
    labels = torch.tensor([[1], [0], [3]])
    with OpCounter() as k:
        torch.amax(x, dim=(1,), keepdim=True)        # 12 -> 3: 9 compares
        x.gather(1, labels)                          # a read at the labels: nothing
        x.clone().scatter_add_(1, labels, torch.ones(3, 1, dtype=x.dtype))  # 3 additions
    assert k.by_kind == zeros(compare=9, add=3)
    with OpCounter() as k:
        x ** 3          # int exponent 3: 2 multiplications per element
        x ** 2.0        # a float exponent: a general power
        torch.nn.functional.softplus(x)              # 1 transcendental per element
        torch.sigmoid(x)                             # 1 transcendental per element
        torch.where(c, torch.tensor(1.0, dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype))
        torch.where(c, x, 0.5 * x)                   # a select (and the 0.5*x)
        torch.sum(x, dim=(0,), keepdim=True)         # 12 -> 4: 8 additions
        x.permute(1, 0).unsqueeze(0).clone()         # views and copies: nothing
        torch.div(torch.as_tensor(2.0, dtype=x.dtype), x)   # one division per element
    assert k.by_kind == zeros(mul=24 + 12, transcendental=12 + 12 + 12, compare=12, add=8,
                              div=12)
    assert not k.unknown
    assert [r.note for r in k.records if r.op == "aten.where"][0].startswith("indicator")


def test_unknown_operations_are_reported_not_counted():
    a = torch.randn(2, 3, dtype=torch.float64)
    with OpCounter() as k:
        torch.cumprod(a, 1)
        torch.cumsum(a, 0)
    assert {r.op for r in k.unknown} == {"aten.cumprod", "aten.cumsum"}
    assert k.by_kind == zeros()


def test_a_matrix_product_costs_k_mul_and_k_minus_1_add_per_output():
    a = torch.randn(2, 3, dtype=torch.float64)
    with OpCounter() as k:
        a @ a.T  # a 2 x 2 result, each a sum of 3 products
    assert not k.unknown
    assert k.by_kind == {**zeros(), "mul": 4 * 3, "add": 4 * 2}


@pytest.mark.parametrize("name", NAMES)
def test_every_pass_executes_exactly_what_its_code_stage_counts(name):
    _, d = derived(name)
    got = rows(name)
    assert [r.pass_name for r in got] == list(d.passes)
    sizes = REFERENCES[name].sizes
    for r in got:
        cnt = d.counts(r.pass_name, stage="code")
        assert r.symbolic == {k: int(sp.sympify(cnt.by_kind[k]).subs(
            {s: sizes[s.name] for s in sp.sympify(cnt.by_kind[k]).free_symbols})) for k in KINDS}
        assert r.unknown == [], (name, r.pass_name, r.unknown)
        assert all(0 <= r.host[k] <= r.symbolic[k] for k in KINDS)
        assert r.executed == r.array, (name, r.pass_name, r.notes)


def test_the_rewritten_components_run_their_rewrites():
    """What the code stage says it runs, torch's dispatcher sees: the max shift and the
    gather of cross-entropy, the scatter of its gradient, softplus and sigmoid in BCE."""
    def ops(name, pass_name):
        _, d = derived(name)
        return {op for op, _ in next(r for r in rows(name) if r.pass_name == pass_name).by_op}
    assert {"aten.amax", "aten.exp", "aten.log"} <= ops("cross-entropy", "forward")
    assert "aten.scatter_add_" in ops("cross-entropy", "backward")
    assert "aten.scatter_add_" not in ops("cross-entropy-soft", "backward")
    assert "aten.softplus" in ops("bce", "forward")
    assert "aten.sigmoid" in ops("bce", "backward")


def test_executed_counts_reports_records_and_random_draws():
    _, d = derived("dropout")
    ex = executed_counts(d, "forward", inputs("dropout", seed=1), seed=5)
    B, n = REFERENCES["dropout"].sizes["B"], REFERENCES["dropout"].sizes["n"]
    assert ex["random"] == B * n and ex.unknown == []
    assert {r.op for r in ex.records} >= {"aten.rand", "aten.ge", "aten.where"}
    row = compare(d, "forward", inputs("dropout", seed=1), {"B": B, "n": n}, seed=5)
    assert row.array == ex.by_kind
