"""What a torch network is made of: components for its operations, and the rules that
map each aten operation of a traced forward pass onto them (``symflop estimate``).

Every component here is written like the rest of the catalogue, as SymPy equations;
the engine derives its backward pass, counts and saved tensors.  A component's
``wrt`` option lists the inputs that need a gradient, as autograd decides from
``requires_grad`` (the first convolution of a network needs no gradient of the image).

The rules (``RULES``, entry point group ``symflop.network``) read one traced
operation and say which component stands for it, with what sizes, and which traced
tensors its tensors are.  An operation without a rule is reported as unknown.

One module per family of operations holds its components and rules: ``contractions``
(matrix products, convolutions), ``elementwise`` (activations, binary operations,
dropout), ``rows`` (softmax, means, pooling), ``attention`` (fused attention) and
``lookup`` (embedding, upsampling).  BatchNorm and LayerNorm are
``derivations/norm_kernels.py``; every other operation, by what it does,
``derivations/generic_ops.py`` and ``derivations/movement_ops.py``.  This module is the
registry: views are free, and the rest is each family's rules.
"""

from __future__ import annotations

from derivations import generic_ops, movement_ops, norm_kernels
from derivations.network import attention, contractions, elementwise, lookup, rows
from symflop.estimate.calls import FREE, OpCall


def _free(_call: OpCall):
    return FREE


_VIEWS = ("view", "_unsafe_view", "reshape", "t", "transpose", "permute",
          "select", "slice", "unsqueeze", "squeeze", "detach", "alias", "empty_like",
          "empty", "clone", "contiguous", "flatten", "split", "split_with_sizes", "chunk",
          "unbind", "lift_fresh", "as_strided", "_reshape_alias", "zeros_like", "zero",
          "fill", "copy", "_to_copy", "lift_fresh_copy")

RULES = {
    **generic_ops.RULES,
    **movement_ops.RULES,
    **{f"aten.{v}": _free for v in _VIEWS},
    "aten.addmm": contractions.rule_addmm,
    "aten.mm": contractions.rule_mm,
    "aten.bmm": contractions.rule_bmm,
    "aten.convolution": contractions.rule_convolution,
    "aten.native_batch_norm": norm_kernels.batch_norm,
    "aten.native_layer_norm": norm_kernels.layer_norm,
    "aten.relu": elementwise.activation_rule("relu"),
    "aten.gelu": elementwise.activation_rule("gelu"),
    "aten.silu": elementwise.activation_rule("silu"),
    "aten.sigmoid": elementwise.activation_rule("sigmoid"),
    "aten.tanh": elementwise.activation_rule("tanh"),
    **{f"aten.{k}": elementwise.binary_rule(k) for k in elementwise.BINARY},
    "aten.bernoulli": elementwise.rule_bernoulli,
    "aten.native_dropout": elementwise.rule_native_dropout,
    "aten._softmax": rows.softmax_rule(False),
    "aten._safe_softmax": rows.softmax_rule(False),
    "aten._log_softmax": rows.softmax_rule(True),
    "aten.mean": rows.rule_mean,
    "aten._adaptive_avg_pool2d": rows.rule_adaptive_avg_pool,
    "aten.adaptive_avg_pool2d": rows.rule_adaptive_avg_pool,
    "aten.max_pool2d_with_indices": rows.rule_max_pool,
    "aten._scaled_dot_product_flash_attention_for_cpu": attention.rule_flash_attention,
    "aten._scaled_dot_product_flash_attention": attention.rule_flash_attention,
    "aten._scaled_dot_product_efficient_attention": attention.rule_flash_attention,
    "aten.embedding": lookup.rule_embedding,
    "aten.upsample_bilinear2d": lookup.rule_upsample_bilinear,
    "aten.hardtanh": elementwise.rule_hardtanh,
}
