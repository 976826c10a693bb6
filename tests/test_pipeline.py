"""The staged pipeline: the optimized program of each component against hand counts, the
rules that make it, and the stages kept beside it.

Every expected count below is worked out by hand in the comment next to it, per element
of the largest tensor, under the default convention, at leading order."""

import numpy as np
import pytest
import sympy as sp
import torch
from conftest import derived

from derivations import CATALOGUE
from symflop import Component, derive, total
from symflop.core.stages import STAGES
from symflop.cost.counting import numeric_sizes
from symflop.lower.codegen import generate
from symflop.lower.compiled import CompiledPass, shapes_of
from symflop.lower.plan import lower
from symflop.rewrite.pipeline import recompute_point, run
from symflop.rewrite.rules import REGISTRY

N, d, B, C, P = sp.symbols("N d B C P", integer=True, positive=True)
G, Cg, S = sp.symbols("G Cg S", integer=True, positive=True)


def lead(name, pass_name, stage="optimized"):
    return derived(name)[1].counts(pass_name, stage=stage).leading


def test_batchnorm_backward_is_7_per_element_and_saves_xhat_and_var():
    # dbeta = sum_i dy: 1 addition; dgamma = sum_i dy*xhat: 1 multiplication, 1 addition;
    # dx = a[j]*dy + b[j]*xhat + c[j] (a = gamma/sigma, b = -a*dgamma/N, c = -a*dbeta/N):
    # 2 multiplications, 2 additions.  1 + 2 + 4 = 7.
    assert lead("batchnorm", "backward") == 7 * N * d
    _, dv = derived("batchnorm")
    assert dict(dv.memory.saved) == {"xhat": N * d, "var": d}
    # As written (the document's steps, counted one by one): 16 per element.
    assert lead("batchnorm", "backward", "written") == 16 * N * d
    # The recompute point saves what torch saves (x and two per-feature statistics) and
    # reads x instead of xhat: sum_i dy*(x - mu) = sum_i dy*x - mu*sum_i dy, so it is
    # 7 per element too.
    reuse, recompute = dv.tradeoffs
    assert (reuse.label, recompute.label) == ("reuse", "recompute")
    assert sp.expand(recompute.saved - (N * d + 2 * d)) == 0
    assert set(recompute.tensors) == {"x", "mu", "var"}
    assert sp.expand(reuse.saved - (N * d + d)) == 0


def test_batchnorm_closed_form_is_the_textbook_one():
    _, dv = derived("batchnorm")
    f = dv.fused["x"]
    i, j = f.idx
    ip = sp.Idx("i'", N)
    t = {n: sp.IndexedBase(n, real=True) for n in ("grad_y", "xhat", "gamma", "var")}
    eps = sp.Symbol("epsilon", positive=True)
    s1 = sp.Sum(t["grad_y"][ip, j], (ip, 0, N - 1))
    s2 = sp.Sum(t["grad_y"][ip, j] * t["xhat"][ip, j], (ip, 0, N - 1))
    want = t["gamma"][j] / sp.sqrt(t["var"][j] + eps) * (
        t["grad_y"][i, j] - s1 / N - t["xhat"][i, j] * s2 / N)
    assert sp.expand(f.expr - want) == 0
    # the sum of (x - mu) is gone: the rule that removed it is named where it fired
    fired = {(r, p) for r, p, _ in dv.stage("simplified").fired}
    assert ("centered-sum", "backward") in fired and ("centered-sum", "gradient") in fired


@pytest.mark.parametrize("name, size, rules", [
    ("groupnorm", B * G * Cg * S, {"factor-reduction", "shared-reduction", "reuse-definition"}),
    ("instancenorm", B * C * S, {"shared-reduction", "reuse-definition"})])
def test_group_and_instance_norm_backward_is_7_per_element(name, size, rules):
    # gamma does not vary along the positions s, so it multiplies partial sums over s:
    # P = sum_s dy*xhat (2), Q = sum_s dy (1); dgamma = sum_b P and dbeta = sum_b Q are of
    # lower order; dx = a*dy + b*xhat + c with a over (b, g, c): 4.  2 + 1 + 4 = 7.
    assert lead(name, "backward") == 7 * size
    assert lead(name, "gradient") == 7 * size
    fired = {r for r, p, _ in derived(name)[1].stage("optimized").fired if p == "backward"}
    assert rules <= fired


def test_layernorm_backward_is_11_per_element():
    # gamma[j] varies along the normalized axis j, so it cannot leave the sums over j:
    # four full-size reductions (sum_j gamma*dy, sum_j gamma*dy*xhat, dgamma = sum_i
    # dy*xhat, dbeta = sum_i dy): 4 additions; the products gamma*dy, gamma*dy*xhat and
    # dy*xhat: 3 multiplications (gamma*dy computed once); dx = a[i]*(gamma*dy) +
    # b[i]*xhat + c[i]: 4.  4 + 3 + 4 = 11, as written 16.
    assert lead("layernorm", "backward") == 11 * B * d
    assert lead("layernorm", "gradient") == 11 * B * d
    assert lead("layernorm", "backward", "written") == 16 * B * d


def test_cross_entropy_gradient_is_at_most_3_per_logit():
    # optimized: exp(z)/(B*sum) - y/B: an exponential and one multiplication by the
    # per-row factor 1/(B*sum) per logit (the sum read from the forward pass), and one
    # subtraction per row at the label (a scatter): 2*B*C.
    assert lead("cross-entropy", "gradient") == 2 * B * C
    # the code stage reads lse instead of the sum, exp(z - lse)/B: 3 per logit
    assert lead("cross-entropy", "gradient", "code") == 3 * B * C
    assert lead("cross-entropy", "gradient", "written") == 7 * B * C


def test_bce_from_logits_is_softplus_and_sigmoid():
    # forward: y*z - softplus(z) per sample (multiplication, softplus, subtraction) and the
    # sum (1 addition): 4; gradient: (sigmoid(z) - y)/B: sigmoid, subtraction, division: 3.
    assert lead("bce", "forward") == 4 * B
    assert lead("bce", "gradient") == 3 * B
    assert lead("bce", "backward") == 3 * B
    fired = {r for r, _, _ in derived("bce")[1].stage("simplified").fired}
    assert {"logistic", "log-sigmoid", "softplus-reflection"} <= fired
    f = derived("bce")[1].fused["z"]
    (i,) = f.idx
    z, y = sp.IndexedBase("z", real=True), sp.IndexedBase("y", real=True)
    from symflop import sigmoid
    assert sp.expand(f.expr - (sigmoid(z[i]) - y[i]) / B) == 0


@pytest.mark.parametrize("name", [n for n in CATALOGUE if isinstance(CATALOGUE[n](), Component)
                                  and CATALOGUE[n]().differentiate is not None])
def test_the_fused_gradient_costs_no_more_than_the_backward_pass(name):
    c, dv = derived(name)
    sizes = numeric_sizes(c.dims)
    gradient = dv.counts("gradient").total.xreplace(sizes)
    backward = dv.counts("backward").total.xreplace(sizes)
    assert gradient <= backward, (name, dv.counts("gradient").total,
                                  dv.counts("backward").total)


def test_optimizing_never_costs_more_than_as_written():
    for name, build in CATALOGUE.items():
        c = build()
        if not isinstance(c, Component):
            continue
        dv = derived(name)[1]
        sizes = numeric_sizes(c.dims)
        for p in dv.passes:
            written = dv.counts(p, stage="written").total.xreplace(sizes)
            assert dv.counts(p).total.xreplace(sizes) <= written, (name, p)


# -- components of one's own ---------------------------------------------------------------

def _smooth_l1() -> Component:
    c = Component("smooth-l1", "Losses", "smooth L1")
    B_, d_ = c.dim("B d")
    i, j = c.index(i=B_, j=d_)
    yhat, y = c.input("yhat", (B_, d_)), c.target("y", (B_, d_))
    beta = c.hyper("beta", beta=1.0)
    L = c.output("L")
    r = yhat[i, j] - y[i, j]   # SymPy stores Abs(r) as Abs(y - yhat) and r**2 as is
    ell = sp.Piecewise((r ** 2 / (2 * beta), sp.Abs(r) < beta), (sp.Abs(r) - beta / 2, True))
    c.assign("forward", L, total(ell, i, j) / (B_ * d_))
    c.set_gradient(L, (yhat,))
    return c


def test_abs_of_a_difference_shares_its_subtraction():
    c = _smooth_l1()
    assert any(isinstance(a, sp.Abs) and str(a.args[0]).startswith("y[")
               for a in c.passes["forward"].assignments[0].rhs.atoms(sp.Abs))
    dv = derive(c, use_cache=False)
    # per element: yhat - y once (1), |.| - beta/2 (1); the sum over B*d: B*d - 1 additions
    for stage in ("written", "optimized"):
        assert dv.counts("forward", stage=stage).by_kind["add"] == 3 * B * d - 1
    # and the code runs one subtraction per element for both
    yhat = torch.randn(3, 4, dtype=torch.float64)
    y = torch.randn(3, 4, dtype=torch.float64)
    from validation.executed import compare
    row = compare(dv, "forward", {"yhat": yhat, "y": y, "beta": 1.0}, {"B": 3, "d": 4})
    assert row.matches and row.by_op[("aten.sub", "add")] == 2 * 12
    out = dv.compiled("forward")(backend="torch", yhat=yhat, y=y, beta=1.0)
    want = torch.nn.functional.smooth_l1_loss(yhat, y, beta=1.0)
    torch.testing.assert_close(out["L"], want)


# -- the stages and the rules --------------------------------------------------------------

def test_every_stage_is_kept_and_every_fired_rule_is_registered():
    _, dv = derived("batchnorm")
    assert tuple(s.name for s in dv.stages) == STAGES
    names = {r.name for r in REGISTRY}
    for s in dv.stages:
        for rule_name, pass_name, _where in s.fired:
            assert rule_name in names, rule_name
            assert pass_name in s.programs
    # counts, memory and code name their stage; the code is printed from the last one
    assert dv.counts("forward", stage="code").total == \
        dv.counts("forward", stage="lowered").total
    # the written equations hold no backward: what is saved as written is what reverse
    # mode's backward of them reads (count --stage written prints that backward too)
    assert dv.memory_at("written").elements("saved") == 2 * N * d + 2 * d
    assert dv.memory_at("differentiated").elements("saved") == 2 * N * d + 2 * d


def test_rules_are_data_registered_by_phase():
    by_phase = {}
    for r in REGISTRY:
        for phase in r.phases:
            by_phase.setdefault(phase, set()).add(r.name)
    assert {"centered-sum", "rows-sum-to-one", "logistic", "one-hot-gather",
            "one-hot-scatter"} <= by_phase["simplify"]
    assert {"reuse-definition", "forward-sum", "inline", "shared-reduction",
            "factor-reduction", "common-subexpression", "affine-form"} <= by_phase["reuse"]
    assert {"logsumexp", "stable-logs", "combine-exp"} <= by_phase["stabilize"]
    assert {"stable-logs-before-autodiff", "power-derivative"} <= by_phase["differentiate"]
    assert all(r.doc and r.doc != r.name for r in REGISTRY)


@pytest.mark.parametrize("name", ["batchnorm", "groupnorm", "layernorm", "focal"])
def test_the_recompute_point_computes_the_same_gradients(name):
    c = CATALOGUE[name]()
    stages = run(c)
    program = recompute_point(c, stages)
    if program is None:
        pytest.skip(f"{name} reads no large forward intermediate")
    _, dv = derived(name)
    source, sig = generate(lower(program, frozenset()), "recompute")
    fn = CompiledPass("recompute", source, sig, shapes_of(program.tensors, sig.inputs))
    from checks import inputs

    from validation.harness import run_passes
    values = inputs(name, seed=2)
    forward = run_passes(dv, values, backend="torch", passes=(next(iter(c.passes)),))
    env = {**values, **forward}
    ours = fn(backend="torch", **{n: env[n] for n in sig.inputs})
    want = dv.compiled("backward")(backend="torch",
                                   **{n: env[n] for n in dv.compiled("backward").signature
                                      .inputs})
    for w in c.wrt:
        np.testing.assert_allclose(ours[f"grad_{w}"].numpy(), want[f"grad_{w}"].numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_the_catalogue_is_optimized_without_reaching_the_search_bound():
    for name, build in CATALOGUE.items():
        if isinstance(build(), Component):
            fired = {r for s in derived(name)[1].stages for r, _, _ in s.fired}
            assert "search-bound" not in fired, name


def test_an_output_that_copies_an_intermediate_names_it():
    """BatchNorm's backward sums dy*xhat once and reads the sum in dx: that sum is dgamma,
    and it is computed under that name (it was grad_var_red, copied into grad_gamma);
    the counts are those of the copy's program, 7Nd + 5d; only an input is copied."""
    from derivations import CATALOGUE
    from symflop import derive
    from symflop.core.program import tensor_refs
    d = derive(CATALOGUE["batchnorm"]())
    backward = d.programs["backward"]
    assert [s.lhs for s in backward.steps] == ["grad_gamma", "grad_beta", "scale", "grad_x"]
    x = next(s for s in backward.steps if s.lhs == "grad_x")
    assert {"grad_gamma", "grad_beta"} <= {r.base.label.name for r in
                                          tensor_refs(x.body, backward.tensors)}
    # read through the outputs' own symbols (real, as every tensor's), not a bare base
    read = {r.base for r in tensor_refs(x.body, backward.tensors)}
    assert {backward.tensors[n].symbol for n in ("grad_gamma", "grad_beta")} <= read
    N, dd = (sp.Symbol(n, integer=True, positive=True) for n in ("N", "d"))
    assert d.counts("backward").total == 7 * N * dd + 5 * dd
    copies = []
    for name, build in CATALOGUE.items():
        c = build()
        if not hasattr(c, "passes"):
            continue
        dc = derive(c)
        for pass_name in dc.passes:
            p = dc.programs[pass_name]
            for s in p.steps:
                refs = tensor_refs(s.body, p.tensors)
                if len(refs) == 1 and s.body == refs[0] and not s.reduce:
                    copies.append((name, pass_name, s.lhs, str(s.body)))
    assert copies == [("dropout", "inference", "y_inf", "a[i, j]")]  # a is an input


def test_declared_names_name_the_shared_terms_and_change_no_count():
    """BatchNorm declares x - mu as xc and gamma/sqrt(var + eps) as scale: the terms the
    reuse search computes once take those names (not var_sum_cse, grad_mu_part2_cse2),
    and every count is the one the same component gets without the declarations."""
    from derivations.normalization import batchnorm
    from symflop import derive
    named, plain = batchnorm(), batchnorm()
    plain.shared.clear()
    dn, dp = derive(named, use_cache=False), derive(plain, use_cache=False)
    steps = {p: [s.lhs for s in dn.programs[p].steps] for p in ("forward", "backward")}
    assert "xc" in steps["forward"] and "scale" in steps["backward"]
    assert not any("_cse" in n for n in steps["forward"] + steps["backward"])
    assert "var_sum_cse" in [s.lhs for s in dp.programs["forward"].steps]
    xc = next(s for s in dn.programs["forward"].steps if s.lhs == "xc")
    x, mu = named.tensors["x"].symbol, named.tensors["mu"].symbol
    i, j = xc.idx
    assert sp.expand(xc.body - (x[i, j] - mu[j])) == 0
    for p in ("forward", "backward"):
        assert dn.counts(p).total == dp.counts(p).total


@pytest.mark.parametrize("name", ["batchnorm", "layernorm", "groupnorm", "instancenorm"])
def test_every_normalization_term_is_named_for_what_it_is(name):
    """No name a rule made up after a reader (``grad_mu_part2_cse``, ``grad_var_red``)
    is left in any pass of the four normalizations: LayerNorm's dxhat/sqrt(var + eps) is
    the declared ``grad_x_direct``; a partial sum that an output sums up is that output's
    (``grad_gamma[c] = sum_i grad_gamma_red[i, c]``, summed over the positions only).
    The counts are those of the same component with no declared names."""
    import re

    from derivations import CATALOGUE
    from symflop import derive
    named, plain = CATALOGUE[name](), CATALOGUE[name]()
    plain.shared.clear()
    dn, dp = derive(named, use_cache=False), derive(plain, use_cache=False)
    names = {s.lhs for p in dn.passes for s in dn.programs[p].steps}
    made_up = sorted(n for n in names if re.search(r"_(cse|red)\d*$", n)
                     and not re.fullmatch(r"grad_(gamma|beta)_red", n))
    assert not made_up, made_up
    for p in dn.passes:
        assert dn.counts(p).total == dp.counts(p).total, p
    backward = dn.programs["backward"]
    for out in ("grad_gamma", "grad_beta"):
        partial = f"{out}_red"
        if partial in names:  # GroupNorm, InstanceNorm: summed over positions first
            total = backward.defining_step(out)
            assert str(total.body).startswith(f"{partial}[") and total.reduce
    if name == "layernorm":
        direct = backward.defining_step("grad_x_direct")
        grad_xhat, var_eps = (backward.tensors[n].symbol for n in ("grad_xhat", "var_eps"))
        i, j = direct.idx
        assert direct.body == grad_xhat[i, j] / sp.sqrt(var_eps[i])
