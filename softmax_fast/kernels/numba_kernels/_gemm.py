"""The GEMMs of more than ``NARROW_CLASSES`` classes: tiles, packing, and their share among threads.

With more than ``NARROW_CLASSES`` classes (a linear probe's 1000) the logits
and the weight gradient are GEMMs on W in its own ``(d, k)`` layout, vectors
along the classes (``_gemm_tile``): no horizontal sums, and no transposed
copy of W. Rows (logits) or features (gradient) are packed, converted, six
at a time, each broadcast against a panel of four vectors of classes. Each
thread takes one even share of the tiles (``_thread_count``), packs them a
cache-sized block at a time, and every panel meets the whole block
(``_gemm_block``): a panel is read from memory once per block, not once per
tile. In training, the store of a tile of the weight gradient updates those
weights, with the penalty and the momentum (``_update_weight``).

Calls :mod:`._jit`, :mod:`._vectors` and :mod:`._update`.
"""

import numpy as np
from numba import prange

from ._jit import FLOAT32_LANES, VECTOR_BYTES, _kernel, _thread_count
from ._update import _update_weight
from ._vectors import _axpy_lanes, _lanes, _stack_array

# A tile is GEMM_ROWS rows (logits) or features (gradient) by a panel: 24 vector
# accumulators, GEMM_VECTORS loads and GEMM_ROWS broadcasts for 24 FMAs.
GEMM_ROWS = 6
GEMM_VECTORS = 4
# Steps of the depth (features for the logits, rows for the gradient) in a
# block of a panel of B that meets every tile of a block while it is in the L1
# cache: 128 rows of 256 bytes (float32 panels on AVX-512) are 32 KB.
DEPTH_BLOCK = 128
# Bytes of a block of packed tiles that meets each panel of B in turn: with
# the panel, it stays in the L2 cache (1 MB a core on Zen 4), and each panel
# is read from memory once per block, not once per tile.
PACKED_BYTES = 256 * 1024
GEMM_LANES = GEMM_ROWS * GEMM_VECTORS * FLOAT32_LANES


@_kernel()
def _panel(dtype):
    """Classes in a panel of the GEMMs: ``GEMM_VECTORS`` vectors of ``dtype``."""
    return GEMM_VECTORS * _lanes(dtype)


@_kernel()
def _padded_classes(k, dtype):
    """``k`` rounded up to whole panels: the columns of the GEMM path's ``G``, whose every load is a whole panel."""
    panel = _panel(dtype)
    return (k + panel - 1) // panel * panel


@_kernel()
def _pack(X, first, count, features, packed):
    """The broadcast operand of a GEMM tile: ``GEMM_ROWS`` rows (or ``features``) of ``X (n, d)`` from ``first``.

    ``packed[t * GEMM_ROWS + m] = X[first + m, t]`` for ``t < d`` (rows, for
    the logits), or with ``features``, ``X[t, first + m]`` for ``t < n`` (for
    the gradient), converted once for all panels to ``packed``'s dtype; 0 for
    ``m >= count``, past the last row or feature (never written out).
    """
    for t in range(X.shape[0] if features else X.shape[1]):
        for m in range(GEMM_ROWS):
            value = packed.dtype.type(0)
            if m < count:
                value = packed.dtype.type(X[t, first + m] if features else X[first + m, t])
            packed[t * GEMM_ROWS + m] = value


@_kernel()
def _gemm_tile(packed, B, c0, out, resume):
    """``out[(m * GEMM_VECTORS + v) * lanes + lane] (+)= sum over t in order of packed[t * GEMM_ROWS + m] * B[t, c]``,
    ``c = c0 + v * lanes + lane``: a tile of ``GEMM_ROWS`` by a panel of classes from ``c0``.

    With ``resume``, the chains go on from the sums in ``out`` (the same
    multiply-adds in the same order as one call over all of ``t``), else from 0.
    ``packed`` 1-D from ``_pack`` with ``B.shape[0]`` steps, ``B (depth, kp)``
    C-contiguous, ``kp`` whole panels; ``out`` 1-D, at least a tile. Each
    output is one chain of multiply-adds in ``t`` order, whatever the tiling:
    the same for any thread count. The sums are made in this function's own
    ``_stack_array``, which LLVM keeps in registers: with the caller's, whose
    address escapes, it would store all 24 vectors at every step.
    """
    lanes = _lanes(B.dtype)
    acc = _stack_array(GEMM_LANES, B.dtype)
    for a in range(GEMM_ROWS * GEMM_VECTORS * lanes):
        acc[a] = out[a] if resume else 0
    for t in range(B.shape[0]):
        for m in range(GEMM_ROWS):
            weight = packed[t * GEMM_ROWS + m]
            for v in range(GEMM_VECTORS):
                _axpy_lanes(acc, (m * GEMM_VECTORS + v) * lanes, weight, B, t, c0 + v * lanes)
    for a in range(GEMM_ROWS * GEMM_VECTORS * lanes):
        out[a] = acc[a]


@_kernel()
def _block_tiles(depth, dtype):
    """Tiles of ``depth`` steps of ``dtype`` packed in a block: as many as ``PACKED_BYTES`` hold, at least one."""
    return max(1, PACKED_BYTES // (depth * GEMM_ROWS * (VECTOR_BYTES // _lanes(dtype))))


@_kernel()
def _gemm_block(packed, B, c0, sums):
    """``_gemm_tile(packed[t], B, c0, sums[t], False)`` for each tile ``t`` of the block ``packed (tiles, _)``.

    Made a block of ``DEPTH_BLOCK`` steps at a time, each of which meets every
    tile while that block of ``B``'s panel is in the L1 cache; the chains go
    on from block to block in the sums, in the same order as one call per
    tile: the results are those of ``_gemm_tile`` over the whole depth.
    """
    depth = B.shape[0]
    for t0 in range(0, depth, DEPTH_BLOCK):
        t1 = min(t0 + DEPTH_BLOCK, depth)
        for tile in range(packed.shape[0]):
            _gemm_tile(packed[tile, t0 * GEMM_ROWS:t1 * GEMM_ROWS], B[t0:t1], c0, sums[tile], t0 > 0)


@_kernel(parallel=True)
def _gemm(X, features, B, scale, add, out, accumulate, lr, alpha, momentum, nesterov, V):
    """``out[:, :m] = P + add``, ``P = scale * A @ B[:, :m]``, ``add (m,)`` (with ``accumulate``, ``out[:, :m] +=
    P + add``); or if ``lr > 0``, an SGD step of the weights ``out`` on their data gradient ``P``:
    ``_update_weight(out, V, ...)``, or without ``alpha`` and ``momentum`` the plain ``out[:, :m] -= lr * P``.

    ``A`` is ``X (n, d)``, or with ``features``, ``X.T``: the logits
    (``B = W``) or the weight gradient (``B = G``, the rows' ``d loss / d
    Z``). ``B (depth, _)`` C-contiguous; its columns from its last whole
    panel on are read from a zero-padded copy, so that every load is a whole
    vector and none goes past ``B``; ``out`` has ``A``'s rows and at least
    ``m`` columns, and ``V`` is laid out like it (empty without momentum).
    Each thread takes an even share of the tiles of ``A``'s rows, packs them
    a block at a time (``_block_tiles``), and every panel of ``B`` meets the
    whole block (``_gemm_block``); each sum runs over the depth in order, and
    is stored (or its weight updated) when it is complete.
    """
    rows = X.shape[1] if features else X.shape[0]
    depth = B.shape[0]
    m = add.shape[0]
    panel = _panel(B.dtype)
    full = B.shape[1] // panel * panel
    last_panel = np.zeros((depth if full < m else 0, panel), dtype=B.dtype)
    if full < m:
        last_panel[:, :B.shape[1] - full] = B[:, full:]
    tiles = (rows + GEMM_ROWS - 1) // GEMM_ROWS
    shares = min(_thread_count(), tiles)
    block_tiles = _block_tiles(depth, B.dtype)
    plain = alpha == 0 and momentum == 0
    for share in prange(shares):
        start_tile, stop_tile = share * tiles // shares, (share + 1) * tiles // shares
        packed = np.empty((min(block_tiles, stop_tile - start_tile), depth * GEMM_ROWS), dtype=B.dtype)
        sums = np.empty((packed.shape[0], GEMM_LANES), dtype=B.dtype)
        for first_tile in range(start_tile, stop_tile, block_tiles):
            count = min(block_tiles, stop_tile - first_tile)
            for tile in range(count):
                r0 = (first_tile + tile) * GEMM_ROWS
                _pack(X, r0, min(GEMM_ROWS, rows - r0), features, packed[tile])
            for c0 in range(0, m, panel):
                B_panel, B_c0 = (B, c0) if c0 < full else (last_panel, 0)
                _gemm_block(packed[:count], B_panel, B_c0, sums)
                for tile in range(count):
                    r0 = (first_tile + tile) * GEMM_ROWS
                    for r in range(min(GEMM_ROWS, rows - r0)):
                        for c in range(min(panel, m - c0)):
                            product = sums[tile, r * panel + c] * scale
                            if not lr > 0:
                                value = product + add[c0 + c]
                                out[r0 + r, c0 + c] = out[r0 + r, c0 + c] + value if accumulate else value
                            elif plain:
                                out[r0 + r, c0 + c] -= lr * product
                            else:
                                _update_weight(out, V, (r0 + r, c0 + c), product, lr, alpha, momentum, nesterov)


@_kernel()
def _gemm_logits(X, W, scale, b, Z):
    """``Z[:, :k] = X * scale @ W + b`` by ``_gemm``: ``X (n, d)``, ``W (d, k)`` and ``Z (n, _)`` C-contiguous."""
    zero = W.dtype.type(0)
    _gemm(X, False, W, scale, b, Z, False, zero, zero, zero, False, np.empty((0, 0), dtype=W.dtype))
