"""`symflop validate`: the whole catalogue passes; a wrong equation, a NaN input and a missing
CUDA device are each reported for what they are."""

import json

import pytest
import torch
from checks import DEVICES

from derivations import CATALOGUE
from symflop.cli import main
from validation.validate import check_component, check_passes, validate


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_whole_catalogue_validates(device, dtype):
    rows = validate(list(CATALOGUE), device, dtype)
    failed = [(r.component, r.pass_name, r.verdict, r.notes) for r in rows if not r.ok]
    assert failed == []
    checked = {r.component for r in rows if r.verdict == "pass"}
    # Everything with computation is compared with torch; only these have nothing to compare.
    assert set(CATALOGUE) - checked == {"data-augmentation", "training-step"}
    assert any("extreme" in r.pass_name for r in rows)


def _batchnorm_with_unbiased_batch_variance():
    """The injected fault: the batch variance divided by N - 1 instead of N."""
    c = CATALOGUE["batchnorm"]()
    fwd = c.passes["forward"].assignments
    k = next(n for n, a in enumerate(fwd) if a.lhs.name == "var")
    N = c.dims["N"]
    fwd[k] = type(fwd[k])(fwd[k].lhs, fwd[k].idx, fwd[k].rhs * N / (N - 1))
    return c


def test_a_perturbed_equation_fails_validation():
    rows = check_component("batchnorm", component=_batchnorm_with_unbiased_batch_variance())
    bad = {r.pass_name for r in rows if r.verdict == "FAIL"}
    assert {"forward", "backward", "gradient"} <= bad
    assert any("y: outside" in n for r in rows for n in r.notes)


def test_nan_inputs_are_reported_as_such():
    c = CATALOGUE["cross-entropy"]()
    from symflop import derive
    rows = check_passes("cross-entropy", c, derive(c), "cpu", torch.float64, [{"B": 3, "C": 4}],
                        scale={"z": float("nan")})
    assert [r.verdict for r in rows] == ["input NaN/Inf"]
    assert "contains NaN" in rows[0].notes[0]


def test_cli_json_and_exit_status(capsys):
    assert main(["validate", "mse", "adam", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["passed"] and {r["component"] for r in report["rows"]} == {"mse", "adam"}
    assert "[1/2] mse" in err and "[2/2] adam" in err  # progress on stderr


def test_cli_fails_with_status_1_on_a_mismatch(capsys, monkeypatch, tmp_path):
    import validation.validate as v
    real = v.check_component

    def wrong(name, device="cpu", dtype=torch.float64, component=None, backend="torch"):
        return real(name, device, dtype, _batchnorm_with_unbiased_batch_variance(),
                    backend)

    monkeypatch.setattr(v, "check_component", wrong)
    assert main(["validate", "batchnorm"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cli_cuda_without_a_device_is_one_line(capsys):
    assert main(["validate", "mse", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA device" in err


def test_an_unused_name_is_refused(capsys):
    assert main(["validate", "msee"]) == 2
    assert "did you mean mse" in capsys.readouterr().err


def test_errors_are_measured_not_assumed():
    """A vacuous comparison (0 against 0 everywhere) would show no rounding at all."""
    rows = validate(["cross-entropy", "batchnorm"], "cpu", torch.float64)
    assert any(r.max_abs > 0 for r in rows)


def test_a_comparison_needs_both_sides_finite_or_the_same_infinity():
    from validation.validate import Row
    tol = {"rtol": 1e-6, "atol": 1e-9}
    inf, nan = float("inf"), float("nan")
    same = Row("c", "forward", "")
    same.merge([1.0, -inf], [1.0, -inf], tol, "y")
    assert same.verdict == "pass" and same.compared == 1
    for got, want, note in (([1.0, 2.0], [1.0, inf], "the reference gives 1 non-finite"),
                            ([1.0, inf], [1.0, 2.0], "non-finite values"),
                            ([nan], [nan], "non-finite values"),
                            ([inf], [-inf], "non-finite values")):
        r = Row("c", "forward", "")
        r.merge(got, want, tol, "y")
        assert r.verdict == "FAIL" and note in r.notes[0], (got, want, r.notes)


def test_validate_says_its_dtype_and_no_relative_error_of_values_below_atol(capsys):
    """float32 printed a relative error of 1.00 beside "pass" (a softmax of 1e-20 rounded
    to 0, far below atol), and the default dtype was said nowhere."""
    from conftest import run_cli
    code, out, err = run_cli(capsys, "validate", "cross-entropy", "--dtype", "float32",
                             "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert rows and max(r["max_rel_err"] for r in rows) < 1e-3, rows
    code, out, err = run_cli(capsys, "validate", "mse")
    assert out.splitlines()[0] == ("on cpu, in float64 (the default; --dtype float32 for "
                                   "single precision), the torch backend")
