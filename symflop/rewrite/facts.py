"""Facts derived from a program's own steps, and matching up to index renaming.

A forward step that still holds when the backward pass runs (its tensor is
assigned once and nothing it reads is assigned after it) is a fact:

* ``Known(name, idx, scale, core, reduce)``: ``name[idx] = scale * sum over reduce of
  core``.  ``mu[j] = sum_i x[i, j] / N`` gives the mean ``Known(mu, (j,), 1/N, x[i, j],
  (i,))``, so that ``sum_i (x[i, j] - mu[j]) = 0`` can be shown; ``lse_sum[i] = sum_k
  exp(z[i, k])`` lets a backward sum of the same exponentials read ``lse_sum``.
  A tensor whose rows sum to one (``Fact.ROWS_SUM_TO_ONE``) is ``Known(None, ...)``
  with value 1.
* ``Definition(name, idx, body)``: an elementwise step, e.g. ``xhat = (x - mu)/sqrt(var +
  eps)``, so that ``x - mu`` in the backward can read ``xhat * sqrt(var + eps)``.

Matching (``unify``) renames the indices of a fact to those of an expression;
index ranges must agree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy as sp

from symflop.core.indices import fresh_index
from symflop.core.model import Fact, Role
from symflop.core.program import Program, index_symbols, ref_name, tensor_refs


@dataclass(frozen=True)
class Known:
    """``name[idx] = scale * Sum(core, reduce)``; ``name`` None means the value is 1."""

    name: str | None
    idx: tuple[sp.Idx, ...]
    scale: sp.Expr
    core: sp.Expr
    reduce: tuple[sp.Idx, ...]
    why: str = ""

    def value(self, mapping: dict, tensors) -> sp.Expr:
        """The sum itself (``Sum(core, reduce)``) in the renamed indices."""
        if self.name is None:
            return sp.Integer(1)
        t = tensors[self.name]
        ref = t.symbol[tuple(mapping.get(k, k) for k in self.idx)] if self.idx else t.symbol
        return ref / self.scale


@dataclass(frozen=True)
class Definition:
    """``name[idx] = body``, an elementwise forward step."""

    name: str
    idx: tuple[sp.Idx, ...]
    body: sp.Expr


@dataclass
class Facts:
    known: list[Known] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)


def split_factors(expr: sp.Expr, over: set) -> tuple[sp.Expr, sp.Expr]:
    """``expr`` as (factors that do not depend on ``over``, factors that do)."""
    outer: list[sp.Expr] = []
    inner: list[sp.Expr] = []
    for f in sp.Mul.make_args(expr):
        (inner if f.free_symbols & over else outer).append(f)
    return sp.Mul(*outer), sp.Mul(*inner)


def derive_facts(program: Program | None) -> Facts:
    """The facts a program's steps establish (see the module docstring)."""
    facts = Facts()
    if program is None:
        return Facts()
    tensors = program.tensors
    for t in tensors.values():
        if t.has(Fact.ROWS_SUM_TO_ONE) and t.shape:
            idx = tuple(sp.Idx(f"_r{n}", s) for n, s in enumerate(t.shape))
            facts.known.append(Known(None, idx[:-1], sp.Integer(1), t.symbol[idx], idx[-1:],
                                     f"{t.name}: {Fact.ROWS_SUM_TO_ONE.value}"))
    steps = program.steps
    counts: dict[str, int] = {}
    for st in steps:
        counts[st.lhs] = counts.get(st.lhs, 0) + 1
    sums: dict[str, Known] = {}
    for n, st in enumerate(steps):
        if counts[st.lhs] != 1 or st.gather or st.scatter is not None or st.reduce_op != "sum":
            continue
        reads = {ref_name(r) for r in tensor_refs(st.body, tensors)}
        later = {s.lhs for s in steps[n + 1:]}
        if st.lhs in reads or reads & later or tensors[st.lhs].role is Role.STATE:
            continue
        if st.reduce:
            scale, core = split_factors(st.body, set(st.reduce))
            if tensor_refs(scale, tensors):
                continue  # a scale that is a tensor could be zero: not a usable fact
            k = Known(st.lhs, st.idx, scale, core, st.reduce)
            sums[st.lhs] = k
            facts.known.append(k)
            continue
        facts.definitions.append(Definition(st.lhs, st.idx, st.body))
        # m = c * s, with s a sum: m is a scaled sum too (a mean when c = 1/n)
        c, ref = _scaled_ref(st.body, tensors)
        if ref is not None and ref_name(ref) in sums and tuple(_indices(ref)) == st.idx:
            s = sums[ref_name(ref)]
            # the sum's own index names, renamed to this step's, its bound ones apart
            taken = {k.name for k in st.idx}
            bound = {k: fresh_index(k, taken) for k in s.reduce}
            mapping = {**dict(zip(s.idx, st.idx)), **bound}
            facts.known.insert(0, Known(st.lhs, st.idx, s.scale * c, s.core.xreplace(mapping),
                                        tuple(bound[k] for k in s.reduce)))
    return facts


def _scaled_ref(body: sp.Expr, tensors) -> tuple[sp.Expr, sp.Expr | None]:
    refs = tensor_refs(body, tensors)
    if len(refs) != 1:
        return sp.Integer(1), None
    c = sp.cancel(body / refs[0])
    if c.free_symbols & set(refs[0].free_symbols) or tensor_refs(c, tensors):
        return sp.Integer(1), None
    return c, refs[0]


def _indices(ref: sp.Expr) -> tuple:
    return tuple(ref.indices) if isinstance(ref, sp.Indexed) else ()


# -- matching up to index renaming -------------------------------------------------------

def unify(pattern: sp.Expr, target: sp.Expr, variables) -> dict | None:
    """A renaming of ``variables`` (indices of ``pattern``) after which ``pattern`` equals
    ``target``, or None.  Indices not in ``variables`` must stay as they are; a renamed
    index keeps its range; two variables never map to the same index."""
    variables = set(variables)
    p_refs = sorted(pattern.atoms(sp.Indexed), key=sp.default_sort_key)
    t_refs = sorted(target.atoms(sp.Indexed), key=sp.default_sort_key)
    if sorted(map(_base, p_refs)) != sorted(map(_base, t_refs)):
        return None
    groups: dict[str, tuple[list, list]] = {}
    for r in p_refs:
        groups.setdefault(_base(r), ([], []))[0].append(r)
    for r in t_refs:
        groups[_base(r)][1].append(r)
    options = []
    for base in sorted(groups):
        ps, ts = groups[base]
        if len(ps) > 3:
            return _check(pattern, target, {}, variables)
        options.append([(ps, perm) for perm in itertools.permutations(ts)])
    for choice in itertools.product(*options):
        mapping: dict = {}
        if all(_extend(mapping, p, t, variables) for ps, ts in choice for p, t in zip(ps, ts)):
            found = _check(pattern, target, mapping, variables)
            if found is not None:
                return found
    return None


def _base(r: sp.Indexed) -> str:
    return r.base.label.name


def _extend(mapping: dict, p: sp.Indexed, t: sp.Indexed, variables: set) -> bool:
    if len(p.indices) != len(t.indices):
        return False
    for a, b in zip(p.indices, t.indices):
        if a in variables:
            if mapping.get(a, b) != b or (a not in mapping and b in mapping.values()):
                return False
            if not isinstance(b, sp.Idx) or a.upper != b.upper:
                return False
            mapping[a] = b
        elif a != b:
            return False
    return True


def _check(pattern: sp.Expr, target: sp.Expr, mapping: dict, variables: set) -> dict | None:
    free = (index_symbols(pattern) & variables) - set(mapping)
    if free:
        return None
    renamed = pattern.xreplace(mapping) if mapping else pattern
    return mapping if renamed == target else None
