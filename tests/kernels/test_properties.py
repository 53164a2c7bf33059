"""Properties every backend must have, on inputs that hypothesis draws."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from problems import DTYPES, INPUT_KINDS, assert_close, tolerance

dtypes = st.sampled_from(DTYPES)
# Up to 40 classes: the compiled softmax takes rows of up to 16 a value at a
# time, longer ones a vector at a time, the last vector short.
shapes = st.tuples(st.integers(1, 20), st.integers(1, 40))
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


@given(small_float64_batches(), st.sampled_from([1.0, 0.5]), st.sampled_from([0.0, 0.3]), st.booleans())
def test_loss_and_grad_agrees_with_central_differences(backend, batch, scale, alpha, weighted):
    """The gradients are those of the objective ``loss + (alpha/2) * ||W||^2``, with or without row weights."""
    X, y, W, b = batch
    sample_weight = np.linspace(0, 2, len(y)) if weighted else None
    _, dW, db = backend.loss_and_grad(X, y, W, b, scale, alpha=alpha, sample_weight=sample_weight)
    h = 1e-6

    def objective_at(W_at, b_at):
        loss = backend.loss_and_grad(X, y, W_at, b_at, scale, sample_weight=sample_weight)[0]
        return loss + alpha / 2 * np.sum(W_at**2)

    def central_difference(param, index):
        plus, minus = param.copy(), param.copy()
        plus[index] += h
        minus[index] -= h
        if param is W:
            return (objective_at(plus, b) - objective_at(minus, b)) / (2 * h)
        return (objective_at(W, plus) - objective_at(W, minus)) / (2 * h)

    numeric_dW = np.array([central_difference(W, i) for i in np.ndindex(W.shape)]).reshape(W.shape)
    numeric_db = np.array([central_difference(b, i) for i in np.ndindex(b.shape)])
    np.testing.assert_allclose(dW, numeric_dW, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numeric_db, rtol=1e-5, atol=1e-7)


# Logits far apart (exp(-2e4) is 0 in any float), equal, and a single class: exact in float32, so every
# backend computes the same logits, whatever its summation order.
extremes = st.sampled_from([-1e4, 0.0, 1e4])


@st.composite
def extreme_logits(draw):
    dtype = draw(dtypes)
    n, k = draw(st.integers(1, 20)), draw(st.integers(1, 6))
    Z = draw(arrays(dtype, (n, k), elements=extremes))
    y = draw(arrays(np.intp, (n,), elements=st.integers(0, k - 1)))
    return Z, y


@given(extreme_logits())
def test_softmax_and_cross_entropy_of_extreme_logits_are_finite_and_normalised(backend, case):
    Z, y = case
    P = backend.softmax(Z)
    eps = np.finfo(Z.dtype).eps
    assert np.all((P >= 0) & (P <= 1))
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=0, atol=4 * Z.shape[1] * eps)
    loss = backend.cross_entropy(Z, y)
    assert np.isfinite(loss) and loss >= 0


@given(extreme_logits())
def test_softmax_and_cross_entropy_of_extreme_logits_agree_with_the_reference(compiled_backend, reference, case):
    Z, y = case
    assert_close(compiled_backend.softmax(Z), reference.softmax(Z), Z.dtype)
    assert_close(compiled_backend.cross_entropy(Z, y), reference.cross_entropy(Z, y), Z.dtype)


@st.composite
def extreme_batches(draw):
    """``(X, y, W, b)``: features 0 or 1 (uint8 or float), weights and bias -1e4, 0 or 1e4, 1 to 6 classes."""
    dtype = draw(dtypes)
    n, d, k = draw(st.integers(1, 20)), draw(st.integers(1, 12)), draw(st.integers(1, 6))
    X = draw(arrays(np.uint8, (n, d), elements=st.integers(0, 1)))
    if draw(st.sampled_from(INPUT_KINDS)) == "float":
        X = X.astype(dtype)
    W = draw(arrays(dtype, (d, k), elements=extremes))
    b = draw(arrays(dtype, (k,), elements=extremes))
    y = draw(arrays(np.intp, (n,), elements=st.integers(0, k - 1)))
    return X, y, W, b


def assert_same_update(before, after, expected_after, lr, dtype):
    """``after - before``, the update ``-lr * gradient``, equals the reference's within ``lr`` times the
    tolerance the gradients are held to, relative and absolute.

    Weights of 1e4 change by at most lr = 0.5 here: a tolerance taken from the weights (1e4 * 1e-4 = 1) would
    pass a kernel that skipped the update. Each weight may also differ by the rounding of its subtraction: a
    unit in the last place of the larger of its old and new values.
    """
    before = before.astype(np.float64)
    update, expected_update = after - before, expected_after - before
    rounding = np.spacing(np.maximum(np.abs(before), np.abs(expected_after)).astype(dtype)).astype(np.float64)
    allowed = lr * tolerance(dtype) + tolerance(dtype) * np.abs(expected_update) + rounding
    worst = np.argmax(np.abs(update - expected_update) - allowed)
    assert np.all(np.abs(update - expected_update) <= allowed), (
        f"updates differ: {update.flat[worst]} against the reference's {expected_update.flat[worst]} "
        f"(allowed {allowed.flat[worst]:.3g})")


@given(extreme_batches())
def test_every_kernel_on_extreme_batches_agrees_with_the_reference(compiled_backend, reference, batch):
    X, y, W, b = batch
    dtype = W.dtype
    loss, dW, db = compiled_backend.loss_and_grad(X, y, W, b)
    expected_loss, expected_dW, expected_db = reference.loss_and_grad(X, y, W, b)
    assert np.isfinite(loss)
    assert_close(loss, expected_loss, dtype)
    # Sums of n terms of magnitude <= 1/n with features 0 or 1: they may cancel to rounding noise
    # (a class that every row predicts with its own frequency), so the tolerance is absolute.
    for got, want in ((dW, expected_dW), (db, expected_db)):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=tolerance(dtype), atol=tolerance(dtype))
    P = compiled_backend.predict_proba(X, W, b)
    assert np.all(np.isfinite(P))
    assert_close(P, reference.predict_proba(X, W, b), dtype)
    np.testing.assert_array_equal(compiled_backend.predict(X, W, b), reference.predict(X, W, b))
    W_before, b_before, W_ref, b_ref = W.copy(), b.copy(), W.copy(), b.copy()
    loss, n_correct = compiled_backend.sgd_step(X, y, W, b, 0.5)
    expected_loss, expected_correct = reference.sgd_step(X, y, W_ref, b_ref, 0.5)
    assert np.isfinite(loss) and n_correct == expected_correct
    assert_close(loss, expected_loss, dtype)
    assert_same_update(W_before, W, W_ref, 0.5, dtype)
    assert_same_update(b_before, b, b_ref, 0.5, dtype)
