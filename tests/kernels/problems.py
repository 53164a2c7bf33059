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


def training_options(X, W, b, batch_size, nesterov, seed=0):
    """Every training option at once for the problem ``(X, W, b)``: the keyword arguments of ``train_epoch``.

    ``alpha = 1e-3``, ``momentum = 0.9`` with a nonzero starting velocity (so that the first step already
    differs from plain SGD), row weights uniform in [0, 2) (some near 0), and one rate per batch, falling
    from 0.3 to 0.1. ``sgd_step`` takes the same with ``lr=rates[0]``.
    """
    rng = np.random.default_rng(seed + 1)
    n_batches = -(-X.shape[0] // batch_size)
    return dict(
        lr=np.linspace(0.3, 0.1, n_batches).astype(W.dtype), alpha=1e-3, momentum=0.9, nesterov=nesterov,
        velocity=((0.01 * rng.standard_normal(W.shape)).astype(W.dtype),
                  (0.01 * rng.standard_normal(b.shape)).astype(W.dtype)),
        sample_weight=rng.uniform(0, 2, X.shape[0]).astype(W.dtype),
    )


def options_for_step(options, rows):
    """:func:`training_options` for ``sgd_step`` on the rows ``rows`` (a slice): the first rate, their weights."""
    return options | dict(lr=options["lr"][0], sample_weight=options["sample_weight"][rows])


#: The keys of :func:`every_kernel`'s results: the seven kernels of every backend, and the three training kernels
#: with every option at once.
KERNELS = ("softmax", "cross_entropy", "loss_and_grad", "sgd_step", "train_epoch", "predict_proba", "predict",
           "loss_and_grad_options", "sgd_step_options", "train_epoch_options")


def every_kernel(backend, problem, batch_size=128, n_threads=None):
    """Each kernel of ``backend`` on ``problem`` ``(X, y, W, b, scale)``: ``{kernel: [its results]}``.

    ``sgd_step`` (on the first batch) and ``train_epoch`` (one epoch) train copies of the weights, whose
    values after training end their lists (and the velocities, with the options: :func:`training_options`,
    Nesterov's for the epoch); the other kernels read the problem's own ``W`` and ``b``, and ``softmax`` and
    ``cross_entropy`` its logits ``X * scale @ W + b``.
    """
    X, y, W, b, scale = problem
    Z = (X * scale).astype(W.dtype) @ W + b
    first = slice(0, batch_size)
    W_step, b_step, W_epoch, b_epoch = W.copy(), b.copy(), W.copy(), b.copy()
    step = backend.sgd_step(X[first], y[first], W_step, b_step, 0.2, scale, n_threads=n_threads)
    epoch = backend.train_epoch(X, y, W_epoch, b_epoch, 0.2, batch_size, scale, n_threads=n_threads)
    step_options = options_for_step(training_options(X, W, b, batch_size, nesterov=False), first)
    epoch_options = training_options(X, W, b, batch_size, nesterov=True)
    W_step_options, b_step_options, W_epoch_options, b_epoch_options = W.copy(), b.copy(), W.copy(), b.copy()
    step_with_options = backend.sgd_step(X[first], y[first], W_step_options, b_step_options, scale=scale,
                                         n_threads=n_threads, **step_options)
    epoch_with_options = backend.train_epoch(X, y, W_epoch_options, b_epoch_options, batch_size=batch_size,
                                             scale=scale, n_threads=n_threads, **epoch_options)
    return {
        "softmax": [backend.softmax(Z, n_threads=n_threads)],
        "cross_entropy": [backend.cross_entropy(Z, y, n_threads=n_threads)],
        "loss_and_grad": list(backend.loss_and_grad(X, y, W, b, scale, n_threads=n_threads)),
        "sgd_step": [*step, W_step, b_step],
        "train_epoch": [*epoch, W_epoch, b_epoch],
        "predict_proba": [backend.predict_proba(X, W, b, scale, n_threads=n_threads)],
        "predict": [backend.predict(X, W, b, scale, n_threads=n_threads)],
        "loss_and_grad_options": list(backend.loss_and_grad(X, y, W, b, scale, alpha=epoch_options["alpha"],
                                                            sample_weight=epoch_options["sample_weight"],
                                                            n_threads=n_threads)),
        "sgd_step_options": [*step_with_options, W_step_options, b_step_options, *step_options["velocity"]],
        "train_epoch_options": [*epoch_with_options, W_epoch_options, b_epoch_options, *epoch_options["velocity"]],
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
