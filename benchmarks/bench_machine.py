"""The machine's own limits: NumPy GEMM GFLOP/s and streaming read bandwidth.

The runner takes the GEMM peak of each dtype (the best median GFLOP/s over
the sizes) on one thread and on all threads as the 100 % of every
"% of peak" column, so the kernels are judged against what this machine's
BLAS reaches in the same run.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import common


class Gemm:
    """``A @ B`` of two square matrices through NumPy's BLAS, on 1 thread and on all (threadpoolctl).

    FLOP: 2·size³ per product.
    """

    table = "limits"
    params = [common.DTYPES, common.THREADS, common.GEMM_SIZES]
    param_names = ["dtype", "threads", "size"]
    repeat = common.REPEAT
    number = 1

    def setup(self, dtype, threads, size):
        rng = np.random.default_rng(0)
        self.A = rng.random((size, size)).astype(dtype)
        self.B = rng.random((size, size)).astype(dtype)
        self.C = np.empty((size, size), dtype=dtype)
        self.limits = common.limit_blas_threads(threads)

    def teardown(self, dtype, threads, size):
        self.limits.restore_original_limits()

    def time_matmul(self, dtype, threads, size):
        np.matmul(self.A, self.B, out=self.C)

    def describe(self, method, dtype, threads, size):
        return {"label": f"GEMM {size}×{size}×{size}", "dtype": dtype, "threads": threads,
                "flops": common.gemm_flops(size)}


class ReadBandwidth:
    """Streaming read bandwidth: ``np.add.reduce`` over a float64 array of ``common.READ_BYTES`` (512 MiB).

    With more than one thread the array is split into equal contiguous chunks,
    each reduced by a thread of a pool (NumPy releases the GIL in the reduction).
    """

    table = "limits"
    params = [common.THREADS]
    param_names = ["threads"]
    repeat = common.REPEAT
    number = 1

    def setup(self, threads):
        self.array = np.ones(common.READ_BYTES // 8)
        self.chunks = np.array_split(self.array, threads)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def teardown(self, threads):
        if self.pool is not None:
            self.pool.shutdown()

    def time_read(self, threads):
        if self.pool is None:
            np.add.reduce(self.array)
        else:
            sum(self.pool.map(np.add.reduce, self.chunks))

    def describe(self, method, threads):
        return {"label": f"read {common.READ_BYTES // 2**20} MiB (np.add.reduce)", "dtype": "float64",
                "threads": threads, "bytes": common.READ_BYTES}
