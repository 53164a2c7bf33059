"""``SoftmaxRegression``: a scikit-learn classifier of softmax regression over the compiled kernels."""

import dataclasses
import functools
import hashlib
import math
import numbers
import pathlib
import time
import types
import warnings

import numpy as np

from . import _lbfgs, _rows, kernels, model_file, schedules
from ._sklearn_compat import (
    BaseEstimator,
    ClassifierMixin,
    ConvergenceWarning,
    NotFittedError,
    check_classification_targets,
    validate_data,
)
from .kernels._validation import (
    CSR,
    check_count,
    check_nonnegative_in,
    check_positive,
    check_positive_in,
    default_num_threads,
    checked_csr_rows,
    is_sparse,
)
from .model_file import _EpochInProgress

# An epoch runs as a few kernel calls of this many batches each, so that a
# progress callback and the ``stop`` check can run between them (a call takes
# milliseconds); the batches, and so the results, are the same as one call
# for the whole epoch (for sparse X with a penalty, to rounding: the CSR
# kernels fold the scale of W back into it when a call ends).
BATCHES_PER_CALL = 32
# Sparse X: a call's batches cost O(nnz * k) and the checks of the weights around it O(d * k), so a call takes
# enough batches to hold this many stored values per feature (on 20 Newsgroups, 275 batches of 32 rows rather
# than 32: the checks took a sixth of a fit).
SPARSE_VALUES_PER_FEATURE = 16
# The bytes of features that scoring gathers at a time from rows that are not a view of X (early stopping's).
_SCORED_BYTES = 16 << 20
_PIXEL_SCALE = 1 / 255
# decision_function and predict_log_proba compute the logits of this many rows at a time.
_LOGIT_ROWS = 1024
# validate_data's y when only X is checked (scikit-learn's marker).
_NO_LABELS = "no_validation"


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


class _NonFiniteStep(ArithmeticError):
    """A kernel call of SGD made the loss or the weights NaN or inf: its ``loss``, the ``batches_before`` it in its
    epoch and its ``n_batches``. The estimator turns it into :class:`TrainingDivergedError`."""

    def __init__(self, loss, batches_before, n_batches):
        super().__init__(f"batches {batches_before + 1} to {batches_before + n_batches}: loss {loss}")
        self.loss, self.batches_before, self.n_batches = loss, batches_before, n_batches

    def __reduce__(self):
        return type(self), (self.loss, self.batches_before, self.n_batches)


class _SGDOnlyError(ValueError, AttributeError):
    """``partial_fit`` or ``resume`` of a ``solver="lbfgs"`` model: a ``ValueError`` that says why, and an
    ``AttributeError``, so that ``hasattr(model, "partial_fit")`` is false, as for scikit-learn's
    ``MLPClassifier(solver="lbfgs")`` (which its estimator checks and meta-estimators rely on)."""


class _sgd_only:
    """A method that exists only while ``solver`` is not ``"lbfgs"`` (on the class, it is the plain function)."""

    def __init__(self, method):
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, model, owner=None):
        if model is None:
            return self.method
        if getattr(model, "solver", "sgd") == "lbfgs":  # a model pickled before solver existed has none
            raise _SGDOnlyError(f"{self.method.__name__} trains by minibatch SGD and solver='lbfgs' minimizes the "
                                "objective over all the rows at once: use fit (with warm_start=True to go on from "
                                "the current weights), or set solver='sgd'")
        return types.MethodType(self.method, model)


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression trained by minibatch SGD, or full-batch L-BFGS, on the softmax_fast kernels.

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

    Parameters (the defaults are the seed experiment's: plain, unpenalized,
    unweighted SGD at a constant rate):

    - ``lr``: the learning rate (the initial one of a schedule), a finite number > 0.
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
    - ``random_state``: seeds the initial weights, the early-stopping split and
      the shuffling, drawn in that order. An int ``s`` draws the weights as
      ``RandomState(s).randn(d, k) * 0.01`` (``42`` is the seed experiment's);
      ``None`` uses NumPy's global ``RandomState``; a ``numpy.random.RandomState``
      or ``Generator`` is used, and advanced, as it is.
    - ``shuffle``: visit the training rows in a new random order each epoch.
    - ``shuffle_block_size``: ``None`` (default) shuffles all the rows at
      once; an int ``B >= 1`` shuffles blocks instead: the epoch visits the
      blocks of ``B`` consecutive rows in a random order, and each block's
      rows in a random order. For data far larger than the page cache (a
      memory-mapped file): a full permutation reads each row from a random
      place of the file, a block shuffle reads ``B`` neighbouring rows at a
      time. The price is less randomness: rows near each other in the file
      share batches, so a file sorted by class needs blocks much larger than
      a batch, or one shuffle of the file itself. Used only with ``shuffle``.
    - ``alpha``: the L2 penalty, a finite number >= 0: each step descends
      ``L_B + (alpha / 2) * ||coef_||^2`` (the intercept is not penalized).
      scikit-learn's ``SGDClassifier(alpha=)``, ``LogisticRegression``'s
      ``1 / (n * C)``, PyTorch's ``weight_decay``.
    - ``momentum``: in ``[0, 1)``; PyTorch's ``SGD(momentum=)`` (no dampening):
      ``v = momentum * v + g``, step ``lr * v``. The velocity ``v`` starts at zero
      with the weights and is kept across :meth:`partial_fit` calls, warm starts,
      :meth:`save` and :meth:`resume`.
    - ``nesterov``: Nesterov's momentum, step ``lr * (g + momentum * v)``; needs
      ``momentum > 0``.
    - ``learning_rate``: the schedule of the rate, per batch; ``t`` counts the
      batches trained since the weights were initialised (``n_steps_``):
      ``"constant"`` (``lr``), ``"invscaling"`` (``lr / (1 + t) ** power_t``),
      ``"cosine"`` (``lr * (1 + cos(pi * t / T)) / 2``, ``T`` the batches of all
      ``epochs``; ``t`` counts from the start of the fit, so a warm-started fit
      anneals again from ``lr``: PyTorch's ``CosineAnnealingLR`` stepped per
      batch) or ``"adaptive"`` (scikit-learn's: ``lr`` until ``n_iter_no_change``
      epochs in a row fail to improve the score by ``tol``, then divided by 5;
      the fit stops when the rate would fall below ``lr * 1e-6``). The score is
      the validation accuracy with ``early_stopping``, else minus the training
      loss. See :mod:`softmax_fast.schedules`.
    - ``power_t``: the exponent of ``"invscaling"``, a finite number >= 0.
    - ``early_stopping``: hold out a stratified ``validation_fraction`` of the
      rows (drawn from ``random_state``; they are not trained on), score the
      model on them after each epoch (accuracy, weighted by the rows' weights,
      as scikit-learn's ``score``), stop after ``n_iter_no_change`` epochs
      without an improvement of at least ``tol`` (with ``"adaptive"``: lower the
      rate instead, and stop when it is spent), and at the end of the fit put
      back the weights (and velocity) of the best-scoring epoch, ``best_epoch_``
      (scikit-learn keeps the last epoch's). Only :meth:`fit` stops early;
      :meth:`partial_fit` ignores it, as scikit-learn's does.
    - ``validation_fraction``: in ``(0, 1)``, the share of rows held out.
    - ``n_iter_no_change``: an integer >= 1, epochs without improvement to wait.
    - ``tol``: a finite number >= 0, the least improvement that counts.
    - ``class_weight``: ``None``, ``"balanced"`` (``n / (k * bincount(y))`` over
      the fit's ``y``, as scikit-learn's) or a dict ``{label: weight >= 0}``
      (classes it leaves out weigh 1). It multiplies each row's weight.
    - ``warm_start``: :meth:`fit` goes on from the current weights, velocity and
      ``n_steps_`` and trains ``epochs`` more epochs (the history goes on too),
      instead of starting afresh; the data must have the same features and
      labels among ``classes_``.
    - ``solver``: ``"sgd"`` (minibatch SGD, everything above) or ``"lbfgs"``
      (below).
    - ``max_iter``: ``"lbfgs"``'s most iterations per :meth:`fit`, an integer >= 1.
    - ``gtol``: ``"lbfgs"``'s tolerance, a finite number >= 0: the fit has
      converged when no component of the objective's gradient (over ``coef_``
      and ``intercept_``) exceeds ``gtol`` in absolute value. (It is not
      ``tol``, which keeps its SGD meaning above; scikit-learn's
      ``LogisticRegression(tol=)`` is this bound.)

    Full-batch training, ``solver="lbfgs"``: :meth:`fit` minimizes the whole
    objective ``(1/n) * sum_i s_i * CE_i + (alpha / 2) * ||coef_||^2`` over all
    ``n`` rows (``s_i`` the row weights below) by L-BFGS (:mod:`softmax_fast._lbfgs`;
    install ``softmax_fast[lbfgs]``), from zero weights (or the current ones with
    ``warm_start``), until ``gtol`` is met, an iteration no longer lowers the
    objective measurably (by more than 64 float64 epsilons relative, or, for a
    step that promises less than the objective's rounding in ``dtype``, at
    all: how a float32 model ends, at its precision, often above ``gtol``), or
    ``max_iter``; stopping without converging (``max_iter``, or a line search
    that fails) warns with ``ConvergenceWarning`` (scikit-learn's when it is
    installed). This is scikit-learn's multinomial ``LogisticRegression(C)`` for
    ``alpha = 1 / (n * C)``. Each evaluation of the objective and its gradient
    (one or a few per iteration) is one pass of the compiled kernels over all
    rows, a bounded chunk of rows at a time, in ``dtype``, on ``X`` as given
    (``uint8`` is not copied). It uses ``alpha``, ``class_weight``, ``backend``,
    ``dtype``, ``n_jobs`` and ``warm_start`` and ignores the SGD parameters
    (``lr``, ``epochs``, ``batch_size``, ``shuffle``, ``random_state``,
    ``momentum``, ``nesterov``, ``learning_rate``, ``power_t``,
    ``early_stopping`` and its parameters, ``tol``). :meth:`partial_fit` and
    :meth:`resume` do not exist for it: using them raises a ``ValueError`` (that
    is also an ``AttributeError``, so ``hasattr`` is false, as for
    scikit-learn's ``MLPClassifier(solver="lbfgs")``). Its ``history_`` has one
    dict per iteration: ``iteration``, ``objective``, ``train_loss`` (the
    objective without the penalty), ``gradient_norm`` (the largest absolute
    component of the gradient, what ``gtol`` bounds), ``test_loss``,
    ``test_accuracy`` (``None`` without ``validation_data``) and ``seconds``;
    ``n_iter_`` counts them; ``n_steps_`` is unchanged and ``best_epoch_`` is
    ``None``. ``on_epoch`` is called with each iteration's record, and
    ``stop()`` is asked after each iteration: when it returns true, the fit ends
    there, keeping that iteration's weights, without a warning or an exception
    (``warm_start`` goes on from them).

    Row weights: ``fit(X, y, sample_weight)`` and :meth:`partial_fit` take one
    weight >= 0 per row, multiplied by ``class_weight``. A batch's loss is
    ``(1/|B|) * sum_i s_i * CE_i`` (divided by its row count, not by the sum of
    its weights, as in scikit-learn's SGD: weights of ``c`` everywhere act as
    ``lr * c``). Weights that are all zero, or that leave rows of one class
    only, are rejected.

    Features ``X (n, d)``: ``uint8`` is taken as pixel intensities, scaled by
    1/255 inside the kernels without a float copy (when C-contiguous, and
    without early stopping, which copies the rows it trains on); any other
    real or integer dtype (and object arrays of numbers) is converted once to
    ``dtype``, C-ordered, and must be finite.

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
    ``n_steps_``, the batches (SGD steps) trained since then, the schedules'
    ``t``; ``best_epoch_``, the epoch whose weights early stopping put back
    (``None`` without it); ``history_`` (one dict per epoch: ``epoch``, ``lr``
    (the rate of the epoch's first batch), ``train_loss`` (mean of the epoch's
    batch losses, weighted as above), ``train_accuracy`` (each row predicted
    before its batch's update, unweighted), ``validation_loss`` and
    ``validation_score`` (the held-out rows' weighted loss and accuracy; ``None``
    without early stopping), ``test_loss``, ``test_accuracy`` (``None`` without
    ``validation_data``) and ``seconds`` of training). Methods that need them
    raise ``NotFittedError`` before :meth:`fit`.

    Divergence: when a batch's loss or the weights become NaN or inf (a
    learning rate too large for the data), training stops with
    :class:`TrainingDivergedError` (a ``ValueError``) naming the epoch; the
    model keeps the weights (and velocity and ``n_steps_``) it had before that
    epoch, with the history of the epochs before it.

    Interruption: ``fit(..., stop=callable)`` calls ``stop()`` after every
    kernel call (every ``BATCHES_PER_CALL`` = 32 batches or, for sparse ``X``, as many as hold
    ``SPARSE_VALUES_PER_FEATURE`` stored values per feature: a few milliseconds)
    and at the end of each epoch; when it returns true, training stops there
    with :class:`TrainingInterrupted`. The model then holds everything needed
    to go on (the position in the epoch, its partial sums, the order of its
    rows, the shuffling generator, the velocity, the schedule's state and
    early stopping's split, best weights and counters); :meth:`save` stores
    it, and :meth:`resume` on this model or on the one :meth:`load` returns
    finishes the fit with weights and history bitwise equal to an
    uninterrupted fit's.

    Reproducibility: the same data, parameters, ``random_state`` (an int),
    backend and dtype give bitwise identical weights and history (but the
    ``seconds``) for any ``n_jobs``. Another backend or dtype sums in another
    order or precision, and so changes the last bits.
    """

    def __init__(self, lr=0.2, epochs=10, batch_size=128, backend="auto", dtype="float32", n_jobs=None,
                 random_state=42, shuffle=False, *, shuffle_block_size=None, alpha=0.0, momentum=0.0, nesterov=False,
                 learning_rate="constant", power_t=0.5, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, tol=1e-4, class_weight=None, warm_start=False, solver="sgd", max_iter=100,
                 gtol=1e-6):
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.backend = backend
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.shuffle = shuffle
        self.shuffle_block_size = shuffle_block_size
        self.alpha = alpha
        self.momentum = momentum
        self.nesterov = nesterov
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.solver = solver
        self.max_iter = max_iter
        self.gtol = gtol

    # -- training -------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, *, validation_data=None, on_batches=None, on_epoch=None, stop=None,
            checkpoint=None, checkpoint_every=None):
        """Train for ``epochs`` epochs on ``X (n, d)``, ``y (n,)``, from fresh weights; returns ``self``.

        With ``solver="lbfgs"``, minimize the objective over all the rows
        instead (see the class documentation: ``on_batches`` is not called,
        ``on_epoch`` and ``stop`` act per iteration).

        With ``warm_start`` and a fitted model, it goes on from the current
        weights instead. ``sample_weight (n,)``: the rows' weights (see the
        class documentation). ``validation_data=(X_test, y_test)`` is scored
        after every epoch (its labels must be among ``y``'s); it is reported in
        ``history_`` and never steers the fit (early stopping holds out its own
        rows). ``on_batches(epoch, batches_done, batches_total)`` is called as
        an epoch advances and ``on_epoch(record)`` after each epoch with its
        ``history_`` entry. ``stop()``, if given, is asked after every kernel
        call whether to stop: see the class documentation. Raises
        :class:`TrainingDivergedError` or :class:`TrainingInterrupted`.

        ``checkpoint`` (a path, or a function of the model) with
        ``checkpoint_every`` (seconds > 0): SGD only. Every ``checkpoint_every``
        seconds, between two kernel calls of an epoch, the model is written
        to the path (atomically: a temporary file, then a rename) or given to
        the function as a stop there would leave it, and the fit goes on. A
        run killed outright (SIGKILL, out of memory, power loss) then loses at
        most that much work: ``load`` the file and :meth:`resume` ends bit for
        bit as the whole fit would have. The file is left in place when the
        fit ends (a resume from it would end as this fit did).
        """
        self._check_params()
        checkpoints = _checkpoints(checkpoint, checkpoint_every, self.solver)
        X, y_indices, sample_weight = self._fit_inputs(X, y, sample_weight)
        return self._fit_checked(X, y_indices, sample_weight, validation_data, on_batches, on_epoch, stop, checkpoints)

    def _fit_inputs(self, X, y, sample_weight):
        """The checked ``(X, y_indices, sample_weight)`` of a fit (kernel-ready features, class indices, weights or
        None). Unless the fit is warm (``warm_start`` and a fitted model), sets ``classes_`` and fresh weights."""
        warm = self.warm_start and hasattr(self, "coef_")
        dtype = self.coef_.dtype if warm else self.dtype
        X, y = _validated(self, X, y, reset=not warm, dtype=dtype)
        check_classification_targets(y)
        if warm:
            classes, y_indices = self.classes_, self._label_indices(y)
        else:
            classes, y_indices = np.unique(y, return_inverse=True)
            _rows.check_two_classes(classes)
        sample_weight = _rows.checked_sample_weight(sample_weight, len(y), dtype)
        _rows.check_weighted_classes(_rows.row_weights(self.class_weight, classes, y_indices, sample_weight, dtype),
                                     y_indices, classes)
        if not warm:
            self._init_model(X.shape[1], classes)
        return X, y_indices, sample_weight

    def _fit_checked(self, X, y_indices, sample_weight, validation_data=None, on_batches=None, on_epoch=None,
                     stop=None, checkpoints=None):
        """:meth:`fit` from the current weights on the output of :meth:`_fit_inputs` (for a path of fits on the
        same rows, checked once); returns ``self``."""
        self._epoch_in_progress = None
        if self.solver == "lbfgs":
            return self._fit_lbfgs(X, y_indices, sample_weight, validation_data, on_epoch, stop)
        self._fit_in_progress = self._new_fit(y_indices)
        return self._train(X, y_indices, sample_weight, validation_data, on_batches, on_epoch, stop, checkpoints)

    @_sgd_only
    def resume(self, X, y, sample_weight=None, *, validation_data=None, on_batches=None, on_epoch=None, stop=None,
               checkpoint=None, checkpoint_every=None):
        """Finish a fit that ``stop`` interrupted, on the same ``X``, ``y`` and ``sample_weight``; returns ``self``.

        Trains the rest of the interrupted epoch and the epochs after it, up
        to the fit's last, exactly as the uninterrupted fit would have. The
        arguments are those of :meth:`fit`; ``X``, ``y`` and ``sample_weight``
        must be those of the interrupted fit (checked by their SHA-256). Raises
        ``ValueError`` if there is no interrupted fit to resume.
        """
        self._check_params()
        checkpoints = _checkpoints(checkpoint, checkpoint_every, self.solver)
        self._check_is_fitted()
        epoch = getattr(self, "_epoch_in_progress", None)
        if epoch is None:
            raise ValueError("there is no interrupted fit to resume: the last fit ran to its end (or this model "
                             "was saved without one); call fit to train again")
        X, y = _validated(self, X, y, reset=False, dtype=self.coef_.dtype)
        check_classification_targets(y)
        y_indices = self._label_indices(y)
        sample_weight = _rows.checked_sample_weight(sample_weight, len(y), self.coef_.dtype)
        if _data_sha256(X, y_indices, sample_weight) != epoch.data_sha256:
            raise ValueError("X, y and sample_weight are not the data of the interrupted fit (their SHA-256 "
                             "differs); resume needs the same rows in the same order, with the same weights")
        held_out = self._fit_in_progress.validation_rows
        n_train = len(y) - (0 if held_out is None else len(held_out))
        if epoch.batches_done >= math.ceil(n_train / self.batch_size) or (
                epoch.order is not None and len(epoch.order) != n_train):
            raise ValueError(f"the interrupted epoch ({epoch.batches_done} batches done) does not fit {n_train} "
                             f"rows in batches of {self.batch_size}: was batch_size changed?")
        return self._train(X, y_indices, sample_weight, validation_data, on_batches, on_epoch, stop, checkpoints)

    @_sgd_only
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``X (n, d)``, ``y (n,)`` from the current weights (fresh ones at first); returns ``self``.

        ``classes`` must list every label on the first call when ``y`` may not
        show them all; on a later call it must equal ``classes_``.
        ``sample_weight``: as in :meth:`fit`; ``class_weight="balanced"`` needs
        the whole ``y`` and so is refused here (pass the weights as a dict).
        The schedule goes on from ``n_steps_`` (``"cosine"`` spans ``epochs``
        calls on data of this size; ``"adaptive"`` trains at ``lr``: only
        :meth:`fit` measures plateaus) and early stopping is ignored. The epoch
        in progress of an interrupted fit, if any, is dropped.
        """
        self._check_params()
        if isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' needs the class counts of the whole data set, which "
                             "partial_fit does not see: pass class_weight as a dict instead")
        first_call = not hasattr(self, "coef_")
        dtype = self.dtype if first_call else self.coef_.dtype
        X, y = _validated(self, X, y, reset=first_call, dtype=dtype)
        check_classification_targets(y)
        if first_call:
            model_classes = np.unique(y if classes is None else classes)
            _rows.check_two_classes(model_classes)
        else:
            model_classes = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                                 f"partial_fit, {self.classes_.tolist()}")
        y_indices = _rows.label_indices(model_classes, y)
        sample_weight = _rows.checked_sample_weight(sample_weight, len(y), dtype)
        weights = _rows.row_weights(self.class_weight, model_classes, y_indices, sample_weight, dtype)
        _rows.check_weighted_classes(weights, y_indices, model_classes, at_least=1)
        n_steps = 0 if first_call else self.n_steps_
        epoch_batches = math.ceil(len(y) / self.batch_size)
        if self.learning_rate == "cosine" and n_steps + epoch_batches > self._cosine_length(None, epoch_batches):
            raise ValueError(f"learning_rate='cosine' anneals over epochs={self.epochs} epochs of this data, "
                             f"{self._cosine_length(None, epoch_batches)} batches, and {n_steps} are done: this "
                             "partial_fit would go past them; raise epochs, or fit with warm_start")
        if first_call:
            self._init_model(X.shape[1], model_classes)
        self._epoch_in_progress, self._fit_in_progress, self.best_epoch_ = None, None, None
        backend, data = kernels.get_backend(self.backend), _rows.Rows(X, y_indices, weights)
        epoch = self._new_epoch(len(y))
        self._train_batches(backend, data, epoch, None, None, None)
        self._end_epoch(len(y), epoch, None, None, None)
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
        dtype = np.dtype(self.dtype)
        check_positive_in("lr", self.lr, dtype)
        check_nonnegative_in("alpha", self.alpha, dtype)
        check_nonnegative_in("momentum", self.momentum, dtype, below=1)
        for name in ("nesterov", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if self.learning_rate not in schedules.LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {', '.join(map(repr, schedules.LEARNING_RATES))}, "
                             f"got {self.learning_rate!r}")
        _check_real("power_t", self.power_t, lambda value: value >= 0, "finite and >= 0")
        _check_real("validation_fraction", self.validation_fraction, lambda value: 0 < value < 1,
                    "strictly between 0 and 1")
        check_count("n_iter_no_change", self.n_iter_no_change)
        if self.shuffle_block_size is not None:
            check_count("shuffle_block_size", self.shuffle_block_size)
        _check_real("tol", self.tol, lambda value: value >= 0, "finite and >= 0")
        _check_class_weight(self.class_weight)
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, got {self.solver!r}")
        check_count("max_iter", self.max_iter)
        _check_real("gtol", self.gtol, lambda value: value >= 0, "finite and >= 0")

    def _init_model(self, n_features, classes):
        """Set ``classes_``, fresh weights, the RNG, an empty history and no training state."""
        self.classes_ = classes
        self._rng = self._seeded_generator()
        if self.solver == "lbfgs":  # as scikit-learn's LogisticRegression: the minimum does not depend on it
            self.coef_ = np.zeros((n_features, len(classes)), dtype=self.dtype)
        else:
            self.coef_ = (self._rng.standard_normal((n_features, len(classes))) * 0.01).astype(self.dtype)
        self.intercept_ = np.zeros(len(classes), dtype=self.dtype)
        self.history_ = []
        self.n_iter_ = 0
        self.n_steps_ = 0
        self.best_epoch_ = None
        self._velocity = None
        self._epoch_in_progress = None
        self._fit_in_progress = None

    def _seeded_generator(self):
        """The random generator ``random_state`` stands for (see the class documentation); checked by ``fit``."""
        if self.random_state is None:
            # NumPy's global RandomState, the one np.random.seed seeds (as scikit-learn's check_random_state(None)).
            return np.random.mtrand._rand
        if isinstance(self.random_state, (np.random.RandomState, np.random.Generator)):
            return self.random_state
        return np.random.RandomState(self.random_state)

    def _new_fit(self, y):
        """The state of a fit that starts now on class indices ``y``: its span, schedule and early-stopping split."""
        held_out = _rows.stratified_holdout(y, len(self.classes_), self.validation_fraction, self._rng) \
            if self.early_stopping else None
        return model_file._FitInProgress(first_epoch=self.n_iter_, end_epoch=self.n_iter_ + self.epochs,
                                         origin=self.n_steps_, rate=float(self.lr), validation_rows=held_out)

    def _train(self, X, y, sample_weight, validation_data, on_batches, on_epoch, stop, checkpoints=None):
        """The epochs of the fit in progress on kernel-ready ``X`` and class indices ``y``; returns ``self``.

        Goes on from the interrupted epoch if there is one; at the end, puts
        back early stopping's best weights. ``checkpoints``: ``(write,
        every)`` from :func:`_checkpoints`, or None.
        """
        fit = self._fit_in_progress
        validation = None if validation_data is None else self._validation_arrays(validation_data)
        weights = _rows.row_weights(self.class_weight, self.classes_, y, sample_weight, self.coef_.dtype)
        data, held_out = _rows.Rows(X, y, weights), None
        if fit.validation_rows is not None:
            data, held_out = data.take(np.setdiff1d(np.arange(len(y)), fit.validation_rows)), \
                data.take(fit.validation_rows)
            if held_out.weights is not None and not held_out.weights.any():
                raise ValueError("the rows early stopping holds out all have a zero weight (sample_weight times "
                                 "class_weight): nothing to score them by; use another random_state")
        backend = kernels.get_backend(self.backend)
        # The data's SHA-256, which checkpoints and a stop record: hashed at most once a fit (X may be gigabytes
        # on disk), and not at all when resuming, whose check computed it.
        resumed_sha256 = getattr(self._epoch_in_progress, "data_sha256", None)
        data_sha256 = functools.cache(lambda: resumed_sha256 or _data_sha256(X, y, sample_weight))
        periodic = None if checkpoints is None else _PeriodicCheckpoints(*checkpoints, data_sha256)
        try:
            while self.n_iter_ < fit.end_epoch:
                epoch = self._epoch_in_progress or self._new_epoch(len(data.y))
                self._epoch_in_progress = None
                stop_requested = self._train_batches(backend, data, epoch, fit, on_batches, stop, periodic)
                record, plateau_stop = self._end_epoch(len(data.y), epoch, fit, held_out, validation)
                if on_epoch is not None:
                    on_epoch(record)
                if plateau_stop:
                    break
                if stop_requested and self.n_iter_ < fit.end_epoch:
                    self._interrupt(self._new_epoch(len(data.y)), len(data.y))
        except TrainingInterrupted:
            self._epoch_in_progress.data_sha256 = data_sha256()
            raise
        except TrainingDivergedError:
            self._fit_in_progress = None
            raise
        if fit.best is not None:
            self.coef_, self.intercept_, self._velocity = fit.best
        self.best_epoch_ = fit.plateau.best_epoch if fit.best is not None else None
        self._fit_in_progress = None
        return self

    def _fit_lbfgs(self, X, y, sample_weight, validation_data, on_iteration, stop):
        """Minimize the objective over all of kernel-ready ``X`` and class indices ``y`` by L-BFGS; returns ``self``.

        Starts from the current weights; one ``history_`` record per
        iteration. See :mod:`softmax_fast._lbfgs`.
        """
        weights = _rows.row_weights(self.class_weight, self.classes_, y, sample_weight, self.coef_.dtype)
        objective = _lbfgs.Objective.of_rows(kernels.get_backend(self.backend), _kernel_features(X), y, weights,
                                             _scale_of(X), self.alpha, self.coef_.shape, self.coef_.dtype,
                                             _kernel_threads(self.n_jobs))
        return self._minimize(objective, validation_data, on_iteration, stop)

    def _minimize(self, objective, validation_data, on_iteration, stop):
        """:meth:`_fit_lbfgs` for the :class:`_lbfgs.Objective` ``objective`` of the fit's rows; returns ``self``."""
        validation = None if validation_data is None else self._validation_arrays(validation_data)
        self._fit_in_progress, self.best_epoch_ = None, None
        n_weights = self.coef_.size

        def after_iteration(iteration, theta, value, gradient_norm, seconds):
            self.coef_, self.intercept_ = objective.weights(theta)
            record = {"iteration": self.n_iter_ + 1, "objective": value,
                      "train_loss": value - self.alpha / 2 * float(np.dot(theta[:n_weights], theta[:n_weights])),
                      "gradient_norm": gradient_norm, "test_loss": None, "test_accuracy": None,
                      "seconds": seconds}
            if validation is not None:
                record["test_loss"], record["test_accuracy"] = self._loss_and_accuracy(validation)
            self.history_.append(record)
            self.n_iter_ = len(self.history_)
            if on_iteration is not None:
                on_iteration(record)
            return stop is not None and bool(stop())

        start = np.concatenate([self.coef_.astype(np.float64).ravel(), self.intercept_.astype(np.float64)])
        # The solver's passes run on the kernels' threads.
        result = _lbfgs.minimize(objective, start, self.max_iter, self.gtol, after_iteration,
                                 kernels._call_threads(_kernel_threads(self.n_jobs)))
        self.coef_, self.intercept_ = objective.weights(result.x)
        if not result.success:
            advice = (f" Raise max_iter (now {self.max_iter}), or fit again with warm_start=True to go on."
                      if result.nit == self.max_iter else "")
            warnings.warn(f"L-BFGS stopped after {result.nit} iterations without reaching gtol={self.gtol} (the "
                          f"largest absolute component of the gradient is "
                          f"{_lbfgs.gradient_norm(result.gradient):.3g}): {result.message}.{advice}",
                          ConvergenceWarning, stacklevel=5)  # fit's caller: fit, _fit_checked, _fit_lbfgs, here
        return self

    def _new_epoch(self, n):
        """A new epoch over ``n`` rows: their order is drawn now when shuffling."""
        if not self.shuffle:
            return _EpochInProgress(order=None)
        if self.shuffle_block_size is None:
            return _EpochInProgress(order=self._rng.permutation(n))
        return _EpochInProgress(order=_rows.block_shuffle(n, self.shuffle_block_size, self._rng))

    def _interrupt(self, epoch, n):
        """Keep ``epoch`` (over ``n`` rows) for :meth:`resume` and raise TrainingInterrupted."""
        self._epoch_in_progress = epoch
        raise TrainingInterrupted(self.n_iter_ + 1, epoch.batches_done, math.ceil(n / self.batch_size))

    def _train_batches(self, backend, data, epoch, fit, on_batches, stop, periodic=None):
        """SGD over the batches of ``epoch`` not yet done, on the training rows ``data``.

        ``periodic`` (:class:`_PeriodicCheckpoints`), if given, may write a
        checkpoint between two kernel calls.

        Returns whether ``stop()`` asked to stop at the epoch's end; raises
        TrainingInterrupted if it asked before the end, TrainingDivergedError
        (the weights, velocity and step count put back as they were when this
        call began) if the loss or the weights stop being finite.
        """
        number, n = self.n_iter_ + 1, len(data.y)
        rows = data if epoch.order is None else data.take(epoch.order)
        total_batches = math.ceil(n / self.batch_size)
        if self.momentum > 0 and self._velocity is None:
            self._velocity = (np.zeros_like(self.coef_), np.zeros_like(self.intercept_))
        first_batch, last_finite = epoch.batches_done, self._training_state_copy()
        stopping = False
        started = time.perf_counter()
        try:
            for _ in self._sgd_calls(backend, rows, epoch, self._schedule(fit, total_batches),
                                     _kernel_threads(self.n_jobs)):
                if on_batches is not None:
                    on_batches(number, epoch.batches_done, total_batches)
                stopping = stop is not None and bool(stop())
                if stopping and epoch.batches_done < total_batches:
                    epoch.seconds += time.perf_counter() - started
                    self._interrupt(epoch, n)
                if periodic is not None and epoch.batches_done < total_batches and periodic.due():
                    periodic.write(self, dataclasses.replace(epoch,
                                                             seconds=epoch.seconds + time.perf_counter() - started))
        except _NonFiniteStep as step:
            self.coef_, self.intercept_, self._velocity, self.n_steps_ = last_finite
            raise self._divergence(number, step, first_batch) from None
        epoch.seconds += time.perf_counter() - started
        return stopping

    def _sgd_calls(self, backend, rows, epoch, schedule, n_threads):
        """SGD over the kernel-ready ``rows`` from batch ``epoch.batches_done`` on, ``_batches_per_call`` batches a
        kernel call; a generator that yields after each call.

        Each call updates ``coef_``, ``intercept_`` and the velocity in place,
        and adds to ``n_steps_`` and to ``epoch``'s batches and sums.
        ``schedule``: :func:`schedules.rate`'s keyword arguments. When a
        call's loss or the weights are not finite, raises
        :class:`_NonFiniteStep` with that call's updates kept and not counted.
        Shuffled or held-out rows are gathered a call at a time into one
        scratch: ``X`` is never copied whole.
        """
        rows_per_call = _batches_per_call(rows.X, self.batch_size) * self.batch_size
        scratch, scale = rows.scratch(rows_per_call), _scale_of(rows.X)
        for start in range(epoch.batches_done * self.batch_size, len(rows.y), rows_per_call):
            call = slice(start, start + rows_per_call)
            n_rows = len(rows.y[call])
            n_batches = math.ceil(n_rows / self.batch_size)
            loss, accuracy = backend.train_epoch(
                rows.features(call, scratch), rows.y[call], self.coef_, self.intercept_,
                schedules.batch_rates(self.learning_rate, self.lr, self.n_steps_, n_batches, **schedule),
                self.batch_size, scale, alpha=self.alpha, momentum=self.momentum, nesterov=self.nesterov,
                velocity=self._velocity, sample_weight=None if rows.weights is None else rows.weights[call],
                n_threads=n_threads,
            )
            if not (math.isfinite(loss) and np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
                raise _NonFiniteStep(loss, epoch.batches_done, n_batches)
            self.n_steps_ += n_batches
            epoch.loss_sum += loss * n_batches
            epoch.n_correct += round(accuracy * n_rows)
            epoch.batches_done += n_batches
            yield

    def _training_state_copy(self):
        """``(coef_, intercept_, velocity, n_steps_)``, the arrays copied: what a diverged call puts back."""
        return (*self._weights_copy(), self.n_steps_)

    def _weights_copy(self):
        """``(coef_, intercept_, velocity or None)``, copied: what early stopping keeps of its best epoch."""
        velocity = None if self._velocity is None else tuple(v.copy() for v in self._velocity)
        return self.coef_.copy(), self.intercept_.copy(), velocity

    def _schedule(self, fit, epoch_batches):
        """:func:`schedules.rate`'s keyword arguments for epochs of ``epoch_batches`` batches in ``fit`` (``None``:
        partial_fit)."""
        return dict(power_t=self.power_t, origin=0 if fit is None else fit.origin,
                    total=self._cosine_length(fit, epoch_batches), current=None if fit is None else fit.rate)

    def _cosine_length(self, fit, epoch_batches):
        """``T``: the batches of all the epochs of ``fit`` (``None``: of ``epochs`` partial_fit calls), each of
        ``epoch_batches`` batches."""
        epochs = self.epochs if fit is None else fit.end_epoch - fit.first_epoch
        return epochs * epoch_batches

    def _end_epoch(self, n, epoch, fit, held_out, validation):
        """Append the record of the epoch just trained, on ``n`` rows, to ``history_``, scored; returns ``(record,
        stop)``.

        ``stop``: whether the fit's plateau asks it to end here (see
        :mod:`softmax_fast.schedules`); when the epoch is early stopping's best
        so far, its weights are kept in ``fit``.
        """
        first_rate = schedules.rate(self.learning_rate, self.lr, self.n_steps_ - epoch.batches_done,
                                    **self._schedule(fit, epoch.batches_done))
        record = {
            "epoch": self.n_iter_ + 1,
            "lr": first_rate,
            "train_loss": epoch.loss_sum / epoch.batches_done,
            "train_accuracy": epoch.n_correct / n,
            "validation_loss": None,
            "validation_score": None,
            "test_loss": None,
            "test_accuracy": None,
            "seconds": epoch.seconds,
        }
        if held_out is not None:
            record["validation_loss"], record["validation_score"] = self._loss_and_accuracy(held_out)
        if validation is not None:
            record["test_loss"], record["test_accuracy"] = self._loss_and_accuracy(validation)
        self.history_.append(record)
        self.n_iter_ = len(self.history_)
        if fit is None or not (held_out is not None or self.learning_rate == "adaptive"):
            return record, False
        score = -record["train_loss"] if held_out is None else record["validation_score"]
        if fit.plateau.update(score, record["epoch"], self.tol) and held_out is not None:
            fit.best = self._weights_copy()
        fit.rate, stop = schedules.after_plateau(fit.plateau, self.n_iter_no_change, self.learning_rate, self.lr,
                                                 fit.rate, early_stopping=held_out is not None)
        return record, stop

    def _divergence(self, epoch, step, first_batch):
        """The TrainingDivergedError of the :class:`_NonFiniteStep` ``step`` in ``epoch`` (counted from 1), which
        began at batch ``first_batch``."""
        what = "the weights became NaN or inf" if math.isfinite(step.loss) else f"the loss became {step.loss}"
        kept = f"before epoch {epoch}" if first_batch == 0 else f"when epoch {epoch} was resumed at batch {first_batch}"
        return TrainingDivergedError(
            f"training diverged in epoch {epoch}: {what} in batches {step.batches_before + 1} to "
            f"{step.batches_before + step.n_batches}. The learning rate lr={self.lr} is too large for this data: try a "
            f"smaller one (e.g. lr={self.lr / 10:g}) or scale the features. The model keeps its last finite "
            f"weights, those it had {kept}.", epoch)

    def _validation_arrays(self, validation_data):
        """Kernel-ready rows of ``validation_data`` (``X_test``, class indices of ``y_test``), checked."""
        try:
            X_test, y_test = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a pair (X_test, y_test), "
                            f"got {type(validation_data).__name__}") from None
        try:
            X_test, y_test = _validated(self, X_test, y_test, reset=False, dtype=self.coef_.dtype)
            return _rows.Rows(X_test, self._label_indices(y_test), None)
        except ValueError as exc:
            raise ValueError(f"validation_data: {exc}") from exc

    def _loss_and_accuracy(self, rows):
        """The data loss and the accuracy (both weighted by ``rows.weights`` when given) of kernel-ready ``rows``.

        Rows that are not a view of their ``X`` (early stopping's held-out
        rows) are gathered ``_SCORED_BYTES`` of features at a time, and the
        chunks' mean losses combined by their row counts.
        """
        backend, n_threads, n = kernels.get_backend(self.backend), _kernel_threads(self.n_jobs), len(rows.y)
        scale = _scale_of(rows.X)
        step = n if rows.index is None else max(1, _SCORED_BYTES // (rows.X.shape[1] * rows.X.dtype.itemsize))
        scratch, losses, predicted = rows.scratch(step), [], np.empty(n, dtype=np.intp)
        for start in range(0, n, step):
            chunk = slice(start, start + step)
            X, y = rows.features(chunk, scratch), rows.y[chunk]
            chunk_loss, _, _ = backend.loss_and_grad(X, y, self.coef_, self.intercept_, scale, n_threads=n_threads,
                                                     sample_weight=None if rows.weights is None else rows.weights[chunk])
            losses.append((chunk_loss, len(y)))
            predicted[chunk] = backend.predict(X, self.coef_, self.intercept_, scale, n_threads=n_threads)
        loss = losses[0][0] if len(losses) == 1 else sum(chunk_loss * m for chunk_loss, m in losses) / n
        return loss, float(np.average(predicted == rows.y, weights=rows.weights))

    # -- prediction -----------------------------------------------------------------------------

    def decision_function(self, X):
        """The logits ``X @ coef_ + intercept_`` of ``X (n, d)``: ``(n, k)`` float64, columns in ``classes_``'s order.

        With 2 classes, ``(n,)``: the second class's logit minus the first's
        (positive: ``classes_[1]``), scikit-learn's shape for a binary
        classifier. Computed in float64 with NumPy (uint8 ``X`` scaled by
        1/255), so a row's values do not depend on the other rows; the argmax
        is :meth:`predict`'s but for ties closer than the model's dtype resolves.
        """
        Z = self._logits(self._prediction_features(X))
        return Z[:, 1] - Z[:, 0] if Z.shape[1] == 2 else Z

    def predict_log_proba(self, X):
        """Log-probabilities ``(n, k)`` float64 of ``X (n, d)``: the log-softmax of the logits, never ``log(0)``.

        ``Z - max(Z) - log(sum(exp(Z - max(Z))))`` per row, from
        :meth:`decision_function`'s logits, so classes far less likely than
        the float32 ``predict_proba`` can show keep finite values.
        """
        Z = self._logits(self._prediction_features(X))
        Z -= Z.max(axis=1, keepdims=True)
        Z -= np.log(np.exp(Z).sum(axis=1, keepdims=True))
        return Z

    def predict_proba(self, X):
        """Class probabilities ``(n, k)`` of ``coef_``'s dtype for ``X (n, d)``, columns in ``classes_``'s order."""
        X = self._prediction_features(X)
        return kernels.get_backend(self.backend).predict_proba(
            _kernel_features(X), self.coef_, self.intercept_, _scale_of(X), n_threads=_kernel_threads(self.n_jobs))

    def predict(self, X):
        """The most probable class of each row of ``X (n, d)``: ``(n,)`` labels from ``classes_``."""
        X = self._prediction_features(X)
        indices = kernels.get_backend(self.backend).predict(
            _kernel_features(X), self.coef_, self.intercept_, _scale_of(X), n_threads=_kernel_threads(self.n_jobs))
        return self.classes_[indices]

    def _logits(self, X):
        """``(X * scale) @ coef_ + intercept_`` in float64 for kernel-ready ``X``, a thousand rows at a time."""
        W, b = self.coef_.astype(np.float64), self.intercept_.astype(np.float64)
        Z = np.empty((X.shape[0], len(b)))
        for start in range(0, X.shape[0], _LOGIT_ROWS):
            rows = slice(start, start + _LOGIT_ROWS)
            Z[rows] = X[rows].astype(np.float64) * _scale_of(X) @ W  # X may be sparse: no out=
        Z += b
        return Z

    def _prediction_features(self, X):
        """``X`` checked against the fitted model and ready for the kernels; ``NotFittedError`` before ``fit``."""
        self._check_is_fitted()
        return _validated(self, X, reset=False, dtype=self.coef_.dtype)

    def __sklearn_tags__(self):  # only scikit-learn calls it: its base class has one
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _check_is_fitted(self):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _label_indices(self, y):
        """Positions in ``classes_`` of the 1-D labels ``y``, as ``np.intp``; ``ValueError`` for an unknown label."""
        return _rows.label_indices(self.classes_, y)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, file):
        """Write the fitted model to ``file`` (a path or a binary file object) as ``.npz``, readable without pickle.

        The parameters are stored as JSON; a ``RandomState`` or ``Generator``
        ``random_state`` is stored as ``None``, but the state of the shuffling
        generator is stored, so training after :meth:`load` goes on as it
        would have here, with the velocity and ``n_steps_``. An interrupted fit
        is stored with everything :meth:`resume` needs. :meth:`load` restores
        every fitted attribute except ``feature_names_in_``. The layout:
        :mod:`softmax_fast.model_file`.
        """
        model_file.save(self, file)

    @classmethod
    def load(cls, file):
        """A model written by :meth:`save` (format 1 to 4), from a path or a binary file object.

        Raises ``ValueError`` naming ``file`` and the problem for anything that
        is not such a model: not an ``.npz``, missing or inconsistent arrays,
        non-finite weights, invalid parameters or training state. Never
        unpickles.
        """
        return model_file.load(cls, file)


#: The values of ``SoftmaxRegression(solver=)``.
SOLVERS = ("sgd", "lbfgs")

#: The checks of ``sklearn.utils.estimator_checks`` that the default estimator fails by construction, with the
#: reason: pass it as ``expected_failed_checks`` (scikit-learn >= 1.6 lists its own SGD estimators' this way, in
#: ``sklearn.utils._test_common.instance_generator.PER_ESTIMATOR_XFAIL_CHECKS``; its tags hold no such list).
SKLEARN_EXPECTED_FAILED_CHECKS = {
    f"check_sample_weight_equivalence_on_{kind}_data": (
        "sample_weight is not equivalent to removing or repeating rows: minibatch SGD divides a batch's loss by "
        "its row count and repeated rows change the batches (as for scikit-learn's SGDClassifier)")
    for kind in ("dense", "sparse")
}


def _validated(model, X, y=_NO_LABELS, *, reset, dtype):
    """``validate_data`` for the kernels: ``X`` (``(X, y)`` when ``y`` is given) checked against ``model``.

    Dense ``X`` keeps uint8 (pixels) or ``dtype`` and is C-ordered; anything
    else becomes ``dtype``. Sparse ``X`` becomes CSR (scikit-learn converts
    other formats, once) of ``dtype`` with sorted, unique indices in each
    row: a copy, once, when they are not (``sum_duplicates`` adds repeated
    entries up, as scipy's products would). It is then checked whole, once,
    as the kernels check CSR rows (:func:`checked_csr_rows`): so the rows of
    each SGD call go to the kernels as checked rows (:meth:`_rows.Rows.features`).
    """
    labels = not (isinstance(y, str) and y == _NO_LABELS)
    checked = validate_data(model, X, y, reset=reset, dtype=_kernel_dtypes(dtype), order="C", accept_sparse="csr")
    X = checked[0] if labels else checked
    if is_sparse(X):
        X = X.astype(dtype, copy=False)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        checked_csr_rows(X)
    return (X, checked[1]) if labels else X


def _kernel_dtypes(dtype):
    """``validate_data``'s ``dtype``: ``uint8`` (pixels) and ``dtype`` are kept, anything else becomes ``dtype``."""
    return [np.dtype(dtype), np.dtype(np.uint8)]


def _batches_per_call(X, batch_size):
    """The batches of one kernel call of SGD on the kernel-ready ``X``: ``BATCHES_PER_CALL``, or more for sparse
    ``X``, whose calls hold at least ``SPARSE_VALUES_PER_FEATURE`` stored values per feature."""
    if not is_sparse(X) or X.nnz == 0:
        return BATCHES_PER_CALL
    values_per_batch = X.nnz / X.shape[0] * batch_size
    return max(BATCHES_PER_CALL, math.ceil(SPARSE_VALUES_PER_FEATURE * X.shape[1] / values_per_batch))


def _kernel_features(X):
    """Kernel-ready ``X`` for a kernel call on all its rows: a sparse ``X``, checked whole by :func:`_validated`, as
    its checked :class:`~softmax_fast.kernels._validation.CSR` (so the kernels do not read it again)."""
    return CSR.of_checked(X) if is_sparse(X) else X


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


def _checkpoints(checkpoint, every, solver):
    """``(write, every)`` for ``fit``'s ``checkpoint`` and ``checkpoint_every`` (both or neither), or ``None``;
    ``write(model)`` writes it to the path atomically, or is the function given."""
    if checkpoint is None and every is None:
        return None
    if checkpoint is None or every is None:
        raise ValueError("checkpoint and checkpoint_every go together: a path (or a function of the model) and "
                         "the seconds between two checkpoints")
    _check_real("checkpoint_every", every, lambda value: value > 0, "finite and > 0 (seconds)")
    if solver != "sgd":
        raise ValueError("checkpoint_every checkpoints SGD fits; a solver='lbfgs' fit ends after the iteration in "
                         "progress when stopped, and warm_start goes on from the model it reached")
    if callable(checkpoint):
        return checkpoint, float(every)
    return functools.partial(model_file.write_checkpoint, pathlib.Path(checkpoint)), float(every)


class _PeriodicCheckpoints:
    """``write(model)`` every ``every`` seconds (``due``), with the model as a stop at that point leaves it;
    ``data_sha256()`` is the digest of the fit's data that the model records."""

    def __init__(self, write, every, data_sha256):
        self._write, self._every, self._data_sha256 = write, every, data_sha256
        self._last = time.monotonic()

    def due(self):
        return time.monotonic() - self._last >= self._every

    def write(self, model, epoch):
        """Call ``write(model)`` with ``epoch`` (a copy of the epoch in progress) as the interrupted one."""
        model._epoch_in_progress = dataclasses.replace(epoch, data_sha256=self._data_sha256())
        try:
            self._write(model)
        finally:
            model._epoch_in_progress = None
        self._last = time.monotonic()


def _data_sha256(X, y, sample_weight):
    """SHA-256 of kernel-ready training data (C-ordered ``X`` or a CSR ``X``'s three arrays, ``y`` and, if given,
    ``sample_weight``): ``resume``'s."""
    digest = hashlib.sha256()
    for array in (X.data, X.indices, X.indptr) if is_sparse(X) else (X,):
        digest.update(array)
    digest.update(y)
    if sample_weight is not None:
        digest.update(sample_weight)
    return digest.hexdigest()


def _check_real(name, value, accept, requirement):
    """Check a parameter that is a finite real number for which ``accept(value)`` holds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and accept(value)):
        raise ValueError(f"{name} must be {requirement}, got {value!r}")


def _check_class_weight(class_weight):
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {class_weight!r}")
    for label, weight in class_weight.items():
        _check_real(f"class_weight[{label!r}]", weight, lambda w: w >= 0, "finite and >= 0")
