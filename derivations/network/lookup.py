"""Operations that read values by position: an embedding's table lookup (its backward
adds rows into the table's gradient) and bilinear upsampling (a weighted read of four
neighbours)."""

from __future__ import annotations

from derivations import generic_ops
from derivations.generic_ops import grad_names, numel
from derivations.network.elementwise import binary
from symflop.estimate.calls import FREE, Keep, OpCall, Unknown, Use


def rule_upsample_bilinear(call: OpCall):
    """Bilinear upsampling as torch's CPU kernel writes it (UpSampleKernel.cpp): each
    output h0 (w0 x00 + w1 x01) + h1 (w0 x10 + w1 x11), six multiplications and three
    additions; its backward adds h w g into each of the four inputs, two multiplications
    and an addition each.  The weights and source indices, computed from the positions,
    are not counted."""
    x = call.args[0]
    n = numel(call.outputs[0])
    w = generic_ops.work
    uses = [w("bilinear interpolation (products)", "mul", 6 * n),
            w("bilinear interpolation (sums)", "add", 3 * n)]
    if grad_names(("x", x)):
        uses += [w("bilinear interpolation backward (products)", "mul", 8 * n,
                   backward=True),
                 w("bilinear interpolation backward (sums)", "add", 4 * n, backward=True)]
    return uses


def rule_embedding(call: OpCall):
    """A table lookup: no arithmetic forward; backward adds each gradient row into its
    row of the table's gradient (torch's index_add), one addition per value."""
    weight, indices = call.args[:2]
    y = call.outputs[0]
    if not weight.requires_grad:
        return FREE
    if call.arg(3, "scale_grad_by_freq", False):
        return Unknown("embedding with scale_grad_by_freq")
    return [Use("embedding gradient (index_add)", binary, {"kind": "add", "wrt": ()},
                {"N": numel(y)}, backward_only=True),
            Keep((indices,), "the indices")]
