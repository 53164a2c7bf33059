"""What the benchmark modules share: sizes, data, FLOP counts, thread limits, the timing helper.

The quick mode (``SOFTMAX_FAST_BENCH_QUICK=1``, set by ``python -m benchmarks
--quick`` before any benchmark module is imported) swaps every size for a
small synthetic one: no real MNIST, seconds in total. The benchmark classes
read their parameters from the constants here, so the quick mode has the same
rows as a full run, only smaller.

Nothing here has a name asv would take for a benchmark (``time_``, ``track_``,
``peakmem_``, ``mem_``, ``timeraw_``).
"""

import functools
import importlib
import math
import os
import sys
import time

import numpy as np

QUICK = os.environ.get("SOFTMAX_FAST_BENCH_QUICK") == "1"

#: Every CPU this process may use: the "all threads" of every all-thread row.
ALL_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
#: The thread counts measured: one thread and all of them.
THREADS = sorted({1, ALL_THREADS})
#: Timed repeats after the warm-up call (each repeat is one sample).
REPEAT = 2 if QUICK else 5
#: A sample of a fast call repeats it until it takes about this long (asv's ``sample_time``).
SAMPLE_TIME = 0.002 if QUICK else 0.02

DTYPES = ["float32", "float64"]
BACKENDS = ["numpy", "numba", "cython"]
COMPILED_BACKENDS = ["numba", "cython"]
#: The features a backend trains on: float pixels pre-scaled to [0, 1] (scale=1.0) or raw uint8 (scale=1/255).
INPUTS = ["float", "uint8"]

# The seed experiment.
LR = 0.2
BATCH_SIZE = 128
N_FEATURES = 784
N_CLASSES = 10
SEED = 42
PIXEL_SCALE = 1 / 255

#: Rows of the synthetic stand-in for MNIST in quick mode.
QUICK_ROWS = 1024

#: (n, d, k) of the kernel benchmarks: MNIST's batch and a linear probe on 768-d embeddings, 1000 classes.
KERNEL_SHAPES = {
    "mnist": (128, 784, 10),
    "probe": (64, 192, 100) if QUICK else (256, 768, 1000),
}
#: Learning rate of the kernel benchmarks' ``sgd_step`` (Gaussian features; the weights keep training).
KERNEL_LR = 0.01

#: Square GEMM sizes; the peak is the best median GFLOP/s over them.
GEMM_SIZES = [256] if QUICK else [1024, 2048]
#: Bytes of the array that the streaming-read benchmark sums.
READ_BYTES = (32 if QUICK else 512) * 2**20


# -- FLOP counts ------------------------------------------------------------------------------------

#: FLOP of one training epoch over n rows: a forward ``X @ W`` (2ndk) and a backward ``X.T @ G`` (2ndk)
#: for every row; the softmax (O(nk)) and the per-batch update (2dk per batch) are left out.
#: Full MNIST: 2 * 2 * 60000 * 784 * 10 = 1.88 GFLOP.
EPOCH_FLOP_FORMULA = "4·n·d·k = 2·2·60000·784·10 = 1.88 GFLOP per MNIST epoch (forward X@W + backward X.T@G)"


def epoch_flops(n, d=N_FEATURES, k=N_CLASSES):
    """FLOP of one epoch over ``n`` rows (see ``EPOCH_FLOP_FORMULA``)."""
    return 4 * n * d * k


#: Per kernel: (the formula as text, FLOP as a function of n, d, k). exp and log count as one FLOP each.
KERNEL_FLOPS = {
    "softmax": ("5·n·k (max, subtract, exp, sum, divide per logit)", lambda n, d, k: 5 * n * k),
    "cross_entropy": ("4·n·k + 3·n (max, subtract, exp, sum per logit; log, add, pick per row)",
                      lambda n, d, k: 4 * n * k + 3 * n),
    "loss_and_grad": ("4·n·d·k (forward X@W + backward X.T@G; O(nk) softmax dropped)",
                      lambda n, d, k: 4 * n * d * k),
    "sgd_step": ("4·n·d·k + 2·d·k (as loss_and_grad, plus W -= lr·dW)",
                 lambda n, d, k: 4 * n * d * k + 2 * d * k),
}


def gemm_flops(size):
    """FLOP of a square ``size x size`` matrix product: 2·size³."""
    return 2 * size**3


# -- data -------------------------------------------------------------------------------------------

@functools.cache
def mnist_uint8():
    """The MNIST training set as ``(X uint8 (n, 784), y intp (n,))``; quick mode: synthetic, 1024 rows.

    Real MNIST comes from ``softmax_fast.datasets.load_mnist`` (its cache or its
    source chain). Labels are returned as ``np.intp`` so that no benchmark times
    the kernels' conversion of uint8 labels. Shared, and never written, yet left
    writeable (as here, ``mnist_scaled`` and ``probe_data``): Numba compiles a
    kernel once for each writeable flag of its arrays, and the smoke run in the
    test suite then loads the kernels the tests compiled instead of compiling
    its own (5 minutes of CI).
    """
    if QUICK:
        rng = np.random.default_rng(0)
        X = rng.integers(0, 256, (QUICK_ROWS, N_FEATURES), dtype=np.uint8)
        y = rng.integers(0, N_CLASSES, QUICK_ROWS)
    else:
        from softmax_fast.datasets import load_mnist

        (X, y), _ = load_mnist(report=lambda line: print(line, file=sys.stderr))
    return X, np.ascontiguousarray(y, dtype=np.intp)


def epoch_rows():
    """Rows of the training set the epoch benchmarks run over."""
    return len(mnist_uint8()[1])


def dataset_description():
    """What ``mnist_uint8`` holds, for the output."""
    X, _ = mnist_uint8()
    return (f"synthetic uint8 {X.shape[0]}x{X.shape[1]} (quick mode)" if QUICK
            else f"MNIST training set, {X.shape[0]}x{X.shape[1]} uint8")


@functools.cache
def mnist_scaled(dtype):
    """The pixels divided by 255, as a C-contiguous array of ``dtype`` (the seed's ``X / 255``)."""
    X, _ = mnist_uint8()
    return X.astype(dtype) / np.asarray(255, dtype=dtype)


def to_categorical(y, n_classes=N_CLASSES, dtype="float64"):
    """One-hot rows ``(n, n_classes)``, as the seed's ``to_categorical``."""
    Y = np.zeros((len(y), n_classes), dtype=dtype)
    Y[np.arange(len(y)), y] = 1
    return Y


@functools.cache
def mnist_onehot(dtype):
    """The labels one-hot, of ``dtype``."""
    Y = to_categorical(mnist_uint8()[1], dtype=dtype)
    Y.setflags(write=False)
    return Y


def seed_weights(dtype, d=N_FEATURES, k=N_CLASSES):
    """The seed's start: ``np.random.seed(42); W = np.random.randn(784, 10) * 0.01``, ``b = 0``, in ``dtype``."""
    np.random.seed(SEED)
    W = (np.random.randn(d, k) * 0.01).astype(dtype)
    return W, np.zeros(k, dtype=dtype)


def gaussian_problem(n, d, k, dtype, seed=0):
    """A dense problem ``(X, y, W, b, Z)``: standard normal features, uniform labels, small weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n).astype(np.intp)
    W = (rng.standard_normal((d, k)) * 0.01).astype(dtype)
    b = np.zeros(k, dtype=dtype)
    Z = X @ W + b
    return X, y, W, b, Z


# -- backends and threads ---------------------------------------------------------------------------

def require(module):
    """Import ``module`` or skip the benchmark (``NotImplementedError``) saying it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotImplementedError(f"{module.split('.')[0]} is not installed ({exc})") from None


#: Backends found unavailable after waiting once; later rows skip them at once.
_UNAVAILABLE = {}
#: How long to wait for a backend that is missing, e.g. while its extension is being rebuilt.
BACKEND_WAIT = 5.0 if QUICK else 30.0


def backend(name):
    """``softmax_fast.kernels.get_backend(name)``; skips the benchmark (``NotImplementedError``) if unavailable.

    A compiled extension can be missing for a moment while it is rebuilt, so a
    failed import is retried for ``BACKEND_WAIT`` seconds, once per process.
    """
    from softmax_fast import kernels

    if name in _UNAVAILABLE:
        raise NotImplementedError(_UNAVAILABLE[name])
    deadline = time.monotonic() + BACKEND_WAIT
    while True:
        try:
            return kernels.get_backend(name)
        except kernels.BackendUnavailableError as exc:
            if time.monotonic() >= deadline:
                _UNAVAILABLE[name] = str(exc)
                raise NotImplementedError(str(exc)) from exc
            # get_backend remembers a failed import; forget it so the next call imports again.
            getattr(kernels, "_loaded", {}).pop(name, None)
            importlib.invalidate_caches()
            time.sleep(1.0)


def limit_blas_threads(threads, user_api="blas"):
    """Limit BLAS (or, with ``user_api=None``, BLAS and OpenMP) to ``threads`` threads until
    ``.restore_original_limits()``.

    Returns a ``threadpoolctl`` limiter, or a no-op stand-in when threadpoolctl
    is missing and ``threads`` is all CPUs (the libraries' default). Raises
    ``NotImplementedError`` (skip) when threadpoolctl is missing and fewer
    threads are asked for.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if threads != ALL_THREADS:
            raise NotImplementedError("threadpoolctl is not installed: cannot limit BLAS threads") from None
        return _NoLimits()
    return threadpool_limits(limits=threads, user_api=user_api)


class _NoLimits:
    def restore_original_limits(self):
        pass


# -- timing -----------------------------------------------------------------------------------------

def _clock(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start


def measure(fn, *, repeat=REPEAT, number=0, warmup=1, sample_time=SAMPLE_TIME):
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` samples of ``number`` calls each.

    ``number=0`` calibrates it as asv does, so that a sample lasts about
    ``sample_time``: from the fastest of up to 3 more single calls (fewer once
    they add up to ``sample_time``), so that one stalled call cannot shrink it.
    Returns ``{"samples": seconds per call of each sample, "number", "warmup":
    seconds of each warm-up call}``.
    """
    warmup_times = [_clock(fn, 1) for _ in range(warmup)]
    if number <= 0:
        calls = [_clock(fn, 1)]
        while len(calls) < 3 and sum(calls) < sample_time:
            calls.append(_clock(fn, 1))
        number = max(1, min(10**6, math.ceil(sample_time / max(min(calls), 1e-9))))
    samples = [_clock(fn, number) / number for _ in range(repeat)]
    return {"samples": samples, "number": number, "warmup": warmup_times}


def statistics(samples):
    """Median, min, max and quartiles of ``samples``."""
    a = np.asarray(samples, dtype=float)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(median), "min": float(a.min()), "max": float(a.max()),
            "q1": float(q1), "q3": float(q3), "n": int(a.size)}


def proc_kilobytes_field(path, key):
    """The value of the ``key:`` line (in kB) of a /proc file such as /proc/meminfo, in bytes.

    ``None`` where the file does not exist (not Linux) or has no such line.
    """
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return None
    return None

