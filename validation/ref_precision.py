"""The reference for mixed precision's loss scaling: ``torch.amp.GradScaler``, one step.

GradScaler keeps the scale as a float32 tensor and the count of clean steps as an
int32 one, whatever the gradients' type; a check's state is set into them after their
lazy creation, and the scale is a power of two so that float32 holds it (and its
reciprocal) exactly.
"""

from __future__ import annotations

import torch

from validation.ref_common import Reference


def grad_scaler_step(values: dict) -> dict:
    """Scale the loss, unscale the gradients (``unscale_``), update the scale."""
    gs = values["gs"]
    scaler = torch.amp.GradScaler(gs.device.type, init_scale=float(values["S"]),
                                  growth_factor=float(values["growth"]),
                                  backoff_factor=float(values["backoff"]),
                                  growth_interval=int(values["interval"]))
    Ls = scaler.scale(torch.as_tensor(values["L"], dtype=gs.dtype, device=gs.device))
    scaler._growth_tracker.fill_(int(values["n"]))
    param = torch.zeros_like(gs, requires_grad=True)
    param.grad = gs.clone()
    opt = torch.optim.SGD([param], lr=0.0)
    if gs.dtype == torch.float16:  # unscale_ expects float32 master gradients; its kernel
        # takes float16 ones when asked (as torch's own fp16 optimizers do)
        inv = scaler._scale.double().reciprocal().float()
        found = torch.zeros(1, device=gs.device)
        per_device = scaler._unscale_grads_(opt, inv, found, allow_fp16=True)
        scaler._per_optimizer_states[id(opt)]["found_inf_per_device"] = per_device
    else:
        scaler.unscale_(opt)
    scaler.update()
    # the scale and the count are float32 and int32 in GradScaler, whatever the gradients
    return {"Ls": Ls, "g": param.grad,
            "S": torch.tensor(scaler.get_scale(), dtype=torch.float64),
            "n": torch.tensor(float(scaler._growth_tracker.item()), dtype=torch.float64)}


def _state(dims, dtype, device):
    """A scale of 2**10, one clean step short of an interval of 7 (so the scale grows)."""
    return {"S": 2.0 ** 10, "n": 6.0}


# Non-default growth, backoff and interval, so that a swapped one shows.
REFERENCES = {
    "loss-scaling": Reference(sizes={"P": 11}, tiny={"P": 3},
                              hypers={"growth": 3.0, "backoff": 0.25, "interval": 7},
                              initial=_state, run=grad_scaler_step),
}
