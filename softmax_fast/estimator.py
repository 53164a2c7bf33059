"""``SoftmaxRegression``: a scikit-learn-style softmax-regression classifier over the compiled kernels."""

import json
import math
import numbers
import time

import numpy as np

from . import __version__
from . import kernels
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


class SoftmaxRegression:
    """Multinomial logistic regression trained by minibatch SGD on the softmax_fast kernels.

    Parameters (the defaults are the seed experiment's):

    - ``lr``: learning rate of plain SGD.
    - ``epochs``: passes over the training data in :meth:`fit`.
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

    Features: ``uint8`` ``X`` is taken as pixel intensities, scaled by 1/255 inside
    the kernels without a float copy; any other real ``X`` is converted once to
    ``dtype`` and must be finite. Labels: integers of any values (``classes_``
    holds them sorted) or a one-hot matrix ``(n, k)``.

    Fitted attributes: ``coef_ (d, k)``, ``intercept_ (k,)``, ``classes_ (k,)``,
    ``history_`` (one dict per epoch: ``epoch``, ``train_loss`` (mean of the
    epoch's batch losses), ``train_accuracy`` (each row predicted before its
    batch's update), ``test_loss``, ``test_accuracy`` (``None`` without
    validation data) and ``seconds`` of training).
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

    def get_params(self):
        """The constructor's parameters, as a dict."""
        return {name: getattr(self, name) for name in
                ("lr", "epochs", "batch_size", "backend", "dtype", "n_jobs", "random_state", "shuffle")}

    # -- training -------------------------------------------------------------------------------

    def fit(self, X, y, validation_data=None, *, on_batches=None, on_epoch=None):
        """Train from fresh weights for ``epochs`` epochs; returns ``self``.

        ``validation_data=(X_test, y_test)`` is scored after every epoch.
        ``on_batches(epoch, batches_done, batches_total)`` is called as an epoch
        advances and ``on_epoch(record)`` after each epoch with its ``history_``
        entry.
        """
        self._check_params()
        X, scale = self._features(X)
        y = self._init_model(X.shape[1], y)
        validation = self._prepare_validation(validation_data)
        for _ in range(self.epochs):
            self._train_one_epoch(X, y, scale, validation, on_batches, on_epoch)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, starting from the current weights (fresh ones on the first call).

        ``classes`` must list every label on the first call when ``y`` may not show them all.
        """
        self._check_params()
        X, scale = self._features(X)
        if not hasattr(self, "coef_"):
            self._init_model(X.shape[1], y if classes is None else np.asarray(classes))
        self._train_one_epoch(X, self._label_indices(y), scale, None, None, None)
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

    def _init_model(self, n_features, y):
        """Set ``classes_``, fresh weights, the RNG and an empty history; returns ``y`` as class indices."""
        self._backend = kernels.get_backend(self.backend)
        self.classes_ = self._classes_of(y)
        self._rng = _random_generator(self.random_state)
        k = len(self.classes_)
        self.coef_ = (self._rng.standard_normal((n_features, k)) * 0.01).astype(self.dtype)
        self.intercept_ = np.zeros(k, dtype=self.dtype)
        self.history_ = []
        return self._label_indices(y)

    def _train_one_epoch(self, X, y, scale, validation, on_batches, on_epoch):
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
            loss, accuracy = self._backend.train_epoch(
                X[rows], y[rows], self.coef_, self.intercept_, self.lr, self.batch_size, scale,
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
            record["test_loss"], record["test_accuracy"] = self._loss_and_accuracy(*validation)
        self.history_.append(record)
        if on_epoch is not None:
            on_epoch(record)

    # -- prediction -----------------------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities ``(n, k)``, columns in the order of ``classes_``."""
        backend = self._fitted_backend()
        X, scale = self._features(X)
        return backend.predict_proba(X, self.coef_, self.intercept_, scale, n_threads=_kernel_threads(self.n_jobs))

    def predict(self, X):
        """The most probable class of each row, as labels from ``classes_``."""
        backend = self._fitted_backend()
        X, scale = self._features(X)
        indices = backend.predict(X, self.coef_, self.intercept_, scale, n_threads=_kernel_threads(self.n_jobs))
        return self.classes_[indices]

    def score(self, X, y):
        """Mean accuracy of :meth:`predict` on ``(X, y)``."""
        return float(np.mean(self.predict(X) == self.classes_[self._label_indices(y)]))

    def _loss_and_accuracy(self, X, y_indices, scale):
        """Mean cross-entropy and accuracy on prepared ``(X, class indices, scale)``."""
        backend = self._fitted_backend()
        loss, _, _ = backend.loss_and_grad(X, y_indices, self.coef_, self.intercept_, scale, n_threads=_kernel_threads(self.n_jobs))
        predicted = backend.predict(X, self.coef_, self.intercept_, scale, n_threads=_kernel_threads(self.n_jobs))
        return loss, float(np.mean(predicted == y_indices))

    def _prepare_validation(self, validation_data):
        if validation_data is None:
            return None
        X_test, y_test = validation_data
        X_test, scale = self._features(X_test)
        return X_test, self._label_indices(y_test), scale

    # -- input conversion -----------------------------------------------------------------------

    def _features(self, X):
        """``(X, scale)`` ready for the kernels: uint8 kept as it is, anything else as finite ``dtype``."""
        X = np.asarray(X)
        if X.dtype == np.uint8:
            return np.ascontiguousarray(X), _PIXEL_SCALE
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf")
        return X, 1.0

    @staticmethod
    def _classes_of(y):
        y = np.asarray(y)
        if y.ndim == 2:
            return np.arange(y.shape[1])
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"y must be 1-D labels or a 2-D one-hot matrix, got shape {y.shape}")
        return np.unique(y)

    def _label_indices(self, y):
        """Positions in ``classes_`` of the labels ``y`` (1-D labels or one-hot rows), as ``np.intp``."""
        y = np.asarray(y)
        if y.ndim == 2:
            if y.shape[1] != len(self.classes_) or not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
                raise ValueError(f"a 2-D y must be one-hot with {len(self.classes_)} columns, got shape {y.shape}")
            return y.argmax(axis=1)
        indices = np.searchsorted(self.classes_, y)
        indices = np.minimum(indices, len(self.classes_) - 1)
        unknown = self.classes_[indices] != y
        if np.any(unknown):
            raise ValueError(f"y holds labels the model was not fitted with, e.g. {y[unknown][0].item()!r}; "
                             f"known: {self.classes_.tolist()}")
        return indices.astype(np.intp)

    def _fitted_backend(self):
        if not hasattr(self, "coef_"):
            raise RuntimeError("this SoftmaxRegression is not fitted yet; call fit first")
        if not hasattr(self, "_backend"):
            self._backend = kernels.get_backend(self.backend)
        return self._backend

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path):
        """Write the fitted model to ``path`` (``.npz``, readable without pickle).

        The parameters are stored as JSON; a ``RandomState`` or ``Generator``
        ``random_state`` is stored as ``None`` (its state is not part of the
        model).
        """
        self._fitted_backend()
        np.savez(
            path,
            format_version=MODEL_FORMAT_VERSION,
            softmax_fast_version=__version__,
            coef=self.coef_,
            intercept=self.intercept_,
            classes=self.classes_,
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
        model.history_ = json.loads(str(contents["history"]))
        return model


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
