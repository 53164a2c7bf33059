# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython kernels: the compiled, ``nogil``, OpenMP-parallel backend.

Same contract as :mod:`softmax_fast.kernels.reference`. The ``def`` functions
are reached only through :mod:`softmax_fast.kernels`, which has already checked
shapes, dtypes, C order and the label range, so nothing here checks bounds.

The row-level work is done by small ``cdef`` functions on raw pointers and
sizes; the batch-level routines parallelise so that no sum depends on how work
is shared among threads (rows in parallel for the forward pass, features in
parallel for the gradient, every reduction over rows done serially in row
order): the results are bitwise identical for any ``n_threads``.

Fused types: ``floating`` is the dtype of ``W`` and ``b`` (float32/float64) and
``features_t`` the dtype of ``X``; the Python layer only lets ``X`` be uint8 or
the weights' own dtype through.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf

import numpy as np

ctypedef fused features_t:
    unsigned char
    float
    double

cdef extern from *:
    """
    #ifdef _OPENMP
    #define SOFTMAX_FAST_OPENMP 1
    #else
    #define SOFTMAX_FAST_OPENMP 0
    #endif
    """
    int SOFTMAX_FAST_OPENMP

#: Whether this extension was compiled with OpenMP (otherwise every kernel runs on one thread).
OPENMP_ENABLED = bool(SOFTMAX_FAST_OPENMP)


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline Py_ssize_t _argmax(const floating *z, Py_ssize_t k) noexcept nogil:
    """Index of the first maximum of ``z[:k]``, as ``np.argmax``."""
    cdef Py_ssize_t c, best = 0
    for c in range(1, k):
        if z[c] > z[best]:
            best = c
    return best


cdef inline floating _logsumexp(const floating *z, Py_ssize_t k) noexcept nogil:
    """``log(sum(exp(z[:k])))`` without overflow."""
    cdef floating row_max = z[_argmax(z, k)]
    cdef floating total = 0
    cdef Py_ssize_t c
    for c in range(k):
        total += _exp(z[c] - row_max)
    return row_max + _log(total)


cdef inline floating _softmax_in_place(floating *z, Py_ssize_t k) noexcept nogil:
    """Overwrite ``z[:k]`` with its softmax; return ``logsumexp`` of the input."""
    cdef floating row_max = z[_argmax(z, k)]
    cdef floating total = 0
    cdef Py_ssize_t c
    for c in range(k):
        z[c] = _exp(z[c] - row_max)
        total += z[c]
    for c in range(k):
        z[c] /= total
    return row_max + _log(total)


cdef inline void _logits_row(const features_t *x, const floating *W, const floating *b,
                             floating scale, Py_ssize_t d, Py_ssize_t k,
                             floating *z) noexcept nogil:
    """``z[:k] = scale * (x[:d] @ W) + b`` for one row; ``W`` is ``(d, k)`` in C order."""
    cdef Py_ssize_t j, c
    cdef floating xj
    for c in range(k):
        z[c] = 0
    for j in range(d):
        xj = <floating> x[j]
        for c in range(k):
            z[c] += xj * W[j * k + c]
    for c in range(k):
        z[c] = z[c] * scale + b[c]


cdef void _forward_batch(const features_t *X, const Py_ssize_t *y, const floating *W,
                         const floating *b, floating scale, Py_ssize_t n, Py_ssize_t d,
                         Py_ssize_t k, floating *G, double *row_loss,
                         unsigned char *row_correct, int n_threads) noexcept nogil:
    """Forward pass of one batch, rows in parallel.

    Fills ``G (n, k)`` with ``d loss / d Z = (softmax(Z) - onehot(y)) / n``,
    ``row_loss (n,)`` with each row's cross-entropy and ``row_correct (n,)``
    with whether its argmax is its label.
    """
    cdef Py_ssize_t i, c
    cdef floating *z
    cdef floating target, lse
    cdef floating inv_n = (<floating> 1) / n
    for i in prange(n, schedule="static", num_threads=n_threads):
        z = G + i * k
        _logits_row(X + i * d, W, b, scale, d, k, z)
        row_correct[i] = _argmax(z, k) == y[i]
        target = z[y[i]]
        lse = _softmax_in_place(z, k)
        row_loss[i] = lse - target
        z[y[i]] -= 1
        for c in range(k):
            z[c] *= inv_n


cdef double _reduce_rows(const floating *G, const double *row_loss,
                         const unsigned char *row_correct, Py_ssize_t n, Py_ssize_t k,
                         floating *db, Py_ssize_t *n_correct) noexcept nogil:
    """Serial, row-ordered sums of a batch: ``db = G.sum(0)``, correct rows; returns the mean loss."""
    cdef Py_ssize_t i, c
    cdef double loss_sum = 0
    n_correct[0] = 0
    for c in range(k):
        db[c] = 0
    for i in range(n):
        loss_sum += row_loss[i]
        n_correct[0] += row_correct[i]
        for c in range(k):
            db[c] += G[i * k + c]
    return loss_sum / n


cdef void _weight_gradient(const features_t *X, const floating *G, floating scale,
                           Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, floating *dW,
                           int n_threads) noexcept nogil:
    """``dW (d, k) = scale * X.T @ G``, features in parallel, each summed over rows in order."""
    cdef Py_ssize_t i, j, c
    cdef floating xij
    cdef floating *row
    for j in prange(d, schedule="static", num_threads=n_threads):
        row = dW + j * k
        for c in range(k):
            row[c] = 0
        for i in range(n):
            xij = <floating> X[i * d + j]
            for c in range(k):
                row[c] += xij * G[i * k + c]
        for c in range(k):
            row[c] *= scale


cdef double _sgd_step(const features_t *X, const Py_ssize_t *y, floating *W, floating *b,
                      floating lr, floating scale, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                      floating *G, double *row_loss, unsigned char *row_correct,
                      floating *dW, floating *db, Py_ssize_t *n_correct,
                      int n_threads) noexcept nogil:
    """One fused SGD step on a batch of ``n`` rows; ``W`` and ``b`` in place; returns the loss.

    ``G``, ``row_loss``, ``row_correct``, ``dW`` and ``db`` are scratch of at
    least ``n * k``, ``n``, ``n``, ``d * k`` and ``k`` elements.
    """
    cdef Py_ssize_t i
    _forward_batch(X, y, W, b, scale, n, d, k, G, row_loss, row_correct, n_threads)
    cdef double loss = _reduce_rows(G, row_loss, row_correct, n, k, db, n_correct)
    _weight_gradient(X, G, scale, n, d, k, dW, n_threads)
    for i in range(d * k):
        W[i] -= lr * dW[i]
    for i in range(k):
        b[i] -= lr * db[i]
    return loss


cdef inline object _dtype_of(const floating[::1] b):
    """The NumPy dtype that matches ``floating``."""
    return np.float32 if floating is float else np.float64


cdef tuple _train_batches(const features_t[:, ::1] X, const Py_ssize_t[::1] y,
                          floating[:, ::1] W, floating[::1] b, double lr,
                          Py_ssize_t batch_size, double scale, int n_threads):
    """SGD over ``X[i:i + batch_size]`` in order; returns ``(sum of batch losses, n_batches, n_correct)``."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = W.shape[1]
    cdef Py_ssize_t rows, batch_correct, n_correct = 0, n_batches = 0
    cdef Py_ssize_t scratch_rows = min(batch_size, n)
    cdef double loss_sum = 0
    dtype = _dtype_of(b)
    cdef floating[:, ::1] G = np.empty((scratch_rows, k), dtype=dtype)
    cdef floating[:, ::1] dW = np.empty((d, k), dtype=dtype)
    cdef floating[::1] db = np.empty(k, dtype=dtype)
    cdef double[::1] row_loss = np.empty(scratch_rows, dtype=np.float64)
    cdef unsigned char[::1] row_correct = np.empty(scratch_rows, dtype=np.uint8)
    cdef Py_ssize_t start = 0
    with nogil:
        while start < n:
            rows = min(batch_size, n - start)
            loss_sum += _sgd_step(&X[start, 0], &y[start], &W[0, 0], &b[0], <floating> lr,
                                  <floating> scale, rows, d, k, &G[0, 0], &row_loss[0],
                                  &row_correct[0], &dW[0, 0], &db[0], &batch_correct,
                                  n_threads)
            n_correct += batch_correct
            n_batches += 1
            start += rows
    return loss_sum, n_batches, n_correct


def softmax(const floating[:, ::1] Z, floating[:, ::1] out, int n_threads):
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i, c
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            for c in range(k):
                out[i, c] = Z[i, c]
            _softmax_in_place(&out[i, 0], k)
    return out.base


def cross_entropy(const floating[:, ::1] Z, const Py_ssize_t[::1] y, int n_threads):
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    cdef double[::1] row_loss = np.empty(n, dtype=np.float64)
    cdef double total = 0
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            row_loss[i] = _logsumexp(&Z[i, 0], k) - Z[i, y[i]]
        for i in range(n):
            total += row_loss[i]
    return total / n


def loss_and_grad(const features_t[:, ::1] X, const Py_ssize_t[::1] y,
                  const floating[:, ::1] W, const floating[::1] b, double scale,
                  int n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = W.shape[1], n_correct
    dtype = _dtype_of(b)
    cdef floating[:, ::1] G = np.empty((n, k), dtype=dtype)
    cdef floating[:, ::1] dW = np.empty((d, k), dtype=dtype)
    cdef floating[::1] db = np.empty(k, dtype=dtype)
    cdef double[::1] row_loss = np.empty(n, dtype=np.float64)
    cdef unsigned char[::1] row_correct = np.empty(n, dtype=np.uint8)
    cdef double loss
    with nogil:
        _forward_batch(&X[0, 0], &y[0], &W[0, 0], &b[0], <floating> scale, n, d, k,
                       &G[0, 0], &row_loss[0], &row_correct[0], n_threads)
        loss = _reduce_rows(&G[0, 0], &row_loss[0], &row_correct[0], n, k, &db[0], &n_correct)
        _weight_gradient(&X[0, 0], &G[0, 0], <floating> scale, n, d, k, &dW[0, 0], n_threads)
    return loss, dW.base, db.base


def sgd_step(const features_t[:, ::1] X, const Py_ssize_t[::1] y, floating[:, ::1] W,
             floating[::1] b, double lr, double scale, int n_threads):
    loss, _, n_correct = _train_batches(X, y, W, b, lr, X.shape[0], scale, n_threads)
    return loss, n_correct


def train_epoch(const features_t[:, ::1] X, const Py_ssize_t[::1] y, floating[:, ::1] W,
                floating[::1] b, double lr, Py_ssize_t batch_size, double scale,
                int n_threads):
    loss_sum, n_batches, n_correct = _train_batches(X, y, W, b, lr, batch_size, scale,
                                                    n_threads)
    return loss_sum / n_batches, n_correct / X.shape[0]


def predict_proba(const features_t[:, ::1] X, const floating[:, ::1] W,
                  const floating[::1] b, double scale, int n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = W.shape[1], i
    cdef floating[:, ::1] P = np.empty((n, k), dtype=_dtype_of(b))
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            _logits_row(&X[i, 0], &W[0, 0], &b[0], <floating> scale, d, k, &P[i, 0])
            _softmax_in_place(&P[i, 0], k)
    return P.base


def predict(const features_t[:, ::1] X, const floating[:, ::1] W,
            const floating[::1] b, double scale, int n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = W.shape[1], i
    cdef floating[:, ::1] Z = np.empty((n, k), dtype=_dtype_of(b))
    cdef Py_ssize_t[::1] labels = np.empty(n, dtype=np.intp)
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            _logits_row(&X[i, 0], &W[0, 0], &b[0], <floating> scale, d, k, &Z[i, 0])
            labels[i] = _argmax(&Z[i, 0], k)
    return labels.base
