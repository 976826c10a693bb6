"""Running the generated code of every pass in order, passing saved tensors along."""

from __future__ import annotations

from symflop.derive import Derivation


def run_passes(d: Derivation, values: dict, backend: str = "numpy",
               passes: tuple[str, ...] | None = None, seed: int | None = None) -> dict:
    """Run passes in declaration order; each reads what the caller and earlier passes gave.

    Returns every tensor any pass produced (later passes overwrite state they update).
    """
    from symflop.lower.backends import get_backend
    xp = get_backend(backend, seed)  # one backend, so random draws continue across passes
    env = dict(values)
    produced: dict = {}
    for name in passes or d.passes:
        fn = d.compiled(name)
        args = {n: env[n] for n in fn.signature.inputs}
        out = fn(backend=xp, **args)
        env.update(out)
        produced.update(out)
    return produced
