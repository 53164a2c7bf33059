"""The child process of ``benchmarks.compare_commits``, run with one tree's ``softmax_fast`` first on the path.

It imports nothing else of the repository (the tree under test may be an older commit), and answers on
stdout in JSON:

- ``weights OUT.npz``: trains the seed experiment (``SoftmaxRegression()``'s defaults on MNIST) for every
  backend, dtype and input kind, and saves ``<backend>/<dtype>/<input>/<coef|intercept|train_loss|
  train_accuracy>`` to ``OUT.npz``; prints the names saved.
- ``epochs REPEAT``: for every compiled backend, dtype, input kind and thread count (1 and all CPUs), one
  warm-up MNIST epoch and ``REPEAT`` timed ones from the seed's initial weights, with ``train_epoch``;
  prints ``{"<backend>/<dtype>/<input>/<threads>": [seconds per epoch]}``.
"""

import json
import sys
import time

import numpy as np

from softmax_fast import SoftmaxRegression, kernels
from softmax_fast.datasets import load_mnist

DTYPES = ("float32", "float64")
# uint8 pixels (scaled by 1/255 in the kernels), or float pixels divided by 255 beforehand.
INPUTS = ("uint8", "float")


def mnist_training_set():
    (X, y), _ = load_mnist(report=lambda line: print(line, file=sys.stderr))
    return X, y.astype(np.intp)


def features(X, dtype, kind):
    return X if kind == "uint8" else (X / 255).astype(dtype)


def weights(out):
    X, y = mnist_training_set()
    arrays = {}
    for backend in kernels.BACKENDS:
        for dtype in DTYPES:
            for kind in INPUTS:
                model = SoftmaxRegression(backend=backend, dtype=dtype).fit(features(X, dtype, kind), y)
                case = f"{backend}/{dtype}/{kind}"
                arrays[f"{case}/coef"] = model.coef_
                arrays[f"{case}/intercept"] = model.intercept_
                for key in ("train_loss", "train_accuracy"):
                    arrays[f"{case}/{key}"] = np.array([record[key] for record in model.history_])
    np.savez(out, **arrays)
    return sorted(arrays)


def epochs(repeat):
    X, y = mnist_training_set()
    samples = {}
    for backend_name in ("numba", "cython"):
        backend = kernels.get_backend(backend_name)
        for dtype in DTYPES:
            for kind in INPUTS:
                X_kind, scale = features(X, dtype, kind), (1 / 255 if kind == "uint8" else 1.0)
                for n_threads in sorted({1, kernels.get_num_threads()}):
                    W = (np.random.RandomState(42).randn(784, 10) * 0.01).astype(dtype)
                    b = np.zeros(10, dtype=dtype)
                    seconds = []
                    for _ in range(repeat + 1):
                        started = time.perf_counter()
                        backend.train_epoch(X_kind, y, W, b, 0.2, 128, scale, n_threads=n_threads)
                        seconds.append(time.perf_counter() - started)
                    samples[f"{backend_name}/{dtype}/{kind}/{n_threads}"] = seconds[1:]
    return samples


if __name__ == "__main__":
    command, argument = sys.argv[1:3]
    print(json.dumps(weights(argument) if command == "weights" else epochs(int(argument))))
