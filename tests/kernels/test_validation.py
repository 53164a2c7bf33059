"""Bad input to any backend raises a specific exception that names the argument; never a crash."""

import numpy as np
import pytest

import softmax_fast.kernels as kernels
from problems import assert_close, make_problem


def batch(dtype=np.float32):
    """A valid ``(X, y, W, b)`` that each case below breaks in one way: n=6, d=4, k=3."""
    X, y, W, b, _ = make_problem(6, 4, 3, dtype, "float")
    return X, y, W, b


def read_only(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def with_nan(array):
    array = array.copy()
    array.flat[0] = np.nan
    return array


def sgd_step_with(**changes):
    X, y, W, b = batch()
    arguments = dict(X=X, y=y, W=W, b=b, lr=0.1, scale=1.0) | changes
    return lambda backend: backend.sgd_step(**arguments)


def train_epoch_with(**changes):
    X, y, W, b = batch()
    arguments = dict(X=X, y=y, W=W, b=b, lr=0.1, batch_size=4) | changes
    return lambda backend: backend.train_epoch(**arguments)


X, y, W, b = batch()
BAD_CALLS = {
    "X int64": (sgd_step_with(X=X.astype(np.int64)), TypeError, "X must have dtype uint8 or float32"),
    "X float16": (sgd_step_with(X=X.astype(np.float16)), TypeError, "X must have dtype"),
    "X float64 for float32 W": (sgd_step_with(X=X.astype(np.float64)), TypeError, r"float32 \(the dtype of W\)"),
    "X 1-D": (sgd_step_with(X=X[0]), ValueError, "X must be 2-D"),
    "X empty": (sgd_step_with(X=X[:0], y=y[:0]), ValueError, "at least one row"),
    "X wrong width": (sgd_step_with(X=X[:, :3]), ValueError, "X has 3 features but W has 4 rows"),
    "y float": (sgd_step_with(y=y.astype(np.float64)), TypeError, "y must hold integer class labels"),
    "y bool": (sgd_step_with(y=y > 0), TypeError, "y must hold integer class labels"),
    "y 2-D": (sgd_step_with(y=y[:, None]), ValueError, "y must be 1-D"),
    "y too short": (sgd_step_with(y=y[:5]), ValueError, "y has 5 labels but there are 6 rows"),
    "y negative": (sgd_step_with(y=np.array([0, 1, -1, 0, 1, 2])), ValueError, r"labels in \[0, 3\).* got -1"),
    "y = k": (sgd_step_with(y=np.array([0, 1, 3, 0, 1, 2])), ValueError, r"labels in \[0, 3\).* got 3"),
    "y huge": (sgd_step_with(y=np.array([0, 1, 2**40, 0, 1, 2])), ValueError, "labels in"),
    "W int": (sgd_step_with(W=W.astype(np.int32)), TypeError, "W must have dtype float32 or float64"),
    "W 1-D": (sgd_step_with(W=W[:, 0].copy()), ValueError, "W must be a non-empty 2-D array"),
    "W Fortran order": (sgd_step_with(W=np.asfortranarray(W)), ValueError, "W is written in place and must be C-contiguous"),
    "W read-only": (sgd_step_with(W=read_only(W)), ValueError, "W is written in place"),
    "W a list": (sgd_step_with(W=W.tolist()), TypeError, "W is updated in place and must be a numpy.ndarray"),
    "W NaN": (sgd_step_with(W=with_nan(W)), ValueError, "W and b must be finite"),
    "b inf": (sgd_step_with(b=b + np.float32(np.inf)), ValueError, "W and b must be finite"),
    "b float64": (sgd_step_with(b=b.astype(np.float64)), TypeError, r"b must have the dtype of W \(float32\)"),
    "b wrong length": (sgd_step_with(b=b[:2].copy()), ValueError, r"b must have shape \(3,\)"),
    "lr zero": (sgd_step_with(lr=0.0), ValueError, "lr must be finite and > 0"),
    "lr negative": (sgd_step_with(lr=-0.1), ValueError, "lr must be finite and > 0"),
    "lr NaN": (sgd_step_with(lr=float("nan")), ValueError, "lr must be finite and > 0"),
    "lr string": (sgd_step_with(lr="0.1"), TypeError, "lr must be a real number"),
    "scale inf": (sgd_step_with(scale=float("inf")), ValueError, "scale must be finite and > 0"),
    "batch_size zero": (train_epoch_with(batch_size=0), ValueError, "batch_size must be >= 1"),
    "batch_size float": (train_epoch_with(batch_size=4.0), TypeError, "batch_size must be an integer"),
    "n_threads zero": (lambda backend: backend.predict(X, W, b, n_threads=0), ValueError, "n_threads must be >= 1"),
    "Z int": (lambda backend: backend.softmax(np.ones((2, 3), dtype=np.int64)), TypeError, "Z must have dtype float32 or float64"),
    "Z empty": (lambda backend: backend.softmax(np.ones((0, 3))), ValueError, "Z must be a non-empty 2-D array"),
    "out wrong shape": (lambda backend: backend.softmax(W, out=np.empty((3, 3), np.float32)), ValueError, "out must have shape"),
    "out wrong dtype": (lambda backend: backend.softmax(W, out=np.empty_like(W, dtype=np.float64)), ValueError, "out must have shape"),
    "cross_entropy label = k": (lambda backend: backend.cross_entropy(W, np.array([0, 1, 2, 3])), ValueError, "labels in"),
    "predict wrong width": (lambda backend: backend.predict(X[:, :2], W, b), ValueError, "X has 2 features"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_a_clear_error(backend, case):
    call, error, message = BAD_CALLS[case]
    with pytest.raises(error, match=message):
        call(backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'torch'; expected 'auto' or one of numpy, numba, cython"):
        kernels.get_backend("torch")


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        kernels.set_num_threads(0)


@pytest.mark.parametrize(
    "layout",
    [np.asfortranarray, lambda array: np.repeat(array, 2, axis=-1)[..., ::2], lambda array: array.tolist()],
    ids=["fortran", "strided", "list"],
)
def test_read_only_inputs_in_any_layout_give_the_c_order_result(backend, layout):
    X, y, W, b = batch(np.float64)
    expected = backend.loss_and_grad(X, y, W, b)
    actual = backend.loss_and_grad(layout(X), layout(y), np.asfortranarray(W), b)
    for got, want in zip(actual, expected):
        assert_close(got, want, np.float64)
