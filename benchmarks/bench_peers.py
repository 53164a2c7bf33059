"""Peers on the same data, where installed (otherwise skipped with the reason):

* ``TorchEpoch``: the seed's loop with PyTorch CPU tensors, float32, eager, ``torch.set_num_threads``;
* ``SGDClassifierEpoch``: scikit-learn ``SGDClassifier(loss="log_loss")``, one ``partial_fit`` = one epoch
  (one-vs-rest, per-sample SGD; the classes in parallel with ``n_jobs``);
* ``LogisticRegressionFit``: scikit-learn ``LogisticRegression`` (lbfgs, multinomial), one fit with
  ``max_iter=10``: a time per fit, not per epoch (each lbfgs iteration evaluates the full-batch
  gradient at least once, i.e. at least an epoch's FLOP).
"""

import warnings

import numpy as np

from . import common

#: ``max_iter`` of the LogisticRegression fit.
LOGISTIC_MAX_ITER = 10


class _PeerOnThreads:
    """What every peer benchmark shares: the peers table, one parameter (the thread count), one call per sample."""

    table = "peers"
    params = [common.THREADS]
    param_names = ["threads"]
    repeat = common.REPEAT
    number = 1
    timeout = 600


class TorchEpoch(_PeerOnThreads):
    """The seed's loop (``bench_epoch.seed_loop_epoch``) written with torch tensors, float32, eager mode."""

    def setup(self, threads):
        self.torch = common.require("torch")
        self.X = self.torch.from_numpy(common.mnist_scaled("float32").copy())
        self.Y = self.torch.from_numpy(common.mnist_onehot("float32").copy())
        W, b = common.seed_weights("float32")
        self.W, self.b = self.torch.from_numpy(W), self.torch.from_numpy(b)
        self.threads_before = self.torch.get_num_threads()
        self.torch.set_num_threads(threads)

    def teardown(self, threads):
        self.torch.set_num_threads(self.threads_before)

    def time_epoch(self, threads):
        torch, X, Y, W, b = self.torch, self.X, self.Y, self.W, self.b
        lr, batch_size = common.LR, common.BATCH_SIZE
        with torch.no_grad():
            for i in range(0, X.shape[0], batch_size):
                X_b = X[i:i + batch_size]
                Y_b = Y[i:i + batch_size]
                z = X_b @ W + b
                e = torch.exp(z - z.amax(dim=1, keepdim=True))
                P = e / e.sum(dim=1, keepdim=True)
                grad = (P - Y_b) / batch_size
                W -= lr * (X_b.T @ grad)
                b -= lr * grad.sum(dim=0)

    def describe(self, method, threads):
        return {"label": "PyTorch eager (seed loop)", "dtype": "float32", "input": "float", "threads": threads,
                "flops": common.epoch_flops(common.epoch_rows()), "epoch": True}


class SGDClassifierEpoch(_PeerOnThreads):
    """``SGDClassifier(loss="log_loss", shuffle=False, n_jobs=threads).partial_fit``: one epoch, a fresh model.

    float64 X (pixels / 255), the dtype it computes in.
    """

    def setup(self, threads):
        self.linear_model = common.require("sklearn.linear_model")
        self.X = common.mnist_scaled("float64")
        self.y = common.mnist_uint8()[1]
        self.classes = np.arange(common.N_CLASSES)

    def time_epoch(self, threads):
        model = self.linear_model.SGDClassifier(loss="log_loss", shuffle=False, n_jobs=threads, random_state=0)
        model.partial_fit(self.X, self.y, classes=self.classes)

    def describe(self, method, threads):
        return {"label": "scikit-learn SGDClassifier, 1 epoch", "dtype": "float64", "input": "float",
                "threads": threads, "flops": common.epoch_flops(common.epoch_rows()), "epoch": True}


class LogisticRegressionFit(_PeerOnThreads):
    """``LogisticRegression(max_iter=10).fit`` (lbfgs, multinomial), BLAS and OpenMP on ``threads`` threads.

    float64 X (pixels / 255). Reported per fit; the convergence warning is silenced.
    """

    def setup(self, threads):
        self.linear_model = common.require("sklearn.linear_model")
        self.X = common.mnist_scaled("float64")
        self.y = common.mnist_uint8()[1]
        self.limits = common.limit_blas_threads(threads, user_api=None)

    def teardown(self, threads):
        self.limits.restore_original_limits()

    def time_fit(self, threads):
        model = self.linear_model.LogisticRegression(max_iter=LOGISTIC_MAX_ITER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(self.X, self.y)

    def describe(self, method, threads):
        return {"label": f"scikit-learn LogisticRegression, 1 fit (lbfgs, max_iter={LOGISTIC_MAX_ITER})",
                "dtype": "float64", "input": "float", "threads": threads}
