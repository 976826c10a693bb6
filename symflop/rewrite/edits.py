"""Program edits: the moves that change a program without changing what it computes.

Reading, substituting and dropping steps is what every rewrite of a whole program is
made of: the reuse rules (``symflop.rewrite.reuse``), the search over them
(``symflop.rewrite.search``), the pipeline (``symflop.rewrite.pipeline``) and the
lowering (``symflop.lower.plan``) all edit programs with these functions.

* ``substitute`` and ``try_inline``: an elementwise step's value is put into its readers;
* ``propagate``: a step that is zero, a constant or a copy of another tensor is
  substituted into its readers, an output that only copies an intermediate takes its
  name (``name_by_output``), a rule's partial sum takes the name of the output that
  sums it (``name_partial_sums``), and a step nothing reads is dropped (``drop_dead``);
* ``plain_indices``: summation indices get the plainest free name.
"""

from __future__ import annotations

import re
from dataclasses import replace

import sympy as sp

from symflop.core.functions import draws_random
from symflop.core.program import (
    Program,
    Step,
    index_symbols,
    ref_name,
    step_reads,
    tensor_refs,
)
from symflop.rewrite.rules import Context

# -- reading and substituting ------------------------------------------------------------

reads = step_reads


def untouched(steps: list[Step], start: int, stop: int, names: set[str]) -> bool:
    """No step in ``steps[start:stop]`` assigns any of ``names``."""
    return not any(s.lhs in names for s in steps[start:stop])


def _value(st: Step, ref: sp.Expr) -> sp.Expr:
    """The elementwise step ``st`` evaluated at the indices of ``ref``."""
    if not st.idx:
        return st.body
    return st.body.xreplace(dict(zip(st.idx, ref.indices)))


def substitute(reader: Step, st: Step, tensors: dict) -> Step:
    """``reader`` with every reference to what the elementwise step ``st`` assigns
    replaced by ``st``'s value there."""
    refs = [r for r in tensor_refs(reader.body, tensors) if ref_name(r) == st.lhs]
    body = reader.body.xreplace({r: _value(st, r) for r in refs})
    return replace(reader, body=body)


def _readers(steps: list[Step], n: int, tensors) -> list[int] | None:
    """Steps after ``n`` that read what step ``n`` assigns, before it is assigned again;
    None when a reader reads it as a one-hot tensor or a scatter's base."""
    name = steps[n].lhs
    out = []
    for m in range(n + 1, len(steps)):
        s = steps[m]
        if name in reads(s, tensors):
            if (s.scatter is not None and s.scatter[2] == name) or any(
                    y.base.label.name == name for _k, y in s.gather):
                return None
            if s.labelled and any(ref_name(r) == name and set(r.indices) & set(s.labelled)
                                  for r in tensor_refs(s.body, tensors)
                                  if isinstance(r, sp.Indexed)):
                return None
            out.append(m)
        if s.lhs == name:
            break
    return out


def assigned_once(steps: list[Step], name: str) -> bool:
    """Exactly one step of ``steps`` assigns ``name``."""
    return sum(1 for s in steps if s.lhs == name) == 1


def elementwise(st: Step) -> bool:
    """The step reduces nothing, gathers nothing and scatters nothing."""
    return not st.reduce and not st.gather and st.scatter is None


def try_inline(program: Program, n: int, keep: frozenset[str]) -> Program | None:
    """Substitute step ``n`` into every step that reads it, and drop it (unless ``keep``
    names it)."""
    steps = list(program.steps)
    st = steps[n]
    if (st.lhs in keep or not elementwise(st) or not assigned_once(steps, st.lhs)
            or draws_random(st.body)):
        return None  # a random draw is drawn once, never recomputed
    readers = _readers(steps, n, program.tensors)
    if not readers:
        return None
    inputs = reads(st, program.tensors)
    if not all(untouched(steps, n + 1, m, inputs) for m in readers):
        return None
    for m in readers:
        steps[m] = substitute(steps[m], st, program.tensors)
    del steps[n]
    return Program(program.name, steps, program.tensors)


# -- normalizations ---------------------------------------------------------------------

def propagate(program: Program, ctx: Context) -> Program:
    """Substitute zero, constant and copy steps into their readers; drop dead steps."""
    changed = True
    while changed:
        changed = False
        for n, st in enumerate(program.steps):
            if not _trivial(st, program.tensors):
                continue
            out = try_inline(program, n, ctx.keep)
            if out is not None:
                program, changed = out, True
                break
    named = name_partial_sums(name_by_output(program, ctx.keep), ctx.keep)
    return drop_dead(name_declared(named, ctx), ctx.keep)


def name_by_output(program: Program, keep: frozenset[str]) -> Program:
    """An intermediate that an output only copies takes the output's name: the copy
    ``grad_gamma[j] = grad_var_red[j]`` goes, and the sum is computed as ``grad_gamma``
    where the other steps read it (a reader sees dgamma, not a name made up by a rule).
    The FLOPs are the same; only names change."""
    steps = list(program.steps)
    for n, st in enumerate(steps):
        refs = tensor_refs(st.body, program.tensors) if elementwise(st) else []
        if st.lhs not in keep or len(refs) != 1 or st.body != refs[0] or \
                (st.idx and not isinstance(refs[0], sp.Indexed)):
            continue
        source = ref_name(refs[0])
        indices = tuple(refs[0].indices) if isinstance(refs[0], sp.Indexed) else ()
        defined = [m for m, s in enumerate(steps) if s.lhs == source]
        if (source in keep or indices != tuple(st.idx) or len(defined) != 1
                or defined[0] > n or not assigned_once(steps, st.lhs)
                or program.tensors[source].shape != program.tensors[st.lhs].shape
                or any(st.lhs in reads(s, program.tensors) for s in steps[:n])):
            continue
        renamed = _rename(steps[:n] + steps[n + 1:], source, st.lhs, program.tensors)
        return name_by_output(Program(program.name, renamed, program.tensors), keep)
    return program


# the tags a rule gives the names it makes (var_sum_cse, grad_var_red2)
RULE_TAGS = re.compile(r"(_(cse|red)\d*)+$")


def name_partial_sums(program: Program, keep: frozenset[str]) -> Program:
    """A partial sum a rule made and named after its first reader (``grad_var_red``)
    takes the name of the output that sums it up (``grad_gamma[c] = sum_i
    grad_gamma_red[i, c]``): it is part of dgamma, whatever else reads it.  Only
    names change."""
    steps = program.steps
    for st in steps:
        if st.lhs in keep or not st.reduce or not RULE_TAGS.search(st.lhs):
            continue
        totals = [s.lhs for s in steps if s.lhs in keep and s.reduce
                  and isinstance(s.body, (sp.Indexed, sp.Symbol))
                  and ref_name(s.body) == st.lhs]
        name = f"{totals[0]}_red" if len(totals) == 1 else None
        if name is None or name == st.lhs or name in program.tensors or any(
                s.lhs == name for s in steps):
            continue
        tensors = {**program.tensors, name: replace(program.tensors[st.lhs], name=name)}
        renamed = _rename(list(steps), st.lhs, name, tensors)
        return name_partial_sums(Program(program.name, renamed, tensors), keep)
    return program


# -- names the author declared ------------------------------------------------------------

def index_order(expr: sp.Expr) -> tuple:
    """The free indices of ``expr`` in the order its widest tensor reference has them."""
    free = index_symbols(expr)
    refs = sorted(expr.atoms(sp.Indexed), key=lambda r: (-len(r.indices), sp.default_sort_key(r)))
    out: list = []
    for r in refs:
        out += [k for k in r.indices if k in free and k not in out]
    return tuple(out)


def _by_position(expr: sp.Expr) -> sp.Expr:
    """``expr`` with its free indices named by their position (x[i, j] - mu[j] and
    x[a, b] - mu[b] are one term)."""
    return expr.xreplace({k: sp.Symbol(f"_index{n}") for n, k in
                          enumerate(index_order(expr))})


def _unfolded(expr: sp.Expr, declared: dict[str, sp.Expr]) -> sp.Expr:
    """``expr`` with each read of a declared shared term replaced by the term (the
    search may share ``var_eps`` before ``gamma/sqrt(var_eps)``: that is ``scale``)."""
    def term(ref: sp.Indexed) -> sp.Expr:
        body = declared[str(ref.base.label)]
        return body.xreplace(dict(zip(index_order(body), ref.indices)))
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and str(e.base.label) in declared,
                        term)


def declared_name(expr: sp.Expr, shared: tuple[tuple[str, sp.Expr], ...],
                   used: set[str]) -> str | None:
    """The author's name for ``expr`` (``Component.name_shared``), if no step of the
    program uses it."""
    if not shared:
        return None
    form = _by_position(_unfolded(expr, dict(shared)))
    return next((name for name, declared in shared
                 if name not in used and _by_position(declared) == form), None)


def name_declared(program: Program, ctx: Context) -> Program:
    """A term a rule computes once takes the name its author declared for it
    (``Component.name_shared``), whichever trial of the search made it and named it
    after a reader (``scale_cse``); only names change."""
    if not ctx.shared:
        return program
    for st in program.steps:
        if st.lhs in ctx.named or st.lhs in ctx.keep or not elementwise(st):
            continue
        used = {s.lhs for s in program.steps} | {
            ref_name(r) for s in program.steps for r in tensor_refs(s.body, program.tensors)}
        name = declared_name(st.body, ctx.shared, used)
        if name is None:
            continue
        tensors = {**program.tensors, name: replace(program.tensors[st.lhs], name=name)}
        steps = _rename(list(program.steps), st.lhs, name, tensors)
        return name_declared(Program(program.name, steps, tensors), ctx)
    return program


def _rename(steps: list[Step], old: str, new: str, tensors) -> list[Step]:
    symbol = tensors[new].symbol  # the output's own symbol, its assumptions with it
    out = []
    for s in steps:
        refs = [r for r in tensor_refs(s.body, tensors) if ref_name(r) == old]
        body = s.body.xreplace({r: symbol[r.indices] if isinstance(r, sp.Indexed)
                                else symbol for r in refs})
        out.append(replace(s, lhs=new if s.lhs == old else s.lhs, body=body))
    return out


def _trivial(st: Step, tensors) -> bool:
    if not elementwise(st):
        return False
    refs = tensor_refs(st.body, tensors)
    if not refs:
        return not index_symbols(st.body)  # a constant: hyperparameters and sizes only
    return len(refs) == 1 and st.body == refs[0]


def drop_dead(program: Program, keep: frozenset[str]) -> Program:
    """Keep only the steps whose values reach something in ``keep``."""
    needed = set(keep)
    kept: list[Step] = []
    for st in reversed(program.steps):
        if st.lhs not in needed:
            continue
        kept.append(st)
        needed.discard(st.lhs)
        needed |= reads(st, program.tensors)
    kept.reverse()
    return Program(program.name, kept, program.tensors)


def plain_indices(program: Program) -> Program:
    """Summation indices renamed to the plainest free name (i'' -> i), so that the same
    summand in two steps is written alike."""
    steps = []
    for st in program.steps:
        mapping = {}
        taken = {k.name for k in st.idx + st.labelled}
        for k in st.reduce:
            base = k.name.rstrip("'")
            if base != k.name and base not in taken and not any(
                    j.name == base for j in st.reduce if j != k):
                mapping[k] = sp.Idx(base, k.upper + 1)
                taken.add(base)
            else:
                taken.add(k.name)
        if mapping:
            st = replace(st, body=st.body.xreplace(mapping),
                         reduce=tuple(mapping.get(k, k) for k in st.reduce))
        steps.append(st)
    return Program(program.name, steps, program.tensors)
