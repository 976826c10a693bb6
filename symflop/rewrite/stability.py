"""Stabilize: rewrites that make the code safe in floating point, as PyTensor's
"stabilize" rewrites do.  The equations stay mathematical (a log of a sum of
exponentials); this phase runs once, after differentiation and reuse, and what it
adds is counted at its own stage:

* ``logsumexp``: a sum of exponentials ``s = sum_k exp(u)`` becomes
  ``m = max_k u``, ``sum_k exp(u - m)`` and ``lse = log(sum) + m``; every later use of
  ``s`` (in this pass or a later one) reads ``exp(lse)``;
* ``combine-exp``: exponentials are combined (``exp(z)*exp(-lse) -> exp(z - lse)``, a
  softmax that cannot overflow);
* ``inline-underflowing``: an elementwise step holding ``exp(-lse)`` (which
  underflows on its own) is substituted into the steps that read it;
* ``stable-logs``: ``log(1/x) -> -log(x)``, ``log(1 + exp(u)) -> softplus(u)``,
  ``log(1 + u) -> log1p(u)``;
* ``center-logsumexp``: a cross-entropy's ``sum_i lse_i - sum_i sum_k w_ik u_ik`` (rows of
  ``w`` summing to one: a one-hot label or a distribution) becomes
  ``sum_i log(s_i) - sum_i sum_k w_ik (u_ik - m_i)``: the same value, but a common
  offset of the logits cancels in each term instead of between two large sums.

The same ``stable-logs`` rewrite is a rule of the differentiate phase too: applied
to the forward equations before reverse mode, it makes the derived gradients
stable (the derivative of softplus is a sigmoid, which cannot overflow).
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symflop.core.functions import log1p, softplus
from symflop.core.model import Fact, Role, Tensor
from symflop.core.program import Program, Step, ref_indices, ref_name, tensor_refs, walk
from symflop.rewrite.rules import Context, rule


def rewrite_logs(e: sp.Expr, ctx: Context | None = None, where: str = "") -> sp.Expr:
    """``log(1/x) -> -log(x)``, ``log(1 + exp(u)) -> softplus(u)``, ``log(1 + u) -> log1p(u)``.

    ``log(1 - 1/(1 + exp(-z)))`` is first brought over a common denominator, so
    that both halves of a binary cross-entropy become softplus terms.
    """
    if not e.has(sp.log):
        return e

    def note(name: str) -> None:
        if ctx is not None:
            ctx.note(name, where)

    def fix(x):
        arg = x.args[0]
        if isinstance(arg, sp.Add) and sp.S.One in arg.args:
            rest = arg - 1
            if isinstance(rest, sp.exp):
                note("softplus")
                return softplus(rest.args[0])
            combined = sp.together(arg)
            if not isinstance(combined, sp.Add):
                return rewrite_logs(sp.log(combined), ctx, where)
            note("log1p")
            return log1p(rest)
        if isinstance(arg, (sp.Mul, sp.Pow)):
            expanded = sp.expand_log(x)  # only where SymPy can show the factors positive
            if expanded != x:
                note("log-reciprocal")
                return rewrite_logs(expanded, ctx, where)
        return x

    return e.replace(lambda x: isinstance(x, sp.log), fix)


@rule("stable-logs-before-autodiff", "differentiate", on="program")
def stable_logs_before_autodiff(program: Program, ctx: Context) -> Program | None:
    """The forward's logs made stable before reverse mode, so that gradients are too."""
    steps = [replace(st, body=rewrite_logs(st.body)) for st in program.steps]
    if steps == program.steps:
        return None
    for old, new in zip(program.steps, steps):
        if old != new:
            ctx.note("stable-logs-before-autodiff", new.lhs)
    return Program(program.name, steps, program.tensors)


@rule("stable-logs", "stabilize", on="program")
def stable_logs(program: Program, ctx: Context) -> Program | None:
    """log(1/x) -> -log(x), log(1 + exp(u)) -> softplus(u), log(1 + u) -> log1p(u)."""
    steps = [replace(st, body=rewrite_logs(st.body, ctx, st.lhs)) for st in program.steps]
    return None if steps == program.steps else Program(program.name, steps, program.tensors)


@rule("logsumexp", "stabilize", on="program")
def logsumexp(program: Program, ctx: Context) -> Program | None:
    """sum_k exp(u) -> exp(max_k u + log sum_k exp(u - max_k u)), read as exp(lse)."""
    replaced: dict[str, str] = ctx.state.setdefault("lse", {})
    tensors = dict(program.tensors)
    for lse in replaced.values():
        tensors.setdefault(lse, ctx.state["lse_tensors"][lse])
    steps: list[Step] = []
    changed = False
    for st in program.steps:
        body = _read_lse(st.body, replaced, tensors)
        if body != st.body:
            st, changed = replace(st, body=body), True
        if not (st.reduce and st.reduce_op == "sum" and not st.gather and st.scatter is None
                and isinstance(st.body, sp.exp)):
            steps.append(st)
            continue
        u = st.body.args[0]
        names = {k: f"{st.lhs}_{k}" for k in ("max", "shifted", "lse")}
        for key, name in names.items():
            tensors[name] = Tensor(name, tensors[st.lhs].shape, Role.INTERMEDIATE,
                                   doc=f"{key} of the log-sum-exp of {st.lhs}")
        m, s, lse = (tensors[names[k]].symbol for k in ("max", "shifted", "lse"))
        def at(t, idx=st.idx):
            return t[idx] if idx else t

        steps.append(Step(names["max"], st.idx, u, st.reduce, reduce_op="max"))
        steps.append(Step(names["shifted"], st.idx, sp.exp(u - at(m)), st.reduce))
        steps.append(Step(names["lse"], st.idx, sp.log(at(s)) + at(m)))
        ctx.state.setdefault("lse_parts", {})[names["lse"]] = (names["max"], names["shifted"],
                                                                u, st.reduce)
        replaced[st.lhs] = names["lse"]
        for name in names.values():  # a later pass (the backward) may read any of them
            ctx.state.setdefault("lse_tensors", {})[name] = tensors[name]
        if st.lhs in ctx.keep:  # the sum itself is an output: give it back
            steps.append(Step(st.lhs, st.idx, sp.exp(at(lse))))
        ctx.note("logsumexp", st.lhs)
        changed = True
    if not changed:
        return None
    return Program(program.name, steps, tensors)


def _read_lse(body: sp.Expr, replaced: dict[str, str], tensors) -> sp.Expr:
    """Every reference to a replaced sum of exponentials ``s`` read as ``exp(lse)``."""
    if not replaced:
        return body
    mapping = {}
    for r in tensor_refs(body, tensors):
        name = ref_name(r)
        if name in replaced:
            lse = tensors[replaced[name]].symbol
            idx = ref_indices(r)
            mapping[r] = sp.exp(lse[idx] if idx else lse)
    return body.xreplace(mapping) if mapping else body


def _lse_names(ctx: Context) -> set[str]:
    return set(ctx.state.get("lse", {}).values())


def _has_lse_exp(body: sp.Expr, lse_names: set[str], tensors, negative=False) -> bool:
    """Does ``body`` hold ``exp(... lse ...)`` (with ``negative``: ``exp(-lse + ...)``)?"""
    return any(isinstance(a, sp.exp)
               and (not negative or a.args[0].could_extract_minus_sign())
               and any(ref_name(r) in lse_names for r in tensor_refs(a.args[0], tensors))
               for a in walk(body))


@rule("combine-exp", "stabilize", on="program")
def combine_exp(program: Program, ctx: Context) -> Program | None:
    """exp(z)*exp(-lse) -> exp(z - lse): a softmax that cannot overflow."""
    names = _lse_names(ctx)
    steps = []
    for st in program.steps:
        if _has_lse_exp(st.body, names, program.tensors):
            new = sp.powsimp(st.body, combine="exp")
            if new != st.body:
                ctx.note("combine-exp", st.lhs)
                st = replace(st, body=new)
        steps.append(st)
    return None if steps == program.steps else Program(program.name, steps, program.tensors)


@rule("inline-underflowing", "stabilize", on="program")
def inline_underflowing(program: Program, ctx: Context) -> Program | None:
    """An elementwise step holding exp(-lse) is substituted into its readers."""
    names = _lse_names(ctx)
    tensors = program.tensors
    steps = list(program.steps)
    out: list[Step] = []
    changed = False
    for n, st in enumerate(steps):
        underflows = _has_lse_exp(st.body, names, tensors, negative=True)
        if st.reduce or st.gather or st.scatter is not None or st.lhs in ctx.keep \
                or not underflows:
            out.append(st)
            continue
        if any(s.scatter is not None and s.scatter[2] == st.lhs for s in steps[n + 1:]):
            out.append(st)  # a scatter adds into it: it stays a tensor
            continue
        readers = [m for m in range(n + 1, len(steps))
                   if any(ref_name(r) == st.lhs for r in tensor_refs(steps[m].body, tensors))]
        reads = {ref_name(r) for r in tensor_refs(st.body, tensors)}
        if any(steps[m].lhs in reads | {st.lhs}
               for m in range(n + 1, max(readers, default=n) + 1)):
            out.append(st)  # an input changes before a reader: inlining would read it late
            continue
        for m in readers:
            later = steps[m]
            mapping = {}
            for r in tensor_refs(later.body, tensors):
                if ref_name(r) == st.lhs:
                    mapping[r] = st.body.xreplace(dict(zip(st.idx, ref_indices(r))))
            body = sp.powsimp(later.body.xreplace(mapping), combine="exp")
            steps[m] = replace(later, body=body)
        ctx.note("inline-underflowing", st.lhs)
        changed = True
        if not readers and tensors[st.lhs].role is not Role.INTERMEDIATE:
            out.append(st)
    return Program(program.name, out, tensors) if changed else None


def _alias_of(name: str, program: Program, parts: dict) -> str | None:
    """The log-sum-exp that tensor ``name`` is (itself, or a step that copies it)."""
    for _ in range(len(program.steps) + 1):
        if name in parts:
            return name
        st = next((x for x in program.steps if x.lhs == name), None)
        if st is None or st.reduce or st.gather or st.scatter is not None:
            return None
        refs = list(tensor_refs(st.body, program.tensors))
        if len(refs) != 1 or st.body != refs[0]:
            return None
        name = ref_name(refs[0])
    return None


def _weighted_logits(st: Step, u: sp.Expr, k: sp.Idx, tensors) -> bool:
    """Is ``st`` the sum over the batch of sum_k w_ik u_ik with rows of w summing to one
    (read at a one-hot label, or a dense distribution)?"""
    if st.scatter is not None or st.reduce_op != "sum":
        return False
    if st.gather:
        (kg, _y), = st.gather
        return not st.idx and st.body == u.xreplace({k: kg})
    if k not in st.reduce or st.idx or not isinstance(st.body, sp.Mul):
        return False
    rest = st.body / u
    refs = list(tensor_refs(rest, tensors))
    return len(refs) == 1 and rest == refs[0] and ref_indices(refs[0])[-1:] == (k,) \
        and tensors[ref_name(refs[0])].has(Fact.ROWS_SUM_TO_ONE)


@rule("center-logsumexp", "stabilize", on="program")
def center_logsumexp(program: Program, ctx: Context) -> Program | None:
    """sum_i lse_i - sum_ik w_ik u_ik -> sum_i log s_i - sum_ik w_ik (u_ik - m_i): a common
    offset of the logits cancels per sample, not between two large sums."""
    parts = ctx.state.get("lse_parts", {})
    tensors = program.tensors
    steps = list(program.steps)
    by_name = {st.lhs: n for n, st in enumerate(steps)}
    for lse, (mx, shifted, u, reduce) in parts.items():
        if lse not in by_name or len(reduce) != 1:
            continue
        k = reduce[0]
        lse_step = steps[by_name[lse]]
        if lse_step.idx != tuple(ref_indices(next(iter(
                tensor_refs(lse_step.body, tensors))))) or len(lse_step.idx) != 1:
            continue
        i = lse_step.idx[0]
        totals = [st for st in steps if st.reduce == (i,) and not st.idx and not st.gather
                  and st.scatter is None and st.reduce_op == "sum"
                  and (refs := list(tensor_refs(st.body, tensors))) and len(refs) == 1
                  and st.body == refs[0] and _alias_of(ref_name(refs[0]), program, parts) == lse]
        weighted = [st for st in steps if st.reduce[:1] == (i,)
                    and _weighted_logits(st, u, k, tensors)]
        if len(totals) != 1 or len(weighted) != 1:
            continue
        p1, p2 = totals[0], weighted[0]
        if {p1.lhs, p2.lhs} & ctx.keep or not _only_as_difference(steps, p1, p2, tensors):
            continue
        log_name = f"{lse}_log"
        if log_name in tensors:
            continue
        tensors = {**tensors, log_name: Tensor(log_name, tensors[lse].shape, Role.INTERMEDIATE,
                                               doc=f"log of the shifted sum of {lse}")}
        t_log = tensors[log_name].symbol[i]
        s_ref, m_ref = tensors[shifted].symbol[i], tensors[mx].symbol[i]
        n = by_name[lse]
        steps[n] = replace(lse_step, body=t_log + m_ref)
        steps.insert(n, Step(log_name, (i,), sp.log(s_ref)))
        at = {st.lhs: m for m, st in enumerate(steps)}
        steps[at[p1.lhs]] = replace(p1, body=t_log)
        if p2.gather:
            steps[at[p2.lhs]] = replace(p2, body=p2.body - m_ref)
        else:
            w = p2.body / u
            steps[at[p2.lhs]] = replace(p2, body=w * (u - m_ref))
        ctx.note("center-logsumexp", p2.lhs)
        return Program(program.name, steps, tensors)
    return None


def _only_as_difference(steps: list[Step], p1: Step, p2: Step, tensors) -> bool:
    """Every step that reads ``p1`` or ``p2`` reads ``p1 - p2`` (times anything)."""
    a, b = tensors[p1.lhs].symbol, tensors[p2.lhs].symbol
    readers = [st for st in steps if any(ref_name(r) in (p1.lhs, p2.lhs)
                                         for r in tensor_refs(st.body, tensors))]
    if not readers:
        return False
    for st in readers:
        da, db = sp.diff(st.body, a), sp.diff(st.body, b)
        if da.has(a) or da.has(b) or sp.expand(da + db) != 0:
            return False
    return True


@rule("softmax-from-shifted", "stabilize", on="program")
def softmax_from_shifted(program: Program, ctx: Context) -> Program | None:
    """exp(u - lse) -> exp(u - m) / s, with lse = m + log s: the exponent centred by the
    row maximum, not by the log-sum-exp (at logits near 1e6, lse rounded to float32 is
    off by 0.06, and exp(u - lse) by 6 %; u - m is exact where it matters)."""
    parts = ctx.state.get("lse_parts", {})
    known = ctx.state.get("lse_tensors", {})
    if not parts:
        return None
    tensors = dict(program.tensors)
    steps = []
    changed = False
    for st in program.steps:
        mapping = {}
        for a in walk(st.body):
            if not isinstance(a, sp.exp):
                continue
            for r in tensor_refs(a.args[0], tensors):
                lse = ref_name(r)
                if lse not in parts or sp.expand(a.args[0]).coeff(r) != -1:
                    continue
                mx, shifted = parts[lse][0], parts[lse][1]
                for name in (mx, shifted):
                    tensors.setdefault(name, known[name])
                idx = ref_indices(r)
                m = tensors[mx].symbol[idx] if idx else tensors[mx].symbol
                total = tensors[shifted].symbol[idx] if idx else tensors[shifted].symbol
                mapping[a] = sp.exp(sp.expand(a.args[0]) + r - m) / total
                break
        if mapping:
            st = replace(st, body=st.body.xreplace(mapping))
            ctx.note("softmax-from-shifted", st.lhs)
            changed = True
        steps.append(st)
    return Program(program.name, steps, tensors) if changed else None
