# cython: language_level=3, boundscheck=False, wraparound=False
"""A downstream extension that cimports softmax_fast's C API.

It trains with a learning rate that decays every epoch, a schedule that
softmax_fast's Python API does not offer, running every epoch without the
GIL, and predicts with the same kernels; on dense uint8 pixels, and on the
three arrays of a CSR matrix with an L2 penalty.
"""

from libc.stdint cimport int32_t

from softmax_fast.kernels.cython_kernels cimport (
    SF_OK, predict_f32_u8, sf_options_f32, train_epoch_csr_f32_i32, train_epoch_f32_u8)

import numpy as np

# uint8 pixels are scaled by this inside the kernels.
cdef float PIXEL_SCALE = 1.0 / 255


def train_with_decay(const unsigned char[:, ::1] X, const Py_ssize_t[::1] y, float[:, ::1] W, float[::1] b,
                     float lr, float decay, Py_ssize_t batch_size, int epochs, int n_threads=1):
    """Train ``W (d, k)`` and ``b (k,)`` in place on uint8 ``X (n, d)``, labels ``y (n,)``.

    Epoch ``e`` (from 0) runs at learning rate ``lr / (1 + decay * e)``.
    Returns the mean batch loss of each epoch, ``(epochs,)`` float64.
    """
    cdef double[::1] losses = np.zeros(epochs)
    cdef double accuracy
    cdef int epoch, status = SF_OK
    with nogil:
        for epoch in range(epochs):
            status = train_epoch_f32_u8(&X[0, 0], &y[0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0],
                                        lr / (1 + decay * epoch), batch_size, PIXEL_SCALE, n_threads,
                                        &losses[epoch], &accuracy)
            if status != SF_OK:
                break
    if status != SF_OK:
        raise RuntimeError(f"train_epoch_f32_u8 failed with status {status}")
    return np.asarray(losses)


def predict(const unsigned char[:, ::1] X, const float[:, ::1] W, const float[::1] b, int n_threads=1):
    """The predicted class index of each row of uint8 ``X (n, d)``, ``(n,)`` np.intp."""
    labels = np.empty(X.shape[0], dtype=np.intp)
    cdef Py_ssize_t[::1] out = labels
    cdef int status
    with nogil:
        status = predict_f32_u8(&X[0, 0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0], PIXEL_SCALE,
                                n_threads, &out[0])
    if status != SF_OK:
        raise RuntimeError(f"predict_f32_u8 failed with status {status}")
    return labels


def train_csr_with_decay(const float[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                         const Py_ssize_t[::1] y, float[:, ::1] W, float[::1] b, float lr, float decay, float alpha,
                         Py_ssize_t batch_size, int epochs, int n_threads=1):
    """``train_with_decay`` on CSR rows ``(data, indices, indptr)`` (float32 values, int32 indices) of
    ``W.shape[0]`` features, with the L2 penalty ``alpha``; the mean batch loss of each epoch."""
    cdef Py_ssize_t n = y.shape[0], batches = (n + batch_size - 1) // batch_size
    cdef double[::1] losses = np.zeros(epochs)
    cdef float[::1] rates = np.empty(batches, dtype=np.float32)
    cdef sf_options_f32 options
    cdef double accuracy
    cdef int epoch, status = SF_OK
    options.alpha, options.momentum, options.nesterov = alpha, 0, 0
    options.velocity_W, options.velocity_b, options.sample_weight = NULL, NULL, NULL
    with nogil:
        for epoch in range(epochs):
            rates[:] = lr / (1 + decay * epoch)
            status = train_epoch_csr_f32_i32(&data[0], &indices[0], &indptr[0], &y[0], n, W.shape[0], W.shape[1],
                                             &W[0, 0], &b[0], &rates[0], batch_size, 1, &options, n_threads,
                                             &losses[epoch], &accuracy)
            if status != SF_OK:
                break
    if status != SF_OK:
        raise RuntimeError(f"train_epoch_csr_f32_i32 failed with status {status}")
    return np.asarray(losses)
