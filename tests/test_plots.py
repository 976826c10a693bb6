"""The report's plots: every one renders to PNG and PDF, with the same bytes every time."""

import subprocess
import sys

import pytest

from derivations.plots import PLOTS


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_renders_png_and_pdf(name):
    out = PLOTS[name]()
    assert out["png"].startswith(b"\x89PNG") and len(out["png"]) > 10_000
    assert out["pdf"].startswith(b"%PDF") and len(out["pdf"]) > 5_000


def test_plots_are_byte_identical_across_processes_and_hash_seeds():
    code = ("import hashlib; from derivations.plots import PLOTS; "
            "print(sorted((n, k, hashlib.sha256(v).hexdigest()) "
            "for n, f in PLOTS.items() for k, v in f().items()))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin",
                                "HOME": "/tmp", "MPLBACKEND": "Agg",
                                "PYTHONDONTWRITEBYTECODE": "1"},
                           check=True).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1
