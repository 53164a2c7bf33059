"""The full-batch solver of ``SoftmaxRegression(solver="lbfgs")``: the whole objective, minimized by L-BFGS.

The objective over all ``n`` training rows is

    F(W, b) = (1/n) * sum_i s_i * CE_i + (alpha/2) * ||W||_F^2

(``s_i`` the row weights, ``sample_weight`` times ``class_weight``; the bias
is not penalized): issue 9's objective, and scikit-learn's multinomial
``LogisticRegression(C)`` for ``alpha = 1 / (n * C)``. :class:`Objective`
evaluates it and its gradient by one call of the compiled
``Backend.loss_and_grad`` over all the rows (which it works through in
blocks that stay in cache, with one scratch), in the model's dtype, on the
features as they are (``uint8`` pixels stay ``uint8``, scaled inside the
kernels: nothing is copied or converted). The kernel gets ``alpha = 0``: the
penalty is added here, in float64, on the solver's own float64 weights.

The minimizer, :func:`minimize`, is L-BFGS over the flat float64 vector
``theta = [W.ravel(), b]``, written here in NumPy (Nocedal & Wright's
algorithms) but for its two passes over the curvature pairs, which
:mod:`softmax_fast._lbfgs_passes` compiles and threads. A fresh fit (all
weights 0) scales its initial inverse Hessian by the square root of ``F``'s
Hessian diagonal there (:meth:`Objective.start_curvature`, from one read of
the features: :func:`feature_square_sums`), which on TF-IDF features, whose
columns' frequencies span orders of magnitude, takes less than half the
iterations (see ``CURVATURE_POWER``). SciPy's L-BFGS-B,
which scikit-learn uses, spent about 70 us of Python per iteration around its
Fortran core, as long as a whole ``loss_and_grad`` pass on ``load_digits``;
this one keeps L-BFGS-B's stopping tests: it ends when the largest absolute
component of the gradient is at most ``gtol``, when an iteration lowers ``F``
by no more than ``_FTOL`` relative, after ``max_iter`` iterations, when a step
that promises a decrease below ``F``'s rounding does not lower ``F`` (where
float32 models, whose ``F`` is rounded to float32, end: they reach ``gtol``
only as far as their rounding lets it show), or when the line search finds no
lower ``F``.
The estimator calls :func:`minimize`; this module knows nothing of the
estimator.
"""

import collections
import functools
import time

import numpy as np

# L-BFGS-B's relative decrease test, as scikit-learn sets it: near the float64 rounding of F, so that the
# gradient test (gtol) is what ends a fit.
_FTOL = 64 * np.finfo(np.float64).eps
# Evaluations of F per line search, at most (L-BFGS-B's default).
_MAX_LINE_SEARCH = 20
# The strong Wolfe conditions' constants: sufficient decrease, and the curvature condition (which keeps s'y > 0).
_SUFFICIENT_DECREASE, _CURVATURE = 1e-4, 0.9
# A direction whose slope is within this many roundings of F (its dtype's eps times |F|) promises no decrease
# that F can show.
_ROUNDINGS = 16
# The steps whose curvature L-BFGS keeps, between L-BFGS-B's default of 10 and 50. More pairs (s, y) model the
# curvature better: on MNIST (alpha = 1e-4, float64) scikit-learn's objective after its 100 iterations took us 96
# iterations with 10 pairs, 74 with 30 and 58 with 50 (and a path of fits on load_digits 249 iterations with 11
# pairs, 119 with 50). In their compact form (CurvaturePairs) they cost two reads of the pairs an iteration. They
# take at most HISTORY_BYTES (see history_size).
HISTORY_BYTES = 128 << 20
MIN_HISTORY, MAX_HISTORY = 10, 50
# The power of the start's curvature in H0 (see Objective.start_curvature and CurvaturePairs): 0 is the usual
# H0 = gamma I, 1 Jacobi's preconditioner. The curvature is the Hessian's diagonal at the start only: as the model
# grows confident, the data's share of it falls, and a strong penalty's uniform share takes over. The square root
# goes half way. Iterations of our fits (float64, to gtol 1e-5) for the powers 0, 0.5 and 1: 20 Newsgroups at
# alpha = 1/n 65, 29 and 54; MNIST at alpha 1e-5 358, 251 and 256, at 1e-3 93, 113 and 156; Fashion-MNIST at 1e-5
# 831, 725 and 744, at 1e-3 186, 265 and 357; 3 noisy templates of 784 pixels at alpha 1e-2 15, 14 and 17. A strong
# penalty on pixels is the case it slows.
CURVATURE_POWER = 0.5
# Bytes of float64 rows that feature_square_sums converts at once: little next to X (a uint8 MNIST is 47 MB).
_SQUARES_BLOCK_BYTES = 1 << 20


def history_size(n):
    """The pairs :func:`minimize` keeps for ``n`` parameters: as many as ``HISTORY_BYTES`` hold (in float32, see
    :class:`CurvaturePairs`), from ``MIN_HISTORY`` to ``MAX_HISTORY`` (21 at the probe's 769,000 parameters, 11 at
    20 Newsgroups' 1.47 million)."""
    return min(MAX_HISTORY, max(MIN_HISTORY, HISTORY_BYTES // (2 * 4 * max(n, 1))))


@functools.cache
def _passes():
    """:mod:`softmax_fast._lbfgs_passes`, imported at the first lbfgs fit: it imports Numba and its kernels'
    package, which ``import softmax_fast`` and a Cython-only process do not otherwise load."""
    from . import _lbfgs_passes

    return _lbfgs_passes


@functools.cache
def _threadpools():
    """A ``threadpoolctl.ThreadpoolController``, made once (finding the loaded BLAS libraries reads the process's
    memory map), or an ImportError that says how to install threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ModuleNotFoundError as exc:
        raise ImportError("solver='lbfgs' needs threadpoolctl (to keep BLAS on one thread while it runs), not "
                          "found; pip install 'softmax_fast[lbfgs]'") from exc
    return ThreadpoolController()


class Objective:
    """``F`` and its float64 gradient at ``theta = [W.ravel(), b]``; see the module.

    ``loss_and_grad(W, b)`` returns the data loss ``(1/n) sum_i s_i CE_i``
    and its gradient ``(dW (d, k), db (k,))``, unpenalized, at weights of the
    model's ``dtype``: :meth:`of_rows` for rows in this process, or the
    Dask estimator's sums over blocks on a cluster. The penalty is added
    here, in float64. ``start_sums()`` returns ``(square_means (d,),
    weight_mean)``, ``(1/n) sum_i s_i x_ij^2`` and ``(1/n) sum_i s_i``
    (:func:`curvature_sums` over ``n``), for :meth:`start_curvature`: a
    read of all the features, which only a fresh fit makes.
    """

    def __init__(self, loss_and_grad, alpha, shape, dtype, start_sums):
        self.alpha, self.shape, self.dtype = float(alpha), shape, np.dtype(dtype)
        self.eps = float(np.finfo(self.dtype).eps)  # the relative rounding of F, computed in the model's dtype
        self._last_weights = None, None  # (theta, (W, b)) of the last evaluation
        self._loss_and_grad, self._start_sums = loss_and_grad, start_sums

    @classmethod
    def of_rows(cls, backend, X, y, weights, scale, alpha, shape, dtype, n_threads):
        """The objective over the kernel-ready rows ``X (n, d)``, class indices ``y (n,)`` and row weights ``(n,)``
        (or None): one ``Backend.loss_and_grad`` call an evaluation, the rows checked once, here, by
        ``Backend.loss_and_grad_on``."""
        W, b = np.zeros(shape, dtype), np.zeros(shape[1], dtype)

        def start_sums():
            n = max(len(y), 1)
            square_sums, weight_sum = curvature_sums(X, weights, scale)
            return square_sums / n, weight_sum / n

        return cls(backend.loss_and_grad_on(X, y, W, b, scale, n_threads=n_threads, sample_weight=weights),
                   alpha, shape, dtype, start_sums)

    def start_curvature(self):
        """The diagonal of ``F``'s Hessian where every class has the probability ``1/k`` (as at ``W = 0, b = 0``):
        float64 ``(d * k + k,)``, like ``theta``.

        With ``q = (1/k)(1 - 1/k)``, the curvature of the cross-entropy in
        one logit there, it is ``q (1/n) sum_i s_i x_ij^2 + alpha`` for
        ``W[j, c]`` and ``q (1/n) sum_i s_i`` for ``b[c]``.
        """
        k = self.shape[1]
        q = (1 / k) * (1 - 1 / k)
        square_means, weight_mean = self._start_sums()
        return np.concatenate([np.repeat(q * square_means + self.alpha, k), np.full(k, q * weight_mean)])

    def weights(self, theta):
        """``(W (d, k), b (k,))`` of the model's dtype from the flat float64 ``theta`` (the last evaluation's
        arrays when ``theta`` is the vector it was called with: the solver reports the point it just evaluated)."""
        if self._last_weights[0] is theta:
            return self._last_weights[1]
        d, k = self.shape
        # A float64 model's weights are views of theta: the solver makes a new theta at every point, never
        # writing into one it has evaluated.
        return theta[:d * k].reshape(d, k).astype(self.dtype, copy=False), theta[d * k:].astype(self.dtype, copy=False)

    def __call__(self, theta):
        """``(F, gradient)`` at ``theta``, the gradient a new float64 vector like ``theta``."""
        d, k = self.shape
        W, b = self.weights(theta)
        self._last_weights = theta, (W, b)
        value, gW, gb = self._loss_and_grad(W, b)
        gradient = np.empty_like(theta)
        weights, weights_gradient = theta[:d * k], gradient[:d * k]
        # In place, without temporaries: at a million weights each costs about as much as the arithmetic.
        np.multiply(weights, self.alpha, out=weights_gradient)
        weights_gradient += gW.ravel()
        gradient[d * k:] = gb
        value += self.alpha / 2 * float(np.dot(weights, weights))
        return value, gradient


def curvature_sums(X, weights, scale):
    """``(sum_i s_i (scale * X[i, j])^2 (d,), sum_i s_i)``, float64: the sums over the kernel-ready rows ``X (n, d)``
    that :meth:`Objective.start_curvature` takes the means of (see :func:`feature_square_sums`)."""
    weight_sum = float(X.shape[0]) if weights is None else float(np.sum(weights, dtype=np.float64))
    return feature_square_sums(X, weights, scale), weight_sum


def feature_square_sums(X, weights, scale):
    """``sum_i s_i (scale * X[i, j])^2`` for every feature ``j``: float64 ``(d,)``.

    ``X (n, d)``: kernel-ready rows, dense of any dtype or CSR (an object
    with ``data``, ``indices``, ``indptr`` and ``shape``), read a block of
    rows at a time: its float64 squares take about ``_SQUARES_BLOCK_BYTES``,
    whatever ``n``, and a memory-mapped ``X`` is never converted whole.
    ``weights``: the row weights ``s (n,)``, or None for 1.
    """
    n, d = X.shape
    sparse = hasattr(X, "indptr")
    values_per_row = len(X.data) / max(n, 1) if sparse else d
    block = max(1, int(_SQUARES_BLOCK_BYTES // (8 * max(values_per_row, 1))))
    sums = np.zeros(d)
    for start in range(0, n, block):
        stop = min(n, start + block)
        block_weights = None if weights is None else np.asarray(weights[start:stop], np.float64)
        if sparse:
            first, last = X.indptr[start], X.indptr[stop]
            squares = np.multiply(X.data[first:last], scale, dtype=np.float64)
            np.square(squares, out=squares)
            if block_weights is not None:
                squares *= np.repeat(block_weights, np.diff(X.indptr[start:stop + 1]))
            sums += np.bincount(X.indices[first:last], weights=squares, minlength=d)
        else:
            squares = np.multiply(X[start:stop], scale, dtype=np.float64)
            np.square(squares, out=squares)
            sums += squares.sum(axis=0) if block_weights is None else block_weights @ squares
    return sums


#: What :func:`minimize` returns: the last point, ``F`` and gradient there, the iterations done, whether it
#: ended on a convergence test (or on the caller's request), and why it ended.
Result = collections.namedtuple("Result", "x value gradient nit success message")


def minimize(objective, theta, max_iter, gtol, on_iteration, n_threads):
    """Minimize ``objective`` from ``theta`` (float64, not modified) by L-BFGS; returns a :data:`Result`.

    Nocedal & Wright's L-BFGS (Algorithm 7.5): the inverse Hessian of the
    last 10 to 50 steps (see ``MAX_HISTORY``; :class:`CurvaturePairs`) from
    ``H0 = gamma M``, the diagonal ``M`` of :func:`start_metric` scaled by
    ``gamma = s'y / y'My``, and a line search for
    the strong Wolfe conditions (:func:`_wolfe_step`), starting from the step
    1 (on the first iteration from ``min(1, 1 / ||M^(1/2) g||)``, L-BFGS-B's
    ``1 / ||g||`` in the scaled variables). It ends
    when the largest absolute component of the gradient is at most ``gtol``,
    when an iteration lowers ``F`` by at most ``_FTOL`` relative (L-BFGS-B's
    tests, as scikit-learn sets them), after ``max_iter`` iterations, when a
    step whose promised decrease is below ``F``'s rounding (``objective.eps``
    relative; tried once, without a line search) does not lower ``F`` (a
    float32 fit's end), when the line search finds no lower ``F``, or
    when ``on_iteration(iteration, theta, value, gradient_norm, seconds)``,
    called after each iteration, returns true. The passes over the curvature
    pairs run on ``n_threads`` threads; the result does not depend on it.
    """
    # The solver's own work is vector operations of length d * k, which NumPy hands to BLAS between two kernel
    # calls. OpenBLAS threads then spin, waiting for more, on the cores where the kernels' threads meet at barriers:
    # on 2 cores a loss_and_grad of 0.16 ms took 11 ms (load_digits, n_jobs=2). One BLAS thread costs nothing here.
    with _threadpools().limit(limits=1, user_api="blas"):
        value, gradient = objective(theta)
        if gradient_norm(gradient) <= gtol:
            return Result(theta, value, gradient, 0, True, "the gradient is within gtol")
        # The start curvature is F's Hessian's diagonal where the classes are equally likely: at a fresh fit's
        # zero weights. From other weights (a warm start, a fit along a path of penalties) it can be far from it:
        # on load_digits, the path of 10 penalties took 14 % more iterations with it than with the identity.
        metric = start_metric(objective.start_curvature()) if not theta.any() else np.ones_like(theta)
        pairs = CurvaturePairs(history_size(len(theta)), gradient, metric, n_threads)
        for iteration in range(1, max_iter + 1):
            started = time.perf_counter()
            direction = pairs.direction()
            slope = float(np.dot(gradient, direction))
            if not slope < 0:  # rounding made the quasi-Newton direction uphill: restart from -M g
                pairs.clear()
                direction = pairs.direction()
                slope = float(np.dot(gradient, direction))
            # Without pairs, L-BFGS-B's first step, 1 / ||g||, in the scaled variables: ||M^(1/2) g||^2 = -slope.
            first_step = 1.0 if len(pairs) else min(1.0, 1.0 / np.sqrt(-slope))
            if -slope <= _ROUNDINGS * objective.eps * max(abs(value), 1.0):
                # The decrease the step promises, about -slope / 2, is below F's rounding in the model's dtype (where
                # float32 models end): a line search would chase rounding. One try of the step decides.
                point = theta + first_step * direction
                found = (point, *objective(point))
                if not found[1] < value:
                    return Result(theta, value, gradient, iteration - 1, True,
                                  "the objective stopped decreasing measurably in the model's dtype")
            else:
                found = _wolfe_step(objective, theta, value, direction, slope, first_step)
            if found is None:
                return Result(theta, value, gradient, iteration - 1, False,
                              "the line search found no lower objective along the search direction")
            new_theta, new_value, new_gradient = found
            pairs.add_step(theta, new_theta, gradient, new_gradient)
            decrease = value - new_value
            theta, value, gradient = new_theta, new_value, new_gradient
            norm = gradient_norm(gradient)
            if on_iteration(iteration, theta, value, norm, time.perf_counter() - started):
                return Result(theta, value, gradient, iteration, True, "stopped on request")
            if norm <= gtol:
                return Result(theta, value, gradient, iteration, True, "the gradient is within gtol")
            if decrease <= _FTOL * max(abs(value), abs(value + decrease), 1.0):
                return Result(theta, value, gradient, iteration, True, "the objective stopped decreasing")
        return Result(theta, value, gradient, max_iter, False, "max_iter iterations done")


def start_metric(curvature):
    """``M``, the diagonal of the solver's ``H0`` up to its scale: ``curvature ** -CURVATURE_POWER`` (float64, like
    ``curvature``), and 0 where the curvature is 0.

    A parameter of no curvature at the start is one ``F`` does not depend on
    (a feature never present, without a penalty): its gradient is always 0,
    and so is its step.
    """
    metric = np.zeros_like(curvature)
    np.power(curvature, -CURVATURE_POWER, out=metric, where=curvature > 0)
    return metric


class CurvaturePairs:
    """The last ``size`` steps ``s`` and gradient changes ``y`` of L-BFGS, and ``-H g`` from them for the last
    gradient ``g``.

    ``H`` is the L-BFGS inverse Hessian: the updates of the pairs, oldest
    first, applied to ``H0 = gamma M``, with ``M`` the diagonal ``metric``
    (:func:`start_metric`) and ``gamma = s'y / y'My`` of the last pair: L-BFGS
    in the variables ``M^(-1/2) theta``, scaled by the curvature at the start,
    with the usual ``H0 = gamma I`` there (Nocedal & Wright's Algorithm 7.4, the
    two-loop recursion, computes ``H g`` with four vector operations a pair).
    :meth:`direction` computes the
    same vector in the compact form of Byrd, Nocedal and Schnabel (1994,
    Theorem 2.2; the form L-BFGS-B uses), two reads of the pairs whatever their
    number: with the rows of ``S`` and ``Y`` the pairs, oldest first,
    ``a = S g``, ``c = Y M g``, ``R`` the upper triangle of ``S Y'`` and ``D``
    its diagonal, ``v = R^-1 a``, ``u = R^-T ((D + gamma Y M Y') v - gamma c)``
    and ``H g = gamma M (g - Y' v) + S' u``. ``S Y'``, ``Y M Y'`` and ``R^-1`` are
    kept up to date as pairs come: a new pair adds a column to ``R``, and
    dropping the oldest removes ``R``'s first row and column, whose inverse is
    then what remains of ``R^-1`` without them (``R`` is triangular).

    The pairs are stored in float32, every product of them summed in
    float64. They only shape ``H``, the model of the curvature; the line
    search, the gradient and the weights stay float64, so the minimum found is
    the same. ``H`` is then exactly the L-BFGS matrix of the rounded pairs,
    all of whose products are taken from the stored vectors, and the pair's
    curvature test is made on them too: so ``H`` stays positive definite. Half
    the bytes halve the two reads of the pairs that bound an iteration's time
    at a million parameters and more (20 Newsgroups' fit: 2.6 s against 3.3 s,
    with the same iterations).
    """

    def __init__(self, size, gradient, metric, n_threads):
        # The pairs' vectors stay where they were written (the rows of S and Y, a ring): moving them as the
        # oldest is dropped would copy both matrices every iteration. ``slots`` lists their rows oldest first; the
        # small matrices below are kept in that order. One more row is free: a new step is written there before
        # its curvature, of the rounded vectors, says whether it is kept.
        self.S, self.Y = np.empty((2, size + 1, len(gradient)), np.float32)
        self.slots = []
        # s_i'y_j, y_i'M y_j and the inverse of R, the upper triangle of the first, pairs oldest first.
        self.SY, self.YY, self.R_inverse = np.empty((size, size)), np.empty((size, size)), np.zeros((size, size))
        # The last gradient, and its products with the rows of S and of Y M (None before the first step).
        self.gradient, self._S_gradient, self._Y_gradient = gradient, None, None
        self.metric = metric
        self.n_threads = n_threads  # of the passes over the pairs (_lbfgs_passes)

    def __len__(self):
        return len(self.slots)

    def clear(self):
        """Drop every pair."""
        self.slots = []
        self.R_inverse[:] = 0

    def add_step(self, theta, new_theta, gradient, new_gradient):
        """Keep the step from ``theta`` to ``new_theta`` (float64) and the gradients' change as the newest pair if
        its curvature ``s'y`` is positive (beyond rounding: more than eps ``y'My``), dropping the oldest once
        ``size`` are held; ``new_gradient`` becomes the gradient :meth:`direction` is of.

        The step is written into the free row, and the pair's products and the
        new gradient's with every pair are made, in one read of ``S`` and ``Y``
        (at 1.47 million parameters, 11 pairs and the free row, 141 MB).
        """
        free = min(set(range(len(self.S))) - set(self.slots))
        # The rows below max(slots, free) are the pairs' and the free one: slots are taken lowest first after clear.
        rows = max([*self.slots, free]) + 1
        S_y, self._S_gradient, Y_s, Y_y, self._Y_gradient = _passes().pair_products(
            self.S[:rows], self.Y[:rows], free, theta, new_theta, gradient, new_gradient, self.metric, self.n_threads)
        self.gradient = new_gradient
        if not (S_y[free] > np.finfo(np.float64).eps * Y_y[free] and Y_y[free] > 0):
            return
        if len(self.slots) == len(self.SY):
            for square in (self.SY, self.YY, self.R_inverse):
                square[:-1, :-1] = square[1:, 1:]
            self.slots.pop(0)
        self.slots.append(free)
        held, i, slots = len(self.slots), len(self.slots) - 1, self.slots
        # The products come by row: indexed by slots, in pair order.
        self.SY[i, :held] = Y_s[slots]
        self.SY[:held, i] = S_y[slots]
        self.YY[i, :held] = self.YY[:held, i] = Y_y[slots]
        # R's new last column is (s_j'y, j < i; s'y): its inverse's is (-R_i^-1 column / s'y; 1 / s'y).
        self.R_inverse[i, :i] = 0
        self.R_inverse[:i, i] = -(self.R_inverse[:i, :i] @ self.SY[:i, i]) / self.SY[i, i]
        self.R_inverse[i, i] = 1 / self.SY[i, i]

    def direction(self):
        """``-H g`` for the last gradient ``g``, a new float64 vector (``-M g`` without pairs)."""
        held, slots, gradient = len(self.slots), self.slots, self.gradient
        if not held:
            return -self.metric * gradient
        R_inverse = self.R_inverse[:held, :held]
        gamma = self.SY[held - 1, held - 1] / self.YY[held - 1, held - 1]
        v = R_inverse @ self._S_gradient[slots]
        u = (np.diagonal(self.SY)[:held] * v + gamma * (self.YY[:held, :held] @ v - self._Y_gradient[slots])) \
            @ R_inverse
        # Back from pair order to the rows, for the products with S and Y (the free row's weights are 0).
        rows = len(self._S_gradient)
        v_rows, u_rows = np.zeros(rows), np.zeros(rows)
        v_rows[slots], u_rows[slots] = v, u
        return _passes().combine_pairs(self.S[:rows], self.Y[:rows], -u_rows, gamma * v_rows, -gamma, gradient,
                                       self.metric, self.n_threads)


def _wolfe_step(objective, theta, value, direction, slope, step):
    """``(theta + t * direction, F, gradient)`` for a step ``t`` meeting the strong Wolfe conditions, or None.

    Nocedal & Wright's Algorithms 3.5 and 3.6: steps grow by 4 until they
    bracket an acceptable one, which cubic interpolation (kept at least 10 %
    inside the bracket) then finds. ``value`` and ``slope`` are ``F`` and its
    derivative along ``direction`` at ``t = 0``. After ``_MAX_LINE_SEARCH``
    evaluations, the lowest point with sufficient decrease is returned, or None
    if no point had it.
    """
    low = (0.0, value, slope, None)  # (t, F, dF/dt, (theta, F, gradient)): the best step with sufficient decrease
    high = None  # (t, F, dF/dt): the other end of a bracket, once there is one
    for _ in range(_MAX_LINE_SEARCH):
        point = np.multiply(direction, step)
        point += theta
        new_value, new_gradient = objective(point)
        new_slope = float(np.dot(new_gradient, direction))
        if not np.isfinite(new_value) or new_value > value + _SUFFICIENT_DECREASE * step * slope \
                or new_value >= low[1]:
            high = (step, new_value, new_slope)
        elif abs(new_slope) <= -_CURVATURE * slope:
            return point, new_value, new_gradient
        else:
            if new_slope * ((high[0] if high is not None else np.inf) - step) >= 0:
                high = low[:3]
            low = (step, new_value, new_slope, (point, new_value, new_gradient))
        step = 4 * low[0] if high is None else _interpolate(low[:3], high)
    return low[3]


def _interpolate(low, high):
    """The minimizer of the cubic through two ``(t, F, dF/dt)`` ends of a bracket, kept in the middle 80 % of it
    (the midpoint where the cubic has none or an end is not finite)."""
    (a, fa, da), (b, fb, db) = low, high
    if a == b:
        return a
    lower, upper = min(a, b) + 0.1 * abs(b - a), max(a, b) - 0.1 * abs(b - a)
    d1 = da + db - 3 * (fa - fb) / (a - b)
    discriminant = d1 * d1 - da * db
    if not (np.isfinite(fb) and np.isfinite(db) and discriminant >= 0):
        return (a + b) / 2
    d2 = np.copysign(np.sqrt(discriminant), b - a)
    denominator = db - da + 2 * d2
    if denominator == 0:
        return (a + b) / 2
    return float(np.clip(b - (b - a) * (db + d2 - d1) / denominator, lower, upper))


def gradient_norm(gradient):
    """The largest absolute component of ``gradient``: what ``gtol`` bounds."""
    return max(float(gradient.max()), -float(gradient.min())) if len(gradient) else 0.0
