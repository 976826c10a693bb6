import os
import tempfile

import pytest

# Derivations made by the tests go to a private cache, never the user's.
os.environ.setdefault("SYMFLOP_CACHE_DIR", tempfile.mkdtemp(prefix="symflop-test-cache-"))

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
