"""SoftmaxRegression: training equals the kernels' epochs, inputs, labels and parameter checks.

How it fits into scikit-learn (its estimator checks, pipelines, searches) is in test_sklearn_compat.py; the
file it saves and loads, in test_model_file.py.
"""

import io
import itertools
import math
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import softmax_fast.kernels as kernels
from softmax_fast import SoftmaxRegression, _rows
from softmax_fast._sklearn_compat import DataConversionWarning, NotFittedError
from softmax_fast.estimator import BATCHES_PER_CALL, TrainingDivergedError, TrainingInterrupted
from softmax_fast.kernels._validation import default_num_threads


def blobs(n=600, d=16, k=4, seed=0, dtype=np.float64):
    """Linearly separable-ish Gaussian blobs: ``(X, y)`` with labels 0..k-1."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, size=n)
    return (centers[y] + rng.standard_normal((n, d))).astype(dtype), y


def test_fit_learns_and_records_history():
    X, y = blobs()
    model = SoftmaxRegression(lr=0.1, epochs=5, batch_size=32).fit(X[:500], y[:500], validation_data=(X[500:], y[500:]))
    assert [record["epoch"] for record in model.history_] == [1, 2, 3, 4, 5]
    assert model.n_iter_ == 5 and model.n_features_in_ == 16
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert model.history_[-1]["test_accuracy"] > 0.9
    assert model.score(X[500:], y[500:]) == pytest.approx(model.history_[-1]["test_accuracy"])
    assert model.coef_.shape == (16, 4) and model.coef_.dtype == np.float32
    P = model.predict_proba(X[500:])
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X[500:]), P.argmax(axis=1))


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_is_the_kernels_epochs_from_the_seed_initial_weights(backend, dtype):
    # More rows than one kernel call takes, so fit splits every epoch into several calls.
    batch_size = 4
    X, y = blobs(n=BATCHES_PER_CALL * batch_size * 2 + 13)
    model = SoftmaxRegression(lr=0.05, epochs=3, batch_size=batch_size, backend=backend, dtype=dtype).fit(X, y)

    W = (np.random.RandomState(42).randn(16, 4) * 0.01).astype(dtype)
    b = np.zeros(4, dtype=dtype)
    X_typed = X.astype(dtype)
    for record in model.history_:
        loss, accuracy = kernels.get_backend(backend).train_epoch(X_typed, y, W, b, 0.05, batch_size)
        assert record["train_loss"] == pytest.approx(loss, rel=1e-12)
        assert record["train_accuracy"] == accuracy
    np.testing.assert_array_equal(model.coef_, W)
    np.testing.assert_array_equal(model.intercept_, b)


def test_uint8_features_are_pixels_scaled_by_1_over_255():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(200, 10), dtype=np.uint8)
    y = rng.integers(0, 3, size=200)
    from_pixels = SoftmaxRegression(epochs=2, batch_size=16, dtype="float64").fit(pixels, y)
    from_floats = SoftmaxRegression(epochs=2, batch_size=16, dtype="float64").fit(pixels / 255, y)
    np.testing.assert_allclose(from_pixels.coef_, from_floats.coef_, rtol=1e-10)


class SpyBackend:
    """A kernels backend that records each call's method name, ``X`` and keyword arguments (``calls``), and its
    other positional arguments (``arguments``)."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = []
        self.arguments = []

    def __getattr__(self, name):
        method = getattr(self.backend, name)

        def record_and_call(X, *args, **kwargs):
            self.calls.append((name, X, kwargs))
            self.arguments.append(args)
            return method(X, *args, **kwargs)

        return record_and_call


@pytest.fixture
def spy_backend(monkeypatch):
    spy = SpyBackend(kernels.get_backend("numpy"))
    monkeypatch.setattr(kernels, "get_backend", lambda name: spy)
    return spy


@pytest.mark.parametrize("X_dtype", [np.int8, np.int64, np.uint16, np.float16, np.float32, np.float64, np.bool_])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_real_features_are_converted_to_dtype(spy_backend, X_dtype, dtype):
    X, y = blobs(n=100)
    X = (X > 0) if X_dtype is np.bool_ else (10 * X).astype(X_dtype)
    model = SoftmaxRegression(epochs=2, batch_size=16, dtype=dtype).fit(X, y)
    assert {X_seen.dtype for _, X_seen, _ in spy_backend.calls} == {np.dtype(dtype)}
    as_dtype = SoftmaxRegression(epochs=2, batch_size=16, dtype=dtype).fit(X.astype(dtype), y)
    np.testing.assert_array_equal(model.coef_, as_dtype.coef_)
    np.testing.assert_array_equal(model.predict_proba(X), as_dtype.predict_proba(X.astype(dtype)))


@pytest.mark.parametrize("layout", [np.asfortranarray, lambda X: np.repeat(X, 2, axis=1)[:, ::2]],
                         ids=["fortran", "strided"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_features_in_any_layout_train_like_c_ordered_ones(layout, dtype):
    X, y = blobs()
    X = (np.abs(X) * 20).astype(dtype)
    model = SoftmaxRegression(epochs=2).fit(layout(X), y)
    np.testing.assert_array_equal(model.coef_, SoftmaxRegression(epochs=2).fit(X, y).coef_)
    np.testing.assert_array_equal(model.predict_proba(layout(X)), model.predict_proba(X))


def test_uint8_features_reach_the_kernels_without_a_copy(spy_backend):
    pixels = np.random.default_rng(0).integers(0, 256, size=(100, 10), dtype=np.uint8)
    SoftmaxRegression(epochs=1, batch_size=16).fit(pixels, np.arange(100) % 3).predict(pixels)
    assert [name for name, _, _ in spy_backend.calls] == ["train_epoch", "predict"]
    assert all(np.shares_memory(X_seen, pixels) for _, X_seen, _ in spy_backend.calls)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 7, 11, 20]),
        np.array([-1.0, 0.0, 2.0, 5.0]),
        np.array(["cat", "dog", "emu", "yak"]),
        np.array(["cat", "dog", "emu", "yak"], dtype=object),
    ],
    ids=["int", "integral-float", "str", "object-str"],
)
def test_labels_of_any_kind_are_classes_and_predicted_as_themselves(labels):
    X, y = blobs()
    by_index = SoftmaxRegression(epochs=2).fit(X, y)
    by_label = SoftmaxRegression(epochs=2).fit(X, labels[y])
    np.testing.assert_array_equal(by_label.classes_, labels)
    np.testing.assert_array_equal(by_label.coef_, by_index.coef_)
    np.testing.assert_array_equal(by_label.predict(X), labels[by_index.predict(X)])
    assert by_label.score(X, labels[y]) == by_index.score(X, y)


def test_boolean_labels_are_two_classes():
    X, y = blobs(k=2)
    model = SoftmaxRegression(epochs=2).fit(X, y == 1)
    np.testing.assert_array_equal(model.classes_, [False, True])
    np.testing.assert_array_equal(model.predict(X), SoftmaxRegression(epochs=2).fit(X, y).predict(X) == 1)


def test_a_column_vector_y_warns_and_trains_like_1d():
    X, y = blobs()
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed"):
        from_column = SoftmaxRegression(epochs=2).fit(X, y[:, None])
    np.testing.assert_array_equal(from_column.coef_, SoftmaxRegression(epochs=2).fit(X, y).coef_)


@pytest.mark.parametrize(
    "y, message",
    [
        (np.eye(4)[np.arange(600) % 4], r"y should be a 1d array, got an array of shape \(600, 4\) instead"),
        (np.full(600, 7), "needs samples of at least 2 classes, but y holds only one class: 7"),
        (np.linspace(0, 1, 600), "Unknown label type: continuous"),
        (np.arange(599) % 4, r"inconsistent numbers of samples: \[600, 599\]"),
    ],
    ids=["one-hot", "one-class", "continuous", "too-short"],
)
def test_labels_that_are_not_one_class_per_row_are_rejected(y, message):
    X, _ = blobs()
    with pytest.raises(ValueError, match=message):
        SoftmaxRegression().fit(X, y)


def test_validation_labels_must_be_known():
    X, y = blobs()
    with pytest.raises(ValueError, match=r"labels the model was not fitted with, e.g. 9; known: \[0, 1, 2, 3\]"):
        SoftmaxRegression(epochs=1).fit(X, y, validation_data=(X[:3], [0, 9, 1]))


@pytest.mark.parametrize(
    "random_state, draw_weights",
    [
        (42, lambda shape: np.random.RandomState(42).randn(*shape)),
        (np.uint32(7), lambda shape: np.random.RandomState(7).randn(*shape)),
        (np.random.RandomState(3), lambda shape: np.random.RandomState(3).standard_normal(shape)),
        (np.random.default_rng(3), lambda shape: np.random.default_rng(3).standard_normal(shape)),
    ],
    ids=["int", "numpy-int", "RandomState", "Generator"],
)
def test_random_state_draws_the_initial_weights(random_state, draw_weights):
    X, y = blobs()
    model = SoftmaxRegression(epochs=0, dtype="float64", random_state=random_state).fit(X, y)
    np.testing.assert_array_equal(model.coef_, draw_weights((16, 4)) * 0.01)
    assert model.history_ == [] and model.n_iter_ == 0


def test_random_state_none_is_numpy_global_random_state():
    X, y = blobs()
    np.random.seed(5)
    first = SoftmaxRegression(epochs=0, random_state=None).fit(X, y)
    second = SoftmaxRegression(epochs=0, random_state=None).fit(X, y)
    np.testing.assert_array_equal(first.coef_, SoftmaxRegression(epochs=0, random_state=5).fit(X, y).coef_)
    assert not np.array_equal(first.coef_, second.coef_)


@pytest.mark.parametrize(
    "n_jobs, n_threads",
    [(None, None), (1, 1), (3, 3), (-1, default_num_threads()), (-1000, 1)],
)
def test_n_jobs_is_the_kernels_thread_count(spy_backend, n_jobs, n_threads):
    X, y = blobs(n=50)
    SoftmaxRegression(epochs=1, n_jobs=n_jobs).fit(X, y, validation_data=(X, y)).predict_proba(X)
    assert [name for name, _, _ in spy_backend.calls] == ["train_epoch", "loss_and_grad", "predict", "predict_proba"]
    assert all(kwargs["n_threads"] == n_threads for _, _, kwargs in spy_backend.calls)


def test_shuffle_is_seeded():
    X, y = blobs()
    first = SoftmaxRegression(epochs=2, shuffle=True, random_state=1).fit(X, y)
    again = SoftmaxRegression(epochs=2, shuffle=True, random_state=1).fit(X, y)
    in_order = SoftmaxRegression(epochs=2, shuffle=False, random_state=1).fit(X, y)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    assert not np.array_equal(first.coef_, in_order.coef_)


def test_partial_fit_continues_from_the_current_weights():
    X, y = blobs()
    two_epochs = SoftmaxRegression(epochs=2).fit(X, y)
    stepwise = SoftmaxRegression().partial_fit(X, y).partial_fit(X, y)
    np.testing.assert_array_equal(stepwise.coef_, two_epochs.coef_)
    assert len(stepwise.history_) == 2 and stepwise.n_iter_ == 2


def test_partial_fit_classes_name_every_label_on_the_first_call_and_must_not_change():
    X, y = blobs()
    model = SoftmaxRegression().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2, 3])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 3])
    model.partial_fit(X, y, classes=[3, 2, 1, 0])
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2\] differs from the classes of the first partial_fit"):
        model.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="X has 15 features, but SoftmaxRegression is expecting 16"):
        model.partial_fit(X[:, 1:], y)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr": 0}, "lr must be finite and > 0"),
        ({"lr": float("nan")}, "lr must be finite and > 0"),
        ({"lr": 1e39}, "lr must be between .* to be a float32"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"batch_size": -5}, "batch_size must be >= 1"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
        ({"epochs": 2.0}, "epochs must be an integer >= 0"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"n_jobs": 0}, "n_jobs must be None or a nonzero integer"),
        ({"n_jobs": 1.5}, "n_jobs must be None or a nonzero integer"),
        ({"random_state": -1}, r"random_state must be None, an integer in \[0, 2\*\*32\)"),
        ({"random_state": "42"}, r"random_state must be None, an integer in \[0, 2\*\*32\)"),
        ({"backend": "torch"}, "unknown backend 'torch'"),
    ],
)
def test_bad_parameters_are_rejected_by_fit(params, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        SoftmaxRegression(**params).fit(X, y)


@pytest.mark.parametrize("bad_value, message",
                         [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")])
def test_non_finite_features_are_rejected(bad_value, message):
    X, y = blobs(n=20)
    X[3, 2] = bad_value
    with pytest.raises(ValueError, match=message):
        SoftmaxRegression().fit(X, y)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_float64_too_large_for_float32_is_rejected():
    X, y = blobs(n=20)
    X[3, 2] = 1e300
    with pytest.raises(ValueError, match="Input X contains infinity or a value too large for dtype\\('float32'\\)"):
        SoftmaxRegression(dtype="float32").fit(X, y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "save"])
def test_an_unfitted_model_raises_not_fitted_error(tmp_path, method):
    X, y = blobs(n=20)
    arguments = {"predict": (X,), "predict_proba": (X,), "score": (X, y), "save": (tmp_path / "model.npz",)}
    with pytest.raises(NotFittedError, match="This SoftmaxRegression instance is not fitted yet"):
        getattr(SoftmaxRegression(), method)(*arguments[method])


def test_validation_data_must_be_a_pair_of_valid_arrays():
    X, y = blobs()
    with pytest.raises(TypeError, match=r"validation_data must be a pair \(X_test, y_test\), got ndarray"):
        SoftmaxRegression(epochs=1).fit(X, y, validation_data=X[:3])
    X_test = X[:5].copy()
    X_test[1, 1] = np.nan
    with pytest.raises(ValueError, match="^validation_data: Input X contains NaN"):
        SoftmaxRegression(epochs=1).fit(X, y, validation_data=(X_test, y[:5]))


# -- divergence ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype, lr", [("float32", 1e36), ("float64", 1e306)])
def test_a_learning_rate_too_large_stops_training_with_a_clear_error(backend, dtype, lr):
    X, y = blobs(n=100)
    model = SoftmaxRegression(lr=lr, epochs=3, batch_size=16, backend=backend, dtype=dtype)
    message = rf"diverged in epoch 1: the loss became nan .* The learning rate lr={re.escape(str(lr))} is too large"
    with pytest.raises(TrainingDivergedError, match=message + " for this data: try a smaller one") as caught:
        model.fit(1e3 * X, y)
    assert caught.value.epoch == 1
    assert model.history_ == [] and model.n_iter_ == 0
    np.testing.assert_array_equal(model.coef_, SoftmaxRegression(epochs=0, dtype=dtype).fit(X, y).coef_)


class DivergingBackend:
    """The reference backend, except that its train_epoch call number ``at_call`` makes ``what`` non-finite."""

    def __init__(self, at_call, what):
        self.backend = kernels.get_backend("numpy")
        self.calls = itertools.count(1)
        self.at_call, self.what = at_call, what

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def train_epoch(self, X, y, W, b, *args, **kwargs):
        loss, accuracy = self.backend.train_epoch(X, y, W, b, *args, **kwargs)
        if next(self.calls) == self.at_call:
            if self.what == "loss":
                return float("inf"), accuracy
            W[0, 0] = np.nan
        return loss, accuracy


@pytest.mark.parametrize("what, message",
                         [("loss", "the loss became inf"), ("weights", "the weights became NaN or inf")])
def test_divergence_keeps_the_weights_and_history_of_the_epochs_before_it(monkeypatch, what, message):
    # 98 batches: 4 kernel calls per epoch; call 10 is the second of epoch 3.
    X, y = blobs(n=389)
    params = dict(epochs=5, batch_size=4, lr=0.05, shuffle=True, backend="numpy")
    two_epochs = SoftmaxRegression(**params | {"epochs": 2}).fit(X, y)
    diverging = DivergingBackend(10, what)
    monkeypatch.setattr(kernels, "get_backend", lambda name: diverging)
    model = SoftmaxRegression(**params)
    with pytest.raises(TrainingDivergedError, match=f"diverged in epoch 3: {message} in batches 33 to 64.* "
                       "keeps its last finite weights, those it had before epoch 3") as caught:
        model.fit(X, y)
    assert caught.value.epoch == 3 and model.n_iter_ == 2
    np.testing.assert_array_equal(model.coef_, two_epochs.coef_)
    np.testing.assert_array_equal(model.intercept_, two_epochs.intercept_)
    assert without_seconds(model.history_) == without_seconds(two_epochs.history_)


# -- interruption and resume ---------------------------------------------------------------------


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def stop_after(n_calls):
    """A ``stop`` callable that asks to stop at its ``n_calls``-th call."""
    calls = itertools.count(1)
    return lambda: next(calls) == n_calls


through_a_file_or_not = pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "saved"])


def stopping_at(first_call, end_of_epoch, mid_epoch):
    """Parametrize ``stop_at_call, epoch, batches_done`` over three stops: the first kernel call, the end of an
    epoch and the middle of one; each a triple of the stop's call and the epoch and batch it leaves off at."""
    return pytest.mark.parametrize("stop_at_call, epoch, batches_done", [first_call, end_of_epoch, mid_epoch],
                                   ids=["first-call", "end-of-epoch", "mid-epoch"])


def checkpointed(model, tmp_path, through_file):
    """``model``, or with ``through_file`` the model that saving it to a file and loading that gives."""
    if not through_file:
        return model
    model.save(tmp_path / "checkpoint.npz")
    return SoftmaxRegression.load(tmp_path / "checkpoint.npz")


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@through_a_file_or_not
@stopping_at((1, 1, 32), (4, 2, 0), (7, 2, 96))
def test_an_interrupted_fit_resumes_to_the_weights_of_an_uninterrupted_one(
        tmp_path, shuffle, through_file, stop_at_call, epoch, batches_done):
    # 98 batches of 4 rows: kernel calls of 32, 32, 32 and 2 batches per epoch.
    X, y = blobs(n=389)
    validation = (X[:50], y[:50])
    params = dict(epochs=3, batch_size=4, lr=0.05, shuffle=shuffle, random_state=3)
    expected = SoftmaxRegression(**params).fit(X, y, validation_data=validation)

    model = SoftmaxRegression(**params)
    with pytest.raises(TrainingInterrupted, match=f"stopped in epoch {epoch} after {batches_done} of its 98 batches"):
        model.fit(X, y, validation_data=validation, stop=stop_after(stop_at_call))
    assert model.n_iter_ == epoch - 1
    model = checkpointed(model, tmp_path, through_file)
    progress = []
    model.resume(X, y, validation_data=validation, on_batches=lambda *args: progress.append(args))
    assert progress[0] == (epoch, min(batches_done + 32, 98), 98)
    np.testing.assert_array_equal(model.coef_, expected.coef_)
    np.testing.assert_array_equal(model.intercept_, expected.intercept_)
    assert without_seconds(model.history_) == without_seconds(expected.history_)
    # The generator goes on as well: one more epoch equals one more epoch of the uninterrupted model.
    np.testing.assert_array_equal(model.partial_fit(X, y).coef_, expected.partial_fit(X, y).coef_)


# Every option, and a plateau that no epoch beats by tol: a cosine fit stops early after its third epoch, an
# adaptive one lowers its rate after every two.
EVERY_OPTION = dict(epochs=6, batch_size=4, lr=0.05, alpha=1e-3, momentum=0.9, nesterov=True, early_stopping=True,
                    n_iter_no_change=2, tol=0.5, class_weight="balanced", shuffle=True, warm_start=True,
                    random_state=3)


@pytest.mark.parametrize("learning_rate", ["cosine", "adaptive"])
@through_a_file_or_not
@stopping_at((1, 4, 32), (6, 6, 0), (8, 6, 64))
def test_an_interrupted_fit_with_every_option_resumes_to_the_bits_of_an_uninterrupted_one(
        tmp_path, learning_rate, through_file, stop_at_call, epoch, batches_done):
    # 350 rows trained on (39 held out), 88 batches of 4: kernel calls of 32, 32 and 24 batches per epoch.
    X, y = blobs(n=389)
    sample_weight = np.random.default_rng(5).uniform(0.2, 2.0, size=len(y))
    validation = (X[:50], y[:50])
    params = EVERY_OPTION | {"learning_rate": learning_rate}
    # A warm-started fit after a first one of 3 epochs: the second is interrupted.
    expected = SoftmaxRegression(**params | {"epochs": 3}).fit(X, y, sample_weight)
    model = SoftmaxRegression(**params | {"epochs": 3}).fit(X, y, sample_weight)
    assert model.n_iter_ == 3
    expected.set_params(epochs=6).fit(X, y, sample_weight, validation_data=validation)
    with pytest.raises(TrainingInterrupted, match=f"stopped in epoch {epoch} after {batches_done} of its 88 batches"):
        model.set_params(epochs=6).fit(X, y, sample_weight, validation_data=validation,
                                       stop=stop_after(stop_at_call))
    model = checkpointed(model, tmp_path, through_file)
    model.resume(X, y, sample_weight, validation_data=validation)
    assert expected.n_iter_ == (6 if learning_rate == "cosine" else 9)
    assert (model.n_iter_, model.n_steps_, model.best_epoch_) == (expected.n_iter_, expected.n_steps_,
                                                                   expected.best_epoch_)
    for kept, wanted in zip((model.coef_, model.intercept_, *model._velocity),
                            (expected.coef_, expected.intercept_, *expected._velocity)):
        np.testing.assert_array_equal(kept, wanted)
    assert without_seconds(model.history_) == without_seconds(expected.history_)
    # The generator and the step count go on as well: one more warm fit equals one more of the uninterrupted model.
    model.set_params(epochs=1).fit(X, y, sample_weight)
    np.testing.assert_array_equal(model.coef_, expected.set_params(epochs=1).fit(X, y, sample_weight).coef_)


def test_resume_needs_the_sample_weights_of_the_interrupted_fit():
    X, y = blobs(n=389)
    model = SoftmaxRegression(epochs=2, batch_size=4)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, np.ones(len(y)), stop=lambda: True)
    with pytest.raises(ValueError, match="X, y and sample_weight are not the data of the interrupted fit"):
        model.resume(X, y)
    model.resume(X, y, np.ones(len(y)))
    assert model.n_iter_ == 2


def test_a_stop_asked_at_the_end_of_the_last_epoch_lets_the_fit_finish():
    X, y = blobs(n=100)
    model = SoftmaxRegression(epochs=2, batch_size=100).fit(X, y, stop=stop_after(2))
    assert model.n_iter_ == 2
    with pytest.raises(ValueError, match="there is no interrupted fit to resume"):
        model.resume(X, y)


def test_resume_needs_the_data_of_the_interrupted_fit():
    X, y = blobs(n=389)
    model = SoftmaxRegression(epochs=2, batch_size=4)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, stop=lambda: True)
    with pytest.raises(ValueError, match="X, y and sample_weight are not the data of the interrupted fit"):
        model.resume(X[::-1], y[::-1])


# -- reproducibility -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_seed_gives_the_same_bits_for_any_number_of_threads(backend, dtype):
    X, y = blobs(n=700, d=100, k=5)
    fits = [SoftmaxRegression(epochs=2, batch_size=64, backend=backend, dtype=dtype, shuffle=True, random_state=5,
                              n_jobs=n_jobs).fit(X, y, validation_data=(X[:100], y[:100])) for n_jobs in (1, 2, 1)]
    for model in fits[1:]:
        np.testing.assert_array_equal(model.coef_, fits[0].coef_)
        np.testing.assert_array_equal(model.intercept_, fits[0].intercept_)
        assert without_seconds(model.history_) == without_seconds(fits[0].history_)


def test_resume_rejects_a_batch_size_that_no_longer_fits_the_interrupted_epoch():
    X, y = blobs(n=389)
    model = SoftmaxRegression(epochs=2, batch_size=4)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, stop=stop_after(3))
    with pytest.raises(ValueError, match=r"the interrupted epoch \(96 batches done\) does not fit 389 rows in "
                       "batches of 64: was batch_size changed"):
        model.set_params(batch_size=64).resume(X, y)


@pytest.mark.parametrize("error", [TrainingInterrupted(2, 32, 98), TrainingDivergedError("diverged", 3)])
def test_the_training_exceptions_survive_pickling(error):
    # joblib sends a worker's exception back pickled, e.g. from GridSearchCV(n_jobs=2, error_score="raise").
    restored = pickle.loads(pickle.dumps(error))
    assert (type(restored), str(restored), vars(restored)) == (type(error), str(error), vars(error))


# -- training options: penalty, momentum, schedules, weights, warm start -----------------------------


def reference_fit(X, y, epochs, batch_size, lr, backend="numpy", dtype="float64", *, rates=lambda t: None,
                  alpha=0.0, momentum=0.0, nesterov=False, sample_weight=None):
    """``(W, b, losses)``: the kernels' epochs from the seed's initial weights, one call per epoch.

    ``rates(t)`` gives batch ``t``'s rate (``None``: ``lr`` for every batch).
    """
    W = (np.random.RandomState(42).randn(X.shape[1], y.max() + 1) * 0.01).astype(dtype)
    b = np.zeros(y.max() + 1, dtype=dtype)
    velocity = (np.zeros_like(W), np.zeros_like(b))
    n_batches = -(-len(y) // batch_size)
    losses = []
    for epoch in range(epochs):
        steps = range(epoch * n_batches, (epoch + 1) * n_batches)
        lr_epoch = lr if rates(0) is None else np.array([rates(t) for t in steps])
        loss, _ = kernels.get_backend(backend).train_epoch(
            X.astype(dtype), y, W, b, lr_epoch, batch_size, alpha=alpha, momentum=momentum, nesterov=nesterov,
            velocity=velocity, sample_weight=sample_weight)
        losses.append(loss)
    return W, b, losses


ALL_STEP_OPTIONS = dict(alpha=1e-3, momentum=0.9, nesterov=True, learning_rate="invscaling", power_t=0.25)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_options_reach_the_kernels_as_one_call_per_epoch_would_train(backend, dtype):
    # More rows than a kernel call takes, so that the rates and weights are split between calls.
    batch_size = 4
    X, y = blobs(n=BATCHES_PER_CALL * batch_size * 2 + 13)
    sample_weight = np.random.default_rng(1).uniform(0, 2, size=len(y))
    class_weight = {0: 2.0, 3: 0.5}
    model = SoftmaxRegression(lr=0.05, epochs=3, batch_size=batch_size, backend=backend, dtype=dtype,
                              class_weight=class_weight, **ALL_STEP_OPTIONS).fit(X, y, sample_weight)

    row_weights = sample_weight.astype(dtype) * np.array([2.0, 1, 1, 0.5])[y].astype(dtype)
    W, b, losses = reference_fit(X, y, 3, batch_size, 0.05, backend, dtype, rates=lambda t: 0.05 / (1 + t) ** 0.25,
                                 alpha=1e-3, momentum=0.9, nesterov=True, sample_weight=row_weights)
    np.testing.assert_array_equal(model.coef_, W)
    np.testing.assert_array_equal(model.intercept_, b)
    assert [record["train_loss"] for record in model.history_] == pytest.approx(losses, rel=1e-12)
    assert model.n_steps_ == 3 * 68 and model._velocity[0].dtype == np.dtype(dtype)


def test_each_kernel_call_gets_the_rates_of_its_batches_counted_since_the_weights_were_initialised(spy_backend):
    X, y = blobs(n=BATCHES_PER_CALL * 4 + 7)  # 34 batches of 4: calls of 32 and 2 batches per epoch
    model = SoftmaxRegression(lr=0.3, epochs=3, batch_size=4, learning_rate="invscaling", power_t=0.5).fit(X, y)
    # train_epoch(X, y, W, b, lr, ...)
    rates = [args[3] for (name, _, _), args in zip(spy_backend.calls, spy_backend.arguments) if name == "train_epoch"]
    assert [len(call) for call in rates] == [32, 2] * 3 and model.n_steps_ == 3 * 34
    assert all(call.dtype == np.float64 for call in rates)
    np.testing.assert_array_equal(np.concatenate(rates), [0.3 / (1 + t) ** 0.5 for t in range(3 * 34)])
    assert [record["lr"] for record in model.history_] == [0.3 / (1 + t) ** 0.5 for t in (0, 34, 68)]


def test_the_cosine_anneals_over_all_epochs_and_a_warm_fit_starts_it_again(spy_backend):
    X, y = blobs(n=96)
    model = SoftmaxRegression(lr=0.4, epochs=4, batch_size=32, learning_rate="cosine", warm_start=True).fit(X, y)
    T = 4 * 3
    assert [record["lr"] for record in model.history_] == [0.4 * (1 + math.cos(math.pi * t / T)) / 2
                                                           for t in (0, 3, 6, 9)]
    model.fit(X, y)
    assert model.n_iter_ == 8 and model.n_steps_ == 24
    assert [record["lr"] for record in model.history_[4:]] == [record["lr"] for record in model.history_[:4]]


@pytest.mark.parametrize("options", [{}, ALL_STEP_OPTIONS | {"shuffle": True}], ids=["plain", "all-options"])
def test_warm_start_and_partial_fit_go_on_from_the_weights_velocity_and_step_count(options):
    X, y = blobs()
    two_epochs = SoftmaxRegression(epochs=2, **options).fit(X, y)
    warm = SoftmaxRegression(epochs=1, warm_start=True, **options).fit(X, y).fit(X, y)
    stepwise = SoftmaxRegression(**options).partial_fit(X, y).partial_fit(X, y)
    for model in (warm, stepwise):
        np.testing.assert_array_equal(model.coef_, two_epochs.coef_)
        np.testing.assert_array_equal(model.intercept_, two_epochs.intercept_)
        assert without_seconds(model.history_) == without_seconds(two_epochs.history_)
        assert model.n_steps_ == two_epochs.n_steps_ == 2 * 5


def test_without_warm_start_fit_starts_again_from_fresh_weights():
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, momentum=0.5).fit(X, y)
    again = model.fit(X, y)
    np.testing.assert_array_equal(again.coef_, SoftmaxRegression(epochs=2, momentum=0.5).fit(X, y).coef_)
    assert again.n_iter_ == 2 and again.n_steps_ == 10


def test_a_warm_fit_needs_the_features_and_labels_of_the_model():
    X, y = blobs()
    model = SoftmaxRegression(epochs=1, warm_start=True).fit(X[y < 3], y[y < 3])
    with pytest.raises(ValueError, match="X has 15 features, but SoftmaxRegression is expecting 16"):
        model.fit(X[:, 1:], y)
    with pytest.raises(ValueError, match=r"labels the model was not fitted with, e.g. 3; known: \[0, 1, 2\]"):
        model.fit(X, y)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_sample_weight_of_2_everywhere_is_twice_the_rate(momentum):
    X, y = blobs()
    params = dict(epochs=3, batch_size=32, momentum=momentum, dtype="float64")
    weighted = SoftmaxRegression(lr=0.05, **params).fit(X, y, np.full(len(y), 2.0))
    np.testing.assert_array_equal(weighted.coef_, SoftmaxRegression(lr=0.1, **params).fit(X, y).coef_)


def test_class_weight_multiplies_the_sample_weights_and_balanced_is_n_over_k_counts():
    X, y = blobs()
    y = np.where(y == 3, 2, y)  # classes of 160, 141 and 299 rows
    counts = np.bincount(y)
    sample_weight = np.random.default_rng(2).uniform(0.5, 1.5, size=len(y)).astype(np.float32)
    balanced = SoftmaxRegression(epochs=2, class_weight="balanced").fit(X, y, sample_weight)
    as_dict = SoftmaxRegression(epochs=2, class_weight={c: len(y) / (3 * counts[c]) for c in range(3)}).fit(
        X, y, sample_weight)
    by_row = SoftmaxRegression(epochs=2).fit(X, y, (sample_weight * (len(y) / (3 * counts))[y]).astype(np.float32))
    np.testing.assert_array_equal(balanced.coef_, as_dict.coef_)
    np.testing.assert_array_equal(balanced.coef_, by_row.coef_)


def test_a_class_weight_dict_names_classes_by_their_labels():
    X, y = blobs(k=3)
    labels = np.array(["cat", "dog", "emu"])
    by_label = SoftmaxRegression(epochs=2, class_weight={"emu": 3.0}).fit(X, labels[y])
    by_row = SoftmaxRegression(epochs=2).fit(X, y, np.where(y == 2, 3.0, 1.0))
    np.testing.assert_array_equal(by_label.coef_, by_row.coef_)
    with pytest.raises(ValueError, match=r"class_weight has a key that is not a class: 'yak'; the classes are "
                       r"\['cat', 'dog', 'emu'\]"):
        SoftmaxRegression(class_weight={"yak": 2.0}).fit(X, labels[y])


@pytest.mark.parametrize(
    "sample_weight, error, message",
    [
        (np.zeros(600), ValueError, "sample_weight times class_weight is zero for every row"),
        ((np.arange(600) % 4 == 1) * 1.0, ValueError, "only the rows of class 1 have a nonzero weight"),
        (np.ones(599), ValueError, r"sample_weight must have shape \(600,\), one weight per row"),
        (np.full(600, -1.0), ValueError, "sample_weight must be finite and >= 0"),
        (np.full(600, "a"), TypeError, "sample_weight must hold real numbers"),
    ],
    ids=["all-zero", "one-class", "short", "negative", "text"],
)
def test_sample_weights_that_leave_nothing_to_learn_are_rejected(sample_weight, error, message):
    X, _ = blobs()
    with pytest.raises(error, match=message):
        SoftmaxRegression().fit(X, np.arange(600) % 4, sample_weight)


def test_partial_fit_takes_sample_weights_but_not_balanced_class_weights():
    X, y = blobs()
    weighted = SoftmaxRegression(lr=0.1).partial_fit(X, y, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_array_equal(weighted.coef_, SoftmaxRegression(lr=0.2).partial_fit(X, y).coef_)
    with pytest.raises(ValueError, match="class_weight='balanced' needs the class counts of the whole data set"):
        SoftmaxRegression(class_weight="balanced").partial_fit(X, y)


def test_a_cosine_partial_fit_past_its_epochs_is_refused():
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, learning_rate="cosine").partial_fit(X, y).partial_fit(X, y)
    with pytest.raises(ValueError, match="learning_rate='cosine' anneals over epochs=2 epochs of this data, 10 "
                       "batches, and 10 are done"):
        model.partial_fit(X, y)


def test_adaptive_divides_the_rate_by_5_after_n_iter_no_change_epochs_and_stops_when_it_is_spent():
    X, y = blobs(n=64)
    # No epoch improves the training loss by tol = 10: every epoch after the first counts as stalled.
    model = SoftmaxRegression(lr=0.1, epochs=50, batch_size=64, learning_rate="adaptive", n_iter_no_change=2,
                              tol=10.0).fit(X, y)
    # A division after epochs 3, 5, ..., 17 (8 of them); the 9th would go below 0.1 * 1e-6, so epoch 19 stops.
    assert model.n_iter_ == 19 and model.best_epoch_ is None
    expected, rate = [0.1] * 3, 0.1
    for _ in range(8):
        rate /= 5
        expected += [rate, rate]
    assert [record["lr"] for record in model.history_] == expected


def test_partial_fit_trains_an_adaptive_schedule_at_lr_and_ignores_early_stopping(spy_backend):
    X, y = blobs(n=100)
    model = SoftmaxRegression(learning_rate="adaptive", early_stopping=True, batch_size=100).partial_fit(X, y)
    assert len(spy_backend.calls[0][1]) == 100
    assert model.history_[0]["lr"] == 0.2 and model.history_[0]["validation_score"] is None


# -- early stopping ----------------------------------------------------------------------------------


def noisy_blobs(n=300, seed=4):
    """Blobs that overlap, so that the held-out accuracy stops improving after a few epochs."""
    X, y = blobs(n=n, d=8, k=3, seed=seed)
    return X + 4 * np.random.default_rng(seed).standard_normal(X.shape), y


def test_early_stopping_stops_and_puts_back_the_weights_of_the_best_epoch():
    X, y = noisy_blobs()
    weights_after = {}
    model = SoftmaxRegression(lr=0.5, epochs=200, batch_size=16, early_stopping=True, n_iter_no_change=4,
                              momentum=0.5, shuffle=True)

    def keep_weights(record):
        weights_after[record["epoch"]] = (model.coef_.copy(), model.intercept_.copy(), model._velocity[0].copy())

    model.fit(X, y, on_epoch=keep_weights)
    scores = [record["validation_score"] for record in model.history_]
    best = int(np.argmax(scores)) + 1
    assert model.best_epoch_ == best and model.n_iter_ == best + 4 < 200
    assert best < model.n_iter_ and not np.array_equal(weights_after[best][0], weights_after[model.n_iter_][0])
    np.testing.assert_array_equal(model.coef_, weights_after[best][0])
    np.testing.assert_array_equal(model.intercept_, weights_after[best][1])
    np.testing.assert_array_equal(model._velocity[0], weights_after[best][2])
    assert all(record["validation_loss"] > 0 for record in model.history_)
    assert model.score(X, y) == pytest.approx(np.mean(model.predict(X) == y))


def test_early_stopping_holds_out_a_stratified_share_that_it_never_trains_on(spy_backend):
    X, y = noisy_blobs(n=203)
    model = SoftmaxRegression(epochs=2, batch_size=300, early_stopping=True, validation_fraction=0.2,
                              dtype="float64").fit(X, y)
    trained = [X_seen for name, X_seen, _ in spy_backend.calls if name == "train_epoch"]
    assert [len(rows) for rows in trained] == [203 - 41] * 2
    held_out = np.array([row for row in X if not (row == trained[0]).all(axis=1).any()])
    assert len(held_out) == 41
    held_labels = y[[int(np.flatnonzero((X == row).all(axis=1))[0]) for row in held_out]]
    np.testing.assert_allclose(np.bincount(held_labels, minlength=3), 0.2 * np.bincount(y), atol=1)
    predicted = model.predict(held_out)
    assert model.history_[-1]["validation_score"] == pytest.approx(np.mean(predicted == held_labels))


def test_the_held_out_rows_are_a_stratified_draw_from_the_generator():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    rows = _rows.stratified_holdout(y, 3, 0.15, np.random.RandomState(0))
    assert len(rows) == 15 and np.all(np.diff(rows) > 0)
    assert np.bincount(y[rows]).tolist() == [8, 4, 3]  # 7.5, 4.5, 3: the largest remainders, in order
    np.testing.assert_array_equal(rows, _rows.stratified_holdout(y, 3, 0.15, np.random.RandomState(0)))
    with pytest.raises(ValueError, match="validation_fraction=0.999 of 100 rows leaves no row to train on"):
        _rows.stratified_holdout(y, 3, 0.999, np.random.RandomState(0))


def test_early_stopping_with_adaptive_lowers_the_rate_instead_of_stopping():
    X, y = noisy_blobs()
    model = SoftmaxRegression(lr=0.5, epochs=40, batch_size=16, early_stopping=True, n_iter_no_change=3,
                              learning_rate="adaptive").fit(X, y)
    rates = sorted({record["lr"] for record in model.history_}, reverse=True)
    assert len(rates) > 2 and model.best_epoch_ is not None
    assert rates == [0.5] + [rate / 5 for rate in rates[:-1]]


# -- decision function and log-probabilities ---------------------------------------------------------


@pytest.mark.parametrize("X_dtype", [np.uint8, np.float32])
def test_decision_function_is_the_logits_and_predict_log_proba_their_log_softmax(X_dtype):
    X, y = blobs()
    X = (np.abs(X) * 20).astype(X_dtype)
    model = SoftmaxRegression(epochs=2).fit(X, y)
    features = X.astype(np.float64) / (255 if X_dtype is np.uint8 else 1)
    Z = model.decision_function(X)
    assert Z.shape == (600, 4) and Z.dtype == np.float64
    np.testing.assert_allclose(Z, features @ model.coef_ + model.intercept_, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(Z.argmax(axis=1), model.predict(X))
    log_p = model.predict_log_proba(X)
    np.testing.assert_allclose(np.exp(log_p), model.predict_proba(X), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.log(np.exp(log_p).sum(axis=1)), 0, atol=1e-12)
    np.testing.assert_allclose(log_p - log_p[:, :1], Z - Z[:, :1], rtol=1e-12, atol=1e-9)


def test_predict_log_proba_stays_finite_where_the_probability_underflows():
    X, y = blobs()
    model = SoftmaxRegression(epochs=1).fit(X, y)
    model.coef_ = model.coef_ * 1e4
    assert (model.predict_proba(X) == 0).any()
    log_p = model.predict_log_proba(X)
    assert np.isfinite(log_p).all() and log_p.min() < -1e3


def test_decision_function_of_two_classes_is_the_margin_of_the_second():
    X, y = blobs(k=2)
    labels = np.array(["no", "yes"])
    model = SoftmaxRegression(epochs=2).fit(X, labels[y])
    margin = model.decision_function(X)
    assert margin.shape == (600,)
    Z = X.astype(np.float32).astype(np.float64) @ model.coef_.astype(np.float64) + model.intercept_
    np.testing.assert_allclose(margin, Z[:, 1] - Z[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels[(margin > 0).astype(int)], model.predict(X))


# -- parameter checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"alpha": -1e-4}, ValueError, "alpha must be finite and >= 0"),
        ({"alpha": "1e-4"}, TypeError, "alpha must be a real number"),
        ({"momentum": 1.0}, ValueError, "momentum must be < 1"),
        ({"momentum": -0.1}, ValueError, "momentum must be finite and >= 0"),
        ({"nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
        ({"nesterov": "yes"}, TypeError, "nesterov must be True or False"),
        ({"learning_rate": "optimal"}, ValueError, "learning_rate must be one of 'constant', 'invscaling', "
                                                   "'cosine', 'adaptive'"),
        ({"power_t": -0.5}, ValueError, "power_t must be finite and >= 0"),
        ({"power_t": float("inf")}, ValueError, "power_t must be finite and >= 0"),
        ({"early_stopping": 1}, TypeError, "early_stopping must be True or False"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction must be strictly between 0 and 1"),
        ({"validation_fraction": 0}, ValueError, "validation_fraction must be strictly between 0 and 1"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change must be >= 1"),
        ({"n_iter_no_change": 2.5}, TypeError, "n_iter_no_change must be an integer"),
        ({"tol": -1}, ValueError, "tol must be finite and >= 0"),
        ({"tol": None}, TypeError, "tol must be a real number"),
        ({"class_weight": "uniform"}, ValueError, "class_weight must be None, 'balanced' or a dict"),
        ({"class_weight": {0: -1}}, ValueError, r"class_weight\[0\] must be finite and >= 0"),
        ({"class_weight": [1, 2]}, ValueError, "class_weight must be None, 'balanced' or a dict"),
        ({"warm_start": None}, TypeError, "warm_start must be True or False"),
    ],
)
def test_bad_training_options_are_rejected_by_fit_and_partial_fit(params, error, message):
    X, y = blobs(n=20)
    for train in (lambda model: model.fit(X, y), lambda model: model.partial_fit(X, y)):
        with pytest.raises(error, match=message):
            train(SoftmaxRegression(**params))


@pytest.mark.parametrize("options", [{}, ALL_STEP_OPTIONS], ids=["plain", "options"])
def test_divergence_also_puts_back_the_velocity_and_the_step_count(monkeypatch, options):
    X, y = blobs(n=389)
    params = dict(epochs=5, batch_size=4, lr=0.05, backend="numpy", **options)
    two_epochs = SoftmaxRegression(**params | {"epochs": 2}).fit(X, y)
    diverging = DivergingBackend(10, "weights")
    monkeypatch.setattr(kernels, "get_backend", lambda name: diverging)
    model = SoftmaxRegression(**params)
    with pytest.raises(TrainingDivergedError):
        model.fit(X, y)
    assert model.n_steps_ == two_epochs.n_steps_ == 2 * 98
    for kept, expected in zip(model._velocity or (), two_epochs._velocity or ()):
        np.testing.assert_array_equal(kept, expected)


# -- X is never copied -------------------------------------------------------------------------------


@pytest.mark.parametrize("early_stopping", [False, True], ids=["all rows", "early stopping"])
@pytest.mark.parametrize("shuffle",
                         [dict(shuffle=False), dict(shuffle=True), dict(shuffle=True, shuffle_block_size=50)],
                         ids=["in order", "shuffled", "blocks shuffled"])
def test_a_fit_on_a_memory_mapped_file_equals_the_in_memory_fit_bitwise(tmp_path, shuffle, early_stopping):
    X, y = blobs(n=BATCHES_PER_CALL * 8 * 3 + 5)  # several kernel calls an epoch, the last one short
    X = (np.abs(X) * 20).astype(np.uint8)
    np.save(tmp_path / "X.npy", X)
    on_disk = np.load(tmp_path / "X.npy", mmap_mode="r")
    params = dict(epochs=3, batch_size=8, early_stopping=early_stopping, n_iter_no_change=5, **shuffle)
    from_disk = SoftmaxRegression(**params).fit(on_disk, y, validation_data=(on_disk, y))
    in_memory = SoftmaxRegression(**params).fit(X, y, validation_data=(X, y))
    np.testing.assert_array_equal(from_disk.coef_, in_memory.coef_)
    np.testing.assert_array_equal(from_disk.intercept_, in_memory.intercept_)
    without_seconds = [[{key: value for key, value in record.items() if key != "seconds"} for record in model.history_]
                       for model in (from_disk, in_memory)]
    assert without_seconds[0] == without_seconds[1]
    np.testing.assert_array_equal(from_disk.predict_proba(on_disk), in_memory.predict_proba(X))


def test_a_shuffled_fit_with_early_stopping_takes_no_copy_of_X():
    import tracemalloc

    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, (40_000, 784), dtype=np.uint8)
    y = rng.integers(0, 4, len(X))
    params = dict(epochs=2, shuffle=True, early_stopping=True, n_iter_no_change=5)
    SoftmaxRegression(**params).fit(X[:2000], y[:2000])  # the kernels compiled and cached first
    tracemalloc.start()
    SoftmaxRegression(**params).fit(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The rows of one kernel call (4096) and the held-out rows (4000) are gathered, and the order is a few integers
    # a row: a shuffled or held-out copy of X would be most of X's 31 MB.
    assert peak < X.nbytes / 3


ANONYMOUS_PEAK = """
import sys, threading, time
import numpy as np
from softmax_fast import SoftmaxRegression

def anonymous_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

peak, done = [anonymous_kb()], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anonymous_kb())
        time.sleep(0.002)

X, y = np.load(sys.argv[1], mmap_mode="r"), np.load(sys.argv[2])
threading.Thread(target=sample, daemon=True).start()
model = SoftmaxRegression(epochs=1, shuffle=True).fit(X, y)
done.set()
print(max(peak[0], anonymous_kb()) // 1024, model.history_[-1]["train_accuracy"])
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RssAnon from /proc/self/status")
def test_a_shuffled_epoch_on_a_2_gb_file_keeps_its_anonymous_memory_under_300_mb(tmp_path):
    n, d = 2_600_000, 784  # 2.04 GB of uint8 pixels: what page cache holds of the file is not counted
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.uint8, shape=(n, d))
    rng = np.random.default_rng(5)
    for start in range(0, n, 200_000):
        X[start:start + 200_000] = rng.integers(0, 256, (min(200_000, n - start), d), dtype=np.uint8)
    X.flush()
    del X
    np.save(tmp_path / "y.npy", rng.integers(0, 10, n))
    try:
        result = subprocess.run([sys.executable, "-c", ANONYMOUS_PEAK, str(tmp_path / "X.npy"),
                                 str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=600)
    finally:
        (tmp_path / "X.npy").unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    peak_mb, accuracy = result.stdout.split()
    assert 0 < float(accuracy) < 1
    assert int(peak_mb) <= 300, f"peak RssAnon {peak_mb} MB"


def test_a_block_shuffle_visits_blocks_of_consecutive_rows_in_a_random_order():
    order = _rows.block_shuffle(23, 5, np.random.default_rng(0))
    assert order.dtype == np.intp and sorted(order) == list(range(23))
    starts, position = [], 0
    while position < len(order):  # each block whole, its rows in some order; the short last one may come anywhere
        start = int(order[position]) // 5 * 5
        block = list(range(start, min(start + 5, 23)))
        assert sorted(order[position:position + len(block)]) == block
        starts.append(start)
        position += len(block)
    assert sorted(starts) == [0, 5, 10, 15, 20] and starts != sorted(starts)
    assert any(not np.array_equal(np.sort(order[i:i + 5]), order[i:i + 5]) for i in range(0, 20, 5))
    np.testing.assert_array_equal(order, _rows.block_shuffle(23, 5, np.random.default_rng(0)))


def test_a_fit_with_a_block_shuffle_trains_the_epochs_in_the_drawn_order(spy_backend):
    X, y = blobs(n=200)
    SoftmaxRegression(epochs=2, batch_size=300, shuffle=True, shuffle_block_size=40, dtype="float64").fit(X, y)
    rng = np.random.RandomState(42)
    rng.standard_normal((16, 4))  # the initial weights come first
    for (_, X_seen, _), _ in zip(spy_backend.calls, range(2)):
        np.testing.assert_array_equal(X_seen, X[_rows.block_shuffle(200, 40, rng)])


@pytest.mark.parametrize("value", [0, -3, 2.5, "10"])
def test_shuffle_block_size_must_be_a_count(value):
    with pytest.raises((TypeError, ValueError), match="shuffle_block_size"):
        SoftmaxRegression(shuffle=True, shuffle_block_size=value).fit(*blobs(n=50))


def test_periodic_checkpoints_resume_to_the_bits_of_the_whole_fit(tmp_path, monkeypatch):
    X, y = blobs(n=BATCHES_PER_CALL * 4 * 3 + 7)  # three kernel calls an epoch
    params = dict(epochs=3, batch_size=4, shuffle=True, momentum=0.9, early_stopping=True, n_iter_no_change=10)
    whole = SoftmaxRegression(**params).fit(X, y)
    snapshots = []
    SoftmaxRegression(**params).fit(X, y, checkpoint=lambda model: snapshots.append(model_file_bytes(model)),
                                    checkpoint_every=1e-9)
    assert len(snapshots) == 3 * 2  # between the calls of every epoch, none at an epoch's end
    for snapshot in (snapshots[0], snapshots[-1]):
        resumed = SoftmaxRegression.load(io.BytesIO(snapshot)).resume(X, y)
        np.testing.assert_array_equal(resumed.coef_, whole.coef_)
        np.testing.assert_array_equal(resumed.intercept_, whole.intercept_)
    path = tmp_path / "fit.npz"
    SoftmaxRegression(**params).fit(X, y, checkpoint=path, checkpoint_every=1e-9)
    np.testing.assert_array_equal(SoftmaxRegression.load(path).resume(X, y).coef_, whole.coef_)


def model_file_bytes(model):
    """The model file of ``model`` as it is now, in memory."""
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("arguments, message", [
    (dict(checkpoint="fit.npz"), "checkpoint and checkpoint_every go together"),
    (dict(checkpoint_every=60), "checkpoint and checkpoint_every go together"),
    (dict(checkpoint="fit.npz", checkpoint_every=0), "checkpoint_every must be finite and > 0"),
    (dict(checkpoint="fit.npz", checkpoint_every=60, solver="lbfgs"), "checkpoint_every checkpoints SGD fits"),
])
def test_checkpoint_arguments_are_checked(arguments, message):
    solver = arguments.pop("solver", "sgd")
    with pytest.raises(ValueError, match=message):
        SoftmaxRegression(solver=solver).fit(*blobs(n=50), **arguments)


# -- sparse X -------------------------------------------------------------------------------------

def sparse_blobs(dtype=np.float64):
    """``blobs`` with three quarters of the features zeroed: ``(X as a CSR matrix, the same dense, y)``."""
    import scipy.sparse

    X, y = blobs(n=400, d=40, dtype=dtype)
    X[np.random.default_rng(5).random(X.shape) < 0.75] = 0
    return scipy.sparse.csr_matrix(X), X, y


@pytest.mark.parametrize("params", [
    dict(epochs=3), dict(epochs=3, shuffle=True, alpha=1e-3, momentum=0.9, learning_rate="invscaling"),
    dict(epochs=3, early_stopping=True, class_weight="balanced"), dict(solver="lbfgs", alpha=1e-3, dtype="float64"),
], ids=["sgd", "shuffled, options", "early stopping", "lbfgs"])
def test_a_sparse_fit_is_the_fit_of_the_same_dense_rows(params):
    X_sparse, X_dense, y = sparse_blobs()
    sparse_model = SoftmaxRegression(backend="numba", **params).fit(X_sparse, y, validation_data=(X_sparse, y))
    dense_model = SoftmaxRegression(backend="numba", **params).fit(X_dense, y, validation_data=(X_dense, y))
    rtol = 1e-8 if sparse_model.coef_.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(sparse_model.coef_, dense_model.coef_, rtol=rtol, atol=rtol)
    assert sparse_model.n_iter_ == dense_model.n_iter_ and sparse_model.best_epoch_ == dense_model.best_epoch_
    for method in ("predict_proba", "decision_function", "predict_log_proba"):
        np.testing.assert_allclose(getattr(sparse_model, method)(X_sparse), getattr(dense_model, method)(X_dense),
                                   rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(sparse_model.predict(X_sparse), dense_model.predict(X_dense))
    assert sparse_model.score(X_sparse, y) == dense_model.score(X_dense, y)


def test_auto_trains_sparse_x_on_the_backend_it_picks_for_dense_x():
    X_sparse, _, y = sparse_blobs()
    model = SoftmaxRegression(epochs=1).fit(X_sparse, y)
    picked = SoftmaxRegression(epochs=1, backend=kernels.get_backend("auto").name).fit(X_sparse, y)
    np.testing.assert_array_equal(model.coef_, picked.coef_)


@pytest.mark.parametrize("convert", ["tocoo", "tocsc", "tolil"])
def test_other_sparse_formats_and_dtypes_are_converted_once(convert):
    X_sparse, _, y = sparse_blobs()
    expected = SoftmaxRegression(epochs=2).fit(X_sparse.astype(np.float32), y)
    model = SoftmaxRegression(epochs=2).fit(getattr(X_sparse, convert)(), y)
    np.testing.assert_array_equal(model.coef_, expected.coef_)


@pytest.mark.parametrize("train", [
    lambda X, y: SoftmaxRegression(epochs=1).fit(X, y),
    lambda X, y: SoftmaxRegression(solver="lbfgs").fit(X, y),
    lambda X, y: SoftmaxRegression().partial_fit(X, y, classes=np.unique(y)),
], ids=["sgd", "lbfgs", "partial_fit"])
def test_a_column_index_out_of_range_is_rejected_before_any_kernel_runs(train):
    # The kernels get the rows of each SGD call checked only for their shape: the estimator checks X whole, once.
    X_sparse, _, y = sparse_blobs(np.float32)
    X_sparse.indices[-1] = X_sparse.shape[1] + 3
    with pytest.raises(ValueError, match=rf"column indices must be in \[0, {X_sparse.shape[1]}\)"):
        train(X_sparse, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter ends the lbfgs fit
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_a_sparse_x_is_read_for_its_checks_once_a_call(monkeypatch, solver):
    from softmax_fast import estimator
    from softmax_fast.kernels import _validation

    X_sparse, _, y = sparse_blobs()
    checked, check = [], _validation.checked_csr_rows

    def counted(X):
        checked.append(X.shape)
        return check(X)

    for module in (estimator, _validation):  # the estimator's own check and the kernels' (check_csr)
        monkeypatch.setattr(module, "checked_csr_rows", counted)
    model = SoftmaxRegression(solver=solver, epochs=2, max_iter=5).fit(X_sparse, y)
    for method in (model.predict, model.predict_proba, model.decision_function):
        method(X_sparse)
    model.score(X_sparse, y)
    assert checked == [X_sparse.shape] * 5


def test_unsorted_and_repeated_indices_are_summed_in_a_copy_leaving_the_callers_matrix_alone():
    import scipy.sparse

    X_sparse, X_dense, y = sparse_blobs(np.float32)
    # Each row's entries reversed, and its first one split into two halves stored twice.
    rows, columns, values = [], [], []
    for i in range(X_sparse.shape[0]):
        row = X_sparse.getrow(i)
        entries = list(zip(row.indices, row.data))[::-1]
        if entries:
            (column, value), entries = entries[0], entries[1:]
            entries += [(column, value / 2), (column, value / 2)]
        rows += [i] * len(entries)
        columns += [column for column, _ in entries]
        values += [value for _, value in entries]
    messy = scipy.sparse.csr_matrix((np.array(values, np.float32), (rows, columns)), shape=X_sparse.shape)
    messy.indices, messy.indptr, messy.data = messy.indices.copy(), messy.indptr.copy(), messy.data.copy()
    messy.has_canonical_format = False
    kept = messy.indices.copy()
    np.testing.assert_allclose(SoftmaxRegression(epochs=2).fit(messy, y).coef_,
                               SoftmaxRegression(epochs=2).fit(X_sparse, y).coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(messy.indices, kept)


@through_a_file_or_not
def test_a_sparse_fit_stopped_and_resumed_is_the_whole_fit(tmp_path, through_file):
    X_sparse, _, y = sparse_blobs()
    whole = SoftmaxRegression(epochs=3, shuffle=True, batch_size=16).fit(X_sparse, y)
    model = SoftmaxRegression(epochs=3, shuffle=True, batch_size=16)
    with pytest.raises(TrainingInterrupted):
        model.fit(X_sparse, y, stop=stop_after(2))
    if through_file:
        model.save(tmp_path / "model.npz")
        model = SoftmaxRegression.load(tmp_path / "model.npz")
    model.resume(X_sparse, y)
    np.testing.assert_array_equal(model.coef_, whole.coef_)
    with pytest.raises(TrainingInterrupted):
        model.fit(X_sparse, y, stop=stop_after(2))
    with pytest.raises(ValueError, match="not the data of the interrupted fit"):
        model.resume(X_sparse * 2, y)


def test_an_epoch_on_sparse_x_takes_calls_of_16_stored_values_per_feature(spy_backend):
    # 2000 features, 10 values a row: a batch of 4 rows holds 40 values, so a call takes 16 * 2000 / 40 = 800
    # batches, more than the epoch's 125; dense X takes 32 batches a call.
    import scipy.sparse

    X = scipy.sparse.random_array((500, 2000), density=10 / 2000, format="csr", random_state=0)
    y = np.arange(500) % 3
    SoftmaxRegression(epochs=2, batch_size=4, shuffle=True).fit(X, y)
    assert [X_seen.shape[0] for _, X_seen, _ in spy_backend.calls] == [500, 500]
    spy_backend.calls.clear()
    SoftmaxRegression(epochs=2, batch_size=4, shuffle=True).fit(X.toarray(), y)
    assert [X_seen.shape[0] for _, X_seen, _ in spy_backend.calls] == [128, 128, 128, 116] * 2
