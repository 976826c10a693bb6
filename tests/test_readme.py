"""Every `$ symflop ...` example in the README prints exactly what the README shows.

Run this file as a script (python tests/test_readme.py) to rewrite the outputs.
"""

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def _examples(text: str):
    """(command, expected output) pairs from the README's console blocks."""
    for block in BLOCK.findall(text):
        parts = re.split(r"^\$ (.*)\n", block, flags=re.M)
        yield from zip(parts[1::2], parts[2::2])


def _run(cmd: str, cwd: Path) -> str:
    r = subprocess.run(shlex.split(cmd), capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"
    return r.stdout


def _workdir() -> Path:
    """A folder holding the README's own-component file, as the README tells users."""
    d = Path(tempfile.mkdtemp(prefix="symflop-readme-"))
    code = re.search(r"<!-- example-component -->\n```python\n(.*?)```", README.read_text(),
                     re.S).group(1)
    (d / "rmsnorm.py").write_text(code)
    model = re.search(r"<!-- example-estimate -->\n```python\n(.*?)```", README.read_text(),
                      re.S).group(1)
    (d / "my_model.py").write_text(model)
    return d


def test_readme_python_api_snippet_runs_as_pasted():
    """The "Writing a component" snippet, as a user pastes it (it once passed
    ``yhat=..., y=...`` to the compiled code): every commented value holds."""
    code = re.search(r"<!-- example-api -->\n```python\n(.*?)```", README.read_text(),
                     re.S).group(1)
    names: dict = {}
    exec(compile(code, "README snippet", "exec"), names)  # noqa: S102 - the README's own code
    d, grads = names["d"], names["grads"]
    assert str(d.counts("forward").total) == "3*B*d + 1"
    assert str(d.fused["yhat"].expr) == "2*(-y[i, j] + yhat[i, j])/(B*d)"
    assert abs(float(grads["grad_yhat"][0, 0]) - 2 / 12) < 1e-7


def test_readme_tutorial_runs_and_says_what_it_gets():
    """The API tutorial, as it stands in the README: each value its comments give."""
    code = re.search(r"<!-- example-tutorial -->\n```python\n(.*?)```", README.read_text(),
                     re.S).group(1)
    v: dict = {}
    exec(compile(code, "README tutorial", "exec"), v)  # noqa: S102 - the README's own code
    assert str(v["g"]) == "(exp(z[i, k])/Sum(exp(z[i, k']), (k', 0, C - 1)) - y[i, k])/B"
    assert v["line"].startswith("{{\\mathrm{d}z}}_{i,k} = \\frac{") and "}{B}" in v["line"]
    assert str(v["ln"]["total"]) == "11*B*d + 8*B - 2*d"
    assert v["at"]["total"] == 358656
    assert v["adam"]["state"] == 204800004
    assert v["md"].startswith("**Every loss of the catalogue**")
    assert v["rows"] and all(r.verdict == "pass" for r in v["rows"])
    assert str(v["est"].flops("forward")) == "128*B"


def test_the_api_reference_builds_without_warnings(tmp_path):
    """pdoc renders symflop.api's docstrings; a warning is an error."""
    pytest.importorskip("pdoc")
    r = subprocess.run([sys.executable, "-W", "error", "-m", "pdoc", "symflop.api", "-o",
                        str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Warn" not in r.stderr, r.stderr
    page = (tmp_path / "symflop" / "api.html").read_text()
    for name in ("component", "grad", "count", "memory", "table", "validate", "estimate"):
        assert f'id="{name}"' in page, name


def test_readme_console_examples_are_current():
    cwd = _workdir()
    try:
        examples = list(_examples(README.read_text()))
        assert len(examples) >= 4
        for cmd, expected in examples:
            assert _run(cmd, cwd) == expected, cmd
    finally:
        shutil.rmtree(cwd, ignore_errors=True)  # no symflop-readme-* left in the temp dir


if __name__ == "__main__":
    text = README.read_text()
    cwd = _workdir()

    def refresh(block_match):
        block = block_match.group(1)
        parts = re.split(r"^\$ (.*)\n", block, flags=re.M)
        out = parts[0]
        for cmd in parts[1::2]:
            out += f"$ {cmd}\n" + _run(cmd, cwd)
        return f"```console\n{out}```"

    README.write_text(BLOCK.sub(refresh, text))
    sys.exit(0)
