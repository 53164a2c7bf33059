"""Memory: the peak RSS of a default training run (the issue's target: 250 MB) and of a one-epoch fit.

* ``TrainCommand``: ``python -m softmax_fast.train --no-plot --quiet --out <tmp>`` (real MNIST,
  10 epochs; quick mode: a tiny ``.npz`` data set) in a child process; its peak RSS is the
  ``ru_maxrss`` that ``os.wait4`` returns for that child alone. The run's test accuracy and
  training time come from its ``metrics.json``: a check that the kernels being measured still learn.
* ``FitEpoch``: asv's ``peakmem_``: the peak RSS of a process that loads the uint8 training set
  and fits ``SoftmaxRegression(epochs=1)`` on it (``python -m benchmarks`` runs it in a child).
* ``MemmapEpoch``: the time of one shuffled epoch's fit on the uint8 training set in memory and
  as a memory-mapped ``.npy`` (issue 17): what reading rows through the page cache, and gathering
  each kernel call's shuffled rows, costs against an array in memory.

Why a launcher: Linux carries a process's peak RSS across ``exec`` into its
``ru_maxrss``, so a child forked straight from a large process (the benchmark
runner holds the data sets, ~0.5 GB) reports at least the parent's size. The
training command is therefore started by a small launcher process (~12 MB),
which reports the ``os.wait4`` figure of its own child.

MB here is 10⁶ bytes.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import common

#: The issue's target for the peak RSS of a default training run.
RSS_TARGET_MB = 250


# Runs ``argv[3:]`` with stdout and stderr to the files ``argv[1]``, ``argv[2]``; prints
# ``[exit status, ru_maxrss KiB]`` of that child alone as JSON.
_LAUNCHER = """
import json, os, subprocess, sys
with open(sys.argv[1], "wb") as stdout, open(sys.argv[2], "wb") as stderr:
    child = subprocess.Popen(sys.argv[3:], stdout=stdout, stderr=stderr)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps([child.returncode, usage.ru_maxrss]))
"""


def run_measuring_rss(command, workdir):
    """Run ``command`` in ``workdir`` through the launcher; ``(exit status, peak RSS bytes)``.

    Its output goes to ``workdir/stdout`` and ``workdir/stderr``.
    """
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(workdir / "stdout"), str(workdir / "stderr"),
                           *command], cwd=workdir, capture_output=True, text=True, check=True)
    status, max_rss_kib = json.loads(done.stdout.strip().splitlines()[-1])
    return status, max_rss_kib * 1024  # ru_maxrss is in KiB on Linux


def _tiny_dataset(path):
    """Write a small ``.npz`` data set (MNIST-shaped uint8 images) for the quick mode's training run."""
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.integers(0, 256, (512, 784), dtype=np.uint8), y=rng.integers(0, 10, 512),
             X_test=rng.integers(0, 256, (128, 784), dtype=np.uint8), y_test=rng.integers(0, 10, 128))


class TrainCommand:
    """Peak RSS (MB), test accuracy and training seconds of one ``python -m softmax_fast.train`` run."""

    table = "memory"
    timeout = 900

    def setup(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="softmax-fast-train-"))
        out = self.workdir / "run"
        self.args = [sys.executable, "-m", "softmax_fast.train", "--no-plot", "--quiet", "--out", str(out)]
        if common.QUICK:
            _tiny_dataset(self.workdir / "tiny.npz")
            self.args += ["--dataset", str(self.workdir / "tiny.npz")]
        status, peak_bytes = run_measuring_rss(self.args, self.workdir)
        if status != 0:
            raise RuntimeError(f"{' '.join(self.args)} exited with {status}: "
                               f"{(self.workdir / 'stderr').read_text()[-2000:]}")
        self.peak_rss_mb = peak_bytes / 1e6
        self.summary = json.loads((out / "metrics.json").read_text())

    def teardown(self):
        shutil.rmtree(self.workdir, ignore_errors=True)

    def track_peak_rss_mb(self):
        """The child's peak resident set size, MB (10⁶ bytes)."""
        return self.peak_rss_mb

    track_peak_rss_mb.unit = "MB"

    def track_test_accuracy(self):
        """The run's final test accuracy (about 0.92 on MNIST; chance on the quick mode's random data)."""
        return self.summary["test_accuracy"]

    track_test_accuracy.unit = "fraction"

    def track_train_seconds(self):
        """The run's own training time (``train_seconds`` in metrics.json): 10 epochs plus evaluation."""
        return self.summary["train_seconds"]

    track_train_seconds.unit = "seconds"

    def describe(self, method):
        backend = getattr(self, "summary", {}).get("backend", "auto")
        data = "tiny .npz, 512 rows" if common.QUICK else "MNIST"
        return {"label": f"python -m softmax_fast.train ({data}, 10 epochs, backend {backend})",
                "target_mb": RSS_TARGET_MB}


class FitEpoch:
    """Peak memory of a process that loads the uint8 training set and fits one epoch (float32)."""

    table = "memory"
    params = [common.COMPILED_BACKENDS]
    param_names = ["backend"]
    timeout = 600

    def setup(self, backend):
        common.backend(backend)
        self.X, self.y = common.mnist_uint8()

    def peakmem_fit(self, backend):
        from softmax_fast import SoftmaxRegression

        SoftmaxRegression(epochs=1, backend=backend).fit(self.X, self.y)

    def describe(self, method, backend):
        return {"label": f"process: load data + SoftmaxRegression(epochs=1, backend={backend!r}).fit",
                "backend": backend}


class MemmapEpoch:
    """``SoftmaxRegression(epochs=1, shuffle=True).fit`` on the uint8 training set, in memory or memory-mapped.

    The ``.npy`` is written to a temporary directory in ``setup`` and opened with ``np.load(mmap_mode="r")``;
    after the warm-up its pages are in the page cache, as for a data set that fits in memory but is read
    from disk.
    """

    table = "disk"
    params = [["memory", "memmap"]]
    param_names = ["source"]
    timeout = 600

    def setup(self, source):
        X, self.y = common.mnist_uint8()
        self.workdir = Path(tempfile.mkdtemp(prefix="softmax-fast-memmap-"))
        if source == "memmap":
            np.save(self.workdir / "X.npy", X)
            X = np.load(self.workdir / "X.npy", mmap_mode="r")
        self.X = X

    def teardown(self, source):
        del self.X
        shutil.rmtree(self.workdir, ignore_errors=True)

    def time_fit(self, source):
        from softmax_fast import SoftmaxRegression

        SoftmaxRegression(epochs=1, shuffle=True).fit(self.X, self.y)

    def describe(self, method, source):
        where = "in memory" if source == "memory" else "memory-mapped .npy"
        return {"label": f"SoftmaxRegression(epochs=1, shuffle=True).fit, {len(self.y)} uint8 rows, {where}",
                "source": source}
