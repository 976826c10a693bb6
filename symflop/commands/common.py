"""What several commands share: the component named on the command line, the sizes
written after ``--dims``, the pick of a builder by name, and the arguments of a count
(``--convention``, ``--dtype``, ``--stage``), so that every command reads them alike."""

from __future__ import annotations

import argparse
import difflib
import re
from decimal import Decimal

from symflop.compose import derive_any
from symflop.core.stages import ALIASES, STAGES
from symflop.cost import conventions
from symflop.cost.memory import DTYPE_BYTES
from symflop.errors import UsageError
from symflop.registry import get_component

_SIZE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([+-]?[0-9.eE+-]+)\s*$", re.ASCII)
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]{1,2})?", re.ASCII)
_MAX_SIZE_DIGITS = 30  # far past any tensor, far below Python's 4,300-digit int limit


def size_value(text: str) -> int | None:
    """An integer written plainly or in scientific notation (1000, 1e3, 7.5e9, 7.5e+09),
    read exactly (as a decimal, never through a float); None if it is not one."""
    text = text.strip()
    if not _NUMBER.fullmatch(text) or len(text) > _MAX_SIZE_DIGITS:
        return None
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else None


def parse_dims(text: str | None, known: tuple[str, ...], component: str) -> dict[str, int]:
    """``B=32,d=1000`` (or ``B=1e3``) -> {'B': 32, 'd': 1000}; integers only, never
    evaluated as code."""
    out: dict[str, int] = {}
    if not text:
        return out
    for part in text.split(","):
        m = _SIZE.match(part)
        if m and len(m.group(2).lstrip("+-")) > _MAX_SIZE_DIGITS:
            raise UsageError(f"size {m.group(1)} has more than {_MAX_SIZE_DIGITS} digits")
        value = size_value(m.group(2)) if m else None
        if m is None or value is None:
            raise UsageError(f"malformed size {part.strip()!r}: write NAME=INTEGER, e.g. B=32 "
                             "or B=1e3")
        name = m.group(1)
        if name not in known:
            raise UsageError(f"{component} has no dimension {name!r} "
                             f"(its dimensions: {', '.join(known)})")
        if value <= 0:
            raise UsageError(f"size {name}={value} must be a positive integer")
        if name in out:
            raise UsageError(f"size {name} given twice")
        out[name] = value
    return out


def derivation(args: argparse.Namespace) -> tuple:
    """The component named on the command line, or loaded with --from FILE.py:NAME."""
    if (args.name is None) == (args.from_spec is None):
        raise UsageError("give a component name or --from FILE.py:NAME (one of the two)")
    if args.from_spec is not None:
        path, _, name = args.from_spec.partition(":")
        if not path.endswith(".py") or not name.strip():
            raise UsageError(f"--from takes FILE.py:NAME (the file and the function that "
                             f"builds the component), got {args.from_spec!r}")
    options = {"optimizer": args.optimizer} if getattr(args, "optimizer", None) else {}
    c = get_component(args.name if args.name is not None else args.from_spec, **options)
    return c, derive_any(c)


def _first_sentence(doc: str) -> str:
    """A docstring's first sentence, whole, however many lines it spans."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (m.group(1) if m else paragraph).replace("``", "")


def pick(found: dict, name: str | None, what: str):
    """The builder called ``name``; with no name, list them all (and return None)."""
    if name is None:
        width = max(map(len, found), default=0) + 2
        for key, build in found.items():
            print(f"{key:<{width}} {_first_sentence(build.__doc__ or '')}")
        return None
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f" (`symflop {what}` lists them)"
        raise UsageError(f"unknown {what} {name!r}{hint}")
    return found[name]


def add_name_arguments(p: argparse.ArgumentParser) -> None:
    """A component: by its catalogue name, or ``--from FILE.py:NAME``."""
    p.add_argument("name", nargs="?", help="component name (see `symflop list`)")
    p.add_argument("--from", dest="from_spec", metavar="FILE.py:NAME",
                   help="a component defined in a file of your own")


def add_stage_argument(p: argparse.ArgumentParser) -> None:
    """``--stage``: which program of the pipeline to count."""
    p.add_argument("--stage", default="optimized",
                   help=f"which program to count: {', '.join(STAGES)} "
                        f"({', '.join(f'{k} = {v}' for k, v in ALIASES.items())}); "
                        "default optimized")


def add_count_options(p: argparse.ArgumentParser, dims: bool = False,
                      optimizer: bool = True) -> None:
    """``--optimizer`` (where a composite can be named), ``--convention``, ``--dtype`` and,
    with ``dims``, ``--dims``."""
    if optimizer:  # only where a composite can be named
        p.add_argument("--optimizer",
                       help="optimizer of a composite such as training-step")
    p.add_argument("--convention", default="default",
                   help=f"counting convention ({', '.join(conventions.CONVENTIONS)}; "
                        "when left out, the one named 'default')")
    p.add_argument("--dtype", default="float32",
                   help=f"element type for bytes ({', '.join(DTYPE_BYTES)}; default "
                        "float32)")
    if dims:
        p.add_argument("--dims", help="sizes, e.g. B=32,d=1000 (or B=1e3)")
