"""CSR input: every backend with CSR kernels against the reference on the same rows, the reference's CSR against
its own dense formulas, and each malformed CSR's error."""

import numpy as np
import pytest

import softmax_fast.kernels as kernels
from softmax_fast.kernels._validation import checked_csr_rows
from problems import assert_close, make_problem, training_options

sparse = pytest.importorskip("scipy.sparse")

COMPILED_BACKENDS = ("numba", "cython")
INDEX_DTYPES = (np.int32, np.int64)
CLASS_COUNTS = (2, 20, 40)
BATCH_SIZE = 32


def csr_problem(n, d, k, dtype, index_dtype, seed=0):
    """``(X csr_array (n, d), y, W, b)``: MNIST-like rows (80 % zeros) whose row 0 is empty and row 1 stores every
    column, indices and indptr of ``index_dtype``."""
    dense, y, W, b, _ = make_problem(n, d, k, dtype, "float", seed)
    dense[0] = 0
    dense[1] = np.linspace(0.1, 1, d)
    X = sparse.csr_array(dense)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    return X, y, W, b


def every_entry_stored(dense):
    """``dense (n, d)`` as a CSR array that stores all its entries, zeros too."""
    n, d = dense.shape
    return sparse.csr_array((dense.ravel(), np.tile(np.arange(d), n), np.arange(0, n * d + 1, d)), shape=(n, d))


def fresh(options):
    """``options`` with a copy of their velocity (which the kernels update in place), and ``lr=0.3`` if none."""
    options = dict(lr=0.3) | options
    if "velocity" in options:
        options["velocity"] = tuple(v.copy() for v in options["velocity"])
    return options


def train(backend, X, y, W, b, options, batch_size=BATCH_SIZE):
    """``train_epoch`` from copies of ``W``, ``b`` (and the velocity): ``(loss, accuracy, W, b, velocity)``."""
    W, b, options = W.copy(), b.copy(), fresh(options)
    loss, accuracy = backend.train_epoch(X, y, W, b, options.pop("lr"), batch_size, **options)
    return loss, accuracy, W, b, options.get("velocity")


def assert_same_training(actual, expected, dtype):
    assert_close(actual[0], expected[0], dtype)
    assert actual[1] == expected[1]
    for got, want in zip(actual[2:4], expected[2:4]):
        assert_close(got, want, dtype)
    if expected[4] is not None:
        for got, want in zip(actual[4], expected[4]):
            assert_close(got, want, dtype)


@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("k", CLASS_COUNTS, ids=lambda k: f"k{k}")
@pytest.mark.parametrize("with_options", [False, True], ids=["plain", "every option"])
def test_csr_kernels_match_the_reference(reference, backend_name, index_dtype, k, with_options, dtype):
    backend = kernels.get_backend(backend_name)
    X, y, W, b = csr_problem(150, 60, k, dtype, index_dtype)
    options = training_options(X, W, b, BATCH_SIZE, nesterov=k == 20) if with_options else {}
    assert_same_training(train(backend, X, y, W, b, options), train(reference, X, y, W, b, options), dtype)
    step = dict(options, lr=options["lr"][0]) if with_options else {}
    step_W, step_b, reference_W, reference_b = W.copy(), b.copy(), W.copy(), b.copy()
    loss, n_correct = backend.sgd_step(X, y, step_W, step_b, **fresh(step))
    expected_loss, expected_correct = reference.sgd_step(X, y, reference_W, reference_b, **fresh(step))
    assert_close(loss, expected_loss, dtype)
    assert n_correct == expected_correct
    assert_close(step_W, reference_W, dtype)
    assert_close(step_b, reference_b, dtype)
    penalty = dict(alpha=options["alpha"], sample_weight=options["sample_weight"]) if with_options else {}
    for got, want in zip(backend.loss_and_grad(X, y, W, b, **penalty), reference.loss_and_grad(X, y, W, b, **penalty)):
        assert_close(got, want, dtype)
    assert_close(backend.predict_proba(X, W, b), reference.predict_proba(X, W, b), dtype)
    np.testing.assert_array_equal(backend.predict(X, W, b), reference.predict(X, W, b))


@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("k", CLASS_COUNTS, ids=lambda k: f"k{k}")
def test_a_csr_matrix_that_stores_every_entry_trains_and_predicts_as_the_dense_array(reference, backend_name, k,
                                                                                     dtype):
    backend = kernels.get_backend(backend_name)
    dense, y, W, b, _ = make_problem(100, 30, k, dtype, "float")
    X = every_entry_stored(dense)
    options = training_options(dense, W, b, BATCH_SIZE, nesterov=False)
    assert_same_training(train(backend, X, y, W, b, options), train(reference, dense, y, W, b, options), dtype)
    for got, want in zip(backend.loss_and_grad(X, y, W, b, alpha=1e-3), reference.loss_and_grad(dense, y, W, b,
                                                                                                alpha=1e-3)):
        assert_close(got, want, dtype)
    assert_close(backend.predict_proba(X, W, b), reference.predict_proba(dense, W, b), dtype)


@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0], ids=["scale folded when small", "shrink of 0", "negative shrink"])
def test_a_penalty_that_shrinks_the_weights_fast_matches_the_reference(reference, backend_name, alpha, dtype):
    # lr * alpha of 0.75 shrinks the scale below 1e-9 in 15 batches, which folds it back into W; 1 and 1.5 leave
    # no positive scale at all, and the step is taken on W itself.
    backend = kernels.get_backend(backend_name)
    X, y, W, b = csr_problem(1000, 40, 5, dtype, np.int32)
    options = dict(lr=0.5, alpha=alpha)
    assert_same_training(train(backend, X, y, W, b, options), train(reference, X, y, W, b, options), dtype)


@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("k", [2, 40], ids=lambda k: f"k{k}")
def test_csr_kernels_give_the_same_bits_on_any_thread_count(reference, backend_name, k, dtype):
    # Batches of 512 rows of about 40 values: at k = 40 a batch is 800,000 multiply-adds, enough for the Cython
    # kernels to share it among the threads (_CSR_THREADED_WORK is 2^19); at k = 2 they run it on one.
    backend = kernels.get_backend(backend_name)
    X, y, W, b = csr_problem(2000, 200, k, dtype, np.int64)
    batch_size = 512
    options = training_options(X, W, b, batch_size, nesterov=True)

    def results(threads):
        trained = train(backend, X, y, W, b, dict(options, n_threads=threads), batch_size)
        plain = train(backend, X, y, W, b, dict(lr=0.3, alpha=1e-3, n_threads=threads), batch_size)
        return [*trained[:4], *trained[4], *plain[:4],
                *backend.loss_and_grad(X, y, W, b, alpha=1e-3, n_threads=threads),
                backend.predict_proba(X, W, b, n_threads=threads)]

    for one, two in zip(results(1), results(2)):
        np.testing.assert_array_equal(one, two)
    assert_same_training(train(backend, X, y, W, b, dict(options, n_threads=2), batch_size),
                         train(reference, X, y, W, b, options, batch_size), dtype)


def test_a_csr_matrix_class_and_array_give_the_same_result(backend, dtype):
    X, y, W, b = csr_problem(100, 20, 3, dtype, np.int32)
    as_matrix = sparse.csr_matrix(X)
    np.testing.assert_array_equal(backend.predict_proba(as_matrix, W, b), backend.predict_proba(X, W, b))


def broken(attribute, change):
    """A CSR problem whose ``attribute`` array is replaced by ``change(array)``, bypassing scipy's own checks."""
    def make():
        X, y, W, b = csr_problem(20, 10, 3, np.float64, np.int32)
        setattr(X, attribute, change(getattr(X, attribute).copy()))
        return X, W, b
    return make


def swapped_first_two(indices):
    indices[[0, 1]] = indices[[1, 0]]
    return indices


def repeated_first(indices):
    indices[1] = indices[0]
    return indices


def not_finite(data):
    data[3] = np.nan
    return data


def decreasing_at_5(indptr):
    indptr[5] = indptr[6] + 1
    return indptr


@pytest.mark.parametrize("make, error, message", [
    (broken("indices", swapped_first_two), ValueError, "sorted and unique within each row"),
    (broken("indices", repeated_first), ValueError, "sorted and unique within each row"),
    (broken("indices", lambda i: i + 5), ValueError, r"column indices must be in \[0, 10\)"),
    (broken("indices", lambda i: i - 1), ValueError, r"column indices must be in \[0, 10\)"),
    (broken("indptr", decreasing_at_5), ValueError, "indptr must not decrease"),
    (broken("indptr", lambda p: p[:-1]), ValueError, "indptr must have n \\+ 1 = 21 entries"),
    (broken("indptr", lambda p: np.append(p[:-1], p[-1] - 1)), ValueError,
     r"entries from 0 to the \d+ stored values, got 21 entries from 0 to \d+"),
    (broken("data", not_finite), ValueError, "X must be finite"),
    (broken("data", lambda d: d.astype(np.float32)), TypeError, r"data must have the dtype of W \(float64\)"),
    (broken("indptr", lambda p: p.astype(np.int64)), TypeError, "must both be int32 or both int64"),
])
def test_a_malformed_csr_matrix_is_rejected_saying_what_is_wrong(backend, make, error, message):
    X, W, b = make()
    with pytest.raises(error, match=message):
        backend.predict(X, W, b)


@pytest.mark.parametrize("W_rows, W_dtype, error, message", [
    (11, np.float64, ValueError, r"X has 10 features but W has 11 rows"),
    (10, np.float32, TypeError, r"data must have the dtype of W \(float32\)"),
])
def test_rows_checked_once_are_checked_again_against_w(backend, W_rows, W_dtype, error, message):
    # The estimator checks a sparse X whole once and passes each call's rows as a checked CSR.
    X, y, _, _ = csr_problem(20, 10, 3, np.float64, np.int32)
    W, b = np.zeros((W_rows, 3), W_dtype), np.zeros(3, W_dtype)
    with pytest.raises(error, match=message):
        backend.loss_and_grad(checked_csr_rows(X), y, W, b)


@pytest.mark.parametrize("convert", ["tocoo", "tocsc"])
def test_other_sparse_formats_are_refused_with_how_to_convert_them(backend, convert):
    X, y, W, b = csr_problem(20, 10, 3, np.float64, np.int32)
    with pytest.raises(TypeError, match=r"convert it once with X.tocsr\(\)"):
        backend.loss_and_grad(getattr(X, convert)(), y, W, b)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES, ids=lambda t: t.__name__)
def test_the_numba_csr_kernels_run_inside_a_users_njit_function(index_dtype):
    from numba import njit

    from softmax_fast.kernels import numba_kernels

    @njit
    def two_epochs(data, indices, indptr, y, W, b):
        for _ in range(2):
            numba_kernels.train_epoch_csr(data, indices, indptr, y, W, b, 0.3, 16, 1.0)
        return numba_kernels.predict_csr(data, indices, indptr, W, b, 1.0)

    X, y, W, b = csr_problem(64, 12, 4, np.float64, index_dtype)
    expected_W, expected_b = W.copy(), b.copy()
    reference = kernels.get_backend("numpy")
    for _ in range(2):
        reference.train_epoch(X, y, expected_W, expected_b, 0.3, 16)
    predicted = two_epochs(X.data, X.indices, X.indptr, y, W, b)
    assert_close(W, expected_W, np.float64)
    np.testing.assert_array_equal(predicted, reference.predict(X, expected_W, expected_b))

