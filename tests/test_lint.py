"""ruff over the whole tree and mypy over the engine, as CI runs the suite: a lint finding
or a type error fails the build (the tree was kept clean by hand, and nothing checked it)."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        assert os.environ.get("CI") != "true", "CI installs ruff (the test extra): it must be found"
        pytest.skip("ruff is not installed here (pip install -e .[test])")
    r = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_lint_check_can_fail(tmp_path):
    """ruff, as configured here, reports an unused import (the check is not a no-op)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed here")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    r = subprocess.run([ruff, "check", "--no-cache", "--config",
                        str(ROOT / "pyproject.toml"), str(bad)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "F401" in r.stdout, r.stdout + r.stderr


def _mypy(*args: str) -> subprocess.CompletedProcess:
    """mypy as pyproject.toml configures it, with no cache written into the tree."""
    if importlib.util.find_spec("mypy") is None:
        assert os.environ.get("CI") != "true", "CI installs mypy (the test extra): it must be found"
        pytest.skip("mypy is not installed here (pip install -e .[test])")
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull,
                           "--config-file", str(ROOT / "pyproject.toml"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_mypy_finds_no_type_error_in_the_engine():
    r = _mypy()
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr


def test_the_type_check_can_fail(tmp_path):
    """mypy, as configured here, reports a str passed where an int is declared."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(n: int) -> int:\n    return n\n\n\nf('one')\n")
    r = _mypy(str(bad))
    assert r.returncode == 1 and "arg-type" in r.stdout, r.stdout + r.stderr
