"""An independent evaluator: a normalized program run element by element in SymPy.

Slow and simple on purpose (one substitution per element, sums added term by
term), so that it shares nothing with the generated vectorized code it checks:
no axes, no broadcasting, no stability rewrites.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from symflop.core.functions import uniform
from symflop.core.model import Fact, Role, size_symbol
from symflop.core.program import Program, ref_name, tensor_refs


def evaluate(program: Program, values: dict, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Run ``program`` on ``values`` (arrays and floats); return every tensor it assigns.

    Steps run as their mathematics says: a gather is the sum against the dense one-hot
    tensor, a scatter adds the product with it, a maximum is a maximum.  One-hot tensors
    may be given as labels; they are made dense here."""
    size_of = {size_symbol(k): sp.Integer(v) for k, v in dims.items()}
    env = {k: _dense(program, k, v, size_of) for k, v in values.items()}
    hypers = {t.symbol: sp.Float(env[n]) for n, t in program.tensors.items()
              if t.role is Role.HYPER and n in env}
    out: dict[str, np.ndarray] = {}
    for st in program.steps:
        if st.body.has(uniform) and st.lhs in values:  # random draws: take the ones given
            out[st.lhs] = env[st.lhs]
            continue
        shape = tuple(int(k.upper.xreplace(size_of)) + 1 for k in st.idx)
        summed = st.reduce + tuple(k for k, _ in st.gather)
        red = [range(int(k.upper.xreplace(size_of)) + 1) for k in summed]
        body = st.body
        for _k, y in st.gather:
            body = y * body
        if st.scatter is not None:
            body = st.scatter[1] * body
        result = np.zeros(shape)
        refs = tensor_refs(body, program.tensors)
        constants = {**hypers, **size_of}
        for at in itertools.product(*[range(n) for n in shape]):
            terms = [_at(body, refs, dict(zip(st.idx + summed, at + inner)), env, constants)
                     for inner in (itertools.product(*red) if summed else [()])]
            result[at] = max(terms) if st.reduce_op == "max" else sum(terms)
        if st.scatter is not None:
            result = result + env[st.scatter[2]]
        env[st.lhs] = result if shape else float(result)
        out[st.lhs] = env[st.lhs]
    return out


def _dense(program: Program, name: str, v, size_of: dict):
    t = program.tensors.get(name)
    if t is not None and t.has(Fact.ONE_HOT) and np.ndim(v) == len(t.shape) - 1:
        n = int(t.shape[-1].xreplace(size_of))
        return np.eye(n)[np.asarray(v, dtype=np.int64)]
    return np.asarray(v, dtype=np.float64) if np.ndim(v) else float(v)


def _at(body: sp.Expr, refs, point: dict, env: dict, constants: dict) -> float:
    mapping = dict(constants)  # one simultaneous replacement: refs match before their indices
    for r in refs:
        value = env[ref_name(r)]
        if isinstance(r, sp.Indexed):
            value = value[tuple(point[k] for k in r.indices)]
        mapping[r] = sp.Float(float(value))
    return float(sp.N(body.xreplace(mapping)))
