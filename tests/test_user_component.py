"""The README's own-component example, run exactly as a user would run it."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from symflop import derive
from symflop.registry import load_from_file

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(tmp_path) -> Path:
    text = README.read_text()
    code = re.search(r"<!-- example-component -->\n```python\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "rmsnorm.py"
    path.write_text(code)
    return path


def _cli(*args):
    r = subprocess.run(["symflop", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_readme_component_works_from_the_command_line(tmp_path):
    path = _example(tmp_path)
    spec = f"{path}:rmsnorm"
    report = json.loads(_cli("count", "--from", spec, "--dims", "B=2,d=3", "--json"))
    # Hand count, B=2, d=3: ms = 6 squares + 2*(3-1) adds + 2 divisions = 12;
    # y = g*x/sqrt(ms + eps): 2 adds + 2 sqrts + 6 multiplications + 6 divisions = 16.
    assert report["passes"]["forward"]["value"] == 12 + 16
    assert "grad_g[j] = Sum(" in _cli("grad", "--from", spec, "--wrt", "g")
    assert "backward pass:" in _cli("show", "--from", spec)
    # The printed README output is what the tool prints.
    shown = _cli("count", "--from", spec, "--dims", "B=32,d=4096")
    assert shown.replace(str(path), "rmsnorm.py") in README.read_text()


def test_readme_component_gradient_matches_torch(tmp_path):
    c = load_from_file(f"{_example(tmp_path)}:rmsnorm")
    d = derive(c, use_cache=False)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    g = torch.tensor(rng.standard_normal(5), requires_grad=True)
    gy = torch.tensor(rng.standard_normal((4, 5)))
    eps = 1e-6
    y = g * x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + eps)
    y.backward(gy)
    fwd = d.compiled("forward")(backend="torch", x=x.detach(), g=g.detach(), epsilon=eps)
    bwd = d.compiled("backward")(backend="torch", x=x.detach(), g=g.detach(), epsilon=eps,
                                 grad_y=gy, ms=fwd["ms"])
    torch.testing.assert_close(fwd["y"], y.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bwd["grad_x"], x.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bwd["grad_g"], g.grad, rtol=1e-10, atol=1e-12)


def test_the_intermediate_the_readme_component_names_is_read_by_its_fused_gradient(tmp_path):
    import sympy as sp

    from symflop.cost.counting import numeric_sizes
    c = load_from_file(f"{_example(tmp_path)}:rmsnorm")
    d = derive(c, use_cache=False)
    grad = d.stage("optimized").programs["gradient"]
    reads = {str(r.base) for st in grad.steps for r in st.body.atoms(sp.Indexed)}
    assert "ms" in reads  # the forward's mean square is read ...
    x = c.tensors["x"].symbol
    assert not any(st.reduce and st.body.has(x) and not st.body.has(sp.IndexedBase("grad_y"))
                   and any(p.base.has(x) for p in st.body.atoms(sp.Pow)) for st in grad.steps)
    # ... not computed again: no sum of x**2 in the gradient; and it costs no more than the
    # backward pass (as written it did: the closed form expanded the product rule)
    sizes = numeric_sizes(c.dims)
    assert d.counts("gradient").total.xreplace(sizes) <= \
        d.counts("backward").total.xreplace(sizes)


REFS = '''
import torch


def infs(v):
    x = v["x"]
    return {"y": torch.full_like(x, float("inf")),
            "grad_x": torch.full_like(x, float("inf")),
            "grad_g": torch.full_like(v["g"], float("inf"))}


def only_y(v):
    x, g = v["x"], v["g"]
    return {"y": g * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + v["epsilon"])}


def raises(v):
    raise RuntimeError("my reference is broken")


def extra_key(v):
    return {**only_y(v), "z": 1}


def none(v):
    return None


def a_list(v):
    return [only_y(v)["y"]]
'''


def _validate(capsys, tmp_path, reference):
    from conftest import run_cli
    path = _example(tmp_path)
    (tmp_path / "refs.py").write_text(REFS)
    return run_cli(capsys, "validate", "--from", f"{path}:rmsnorm", "--reference",
                   f"{tmp_path / 'refs.py'}:{reference}")


def test_a_reference_of_infinities_fails_every_pass(capsys, tmp_path):
    """|ours - inf| <= atol + rtol inf held for any ours: a non-finite reference is now
    nothing to compare with, a failure."""
    code, out, err = _validate(capsys, tmp_path, "infs")
    assert code == 1, out + err
    assert out.rstrip().endswith("0 passed, 3 failed, 0 with nothing to compare")
    assert "y: the reference gives 12 non-finite values where ours is finite" in out


def test_results_a_reference_does_not_give_are_not_passed(capsys, tmp_path):
    code, out, err = _validate(capsys, tmp_path, "only_y")
    assert code == 0, out + err
    rows = {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("rmsnorm ")}
    assert rows["forward"].endswith("  pass")
    assert rows["backward"].endswith("  nothing to compare")
    assert rows["gradient"].endswith("  nothing to compare")
    assert "the reference gave none of its results (grad_g, grad_x)" in out
    assert out.rstrip().endswith("1 passed, 0 failed, 2 with nothing to compare")


@pytest.mark.parametrize("reference,message", [
    ("raises", "the reference raised RuntimeError: my reference is broken"),
    ("extra_key", "the reference returned 'z', which rmsnorm does not have (its results: "
                  "y, grad_x, grad_g)"),
    ("none", "the reference returned NoneType, not a dict of results by name"),
    ("a_list", "the reference returned list, not a dict of results by name"),
])
def test_a_reference_s_mistake_is_one_line(capsys, tmp_path, reference, message):
    code, out, err = _validate(capsys, tmp_path, reference)
    assert code == 2 and out == ""
    assert f"refs.py:{reference}: {message}" in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_file_component_given_as_a_name_is_one_line(capsys, tmp_path):
    from conftest import run_cli
    path = _example(tmp_path)
    code, out, err = run_cli(capsys, "validate", f"{path}:rmsnorm")
    assert code == 2 and out == ""
    assert "a component of a file goes with --from FILE.py:NAME" in err
