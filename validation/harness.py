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
        out = run_pass(fn, xp, args)
        env.update(out)
        produced.update(out)
    return produced


def run_pass(fn, xp, values: dict, **options) -> dict:
    """One generated pass on torch values, on any backend: for NumPy the tensors go in as
    arrays and the results come back as tensors on the device they came from."""
    if xp.name != "numpy":
        return fn(backend=xp, **options, **values)
    import torch
    device = next((v.device for v in values.values() if isinstance(v, torch.Tensor)), "cpu")
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
              for k, v in values.items()}
    out = fn(backend=xp, **options, **arrays)
    return {k: torch.as_tensor(v).to(device) if hasattr(v, "shape") else v
            for k, v in out.items()}
