"""The loops of up to ``NARROW_CLASSES`` classes: logits a row at a time, the weight gradient a vector at a time.

With up to ``NARROW_CLASSES`` classes (MNIST's 10) the weights are trained in
a packed copy, a row of weights per vector of features with every class's
lanes side by side (``_packed_weights``), the classes padded to a count of
"slots" that the hot loops take as a compile-time constant. The logits ``X @
W`` (``scale`` multiplies the sums) are made a row at a time
(``_logits_row``), one vector accumulator per slot: each vector of X,
converted once to the weights' dtype, meets every class. The weight gradient
``X.T @ G`` is made a vector of features at a time (``_gradient_vector``),
each row's vector of X meeting every class. A bit mask per row tells which
groups of ``MASK_GROUP`` features hold a nonzero (``_row_masks``); vectors of
features that are zero in a row (MNIST's blank background) add nothing and
are passed over in both. X is read as it is stored: uint8 pixels are a
quarter of float32's memory traffic, and no converted copy of the batch is
written.

Calls :mod:`._jit` and :mod:`._vectors`.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._jit import FLOAT32_LANES, NARROW_CLASSES, VECTOR_BYTES, _kernel
from ._vectors import (_aligned_zeros, _axpy_lanes, _fma_lanes, _intp, _lanes, _matrix_ok, _splat, _stack_array,
                       _sum_lanes)

# Features per bit of the nonzero masks of the rows (k <= NARROW_CLASSES): a
# vector of float64, so that a vector of either dtype is one or two groups.
MASK_GROUP = VECTOR_BYTES // 8
# Groups tested by one compare when the masks are made: on AVX-512, 64
# features, one load of uint8 pixels.
MASK_CHUNK = 8
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
    ``Wp`` from ``_packed_weights`` with ``slots`` (a compile-time constant)
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
def _packed_weights(W):
    """The weights ``W (d, k)``, ``k <= NARROW_CLASSES``, as the narrow loops read and train them.

    A copy packed by vectors of features, ``Wp (vectors, slots * lanes)``
    with ``Wp[v, c * lanes + l] = W[v * lanes + l, c]`` (``lanes =
    _lanes(W.dtype)``, ``vectors = ceil(d / lanes)``, ``slots =
    _class_slots(k)``), zeros past the last class and feature: the weights
    of a vector of features are contiguous for all slots, at offsets known
    when compiling.
    """
    d, k = W.shape
    lanes = _lanes(W.dtype)
    slots = _class_slots(k)
    Wp = _aligned_zeros((d + lanes - 1) // lanes, slots * lanes, W.dtype)
    for j in range(d):
        for c in range(k):
            Wp[j // lanes, c * lanes + j % lanes] = W[j, c]
    return Wp


@_kernel()
def _unpack_weights(Wp, W):
    """``W (d, k)`` = the weights packed in ``Wp`` (see ``_packed_weights``), for ``k <= NARROW_CLASSES``."""
    d, k = W.shape
    lanes = _lanes(Wp.dtype)
    for j in range(d):
        for c in range(k):
            W[j, c] = Wp[j // lanes, c * lanes + j % lanes]


@_kernel(inline=True)
def _gradient_vector(X, scale, masks, G, v, dWp, slots, add):
    """``dWp[v, c * lanes:][:lanes] = scale * G[:, c] @ X[:, j:j + lanes]`` for each slot ``c``, ``j = v * lanes``
    (with ``add``, ``+=``: a later block of rows of one gradient).

    ``X (n, d)``, ``masks`` and ``G (n, slots)`` from ``_forward_batch``;
    ``dWp`` packed like ``_packed_weights``' result, with ``slots`` slots (a
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
                if add:
                    dWp[v, c * lanes + lane] += total * scale
                else:
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
        if add:
            dWp[v, a] += acc[a] * scale
        else:
            dWp[v, a] = acc[a] * scale


@_kernel(inline=True)
def _gradient_vector_of_slots(X, scale, masks, G, v, dWp, k, add):
    """``_gradient_vector`` with the count of slots of ``k`` classes as a literal: one specialisation per count."""
    slots = _class_slots(k)
    if slots == 5:
        _gradient_vector(X, scale, masks, G, v, dWp, 5, add)
    elif slots == 10:
        _gradient_vector(X, scale, masks, G, v, dWp, 10, add)
    elif slots == 15:
        _gradient_vector(X, scale, masks, G, v, dWp, 15, add)
    else:
        _gradient_vector(X, scale, masks, G, v, dWp, 20, add)
