"""Numba kernels: the ``@njit`` backend.

Same contract as :mod:`softmax_fast.kernels.reference`; they run on
``numba.get_num_threads()`` threads (set it with ``numba.set_num_threads``,
outside jitted code: calling it inside would stop Numba from caching the
kernel). The functions are reached from Python through
:mod:`softmax_fast.kernels`, which has already checked shapes, dtypes, C order
and the label range; nothing here checks them again. They take no Python
objects, so a user's own ``@njit`` code can call them directly with arrays that
meet the contract; ``scale`` and ``lr`` should then be of the weights' dtype.

The matrix loops work on vectors of ``VECTOR_BYTES`` along rows of X and of the
weights, through two intrinsics (``_fma_lanes``, ``_axpy_lanes``) that emit
LLVM vector instructions: LLVM's own vectoriser, tuned to prefer 256-bit
vectors on AVX-512 CPUs, would use half the width of the FMA units: 4 lanes
of float64. The logits ``X @ Wt.T`` (``Wt (k, d)`` the weights transposed;
``scale`` multiplies the sums) are computed in tiles of ``ROW_TILE`` rows by
``CLASS_TILE`` classes, one vector accumulator per logit, so that each vector of X, converted once to the weights' dtype,
meets every class of the tile and each vector of weights every row. The
weight gradient ``G.T @ X`` is produced a block of ``FEATURE_BLOCK`` features
at a time, each vector of a row of X meeting ``CLASS_TILE`` classes and each
class taking ``ROW_TILE`` rows per update. Rows whose features are all zero
in a block (MNIST's blank borders) add nothing to its gradient and are
passed over. X is read as it is stored: uint8 pixels are a quarter of
float32's memory traffic, and no converted copy of the batch is written.

With more than ``NARROW_CLASSES`` classes (a linear probe's 1000) both are
GEMMs on W in its own ``(d, k)`` layout instead, vectors along the classes
(``_gemm_tile``): no horizontal sums, and no transposed copy of W. Rows
(logits) or features (gradient) are packed, converted, six at a time, each
broadcast against a panel of four vectors of classes.

Parallel work is split so that no sum depends on how it is shared among
threads: chunks of rows for the forward pass, blocks of features for the
weight gradient, every reduction over rows done in row order by one thread,
in groups fixed by the data alone. The results are bitwise identical for any
thread count.
"""

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

# A kernel loaded from the cache and called from a user's jitted function
# finds Numba's threads not started, unless something started them, and the
# process aborts with "Symbol not found: allocate_sched" (numba/numba#9938).
# Starting them on import, as set_num_threads does, keeps every kernel
# callable from any @njit code.
numba.set_num_threads(numba.get_num_threads())

# ``fastmath=True`` would include "nnan" and "ninf": LLVM could then assume that
# no value is NaN or inf and delete the checks that catch a diverging run. These
# flags keep NaN and inf semantics and allow the rest: reassociation and
# contraction into FMA let the inner loops vectorise.
FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

# Rows and classes of a logits tile: ROW_TILE * CLASS_TILE vector accumulators
# (20 of AVX-512's 32 registers), ROW_TILE + CLASS_TILE loads for as many FMAs.
# Five classes divide MNIST's 10 and a probe's 1000 classes: no tile wasted.
ROW_TILE = 4
CLASS_TILE = 5
TILE = ROW_TILE * CLASS_TILE
# Rows per share of the forward pass among threads (a whole number of tiles).
ROW_CHUNK = 32
# Features per block of the weight gradient: the unit of work shared among
# threads, and of the skipping of zeros.
FEATURE_BLOCK = 64
GRADIENT_ACCUMULATORS = CLASS_TILE * FEATURE_BLOCK
# Bytes of the vectors of the matrix loops: a ZMM register where the CPU has
# AVX-512 (LLVM splits wider vectors into several registers: 20 accumulators
# of 64 bytes would not fit AVX2's 16), else a YMM register. A whole number
# of vectors of either dtype fits in FEATURE_BLOCK features.
VECTOR_BYTES = 64 if llvm_binding.get_host_cpu_features().get("avx512f", False) else 32
# Items of a logits tile's vector accumulators (a constant, as _stack_array
# needs): sized for float32's lanes; float64 uses half and never touches the rest.
TILE_LANES = TILE * (VECTOR_BYTES // 4)
# More classes than this: the logits and the weight gradient are GEMMs with
# vectors along the classes of W in its (d, k) layout, zero-padded to whole
# panels of GEMM_VECTORS vectors (the working copy, see _working_weights), so
# that no horizontal sum is needed and every load is a whole vector. A tile
# is GEMM_ROWS rows (logits) or features (gradient) by a panel: 24 vector
# accumulators, GEMM_VECTORS loads and GEMM_ROWS broadcasts for 24 FMAs.
NARROW_CLASSES = 16
GEMM_ROWS = 6
GEMM_VECTORS = 4
# Features of a panel of W that meet every tile of rows: 128 rows of 256 bytes
# (float32 panels on AVX-512) fit in the L1 cache.
DEPTH_BLOCK = 256
# Tiles per share of a GEMM among threads, a constant (Numba cannot cache a
# kernel that asks for the thread count): small enough to balance the 43 row
# tiles of a batch of 256 on two threads, large enough that a block of W,
# read once per share, serves several tiles.
SHARE_TILES = 2
GEMM_LANES = GEMM_ROWS * GEMM_VECTORS * (VECTOR_BYTES // 4)


def _kernel(parallel=False):
    """``@njit`` with this module's options, releasing the GIL and cached on disk."""
    return njit(cache=True, nogil=True, parallel=parallel, fastmath=set(FASTMATH_FLAGS))


@intrinsic
def _stack_array(typingctx, size, dtype):
    """An uninitialised 1-D array of ``size`` (a compile-time constant) items of ``dtype``, on the stack.

    Unlike ``np.empty`` (a call LLVM cannot see through), LLVM knows this
    memory: its items, indexed by constants once the loops over them are
    unrolled, become registers, and stores to it cannot alias any other
    array. It lives in the frame of the jitted function that calls this:
    it must not be returned from it.
    """
    if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, (types.DType, types.NumberClass)):
        return None
    item = dtype.dtype
    array_type = types.Array(item, 1, "C")

    def codegen(context, builder, signature, args):
        item_type = context.get_value_type(item)
        data = cgutils.alloca_once(builder, item_type, size=size.literal_value)
        array = make_array(array_type)(context, builder)
        item_size = context.get_constant(types.intp, context.get_abi_sizeof(item_type))
        populate_array(array, data=data, shape=[context.get_constant(types.intp, size.literal_value)],
                       strides=[item_size], itemsize=item_size, meminfo=None)
        return array._getvalue()

    return array_type(size, dtype), codegen


@intrinsic
def _lanes(typingctx, dtype):
    """``VECTOR_BYTES // dtype.itemsize``, the items of a vector, as a constant LLVM can fold into indices."""
    if not isinstance(dtype, (types.DType, types.NumberClass)):
        return None

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, VECTOR_BYTES // context.get_abi_sizeof(
            context.get_value_type(dtype.dtype)))

    return types.intp(dtype), codegen


def _lanes_pointer(context, builder, array_type, array, i, j, item):
    """LLVM pointer to a vector of ``array``'s dtype at ``array[i, j]`` (``array[j]`` if ``i`` is None).

    Its length is the lanes of the LLVM type ``item``, the accumulators' (a
    vector of uint8 pixels has as many lanes as the float vector it becomes).
    ``array`` is C-contiguous, 2-D or (with ``i`` None) 1-D; ``i``, ``j`` intp.
    """
    indices = [j] if i is None else [i, j]
    pointer = cgutils.get_item_pointer(context, builder, array_type, make_array(array_type)(context, builder, array),
                                       indices, wraparound=False)
    lanes = VECTOR_BYTES // context.get_abi_sizeof(item)
    return builder.bitcast(pointer, ir.VectorType(context.get_value_type(array_type.dtype), lanes).as_pointer())


def _load_lanes(context, builder, array_type, array, i, j, item_type):
    """The vector at ``array[i, j:]`` (see ``_lanes_pointer``) of ``item_type`` (float), converted from integers
    or a narrower float (exactly, for uint8 and float32 items)."""
    item = context.get_value_type(item_type)
    vector = builder.load(_lanes_pointer(context, builder, array_type, array, i, j, item), align=1)
    target = ir.VectorType(item, vector.type.count)
    source = array_type.dtype
    if isinstance(source, types.Integer):
        return (builder.sitofp if source.signed else builder.uitofp)(vector, target)
    if source.bitwidth < item_type.bitwidth:
        return builder.fpext(vector, target)
    return vector


def _matrix_ok(array):
    """Whether ``array`` is a 2-D C-contiguous array: rows are read as contiguous vectors."""
    return isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C"


def _accumulate(context, builder, acc_type, acc, offset, term):
    """``acc[offset:offset + lanes] += term``, a vector; contracted into an FMA with the product that made ``term``."""
    pointer = _lanes_pointer(context, builder, acc_type, acc, None, offset, context.get_value_type(acc_type.dtype))
    total = builder.fadd(builder.load(pointer, align=1), term, flags=("contract",))
    builder.store(total, pointer, align=1)


def _intp(context, builder, value, value_type):
    """An integer argument of an intrinsic as an intp, to index with."""
    return context.cast(builder, value, value_type, types.intp)


@intrinsic
def _fma_lanes(typingctx, acc, offset, X, i, j, Wt, c):
    """``acc[offset:offset + lanes] += X[i, j:j + lanes] * Wt[c, j:j + lanes]``, ``lanes = _lanes(acc.dtype)``.

    ``acc`` 1-D (a ``_stack_array``) and ``Wt`` 2-D C-contiguous of one float
    dtype, ``X`` 2-D C-contiguous of it or uint8, converted exactly. No bounds
    are checked: ``j + lanes <= d`` is the caller's to ensure.
    """
    if not (isinstance(acc, types.Array) and acc.ndim == 1 and _matrix_ok(X) and _matrix_ok(Wt)
            and Wt.dtype == acc.dtype):
        return None

    def codegen(context, builder, signature, args):
        acc_type, offset_type, X_type, i_type, j_type, Wt_type, c_type = signature.args
        acc_value, offset_value, X_value, i_value, j_value, Wt_value, c_value = args
        j_index = _intp(context, builder, j_value, j_type)
        x = _load_lanes(context, builder, X_type, X_value, _intp(context, builder, i_value, i_type), j_index,
                        acc_type.dtype)
        w = _load_lanes(context, builder, Wt_type, Wt_value, _intp(context, builder, c_value, c_type), j_index,
                        acc_type.dtype)
        _accumulate(context, builder, acc_type, acc_value, _intp(context, builder, offset_value, offset_type),
                    builder.fmul(x, w, flags=("contract",)))
        return context.get_dummy_value()

    return types.void(acc, offset, X, i, j, Wt, c), codegen


@intrinsic
def _axpy_lanes(typingctx, acc, offset, weight, X, i, j):
    """``acc[offset:offset + lanes] += weight * X[i, j:j + lanes]``, ``lanes = _lanes(acc.dtype)``.

    ``acc`` 1-D of a float dtype, ``weight`` a scalar of it, ``X`` 2-D
    C-contiguous of it or uint8, converted exactly. No bounds are checked.
    """
    if not (isinstance(acc, types.Array) and acc.ndim == 1 and _matrix_ok(X) and weight == acc.dtype):
        return None

    def codegen(context, builder, signature, args):
        acc_type, offset_type, weight_type, X_type, i_type, j_type = signature.args
        acc_value, offset_value, weight_value, X_value, i_value, j_value = args
        x = _load_lanes(context, builder, X_type, X_value, _intp(context, builder, i_value, i_type),
                        _intp(context, builder, j_value, j_type), acc_type.dtype)
        lanes = x.type.count
        first = builder.insert_element(ir.Constant(x.type, ir.Undefined), weight_value, ir.IntType(32)(0))
        weights = builder.shuffle_vector(first, ir.Constant(x.type, ir.Undefined), ir.Constant(
            ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
        _accumulate(context, builder, acc_type, acc_value, _intp(context, builder, offset_value, offset_type),
                    builder.fmul(weights, x, flags=("contract",)))
        return context.get_dummy_value()

    return types.void(acc, offset, weight, X, i, j), codegen


@_kernel()
def _argmax(z):
    """Index of the first maximum of ``z (k,)``, as ``np.argmax``."""
    best = 0
    for c in range(1, z.shape[0]):
        if z[c] > z[best]:
            best = c
    return best


@_kernel()
def _logsumexp(z):
    """``log(sum(exp(z)))`` of ``z (k,)`` without overflow, in ``z``'s dtype."""
    row_max = z[_argmax(z)]
    total = z.dtype.type(0)
    for c in range(z.shape[0]):
        total += np.exp(z[c] - row_max)
    return row_max + np.log(total)


@_kernel()
def _softmax_in_place(z, best):
    """Overwrite ``z (k,)`` with its softmax; return ``logsumexp`` of the input.

    ``best`` is the index of the maximum of ``z`` (``_argmax(z)``).
    """
    row_max = z[best]
    total = z.dtype.type(0)
    for c in range(z.shape[0]):
        z[c] = np.exp(z[c] - row_max)
        total += z[c]
    for c in range(z.shape[0]):
        z[c] /= total
    return row_max + np.log(total)


@_kernel()
def _n_blocks(d):
    """The number of blocks of ``FEATURE_BLOCK`` features (the last may be shorter) in ``d`` features."""
    return (d + FEATURE_BLOCK - 1) // FEATURE_BLOCK


@_kernel()
def _nonzero_blocks(X, nonzero):
    """``nonzero (n, _n_blocks(d))`` bool: whether each block of features of each row of ``X (n, d)`` holds a nonzero.

    Blocks in the outer loop: the width of the inner one is then the same for
    every row (LLVM specialises it), which runs it four times as fast.
    """
    n, d = X.shape
    for block in range(_n_blocks(d)):
        start = block * FEATURE_BLOCK
        width = min(FEATURE_BLOCK, d - start)
        for i in range(n):
            x = X[i, start:start + width]
            any_nonzero = False
            for j in range(width):
                any_nonzero |= x[j] != 0
            nonzero[i, block] = any_nonzero


@_kernel()
def _logits_tile(X, scale, nonzero, i0, Wt, c0, b, Z):
    """``Z[i, c] = scale * X[i] @ Wt[c] + b[c]`` for ``ROW_TILE`` rows from ``i0`` and ``CLASS_TILE`` classes from ``c0``.

    ``X (n, d)``, ``nonzero`` from ``_nonzero_blocks(X)``, ``Wt (k, d)``,
    ``Z (n, k)``. Rows from ``n`` and classes from ``k`` on are replaced by
    the last one: computed again and written again with the same value, so
    that every tile has the same constant shape. The loops over the tile, of
    constant length, are unrolled; the loop over the features takes a vector
    at a time, with one vector accumulator per logit, each summing its
    features in the same order, wherever it is in the tile (lanes, then the
    features past the last whole vector); each vector of X is converted to
    the weights' dtype once for all the classes of the tile. The loop runs from
    the first block of features that is nonzero in some row of the tile to
    the last (MNIST's blank top and bottom rows of pixels, which would add
    exact zeros for finite weights, are passed over).
    """
    n, d = X.shape
    k = Wt.shape[0]
    first_block, last_block = nonzero.shape[1], -1
    for r in range(ROW_TILE):
        flags = nonzero[min(i0 + r, n - 1)]
        for block in range(nonzero.shape[1]):
            if flags[block]:
                first_block = min(first_block, block)
                last_block = max(last_block, block)
    # Indices start + j, start known not negative: Numba then drops its test for
    # negative indices, which would turn the loads of the tail into gathers.
    start = max(first_block * FEATURE_BLOCK, 0)
    stop = min((last_block + 1) * FEATURE_BLOCK, d)
    lanes = _lanes(Wt.dtype)
    vector_stop = start + (stop - start) // lanes * lanes
    acc = _stack_array(TILE_LANES, Wt.dtype)
    for t in range(TILE_LANES):
        acc[t] = 0
    for j in range(start, vector_stop, lanes):
        for r in range(ROW_TILE):
            for c in range(CLASS_TILE):
                _fma_lanes(acc, (r * CLASS_TILE + c) * lanes, X, min(i0 + r, n - 1), j, Wt, min(c0 + c, k - 1))
    for r in range(ROW_TILE):
        for c in range(CLASS_TILE):
            t = r * CLASS_TILE + c
            total = acc[t * lanes]
            for lane in range(1, lanes):
                total += acc[t * lanes + lane]
            # The features past the last whole vector (none for MNIST), one at a time.
            for j in range(vector_stop, stop):
                total += Wt.dtype.type(X[min(i0 + r, n - 1), j]) * Wt[min(c0 + c, k - 1), j]
            Z[min(i0 + r, n - 1), min(c0 + c, k - 1)] = total * scale + b[min(c0 + c, k - 1)]


@_kernel()
def _logits(X, scale, Wt, b, nonzero, Z):
    """``Z (n, k) = (X (n, d) * scale) @ Wt.T + b``, ``Wt (k, d)`` the weights transposed.

    Fills ``nonzero`` (see ``_nonzero_blocks``) first. A tile of classes
    meets every row before the next, so that its weights stay in the cache.
    """
    _nonzero_blocks(X, nonzero)
    n = X.shape[0]
    k = Wt.shape[0]
    for c0 in range(0, k, CLASS_TILE):
        for i0 in range(0, n, ROW_TILE):
            _logits_tile(X, scale, nonzero, i0, Wt, c0, b, Z)


@_kernel()
def _wide(k):
    """Whether ``k`` classes take the GEMM path: weights in the padded ``(d, k)`` layout."""
    return k > NARROW_CLASSES


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
def _working_weights(W):
    """The weights ``W (d, k)`` as the kernels read and train them: a copy ``Wt (k, d) = W.T``
    for ``k <= NARROW_CLASSES``, else ``W`` itself."""
    if _wide(W.shape[1]):
        return W
    return np.ascontiguousarray(W.T)


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


@_kernel(parallel=True)
def _gemm_logits(X, scale, W, b, Z):
    """``Z[:, c] = (X (n, d) * scale) @ W[:, c] + b[c]`` for ``c < k``, ``W (d, k)``, ``b (k,)``.

    ``Z (n, k)`` or ``(n, kp)``, its columns from ``k`` on then 0. The last,
    partial panel of ``W`` is read from a zero-padded copy: every load is a
    whole vector, and none goes past ``W``. Rows are shared among threads in whole tiles; each share packs its tiles
    once, then every block of ``DEPTH_BLOCK`` features of a panel of ``Ww``
    meets all of them while it is in the L1 cache (the panel's features
    all at once would be read from L2, at a 4 KB stride).
    """
    n, d = X.shape
    k = b.shape[0]
    panel = _panel(W.dtype)
    full = k // panel * panel
    last_panel = np.zeros((d, panel), dtype=W.dtype)
    last_panel[:, :k - full] = W[:, full:]
    tiles = (n + GEMM_ROWS - 1) // GEMM_ROWS
    for share in prange((tiles + SHARE_TILES - 1) // SHARE_TILES):
        first_tile, stop_tile = share * SHARE_TILES, min((share + 1) * SHARE_TILES, tiles)
        packed = np.empty((stop_tile - first_tile, d * GEMM_ROWS), dtype=W.dtype)
        for tile in range(first_tile, stop_tile):
            i0 = tile * GEMM_ROWS
            _pack(X, i0, min(GEMM_ROWS, n - i0), False, packed[tile - first_tile])
        sums = np.empty((stop_tile - first_tile, GEMM_LANES), dtype=W.dtype)
        for c0 in range(0, Z.shape[1], panel):
            B, B_c0 = (W, c0) if c0 < full else (last_panel, 0)
            for j0 in range(0, d, DEPTH_BLOCK):
                j1 = min(j0 + DEPTH_BLOCK, d)
                for tile in range(first_tile, stop_tile):
                    _gemm_tile(packed[tile - first_tile, j0 * GEMM_ROWS:j1 * GEMM_ROWS], B[j0:j1], B_c0,
                               sums[tile - first_tile], j0 > 0)
            for tile in range(first_tile, stop_tile):
                acc = sums[tile - first_tile]
                i0 = tile * GEMM_ROWS
                for m in range(min(GEMM_ROWS, n - i0)):
                    for c in range(min(panel, Z.shape[1] - c0)):
                        Z[i0 + m, c0 + c] = acc[m * panel + c] * scale + (b[c0 + c] if c0 + c < k else 0)


@_kernel(parallel=True)
def _gemm_weight_gradient(X, scale, G, dW, lr, W):
    """The weight gradient ``scale * X.T @ G[:, :k]``: if ``lr > 0``, ``W (d, k) -= lr *`` it, else it is ``dW (d, k)``.

    ``X (n, d)``, ``G (n, kp)`` from ``_forward_batch`` (zeros past ``k``).
    Features are shared among threads in whole tiles, each packed once for
    all panels; every sum runs over the rows in order. Each tile updates the
    weights as it is made: the gradient is not stored.
    """
    n, d = X.shape
    k = W.shape[1]
    panel = _panel(G.dtype)
    tiles = (d + GEMM_ROWS - 1) // GEMM_ROWS
    for share in prange((tiles + SHARE_TILES - 1) // SHARE_TILES):
        packed = np.empty(n * GEMM_ROWS, dtype=G.dtype)
        acc = np.empty(GEMM_LANES, dtype=G.dtype)
        for tile in range(share * SHARE_TILES, min((share + 1) * SHARE_TILES, tiles)):
            j0 = tile * GEMM_ROWS
            features = min(GEMM_ROWS, d - j0)
            _pack(X, j0, features, True, packed)
            for c0 in range(0, G.shape[1], panel):
                _gemm_tile(packed, G, c0, acc, False)
                for m in range(features):
                    for c in range(min(panel, k - c0)):
                        gradient = acc[m * panel + c] * scale
                        if lr > 0:
                            W[j0 + m, c0 + c] -= lr * gradient
                        else:
                            dW[j0 + m, c0 + c] = gradient


@_kernel(parallel=True)
def _forward_batch(X, y, Ww, b, scale, nonzero, G, row_loss, row_correct):
    """Forward pass of one batch, chunks of ``ROW_CHUNK`` rows in parallel.

    ``Ww`` from ``_working_weights``. Fills ``nonzero`` (see ``_nonzero_blocks``;
    not for the GEMM path), ``G (n, k)`` (``(n, kp)`` like ``Ww`` for the GEMM
    path, zeros past ``k``) with ``d loss / d Z = (softmax(Z) - onehot(y)) / n``,
    ``row_loss (n,)`` float64 with each row's cross-entropy and
    ``row_correct (n,)`` with whether its argmax is its label.
    """
    n = X.shape[0]
    k = b.shape[0]
    inv_n = G.dtype.type(1) / n
    if _wide(k):
        _gemm_logits(X, scale, Ww, b, G)
    for chunk in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        start = chunk * ROW_CHUNK
        stop = min(start + ROW_CHUNK, n)
        if not _wide(k):
            _logits(X[start:stop], scale, Ww, b, nonzero[start:stop], G[start:stop])
        for i in range(start, stop):
            z, label = G[i, :k], y[i]
            best = _argmax(z)
            row_correct[i] = best == label
            target = z[label]
            row_loss[i] = _softmax_in_place(z, best) - target
            z[label] -= 1
            for c in range(z.shape[0]):
                z[c] *= inv_n
            # The padding's gradient: zeros, so that it adds nothing to the weights' padding.
            G[i, k:] = 0


@_kernel()
def _reduce_rows(G, row_loss, row_correct, db):
    """Serial, row-ordered sums of a batch: ``db (k,) = G[:, :k].sum(0)``; returns ``(mean loss, n_correct)``."""
    n = G.shape[0]
    k = db.shape[0]
    loss_sum = 0.0
    n_correct = 0
    db[:] = 0
    for i in range(n):
        loss_sum += row_loss[i]
        n_correct += row_correct[i]
        for c in range(k):
            db[c] += G[i, c]
    return loss_sum / n, n_correct


@_kernel()
def _gradient_block(X, scale, nonzero, G, block, rows, dWt):
    """``dWt[:, j0:j0 + FEATURE_BLOCK] = scale * G.T @ X[:, j0:j0 + FEATURE_BLOCK]``, ``j0 = block * FEATURE_BLOCK``.

    ``X (n, d)`` (fewer than ``FEATURE_BLOCK`` features in the last block),
    ``nonzero`` from ``_nonzero_blocks(X)``, ``G (n, k)``, ``dWt (k, d)``;
    ``rows (n,)`` is scratch. The rows whose features here are not all zero
    are listed in order and taken ``ROW_TILE`` at a time: each of
    ``CLASS_TILE`` classes adds their ``ROW_TILE`` terms to its accumulators,
    vectors along the features, in one update (the last group is filled up
    with terms of weight zero). Accumulators on the stack, which LLVM knows
    alias no array, let each vector of X loaded and converted serve every class.
    Skipped rows would add exact zeros (for finite ``G``).
    """
    n, d = X.shape
    k = G.shape[1]
    # Indices from j0 + j: with j0 known not negative, Numba's test for negative
    # indices goes away, and with it the gathers it made of the loads.
    j0 = max(block * FEATURE_BLOCK, 0)
    width = min(FEATURE_BLOCK, d - j0)
    lanes = _lanes(G.dtype)
    vector_width = width // lanes * lanes
    n_rows = 0
    for i in range(n):
        rows[n_rows] = i
        n_rows += nonzero[i, block]
    acc = _stack_array(GRADIENT_ACCUMULATORS, G.dtype)
    weights = _stack_array(TILE, G.dtype)
    group = _stack_array(ROW_TILE, rows.dtype)
    for c0 in range(0, k, CLASS_TILE):
        for t in range(GRADIENT_ACCUMULATORS):
            acc[t] = 0
        for first in range(0, n_rows, ROW_TILE):
            for r in range(ROW_TILE):
                i = rows[min(first + r, n_rows - 1)]
                group[r] = i
                for c in range(CLASS_TILE):
                    weights[r * CLASS_TILE + c] = G[i, min(c0 + c, k - 1)] if first + r < n_rows else 0
            for j in range(0, vector_width, lanes):
                for c in range(CLASS_TILE):
                    for r in range(ROW_TILE):
                        _axpy_lanes(acc, c * FEATURE_BLOCK + j, weights[r * CLASS_TILE + c], X, group[r], j0 + j)
            # The features past the last whole vector (none for MNIST), one at a time.
            for j in range(vector_width, width):
                for c in range(CLASS_TILE):
                    total = acc[c * FEATURE_BLOCK + j]
                    for r in range(ROW_TILE):
                        total += weights[r * CLASS_TILE + c] * G.dtype.type(X[group[r], j0 + j])
                    acc[c * FEATURE_BLOCK + j] = total
        # Classes from k on repeat the last one: their (equal) columns are written again.
        for c in range(CLASS_TILE):
            for j in range(width):
                dWt[min(c0 + c, k - 1), j0 + j] = acc[c * FEATURE_BLOCK + j] * scale


@_kernel(parallel=True)
def _weight_gradient(X, scale, nonzero, G, dWt, lr, Wt, k):
    """The weight gradient ``scale * X.T @ G`` into ``dWt``; then, if ``lr > 0``, ``Wt -= lr * dWt``.

    ``Wt`` from ``_working_weights`` for ``k`` classes and ``dWt`` in its
    layout, ``G`` from ``_forward_batch``. With ``k <= NARROW_CLASSES``, blocks of
    ``FEATURE_BLOCK`` features in parallel, each one's update right after its
    gradient; ``X (n, d)``, ``nonzero`` from ``_nonzero_blocks(X)``. Else ``_gemm_weight_gradient``.
    """
    if _wide(k):
        _gemm_weight_gradient(X, scale, G, dWt, lr, Wt)
        return
    n, d = X.shape
    for block in prange(_n_blocks(d)):
        _gradient_block(X, scale, nonzero, G, block, np.empty(n, dtype=np.intp), dWt)
        j0 = block * FEATURE_BLOCK
        if lr > 0:
            stop = min(j0 + FEATURE_BLOCK, d)
            for c in range(k):
                weights, gradient = Wt[c, j0:stop], dWt[c, j0:stop]
                for j in range(stop - j0):
                    weights[j] -= lr * gradient[j]


@_kernel()
def _sgd_step(X, y, Wt, b, lr, scale, nonzero, G, row_loss, row_correct, dWt, db):
    """One SGD step on the batch ``X (n, d)``; ``Wt`` (from ``_working_weights``) and ``b`` in place.

    ``nonzero``, ``G``, ``row_loss``, ``row_correct``, ``dWt`` and ``db`` are
    scratch (see ``_batch_scratch``) with ``n`` rows but for the last two.
    Returns ``(loss, n_correct)``.
    """
    _forward_batch(X, y, Wt, b, scale, nonzero, G, row_loss, row_correct)
    loss, n_correct = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, scale, nonzero, G, dWt, lr, Wt, b.shape[0])
    for c in range(b.shape[0]):
        b[c] -= lr * db[c]
    return loss, n_correct


@_kernel()
def _batch_scratch(rows, W, Wt):
    """Scratch for batches of up to ``rows`` rows, weights ``W (d, k)`` and ``Wt = _working_weights(W)``.

    Returns ``(nonzero (rows, _n_blocks(d)) bool, G (rows, k) (or (rows, kp)
    for the GEMM path), row_loss (rows,) float64, row_correct (rows,) bool,
    dWt (shaped like Wt), db (k,))``, floats of ``W``'s dtype.
    """
    d, k = W.shape
    return (np.empty((rows, _n_blocks(d)), dtype=np.bool_),
            np.empty((rows, _padded_classes(k, W.dtype) if _wide(k) else k), dtype=W.dtype),
            np.empty(rows, dtype=np.float64), np.empty(rows, dtype=np.bool_),
            np.empty(Wt.shape, dtype=W.dtype), np.empty(k, dtype=W.dtype))


@_kernel()
def _train_batches(X, y, W, b, lr, batch_size, scale):
    """SGD over ``X[i:i + batch_size]`` in order, ``W`` and ``b`` in place.

    Returns ``(sum of batch losses, n_batches, n_correct)``.
    """
    n = X.shape[0]
    Wt = _working_weights(W)
    nonzero, G, row_loss, row_correct, dWt, db = _batch_scratch(min(batch_size, n), W, Wt)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        loss, batch_correct = _sgd_step(
            X[start:stop], y[start:stop], Wt, b, lr, scale,
            nonzero[:rows], G[:rows], row_loss[:rows], row_correct[:rows], dWt, db,
        )
        loss_sum += loss
        n_correct += batch_correct
        n_batches += 1
    if not _wide(W.shape[1]):
        W[:, :] = Wt.T
    return loss_sum, n_batches, n_correct


@_kernel(parallel=True)
def softmax(Z, out):
    """``out (n, k) = softmax(Z (n, k))`` row by row (``out`` may be ``Z``); returns ``out``."""
    for i in prange(Z.shape[0]):
        out[i] = Z[i]
        _softmax_in_place(out[i], _argmax(out[i]))
    return out


@_kernel(parallel=True)
def cross_entropy(Z, y):
    """Mean over rows of ``logsumexp(Z[i]) - Z[i, y[i]]``, a float64 summed in row order."""
    n = Z.shape[0]
    row_loss = np.empty(n, dtype=np.float64)
    for i in prange(n):
        row_loss[i] = _logsumexp(Z[i]) - Z[i, y[i]]
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total / n


@_kernel()
def loss_and_grad(X, y, W, b, scale):
    """``(mean loss, dW (d, k), db (k,))`` of the batch ``X * scale (n, d)``; ``W``, ``b`` unchanged."""
    Wt = _working_weights(W)
    nonzero, G, row_loss, row_correct, dWt, db = _batch_scratch(X.shape[0], W, Wt)
    _forward_batch(X, y, Wt, b, scale, nonzero, G, row_loss, row_correct)
    loss, _ = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, scale, nonzero, G, dWt, W.dtype.type(0), Wt, W.shape[1])
    return loss, dWt if _wide(W.shape[1]) else np.ascontiguousarray(dWt.T), db


@_kernel()
def sgd_step(X, y, W, b, lr, scale):
    """One SGD step on the batch ``X (n, d)``, ``W`` and ``b`` in place; ``(mean loss, n_correct)``."""
    loss, _, n_correct = _train_batches(X, y, W, b, lr, X.shape[0], scale)
    return loss, n_correct


@_kernel()
def train_epoch(X, y, W, b, lr, batch_size, scale):
    """SGD over ``X[i:i + batch_size]`` in order, ``W``, ``b`` in place; ``(mean batch loss, accuracy)``."""
    loss_sum, n_batches, n_correct = _train_batches(X, y, W, b, lr, batch_size, scale)
    return loss_sum / n_batches, n_correct / X.shape[0]


@_kernel(parallel=True)
def _logits_of_rows(X, W, b, scale):
    """``Z (n, k) = X * scale @ W + b`` in ``W``'s dtype, chunks of ``ROW_CHUNK`` rows in parallel."""
    n, d = X.shape
    Wt = _working_weights(W)
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    if _wide(W.shape[1]):
        _gemm_logits(X, scale, Wt, b, Z)
        return Z
    for chunk in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        start = chunk * ROW_CHUNK
        stop = min(start + ROW_CHUNK, n)
        nonzero = np.empty((stop - start, _n_blocks(d)), dtype=np.bool_)
        _logits(X[start:stop], scale, Wt, b, nonzero, Z[start:stop])
    return Z


@_kernel(parallel=True)
def predict_proba(X, W, b, scale):
    """Class probabilities ``(n, k)`` of the rows of ``X * scale``, in ``W``'s dtype."""
    P = _logits_of_rows(X, W, b, scale)
    for i in prange(X.shape[0]):
        _softmax_in_place(P[i], _argmax(P[i]))
    return P


@_kernel(parallel=True)
def predict(X, W, b, scale):
    """Index of each row's largest logit, ``(n,)`` np.intp (the first of ties)."""
    Z = _logits_of_rows(X, W, b, scale)
    labels = np.empty(X.shape[0], dtype=np.intp)
    for i in prange(X.shape[0]):
        labels[i] = _argmax(Z[i])
    return labels
