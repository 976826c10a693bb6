"""symflop: gradients, exact operation counts, memory and code of training components,
derived from their equations.

Commands: list, show, grad, count, code, summary, example, validate, table, claims,
identities, report, estimate."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import signal
import sys
import threading
from decimal import Decimal

import sympy as sp

from symflop.compose import derive_any
from symflop.core.model import size_symbol
from symflop.cost import conventions
from symflop.cost.memory import DTYPE_BYTES, dtype_bytes
from symflop.derive import Derivation
from symflop.errors import INSTALL_TORCH, SymflopError, UsageError, needs_torch
from symflop.estimate.command import add_parser as add_estimate_parser
from symflop.estimate.plan_cli import add_parser as add_plan_parser
from symflop.lower.backends import BACKENDS
from symflop.lower.roofline import parse_machine, predict
from symflop.registry import (
    catalogue,
    examples,
    get_component,
    load_object,
    plugin,
    user_module_name,
)
from symflop.report.examples import render as render_example
from symflop.report.render import fused_text, show, stage_report
from symflop.rewrite.pipeline import (
    ALIASES,
    STAGES,
    as_written_stage,
    stage_label,
    stage_name,
)

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
        if value is None:
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


def _derivation(args) -> tuple:
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


def cmd_list(args) -> int:
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


def cmd_show(args) -> int:
    c, d = _derivation(args)
    if args.stages:
        if not hasattr(d, "stages"):
            raise UsageError(f"{c.name} is a composite: its parts have stages "
                             "(e.g. symflop show batchnorm --stages)")
        print(stage_report(c, d, args.convention))
        return 0
    print(show(c, d, args.latex, args.convention, args.dtype, args.stage))
    return 0


def cmd_grad(args) -> int:
    c, d = _derivation(args)
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


def _first_sentence(doc: str) -> str:
    """A docstring's first sentence, whole, however many lines it spans."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (m.group(1) if m else paragraph).replace("``", "")


def _pick(found: dict, name: str | None, what: str):
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


def cmd_example(args) -> int:
    build = _pick(examples(), args.name, "example")
    if build is not None:
        print(render_example(build()))
    return 0


def cmd_validate(args) -> int:
    try:
        import torch
    except ImportError:
        raise needs_torch("validate") from None
    suite = plugin("symflop.validation", "a validation suite")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available on this machine")
    if args.device == "cuda" and args.backend == "numpy":
        raise UsageError("--backend numpy runs on the CPU only (drop --device cuda)")
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    if args.from_spec or args.reference or args.dims:
        rows = _validate_user(args, suite, dtype)
        print(json.dumps(suite.to_json(rows, args.device, dtype, args.backend), indent=2)
              if args.json else suite.format_rows(rows, _setting(args)))
        return 0 if all(r.ok for r in rows) else 1
    names = args.names or list(catalogue())
    for name in names:
        if ":" in name or name.endswith(".py"):
            raise UsageError(f"validate {name}: a component of a file goes with --from "
                             "FILE.py:NAME (and --reference FILE.py:FUNC)")
        if name not in catalogue():
            get_component(name)  # raises the usual one-line error, with suggestions

    def progress(k: int, n: int, name: str) -> None:
        print(f"[{k}/{n}] {name}", file=sys.stderr, flush=True)

    rows = suite.validate(names, args.device, dtype, progress, args.backend)
    print(json.dumps(suite.to_json(rows, args.device, dtype, args.backend), indent=2) if args.json
          else suite.format_rows(rows, _setting(args)))
    return 0 if all(r.ok for r in rows) else 1


def _setting(args) -> str:
    """What the validation ran on, said above its table (the dtype was said nowhere)."""
    default = " (the default; --dtype float32 for single precision)" \
        if args.dtype == "float64" else ""
    return f"on {args.device}, in {args.dtype}{default}, the {args.backend} backend"


def _validate_user(args, suite, dtype) -> list:
    """``validate --from FILE.py:NAME --reference FILE.py:FUNC``: the catalogue's checks."""
    if not args.from_spec:
        raise UsageError("--reference and --dims go with --from FILE.py:NAME (a component "
                         "of your own)")
    if args.names:
        raise UsageError("give catalogue names or --from, not both")
    c = get_component(args.from_spec)
    spec = args.reference
    path, _, name = args.from_spec.rpartition(":")
    if spec:
        if not spec.rpartition(":")[0].endswith(".py"):
            raise UsageError(f"--reference {spec!r}: expected FILE.py:FUNC")
        reference = load_object(spec, "a torch reference")
    else:  # a reference declared next to the component: REFERENCES = {NAME: run}
        declared = getattr(sys.modules.get(user_module_name(path)), "REFERENCES", None)
        reference = declared.get(name) if isinstance(declared, dict) else None
        spec = f"{path}:REFERENCES[{name!r}]"
        if reference is None:
            raise UsageError(f"--from {args.from_spec}: no torch reference to check it "
                             "against; give --reference FILE.py:FUNC, or a dict REFERENCES = "
                             f"{{{name!r}: FUNC}} in {path}: FUNC(values) -> results, the "
                             "component's names in and out (gradients as grad_<name>)")
    sizes = parse_dims(args.dims, tuple(c.dims), c.name) if args.dims else None
    try:
        return suite.validate_user(c, reference, args.device, dtype, args.backend, sizes)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--reference {spec}: {e}") from None


def cmd_claims(args) -> int:
    from symflop.report.claims import report
    print(report(plugin("symflop.claims", "claims"), args.format), end="")
    return 0


def cmd_table(args) -> int:
    from symflop.report.tables import latex_document, render
    if args.standalone and args.format != "latex":
        raise UsageError("--standalone makes a whole LaTeX document: use it with "
                         "--format latex")
    build = _pick(plugin("symflop.tables", "tables"), args.name, "table")
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


def cmd_identities(args) -> int:
    from symflop.report.identities import evaluate, installed, render
    items = evaluate(installed(), not args.no_numeric, tuple(args.names) or None)
    print(render(items, args.format))
    return 1 if any(i.numeric is not None and i.numeric.passed is False for i in items) else 0


def cmd_report(args) -> int:
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


def cmd_code(args) -> int:
    c, d = _derivation(args)
    if not d.sources:
        raise UsageError(f"{c.name} is a composite and has no generated code of its own; "
                         "its parts do (e.g. symflop code adam)")
    names = [args.pass_name] if args.pass_name else list(d.passes)
    for name in names:
        if name not in d.sources:
            raise UsageError(f"{c.name} has no pass {name!r} (passes: {', '.join(d.passes)})")
    print("\n".join(d.sources[name][0] for name in names), end="")
    return 0


def count_report(d: Derivation, dims: dict[str, int], convention: str, dtype: str,
                 stage: str = "optimized") -> dict:
    """Counts of every pass at ``stage``, each with its count as written beside it."""
    conv = conventions.get_convention(convention)
    staged = hasattr(d, "stages")
    stage = stage_name(stage)
    subs = {size_symbol(k): v for k, v in dims.items()}
    passes = {}
    for name in d.passes:
        cnt = d.counts(name, conv, stage)
        entry = {"total": str(cnt.total), "leading": str(cnt.leading),
                 "by_kind": {k: str(v) for k, v in cnt.by_kind.items()}}
        for key, other in (("as_written", as_written_stage(d, name)), ("code", "code")):
            cnt2 = d.counts(name, conv, other)
            entry[key] = {"total": str(cnt2.total), "leading": str(cnt2.leading)}
        free = {s.name for s in cnt.total.free_symbols}
        if free <= set(dims):
            sizes = {k: dims.get(k, 1) for k in d.dims}
            fn = d.count_function(name, conv, stage)
            entry["value"] = int(fn(**sizes))
            entry["by_kind_value"] = {k: int(v.xreplace(subs)) for k, v in cnt.by_kind.items()}
        passes[name] = entry
    memory = {"dtype": dtype}
    mem = d.memory_at(stage) if staged else d.memory
    for what, label in (("parameters", "parameters"), ("gradients", "gradients"),
                        ("state", "state"), ("saved", "saved_for_backward")):
        b = mem.bytes(what, dtype)
        item = {"bytes": str(b), "tensors": [n for n, _ in getattr(mem, what)]}
        if {s.name for s in b.free_symbols} <= set(dims):
            item["value"] = int(b.xreplace(subs))
        memory[label] = item
    temporaries = getattr(mem, "temporaries", ())
    if temporaries:
        memory["temporaries"] = {name: {"bytes": str(sp.expand(dtype_bytes(dtype) * n))}
                                 for name, n in temporaries}
    out = {"component": d.component, "convention": conv.name,
           "stage": stage, "symbols": list(d.dims),
           "dims": dims, "passes": passes, "memory": memory}
    if staged and d.tradeoffs:
        out["save_or_recompute"] = [
            {"point": tr.label, "backward_flops": str(tr.flops), "saved_elements": str(tr.saved),
             "saved_tensors": list(tr.tensors)} for tr in d.tradeoffs]
    return out


def roofline_report(d: Derivation, dims: dict[str, int], machine_text: str, convention: str,
                    dtype: str) -> dict:
    """Per pass of the lowered stage: bytes moved, FLOPs and the predicted time on a
    machine (``symflop.lower.roofline``), kernel by kernel."""
    if not getattr(d, "lowered", None):
        raise UsageError(f"{d.component} is a composite: roofline each component on its own")
    machine = parse_machine(machine_text)
    sizes = {k: dims[k] for k in dims}
    passes = {}
    for name in d.passes:
        flops = [cnt.total for _st, cnt in d.step_counts(name, convention, "lowered")]
        lw = d.lowered[name]
        kernels = predict(lw.program, flops, machine, sizes, dtype, lw.loops)
        passes[name] = {
            "bytes": sum(k.bytes for k in kernels), "flops": sum(k.flops for k in kernels),
            "seconds": sum(k.seconds for k in kernels),
            "kernels": [{"step": k.step, "bytes": k.bytes, "flops": k.flops,
                         "seconds": k.seconds, "bound": k.bound} for k in kernels]}
    return {"machine": machine.name, "bandwidth": machine.bandwidth, "peak": machine.peak,
            "source": machine.source, "dtype": dtype, "passes": passes}


def cmd_count(args) -> int:
    c, d = _derivation(args)
    dims = parse_dims(args.dims, d.dims, c.name)
    report = count_report(d, dims, args.convention, args.dtype, args.stage)
    if args.roofline:
        report["roofline"] = roofline_report(d, dims, args.roofline, args.convention,
                                             args.dtype)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{c.name} under convention {report['convention']}, stage "
          f"{stage_label(report['stage'])}"
          + (f" at {', '.join(f'{k}={v}' for k, v in dims.items())}" if dims else ""))
    width = max(9, *(len(n) for n in report["passes"]))
    for name, e in report["passes"].items():
        value = f" = {e['value']:,}" if "value" in e else ""
        also = "".join(f"; {label} {e[key]['leading']}"
                       for key, label in (("as_written", "as written"), ("code", "code"))
                       if e[key]["total"] != e["total"])
        print(f"  {name:<{width}} {e['total']}{value}   (leading {e['leading']}{also})")
    for label in ("parameters", "gradients", "state", "saved_for_backward"):
        m = report["memory"][label]
        value = f" = {m['value']:,}" if "value" in m else ""
        print(f"  {label.replace('_', ' ')}: {m['bytes']} bytes{value} ({args.dtype})")
    temps = {n: t["bytes"] for n, t in report["memory"].get("temporaries", {}).items()}
    if temps:
        print("  full-size temporaries of the code: "
              + ", ".join(f"{n} {b} bytes" for n, b in temps.items())
              + f" ({args.dtype}); and per loop a few cache-sized block buffers")
    for point in report.get("save_or_recompute", []) if len(report.get(
            "save_or_recompute", [])) > 1 else []:
        print(f"  backward if it {point['point']}s: {point['backward_flops']} FLOPs, saves "
              f"{point['saved_elements']} elements ({', '.join(point['saved_tensors'])})")
    if args.roofline:
        r = report["roofline"]
        print(f"roofline on {r['machine']}: {r['bandwidth'] / 1e9:.4g} GB/s, "
              f"{r['peak'] / 1e12:.4g} TFLOP/s{'; ' + r['source'] if r['source'] else ''}\n"
              f"  predicted time of each pass of the lowered (code) stage, {args.dtype}: "
              "the sum over its kernels of max(bytes/bandwidth, FLOPs/peak)")
        for name, e in r["passes"].items():
            bound = sorted({k["bound"] for k in e["kernels"]})
            print(f"  {name:<{width}} {e['bytes'] / 1e6:12,.3f} MB moved  "
                  f"{e['flops'] / 1e6:12,.3f} MFLOP  {e['seconds'] * 1e3:10.4f} ms  "
                  f"({'/'.join(bound) or 'no kernel'}-bound)")
    return 0


def cmd_summary(args) -> int:
    conv = conventions.get_convention(args.convention)
    stage = stage_name(args.stage)
    rows = []
    for name in catalogue():
        c = get_component(name)
        d = derive_any(c)
        for p in d.passes:
            cnt = d.counts(p, conv, stage)
            written = d.counts(p, conv, as_written_stage(d, p))
            mem = d.memory_at(stage) if hasattr(d, "memory_at") else d.memory
            rows.append({"component": name, "pass": p,
                         "leading": str(cnt.leading), "as_written": str(written.leading),
                         "exact": str(cnt.total),
                         "state_bytes": str(mem.bytes("state", args.dtype)),
                         "saved_bytes": str(mem.bytes("saved", args.dtype))})
    if args.json:
        print(json.dumps({"convention": conv.name, "stage": stage, "dtype": args.dtype,
                          "rows": rows}, indent=2))
        return 0
    print(f"convention: {conv.name} ({conv.description})\nstage: {stage}\n"
          f"dtype: {args.dtype}\n")
    cols = ("component", "pass", "leading", "as_written", "exact", "state_bytes",
            "saved_bytes")
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in cols}
    print("  ".join(f"{k:<{widths[k]}}" for k in cols))
    for r in rows:
        print("  ".join(f"{r[k]:<{widths[k]}}" for k in cols))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symflop", description=" ".join(__doc__.split("\n\n")[0].split()),
                epilog=" ".join(__doc__.split("\n\n")[1].split()))
    p.add_argument("--version", action="version", version=f"symflop {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def named(sp_):
        sp_.add_argument("name", nargs="?", help="component name (see `symflop list`)")
        sp_.add_argument("--from", dest="from_spec", metavar="FILE.py:NAME",
                         help="a component defined in a file of your own")

    def staged(sp_):
        sp_.add_argument("--stage", default="optimized",
                         help=f"which program to count: {', '.join(STAGES)} "
                              f"({', '.join(f'{k} = {v}' for k, v in ALIASES.items())}); "
                              "default optimized")

    def common(sp_, dims=False, optimizer=True):
        if optimizer:  # only where a composite can be named
            sp_.add_argument("--optimizer",
                             help="optimizer of a composite such as training-step")
        sp_.add_argument("--convention", default="default",
                         help=f"counting convention ({', '.join(conventions.CONVENTIONS)}; "
                              "when left out, the one named 'default')")
        sp_.add_argument("--dtype", default="float32",
                         help=f"element type for bytes ({', '.join(DTYPE_BYTES)}; default "
                              "float32)")
        if dims:
            sp_.add_argument("--dims", help="sizes, e.g. B=32,d=1000 (or B=1e3)")

    sub.add_parser("list", help="one line per component").set_defaults(func=cmd_list)
    s = sub.add_parser("show", help="equations, gradients, counts and memory of a component")
    named(s)
    s.add_argument("--latex", action="store_true", help="equations as LaTeX")
    s.add_argument("--stages", action="store_true",
                   help="each pass's count at every stage, with the rules that fired")
    common(s)
    staged(s)
    s.set_defaults(func=cmd_show)
    g = sub.add_parser("grad", help="fused gradient(s) of a component")
    named(g)
    g.add_argument("--wrt", help="one tensor only (default: every one differentiated)")
    g.add_argument("--latex", action="store_true", help="gradients as LaTeX")
    staged(g)
    g.set_defaults(func=cmd_grad)
    e = sub.add_parser("example", help="a worked example of the reference document")
    e.add_argument("name", nargs="?", help="example name (none: list them)")
    e.set_defaults(func=cmd_example)
    v = sub.add_parser("validate", help="check generated code against torch")
    v.add_argument("names", nargs="*", help="components (default: the whole catalogue)")
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the code and torch run (default cpu)")
    v.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="precision of the inputs and of both sides (default float64)")
    v.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="what runs the generated code: numpy, torch (eager, blocked "
                        "kernels) or torch-compiled (torch.compile); default torch")
    v.add_argument("--json", action="store_true", help="the rows as JSON")
    v.add_argument("--from", dest="from_spec", metavar="FILE.py:NAME",
                   help="a component of your own (needs --reference)")
    v.add_argument("--reference", metavar="FILE.py:FUNC",
                   help="torch reference of a --from component: run(values) -> results, "
                        "the component's names in and out, gradients as grad_<name>; or a "
                        "validation Reference")
    v.add_argument("--dims", help="sizes for a --from component, e.g. B=4,d=7 (default: "
                                  "small distinct sizes)")
    v.set_defaults(func=cmd_validate)
    cl = sub.add_parser("claims", help="the reference document's quantitative claims, "
                                       "checked against the derivations")
    cl.add_argument("--format", choices=("markdown", "json", "latex"), default="markdown",
                    help="default markdown")
    cl.set_defaults(func=cmd_claims)
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
    common(t, optimizer=False)
    staged(t)
    t.set_defaults(func=cmd_table)
    i = sub.add_parser("identities", help="identities the document states: proved or "
                                          "refuted (SymPy), checked (torch)")
    i.add_argument("names", nargs="*", help="identities (default: all of them)")
    i.add_argument("--format", choices=("text", "markdown", "json", "latex"), default="text",
                   help="default text")
    i.add_argument("--no-numeric", action="store_true", help="skip the torch checks")
    i.set_defaults(func=cmd_identities)
    r = sub.add_parser("report", help="write every table, plot, claim and identity, "
                                      "and report.tex / report.pdf (the main job)")
    r.add_argument("--out", default="symflop-report", help="folder (default ./symflop-report)")
    r.add_argument("--no-pdf", action="store_true", help="do not run pdflatex")
    r.set_defaults(func=cmd_report)
    k = sub.add_parser("code", help="generated NumPy/torch source of each pass (the lowered stage)")
    named(k)
    k.add_argument("--pass", dest="pass_name", help="one pass only (forward, backward, ...)")
    k.set_defaults(func=cmd_code)
    c = sub.add_parser("count", help="operation counts and memory of a component")
    named(c)
    c.add_argument("--json", action="store_true", help="the report as JSON")
    c.add_argument("--roofline", metavar="MACHINE",
                   help="predicted time per pass: a preset (h100, h200, a100), 'measure' "
                        "(this machine, now) or BANDWIDTH,PEAK in bytes/s,FLOP/s; needs --dims")
    common(c, dims=True)
    staged(c)
    c.set_defaults(func=cmd_count)
    m = sub.add_parser("summary", help="leading-order counts and memory of every component")
    m.add_argument("--json", action="store_true", help="the rows as JSON")
    common(m, optimizer=False)
    staged(m)
    m.set_defaults(func=cmd_summary)
    add_estimate_parser(sub)
    add_plan_parser(sub)
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
