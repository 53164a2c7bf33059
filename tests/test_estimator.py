"""SoftmaxRegression: training equals the kernels' epochs, inputs, labels and parameter checks.

How it fits into scikit-learn (its estimator checks, pipelines, searches) is in test_sklearn_compat.py; the
file it saves and loads, in test_model_file.py.
"""

import itertools
import pickle
import re

import numpy as np
import pytest

import softmax_fast.kernels as kernels
from softmax_fast import SoftmaxRegression
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
    """A kernels backend that records each call's method name and keyword arguments, and its ``X``."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self.backend, name)

        def record_and_call(X, *args, **kwargs):
            self.calls.append((name, X, kwargs))
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


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "saved"])
@pytest.mark.parametrize("stop_at_call, epoch, batches_done", [(1, 1, 32), (4, 2, 0), (7, 2, 96)],
                         ids=["first-call", "end-of-epoch", "mid-epoch"])
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
    if through_file:
        model.save(tmp_path / "checkpoint.npz")
        model = SoftmaxRegression.load(tmp_path / "checkpoint.npz")
    progress = []
    model.resume(X, y, validation_data=validation, on_batches=lambda *args: progress.append(args))
    assert progress[0] == (epoch, min(batches_done + 32, 98), 98)
    np.testing.assert_array_equal(model.coef_, expected.coef_)
    np.testing.assert_array_equal(model.intercept_, expected.intercept_)
    assert without_seconds(model.history_) == without_seconds(expected.history_)
    # The generator goes on as well: one more epoch equals one more epoch of the uninterrupted model.
    np.testing.assert_array_equal(model.partial_fit(X, y).coef_, expected.partial_fit(X, y).coef_)


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
