"""The exponential of a vector, in vector instructions (``_exp_lanes``), for the softmax of a row.

Calls only :mod:`._vectors`.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._vectors import _intp, _lanes_pointer, _splat

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
