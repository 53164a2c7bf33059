"""The full-batch solver of ``SoftmaxRegression(solver="lbfgs")``: the whole objective, minimized by L-BFGS.

The objective over all ``n`` training rows is

    F(W, b) = (1/n) * sum_i s_i * CE_i + (alpha/2) * ||W||_F^2

(``s_i`` the row weights, ``sample_weight`` times ``class_weight``; the bias
is not penalized): issue 9's objective, and scikit-learn's multinomial
``LogisticRegression(C)`` for ``alpha = 1 / (n * C)``. :class:`Objective`
evaluates it and its gradient by the compiled ``Backend.loss_and_grad`` over
``CHUNK_ROWS`` rows at a time, in the model's dtype, on the features as they
are (``uint8`` pixels stay ``uint8``, scaled inside the kernels: nothing is
copied or converted). The chunks combine exactly: the kernel returns a chunk's
mean ``L_c`` over its ``n_c`` rows, so ``F``'s data term is
``sum_c n_c * L_c / n``, summed in float64, and likewise the gradients; the
chunks get ``alpha = 0`` and the penalty is added once.

The minimizer is SciPy's L-BFGS-B (``scipy.optimize.minimize``), the one
scikit-learn's ``LogisticRegression`` uses, over the flat float64 vector
``theta = [W.ravel(), b]``; it stops when the largest absolute component of
the gradient is at most ``gtol``, when an iteration lowers ``F`` by no more
than ``_FTOL`` relative (float32 models, whose ``F`` is rounded to float32,
end there), or after ``max_iter`` iterations. SciPy is an
optional dependency (``pip install "softmax_fast[lbfgs]"``), imported when a
fit needs it. The estimator calls :func:`minimize`; this module knows nothing
of the estimator.
"""

import time

import numpy as np

# Rows per loss_and_grad call: the kernels' scratch (logits and their gradient, (rows, k) of the model's dtype)
# stays at most CHUNK_ROWS * k values, whatever n is, while each call is long enough for every thread.
CHUNK_ROWS = 16384
# L-BFGS-B's relative decrease test, as scikit-learn sets it: near the float64 rounding of F, so that the
# gradient test (gtol) is what ends a fit.
_FTOL = 64 * np.finfo(np.float64).eps
# Line-search steps per iteration, as scikit-learn's (SciPy's default of 20 can give up too early).
_MAX_LINE_SEARCH = 50


def _solver_imports():
    """``(scipy.optimize.minimize, threadpoolctl.threadpool_limits)``, or an ImportError that says how to install
    them."""
    try:
        from scipy.optimize import minimize
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("scipy", "threadpoolctl"):
            raise
        raise ImportError(f"solver='lbfgs' needs SciPy (its L-BFGS-B minimizer) and threadpoolctl, not found: "
                          f"{exc.name}; pip install 'softmax_fast[lbfgs]'") from exc
    return minimize, threadpool_limits


class Objective:
    """``F`` and its float64 gradient at ``theta = [W.ravel(), b]`` for kernel-ready ``rows``; see the module."""

    def __init__(self, backend, rows, scale, alpha, shape, dtype, n_threads):
        self.backend, self.rows, self.scale = backend, rows, scale
        self.alpha, self.shape, self.dtype, self.n_threads = float(alpha), shape, np.dtype(dtype), n_threads
        self.last = None  # (theta, F, gradient) of the last evaluation

    def weights(self, theta):
        """``(W (d, k), b (k,))`` of the model's dtype from the flat float64 ``theta``."""
        d, k = self.shape
        return theta[:d * k].reshape(d, k).astype(self.dtype), theta[d * k:].astype(self.dtype)

    def data_loss_and_grad(self, theta):
        """``(L, gW, gb)``: the data term of ``F`` (a float) and its gradients (float64), over all rows in chunks."""
        W, b = self.weights(theta)
        X, y, weights = self.rows
        n = len(y)
        loss, gW, gb = 0.0, np.zeros(W.shape), np.zeros(b.shape)
        for start in range(0, n, CHUNK_ROWS):
            chunk = slice(start, start + CHUNK_ROWS)
            share = len(y[chunk]) / n
            chunk_loss, chunk_gW, chunk_gb = self.backend.loss_and_grad(
                X[chunk], y[chunk], W, b, self.scale, alpha=0.0,
                sample_weight=None if weights is None else weights[chunk], n_threads=self.n_threads)
            loss += share * chunk_loss
            gW += share * chunk_gW
            gb += share * chunk_gb
        return loss, gW, gb

    def __call__(self, theta):
        """``(F, gradient)`` at ``theta``, the gradient a new float64 vector like ``theta``."""
        d, k = self.shape
        loss, gW, gb = self.data_loss_and_grad(theta)
        W = theta[:d * k].reshape(d, k)
        value = loss + self.alpha / 2 * float(np.dot(theta[:d * k], theta[:d * k]))
        gradient = np.concatenate([(gW + self.alpha * W).ravel(), gb])
        self.last = theta.copy(), value, gradient
        return value, gradient

    def at(self, theta):
        """``(F, gradient)`` at ``theta``: the last evaluation's if it was there (L-BFGS ends on its accepted step)."""
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1:]
        return self(theta)


def minimize(objective, theta, max_iter, gtol, on_iteration):
    """Minimize ``objective`` from ``theta`` by L-BFGS-B; returns SciPy's ``OptimizeResult``.

    ``on_iteration(iteration, theta, value, gradient, seconds)`` is called
    after each iteration (``seconds``: the time the iteration took); when it
    returns true, the minimization ends there.
    """
    scipy_minimize, threadpool_limits = _solver_imports()
    iteration, started = 0, time.perf_counter()

    def callback(intermediate_result):
        nonlocal iteration, started
        iteration += 1
        x = intermediate_result.x
        value, gradient = objective.at(x)
        if on_iteration(iteration, x, value, gradient, time.perf_counter() - started):
            raise StopIteration
        started = time.perf_counter()

    # L-BFGS-B's own work is vector operations of length d * k, run by BLAS between two kernel calls. OpenBLAS
    # threads then spin, waiting for more, on the cores where the kernels' threads meet at barriers: on 2 cores
    # a loss_and_grad of 0.16 ms took 11 ms (load_digits, n_jobs=2). One BLAS thread costs the solver nothing.
    with threadpool_limits(limits=1, user_api="blas"):
        return scipy_minimize(objective, theta, method="L-BFGS-B", jac=True, callback=callback,
                              options={"maxiter": max_iter, "gtol": gtol, "ftol": _FTOL,
                                       "maxls": _MAX_LINE_SEARCH})


def gradient_norm(gradient):
    """The largest absolute component of ``gradient``: what ``gtol`` bounds."""
    return float(np.max(np.abs(gradient))) if len(gradient) else 0.0
