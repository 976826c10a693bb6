"""Identities: symbolic verdicts, numeric checks with torch, rendering, determinism."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp
import torch

from derivations import losses, optimizers
from derivations.identities import IDENTITIES, report
from symflop.errors import ComponentError, UsageError
from symflop.report.identities import Identity, NumericResult, Step, evaluate, render, step
from validation import identities_torch
from validation.identities_torch import CHECKS, _Checks, numeric_check

ROOT = Path(__file__).resolve().parent.parent

# verdict kind of each identity and whether the document's statement of it is right
EXPECTED = {
    "nesterov-lookahead": ("holds under", False),
    "l2-weight-decay-sgd": ("holds", True),
    "l2-weight-decay-momentum": ("does not hold", None),
    "l2-weight-decay-adam": ("does not hold", True),
    "batchnorm-fold": ("holds", True),
    "adam-bias-correction": ("holds", True),
    "mse-gaussian-nll": ("holds under", True),
    "ce-vs-mse-sigmoid": ("holds", True),
}


@pytest.fixture(scope="module")
def built():
    return {name: build() for name, build in IDENTITIES.items()}


def test_every_identity_has_its_expected_verdict(built):
    assert set(built) == set(EXPECTED) == set(CHECKS)
    for name, ident in built.items():
        kind, agrees = EXPECTED[name]
        assert ident.name == name
        if kind == "holds":
            assert ident.verdict == "holds", name
        elif kind == "holds under":
            assert ident.holds and ident.verdict.startswith("holds under ") and ident.condition
        else:
            assert not ident.holds and ident.verdict == "does not hold", name
        assert ident.document_agrees is agrees, name
        assert ident.derivation and all(isinstance(s, Step) for s in ident.derivation)


def _expr(ident: Identity, text_start: str):
    (s,) = [s for s in ident.derivation if s.text.startswith(text_start)]
    return s.expr


def test_nesterov_change_of_variables_and_document_sign(built):
    ident = built["nesterov-lookahead"]
    assert _expr(ident, "difference of the two next points") == 0
    assert _expr(ident, "difference of the two buffers") == 0
    lr, mu, v = sp.Symbol("lr", positive=True), sp.Symbol("mu", positive=True), \
        sp.Symbol("v_prev", real=True)
    gap = _expr(ident, "the document evaluates the gradient")
    assert sp.expand(gap - mu * (1 + lr) * v) == 0
    assert "p_t = theta_t - lr*mu*v_{t-1}" in ident.condition


def test_heavy_ball_is_not_torch_nesterov():
    """The same argument with plain momentum in place of the look-ahead form fails: the
    symbolic comparison can tell the two updates apart."""
    hb, tf = optimizers.momentum(), optimizers.nesterov()
    vals = {"theta": sp.Symbol("theta", real=True), "v": sp.Symbol("v", real=True),
            "g": sp.Symbol("g", real=True)}
    a, b = step(hb, "step", vals), step(tf, "step", vals)
    assert sp.expand(a["v"] - b["v"]) == 0
    assert sp.expand(a["theta"] - b["theta"]) != 0


def test_weight_decay_differences(built):
    sgd = built["l2-weight-decay-sgd"]
    assert _expr(sgd, "zero for every theta and g if and only if") == sp.Symbol(
        "lam", positive=True)
    mom = built["l2-weight-decay-momentum"]
    lam, lr, mu = (sp.Symbol(n, positive=True) for n in ("lam", "lr", "mu"))
    assert _expr(mom, "first steps differ by") == 0
    assert sp.expand(_expr(mom, "both second gradients") + lam * lr * mu *
                     sp.Symbol("theta_0", real=True)) == 0
    adam = built["l2-weight-decay-adam"]
    assert _expr(adam, "counterexample") == sp.Rational(1, 100000)


def test_adam_bias_correction_values(built):
    ident = built["adam-bias-correction"]
    g = sp.Symbol("g", real=True)
    assert _expr(ident, "  mhat_1 =") == g
    assert _expr(ident, "  vhat_1 =") == g ** 2
    assert _expr(ident, "  eta/sqrt(v_1) is") == 10 * sp.sqrt(10)
    assert _expr(ident, "  with neither moment corrected") == sp.sqrt(10)


def test_gaussian_nll_scale_and_constant(built):
    ident = built["mse-gaussian-nll"]
    B, d = sp.symbols("B d", integer=True, positive=True)
    s2 = sp.Symbol("sigma", positive=True) ** 2  # the variance, printed sigma^2
    assert _expr(ident, "scale (positive)") == B * d / (2 * s2)
    assert _expr(ident, "  ratio, the same constant scale") == B * d / (2 * s2)
    assert _expr(ident, "  which sums over the B*d outputs to") == \
        B * d * sp.log(2 * sp.pi * s2) / 2


def test_cross_entropy_and_mse_limits(built):
    ident = built["ce-vs-mse-sigmoid"]
    assert _expr(ident, "in the limit of z to minus infinity (yhat to 0), the CE") == -1
    assert _expr(ident, "  and the MSE gradient") == 0
    assert _expr(ident, "  the MSE gradient divided by exp(z)") == -2
    assert _expr(ident, "softmax over three classes") == sp.Tuple(-1, 0)


def test_step_runs_elementwise_passes_only():
    c = optimizers.adam()
    out = step(c, "step", {"theta": 1, "g": 3, "m": 0, "v": 0, "t": 0,
                           "lr": sp.Rational(1, 10), "epsilon": 0,
                           "beta1": sp.Rational(1, 2), "beta2": sp.Rational(1, 4)})
    assert out["m"] == sp.Rational(3, 2) and out["v"] == sp.Rational(27, 4)
    assert out["mhat"] == 3 and out["vhat"] == 9 and out["t"] == 1
    assert out["theta"] == 1 - sp.Rational(1, 10)  # theta - lr*sign(g)
    with pytest.raises(ComponentError, match="has a sum"):
        step(losses.mse(), "forward", {})
    with pytest.raises(ComponentError, match="no pass"):
        step(c, "forward", {})


@pytest.mark.parametrize("name", list(CHECKS))
def test_numeric_check_passes(name):
    r = numeric_check(name)
    assert r.passed is True, "\n".join(r.lines)
    assert any("agree" in line for line in r.lines)


def test_numeric_checks_can_fail():
    c = _Checks()
    c.same("different", torch.tensor([1.0], dtype=torch.float64),
           torch.tensor([1.0 + 1e-9], dtype=torch.float64))
    assert not c.ok and c.lines[-1].endswith("FAILS")
    c = _Checks()
    c.differ("equal", torch.tensor([1.0]), torch.tensor([1.0]))
    assert not c.ok
    assert numeric_check("no-such-identity").passed is None


def test_numeric_check_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    numeric_check("batchnorm-fold")
    assert torch.equal(before, torch.random.get_rng_state())
    assert identities_torch.TOL == 1e-12


def test_rendering_formats():
    items = evaluate(IDENTITIES, numeric=False)
    text = render(items, "text")
    assert "the document is wrong in: nesterov-lookahead" in text
    assert text.count("numeric: not run (disabled)") == len(IDENTITIES)
    md = render(items, "markdown")
    assert md.startswith("| identity | verdict | document | numeric |")
    assert md.count("### `") == len(IDENTITIES)
    data = json.loads(render(items, "json"))
    rows = {r["name"]: r for r in data["identities"]}
    assert list(rows) == list(IDENTITIES)
    assert rows["l2-weight-decay-adam"]["verdict"] == "does not hold"
    assert rows["nesterov-lookahead"]["document_agrees"] is False
    assert all(s["text"] for r in rows.values() for s in r["derivation"])
    with pytest.raises(UsageError, match="unknown format"):
        report("yaml")
    with pytest.raises(UsageError, match="unknown identity"):
        evaluate(IDENTITIES, numeric=False, names=("nesterov",))


def test_failed_numeric_check_is_reported():
    ident = Identity("x", "t", "s", True, (Step("a"),))
    bad = NumericResult(False, "broken", ("line",))
    from symflop.report.identities import _with_numeric
    text = render([_with_numeric(ident, bad)], "text")
    assert "numeric: FAILS: broken" in text and "numeric checks FAIL: x" in text


_SCRIPT = ("import sys; from derivations.identities import IDENTITIES; "
           "from symflop.report.identities import evaluate, render; "
           "items = evaluate(IDENTITIES, sys.argv[1] == 'numeric'); "
           "sys.stdout.write(''.join(render(items, f) for f in ('text', 'markdown', 'json')))")


def test_output_is_deterministic_across_processes_and_hash_seeds():
    """Byte-identical output in separate processes under other hash seeds (this process
    has its own): the symbolic part alone, and with the numeric checks (torch)."""
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, mode], cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": seed},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for seed, mode in (("0", "symbolic"), ("4242", "numeric"))]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    for out, numeric in zip(outs, (False, True)):
        items = evaluate(IDENTITIES, numeric=numeric)
        assert out == "".join(render(items, f) for f in ("text", "markdown", "json"))
    assert "numeric checks FAIL" not in outs[1]
    assert outs[1].count("numeric: agrees:") == len(IDENTITIES)


def test_imports_and_reports_without_torch():
    script = ("import sys; sys.modules['torch'] = None\n"
              "import derivations.identities as di\n"
              "out = di.report('text')\n"
              "assert 'numeric: not run: torch is not installed' in out, out\n"
              "assert 'nesterov-lookahead' in out\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_engine_finds_identities_through_entry_points(monkeypatch):
    """symflop.identities.report() without arguments reads the symflop.identities entry
    point group (what `symflop identities` uses once the entry point is declared)."""
    import symflop.report.identities as engine

    class FakeEntryPoint:
        name, value = "builtin", "derivations.identities:IDENTITIES"

        def load(self):
            return IDENTITIES

    monkeypatch.setattr(engine, "entry_points", lambda group: [FakeEntryPoint()]
                        if group == engine.GROUP else [])
    engine.installed.cache_clear()
    try:
        assert engine.report("text", numeric=False) == report("text", numeric=False)
    finally:
        engine.installed.cache_clear()
    monkeypatch.setattr(engine, "entry_points", lambda group: [])
    try:
        with pytest.raises(UsageError, match="no identities are installed"):
            engine.report("text")
    finally:
        engine.installed.cache_clear()
