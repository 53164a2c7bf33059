"""One training epoch over the MNIST training set (60000 rows, batches of 128, lr 0.2).

* ``SeedLoop``: the seed's NumPy loop exactly as the seed writes it (float64),
  and the same loop in float32: the baselines of the speed-ups;
* ``BackendEpoch``: ``get_backend(name).train_epoch`` for the NumPy reference
  and the compiled backends, float32 and float64, on float pixels pre-scaled
  to [0, 1] or on raw uint8 pixels (scale=1/255), on 1 thread and on all.
* ``OptionsEpoch``: the compiled backends' epoch with the training options
  (``alpha=1e-4``, ``momentum=0.9``, row weights), on all threads: its cost
  over the plain epoch of the same backend, dtype and input.

Every call trains one more epoch from where the last one left off (the weights
start as the seed's). FLOP per epoch: see ``common.EPOCH_FLOP_FORMULA``.
"""

import numpy as np

from . import common


def seed_loop_epoch(X, Y, W, b, lr=common.LR, batch_size=common.BATCH_SIZE):
    """One epoch of the seed's loop, in place; ``X`` the pixels / 255, ``Y`` one-hot, both of ``W``'s dtype.

    Statement for statement the seed's: it divides every batch's gradient by
    the nominal batch size, the short last batch's too.
    """
    n = X.shape[0]
    for i in range(0, n, batch_size):
        X_b = X[i:i + batch_size]
        Y_b = Y[i:i + batch_size]
        z = X_b @ W + b
        e = np.exp(z - z.max(axis=1, keepdims=True))
        P = e / e.sum(axis=1, keepdims=True)
        grad = (P - Y_b) / batch_size
        W -= lr * X_b.T @ grad
        b -= lr * grad.sum(axis=0)


class SeedLoop:
    """The seed's NumPy training loop over one epoch: float64 as written, and float32.

    BLAS runs on ``threads`` threads (threadpoolctl); the seed as written runs
    float64 on all of them, the baseline of every "× seed" column.
    """

    table = "epochs"
    params = [common.DTYPES[::-1], common.THREADS]
    param_names = ["dtype", "threads"]
    repeat = common.REPEAT
    number = 1
    timeout = 600

    def setup(self, dtype, threads):
        self.X = common.mnist_scaled(dtype)
        self.Y = common.mnist_onehot(dtype)
        self.W, self.b = common.seed_weights(dtype)
        self.limits = common.limit_blas_threads(threads)

    def teardown(self, dtype, threads):
        self.limits.restore_original_limits()

    def time_epoch(self, dtype, threads):
        seed_loop_epoch(self.X, self.Y, self.W, self.b)

    def describe(self, method, dtype, threads):
        label = "seed loop (NumPy, as written)" if dtype == "float64" else "seed loop in float32 (NumPy)"
        return {"label": label, "dtype": dtype, "input": "float", "threads": threads,
                "flops": common.epoch_flops(common.epoch_rows()), "epoch": True,
                "seed": dtype == "float64" and threads == common.ALL_THREADS}


class BackendEpoch:
    """``backend.train_epoch(X, y, W, b, 0.2, 128, scale, n_threads=threads)`` over the training set.

    ``input="float"``: X pre-scaled to [0, 1] in the weights' dtype, scale=1.0;
    ``input="uint8"``: the raw pixels, scale=1/255. The NumPy reference runs
    its BLAS calls on ``threads`` threads (threadpoolctl).
    """

    table = "epochs"
    params = [common.BACKENDS, common.DTYPES, common.INPUTS, common.THREADS]
    param_names = ["backend", "dtype", "input", "threads"]
    repeat = common.REPEAT
    number = 1
    timeout = 600

    def setup(self, backend, dtype, input, threads):
        self.backend = common.backend(backend)
        X_uint8, self.y = common.mnist_uint8()
        if input == "uint8":
            self.X, self.scale = X_uint8, common.PIXEL_SCALE
        else:
            self.X, self.scale = common.mnist_scaled(dtype), 1.0
        self.W, self.b = common.seed_weights(dtype)
        self.limits = common.limit_blas_threads(threads) if backend == "numpy" else None

    def teardown(self, backend, dtype, input, threads):
        if self.limits is not None:
            self.limits.restore_original_limits()

    def time_epoch(self, backend, dtype, input, threads):
        self.backend.train_epoch(self.X, self.y, self.W, self.b, common.LR, common.BATCH_SIZE, self.scale,
                                 n_threads=threads)

    def describe(self, method, backend, dtype, input, threads):
        label = "NumPy reference backend" if backend == "numpy" else f"{backend} backend"
        return {"label": label, "backend": backend, "dtype": dtype, "input": input, "threads": threads,
                "flops": common.epoch_flops(common.epoch_rows()), "epoch": True}


class OptionsEpoch(BackendEpoch):
    """``train_epoch`` as in :class:`BackendEpoch`, with ``alpha=1e-4``, ``momentum=0.9`` and ``sample_weight``.

    The row weights are seeded draws from [0.5, 1.5); the velocity starts at
    zero and goes on from call to call like the weights. The penalty and the
    momentum are fused into the pass that updates the weights, so the row's
    time over :class:`BackendEpoch`'s is what they cost.
    """

    params = [common.COMPILED_BACKENDS, common.DTYPES, common.INPUTS, [common.ALL_THREADS]]

    def setup(self, backend, dtype, input, threads):
        super().setup(backend, dtype, input, threads)
        self.velocity = (np.zeros_like(self.W), np.zeros_like(self.b))
        self.sample_weight = np.random.default_rng(0).uniform(0.5, 1.5, len(self.y))

    def time_epoch(self, backend, dtype, input, threads):
        self.backend.train_epoch(self.X, self.y, self.W, self.b, common.LR, common.BATCH_SIZE, self.scale,
                                 alpha=OPTIONS_ALPHA, momentum=OPTIONS_MOMENTUM, velocity=self.velocity,
                                 sample_weight=self.sample_weight, n_threads=threads)

    def describe(self, method, backend, dtype, input, threads):
        return super().describe(method, backend, dtype, input, threads) | {
            "label": f"{backend} backend, alpha {OPTIONS_ALPHA:g}, momentum {OPTIONS_MOMENTUM:g}, sample_weight",
            "options": True}


OPTIONS_ALPHA = 1e-4
OPTIONS_MOMENTUM = 0.9
