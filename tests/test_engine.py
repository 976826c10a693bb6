"""Engine behaviour: structure of derived results, errors, input checks, caching."""

import os
import pickle
import sys

import numpy as np
import pytest
import sympy as sp
from conftest import derived

from derivations import CATALOGUE
from symflop import Component, ComponentError, InputError, derive
from symflop import cache as cache_mod
from symflop.core.program import walk
from symflop.cost.counting import leading_order


def _all_derived_exprs(d):
    for p in d.programs.values():
        for st in p.steps:
            yield st.rhs()
    for f in d.fused.values():
        yield f.expr


def test_no_kronecker_delta_or_range_guard_in_any_derived_result(component_name):
    c, d = derived(component_name)
    if not hasattr(d, "programs"):
        return  # a composite derives nothing symbolic of its own
    for e in _all_derived_exprs(d):
        assert not e.has(sp.KroneckerDelta), e
        assert not e.has(sp.Derivative), e
        for pw in e.atoms(sp.Piecewise):  # the author's own cases are fine; index guards not
            for _, cond in pw.args:
                assert not any(isinstance(a, sp.Idx) for a in walk(cond)), pw


def test_batchnorm_backward_has_the_documents_structure():
    c, d = derived("batchnorm")
    backward = d.stage("differentiated").programs["backward"]  # as reverse mode derives it
    lhs = [st.lhs for st in backward.steps]
    # dL/dxhat first, then dL/dvar, then dL/dmu, then dL/dx, as the document writes them.
    order = [lhs.index(n) for n in ("grad_xhat", "grad_var", "grad_mu", "grad_x")]
    assert order == sorted(order)
    g = {st.lhs: st for st in backward.steps}
    N, d_ = sp.symbols("N d", integer=True, positive=True)
    gamma, grad_y = sp.IndexedBase("gamma", real=True), sp.IndexedBase("grad_y", real=True)
    i, j = sp.Idx("i", N), sp.Idx("j", d_)
    assert g["grad_xhat"].body == gamma[j] * grad_y[i, j]


def test_fused_cross_entropy_gradient_is_softmax_minus_target_and_says_why():
    for name in ("cross-entropy", "cross-entropy-soft"):
        c, d = derived(name)
        written = d.fused_at("differentiated")["z"]  # holds for any target rows
        assert "Sum(y[i, k']" in str(written.expr) and written.assumptions == ()
        f = d.fused["z"]
        B, C = sp.symbols("B C", integer=True, positive=True)
        i, k, k2 = sp.Idx("i", B), sp.Idx("k", C), sp.Idx("k'", C)
        z, y = sp.IndexedBase("z", real=True), sp.IndexedBase("y", real=True)
        softmax = sp.exp(z[i, k]) / sp.Sum(sp.exp(z[i, k2]), (k2, 0, C - 1))
        assert sp.simplify(f.expr - (softmax - y[i, k]) / B) == 0
        assert f.assumptions == ("y: rows sum to 1 along the last axis",)


def test_fused_mse_gradient_matches_document():
    c, d = derived("mse")
    B, dd = sp.symbols("B d", integer=True, positive=True)
    i, j = sp.Idx("i", B), sp.Idx("j", dd)
    yhat, y = sp.IndexedBase("yhat", real=True), sp.IndexedBase("y", real=True)
    assert sp.expand(d.fused["yhat"].expr - 2 * (yhat[i, j] - y[i, j]) / (B * dd)) == 0
    assert d.fused["yhat"].assumptions == ()


def test_leading_order():
    N, d, B, C = sp.symbols("N d B C", integer=True, positive=True)
    assert leading_order(7 * N * d + 2 * d) == 7 * N * d
    assert leading_order(3 * B * C + B * d + 5) == 3 * B * C + B * d
    assert leading_order(sp.Integer(4)) == 4


@pytest.mark.parametrize("build, message", [
    (lambda c, x, i, j: c.assign("f", x[i, j], sp.IndexedBase("q", real=True)[i, j]),
     "unknown tensor 'q'"),
    (lambda c, x, i, j: c.assign("f", c.tensors["s"].symbol, x[i, j]),
     "index i, j is free on the right"),
    (lambda c, x, i, j: c.assign("f", x[i, j], x[j, i]), "is not a plain index"),
    (lambda c, x, i, j: c.assign("f", x[i, j], x[i, i]), "repeated index"),
    (lambda c, x, i, j: c.assign("f", x[i, j], x[i + 1, j]), "is not a plain index"),
    (lambda c, x, i, j: c.assign("f", x[i, j], sp.Symbol("w")), "unknown symbol 'w'"),
    (lambda c, x, i, j: c.assign("f", x[i, j], sp.Sum(x[i, j], (i, 0, 3))),
     "whole range"),
])
def test_malformed_components_are_rejected_with_a_clear_message(build, message):
    from symflop.core.program import normalize
    c = Component("bad", "Test", "bad")
    N, d = c.dim("N d")
    i, j = c.index(i=N, j=d)
    x = c.input("x", (N, d))
    c.intermediate("s")
    build(c, x, i, j)
    with pytest.raises(ComponentError, match=message):
        normalize(c, "f")


def test_reserved_and_duplicate_names_are_rejected():
    c = Component("bad", "Test", "bad")
    N = c.dim("N")
    c.input("x", (N,))
    for name in ("x", "grad_x", "x_sum", "bad name"):
        with pytest.raises(ComponentError):
            c.input(name, (N,))


def test_generated_code_checks_its_inputs():
    c, d = derived("batchnorm")
    fwd = d.compiled("forward")
    rng = np.random.default_rng(0)
    good = {"x": rng.standard_normal((5, 3)), "gamma": np.ones(3), "beta": np.zeros(3),
            "running_mean": np.zeros(3), "running_var": np.ones(3),
            "epsilon": 1e-5, "momentum": 0.1}
    fwd(**good)
    with pytest.raises(InputError, match="gamma axis 0 has size 4, but d = 3 from x"):
        fwd(**{**good, "gamma": np.ones(4)})
    with pytest.raises(InputError, match="x must have 2 axes"):
        fwd(**{**good, "x": np.ones(3)})
    bad = good["x"].copy()
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="x contains NaN"):
        fwd(**{**good, "x": bad})
    with pytest.raises(InputError, match="missing input"):
        fwd(**{k: v for k, v in good.items() if k != "beta"})
    with pytest.raises(InputError, match="epsilon is nan"):
        fwd(**{**good, "epsilon": float("nan")})


def test_cache_round_trip_stale_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFLOP_CACHE_DIR", str(tmp_path))
    c = CATALOGUE["mse"]()
    first = derive(c)
    files = list(tmp_path.glob("*.pkl"))
    assert len(files) == 1
    second = derive(c)
    assert second.counts("forward").total == first.counts("forward").total
    # A warm hit is the unpickled entry, not a re-derivation.
    calls = []
    monkeypatch.setattr(sys.modules["symflop.derive"], "_derive",
                        lambda comp: calls.append(comp) or first)
    derive(c)
    assert calls == []
    # Corrupt payload: detected by its digest, rebuilt, and the file repaired.
    entry = pickle.loads(files[0].read_bytes())
    entry["payload"] = entry["payload"][:-10] + b"0123456789"
    files[0].write_bytes(pickle.dumps(entry))
    derive(c)
    assert len(calls) == 1
    assert cache_mod.load("mse", entry["key"]) is not None
    # Garbage file: rebuilt.
    files[0].write_bytes(b"not a pickle")
    derive(c)
    assert len(calls) == 2
    # Stale: a changed equation gives a new key, so the old entry is not used.
    c2 = CATALOGUE["mse"]()
    c2.passes["forward"].assignments[0] = c2.passes["forward"].assignments[0].__class__(
        c2.tensors["L"], (), c2.passes["forward"].assignments[0].rhs * 2)
    derive(c2)
    assert len(calls) == 3
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_count_function_agrees_with_the_polynomial():
    c, d = derived("batchnorm")
    N, dd = sp.symbols("N d", integer=True, positive=True)
    poly = d.counts("backward").total
    fn = d.count_function("backward")
    for n, k in [(1, 1), (100352, 256), (7, 3)]:
        assert fn(N=n, d=k) == int(poly.xreplace({N: n, dd: k}))
