"""The ``.npz`` model file: its layout, writing it, and reading and checking formats 1 to 3.

This module owns the file format of a saved :class:`~softmax_fast.SoftmaxRegression`
(``SoftmaxRegression.save`` and ``load`` delegate here), the checkpoint file
of ``python -m softmax_fast.train`` (a model file with one more array), and
the state of an interrupted epoch (:class:`_EpochInProgress`), which the
estimator trains with and a file stores.

Layout. Every array is written by ``numpy.savez`` and read with
``allow_pickle=False``; "JSON" is a 0-d string array holding JSON text.

==========================  ======  ========================================================
array                       format  meaning
==========================  ======  ========================================================
``format_version``          1-3     0-d integer: 1, 2 or ``MODEL_FORMAT_VERSION`` (3)
``softmax_fast_version``    1-3     0-d string: ``softmax_fast.__version__`` of the writer
                                    (not read)
``coef``                    1-3     ``(n_features, n_classes)``, float32 or float64, finite,
                                    ``n_classes >= 2``
``intercept``               1-3     ``(n_classes,)``, the dtype of ``coef``, finite
``classes``                 1-3     ``(n_classes,)``, the labels, sorted (string labels as a
                                    NumPy string array, never an object array)
``params``                  1-3     JSON object of ``get_params()`` (a ``RandomState`` or
                                    ``Generator`` ``random_state`` as ``null``); format 1
                                    names ``random_state`` and ``n_jobs`` ``seed`` and
                                    ``threads``
``history``                 1-3     JSON list of one object per epoch (``history_``); its
                                    length is ``n_iter_``
``rng_state``               3       JSON ``{"kind": "RandomState" or "Generator", "state":
                                    ...}``: the shuffling generator's state, as NumPy's
                                    ``get_state(legacy=False)`` or ``bit_generator.state``
                                    gives it (a Generator over one of ``_BIT_GENERATORS``)
``epoch_in_progress``       3       JSON ``null``, or the object of an interrupted epoch:
                                    ``batches_done``, ``loss_sum``, ``n_correct``,
                                    ``seconds``, ``data_sha256`` (see :class:`_EpochInProgress`)
``epoch_order``             3       ``(n_rows,)`` integers, the permutation of the rows in the
                                    interrupted epoch; only when it is shuffled
``run``                     (3)     checkpoints only: JSON of the run's options, which
                                    ``softmax_fast.train`` defines and checks
==========================  ======  ========================================================

A file of format 1 or 2 has no generator state: its model shuffles with the
generator its ``random_state`` stands for, as at the start of a fit (a new
``RandomState`` for an integer), and has no interrupted epoch.
Reading ignores arrays it does not know (``run``, for one).

Imports: NumPy, the package's ``__version__``, ``kernels._validation`` and
``datasets`` (its atomic write), never the estimator. The functions receive
the model, or the estimator class to build one, and use of it: the
constructor, ``get_params``, ``_get_param_names``, ``_check_is_fitted``,
``_check_params``, ``_seeded_generator`` and the fitted attributes
(``coef_``, ``intercept_``, ``classes_``, ``n_features_in_``, ``history_``,
``n_iter_``, ``_rng``, ``_epoch_in_progress``).
"""

import dataclasses
import io
import json
import zipfile

import numpy as np

from . import __version__, datasets
from .kernels._validation import FLOAT_DTYPES

#: Version of the ``.npz`` layout that :func:`save` writes (see the table above).
#: Format 3 adds the state of the shuffling generator and of an interrupted epoch; format 2 names the
#: parameters ``random_state`` and ``n_jobs``; format 1 called them ``seed`` and ``threads``.
MODEL_FORMAT_VERSION = 3
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


# -- writing ---------------------------------------------------------------------------------------


def save(model, file):
    """Write the fitted ``model`` to ``file`` (a path or a binary file object): ``SoftmaxRegression.save``."""
    np.savez(file, **_arrays(model))


def write_checkpoint(path, model, run):
    """Write the interrupted ``model`` and the JSON value ``run`` to ``path`` atomically.

    A temporary file, then ``os.replace``: readers see the old checkpoint or
    the new one. The file is a model file (``load`` reads it) with one more
    array, ``run``.
    """
    checkpoint = io.BytesIO()
    np.savez(checkpoint, **_arrays(model), run=json.dumps(run))
    datasets._write_atomically(path, checkpoint.getvalue())


def _arrays(model):
    """The arrays of the file of ``model``, by name; ``NotFittedError`` before ``fit``."""
    model._check_is_fitted()
    epoch = getattr(model, "_epoch_in_progress", None)
    arrays = {}
    if epoch is not None and epoch.order is not None:
        arrays["epoch_order"] = epoch.order
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
        **arrays,
    )


def _json_params(model):
    """``get_params()`` as JSON holds them: NumPy scalars as Python ones, a random generator as ``None``."""
    params = model.get_params()
    if isinstance(params["random_state"], (np.random.RandomState, np.random.Generator)):
        params["random_state"] = None
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in params.items()}


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
    if format_version not in (1, 2, MODEL_FORMAT_VERSION):
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
    if format_version == MODEL_FORMAT_VERSION:
        model._rng = _generator_from_state(_saved_json(contents, "rng_state"))
        model._epoch_in_progress = _epoch_from_saved(_saved_json(contents, "epoch_in_progress"),
                                                     contents.get("epoch_order"))
    else:
        model._rng = model._seeded_generator()
        model._epoch_in_progress = None
    return model


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
