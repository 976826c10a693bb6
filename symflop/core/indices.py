"""Index renaming that respects sums: fresh names for bound indices, no capture."""

from __future__ import annotations

import sympy as sp


def fresh_index(k: sp.Idx, taken: set[str]) -> sp.Idx:
    """An index over the same range as ``k`` whose name is not in ``taken``."""
    name = k.name
    while name in taken:
        name += "'"
    taken.add(name)
    return sp.Idx(name, k.upper + 1)


def all_index_names(expr: sp.Expr) -> set[str]:
    return {a.name for a in sp.preorder_traversal(expr) if isinstance(a, sp.Idx)}


def instantiate(body: sp.Expr, params: tuple[sp.Idx, ...], args: tuple[sp.Idx, ...],
                bound: tuple[sp.Idx, ...], taken: set[str]) -> sp.Expr:
    """``Sum over bound of body`` with ``params`` replaced by ``args``.

    Bound indices are renamed to names outside ``taken`` (which is updated), so
    the result can be placed into an expression that uses those names freely.
    """
    mapping: dict = dict(zip(params, args))
    limits = []
    for b in bound:
        nb = fresh_index(b, taken)
        mapping[b] = nb
        limits.append((nb, nb.lower, nb.upper))
    out = body.xreplace(mapping) if mapping else body
    return sp.Sum(out, *limits) if limits else out
