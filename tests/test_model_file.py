"""The ``.npz`` model file (softmax_fast.model_file): round trips, format 1, rejected files, generator, checkpoints.

Resuming an interrupted fit through a saved file is in test_estimator.py, with the other resume tests.
"""

import io
import json

import numpy as np
import pytest

from softmax_fast import SoftmaxRegression, TrainingInterrupted, model_file
from test_estimator import blobs  # tests/ is on sys.path, as pytest imports its test modules


@pytest.mark.parametrize("labels", [np.array([3, 7, 11, 20]), np.array(["a", "b", "c", "d"], dtype=object)],
                         ids=["int", "object-str"])
def test_save_and_load_round_trip(tmp_path, labels):
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, dtype="float64", batch_size=np.int64(64), n_jobs=-1).fit(X, labels[y])
    model.save(tmp_path / "model.npz")
    loaded = SoftmaxRegression.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_
    assert (loaded.n_iter_, loaded.n_features_in_) == (2, 16)
    assert loaded.set_params(shuffle=True).partial_fit(X, labels[y]).n_iter_ == 3


def test_save_stores_a_random_generator_as_none(tmp_path):
    X, y = blobs()
    SoftmaxRegression(epochs=1, random_state=np.random.default_rng(0)).fit(X, y).save(tmp_path / "model.npz")
    assert SoftmaxRegression.load(tmp_path / "model.npz").random_state is None


def test_load_reads_format_1_under_the_new_parameter_names(tmp_path):
    X, y = blobs()
    model = SoftmaxRegression(epochs=1, random_state=3, n_jobs=2).fit(X, y)
    format_1_params = {"lr": 0.2, "epochs": 1, "batch_size": 128, "backend": "auto", "dtype": "float32",
                       "threads": 2, "seed": 3, "shuffle": False}
    np.savez(tmp_path / "format1.npz", format_version=1, softmax_fast_version="0.1.0", coef=model.coef_,
             intercept=model.intercept_, classes=model.classes_, params=json.dumps(format_1_params),
             history=json.dumps(model.history_))
    loaded = SoftmaxRegression.load(tmp_path / "format1.npz")
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("class_weight", [{0: 2.0, 3: 0.5}, "balanced"], ids=["dict", "balanced"])
def test_save_and_load_keep_the_training_state_of_every_option(tmp_path, class_weight):
    X, y = blobs()
    params = dict(epochs=2, alpha=1e-3, momentum=0.9, nesterov=True, learning_rate="invscaling", early_stopping=True,
                  class_weight=class_weight, shuffle=True, warm_start=True)
    model = SoftmaxRegression(**params).fit(X, y)
    model.save(tmp_path / "model.npz")
    loaded = SoftmaxRegression.load(tmp_path / "model.npz")
    assert loaded.get_params() == model.get_params()
    assert (loaded.n_steps_, loaded.best_epoch_, loaded.n_iter_) == (model.n_steps_, model.best_epoch_, 2)
    for kept, expected in zip(loaded._velocity, model._velocity):
        np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(loaded.fit(X, y).coef_, model.fit(X, y).coef_)


def test_a_class_weight_dict_keeps_its_labels_through_the_file(tmp_path):
    X, y = blobs(k=3)
    labels = np.array(["cat", "dog", "emu"])
    model = SoftmaxRegression(epochs=1, class_weight={"dog": 2, "emu": np.float64(0.5)}).fit(X, labels[y])
    model.save(tmp_path / "model.npz")
    assert SoftmaxRegression.load(tmp_path / "model.npz").class_weight == {"dog": 2, "emu": 0.5}
    with_ints = SoftmaxRegression(epochs=1, class_weight={np.int64(1): 2.0}).fit(X, y)
    with_ints.save(tmp_path / "ints.npz")
    assert SoftmaxRegression.load(tmp_path / "ints.npz").class_weight == {1: 2.0}


FORMAT_4_ARRAYS = ("training_state", "fit_in_progress", "velocity_coef", "velocity_intercept", "validation_rows",
                   "best_coef", "best_intercept", "best_velocity_coef", "best_velocity_intercept")


def as_format_3(saved):
    """The arrays of a format-4 file of a model trained with the default options, written as format 3 was."""
    return {name: array for name, array in saved.items() if name not in FORMAT_4_ARRAYS} | {"format_version": 3}


def test_an_interrupted_fit_saved_in_format_3_still_resumes_bit_for_bit(tmp_path):
    X, y = blobs(n=389)
    params = dict(epochs=3, batch_size=4, shuffle=True, random_state=3)
    expected = SoftmaxRegression(**params).fit(X, y)
    model = SoftmaxRegression(**params)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, stop=lambda: True)
    np.savez(tmp_path / "format3.npz", **as_format_3(saved_contents(model)))
    loaded = SoftmaxRegression.load(tmp_path / "format3.npz")
    assert (loaded.n_steps_, loaded.best_epoch_, loaded._velocity) == (0, None, None)
    loaded.resume(X, y)
    np.testing.assert_array_equal(loaded.coef_, expected.coef_)
    assert [r["train_loss"] for r in loaded.history_] == [r["train_loss"] for r in expected.history_]


def test_a_finished_format_3_model_loads_with_its_history_and_goes_on(tmp_path):
    X, y = blobs()
    model = SoftmaxRegression(epochs=2).fit(X, y)
    saved = as_format_3(saved_contents(model))
    old_history = [{key: value for key, value in record.items() if key not in ("lr", "validation_loss",
                                                                                "validation_score")}
                   for record in model.history_]
    np.savez(tmp_path / "format3.npz", **saved | {"history": json.dumps(old_history)})
    loaded = SoftmaxRegression.load(tmp_path / "format3.npz")
    assert loaded.history_ == old_history and loaded.n_iter_ == 2 and loaded.n_steps_ == 0
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.partial_fit(X, y).n_iter_ == 3


def saved_contents(model):
    """The arrays of ``model``'s saved file, as a dict."""
    file = io.BytesIO()
    model.save(file)
    file.seek(0)
    with np.load(file) as saved:
        return dict(saved)


def with_nan(array):
    array = array.copy()
    array[0, 0] = np.nan
    return array


SAVED_CHANGES = {
    "not a model": (lambda saved: {"W": np.zeros(3)}, r"missing \['classes', 'coef'"),
    "future format": (lambda saved: saved | {"format_version": 99}, "it has model format 99; this softmax_fast reads "
                      "formats 1 to 4"),
    "format not a number": (lambda saved: saved | {"format_version": "three"}, "format_version is not JSON"),
    "intercept too short": (lambda saved: saved | {"intercept": saved["intercept"][:2]}, "inconsistent arrays"),
    "one class": (lambda saved: saved | {"coef": saved["coef"][:, :1], "intercept": saved["intercept"][:1],
                                         "classes": saved["classes"][:1]}, "inconsistent arrays"),
    "integer coef": (lambda saved: saved | {"coef": saved["coef"].astype(int)}, "inconsistent arrays"),
    "NaN coef": (lambda saved: saved | {"coef": with_nan(saved["coef"])}, "coef and intercept hold NaN or inf"),
    "params not JSON": (lambda saved: saved | {"params": "{lr: 1"}, "params is not JSON"),
    "unknown param": (lambda saved: saved | {"params": '{"gamma": 1}'}, "params must be a JSON object of the "
                      "parameters"),
    "negative lr": (lambda saved: saved | {"params": '{"lr": -1}'}, "invalid params: lr must be finite and > 0"),
    "text lr": (lambda saved: saved | {"params": '{"lr": "fast"}'}, "invalid params: lr must be a real number"),
    "history not a list": (lambda saved: saved | {"history": '{"epoch": 1}'}, "history must be a JSON list"),
    "no rng_state": (lambda saved: {k: v for k, v in saved.items() if k != "rng_state"}, r"missing \['rng_state'\]"),
    "rng_state of a function": (lambda saved: saved | {"rng_state": '{"kind": "Generator", "state": '
                                                         '{"bit_generator": "seed"}}'}, "rng_state is not the state"),
    "rng_state garbage": (lambda saved: saved | {"rng_state": '{"kind": "RandomState", "state": 3}'},
                          "rng_state is not the state of a NumPy random generator"),
    "epoch_in_progress garbage": (lambda saved: saved | {"epoch_in_progress": '{"batches_done": -1}'},
                                  "epoch_in_progress must be null or an object"),
    "object array": (lambda saved: saved | {"classes": np.array([None, 1], dtype=object)}, "allow_pickle=False"),
    "class_weight not pairs": (lambda saved: saved | {"params": '{"class_weight": [[0, 1, 2]]}'},
                               "class_weight must be stored as a list of"),
    "class_weight negative": (lambda saved: saved | {"params": '{"class_weight": [[0, -1]]}'},
                              r"invalid params: class_weight\[0\] must be finite and >= 0"),
    "no training_state": (lambda saved: {k: v for k, v in saved.items() if k != "training_state"},
                          r"missing \['training_state'\]"),
    "training_state garbage": (lambda saved: saved | {"training_state": '{"n_steps": -1, "best_epoch": null}'},
                               "training_state must be an object of n_steps"),
    "best_epoch beyond the history": (lambda saved: saved | {"training_state": '{"n_steps": 5, "best_epoch": 2}'},
                                      "training_state must be an object of n_steps"),
    "velocity of the wrong shape": (lambda saved: saved | {"velocity_coef": saved["coef"][:1],
                                                           "velocity_intercept": saved["intercept"]},
                                    "velocity_coef and velocity_intercept must both be there, shaped"),
    "half a velocity": (lambda saved: saved | {"velocity_coef": saved["coef"]}, "must both be there"),
    "NaN velocity": (lambda saved: saved | {"velocity_coef": with_nan(saved["coef"]),
                                            "velocity_intercept": saved["intercept"]},
                     "velocity_coef and velocity_intercept hold NaN or inf"),
    "fit without an epoch": (lambda saved: saved | {"fit_in_progress": json.dumps(FIT)},
                             "epoch_in_progress and fit_in_progress must both be null or both be set"),
    "fit_in_progress garbage": (lambda saved: saved | {"fit_in_progress": json.dumps(FIT | {"rate": 0.0})},
                                "fit_in_progress must be null or an object"),
    "validation_rows not increasing": (lambda saved: saved | {"fit_in_progress": json.dumps(FIT),
                                                              "validation_rows": np.array([3, 1])},
                                       "validation_rows must be increasing integers >= 0"),
}
FIT = {"first_epoch": 0, "end_epoch": 2, "origin": 0, "rate": 0.2, "best_score": None, "best_epoch": None,
       "stalled": 0}


@pytest.mark.parametrize("change", SAVED_CHANGES)
def test_load_rejects_a_file_that_is_not_a_valid_model(tmp_path, change):
    X, y = blobs()
    edit, message = SAVED_CHANGES[change]
    path = tmp_path / "model.npz"
    np.savez(path, **edit(saved_contents(SoftmaxRegression(epochs=1).fit(X, y))))
    with pytest.raises(ValueError, match=message) as caught:
        SoftmaxRegression.load(path)
    assert str(caught.value).startswith(f"{path} is not a softmax_fast model file: ")


def test_load_rejects_a_text_file_and_a_truncated_one(tmp_path):
    X, y = blobs()
    SoftmaxRegression(epochs=1).fit(X, y).save(tmp_path / "model.npz")
    (tmp_path / "text.npz").write_text("not a zip file")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "model.npz").read_bytes()[:500])
    for name in ("text.npz", "cut.npz"):
        with pytest.raises(ValueError, match=f"{name} is not a softmax_fast model file"):
            SoftmaxRegression.load(tmp_path / name)


def test_an_interrupted_epoch_whose_order_is_not_a_permutation_is_rejected(tmp_path):
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, shuffle=True)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, stop=lambda: True)
    saved = saved_contents(model)
    np.savez(tmp_path / "model.npz", **saved | {"epoch_order": np.zeros_like(saved["epoch_order"])})
    with pytest.raises(ValueError, match="epoch_order must be a permutation of the rows"):
        SoftmaxRegression.load(tmp_path / "model.npz")


@pytest.mark.parametrize("random_state", [7, np.random.default_rng(7)], ids=["int", "Generator"])
def test_save_and_load_keep_the_shuffling_generator(tmp_path, random_state):
    X, y = blobs()
    model = SoftmaxRegression(epochs=2, shuffle=True, random_state=random_state).fit(X, y)
    model.save(tmp_path / "model.npz")
    loaded = SoftmaxRegression.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.partial_fit(X, y).coef_, model.partial_fit(X, y).coef_)


# -- checkpoints ---------------------------------------------------------------------------------


def test_a_checkpoint_is_the_model_file_with_the_run_options(tmp_path):
    X, y = blobs(n=389)
    model = SoftmaxRegression(epochs=2, batch_size=4, shuffle=True)
    with pytest.raises(TrainingInterrupted):
        model.fit(X, y, stop=lambda: True)
    run = {"dataset": "data.npz", "data_dir": None, "cwd": "/runs"}
    model_file.write_checkpoint(tmp_path / "checkpoint.npz", model, run)
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.npz"]
    with np.load(tmp_path / "checkpoint.npz") as saved:
        arrays = dict(saved)
    expected = saved_contents(model)
    assert list(arrays) == [*expected, "run"]
    for name, array in expected.items():
        np.testing.assert_array_equal(arrays[name], array)
    assert json.loads(str(arrays["run"])) == run

    read, read_run = model_file.read_checkpoint(SoftmaxRegression, tmp_path / "checkpoint.npz")
    assert read_run == run
    np.testing.assert_array_equal(read.resume(X, y).coef_, model.resume(X, y).coef_)


@pytest.mark.parametrize("run", [None, "{not json"], ids=["absent", "not-json"])
def test_read_checkpoint_of_a_model_file_without_run_options_gives_none(tmp_path, run):
    X, y = blobs()
    saved = saved_contents(SoftmaxRegression(epochs=1).fit(X, y))
    np.savez(tmp_path / "checkpoint.npz", **saved, **({} if run is None else {"run": run}))
    model, read_run = model_file.read_checkpoint(SoftmaxRegression, tmp_path / "checkpoint.npz")
    assert read_run is None and model.n_iter_ == 1


def test_read_checkpoint_rejects_what_load_rejects(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(ValueError, match="text.npz is not a softmax_fast model file"):
        model_file.read_checkpoint(SoftmaxRegression, tmp_path / "text.npz")
