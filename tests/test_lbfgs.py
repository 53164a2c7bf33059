"""``SoftmaxRegression(solver="lbfgs")``: scikit-learn's optimum, the gradient it descends, uint8 without a copy.

Both optima are judged by one plain NumPy function of ``(W, b)``, the objective
``(1/n) sum_i s_i CE_i + (alpha/2) ||W||^2`` that scikit-learn's multinomial
``LogisticRegression(C)`` minimizes (up to a constant factor) for
``alpha = 1 / (n * C)``.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from softmax_fast import SoftmaxRegression, _lbfgs, _lbfgs_passes, datasets, kernels
from softmax_fast.kernels import Backend

BACKENDS = kernels.available_backends()


def objective(X, y, W, b, alpha, sample_weight=None):
    """``(1/n) sum_i s_i CE_i + (alpha/2) ||W||^2`` in float64, ``W (d, k)``, ``y`` class indices."""
    Z = np.asarray(X, dtype=np.float64) @ W + b
    Z -= Z.max(axis=1, keepdims=True)
    per_row = np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y]
    weights = np.ones(len(y)) if sample_weight is None else sample_weight
    return float(np.mean(weights * per_row) + alpha / 2 * np.sum(np.square(W)))


def scikit_learn_fit(X, y, alpha, sample_weight=None, **options):
    """scikit-learn's multinomial L-BFGS fit of the same objective, run to convergence: ``(W (d, k), b, model)``.

    On one BLAS thread: the test workers share the CPUs, and on 10,000 MNIST rows it took 7.7 s so, against
    17.4 s on two threads alone.
    """
    model = LogisticRegression(C=1 / (len(y) * alpha), tol=1e-10, max_iter=10_000, **options)
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(X, y, sample_weight=sample_weight)
    return model.coef_.T, model.intercept_, model


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y  # pixels in [0, 1], as MNIST's after 1/255


@pytest.fixture(scope="module")
def digits_optimum(digits):
    return scikit_learn_fit(*digits, alpha=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_objective_on_digits_equals_scikit_learns_and_so_do_the_predictions(digits, digits_optimum, backend):
    X, y = digits
    W, b, reference = digits_optimum
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-3, dtype="float64", backend=backend, max_iter=1000).fit(X, y)
    ours, theirs = objective(X, y, model.coef_, model.intercept_, 1e-3), objective(X, y, W, b, 1e-3)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert model.history_[-1]["objective"] == pytest.approx(ours, rel=1e-12)
    assert model.history_[-1]["gradient_norm"] <= model.gtol
    assert np.mean(model.predict(X) == reference.predict(X)) >= 0.999


def test_row_and_class_weights_give_scikit_learns_weighted_optimum(digits):
    X, y = digits
    sample_weight = np.random.default_rng(0).uniform(0.5, 2, len(y))
    class_weight = {0: 2.0, 3: 0.5}  # not "balanced": recent scikit-learn counts its classes by sample_weight
    W, b, _ = scikit_learn_fit(X, y, 1e-2, sample_weight, class_weight=class_weight)
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-2, dtype="float64", class_weight=class_weight,
                              max_iter=1000).fit(X, y, sample_weight=sample_weight)
    row_weights = sample_weight * np.where(y == 0, 2.0, np.where(y == 3, 0.5, 1.0))
    ours = objective(X, y, model.coef_, model.intercept_, 1e-2, row_weights)
    assert ours == pytest.approx(objective(X, y, W, b, 1e-2, row_weights), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gradient_the_solver_uses_matches_central_differences(backend):
    rng = np.random.default_rng(1)
    # 40,000 rows of 4 features: two of the compiled kernels' blocks of rows (37,449 at this shape) and a short one.
    X, y = rng.standard_normal((40_000, 4)), rng.integers(0, 3, 40_000)
    weights = rng.uniform(0, 2, 40_000)
    function = _lbfgs.Objective.of_rows(kernels.get_backend(backend), X, y, weights, 1.0, 0.3, (4, 3), np.float64, None)
    theta = rng.standard_normal(4 * 3 + 3)
    value, gradient = function(theta)
    assert value == pytest.approx(objective(X, y, theta[:12].reshape(4, 3), theta[12:], 0.3, weights), rel=1e-12)
    step = 1e-6
    differences = [(function(theta + step * e)[0] - function(theta - step * e)[0]) / (2 * step)
                   for e in np.eye(len(theta))]
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["float64", "uint8 pixels", "csr"])
def test_the_start_curvature_is_the_hessians_diagonal_where_the_classes_are_equally_likely(kind):
    rng = np.random.default_rng(6)
    n, d, k, alpha = 50, 6, 3, 0.3
    X = rng.integers(0, 256, (n, d)).astype(np.uint8) if kind == "uint8 pixels" else rng.standard_normal((n, d))
    X[:, 2] = 0  # a feature never present: only the penalty curves it
    scale = 1 / 255 if kind == "uint8 pixels" else 1.0
    rows = kernels._validation.CSR.of_checked(sp.csr_matrix(X)) if kind == "csr" else X
    y, weights = rng.integers(0, k, n), rng.uniform(0, 2, n)
    function = _lbfgs.Objective.of_rows(kernels.get_backend("numpy"), rows, y, weights, scale, alpha, (d, k),
                                        np.float64, None)
    theta, step = np.zeros(d * k + k), 1e-5
    second_differences = [(function(theta + step * e)[1] - function(theta - step * e)[1]) @ e / (2 * step)
                          for e in np.eye(len(theta))]
    np.testing.assert_allclose(function.start_curvature(), second_differences, rtol=1e-6)


@pytest.mark.parametrize("kind", ["float32", "uint8 pixels", "csr_matrix", "checked CSR"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_feature_square_sums_are_the_weighted_sums_of_squares_read_in_blocks(monkeypatch, kind, weighted):
    # Blocks of 3 dense rows of 7 features (4 and a part); of CSR rows, as many as hold about 21 values.
    monkeypatch.setattr(_lbfgs, "_SQUARES_BLOCK_BYTES", 3 * 8 * 7)
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, (14, 7)).astype(np.uint8) if kind == "uint8 pixels" else \
        (rng.standard_normal((14, 7)) * (rng.random((14, 7)) < 0.4)).astype(np.float32)
    X[3] = 0  # an empty row
    scale = 1 / 255 if kind == "uint8 pixels" else 1.0
    weights = rng.uniform(0, 2, 14).astype(np.float32) if weighted else None
    rows = {"csr_matrix": lambda: sp.csr_matrix(X),
            "checked CSR": lambda: kernels._validation.CSR.of_checked(sp.csr_matrix(X))}.get(kind, lambda: X)()
    expected = (np.ones(14) if weights is None else weights.astype(np.float64)) @ (X.astype(np.float64) * scale) ** 2
    np.testing.assert_allclose(_lbfgs.feature_square_sums(rows, weights, scale), expected, rtol=1e-12)


def test_the_feature_square_sums_of_csr_rows_take_memory_bounded_whatever_the_nonzeros():
    rng = np.random.default_rng(9)
    X = sp.random(100_000, 1000, density=0.02, format="csr", dtype=np.float32, random_state=rng)  # 2 million
    weights = rng.uniform(0, 2, 100_000)
    tracemalloc.start()
    sums = _lbfgs.feature_square_sums(X, weights, 1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < X.nnz * 8 / 4  # float64 squares of every nonzero would take 16 MB
    X = X.astype(np.float64)
    np.testing.assert_allclose(sums, weights @ X.multiply(X).toarray(), rtol=1e-10)


def test_a_feature_without_curvature_keeps_its_weights_and_the_fit_its_optimum(digits):
    X, y = digits
    X = np.hstack([X, np.zeros((len(y), 1))])  # without a penalty, F does not depend on this feature's weights
    assert _lbfgs.start_metric(np.array([0.0, 4.0]))[0] == 0
    model = SoftmaxRegression(solver="lbfgs", alpha=0.0, dtype="float64", max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert np.all(np.isfinite(model.coef_)) and not model.coef_[-1].any()
    assert model.history_[-1]["objective"] < 0.01


def test_max_iter_stops_with_a_convergence_warning_and_one_record_per_iteration(digits):
    model = SoftmaxRegression(solver="lbfgs", max_iter=2)
    with pytest.warns(ConvergenceWarning, match=r"after 2 iterations without reaching gtol=1e-06"):
        model.fit(*digits, validation_data=digits)
    assert model.n_iter_ == 2 and [record["iteration"] for record in model.history_] == [1, 2]
    first, second = model.history_
    assert second["objective"] < first["objective"] and second["gradient_norm"] > model.gtol
    assert second["test_loss"] == pytest.approx(second["train_loss"], rel=1e-5)
    assert 0 < second["test_accuracy"] <= 1 and second["seconds"] > 0


def test_warm_start_goes_on_from_the_current_weights(digits):
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-2, warm_start=True, max_iter=5)
    with pytest.warns(ConvergenceWarning):
        model.fit(*digits)
    after_five = model.history_[-1]["objective"]
    model.set_params(max_iter=1000).fit(*digits)
    assert model.n_iter_ == len(model.history_) > 5 and model.history_[5]["objective"] < after_five


def test_a_float32_model_computes_in_float32_and_nears_the_float64_optimum(digits, digits_optimum):
    X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # float32 may not resolve gtol=1e-6
        model = SoftmaxRegression(solver="lbfgs", alpha=1e-3, max_iter=1000).fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float32
    W, b, _ = digits_optimum
    assert objective(X, y, model.coef_, model.intercept_, 1e-3) == pytest.approx(objective(X, y, W, b, 1e-3),
                                                                                   rel=1e-4)


@pytest.mark.parametrize("method", ["partial_fit", "resume"])
def test_partial_fit_and_resume_are_refused_and_absent_as_for_scikit_learns_lbfgs_mlp(digits, method):
    model = SoftmaxRegression(solver="lbfgs")
    with pytest.raises(ValueError, match=rf"{method} trains by minibatch SGD and solver='lbfgs'"):
        getattr(model, method)(*digits)
    assert not hasattr(model, method) and hasattr(model.set_params(solver="sgd"), method)
    assert getattr(SoftmaxRegression, method).__doc__  # the class keeps the method and its documentation


def test_uint8_features_reach_the_kernels_as_they_are_without_a_float_copy(monkeypatch):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (20_000, 196), dtype=np.uint8)
    y = rng.integers(0, 4, len(X))
    seen = []
    loss_and_grad_on = Backend.loss_and_grad_on

    def recording(self, X_rows, *args, **kwargs):
        seen.append(X_rows)
        return loss_and_grad_on(self, X_rows, *args, **kwargs)

    monkeypatch.setattr(Backend, "loss_and_grad_on", recording)
    SoftmaxRegression(solver="lbfgs", alpha=1e-2, max_iter=1000).fit(X, y)  # warm the caches first
    seen.clear()
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SoftmaxRegression(solver="lbfgs", alpha=1e-2, max_iter=3).fit(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(seen) == 1 and seen[0].dtype == np.uint8 and np.shares_memory(seen[0], X)
    assert peak < X.nbytes  # a float32 copy alone would take 4 times X


@pytest.fixture(scope="module")
def mnist_10000_optimum(mnist_dir):
    """``(X uint8, y, W, b)``: 10,000 MNIST training rows and scikit-learn's optimum on them at alpha 1e-3."""
    (X, y), _ = datasets.load_mnist(mnist_dir, report=lambda line: None)
    X, y = X[:10_000], y[:10_000]
    return (X, y, *scikit_learn_fit(X / 255, y, alpha=1e-3)[:2])


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_objective_on_10000_mnist_rows_equals_scikit_learns(mnist_10000_optimum, backend):
    X, y, W, b = mnist_10000_optimum
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-3, dtype="float64", max_iter=2000, backend=backend).fit(X, y)
    assert objective(X / 255, y, model.coef_, model.intercept_, 1e-3) == pytest.approx(
        objective(X / 255, y, W, b, 1e-3), rel=1e-6)


def test_stop_ends_the_fit_after_the_iteration_without_a_warning(digits):
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SoftmaxRegression(solver="lbfgs").fit(*digits, on_epoch=calls.append, stop=lambda: len(calls) == 3)
    assert model.n_iter_ == 3 and calls == model.history_
    assert model.coef_.any()  # the third iteration's weights, not the zeros it started from


def test_a_fitted_lbfgs_model_saves_and_loads_with_its_parameters(digits, tmp_path):
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-2, max_iter=500, gtol=1e-5, dtype="float64").fit(*digits)
    model.save(tmp_path / "model.npz")
    loaded = SoftmaxRegression.load(tmp_path / "model.npz")
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    assert loaded.history_ == model.history_ and loaded.n_iter_ == model.n_iter_
    np.testing.assert_array_equal(loaded.predict(digits[0]), model.predict(digits[0]))
    loaded.set_params(warm_start=True).fit(*digits)  # already at the optimum: one more iteration at most
    assert loaded.n_iter_ <= model.n_iter_ + 1


def two_loop_direction(gradient, pairs, metric):
    """``-H g`` by Nocedal & Wright's two-loop recursion (Algorithm 7.4) over ``pairs`` ``(s, y)``, oldest first,
    from ``H0 = gamma diag(metric)``, ``gamma = s'y / y'My`` of the last pair."""
    q, alphas = gradient.copy(), []
    for s, y in reversed(pairs):
        alphas.append(s @ q / (s @ y))
        q -= alphas[-1] * y
    s, y = pairs[-1]
    r = (s @ y) / (y @ (metric * y)) * metric * q
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        r += (alpha - y @ r / (s @ y)) * s
    return -r


def quadratic_steps(n_steps, rejected=()):
    """``(thetas, gradients)``: ``n_steps + 1`` points of the convex quadratic ``x'Hx / 2`` in 8 dimensions and its
    gradients there (so ``y = H s`` and ``s'y > 0``), but for the steps numbered in ``rejected``, whose gradient
    change is made ``-s`` (``s'y < 0``)."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((8, 8))
    hessian = A @ A.T + np.eye(8)
    thetas = list(rng.standard_normal((n_steps + 1, 8)))
    gradients = [hessian @ thetas[0]]
    for step in range(n_steps):
        s = thetas[step + 1] - thetas[step]
        gradients.append(gradients[-1] + (-s if step in rejected else hessian @ s))
    return thetas, gradients


def stored(vector):
    """``vector`` as CurvaturePairs stores it, in float32."""
    return vector.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("n_steps, rejected", [(1, ()), (3, ()), (5, ()), (12, ()), (6, (5,)), (12, (2, 11))],
                         ids=["1 pair", "3 pairs", "5 pairs", "12 steps: the oldest 7 dropped",
                              "the last step's curvature negative", "two steps' curvature negative"])
def test_the_compact_direction_is_the_two_loop_recursion_of_the_kept_float32_pairs(n_steps, rejected):
    thetas, gradients = quadratic_steps(n_steps, rejected)
    metric = np.random.default_rng(8).uniform(0.1, 10, 8)
    pairs = _lbfgs.CurvaturePairs(5, gradients[0], metric, n_threads=1)
    np.testing.assert_array_equal(pairs.direction(), -metric * gradients[0])
    for step in range(n_steps):
        pairs.add_step(thetas[step], thetas[step + 1], gradients[step], gradients[step + 1])
    kept = [(stored(thetas[step + 1] - thetas[step]), stored(gradients[step + 1] - gradients[step]))
            for step in range(n_steps) if step not in rejected][-5:]
    assert len(pairs) == len(kept)
    np.testing.assert_allclose(pairs.direction(), two_loop_direction(gradients[-1], kept, metric), rtol=1e-10)
    pairs.clear()
    np.testing.assert_array_equal(pairs.direction(), -metric * gradients[-1])


@pytest.mark.parametrize("n", [0, 5, 3 * _lbfgs_passes.PIECE + 7], ids=["empty", "within a piece", "3 pieces and a part"])
def test_the_passes_over_the_pairs_are_numpys_float64_products_with_the_same_bits_on_any_thread_count(n):
    rng = np.random.default_rng(4)
    S, Y = rng.standard_normal((2, 6, n), dtype=np.float32)  # float32 pairs, as CurvaturePairs keeps them
    theta, new_theta, gradient, new_gradient = rng.standard_normal((4, n))
    metric = rng.uniform(0.1, 10, n)
    s_weights, y_weights = rng.standard_normal((2, 6))
    s_weights[4] = y_weights[1] = 0
    products, written = [], []
    for n_threads in (1, 2):
        S[2] = Y[2] = np.nan  # the free row: written before it is read
        products.append(_lbfgs_passes.pair_products(S, Y, 2, theta, new_theta, gradient, new_gradient, metric,
                                                    n_threads))
        written.append((S[2].copy(), Y[2].copy()))
    unread = S[4].copy(), Y[1].copy()
    S[4] = Y[1] = np.nan  # combine_pairs does not read a row whose weight is 0
    combined = [_lbfgs_passes.combine_pairs(S, Y, s_weights, y_weights, -0.5, new_gradient, metric, n_threads)
                for n_threads in (1, 2)]
    S[4], Y[1] = unread
    # The step and gradient change rounded to float32, and the products of the float32 values summed in float64.
    np.testing.assert_array_equal(S[2], (new_theta - theta).astype(np.float32))
    np.testing.assert_array_equal(Y[2], (new_gradient - gradient).astype(np.float32))
    S, Y = S.astype(np.float64), Y.astype(np.float64)
    s, y = S[2], Y[2]
    np.testing.assert_allclose(products[0][:2], [S @ y, S @ new_gradient], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(products[0][2:], [Y @ s, Y @ (metric * y), Y @ (metric * new_gradient)],
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(combined[0], s_weights @ S + metric * (y_weights @ Y - 0.5 * new_gradient),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(products[1], products[0])
    np.testing.assert_array_equal(written[1][0], written[0][0])
    np.testing.assert_array_equal(combined[1], combined[0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter ends the fits
def test_an_lbfgs_fit_has_the_same_bits_on_any_thread_count():
    rng = np.random.default_rng(5)
    X, y = rng.random((300, 3000)), rng.integers(0, 4, 300)  # 12,004 parameters: the solver's passes cut 3 pieces
    fits = [SoftmaxRegression(solver="lbfgs", alpha=1e-3, dtype="float64", max_iter=15, n_jobs=n_jobs).fit(X, y)
            for n_jobs in (1, 2)]
    np.testing.assert_array_equal(fits[1].coef_, fits[0].coef_)
    np.testing.assert_array_equal(fits[1].intercept_, fits[0].intercept_)
