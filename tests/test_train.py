"""``python -m softmax_fast.train`` and ``python -m softmax_fast.evaluate`` end to end, in subprocesses."""

import csv
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from softmax_fast import SoftmaxRegression, _cli, datasets, evaluate, train


def run_module(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A learnable ``.npz`` data set with MNIST's 784 features and a test split."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, size=(3, 784))
    y = rng.integers(0, 3, size=400)
    noise = rng.integers(-60, 61, size=(400, 784))
    X = np.clip(templates[y] + noise, 0, 255).astype(np.uint8)
    np.savez(path, X=X[:300], y=y[:300], X_test=X[300:], y_test=y[300:])
    return path


def test_train_writes_every_output_and_prints_json(tmp_path, small_dataset):
    out = tmp_path / "run"
    result = run_module("softmax_fast.train", "--dataset", str(small_dataset), "--epochs", "3", "--batch-size", "32",
                        "--out", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["model.npz", "metrics.json", "metrics.csv", "curves.png", "weights.png", "confusion.png"]
    )
    assert sorted(summary["files"]) == sorted(path.name for path in out.iterdir())
    assert [record["epoch"] for record in summary["history"]] == [1, 2, 3]
    assert summary["test_accuracy"] == summary["history"][-1]["test_accuracy"] > 0.9
    assert json.loads((out / "metrics.json").read_text()) == summary
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["test_accuracy"]) for row in rows] == [r["test_accuracy"] for r in summary["history"]]
    assert "epoch   1/3" in result.stderr

    model = SoftmaxRegression.load(out / "model.npz")
    data = np.load(small_dataset)
    assert model.score(data["X_test"], data["y_test"]) == summary["test_accuracy"]

    evaluated = run_module("softmax_fast.evaluate", str(out / "model.npz"), "--dataset", str(small_dataset), "--json",
                           cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["accuracy"] == summary["test_accuracy"]
    assert np.trace(report["confusion_matrix"]) == round(report["accuracy"] * 100)


def test_one_hot_labels_train_and_evaluate_like_integer_labels(tmp_path, small_dataset):
    data = np.load(small_dataset)
    one_hot = tmp_path / "one_hot.npz"
    np.savez(one_hot, X=data["X"], y=np.eye(3)[data["y"]], X_test=data["X_test"], y_test=np.eye(3)[data["y_test"]])
    accuracies = []
    for dataset in (small_dataset, one_hot):
        out = tmp_path / dataset.stem
        trained = run_module("softmax_fast.train", "--dataset", str(dataset), "--epochs", "2", "--out", str(out),
                             "--json", cwd=tmp_path)
        assert trained.returncode == 0, trained.stderr
        evaluated = run_module("softmax_fast.evaluate", str(out / "model.npz"), "--dataset", str(dataset), "--json",
                               cwd=tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr
        accuracies.append((json.loads(trained.stdout)["test_accuracy"], json.loads(evaluated.stdout)["accuracy"]))
    assert accuracies[0] == accuracies[1]


def test_train_prints_one_line_per_epoch_and_the_result(tmp_path, small_dataset):
    result = run_module("softmax_fast.train", "--dataset", str(small_dataset), "--epochs", "2", "--no-plot",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/2", "2/2"]
    assert lines[-2].startswith("test accuracy ")
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("small-")
    assert f"to {run_dirs[0].relative_to(tmp_path)}" in lines[-1]
    assert not list(run_dirs[0].glob("*.png"))


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--lr", "-1"], 2, "argument --lr: expected a finite number > 0, got -1"),
        (["--backend", "torch"], 2, "argument --backend: invalid choice: 'torch'"),
        (["--epochs", "ten"], 2, "argument --epochs: invalid non_negative_int value: 'ten'"),
        (["--resume", "run", "--lr", "0.1", "--shuffle"], 2, "--resume finishes a run with the options it was "
         "started with: remove --lr, --shuffle"),
        (["--resume", "run"], 1, "run/checkpoint.npz: no such checkpoint"),
        (["--dataset", "missing.npz"], 1, "missing.npz"),
        (["--dataset", "cifar"], 1, "cifar"),
        (["--out", "a_file/run"], 1, "a_file"),
    ],
)
def test_user_errors_are_one_line_and_an_exit_status(tmp_path, args, status, message):
    (tmp_path / "a_file").write_text("")
    result = run_module("softmax_fast.train", *args, cwd=tmp_path)
    assert result.returncode == status
    assert result.stderr.startswith("python -m softmax_fast.train: error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluate_rejects_a_file_that_is_not_a_model(tmp_path, small_dataset):
    result = run_module("softmax_fast.evaluate", str(small_dataset), "--dataset", str(small_dataset), cwd=tmp_path)
    assert result.returncode == 1
    assert "is not a softmax_fast model file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluate_rejects_labels_the_model_does_not_know(tmp_path, capsys, small_dataset):
    data = np.load(small_dataset)
    SoftmaxRegression(epochs=1).fit(data["X"], data["y"]).save(tmp_path / "model.npz")
    np.savez(tmp_path / "other.npz", X=data["X_test"], y=data["y_test"] + 5)
    with pytest.raises(SystemExit) as exit:
        _cli.run(lambda: evaluate.main([str(tmp_path / "model.npz"), "--dataset", str(tmp_path / "other.npz")]),
                 evaluate.PROG)
    assert exit.value.code == 1
    assert capsys.readouterr().err == (f"{evaluate.PROG}: error: {tmp_path / 'other.npz'} has labels that are not "
                                       "classes of the model, e.g. [5, 6, 7]; the model's: [0, 1, 2]\n")


@pytest.mark.slow
def test_one_epoch_on_real_mnist_reaches_90_percent(tmp_path, mnist_dir):
    result = run_module("softmax_fast.train", "--epochs", "1", "--data-dir", str(mnist_dir), "--out",
                        str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["history"][0]["test_accuracy"] >= 0.90
    assert {"curves.png", "weights.png", "confusion.png"} <= set(summary["files"])


def run_train(args, capsys):
    """``python -m softmax_fast.train ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    with pytest.raises(SystemExit) as exit:
        _cli.run(lambda: train.main(args), train.PROG)
    captured = capsys.readouterr()
    return exit.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "nan"], "argument --lr: expected a finite number > 0, got nan"),
        (["--lr", "inf"], "argument --lr: expected a finite number > 0, got inf"),
        (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
        (["--epochs", "-1"], "argument --epochs: expected an integer >= 0, got -1"),
        (["--threads", "0"], "argument --threads: expected an integer >= 1, got 0"),
        (["--seed", "-1"], r"argument --seed: expected an integer in \[0, 2\*\*32\), got -1"),
        (["--resume", "run", "--out", "elsewhere"], "remove --out"),
        (["--resume", "run", "--momentum", "0.9", "--early-stopping"], "remove --momentum, --early-stopping"),
        (["--alpha=-1e-4"], r"argument --alpha: expected a finite number >= 0, got -1e-4"),
        (["--momentum", "1"], r"argument --momentum: expected a number >= 0 and < 1, got 1"),
        (["--nesterov"], "--nesterov needs --momentum > 0"),
        (["--shuffle-block-size", "4096"], "--shuffle-block-size needs --shuffle"),
        (["--shuffle", "--shuffle-block-size", "0"], "argument --shuffle-block-size: expected an integer >= 1, got 0"),
        (["--lr-schedule", "optimal"], "argument --lr-schedule: invalid choice: 'optimal'"),
        (["--power-t", "inf"], "argument --power-t: expected a finite number >= 0, got inf"),
        (["--validation-fraction", "1"], "argument --validation-fraction: expected a number strictly between 0 "
                                         "and 1, got 1"),
        (["--n-iter-no-change", "0"], "argument --n-iter-no-change: expected an integer >= 1, got 0"),
        (["--tol", "nan"], "argument --tol: expected a finite number >= 0, got nan"),
        (["--class-weight", "uniform"], "argument --class-weight: invalid choice: 'uniform'"),
        (["--solver", "newton"], "argument --solver: invalid choice: 'newton'"),
        (["--max-iter", "0"], "argument --max-iter: expected an integer >= 1, got 0"),
        (["--gtol", "-1"], "argument --gtol: expected a finite number >= 0, got -1"),
    ],
)
def test_bad_options_are_usage_errors(capsys, args, message):
    status, _, stderr = run_train(args, capsys)
    assert status == 2
    assert re.search(message, stderr) and len(stderr.strip().splitlines()) == 1


def test_the_training_options_reach_the_model_and_early_stopping_keeps_the_best_epoch(tmp_path, capsys,
                                                                                       small_dataset):
    out = tmp_path / "run"
    status, stdout, stderr = run_train(
        ["--dataset", str(small_dataset), "--epochs", "40", "--batch-size", "16", "--lr", "0.5", "--alpha", "1e-4",
         "--momentum", "0.9", "--nesterov", "--lr-schedule", "cosine", "--early-stopping", "--validation-fraction",
         "0.2", "--n-iter-no-change", "2", "--tol", "0.01", "--class-weight", "balanced", "--out", str(out),
         "--json"], capsys)
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert summary["params"] | {"lr": 0.5} == summary["params"] and {
        name: summary["params"][name] for name in ("alpha", "momentum", "nesterov", "learning_rate", "early_stopping",
                                                   "validation_fraction", "n_iter_no_change", "tol", "class_weight")
    } == dict(alpha=1e-4, momentum=0.9, nesterov=True, learning_rate="cosine", early_stopping=True,
              validation_fraction=0.2, n_iter_no_change=2, tol=0.01, class_weight="balanced")
    history = summary["history"]
    best = summary["best_epoch"]
    assert len(history) == best + 2 < 40 and "curves.png" in summary["files"]
    assert history[0]["lr"] == 0.5 > history[1]["lr"] and history[0]["validation_score"] is not None
    assert f"early stopping: stopped after epoch {len(history)}, kept the weights of epoch {best}" in stderr
    assert re.search(r"epoch   1/40  lr 0\.5  train loss \S+  acc \S+  val loss \S+  acc \S+  test loss", stderr)
    model = SoftmaxRegression.load(out / "model.npz")
    data = np.load(small_dataset)
    assert model.best_epoch_ == best
    assert model.score(data["X_test"], data["y_test"]) == summary["test_accuracy"] == history[best - 1][
        "test_accuracy"]
    with open(out / "metrics.csv") as f:
        assert float(next(csv.DictReader(f))["validation_score"]) == history[0]["validation_score"]


def test_lbfgs_trains_one_line_and_one_record_per_iteration_and_saves_its_model(tmp_path, capsys, small_dataset):
    out = tmp_path / "run"
    # float64: a float32 fit ends where its objective's rounding hides the decrease, which may be just above gtol.
    status, stdout, stderr = run_train(["--dataset", str(small_dataset), "--solver", "lbfgs", "--alpha", "1e-2",
                                        "--max-iter", "300", "--gtol", "1e-5", "--dtype", "float64", "--out", str(out),
                                        "--json"], capsys)
    assert status == 0, stderr
    summary = json.loads(stdout)
    assert {name: summary["params"][name] for name in ("solver", "max_iter", "gtol")} == dict(
        solver="lbfgs", max_iter=300, gtol=1e-5)
    history = summary["history"]
    assert [record["iteration"] for record in history] == list(range(1, len(history) + 1))
    assert history[-1]["gradient_norm"] <= 1e-5 < history[0]["gradient_norm"]
    assert re.search(r"iteration   1/300  objective \S+  max \|gradient\| \S+  test loss \S+  acc \S+", stderr)
    assert "curves.png" in summary["files"] and summary["test_accuracy"] == history[-1]["test_accuracy"] > 0.9
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(train.LBFGS_METRIC_COLUMNS) and len(rows) == len(history)
    model = SoftmaxRegression.load(out / "model.npz")
    data = np.load(small_dataset)
    assert model.solver == "lbfgs" and model.score(data["X_test"], data["y_test"]) == summary["test_accuracy"]


class SignalAfterTwoAsks(train.StopSignals):
    """StopSignals as if SIGINT came while the second iteration ran."""

    def __enter__(self):
        self.received, self.asked = None, 0
        return self

    def __exit__(self, *exc_info):
        pass

    def stop_requested(self):
        self.asked += 1
        if self.asked == 2:
            self.received = "SIGINT"
        return self.received is not None


def test_a_signal_ends_an_lbfgs_run_after_its_iteration_and_writes_that_model(tmp_path, capsys, small_dataset,
                                                                                 monkeypatch):
    monkeypatch.setattr(train, "StopSignals", SignalAfterTwoAsks)
    out = tmp_path / "run"
    status, _, stderr = run_train(["--dataset", str(small_dataset), "--solver", "lbfgs", "--out", str(out),
                                   "--no-plot"], capsys)
    assert status == _cli.EXIT_INTERRUPTED
    assert f"SIGINT: L-BFGS stopped after iteration 2; wrote the model it reached to {out}" in stderr
    model = SoftmaxRegression.load(out / "model.npz")
    assert model.n_iter_ == 2 and not (out / train.CHECKPOINT).exists()


@pytest.mark.parametrize("run", [None, "{not json", '{"dataset": 3}'], ids=["absent", "not-json", "wrong"])
def test_resume_rejects_a_model_file_that_is_not_a_checkpoint(tmp_path, capsys, small_dataset, run):
    data = np.load(small_dataset)
    SoftmaxRegression(epochs=1).fit(data["X"], data["y"]).save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as saved:
        contents = dict(saved)
    np.savez(tmp_path / "checkpoint.npz", **contents, **({} if run is None else {"run": run}))
    status, _, stderr = run_train(["--resume", str(tmp_path)], capsys)
    assert (status, stderr) == (1, f"{train.PROG}: error: {tmp_path / 'checkpoint.npz'} is a model file but not a "
                                   f"checkpoint of {train.PROG}: its run options are missing\n")


def test_non_finite_features_fail_before_training(tmp_path, capsys, small_dataset):
    data = dict(np.load(small_dataset))
    X = data["X"].astype(np.float32)
    X[5, 5] = np.nan
    np.savez(tmp_path / "nan.npz", **data | {"X": X})
    status, _, stderr = run_train(["--dataset", str(tmp_path / "nan.npz"), "--out", str(tmp_path / "run")], capsys)
    assert status == 1 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"{train.PROG}: error: Input X contains NaN.")
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs a directory that even root cannot write")
def test_an_output_directory_that_cannot_be_written_fails_before_training(capsys, small_dataset):
    status, _, stderr = run_train(["--dataset", str(small_dataset), "--out", "/sys/kernel"], capsys)
    assert status == 1
    assert stderr == f"{train.PROG}: error: [Errno 13] cannot write to the output directory /sys/kernel: " \
                     "Permission denied\n"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_stops_saves_the_last_finite_model_and_fails(tmp_path, capsys, small_dataset):
    out = tmp_path / "run"
    status, stdout, stderr = run_train(["--dataset", str(small_dataset), "--lr", "1e36", "--epochs", "3",
                                        "--out", str(out), "--no-plot"], capsys)
    assert status == 1 and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith(f"{train.PROG}: error: training diverged in epoch 1: the loss became nan")
    assert "try a smaller one (e.g. lr=1e+35)" in stderr and f"to {out}." in stderr
    assert sorted(path.name for path in out.iterdir()) == ["metrics.csv", "metrics.json", "model.npz"]
    model = SoftmaxRegression.load(out / "model.npz")
    assert model.n_iter_ == 0 and np.isfinite(model.coef_).all()
    data = np.load(small_dataset)
    np.testing.assert_array_equal(model.coef_, SoftmaxRegression(epochs=0).fit(data["X"], data["y"]).coef_)


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def test_the_same_seed_gives_the_same_bits_for_any_thread_count(tmp_path, capsys, small_dataset):
    runs = []
    for threads in ("1", "2"):
        out = tmp_path / threads
        status, _, stderr = run_train(["--dataset", str(small_dataset), "--epochs", "2", "--shuffle", "--threads",
                                       threads, "--out", str(out), "--no-plot"], capsys)
        assert status == 0, stderr
        runs.append((SoftmaxRegression.load(out / "model.npz"), json.loads((out / "metrics.json").read_text())))
    (model_1, metrics_1), (model_2, metrics_2) = runs
    np.testing.assert_array_equal(model_1.coef_, model_2.coef_)
    np.testing.assert_array_equal(model_1.intercept_, model_2.intercept_)
    assert without_seconds(metrics_1["history"]) == without_seconds(metrics_2["history"])


@pytest.fixture(scope="module")
def pipe_capacity():
    """The capacity of a pipe shrunk to its minimum (a page), in bytes."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    os.close(read_end)
    os.close(write_end)
    return capacity


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, pipe_capacity):
    """``(directory, options, stdout)`` of a finished run with enough epochs to fill the pipe twice over.

    Data: 100 noisy rows of 20 features and 3 classes, in ``data.npz`` given relative to ``directory``;
    batches of 2 of the 90 rows that early stopping does not hold out, so that an epoch is 45 batches and 2 kernel
    calls.
    """
    directory = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=130)
    X = np.clip(rng.integers(0, 256, size=(3, 20))[y] + rng.integers(-90, 91, size=(130, 20)), 0, 255)
    np.savez(directory / "data.npz", X=X[:100].astype(np.uint8), y=y[:100], X_test=X[100:].astype(np.uint8),
             y_test=y[100:])
    # An epoch line ("epoch  12/123  train loss ...  test ...  0.00s") is about 80 bytes.
    # Every training option on; early stopping holds out 10 rows and keeps its best weights, but waits too long to
    # stop the run.
    options = ["--dataset", "data.npz", "--epochs", str(2 * pipe_capacity // 40), "--batch-size", "2", "--shuffle",
               "--seed", "7", "--alpha", "1e-4", "--momentum", "0.9", "--nesterov", "--lr-schedule", "cosine",
               "--early-stopping", "--n-iter-no-change", "1000000", "--class-weight", "balanced", "--no-plot"]
    # On one thread: 10,000 batches of 2 rows meet 20,000 barriers on two, which a busy machine (another test
    # worker) makes take a minute. The interrupted run below keeps all threads, the resumed one 1: the same bits.
    result = run_module("softmax_fast.train", *options, "--threads", "1", "--out", "whole", cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory, options, result.stdout


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes of a settable size")
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_training_checkpoints_and_resume_ends_bitwise_as_an_uninterrupted_run(
        uninterrupted, pipe_capacity, signal_number):
    directory, options, whole_stdout = uninterrupted
    name = signal.Signals(signal_number).name
    # The run writes its epoch lines into a pipe of which this test reads only the lines up to the first
    # epoch line before it signals. The rest of a whole run's output does not fit into the pipe, so the
    # run cannot have finished (it blocks on a full pipe at worst) when the signal arrives.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, pipe_capacity)
    with open(directory / f"{name}.stderr", "w+") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "softmax_fast.train", *options, "--out", name],
                                 cwd=directory, stdout=write_end, stderr=stderr)
        os.close(write_end)
        with open(read_end, "rb", buffering=0) as stdout:  # unbuffered: reads no further than asked
            head = []
            while not (head and head[-1].startswith(b"epoch")):
                head.append(stdout.readline())
                assert head[-1], f"the run ended before its first epoch line: {head}"
            assert len(whole_stdout.encode()) > len(b"".join(head)) + pipe_capacity
            child.send_signal(signal_number)
            stdout.read()  # until the run exits
        assert child.wait(timeout=60) == 130
        stderr.seek(0)
        message = stderr.read()
    assert message.startswith(f"{train.PROG}: {name}: training stopped in epoch "), message
    assert message.endswith(f"; wrote {name}/checkpoint.npz; to finish the run: {train.PROG} --resume {name}\n")
    assert [path.name for path in (directory / name).iterdir()] == ["checkpoint.npz"]
    interrupted = SoftmaxRegression.load(directory / name / "checkpoint.npz")
    assert interrupted.n_iter_ < interrupted.epochs

    # Resumed from another directory: the checkpoint knows where the run's relative paths start.
    elsewhere = directory / f"{name}-elsewhere"
    elsewhere.mkdir()
    resumed = run_module("softmax_fast.train", "--resume", str(directory / name), "--no-plot", "--threads", "1",
                         cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming epoch {interrupted.n_iter_ + 1}/" in resumed.stdout
    assert sorted(path.name for path in (directory / name).iterdir()) == ["metrics.csv", "metrics.json", "model.npz"]
    assert_the_same_as_the_whole_run(directory, name)


def assert_the_same_as_the_whole_run(directory, name):
    """The run in ``directory / name`` ended with the uninterrupted run's weights and history (but the seconds)."""
    model, expected = (SoftmaxRegression.load(directory / run / "model.npz") for run in (name, "whole"))
    np.testing.assert_array_equal(model.coef_, expected.coef_)
    np.testing.assert_array_equal(model.intercept_, expected.intercept_)
    metrics, expected_metrics = (json.loads((directory / run / "metrics.json").read_text()) for run in (name, "whole"))
    assert without_seconds(metrics["history"]) == without_seconds(expected_metrics["history"])


def test_a_directory_of_npy_files_trains_memory_mapped_as_its_npz_does(tmp_path, small_dataset, capsys):
    data_dir = tmp_path / "embeddings"
    data_dir.mkdir()
    with np.load(small_dataset) as data:
        for key in ("X", "y", "X_test", "y_test"):
            np.save(data_dir / f"{key}.npy", data[key])
    (train_split, test_split) = datasets.load_dataset(data_dir)
    assert isinstance(train_split[0], np.memmap) and isinstance(test_split[0], np.memmap)
    assert not train_split[0].flags.writeable
    runs = {}
    for name, dataset in (("directory", data_dir), ("npz", small_dataset)):
        status, stdout, stderr = run_train(["--dataset", str(dataset), "--epochs", "2", "--batch-size", "32",
                                            "--shuffle", "--no-plot", "--out", str(tmp_path / name), "--json"],
                                           capsys)
        assert status == 0, stderr
        runs[name] = json.loads(stdout)
    assert runs["directory"]["test_accuracy"] == runs["npz"]["test_accuracy"] > 0.9
    np.testing.assert_array_equal(SoftmaxRegression.load(tmp_path / "directory" / "model.npz").coef_,
                                  SoftmaxRegression.load(tmp_path / "npz" / "model.npz").coef_)


@pytest.mark.parametrize("files, message", [
    ({"X": None}, "y.npy: no such file (a data directory holds X.npy, y.npy and optionally X_test.npy, y_test.npy)"),
    ({"X": None, "y": b"not an npy file"}, "y.npy: cannot read it as .npy"),
    ({"X": None, "y": np.zeros(3)}, "y has 3 rows but X has 4"),
])
def test_a_data_directory_that_is_wrong_says_which_file_and_why(tmp_path, files, message):
    for key, content in files.items():
        if content is None:
            np.save(tmp_path / f"{key}.npy", np.zeros((4, 2), dtype=np.uint8))
        elif isinstance(content, bytes):
            (tmp_path / f"{key}.npy").write_bytes(content)
        else:
            np.save(tmp_path / f"{key}.npy", content)
    with pytest.raises(datasets.DatasetError, match=re.escape(message)):
        datasets.load_dataset(tmp_path)


@pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes of a settable size")
def test_a_run_killed_outright_resumes_from_its_periodic_checkpoint_to_the_uninterrupted_bits(uninterrupted,
                                                                                             pipe_capacity):
    directory, options, whole_stdout = uninterrupted
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, pipe_capacity)
    checkpoint = directory / "killed" / "checkpoint.npz"
    child = subprocess.Popen([sys.executable, "-m", "softmax_fast.train", *options, "--out", "killed",
                              "--checkpoint-every", "0.001"], cwd=directory, stdout=write_end,
                             stderr=subprocess.DEVNULL)
    os.close(write_end)
    with open(read_end, "rb", buffering=0) as stdout:
        lines = []
        while not (lines and lines[-1].startswith(b"epoch") and checkpoint.exists()):
            lines.append(stdout.readline())
            assert lines[-1], f"the run ended before its first epoch line and checkpoint: {lines}"
        assert len(whole_stdout.encode()) > len(b"".join(lines)) + pipe_capacity  # the run cannot have ended
        child.send_signal(signal.SIGKILL)
        stdout.read()
    assert child.wait(timeout=60) == -signal.SIGKILL
    killed = SoftmaxRegression.load(checkpoint)
    assert 0 < killed._epoch_in_progress.batches_done and killed.n_iter_ < killed.epochs

    resumed = run_module("softmax_fast.train", "--resume", "killed", "--no-plot", "--threads", "1", cwd=directory)
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()
    assert_the_same_as_the_whole_run(directory, "killed")
