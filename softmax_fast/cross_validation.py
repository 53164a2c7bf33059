"""``SoftmaxRegressionCV``: the L2 penalty ``alpha`` chosen by cross-validation, each fold's fits on one warm path.

This module owns the grid of penalties, the folds, the path of fits along the
grid (largest penalty first, each fit warm-started from the last, as
scikit-learn's ``LogisticRegressionCV`` walks its ``Cs``) and the choice and
refit of the best. How one fit trains is :class:`SoftmaxRegression`'s.

It needs scikit-learn (the folds and the scorers are its ``check_cv`` and
``check_scoring``): without it, ``fit`` raises ``ImportError`` and says so.
"""

import inspect
import warnings

import numpy as np

from ._sklearn_compat import ConvergenceWarning
from .estimator import SoftmaxRegression
from .kernels._validation import is_sparse

#: ``alphas=N``: the grid of ``N`` penalties that ``LogisticRegressionCV(Cs=N)`` searches, ``alpha = 1 / (n * C)``
#: for ``C`` in ``np.logspace(*C_EXPONENTS, N)`` and ``n`` the rows of the data fitted.
C_EXPONENTS = (-4, 4)


def _with_inherited_parameters(init):
    """``init``, its signature its own keyword parameters followed by every other parameter of ``SoftmaxRegression``.

    ``init`` takes its own parameters (which may give an inherited one another
    default) and ``**params`` for the other inherited ones.
    scikit-learn reads an estimator's parameters from its ``__init__``'s
    signature; built from ``SoftmaxRegression``'s, it holds every parameter
    added there without writing the list twice. All of them are keyword-only.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    self, *own = [parameter for parameter in inspect.signature(init).parameters.values()
                  if parameter.kind != inspect.Parameter.VAR_KEYWORD]
    inherited = [parameter for parameter in list(inspect.signature(SoftmaxRegression.__init__).parameters.values())[1:]
                 if parameter.name not in {own_parameter.name for own_parameter in own}]
    init.__signature__ = inspect.Signature([self] + [parameter.replace(kind=keyword) for parameter in own + inherited])
    return init


class SoftmaxRegressionCV(SoftmaxRegression):
    """:class:`SoftmaxRegression` with ``alpha`` chosen by cross-validation over a grid, then refitted on all rows.

    Parameters (keyword-only), besides every parameter of :class:`SoftmaxRegression`
    (but ``alpha``, which the search chooses, and ``warm_start``, which each
    path sets for itself: both are ignored):

    - ``alphas``: the penalties to try, a list of numbers ``>= 0``, or an int
      ``N`` for ``LogisticRegressionCV(Cs=N)``'s grid (see :data:`C_EXPONENTS`).
    - ``cv``: the folds, an int (stratified, unshuffled, as scikit-learn's
      ``check_cv`` makes them for a classifier) or a scikit-learn splitter or
      iterable of ``(train, validation)`` index pairs.
    - ``scoring``: ``None`` (accuracy, :meth:`score`) or a scikit-learn
      scoring name or callable ``scorer(estimator, X, y)``; higher is better.
    - ``solver``: ``"lbfgs"`` by default here (each fit reaches the optimum of
      its penalty, which a grid of penalties compares), or ``"sgd"``.

    On each fold, one model fits the path from the largest penalty to the
    smallest, each fit starting from the weights of the last (for ``"sgd"``,
    each fit trains ``epochs`` more epochs from them). ``alpha_`` is the
    penalty with the best mean validation score (the largest of ties), and
    the final model is one fit on all rows at ``alpha_``, started from the
    mean of the folds' weights at ``alpha_`` (of the folds whose training rows
    hold every class; from the usual start if none does), as
    ``LogisticRegressionCV`` refits.

    Fitted attributes, besides :class:`SoftmaxRegression`'s: ``alphas_``
    ``(n_alphas,)`` (the grid, largest first), ``scores_`` ``(n_folds,
    n_alphas)`` (each fold's validation score), ``alpha_``.
    """

    @_with_inherited_parameters
    def __init__(self, alphas=10, cv=5, scoring=None, solver="lbfgs", **params):
        super().__init__(solver=solver, **params)
        self.alphas = alphas
        self.cv = cv
        self.scoring = scoring

    def fit(self, X, y, sample_weight=None):
        """Score every penalty on every fold, choose ``alpha_``, refit on all rows; returns ``self``."""
        try:
            from sklearn.metrics import check_scoring
            from sklearn.model_selection import check_cv
            from sklearn.utils import assert_all_finite, column_or_1d
        except ImportError as exc:
            raise ImportError("SoftmaxRegressionCV needs scikit-learn for its folds and scorers: "
                              "pip install scikit-learn") from exc
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)  # a column vector, as SoftmaxRegression takes it, so the folds are the same
        if y.dtype.kind in "fc":
            assert_all_finite(y, input_name="y")  # before the folds, which would cast NaN labels to integers
        # A sparse X as CSR (rows are taken from it fold by fold), a DataFrame as it is, anything else an array.
        X = X.tocsr() if is_sparse(X) else X if hasattr(X, "iloc") else np.asarray(X)
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y))  # raises on empty data
        alphas = self._alpha_grid(len(y))
        scorer = _accuracy if self.scoring is None else check_scoring(self, scoring=self.scoring)
        scores = np.empty((len(folds), len(alphas)))
        # Per penalty, the sum of the weights of the folds whose models know every class, and their count.
        classes, weight_sums, n_summed = np.unique(y), [(0.0, 0.0)] * len(alphas), 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            for fold, (train, validation) in enumerate(folds):
                rows = _rows_of(X, train), y[train]
                weights = None if sample_weight is None else np.asarray(sample_weight)[train]
                for index, model in enumerate(self._path(alphas, *rows, weights)):
                    scores[fold, index] = scorer(model, _rows_of(X, validation), y[validation])
                    if index == 0:  # one model walks the path: its classes are the fold's
                        knows_every_class = np.array_equal(model.classes_, classes)
                        n_summed += knows_every_class
                    if knows_every_class:
                        W, b = weight_sums[index]
                        weight_sums[index] = (W + model.coef_.astype(np.float64),
                                              b + model.intercept_.astype(np.float64))
        _warn_once(caught, len(folds) * len(alphas))
        best = int(np.argmax(scores.mean(axis=0)))
        # The refit, as LogisticRegressionCV's: one fit at alpha_ from the mean of the folds' weights there.
        model = self._model(alphas[best])
        rows = model._fit_inputs(X, y, sample_weight)
        if n_summed:
            W, b = weight_sums[best]
            model.coef_, model.intercept_ = (W / n_summed).astype(model.dtype), (b / n_summed).astype(model.dtype)
        model._fit_checked(*rows)
        # The refitted model's state (weights, classes, history, ...) becomes this estimator's; its parameters stay.
        params = self.get_params()
        vars(self).update({name: value for name, value in vars(model).items() if name not in params})
        self.alphas_, self.scores_, self.alpha_ = alphas, scores, float(alphas[best])
        return self

    def _alpha_grid(self, n):
        """The penalties to try, ``(n_alphas,)`` float64, largest first; ``n`` the rows for an int ``alphas``."""
        if isinstance(self.alphas, (int, np.integer)) and not isinstance(self.alphas, bool):
            if self.alphas < 1:
                raise ValueError(f"alphas must be an int >= 1 or a list of penalties, got {self.alphas}")
            return np.sort(1 / (n * np.logspace(*C_EXPONENTS, self.alphas)))[::-1]
        alphas = np.asarray(self.alphas, dtype=np.float64)
        if alphas.ndim != 1 or len(alphas) == 0 or not np.all(np.isfinite(alphas) & (alphas >= 0)):
            raise ValueError(f"alphas must be an int >= 1 or a non-empty list of finite penalties >= 0, "
                             f"got {self.alphas!r}")
        return np.sort(alphas)[::-1]

    def _model(self, alpha):
        """A new :class:`SoftmaxRegression` with this estimator's parameters at ``alpha``, its parameters checked."""
        model = SoftmaxRegression(**{name: getattr(self, name) for name in SoftmaxRegression().get_params()})
        model.set_params(alpha=float(alpha), warm_start=False)
        model._check_params()
        return model

    def _path(self, alphas, X, y, sample_weight):
        """Yield one :class:`SoftmaxRegression` fitted at each of ``alphas`` in turn, each fit warm-started from the
        last (the same model object, refitted; the rows are checked once, by its first fit)."""
        model = self._model(alphas[0])
        rows = model._fit_inputs(X, y, sample_weight)  # checked once for the whole path
        for alpha in alphas:
            model.alpha = float(alpha)
            yield model._fit_checked(*rows)


def _rows_of(X, rows):
    """The rows ``rows`` of ``X``, a NumPy array or a DataFrame."""
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _accuracy(model, X, y):
    """The fraction of the rows ``X`` that ``model`` classifies as ``y``: ``score``'s accuracy, without
    scikit-learn's checks of ``y`` (which took longer than a fit's iteration on ``load_digits``)."""
    return float(np.mean(model.predict(X) == y))


def _warn_once(caught, n_fits):
    """Warn again every warning in ``caught`` but the folds' ConvergenceWarnings, which make one warning."""
    unconverged = [warning for warning in caught if issubclass(warning.category, ConvergenceWarning)]
    for warning in caught:
        if warning not in unconverged:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if unconverged:
        warnings.warn(f"{len(unconverged)} of the {n_fits} fits on the folds stopped before converging (the first: "
                      f"{unconverged[0].message}); their scores are those of the weights they reached",
                      ConvergenceWarning, stacklevel=3)
