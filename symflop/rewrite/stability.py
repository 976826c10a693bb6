"""Numerical-stability rewrites, a phase of its own between a program and its code.

The equations stay mathematical (log of a sum of exponentials); only the code is
made stable, as PyTensor's "stabilize" rewrites do:

* a sum of exponentials becomes a log-sum-exp step (max-shifted by the backend),
  and every later use of the sum ``s`` is written ``exp(lse)``;
* an elementwise step holding ``exp(-lse)`` (which underflows on its own) is
  inlined into the steps that read it, where exponentials are combined
  (``exp(z) * exp(-lse) -> exp(z - lse)``, a softmax that cannot overflow);
* ``log(1/x) -> -log(x)``, ``log(1 + exp(u)) -> softplus(u)`` (so
  ``log(sigmoid(z)) -> -softplus(-z)``) and ``log(1 + u) -> log1p(u)``.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symflop.core.functions import log1p, softplus
from symflop.core.model import Role, Tensor
from symflop.core.program import Program, Step, ref_indices, ref_name, tensor_refs, walk


def stabilize(program: Program, keep: set[str],
              replaced: dict[str, str] | None = None) -> tuple[Program, dict[str, str]]:
    """Rewrite ``program`` for stable evaluation.

    ``replaced`` maps a sum-of-exponentials tensor (possibly from an earlier pass)
    to the log-sum-exp tensor that now stands for it; the updated map is returned.
    ``keep`` names tensors that must still be computed (outputs of the pass).
    """
    replaced = dict(replaced or {})
    tensors = dict(program.tensors)
    steps: list[Step] = []
    for st in program.steps:
        body = rewrite_logistic(rewrite_logs(_substitute(st.body, replaced, tensors)))
        if st.reduce and st.op == "sum" and isinstance(body, sp.exp):
            name = f"{st.lhs}_lse"
            tensors[name] = Tensor(name, tensors[st.lhs].shape, Role.INTERMEDIATE,
                                   doc=f"log of {st.lhs}")
            replaced[st.lhs] = name
            steps.append(Step(name, st.idx, body.args[0], st.reduce, op="logsumexp"))
            if st.lhs in keep:  # the sum itself is an output: give it back
                lse = tensors[name].symbol
                steps.append(Step(st.lhs, st.idx, sp.exp(lse[st.idx] if st.idx else lse)))
            continue
        steps.append(replace(st, body=body))
    lse_names = set(replaced.values())
    steps = [replace(st, body=sp.powsimp(st.body, combine="exp"))
             if _has_lse_exp(st.body, lse_names, tensors) else st for st in steps]
    steps = _inline_underflowing(steps, lse_names, keep, tensors)
    return Program(program.name, steps, tensors), replaced


def _substitute(body: sp.Expr, replaced: dict[str, str], tensors) -> sp.Expr:
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


def rewrite_logs(e: sp.Expr) -> sp.Expr:
    """``log(1/x) -> -log(x)``, ``log(1 + exp(u)) -> softplus(u)``, ``log(1 + u) -> log1p(u)``.

    ``log(1 - 1/(1 + exp(-z)))`` is first brought over a common denominator, so
    that both halves of a binary cross-entropy become softplus terms.
    """
    if not e.has(sp.log):
        return e

    def fix(x):
        arg = x.args[0]
        if isinstance(arg, sp.Add) and sp.S.One in arg.args:
            rest = arg - 1
            if isinstance(rest, sp.exp):
                return softplus(rest.args[0])
            combined = sp.together(arg)
            if not isinstance(combined, sp.Add):
                return rewrite_logs(sp.log(combined))
            return log1p(rest)
        if isinstance(arg, (sp.Mul, sp.Pow)):
            expanded = sp.expand_log(x)  # only where SymPy can show the factors positive
            if expanded != x:
                return rewrite_logs(expanded)
        return x

    return e.replace(lambda x: isinstance(x, sp.log), fix)


def rewrite_logistic(e: sp.Expr) -> sp.Expr:
    """``exp(u) / (1 + exp(u))**n -> 1/((1 + exp(-u)) * (1 + exp(u))**(n - 1))``.

    Derivatives of a sigmoid come out as ``exp(-z)/(1 + exp(-z))**2``, which is
    inf/inf once exp(-z) overflows; the rewritten form is bounded.
    """
    if not (e.has(sp.exp) and e.has(sp.Pow)):
        return e

    def fix(m: sp.Mul) -> sp.Expr:
        factors = list(m.args)
        for n, f in enumerate(factors):
            if not isinstance(f, sp.exp):
                continue
            for q, g in enumerate(factors):
                base, ex = g.as_base_exp()
                if ex.is_Integer and ex < 0 and base == 1 + f:
                    rest = [h for r, h in enumerate(factors) if r not in (n, q)]
                    return sp.Mul(*rest, 1 / (1 + sp.exp(-f.args[0])), base ** (ex + 1))
        return m

    return e.replace(lambda x: isinstance(x, sp.Mul), fix)


def rewrite_log_steps(program: Program) -> Program:
    """``rewrite_logs`` on every step: differentiating the result keeps gradients stable
    (the derivative of softplus is a sigmoid, ``1/(1 + exp(-u))``, which cannot overflow)."""
    steps = [replace(st, body=rewrite_logs(st.body)) for st in program.steps]
    return Program(program.name, steps, program.tensors)


def _has_lse_exp(body: sp.Expr, lse_names: set[str], tensors, negative=False) -> bool:
    """Does ``body`` hold ``exp(... lse ...)`` (with ``negative``: ``exp(-lse + ...)``)?"""
    return any(isinstance(a, sp.exp)
               and (not negative or a.args[0].could_extract_minus_sign())
               and any(ref_name(r) in lse_names for r in tensor_refs(a.args[0], tensors))
               for a in walk(body))


def _inline_underflowing(steps: list[Step], lse_names: set[str], keep: set[str],
                         tensors) -> list[Step]:
    out: list[Step] = []
    for n, st in enumerate(steps):
        underflows = _has_lse_exp(st.body, lse_names, tensors, negative=True)
        if st.reduce or st.lhs in keep or not underflows:
            out.append(st)
            continue
        t = tensors[st.lhs]
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
        if not readers and t.role is not Role.INTERMEDIATE:
            out.append(st)
    return out
