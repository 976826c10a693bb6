"""Shared helpers of the numeric tests: devices, random inputs by reference."""

import numpy as np
import pytest
import torch
from conftest import derived

from validation.inputs import random_inputs
from validation.references import REFERENCES

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))]

SCALED = ("z", "yhat", "x", "logq")  # inputs that `scale` multiplies (logits, activations)


def inputs(name, dims=None, seed=0, dtype=torch.float64, scale=1.0, device="cpu",
           backend="torch"):
    """Seeded random inputs for a catalogue component, prepared by its reference."""
    c, d = derived(name)
    ref = REFERENCES[name]
    dims = dims or ref.sizes
    rng = np.random.default_rng(seed)
    values = random_inputs(c, d, dims, rng, ref.hypers)
    if ref.prepare:
        values = ref.prepare(values)
    out = {}
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            v = v * (scale if k in SCALED else 1.0)
            if backend == "torch":
                v = torch.tensor(v, dtype=dtype, device=device)
        out[k] = v
    if ref.initial:
        state = ref.initial(dims, dtype, device)
        if backend == "numpy":
            state = {k: to_numpy(v) if isinstance(v, torch.Tensor) else v
                     for k, v in state.items()}
        out.update(state)
    return out


def to_numpy(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
