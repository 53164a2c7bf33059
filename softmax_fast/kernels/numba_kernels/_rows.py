"""A row of logits: its argmax, its exponentials and its softmax, inlined into the kernels that loop over rows.

Calls :mod:`._jit`, :mod:`._vectors` and :mod:`._exp`.
"""

import numpy as np

from ._exp import _exp_lanes
from ._jit import FLOAT32_LANES, NARROW_CLASSES, _kernel
from ._vectors import _lanes, _larger_lanes, _rounded, _stack_array, _sum_lanes


@_kernel(inline=True)
def _argmax(z):
    """Index of the first maximum of ``z (k,)`` (C-contiguous), as ``np.argmax``; NaNs are passed over, unless
    ``z[0]`` is one (then 0).

    Up to ``NARROW_CLASSES`` values, a loop that compares each with the best
    so far. Longer rows would make that loop slow (each compare waits on a
    load that waits on the last compare): their maximum is found a vector at
    a time (``_larger_lanes``), then its first index.
    """
    k = z.shape[0]
    if k <= NARROW_CLASSES:
        best = 0
        for c in range(1, k):
            if z[c] > z[best]:
                best = c
        return best
    largest = z[0]
    if largest != largest:
        return 0
    lanes = _lanes(z.dtype)
    whole = k // lanes * lanes
    acc = _stack_array(FLOAT32_LANES, z.dtype)
    for lane in range(lanes):
        acc[lane] = -np.inf
    for j in range(0, whole, lanes):
        _larger_lanes(acc, z, j)
    for lane in range(lanes):
        if acc[lane] > largest:
            largest = acc[lane]
    for c in range(whole, k):
        if z[c] > largest:
            largest = z[c]
    for c in range(k):
        if z[c] == largest:
            return c
    return 0


@_kernel(inline=True)
def _exp_in_place(z, best):
    """Overwrite ``z (k,)`` with ``exp(z - z[best])``; return ``(their sum, logsumexp of the input)``.

    ``best`` is the index of the maximum of ``z`` (``_argmax(z)``). The
    exponentials are made a vector at a time (``_exp_lanes``), the last,
    partial vector in a copy padded with -inf, and summed in vectors' order,
    each vector's lanes pairwise.
    """
    k = z.shape[0]
    row_max = z[best]
    lanes = _lanes(z.dtype)
    whole = k // lanes * lanes
    total = z.dtype.type(0)
    for j in range(0, whole, lanes):
        _exp_lanes(z, j, row_max)
        total += _sum_lanes(z, j)
    if whole < k:
        tail = _stack_array(FLOAT32_LANES, z.dtype)
        for lane in range(lanes):
            tail[lane] = z[whole + lane] if whole + lane < k else -np.inf
        _exp_lanes(tail, 0, row_max)
        total += _sum_lanes(tail, 0)
        z[whole:] = tail[:k - whole]
    # Rounded to z's dtype, as the reference does, before a caller subtracts a logit from it: inlined, the
    # sum would otherwise be reassociated with that subtraction.
    return total, _rounded(row_max + np.log(total))


@_kernel(inline=True)
def _softmax_in_place(z, best):
    """Overwrite ``z (k,)`` with its softmax; return ``logsumexp`` of the input. ``best``: see ``_exp_in_place``."""
    total, logsumexp = _exp_in_place(z, best)
    inverse = 1 / total
    for c in range(z.shape[0]):
        z[c] *= inverse
    return logsumexp
