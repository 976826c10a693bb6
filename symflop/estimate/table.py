"""An estimate as tables (text, Markdown, LaTeX) or one JSON document."""

from __future__ import annotations

import json

import sympy as sp

from symflop.core.ops import KINDS
from symflop.errors import UsageError
from symflop.estimate.result import Estimate, Line
from symflop.report.tables import Num, Seq, Table, cell_text, latex_document, render

FORMATS = ("text", "markdown", "latex", "json")
_NON_NETWORK = ("loss", "optimizer", "schedule")


def _key(path: str, depth: int | None) -> str:
    if depth is None or not path or path.startswith("("):
        return path
    return ".".join(path.split(".")[:depth])


def grouped(est: Estimate, depth: int | None) -> list[Line]:
    """The network's lines merged up to ``depth`` levels of module path (None: as traced)."""
    out: dict[str, Line] = {}
    for ln in est.lines:
        if ln.what in _NON_NETWORK:
            continue
        k = _key(ln.name, depth)
        g = out.get(k)
        if g is None:
            g = out[k] = Line(k, ln.what if k == ln.name else "")
        for attr in ("flops_forward", "flops_backward", "macs_forward", "macs_backward",
                     "saved_bytes", "integer"):
            setattr(g, attr, sp.expand(getattr(g, attr) + getattr(ln, attr)))
        for which in ("forward", "backward"):
            for kind, v in getattr(ln, which).items():
                # a convention may add a kind (fma fuses a multiply and an add)
                getattr(g, which)[kind] = sp.expand(getattr(g, which).get(kind, 0) + v)
        g.unknown += ln.unknown
        g.components += [c for c in ln.components if c not in g.components]
    return list(out.values())


def _fc_by_group(est: Estimate, depth: int | None) -> dict[str, int]:
    """FlopCounterMode's figure (forward + backward) for each row's module, children
    included, as FlopCounterMode nests them (its attribution of a module's own work is
    not reliable: it also gives a block's backward to a shortcut or to an identity
    module, such as Dropout(0), that the gradient passes through)."""
    return {path: f + b for path, (f, b) in (est.flop_counter or {}).items()
            if path == _key(path, depth)}


def _at(est: Estimate) -> str:
    return ", ".join(f"{n} = {v}" for n, v in est.hints.items())


def layer_table(est: Estimate, depth: int | None = None) -> Table:
    at = _at(est)
    fc_col = f"FlopCounterMode at {at} (with children)" \
        if est.flop_counter is not None or est.flop_counter_error else None
    cols = ("layer", "type", "forward FLOPs", "backward FLOPs", "saved for backward (bytes)",
            f"FLOPs at {at}") + ((fc_col,) if fc_col else ())
    t = Table("estimate-layers", f"{est.model}: one training step, by layer", cols,
              caption=f"FLOPs under the {est.convention} convention, as polynomials in "
                      f"{', '.join(est.symbols)}; the last columns evaluate them at {at}"
                      + ("; FlopCounterMode counts matrix products and convolutions only "
                         "(2 per multiply-add), a module with its children" if fc_col else "")
                      + ".")
    fc = _fc_by_group(est, depth) if fc_col else {}
    lines = grouped(est, depth) + [ln for ln in est.lines if ln.what in _NON_NETWORK]
    for ln in lines:
        row = [ln.name or "(model)", ln.what, _known(ln.flops_forward, ln, False),
               _known(ln.flops_backward, ln, True), ln.saved_bytes,
               _known(Num(est.at(ln.flops)), ln, None)]
        if fc_col:
            row.append(_fc_cell(est, fc.get(ln.name, 0)) if ln.what not in _NON_NETWORK
                       else "")
        t.add(*row)
    total = est.total("flops_forward") + est.total("flops_backward")
    step = Line("", "", unknown=[u for ln in est.lines for u in ln.unknown])
    row = ["training step", "", _known(est.total("flops_forward"), step, False),
           _known(est.total("flops_backward"), step, True), est.activation_bytes,
           _known(Num(est.at(total)), step, None)]
    if fc_col:
        row.append(_fc_cell(est, sum((est.flop_counter or {}).get("", (0, 0)))))
    t.add(*row)
    t.notes = tuple(summary_notes(est)) + tuple(
        f"unknown: {name or '(model)'}: {why}" for name, why in est.unknown)
    return t


def _fc_cell(est: Estimate, value: int):
    return "failed (see the notes)" if est.flop_counter_error else Num(value)


def summary_notes(est: Estimate) -> list[str]:
    """What a reader must know before the figures: operations left without a cost (every
    figure marked), sizes fitted, a comparison that failed."""
    from symflop.estimate.distributed import unknown_summary
    unknown = unknown_summary(est)
    out = [f"{unknown}: every figure that leaves them out says '+ unknown'"] if unknown \
        else ["every operation of the step has a cost"]
    return out + list(est.notes) + ([est.flop_counter_error] if est.flop_counter_error
                                    else [])


def _known(cell, line: Line, backward: bool | None):
    """A count that leaves out an unknown operation says so: never a silent 0."""
    missing = [u for u in line.unknown
               if backward is not False or not u.endswith("(backward only)")]
    return Seq((cell, "+ unknown"), " ") if missing else cell


def kind_table(est: Estimate) -> Table:
    net = [ln for ln in est.lines if ln.what not in _NON_NETWORK]
    parts = [("network forward", net, "forward"), ("network backward", net, "backward")]
    for what in _NON_NETWORK:
        lns = [ln for ln in est.lines if ln.what == what]
        if lns:
            parts.append((f"{what} (fwd + bwd)" if what == "loss" else what, lns, "both"))
    t = Table("estimate-kinds", f"{est.model}: operations by kind", ("kind",)
              + tuple(p[0] for p in parts),
              caption="Raw operation counts by kind (before a convention weighs them).")
    for kind in KINDS:
        cells = []
        for _label, lns, which in parts:
            sources = ("forward", "backward") if which == "both" else (which,)
            cell = sp.expand(sum((getattr(ln, w)[kind] for ln in lns for w in sources),
                                 sp.Integer(0)))
            cells.append(_known(cell, Line("", "", unknown=[u for ln in lns
                                                            for u in ln.unknown]),
                                which == "backward") if which != "both" else cell)
        t.add(kind, *cells)
    integer = sp.expand(sum((ln.integer for ln in net), sp.Integer(0)))
    if integer != 0:
        t.add("integer, boolean (not FLOPs)", integer, *[""] * (len(parts) - 1))
    return t


def _peaks(est: Estimate, s) -> dict:
    """The peaks of the step timeline (MemTracker's category names), for JSON."""
    out: dict[str, object] = {"optimizer_impl": est.optimizer_impl}
    for prefix, peak in (("", est.peak), ("first_step_", est.first_step_peak)):
        if peak is not None:
            out[f"{prefix}peak"] = s(peak.total)
            out[f"{prefix}peak_by_category"] = {k: s(v) for k, v in peak.by_category.items()}
            out[f"{prefix}peak_where"] = peak.where
    return out


def memory_table(est: Estimate) -> Table:
    at = _at(est)
    t = Table("estimate-memory", f"{est.model}: training memory", ("what", "bytes",
                                                                     f"MiB at {at}"),
              caption=f"Parameters and gradients as stored; {est.optimizer} state as the "
                      "catalogue's optimizer keeps it per parameter tensor; saved for "
                      "backward: each storage once.")
    rows = [("parameters", sp.Integer(est.parameter_bytes)),
            ("gradients", sp.Integer(est.gradient_bytes)),
            (f"{est.optimizer} state", est.state_bytes),
            ("saved for backward", est.activation_bytes),
            ("total", est.memory_bytes)]
    for label, peak in (("peak, first step", est.first_step_peak),
                        ("peak, later steps", est.peak)):
        if peak is not None:
            rows.append((label, peak.total))
            t.notes = (*t.notes, f"{label}, in the {peak.where}: " + ", ".join(
                           f"{k} {est.at(v) / 2 ** 20:,.2f}"
                           for k, v in peak.by_category.items() if v != 0) + " MiB")
    step = Line("", "", unknown=[u for _n, u in est.unknown])
    for what, b in rows:
        partial = what in ("saved for backward", "total") or what.startswith("peak")
        t.add(what, _known(b, step, None) if partial else b,
              _known(Num(est.at(b) / 2 ** 20, ",.1f"), step, None) if partial
              else Num(est.at(b) / 2 ** 20, ",.1f"))
    return t


def _text(t: Table) -> str:
    cells = [[cell_text(c) for c in t.columns]] + [[_plain(c) for c in r] for r in t.rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(t.columns))]
    lines = [t.title, ""]
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k > 0 and _numeric(c) else c.ljust(w)
                               for k, (c, w) in enumerate(zip(r, widths, strict=True)))
                     .rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if t.caption:
        lines += ["", t.caption]
    lines += [f"* {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def _plain(c) -> str:
    if isinstance(c, Seq):
        return c.sep.join(_plain(x) for x in c.items)
    return c.text() if isinstance(c, Num) else cell_text(c)


def _numeric(s: str) -> bool:
    return s.replace(",", "").replace(".", "").isdigit()


def communication_table(est: Estimate) -> Table:
    """The collectives one tensor-parallel device runs in a step, with their bytes."""
    tp = est.tensor_parallel
    t = Table("communication", f"Collectives of one device: {tp.describe()}",
              ("Module", "Pass", "Collective", "Bytes", f"At {_at(est)}", "Of what"),
              caption="Bytes: the whole tensor's (a ring over t devices sends (t-1)/t of "
                      "a reduce-scatter's or an all-gather's, twice that of an "
                      "all-reduce's).")
    for c in est.communication:
        t.add(c.module, c.phase, c.kind, sp.expand(c.bytes), est.at(c.bytes), c.why)
    return t


def to_json(est: Estimate, depth: int | None = None) -> str:
    def s(e) -> str:
        return str(sp.expand(e))

    lines = grouped(est, depth) + [ln for ln in est.lines if ln.what in _NON_NETWORK]
    doc = {
        "model": est.model, "convention": est.convention,
        "symbols": list(est.symbols), "hints": est.hints,
        "parameters": est.parameters, "optimizer": est.optimizer, "loss": est.loss,
        "optimizer_impl": est.optimizer_impl,
        "lines": [{"name": ln.name, "type": ln.what,
                   "forward": {k: s(v) for k, v in ln.forward.items()},
                   "backward": {k: s(v) for k, v in ln.backward.items()},
                   "flops_forward": s(ln.flops_forward),
                   "flops_backward": s(ln.flops_backward),
                   "macs_forward": s(ln.macs_forward), "macs_backward": s(ln.macs_backward),
                   "saved_bytes": s(ln.saved_bytes), "components": ln.components,
                   "integer": s(ln.integer),
                   "unknown": ln.unknown} for ln in lines],
        "total": {"flops_forward": s(est.total("flops_forward")),
                  "flops_backward": s(est.total("flops_backward"))},
        "memory": {"parameters": est.parameter_bytes, "gradients": est.gradient_bytes,
                   "state": s(est.state_bytes), "saved": s(est.activation_bytes),
                   "total": s(est.memory_bytes), **_peaks(est, s)},
        "flop_counter": {k: list(v) for k, v in (est.flop_counter or {}).items()},
        "unknown": [list(u) for u in est.unknown],
        "unknown_count": len(est.unknown),
        "integer_operations": s(sum((ln.integer for ln in est.lines), sp.Integer(0))),
        "notes": summary_notes(est),
        "flop_counter_error": est.flop_counter_error,
        "fitted": list(est.fitted),
        "per_device": est.tensor_parallel.describe() if est.tensor_parallel else None,
        "communication": [{"module": c.module, "phase": c.phase, "kind": c.kind,
                           "bytes": s(c.bytes), "why": c.why} for c in est.communication],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def render_estimate(est: Estimate, fmt: str = "text", depth: int | None = None,
                    standalone: bool = False, extra: list[Table] | None = None) -> str:
    """The three tables in ``fmt`` (and ``extra`` tables after them); LaTeX
    ``standalone``: a document that compiles."""
    extra = extra or []
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if standalone and fmt != "latex":
        raise UsageError("--standalone goes with --format latex")
    if fmt == "json":
        doc = json.loads(to_json(est, depth))
        for t in extra:
            doc[t.name] = json.loads(render(t, "json"))
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    tables = [layer_table(est, depth), kind_table(est), memory_table(est),
              *([communication_table(est)] if est.communication else []), *extra]
    if standalone:
        return latex_document(tables)
    if fmt == "text":
        return "\n".join(_text(t) for t in tables)
    return "\n".join(render(t, fmt) for t in tables)


class ShownEstimate(Estimate):
    """The estimate ``symflop.estimate.estimate`` returns: an ``Estimate`` that Jupyter
    shows as its tables, by the model's children."""

    def _repr_markdown_(self) -> str:
        return render_estimate(self, "markdown", depth=1)
