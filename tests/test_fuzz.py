"""Fuzzing the boundaries: command lines and component definitions built at random.

Whatever the input, the CLI ends with status 0, or 2 with exactly one line on stderr,
never a traceback; a component definition is accepted or refused with a
``ComponentError`` (one line, naming the component), never another exception.
"""

import sys
import time

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symflop import Component, SymflopError, derive
from symflop.cli import main

COMMANDS = ["count", "show", "grad", "code", "table", "summary", "claims", "list",
            "example", "identities", "bogus", ""]
NAMES = ["mse", "adam", "batchnorm", "training-step", "cross-entropy", "nope", "",
         "--from", "x.py", "/tmp/none.py:f", "loss-mse", "\x00", "é"]
OPTIONS = ["--dims", "--convention", "--dtype", "--stage", "--wrt", "--pass", "--optimizer",
           "--format", "--json", "--exact", "--latex", "--stages", "--roofline", "--from"]
VALUES = ["B=3", "B=0", "B=-1", "P=5,B=2", "B=3,B=3", "B=\uff13", "Q=1", "B=" + "9" * 40,
          "default", "fma", "xla", "nope", "float32", "int3", "written", "optimized",
          "lowered", "code", "x", "y", "theta", "forward", "backward", "sgd", "bogus", "",
          " ", "markdown", "json", "latex", "csv", "h100", "1e9,1e12", "0,0", "-1,5"]
SLOW = {"summary", "claims", "identities", "table"}  # each is run once, not fuzzed


def _argv():
    tail = st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES),
                              st.text(max_size=6)), max_size=5)
    return st.builds(lambda c, n, t: [c, n, *t], st.sampled_from(COMMANDS),
                     st.sampled_from(NAMES), tail)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=_argv())
def test_random_command_lines_end_cleanly(capsys, argv):
    capsys.readouterr()  # what an earlier example printed
    if argv[0] in SLOW and not any(a.startswith("-") or a in ("bogus", "nope") for a in argv):
        argv = argv[:1] + ["--help"]  # the slow commands' happy path runs elsewhere
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        code = e.code
    out, err = capsys.readouterr()
    assert time.perf_counter() - start < 60, argv
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("symflop")]
        assert len(lines) == 1, (argv, err)


RHS = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True),
                st.text(max_size=5), st.lists(st.integers(), max_size=2),
                st.sampled_from(["x", "x2", "x+1", "sin", "oo", "nan", "zoo"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pass_name=st.one_of(st.sampled_from(["forward", "backward", "gradient", "step",
                                            "my pass", "class", "xp", "a-b", "", "1x"]),
                           st.text(max_size=8)),
       rhs=RHS, dims=st.sampled_from(["B", "B d", "N"]), name=st.text(min_size=1, max_size=8))
def test_random_component_definitions_are_accepted_or_refused_in_one_line(pass_name, rhs,
                                                                          dims, name):
    x_expr = {"x": "x", "x2": "x2", "x+1": "x1", "sin": "sin", "oo": sp.oo, "nan": sp.nan,
              "zoo": sp.zoo}
    try:
        c = Component(name, "Fuzz", "a fuzzed component")
        sizes = c.dim(dims)
        B = sizes if isinstance(sizes, sp.Symbol) else sizes[0]
        i = c.index(i=B)
        x, y = c.input("x", (B,)), c.output("y", (B,))
        value = rhs
        if isinstance(rhs, str) and rhs in x_expr:
            v = x_expr[rhs]
            value = {"x": x[i], "x2": x[i] ** 2, "x1": x[i] + 1, "sin": sp.sin(x[i])}.get(v, v)
        c.assign(pass_name, y[i], value)
        d = derive(c, use_cache=False)
        d.counts(next(iter(d.passes)))
    except SymflopError as e:
        assert "\n" not in str(e), str(e)
    except (OverflowError, ZeroDivisionError) as e:  # pragma: no cover - must not happen
        pytest.fail(f"{type(e).__name__} escaped: {e}")


def test_the_fuzzer_reaches_both_outcomes(capsys):
    """The fuzz tests would pass vacuously if every input were refused: a valid line runs."""
    assert main(["count", "mse", "--dims", "B=3,d=2"]) == 0
    assert main(["count", "mse", "--dims", "B=0"]) == 2
    capsys.readouterr()
    sys.stdout.flush()
