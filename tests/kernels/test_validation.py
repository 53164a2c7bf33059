"""Bad input to any backend raises a specific exception that names the argument; never a crash."""

import subprocess
import sys

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
    "W no classes": (sgd_step_with(W=W[:, :0].copy(), b=b[:0].copy()), ValueError, "W must be a non-empty 2-D array"),
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
    "lr inf in float32": (sgd_step_with(lr=1e39), ValueError, r"lr must be between 1.18e-38 and 3.4e\+38 to be a float32"),
    "lr 0 in float32": (sgd_step_with(lr=1e-50), ValueError, "lr must be between .* to be a float32 .*got 1e-50"),
    "scale inf": (sgd_step_with(scale=float("inf")), ValueError, "scale must be finite and > 0"),
    "scale inf in float32": (sgd_step_with(scale=1e39), ValueError, "scale must be between .* to be a float32"),
    "batch_size zero": (train_epoch_with(batch_size=0), ValueError, "batch_size must be >= 1"),
    "batch_size float": (train_epoch_with(batch_size=4.0), TypeError, "batch_size must be an integer"),
    "n_threads zero": (lambda backend: backend.predict(X, W, b, n_threads=0), ValueError, "n_threads must be >= 1"),
    "n_threads negative": (lambda backend: backend.predict(X, W, b, n_threads=-2), ValueError, "n_threads must be >= 1"),
    "n_threads float": (lambda backend: backend.predict(X, W, b, n_threads=2.0), TypeError, "n_threads must be an integer"),
    "Z int": (lambda backend: backend.softmax(np.ones((2, 3), dtype=np.int64)), TypeError, "Z must have dtype float32 or float64"),
    "Z empty": (lambda backend: backend.softmax(np.ones((0, 3))), ValueError, "Z must be a non-empty 2-D array"),
    "out wrong shape": (lambda backend: backend.softmax(W, out=np.empty((3, 3), np.float32)), ValueError, "out must have shape"),
    "out wrong dtype": (lambda backend: backend.softmax(W, out=np.empty_like(W, dtype=np.float64)), ValueError, "out must have shape"),
    "cross_entropy label = k": (lambda backend: backend.cross_entropy(W, np.array([0, 1, 2, 3])), ValueError, "labels in"),
    "predict wrong width": (lambda backend: backend.predict(X[:, :2], W, b), ValueError, "X has 2 features"),
    "alpha negative": (sgd_step_with(alpha=-1e-4), ValueError, "alpha must be finite and >= 0"),
    "alpha NaN": (train_epoch_with(alpha=float("nan")), ValueError, "alpha must be finite and >= 0"),
    "alpha string": (sgd_step_with(alpha="0.1"), TypeError, "alpha must be a real number"),
    "alpha inf in float32": (sgd_step_with(alpha=1e39), ValueError, "alpha = 1e\\+39 overflows float32"),
    "loss_and_grad alpha negative": (lambda backend: backend.loss_and_grad(X, y, W, b, alpha=-1.0), ValueError,
                                     "alpha must be finite and >= 0"),
    "momentum 1": (sgd_step_with(momentum=1.0, velocity=(np.zeros_like(W), np.zeros_like(b))), ValueError,
                   "momentum must be < 1"),
    "momentum negative": (sgd_step_with(momentum=-0.5), ValueError, "momentum must be finite and >= 0"),
    "momentum without velocity": (train_epoch_with(momentum=0.9), ValueError, r"momentum=0.9 needs velocity=\(VW, vb\)"),
    "nesterov without momentum": (sgd_step_with(nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    "nesterov a string": (sgd_step_with(nesterov="yes"), TypeError, "nesterov must be a bool"),
    "velocity one array": (sgd_step_with(momentum=0.9, velocity=np.zeros_like(W)), TypeError,
                           r"velocity must be a pair \(VW, vb\)"),
    "velocity wrong shape": (sgd_step_with(momentum=0.9, velocity=(np.zeros((3, 4), np.float32), np.zeros_like(b))), ValueError,
                             r"velocity\[0\] must have shape \(4, 3\) and dtype float32 like W"),
    "velocity float64": (sgd_step_with(momentum=0.9, velocity=(np.zeros_like(W), np.zeros(3))), ValueError,
                         r"velocity\[1\] must have shape \(3,\) and dtype float32 like b"),
    "velocity read-only": (sgd_step_with(momentum=0.9, velocity=(read_only(W), np.zeros_like(b))), ValueError,
                           r"velocity\[0\] is written in place"),
    "velocity is W": (lambda backend: backend.sgd_step(X, y, W, b, 0.1, momentum=0.9, velocity=(W, np.zeros_like(b))),
                      ValueError,
                      r"velocity\[0\] must not share memory with W or b"),
    "velocity NaN": (train_epoch_with(momentum=0.9, velocity=(with_nan(W), np.zeros_like(b))), ValueError,
                     "velocity must be finite"),
    "sample_weight negative": (sgd_step_with(sample_weight=np.array([1, 1, -1, 1, 1, 1.0])), ValueError,
                               "sample_weight must be finite and >= 0"),
    "sample_weight NaN": (train_epoch_with(sample_weight=np.full(6, np.nan)), ValueError,
                          "sample_weight must be finite and >= 0"),
    "sample_weight inf in float32": (sgd_step_with(sample_weight=np.full(6, 1e39)), ValueError,
                                     "sample_weight must be finite and >= 0 \\(as a float32"),
    "sample_weight too short": (sgd_step_with(sample_weight=np.ones(5)), ValueError,
                                r"sample_weight must have shape \(6,\), one weight per row, got \(5,\)"),
    "sample_weight strings": (lambda backend: backend.loss_and_grad(X, y, W, b, sample_weight=["1"] * 6), TypeError,
                              "sample_weight must hold real numbers"),
    "lr array too short": (train_epoch_with(lr=np.full(1, 0.1)), ValueError,
                           r"lr must be a number or a 1-D array of one rate per batch, shape \(2,\), got shape \(1,\)"),
    "lr array 2-D": (train_epoch_with(lr=np.full((2, 1), 0.1)), ValueError, "one rate per batch"),
    "lr array with a zero": (train_epoch_with(lr=np.array([0.1, 0.0])), ValueError,
                             "lr must hold finite rates between .* got 0 for batch 1"),
    "lr array of strings": (train_epoch_with(lr=np.array(["0.1", "0.1"])), TypeError,
                            "lr must be a real number or an array of real numbers"),
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


# Run in a fresh interpreter, where a kernel that indexed outside its arrays would crash or corrupt the
# process instead of raising. Prints one line per call that did not raise the expected ValueError.
OUT_OF_RANGE_CALLS = """
import numpy as np
import softmax_fast.kernels as kernels
from softmax_fast.kernels import cython_kernels

X = np.ones((6, 4), np.float32)
W = np.zeros((4, 3), np.float32)
b = np.zeros(3, np.float32)
Z = np.zeros((6, 3), np.float32)


def expect_value_error(what, call, message):
    try:
        call()
    except ValueError as exc:
        if message not in str(exc):
            print(what, "raised", repr(exc))
    else:
        print(what, "did not raise")


for label in (-1, 3, 2**40, -2**62):
    y = np.array([0, 1, 2, label, 0, 1])
    for name in kernels.BACKENDS:
        backend = kernels.get_backend(name)
        calls = {
            "cross_entropy": lambda: backend.cross_entropy(Z, y),
            "loss_and_grad": lambda: backend.loss_and_grad(X, y, W, b),
            "sgd_step": lambda: backend.sgd_step(X, y, W, b, 0.1),
            "train_epoch": lambda: backend.train_epoch(X, y, W, b, 0.1, 4),
        }
        for method, call in calls.items():
            expect_value_error(f"{name}.{method} label {label}", call, "y must hold labels in [0, 3)")
    if label in (-1, 3):
        # The compiled module's own functions check the labels again, in C, behind the Python layer.
        y = y.astype(np.intp)
        ones, no_VW, no_vb = np.ones(len(y), W.dtype), np.empty((0, 0), W.dtype), np.empty(0, W.dtype)
        calls = {
            "cross_entropy": lambda: cython_kernels.cross_entropy(Z, y, 2),
            "loss_and_grad": lambda: cython_kernels.loss_and_grad(X, y, W, b, 1.0, 0.0, ones, 2),
            "sgd_step": lambda: cython_kernels.sgd_step(X, y, W, b, 0.1, 1.0, 0.0, 0.0, False, no_VW, no_vb, ones,
                                                        2),
            "train_epoch": lambda: cython_kernels.train_epoch(X, y, W, b, np.full(2, 0.1, W.dtype), 4, 1.0, 0.0, 0.0,
                                                              False, no_VW, no_vb, ones, 2),
        }
        for method, call in calls.items():
            expect_value_error(f"cython_kernels.{method} label {label}", call, "y holds a label outside")
if np.any(W != 0) or np.any(b != 0):
    print("a rejected call modified W or b")
print("done")
"""


def test_labels_out_of_range_raise_in_every_backend_and_leave_the_interpreter_running():
    result = subprocess.run([sys.executable, "-c", OUT_OF_RANGE_CALLS], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr


def test_a_huge_thread_count_is_lowered_to_the_cpus(compiled_backend):
    # Asking OpenMP for 10**5 threads crashes the process: the count is lowered to the CPUs this process may use.
    script = f"""
import numpy as np
import softmax_fast.kernels as kernels
backend = kernels.get_backend({compiled_backend.name!r})
X = np.ones((300, 4), np.float32)
W = np.arange(12, dtype=np.float32).reshape(4, 3)
b = np.zeros(3, np.float32)
assert np.array_equal(backend.predict_proba(X, W, b, n_threads=10**5), backend.predict_proba(X, W, b, n_threads=1))
assert np.array_equal(backend.predict(X, W, b, n_threads=2**40), backend.predict(X, W, b, n_threads=1))
print("done")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr


def test_loss_and_grad_on_checks_the_rows_once_and_the_shapes_of_each_later_pair(backend):
    X, y, W, b = batch(np.float64)
    weights = np.linspace(0, 2, len(y))
    loss_and_grad = backend.loss_and_grad_on(X, y.astype(np.int32), W, b, 0.5, alpha=0.1, sample_weight=weights)
    for got, want in zip(loss_and_grad(W + 1, b), backend.loss_and_grad(X, y, W + 1, b, 0.5, alpha=0.1,
                                                                         sample_weight=weights)):
        assert_close(got, want, np.float64)
    with pytest.raises(ValueError, match=r"W and b must be C-contiguous float64 arrays of shapes \(4, 3\) and "
                                         r"\(3,\), got float32 \(4, 3\)"):
        loss_and_grad(W.astype(np.float32), b)
    with pytest.raises(ValueError, match="C-contiguous"):
        loss_and_grad(np.asfortranarray(W), b)
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\)"):
        backend.loss_and_grad_on(X, y + 3, W, b)
