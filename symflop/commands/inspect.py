"""``symflop list``, ``show``, ``grad`` and ``code``: the commands that print what the
engine derived for one component (or the catalogue's names), without sizes."""

from __future__ import annotations

import argparse

from symflop.commands.common import (
    add_count_options,
    add_name_arguments,
    add_stage_argument,
    derivation,
)
from symflop.errors import UsageError
from symflop.registry import catalogue
from symflop.report.render import fused_text, show, stage_report


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name, factory in catalogue().items():
        c = factory()
        rows.append((name, c.section, c.summary))
    if not rows:
        raise UsageError("no catalogue is installed (pip install -e . in the repository)")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    c, d = derivation(args)
    if args.stages:
        if not hasattr(d, "stages"):
            raise UsageError(f"{c.name} is a composite: its parts have stages "
                             "(e.g. symflop show batchnorm --stages)")
        print(stage_report(c, d, args.convention))
        return 0
    print(show(c, d, args.latex, args.convention, args.dtype, args.stage))
    return 0


def cmd_grad(args: argparse.Namespace) -> int:
    c, d = derivation(args)
    fused = d.fused_at(args.stage) if hasattr(d, "fused_at") else d.fused
    if not fused:
        raise UsageError(f"{c.name} has no gradient (it has passes: {', '.join(d.passes)})")
    if args.wrt is not None and args.wrt not in fused:
        raise UsageError(f"{c.name} has no gradient with respect to {args.wrt!r} "
                         f"(it has: {', '.join(fused)})")
    for w, f in fused.items():
        if args.wrt in (None, w):
            print(fused_text(f, args.latex))
    return 0


def cmd_code(args: argparse.Namespace) -> int:
    c, d = derivation(args)
    if not d.sources:
        raise UsageError(f"{c.name} is a composite and has no generated code of its own; "
                         "its parts do (e.g. symflop code adam)")
    names = [args.pass_name] if args.pass_name else list(d.passes)
    for name in names:
        if name not in d.sources:
            raise UsageError(f"{c.name} has no pass {name!r} (passes: {', '.join(d.passes)})")
    print("\n".join(d.sources[name][0] for name in names), end="")
    return 0


def add_list_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="one line per component").set_defaults(func=cmd_list)


def add_show_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("show", help="equations, gradients, counts and memory of a component")
    add_name_arguments(s)
    s.add_argument("--latex", action="store_true", help="equations as LaTeX")
    s.add_argument("--stages", action="store_true",
                   help="each pass's count at every stage, with the rules that fired")
    add_count_options(s)
    add_stage_argument(s)
    s.set_defaults(func=cmd_show)


def add_grad_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("grad", help="fused gradient(s) of a component")
    add_name_arguments(g)
    g.add_argument("--wrt", help="one tensor only (default: every one differentiated)")
    g.add_argument("--latex", action="store_true", help="gradients as LaTeX")
    add_stage_argument(g)
    g.set_defaults(func=cmd_grad)


def add_code_parser(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("code", help="generated NumPy/torch source of each pass (the lowered stage)")
    add_name_arguments(k)
    k.add_argument("--pass", dest="pass_name", help="one pass only (forward, backward, ...)")
    k.set_defaults(func=cmd_code)
