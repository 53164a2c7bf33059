"""The seven public kernels, which the package re-exports (its docstring states their contract), and
``_logits_of_rows``, the logits that the two predictions share.

Calls :mod:`._jit`, :mod:`._rows`, :mod:`._narrow`, :mod:`._gemm` and :mod:`._batch`.
"""

import numpy as np
from numba import prange

from ._batch import (ROW_CHUNK, _batch_scratch, _forward_batch, _reduce_rows, _train_batches, _weight_gradient, _wide,
                     _working_weights)
from ._gemm import _gemm
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
