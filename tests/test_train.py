"""``python -m softmax_fast.train`` and ``python -m softmax_fast.evaluate`` end to end, in subprocesses."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from softmax_fast import SoftmaxRegression


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


def test_one_epoch_on_real_mnist_reaches_90_percent(tmp_path, mnist_dir):
    result = run_module("softmax_fast.train", "--epochs", "1", "--data-dir", str(mnist_dir), "--out",
                        str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["history"][0]["test_accuracy"] >= 0.90
    assert {"curves.png", "weights.png", "confusion.png"} <= set(summary["files"])
