"""symflop: gradients, exact operation counts, memory and code of training components,
derived from their equations.

The command line's frame: the parser, the commands registered in the order ``symflop
--help`` lists them (each group's arguments and work live in ``symflop/commands/``;
``estimate`` and ``plan`` in ``symflop/estimate/``), and one line on stderr and one exit
status for every error, interrupt or signal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from symflop.commands import count, document, inspect, validate
from symflop.core.stages import stage_name
from symflop.cost import conventions
from symflop.cost.memory import DTYPE_BYTES
from symflop.errors import SymflopError, UsageError
from symflop.estimate import command as estimate_command
from symflop.estimate import plan_cli

# Each adds its command's parser; in the order `symflop --help` lists them.
_COMMANDS = (
    inspect.add_list_parser,
    inspect.add_show_parser,
    inspect.add_grad_parser,
    document.add_example_parser,
    validate.add_parser,
    document.add_claims_parser,
    document.add_table_parser,
    document.add_identities_parser,
    document.add_report_parser,
    inspect.add_code_parser,
    count.add_count_parser,
    count.add_summary_parser,
    estimate_command.add_parser,
    plan_cli.add_parser,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like ours."""

    def error(self, message):
        # one prefix for every usage error ("symflop: error:"), as the commands' own say
        self.exit(2, f"{self.prog.split()[0]}: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("symflop")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symflop", description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--version", action="version", version=f"symflop {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_parser in _COMMANDS:
        add_parser(sub)
    p.epilog = f"Commands: {', '.join(sub.choices)}."  # as registered: it cannot drift
    return p


_FLAGS = {"from_spec": "--from", "pass_name": "--pass"}


def _check_empty(args) -> None:
    """An option given an empty value is a mistake (a shell variable that was not set),
    never a request for the default: ``--out ''`` would write into the current folder."""
    for key, value in vars(args).items():
        if isinstance(value, str) and not value.strip() and key not in ("command",):
            if key == "name":
                raise UsageError("empty component name; `symflop list` shows them")
            flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
            raise UsageError(f"{flag} is empty: give a value, or leave it out for the default")


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so that its clean-up runs (scratch folders,
    a pdflatex child) as it does for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args) -> int:
    try:
        _check_empty(args)
        if getattr(args, "dtype", None) is not None and args.dtype not in DTYPE_BYTES:
            raise UsageError(f"unknown dtype {args.dtype!r} (known: {', '.join(DTYPE_BYTES)})")
        if getattr(args, "convention", None) is not None:
            conventions.get_convention(args.convention)
        if getattr(args, "stage", None) is not None:
            stage_name(args.stage)
        return args.func(args)
    except SymflopError as e:
        print(f"symflop: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print("symflop: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("symflop: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return 0
