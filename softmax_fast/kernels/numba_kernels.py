"""Numba kernels: the ``@njit`` backend, with the structure of the Cython one.

Same contract as :mod:`softmax_fast.kernels.reference`; they run on
``numba.get_num_threads()`` threads (set it with ``numba.set_num_threads``,
outside jitted code: calling it inside would stop Numba from caching the
kernel). The functions are reached from Python through
:mod:`softmax_fast.kernels`, which has already checked shapes, dtypes, C order
and the label range; nothing here checks them again. They take no Python
objects, so a user's own ``@njit`` code can call them directly with arrays that
meet the contract; ``scale`` and ``lr`` should then be of the weights' dtype.

Parallel work is split so that no sum depends on how it is shared among
threads: rows in parallel for the forward pass, features in parallel for the
weight gradient, every reduction over rows done serially in row order. The
results are bitwise identical for any thread count.
"""

import numpy as np
from numba import njit, prange

# ``fastmath=True`` would include "nnan" and "ninf": LLVM could then assume that
# no value is NaN or inf and delete the checks that catch a diverging run. These
# flags keep NaN and inf semantics and allow the rest: reassociation and
# contraction into FMA let the inner loops vectorise.
FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def _kernel(parallel=False):
    """``@njit`` with this module's options, releasing the GIL and cached on disk."""
    return njit(cache=True, nogil=True, parallel=parallel, fastmath=set(FASTMATH_FLAGS))


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
def _softmax_in_place(z):
    """Overwrite ``z (k,)`` with its softmax; return ``logsumexp`` of the input."""
    row_max = z[_argmax(z)]
    total = z.dtype.type(0)
    for c in range(z.shape[0]):
        z[c] = np.exp(z[c] - row_max)
        total += z[c]
    for c in range(z.shape[0]):
        z[c] /= total
    return row_max + np.log(total)


@_kernel()
def _logits_row(x, W, b, scale, z):
    """``z (k,) = scale * (x (d,) @ W (d, k)) + b`` for one row."""
    d, k = W.shape
    z[:] = 0
    for j in range(d):
        xj = x[j]
        for c in range(k):
            z[c] += xj * W[j, c]
    for c in range(k):
        z[c] = z[c] * scale + b[c]


@_kernel(parallel=True)
def _forward_batch(X, y, W, b, scale, G, row_loss, row_correct):
    """Forward pass of one batch, rows in parallel.

    Fills ``G (n, k)`` with ``d loss / d Z = (softmax(Z) - onehot(y)) / n``,
    ``row_loss (n,)`` float64 with each row's cross-entropy and
    ``row_correct (n,)`` with whether its argmax is its label.
    """
    n = X.shape[0]
    inv_n = G.dtype.type(1) / n
    for i in prange(n):
        z = G[i]
        _logits_row(X[i], W, b, scale, z)
        row_correct[i] = _argmax(z) == y[i]
        target = z[y[i]]
        row_loss[i] = _softmax_in_place(z) - target
        z[y[i]] -= 1
        z *= inv_n


@_kernel()
def _reduce_rows(G, row_loss, row_correct, db):
    """Serial, row-ordered sums of a batch: ``db = G.sum(0)``; returns ``(mean loss, n_correct)``."""
    n, k = G.shape
    loss_sum = 0.0
    n_correct = 0
    db[:] = 0
    for i in range(n):
        loss_sum += row_loss[i]
        n_correct += row_correct[i]
        for c in range(k):
            db[c] += G[i, c]
    return loss_sum / n, n_correct


@_kernel(parallel=True)
def _weight_gradient(X, G, scale, dW):
    """``dW (d, k) = scale * X.T @ G``, features in parallel, each summed over rows in order."""
    n, d = X.shape
    k = G.shape[1]
    for j in prange(d):
        row = dW[j]
        row[:] = 0
        for i in range(n):
            xij = X[i, j]
            for c in range(k):
                row[c] += xij * G[i, c]
        row *= scale


@_kernel(parallel=True)
def _sgd_step(X, y, W, b, lr, scale, G, row_loss, row_correct, dW, db):
    """One fused SGD step on the batch ``X (n, d)``; ``W`` and ``b`` in place.

    ``G``, ``row_loss``, ``row_correct``, ``dW`` and ``db`` are scratch with
    ``n``, ``n``, ``n``, ``d`` and ``k`` rows. Returns ``(loss, n_correct)``.
    """
    _forward_batch(X, y, W, b, scale, G, row_loss, row_correct)
    loss, n_correct = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, G, scale, dW)
    d, k = W.shape
    for j in prange(d):
        for c in range(k):
            W[j, c] -= lr * dW[j, c]
    for c in range(k):
        b[c] -= lr * db[c]
    return loss, n_correct


@_kernel()
def _train_batches(X, y, W, b, lr, batch_size, scale):
    """SGD over ``X[i:i + batch_size]`` in order; returns ``(sum of batch losses, n_batches, n_correct)``."""
    n, d = X.shape
    k = W.shape[1]
    scratch_rows = min(batch_size, n)
    G = np.empty((scratch_rows, k), dtype=W.dtype)
    row_loss = np.empty(scratch_rows, dtype=np.float64)
    row_correct = np.empty(scratch_rows, dtype=np.bool_)
    dW = np.empty((d, k), dtype=W.dtype)
    db = np.empty(k, dtype=W.dtype)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        loss, batch_correct = _sgd_step(
            X[start:stop], y[start:stop], W, b, lr, scale,
            G[:rows], row_loss[:rows], row_correct[:rows], dW, db,
        )
        loss_sum += loss
        n_correct += batch_correct
        n_batches += 1
    return loss_sum, n_batches, n_correct


@_kernel(parallel=True)
def softmax(Z, out):
    for i in prange(Z.shape[0]):
        out[i] = Z[i]
        _softmax_in_place(out[i])
    return out


@_kernel(parallel=True)
def cross_entropy(Z, y):
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
    n, d = X.shape
    k = W.shape[1]
    G = np.empty((n, k), dtype=W.dtype)
    row_loss = np.empty(n, dtype=np.float64)
    row_correct = np.empty(n, dtype=np.bool_)
    dW = np.empty((d, k), dtype=W.dtype)
    db = np.empty(k, dtype=W.dtype)
    _forward_batch(X, y, W, b, scale, G, row_loss, row_correct)
    loss, _ = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(X, G, scale, dW)
    return loss, dW, db


@_kernel()
def sgd_step(X, y, W, b, lr, scale):
    loss, _, n_correct = _train_batches(X, y, W, b, lr, X.shape[0], scale)
    return loss, n_correct


@_kernel()
def train_epoch(X, y, W, b, lr, batch_size, scale):
    loss_sum, n_batches, n_correct = _train_batches(X, y, W, b, lr, batch_size, scale)
    return loss_sum / n_batches, n_correct / X.shape[0]


@_kernel(parallel=True)
def predict_proba(X, W, b, scale):
    P = np.empty((X.shape[0], W.shape[1]), dtype=W.dtype)
    for i in prange(X.shape[0]):
        _logits_row(X[i], W, b, scale, P[i])
        _softmax_in_place(P[i])
    return P


@_kernel(parallel=True)
def predict(X, W, b, scale):
    n = X.shape[0]
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    labels = np.empty(n, dtype=np.intp)
    for i in prange(n):
        _logits_row(X[i], W, b, scale, Z[i])
        labels[i] = _argmax(Z[i])
    return labels
