"""What every symbol in the catalogue's tables means, for the report's glossary.

A symbol that means different things in different components is listed once with each
meaning and where it holds.  A test checks that every symbol of every generated table
is here.  ``DISPLAY`` gives the LaTeX of the catalogue's ASCII abbreviations (``lr`` is
the learning rate, printed η); SymPy prints Greek names (``theta``, ``beta1``) itself.
"""

from __future__ import annotations

DISPLAY = {"lr": r"\eta", "lam": r"\lambda", "logq": r"\log q", "L_bn": r"L_{\mathrm{BN}}",
           "Cg": r"C_g",
           # the document's symbols for the catalogue's names (braced: a power or an
           # index of one prints after it)
           "var": r"{\sigma^2}", "xhat": r"\hat{x}", "yhat": r"\hat{y}", "vhat": r"\hat{v}",
           "mhat": r"\hat{m}", "xc": r"{(x - \mu)}", "var_eps": r"{(\sigma^2 + \epsilon)}",
           "running_mean": r"{\mu_{\mathrm{run}}}", "running_var": r"{\sigma^2_{\mathrm{run}}}",
           "inv_std": r"{(\sigma^2 + \epsilon)^{-1/2}}",
           # log-sum-exp, a name: its parts (lse_sum, lse_sum_max) print lse with a tag
           "lse": r"\mathrm{lse}"}

SIZES: dict[str, str] = {
    "B": "batch size: samples per step",
    "C": "classes (losses, training step); channels (InstanceNorm)",
    "Cg": "channels per group (GroupNorm)",
    "d": "features: output dimension (MSE, Huber), normalized features (BatchNorm, "
         "LayerNorm, training step)",
    "G": "groups (GroupNorm); AdaGrad's running sum of squared gradients (a tensor)",
    "I": "input features (linear layer)",
    "K": "input features of the layer before BatchNorm (BatchNorm folded into it); "
         "patch size C_in*k_h*k_w (convolution as im2col)",
    "L_bn": "BatchNorm layers in the network",
    "N": "values per feature that BatchNorm averages over: batch size times spatial "
         "positions; devices (distributed training)",
    "n": "units per sample (dropout)",
    "O": "output features (linear layer), output channels (convolution)",
    "P": "parameters of the model",
    "Psi": "parameters of the model (distributed training, as the ZeRO paper writes it)",
    "S": "spatial positions per channel (GroupNorm, InstanceNorm, convolution output); "
         "the step decay's period, in steps (a hyperparameter)",
    "H": "height of a feature map (convolution, BatchNorm example)",
    "W": "width of a feature map (convolution, BatchNorm example); the weight of the layer "
         "before BatchNorm (BatchNorm fold)",
}

HYPERPARAMETERS: dict[str, str] = {
    "lr": "learning rate",
    "lam": "regularization or weight-decay coefficient",
    "mu": "momentum coefficient (momentum, Nesterov); mean per feature (BatchNorm)",
    "momentum": "BatchNorm's running-statistics momentum",
    "alpha": "smoothing constant (RMSProp, torch's name; the document writes beta); class "
             "weight (focal loss)",
    "beta1": "Adam's first-moment decay",
    "beta2": "Adam's second-moment decay",
    "epsilon": "small constant that keeps a division finite",
    "gamma": "focusing exponent (focal loss); scale per feature (BatchNorm)",
    "beta": "shift per feature (BatchNorm); the document's RMSProp decay, alpha here",
    "delta": "Huber loss threshold",
    "T": "steps the schedule runs over (cosine, warmup with cosine decay, one-cycle)",
}

QUANTITIES: dict[str, str] = {
    "L": "loss value (a scalar); tokens per sample (the distributed step's caption)",
    "t": "step counter (1 at the first optimizer step)",
    "F": "FLOPs of the network's own forward pass (given, not derived)",
    "k": "the network's backward FLOPs over its forward FLOPs (about 2; a ratio the user "
         "sets)",
    "A": "activations saved for backward, in values (given, not derived)",
    "MSE": "the mean squared error, a loss value (the Gaussian likelihood identity)",
    "NLL": "negative log-likelihood of the targets (the Gaussian likelihood identity)",
}

TENSORS: dict[str, str] = {
    "x": "activations (input of a normalization)",
    "a": "activations (input of dropout)",
    "xhat": "normalized activations",
    "y": "targets (losses); output (normalization, dropout)",
    "yhat": "predictions",
    "z": "logits",
    "p": "target distribution (KL divergence); predicted probability sigmoid(z) (focal "
         "loss); dropout probability (dropout); parameter index (Adam's operation table, L1 "
         "and L2 penalties)",
    "logq": "the model's log-probabilities (KL divergence)",
    "theta": "parameters",
    "w": "parameters (L1 and L2 penalties)",
    "g": "gradient; index over groups (GroupNorm)",
    "m": "first-moment estimate (Adam)",
    "v": "second-moment estimate (Adam); velocity (momentum)",
    "mhat": "bias-corrected first moment (Adam)",
    "vhat": "bias-corrected second moment (Adam)",
    "var": "variance per feature (BatchNorm), printed sigma^2 as the document writes it",
    "mu_sum": "sum over the batch, before division by N (BatchNorm)",
    "var_sum": "sum of squared deviations, before division by N (BatchNorm)",
    "xc": "the deviation x - mu, computed once (normalizations)",
    "var_eps": "variance plus epsilon, computed once (normalizations)",
    "inv_std": "1/sqrt(var + epsilon), computed once (normalizations)",
    "scale": "gamma/sqrt(var + epsilon), computed once: how y changes with x - mu at fixed "
             "statistics (normalizations)",
    "W_f": "folded weight: the layer's weight scaled by BatchNorm's (BatchNorm fold)",
    "b_f": "folded bias (BatchNorm fold)",
    "u": "input of the layer before BatchNorm (BatchNorm fold); a unit's uniform draw in "
         "[0, 1) (dropout)",
    "b": "bias of the layer before BatchNorm (BatchNorm fold); index over samples (linear "
         "layer, convolution)",
    "s": "BatchNorm's scale at inference, gamma/sqrt(running_var + epsilon) (BatchNorm "
         "fold); index over positions (GroupNorm, InstanceNorm, convolution)",
    "running_mean": "running mean kept for inference (BatchNorm)",
    "running_var": "running variance kept for inference (BatchNorm)",
    "lse_sum": "sum over classes of exp(z), the sum inside the log-sum-exp (cross-entropy)",
    "lse_sum_max": "a sample's largest logit, subtracted before the exponentials (the "
                   "stable log-sum-exp the generated code runs)",
    "lse_sum_shifted": "sum over classes of exp(z - lse_sum_max), the shifted sum (the "
                       "stable log-sum-exp)",
    "L_sum_part": "the first term of the summed loss: the sum over samples of the "
                  "log-sum-exp (cross-entropy)",
    "L_sum_part2": "the second term of the summed loss: the logits at the labels, summed "
                   "(cross-entropy)",
    "mask": "1 where a unit is kept (its uniform draw is at least p), 0 where it is "
            "dropped (dropout)",
    "cols": "input patches, one column per output position (convolution as im2col)",
    "bias": "bias (linear layer, convolution)",
    "i": "index over samples (losses) or values averaged over (BatchNorm)",
    "j": "index over features",
    "k": "index over classes (losses); over the patch (convolution as im2col)",
    "c": "index over the channels (of a group: GroupNorm)",
    "o": "index over output features or channels (linear layer, convolution)",
}

# The tags of a gradient's parts in the derived equations (d mu_part2 is a part of d mu):
# what each says about the part it names.
GRADIENT_TAGS: dict[str, str] = {
    "part": "one of the terms the gradient is split into, by what they sum over (part2: "
            "the second)",
    "direct": "the term through the normalized value alone, at fixed statistics",
    "base": "the part before the values added at the labels",
    "red": "a partial sum of it: an inner sum factored out",
    "cse": "a common subexpression of it",
}

# symbols that are also English words: the prose typesetter leaves them as words
ENGLISH_WORDS = frozenset({"a"})

UNITS = ("FLOPs count floating-point operations, each kind weighted by the counting "
         "convention. Memory is in bytes; a MiB is 1024 × 1024 bytes and a GiB 1024 MiB. Tables "
         "give float32 (4 bytes a value) unless a column says otherwise.")


def glossary() -> list[tuple[str, str, str]]:
    """(kind, symbol, meaning) rows: sizes, hyperparameters, other scalars, tensors and
    indices."""
    return ([("size", s, m) for s, m in SIZES.items()]
            + [("hyperparameter", s, m) for s, m in HYPERPARAMETERS.items()]
            + [("scalar", s, m) for s, m in QUANTITIES.items()]
            + [("tensor or index", s, m) for s, m in TENSORS.items()])
