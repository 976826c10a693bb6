import os
import shutil
import sys
import tempfile

import pytest

# The suite writes nothing into the repository: no bytecode from this process or from
# the subprocesses it starts (they inherit the environment, or are given it).
sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"

# Derivations made by the tests go to a private cache, never the user's, removed at the
# end of the session.
_CACHE = None
if "SYMFLOP_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="symflop-test-cache-")
    os.environ["SYMFLOP_CACHE_DIR"] = _CACHE


# The quick subset (python -m pytest -m "not slow", about a minute) leaves out these
# modules, each of which runs torch models, subprocesses or the whole report.
SLOW_MODULES = frozenset((
    "test_report", "test_zoo", "test_distributed", "test_estimate", "test_estimate_cli",
    "test_checkpointing", "test_low_precision", "test_resnet50", "test_validate",
    "test_validate_user", "test_claims", "test_plots", "test_identities", "test_readme",
    "test_user_component", "test_lowering", "test_catalogue", "test_executed",
    "test_engine_edges", "test_fuzz", "test_properties", "test_training_and_examples",
    "test_peak", "test_tensor_parallel", "test_pipeline_parallel", "test_plan",
    "test_budget", "test_autocast", "test_timeline_plot", "test_cuda_autocast",
))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)

from derivations import CATALOGUE  # noqa: E402
from symflop.compose import derive_any  # noqa: E402

_derived: dict = {}


def derived(name: str):
    """(component, derivation) for a catalogue name, built once per test session."""
    if name not in _derived:
        c = CATALOGUE[name]()
        _derived[name] = (c, derive_any(c))
    return _derived[name]


@pytest.fixture(params=sorted(CATALOGUE))
def component_name(request):
    return request.param


def as_written(d, pass_name: str):
    """The count function of a pass as written: the author's passes at the written stage,
    the derived ones (backward, gradient) as reverse mode derives them."""
    stage = "differentiated" if pass_name in ("backward", "gradient") else "written"
    return d.count_function(pass_name, stage=stage)


def run_cli(capsys, *argv):
    """``symflop ARGV`` in this process: (exit status, stdout, stderr)."""
    from symflop.cli import main
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse refuses an argument itself
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
