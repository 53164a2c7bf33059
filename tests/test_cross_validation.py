"""SoftmaxRegressionCV: its parameters, the grid, the folds' scores along warm paths, the refit."""

import inspect

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from softmax_fast import SoftmaxRegression, SoftmaxRegressionCV
from softmax_fast._sklearn_compat import ConvergenceWarning
from softmax_fast.cross_validation import C_EXPONENTS


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def test_the_parameters_are_its_own_and_every_one_of_softmax_regressions():
    own = list(inspect.signature(SoftmaxRegressionCV).parameters)
    inherited = SoftmaxRegression().get_params()
    assert own[:4] == ["alphas", "cv", "scoring", "solver"]
    assert set(own[3:]) == set(inherited)
    assert SoftmaxRegressionCV().get_params() == inherited | {"alphas": 10, "cv": 5, "scoring": None,
                                                              "solver": "lbfgs"}


def test_an_int_grid_is_logistic_regression_cvs_cs_as_penalties_largest_first():
    alphas = SoftmaxRegressionCV(alphas=5)._alpha_grid(200)
    np.testing.assert_allclose(alphas, 1 / (200 * np.logspace(*C_EXPONENTS, 5)))
    assert np.all(np.diff(alphas) < 0)


@pytest.mark.parametrize("alphas", [0, -1, [], [1e-3, -1e-3], [np.nan], [[1e-3]]])
def test_a_bad_grid_is_refused(digits, alphas):
    with pytest.raises(ValueError, match="alphas must be"):
        SoftmaxRegressionCV(alphas=alphas).fit(*digits)


def test_scores_every_alpha_on_every_fold_and_refits_the_best(digits):
    X, y = digits
    folds = StratifiedKFold(3)
    model = SoftmaxRegressionCV(alphas=[1e-4, 1e-1, 1e-2], cv=folds, solver="sgd", epochs=5).fit(X, y)
    np.testing.assert_array_equal(model.alphas_, [1e-1, 1e-2, 1e-4])
    assert model.scores_.shape == (3, 3)
    assert model.alpha_ == model.alphas_[np.argmax(model.scores_.mean(axis=0))]
    # Each fold's scores are those of one model walked down the grid, each fit going on from the last.
    best = list(model.alphas_).index(model.alpha_)
    coefs, intercepts = [], []
    for fold, (train, validation) in enumerate(folds.split(X, y)):
        path = SoftmaxRegression(epochs=5)
        for index, alpha in enumerate(model.alphas_):
            path.set_params(alpha=alpha, warm_start=index > 0).fit(X[train], y[train])
            assert model.scores_[fold, index] == path.score(X[validation], y[validation])
            if index == best:
                coefs.append(path.coef_.astype(np.float64))
                intercepts.append(path.intercept_.astype(np.float64))
    # The final model: one fit on every row at alpha_, from the mean of the folds' weights there.
    refit = SoftmaxRegression(epochs=0, alpha=model.alpha_).fit(X, y)
    refit.coef_ = np.mean(coefs, axis=0).astype(np.float32)
    refit.intercept_ = np.mean(intercepts, axis=0).astype(np.float32)
    refit.set_params(epochs=5, warm_start=True).fit(X, y)
    np.testing.assert_array_equal(model.coef_, refit.coef_)
    np.testing.assert_array_equal(model.predict(X), refit.predict(X))
    assert model.get_params()["alpha"] == 0.0  # fit changes no parameter


def test_fit_without_y_says_it_needs_one(digits):
    with pytest.raises(ValueError, match="requires y to be passed, but the target y is None"):
        SoftmaxRegressionCV().fit(digits[0], None)


def test_finds_the_interior_alpha_and_the_scores_of_logistic_regression_cv_on_the_same_folds():
    # 200 features, 4 of them informative, 180 training rows a fold: strong penalties underfit, weak ones overfit.
    X, y = make_classification(n_samples=240, n_features=200, n_informative=4, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    alphas, folds = np.logspace(3, -5, 9), StratifiedKFold(4)
    model = SoftmaxRegressionCV(alphas=alphas, cv=folds, dtype="float64", max_iter=1000, gtol=1e-8).fit(X, y)
    # scikit-learn's LogisticRegression on each fold minimizes the same objective for C = 1 / (n_train * alpha).
    reference = [[LogisticRegression(C=1 / (len(train) * alpha), max_iter=10_000, tol=1e-8).fit(X[train], y[train])
                  .score(X[validation], y[validation]) for alpha in alphas] for train, validation in folds.split(X, y)]
    np.testing.assert_allclose(model.scores_, reference)
    best = list(model.alphas_).index(model.alpha_)
    assert 0 < best < len(alphas) - 1
    mean_scores = model.scores_.mean(axis=0)
    assert mean_scores[best] >= max(mean_scores[0], mean_scores[-1]) + 0.05


def test_the_folds_unconverged_fits_make_one_warning(digits):
    with pytest.warns(ConvergenceWarning) as caught:
        SoftmaxRegressionCV(alphas=3, cv=3, max_iter=2).fit(*digits)
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, ConvergenceWarning)]
    assert len(messages) == 2  # the folds' nine fits, and the refit
    assert messages[0].startswith("9 of the 9 fits on the folds stopped before converging (the first: L-BFGS")
    assert caught[0].filename == __file__
