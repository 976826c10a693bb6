"""Text and LaTeX views of a derivation: equations, gradients, counts, memory."""

from __future__ import annotations

import sympy as sp

from symflop.core.model import Component
from symflop.core.program import Step
from symflop.core.stages import STAGES, stage_label, stage_name
from symflop.cost.conventions import get_convention
from symflop.cost.memory import dtype_bytes
from symflop.derive import Derivation
from symflop.rewrite.fused import FusedGradient
from symflop.rewrite.rules import describe


def lhs_text(name: str, idx, latex: bool) -> str:
    if latex:
        from symflop.report.latex import expr_latex
        if not idx:
            return expr_latex(sp.Symbol(name))  # a multi-letter name upright, as a name
        return expr_latex(sp.IndexedBase(name)[tuple(sp.Symbol(k.name) for k in idx)])
    return f"{name}[{', '.join(map(str, idx))}]" if idx else name


def expr_text(e: sp.Expr, latex: bool) -> str:
    if not latex:
        return sp.sstr(e)
    # An Idx prints its range as a subscript (expr_latex prints plain names instead), and
    # a catalogue's abbreviations print as it registered them (lr as eta).
    from symflop.report.latex import expr_latex
    return expr_latex(e)


def step_text(st: Step, latex: bool) -> str:
    return f"{lhs_text(st.lhs, st.idx, latex)} = {expr_text(st.rhs(), latex)}"


def fused_text(f: FusedGradient, latex: bool) -> str:
    line = f"{lhs_text(f.name, f.idx, latex)} = {expr_text(f.expr, latex)}"
    if f.assumptions:
        line += ("  % " if latex else "    [assumes ") + "; ".join(f.assumptions) + \
            ("" if latex else "]")
    return line


def show_composite(comp, d, convention: str, dtype: str) -> str:
    conv = get_convention(convention)
    out = [f"{comp.name} ({comp.section}): {comp.summary}"]
    if comp.reference:
        out.append(f"reference: {comp.reference}")
    out.append("\nper-step FLOPs:")
    for label, flops in comp.network:
        out.append(f"  {label:<22} {flops}   (given: the network's own cost)")
    for name in d.passes[1:]:
        cnt = d.counts(name, conv)
        out.append(f"  {name:<22} {cnt.total}   (leading {cnt.leading})")
    total = d.counts("step", conv)
    out.append(f"  {'total':<22} {total.total}\n  {'leading order':<22} {total.leading}")
    out.append(f"\nmemory ({dtype}):")
    out.extend("  " + line for line in memory_lines(d, dtype))
    out.extend(f"  {note}" for note in comp.notes)
    return "\n".join(out)


def _tensor_text(t) -> str:
    """``x[B, d] input``; class labels by their own shape; a state's initial value."""
    shape = t.shape[:-1] if t.labels else t.shape
    text = f"{t.name}{'[' + ', '.join(map(str, shape)) + ']' if shape else ''} {t.role.value}"
    if t.labels:
        text += f" (class indices in 0..{t.shape[-1]}-1)"
    if t.initial is not None:
        text += f" (initially {t.initial:g})"
    return text


def show(c: Component, d: Derivation, latex: bool, convention: str, dtype: str,
         stage: str = "optimized") -> str:
    if hasattr(d, "composite"):
        return show_composite(c, d, convention, dtype)
    conv = get_convention(convention)
    name = stage_name(stage)
    out = [f"{c.name} ({c.section}): {c.summary}"]
    if c.reference:
        out.append(f"reference: {c.reference}")
    out.append("tensors: " + ", ".join(_tensor_text(t) for t in c.tensors.values()))
    out.append(f"stage: {stage_label(name)} (`symflop show {c.name} --stages` compares them)")
    for pass_name in d.stage(name).programs:
        out.append(f"\n{pass_name} pass:")
        for st, cnt in d.step_counts(pass_name, conv, name):
            out.append(f"  {step_text(st, latex)}{_implementation(st)}")
            out.append(f"      FLOPs {cnt.total}   ({_kinds(cnt.by_kind)})")
        total = d.counts(pass_name, conv, name)
        out.append(f"  total {total.total}; leading order {total.leading}")
    fused = d.fused_at(name)
    if fused:
        out.append("\nfused gradients:")
        out.extend(f"  {fused_text(f, latex)}" for f in fused.values())
    out.append(f"\nmemory ({dtype}, stage {stage_label(name)}):")
    out.extend("  " + line for line in memory_lines(d, dtype, name))
    return "\n".join(out)


def _implementation(st: Step) -> str:
    if st.gather:
        return "    [" + "; ".join(f"at the labels of {y.base} along {k}" for k, y in st.gather) \
            + ": a gather]"
    if st.scatter is not None:
        k, y, base = st.scatter
        return f"    [{base} plus values added at the labels of {y.base} along {k}: a scatter]"
    return ""


def stage_report(c: Component, d: Derivation, convention: str = "default",
                 exact: bool = True) -> str:
    """Each pass's count at every stage, with the rules that fired there (the way
    pystencils prints operation counts after each of its passes)."""
    conv = get_convention(convention)
    out = [f"{c.name}: FLOPs of each pass at each stage (convention {conv.name})"]
    width = max(len(stage_label(s)) for s in STAGES)
    for pass_name in d.passes:
        out.append(f"\n{pass_name}")
        for stage in d.stages:
            if pass_name not in stage.programs:
                continue
            cnt = d.counts(pass_name, conv, stage.name)
            value = cnt.total if exact else cnt.leading
            out.append(f"  {stage_label(stage.name):<{width}}  {value}")
            fired: dict[str, list[str]] = {}
            for rule_name, p, where in stage.fired:
                if p == pass_name:
                    fired.setdefault(rule_name, []).append(where)
            for rule_name, places in fired.items():
                out.append(f"  {'':<{width}}    {rule_name}: {', '.join(dict.fromkeys(places))}")
    if d.tradeoffs:
        out.append("\nsave or recompute (backward pass, default convention):")
        for tr in d.tradeoffs:
            out.append(f"  {tr.label:<10} FLOPs {tr.flops}; saved for backward {tr.saved} "
                       f"elements ({', '.join(tr.tensors) or 'nothing'})")
    rules_used = sorted({r for s in d.stages for r, _, _ in s.fired})
    if rules_used:
        out.append("\nrules:")
        out.extend(f"  {r}: {describe(r)}" for r in rules_used)
    return "\n".join(out)


def _kinds(by_kind: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in by_kind.items() if v != 0) or "none"


def memory_lines(d: Derivation, dtype: str, stage: str = "optimized") -> list[str]:
    m = d.memory_at(stage) if hasattr(d, "memory_at") else d.memory
    size = dtype_bytes(dtype)
    lines = []
    for label, what in (("parameters", "parameters"), ("gradients", "gradients"),
                        ("state", "state"), ("saved for backward", "saved")):
        items = getattr(m, what)
        detail = ", ".join(f"{n} {e}" for n, e in items) or "none"
        lines.append(f"{label}: {m.bytes(what, dtype)} bytes ({detail})")
    for name, e in m.moved:
        lines.append(f"moved by {name}: {sp.expand(size * e)} bytes (each step reads and writes "
                     "its tensors once)")
    return lines
