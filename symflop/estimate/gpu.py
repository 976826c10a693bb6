"""The program a GPU runs, from the program traced on the CPU (``--target cuda``).

Why a rewrite and not a trace on a CUDA device: torch's fake tensors can carry a
"cuda" device, but a CPU build of torch aborts as soon as an operation asks for a CUDA
device guard (dropout does), so the trace always runs the CPU's kernels.  Where the two
programs differ in what they keep or compute, the CPU program is rewritten into the one
torch's CUDA kernels run:

* Dropout.  On a CPU, ``F.dropout`` draws a mask of the input's element type
  (``empty_like(x).bernoulli_(1 - p)``), divides it by 1 - p and multiplies: the
  multiplication keeps the mask, 4 bytes a value in float32, 2 in bfloat16.  On CUDA it
  is one ``aten.native_dropout`` whose mask is ``bool``: 1 byte a value (Korthikanti
  et al. 2022 count it so).

* LayerNorm.  Its CPU kernel returns the mean and 1/std of each row in the parameters'
  type (bfloat16 for a bfloat16 model); CUDA's in the accumulation type, float32.

Everything else is counted as the CPU's kernels run it (LayerNorm's Welford merges, for
one, are those of the CPU's vector width); the estimate's notes say so.
"""

from __future__ import annotations

from dataclasses import replace

from symflop.estimate.calls import OpCall, TensorRef

TARGETS = ("cpu", "cuda")


def _mask(noise: TensorRef) -> TensorRef:
    """The CUDA kernel's bool mask, in place of the CPU's floating noise tensor."""
    return replace(noise, key=hash(("cuda mask", noise.key)),
                   storage=hash(("cuda mask", noise.storage)),
                   storage_elements=noise.numel, itemsize=1, dtype="bool",
                   requires_grad=False)


def _dropouts(calls: tuple[OpCall, ...]) -> dict[int, tuple[int, int]]:
    """CPU dropouts: the index of each ``mul(x, noise)`` -> the indices of the noise's
    ``bernoulli_`` and ``div_``, where the noise is drawn, scaled and read by that
    multiplication only."""
    drawn: dict[int, int] = {}      # noise storage -> index of its bernoulli_
    scaled: dict[int, int] = {}     # noise storage -> index of its div_
    out = {}
    for k, call in enumerate(calls):
        args = call.tensor_args()
        if call.op == "aten.bernoulli_" and args:
            drawn[args[0].storage] = k
        elif call.op == "aten.div_" and args and args[0].storage in drawn \
                and not isinstance(call.args[1], TensorRef):
            scaled[args[0].storage] = k
        elif call.op == "aten.mul" and len(args) == 2 and args[1].storage in scaled:
            out[k] = (drawn[args[1].storage], scaled[args[1].storage])
    readers: dict[int, int] = {}
    for call in calls:
        for t in call.tensor_args():
            readers[t.storage] = readers.get(t.storage, 0) + 1
    # the noise read by its bernoulli_, its div_ and the mul: three reads, no more
    return {k: v for k, v in out.items() if readers[calls[k].args[1].storage] == 3}


def _float32(t: TensorRef) -> TensorRef:
    return replace(t, itemsize=4, dtype="float32") if t.floating and t.itemsize < 4 else t


def _layer_norm(call: OpCall) -> OpCall:
    """CUDA's LayerNorm: its row statistics in float32."""
    y, *stats = call.outputs
    return replace(call, outputs=(y, *(_float32(t) for t in stats)))


def gpu_program(calls: tuple[OpCall, ...]) -> tuple[OpCall, ...]:
    """``calls`` with each CPU dropout made the CUDA kernel's ``native_dropout`` and each
    LayerNorm's statistics kept in float32."""
    calls = tuple(_layer_norm(c) if c.op == "aten.native_layer_norm" else c for c in calls)
    dropouts = _dropouts(calls)
    if not dropouts:
        return calls
    gone = {i for pair in dropouts.values() for i in pair}
    out = []
    for k, call in enumerate(calls):
        if k in gone:
            continue
        if k in dropouts:
            x, noise = call.args[:2]
            p_keep = calls[dropouts[k][1]].args[1]
            call = OpCall("aten.native_dropout", "aten.native_dropout.default", call.module,
                          call.module_type, (x, 1 - p_keep, True), {},
                          (call.outputs[0], _mask(noise)), call.stack)
        out.append(call)
    return tuple(out)
