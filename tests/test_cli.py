"""The command line: output shapes, JSON, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest
import sympy as sp
from conftest import run_cli

from derivations import CATALOGUE
from symflop.cli import main

run = run_cli


def test_list_names_every_component(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == list(CATALOGUE)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_count_json_is_parsable_and_consistent(capsys, name):
    code, out, _ = run(capsys, "count", name, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["component"] == name and report["convention"] == "default"
    # Sizes such as N clash with SymPy's own names, so parse with the listed symbols.
    names = {s: sp.Symbol(s) for s in report["symbols"]}

    def parse(text):
        return sp.parse_expr(text, local_dict=names)

    for entry in report["passes"].values():
        total = parse(entry["total"])
        kinds = sum((parse(v) for v in entry["by_kind"].values()), sp.Integer(0))
        assert sp.expand(total - kinds) == 0  # default weights are all 1
        assert parse(entry["leading"]).free_symbols <= total.free_symbols
        # A value only when no size is left unbound (here: when the count has none).
        assert ("value" in entry) == (not total.free_symbols)
    assert set(report["memory"]) >= {"parameters", "state", "saved_for_backward"}


def test_count_values_with_dims(capsys):
    code, out, _ = run(capsys, "count", "mse", "--dims", "B=32,d=1000", "--json")
    report = json.loads(out)
    fwd = report["passes"]["forward"]
    # Hand count: 32000 subtractions, 32000 squares, 31999 additions, then
    # L_sum / (B*d): one multiplication B*d and one division.
    assert fwd["value"] == 32000 + 32000 + 31999 + 1 + 1
    assert fwd["by_kind_value"]["add"] == 32000 + 31999


def test_count_under_each_convention_differs_where_it_should(capsys):
    values = {}
    for conv in ("default", "fma", "weighted", "xla"):
        code, out, _ = run(capsys, "count", "batchnorm", "--dims", "N=10,d=2", "--json",
                           "--convention", conv)
        assert code == 0
        values[conv] = json.loads(out)["passes"]["forward"]["value"]
    assert values["fma"] < values["default"] < values["weighted"]
    assert values["xla"] < values["default"]


def test_count_at_each_stage_and_the_as_written_figure_beside_it(capsys):
    code, out, _ = run(capsys, "count", "batchnorm", "--dims", "N=10,d=2", "--json")
    report = json.loads(out)
    assert code == 0 and report["stage"] == "reused"
    bwd = report["passes"]["backward"]
    # Hand counts at N=10, d=2 (20 elements): optimized 7 per element + 5 per feature;
    # as written 16 per element + 10 per feature.
    assert bwd["value"] == 7 * 20 + 5 * 2
    assert bwd["as_written"]["total"] == "16*N*d + 10*d"
    assert [p["point"] for p in report["save_or_recompute"]] == ["reuse", "recompute"]
    code, out, _ = run(capsys, "count", "batchnorm", "--dims", "N=10,d=2", "--json",
                       "--stage", "written")
    assert json.loads(out)["passes"]["forward"]["value"] == 8 * 20 + 8 * 2 + 5
    code, _, err = run(capsys, "count", "batchnorm", "--stage", "fastest")
    assert code == 2 and "unknown stage 'fastest'" in err
    code, out, _ = run(capsys, "show", "batchnorm", "--stages")
    assert code == 0 and "centered-sum: grad_mu_part" in out and "reused (optimized)" in out


def test_show_and_grad(capsys):
    code, out, _ = run(capsys, "show", "batchnorm")
    assert code == 0 and "backward pass:" in out and "grad_x[i, j] =" in out
    code, out, _ = run(capsys, "grad", "cross-entropy", "--latex")
    assert code == 0 and r"\frac" in out and "rows sum to 1" in out
    code, out, _ = run(capsys, "grad", "batchnorm", "--wrt", "gamma")
    assert code == 0 and out.startswith("grad_gamma[j] = Sum(grad_y[i, j]*xhat[i, j]")


def test_code_prints_generated_source(capsys):
    code, out, _ = run(capsys, "code", "cross-entropy", "--pass", "forward")
    assert code == 0 and out.startswith("def forward(xp, B, C, z, y, _inplace=False, _out=None):")
    assert "xp.amax(" in out and "xp.gather(" in out  # the max shift and the labels
    code, out, err = run(capsys, "code", "mse", "--pass", "step")
    assert code == 2 and "mse has no pass 'step'" in err


@pytest.mark.parametrize("argv, message", [
    (["count", "batchnrom"], "unknown component 'batchnrom'; did you mean batchnorm"),
    (["count", "mse", "--dims", "B=0"], "must be a positive integer"),
    (["count", "mse", "--dims", "B=-3"], "must be a positive integer"),
    (["count", "mse", "--dims", "B=3.5"], "malformed size"),
    (["count", "mse", "--dims", "B=__import__('os').getcwd()"], "malformed size"),
    (["count", "mse", "--dims", "Q=3"], "has no dimension 'Q'"),
    (["count", "mse", "--dims", "B=3,B=4"], "given twice"),
    (["count", "mse", "--convention", "nope"], "unknown convention 'nope'"),
    (["count", "mse", "--dtype", "int3"], "unknown dtype"),
    (["grad", "adam"], "adam has no gradient"),
    (["grad", "mse", "--wrt", "y"], "no gradient with respect to 'y'"),
    (["code", "training-step"], "is a composite and has no generated code"),
    (["show", ""], "empty component name"),
    (["report", "--out", __file__], "exists and is not a folder"),
    # empty values are mistakes, never the default (each once exited 0 or used a default)
    (["grad", "batchnorm", "--wrt", ""], "--wrt is empty"),
    (["code", "adam", "--pass", " "], "--pass is empty"),
    (["count", "training-step", "--optimizer", ""], "--optimizer is empty"),
    (["report", "--out", ""], "--out is empty"),
    (["count", "--from", ""], "--from is empty"),
    # an option the command does not use is refused, not ignored
    (["table", "loss-mse", "--optimizer", "bogus"], "unrecognized arguments: --optimizer"),
    (["summary", "--optimizer", "bogus"], "unrecognized arguments: --optimizer"),
    # sizes: ASCII digits only, and never a number Python cannot convert (once a traceback)
    (["count", "mse", "--dims", "B=\uff13\uff12"], "malformed size"),
    (["count", "mse", "--dims", "B=" + "9" * 5000], "more than 30 digits"),
    (["code", "--from", "x.py"], "--from takes FILE.py:NAME"),
])
def test_bad_input_gives_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


def test_console_entry_points_run():
    for cmd in (["symflop", "list"], [sys.executable, "-m", "symflop", "list"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "batchnorm" in r.stdout
    r = subprocess.run(["symflop", "count", "nope"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_help_version_and_table_names(capsys):
    import pytest as _pytest
    with _pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("symflop ")
    with _pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "derived from their equations." in out and "Commands: list, show" in out
    with _pytest.raises(SystemExit):
        main(["table", "--help"])
    out = capsys.readouterr().out
    assert "tables: " in out and "catalogue-stages" in out and "default markdown" in out


def test_every_option_has_help():
    import argparse as _argparse

    from symflop.cli import build_parser
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, _argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, sub in subs.choices.items()
               for a in sub._actions if not a.help]
    assert not missing, missing


def test_sizes_in_scientific_notation_are_read_exactly_everywhere(capsys):
    """count refused B=1e3 where table took Psi=7.5e9; 7.5e+09 was refused by both."""
    code, out, err = run(capsys, "count", "cross-entropy", "--dims", "B=1e3,C=10", "--json")
    assert code == 0, err
    assert json.loads(out)["passes"]["forward"]["value"] == 2 * 1000 * 10 + 2 * 1000
    code, out, err = run(capsys, "table", "distributed-step", "--dims", "Psi=7.5e+09,N=64",
                         "--format", "markdown")
    assert code == 0, err
    for bad, message in (("B=1.5,C=2", "malformed size 'B=1.5'"),
                         ("B=1e400,C=2", "malformed size 'B=1e400'")):
        code, out, err = run(capsys, "count", "cross-entropy", "--dims", bad)
        assert code == 2 and message in err, err


def test_a_misspelt_stage_gets_a_suggestion_and_every_usage_error_one_prefix(capsys):
    code, out, err = run(capsys, "count", "cross-entropy", "--stage", "optimised")
    assert code == 2 and err.rstrip().endswith("did you mean 'optimized'?"), err
    code, out, err = run(capsys, "table", "--bogus")   # an argparse error of a subcommand
    assert code == 2 and err.startswith("symflop: error: unrecognized arguments"), err


def test_count_help_says_what_the_default_convention_is(capsys):
    code, out, err = run(capsys, "count", "--help")
    assert code == 0 and "default default" not in " ".join(out.split())
    assert "when left out, the one named 'default'" in " ".join(out.split())


def test_every_command_that_needs_torch_says_how_to_install_it_alike(monkeypatch, capsys):
    """validate, estimate and --roofline measure each gave its own hint, none the
    README's CPU pin; now one sentence, with it."""
    import builtins

    from symflop.errors import INSTALL_TORCH
    assert "torch==2.13.0" in INSTALL_TORCH
    real = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    for argv, what in ((["validate", "mse"], "validate"),
                       (["estimate", "validation.zoo:mha", "--input", "Lx64"],
                        "symflop estimate"),
                       (["count", "mse", "--roofline", "measure"], "--roofline measure")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and err == f"symflop: error: {what} needs torch: {INSTALL_TORCH}\n", \
            (argv, err)


def test_the_table_list_gives_whole_sentences(capsys):
    """Descriptions were cut at the docstring's first line ("loss-others ... (their")."""
    code, out, err = run(capsys, "table")
    assert code == 0
    rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert rows["loss-others"].endswith("where they have the page's width).")
    assert rows["catalogue-stages"].endswith("(saved for backward) at each.")
    assert all(row.rstrip().endswith((".", "!", "?", ")")) for row in rows.values()), \
        [r for r in rows.values() if not r.rstrip().endswith((".", "!", "?", ")"))]


def test_printed_code_runs_with_the_backend_it_names(capsys):
    """symflop code's source, executed as printed, with the backend its comment names
    (the README called xp an array namespace: the numpy module failed on host_done)."""
    import numpy as np
    code, out, err = run(capsys, "code", "mse", "--pass", "forward")
    assert code == 0
    assert "# xp: symflop's array backend, not the numpy module: " \
           "symflop.lower.backends.get_backend('numpy' | 'torch')" in out
    from symflop.lower.backends import get_backend
    names: dict = {}
    exec(out, names)  # noqa: S102 - the tool's own printed code
    yhat, y = np.ones((4, 3)), np.zeros((4, 3))
    got = names["forward"](get_backend("numpy"), 4, 3, y, yhat)
    assert float(got["L"]) == 1.0


def test_saved_for_backward_as_written_is_what_the_written_backward_reads(capsys):
    """count mse --stage written printed a backward pass and "saved for backward: 0
    bytes": the written equations hold no backward of their own; reverse mode's reads
    yhat and y (2 B d float32 values), as the optimized one does."""
    for stage in ("written", "optimized"):
        code, out, err = run(capsys, "count", "mse", "--stage", stage)
        assert code == 0, err
        assert "  saved for backward: 8*B*d bytes (float32)" in out.splitlines(), out
