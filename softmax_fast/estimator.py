"""``SoftmaxRegression``: a scikit-learn classifier of softmax regression over the compiled kernels."""

import hashlib
import math
import numbers
import time

import numpy as np

from . import kernels, model_file
from ._sklearn_compat import (
    BaseEstimator,
    ClassifierMixin,
    NotFittedError,
    check_classification_targets,
    validate_data,
)
from .kernels._validation import check_count, check_positive, default_num_threads
from .model_file import _EpochInProgress

# An epoch runs as a few kernel calls of this many batches each, so that a
# progress callback and the ``stop`` check can run between them (a call takes
# milliseconds); the batches, and so the results, are the same as one call
# for the whole epoch.
BATCHES_PER_CALL = 32
_PIXEL_SCALE = 1 / 255


class TrainingInterrupted(Exception):
    """``fit`` or ``resume`` stopped because its ``stop()`` returned true; the model can :meth:`resume`.

    ``epoch`` is the epoch in progress (counted from 1) and ``batches_done`` how many of its
    ``total_batches`` batches are trained.
    """

    def __init__(self, epoch, batches_done, total_batches):
        super().__init__(f"training stopped in epoch {epoch} after {batches_done} of its {total_batches} batches")
        self.epoch, self.batches_done, self.total_batches = epoch, batches_done, total_batches

    def __reduce__(self):  # pickle (joblib workers) calls __init__ with these
        return type(self), (self.epoch, self.batches_done, self.total_batches)


class TrainingDivergedError(ValueError):
    """The loss or the weights became NaN or inf in epoch ``epoch``; the model keeps its last finite weights."""

    def __init__(self, message, epoch):
        super().__init__(message)
        self.epoch = epoch

    def __reduce__(self):
        return type(self), (str(self), self.epoch)


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

    Divergence: when a batch's loss or the weights become NaN or inf (a
    learning rate too large for the data), training stops with
    :class:`TrainingDivergedError` (a ``ValueError``) naming the epoch; the
    model keeps the weights it had before that epoch, with the history of the
    epochs before it.

    Interruption: ``fit(..., stop=callable)`` calls ``stop()`` after every
    kernel call (every ``BATCHES_PER_CALL`` = 32 batches, a few milliseconds)
    and at the end of each epoch; when it returns true, training stops there
    with :class:`TrainingInterrupted`. The model then holds everything needed
    to go on (the position in the epoch, its partial sums, the order of its
    rows and the shuffling generator); :meth:`save` stores it, and
    :meth:`resume` on this model or on the one :meth:`load` returns finishes
    the fit with weights and history bitwise equal to an uninterrupted fit's.

    Reproducibility: the same data, parameters, ``random_state`` (an int),
    backend and dtype give bitwise identical weights and history (but the
    ``seconds``) for any ``n_jobs``. Another backend or dtype sums in another
    order or precision, and so changes the last bits.
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

    def fit(self, X, y, validation_data=None, *, on_batches=None, on_epoch=None, stop=None):
        """Train from fresh weights for ``epochs`` epochs on ``X (n, d)``, ``y (n,)``; returns ``self``.

        ``validation_data=(X_test, y_test)`` is scored after every epoch (its
        labels must be among ``y``'s). ``on_batches(epoch, batches_done,
        batches_total)`` is called as an epoch advances and ``on_epoch(record)``
        after each epoch with its ``history_`` entry. ``stop()``, if given, is
        asked after every kernel call whether to stop: see the class
        documentation. Raises :class:`TrainingDivergedError` or
        :class:`TrainingInterrupted`.
        """
        self._check_params()
        X, y = validate_data(self, X, y, reset=True, dtype=_kernel_dtypes(self.dtype), order="C")
        check_classification_targets(y)
        classes, y_indices = np.unique(y, return_inverse=True)
        self._init_model(X.shape[1], classes)
        return self._train(X, y_indices, validation_data, on_batches, on_epoch, stop)

    def resume(self, X, y, validation_data=None, *, on_batches=None, on_epoch=None, stop=None):
        """Finish a fit that ``stop`` interrupted, on the same ``X`` and ``y``; returns ``self``.

        Trains the rest of the interrupted epoch and the epochs after it, up
        to ``epochs``, exactly as the uninterrupted fit would have. The
        arguments are those of :meth:`fit`; ``X`` and ``y`` must be the data of
        the interrupted fit (checked by their SHA-256). Raises ``ValueError``
        if there is no interrupted fit to resume.
        """
        self._check_params()
        self._check_is_fitted()
        epoch = getattr(self, "_epoch_in_progress", None)
        if epoch is None:
            raise ValueError("there is no interrupted fit to resume: the last fit ran to its end (or this model "
                             "was saved without one); call fit to train again")
        X, y = validate_data(self, X, y, reset=False, dtype=_kernel_dtypes(self.coef_.dtype), order="C")
        check_classification_targets(y)
        y_indices = self._label_indices(y)
        if _data_sha256(X, y_indices) != epoch.data_sha256:
            raise ValueError("X and y are not the data of the interrupted fit (their SHA-256 differs); "
                             "resume needs the same rows in the same order")
        if epoch.batches_done >= math.ceil(len(y) / self.batch_size) or (
                epoch.order is not None and len(epoch.order) != len(y)):
            raise ValueError(f"the interrupted epoch ({epoch.batches_done} batches done) does not fit {len(y)} rows "
                             f"in batches of {self.batch_size}: was batch_size changed?")
        return self._train(X, y_indices, validation_data, on_batches, on_epoch, stop)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X (n, d)``, ``y (n,)`` from the current weights (fresh ones at first); returns ``self``.

        ``classes`` must list every label on the first call when ``y`` may not
        show them all; on a later call it must equal ``classes_``. The epoch
        in progress of an interrupted fit, if any, is dropped.
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
        self._epoch_in_progress = None
        self._train_one_epoch(kernels.get_backend(self.backend), X, self._label_indices(y),
                              self._new_epoch(len(y)), None, None, None, None)
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
        self._rng = self._seeded_generator()
        self.coef_ = (self._rng.standard_normal((n_features, len(classes))) * 0.01).astype(self.dtype)
        self.intercept_ = np.zeros(len(classes), dtype=self.dtype)
        self.history_ = []
        self.n_iter_ = 0
        self._epoch_in_progress = None

    def _seeded_generator(self):
        """The random generator ``random_state`` stands for (see the class documentation); checked by ``fit``."""
        if self.random_state is None:
            # NumPy's global RandomState, the one np.random.seed seeds (as scikit-learn's check_random_state(None)).
            return np.random.mtrand._rand
        if isinstance(self.random_state, (np.random.RandomState, np.random.Generator)):
            return self.random_state
        return np.random.RandomState(self.random_state)

    def _train(self, X, y, validation_data, on_batches, on_epoch, stop):
        """Epochs on kernel-ready ``X`` and class indices ``y`` until ``n_iter_`` is ``epochs``; returns ``self``.

        Goes on from the interrupted epoch if there is one.
        """
        validation = None if validation_data is None else self._validation_arrays(validation_data)
        backend = kernels.get_backend(self.backend)
        while self.n_iter_ < self.epochs:
            epoch = self._epoch_in_progress or self._new_epoch(len(y))
            self._epoch_in_progress = None
            stop_requested = self._train_one_epoch(backend, X, y, epoch, validation, on_batches, on_epoch, stop)
            if stop_requested and self.n_iter_ < self.epochs:
                self._interrupt(self._new_epoch(len(y)), X, y)
        return self

    def _new_epoch(self, n):
        """A new epoch over ``n`` rows: their order is drawn now when shuffling."""
        return _EpochInProgress(order=self._rng.permutation(n) if self.shuffle else None)

    def _interrupt(self, epoch, X, y):
        """Keep ``epoch`` and the digest of the data for :meth:`resume`, and raise TrainingInterrupted."""
        epoch.data_sha256 = _data_sha256(X, y)
        self._epoch_in_progress = epoch
        raise TrainingInterrupted(self.n_iter_ + 1, epoch.batches_done, math.ceil(len(y) / self.batch_size))

    def _train_one_epoch(self, backend, X, y, epoch, validation, on_batches, on_epoch, stop):
        """SGD over the batches of ``epoch`` not yet done, on kernel-ready ``X (n, d)`` and class indices ``y (n,)``.

        Appends the epoch's record to ``history_`` and returns whether
        ``stop()`` asked to stop at its end; raises TrainingInterrupted if it
        asked before the end, TrainingDivergedError (the weights put back as
        they were when this call began) if the loss or the weights stop
        being finite.
        """
        number, n = self.n_iter_ + 1, len(y)
        X_epoch, y_epoch = (X, y) if epoch.order is None else (X[epoch.order], y[epoch.order])
        n_threads = _kernel_threads(self.n_jobs)
        total_batches = math.ceil(n / self.batch_size)
        rows_per_call = BATCHES_PER_CALL * self.batch_size
        first_batch, last_finite = epoch.batches_done, (self.coef_.copy(), self.intercept_.copy())
        stopping = False
        started = time.perf_counter()
        for start in range(first_batch * self.batch_size, n, rows_per_call):
            rows = slice(start, start + rows_per_call)
            loss, accuracy = backend.train_epoch(
                X_epoch[rows], y_epoch[rows], self.coef_, self.intercept_, self.lr, self.batch_size, _scale_of(X),
                n_threads=n_threads,
            )
            n_rows = len(y_epoch[rows])
            n_batches = math.ceil(n_rows / self.batch_size)
            if not (math.isfinite(loss) and np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
                self.coef_, self.intercept_ = last_finite
                self._diverged(number, loss, epoch.batches_done, n_batches, first_batch)
            epoch.loss_sum += loss * n_batches
            epoch.n_correct += round(accuracy * n_rows)
            epoch.batches_done += n_batches
            if on_batches is not None:
                on_batches(number, epoch.batches_done, total_batches)
            stopping = stop is not None and bool(stop())
            if stopping and epoch.batches_done < total_batches:
                epoch.seconds += time.perf_counter() - started
                self._interrupt(epoch, X, y)
        record = {
            "epoch": number,
            "train_loss": epoch.loss_sum / epoch.batches_done,
            "train_accuracy": epoch.n_correct / n,
            "test_loss": None,
            "test_accuracy": None,
            "seconds": epoch.seconds + time.perf_counter() - started,
        }
        if validation is not None:
            record["test_loss"], record["test_accuracy"] = self._loss_and_accuracy(backend, *validation)
        self.history_.append(record)
        self.n_iter_ = len(self.history_)
        if on_epoch is not None:
            on_epoch(record)
        return stopping

    def _diverged(self, epoch, loss, batches_before, n_batches, first_batch):
        """Raise TrainingDivergedError for the batches after ``batches_before`` in ``epoch``."""
        what = "the weights became NaN or inf" if math.isfinite(loss) else f"the loss became {loss}"
        kept = f"before epoch {epoch}" if first_batch == 0 else f"when epoch {epoch} was resumed at batch {first_batch}"
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}: {what} in batches {batches_before + 1} to "
            f"{batches_before + n_batches}. The learning rate lr={self.lr} is too large for this data: try a "
            f"smaller one (e.g. lr={self.lr / 10:g}) or scale the features. The model keeps its last finite "
            f"weights, those it had {kept}.", epoch)

    def _validation_arrays(self, validation_data):
        """Kernel-ready ``(X_test, class indices of y_test)`` from ``validation_data``, checked against the model."""
        try:
            X_test, y_test = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_test, y_test), "
                            f"got {type(validation_data).__name__}") from None
        try:
            X_test, y_test = validate_data(self, X_test, y_test, reset=False,
                                           dtype=_kernel_dtypes(self.coef_.dtype), order="C")
            return X_test, self._label_indices(y_test)
        except ValueError as exc:
            raise ValueError(f"validation_data: {exc}") from exc

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

    def save(self, file):
        """Write the fitted model to ``file`` (a path or a binary file object) as ``.npz``, readable without pickle.

        The parameters are stored as JSON; a ``RandomState`` or ``Generator``
        ``random_state`` is stored as ``None``, but the state of the shuffling
        generator is stored, so training after :meth:`load` goes on as it
        would have here. An interrupted fit is stored with everything
        :meth:`resume` needs. :meth:`load` restores every fitted attribute
        except ``feature_names_in_``. The layout: :mod:`softmax_fast.model_file`.
        """
        model_file.save(self, file)

    @classmethod
    def load(cls, file):
        """A model written by :meth:`save` (format 1 to 3), from a path or a binary file object.

        Raises ``ValueError`` naming ``file`` and the problem for anything that
        is not such a model: not an ``.npz``, missing or inconsistent arrays,
        non-finite weights, invalid parameters or training state. Never
        unpickles.
        """
        return model_file.load(cls, file)


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


def _data_sha256(X, y):
    """SHA-256 of kernel-ready training data (C-ordered ``X`` and ``y``), which ``resume`` compares."""
    digest = hashlib.sha256(X)
    digest.update(y)
    return digest.hexdigest()
