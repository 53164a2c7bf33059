"""The ``.npz`` model file: its layout, writing it, and reading and checking formats 1 to 4.

This module owns the file format of a saved :class:`~softmax_fast.SoftmaxRegression`
(``SoftmaxRegression.save`` and ``load`` delegate here), the checkpoint file
of ``python -m softmax_fast.train`` (a model file with one more array), and
the state of an interrupted epoch (:class:`_EpochInProgress`) and of a fit
across its epochs (:class:`_FitInProgress`), which the estimator trains with
and a file stores.

Layout. Every array is written by ``numpy.savez`` and read with
``allow_pickle=False``; "JSON" is a 0-d string array holding JSON text.

==========================  ======  ========================================================
array                       format  meaning
==========================  ======  ========================================================
``format_version``          1-4     0-d integer: 1, 2, 3 or ``MODEL_FORMAT_VERSION`` (4)
``softmax_fast_version``    1-4     0-d string: ``softmax_fast.__version__`` of the writer
                                    (not read)
``coef``                    1-4     ``(n_features, n_classes)``, float32 or float64, finite,
                                    ``n_classes >= 2``
``intercept``               1-4     ``(n_classes,)``, the dtype of ``coef``, finite
``classes``                 1-4     ``(n_classes,)``, the labels, sorted (string labels as a
                                    NumPy string array, never an object array)
``params``                  1-4     JSON object of ``get_params()`` (a ``RandomState`` or
                                    ``Generator`` ``random_state`` as ``null``; a dict
                                    ``class_weight`` as a list of ``[label, weight]`` pairs,
                                    since JSON keys are strings); format 1 names
                                    ``random_state`` and ``n_jobs`` ``seed`` and ``threads``;
                                    formats 1-3 have none of the training options, and
                                    files written before ``solver`` none of ``solver``,
                                    ``max_iter``, ``gtol`` (their defaults apply)
``history``                 1-4     JSON list of one object per epoch, or per L-BFGS
                                    iteration (``history_``); its length is ``n_iter_``
``rng_state``               3-4     JSON ``{"kind": "RandomState" or "Generator", "state":
                                    ...}``: the shuffling generator's state, as NumPy's
                                    ``get_state(legacy=False)`` or ``bit_generator.state``
                                    gives it (a Generator over one of ``_BIT_GENERATORS``)
``epoch_in_progress``       3-4     JSON ``null``, or the object of an interrupted epoch:
                                    ``batches_done``, ``loss_sum``, ``n_correct``,
                                    ``seconds``, ``data_sha256`` (see :class:`_EpochInProgress`)
``epoch_order``             3-4     ``(n_rows,)`` integers, the permutation of the rows in the
                                    interrupted epoch; only when it is shuffled
``training_state``          4       JSON ``{"n_steps": n_steps_, "best_epoch": best_epoch_}``
``velocity_coef``,          4       the momentum's velocity, shaped and typed like ``coef``
``velocity_intercept``              and ``intercept``, finite; only when the model has one
``fit_in_progress``         4       JSON ``null``, or, with an interrupted epoch, the object of
                                    its fit: ``first_epoch``, ``end_epoch``, ``origin``,
                                    ``rate``, ``best_score``, ``best_epoch``, ``stalled`` (see
                                    :class:`_FitInProgress`)
``validation_rows``         4       the interrupted fit's held-out rows (early stopping):
                                    increasing integers >= 0
``best_coef``,              4       the interrupted fit's best weights so far (early
``best_intercept``                  stopping), like ``coef`` and ``intercept``; and
``best_velocity_coef``,             their velocity when there is one
``best_velocity_intercept``
``run``                     (3-4)   checkpoints only: JSON of the run's options, which
                                    ``softmax_fast.train`` defines and checks
==========================  ======  ========================================================

A file of format 1 or 2 has no generator state: its model shuffles with the
generator its ``random_state`` stands for, as at the start of a fit (a new
``RandomState`` for an integer), and has no interrupted epoch. A file of
formats 1 to 3 has no velocity, ``n_steps_`` 0 (its count of batches was not
stored; its model trained at a constant rate) and ``best_epoch_`` ``None``;
the fit of its interrupted epoch, if any, is the one a format-3 fit was:
from epoch 0 to ``epochs``, without early stopping.
Reading ignores arrays it does not know (``run``, for one).

Imports: NumPy, the package's ``__version__``, ``kernels._validation``,
``datasets`` (its atomic write) and ``schedules`` (its ``Plateau``), never the
estimator. The functions receive
the model, or the estimator class to build one, and use of it: the
constructor, ``get_params``, ``_get_param_names``, ``_check_is_fitted``,
``_check_params``, ``_seeded_generator`` and the fitted attributes
(``coef_``, ``intercept_``, ``classes_``, ``n_features_in_``, ``history_``,
``n_iter_``, ``n_steps_``, ``best_epoch_``, ``_rng``, ``_velocity``,
``_epoch_in_progress``, ``_fit_in_progress``).
"""

import dataclasses
import io
import json
import zipfile

import numpy as np

from . import __version__, datasets, schedules
from .kernels._validation import FLOAT_DTYPES

#: Version of the ``.npz`` layout that :func:`save` writes (see the table above).
#: Format 4 adds the training options' state (velocity, step count, an interrupted fit's schedule and early
#: stopping); format 3 the state of the shuffling generator and of an interrupted epoch; format 2 names the
#: parameters ``random_state`` and ``n_jobs``; format 1 called them ``seed`` and ``threads``.
MODEL_FORMAT_VERSION = 4
_FORMAT_1_PARAM_NAMES = {"seed": "random_state", "threads": "n_jobs"}
# The bit generators a saved Generator state may name (the names are looked up in numpy.random).
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


@dataclasses.dataclass
class _EpochInProgress:
    """How far an epoch has got: all that an interrupted fit needs to go on bit for bit."""

    order: np.ndarray | None  # the order of the rows in this epoch (with shuffle), or None
    batches_done: int = 0
    loss_sum: float = 0.0  # the sum of the kernel calls' mean batch loss times their number of batches
    n_correct: int = 0
    seconds: float = 0.0
    data_sha256: str = ""  # of the training data, set when the fit is interrupted


@dataclasses.dataclass
class _FitInProgress:
    """What a fit carries from epoch to epoch besides the model: its span, its schedule and its early stopping."""

    first_epoch: int  # n_iter_ when the fit began (0, or more with warm_start)
    end_epoch: int  # the fit ends when n_iter_ reaches it, or earlier when its plateau says so
    origin: int  # n_steps_ when the fit began: where the cosine schedule starts
    rate: float  # the adaptive schedule's current rate (lr until a plateau lowers it)
    plateau: schedules.Plateau = dataclasses.field(default_factory=schedules.Plateau)
    validation_rows: np.ndarray | None = None  # early stopping: the held-out rows of the fit's X, sorted
    best: tuple | None = None  # early stopping: (coef, intercept, velocity or None) after plateau.best_epoch


# -- writing ---------------------------------------------------------------------------------------


def save(model, file):
    """Write the fitted ``model`` to ``file`` (a path or a binary file object): ``SoftmaxRegression.save``."""
    np.savez(file, **_arrays(model))


def write_checkpoint(path, model, run=None):
    """Write the interrupted ``model`` (and the JSON value ``run``, if given) to ``path`` atomically.

    A temporary file, then ``os.replace``: readers see the old checkpoint or
    the new one. The file is a model file (``load`` reads it), with one more
    array, ``run``, when given.
    """
    checkpoint = io.BytesIO()
    np.savez(checkpoint, **_arrays(model), **({} if run is None else {"run": json.dumps(run)}))
    datasets._write_atomically(path, checkpoint.getvalue())


def _arrays(model):
    """The arrays of the file of ``model``, by name; ``NotFittedError`` before ``fit``."""
    model._check_is_fitted()
    epoch = getattr(model, "_epoch_in_progress", None)
    fit = None if epoch is None else model._fit_in_progress
    arrays = _weight_arrays("velocity_", model._velocity)
    if epoch is not None and epoch.order is not None:
        arrays["epoch_order"] = epoch.order
    if fit is not None and fit.validation_rows is not None:
        arrays["validation_rows"] = fit.validation_rows
    if fit is not None and fit.best is not None:
        best_coef, best_intercept, best_velocity = fit.best
        arrays |= _weight_arrays("best_", (best_coef, best_intercept)) | _weight_arrays("best_velocity_",
                                                                                        best_velocity)
    return dict(
        format_version=MODEL_FORMAT_VERSION,
        softmax_fast_version=__version__,
        coef=model.coef_,
        intercept=model.intercept_,
        # Labels in an object array are strings (scikit-learn's and our target checks reject any other
        # objects); as a NumPy string array they load without pickle.
        classes=np.asarray(model.classes_.tolist()),
        params=json.dumps(_json_params(model)),
        history=json.dumps(model.history_),
        rng_state=json.dumps(_generator_state(model._rng)),
        epoch_in_progress=json.dumps(None if epoch is None else {
            field.name: getattr(epoch, field.name) for field in dataclasses.fields(epoch) if field.name != "order"
        }),
        training_state=json.dumps({"n_steps": model.n_steps_, "best_epoch": model.best_epoch_}),
        fit_in_progress=json.dumps(None if fit is None else {
            "first_epoch": fit.first_epoch, "end_epoch": fit.end_epoch, "origin": fit.origin, "rate": fit.rate,
            **dataclasses.asdict(fit.plateau)}),
        **arrays,
    )


def _weight_arrays(prefix, pair):
    """``{prefix + "coef": W, prefix + "intercept": b}`` for a pair of arrays like the weights; ``{}`` for None."""
    return {} if pair is None else {f"{prefix}coef": pair[0], f"{prefix}intercept": pair[1]}


def _json_params(model):
    """``get_params()`` as JSON holds them: NumPy scalars as Python ones, a random generator as ``None``."""
    params = model.get_params()
    if isinstance(params["random_state"], (np.random.RandomState, np.random.Generator)):
        params["random_state"] = None
    if isinstance(params["class_weight"], dict):
        params["class_weight"] = [[_json_values(label), _json_values(weight)]
                                  for label, weight in params["class_weight"].items()]
    return {name: _json_values(value) for name, value in params.items()}


def _generator_state(rng):
    """``{"kind": "RandomState" or "Generator", "state": ...}``: the state of ``rng`` in JSON values."""
    if isinstance(rng, np.random.RandomState):
        return {"kind": "RandomState", "state": _json_values(rng.get_state(legacy=False))}
    return {"kind": "Generator", "state": _json_values(rng.bit_generator.state)}


def _json_values(value):
    """``value`` (dicts of arrays and numbers) with NumPy arrays and scalars as lists and Python numbers."""
    if isinstance(value, dict):
        return {key: _json_values(item) for key, item in value.items()}
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


# -- reading ---------------------------------------------------------------------------------------


def load(cls, file):
    """The model of class ``cls`` in ``file`` (a path or a binary file object): ``SoftmaxRegression.load``."""
    model, _ = _read(cls, file)
    return model


def read_checkpoint(cls, path):
    """``(model, run)`` from a file :func:`write_checkpoint` wrote.

    ``run`` is the JSON value of the array ``run``, or ``None`` when there is
    none or it is not JSON (a model file that is not a checkpoint); its
    caller checks what it holds. ``ValueError`` as :func:`load`'s.
    """
    model, contents = _read(cls, path)
    try:
        run = json.loads(str(contents["run"])) if "run" in contents else None
    except json.JSONDecodeError:
        run = None
    return model, run


def _read(cls, file):
    """``(model, arrays by name)`` of ``file``; ``ValueError`` naming ``file`` and the problem. Never unpickles."""
    try:
        with np.load(file, allow_pickle=False) as saved:
            contents = {name: saved[name] for name in saved.files}
        return _from_saved(cls, contents), contents
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{file} is not a softmax_fast model file: {exc}") from exc


def _from_saved(cls, contents):
    """The model held by the arrays of a saved file; ``ValueError`` saying what is wrong with them."""
    required = {"format_version", "coef", "intercept", "classes", "params", "history"}
    if not required <= contents.keys():
        raise ValueError(f"missing {sorted(required - contents.keys())}")
    format_version = _saved_json(contents, "format_version")
    if format_version not in range(1, MODEL_FORMAT_VERSION + 1):
        raise ValueError(f"it has model format {format_version!r}; "
                         f"this softmax_fast reads formats 1 to {MODEL_FORMAT_VERSION}")
    coef, intercept, classes = contents["coef"], contents["intercept"], contents["classes"]
    if (coef.ndim != 2 or coef.shape[0] < 1 or coef.shape[1] < 2 or coef.dtype not in FLOAT_DTYPES
            or intercept.dtype != coef.dtype or intercept.shape != (coef.shape[1],)
            or classes.shape != (coef.shape[1],)):
        raise ValueError(f"inconsistent arrays: coef {coef.shape} {coef.dtype} (expected (n_features, "
                         f"n_classes >= 2) of float32 or float64), intercept {intercept.shape} "
                         f"{intercept.dtype}, classes {classes.shape}")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError("the weights coef and intercept hold NaN or inf")
    params = _saved_json(contents, "params")
    if not isinstance(params, dict) or not params.keys() <= set(cls._get_param_names()) | set(
            _FORMAT_1_PARAM_NAMES):
        raise ValueError(f"params must be a JSON object of the parameters {cls._get_param_names()}, "
                         f"got {contents['params']}")
    if isinstance(params.get("class_weight"), list):
        params["class_weight"] = _class_weight_from_saved(params["class_weight"])
    model = cls(**{_FORMAT_1_PARAM_NAMES.get(name, name): value for name, value in params.items()})
    try:
        model._check_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid params: {exc}") from exc
    history = _saved_json(contents, "history")
    if not (isinstance(history, list) and all(isinstance(record, dict) for record in history)):
        raise ValueError("history must be a JSON list of one object per epoch")
    model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
    model.n_features_in_ = coef.shape[0]
    model.history_ = history
    model.n_iter_ = len(history)
    if format_version >= 3:
        model._rng = _generator_from_state(_saved_json(contents, "rng_state"))
        model._epoch_in_progress = _epoch_from_saved(_saved_json(contents, "epoch_in_progress"),
                                                     contents.get("epoch_order"))
    else:
        model._rng = model._seeded_generator()
        model._epoch_in_progress = None
    if format_version >= 4:
        model._velocity = _weights_from_saved(contents, "velocity_", coef, intercept)
        model.n_steps_, model.best_epoch_ = _training_state_from_saved(_saved_json(contents, "training_state"),
                                                                       model.n_iter_)
        model._fit_in_progress = _fit_from_saved(_saved_json(contents, "fit_in_progress"), contents, coef, intercept)
    else:
        model._velocity, model.n_steps_, model.best_epoch_ = None, 0, None
        model._fit_in_progress = None if model._epoch_in_progress is None else _FitInProgress(
            first_epoch=0, end_epoch=model.epochs, origin=0, rate=float(model.lr))
    if (model._epoch_in_progress is None) != (model._fit_in_progress is None):
        raise ValueError("epoch_in_progress and fit_in_progress must both be null or both be set")
    return model


def _class_weight_from_saved(pairs):
    """The dict ``class_weight`` stored as a list of ``[label, weight]`` pairs; ``ValueError`` if it is not one."""
    if not all(isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int, float, bool))
               for pair in pairs):
        raise ValueError(f"params: class_weight must be stored as a list of [label, weight] pairs, got {pairs}")
    return {label: weight for label, weight in pairs}


def _is_count(value, low=0):
    """Whether ``value`` (read from JSON) is an integer >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _training_state_from_saved(saved, n_iter):
    """``(n_steps_, best_epoch_)`` from the saved ``training_state``; ``ValueError`` if it is not one."""
    if not (isinstance(saved, dict) and saved.keys() == {"n_steps", "best_epoch"} and _is_count(saved["n_steps"])
            and (saved["best_epoch"] is None or (_is_count(saved["best_epoch"], 1)
                                                 and saved["best_epoch"] <= n_iter))):
        raise ValueError(f"training_state must be an object of n_steps (an integer >= 0) and best_epoch (null or "
                         f"an epoch of the history), got {saved}")
    return saved["n_steps"], saved["best_epoch"]


def _weights_from_saved(contents, prefix, coef, intercept):
    """The pair of arrays ``prefix + "coef"``, ``prefix + "intercept"`` shaped like the weights, or ``None``."""
    names = (f"{prefix}coef", f"{prefix}intercept")
    present = [name in contents for name in names]
    if not any(present):
        return None
    pair = tuple(contents.get(name) for name in names)
    if not all(present) or any(array.shape != like.shape or array.dtype != like.dtype
                               for array, like in zip(pair, (coef, intercept))):
        raise ValueError(f"{' and '.join(names)} must both be there, shaped and typed like coef and intercept")
    if not all(np.isfinite(array).all() for array in pair):
        raise ValueError(f"{' and '.join(names)} hold NaN or inf")
    return pair


def _fit_from_saved(saved, contents, coef, intercept):
    """The interrupted fit that the saved JSON object and arrays describe, or ``None``; ``ValueError``."""
    if saved is None:
        return None
    counts = ("first_epoch", "end_epoch", "origin", "stalled")
    if not (isinstance(saved, dict) and saved.keys() == {*counts, "rate", "best_score", "best_epoch"}
            and all(_is_count(saved[name]) for name in counts) and saved["first_epoch"] <= saved["end_epoch"]
            and isinstance(saved["rate"], float) and saved["rate"] > 0
            and (saved["best_score"] is None or isinstance(saved["best_score"], (int, float)))
            and (saved["best_epoch"] is None or _is_count(saved["best_epoch"], 1))):
        raise ValueError(f"fit_in_progress must be null or an object of first_epoch <= end_epoch, origin, "
                         f"stalled (integers >= 0), rate (> 0), best_score and best_epoch, got {saved}")
    rows = contents.get("validation_rows")
    if rows is not None and not (rows.ndim == 1 and rows.dtype.kind == "i" and len(rows) > 0 and rows[0] >= 0
                                 and (np.diff(rows) > 0).all()):
        raise ValueError("validation_rows must be increasing integers >= 0")
    best = _weights_from_saved(contents, "best_", coef, intercept)
    if best is not None:
        best = (*best, _weights_from_saved(contents, "best_velocity_", coef, intercept))
    plateau = schedules.Plateau(best_score=saved["best_score"], best_epoch=saved["best_epoch"],
                                stalled=saved["stalled"])
    return _FitInProgress(first_epoch=saved["first_epoch"], end_epoch=saved["end_epoch"], origin=saved["origin"],
                          rate=saved["rate"], plateau=plateau, validation_rows=rows, best=best)


def _saved_json(contents, name):
    """The JSON value stored as array ``name`` of a saved model; ``ValueError`` if it is absent or not JSON."""
    if name not in contents:
        raise ValueError(f"missing ['{name}']")
    try:
        return json.loads(str(contents[name]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from exc


def _generator_from_state(saved):
    """A new random generator in the state :func:`_generator_state` described; ``ValueError`` if it cannot be."""
    try:
        kind, state = saved["kind"], saved["state"]
        if kind == "RandomState":
            rng = np.random.RandomState()
            rng.set_state(state)
            return rng
        if kind == "Generator" and state["bit_generator"] in _BIT_GENERATORS:
            rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
            rng.bit_generator.state = state
            return rng
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"rng_state is not the state of a NumPy random generator: {exc!r}") from exc
    raise ValueError(f"rng_state is not the state of a RandomState or of a Generator over one of "
                     f"{', '.join(_BIT_GENERATORS)}")


def _epoch_from_saved(saved, order):
    """The interrupted epoch that the saved JSON object and row order describe, or ``None``; ``ValueError``."""
    if saved is None:
        return None
    fields = {"batches_done": int, "loss_sum": float, "n_correct": int, "seconds": float, "data_sha256": str}
    if not (isinstance(saved, dict) and saved.keys() == fields.keys()
            and all(isinstance(saved[name], kind) for name, kind in fields.items())
            and saved["batches_done"] >= 0 and saved["n_correct"] >= 0):
        raise ValueError(f"epoch_in_progress must be null or an object of {fields}, got {saved}")
    if order is not None and not (order.ndim == 1 and order.dtype.kind == "i"
                                  and np.array_equal(np.sort(order), np.arange(len(order)))):
        raise ValueError("epoch_order must be a permutation of the rows")
    return _EpochInProgress(order=order, **saved)
