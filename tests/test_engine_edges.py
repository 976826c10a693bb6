"""Edge cases of the engine found in review, each once a silent wrong result or a crash."""

import numpy as np
import pytest
import sympy as sp
import torch

from symflop import Component, ComponentError, InputError, derive, total, uniform
from symflop.core.program import normalize
from symflop.cost.counting import apply_convention, tally_program, total_tally
from validation.harness import run_passes


def _two_dim():
    c = Component("edge", "Test", "edge case")
    N, d = c.dim("N d")
    i, j = c.index(i=N, j=d)
    return c, N, d, i, j


def _count(c, convention="default", pass_name="forward"):
    from symflop import get_convention
    conv = get_convention(convention)
    return apply_convention(total_tally(tally_program(normalize(c, pass_name))), conv).total


def test_sum_of_terms_over_different_indices():
    c, N, d, i, j = _two_dim()
    a, b = c.input("a", (N,)), c.input("b", (d,))
    o = c.output("o", (N, d))
    c.assign("forward", o[i, j], sp.exp(a[i] + b[j]))
    assert _count(c) == 2 * N * d  # N*d additions (no term spans both), N*d exps
    out = derive(c, use_cache=False).compiled("forward")(a=np.array([0.0, 1.0]),
                                                        b=np.array([0.5, 2.0, 3.0]))
    np.testing.assert_allclose(out["o"], np.exp(np.add.outer([0.0, 1.0], [0.5, 2.0, 3.0])))


def test_gradient_with_respect_to_a_target_is_refused():
    c, N, d, i, j = _two_dim()
    x, y = c.input("x", (N,)), c.target("y", (N,))
    L = c.output("L")
    c.assign("forward", L, total((x[i] - y[i]) ** 2, i))
    c.set_gradient(L, (x, y))
    with pytest.raises(ComponentError, match="cannot differentiate with respect to 'y'"):
        derive(c, use_cache=False)


def test_summation_index_may_not_shadow_an_index_in_use():
    c, N, d, i, j = _two_dim()
    x, o = c.input("x", (N, d)), c.output("o", (N,))
    c.assign("forward", o[i], total(x[i, j], i, j))
    with pytest.raises(ComponentError, match="summation index i is already in use"):
        normalize(c, "forward")


def test_reading_a_tensor_that_is_overwritten_later_is_refused_by_reverse_mode():
    c, N, d, i, j = _two_dim()
    x, r = c.input("x", (N,)), c.state("r", (N,))
    y = c.output("y", (N,))
    mom = c.hyper("mom")
    c.assign("forward", y[i], x[i] * r[i])
    c.assign("forward", r[i], r[i] + mom * x[i])
    c.set_gradient(y, (x,))
    with pytest.raises(ComponentError, match="'r' is read by 'y' and assigned again later"):
        derive(c, use_cache=False)


def test_a_value_is_not_shared_across_an_overwrite():
    c = Component("edge", "Test", "edge")
    P = c.dim("P")
    p = c.index(p=P)
    g, v, out = c.input("g", (P,)), c.state("v", (P,)), c.output("out", (P,))
    mu = c.hyper("mu")
    c.assign("step", v[p], mu * v[p] + g[p])
    c.assign("step", out[p], mu * v[p] + g[p])  # the new v: must be computed again
    assert _count(c, "default", "step") == 4 * P
    d = derive(c, use_cache=False)
    assert d.counts("step", stage="optimized").total == 4 * P
    out = d.compiled("step")(g=np.array([1.0, 2.0]), v=np.array([3.0, 4.0]), mu=0.5)
    np.testing.assert_allclose(out["out"], 0.5 * (0.5 * np.array([3.0, 4.0]) + [1, 2]) + [1, 2])


def test_random_draws_written_inline_are_drawn_once_and_saved():
    c, N, d, i, j = _two_dim()
    x, y = c.input("x", (N, d)), c.output("y", (N, d))
    p = c.hyper("p")
    c.assign("forward", y[i, j], x[i, j] * sp.Piecewise((1, uniform(i, j) >= p), (0, True)))
    c.set_gradient(y, (x,))
    dv = derive(c, use_cache=False)
    x0 = torch.randn(4, 5, dtype=torch.float64)
    gy = torch.ones(4, 5, dtype=torch.float64)
    out = run_passes(dv, {"x": x0, "p": 0.5, "grad_y": gy}, backend="torch", seed=3,
                     passes=("forward", "backward"))
    kept = out["y"] != 0
    assert 0 < kept.sum() < 20
    assert torch.equal(out["grad_x"] != 0, kept)  # the backward applies the same mask
    assert [n for n, _ in dv.memory.saved] == ["y_draw"]


def test_log_of_a_product_of_unknown_sign_is_not_split():
    c, N, d, i, j = _two_dim()
    x, o = c.input("x", (N,)), c.output("o", (N,))
    c.assign("forward", o[i], sp.log(x[i] ** 2 + 1) + sp.log(x[i] ** 2))
    out = derive(c, use_cache=False).compiled("forward")(x=np.array([-2.0, 3.0]))
    np.testing.assert_allclose(out["o"], np.log(np.array([4.0, 9.0]) + 1) + np.log([4, 9]))


def test_a_sum_of_exponentials_that_is_an_output_is_still_returned():
    c, N, d, i, j = _two_dim()
    z, s = c.input("z", (N, d)), c.output("s", (N,))
    c.assign("forward", s[i], total(sp.exp(z[i, j]), j))
    z0 = np.arange(6.0).reshape(2, 3)
    out = derive(c, use_cache=False).compiled("forward")(z=z0)
    np.testing.assert_allclose(out["s"], np.exp(z0).sum(axis=1), rtol=1e-13)


@pytest.mark.parametrize("name", ["lambda", "xp", "for"])
def test_names_that_would_break_generated_code_are_refused(name):
    c = Component("edge", "Test", "edge")
    N = c.dim("N")
    with pytest.raises(ComponentError, match="not a valid name"):
        c.input(name, (N,))


def test_negative_reciprocal_and_negated_sum_cost_what_they_should():
    c, N, d, i, j = _two_dim()
    x, y = c.input("x", (N,)), c.input("y", (N,))
    o1, o2 = c.output("o1", (N,)), c.output("o2", (N,))
    c.assign("forward", o1[i], -1 / x[i])                 # one division
    c.assign("forward", o2[i], -2 * x[i] - 2 * y[i])       # one addition, one multiplication
    assert _count(c) == N + 2 * N


def test_cache_key_changes_with_the_sympy_version(monkeypatch):
    from symflop import cache
    cache.engine_fingerprint.cache_clear()
    before = cache.engine_fingerprint()
    monkeypatch.setattr(sp, "__version__", "0.0-test")
    cache.engine_fingerprint.cache_clear()
    assert cache.engine_fingerprint() != before
    cache.engine_fingerprint.cache_clear()


def test_erf_runs_on_both_backends_and_an_unknown_function_is_refused():
    """One table of elementary functions: a row makes erf count, print and run everywhere;
    a function without a row is refused in one line naming it."""
    c = Component("gelu", "Layers", "gelu")
    B = c.dim("B")
    i = c.index(i=B)
    x, y = c.input("x", (B,)), c.output("y", (B,))
    c.assign("forward", y[i], x[i] * (1 + sp.erf(x[i] / sp.sqrt(2))) / 2)
    c.set_gradient(y, (x,))
    d = derive(c, use_cache=False)
    # erf once per element; sqrt(2) once, a Python number
    assert d.counts("forward").by_kind["transcendental"] == B + 1
    xs = np.linspace(-3, 3, 7)
    want = torch.nn.functional.gelu(torch.tensor(xs))
    np.testing.assert_allclose(d.compiled("forward")(x=xs)["y"], want.numpy(), rtol=1e-12)
    xt = torch.tensor(xs, requires_grad=True)
    torch.nn.functional.gelu(xt).sum().backward()
    got = d.compiled("backward")(backend="torch", x=torch.tensor(xs),
                                 grad_y=torch.ones(7, dtype=torch.float64))["grad_x"]
    torch.testing.assert_close(got, xt.grad, rtol=1e-12, atol=1e-14)

    c = Component("bad", "Test", "an unknown function")
    B = c.dim("B")
    i = c.index(i=B)
    x, y = c.input("x", (B,)), c.output("y", (B,))
    c.assign("forward", y[i], sp.gamma(x[i]))
    with pytest.raises(ComponentError, match="unsupported function 'gamma'.*ops.py"):
        derive(c, use_cache=False)


def test_weight_decay_is_not_free_under_fma():
    """The fma convention fuses a multiply or a division into the add it feeds, for every
    component alike: AdamW's weight decay (lam*theta added to the update) costs P."""
    from derivations import optimizers
    adam, adamw = derive(optimizers.adam()), derive(optimizers.adamw())
    P = sp.Symbol("P", integer=True, positive=True)
    # As written, per parameter: m (1 fma + 1 mul), v (g**2, 1 fma + 1 mul), m/(1 - b1^t),
    # v/(1 - b2^t), sqrt, + eps, the division, and lr*(.) fused into the subtraction: 11;
    # AdamW adds lam*theta fused into the addition to the quotient: 12.
    assert adam.counts("step", "fma", "written").leading == 11 * P
    assert adamw.counts("step", "fma", "written").leading == 12 * P


# -- rewrites that must keep values (found by review) ------------------------------------


def _values_agree(c, pass_name, values, want, **kw):
    d = derive(c, use_cache=False)
    out = d.compiled(pass_name)(backend="numpy", **kw, **values)
    for k, v in want.items():
        np.testing.assert_allclose(out[k], v, rtol=1e-12, atol=1e-12, err_msg=k)
    return d


def test_a_sum_is_not_shared_across_an_update_of_what_it_reads():
    c = Component("upd", "Test", "norm before and after an update")
    n = c.dim("n")
    i = c.index(i=n)
    x, lr = c.state("x", (n,)), c.hyper("lr")
    s, t = c.intermediate("s"), c.output("t")
    c.assign("step", s, total(x[i], i))
    c.assign("step", x[i], x[i] - lr * s.symbol)
    c.assign("step", t, total(x[i], i))
    x0 = np.array([1.0, 2.0, 3.0])
    _values_agree(c, "step", {"x": x0, "lr": 0.1}, {"t": (x0 - 0.1 * x0.sum()).sum()})


def test_one_hot_tensors_read_densely_and_at_their_labels():
    from symflop import Fact
    c = Component("dense", "Test", "a one-hot tensor read densely")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    y = c.target("y", (B, C), facts=(Fact.ONE_HOT,))
    z, L = c.input("z", (B, C)), c.output("L", (B, C))
    c.assign("forward", L[i, k], y[i, k] * z[i, k])
    Y, Z = np.eye(4)[[0, 2, 3, 1]], np.arange(16.0).reshape(4, 4)
    d = _values_agree(c, "forward", {"y": Y, "z": Z}, {"L": Y * Z})
    _values_agree(c, "forward", {"y": np.array([0, 2, 3, 1]), "z": Z}, {"L": Y * Z})
    assert d.compiled("forward").shapes["y"][-1] == "dense"

    c = Component("gathered", "Test", "a gather whose body does not use the label")
    B, C = c.dim("B C")
    i, k = c.index(i=B, k=C)
    y = c.target("y", (B, C), facts=(Fact.ONE_HOT,))
    f, L = c.input("f", (B,)), c.output("L", (B,))
    c.assign("forward", L[i], total(y[i, k] * f[i], k))
    d = _values_agree(c, "forward", {"y": np.array([0, 3]), "f": np.array([1.0, 2.0])},
                      {"L": [1.0, 2.0]}, sizes={"C": 4})
    assert d.counts("forward").total == 0  # f at the label: nothing to compute
    # a dense one-hot array gives the class count itself
    _values_agree(c, "forward", {"y": np.eye(4)[[0, 3]], "f": np.array([1.0, 2.0])},
                  {"L": [1.0, 2.0]})


def test_an_embedding_gradient_reads_the_labels_densely():
    from symflop import Fact
    c = Component("embedding", "Test", "a one-hot lookup")
    B, C, D = c.dim("B C D")
    i, k, j = c.index(i=B, k=C, j=D)
    y = c.input("y", (B, C), facts=(Fact.ONE_HOT,))
    W = c.parameter("W", (C, D))
    e, L = c.intermediate("e", (B, D)), c.output("L")
    c.assign("forward", e[i, j], total(y[i, k] * W[k, j], k))
    c.assign("forward", L, total(e[i, j] ** 2, i, j))
    c.set_gradient(L, (W,))
    d = derive(c, use_cache=False)
    labels = np.array([0, 2, 2, 1])
    W0 = np.arange(15.0).reshape(3, 5)
    fwd = d.compiled("forward")(backend="numpy", y=labels, W=W0)
    np.testing.assert_allclose(fwd["e"], W0[labels])
    have = {"y": labels, "W": W0, **fwd}
    args = {n: have[n] for n in d.compiled("backward").signature.inputs}
    with pytest.raises(InputError, match="cannot tell the size C of y's one-hot axis"):
        d.compiled("backward")(backend="numpy", **args)  # labels alone do not say C
    bwd = d.compiled("backward")(backend="numpy", sizes={"C": 3}, **args)
    want = np.zeros_like(W0)
    np.add.at(want, labels, 2 * W0[labels])
    np.testing.assert_allclose(bwd["grad_W"], want)


def test_renamed_summation_indices_never_capture_a_label():
    from symflop import Fact
    c = Component("labels", "Test", "a gather beside a primed index")
    B, C = c.dim("B C")
    i, k, kp = c.index(i=B, k=C, **{"k'": C})
    y = c.target("y", (B, C), facts=(Fact.ONE_HOT,))
    A, z, L = c.input("A", (C, C)), c.input("z", (B, C)), c.output("L", (B,))
    c.assign("forward", L[i], total(y[i, k] * A[k, kp] * z[i, kp], k, kp))
    A0, z0 = np.arange(9.0).reshape(3, 3), np.arange(6.0).reshape(2, 3)
    labels = np.array([0, 1])
    _values_agree(c, "forward", {"y": labels, "A": A0, "z": z0},
                  {"L": [A0[labels[r]] @ z0[r] for r in range(2)]})


def test_a_definition_is_not_read_back_by_dividing_by_a_tensor():
    c = Component("scaled", "Test", "y = g*exp(x)")
    B, D = c.dim("B D")
    i, j = c.index(i=B, j=D)
    x, g, y = c.input("x", (B, D)), c.parameter("g", (D,)), c.output("y", (B, D))
    c.assign("forward", y[i, j], g[j] * sp.exp(x[i, j]))
    c.set_gradient(y, (x, g))
    d = derive(c, use_cache=False)
    X, G, dy = np.zeros((2, 2)), np.array([1.0, 0.0]), np.ones((2, 2))
    fwd = d.compiled("forward")(x=X, g=G)
    inputs = {"x": X, "g": G, "grad_y": dy, "y": fwd["y"]}
    out = d.compiled("backward")(**{n: inputs[n] for n in
                                    d.compiled("backward").signature.inputs})
    np.testing.assert_allclose(out["grad_g"], [2.0, 2.0])  # no 0/0 where g = 0


@pytest.mark.parametrize("case", ["scaled-sum", "partial-sum", "unused-index", "no-array"])
def test_components_that_crashed_the_pipeline_derive_and_run(case):
    c = Component(case, "Test", case)
    B, D = c.dim("B D")
    i, j = c.index(i=B, j=D)
    if case == "scaled-sum":  # a mean of a sum declared over another index name
        k = c.index(k=D)
        x, v = c.input("x", (B, D)), c.parameter("v", (D,))
        s, m, L = c.intermediate("s", (D,)), c.intermediate("m", (D,)), c.output("L")
        c.assign("forward", s[k], total(x[i, k], i))
        c.assign("forward", m[j], s[j] / B)
        c.assign("forward", L, total(v[k] * x[i, k], i, k) + total(m[j] ** 2, j))
        c.set_gradient(L, (v,))
    elif case == "partial-sum":  # the forward's partial sums, named by the engine
        a, y, L = c.input("a", (B,)), c.target("y", (B, D)), c.output("L")
        c.assign("forward", L, total(a[i] ** 2 * y[i, j] ** 2, i, j))
        c.set_gradient(L, (a,))
    elif case == "unused-index":
        x, L = c.input("x", (B,)), c.output("L")
        c.assign("forward", L, total(x[i], i, j))
        c.set_gradient(L, (x,))
    else:
        m = c.state("m", (D,))
        c.assign("init", m[j], 0)
    d = derive(c, use_cache=False)
    assert d.passes
    if case == "no-array":
        np.testing.assert_array_equal(d.compiled("init")(sizes={"D": 3})["m"], np.zeros(3))
    if case == "unused-index":
        out = d.compiled("backward")(sizes={"B": 2, "D": 3})  # a constant: reads nothing
        np.testing.assert_allclose(out["grad_x"], [3.0, 3.0])


@pytest.mark.parametrize("pass_name, message", [
    ("my pass", "must be letters, digits"),
    ("class", "must be letters, digits"),
    ("xp", "must be letters, digits"),
    ("backward", "is derived by the engine"),  # once silently replaced by the derived one
    ("gradient", "is derived by the engine"),
])
def test_bad_pass_names_are_refused_in_one_line(pass_name, message):
    c, N, d, i, j = _two_dim()
    x, y = c.input("x", (N, d)), c.output("y", (N, d))
    with pytest.raises(ComponentError, match=message) as e:
        c.assign(pass_name, y[i, j], 2 * x[i, j])
    assert "'edge'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("rhs", [None, [1, 2], "x + 1", object()])
def test_a_right_hand_side_must_be_an_expression(rhs):
    c, N, d, i, j = _two_dim()
    y = c.output("y", (N, d))
    with pytest.raises(ComponentError, match="right-hand side of 'y' must be a SymPy "
                                             "expression or a number") as e:
        c.assign("forward", y[i, j], rhs)
    assert "pass 'forward'" in str(e.value)


def test_infinite_and_overflowing_constants_run_as_floats():
    """oo, -oo and a constant past float64's range once printed as the undefined name inf."""
    c = Component("consts", "Test", "constants")
    B = c.dim("B")
    i = c.index(i=B)
    x, y = c.input("x", (B,)), c.output("y", (B,))
    c.assign("forward", y[i], sp.Piecewise((sp.oo, x[i] > 1), (-sp.oo, x[i] < -1),
                                           (x[i] * sp.Float("1e300") ** 2, True)))
    src = derive(c).sources["forward"][0]
    assert "float('inf')" in src and "float('-inf')" in src
    fn = derive(c).compiled("forward")
    for backend, arr in (("numpy", np.array), ("torch", torch.tensor)):
        out = np.asarray(fn(backend=backend, x=arr([0.5, 2.0, -3.0]), check=False)["y"])
        assert list(out) == [np.inf, np.inf, -np.inf]  # 0.5 * 1e600 overflows to inf


def test_a_component_without_equations_is_refused_in_one_line():
    """Once a TypeError in count and "a composite" in code."""
    c = Component("empty", "Test", "nothing")
    c.dim("B")
    with pytest.raises(ComponentError, match="'empty' has no equations"):
        derive(c)


def test_a_too_deep_expression_is_refused_in_one_line():
    """A sum of 1000 terms once ended in a RecursionError traceback (count, show, code);
    100 terms derive."""
    def component(n):
        c = Component(f"deep{n}", "Test", "many terms")
        B = c.dim("B")
        i = c.index(i=B)
        x, y = c.input("x", (B,)), c.output("y", (B,))
        c.assign("forward", y[i], sum(sp.Rational(k + 1, 7) * x[i] ** (k % 5 + 1)
                                      * sp.sin(k * x[i]) for k in range(n)))
        return c
    assert derive(component(100), use_cache=False).counts("forward").total != 0
    with pytest.raises(ComponentError, match="nested too deeply .* split it into several"):
        derive(component(1000), use_cache=False)
