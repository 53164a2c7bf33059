"""``python -m softmax_fast.train``: train softmax regression, draw the curves, save the model.

With no arguments it runs the seed experiment: MNIST, learning rate 0.2, 10
epochs, batches of 128 in order, seed 42. See ``--help`` for the options.
``--solver lbfgs`` minimizes the whole objective by L-BFGS instead (one line
and one point of the curves per iteration); a signal then ends the fit after
the iteration in progress and writes the model it reached (status 130): a
full-batch fit has no epoch to resume.

Ctrl-C (SIGINT) or SIGTERM stops training after the kernel call in progress
(at most 32 batches: milliseconds), writes ``checkpoint.npz`` into the run's
directory and exits with status 130; ``--resume DIR`` finishes that run with
the weights and metrics an uninterrupted run would have had.
``--checkpoint-every SECONDS`` writes the same checkpoint periodically, so
that a run killed outright loses at most that much work. A run whose loss
becomes NaN or inf stops at that epoch, writes the model of the epochs before
it and exits with status 1.
"""

import csv
import datetime
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import _cli, datasets, kernels, model_file, schedules
from .estimator import SoftmaxRegression, TrainingDivergedError, TrainingInterrupted
from .kernels._validation import is_sparse
from .metrics import confusion_matrix

PROG = "python -m softmax_fast.train"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "validation_loss", "validation_score", "test_loss",
                  "test_accuracy", "seconds")
LBFGS_METRIC_COLUMNS = ("iteration", "objective", "train_loss", "gradient_norm", "test_loss", "test_accuracy",
                        "seconds")
CHECKPOINT = "checkpoint.npz"
# The options that fix what a run computes, with their defaults: a resumed run takes them from its checkpoint.
RUN_DEFAULTS = {"dataset": "mnist", "epochs": 10, "lr": 0.2, "batch_size": 128, "backend": "auto",
                "dtype": "float32", "seed": 42, "shuffle": False, "shuffle_block_size": None, "alpha": 0.0,
                "momentum": 0.0, "nesterov": False, "lr_schedule": "constant", "power_t": 0.5,
                "early_stopping": False, "validation_fraction": 0.1, "n_iter_no_change": 5, "tol": 1e-4,
                "class_weight": None, "solver": "sgd", "max_iter": 100, "gtol": 1e-6}
# The estimator's parameter of each option that has another name.
PARAMETER_NAMES = {"seed": "random_state", "lr_schedule": "learning_rate"}


def parse_args(argv):
    parser = _cli.ArgumentParser(
        prog=PROG,
        description="Train a softmax-regression classifier with minibatch SGD or full-batch L-BFGS. "
        "The defaults are the seed experiment: MNIST, lr 0.2, 10 epochs, batch 128, seed 42.",
    )
    parser.add_argument("--dataset",
                        help="'mnist' (default), 'fashion-mnist', a .npz file with arrays X, y "
                             "and optionally X_test, y_test, or a directory of those arrays as .npy files "
                             "(X.npy, y.npy, ...; X opened memory-mapped, never copied)")
    parser.add_argument("--data-dir", type=Path,
                        help="directory of the MNIST/Fashion-MNIST IDX files and cache "
                             "(default: $SOFTMAX_FAST_DATA or the user cache directory)")
    parser.add_argument("--epochs", type=_cli.non_negative_int, help="default: 10")
    parser.add_argument("--lr", type=_cli.positive_float, help="learning rate (default: 0.2)")
    parser.add_argument("--batch-size", type=_cli.positive_int, help="default: 128")
    parser.add_argument("--backend", choices=("auto", *kernels.BACKENDS),
                        help="kernels to train with (default: auto, the fastest available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), help="default: float32")
    parser.add_argument("--threads", type=_cli.positive_int,
                        help="threads of the kernels (default: all CPUs); results do not depend on it")
    parser.add_argument("--seed", type=_cli.seed, help="seeds the initial weights and shuffling (default: 42)")
    parser.add_argument("--shuffle", action="store_true", default=None, help="shuffle the training rows every epoch")
    parser.add_argument("--shuffle-block-size", type=_cli.positive_int, metavar="ROWS",
                        help="with --shuffle: visit blocks of ROWS consecutive rows in a random order, each "
                             "block's rows shuffled, instead of a full permutation (for data on disk far beyond "
                             "the page cache)")
    training = parser.add_argument_group(
        "training options", "scikit-learn's and PyTorch's names for them: see the README")
    training.add_argument("--alpha", type=_cli.non_negative_float,
                          help="L2 penalty on the weights, (alpha/2) ||W||^2 (default: 0)")
    training.add_argument("--momentum", type=_cli.below_one, help="momentum in [0, 1), as torch.optim.SGD's "
                          "(default: 0)")
    training.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    training.add_argument("--lr-schedule", choices=schedules.LEARNING_RATES,
                          help="the rate per batch: constant (default), invscaling (lr / (1 + t)^power_t), cosine "
                               "(annealed to 0 over all epochs) or adaptive (divided by 5 on a plateau)")
    training.add_argument("--power-t", type=_cli.non_negative_float, help="invscaling's exponent (default: 0.5)")
    training.add_argument("--early-stopping", action="store_true", default=None,
                          help="hold out a stratified share of the training rows, stop when their accuracy stops "
                               "improving and keep the best epoch's weights")
    training.add_argument("--validation-fraction", type=_cli.fraction,
                          help="the share early stopping holds out (default: 0.1)")
    training.add_argument("--n-iter-no-change", type=_cli.positive_int,
                          help="epochs without improvement before early stopping or adaptive acts (default: 5)")
    training.add_argument("--tol", type=_cli.non_negative_float,
                          help="the least improvement that counts (default: 1e-4)")
    training.add_argument("--class-weight", choices=("balanced",),
                          help="weigh each class by n / (k * its count)")
    solver = parser.add_argument_group(
        "full-batch training", "--solver lbfgs minimizes (1/n) sum_i CE_i + (alpha/2) ||W||^2 over all rows by "
        "L-BFGS (needs threadpoolctl); it uses --alpha, --class-weight, --backend, --dtype and --threads and ignores the "
        "SGD options (--epochs, --lr, --batch-size, --shuffle, momentum, schedules, early stopping, --tol)")
    solver.add_argument("--solver", choices=("sgd", "lbfgs"), help="default: sgd")
    solver.add_argument("--max-iter", type=_cli.positive_int, help="lbfgs: most iterations (default: 100)")
    solver.add_argument("--gtol", type=_cli.non_negative_float,
                        help="lbfgs: stop when no gradient component exceeds this in absolute value (default: 1e-6)")
    parser.add_argument("--out", type=Path, help="output directory (default: a new folder under ./runs/)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help=f"finish the interrupted run in DIR from its {CHECKPOINT}, with the options it was "
                             "started with (--threads, --data-dir and the output options may be given)")
    parser.add_argument("--checkpoint-every", type=_cli.positive_float, metavar="SECONDS",
                        help="SGD: also write the checkpoint that a signal writes every SECONDS, and go on, so that "
                             "a run killed outright (SIGKILL, out of memory) can be resumed from it with --resume")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG figures")
    parser.add_argument("--show", action="store_true", help="also show the figures in a window")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the final result")
    parser.add_argument("--json", action="store_true", help="print the final result as JSON on stdout")
    args = parser.parse_args(argv)
    given = [name for name in (*RUN_DEFAULTS, "out") if getattr(args, name) is not None]
    if args.resume is not None and given:
        parser.error(f"--resume finishes a run with the options it was started with: remove "
                     f"{', '.join('--' + name.replace('_', '-') for name in given)}")
    for name, default in RUN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.nesterov and args.momentum == 0:
        parser.error("--nesterov needs --momentum > 0")
    if args.shuffle_block_size is not None and not args.shuffle:
        parser.error("--shuffle-block-size needs --shuffle")
    return args


def default_out_dir(dataset):
    """A new directory name under ``./runs/``: the data set's name and the time."""
    stem = dataset if dataset in datasets.TITLES else Path(dataset).stem
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

    def __init__(self, epochs, stream, quiet, show_lr=False):
        self.epochs = epochs
        self.stream = stream
        self.quiet = quiet
        self.show_lr = show_lr
        self.bar = None

    def on_batches(self, epoch, done, total):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="batch", leave=False,
                            disable=self.quiet or not sys.stderr.isatty())
        self.bar.update(done - self.bar.n)

    def on_epoch(self, record):
        if "iteration" in record:
            self.on_iteration(record)
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        line = f"epoch {record['epoch']:>3}/{self.epochs}"
        if self.show_lr:
            line += f"  lr {record['lr']:.4g}"
        line += f"  train loss {record['train_loss']:.4f}  acc {record['train_accuracy']:.4f}"
        for name, loss, accuracy in (("val", "validation_loss", "validation_score"),
                                     ("test", "test_loss", "test_accuracy")):
            if record.get(loss) is not None:
                line += f"  {name} loss {record[loss]:.4f}  acc {record[accuracy]:.4f}"
        self.say(f"{line}  {record['seconds']:.2f}s")

    def on_iteration(self, record):
        """One line per L-BFGS iteration: the objective, the largest gradient component and the test data's."""
        line = (f"iteration {record['iteration']:>3}/{self.epochs}  objective {record['objective']:.6f}  "
                f"max |gradient| {record['gradient_norm']:.2e}")
        if record.get("test_loss") is not None:
            line += f"  test loss {record['test_loss']:.4f}  acc {record['test_accuracy']:.4f}"
        self.say(f"{line}  {record['seconds']:.2f}s")

    def say(self, line):
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def prepare_out_dir(out_dir):
    """Create the output directory and check that a file can be written there, before any training."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write to the output directory {out_dir}: {exc.strerror or exc}") from exc


class StopSignals:
    """While active, a first SIGINT or SIGTERM is noted (``received``: its name) and asks training to stop.

    The handlers that were in place come back at once, so a second signal acts as usual (Ctrl-C raises
    ``KeyboardInterrupt``, SIGTERM terminates).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.received = None
        self._previous = {number: signal.signal(number, self._note) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        self._restore()

    def _note(self, number, frame):
        self.received = signal.Signals(number).name
        self._restore()

    def _restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def stop_requested(self):
        return self.received is not None


def read_checkpoint(path):
    """``(model, run)`` from the checkpoint of an interrupted run; ``ValueError`` naming it otherwise.

    The file is a model file with the array ``run`` (see
    :mod:`softmax_fast.model_file`, which reads and writes it); ``run`` holds
    ``--dataset`` and ``--data-dir`` as given, and the working directory they
    are relative to.
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint (a run leaves one only when it is interrupted, and removes it "
                         "when it finishes)")
    model, run = model_file.read_checkpoint(SoftmaxRegression, path)
    if not (isinstance(run, dict) and isinstance(run.get("dataset"), str) and isinstance(run.get("cwd"), str)
            and isinstance(run.get("data_dir"), (str, type(None)))):
        raise ValueError(f"{path} is a model file but not a checkpoint of {PROG}: its run options are missing")
    return model, run


def load_run_data(run, data_dir, report):
    """The data set of ``run`` (its ``.npz`` file or ``.npy`` directory relative to its working directory).

    ``data_dir``, if not ``None``, replaces the run's data directory.
    """
    dataset = run["dataset"] if run["dataset"] in datasets.TITLES else str(Path(run["cwd"], run["dataset"]))
    if data_dir is None and run["data_dir"] is not None:
        data_dir = Path(run["cwd"], run["data_dir"])
    return datasets.load_dataset(dataset, data_dir, report=report)


def write_metrics(out_dir, summary, history):
    with open(out_dir / "metrics.json", "w") as f:
        json.dump(summary | {"history": history}, f, indent=2)
    columns = LBFGS_METRIC_COLUMNS if summary["params"]["solver"] == "lbfgs" else METRIC_COLUMNS
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def draw_figures(out_dir, model, dataset, test, show):
    """Write curves.png, weights.png (for 28x28 images) and confusion.png (with test data); returns their names."""
    import matplotlib.pyplot as plt

    from . import plotting

    title = datasets.TITLES.get(dataset, dataset)
    figures = {"curves.png": plotting.plot_curves(model.history_, f"Softmax regression on {title}",
                                                  best_epoch=model.best_epoch_)}
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


def open_run(args):
    """``(out_dir, model, run)``: a new run from the options, or the interrupted one in ``--resume DIR``.

    ``run`` holds what the checkpoint keeps besides the model: ``--dataset``
    and ``--data-dir`` as given and the working directory. The output
    directory is created and checked, so that an unwritable one fails before
    training.
    """
    if args.resume is None:
        out_dir = args.out or default_out_dir(args.dataset)
        model = SoftmaxRegression(n_jobs=args.threads, **{PARAMETER_NAMES.get(name, name): getattr(args, name)
                                                          for name in RUN_DEFAULTS if name != "dataset"})
        run = {"dataset": args.dataset, "data_dir": None if args.data_dir is None else str(args.data_dir),
               "cwd": str(Path.cwd())}
    else:
        out_dir = args.resume
        model, run = read_checkpoint(out_dir / CHECKPOINT)
        if args.threads is not None:
            model.set_params(n_jobs=args.threads)
    prepare_out_dir(out_dir)
    return out_dir, model, run


def write_outputs(out_dir, model, run, test, args, backend_name, train_seconds):
    """Write the model, the metrics and (unless --no-plot) the figures, remove the checkpoint; returns the summary."""
    model.save(out_dir / "model.npz")
    files = ["model.npz", "metrics.json", "metrics.csv"]
    if not args.no_plot:
        files += draw_figures(out_dir, model, run["dataset"], test, args.show)
    # The epoch whose weights the model has: early stopping's best, else the last.
    final = model.history_[(model.best_epoch_ or len(model.history_)) - 1] if model.history_ else {}
    summary = {
        "dataset": run["dataset"],
        "backend": backend_name,
        "params": model.get_params(),
        "train_seconds": train_seconds,
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "best_epoch": model.best_epoch_,
        "out_dir": str(out_dir),
        "files": files,
    }
    write_metrics(out_dir, summary, model.history_)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary


def main(argv=None):
    args = parse_args(argv)
    if not args.show:
        import matplotlib

        matplotlib.use("Agg")
    out_dir, model, run = open_run(args)
    lbfgs = model.solver == "lbfgs"
    progress = Progress(model.max_iter if lbfgs else model.epochs, sys.stderr if args.json else sys.stdout,
                        args.quiet, show_lr=model.learning_rate != "constant" and not lbfgs)
    (X, y), test = load_run_data(run, args.data_dir, progress.say)
    backend_name = kernels.get_backend(model.backend).name
    progress.say(f"training on {X.shape[0]} rows x {X.shape[1]} features{' (sparse)' if is_sparse(X) else ''}, "
                 f"{'no test split' if test is None else f'{test[0].shape[0]} test rows'}; "
                 f"backend {backend_name}, {model.dtype}{', L-BFGS' if lbfgs else ''}")
    if args.resume is not None:
        progress.say(f"resuming epoch {model.n_iter_ + 1}/{model.epochs} from {out_dir / CHECKPOINT}")
    started = time.perf_counter()
    diverged = None
    try:
        with StopSignals() as signals:
            train = model.fit if args.resume is None else model.resume
            periodic = {} if args.checkpoint_every is None else dict(
                checkpoint=lambda model: model_file.write_checkpoint(out_dir / CHECKPOINT, model, run),
                checkpoint_every=args.checkpoint_every)
            train(X, y, validation_data=test, on_batches=progress.on_batches, on_epoch=progress.on_epoch,
                  stop=signals.stop_requested, **periodic)
    except TrainingInterrupted as exc:
        model_file.write_checkpoint(out_dir / CHECKPOINT, model, run)
        print(f"{PROG}: {signals.received}: {exc}; wrote {out_dir / CHECKPOINT}; to finish the run: "
              f"{PROG} --resume {out_dir}", file=sys.stderr)
        return _cli.EXIT_INTERRUPTED
    except TrainingDivergedError as exc:
        diverged = exc
    if model.best_epoch_ is not None:
        stopped = f"stopped after epoch {model.n_iter_}, " if model.n_iter_ < model.epochs else ""
        progress.say(f"early stopping: {stopped}kept the weights of epoch {model.best_epoch_}, the best on the "
                     f"held-out rows (accuracy {model.history_[model.best_epoch_ - 1]['validation_score']:.4f})")
    summary = write_outputs(out_dir, model, run, test, args, backend_name, time.perf_counter() - started)
    if diverged is not None:
        raise TrainingDivergedError(f"{diverged} Wrote it, with the metrics of the epochs before, to {out_dir}.",
                                    diverged.epoch) from diverged
    if lbfgs and signals.received is not None:
        print(f"{PROG}: {signals.received}: L-BFGS stopped after iteration {model.n_iter_}; wrote the model it "
              f"reached to {out_dir}", file=sys.stderr)
        return _cli.EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary | {"history": model.history_}, indent=2))
    else:
        if summary["test_accuracy"] is not None:
            print(f"test accuracy {summary['test_accuracy']:.4f}")
        print(f"trained in {summary['train_seconds']:.2f}s; wrote {', '.join(summary['files'])} to {out_dir}")
    return 0


if __name__ == "__main__":
    _cli.run(main, PROG)
