"""``symflop table``, ``claims``, ``identities``, ``example`` and ``report``: the commands
that print or write the reference document's parts (from the installed catalogue's
plugins), and ``report``, which writes them all."""

from __future__ import annotations

import argparse

from symflop.commands.common import (
    add_count_options,
    add_stage_argument,
    pick,
    size_value,
)
from symflop.errors import INSTALL_TORCH, UsageError
from symflop.registry import examples, plugin
from symflop.report.examples import render as render_example


def cmd_example(args: argparse.Namespace) -> int:
    build = pick(examples(), args.name, "example")
    if build is not None:
        print(render_example(build()))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from symflop.report.claims import report
    print(report(plugin("symflop.claims", "claims"), args.format), end="")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from symflop.report.tables import latex_document, render
    if args.standalone and args.format != "latex":
        raise UsageError("--standalone makes a whole LaTeX document: use it with "
                         "--format latex")
    build = pick(plugin("symflop.tables", "tables"), args.name, "table")
    if build is not None:
        options = {}
        if args.dims:
            import inspect
            if "dims" not in inspect.signature(build).parameters:
                raise UsageError(f"table {args.name!r} takes no --dims (its sizes are the "
                                 "document's)")
            options["dims"] = _table_dims(args.dims)
        table = build(convention=args.convention, dtype=args.dtype, exact=args.exact,
                      stage=args.stage, **options)
        print(latex_document([table]) if args.standalone else render(table, args.format),
              end="")
    return 0


def _table_dims(text: str) -> dict[str, int]:
    """``Psi=7500000000,N=64`` (or ``Psi=7.5e9``): sizes for a table that takes them, read
    exactly (as decimals, never through a float)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        number = size_value(value)
        if not eq or not name.isidentifier() or number is None or number < 1:
            raise UsageError(f"--dims {part.strip()!r}: write NAME=POSITIVE_INTEGER (e.g. "
                             "Psi=7.5e9,N=64)")
        if name in out:
            raise UsageError(f"--dims: {name} given twice")
        out[name] = number
    return out


def cmd_identities(args: argparse.Namespace) -> int:
    from symflop.report.identities import evaluate, installed, render
    items = evaluate(installed(), not args.no_numeric, tuple(args.names) or None)
    print(render(items, args.format))
    return 1 if any(i.numeric is not None and i.numeric.passed is False for i in items) else 0


def cmd_report(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from symflop.report.report import ReportWriter, Staging, compile_pdf, document
    stages = plugin("symflop.report", "report stages")
    out = Path(args.out)
    try:
        staging = Staging(out)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    try:
        writer = ReportWriter(staging.path)
        parts = []
        start = time.perf_counter()
        for k, (label, stage) in enumerate(stages, 1):
            t = time.perf_counter()
            parts.append(stage(writer))
            print(f"[{k}/{len(stages)}] {label}: done in {time.perf_counter() - t:.1f} s",
                  flush=True)
        writer.write("report.tex", document(parts))
        print(f"wrote {len(writer.written)} files to {out}/ in "
              f"{time.perf_counter() - start:.1f} s")
        built, message = (False, "--no-pdf: report.pdf not built") if args.no_pdf \
            else compile_pdf(staging.path)
        failed = not built and not args.no_pdf and "not on the PATH" not in message
        if failed and (staging.out / "report.pdf").exists():
            # a report whose PDF failed never replaces one that has its PDF
            staging.abort()
            print(f"{message}: the earlier report in {out}/, with its report.pdf, is kept")
            return 1
        staging.commit()
    except OSError as e:
        staging.abort()
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    except BaseException:
        staging.abort()  # Ctrl-C, SIGTERM, an error: the old report stays as it was
        raise
    print(f"{message}: {(out / 'report.pdf').resolve()}" if built else message)
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed: the identities' numeric checks with torch were not "
              f"run ({INSTALL_TORCH})")
    return 0 if built or "not on the PATH" in message or args.no_pdf else 1


class _TableHelp(argparse.Action):
    """``table --help``: the help, then the table names (loaded only when asked for)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):  # noqa: A002 - argparse's own keyword
        super().__init__(option_strings, dest, 0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import textwrap
        names = ", ".join(plugin("symflop.tables", "tables"))
        parser.epilog = textwrap.fill(f"tables: {names}", width=78, break_on_hyphens=False)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        parser.exit()


def add_example_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("example", help="a worked example of the reference document")
    e.add_argument("name", nargs="?", help="example name (none: list them)")
    e.set_defaults(func=cmd_example)


def add_claims_parser(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser("claims", help="the reference document's quantitative claims, "
                                       "checked against the derivations")
    cl.add_argument("--format", choices=("markdown", "json", "latex"), default="markdown",
                    help="default markdown")
    cl.set_defaults(func=cmd_claims)


def add_table_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("table", help="a table of the reference document, from the engine",
                       add_help=False)
    t.add_argument("-h", "--help", action=_TableHelp,
                   help="show this help message, with the table names, and exit")
    t.add_argument("name", nargs="?", help="table name (none: list them; --help too)")
    t.add_argument("--format", choices=("latex", "markdown", "csv", "json"), default="markdown",
                   help="default markdown")
    t.add_argument("--exact", action="store_true", help="exact polynomials, not leading order")
    t.add_argument("--standalone", action="store_true",
                   help="with --format latex: a whole document that compiles on its own")
    t.add_argument("--dims", help="sizes, for a table that takes them (distributed-memory: "
                                  "Psi=7.5e9,N=64)")
    add_count_options(t, optimizer=False)
    add_stage_argument(t)
    t.set_defaults(func=cmd_table)


def add_identities_parser(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("identities", help="identities the document states: proved or "
                                          "refuted (SymPy), checked (torch)")
    i.add_argument("names", nargs="*", help="identities (default: all of them)")
    i.add_argument("--format", choices=("text", "markdown", "json", "latex"), default="text",
                   help="default text")
    i.add_argument("--no-numeric", action="store_true", help="skip the torch checks")
    i.set_defaults(func=cmd_identities)


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="write every table, plot, claim and identity, "
                                      "and report.tex / report.pdf (the main job)")
    r.add_argument("--out", default="symflop-report", help="folder (default ./symflop-report)")
    r.add_argument("--no-pdf", action="store_true", help="do not run pdflatex")
    r.set_defaults(func=cmd_report)
