"""What :class:`~softmax_fast.SoftmaxRegression` takes from scikit-learn, or stand-ins when it is not installed.

scikit-learn is an optional dependency (``pip install "softmax_fast[sklearn]"``).
With scikit-learn >= 1.6 installed, the names this module exports are
scikit-learn's own: ``BaseEstimator``, ``ClassifierMixin``, ``NotFittedError``,
``DataConversionWarning``, ``ConvergenceWarning``, ``validate_data`` and
``check_classification_targets``.
So the estimator is a scikit-learn estimator in every respect that scikit-learn
defines (tags, ``clone``, ``repr``, metadata routing, DataFrame feature names,
sparse-input errors), in whatever form the installed version gives them.

Without scikit-learn (or with one older than 1.6, which warns) they are the
``Standalone*`` stand-ins below, enough for NumPy arrays and array-likes:
``get_params``/``set_params``, accuracy as the score, and the input checks
(2-D, non-empty, numeric, finite, ``n_features_in_``, 1-D labels) with
scikit-learn's messages.
"""

import inspect
import re
import warnings

import numpy as np

from .kernels._validation import is_sparse

#: The oldest scikit-learn with ``sklearn.utils.validation.validate_data`` and ``__sklearn_tags__``.
MIN_SKLEARN_VERSION = (1, 6)
# validate_data's marker for "this argument was not passed" (y may be None, which is an error).
_NOT_PASSED = "no_validation"
# The bytes of X whose finiteness is checked at a time.
_FINITE_CHECK_BYTES = 16 << 20


class StandaloneEstimator:
    """scikit-learn's parameter protocol for an estimator whose parameters are plain values.

    The parameters are the arguments of the subclass's ``__init__``, stored
    unchanged under their own names.
    """

    @classmethod
    def _get_param_names(cls):
        return sorted(name for name in inspect.signature(cls.__init__).parameters if name != "self")

    def get_params(self, deep=True):
        """The constructor's parameters, ``{name: value}`` (``deep`` is accepted; no parameter is an estimator)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor parameters by name; returns ``self``. Raises ``ValueError`` for an unknown name."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self


class StandaloneClassifierMixin:
    """The score of scikit-learn's classifiers: mean accuracy."""

    def score(self, X, y):
        """Fraction of the rows of ``X (n, d)`` whose prediction equals ``y (n,)``, a float."""
        return float(np.mean(self.predict(X) == _column_or_1d(y)))


class StandaloneNotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (the bases of scikit-learn's ``NotFittedError``)."""


class StandaloneDataConversionWarning(UserWarning):
    """Input data was converted to another form (scikit-learn's ``DataConversionWarning``)."""


class StandaloneConvergenceWarning(UserWarning):
    """An iterative solver stopped before it converged (scikit-learn's ``ConvergenceWarning``)."""


def standalone_validate_data(estimator, X, y=_NOT_PASSED, *, reset, dtype, order, accept_sparse=False):
    """Checked ``X`` (``(X, y)`` when ``y`` is passed), as ``sklearn.utils.validation.validate_data`` returns it.

    ``X`` becomes a 2-D, non-empty array of one of the ``dtype`` list (kept if
    it has one of them, else converted to the first), in ``order``, finite; a
    scipy.sparse ``X``, when ``accept_sparse`` names a format (``"csr"``), a
    matrix of that format whose data is checked so.
    ``reset`` sets ``estimator.n_features_in_``; otherwise ``X`` must have that
    many columns. ``y`` becomes 1-D (a column vector is raveled with a
    warning), one label per row of ``X``.
    """
    name = type(estimator).__name__
    if y is None:
        raise ValueError(f"This {name} estimator requires y to be passed, but the target y is None.")
    X = _checked_sparse(X, dtype, accept_sparse, name) if is_sparse(X) else _checked_features(X, dtype, order, name)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting "
                         f"{estimator.n_features_in_} features as input.")
    if isinstance(y, str) and y == _NOT_PASSED:
        return X
    y = _column_or_1d(y)
    if len(y) != X.shape[0]:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: {[X.shape[0], len(y)]}")
    return X, y


def _checked_features(X, dtype, order, name):
    X = np.asarray(X)
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if X.ndim != 2:
        raise ValueError(f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either using "
                         "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
                         "if it contains a single sample.")
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise ValueError(f"Found array with 0 {what}(s) (shape={X.shape}) while a minimum of 1 "
                             f"is required by {name}.")
    X = np.asarray(X, dtype=None if X.dtype in dtype else dtype[0], order=order)
    if X.dtype.kind == "f":
        # A block of rows at a time: a mask of all of X would be as large as X (a memory-mapped file, say).
        step = max(1, _FINITE_CHECK_BYTES // (X.shape[1] * X.itemsize))
        blocks = [slice(start, start + step) for start in range(0, len(X), step)]
        if not all(np.isfinite(X[rows]).all() for rows in blocks):
            if any(np.isnan(X[rows]).any() for rows in blocks):
                raise ValueError("Input X contains NaN.")
            raise ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")
    return X


def _checked_sparse(X, dtype, accept_sparse, name):
    if not accept_sparse:
        raise TypeError(f"Sparse data was passed for X, but dense data is required by {name}.")
    X = X.asformat(accept_sparse)
    _checked_features(X.data.reshape(-1, 1) if X.nnz else np.zeros((1, 1)), dtype, "C", name)  # finite, numeric
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] == 0:
            raise ValueError(f"Found array with 0 {what}(s) (shape={X.shape}) while a minimum of 1 "
                             f"is required by {name}.")
    return X if X.dtype in dtype else X.astype(dtype[0])


def _column_or_1d(y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                      "of y to (n_samples, ), for example using ravel().", StandaloneDataConversionWarning,
                      stacklevel=4)
        return y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead.")
    return y


def standalone_check_classification_targets(y):
    """Raise ``ValueError`` unless the 1-D ``y`` holds class labels: no NaN, inf, non-integral floats or objects.

    An object array counts as labels when its first entry is a string, as in scikit-learn.
    """
    if y.dtype == object and y.size and not isinstance(y[0], str):
        raise ValueError("Unknown label type: unknown. Maybe you are trying to fit a classifier, which expects "
                         "discrete classes on a regression target with continuous values.")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        if not np.array_equal(y, np.round(y)):
            raise ValueError("Unknown label type: continuous. Maybe you are trying to fit a classifier, "
                             "which expects discrete classes on a regression target with continuous values.")


def _usable_sklearn():
    """Whether scikit-learn >= MIN_SKLEARN_VERSION is installed; warns when an older one is.

    Only scikit-learn itself being absent counts as not installed: an error
    inside its import (a broken installation) propagates.
    """
    try:
        import sklearn
    except ModuleNotFoundError as exc:
        if exc.name != "sklearn":
            raise
        return False
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", sklearn.__version__).groups())
    if version < MIN_SKLEARN_VERSION:
        warnings.warn(f"softmax_fast works with scikit-learn >= {'.'.join(map(str, MIN_SKLEARN_VERSION))}, "
                      f"found {sklearn.__version__}: SoftmaxRegression is not a scikit-learn estimator "
                      f"until it is upgraded (pip install 'softmax_fast[sklearn]')", UserWarning, stacklevel=2)
        return False
    return True


HAVE_SKLEARN = _usable_sklearn()

if HAVE_SKLEARN:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import validate_data
else:
    BaseEstimator, ClassifierMixin = StandaloneEstimator, StandaloneClassifierMixin
    NotFittedError, DataConversionWarning = StandaloneNotFittedError, StandaloneDataConversionWarning
    ConvergenceWarning = StandaloneConvergenceWarning
    validate_data, check_classification_targets = standalone_validate_data, standalone_check_classification_targets
