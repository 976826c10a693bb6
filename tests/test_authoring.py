"""Writing a component of your own: class-index labels, initial state values, scalar
tensors in arithmetic, a hyperparameter that divides, and what a notebook shows."""

from __future__ import annotations

import pytest
import sympy as sp

from derivations import CATALOGUE
from symflop import Component, ComponentError, derive, total


def ce_labels() -> Component:
    c = Component("ce-labels", "Losses", "cross-entropy with class indices")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    z = c.input("z", (B, C))
    lab = c.labels("lab", (B,), classes=C)
    lse = c.intermediate("lse", (B,))
    L = c.output("L")
    c.assign("forward", lse[i], sp.log(total(sp.exp(z[i, k]), k)))
    c.assign("forward", L, -total(z[i, lab[i]] - lse[i], i) / B)
    c.set_gradient(L, (z,))
    return c


def running_product() -> Component:
    c = Component("running-product", "Optimizers", "SGD scaled by a running product of mu")
    P = c.dim("P")
    i = c.index(i=P)
    theta = c.parameter("theta", (P,))
    g = c.input("g", (P,))
    prod = c.state("prod", initial=1.0)
    mu, lr = c.hyper("mu lr", mu=0.9, lr=0.1)
    c.assign("step", prod, prod * mu)             # a scalar tensor in arithmetic
    c.assign("step", theta[i], theta[i] - lr * prod * g[i])
    return c


def test_labels_read_as_a_gather_count_as_the_catalogues_one_hot_form():
    """z[i, lab[i]] costs what the catalogue's cross-entropy (one-hot y, a gather) costs,
    forward and backward: no multiplication by a label, no sum over the classes."""
    mine, theirs = derive(ce_labels()), derive(CATALOGUE["cross-entropy"]())
    B, C = sp.symbols("B C", integer=True, positive=True)
    for p in ("forward", "backward"):
        a, b = mine.counts(p).by_kind, theirs.counts(p).by_kind
        # the same work, but for one multiplication: this component negates the sum
        # (-sum/B), the catalogue's (written -sum y (z - lse) / B) folds the sign
        assert {k: v for k, v in a.items() if k != "mul"} == \
            {k: v for k, v in b.items() if k != "mul"}, p
        assert a["mul"] - b["mul"] in (0, 1), p
    assert mine.counts("forward").by_kind["mul"] == 1  # the sign, nothing per element
    saved = dict(mine.memory.saved)
    assert saved["lab"] == B  # kept as B labels, not B*C one-hot values


def test_labels_validate_against_torch_with_integer_labels():
    torch = pytest.importorskip("torch")
    from validation.validate import validate_user

    def reference(v):
        z = v["z"].detach().clone().requires_grad_(True)
        assert v["lab"].dtype == torch.int64 and v["lab"].ndim == 1
        L = torch.nn.functional.cross_entropy(z, v["lab"])
        L.backward()
        return {"L": L.detach(), "grad_z": z.grad}

    rows = validate_user(ce_labels(), reference)
    assert [r.pass_name for r in rows] == ["forward", "backward", "gradient"]
    assert all(r.verdict == "pass" for r in rows), [r.notes for r in rows]
    assert rows[0].symbolic == rows[0].executed > 0


def test_labels_only_index():
    c = Component("bad", "Losses", "x")
    B, C = c.dim("B C")
    i = c.index(i=B)
    lab = c.labels("lab", (B,), classes=C)
    out = c.output("out", (B,))
    with pytest.raises(ComponentError, match=r"can only index another tensor"):
        c.assign("forward", out[i], lab[i] * 2)
    with pytest.raises(ComponentError, match="not a declared dimension"):
        c.labels("lab2", (B,), classes=sp.Symbol("K"))


def test_a_state_starts_at_its_declared_value():
    torch = pytest.importorskip("torch")
    from validation.validate import initial_state, validate_user
    c = running_product()
    assert c.tensors["prod"].initial == 1.0
    assert initial_state(c, "prod", 4, torch.float64, "cpu") == 1.0
    d = derive(c)
    theta, g = torch.ones(4, dtype=torch.float64), torch.full((4,), 2.0, dtype=torch.float64)
    out = d.compiled("step")(backend="torch", theta=theta, g=g, prod=1.0, mu=0.9, lr=0.1)
    assert float(out["prod"]) == pytest.approx(0.9)
    assert torch.allclose(out["theta"], 1 - 0.1 * 0.9 * g)

    def reference(v):  # one step, the state handed in by the harness
        prod = v["prod"] * v["mu"]
        return {"prod": prod, "theta": v["theta"] - v["lr"] * prod * v["g"]}

    rows = validate_user(c, reference)
    assert rows[0].verdict == "pass" and rows[0].checked.startswith("5 steps")


def test_show_says_labels_and_initial_values():
    from symflop.report.render import _tensor_text
    assert _tensor_text(ce_labels().tensors["lab"]) == \
        "lab[B] target (class indices in 0..C-1)"
    assert _tensor_text(running_product().tensors["prod"]) == "prod state (initially 1)"


def test_scalar_tensors_in_arithmetic_and_a_tensor_with_axes_named():
    c = Component("s", "Losses", "x")
    B = c.dim("B")
    t = c.state("t")
    lr = c.hyper("lr")
    assert t + 1 == sp.Symbol("t", real=True) + 1
    assert sp.sqrt(t) * lr == sp.sqrt(sp.Symbol("t", real=True)) * lr
    assert 2 ** t == 2 ** sp.Symbol("t", real=True) and -t == -sp.Symbol("t", real=True)
    x = c.input("x", (B,))
    with pytest.raises(ComponentError, match=r"has 1 axes: index it \(x\[i\]\)"):
        x * 2
    with pytest.raises(ComponentError, match="index it"):
        lr * x


def test_a_hyperparameter_that_divides_by_zero_is_named():
    torch = pytest.importorskip("torch")
    from validation.validate import validate_user
    c = Component("smooth-l1", "Losses", "smooth L1")
    B = c.dim("B")
    i = c.index(i=B)
    yhat, y = c.input("yhat", (B,)), c.target("y", (B,))
    beta = c.hyper("beta", beta=0.0)
    L = c.output("L")
    r = yhat[i] - y[i]
    c.assign("forward", L, total(sp.Piecewise((r ** 2 / (2 * beta), sp.Abs(r) < beta),
                                              (sp.Abs(r) - beta / 2, True)), i) / B)
    c.set_gradient(L, (yhat,))

    def reference(v):
        return {"L": torch.nn.functional.smooth_l1_loss(v["yhat"], v["y"], beta=v["beta"])}

    rows = validate_user(c, reference)
    assert rows[0].verdict == "input error"
    assert "division by zero: beta = 0" in rows[0].notes[0]


def test_notebook_representations():
    c = ce_labels()
    d = derive(c)
    tex = c._repr_latex_()
    assert tex.startswith(r"$$\begin{aligned}") and r"{lse}_{i} &= \log" in tex
    assert "0..B" not in tex.replace("0..C-1", "")  # indices print as names, no ranges
    assert d._repr_latex_().startswith(r"$$\begin{array}") and r"\text{backward}" in \
        d._repr_latex_()
    counts = d.counts("forward")._repr_latex_()
    assert r"\text{transcendental} & B C + B" in counts and "2 B C + 2 B + 1" in counts
