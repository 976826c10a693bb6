"""Reuse: rewrites of a whole program that share work between steps.

Normalizations, applied after every change because they never add work:

* ``propagate``: a step that is zero, a constant or a copy of another tensor is
  substituted into its readers; a step nothing reads is dropped;
* ``factor-reduction``: in ``sum_{c,s} gamma[g, c]*f[b, g, c, s]`` the factor that
  does not depend on ``s`` multiplies a partial sum: ``sum_c gamma*(sum_s f)``;
* ``shared-reduction``: two reductions of the same summand (up to index names and
  a factor outside the sum) are computed once; a reduction over more indices
  than another of the same summand sums the other's result
  (``dgamma[c] = sum_b P[b, c]`` with ``P[b, c] = sum_s dy*xhat``).

Moves, kept only where the program gets cheaper (``optimize``); the rules of kind
``moves`` of the reuse phase, here and in ``symflop.rewrite.reuse``:

* ``inline``: an elementwise intermediate is substituted into its readers
  (``grad_xhat = gamma*grad_y`` disappears into the sums that read it);
* ``common-subexpression``: a subexpression several steps compute becomes a step
  of its own (BatchNorm's ``x - mu``, read by the variance and by ``xhat``);
* ``reuse-definition`` (``symflop.rewrite.reuse``): what a forward step names is
  read back.

Summing a sum of terms term by term (``sum_i dy*(x - mu)`` as ``sum_i dy*x - mu*sum_i
dy``) would let the parts be shared, but it cancels badly in floating point when the
mean is large against the spread, so it is not a move.

A program's cost is (FLOPs, elements it reads from the forward pass, steps) at
the sizes of ``symflop.cost.counting.numeric_sizes``, compared in that order.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

import sympy as sp

from symflop.core.functions import draws_random
from symflop.core.model import Role, Tensor
from symflop.core.program import (
    Program,
    Step,
    index_symbols,
    label_inputs,
    ref_name,
    step_reads,
    tensor_refs,
    walk,
)
from symflop.cost.counting import program_names, step_cost, tensor_names
from symflop.cost.memory import elements
from symflop.rewrite.facts import split_factors, unify
from symflop.rewrite.rules import Context, rule, rules

MAX_ROUNDS = 40
MAX_TRIALS = 400  # moves tried per program (the catalogue stays well below: a test checks)


# -- reading and substituting ------------------------------------------------------------

reads = step_reads


def _untouched(steps: list[Step], start: int, stop: int, names: set[str]) -> bool:
    """No step in ``steps[start:stop]`` assigns any of ``names``."""
    return not any(s.lhs in names for s in steps[start:stop])


def _value(st: Step, ref: sp.Expr) -> sp.Expr:
    """The elementwise step ``st`` evaluated at the indices of ``ref``."""
    if not st.idx:
        return st.body
    return st.body.xreplace(dict(zip(st.idx, ref.indices)))


def substitute(reader: Step, st: Step, tensors) -> Step:
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


def _assigned_once(steps: list[Step], name: str) -> bool:
    return sum(1 for s in steps if s.lhs == name) == 1


def _elementwise(st: Step) -> bool:
    return not st.reduce and not st.gather and st.scatter is None


def try_inline(program: Program, n: int, ctx: Context) -> Program | None:
    """Substitute step ``n`` into every step that reads it, and drop it."""
    steps = list(program.steps)
    st = steps[n]
    if (st.lhs in ctx.keep or not _elementwise(st) or not _assigned_once(steps, st.lhs)
            or draws_random(st.body)):
        return None  # a random draw is drawn once, never recomputed
    readers = _readers(steps, n, program.tensors)
    if not readers:
        return None
    inputs = reads(st, program.tensors)
    if not all(_untouched(steps, n + 1, m, inputs) for m in readers):
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
            out = try_inline(program, n, ctx)
            if out is not None:
                program, changed = out, True
                break
    return drop_dead(name_by_output(program, ctx.keep), ctx.keep)


def name_by_output(program: Program, keep: frozenset[str]) -> Program:
    """An intermediate that an output only copies takes the output's name: the copy
    ``grad_gamma[j] = grad_var_red[j]`` goes, and the sum is computed as ``grad_gamma``
    where the other steps read it (a reader sees dgamma, not a name made up by a rule).
    The FLOPs are the same; only names change."""
    steps = list(program.steps)
    for n, st in enumerate(steps):
        refs = tensor_refs(st.body, program.tensors) if _elementwise(st) else []
        if st.lhs not in keep or len(refs) != 1 or st.body != refs[0] or \
                (st.idx and not isinstance(refs[0], sp.Indexed)):
            continue
        source = ref_name(refs[0])
        indices = tuple(refs[0].indices) if isinstance(refs[0], sp.Indexed) else ()
        defined = [m for m, s in enumerate(steps) if s.lhs == source]
        if (source in keep or indices != tuple(st.idx) or len(defined) != 1
                or defined[0] > n or not _assigned_once(steps, st.lhs)
                or program.tensors[source].shape != program.tensors[st.lhs].shape
                or any(st.lhs in reads(s, program.tensors) for s in steps[:n])):
            continue
        renamed = _rename(steps[:n] + steps[n + 1:], source, st.lhs, program.tensors)
        return name_by_output(Program(program.name, renamed, program.tensors), keep)
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
    if not _elementwise(st):
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


def _red_name(tensors: dict, stem: str) -> str:
    stem = re.sub(r"(_(cse|red)\d*)+$", "", stem)
    n = 1
    while True:
        name = f"{stem}_red" + (str(n) if n > 1 else "")
        if name not in tensors:
            return name
        n += 1


def _ordered(indices: set, space: tuple) -> tuple:
    return tuple(k for k in space if k in indices)


def factor_reductions(program: Program, ctx: Context) -> Program:
    """Sum first over the indices only the widest factors use (see module docstring)."""
    tensors = dict(program.tensors)
    steps: list[Step] = []
    changed = False
    names = tensor_names(tensors)
    for st in program.steps:
        trial = dict(tensors)
        split = _factor(st, trial) if st.reduce and st.reduce_op == "sum" \
            and not st.gather and st.scatter is None else None
        if split is not None and sum(step_cost(s, tensor_names(trial), ctx.sizes)
                                     for s in split) < step_cost(st, names, ctx.sizes):
            tensors = trial
            steps.extend(split)
            changed = True
            ctx.note("factor-reduction", st.lhs)
        else:
            steps.append(st)
    return Program(program.name, steps, tensors) if changed else program


def _factor(st: Step, tensors: dict) -> list[Step] | None:
    bound = set(st.reduce)
    coef, core = split_factors(st.body, bound)
    factors = sp.Mul.make_args(core)
    deps = {f: index_symbols(f) & bound for f in factors}
    full = [f for f in factors if deps[f] == bound]
    inner_k = {k for k in bound if all(deps[f] == bound for f in factors if k in deps[f])}
    if not full or not inner_k or inner_k == bound:
        return None
    inner = sp.Mul(*full)
    p_idx = _ordered(index_symbols(inner) - inner_k, st.space)
    name = _red_name(tensors, st.lhs)
    tensors[name] = Tensor(name, tuple(k.upper + 1 for k in p_idx), Role.INTERMEDIATE,
                           doc=f"partial sum of {st.lhs}")
    t = tensors[name]
    ref = t.symbol[p_idx] if p_idx else t.symbol
    outer = sp.Mul(coef, *[f for f in factors if f not in full], ref)
    return [Step(name, p_idx, inner, _ordered(inner_k, st.reduce)),
            Step(st.lhs, st.idx, outer, _ordered(bound - inner_k, st.reduce))]


def share_reductions(program: Program, ctx: Context) -> Program:
    """Compute each reduction of a summand once (see module docstring)."""
    changed = True
    while changed:
        changed = False
        reds = [n for n, st in enumerate(program.steps)
                if st.reduce and st.reduce_op == "sum" and not st.gather and st.scatter is None]
        keys = {n: _summand_key(program.steps[n]) for n in reds}
        for a in reds:
            for b in reds:
                if a == b or keys[a] != keys[b]:
                    continue
                out = _share(program, a, b, ctx)
                if out is not None:
                    program, changed = out, True
                    break
            if changed:
                break
    return program


def _share(program: Program, a: int, b: int, ctx: Context) -> Program | None:
    """Let reduction ``b`` read the sum of reduction ``a``'s summand (over as many or fewer
    indices): ``a`` itself when nothing multiplies its sum, else a new step holding the
    sum alone; ``a`` moves up before ``b`` if it comes later and can move."""
    steps = list(program.steps)
    sa, sb = steps[a], steps[b]
    coef_a, core_a = split_factors(sa.body, set(sa.reduce))
    coef_b, core_b = split_factors(sb.body, set(sb.reduce))
    if sa.lhs == sb.lhs or not _assigned_once(steps, sa.lhs):
        return None
    if _bases(core_a) != _bases(core_b):
        return None
    mapping = unify(core_a, core_b, set(sa.idx) | set(sa.reduce))
    if mapping is None or any(k not in mapping for k in sa.reduce):
        return None
    if a < b and not _untouched(steps, a + 1, b, reads(sa, program.tensors) | {sa.lhs}):
        return None  # what a read changes before b: b would read a stale sum
    summed = {mapping[k] for k in sa.reduce}
    if not summed <= set(sb.reduce) or not {mapping.get(k, k) for k in sa.idx} <= set(sb.space):
        return None
    tensors = dict(program.tensors)
    if coef_a != 1:  # the bare sum becomes a step of its own, read by both
        r_idx = _ordered(index_symbols(core_a) - set(sa.reduce), sa.space)
        if not set(sa.idx) <= set(r_idx) | index_symbols(coef_a) or not set(r_idx) <= set(
                sa.idx):
            return None
        name = _red_name(tensors, sa.lhs)
        tensors[name] = Tensor(name, tuple(k.upper + 1 for k in r_idx), Role.INTERMEDIATE,
                               doc=f"the sum {sa.lhs} scales")
        ref = tensors[name].symbol[r_idx] if r_idx else tensors[name].symbol
        steps[a:a + 1] = [Step(name, r_idx, core_a, sa.reduce),
                          Step(sa.lhs, sa.idx, coef_a * ref)]
        if b > a:
            b += 1
        sa, a, idx_a = steps[a], a, r_idx
    else:
        idx_a = sa.idx
    if a > b:  # a must be computed first: move it up, if what it reads is ready there
        if not _movable(steps, a, b, tensors):
            return None
        steps.insert(b, steps.pop(a))
        a, b = b, b + 1
    t = tensors[sa.lhs]
    ref = t.symbol[tuple(mapping.get(k, k) for k in idx_a)] if idx_a else t.symbol
    left = tuple(k for k in sb.reduce if k not in summed)
    steps[b] = replace(sb, body=coef_b * ref, reduce=left)
    ctx.note("shared-reduction", sb.lhs)
    return Program(program.name, steps, tensors)


@lru_cache(maxsize=1 << 14)
def _summand_key(st: Step) -> tuple[str, ...]:
    """The tensors a reduction's summand reads, with repeats: two reductions can share
    only if these agree (a cheap filter before ``unify``)."""
    return tuple(_bases(split_factors(st.body, set(st.reduce))[1]))


def _bases(expr: sp.Expr) -> list[str]:
    """The tensors an expression reads, with repeats: a cheap filter before ``unify``."""
    return sorted(r.base.label.name for r in expr.atoms(sp.Indexed))


def _movable(steps: list[Step], n: int, to: int, tensors) -> bool:
    """Can step ``n`` run at position ``to`` (< n): nothing between writes what it reads
    or touches what it writes."""
    st = steps[n]
    between = steps[to:n]
    if any(s.lhs in reads(st, tensors) or s.lhs == st.lhs for s in between):
        return False
    return not any(st.lhs in reads(s, tensors) for s in between)


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


@rule("dead-step", ("simplify", "reuse"), on="program")
def dead_step(program: Program, ctx: Context) -> Program | None:
    """A step that is zero, a constant or a copy is substituted into its readers, and a
    step nothing reads is dropped."""
    out = propagate(program, ctx)
    return None if out.steps == program.steps else out


@rule("factor-reduction", "reuse", on="program")
def factor_reduction(program: Program, ctx: Context) -> Program | None:
    """A factor that does not depend on some summed indices multiplies a partial sum
    over them: sum_{c,s} gamma[g, c]*f = sum_c gamma*(sum_s f)."""
    out = factor_reductions(program, ctx)
    return None if out is program else out


@rule("shared-reduction", "reuse", on="program")
def shared_reduction(program: Program, ctx: Context) -> Program | None:
    """Two reductions of the same summand are computed once; one over more indices sums
    the other's result."""
    out = share_reductions(program, ctx)
    return None if out is program else out


def normalize(program: Program, ctx: Context) -> Program:
    """The reuse phase's normalizations (never more work), in registration order."""
    program = plain_indices(propagate(program, ctx))
    for r in rules("reuse", "program"):
        out = r.apply(program, ctx)
        if out is not None:
            program = out
    return program


# -- moves and the search -----------------------------------------------------------------

def cost(program: Program, ctx: Context) -> tuple[int, int, int]:
    """(FLOPs, elements read from the forward pass, steps the engine made): a step the
    author named is never dropped only to save a step."""
    names = program_names(program)
    flops = sum(step_cost(st, names, ctx.sizes) for st in program.steps)
    made = sum(1 for st in program.steps if st.lhs not in ctx.named)
    return flops, saved_elements(program, ctx), made


def saved_elements(program: Program, ctx: Context) -> int:
    """Elements of the forward pass's tensors this program reads (what must be saved)."""
    made = {st.lhs for st in program.steps}
    as_labels = label_inputs(program)
    total = 0
    seen: set[str] = set()
    for st in program.steps:
        for name in reads(st, program.tensors):
            if name in made or name in seen or name not in ctx.forward:
                continue
            seen.add(name)
            t = program.tensors[name]
            if t.role in (Role.PARAMETER, Role.STATE, Role.HYPER):
                continue
            total += int(elements(t, name in as_labels).xreplace(ctx.sizes))
    return total


def _common_subexpressions(program: Program) -> list[sp.Expr]:
    """Subexpressions SymPy's cse finds in more than one step, that read tensors."""
    bodies = [st.body for st in program.steps if st.scatter is None]
    if len(bodies) < 2:
        return []
    try:
        pairs, _ = sp.cse(bodies, optimizations=None, order="none")
    except Exception:  # noqa: BLE001 - cse is a source of candidates only
        return []
    found, defs = [], {}
    for sym, e in pairs:
        full = e.xreplace(defs)
        defs[sym] = full
        if not isinstance(full, sp.Expr) or not index_symbols(full) \
                or not tensor_refs(full, program.tensors) \
                or isinstance(full, (sp.Indexed, sp.Symbol)):
            continue
        holders = [st for st in program.steps if contains(st.body, full)]
        if len(holders) >= 2:
            found.append(full)
    return found


def _parts(e: sp.Expr) -> list:
    return list(sp.Add.make_args(e) if isinstance(e, sp.Add) else sp.Mul.make_args(e))


def _subset(small: list, big: list) -> list | None:
    """``big`` without the elements of ``small`` (as multisets), or None."""
    rest = list(big)
    for x in small:
        if x not in rest:
            return None
        rest.remove(x)
    return rest


def contains(body: sp.Expr, expr: sp.Expr) -> bool:
    """Does ``body`` hold ``expr`` or ``-expr``, whole or as part of a sum or product?"""
    targets = [expr, -expr]
    for e in walk(body):
        if e in targets:
            return True
        for target in targets:
            if type(e) is type(target) and isinstance(e, (sp.Add, sp.Mul)) \
                    and _subset(_parts(target), _parts(e)) is not None:
                return True
    return False


def replace_sub(body: sp.Expr, expr: sp.Expr, ref: sp.Expr) -> sp.Expr:
    """``body`` with ``expr`` (and ``-expr``) replaced by ``ref``, also where ``expr`` is a
    part of a longer sum or product (SymPy flattens ``gamma*dy*xhat``)."""
    kind = type(expr)

    def fix(e: sp.Expr) -> sp.Expr:
        if e == expr:
            return ref
        if e == -expr:
            return -ref
        if isinstance(e, kind) and isinstance(e, (sp.Add, sp.Mul)):
            for sign in (1, -1):
                target = expr if sign == 1 else -expr
                if not isinstance(target, kind):
                    continue
                rest = _subset(_parts(target), _parts(e))
                if rest is not None:
                    return kind(sign * ref, *rest) if kind is sp.Add else \
                        kind(ref, *rest) * (1 if sign == 1 else -1)
        return e

    return body.replace(lambda e: isinstance(e, (kind, type(-expr))) or e == expr, fix)


def _index_order(expr: sp.Expr) -> tuple:
    """The free indices of ``expr`` in the order its widest tensor reference has them."""
    free = index_symbols(expr)
    refs = sorted(expr.atoms(sp.Indexed), key=lambda r: (-len(r.indices), sp.default_sort_key(r)))
    out: list = []
    for r in refs:
        out += [k for k in r.indices if k in free and k not in out]
    return tuple(out)


def try_share(program: Program, expr: sp.Expr, ctx: Context) -> Program | None:
    """``expr`` computed once, in a step of its own before its first reader."""
    steps = list(program.steps)
    holders = [n for n, st in enumerate(steps) if st.scatter is None and not st.gather
               and contains(st.body, expr)]
    if len(holders) < 2:
        return None
    first = holders[0]
    inputs = {ref_name(r) for r in tensor_refs(expr, program.tensors)}
    if not all(_untouched(steps, first, m, inputs) for m in holders):
        return None
    tensors = dict(program.tensors)
    stem = re.sub(r"(_(cse|red)\d*)+$", "", steps[first].lhs)
    n = 1
    while f"{stem}_cse" + (str(n) if n > 1 else "") in tensors:
        n += 1
    name = f"{stem}_cse" + (str(n) if n > 1 else "")
    idx = _index_order(expr)
    tensors[name] = Tensor(name, tuple(k.upper + 1 for k in idx), Role.INTERMEDIATE,
                           doc=f"{expr}, shared by {len(holders)} steps")
    ref = tensors[name].symbol[idx] if idx else tensors[name].symbol
    for m in holders:
        st = steps[m]
        steps[m] = replace(st, body=replace_sub(st.body, expr, ref))
    steps.insert(first, Step(name, idx, expr))
    return Program(program.name, steps, tensors)


def optimize(program: Program, ctx: Context) -> Program:
    """Normalize, then take the cheapest improving move until none improves (or the
    search has tried ``MAX_TRIALS`` moves: a bound that keeps large components fast and
    the result the same on every machine)."""
    program = normalize(program, ctx)
    best = cost(program, ctx)
    trials = 0
    for _ in range(MAX_ROUNDS):
        choice = None
        for label, move in _moves(program, ctx):
            trials += 1
            if trials > MAX_TRIALS:
                ctx.note("search-bound", f"{MAX_TRIALS} moves tried")
                break
            trial_ctx = _trial(ctx)
            out = move(trial_ctx)
            if out is None:
                continue
            out = normalize(out, trial_ctx)
            c = cost(out, ctx)
            if c < best and (choice is None or c < choice[0]):
                choice = (c, out, label, trial_ctx)
        if choice is None:
            return program
        best, program, label, trial_ctx = choice
        for entry in trial_ctx.fired:
            ctx.note(*entry)
        ctx.note(*label)
    return program


def _trial(ctx: Context) -> Context:
    return Context(ctx.tensors, ctx.facts, ctx.sizes, ctx.keep, ctx.forward, [],
                   ctx.assumptions, ctx.state, ctx.skip_definitions, ctx.named)


def _moves(program: Program, ctx: Context):
    for r in rules("reuse", "moves"):
        for where, move in r.apply(program, ctx):
            yield (r.name, where), move


@rule("search-bound", "reuse", on="moves")
def search_bound(program: Program, ctx: Context):
    """The search stopped after its bound on moves tried; a cheaper program may exist."""
    return iter(())


@rule("inline", "reuse", on="moves")
def inline_moves(program: Program, ctx: Context):
    """An elementwise intermediate is substituted into the steps that read it."""
    for n, st in enumerate(program.steps):
        if _elementwise(st) and st.lhs not in ctx.keep:
            yield st.lhs, (lambda c, n=n: try_inline(program, n, c))


@rule("common-subexpression", "reuse", on="moves")
def common_subexpression_moves(program: Program, ctx: Context):
    """A subexpression several steps compute becomes a step of its own, computed once."""
    for expr in _common_subexpressions(program):
        yield str(expr), (lambda c, e=expr: try_share(program, e, c))
