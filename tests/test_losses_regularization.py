"""Losses and regularizers beyond the first slice: hand counts at small sizes, BCE at
extreme logits, dropout's random mask, and the empty data-augmentation pass."""

import numpy as np
import pytest
import sympy as sp
import torch
from checks import inputs
from conftest import as_written, derived

from symflop import CONVENTIONS
from symflop.lower.backends import get_backend
from validation.harness import run_passes
from validation.references import REFERENCES
from validation.tolerances import TOLERANCES

# -- hand counts (default convention) -----------------------------------------------


def test_bce_counts():
    c, d = derived("bce")
    # forward at B = 4, per element: sigma = 1/(1 + exp(-z)): 1 neg + 1 exp + 1 add + 1 div;
    # log(sigma) 1; 1 - sigma 1; log(1 - sigma) 1; 1 - y 1; two products 2; their sum 1
    # = 11.  Sum of 4 terms: 3 adds.  L = -L_sum/B: 1 neg + 1 div.
    assert as_written(d, "forward")(B=4) == 11 * 4 + 3 + 2
    # fused gradient -(sigmoid(-z)*y - (1 - y)*sigmoid(z))/B (the derivative of softplus is
    # a sigmoid, one function of the op table), per element: -z, sigmoid(-z), times y,
    # 1 - y, sigmoid(z), times (1 - y), the difference (its sign taken by swapping it),
    # / B = 8.
    assert as_written(d, "gradient")(B=4) == 8 * 4


def test_hinge_counts():
    c, d = derived("hinge")
    # B = 5, per element: y*yhat, 1 - (.), max(0, .) = 3; sum of 5 terms: 4 adds; /B: 1.
    assert as_written(d, "forward")(B=5) == 3 * 5 + 4 + 1


def test_huber_counts():
    c, d = derived("huber")
    # B*d = 6 elements, each: r = y - yhat, |r|, |r| <= delta, r*r, (.)*1/2, delta*|r|,
    # (.) - delta^2/2, select = 8.  Scalars: delta*delta, (.)*1/2 = 2.  Sum of 6 terms:
    # 5 adds.  L_sum/(B*d): B*d 1 mul + 1 div.
    assert as_written(d, "forward")(B=2, d=3) == 8 * 6 + 2 + 5 + 2


def test_focal_counts():
    c, d = derived("focal")
    # B*C = 4 elements.  Step p: neg, exp, add, div = 4 each.
    # Step L_sum, each element: 1 - y; alpha*y, (1-alpha)*(1-y), their sum (alpha_t: 3);
    # sigma again (no reuse across steps): neg, exp, add, div (4); log sigma, y*log,
    # 1 - sigma, log(1 - sigma), (1-y)*log, sum (ce: 6; its negation rides on 1 - p_t,
    # computed as p_t - 1 at no cost); p*y, 1 - p, (1-p)*(1-y), sum, p_t - 1,
    # (.)**gamma (6); alpha_t*ce*(.) (2) = 1+3+4+6+6+2 = 22.
    # Scalar 1 - alpha once: 1.  Sum of 4 terms: 3 adds.  L_sum/(B*C): 1 mul + 1 div.
    assert as_written(d, "forward")(B=2, C=2) == 4 * 4 + 22 * 4 + 1 + 3 + 2


def test_kl_div_counts():
    c, d = derived("kl-div")
    # B*C = 6 elements, each: log p, (.) - logq, p*(.) = 3; sum of 6 terms: 5; /B: 1.
    assert as_written(d, "forward")(B=2, C=3) == 3 * 6 + 5 + 1
    # fused gradient -p/B: 6 muls (p times the scalar) + 1 div for -1/B.
    assert as_written(d, "gradient")(B=2, C=3) == 6 + 1


def test_l1_counts_and_gradient():
    c, d = derived("l1")
    # P = 7: 7 abs + 6 adds + 1 mul by lam.
    assert as_written(d, "forward")(P=7) == 7 + 6 + 1
    # lam*sign(w): 7 signs + 7 muls.
    assert as_written(d, "gradient")(P=7) == 7 + 7
    w, lam = sp.IndexedBase("w", real=True), sp.Symbol("lam", positive=True)
    assert d.fused["w"].expr == lam * sp.sign(w[d.fused["w"].idx])


def test_l2_counts_and_gradient_is_lam_w():
    c, d = derived("l2")
    # P = 7: 7 squares + 6 adds; lam * 1/2 once, times the sum: 2 muls.
    assert as_written(d, "forward")(P=7) == 7 + 6 + 2
    # lam*w: 7 muls (the 1/2 of the penalty cancels the 2 of the square).
    assert as_written(d, "gradient")(P=7) == 7
    w, lam = sp.IndexedBase("w", real=True), sp.Symbol("lam", positive=True)
    assert d.fused["w"].expr == lam * w[d.fused["w"].idx]


def test_dropout_counts_and_mask_memory():
    c, d = derived("dropout")
    # B*n = 12: 12 draws; mask (a 0/1 indicator of u >= p): 12 compares; y: a*mask (12),
    # /(1 - p) (12), 1 - p once (1).
    assert as_written(d, "forward")(B=3, n=4) == 12 + 12 + 24 + 1
    fwd = d.counts("forward").by_kind
    B, n = sp.symbols("B n", integer=True, positive=True)
    assert fwd["random"] == B * n and fwd["compare"] == B * n
    assert as_written(d, "inference")(B=3, n=4) == 0
    # fused gradient grad_y*mask/(1 - p): 12 muls + 12 divs + 1 for 1 - p.
    assert as_written(d, "gradient")(B=3, n=4) == 12 + 12 + 1
    assert ("mask", B * n) in d.memory.saved


# -- BCE at extreme logits --------------------------------------------------------


def test_bce_is_lowered_to_softplus_and_stable_for_float32_logits_of_magnitude_1e4():
    c, d = derived("bce")
    src = d.sources["forward"][0]
    assert "xp.softplus" in src and "xp.log(" not in src
    values = inputs("bce", {"B": 16}, seed=5, dtype=torch.float32, scale=1e4)
    z = values["z"]
    assert z.abs().max() > 1e4 and (z > 1e3).any() and (z < -1e3).any()
    ours = run_passes(d, values, backend="torch")
    for key in ("L", "grad_z"):
        assert torch.isfinite(ours[key]).all(), key
        assert ours[key].dtype == torch.float32
    exact = REFERENCES["bce"].run({k: (v.double() if isinstance(v, torch.Tensor) else v)
                                   for k, v in values.items()})
    tol = TOLERANCES[torch.float32]
    torch.testing.assert_close(ours["L"].double(), exact["L"], **tol)
    torch.testing.assert_close(ours["grad_z"].double(), exact["grad_z"], **tol)
    # The naive formula is not finite here, so this input really exercises the rewrite.
    sig = 1 / (1 + torch.exp(-z))
    y = values["y"]
    naive = -(y * torch.log(sig) + (1 - y) * torch.log(1 - sig)).mean()
    assert not torch.isfinite(naive)


# -- focal and others: identities a wrong equation would break -------------------------


def test_focal_with_gamma_0_and_alpha_half_is_half_the_bce():
    _, df = derived("focal")
    _, db = derived("bce")
    values = inputs("focal", {"B": 4, "C": 3}, seed=2)
    focal = run_passes(df, {**values, "alpha": 0.5, "gamma": 0.0}, backend="torch")
    flat = {"z": values["z"].reshape(-1), "y": values["y"].reshape(-1)}
    bce = run_passes(db, flat, backend="torch")
    torch.testing.assert_close(focal["L"], bce["L"] / 2, **TOLERANCES[torch.float64])
    torch.testing.assert_close(focal["grad_z"].reshape(-1), bce["grad_z"] / 2,
                               **TOLERANCES[torch.float64])


def test_kl_div_is_zero_at_the_target_and_positive_elsewhere():
    _, d = derived("kl-div")
    values = inputs("kl-div", seed=4)
    same = run_passes(d, {**values, "logq": torch.log(values["p"])}, backend="torch")
    assert abs(float(same["L"])) < 1e-15
    assert float(run_passes(d, values, backend="torch")["L"]) > 1e-3


@pytest.mark.parametrize("delta", [0.3, 2.5])
def test_huber_matches_torch_for_other_deltas(delta):
    _, d = derived("huber")
    values = inputs("huber", seed=6, scale=2.0)
    r = (values["y"] - values["yhat"]).abs()
    assert (r <= delta).any() and (r > delta).any()  # both branches occur
    ours = run_passes(d, {**values, "delta": delta}, backend="torch")
    theirs = REFERENCES["huber"].run({**values, "delta": delta})
    for key, want in theirs.items():
        torch.testing.assert_close(ours[key], want, **TOLERANCES[torch.float64], msg=key)


def test_hinge_labels_are_signs_and_the_gradient_vanishes_where_the_margin_holds():
    _, d = derived("hinge")
    values = inputs("hinge", {"B": 40}, seed=3)
    assert set(values["y"].tolist()) == {-1.0, 1.0}
    g = run_passes(d, values, backend="torch")["grad_yhat"]
    margin = values["y"] * values["yhat"]
    assert (g[margin > 1] == 0).all() and (margin > 1).any()
    torch.testing.assert_close(g[margin < 1], -values["y"][margin < 1] / 40)


# -- dropout's random mask ------------------------------------------------------------


def _dropout_forward(backend, seed, a, p):
    _, d = derived("dropout")
    return d.compiled("forward")(backend=get_backend(backend, seed), a=a, p=p)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dropout_keeps_a_fraction_1_minus_p_and_is_seeded(backend):
    p = 0.3
    a = np.ones((200, 500))
    a = torch.tensor(a) if backend == "torch" else a
    first = _dropout_forward(backend, 123, a, p)
    # the lowered code keeps the uniform draws u (what backward reads), not the mask
    mask = (np.asarray(first["u"]) >= p).astype(np.float64)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert abs(mask.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(np.asarray(first["y"]), mask / (1 - p), rtol=1e-15)
    again = _dropout_forward(backend, 123, a, p)
    assert np.array_equal(np.asarray(again["u"]), np.asarray(first["u"]))
    other = _dropout_forward(backend, 124, a, p)
    assert not np.array_equal(np.asarray(other["u"]), np.asarray(first["u"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_draws_have_the_activations_dtype(dtype):
    """The draws are saved for backward and counted at the activations' width."""
    _, d = derived("dropout")
    assert [n for n, _ in d.memory_at("code").saved] == ["u"]
    out = _dropout_forward("torch", 0, torch.ones(4, 5, dtype=dtype), 0.5)
    assert out["u"].dtype == dtype and out["y"].dtype == dtype


def test_dropout_inference_is_the_identity():
    _, d = derived("dropout")
    a = torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(d.compiled("inference")(backend="torch", a=a)["y_inf"], a)


# -- data augmentation: no accelerator work ---------------------------------------------


def test_data_augmentation_has_one_empty_pass_with_zero_cost():
    c, d = derived("data-augmentation")
    assert d.passes == ("forward",) and not d.programs["forward"].steps
    for conv in CONVENTIONS:
        assert d.counts("forward", conv).total == 0
    for what in ("parameters", "state", "saved"):
        assert d.memory.bytes(what) == 0
    assert d.memory.bytes("moved") == 0
    assert d.compiled("forward")(backend="numpy") == {}
    ref = REFERENCES["data-augmentation"]
    assert ref.run is None and ref.sizes == {}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_focal_gradient_stays_finite_and_correct_for_large_logits(dtype):
    """d(x**gamma)/dx is written gamma*x**(gamma - 1), not gamma*x**gamma/x (0/0 at x = 0)."""
    c, d = derived("focal")
    z = torch.tensor([[-80.0, -40.0, -20.0, 0.0, 20.0, 40.0, 80.0]], dtype=dtype)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    values = {"z": z, "y": y, "alpha": 0.25, "gamma": 2.0}
    ours = run_passes(d, values, backend="torch")
    assert torch.isfinite(ours["L"]) and torch.isfinite(ours["grad_z"]).all()
    exact = REFERENCES["focal"].run({"z": z.double(), "y": y.double(), "alpha": 0.25,
                                     "gamma": 2.0})
    torch.testing.assert_close(ours["grad_z"].double(), exact["grad_z"], **TOLERANCES[dtype])
