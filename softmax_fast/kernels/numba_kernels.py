"""Numba kernels: the ``@njit`` backend, with the structure of the Cython one.

Same contract as :mod:`softmax_fast.kernels.reference`; they run on
``numba.get_num_threads()`` threads (set it with ``numba.set_num_threads``,
outside jitted code: calling it inside would stop Numba from caching the
kernel). The functions are reached from Python through
:mod:`softmax_fast.kernels`, which has already checked shapes, dtypes, C order
and the label range; nothing here checks them again. They take no Python
objects, so a user's own ``@njit`` code can call them directly with arrays that
meet the contract; ``scale`` and ``lr`` should then be of the weights' dtype.

The weights are used transposed, ``Wt (k, d)``, so that the inner loops run
along the features of X's rows, which LLVM vectorises for the CPU Numba
compiles on (AVX-512 here). Parallel work is split so that no sum depends on
how it is shared among threads: rows in parallel for the forward pass, blocks
of features in parallel for the weight gradient, every reduction over rows
done serially in row order. The results are bitwise identical for any thread
count.
"""

import numba
import numpy as np
from numba import njit, prange

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


# Features per block of the weight gradient: the unit of work shared among threads.
FEATURE_BLOCK = 64


@_kernel()
def _logits_row(x, Wt, b, scale, z):
    """``z (k,) = scale * (x (d,) @ Wt.T) + b`` for one row; ``Wt (k, d)`` is W transposed.

    Each logit is a dot product along the features, which LLVM vectorises
    (reassociation lets it keep several partial sums). Four classes share
    each load of ``x``: a dot product alone does two loads per multiply-add,
    which bounded it.
    """
    k, d = Wt.shape
    zero = z.dtype.type(0)
    c = 0
    while c + 4 <= k:
        w0, w1, w2, w3 = Wt[c], Wt[c + 1], Wt[c + 2], Wt[c + 3]
        t0 = t1 = t2 = t3 = zero
        for j in range(d):
            t0 += x[j] * w0[j]
            t1 += x[j] * w1[j]
            t2 += x[j] * w2[j]
            t3 += x[j] * w3[j]
        z[c] = t0 * scale + b[c]
        z[c + 1] = t1 * scale + b[c + 1]
        z[c + 2] = t2 * scale + b[c + 2]
        z[c + 3] = t3 * scale + b[c + 3]
        c += 4
    for c in range(c, k):
        total = zero
        for j in range(d):
            total += x[j] * Wt[c, j]
        z[c] = total * scale + b[c]


@_kernel(parallel=True)
def _forward_batch(X, y, Wt, b, scale, F, G, row_loss, row_correct):
    """Forward pass of one batch, rows in parallel.

    Copies the rows into ``F (n, d)`` in the weights' dtype (uint8 pixels are
    converted once here, not in every loop that reads them) and fills
    ``G (n, k)`` with ``d loss / d Z = (softmax(Z) - onehot(y)) / n``,
    ``row_loss (n,)`` float64 with each row's cross-entropy and
    ``row_correct (n,)`` with whether its argmax is its label.
    """
    n, d = X.shape
    inv_n = G.dtype.type(1) / n
    for i in prange(n):
        x, f = X[i], F[i]
        for j in range(d):
            f[j] = x[j]
        z = G[i]
        _logits_row(f, Wt, b, scale, z)
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
def _weight_gradient(X, G, scale, dWt):
    """``dWt (k, d) = scale * G.T @ X``: the weight gradient, transposed.

    Blocks of ``FEATURE_BLOCK`` features in parallel; within a block each row
    in order adds ``G[i, c] * X[i, block]`` to a local accumulator, a
    multiply-add along the features that LLVM vectorises. (Indices counted
    from 0 within the block: Numba then knows they are not negative and emits
    no wraparound test that would stop the vectoriser.)
    """
    n, d = X.shape
    k = G.shape[1]
    for block in prange((d + FEATURE_BLOCK - 1) // FEATURE_BLOCK):
        start = block * FEATURE_BLOCK
        width = min(FEATURE_BLOCK, d - start)
        acc = np.zeros((k, FEATURE_BLOCK), dtype=dWt.dtype)
        for i in range(n):
            x = X[i, start:start + width]
            # A row whose block is all zero adds nothing: test it (a vectorised
            # reduction) and skip its k multiply-adds.
            nonzero = False
            for j in range(width):
                nonzero |= x[j] != 0
            if not nonzero:
                continue
            for c in range(k):
                g = G[i, c]
                row = acc[c]
                for j in range(width):
                    row[j] += g * x[j]
        for c in range(k):
            for j in range(width):
                dWt[c, start + j] = acc[c, j] * scale


@_kernel()
def _sgd_step(X, y, Wt, b, lr, scale, F, G, row_loss, row_correct, dWt, db):
    """One SGD step on the batch ``X (n, d)``; ``Wt (k, d)`` (W transposed) and ``b`` in place.

    ``F``, ``G``, ``row_loss``, ``row_correct``, ``dWt`` and ``db`` are scratch
    with ``n``, ``n``, ``n``, ``n``, ``k`` and ``k`` rows. Returns ``(loss, n_correct)``.
    """
    _forward_batch(X, y, Wt, b, scale, F, G, row_loss, row_correct)
    loss, n_correct = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(F, G, scale, dWt)
    k, d = Wt.shape
    for c in range(k):
        weights, gradient = Wt[c], dWt[c]
        for j in range(d):
            weights[j] -= lr * gradient[j]
        b[c] -= lr * db[c]
    return loss, n_correct


@_kernel()
def _batch_scratch(rows, W):
    """Scratch for batches of up to ``rows`` rows and weights like ``W (d, k)``.

    Returns ``(F (rows, d), G (rows, k), row_loss (rows,) float64,
    row_correct (rows,) bool, dWt (k, d), db (k,))``, floats of ``W``'s dtype.
    """
    d, k = W.shape
    return (np.empty((rows, d), dtype=W.dtype), np.empty((rows, k), dtype=W.dtype),
            np.empty(rows, dtype=np.float64), np.empty(rows, dtype=np.bool_),
            np.empty((k, d), dtype=W.dtype), np.empty(k, dtype=W.dtype))


@_kernel()
def _train_batches(X, y, W, b, lr, batch_size, scale):
    """SGD over ``X[i:i + batch_size]`` in order, ``W`` and ``b`` in place.

    Returns ``(sum of batch losses, n_batches, n_correct)``.
    """
    n = X.shape[0]
    Wt = np.ascontiguousarray(W.T)
    F, G, row_loss, row_correct, dWt, db = _batch_scratch(min(batch_size, n), W)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = stop - start
        loss, batch_correct = _sgd_step(
            X[start:stop], y[start:stop], Wt, b, lr, scale,
            F[:rows], G[:rows], row_loss[:rows], row_correct[:rows], dWt, db,
        )
        loss_sum += loss
        n_correct += batch_correct
        n_batches += 1
    W[:, :] = Wt.T
    return loss_sum, n_batches, n_correct


@_kernel(parallel=True)
def softmax(Z, out):
    """``out (n, k) = softmax(Z (n, k))`` row by row (``out`` may be ``Z``); returns ``out``."""
    for i in prange(Z.shape[0]):
        out[i] = Z[i]
        _softmax_in_place(out[i])
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
    Wt = np.ascontiguousarray(W.T)
    F, G, row_loss, row_correct, dWt, db = _batch_scratch(X.shape[0], W)
    _forward_batch(X, y, Wt, b, scale, F, G, row_loss, row_correct)
    loss, _ = _reduce_rows(G, row_loss, row_correct, db)
    _weight_gradient(F, G, scale, dWt)
    return loss, np.ascontiguousarray(dWt.T), db


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
def predict_proba(X, W, b, scale):
    """Class probabilities ``(n, k)`` of the rows of ``X * scale``, in ``W``'s dtype."""
    Wt = np.ascontiguousarray(W.T)
    P = np.empty((X.shape[0], W.shape[1]), dtype=W.dtype)
    for i in prange(X.shape[0]):
        _logits_row(X[i], Wt, b, scale, P[i])
        _softmax_in_place(P[i])
    return P


@_kernel(parallel=True)
def predict(X, W, b, scale):
    """Index of each row's largest logit, ``(n,)`` np.intp (the first of ties)."""
    n = X.shape[0]
    Wt = np.ascontiguousarray(W.T)
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    labels = np.empty(n, dtype=np.intp)
    for i in prange(n):
        _logits_row(X[i], Wt, b, scale, Z[i])
        labels[i] = _argmax(Z[i])
    return labels
