"""Properties every backend must have, on inputs that hypothesis draws."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from problems import DTYPES

dtypes = st.sampled_from(DTYPES)
shapes = st.tuples(st.integers(1, 20), st.integers(1, 12))
# Multiples of 1/8 up to 1000 in magnitude, and integer shifts: exact in
# float32 and float64, so shifting a row changes no bit of Z - max(Z).
eighths = st.integers(-8000, 8000).map(lambda v: v / 8)


@st.composite
def logits_and_shifts(draw):
    dtype = draw(dtypes)
    n, k = draw(shapes)
    Z = draw(arrays(np.float64, (n, k), elements=eighths)).astype(dtype)
    shifts = draw(arrays(np.float64, (n, 1), elements=st.integers(-1000, 1000))).astype(dtype)
    return Z, shifts


@given(logits_and_shifts())
def test_softmax_rows_sum_to_one_and_ignore_a_constant_shift(backend, case):
    Z, shifts = case
    P = backend.softmax(Z)
    k = Z.shape[1]
    eps = np.finfo(Z.dtype).eps
    assert np.all(P >= 0) and np.all(P <= 1)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=0, atol=4 * k * eps)
    np.testing.assert_allclose(backend.softmax(Z + shifts), P, rtol=4 * eps, atol=4 * eps)


@st.composite
def small_float64_batches(draw):
    n = draw(st.integers(1, 8))
    d = draw(st.integers(1, 5))
    k = draw(st.integers(2, 4))
    values = st.floats(-3, 3)
    X = draw(arrays(np.float64, (n, d), elements=values))
    W = draw(arrays(np.float64, (d, k), elements=values))
    b = draw(arrays(np.float64, (k,), elements=values))
    y = draw(arrays(np.intp, (n,), elements=st.integers(0, k - 1)))
    return X, y, W, b


@given(small_float64_batches(), st.sampled_from([1.0, 0.5]))
def test_loss_and_grad_agrees_with_central_differences(backend, batch, scale):
    X, y, W, b = batch
    _, dW, db = backend.loss_and_grad(X, y, W, b, scale)
    h = 1e-6

    def loss_at(W_at, b_at):
        return backend.loss_and_grad(X, y, W_at, b_at, scale)[0]

    def central_difference(param, index):
        plus, minus = param.copy(), param.copy()
        plus[index] += h
        minus[index] -= h
        if param is W:
            return (loss_at(plus, b) - loss_at(minus, b)) / (2 * h)
        return (loss_at(W, plus) - loss_at(W, minus)) / (2 * h)

    numeric_dW = np.array([central_difference(W, i) for i in np.ndindex(W.shape)]).reshape(W.shape)
    numeric_db = np.array([central_difference(b, i) for i in np.ndindex(b.shape)])
    np.testing.assert_allclose(dW, numeric_dW, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numeric_db, rtol=1e-5, atol=1e-7)
