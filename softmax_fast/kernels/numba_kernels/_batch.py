"""A batch of SGD: forward pass, row-ordered sums, weight gradient and update; an epoch's batches; their scratch.

It chooses between the narrow loops and the GEMMs (``_wide``), and so the
weights' working layout (``_working_weights``), which the velocity of the
momentum shares. The training options enter where the data already is: the
row weights in the forward pass, the penalty and the momentum in the update of
each weight right after its gradient (``_update_weight``). Its parallel stages
split the work so that no sum depends on how it is shared among threads (see
the package's docstring).

Calls :mod:`._jit`, :mod:`._vectors`, :mod:`._rows`, :mod:`._narrow`, :mod:`._gemm` and :mod:`._update`.
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from ._gemm import _gemm, _gemm_logits, _padded_classes
from ._jit import NARROW_CLASSES, _kernel
from ._narrow import (_class_slots, _gradient_vector_of_slots, _mask_groups, _narrow_logits, _packed_weights,
                      _unpack_weights)
from ._rows import _argmax, _softmax_in_place
from ._update import _update_weight
from ._vectors import _aligned_zeros, _lanes

# Rows per share of the forward pass among threads.
ROW_CHUNK = 32
# The bytes of a block of loss_and_grad's rows and of their G, which the backward pass reads again: a size that
# keeps them in cache until then; and the fewest rows of a block, so that each is long enough for every thread.
# The Cython kernels' rule (hot_loops/buffers.h), where it is measured.
GRADIENT_BLOCK_BYTES = 2 << 20
GRADIENT_BLOCK_MIN_ROWS = 256


@_kernel()
def _wide(k):
    """Whether ``k`` classes take the GEMM path: the weights ``W (d, k)`` as they are, not a packed copy."""
    return k > NARROW_CLASSES


@_kernel()
def _working_weights(W):
    """The weights ``W (d, k)`` as the kernels read and train them: ``W`` itself for ``k > NARROW_CLASSES``.

    Else a copy packed by vectors of features (``_packed_weights``).
    """
    if _wide(W.shape[1]):
        return W
    return _packed_weights(W)


@_kernel(parallel=True)
def _forward_batch(X, y, Ww, b, scale, sample_weight, inv_n, masks, G, row_loss, row_correct):
    """Forward pass of one batch ``X (n, d)`` with row weights ``s = sample_weight (n,)``, chunks of ``ROW_CHUNK``
    rows in parallel.

    ``Ww`` from ``_working_weights``. Fills ``G`` (``(n, m)``, ``m`` a whole
    number of vectors: ``_class_slots(k)`` rounded up, or ``kp`` like ``Ww``
    for the GEMM path; zeros past ``k``) with
    ``d loss / d Z = s * (softmax(Z) - onehot(y)) * inv_n`` (``inv_n`` of
    ``G``'s dtype: ``1 / n``, or for a block of a larger gradient's rows, 1
    over all of them), ``row_loss (n,)``
    float64 with each row's cross-entropy times its weight, ``row_correct
    (n,)`` with whether its argmax is its label and, but for the GEMM path,
    ``masks (words, m)``, ``m >= n`` a multiple of 64, with the rows' nonzero
    masks (``_row_masks``), zeros in the columns from ``n`` on. A weight of
    1 changes no bit.
    """
    n = X.shape[0]
    k = b.shape[0]
    if _wide(k):
        _gemm_logits(X, Ww, scale, b, G)
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
            z, label, weight = G[i], y[i], sample_weight[i]
            z[k:] = -np.inf
            best = _argmax(z)
            row_correct[i] = best == label
            target = z[label]
            row_loss[i] = np.float64(_softmax_in_place(z, best) - target) * np.float64(weight)
            z[label] -= 1
            factor = weight * inv_n
            for c in range(z.shape[0]):
                z[c] *= factor


@_kernel()
def _reduce_rows(G, row_loss, row_correct, db):
    """Serial, row-ordered sums of a batch: ``db (k,) += G[:, :k].sum(0)``; returns ``(loss sum, n_correct)``."""
    n = G.shape[0]
    k = db.shape[0]
    loss_sum = 0.0
    n_correct = 0
    for i in range(n):
        loss_sum += row_loss[i]
        n_correct += row_correct[i]
        for c in range(k):
            db[c] += G[i, c]
    return loss_sum, n_correct


@_kernel(parallel=True)
def _weight_gradient(X, scale, masks, G, dW, Ww, k, lr, alpha, momentum, nesterov, Vw):
    """The data loss's weight gradient ``scale * X.T @ G[:, :k]``: if ``lr > 0``, into ``dW`` and the SGD step
    of ``Ww`` on it: ``Ww -= lr * dW``, or with ``alpha`` or ``momentum``, ``_update_weight`` (velocity ``Vw``);
    else added to ``dW`` (the sum of a gradient's blocks of rows).

    ``X (n, d)``; ``Ww`` from ``_working_weights`` for ``k`` classes, and
    ``dW`` and ``Vw`` (empty without momentum) in its layout; ``masks`` and
    ``G`` from ``_forward_batch``. With ``k <= NARROW_CLASSES``, vectors of
    features in parallel, each one's update right after its gradient
    (``_gradient_vector``), else a GEMM (``_gemm``; with ``lr > 0`` it updates
    ``Ww`` as it goes and leaves ``dW`` alone).
    """
    if _wide(k):
        _gemm(X, True, G, scale, np.zeros(k, dtype=G.dtype), Ww if lr > 0 else dW, not lr > 0, lr, alpha, momentum,
              nesterov, Vw)
        return
    plain = alpha == 0 and momentum == 0
    for vector in prange(Ww.shape[0]):
        # An intp, whether the loop's index is signed (as typed first) or not (in the parallel loop):
        # one specialisation, not two.
        v = np.intp(vector)
        _gradient_vector_of_slots(X, scale, masks, G, v, dW, k, not lr > 0)
        if lr > 0 and plain:
            weights, gradient = Ww[v], dW[v]
            for a in range(weights.shape[0]):
                weights[a] -= lr * gradient[a]
        elif lr > 0:
            for a in range(Ww.shape[1]):
                _update_weight(Ww, Vw, (v, a), dW[v, a], lr, alpha, momentum, nesterov)


@_kernel()
def _sgd_step(X, y, Ww, b, lr, scale, alpha, momentum, nesterov, Vw, vb, sample_weight, masks, G, row_loss,
              row_correct, dW, db):
    """One SGD step on the batch ``X (n, d)`` with row weights ``sample_weight (n,)``; ``Ww`` (from
    ``_working_weights``), ``b`` and, with ``momentum > 0``, their velocities ``Vw`` (in ``Ww``'s layout) and
    ``vb`` in place. The bias takes no penalty.

    ``masks``, ``G``, ``row_loss``, ``row_correct``, ``dW`` and ``db`` are
    scratch (see ``_batch_scratch``), ``G``, ``row_loss`` and ``row_correct``
    with ``n`` rows. Returns ``(loss, n_correct)``.
    """
    _forward_batch(X, y, Ww, b, scale, sample_weight, G.dtype.type(1) / X.shape[0], masks, G, row_loss, row_correct)
    db[:] = 0
    loss_sum, n_correct = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, scale, masks, G, dW, Ww, b.shape[0], lr, alpha, momentum, nesterov, Vw)
    if momentum == 0:
        for c in range(b.shape[0]):
            b[c] -= lr * db[c]
    else:
        for c in range(b.shape[0]):
            _update_weight(b, vb, (c,), db[c], lr, b.dtype.type(0), momentum, nesterov)
    return loss_sum / X.shape[0], n_correct


@_kernel()
def _gradient_block_rows(n, d, x_size, k, item_size):
    """The rows of one block of ``loss_and_grad`` on ``n`` rows of ``d`` features of ``x_size`` bytes and ``k``
    classes of ``item_size`` bytes: ``GRADIENT_BLOCK_BYTES`` of rows and ``G``, at least
    ``GRADIENT_BLOCK_MIN_ROWS``, at most ``n``; never a function of the threads."""
    return min(n, max(GRADIENT_BLOCK_MIN_ROWS, GRADIENT_BLOCK_BYTES // (d * x_size + k * item_size)))


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


def _rate(lr, batch):
    """The learning rate of batch ``batch``: ``lr[batch]`` if ``lr`` is an array of one rate per batch, else
    ``lr``, one rate for all (jitted code only)."""


@overload(_rate)
def _rate_of_type(lr, batch):
    if isinstance(lr, types.Array):
        return lambda lr, batch: lr[batch]
    return lambda lr, batch: lr


@_kernel()
def _train_batches(X, y, W, b, lr, batch_size, scale, alpha, momentum, nesterov, VW, vb, sample_weight):
    """SGD over ``X[i:i + batch_size]`` in order, ``W``, ``b`` and, with ``momentum > 0``, ``VW``, ``vb`` in place.

    Batch ``i`` takes the rate ``_rate(lr, i)`` and the rows' weights of
    ``sample_weight (n,)``. ``VW`` is trained in ``W``'s working layout, a
    packed copy for the narrow path (empty, like ``VW``, without momentum).
    Returns ``(sum of batch losses, n_batches, n_correct)``.
    """
    n = X.shape[0]
    Ww = _working_weights(W)
    Vw = _working_weights(VW)
    masks, G, row_loss, row_correct, dW, db = _batch_scratch(min(batch_size, n), W, Ww)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        loss, batch_correct = _sgd_step(
            X[start:stop], y[start:stop], Ww, b, _rate(lr, n_batches), scale, alpha, momentum, nesterov, Vw, vb,
            sample_weight[start:stop], masks, G[:rows], row_loss[:rows], row_correct[:rows], dW, db,
        )
        loss_sum += loss
        n_correct += batch_correct
        n_batches += 1
    if not _wide(W.shape[1]):
        _unpack_weights(Ww, W)
        _unpack_weights(Vw, VW)
    return loss_sum, n_batches, n_correct


@_kernel()
def _row_weights(sample_weight, rows, W):
    """``sample_weight``, or ones ``(n,)`` of ``W``'s dtype if it is None (a branch Numba prunes by type);
    ``rows``: any array with one entry per row (``X``, or ``y`` for CSR rows)."""
    if sample_weight is None:
        return np.ones(rows.shape[0], dtype=W.dtype)
    return sample_weight


@_kernel()
def _options(rows, W, alpha, momentum, nesterov, VW, vb, sample_weight):
    """``(alpha, momentum, nesterov, VW, vb, sample_weight)`` as :mod:`softmax_fast.kernels` passes them.

    ``alpha`` and ``momentum`` as scalars of ``W``'s dtype (unchanged if they
    are), ``nesterov`` a bool, empty ``VW (0, 0)`` and ``vb (0,)`` for None
    (momentum needs them: a ValueError), ``sample_weight`` ones for None.
    """
    dtype = W.dtype.type
    weights = _row_weights(sample_weight, rows, W)
    if VW is None:
        if momentum > 0:
            raise ValueError("momentum > 0 needs the velocities VW and vb")
        return (dtype(alpha), dtype(momentum), bool(nesterov), np.empty((0, 0), dtype=W.dtype),
                np.empty(0, dtype=W.dtype), weights)
    return dtype(alpha), dtype(momentum), bool(nesterov), VW, vb, weights


@_kernel()
def _add_penalty_gradient(gradient, W, alpha):
    """``gradient += alpha * W``, the penalty's gradient, in one pass over ``gradient (d, k)`` (``loss_and_grad``'s
    new array; training fuses the penalty into the update instead); nothing when ``alpha`` is 0."""
    penalty = W.dtype.type(alpha)
    if penalty > 0:
        for j in range(W.shape[0]):
            for c in range(W.shape[1]):
                gradient[j, c] += penalty * W[j, c]
