"""``python -m softmax_fast.train``: train softmax regression, draw the curves, save the model.

With no arguments it runs the seed experiment: MNIST, learning rate 0.2, 10
epochs, batches of 128 in order, seed 42. See ``--help`` for the options.
"""

import csv
import datetime
import json
import sys
import time
from pathlib import Path

from . import _cli, datasets, kernels
from .estimator import SoftmaxRegression
from .metrics import confusion_matrix

PROG = "python -m softmax_fast.train"
METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")


def parse_args(argv):
    parser = _cli.ArgumentParser(
        prog=PROG,
        description="Train a softmax-regression classifier with minibatch SGD. "
        "The defaults are the seed experiment: MNIST, lr 0.2, 10 epochs, batch 128, seed 42.",
    )
    parser.add_argument("--dataset", default="mnist",
                        help="'mnist' (default), 'fashion-mnist', or a .npz file with arrays X, y "
                             "and optionally X_test, y_test")
    parser.add_argument("--data-dir", type=Path,
                        help="directory of the MNIST/Fashion-MNIST IDX files and cache "
                             "(default: $SOFTMAX_FAST_DATA or the user cache directory)")
    parser.add_argument("--epochs", type=_cli.non_negative_int, default=10, help="default: 10")
    parser.add_argument("--lr", type=_cli.positive_float, default=0.2, help="learning rate (default: 0.2)")
    parser.add_argument("--batch-size", type=_cli.positive_int, default=128, help="default: 128")
    parser.add_argument("--backend", choices=("auto", *kernels.BACKENDS), default="auto",
                        help="kernels to train with (default: auto, the fastest available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default: float32")
    parser.add_argument("--threads", type=_cli.positive_int, help="threads of the kernels (default: all CPUs)")
    parser.add_argument("--seed", type=int, default=42, help="seeds the initial weights and shuffling (default: 42)")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the training rows every epoch")
    parser.add_argument("--out", type=Path, help="output directory (default: a new folder under ./runs/)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG figures")
    parser.add_argument("--show", action="store_true", help="also show the figures in a window")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final result")
    parser.add_argument("--json", action="store_true", help="print the final result as JSON on stdout")
    return parser.parse_args(argv)


def default_out_dir(dataset):
    """A new directory name under ``./runs/``: the data set's name and the time."""
    stem = Path(dataset).stem if dataset.endswith(".npz") else dataset
    base = Path("runs") / f"{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    candidate, suffix = base, 1
    while candidate.exists():
        suffix += 1
        candidate = base.with_name(f"{base.name}-{suffix}")
    return candidate


class Progress:
    """A tqdm bar over each epoch's batches and one line per epoch.

    The bar is drawn only on a terminal; lines go to ``stream`` unless quiet.
    """

    def __init__(self, epochs, stream, quiet):
        self.epochs = epochs
        self.stream = stream
        self.quiet = quiet
        self.bar = None

    def on_batches(self, epoch, done, total):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="batch", leave=False,
                            disable=self.quiet or not sys.stderr.isatty())
        self.bar.update(done - self.bar.n)

    def on_epoch(self, record):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        line = (f"epoch {record['epoch']:>3}/{self.epochs}  train loss {record['train_loss']:.4f}"
                f"  acc {record['train_accuracy']:.4f}")
        if record["test_loss"] is not None:
            line += f"  test loss {record['test_loss']:.4f}  acc {record['test_accuracy']:.4f}"
        self.say(f"{line}  {record['seconds']:.2f}s")

    def say(self, line):
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def write_metrics(out_dir, summary, history):
    with open(out_dir / "metrics.json", "w") as f:
        json.dump(summary | {"history": history}, f, indent=2)
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def draw_figures(out_dir, model, dataset, test, show):
    """Write curves.png, weights.png (for 28x28 images) and confusion.png (with test data); returns their names."""
    import matplotlib.pyplot as plt

    from . import plotting

    title = datasets.TITLES.get(dataset, dataset)
    figures = {"curves.png": plotting.plot_curves(model.history_, f"Softmax regression on {title}")}
    if model.coef_.shape[0] == 28 * 28:
        figures["weights.png"] = plotting.plot_weights(model.coef_, model.classes_)
    if test is not None:
        matrix = confusion_matrix(test[1], model.predict(test[0]), model.classes_)
        figures["confusion.png"] = plotting.plot_confusion(matrix, model.classes_, f"Test confusion matrix ({title})")
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
    if show:
        plt.show()
    plt.close("all")
    return list(figures)


def main(argv=None):
    args = parse_args(argv)
    if not args.show:
        import matplotlib

        matplotlib.use("Agg")
    progress = Progress(args.epochs, sys.stderr if args.json else sys.stdout, args.quiet)
    # Create the output directory first, so that an unwritable one fails before training.
    out_dir = args.out or default_out_dir(args.dataset)
    out_dir.mkdir(parents=True, exist_ok=True)

    (X, y), test = datasets.load_dataset(args.dataset, args.data_dir, report=progress.say)
    model = SoftmaxRegression(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, backend=args.backend,
                              dtype=args.dtype, n_jobs=args.threads, random_state=args.seed, shuffle=args.shuffle)
    backend_name = kernels.get_backend(args.backend).name
    progress.say(f"training on {X.shape[0]} rows x {X.shape[1]} features, "
                 f"{'no test split' if test is None else f'{test[0].shape[0]} test rows'}; "
                 f"backend {backend_name}, {args.dtype}")
    started = time.perf_counter()
    model.fit(X, y, validation_data=test, on_batches=progress.on_batches, on_epoch=progress.on_epoch)
    train_seconds = time.perf_counter() - started

    model.save(out_dir / "model.npz")
    files = ["model.npz", "metrics.json", "metrics.csv"]
    if not args.no_plot:
        files += draw_figures(out_dir, model, args.dataset, test, args.show)
    final = model.history_[-1] if model.history_ else {}
    summary = {
        "dataset": args.dataset,
        "backend": backend_name,
        "params": model.get_params(),
        "train_seconds": train_seconds,
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "out_dir": str(out_dir),
        "files": files,
    }
    write_metrics(out_dir, summary, model.history_)
    if args.json:
        print(json.dumps(summary | {"history": model.history_}, indent=2))
    else:
        if summary["test_accuracy"] is not None:
            print(f"test accuracy {summary['test_accuracy']:.4f}")
        print(f"trained in {train_seconds:.2f}s; wrote {', '.join(files)} to {out_dir}")
    return 0


if __name__ == "__main__":
    _cli.run(main, PROG)
