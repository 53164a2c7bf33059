"""The vectors of the matrix loops: LLVM-level intrinsics, their codegen helpers, and memory aligned for them.

The matrix loops work on vectors of ``VECTOR_BYTES`` along rows of X and of
the weights, through intrinsics (``_fma_lanes``, ``_axpy_lanes``) that emit
LLVM vector instructions: LLVM's own vectoriser, tuned to prefer 256-bit
vectors on AVX-512 CPUs, would use half the width of the FMA units: 4 lanes
of float64. The plain functions here (``_lanes_pointer``, ``_load_lanes``,
``_accumulate``, ...) run in Python while an intrinsic is compiled; only the
intrinsics and ``_aligned_zeros`` are called from jitted code.

Calls only :mod:`._jit`.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from ._jit import VECTOR_BYTES, _kernel


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
