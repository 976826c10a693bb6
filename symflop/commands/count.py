"""``symflop count`` and ``summary``: a component's counts and memory, at given sizes and
on a machine's roofline, and the catalogue's leading orders; with the JSON reports that
``count`` prints (``count_report``, ``roofline_report``)."""

from __future__ import annotations

import argparse
import json

import sympy as sp

from symflop.commands.common import (
    add_count_options,
    add_name_arguments,
    add_stage_argument,
    derivation,
    parse_dims,
)
from symflop.compose import derive_any
from symflop.core.model import size_symbol
from symflop.core.stages import as_written_stage, stage_label, stage_name
from symflop.cost import conventions
from symflop.cost.memory import dtype_bytes
from symflop.derive import Derivation
from symflop.errors import UsageError
from symflop.lower.roofline import parse_machine, predict
from symflop.registry import catalogue, get_component


def count_report(d: Derivation, dims: dict[str, int], convention: str, dtype: str,
                 stage: str = "optimized") -> dict:
    """Counts of every pass at ``stage``, each with its count as written beside it."""
    conv = conventions.get_convention(convention)
    staged = hasattr(d, "stages")
    stage = stage_name(stage)
    subs = {size_symbol(k): v for k, v in dims.items()}
    passes: dict[str, dict] = {}
    for name in d.passes:
        cnt = d.counts(name, conv, stage)
        entry: dict[str, object] = {"total": str(cnt.total), "leading": str(cnt.leading),
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
    memory: dict[str, object] = {"dtype": dtype}
    mem = d.memory_at(stage) if staged else d.memory
    for what, label in (("parameters", "parameters"), ("gradients", "gradients"),
                        ("state", "state"), ("saved", "saved_for_backward")):
        b = mem.bytes(what, dtype)
        item: dict[str, object] = {"bytes": str(b), "tensors": [n for n, _ in getattr(mem, what)]}
        if {s.name for s in b.free_symbols} <= set(dims):
            item["value"] = int(b.xreplace(subs))
        memory[label] = item
    temporaries = getattr(mem, "temporaries", ())
    if temporaries:
        memory["temporaries"] = {name: {"bytes": str(sp.expand(dtype_bytes(dtype) * n))}
                                 for name, n in temporaries}
    out: dict[str, object] = {"component": d.component, "convention": conv.name,
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


def cmd_count(args: argparse.Namespace) -> int:
    c, d = derivation(args)
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
        _print_roofline(report["roofline"], args.dtype, width)
    return 0


def _print_roofline(r: dict, dtype: str, width: int) -> None:
    """``count --roofline``'s lines: the machine, then each pass's bytes, FLOPs and time."""
    print(f"roofline on {r['machine']}: {r['bandwidth'] / 1e9:.4g} GB/s, "
          f"{r['peak'] / 1e12:.4g} TFLOP/s{'; ' + r['source'] if r['source'] else ''}\n"
          f"  predicted time of each pass of the lowered (code) stage, {dtype}: "
          "the sum over its kernels of max(bytes/bandwidth, FLOPs/peak)")
    for name, e in r["passes"].items():
        bound = sorted({k["bound"] for k in e["kernels"]})
        print(f"  {name:<{width}} {e['bytes'] / 1e6:12,.3f} MB moved  "
              f"{e['flops'] / 1e6:12,.3f} MFLOP  {e['seconds'] * 1e3:10.4f} ms  "
              f"({'/'.join(bound) or 'no kernel'}-bound)")


def cmd_summary(args: argparse.Namespace) -> int:
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


def add_count_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("count", help="operation counts and memory of a component")
    add_name_arguments(c)
    c.add_argument("--json", action="store_true", help="the report as JSON")
    c.add_argument("--roofline", metavar="MACHINE",
                   help="predicted time per pass: a preset (h100, h200, a100), 'measure' "
                        "(this machine, now) or BANDWIDTH,PEAK in bytes/s,FLOP/s; needs --dims")
    add_count_options(c, dims=True)
    add_stage_argument(c)
    c.set_defaults(func=cmd_count)


def add_summary_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("summary", help="leading-order counts and memory of every component")
    m.add_argument("--json", action="store_true", help="the rows as JSON")
    add_count_options(m, optimizer=False)
    add_stage_argument(m)
    m.set_defaults(func=cmd_summary)
