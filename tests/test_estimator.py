"""SoftmaxRegression: training equals the kernels' epochs, labels, persistence and parameter checks."""

import numpy as np
import pytest

import softmax_fast.kernels as kernels
from softmax_fast import SoftmaxRegression
from softmax_fast.estimator import BATCHES_PER_CALL


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


def test_one_hot_and_arbitrary_integer_labels():
    X, y = blobs()
    labels = np.array([3, 7, 11, 20])[y]
    one_hot = np.eye(4)[y]
    by_index = SoftmaxRegression(epochs=2).fit(X, y)
    by_label = SoftmaxRegression(epochs=2).fit(X, labels)
    by_one_hot = SoftmaxRegression(epochs=2).fit(X, one_hot)
    np.testing.assert_array_equal(by_label.classes_, [3, 7, 11, 20])
    np.testing.assert_array_equal(by_label.coef_, by_index.coef_)
    np.testing.assert_array_equal(by_one_hot.coef_, by_index.coef_)
    np.testing.assert_array_equal(by_label.predict(X), np.array([3, 7, 11, 20])[by_index.predict(X)])
    with pytest.raises(ValueError, match="labels the model was not fitted with, e.g. 5"):
        by_label.score(X[:3], [3, 5, 7])


def test_shuffle_is_seeded():
    X, y = blobs()
    first = SoftmaxRegression(epochs=2, shuffle=True, seed=1).fit(X, y)
    again = SoftmaxRegression(epochs=2, shuffle=True, seed=1).fit(X, y)
    in_order = SoftmaxRegression(epochs=2, shuffle=False, seed=1).fit(X, y)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    assert not np.array_equal(first.coef_, in_order.coef_)


def test_partial_fit_continues_from_the_current_weights():
    X, y = blobs()
    two_epochs = SoftmaxRegression(epochs=2).fit(X, y)
    stepwise = SoftmaxRegression().partial_fit(X, y).partial_fit(X, y)
    np.testing.assert_array_equal(stepwise.coef_, two_epochs.coef_)
    assert len(stepwise.history_) == 2


def test_save_and_load_round_trip(tmp_path):
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, dtype="float64", batch_size=64).fit(X, np.array([3, 7, 11, 20])[y])
    model.save(tmp_path / "model.npz")
    loaded = SoftmaxRegression.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_


def test_load_rejects_what_is_not_a_model(tmp_path):
    X, y = blobs()
    model = SoftmaxRegression(epochs=1).fit(X, y)
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    np.savez(tmp_path / "future.npz", format_version=99, coef=model.coef_, intercept=model.intercept_,
             classes=model.classes_, params="{}", history="[]")
    np.savez(tmp_path / "wrong_shape.npz", format_version=1, coef=model.coef_, intercept=model.intercept_[:2],
             classes=model.classes_, params="{}", history="[]")
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(ValueError, match="missing"):
        SoftmaxRegression.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="has model format 99; this softmax_fast reads format 1"):
        SoftmaxRegression.load(tmp_path / "future.npz")
    with pytest.raises(ValueError, match="inconsistent arrays"):
        SoftmaxRegression.load(tmp_path / "wrong_shape.npz")
    with pytest.raises(ValueError, match="is not a softmax_fast model file"):
        SoftmaxRegression.load(tmp_path / "text.npz")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr": 0}, "lr must be finite and > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"backend": "torch"}, "unknown backend 'torch'"),
    ],
)
def test_bad_parameters_are_rejected_by_fit(params, message):
    X, y = blobs(n=20)
    with pytest.raises(ValueError, match=message):
        SoftmaxRegression(**params).fit(X, y)


def test_non_finite_features_and_unfitted_model():
    X, y = blobs(n=20)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        SoftmaxRegression().fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        SoftmaxRegression().predict(X)
