"""Finding components: installed catalogues (entry points) and single files.

The engine never imports a catalogue by name.  A catalogue is any package that
declares an entry point in the group ``symflop.catalogues`` pointing at a dict
``{cli_name: function returning a Component}``; a user's own component can also
be loaded from a file with ``path/to/file.py:NAME``.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from symflop.core.model import Component
from symflop.errors import SymflopError, UsageError

GROUP = "symflop.catalogues"


def _load(ep) -> dict:
    try:
        return ep.load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in is reported in one line
        raise UsageError(f"catalogue {ep.name!r} ({ep.value}) failed to load: "
                         f"{type(e).__name__}: {e}") from None


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Callable[[], Component]]:
    found: dict[str, Callable[[], Component]] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        entries = _load(ep)
        for name, factory in entries.items():
            found.setdefault(name, factory)
    return found


@lru_cache(maxsize=1)
def examples() -> dict:
    """Worked examples from every installed catalogue (entry point group symflop.examples)."""
    found: dict = {}
    for ep in sorted(entry_points(group="symflop.examples"), key=lambda e: e.name):
        for name, build in _load(ep).items():
            found.setdefault(name, build)
    return found


def plugin(group: str, what: str):
    """The single object a catalogue offers under entry point ``group`` (e.g. report stages)."""
    eps = sorted(entry_points(group=group), key=lambda e: e.name)
    if not eps:
        raise UsageError(f"no installed catalogue provides {what} "
                         "(pip install -e . in the repository)")
    return _load(eps[0])


_built: dict = {}


def get_component(name: str, **options: str) -> Component:
    """Build (once per process) the component called ``name`` or loaded from ``file.py:NAME``.

    ``options`` are keyword arguments for builders that take them (e.g. the
    optimizer of a training step).
    """
    if not name or not name.strip():
        raise UsageError("empty component name; `symflop list` shows them")
    key = (name, tuple(sorted(options.items())))
    if key in _built:
        return _built[key]
    if ":" in name and name.split(":", 1)[0].endswith(".py"):
        c = load_from_file(name)
    else:
        cat = catalogue()
        if name not in cat:
            close = difflib.get_close_matches(name, list(cat), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                "; `symflop list` shows them"
            if not cat:
                hint = "; no catalogue is installed (pip install -e . in the repository)"
            raise UsageError(f"unknown component {name!r}{hint}")
        try:
            c = _build(cat[name], name, options)
        except SymflopError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"building {name!r} failed: {type(e).__name__}: {e}") from None
    _built[key] = c
    return c


def _build(factory, name: str, options: dict):
    if not options:
        return factory()
    params = inspect.signature(factory).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        takes = ", ".join(p for p in params) or "none"
        raise UsageError(f"{name} takes no option {unknown[0]!r} (its options: {takes})")
    return factory(**options)


def load_object(spec: str, what: str):
    """``path/to/file.py:NAME`` or ``package.module:NAME``: the object NAME there (for a
    file, also a key of its ``CATALOGUE`` dict)."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise UsageError(f"{spec!r}: expected FILE.py:NAME or MODULE:NAME ({what})")
    if where.endswith(".py"):
        module = _import_file(Path(where))
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(where)
        except Exception as e:  # noqa: BLE001 - the user's module failed: one line
            raise UsageError(f"cannot import {where!r}: {type(e).__name__}: {e}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        obj = getattr(module, "CATALOGUE", {}).get(attr)
    if obj is None:
        raise UsageError(f"{where} defines no {attr!r}")
    return obj


def user_module_name(path: str | Path) -> str:
    """The name under which a user's file is imported (``sys.modules``)."""
    return f"_symflop_user_{abs(hash(str(Path(path).resolve())))}"


def _import_file(path: Path):
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    mod_name = user_module_name(path)
    spec_obj = importlib.util.spec_from_file_location(mod_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise UsageError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[mod_name] = module
    try:
        spec_obj.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - report the user's file error in one line
        del sys.modules[mod_name]
        raise UsageError(f"{path}: {type(e).__name__}: {e}") from None
    return module


def call_user(obj, spec: str):
    """Call a user's factory; its failure is one line naming it."""
    try:
        return obj() if callable(obj) else obj
    except SymflopError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code failed: say where, in one line
        raise UsageError(f"{spec}: {type(e).__name__}: {e}") from None


def load_from_file(spec: str) -> Component:
    """``path/to/file.py:NAME``: NAME is a function returning a Component (or a key of
    the file's ``CATALOGUE`` dict)."""
    c = call_user(load_object(spec, "a component"), spec)
    if not isinstance(c, Component):
        raise UsageError(f"{spec} did not give a symflop Component")
    return c
