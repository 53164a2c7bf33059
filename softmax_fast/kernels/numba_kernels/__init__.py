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
weights, through intrinsics (``_fma_lanes``, ``_axpy_lanes``) that emit LLVM
vector instructions: LLVM's own vectoriser, tuned to prefer 256-bit vectors
on AVX-512 CPUs, would use half the width of the FMA units: 4 lanes of
float64. With up to ``NARROW_CLASSES`` classes (MNIST's 10) the weights are
trained in a packed copy, a row of weights per vector of features with every
class's lanes side by side (``_working_weights``), the classes padded to a
count of "slots" that the hot loops take as a compile-time constant. The
logits ``X @ W`` (``scale`` multiplies the sums) are made a row at a time
(``_logits_row``), one vector accumulator per slot: each vector of X,
converted once to the weights' dtype, meets every class. The weight
gradient ``X.T @ G`` is made a vector of features at a time
(``_gradient_vector``), each row's vector of X meeting every class. A bit
mask per row tells which groups of ``MASK_GROUP`` features hold a nonzero
(``_row_masks``); vectors of features that are zero in a row (MNIST's blank
background) add nothing and are passed over in both. X is read as it is
stored: uint8 pixels are a quarter of float32's memory traffic, and no
converted copy of the batch is written.

With more than ``NARROW_CLASSES`` classes (a linear probe's 1000) both are
GEMMs on W in its own ``(d, k)`` layout instead, vectors along the classes
(``_gemm_tile``): no horizontal sums, and no transposed copy of W. Rows
(logits) or features (gradient) are packed, converted, six at a time, each
broadcast against a panel of four vectors of classes. Each thread takes one
even share of the tiles (``_thread_count``), packs them a cache-sized block
at a time, and every panel meets the whole block (``_gemm_block``): a panel
is read from memory once per block, not once per tile.

Parallel work is split so that no sum depends on how it is shared among
threads: chunks of rows for the forward pass, vectors of features (or, for
the GEMMs, tiles of them) for the weight gradient, every reduction over rows
done in row order by one thread, in groups fixed by the data alone. The
results are bitwise identical for any thread count.
"""

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
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

# Rows per share of the forward pass among threads.
ROW_CHUNK = 32
# Bytes of the vectors of the matrix loops: a ZMM register where the CPU has
# AVX-512 (LLVM splits wider vectors into several registers: 20 accumulators
# of 64 bytes would not fit AVX2's 16), else a YMM register.
VECTOR_BYTES = 64 if llvm_binding.get_host_cpu_features().get("avx512f", False) else 32
# Lanes of a vector of float32, the most of either dtype: sizes _stack_array's constants.
FLOAT32_LANES = VECTOR_BYTES // 4
# Features per bit of the nonzero masks of the rows (k <= NARROW_CLASSES): a
# vector of float64, so that a vector of either dtype is one or two groups.
MASK_GROUP = VECTOR_BYTES // 8
# Groups tested by one compare when the masks are made: on AVX-512, 64
# features, one load of uint8 pixels.
MASK_CHUNK = 8
# More classes than this: the logits and the weight gradient are GEMMs with
# vectors along the classes of W in its (d, k) layout, zero-padded to whole
# panels of GEMM_VECTORS vectors (the working copy, see _working_weights), so
# that no horizontal sum is needed and every load is a whole vector. A tile
# is GEMM_ROWS rows (logits) or features (gradient) by a panel: 24 vector
# accumulators, GEMM_VECTORS loads and GEMM_ROWS broadcasts for 24 FMAs.
NARROW_CLASSES = 16
# Up to NARROW_CLASSES classes are padded to "slots", a multiple of
# CLASS_STEP: zero weights and gradients past the last class. The hot loops
# take the count of slots as a compile-time constant (one specialisation per
# count: _narrow_logits and _gradient_vector_of_slots list them, 5 to
# MAX_SLOTS): their loops over the classes are then unrolled, one vector
# accumulator per slot in a register. Five divides MNIST's 10 classes: no
# slot wasted there.
CLASS_STEP = 5
MAX_SLOTS = (NARROW_CLASSES + CLASS_STEP - 1) // CLASS_STEP * CLASS_STEP
# Items of the narrow loops' vector accumulators (a constant, as _stack_array
# needs): sized for float32's lanes; float64 uses half and never touches the rest.
SLOT_LANES = MAX_SLOTS * FLOAT32_LANES
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


def _kernel(parallel=False, inline=False):
    """``@njit`` with this module's options, releasing the GIL and cached on disk.

    ``inline`` for helpers called once per row or vector: Numba copies them
    into their callers. A call would take and release a reference to each
    array it is passed, atomic operations that cost as much as the row's
    arithmetic when the call is in a loop.
    """
    return njit(cache=True, nogil=True, parallel=parallel, fastmath=set(FASTMATH_FLAGS),
                inline="always" if inline else "never")


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


def _splat(builder, value, vector_type):
    """A vector of ``vector_type`` with ``value`` in every lane."""
    first = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.IntType(32)(0))
    return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined), ir.Constant(
        ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count))


@intrinsic
def _fma_lanes(typingctx, acc, offset, X, i, j, Wp, r, col):
    """``acc[offset:offset + lanes] += X[i, j:j + lanes] * Wp[r, col:col + lanes]``, ``lanes = _lanes(acc.dtype)``.

    ``acc`` 1-D (a ``_stack_array``) and ``Wp`` 2-D C-contiguous of one float
    dtype, ``X`` 2-D C-contiguous of it or uint8, converted exactly. No bounds
    are checked: ``j + lanes <= d`` and ``col + lanes <=`` the columns of
    ``Wp`` are the caller's to ensure.
    """
    if not (isinstance(acc, types.Array) and acc.ndim == 1 and _matrix_ok(X) and _matrix_ok(Wp)
            and Wp.dtype == acc.dtype):
        return None

    def codegen(context, builder, signature, args):
        acc_type, offset_type, X_type, i_type, j_type, Wp_type, r_type, col_type = signature.args
        acc_value, offset_value, X_value, i_value, j_value, Wp_value, r_value, col_value = args
        x = _load_lanes(context, builder, X_type, X_value, _intp(context, builder, i_value, i_type),
                        _intp(context, builder, j_value, j_type), acc_type.dtype)
        w = _load_lanes(context, builder, Wp_type, Wp_value, _intp(context, builder, r_value, r_type),
                        _intp(context, builder, col_value, col_type), acc_type.dtype)
        _accumulate(context, builder, acc_type, acc_value, _intp(context, builder, offset_value, offset_type),
                    builder.fmul(x, w, flags=("contract",)))
        return context.get_dummy_value()

    return types.void(acc, offset, X, i, j, Wp, r, col), codegen


@intrinsic
def _rounded(typingctx, value):
    """``value`` (a float) as it stands: LLVM may not reassociate the operations that made it with those that use
    it (``llvm.arithmetic.fence``), as fast-math flags would let it do."""
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        item = context.get_value_type(signature.args[0])
        fence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(item, [item]),
                                               f"llvm.arithmetic.fence.f{signature.args[0].bitwidth}")
        return builder.call(fence, args)

    return value(value), codegen


@intrinsic
def _sum_lanes(typingctx, acc, offset):
    """The sum of ``acc[offset:offset + lanes]``, ``lanes = _lanes(acc.dtype)``, ``acc`` 1-D of a float dtype.

    Halves added pairwise, ``log2(lanes)`` vector adds in registers: a
    chain of scalar adds (LLVM's choice for a loop over the lanes) would take
    ``lanes - 1`` dependent steps.
    """
    if not (isinstance(acc, types.Array) and acc.ndim == 1 and isinstance(acc.dtype, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        acc_type, offset_type = signature.args
        acc_value, offset_value = args
        item = context.get_value_type(acc_type.dtype)
        vector = builder.load(_lanes_pointer(context, builder, acc_type, acc_value, None,
                                             _intp(context, builder, offset_value, offset_type), item), align=1)
        width = vector.type.count
        while width > 1:
            width //= 2
            low = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), width),
                                                                     list(range(width))))
            high = builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(ir.IntType(32), width),
                                                                      list(range(width, 2 * width))))
            vector = builder.fadd(low, high)
        return builder.extract_element(vector, ir.IntType(32)(0))

    return acc.dtype(acc, offset), codegen


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
        _accumulate(context, builder, acc_type, acc_value, _intp(context, builder, offset_value, offset_type),
                    builder.fmul(_splat(builder, weight_value, x.type), x, flags=("contract",)))
        return context.get_dummy_value()

    return types.void(acc, offset, weight, X, i, j), codegen


# exp(x) for x <= 0 (``_exp_lanes``), per float width: x = n * ln2 + r with
# |r| <= ln2 / 2, n rounded by adding and subtracting ``shifter`` (which leaves
# n in the low bits of the sum, ready to be added to the exponent of e^r);
# ``ln2 = ln2_hi + ln2_lo``, with ln2_hi short enough that n * ln2_hi is
# exact; e^r from its Taylor series to ``degree``, whose first term left out
# is under half an ulp; below ``floor``, 2^n would not be a normal number and
# the result is 0 (exp(floor) is under 1e-37 or 1e-307).
EXP_CONSTANTS = {
    32: {"shifter": 1.5 * 2.0**23, "ln2_hi": 0.693359375, "ln2_lo": -2.12194440e-4, "degree": 7,
         "floor": -86.0, "mantissa_bits": 23},
    64: {"shifter": 1.5 * 2.0**52, "ln2_hi": 6.93147180369123816490e-01, "ln2_lo": 1.90821492927058770002e-10,
         "degree": 13, "floor": -707.0, "mantissa_bits": 52},
}


@intrinsic
def _exp_lanes(typingctx, z, offset, shift):
    """``z[offset:offset + lanes] = exp(z[offset:offset + lanes] - shift)``, ``lanes = _lanes(z.dtype)``, where
    the differences are not positive (a softmax's), in vector instructions.

    ``z`` 1-D of a float dtype, ``shift`` a scalar of it. NaN stays NaN and
    -inf gives 0; results are within about an ulp of ``np.exp``'s, but for
    differences below the ``floor`` of ``EXP_CONSTANTS``, which give 0. Every
    instruction carries the one fast-math flag "contract": Numba adds its
    flags to those that have none, and reassociation would fold the rounding
    of n away. No bounds are checked.
    """
    if not (isinstance(z, types.Array) and z.ndim == 1 and isinstance(z.dtype, types.Float) and shift == z.dtype):
        return None

    def codegen(context, builder, signature, args):
        z_type, offset_type, _ = signature.args
        z_value, offset_value, shift_value = args
        item = context.get_value_type(z_type.dtype)
        constants = EXP_CONSTANTS[z_type.dtype.bitwidth]
        pointer = _lanes_pointer(context, builder, z_type, z_value, None,
                                 _intp(context, builder, offset_value, offset_type), item)
        vector_type = pointer.type.pointee
        integer_type = ir.VectorType(ir.IntType(z_type.dtype.bitwidth), vector_type.count)
        flags = ("contract",)

        def splat(value):
            return ir.Constant(vector_type, [value] * vector_type.count)

        x = builder.fsub(builder.load(pointer, align=1), _splat(builder, shift_value, vector_type), flags=flags)
        too_small = builder.fcmp_ordered("<", x, splat(constants["floor"]), flags=flags)
        clamped = builder.select(too_small, splat(constants["floor"]), x)
        shifted = builder.fadd(builder.fmul(clamped, splat(1 / np.log(2)), flags=flags), splat(constants["shifter"]),
                               flags=flags)
        n = builder.fsub(shifted, splat(constants["shifter"]), flags=flags)
        r = builder.fsub(clamped, builder.fmul(n, splat(constants["ln2_hi"]), flags=flags), flags=flags)
        r = builder.fsub(r, builder.fmul(n, splat(constants["ln2_lo"]), flags=flags), flags=flags)
        degree = constants["degree"]
        factorial = float(np.prod(np.arange(1, degree + 1, dtype=np.float64)))
        taylor = splat(1 / factorial)
        for power in range(degree - 1, -1, -1):
            factorial /= power + 1
            taylor = builder.fadd(builder.fmul(taylor, r, flags=flags), splat(1 / factorial), flags=flags)
        exponent = builder.shl(builder.bitcast(shifted, integer_type),
                               ir.Constant(integer_type, [constants["mantissa_bits"]] * vector_type.count))
        result = builder.bitcast(builder.add(builder.bitcast(taylor, integer_type), exponent), vector_type)
        result = builder.select(too_small, splat(0.0), result)
        result = builder.select(builder.fcmp_unordered("uno", x, x, flags=flags), x, result)
        builder.store(result, pointer, align=1)
        return context.get_dummy_value()

    return types.void(z, offset, shift), codegen


@intrinsic
def _nonzero_groups(typingctx, X, i, j, groups):
    """Bit ``g`` set where ``X[i, j + g * MASK_GROUP:][:MASK_GROUP]`` holds an item whose bits are not all
    zero, for ``g < groups`` (a compile-time constant up to 64): a uint64.

    ``X`` 2-D C-contiguous. A float -0.0 counts as nonzero (its terms add
    nothing either way). A group of at most 8 bytes (uint8 pixels) is
    compared as one integer, a vector of groups at once; longer groups item
    by item, as integers of the items' width. No bounds are checked.
    """
    if not (_matrix_ok(X) and isinstance(groups, types.IntegerLiteral) and 0 < groups.literal_value <= 64):
        return None

    def codegen(context, builder, signature, args):
        X_type, i_type, j_type, _ = signature.args
        X_value, i_value, j_value, _ = args
        count = groups.literal_value
        item_bytes = context.get_abi_sizeof(context.get_value_type(X_type.dtype))
        pointer = cgutils.get_item_pointer(context, builder, X_type, make_array(X_type)(context, builder, X_value),
                                           [_intp(context, builder, i_value, i_type),
                                            _intp(context, builder, j_value, j_type)], wraparound=False)
        if MASK_GROUP * item_bytes <= 8:
            groups_type = ir.VectorType(ir.IntType(8 * MASK_GROUP * item_bytes), count)
            per_group = builder.load(builder.bitcast(pointer, groups_type.as_pointer()), align=1)
        else:
            items_type = ir.VectorType(ir.IntType(8 * item_bytes), count * MASK_GROUP)
            items = builder.load(builder.bitcast(pointer, items_type.as_pointer()), align=1)
            groups_type = ir.VectorType(ir.IntType(MASK_GROUP), count)
            per_group = builder.bitcast(builder.icmp_unsigned("!=", items, ir.Constant(items_type, 0)), groups_type)
        bits = builder.bitcast(builder.icmp_unsigned("!=", per_group, ir.Constant(groups_type, 0)),
                               ir.IntType(count))
        return bits if count == 64 else builder.zext(bits, ir.IntType(64))

    return types.uint64(X, i, j, groups), codegen


@intrinsic
def _active_rows(typingctx, masks, w, i0, select):
    """Bit ``r`` set where ``masks[w, i0 + r] & select`` is not zero, for ``r < 64``: a uint64.

    ``masks`` 2-D C-contiguous uint64 with at least ``i0 + 64`` columns,
    ``select`` a uint64: 64 rows' bits made with a few vector compares.
    """
    if not (_matrix_ok(masks) and masks.dtype == types.uint64 and select == types.uint64):
        return None

    def codegen(context, builder, signature, args):
        masks_type, w_type, i0_type, _ = signature.args
        masks_value, w_value, i0_value, select_value = args
        pointer = cgutils.get_item_pointer(
            context, builder, masks_type, make_array(masks_type)(context, builder, masks_value),
            [_intp(context, builder, w_value, w_type), _intp(context, builder, i0_value, i0_type)], wraparound=False)
        words_type = ir.VectorType(ir.IntType(64), 64)
        words = builder.load(builder.bitcast(pointer, words_type.as_pointer()), align=8)
        selected = builder.and_(words, _splat(builder, select_value, words_type))
        return builder.bitcast(builder.icmp_unsigned("!=", selected, ir.Constant(words_type, 0)), ir.IntType(64))

    return types.uint64(masks, w, i0, select), codegen


@intrinsic
def _thread_count(typingctx):
    """``numba.get_num_threads()``, read from the threading layer's own symbol.

    Numba's function reads it through a ctypes pointer, a "dynamic global"
    that keeps the kernel that calls it out of the cache. Numba's parallel
    loops call this symbol with this signature themselves.
    """
    def codegen(context, builder, signature, args):
        return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []),
                                                           "get_num_threads"), [])

    return types.intp(), codegen


@intrinsic
def _larger_lanes(typingctx, acc, z, j):
    """``acc[:lanes] = where(z[j:j + lanes] > acc[:lanes], z[j:j + lanes], acc[:lanes])``, ``lanes =
    _lanes(acc.dtype)``: a step of a vector maximum, which never takes a NaN.

    ``acc`` and ``z`` 1-D, C-contiguous, of one float dtype. No bounds are checked.
    """
    if not (isinstance(acc, types.Array) and acc.ndim == 1 and isinstance(z, types.Array) and z.ndim == 1
            and z.layout == "C" and z.dtype == acc.dtype and isinstance(acc.dtype, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        acc_type, z_type, j_type = signature.args
        acc_value, z_value, j_value = args
        item = context.get_value_type(acc_type.dtype)
        acc_pointer = _lanes_pointer(context, builder, acc_type, acc_value, None,
                                     context.get_constant(types.intp, 0), item)
        values = builder.load(_lanes_pointer(context, builder, z_type, z_value, None,
                                             _intp(context, builder, j_value, j_type), item), align=1)
        current = builder.load(acc_pointer, align=1)
        larger = builder.fcmp_ordered(">", values, current, flags=("contract",))
        builder.store(builder.select(larger, values, current), acc_pointer, align=1)
        return context.get_dummy_value()

    return types.void(acc, z, j), codegen


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


@_kernel()
def _class_slots(k):
    """The slots of ``k <= NARROW_CLASSES`` classes: ``k`` rounded up to a multiple of ``CLASS_STEP``."""
    return (k + CLASS_STEP - 1) // CLASS_STEP * CLASS_STEP


@_kernel()
def _mask_groups(d, dtype):
    """Groups of ``MASK_GROUP`` features that the nonzero masks cover: those of the whole vectors of ``dtype``
    in ``d`` features (the short last vector, if any, is always computed)."""
    lanes = _lanes(dtype)
    return d // lanes * (lanes // MASK_GROUP)


@_kernel(inline=True)
def _row_masks(X, i, groups, masks):
    """``masks[w, i]``: bit ``g`` set where group ``64 * w + g`` of row ``i`` of ``X (n, d)`` holds a nonzero.

    ``groups`` from ``_mask_groups``; ``masks (words, _)`` uint64, ``words =
    ceil(groups / 64)``. See ``_nonzero_groups``.
    """
    for w in range(masks.shape[0]):
        first = w * 64
        count = min(64, groups - first)
        chunks = count // MASK_CHUNK * MASK_CHUNK
        word = np.uint64(0)
        for g in range(0, chunks, MASK_CHUNK):
            word |= _nonzero_groups(X, i, (first + g) * MASK_GROUP, MASK_CHUNK) << np.uint64(g)
        for g in range(chunks, count):
            word |= _nonzero_groups(X, i, (first + g) * MASK_GROUP, 1) << np.uint64(g)
        masks[w, i] = word


@_kernel(inline=True)
def _logits_row(X, i, masks, Wp, b, scale, z, slots):
    """``z[c] = scale * X[i] @ W[:, c] + b[c]`` for the ``k = b.shape[0]`` classes, ``W`` packed as ``Wp``.

    ``X (n, d)``, ``masks[:, i]`` row ``i``'s nonzero mask (``_row_masks``),
    ``Wp`` from ``_working_weights`` with ``slots`` (a compile-time constant)
    slots, ``z`` 1-D of at least ``k`` items. One vector accumulator per slot;
    only the vectors of features that the mask shows nonzero are visited (the
    others would add exact zeros for finite weights), each loaded and
    converted once for all the slots. The lanes of each sum are added, then
    the features of the short last vector, if any, one at a time.
    """
    d = X.shape[1]
    k = b.shape[0]
    lanes = _lanes(Wp.dtype)
    per_vector = lanes // MASK_GROUP
    acc = _stack_array(SLOT_LANES, Wp.dtype)
    for a in range(slots * lanes):
        acc[a] = 0
    for w in range(masks.shape[0]):
        bits = masks[w, i]
        if per_vector == 2:
            # A vector's two groups as one bit, the first's: set where either is.
            bits = (bits | bits >> np.uint64(1)) & np.uint64(0x5555555555555555)
        while bits:
            v = (w * 64 + np.intp(trailing_zeros(bits))) // per_vector
            bits &= bits - np.uint64(1)
            for c in range(slots):
                _fma_lanes(acc, c * lanes, X, i, v * lanes, Wp, v, c * lanes)
    whole = d // lanes
    for c in range(slots):
        if c < k:
            total = _sum_lanes(acc, c * lanes)
            for j in range(whole * lanes, d):
                total += Wp.dtype.type(X[i, j]) * Wp[whole, c * lanes + j - whole * lanes]
            z[c] = total * scale + b[c]


@_kernel()
def _narrow_logits_rows(X, start, stop, scale, Wp, b, masks, Z, slots):
    """``_narrow_logits`` with ``slots`` (a literal) the slots of ``Wp``."""
    groups = _mask_groups(X.shape[1], Wp.dtype)
    for i in range(start, stop):
        _row_masks(X, i, groups, masks)
        _logits_row(X, i, masks, Wp, b, scale, Z[i], slots)


@_kernel()
def _narrow_logits(X, start, stop, scale, Wp, b, masks, Z):
    """``Z[i, :k] = X[i] * scale @ W + b`` for rows ``start <= i < stop`` of ``X (n, d)``, ``W`` packed as ``Wp``.

    Fills ``masks[:, i]`` (``masks (words, n)``, see ``_row_masks``) first,
    row by row. The count of slots of ``b``'s classes is passed on as a
    literal (one specialisation per count) outside the loop over the rows:
    branching on it in the loop, Numba would take and release references to
    the arrays at every row.
    """
    slots = _class_slots(b.shape[0])
    if slots == 5:
        _narrow_logits_rows(X, start, stop, scale, Wp, b, masks, Z, 5)
    elif slots == 10:
        _narrow_logits_rows(X, start, stop, scale, Wp, b, masks, Z, 10)
    elif slots == 15:
        _narrow_logits_rows(X, start, stop, scale, Wp, b, masks, Z, 15)
    else:
        _narrow_logits_rows(X, start, stop, scale, Wp, b, masks, Z, 20)


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
def _aligned_zeros(rows, columns, dtype):
    """Zeros ``(rows, columns)`` of ``dtype`` (C order) whose data start on a 64-byte boundary.

    Numba aligns its arrays to 32 bytes: every other one's 64-byte vectors
    would each span two cache lines, and an epoch take some 10 % longer,
    depending on where its arrays happened to land.
    """
    buffer = np.zeros(rows * columns + 64, dtype=dtype)
    offset = (64 - buffer.ctypes.data % 64) % 64 // buffer.itemsize
    return buffer[offset:offset + rows * columns].reshape((rows, columns))


@_kernel()
def _working_weights(W):
    """The weights ``W (d, k)`` as the kernels read and train them: ``W`` itself for ``k > NARROW_CLASSES``.

    Else a copy packed by vectors of features, ``Wp (vectors, slots * lanes)``
    with ``Wp[v, c * lanes + l] = W[v * lanes + l, c]`` (``lanes =
    _lanes(W.dtype)``, ``vectors = ceil(d / lanes)``, ``slots =
    _class_slots(k)``), zeros past the last class and feature: the weights
    of a vector of features are contiguous for all slots, at offsets known
    when compiling.
    """
    d, k = W.shape
    if _wide(k):
        return W
    lanes = _lanes(W.dtype)
    slots = _class_slots(k)
    Wp = _aligned_zeros((d + lanes - 1) // lanes, slots * lanes, W.dtype)
    for j in range(d):
        for c in range(k):
            Wp[j // lanes, c * lanes + j % lanes] = W[j, c]
    return Wp


@_kernel()
def _unpack_weights(Wp, W):
    """``W (d, k)`` = the weights packed in ``Wp`` (see ``_working_weights``), for ``k <= NARROW_CLASSES``."""
    d, k = W.shape
    lanes = _lanes(Wp.dtype)
    for j in range(d):
        for c in range(k):
            W[j, c] = Wp[j // lanes, c * lanes + j % lanes]


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
def _gemm(X, features, B, scale, lr, add, out):
    """``out[:, :m] = P + add``, or if ``lr > 0``, ``out[:, :m] -= lr * P``: ``P = scale * A @ B[:, :m]``, ``add (m,)``.

    ``A`` is ``X (n, d)``, or with ``features``, ``X.T``: the logits
    (``B = W``) or the weight gradient (``B = G``, the rows' ``d loss / d
    Z``). ``B (depth, _)`` C-contiguous; its columns from its last whole
    panel on are read from a zero-padded copy, so that every load is a whole
    vector and none goes past ``B``; ``out`` has ``A``'s rows and at least
    ``m`` columns.
    Each thread takes an even share of the tiles of ``A``'s rows, packs them
    a block at a time (``_block_tiles``), and every panel of ``B`` meets the
    whole block (``_gemm_block``); each sum runs over the depth in order.
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
                            if lr > 0:
                                out[r0 + r, c0 + c] -= lr * product
                            else:
                                out[r0 + r, c0 + c] = product + add[c0 + c]


@_kernel(parallel=True)
def _forward_batch(X, y, Ww, b, scale, masks, G, row_loss, row_correct):
    """Forward pass of one batch ``X (n, d)``, chunks of ``ROW_CHUNK`` rows in parallel.

    ``Ww`` from ``_working_weights``. Fills ``G`` (``(n, m)``, ``m`` a whole
    number of vectors: ``_class_slots(k)`` rounded up, or ``kp`` like ``Ww``
    for the GEMM path; zeros past ``k``) with
    ``d loss / d Z = (softmax(Z) - onehot(y)) / n``, ``row_loss (n,)``
    float64 with each row's cross-entropy, ``row_correct (n,)`` with whether
    its argmax is its label and, but for the GEMM path, ``masks (words, m)``,
    ``m >= n`` a multiple of 64, with the rows' nonzero masks (``_row_masks``),
    zeros in the columns from ``n`` on.
    """
    n = X.shape[0]
    k = b.shape[0]
    inv_n = G.dtype.type(1) / n
    if _wide(k):
        _gemm(X, False, Ww, scale, G.dtype.type(0), b, G)
    else:
        masks[:, n:] = 0
    for chunk in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        start = chunk * ROW_CHUNK
        stop = min(start + ROW_CHUNK, n)
        if not _wide(k):
            _narrow_logits(X, start, stop, scale, Ww, b, masks, G)
        for i in range(start, stop):
            # The padding past k: -inf, whose softmax is 0, a gradient that adds nothing to the weights'
            # padding; the softmax then takes whole vectors, none partial.
            z, label = G[i], y[i]
            z[k:] = -np.inf
            best = _argmax(z)
            row_correct[i] = best == label
            target = z[label]
            row_loss[i] = _softmax_in_place(z, best) - target
            z[label] -= 1
            for c in range(z.shape[0]):
                z[c] *= inv_n


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


@_kernel(inline=True)
def _gradient_vector(X, scale, masks, G, v, dWp, slots):
    """``dWp[v, c * lanes:][:lanes] = scale * G[:, c] @ X[:, j:j + lanes]`` for each slot ``c``, ``j = v * lanes``.

    ``X (n, d)``, ``masks`` and ``G (n, slots)`` from ``_forward_batch``;
    ``dWp`` packed like ``_working_weights``' copy with ``slots`` slots (a
    compile-time constant). One vector accumulator per slot sums the rows in
    order, passing over those whose mask shows these features zero (they
    would add exact zeros for finite ``G``): the rows to visit, 64 at a time,
    come from a few vector compares of 64 rows' masks, and each visited row's
    vector of X is loaded and converted once for all the slots. The short
    last vector, if any, takes every row, a feature at a time.
    """
    n, d = X.shape
    lanes = _lanes(dWp.dtype)
    j = v * lanes
    if j + lanes > d:
        for c in range(slots):
            for lane in range(d - j):
                total = dWp.dtype.type(0)
                for i in range(n):
                    total += G[i, c] * dWp.dtype.type(X[i, j + lane])
                dWp[v, c * lanes + lane] = total * scale
        return
    per_vector = lanes // MASK_GROUP
    group = v * per_vector
    select = np.uint64((1 << per_vector) - 1) << np.uint64(group % 64)
    acc = _stack_array(SLOT_LANES, dWp.dtype)
    for a in range(slots * lanes):
        acc[a] = 0
    for i0 in range(0, n, 64):
        rows = _active_rows(masks, group // 64, i0, select)
        while rows:
            i = i0 + np.intp(trailing_zeros(rows))
            rows &= rows - np.uint64(1)
            for c in range(slots):
                _axpy_lanes(acc, c * lanes, G[i, c], X, i, j)
    for a in range(slots * lanes):
        dWp[v, a] = acc[a] * scale


@_kernel(inline=True)
def _gradient_vector_of_slots(X, scale, masks, G, v, dWp, k):
    """``_gradient_vector`` with the count of slots of ``k`` classes as a literal: one specialisation per count."""
    slots = _class_slots(k)
    if slots == 5:
        _gradient_vector(X, scale, masks, G, v, dWp, 5)
    elif slots == 10:
        _gradient_vector(X, scale, masks, G, v, dWp, 10)
    elif slots == 15:
        _gradient_vector(X, scale, masks, G, v, dWp, 15)
    else:
        _gradient_vector(X, scale, masks, G, v, dWp, 20)


@_kernel(parallel=True)
def _weight_gradient(X, scale, masks, G, dW, lr, Ww, k):
    """The weight gradient ``scale * X.T @ G[:, :k]`` into ``dW``; then, if ``lr > 0``, ``Ww -= lr * dW``.

    ``X (n, d)``; ``Ww`` from ``_working_weights`` for ``k`` classes and ``dW``
    in its layout; ``masks`` and ``G`` from ``_forward_batch``. With ``k <=
    NARROW_CLASSES``, vectors of features in parallel, each one's update right
    after its gradient (``_gradient_vector``), else a GEMM (``_gemm``; with
    ``lr > 0`` it updates ``Ww`` as it goes and leaves ``dW`` alone).
    """
    if _wide(k):
        _gemm(X, True, G, scale, lr, np.zeros(k, dtype=G.dtype), Ww if lr > 0 else dW)
        return
    for vector in prange(Ww.shape[0]):
        # An intp, whether the loop's index is signed (as typed first) or not (in the parallel loop):
        # one specialisation, not two.
        v = np.intp(vector)
        _gradient_vector_of_slots(X, scale, masks, G, v, dW, k)
        if lr > 0:
            weights, gradient = Ww[v], dW[v]
            for a in range(weights.shape[0]):
                weights[a] -= lr * gradient[a]


@_kernel()
def _sgd_step(X, y, Ww, b, lr, scale, masks, G, row_loss, row_correct, dW, db):
    """One SGD step on the batch ``X (n, d)``; ``Ww`` (from ``_working_weights``) and ``b`` in place.

    ``masks``, ``G``, ``row_loss``, ``row_correct``, ``dW`` and ``db`` are
    scratch (see ``_batch_scratch``), ``G``, ``row_loss`` and ``row_correct``
    with ``n`` rows. Returns ``(loss, n_correct)``.
    """
    _forward_batch(X, y, Ww, b, scale, masks, G, row_loss, row_correct)
    loss, n_correct = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, scale, masks, G, dW, lr, Ww, b.shape[0])
    for c in range(b.shape[0]):
        b[c] -= lr * db[c]
    return loss, n_correct


@_kernel()
def _batch_scratch(rows, W, Ww):
    """Scratch for batches of up to ``rows`` rows, weights ``W (d, k)`` and ``Ww = _working_weights(W)``.

    Returns ``(masks (words, m) uint64, G (rows, _class_slots(k) rounded up
    to whole vectors) (or (rows, kp) for the GEMM path), row_loss (rows,)
    float64, row_correct (rows,) bool, dW, db (k,))``, floats of ``W``'s
    dtype; ``m`` is ``rows`` rounded up to a multiple of 64, ``words`` the
    mask words of a row (none for the GEMM path). ``dW`` is the narrow
    loops' gradient, shaped like ``Ww``; the GEMM path, which updates the
    weights as it makes the gradient, gets an empty one.
    """
    d, k = W.shape
    wide = _wide(k)
    words = 0 if wide else (_mask_groups(d, W.dtype) + 63) // 64
    lanes = _lanes(W.dtype)
    return (_aligned_zeros(words, (rows + 63) // 64 * 64, np.uint64),
            _aligned_zeros(rows, _padded_classes(k, W.dtype) if wide else
                           (_class_slots(k) + lanes - 1) // lanes * lanes, W.dtype),
            np.empty(rows, dtype=np.float64), np.empty(rows, dtype=np.bool_),
            _aligned_zeros(0 if wide else Ww.shape[0], Ww.shape[1], W.dtype), np.empty(k, dtype=W.dtype))


@_kernel()
def _train_batches(X, y, W, b, lr, batch_size, scale):
    """SGD over ``X[i:i + batch_size]`` in order, ``W`` and ``b`` in place.

    Returns ``(sum of batch losses, n_batches, n_correct)``.
    """
    n = X.shape[0]
    Ww = _working_weights(W)
    masks, G, row_loss, row_correct, dW, db = _batch_scratch(min(batch_size, n), W, Ww)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        loss, batch_correct = _sgd_step(
            X[start:stop], y[start:stop], Ww, b, lr, scale,
            masks, G[:rows], row_loss[:rows], row_correct[:rows], dW, db,
        )
        loss_sum += loss
        n_correct += batch_correct
        n_batches += 1
    if not _wide(W.shape[1]):
        _unpack_weights(Ww, W)
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
    n, k = Z.shape
    row_loss = np.empty(n, dtype=np.float64)
    for chunk in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        # The exponentials go to a copy of the row: Z is only read.
        row = np.empty(k, dtype=Z.dtype)
        for i in range(chunk * ROW_CHUNK, min((chunk + 1) * ROW_CHUNK, n)):
            row[:] = Z[i]
            row_loss[i] = _exp_in_place(row, _argmax(row))[1] - Z[i, y[i]]
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return total / n


@_kernel()
def loss_and_grad(X, y, W, b, scale):
    """``(mean loss, dW (d, k), db (k,))`` of the batch ``X * scale (n, d)``; ``W``, ``b`` unchanged."""
    Ww = _working_weights(W)
    masks, G, row_loss, row_correct, dW, db = _batch_scratch(X.shape[0], W, Ww)
    _forward_batch(X, y, Ww, b, scale, masks, G, row_loss, row_correct)
    loss, _ = _reduce_rows(G, row_loss, row_correct, db)
    gradient = np.empty_like(W)
    if _wide(W.shape[1]):
        _weight_gradient(X, scale, masks, G, gradient, W.dtype.type(0), Ww, W.shape[1])
        return loss, gradient, db
    _weight_gradient(X, scale, masks, G, dW, W.dtype.type(0), Ww, W.shape[1])
    _unpack_weights(dW, gradient)
    return loss, gradient, db


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
    Ww = _working_weights(W)
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    if _wide(W.shape[1]):
        _gemm(X, False, Ww, scale, Z.dtype.type(0), b, Z)
        return Z
    masks = np.empty(((_mask_groups(d, W.dtype) + 63) // 64, n), dtype=np.uint64)
    for chunk in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        start = chunk * ROW_CHUNK
        _narrow_logits(X, start, min(start + ROW_CHUNK, n), scale, Ww, b, masks, Z)
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
