"""Full-batch training against scikit-learn: ``solver="lbfgs"`` and ``SoftmaxRegressionCV``, on the same data.

* ``SklearnMnist`` and ``MnistLbfgs``: MNIST (uint8 pixels, scale 1/255) at
  ``alpha = 1e-4``. scikit-learn's ``LogisticRegression(C = 1 / (n * alpha))``
  (the same objective, on the pixels divided by 255 in float64) runs its
  defaults once (100 iterations, ``tol=1e-4``); our fit, in float32 and in
  float64, runs until its objective is within ``OBJECTIVE_RTOL`` of the one
  scikit-learn ended at (or below it): the time to scikit-learn's objective.
  Both objectives are evaluated afterwards by one float64 yardstick
  (:func:`objective`).
* ``ProbePass``: one evaluation of the lbfgs objective and its gradient
  (``_lbfgs.Objective``: ``loss_and_grad`` over every row, in chunks) on a
  linear probe, seeded synthetic embeddings (a Gaussian mixture, float32,
  ``PROBE_SHAPE``), in GFLOP/s and % of the GEMM peak (4·n·d·k FLOP).
* ``ProbeLbfgs``: on the probe, scikit-learn's ``LogisticRegression`` for
  ``PROBE_SKLEARN_MAX_ITER`` iterations, then our fit until its objective:
  one fit each (minutes), so a single time, not a median.
* ``DigitsCV``: ``SoftmaxRegressionCV(alphas=10, cv=5)`` against
  ``LogisticRegressionCV(Cs=10, cv=5)`` on ``load_digits``, both stopping at a
  largest gradient component of ``1e-4`` (scikit-learn's default ``tol``; our
  ``gtol``); time and best mean validation accuracy.

scikit-learn runs as installed, with its default threads. Quick mode: small
synthetic data, the same rows.
"""

import functools
import time
import warnings

import numpy as np

from . import common

MNIST_ALPHA = 1e-4
#: Our fits end once their objective is at most scikit-learn's times (1 + OBJECTIVE_RTOL).
OBJECTIVE_RTOL = 1e-6
#: The most iterations our fits may take to get there.
MAX_ITER = 1000
#: (n, d, k) of the linear probe: 100,000 768-d embeddings of 1000 classes.
PROBE_SHAPE = (2048, 96, 50) if common.QUICK else (100_000, 768, 1000)
PROBE_ALPHA = 1e-4
#: The distance of the probe's class means from the origin, in noise standard deviations per feature.
PROBE_SEPARATION = 0.1
PROBE_SKLEARN_MAX_ITER = 5 if common.QUICK else 30
CV_ALPHAS, CV_FOLDS, CV_TOL = 10, 5, 1e-4
#: Rows of the quick mode's stand-ins for the MNIST test set and for load_digits.
QUICK_TEST_ROWS = 256


def objective(X, y, scale, W, b, alpha):
    """``(1/n) sum_i CE_i + (alpha/2) ||W||^2`` in float64 at ``W (d, k)``, ``b (k,)`` of any float dtype, by the
    reference kernels over chunks of rows: one yardstick for our weights and scikit-learn's. ``X`` may be
    scipy.sparse CSR (with sorted indices in each row, as the kernels take it)."""
    from softmax_fast import kernels

    reference, W, b = kernels.get_backend("numpy"), np.asarray(W, np.float64), np.asarray(b, np.float64)
    data_loss = 0.0
    for start in range(0, len(y), 8192):
        rows = X[start:start + 8192]
        rows = rows if rows.dtype == np.uint8 else rows.astype(np.float64)
        data_loss += rows.shape[0] * reference.loss_and_grad(rows, y[start:start + 8192], W, b, scale)[0]
    return data_loss / len(y) + alpha / 2 * float(np.sum(W * W))


def _relative_gap(value, reference):
    """``(value - reference) / reference``: how far above the reference objective ``value`` ended (< 0: below)."""
    return (value - reference) / reference


def _quietly(fit):
    """``fit()`` without the ConvergenceWarning and FutureWarning either library may give; returns its seconds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        fit()
        return time.perf_counter() - started


def _fit_until(model, X, y, target):
    """Fit ``model`` (``solver="lbfgs"``) on ``X``, ``y`` until its objective is at most ``target``; its seconds."""
    return _quietly(lambda: model.fit(X, y, stop=lambda: model.history_[-1]["objective"] <= target))


@functools.cache
def mnist_test():
    """The MNIST test set ``(X uint8, y)``; quick mode: synthetic, ``QUICK_TEST_ROWS`` rows."""
    if common.QUICK:
        rng = np.random.default_rng(1)
        return (rng.integers(0, 256, (QUICK_TEST_ROWS, common.N_FEATURES), dtype=np.uint8),
                rng.integers(0, common.N_CLASSES, QUICK_TEST_ROWS))
    from softmax_fast.datasets import load_mnist

    return load_mnist(report=lambda line: None)[1]


@functools.cache
def sklearn_mnist():
    """scikit-learn's default ``LogisticRegression`` fit on MNIST at ``MNIST_ALPHA``: a dict of its figures."""
    LogisticRegression = common.require("sklearn.linear_model").LogisticRegression
    X, y = common.mnist_uint8()
    model = LogisticRegression(C=1 / (len(y) * MNIST_ALPHA))
    seconds = _quietly(lambda: model.fit(common.mnist_scaled("float64"), y))
    X_test, y_test = mnist_test()
    return {"seconds": seconds, "iterations": int(model.n_iter_.max()),
            "objective": objective(X, y, common.PIXEL_SCALE, model.coef_.T, model.intercept_, MNIST_ALPHA),
            "test_accuracy": float(model.score(X_test * common.PIXEL_SCALE, y_test))}


class SklearnMnist:
    """scikit-learn's ``LogisticRegression(C = 1 / (n * 1e-4))`` on MNIST, its defaults: one fit (15 s)."""

    table = "solvers"
    timeout = 900

    def setup(self):
        self.figures = sklearn_mnist()

    def track_seconds(self):
        return self.figures["seconds"]

    track_seconds.unit = "seconds"

    def track_objective(self):
        return self.figures["objective"]

    track_objective.unit = "objective"

    def track_iterations(self):
        return self.figures["iterations"]

    track_iterations.unit = "iterations"

    def track_test_accuracy(self):
        return self.figures["test_accuracy"]

    track_test_accuracy.unit = "fraction"

    def describe(self, method):
        return {"label": "scikit-learn LogisticRegression, MNIST, alpha 1e-4 (float64, defaults)"}


class MnistLbfgs:
    """Our ``solver="lbfgs"`` fit on MNIST until scikit-learn's objective (``SklearnMnist``)."""

    table = "solvers"
    params = [common.DTYPES]
    param_names = ["dtype"]
    repeat = 3
    timeout = 900

    def setup(self, dtype):
        self.X, self.y = common.mnist_uint8()
        self.target = sklearn_mnist()["objective"] * (1 + OBJECTIVE_RTOL)

    def time_fit(self, dtype):
        from softmax_fast import SoftmaxRegression

        self.model = SoftmaxRegression(solver="lbfgs", alpha=MNIST_ALPHA, dtype=dtype, max_iter=MAX_ITER, gtol=0.0)
        _fit_until(self.model, self.X, self.y, self.target)

    def track_objective_gap(self, dtype):
        """How far above scikit-learn's objective ours ended, relative (< 0: below it)."""
        return _relative_gap(objective(self.X, self.y, common.PIXEL_SCALE, self.model.coef_, self.model.intercept_,
                                       MNIST_ALPHA), sklearn_mnist()["objective"])

    track_objective_gap.unit = "relative"

    def track_iterations(self, dtype):
        return self.model.n_iter_

    track_iterations.unit = "iterations"

    def track_test_accuracy(self, dtype):
        return float(self.model.score(*mnist_test()))

    track_test_accuracy.unit = "fraction"

    def describe(self, method, dtype):
        return {"label": f"softmax_fast lbfgs, MNIST, alpha 1e-4, {dtype}, to scikit-learn's objective",
                "dtype": dtype}


@functools.cache
def probe_data():
    """The linear probe's seeded embeddings ``(X float32 (n, d), y intp (n,))``: class means ``PROBE_SEPARATION``
    standard deviations per feature from the origin, plus standard normal noise."""
    n, d, k = PROBE_SHAPE
    rng = np.random.default_rng(0)
    means = rng.standard_normal((k, d), dtype=np.float32) * np.float32(PROBE_SEPARATION)
    y = rng.integers(0, k, n).astype(np.intp)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X += means[y]
    return X, y


class ProbePass:
    """One evaluation of the lbfgs objective and gradient over every probe row (one ``loss_and_grad`` call)."""

    table = "solvers"
    params = [common.COMPILED_BACKENDS]
    param_names = ["backend"]
    repeat = 3
    timeout = 900

    def setup(self, backend):
        from softmax_fast import _lbfgs

        X, y = probe_data()
        n, d, k = PROBE_SHAPE
        self.objective = _lbfgs.Objective.of_rows(common.backend(backend), X, y, None, 1.0, PROBE_ALPHA, (d, k),
                                          np.float32, common.ALL_THREADS)
        self.theta = np.random.default_rng(1).standard_normal(d * k + k) * 0.01

    def time_pass(self, backend):
        self.objective(self.theta)

    def describe(self, method, backend):
        n, d, k = PROBE_SHAPE
        return {"label": f"lbfgs objective and gradient, probe {n}×{d}×{k}, {backend}, float32",
                "backend": backend, "dtype": "float32", "threads": common.ALL_THREADS, "flops": 4 * n * d * k}


class ProbeLbfgs:
    """On the probe: scikit-learn for ``PROBE_SKLEARN_MAX_ITER`` iterations, then our fit to its objective."""

    table = "solvers"
    timeout = 3600

    def setup(self):
        from softmax_fast import SoftmaxRegression

        LogisticRegression = common.require("sklearn.linear_model").LogisticRegression
        X, y = probe_data()
        reference = LogisticRegression(C=1 / (len(y) * PROBE_ALPHA), max_iter=PROBE_SKLEARN_MAX_ITER)
        self.sklearn_seconds = _quietly(lambda: reference.fit(X, y))
        self.sklearn_objective = objective(X, y, 1.0, reference.coef_.T, reference.intercept_, PROBE_ALPHA)
        model = SoftmaxRegression(solver="lbfgs", alpha=PROBE_ALPHA, max_iter=MAX_ITER, gtol=0.0)
        self.seconds = _fit_until(model, X, y, self.sklearn_objective * (1 + OBJECTIVE_RTOL))
        self.iterations = model.n_iter_
        self.objective_gap = _relative_gap(objective(X, y, 1.0, model.coef_, model.intercept_, PROBE_ALPHA),
                                           self.sklearn_objective)

    def track_sklearn_seconds(self):
        return self.sklearn_seconds

    track_sklearn_seconds.unit = "seconds"

    def track_seconds(self):
        return self.seconds

    track_seconds.unit = "seconds"

    def track_iterations(self):
        return self.iterations

    track_iterations.unit = "iterations"

    def track_objective_gap(self):
        return self.objective_gap

    track_objective_gap.unit = "relative"

    def describe(self, method):
        n, d, k = PROBE_SHAPE
        return {"label": f"probe {n}×{d}×{k} float32, alpha 1e-4: scikit-learn {PROBE_SKLEARN_MAX_ITER} iterations, "
                         "softmax_fast lbfgs to its objective (one fit each)"}


@functools.cache
def digits():
    """``load_digits`` as ``(X float64, y)``; quick mode: 300 rows of it."""
    X, y = common.require("sklearn.datasets").load_digits(return_X_y=True)
    return (X[:300], y[:300]) if common.QUICK else (X, y)


class DigitsCV:
    """``SoftmaxRegressionCV(alphas=10, cv=5)`` against ``LogisticRegressionCV(Cs=10, cv=5)`` on load_digits."""

    table = "solvers"
    params = [["softmax_fast", "scikit-learn"]]
    param_names = ["library"]
    repeat = 3
    timeout = 900

    def setup(self, library):
        if library == "scikit-learn":
            LogisticRegressionCV = common.require("sklearn.linear_model").LogisticRegressionCV
            self.make = lambda: LogisticRegressionCV(Cs=CV_ALPHAS, cv=CV_FOLDS, tol=CV_TOL)
        else:
            common.require("sklearn")
            from softmax_fast import SoftmaxRegressionCV

            self.make = lambda: SoftmaxRegressionCV(alphas=CV_ALPHAS, cv=CV_FOLDS, gtol=CV_TOL)

    def time_fit(self, library):
        self.model = self.make()
        _quietly(lambda: self.model.fit(*digits()))

    def track_best_score(self, library):
        """The best mean validation accuracy over the grid."""
        scores = self.model.scores_
        # LogisticRegressionCV's legacy scores_ is {class: (folds, Cs)}; ours is (folds, alphas).
        scores = next(iter(scores.values())) if isinstance(scores, dict) else scores
        return float(np.max(np.mean(scores, axis=0)))

    track_best_score.unit = "fraction"

    def describe(self, method, library):
        name = ("LogisticRegressionCV(Cs=10, cv=5)" if library == "scikit-learn"
                else "SoftmaxRegressionCV(alphas=10, cv=5, gtol=1e-4)")
        return {"label": f"{name}, load_digits", "library": library}
