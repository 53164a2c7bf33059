"""Problems the kernel tests make themselves (no network), and how close is close enough."""

import numpy as np

COMPILED_BACKENDS = ("numba", "cython")
DTYPES = (np.float32, np.float64)
INPUT_KINDS = ("float", "uint8")


def tolerance(dtype):
    """Relative tolerance of a backend against the reference: float64 1e-10, float32 1e-4."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-4


def assert_close(actual, expected, dtype):
    """Close to ``expected`` within :func:`tolerance`, relative to its largest magnitude.

    Entries near zero (in a gradient, say) are held to the same absolute error
    as the largest ones, since summation order moves them by that much.
    """
    expected = np.asarray(expected)
    rtol = tolerance(dtype)
    atol = rtol * max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def make_problem(n, d, k, dtype, input_kind, seed=0, logits="moderate"):
    """A classification batch ``(X, y, W, b, scale)`` with the given shapes and dtypes.

    Features look like MNIST's: about 80 % zeros, the rest uniform in [0, 1]
    (uint8 pixels with ``scale = 1/255``, or floats with ``scale = 1``), and the
    labels follow a hidden linear model, so that SGD on them converges instead
    of wandering. ``logits`` is ``"moderate"`` (small random weights), ``"large"``
    (integer weights and pixels in 0..3 with ``scale = 1``: logits of magnitude
    ~1000 that every backend computes exactly, whatever its summation order) or
    ``"ties"`` (zero weights: every class has the same logit).
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    pixel_max = 3 if logits == "large" else 255
    pixels = rng.integers(0, pixel_max + 1, size=(n, d), dtype=np.uint8)
    pixels[rng.random((n, d)) < 0.8] = 0
    scale = 1.0 if logits == "large" else 1 / 255
    y = np.argmax(pixels @ rng.standard_normal((d, k)), axis=1)
    if logits == "large":
        W = rng.integers(-40, 41, size=(d, k)).astype(dtype)
        b = rng.integers(-40, 41, size=k).astype(dtype)
    elif logits == "ties":
        W = np.zeros((d, k), dtype=dtype)
        b = np.zeros(k, dtype=dtype)
    else:
        W = (0.1 * rng.standard_normal((d, k))).astype(dtype)
        b = (0.1 * rng.standard_normal(k)).astype(dtype)
    if input_kind == "uint8":
        return pixels, y, W, b, scale
    return (pixels * dtype.type(scale)).astype(dtype), y, W, b, 1.0


#: The seven kernels of every backend: the keys of :func:`every_kernel`'s results.
KERNELS = ("softmax", "cross_entropy", "loss_and_grad", "sgd_step", "train_epoch", "predict_proba", "predict")


def every_kernel(backend, problem, batch_size=128, n_threads=None):
    """Each kernel of ``backend`` on ``problem`` ``(X, y, W, b, scale)``: ``{kernel: [its results]}``.

    ``sgd_step`` (on the first batch) and ``train_epoch`` (one epoch) train copies of the weights, whose
    values after training end their lists; the other kernels read the problem's own ``W`` and ``b``, and
    ``softmax`` and ``cross_entropy`` its logits ``X * scale @ W + b``.
    """
    X, y, W, b, scale = problem
    Z = (X * scale).astype(W.dtype) @ W + b
    W_step, b_step, W_epoch, b_epoch = W.copy(), b.copy(), W.copy(), b.copy()
    step = backend.sgd_step(X[:batch_size], y[:batch_size], W_step, b_step, 0.2, scale, n_threads=n_threads)
    epoch = backend.train_epoch(X, y, W_epoch, b_epoch, 0.2, batch_size, scale, n_threads=n_threads)
    return {
        "softmax": [backend.softmax(Z, n_threads=n_threads)],
        "cross_entropy": [backend.cross_entropy(Z, y, n_threads=n_threads)],
        "loss_and_grad": list(backend.loss_and_grad(X, y, W, b, scale, n_threads=n_threads)),
        "sgd_step": [*step, W_step, b_step],
        "train_epoch": [*epoch, W_epoch, b_epoch],
        "predict_proba": [backend.predict_proba(X, W, b, scale, n_threads=n_threads)],
        "predict": [backend.predict(X, W, b, scale, n_threads=n_threads)],
    }


def every_kernel_on(backend, cases, n, d, *, seed=0, batch_size=128, n_threads=None):
    """:func:`every_kernel` on ``make_problem(n, d, k, dtype, input_kind, seed)`` for each ``(dtype, input_kind,
    k)`` of ``cases``, flat, as an ``.npz`` holds it: ``{"<dtype name>/<input_kind>/k<k>/<kernel>/<i>": result}``."""
    flat = {}
    for dtype, input_kind, k in cases:
        results = every_kernel(backend, make_problem(n, d, k, dtype, input_kind, seed), batch_size, n_threads)
        for kernel, values in results.items():
            for i, value in enumerate(values):
                flat[f"{np.dtype(dtype).name}/{input_kind}/k{k}/{kernel}/{i}"] = value
    return flat
