"""The seven public kernels, which the package re-exports (its docstring states their contract), and
``_logits_of_rows``, the logits that the two predictions share.

The training options are trailing parameters with defaults, for users' own
``@njit`` code; ``_batch._options`` turns them into the arguments that
:mod:`softmax_fast.kernels` always passes (scalars of ``W``'s dtype, empty
velocities without momentum, row weights of ones), so that a call from there
compiles one specialisation per pair of dtypes.

Calls :mod:`._jit`, :mod:`._rows`, :mod:`._narrow`, :mod:`._gemm` and :mod:`._batch`.
"""

import numpy as np
from numba import prange

from ._batch import (ROW_CHUNK, _add_penalty_gradient, _batch_scratch, _forward_batch, _gradient_block_rows,
                     _options, _reduce_rows, _row_weights, _train_batches, _weight_gradient, _wide,
                     _working_weights)
from ._gemm import _gemm_logits
from ._jit import _kernel
from ._narrow import _mask_groups, _narrow_logits, _unpack_weights
from ._rows import _argmax, _exp_in_place, _softmax_in_place


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
def loss_and_grad(X, y, W, b, scale, alpha=0.0, sample_weight=None):
    """``(loss, gW (d, k), gb (k,))`` of the batch ``X * scale (n, d)``: its data loss, weighted by the rows'
    ``sample_weight``, and the gradients of that plus ``alpha / 2 * ||W||^2``; ``W``, ``b`` unchanged.

    Made a block of ``_gradient_block_rows`` rows at a time, whose gradients
    are summed: each block's rows are still in cache when the backward pass
    reads them again, and one scratch serves every block.
    """
    weights = _row_weights(sample_weight, X, W)
    Ww = _working_weights(W)
    n, d = X.shape
    k = W.shape[1]
    block = _gradient_block_rows(n, d, X.itemsize, k, W.itemsize)
    masks, G, row_loss, row_correct, dW, db = _batch_scratch(block, W, Ww)
    gradient = np.zeros_like(W)
    wide = _wide(k)
    inv_n = W.dtype.type(1) / n
    # A rate of 0: the gradient alone, added to the sum of the blocks (no step, no velocity).
    zero = W.dtype.type(0)
    no_velocity = np.empty((0, 0), dtype=W.dtype)
    loss_sum = 0.0
    db[:] = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = stop - start
        _forward_batch(X[start:stop], y[start:stop], Ww, b, scale, weights[start:stop], inv_n, masks, G[:rows],
                       row_loss[:rows], row_correct[:rows])
        block_loss, _ = _reduce_rows(G[:rows], row_loss[:rows], row_correct[:rows], db)
        loss_sum += block_loss
        _weight_gradient(X[start:stop], scale, masks, G[:rows], gradient if wide else dW, Ww, k, zero, zero, zero,
                         False, no_velocity)
    if not wide:
        _unpack_weights(dW, gradient)
    _add_penalty_gradient(gradient, W, alpha)
    return loss_sum / n, gradient, db


@_kernel()
def sgd_step(X, y, W, b, lr, scale, alpha=0.0, momentum=0.0, nesterov=False, VW=None, vb=None,
             sample_weight=None):
    """One SGD step on the batch ``X (n, d)``, ``W``, ``b`` (and ``VW``, ``vb``) in place; ``(loss, n_correct)``."""
    loss, _, n_correct = _train_batches(X, y, W, b, lr, X.shape[0], scale,
                                        *_options(X, W, alpha, momentum, nesterov, VW, vb, sample_weight))
    return loss, n_correct


@_kernel()
def train_epoch(X, y, W, b, lr, batch_size, scale, alpha=0.0, momentum=0.0, nesterov=False, VW=None, vb=None,
                sample_weight=None):
    """SGD over ``X[i:i + batch_size]`` in order, ``lr`` a rate or one per batch, ``W``, ``b`` (and ``VW``,
    ``vb``) in place; ``(mean batch loss, accuracy)``."""
    loss_sum, n_batches, n_correct = _train_batches(X, y, W, b, lr, batch_size, scale,
                                                    *_options(X, W, alpha, momentum, nesterov, VW, vb, sample_weight))
    return loss_sum / n_batches, n_correct / X.shape[0]


@_kernel(parallel=True)
def _logits_of_rows(X, W, b, scale):
    """``Z (n, k) = X * scale @ W + b`` in ``W``'s dtype, chunks of ``ROW_CHUNK`` rows in parallel."""
    n, d = X.shape
    Ww = _working_weights(W)
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    if _wide(W.shape[1]):
        _gemm_logits(X, Ww, scale, b, Z)
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
