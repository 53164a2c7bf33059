"""``python -m softmax_fast.evaluate MODEL``: accuracy and confusion matrix of a saved model."""

import json
from pathlib import Path

import numpy as np

from . import _cli, datasets
from .estimator import SoftmaxRegression
from .metrics import confusion_matrix

PROG = "python -m softmax_fast.evaluate"


def parse_args(argv):
    parser = _cli.ArgumentParser(prog=PROG, description="Evaluate a model saved by softmax_fast.train "
                                 "on a data set's test split.")
    parser.add_argument("model", type=Path, help="a model.npz written by python -m softmax_fast.train")
    parser.add_argument("--dataset", default="mnist",
                        help="'mnist' (default), 'fashion-mnist', a .npz file or a directory of .npy files "
                             "(its X_test, y_test, or its X, y when it has no test split)")
    parser.add_argument("--data-dir", type=Path, help="directory of the IDX files and cache")
    parser.add_argument("--json", action="store_true", help="print accuracy and confusion matrix as JSON")
    return parser.parse_args(argv)


def format_matrix(matrix, classes):
    """The confusion matrix as aligned text, true classes down, predicted across."""
    labels = [str(c) for c in classes]
    width = max(len(str(matrix.max())), *(len(label) for label in labels)) + 1
    header = " " * width + " |" + "".join(label.rjust(width) for label in labels) + "   (predicted)"
    lines = [header, "-" * len(header)]
    for label, row in zip(labels, matrix):
        lines.append(label.rjust(width) + " |" + "".join(str(count).rjust(width) for count in row))
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    model = SoftmaxRegression.load(args.model)
    train, test = datasets.load_dataset(args.dataset, args.data_dir)
    X, y = test if test is not None else train
    unknown = np.setdiff1d(y, model.classes_)
    if unknown.size:
        raise ValueError(f"{args.dataset} has labels that are not classes of the model, e.g. {unknown[:5].tolist()}; "
                         f"the model's: {model.classes_.tolist()}")
    predicted = model.predict(X)
    accuracy = float(np.mean(predicted == y))
    matrix = confusion_matrix(y, predicted, model.classes_)
    if args.json:
        print(json.dumps({"accuracy": accuracy, "n": int(len(y)), "classes": model.classes_.tolist(),
                          "confusion_matrix": matrix.tolist()}))
    else:
        print(f"accuracy {accuracy:.4f} on {len(y)} rows of {args.dataset}")
        print(format_matrix(matrix, model.classes_))
    return 0


if __name__ == "__main__":
    _cli.run(main, PROG)
