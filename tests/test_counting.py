"""Operation counts of small programs against hand counts.

Each test builds a tiny component, counts it, and compares with a count made by
hand from the convention stated in ``symflop.core.ir`` and ``symflop.cost.counting``: a
node is evaluated once over the index space of the indices it depends on, a
reduction of n terms costs n - 1 additions per output element, and so on.  The
hand count is written out in a comment next to each expected value.
"""

import pytest
import sympy as sp

from symflop import Component, Fact, derive, total, uniform
from symflop.core.program import normalize
from symflop.cost.conventions import CONVENTIONS
from symflop.cost.counting import apply_convention, leading_order, tally_program, total_tally

KINDS = ("add", "mul", "div", "transcendental", "compare", "random")


def _component():
    c = Component("t", "Test", "test")
    N, d, K = c.dim("N d K")
    i, j, k = c.index(i=N, j=d, k=K)
    return c, (N, d, K), (i, j, k)


def _tallies(c):
    """Per-step tallies of the forward pass as written (normal form, no rewrite)."""
    return tally_program(normalize(c, "forward"))


def _raw(c) -> dict:
    """Raw operations per kind, summed over the steps of the forward pass."""
    t = total_tally(_tallies(c))
    return {kind: t[kind] for kind in KINDS}


def _optimized(c) -> dict:
    """Raw operations per kind of the optimized forward pass (the reuse stage)."""
    return derive(c, use_cache=False).counts("forward", stage="optimized").by_kind


def _counts(c, convention="default"):
    return apply_convention(total_tally(_tallies(c)), CONVENTIONS[convention])


def _expect(actual: dict, **expected) -> None:
    """Every kind not named in ``expected`` must be exactly zero."""
    for kind in KINDS:
        want = sp.sympify(expected.get(kind, 0))
        assert sp.expand(actual[kind] - want) == 0, f"{kind}: got {actual[kind]}, want {want}"


def _elementwise(expr_of):
    """``o[i, j] = expr_of(x[i, j], a[j], b[j], eps)`` over (i in N, j in d)."""
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    a = c.input("a", (d,))
    b = c.input("b", (d,))
    o = c.output("o", (N, d))
    eps = c.hyper("eps")
    c.assign("forward", o[i, j], expr_of(x[i, j], a[j], b[j], eps))
    return c, N, d


# -- hoisting ---------------------------------------------------------------------------


def test_loop_invariant_sqrt_is_evaluated_once_per_column():
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    mu = c.intermediate("mu", (d,))
    out = c.output("out", (N, d))
    eps = c.hyper("eps")
    c.assign("forward", mu[j], total(x[i, j], i) / N)
    c.assign("forward", out[i, j], (x[i, j] - mu[j]) / sp.sqrt(mu[j] + eps))
    prog = normalize(c, "forward")
    assert [s.lhs for s in prog.steps] == ["mu_sum", "mu", "out"]
    per_step = [{kind: t[kind] for kind in KINDS} for t in _tallies(c)]
    _expect(per_step[0], add=d * (N - 1))  # sum over i: d*(N-1) adds
    _expect(per_step[1], div=d)  # mu_sum / N: d divs
    # N*d subs + d adds (mu + eps) + d sqrts + N*d divs; sqrt is not repeated over i
    _expect(per_step[2], add=N * d + d, transcendental=d, div=N * d)
    counts = _counts(c)
    assert sp.expand(counts.total - (3 * N * d + 2 * d)) == 0
    assert counts.leading == 3 * N * d


def test_add_chain_combines_fewest_indices_first():
    c, N, d = _elementwise(lambda x, a, b, eps: x + a + b)
    # (a + b) over d first, then + x over N*d: d + N*d adds (not 2*N*d)
    _expect(_raw(c), add=N * d + d)


def test_mul_hoists_low_rank_factors_division_and_negation():
    c, N, d = _elementwise(lambda x, a, b, eps: x * a * b)
    _expect(_raw(c), mul=N * d + d)  # a*b: d muls, then *x: N*d muls

    c, N, d = _elementwise(lambda x, a, b, eps: x * a / b)
    _expect(_raw(c), div=d, mul=N * d)  # a/b: d divs, then *x: N*d muls

    c, N, d = _elementwise(lambda x, a, b, eps: -x * a)
    _expect(_raw(c), mul=N * d + d)  # the -1 rides on a: d muls (neg), then *x: N*d muls

    c, N, d = _elementwise(lambda x, a, b, eps: x / (N * d))
    _expect(_raw(c), mul=1, div=N * d)  # N*d once: 1 mul; x / (N*d): N*d divs


def test_subtracted_terms_are_hoisted_too():
    # "terms are combined from the fewest indices up": a and b depend on j only, so
    # x - a - b is x - (a + b): d adds + N*d subs.  Not (x - a) - b: 2*N*d subs.
    c, N, d = _elementwise(lambda x, a, b, eps: x - a - b)
    _expect(_raw(c), add=N * d + d)


# -- reductions -------------------------------------------------------------------------


def test_reduction_costs_n_minus_one_adds_per_output():
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    o = c.output("o", (N,))
    c.assign("forward", o[i], total(x[i, j], j))
    _expect(_raw(c), add=N * (d - 1))  # N outputs, d-1 adds each


def test_reduction_over_two_indices():
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    L = c.output("L")
    c.assign("forward", L, total(x[i, j], i, j))
    _expect(_raw(c), add=N * d - 1)  # one output, N*d terms: N*d - 1 adds


def test_reduction_over_an_index_the_body_does_not_use():
    c, (N, d, _), (i, j, _) = _component()
    y = c.input("y", (d,))
    o = c.output("o", (d,))
    c.assign("forward", o[j], total(y[j], i))
    _expect(_raw(c), mul=d)  # sum over i of y[j] is N*y[j]: d muls, no adds

    c, (N, d, _), (i, j, _) = _component()
    y = c.input("y", (d,))
    L = c.output("L")
    c.assign("forward", L, total(y[j], i, j))
    _expect(_raw(c), add=d - 1, mul=1)  # sum over j: d-1 adds; times N: 1 mul


def test_matrix_product_pairs_its_multiply_adds():
    c, (N, d, K), (i, j, k) = _component()
    a = c.input("a", (N, d))
    w = c.input("w", (d, K))
    o = c.output("o", (N, K))
    c.assign("forward", o[i, k], total(a[i, j] * w[j, k], j))
    t = total_tally(_tallies(c))
    _expect(_raw(c), mul=N * K * d, add=N * K * (d - 1))  # N*K*d muls + N*K*(d-1) adds
    assert sp.expand(dict(t.pairs)["fma"] - N * K * (d - 1)) == 0  # every add: a mul
    assert sp.expand(_counts(c, "default").total - (2 * N * K * d - N * K)) == 0
    assert sp.expand(_counts(c, "fma").total - N * K * d) == 0  # the usual N*K*d MACs


# -- folding of subtraction, division and numeric content ------------------------------


def test_subtraction_and_division_are_single_operations():
    c, N, d = _elementwise(lambda x, a, b, eps: x - eps * x**2)
    # x**2: N*d muls; eps * (...): N*d muls; x - (...): N*d subs, no negation
    _expect(_raw(c), add=N * d, mul=2 * N * d)

    c, (N, d, _), (i, j, _) = _component()
    p = c.input("p", (N, d))
    q = c.input("q", (N, d))
    o = c.output("o", (N, d))
    c.assign("forward", o[i, j], p[i, j] - q[i, j] + p[i, j] / q[i, j])
    # p - q: N*d subs (not a mul by -1 and an add); p/q: N*d divs (not 1/q and a mul);
    # then the add: N*d adds
    _expect(_raw(c), add=2 * N * d, div=N * d)


def test_numeric_content_is_pulled_out_of_a_sum():
    c, (N, d, _), (i, j, _) = _component()
    p = c.input("p", (N, d))
    q = c.input("q", (N, d))
    o = c.output("o", (N, d))
    c.assign("forward", o[i, j], 2 * p[i, j] - 2 * q[i, j])
    # SymPy stores 2*p - 2*q; it is counted as 2*(p - q): N*d subs + N*d muls
    _expect(_raw(c), add=N * d, mul=N * d)


# -- powers, transcendentals, compare/select ---------------------------------------------


@pytest.mark.parametrize(("power", "mul", "div", "transcendental"), [
    (2, 1, 0, 0),  # x*x
    (3, 2, 0, 0),  # x*x*x
    (-2, 1, 1, 0),  # 1 / (x*x)
    (sp.Rational(1, 2), 0, 0, 1),  # sqrt(x)
    (sp.Rational(-1, 2), 0, 1, 1),  # 1 / sqrt(x)
    (sp.Rational(3, 2), 0, 0, 1),  # general power
], ids=["square", "cube", "inverse-square", "sqrt", "rsqrt", "general"])
def test_powers(power, mul, div, transcendental):
    c, N, d = _elementwise(lambda x, a, b, eps: x**power)
    _expect(_raw(c), mul=mul * N * d, div=div * N * d, transcendental=transcendental * N * d)


def test_transcendentals():
    c, N, d = _elementwise(lambda x, a, b, eps: sp.exp(x) + sp.log(a))
    # exp: N*d; log(a): d (hoisted); the add: N*d
    _expect(_raw(c), transcendental=N * d + d, add=N * d)


def test_compare_and_select():
    c, N, d = _elementwise(lambda x, a, b, eps: sp.Max(x, 0))
    _expect(_raw(c), compare=N * d)  # one max per element

    c, N, d = _elementwise(lambda x, a, b, eps: sp.Abs(x) + sp.Min(a, b))
    _expect(_raw(c), compare=N * d + d, add=N * d)  # abs: N*d; min over j: d; add: N*d

    c, N, d = _elementwise(lambda x, a, b, eps: sp.Piecewise((x, x > a), (0, True)))
    _expect(_raw(c), compare=2 * N * d)  # x > a: N*d compares + where: N*d selects


# -- common subexpressions ----------------------------------------------------------------


def test_identical_subexpressions_in_one_step_are_computed_once():
    c, N, d = _elementwise(lambda x, a, b, eps: sp.exp(x - a) * (x - a))
    # x - a: N*d subs, once; exp: N*d; the product: N*d muls
    _expect(_raw(c), add=N * d, transcendental=N * d, mul=N * d)


def _batchnorm():
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    mu = c.intermediate("mu", (d,))
    var = c.intermediate("var", (d,))
    out = c.output("out", (N, d))
    eps = c.hyper("eps")
    c.assign("forward", mu[j], total(x[i, j], i) / N)
    c.assign("forward", var[j], total((x[i, j] - mu[j]) ** 2, i) / N)
    c.assign("forward", out[i, j], (x[i, j] - mu[j]) / sp.sqrt(var[j] + eps))
    return c, N, d


def test_a_subexpression_of_two_steps_is_computed_once_in_the_optimized_program():
    c, N, d = _batchnorm()
    # As written: mu:  d*(N-1) adds + d divs
    #             var: N*d subs (x - mu) + N*d squares + d*(N-1) adds + d divs
    #             out: N*d subs (x - mu again) + d adds + d sqrts + N*d divs
    written = 4 * N * d - d, N * d, N * d + 2 * d, d  # add, mul, div, transcendental
    _expect(_raw(c), **dict(zip(("add", "mul", "div", "transcendental"), written)))
    assert sp.expand(_counts(c, "default").total - (6 * N * d + 2 * d)) == 0
    # Optimized: x - mu is a step of its own, read by var and out: N*d subs fewer
    _expect(_optimized(c), add=3 * N * d - d, mul=N * d, div=N * d + 2 * d, transcendental=d)
    d_ = derive(c, use_cache=False)
    prog = d_.stage("optimized").programs["forward"]
    i, j = sp.Idx("i", N), sp.Idx("j", d)
    x_mu = prog.tensors["x"].symbol[i, j] - prog.tensors["mu"].symbol[j]
    shared = [st for st in prog.steps if st.body == x_mu]
    assert len(shared) == 1  # the code computes it once too: it runs this program
    readers = [st.lhs for st in prog.steps
               if shared[0].lhs in {str(r.base) for r in st.body.atoms(sp.Indexed)}]
    assert sorted(readers) == ["out", "var_sum"]
    assert ("common-subexpression", "forward") in {(r, p) for r, p, _ in
                                                    d_.stage("optimized").fired}


def test_a_value_computed_at_the_labels_only_is_not_shared():
    # L gathers z - m at the one labelled k of each row (N subs); p then needs
    # z - m at every (i, k), which no earlier step computed: N*K subs.
    c, (N, _, K), (i, _, k) = _component()
    y = c.input("y", (N, K), facts=(Fact.ONE_HOT,))
    z = c.input("z", (N, K))
    m = c.input("m", (N,))
    L = c.output("L")
    p = c.output("p", (N, K))
    c.assign("forward", L, total(y[i, k] * (z[i, k] - m[i]), i, k))
    c.assign("forward", p[i, k], sp.exp(z[i, k] - m[i]))
    # L: N subs + (N-1) adds; p: N*K subs + N*K exps
    _expect(_optimized(c), add=N * K + 2 * N - 1, transcendental=N * K)


# -- conventions ------------------------------------------------------------------------


def _convention_program():
    c, (N, d, _), (i, j, _) = _component()
    x = c.input("x", (N, d))
    w = c.parameter("w", (d,))
    b = c.parameter("b", (d,))
    h = c.intermediate("h", (N, d))
    s = c.output("s", (N,))
    g = c.output("g", (N, d))
    c.assign("forward", h[i, j], x[i, j] * w[j] + sp.exp(b[j]))
    c.assign("forward", s[i], total(h[i, j] * x[i, j], j))
    c.assign("forward", g[i, j], sp.Max(x[i, j] * w[j], 0) + uniform(i, j))
    return c, N, d


def test_raw_tallies_of_the_convention_program():
    c, N, d = _convention_program()
    # h: N*d muls (x*w) + d exps + N*d adds; the mul feeds the add: N*d pairs
    # s: N*d muls + N*(d-1) adds; the body is a mul: N*(d-1) pairs
    # g: N*d muls (x*w again) + N*d maxes + N*d draws + N*d adds (max is no mul: no pair)
    _expect(_raw(c), add=3 * N * d - N, mul=3 * N * d, transcendental=d, compare=N * d,
            random=N * d)
    assert sp.expand(dict(total_tally(_tallies(c)).pairs)["fma"] - (2 * N * d - N)) == 0


@pytest.mark.parametrize(("convention", "expected", "leading"), [
    # 3*N*d - N adds + 3*N*d muls + d exps + N*d maxes + N*d draws
    ("default", "8*N*d - N + d", "8*N*d"),
    # 2*N*d - N multiply-add pairs count 1 instead of 2
    ("fma", "6*N*d + d", "6*N*d"),
    # d exps weigh 4: 3*d more
    ("weighted", "8*N*d - N + 4*d", "8*N*d"),
    # exps and draws weigh 0: d + N*d fewer
    ("xla", "7*N*d - N", "7*N*d"),
])
def test_each_convention_on_the_same_program(convention, expected, leading):
    c, N, d = _convention_program()
    names = {"N": N, "d": d}
    counts = _counts(c, convention)
    assert counts.convention == convention
    assert sp.expand(counts.total - sp.sympify(expected, locals=names)) == 0
    assert counts.leading == sp.sympify(leading, locals=names)


def test_fma_convention_reports_pairs_as_their_own_kind():
    c, N, d = _convention_program()
    by_kind = _counts(c, "fma").by_kind
    # 2*N*d - N pairs leave N*d of the 3*N*d - N adds and N*d + N of the 3*N*d muls
    assert sp.expand(by_kind["fma"] - (2 * N * d - N)) == 0
    assert sp.expand(by_kind["add"] - N * d) == 0
    assert sp.expand(by_kind["mul"] - (N * d + N)) == 0
    assert "fma" not in _counts(c, "default").by_kind


# -- one-hot gather ---------------------------------------------------------------------


def test_sum_against_a_one_hot_tensor_is_a_gather():
    c, (N, _, K), (i, _, k) = _component()
    y = c.input("y", (N, K), facts=(Fact.ONE_HOT,))
    p = c.input("p", (N, K))
    o = c.output("o", (N,))
    c.assign("forward", o[i], total(y[i, k] * sp.log(p[i, k]), k))
    # as written: N*K logs, N*K muls, N*(K-1) adds
    _expect(_raw(c), transcendental=N * K, mul=N * K, add=N * (K - 1))
    _expect(_optimized(c), transcendental=N)  # log at the labelled k only: no muls, no adds

    c, (N, _, K), (i, _, k) = _component()
    y = c.input("y", (N, K), facts=(Fact.ONE_HOT,))
    p = c.input("p", (N, K))
    L = c.output("L")
    c.assign("forward", L, total(y[i, k] * sp.log(p[i, k]), i, k))
    _expect(_optimized(c), transcendental=N, add=N - 1)  # N logs; the sum over i: N-1 adds
    st = derive(c, use_cache=False).stage("optimized").programs["forward"].steps[-1]
    assert [k_ for k_, _ in st.gather] == [k]  # the step records it: the code gathers too


def test_rows_that_only_sum_to_one_are_not_gathered():
    c, (N, _, K), (i, _, k) = _component()
    y = c.input("y", (N, K), facts=(Fact.ROWS_SUM_TO_ONE,))
    p = c.input("p", (N, K))
    L = c.output("L")
    c.assign("forward", L, total(y[i, k] * sp.log(p[i, k]), i, k))
    # N*K logs + N*K muls + N*K - 1 adds, as written and optimized
    _expect(_raw(c), transcendental=N * K, mul=N * K, add=N * K - 1)
    _expect(_optimized(c), transcendental=N * K, mul=N * K, add=N * K - 1)


# -- leading order ----------------------------------------------------------------------


def test_leading_order_of_multivariate_polynomials():
    B, C, N, d = sp.symbols("B C N d", integer=True, positive=True)
    assert leading_order(7 * N * d + 2 * d) == 7 * N * d
    assert leading_order(3 * B * C + B * d + 5) == 3 * B * C + B * d  # neither divides the other
    assert leading_order(N**2 * d + N * d + N**2 + d) == N**2 * d
    assert leading_order(4 * N * d - d - 3) == 4 * N * d
    assert leading_order(N * (d - 1)) == N * d  # expanded first
    assert leading_order(sp.Integer(5)) == 5


def test_a_ratio_is_a_coefficient_not_a_size():
    F, k, P = sp.symbols("F k P", positive=True)
    assert leading_order(F + k * F + P + 3, frozenset({k})) == F + F * k + P  # F stays
    assert leading_order(F + k * F) == F * k               # k as a size: F*k dominates F


def test_training_step_leading_order_keeps_the_network_forward():
    from derivations.training import training_step
    from symflop.compose import derive_any
    c = training_step("momentum")
    d = derive_any(c)
    F, k = c.dims["F"], c.dims["k"]
    lead = d.counts("step").leading
    assert lead.coeff(F, 1).subs(k, 0) == 1 and (F * k) in sp.Add.make_args(lead)
