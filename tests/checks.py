"""Shared helpers of the numeric tests: devices, random inputs by reference."""

import numpy as np
import pytest
import torch
from conftest import derived

from validation.inputs import torch_inputs
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
    out = torch_inputs(c, d, ref, dims, seed, dtype, device,
                       scale=dict.fromkeys(SCALED, scale))
    if backend == "numpy":
        out = {k: to_numpy(v) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
    return out


def to_numpy(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
