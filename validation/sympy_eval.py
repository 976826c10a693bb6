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
from symflop.core.model import Role
from symflop.core.program import Program, ref_name, tensor_refs


def evaluate(program: Program, values: dict, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Run ``program`` on ``values`` (arrays and floats); return every tensor it assigns."""
    env = {k: (np.asarray(v, dtype=np.float64) if np.ndim(v) else float(v))
           for k, v in values.items()}
    size_of = {sp.Symbol(k, integer=True, positive=True): sp.Integer(v) for k, v in dims.items()}
    hypers = {t.symbol: sp.Float(env[n]) for n, t in program.tensors.items()
              if t.role is Role.HYPER and n in env}
    out: dict[str, np.ndarray] = {}
    for st in program.steps:
        if st.body.has(uniform) and st.lhs in values:  # random draws: take the ones given
            out[st.lhs] = env[st.lhs]
            continue
        shape = tuple(int(k.upper.xreplace(size_of)) + 1 for k in st.idx)
        red = [range(int(k.upper.xreplace(size_of)) + 1) for k in st.reduce]
        result = np.zeros(shape)
        refs = tensor_refs(st.body, program.tensors)
        body = st.body
        constants = {**hypers, **size_of}
        for at in itertools.product(*[range(n) for n in shape]):
            acc = 0.0
            for inner in itertools.product(*red) if st.reduce else [()]:
                point = dict(zip(st.idx + st.reduce, at + inner))
                acc += _at(body, refs, point, env, constants)
            result[at] = acc if st.op == "sum" else np.nan
        env[st.lhs] = result if shape else float(result)
        out[st.lhs] = env[st.lhs]
    return out


def _at(body: sp.Expr, refs, point: dict, env: dict, constants: dict) -> float:
    mapping = dict(constants)  # one simultaneous replacement: refs match before their indices
    for r in refs:
        value = env[ref_name(r)]
        if isinstance(r, sp.Indexed):
            value = value[tuple(point[k] for k in r.indices)]
        mapping[r] = sp.Float(float(value))
    return float(sp.N(body.xreplace(mapping)))
