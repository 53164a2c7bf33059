"""``softmax_fast.dask.SoftmaxRegression``: softmax regression on Dask arrays chunked by rows, trained where the
blocks are (``pip install "softmax_fast[dask]"``: ``dask[array]`` and ``distributed``).

The estimator takes :class:`softmax_fast.SoftmaxRegression`'s parameters and
drives one of those models (``to_local()`` returns it) from the client of a
``distributed.Client``; the rows stay on the workers and only weights and sums
travel, as in dask-ml and Spark MLlib:

- ``solver="sgd"``: the model goes from block to block, one task per block
  (:func:`_sgd_block`), which Dask runs on the worker that holds the block:
  the task trains the block's rows with the in-memory estimator's own loop of
  kernel calls and hands the weights, velocity and the epoch's running sums to
  the next block's task. With blocks whose lengths are multiples of
  ``batch_size`` and no shuffle, the weights are bitwise those of
  ``SoftmaxRegression.fit`` on the same rows in memory. With ``shuffle``, each
  epoch visits the blocks in a random order and each block's rows in a random
  order (:func:`softmax_fast._rows.shuffled_blocks`): equal chunks of ``B``
  rows train as ``SoftmaxRegression(shuffle=True, shuffle_block_size=B)``.
- ``solver="lbfgs"``: data-parallel. Each evaluation of the objective
  sends the weights to the cluster once (the workers copy them from each
  other); every block's task
  (:func:`_block_sums`) returns the float64 sums of its rows' loss and
  gradient from the compiled ``loss_and_grad``; a binary tree of tasks adds
  them in block order (0 + 1, 2 + 3, ..., then those sums: the same order
  whichever worker finishes first, so a given chunking gives the same bits);
  the L-BFGS of :mod:`softmax_fast._lbfgs` runs on the client.

A fit persists ``X``, ``y`` and ``sample_weight`` on the cluster and turns each
block into kernel-ready rows once (:func:`_kernel_block`); Dask keeps their
lineage, so the blocks of a worker that dies are recomputed from their source.
All futures of a fit are released when it ends, also on Ctrl-C or an error.
"""

import asyncio
import copy
import functools
import math
import time

import numpy as np

from . import _lbfgs, _rows, kernels
from ._sklearn_compat import (
    BaseEstimator,
    ClassifierMixin,
    NotFittedError,
    check_classification_targets,
    validate_data,
)
from .estimator import SoftmaxRegression as _LocalSoftmaxRegression
from .estimator import _kernel_dtypes, _kernel_threads, _NonFiniteStep, _scale_of
from .model_file import _EpochInProgress

try:
    import dask.array as da
    import distributed
    from dask.core import flatten
except ModuleNotFoundError as exc:
    raise ImportError("softmax_fast.dask needs dask[array] and distributed, not found; "
                      "pip install 'softmax_fast[dask]'") from exc

__all__ = ["SoftmaxRegression"]

#: The fitted attributes, those of the local model.
_FITTED = ("coef_", "intercept_", "classes_", "n_features_in_", "history_", "n_iter_", "n_steps_", "best_epoch_")


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    """:class:`softmax_fast.SoftmaxRegression` on Dask arrays chunked by rows, with a ``distributed.Client``.

    The parameters are those of :class:`softmax_fast.SoftmaxRegression`, with
    the same meanings and defaults (see the module for how each solver runs
    on the cluster), except:

    - ``shuffle``: each epoch visits the Dask blocks in a random order, and
      each block's rows in a random order (drawn on the client from
      ``random_state``); ``shuffle_block_size`` must stay ``None``: the
      blocks are X's chunks.
    - ``early_stopping`` is not available (it must stay ``False``): hold out
      rows yourself and pass them as ``validation_data``.
    - ``n_jobs``: the kernels' threads in each task. ``None``: for ``"sgd"``,
      whose tasks run one at a time, the threads of the worker that runs
      the task; for ``"lbfgs"``, whose blocks run side by side on every
      worker thread, 1.

    ``fit(X, y, sample_weight=None, *, validation_data=None, on_epoch=None)``:
    ``X (n, d)`` a ``dask.array.Array`` chunked by rows only (known chunk
    sizes; uint8 pixels are scaled by 1/255 in the kernels, other dtypes are
    converted block by block to ``dtype``); ``y (n,)`` and ``sample_weight
    (n,)`` Dask or NumPy arrays, rechunked like X's rows. ``validation_data =
    (X_test, y_test)`` in memory, scored on the client after every epoch or
    iteration. ``on_epoch(record)`` is called with each ``history_`` record.
    A worker's death during a fit is survived when Dask can recompute what it
    held (a ``LocalCluster``'s nanny restarts the worker); when it cannot (a
    task whose workers died ``distributed.scheduler.allowed-failures`` times),
    the fit raises ``RuntimeError`` naming the lost task, and the model keeps
    the weights of its last whole epoch or iteration. The divergence of SGD
    raises :class:`softmax_fast.estimator.TrainingDivergedError` as in memory.

    ``predict``, ``predict_proba`` return lazy Dask arrays, computed block
    by block (``map_blocks``) by the local model; ``score`` computes the
    (weighted) accuracy block by block and returns a float. ``to_local()``:
    a copy of the fitted :class:`softmax_fast.SoftmaxRegression`, for
    in-memory data, :meth:`save` and everything else.

    Fitted attributes: those of :class:`softmax_fast.SoftmaxRegression`
    (``coef_ (d, k)``, ``intercept_``, ``classes_``, ``n_features_in_``,
    ``history_``, ``n_iter_``, ``n_steps_``, ``best_epoch_``).
    """

    __init__ = _LocalSoftmaxRegression.__init__

    def fit(self, X, y, sample_weight=None, *, validation_data=None, on_epoch=None):
        """Train on the Dask arrays ``X (n, d)`` and ``y (n,)`` (see the class documentation); returns ``self``."""
        model = self._model_to_fit()
        X, y, sample_weight = _row_blocks(X, y, sample_weight)
        client = _client()
        data_futures = []
        try:
            data = _Data(client, X, y, sample_weight, model, data_futures)
            if self.solver == "lbfgs":
                self._fit_lbfgs(client, model, data, validation_data, on_epoch)
            else:
                self._fit_sgd(client, model, data, validation_data, on_epoch)
        except distributed.client.FutureCancelledError as exc:
            raise RuntimeError(f"the Dask fit lost a task it needs ({exc}): the cluster cancelled it; the model "
                               "keeps the weights of its last whole epoch or iteration") from exc
        except distributed.KilledWorker as exc:
            raise RuntimeError(f"the Dask fit lost its workers: {exc}. Each time a worker ran the task it died, and "
                               "Dask gave up after distributed.scheduler.allowed-failures deaths; the model keeps "
                               "the weights of its last whole epoch or iteration") from exc
        finally:
            _release(data_futures)
            self._publish(model)
        return self

    def _model_to_fit(self):
        """The local model the fit trains: the fitted one with ``warm_start``, else a new one with these parameters
        (checked)."""
        params = self.get_params()
        if params["early_stopping"]:
            raise ValueError("early_stopping is not available on Dask data: hold out rows yourself and pass them "
                             "as validation_data (scored after every epoch)")
        if params["shuffle_block_size"] is not None:
            raise ValueError("shuffle_block_size must be None: on Dask data the blocks that shuffle=True shuffles "
                             "are X's chunks (rechunk X to change them)")
        model = self.__dict__.get("_model") if self.warm_start else None
        if model is None:
            model = _LocalSoftmaxRegression(**params)
        else:
            model.set_params(**params)
        model._check_params()
        return model

    def _publish(self, model):
        """Keep ``model`` and show its fitted attributes on this estimator (once it has weights)."""
        if hasattr(model, "coef_"):
            self._model = model
            for name in _FITTED:
                setattr(self, name, getattr(model, name))

    def _fit_sgd(self, client, model, data, validation_data, on_epoch):
        """SGD epochs over the blocks of ``data`` (:class:`_Data`), one task per block, chained."""
        validation = None if validation_data is None else model._validation_arrays(validation_data)
        fit = model._fit_in_progress = model._new_fit(None)
        epoch_batches = sum(math.ceil(length / model.batch_size) for length in data.lengths)
        try:
            while model.n_iter_ < fit.end_epoch:
                if model.momentum > 0 and model._velocity is None:
                    model._velocity = (np.zeros_like(model.coef_), np.zeros_like(model.intercept_))
                if model.shuffle:
                    order, row_orders = _rows.shuffled_blocks(data.lengths, model._rng)
                else:
                    order, row_orders = range(len(data.lengths)), [None] * len(data.lengths)
                started = time.perf_counter()
                state = _SGDState(model.coef_, model.intercept_, model._velocity, model.n_steps_)
                task = dict(params=model.get_params(), schedule=model._schedule(fit, epoch_batches))
                chain = []
                try:
                    for block, rows in zip(order, row_orders):
                        chain.append(client.submit(_sgd_block, chain[-1] if chain else state, data.blocks[block],
                                                   rows, task, pure=False))
                    state = chain[-1].result()
                finally:
                    _release(chain)
                number = model.n_iter_ + 1
                if state.non_finite is not None:
                    raise model._divergence(number, state.non_finite, 0)
                model.coef_, model.intercept_, model._velocity, model.n_steps_ = \
                    state.coef, state.intercept, state.velocity, state.n_steps
                epoch = _EpochInProgress(order=None, batches_done=state.batches_done, loss_sum=state.loss_sum,
                                         n_correct=state.n_correct, seconds=time.perf_counter() - started)
                record, plateau_stop = model._end_epoch(data.n, epoch, fit, None, validation)
                if on_epoch is not None:
                    on_epoch(record)
                if plateau_stop:
                    break
        finally:
            model._fit_in_progress = None

    def _fit_lbfgs(self, client, model, data, validation_data, on_iteration):
        """L-BFGS on the client over the objective's sums from the blocks of ``data`` (:class:`_Data`)."""
        def start_sums():
            futures = client.map(_block_curvature_sums, data.blocks, pure=False)
            try:
                square_sums, weight_sum = functools.reduce(_add_sums, client.gather(futures))
            finally:
                _release(futures)
            return square_sums / data.n, weight_sum / data.n

        objective = _lbfgs.Objective(_BlockSums(client, data, model.get_params()), model.alpha,
                                     model.coef_.shape, model.coef_.dtype, start_sums)
        model._minimize(objective, validation_data, on_iteration, None)

    # -- prediction -----------------------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities of ``X (n, d)``, a Dask array ``(n, k)`` of ``coef_``'s dtype, block by block."""
        model, X = self._prediction_model(), _row_blocks(X)[0]
        return X.map_blocks(_predict_proba_block, model, dtype=model.coef_.dtype,
                            chunks=(X.chunks[0], (len(model.classes_),)))

    def predict(self, X):
        """The most probable class of each row of ``X (n, d)``: a Dask array ``(n,)`` of labels from ``classes_``."""
        model, X = self._prediction_model(), _row_blocks(X)[0]
        return X.map_blocks(_predict_block, model, dtype=model.classes_.dtype, drop_axis=1)

    def score(self, X, y, sample_weight=None):
        """The accuracy on ``X (n, d)`` and ``y (n,)``, weighted by ``sample_weight`` if given: a float, computed
        block by block."""
        X, y, sample_weight = _row_blocks(X, y, sample_weight)
        hits = self.predict(X) == y
        if sample_weight is None:
            return float(hits.mean().compute())
        total, weight = da.compute((hits * sample_weight).sum(), sample_weight.sum())
        return float(total / weight)

    def to_local(self):
        """A copy of the fitted model as a :class:`softmax_fast.SoftmaxRegression` (``NotFittedError`` before fit)."""
        return copy.deepcopy(self._prediction_model())

    def _prediction_model(self):
        """The fitted local model, with ``n_jobs`` threads (1 by default: the blocks of a prediction run side by
        side on every worker thread)."""
        model = self.__dict__.get("_model")
        if model is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")
        if self.n_jobs is None:
            model = copy.copy(model)
            model.n_jobs = 1
        return model


# -- the data of a fit --------------------------------------------------------------------------------------------

def _client():
    """The ``distributed.Client`` in use (``distributed.get_client``), or a ``ValueError`` that says how to make one."""
    try:
        return distributed.get_client()
    except ValueError as exc:
        raise ValueError("softmax_fast.dask.SoftmaxRegression trains on a Dask cluster: create a "
                         "distributed.Client first, e.g. Client(LocalCluster()) or Client('tcp://scheduler:8786')"
                         ) from exc


def _row_blocks(X, y=None, sample_weight=None):
    """``X`` checked to be a 2-D Dask array chunked by rows only, with ``y`` and ``sample_weight`` (if given) as
    1-D Dask arrays of its length, chunked like its rows."""
    if not isinstance(X, da.Array):
        raise TypeError(f"X must be a dask.array.Array chunked by rows, got {type(X).__name__}; for data in memory "
                        "use softmax_fast.SoftmaxRegression")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got {X.ndim} dimensions")
    if any(math.isnan(size) for size in X.chunks[0]):
        raise ValueError("X's chunk sizes are unknown: call X.compute_chunk_sizes() first")
    if X.numblocks[1] != 1:
        raise ValueError(f"X must be chunked by rows only, got {X.numblocks[1]} blocks across its columns: "
                         "X.rechunk({1: -1})")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise TypeError(f"X must hold numbers, got dtype {X.dtype}")
    vectors = []
    for name, vector in (("y", y), ("sample_weight", sample_weight)):
        if vector is not None:
            vector = da.asarray(vector)
            if vector.ndim != 1 or vector.shape[0] != X.shape[0]:
                raise ValueError(f"{name} must be 1-D with one value per row of X ({X.shape[0]}), got shape "
                                 f"{vector.shape}")
            vector = vector.rechunk((X.chunks[0],))
        vectors.append(vector)
    return X, *vectors


class _Data:
    """The training data of a fit on the cluster: one future per block of kernel-ready rows (``blocks``, an
    :class:`~softmax_fast._rows.Rows` each), the blocks' ``lengths (m,)`` and the rows' count ``n``.

    Making it persists the arrays, checks every block on its worker, sets
    the model's classes and, unless the fit is warm, its fresh weights.
    The futures it holds are appended to ``futures``, for the fit to release.
    """

    def __init__(self, client, X, y, sample_weight, model, futures):
        warm = model.warm_start and hasattr(model, "coef_")
        if warm and X.shape[1] != model.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but this model was fitted with {model.n_features_in_}")
        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        arrays = client.persist(arrays)
        blocks = [_block_futures(array) for array in arrays]
        futures.extend(future for array in blocks for future in array)
        survey_futures = client.map(_survey_block, *blocks, pure=False)
        futures.extend(survey_futures)  # a block that fails its survey must not keep its keys erred on the cluster
        surveys = client.gather(survey_futures)
        self.lengths = np.array([length for length, _, _, _ in surveys], dtype=np.intp)
        self.n = int(self.lengths.sum())
        labels = np.unique(np.concatenate([block_labels for _, block_labels, _, _ in surveys]))
        check_classification_targets(labels)
        if warm:
            classes = model.classes_
            _rows.label_indices(classes, labels)  # raises for a label the model does not know
        else:
            classes = labels
            _rows.check_two_classes(classes)
        counts = np.zeros(len(classes), dtype=np.int64)
        for _, block_labels, block_counts, _ in surveys:
            counts[np.searchsorted(classes, block_labels)] += block_counts
        class_weight = model.class_weight
        if isinstance(class_weight, str):  # "balanced" needs the counts of all the blocks
            class_weight = dict(zip(classes.tolist(), _rows.balanced_class_weights(counts)))
        if class_weight is not None or sample_weight is not None:
            # One stand-in row for each class that has rows of a weight > 0: weighted by its class's weight.
            weighted = np.searchsorted(classes, np.unique(np.concatenate([labels for _, _, _, labels in surveys])))
            _rows.check_weighted_classes(_rows.row_weights(class_weight or {}, classes, weighted, None, np.float64),
                                         weighted, classes)
        if not warm:
            model._init_model(X.shape[1], classes)
            model.n_features_in_ = X.shape[1]
        checker = _LocalSoftmaxRegression(dtype=str(model.coef_.dtype))
        checker.n_features_in_ = X.shape[1]
        self.blocks = client.map(_kernel_block, *blocks, checker=checker, classes=classes,
                                 class_weight=class_weight, pure=False)
        futures.extend(self.blocks)


def _block_futures(array):
    """The futures of the blocks of the persisted Dask ``array`` (chunked along its first axis only), in order."""
    by_key = {future.key: future for future in distributed.futures_of(array)}
    return [by_key[key] for key in flatten(array.__dask_keys__())]


def _release(futures):
    """Let the cluster forget ``futures`` (and stop those not yet run) now, rather than when the objects die: an
    exception's traceback keeps them alive. Only this client's hold ends: data persisted elsewhere stays.

    Returns once the client has dropped them. ``Future.release`` only queues that on the client's event loop, and
    a graph submitted before it runs binds its futures of the same keys to the released ones' states: a fit that
    follows a failed one on the same arrays would get the old error (the keys of ``da.from_array`` come from the
    data). The loop runs its callbacks in order, so one round trip through it is enough, and the scheduler then
    receives the release before any later graph.
    """
    for future in futures:
        future.release()
    if futures and futures[0].client.status == "running":
        futures[0].client.sync(asyncio.sleep, 0)


def _survey_block(X, y, sample_weight=None):
    """What the client needs of a block before training: ``(rows, labels, their counts, labels of the rows with a
    weight > 0)``. Checks that the block's features are finite and its weights valid."""
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise ValueError(f"X holds NaN or infinity in a block of {len(X)} rows")
    labels, counts = np.unique(y, return_counts=True)
    weighted = labels
    if sample_weight is not None:
        weighted = np.unique(y[_rows.checked_sample_weight(sample_weight, len(y), np.float64) > 0])
    return len(y), labels, counts, weighted


def _kernel_block(X, y, sample_weight=None, *, checker, classes, class_weight):
    """A block as kernel-ready :class:`~softmax_fast._rows.Rows`: the features as ``validate_data`` makes them for
    ``checker`` (uint8 and the model's dtype kept, C-ordered, anything else converted), the class indices in
    ``classes`` and the rows' weights (``class_weight`` a dict or None)."""
    dtype = np.dtype(checker.dtype)
    X = validate_data(checker, X, reset=False, dtype=_kernel_dtypes(dtype), order="C")
    indices = _rows.label_indices(classes, y)
    sample_weight = _rows.checked_sample_weight(sample_weight, len(y), dtype)
    return _rows.Rows(X, indices, _rows.row_weights(class_weight, classes, indices, sample_weight, dtype))


def _task_threads(n_jobs, solver):
    """The kernels' threads in a task on a worker: ``n_jobs``, or by default (see the class documentation) the
    worker's threads for ``"sgd"`` and 1 for ``"lbfgs"``."""
    if n_jobs is not None:
        return _kernel_threads(n_jobs)
    return distributed.get_worker().state.nthreads if solver == "sgd" else 1


# -- SGD --------------------------------------------------------------------------------------------------------

class _SGDState:
    """What SGD hands from one block's task to the next: the weights, velocity (or None) and ``n_steps``, and the
    epoch's running sums (``batches_done``, ``loss_sum``, ``n_correct``); ``non_finite``: the
    ``_NonFiniteStep`` of a block whose SGD diverged, after which the state passes through unchanged."""

    def __init__(self, coef, intercept, velocity, n_steps, batches_done=0, loss_sum=0.0, n_correct=0,
                 non_finite=None):
        self.coef, self.intercept, self.velocity, self.n_steps = coef, intercept, velocity, n_steps
        self.batches_done, self.loss_sum, self.n_correct, self.non_finite = \
            batches_done, loss_sum, n_correct, non_finite


def _sgd_block(state, rows, order, task):
    """SGD over one block's kernel-ready ``rows`` (in ``order``, or as they are for None) from ``state``
    (:class:`_SGDState`, not modified: Dask may run a task again on the same input); returns the next state.

    ``task``: the model's ``params`` and the fit's ``schedule``. The
    in-memory estimator's own loop of kernel calls trains the rows.
    """
    if state.non_finite is not None:
        return state
    model = _LocalSoftmaxRegression(**task["params"])
    model.coef_, model.intercept_ = state.coef.copy(), state.intercept.copy()
    model._velocity = None if state.velocity is None else tuple(v.copy() for v in state.velocity)
    model.n_steps_ = state.n_steps
    rows = rows if order is None else rows.take(order)
    epoch = _EpochInProgress(order=None, loss_sum=state.loss_sum, n_correct=state.n_correct)
    try:
        for _ in model._sgd_calls(kernels.get_backend(model.backend), rows, epoch, task["schedule"],
                                  _task_threads(model.n_jobs, "sgd")):
            pass
    except _NonFiniteStep as step:
        return _SGDState(state.coef, state.intercept, state.velocity, state.n_steps, state.batches_done,
                         non_finite=_NonFiniteStep(step.loss, state.batches_done + step.batches_before,
                                                   step.n_batches))
    return _SGDState(model.coef_, model.intercept_, model._velocity, model.n_steps_,
                     state.batches_done + epoch.batches_done, epoch.loss_sum, epoch.n_correct)


# -- L-BFGS ----------------------------------------------------------------------------------------------------

class _BlockSums:
    """``loss_and_grad(W, b)`` for :class:`softmax_fast._lbfgs.Objective` over the blocks of ``data`` on the
    cluster: the weights sent once (a task's result, which the workers copy from each other), each block's
    float64 sums, a binary tree of additions in block order, divided by the rows' count on the client."""

    def __init__(self, client, data, params):
        self._client, self._data, self._params = client, data, params

    def __call__(self, W, b):
        client, futures = self._client, []
        try:
            # A task, not client.scatter: a worker that dies holding a scattered value loses it for good (and a
            # broadcast to it fails), where a task's result is recomputed. Workers fetch it from each other.
            futures.append(client.submit(_weights, W, b, pure=False))
            level = [client.submit(_block_sums, rows, futures[0], self._params, pure=False)
                     for rows in self._data.blocks]
            futures.extend(level)
            while len(level) > 1:
                pairs = [client.submit(_add_sums, left, right, pure=False)
                         for left, right in zip(level[::2], level[1::2])]
                futures.extend(pairs)
                level = pairs + level[len(pairs) * 2:]
            loss, dW, db = level[0].result()
        finally:
            _release(futures)
        n = self._data.n
        return loss / n, dW / n, db / n


def _block_sums(rows, weights, params):
    """``(loss, dW (d, k), db (k,))``: the sums over one block's kernel-ready ``rows`` of the weighted loss and its
    gradient at ``weights = (W, b)``, in float64 (the compiled ``loss_and_grad``'s means times the rows)."""
    W, b = weights
    loss, dW, db = kernels.get_backend(params["backend"]).loss_and_grad(
        rows.X, rows.y, W, b, _scale_of(rows.X), n_threads=_task_threads(params["n_jobs"], "lbfgs"),
        sample_weight=rows.weights)
    n = len(rows.y)
    return loss * n, np.multiply(dW, n, dtype=np.float64), np.multiply(db, n, dtype=np.float64)


def _block_curvature_sums(rows):
    """:func:`softmax_fast._lbfgs.curvature_sums` of one block's kernel-ready ``rows``: the block's share of the
    objective's curvature at the start (``_lbfgs.Objective.start_curvature``)."""
    return _lbfgs.curvature_sums(rows.X, rows.weights, _scale_of(rows.X))


def _weights(W, b):
    """``(W, b)``: the weights of one evaluation, as the result of a task."""
    return W, b


def _add_sums(left, right):
    """The sum, part by part, of two tuples of sums (``(loss, dW, db)`` of :func:`_block_sums`, or those of
    :func:`_block_curvature_sums`)."""
    return tuple(left_part + right_part for left_part, right_part in zip(left, right))


# -- prediction ----------------------------------------------------------------------------------------------------

def _predict_proba_block(X, model):
    return model.predict_proba(X)


def _predict_block(X, model):
    return model.predict(X)
