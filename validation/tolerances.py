"""Tolerances per dtype for comparing generated code with torch, stated once.

float64: unit roundoff 1.1e-16; the catalogue's longest chains (BatchNorm's
backward: two reductions over N, a division by sqrt(var + eps)) lose at most a
few decimal digits at the small sizes tested, so rtol 1e-9 leaves a margin of
about 10^4 over observed errors while any wrong term (an O(1) relative error)
still fails by many orders of magnitude.
float32: unit roundoff 6e-8; the same reasoning gives rtol 1e-4, with atol
1e-5 for entries that are sums of terms cancelling to near zero.
"""

import torch

TOLERANCES = {
    torch.float64: {"rtol": 1e-9, "atol": 1e-12},
    torch.float32: {"rtol": 1e-4, "atol": 1e-5},
}
