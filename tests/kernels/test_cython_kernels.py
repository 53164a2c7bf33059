"""The Cython extension: its exported C API, and what happens when it is missing or the compiler has no OpenMP."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import ctypes

import numba
import numpy as np
import pytest
from numba.extending import get_cython_function_address

import softmax_fast.kernels as kernels
import softmax_fast.kernels.cython_kernels as cython_kernels
from problems import INPUT_KINDS, assert_close, every_kernel_on, make_problem

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def run_python(code, **kwargs):
    """Run ``code`` in a fresh interpreter; returns the completed process (raises if it failed)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, **kwargs
    )


# The C API's train_epoch: (X, y, n, d, k, W, b, lr, batch_size, scale, n_threads, mean_loss, accuracy) -> status.
C_TYPES = {np.float32: ctypes.c_float, np.float64: ctypes.c_double}


def train_epoch_prototype(weight_type):
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t
    return ctypes.CFUNCTYPE(ctypes.c_int, pointer, pointer, size, size, size, pointer, pointer, weight_type, size,
                            weight_type, ctypes.c_int, ctypes.POINTER(ctypes.c_double),
                            ctypes.POINTER(ctypes.c_double))


def train_epoch_ex_prototype(weight_type):
    """``train_epoch_ex_*``: (X, y, n, d, k, W, b, lr (n_batches,), batch_size, scale, options, n_threads,
    mean_loss, accuracy) -> status."""
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t
    return ctypes.CFUNCTYPE(ctypes.c_int, pointer, pointer, size, size, size, pointer, pointer, pointer, size,
                            weight_type, pointer, ctypes.c_int, ctypes.POINTER(ctypes.c_double),
                            ctypes.POINTER(ctypes.c_double))


def options_struct(weight_type):
    """The C API's ``sf_options_f32`` or ``sf_options_f64`` as a ctypes structure."""

    class Options(ctypes.Structure):
        _fields_ = [("alpha", weight_type), ("momentum", weight_type), ("nesterov", ctypes.c_int),
                    ("velocity_W", ctypes.c_void_p), ("velocity_b", ctypes.c_void_p),
                    ("sample_weight", ctypes.c_void_p)]

    return Options


def every_option(W):
    """The every-option tests' ``(rates (5,), (VW, vb), sample_weight (300,))`` of ``W``'s dtype: falling rates,
    random velocities and row weights."""
    rng = np.random.default_rng(1)
    sample_weight = rng.uniform(0, 2, 300).astype(W.dtype)
    velocity = (0.01 * rng.standard_normal(W.shape)).astype(W.dtype), np.zeros(W.shape[1], W.dtype)
    return np.linspace(0.3, 0.1, 5).astype(W.dtype), velocity, sample_weight


def api_name(kernel, dtype, input_kind):
    return f"{kernel}_{'f32' if np.dtype(dtype) == np.float32 else 'f64'}{'_u8' if input_kind == 'uint8' else ''}"


#: The index types of the CSR kernels of the C API.
INDEX_TYPES = (np.int32, np.int64)


def csr_api_name(kernel, dtype, index_dtype):
    return f"{kernel}_{'f32' if np.dtype(dtype) == np.float32 else 'f64'}_{'i32' if index_dtype == np.int32 else 'i64'}"


def test_every_c_api_function_is_exported():
    expected = {f"{kernel}_{suffix}" for kernel in ("softmax", "cross_entropy") for suffix in ("f32", "f64")}
    expected |= {api_name(kernel, dtype, kind) for kernel in
                 ("loss_and_grad", "sgd_step", "train_epoch", "predict_proba", "predict", "loss_and_grad_ex",
                  "sgd_step_ex", "train_epoch_ex")
                 for dtype in (np.float32, np.float64) for kind in ("float", "uint8")}
    expected |= {csr_api_name(kernel, dtype, index_dtype) for kernel in
                 ("loss_and_grad_csr", "sgd_step_csr", "train_epoch_csr", "predict_proba_csr", "predict_csr")
                 for dtype in (np.float32, np.float64) for index_dtype in INDEX_TYPES}
    assert set(cython_kernels.__pyx_capi__) == expected


def train_epoch_csr_prototype(weight_type):
    """``train_epoch_csr_*``: (data, indices, indptr, y, n, d, k, W, b, lr (n_batches,), batch_size, scale,
    options, n_threads, mean_loss, accuracy) -> status."""
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t
    return ctypes.CFUNCTYPE(ctypes.c_int, pointer, pointer, pointer, pointer, size, size, size, pointer, pointer,
                            pointer, size, weight_type, pointer, ctypes.c_int, ctypes.POINTER(ctypes.c_double),
                            ctypes.POINTER(ctypes.c_double))


def train_epoch_csr_through_ctypes(X, y, W, b, rates, batch_size, options, n_threads):
    """``train_epoch_csr_*`` for ``X``'s dtypes, by address, on ``W`` and ``b`` in place: ``(status, mean_loss,
    accuracy)``."""
    dtype = W.dtype.type
    function = train_epoch_csr_prototype(C_TYPES[dtype])(get_cython_function_address(
        "softmax_fast.kernels.cython_kernels", csr_api_name("train_epoch_csr", dtype, X.indices.dtype.type)))
    mean_loss, accuracy = ctypes.c_double(), ctypes.c_double()
    status = function(X.data.ctypes.data, X.indices.ctypes.data, X.indptr.ctypes.data, y.ctypes.data, X.shape[0],
                      X.shape[1], W.shape[1], W.ctypes.data, b.ctypes.data, rates.ctypes.data, batch_size, 1.0,
                      options, n_threads, ctypes.byref(mean_loss), ctypes.byref(accuracy))
    return status, mean_loss.value, accuracy.value


@pytest.mark.parametrize("index_dtype", INDEX_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("k", [5, 19])
def test_train_epoch_csr_with_every_option_through_ctypes_equals_the_python_api(dtype, index_dtype, k):
    sparse = pytest.importorskip("scipy.sparse")
    dense, y, W, b, _ = make_problem(300, 37, k, dtype, "float")
    X = sparse.csr_array(dense)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    rates, (VW, vb), sample_weight = every_option(W)
    W_c, b_c, VW_c, vb_c = W.copy(), b.copy(), VW.copy(), vb.copy()
    options = options_struct(C_TYPES[dtype])(1e-3, 0.9, 1, VW_c.ctypes.data, vb_c.ctypes.data,
                                             sample_weight.ctypes.data)
    status, *result = train_epoch_csr_through_ctypes(X, y, W_c, b_c, rates, 64, ctypes.byref(options), 2)
    assert status == 0
    expected = kernels.get_backend("cython").train_epoch(
        X, y, W, b, rates, 64, alpha=1e-3, momentum=0.9, nesterov=True, velocity=(VW, vb),
        sample_weight=sample_weight, n_threads=2)
    for actual, value in [(W_c, W), (b_c, b), (VW_c, VW), (vb_c, vb)]:
        np.testing.assert_array_equal(actual, value)
    assert tuple(result) == expected


@pytest.mark.parametrize("change", ["index_too_large", "negative_index", "indptr_decreases", "indptr_starts_at_1"])
def test_c_api_rejects_a_malformed_csr_matrix_before_writing(change):
    sparse = pytest.importorskip("scipy.sparse")
    dense, y, W, b, _ = make_problem(20, 8, 5, np.float64, "float")
    X = sparse.csr_array(dense)
    if change == "index_too_large":
        X.indices[3] = 8
    elif change == "negative_index":
        X.indices[3] = -1
    elif change == "indptr_decreases":
        X.indptr[5] = X.indptr[6] + 1
    else:
        X.indptr[0] = 1
    W_before, b_before = W.copy(), b.copy()
    status, _, _ = train_epoch_csr_through_ctypes(X, y, W, b, np.full(2, 0.2), 10, None, 1)
    assert status == -4
    np.testing.assert_array_equal(W, W_before)
    np.testing.assert_array_equal(b, b_before)


def test_train_epoch_by_address_through_ctypes_equals_the_python_api(dtype, input_kind):
    X, y, W, b, scale = make_problem(300, 37, 5, dtype, input_kind)
    address = get_cython_function_address("softmax_fast.kernels.cython_kernels", api_name("train_epoch", dtype,
                                                                                           input_kind))
    train_epoch = train_epoch_prototype(C_TYPES[dtype])(address)
    W_c, b_c = W.copy(), b.copy()
    mean_loss, accuracy = ctypes.c_double(), ctypes.c_double()
    status = train_epoch(X.ctypes.data, y.ctypes.data, 300, 37, 5, W_c.ctypes.data, b_c.ctypes.data, 0.2, 64,
                         scale, 2, ctypes.byref(mean_loss), ctypes.byref(accuracy))
    assert status == 0
    loss, expected_accuracy = kernels.get_backend("cython").train_epoch(X, y, W, b, 0.2, 64, scale, n_threads=2)
    np.testing.assert_array_equal(W_c, W)
    np.testing.assert_array_equal(b_c, b)
    assert (mean_loss.value, accuracy.value) == (loss, expected_accuracy)


@pytest.mark.parametrize("k", [5, 19])  # the narrow loops and the GEMM loops
def test_train_epoch_ex_with_every_option_through_ctypes_equals_the_python_api(dtype, input_kind, k):
    X, y, W, b, scale = make_problem(300, 37, k, dtype, input_kind)
    rates, (VW, vb), sample_weight = every_option(W)
    W_c, b_c, VW_c, vb_c = W.copy(), b.copy(), VW.copy(), vb.copy()
    options = options_struct(C_TYPES[dtype])(1e-3, 0.9, 1, VW_c.ctypes.data, vb_c.ctypes.data,
                                             sample_weight.ctypes.data)
    train_epoch_ex = train_epoch_ex_prototype(C_TYPES[dtype])(get_cython_function_address(
        "softmax_fast.kernels.cython_kernels", api_name("train_epoch_ex", dtype, input_kind)))
    mean_loss, accuracy = ctypes.c_double(), ctypes.c_double()
    status = train_epoch_ex(X.ctypes.data, y.ctypes.data, 300, 37, k, W_c.ctypes.data, b_c.ctypes.data,
                            rates.ctypes.data, 64, scale, ctypes.byref(options), 2, ctypes.byref(mean_loss),
                            ctypes.byref(accuracy))
    assert status == 0
    expected = kernels.get_backend("cython").train_epoch(
        X, y, W, b, rates, 64, scale, alpha=1e-3, momentum=0.9, nesterov=True, velocity=(VW, vb),
        sample_weight=sample_weight, n_threads=2)
    for actual, value in [(W_c, W), (b_c, b), (VW_c, VW), (vb_c, vb)]:
        np.testing.assert_array_equal(actual, value)
    assert (mean_loss.value, accuracy.value) == expected


@pytest.mark.parametrize("alpha, momentum, nesterov, velocity", [(-1e-3, 0, 0, True), (0, 1, 0, True),
                                                                 (0, -0.5, 0, True), (0, 0.9, 0, False),
                                                                 (0, 0, 1, True)],
                         ids=["negative_alpha", "momentum_1", "negative_momentum", "no_velocity",
                              "nesterov_without_momentum"])
def test_c_api_rejects_invalid_options_before_writing(alpha, momentum, nesterov, velocity):
    X, y, W, b, _ = make_problem(20, 8, 5, np.float64, "float")
    VW, vb = np.zeros_like(W), np.zeros_like(b)
    addresses = (VW.ctypes.data, vb.ctypes.data) if velocity else (None, None)
    options = options_struct(ctypes.c_double)(alpha, momentum, nesterov, *addresses, None)
    train_epoch_ex = train_epoch_ex_prototype(ctypes.c_double)(
        get_cython_function_address("softmax_fast.kernels.cython_kernels", "train_epoch_ex_f64"))
    W_before, b_before, rates = W.copy(), b.copy(), np.full(2, 0.2)
    status = train_epoch_ex(X.ctypes.data, y.ctypes.data, 20, 8, 5, W.ctypes.data, b.ctypes.data,
                            rates.ctypes.data, 10, 1.0, ctypes.byref(options), 1, ctypes.byref(ctypes.c_double()),
                            ctypes.byref(ctypes.c_double()))
    assert status == -3
    for array, before in [(W, W_before), (b, b_before), (VW, 0), (vb, 0)]:
        np.testing.assert_array_equal(array, before)


@pytest.mark.parametrize("labels, status", [([0, 5, 1], -2), ([0, -1, 1], -2)], ids=["too_large", "negative"])
def test_c_api_rejects_a_label_out_of_range_before_writing(labels, status):
    X, _, W, b, _ = make_problem(3, 8, 5, np.float64, "float")
    y = np.array(labels, dtype=np.intp)
    train_epoch = train_epoch_prototype(ctypes.c_double)(
        get_cython_function_address("softmax_fast.kernels.cython_kernels", "train_epoch_f64"))
    W_before = W.copy()
    result = train_epoch(X.ctypes.data, y.ctypes.data, 3, 8, 5, W.ctypes.data, b.ctypes.data, 0.2, 2, 1.0, 1,
                         ctypes.byref(ctypes.c_double()), ctypes.byref(ctypes.c_double()))
    assert result == status
    np.testing.assert_array_equal(W, W_before)


def test_predict_by_address_from_a_numba_function(dtype):
    X, _, W, b, _ = make_problem(200, 20, 4, dtype, "float")
    # Numba calls a ctypes function of known address and prototype from jitted code.
    address = get_cython_function_address("softmax_fast.kernels.cython_kernels", api_name("predict", dtype, "float"))
    predict_at = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_ssize_t,
                                  ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_void_p, C_TYPES[dtype], ctypes.c_int,
                                  ctypes.c_void_p)(address)

    @numba.njit
    def labels_of(X, W, b, labels):
        return predict_at(X.ctypes, X.shape[0], X.shape[1], W.shape[1], W.ctypes, b.ctypes, W.dtype.type(1), 1,
                          labels.ctypes)

    labels = np.empty(200, dtype=np.intp)
    assert labels_of(X, W, b, labels) == 0
    np.testing.assert_array_equal(labels, kernels.get_backend("numpy").predict(X, W, b))


def test_extension_is_built_with_openmp_here():
    assert cython_kernels.OPENMP_ENABLED


def test_missing_extension_leaves_the_package_importable():
    # A None entry in sys.modules makes the import raise ImportError, as a failed build would.
    result = run_python(
        """
        import sys
        sys.modules["softmax_fast.kernels.cython_kernels"] = None
        import softmax_fast.kernels as kernels
        print(kernels.available_backends())
        try:
            kernels.get_backend("cython")
        except kernels.BackendUnavailableError as exc:
            print(exc)
        """
    )
    backends, reason = result.stdout.splitlines()
    assert backends == "['numpy', 'numba']"
    assert reason.startswith("the 'cython' backend is unavailable: ModuleNotFoundError")
    assert "softmax_fast.kernels.cython_kernels" in reason


needs_source_tree = pytest.mark.skipif(not (SOURCE_ROOT / "setup.py").exists(), reason="needs the source tree's setup.py")


def build_copy(tmp_path, env):
    """A copy of the package in ``tmp_path / "build"``, its extension built with ``env``; returns its directory."""
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(SOURCE_ROOT / "setup.py", build)
    shutil.copytree(
        SOURCE_ROOT / "softmax_fast", build / "softmax_fast", ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__")
    )
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build, env=os.environ | env, capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return build, result


# The cases of the rebuilt extensions: both dtypes and input kinds, the narrow loops (10 classes) and the GEMM
# loops (19), on 300 rows of 531 features (which end in a short vector).
BUILD_CASES = [(dtype, kind, k) for dtype in ("float32", "float64") for kind in INPUT_KINDS for k in (10, 19)]
BUILD_ROWS, BUILD_FEATURES = 300, 531


def every_kernel_in(build, tmp_path, check):
    """:func:`every_kernel_on` the ``BUILD_CASES`` with the copy's cython backend, in a fresh interpreter that
    first runs ``check`` (code)."""
    out = tmp_path / "results.npz"
    run_python(
        f"""
        import sys
        import numpy as np
        import softmax_fast.kernels as kernels
        from softmax_fast.kernels import cython_kernels
        assert cython_kernels.__file__.startswith({str(build)!r}), cython_kernels.__file__
        {check}
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from problems import every_kernel_on
        results = every_kernel_on(kernels.get_backend("cython"), {BUILD_CASES!r}, {BUILD_ROWS}, {BUILD_FEATURES})
        np.savez({str(out)!r}, **results)
        """,
        cwd=build,
        env=os.environ | {"PYTHONPATH": str(build)},
    )
    with np.load(out) as saved:
        return dict(saved)


# The plain loops (-DSF_VECTOR_EXTENSIONS=0: what compilers other than GCC and clang get) compile in a tenth of the
# vector loops' time: the rebuilds below use them.
PLAIN_LOOPS = {"CFLAGS": "-DSF_VECTOR_EXTENSIONS=0"}


@pytest.fixture(scope="module")
def plain_loops_with_openmp(tmp_path_factory):
    """``every_kernel_in`` a copy built with the plain loops and OpenMP."""
    tmp_path = tmp_path_factory.mktemp("plain")
    build, _ = build_copy(tmp_path, PLAIN_LOOPS)
    return every_kernel_in(build, tmp_path, "assert cython_kernels.OPENMP_ENABLED")


@pytest.mark.slow
@needs_source_tree
def test_plain_loops_without_vector_extensions_match_the_reference(plain_loops_with_openmp):
    plain = plain_loops_with_openmp
    expected = every_kernel_on(kernels.get_backend("numpy"), BUILD_CASES, BUILD_ROWS, BUILD_FEATURES)
    assert plain.keys() == expected.keys()
    for name, value in expected.items():
        if name.endswith(("/predict/0", "/sgd_step/1", "/train_epoch/1")):
            np.testing.assert_array_equal(plain[name], value, err_msg=name)  # labels and counts
        else:
            assert_close(plain[name], value, np.float32 if name.startswith("float32") else np.float64)


@pytest.mark.slow
@needs_source_tree
def test_compiler_without_openmp_gives_a_serial_build_with_the_same_results(tmp_path, plain_loops_with_openmp):
    # A compiler driver that rejects -fopenmp, as Apple clang without libomp does.
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text('#!/bin/sh\nfor arg; do [ "$arg" = -fopenmp ] && exit 1; done\nexec gcc "$@"\n')
    compiler.chmod(0o755)
    build, result = build_copy(tmp_path, PLAIN_LOOPS | {"CC": str(compiler)})
    assert "building the Cython kernels WITHOUT OpenMP" in result.stderr
    serial = every_kernel_in(build, tmp_path, "assert not cython_kernels.OPENMP_ENABLED")
    assert serial.keys() == plain_loops_with_openmp.keys()
    for name, value in plain_loops_with_openmp.items():
        np.testing.assert_array_equal(serial[name], value, err_msg=name)
