"""``SoftmaxRegression``: a scikit-learn classifier of softmax regression over the compiled kernels."""

import json
import math
import numbers
import time

import numpy as np

from . import __version__
from . import kernels
from ._sklearn_compat import (
    BaseEstimator,
    ClassifierMixin,
    NotFittedError,
    check_classification_targets,
    validate_data,
)
from .kernels._validation import FLOAT_DTYPES, check_count, check_positive, default_num_threads

#: Version of the ``.npz`` layout written by :meth:`SoftmaxRegression.save`.
#: Format 2 names the parameters ``random_state`` and ``n_jobs``; format 1 called them ``seed`` and ``threads``.
MODEL_FORMAT_VERSION = 2
_FORMAT_1_PARAM_NAMES = {"seed": "random_state", "threads": "n_jobs"}
# An epoch runs as a few kernel calls of this many batches each, so that a
# progress callback can run between them; the batches, and so the results,
# are the same as one call for the whole epoch.
BATCHES_PER_CALL = 32
_PIXEL_SCALE = 1 / 255


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression trained by minibatch SGD on the softmax_fast kernels.

    A scikit-learn classifier: with scikit-learn (>= 1.6) installed it inherits
    ``sklearn.base.ClassifierMixin`` and ``BaseEstimator`` and validates its
    input with ``sklearn.utils.validation.validate_data``, so it passes
    ``sklearn.utils.estimator_checks`` and works in ``Pipeline``,
    ``GridSearchCV``, ``clone``, ``pickle`` and ``cross_val_score``. Inheriting,
    rather than re-implementing the protocol, keeps it in step with whatever
    the installed scikit-learn expects of an estimator (tags, metadata
    routing, DataFrame feature names, ``repr``). scikit-learn stays optional:
    without it the same class is built on the stand-ins of
    :mod:`softmax_fast._sklearn_compat` (``get_params``/``set_params``, accuracy
    score, NumPy input checks with scikit-learn's messages).

    Parameters (the defaults are the seed experiment's):

    - ``lr``: learning rate of plain SGD, a finite number > 0.
    - ``epochs``: passes over the training data in :meth:`fit`, an integer >= 0.
    - ``batch_size``: rows per SGD step; the last batch of an epoch may be shorter
      and its gradient is the mean over its own rows.
    - ``backend``: ``"auto"`` (the fastest available compiled backend), ``"cython"``,
      ``"numba"`` or ``"numpy"`` (the reference).
    - ``dtype``: ``"float32"`` or ``"float64"``, the dtype of the weights and of
      the arithmetic.
    - ``n_jobs``: threads of the compiled kernels. ``None``: the kernels' default,
      :func:`softmax_fast.kernels.get_num_threads` (all CPUs this process may
      use, like scikit-learn's own OpenMP estimators, rather than 1 as for
      scikit-learn's joblib ``n_jobs``); ``-1``: all CPUs, ``-2``: all but one,
      and so on (at least 1). Results do not depend on it.
    - ``random_state``: seeds the initial weights and the shuffling. An int
      ``s`` draws the weights as ``RandomState(s).randn(d, k) * 0.01`` (``42``
      is the seed experiment's); ``None`` uses NumPy's global ``RandomState``;
      a ``numpy.random.RandomState`` or ``Generator`` is used, and advanced, as
      it is.
    - ``shuffle``: visit the training rows in a new random order each epoch.

    Features ``X (n, d)``: ``uint8`` is taken as pixel intensities, scaled by
    1/255 inside the kernels without a float copy (when C-contiguous); any
    other real or integer dtype (and object arrays of numbers) is converted
    once to ``dtype``, C-ordered, and must be finite.

    Labels ``y (n,)``: any values that sort (integers that need not be
    ``0..k-1``, strings, booleans); ``classes_`` holds them sorted, the kernels
    see their indices ``0..k-1`` and :meth:`predict` returns the labels. At
    least 2 classes. A column vector ``(n, 1)`` is raveled with a
    ``DataConversionWarning``; any other 2-D ``y`` (a one-hot matrix too) is
    rejected, as scikit-learn's convention reads a 2-D indicator ``y`` as
    multilabel: pass ``Y.argmax(axis=1)``.

    Fitted attributes: ``coef_ (d, k)`` (note: features by classes, the
    transpose of scikit-learn's linear models), ``intercept_ (k,)``, both of
    ``dtype``; ``classes_ (k,)``; ``n_features_in_`` (and ``feature_names_in_``
    when fitted on a DataFrame with string column names, with scikit-learn);
    ``n_iter_``, the epochs trained since the weights were initialised;
    ``history_`` (one dict per epoch: ``epoch``, ``train_loss`` (mean of the
    epoch's batch losses), ``train_accuracy`` (each row predicted before its
    batch's update), ``test_loss``, ``test_accuracy`` (``None`` without
    validation data) and ``seconds`` of training). Methods that need them
    raise ``NotFittedError`` before :meth:`fit`.
    """

    def __init__(self, lr=0.2, epochs=10, batch_size=128, backend="auto", dtype="float32", n_jobs=None,
                 random_state=42, shuffle=False):
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.backend = backend
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.shuffle = shuffle

    # -- training -------------------------------------------------------------------------------

    def fit(self, X, y, validation_data=None, *, on_batches=None, on_epoch=None):
        """Train from fresh weights for ``epochs`` epochs on ``X (n, d)``, ``y (n,)``; returns ``self``.

        ``validation_data=(X_test, y_test)`` is scored after every epoch (its
        labels must be among ``y``'s). ``on_batches(epoch, batches_done,
        batches_total)`` is called as an epoch advances and ``on_epoch(record)``
        after each epoch with its ``history_`` entry.
        """
        self._check_params()
        X, y = validate_data(self, X, y, reset=True, dtype=_kernel_dtypes(self.dtype), order="C")
        check_classification_targets(y)
        classes, y_indices = np.unique(y, return_inverse=True)
        self._init_model(X.shape[1], classes)
        validation = None if validation_data is None else self._validation_arrays(*validation_data)
        backend = kernels.get_backend(self.backend)
        for _ in range(self.epochs):
            self._train_one_epoch(backend, X, y_indices, validation, on_batches, on_epoch)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X (n, d)``, ``y (n,)`` from the current weights (fresh ones at first); returns ``self``.

        ``classes`` must list every label on the first call when ``y`` may not
        show them all; on a later call it must equal ``classes_``.
        """
        self._check_params()
        first_call = not hasattr(self, "coef_")
        dtype = self.dtype if first_call else self.coef_.dtype
        X, y = validate_data(self, X, y, reset=first_call, dtype=_kernel_dtypes(dtype), order="C")
        check_classification_targets(y)
        if first_call:
            self._init_model(X.shape[1], np.unique(y if classes is None else classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                             f"partial_fit, {self.classes_.tolist()}")
        self._train_one_epoch(kernels.get_backend(self.backend), X, self._label_indices(y), None, None, None)
        return self

    def _check_params(self):
        """Reject bad parameters before any data is touched; each message names the parameter."""
        check_positive("lr", self.lr)
        check_count("batch_size", self.batch_size)
        _kernel_threads(self.n_jobs)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral) or self.epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        seed = self.random_state
        if not (seed is None or isinstance(seed, (np.random.RandomState, np.random.Generator))
                or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed < 2**32)):
            raise ValueError("random_state must be None, an integer in [0, 2**32), a numpy.random.RandomState "
                             f"or a numpy.random.Generator, got {seed!r}")

    def _init_model(self, n_features, classes):
        """Set ``classes_``, fresh weights, the RNG and an empty history."""
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, "
                             f"but y holds only one class: {classes.tolist()[0]!r}")
        self.classes_ = classes
        self._rng = _random_generator(self.random_state)
        self.coef_ = (self._rng.standard_normal((n_features, len(classes))) * 0.01).astype(self.dtype)
        self.intercept_ = np.zeros(len(classes), dtype=self.dtype)
        self.history_ = []
        self.n_iter_ = 0

    def _train_one_epoch(self, backend, X, y, validation, on_batches, on_epoch):
        """One epoch of SGD on kernel-ready ``X (n, d)`` and class indices ``y (n,)``; appends to ``history_``."""
        n = X.shape[0]
        if self.shuffle:
            order = self._rng.permutation(n)
            X, y = X[order], y[order]
        n_threads = _kernel_threads(self.n_jobs)
        total_batches = math.ceil(n / self.batch_size)
        rows_per_call = BATCHES_PER_CALL * self.batch_size
        loss_sum, n_correct, batches_done = 0.0, 0, 0
        started = time.perf_counter()
        for start in range(0, n, rows_per_call):
            rows = slice(start, start + rows_per_call)
            loss, accuracy = backend.train_epoch(
                X[rows], y[rows], self.coef_, self.intercept_, self.lr, self.batch_size, _scale_of(X),
                n_threads=n_threads,
            )
            n_rows = len(y[rows])
            n_batches = math.ceil(n_rows / self.batch_size)
            loss_sum += loss * n_batches
            n_correct += round(accuracy * n_rows)
            batches_done += n_batches
            if on_batches is not None:
                on_batches(len(self.history_) + 1, batches_done, total_batches)
        record = {
            "epoch": len(self.history_) + 1,
            "train_loss": loss_sum / batches_done,
            "train_accuracy": n_correct / n,
            "test_loss": None,
            "test_accuracy": None,
            "seconds": time.perf_counter() - started,
        }
        if validation is not None:
            record["test_loss"], record["test_accuracy"] = self._loss_and_accuracy(backend, *validation)
        self.history_.append(record)
        self.n_iter_ = len(self.history_)
        if on_epoch is not None:
            on_epoch(record)

    def _validation_arrays(self, X_test, y_test):
        """Kernel-ready ``(X_test, class indices of y_test)``, checked against the training data."""
        X_test, y_test = validate_data(self, X_test, y_test, reset=False, dtype=_kernel_dtypes(self.coef_.dtype),
                                       order="C")
        return X_test, self._label_indices(y_test)

    def _loss_and_accuracy(self, backend, X, y_indices):
        """Mean cross-entropy and accuracy on kernel-ready ``X (n, d)`` and class indices ``y (n,)``."""
        n_threads = _kernel_threads(self.n_jobs)
        loss, _, _ = backend.loss_and_grad(X, y_indices, self.coef_, self.intercept_, _scale_of(X),
                                           n_threads=n_threads)
        predicted = backend.predict(X, self.coef_, self.intercept_, _scale_of(X), n_threads=n_threads)
        return loss, float(np.mean(predicted == y_indices))

    # -- prediction -----------------------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities ``(n, k)`` of ``coef_``'s dtype for ``X (n, d)``, columns in ``classes_``'s order."""
        X = self._prediction_features(X)
        return kernels.get_backend(self.backend).predict_proba(
            X, self.coef_, self.intercept_, _scale_of(X), n_threads=_kernel_threads(self.n_jobs))

    def predict(self, X):
        """The most probable class of each row of ``X (n, d)``: ``(n,)`` labels from ``classes_``."""
        X = self._prediction_features(X)
        indices = kernels.get_backend(self.backend).predict(
            X, self.coef_, self.intercept_, _scale_of(X), n_threads=_kernel_threads(self.n_jobs))
        return self.classes_[indices]

    def _prediction_features(self, X):
        """``X`` checked against the fitted model and ready for the kernels; ``NotFittedError`` before ``fit``."""
        self._check_is_fitted()
        return validate_data(self, X, reset=False, dtype=_kernel_dtypes(self.coef_.dtype), order="C")

    def _check_is_fitted(self):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _label_indices(self, y):
        """Positions in ``classes_`` of the 1-D labels ``y``, as ``np.intp``; ``ValueError`` for an unknown label."""
        indices = np.minimum(np.searchsorted(self.classes_, y), len(self.classes_) - 1)
        unknown = self.classes_[indices] != y
        if np.any(unknown):
            raise ValueError(f"y holds labels the model was not fitted with, e.g. {y[unknown].tolist()[0]!r}; "
                             f"known: {self.classes_.tolist()}")
        return indices.astype(np.intp)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path):
        """Write the fitted model to ``path`` (``.npz``, readable without pickle).

        The parameters are stored as JSON; a ``RandomState`` or ``Generator``
        ``random_state`` is stored as ``None`` (its state is not part of the
        model). :meth:`load` restores every fitted attribute except
        ``feature_names_in_``.
        """
        self._check_is_fitted()
        np.savez(
            path,
            format_version=MODEL_FORMAT_VERSION,
            softmax_fast_version=__version__,
            coef=self.coef_,
            intercept=self.intercept_,
            # Labels in an object array are strings (scikit-learn's and our target checks reject any other
            # objects); as a NumPy string array they load without pickle.
            classes=np.asarray(self.classes_.tolist()),
            params=json.dumps(self._json_params()),
            history=json.dumps(self.history_),
        )

    def _json_params(self):
        """``get_params()`` as JSON holds them: NumPy scalars as Python ones, a random generator as ``None``."""
        params = self.get_params()
        if isinstance(params["random_state"], (np.random.RandomState, np.random.Generator)):
            params["random_state"] = None
        return {name: value.item() if isinstance(value, np.generic) else value for name, value in params.items()}

    @classmethod
    def load(cls, path):
        """A model written by :meth:`save` (format 1 or 2). Raises ``ValueError`` for a file that is not one."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                contents = {name: saved[name] for name in saved.files}
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} is not a softmax_fast model file: {exc}") from exc
        required = {"format_version", "coef", "intercept", "classes", "params", "history"}
        if not required <= contents.keys():
            raise ValueError(f"{path} is not a softmax_fast model file: missing {sorted(required - contents.keys())}")
        format_version = int(contents["format_version"])
        if format_version not in (1, MODEL_FORMAT_VERSION):
            raise ValueError(f"{path} has model format {format_version}; "
                             f"this softmax_fast reads formats 1 to {MODEL_FORMAT_VERSION}")
        coef, intercept, classes = contents["coef"], contents["intercept"], contents["classes"]
        if (coef.ndim != 2 or coef.dtype not in FLOAT_DTYPES or intercept.dtype != coef.dtype
                or intercept.shape != (coef.shape[1],) or classes.shape != (coef.shape[1],)):
            raise ValueError(f"{path} has inconsistent arrays: coef {coef.shape} {coef.dtype}, "
                             f"intercept {intercept.shape} {intercept.dtype}, classes {classes.shape}")
        params = json.loads(str(contents["params"]))
        if format_version == 1:
            params = {_FORMAT_1_PARAM_NAMES.get(name, name): value for name, value in params.items()}
        model = cls(**params)
        model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
        model.n_features_in_ = coef.shape[0]
        model.history_ = json.loads(str(contents["history"]))
        model.n_iter_ = len(model.history_)
        model._rng = _random_generator(model.random_state)
        return model


def _kernel_dtypes(dtype):
    """``validate_data``'s ``dtype``: ``uint8`` (pixels) and ``dtype`` are kept, anything else becomes ``dtype``."""
    return [np.dtype(dtype), np.dtype(np.uint8)]


def _scale_of(X):
    """The kernels' feature scale for kernel-ready ``X``: 1/255 for ``uint8`` pixels, else 1."""
    return _PIXEL_SCALE if X.dtype == np.uint8 else 1.0


def _kernel_threads(n_jobs):
    """The kernels' ``n_threads`` for ``n_jobs``: ``None`` stays ``None`` (their default), ``-j`` is CPUs + 1 - j."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a nonzero integer (-1: all CPUs), got {n_jobs!r}")
    return int(n_jobs) if n_jobs > 0 else max(default_num_threads() + 1 + int(n_jobs), 1)


def _random_generator(random_state):
    """The random generator ``random_state`` stands for (see :class:`SoftmaxRegression`); checked by ``fit``."""
    if random_state is None:
        # NumPy's global RandomState, the one np.random.seed seeds (as scikit-learn's check_random_state(None)).
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    return np.random.RandomState(random_state)
