"""Edge cases of the engine found in review, each once a silent wrong result or a crash."""

import numpy as np
import pytest
import sympy as sp
import torch

from symflop import Component, ComponentError, derive, total, uniform
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
