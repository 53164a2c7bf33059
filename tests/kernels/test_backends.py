"""Every backend, dtype and input kind against the NumPy reference."""

import numpy as np
import pytest

from problems import INPUT_KINDS, assert_close, make_problem

BATCH_SIZE = 128

# (n, d, k, logits): n not a multiple of the batch size, n below it, two classes,
# one feature, MNIST's shape, rows of more than 512 features that end in a
# short vector with as many classes as one pass of the compiled logits takes
# (16), more classes than that (the compiled kernels' GEMM loops, in panels
# of 64 float32 or 32 float64 classes and tiles of 6 rows: 19 and 40 classes
# fill part of one panel, 70 fills one or two and part of the next), enough
# rows that a thread's share of the GEMMs' tiles is packed in more than one
# cache-sized block (Numba's _block_tiles: 200 tiles of rows for the logits,
# and 1200 rows deep for the gradient), logits of magnitude ~1000, and all
# logits tied.
SHAPES = {
    "n_not_multiple_of_batch": (300, 20, 5, "moderate"),
    "n_below_batch": (50, 20, 5, "moderate"),
    "two_classes": (200, 10, 2, "moderate"),
    "one_feature": (150, 1, 3, "moderate"),
    "mnist_shape": (300, 784, 10, "moderate"),
    "long_rows": (130, 531, 16, "moderate"),
    "many_classes": (150, 37, 40, "moderate"),
    "many_classes_long_rows": (70, 531, 19, "moderate"),
    "many_panels": (130, 50, 70, "moderate"),
    "many_blocks": (1200, 120, 20, "moderate"),
    "large_logits": (150, 784, 10, "large"),
    "ties": (130, 20, 5, "ties"),
}
# Many SGD steps amplify float32 rounding in logits of magnitude ~1000 far past
# 1e-4, so multi-step comparisons use the well-conditioned shapes only.
EPOCH_SHAPES = [name for name, shape in SHAPES.items() if shape[3] == "moderate"]


def problem(shape_name, dtype, input_kind):
    n, d, k, logits = SHAPES[shape_name]
    return make_problem(n, d, k, dtype, input_kind, logits=logits)


def logits_of(shape_name, dtype):
    X, y, W, b, scale = problem(shape_name, dtype, "float")
    return (X * scale) @ W + b, y


@pytest.mark.parametrize("shape_name", SHAPES)
def test_softmax(backend, reference, shape_name, dtype):
    Z, _ = logits_of(shape_name, dtype)
    P = backend.softmax(Z)
    assert P.dtype == Z.dtype and P.shape == Z.shape
    assert_close(P, reference.softmax(Z), dtype)


def test_softmax_writes_into_out_and_in_place(backend, reference, dtype):
    Z, _ = logits_of("n_not_multiple_of_batch", dtype)
    expected = reference.softmax(Z)
    out = np.empty_like(Z)
    assert backend.softmax(Z, out=out) is out
    assert_close(out, expected, dtype)
    assert backend.softmax(Z, out=Z) is Z
    assert_close(Z, expected, dtype)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_cross_entropy(backend, reference, shape_name, dtype):
    Z, y = logits_of(shape_name, dtype)
    loss = backend.cross_entropy(Z, y)
    assert isinstance(loss, float)
    assert_close(loss, reference.cross_entropy(Z, y), dtype)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_loss_and_grad(backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_before, b_before = W.copy(), b.copy()
    loss, dW, db = backend.loss_and_grad(X, y, W, b, scale)
    expected_loss, expected_dW, expected_db = reference.loss_and_grad(X, y, W, b, scale)
    assert dW.dtype == W.dtype and db.dtype == W.dtype
    assert_close(loss, expected_loss, dtype)
    assert_close(dW, expected_dW, dtype)
    assert_close(db, expected_db, dtype)
    np.testing.assert_array_equal(W, W_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_sgd_step(backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_ref, b_ref = W.copy(), b.copy()
    loss, n_correct = backend.sgd_step(X, y, W, b, 0.2, scale)
    expected_loss, expected_correct = reference.sgd_step(X, y, W_ref, b_ref, 0.2, scale)
    assert_close(loss, expected_loss, dtype)
    assert n_correct == expected_correct
    assert_close(W, W_ref, dtype)
    assert_close(b, b_ref, dtype)


@pytest.mark.parametrize("shape_name", EPOCH_SHAPES)
def test_train_epoch(backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_ref, b_ref = W.copy(), b.copy()
    loss, accuracy = backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
    expected_loss, expected_accuracy = reference.train_epoch(X, y, W_ref, b_ref, 0.2, BATCH_SIZE, scale)
    assert_close(loss, expected_loss, dtype)
    assert accuracy == expected_accuracy
    assert_close(W, W_ref, dtype)
    assert_close(b, b_ref, dtype)


@pytest.mark.parametrize("shape_name", EPOCH_SHAPES)
def test_train_epoch_equals_looped_sgd_step(backend, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_loop, b_loop = W.copy(), b.copy()
    loss, accuracy = backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
    batch_losses, n_correct = [], 0
    for start in range(0, len(y), BATCH_SIZE):
        rows = slice(start, start + BATCH_SIZE)
        batch_loss, batch_correct = backend.sgd_step(X[rows], y[rows], W_loop, b_loop, 0.2, scale)
        batch_losses.append(batch_loss)
        n_correct += batch_correct
    np.testing.assert_array_equal(W, W_loop)
    np.testing.assert_array_equal(b, b_loop)
    assert loss == pytest.approx(np.mean(batch_losses), rel=1e-15)
    assert accuracy == n_correct / len(y)


@pytest.mark.parametrize("input_kind", INPUT_KINDS)
def test_ten_float64_epochs_match_reference(compiled_backend, reference, input_kind):
    X, y, W, b, scale = make_problem(1000, 784, 10, np.float64, input_kind, seed=1)
    W_ref, b_ref = W.copy(), b.copy()
    for _ in range(10):
        result = compiled_backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
        expected = reference.train_epoch(X, y, W_ref, b_ref, 0.2, BATCH_SIZE, scale)
    np.testing.assert_allclose(result, expected, rtol=1e-8)
    np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-8 * np.abs(W_ref).max())
    np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-8 * np.abs(b_ref).max())


@pytest.mark.parametrize("shape_name", SHAPES)
def test_predict_proba_and_predict(backend, reference, shape_name, dtype, input_kind):
    X, _, W, b, scale = problem(shape_name, dtype, input_kind)
    P = backend.predict_proba(X, W, b, scale)
    assert P.dtype == W.dtype
    assert_close(P, reference.predict_proba(X, W, b, scale), dtype)
    labels = backend.predict(X, W, b, scale)
    assert labels.dtype == np.intp
    np.testing.assert_array_equal(labels, reference.predict(X, W, b, scale))


def test_ties_go_to_the_lowest_class(backend, dtype):
    X, _, W, b, scale = problem("ties", dtype, "float")
    np.testing.assert_array_equal(backend.predict(X, W, b, scale), 0)


@pytest.mark.parametrize("n_classes", [5, 40])  # a value at a time, and vectors along the row with a short last one
def test_a_row_with_nan_or_no_finite_largest_logit_gives_nan(backend, dtype, n_classes):
    Z = np.zeros((4, n_classes), dtype=dtype)
    Z[0, 3] = np.nan
    Z[1, :] = -np.inf
    Z[2, 1] = np.inf
    Z[3, 0] = np.nan
    with np.errstate(invalid="ignore"):  # the reference's inf - inf
        P = backend.softmax(Z)
        assert np.isnan(P).all()
        assert np.isnan(backend.cross_entropy(Z, np.zeros(4, dtype=np.intp)))


@pytest.mark.parametrize("n_classes", [10, 70])
def test_thread_count_does_not_change_a_bit(compiled_backend, dtype, input_kind, n_classes):
    X, y, W, b, scale = make_problem(1000, 784, n_classes, dtype, input_kind, seed=2)
    Z = (X * scale).astype(dtype) @ W + b

    def run(n_threads):
        W_run, b_run = W.copy(), b.copy()
        epoch = compiled_backend.train_epoch(X, y, W_run, b_run, 0.2, BATCH_SIZE, scale, n_threads=n_threads)
        return {
            "softmax": compiled_backend.softmax(Z, n_threads=n_threads),
            "cross_entropy": compiled_backend.cross_entropy(Z, y, n_threads=n_threads),
            "loss_and_grad": compiled_backend.loss_and_grad(X, y, W, b, scale, n_threads=n_threads),
            "train_epoch": (epoch, W_run, b_run),
            "predict_proba": compiled_backend.predict_proba(X, W, b, scale, n_threads=n_threads),
            "predict": compiled_backend.predict(X, W, b, scale, n_threads=n_threads),
        }

    one_thread, two_threads = run(1), run(2)
    for name, result in one_thread.items():
        for single, double in zip(_leaves(result), _leaves(two_threads[name])):
            np.testing.assert_array_equal(single, double, err_msg=name)


def _leaves(result):
    """The arrays and numbers in a kernel's result, tuples flattened."""
    if isinstance(result, tuple):
        for item in result:
            yield from _leaves(item)
    else:
        yield result
