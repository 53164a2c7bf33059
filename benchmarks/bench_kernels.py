"""Each kernel alone: ``softmax``, ``cross_entropy``, ``loss_and_grad``, ``sgd_step``.

Two shapes (n, d, k): MNIST's batch (128, 784, 10) and a linear probe
(256, 768, 1000: 768-d embeddings, 1000 classes), with dense standard-normal
features; every backend, float32 and float64, on 1 thread and on all. FLOP
formulas: ``common.KERNEL_FLOPS``. ``sgd_step`` updates the weights in place,
so every call trains them a little further (lr 0.01).
"""

import numpy as np

from . import common


class Kernels:
    """One call of a kernel on one batch; the softmax writes into a preallocated ``out``."""

    table = "kernels"
    params = [list(common.KERNEL_SHAPES), common.BACKENDS, common.DTYPES, common.THREADS]
    param_names = ["shape", "backend", "dtype", "threads"]
    repeat = common.REPEAT

    def setup(self, shape, backend, dtype, threads):
        self.backend = common.backend(backend)
        self.X, self.y, self.W, self.b, self.Z = common.gaussian_problem(*common.KERNEL_SHAPES[shape], dtype)
        self.out = np.empty_like(self.Z)
        # The reference's matrix products go through BLAS.
        self.limits = common.limit_blas_threads(threads) if backend == "numpy" else None

    def teardown(self, shape, backend, dtype, threads):
        if self.limits is not None:
            self.limits.restore_original_limits()

    def time_softmax(self, shape, backend, dtype, threads):
        self.backend.softmax(self.Z, self.out, n_threads=threads)

    def time_cross_entropy(self, shape, backend, dtype, threads):
        self.backend.cross_entropy(self.Z, self.y, n_threads=threads)

    def time_loss_and_grad(self, shape, backend, dtype, threads):
        self.backend.loss_and_grad(self.X, self.y, self.W, self.b, n_threads=threads)

    def time_sgd_step(self, shape, backend, dtype, threads):
        self.backend.sgd_step(self.X, self.y, self.W, self.b, common.KERNEL_LR, n_threads=threads)

    def describe(self, method, shape, backend, dtype, threads):
        kernel = method.removeprefix("time_")
        n, d, k = common.KERNEL_SHAPES[shape]
        return {"label": kernel, "kernel": kernel, "shape": shape, "nxdxk": f"{n}×{d}×{k}", "backend": backend,
                "dtype": dtype, "threads": threads, "flops": common.KERNEL_FLOPS[kernel][1](n, d, k)}
