"""``symflop validate --from FILE.py:NAME --reference FILE.py:FUNC``: a user's component
through the catalogue's checks, against the user's torch reference."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402

COMPONENTS = textwrap.dedent("""
    import sympy as sp

    from symflop import Component, total


    def rmsnorm(mean=True) -> Component:
        c = Component("rmsnorm", "Normalization", "RMS normalization")
        B, d = c.dim("B d")
        i, j = c.index(i=B, j=d)
        x = c.input("x", (B, d))
        g = c.parameter("g", (d,))
        eps = c.hyper("epsilon", epsilon=1e-6)
        ms = c.intermediate("ms", (B,))
        y = c.output("y", (B, d))
        c.assign("forward", ms[i], total(x[i, j] ** 2, j) / (d if mean else 1))
        c.assign("forward", y[i, j], g[j] * x[i, j] / sp.sqrt(ms[i] + eps))
        c.set_gradient(y, (x, g))
        return c


    def rmsnorm_wrong() -> Component:
        return rmsnorm(mean=False)   # a sum where the mean belongs


    def lion() -> Component:
        c = Component("lion", "Optimizers", "Lion (Chen et al. 2023)")
        P = c.dim("P")
        i = c.index(i=P)
        theta = c.parameter("theta", (P,))
        g = c.input("g", (P,))
        m = c.state("m", (P,))
        lr, b1, b2 = c.hyper("lr beta1 beta2", lr=1e-3, beta1=0.9, beta2=0.99)
        c.assign("step", theta[i],
                 theta[i] - lr * sp.sign(b1 * m[i] + (1 - b1) * g[i]))
        c.assign("step", m[i], b2 * m[i] + (1 - b2) * g[i])
        return c
""")

REFERENCES = textwrap.dedent("""
    import torch


    def rmsnorm(v):
        x = v["x"].detach().clone().requires_grad_(True)
        g = v["g"].detach().clone().requires_grad_(True)
        y = g * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + v["epsilon"])
        y.backward(v["grad_y"])
        return {"y": y.detach(), "grad_x": x.grad, "grad_g": g.grad}


    def lion(v):
        c = v["beta1"] * v["m"] + (1 - v["beta1"]) * v["g"]
        return {"theta": v["theta"] - v["lr"] * torch.sign(c),
                "m": v["beta2"] * v["m"] + (1 - v["beta2"]) * v["g"]}


    NOT_A_FUNCTION = 3
""")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "mine.py").write_text(COMPONENTS)
    (tmp_path / "refs.py").write_text(REFERENCES)
    return tmp_path


run = run_cli


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_user_component_passes_against_its_reference(capsys, files, dtype):
    code, out, err = run(capsys, "validate", "--from", f"{files}/mine.py:rmsnorm",
                         "--reference", f"{files}/refs.py:rmsnorm", "--dtype", dtype,
                         "--json")
    assert code == 0, out + err
    doc = json.loads(out)
    rows = {r["pass"]: r for r in doc["rows"]}
    assert set(rows) == {"forward", "backward", "gradient"}
    assert all(r["verdict"] == "pass" for r in rows.values())
    # the sizes: small distinct defaults (B=3, d=4), all odd, and a batch of one
    assert rows["forward"]["checked"] == "B=3,d=4; B=3,d=5; B=1,d=4"
    # what torch executed is what the engine counted
    assert rows["forward"]["symbolic_flops"] == rows["forward"]["executed_flops"] > 0
    assert rows["backward"]["max_abs_err"] > 0  # compared, not skipped


def test_a_wrong_component_fails_with_exit_1(capsys, files):
    code, out, _ = run(capsys, "validate", "--from", f"{files}/mine.py:rmsnorm_wrong",
                       "--reference", f"{files}/refs.py:rmsnorm", "--dims", "B=2,d=6")
    assert code == 1
    assert "FAIL" in out and "y: outside rtol" in out and "0 passed" in out


def test_a_user_optimizer_is_checked_as_a_trajectory(capsys, files):
    code, out, err = run(capsys, "validate", "--from", f"{files}/mine.py:lion",
                         "--reference", f"{files}/refs.py:lion", "--json")
    assert code == 0, out + err
    row = json.loads(out)["rows"][0]
    assert row["pass"] == "step" and row["checked"].startswith("5 steps at P=3")
    assert row["verdict"] == "pass" and row["symbolic_flops"] == row["executed_flops"]


@pytest.mark.parametrize("argv,message", [
    ((), "give --reference FILE.py:FUNC, or a dict REFERENCES"),
    (("--reference", "refs.py"), "expected FILE.py:FUNC"),
    (("--reference", "{d}/refs.py:missing"), "defines no 'missing'"),
    (("--reference", "{d}/refs.py:NOT_A_FUNCTION"), "a reference is a function"),
    (("--reference", "{d}/refs.py:rmsnorm", "--dims", "Q=3"), "has no dimension 'Q'"),
])
def test_bad_user_validation_is_one_line(capsys, files, argv, message):
    argv = [a.format(d=files) for a in argv]
    code, out, err = run(capsys, "validate", "--from", f"{files}/mine.py:rmsnorm", *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_reference_needs_from(capsys, files):
    code, _, err = run(capsys, "validate", "--reference", f"{files}/refs.py:rmsnorm")
    assert code == 2 and "go with --from" in err


def test_reference_declared_next_to_the_component(capsys, files):
    (files / "both.py").write_text(COMPONENTS + REFERENCES.replace("def rmsnorm(v)",
                                                                   "def rmsnorm_ref(v)")
                                   + "\nREFERENCES = {'rmsnorm': rmsnorm_ref}\n")
    code, out, err = run(capsys, "validate", "--from", f"{files}/both.py:rmsnorm")
    assert code == 0, out + err
    assert "3 passed, 0 failed" in out


def test_the_readme_reference_validates_the_readme_component(capsys, tmp_path):
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for marker, name in (("example-component", "rmsnorm.py"),
                         ("example-reference", "rmsnorm_ref.py")):
        code = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", readme, re.S).group(1)
        (tmp_path / name).write_text(code)
    code, out, err = run(capsys, "validate", "--from", f"{tmp_path}/rmsnorm.py:rmsnorm",
                         "--reference", f"{tmp_path}/rmsnorm_ref.py:rmsnorm")
    assert code == 0, out + err
    assert "3 passed, 0 failed" in out
