"""The Dask estimator's lbfgs fit on a cluster of 1 and of 2 worker processes, against the same fit in-process.

``ProbeFit`` fits the linear probe of ``bench_solvers`` (``probe_data``,
float32, ``alpha = PROBE_ALPHA``) for ``MAX_ITER`` iterations with
``gtol=0`` (so every fit does the same iterations; the ConvergenceWarning
is silenced), backend ``"auto"``, with

* ``softmax_fast.dask.SoftmaxRegression`` on a ``distributed.LocalCluster``
  of 1 or 2 single-threaded worker processes on 127.0.0.1 (one kernel thread
  per block's task), the rows in ``BLOCKS`` blocks, consecutive blocks on the
  same worker;
* ``softmax_fast.SoftmaxRegression(n_jobs=2)`` in this process.

Issue 17's targets: 2 workers at least 1.6× as fast as 1, and at most 1.3×
the in-process fit's time. Only the fit is timed: ``setup`` starts the
cluster, scatters the blocks to the workers and persists the Dask arrays
built on them (the fit's own persist finds them there), and warms every
worker up with a fit on a few rows (imports, kernel loads). One fit each, so
a single time, not a median, as ``bench_solvers.ProbeLbfgs``.

The workers are this benchmark's processes, which the runner would count as
other processes' load: each fit measures the other processes' load itself,
the workers' CPU time taken off (``describe``'s ``other_cpus``).
"""

import os
from unittest import mock

import numpy as np

from . import _runner, common
from .bench_solvers import PROBE_ALPHA, PROBE_SHAPE, _quietly, probe_data

#: Dask clusters of 1 and of 2 single-threaded worker processes, and the fit in this process on 2 threads.
ENGINES = ["1 worker", "2 workers", "in-process"]
WORKERS = {"1 worker": 1, "2 workers": 2}
IN_PROCESS_THREADS = 2
#: Row blocks of the Dask arrays (12,500 rows each on the probe).
BLOCKS = 8
#: Iterations of every fit: a fixed amount of work, the same for every engine. 9 iterations are 11 evaluations of
#: the objective (3 in the first, with its line search), as 5 were before the solver scaled H0 by the start's
#: curvature: with 7, the cluster's fixed cost (persisting the blocks, making them kernel-ready) weighed more.
MAX_ITER = 9
#: Rows per worker of the warm-up fit.
WARMUP_ROWS = 64


def _on_workers(client, X, y, n_blocks):
    """``X``, ``y`` as Dask arrays of ``n_blocks`` row blocks, persisted on the workers: each block's rows and
    labels scattered to one worker, consecutive blocks to the same one, the workers' shares equal."""
    import dask.array as da
    from distributed import wait

    workers = sorted(client.scheduler_info()["workers"])
    bounds = np.linspace(0, len(y), n_blocks + 1).astype(int)
    X_blocks, y_blocks = [], []
    for block, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows, labels = client.scatter([X[start:stop], y[start:stop]],
                                      workers=[workers[block * len(workers) // n_blocks]])
        X_blocks.append(da.from_delayed(rows, (stop - start, X.shape[1]), dtype=X.dtype))
        y_blocks.append(da.from_delayed(labels, (stop - start,), dtype=y.dtype))
    arrays = client.persist([da.concatenate(X_blocks), da.concatenate(y_blocks)])
    wait(arrays)
    return arrays


class ProbeFit:
    """``MAX_ITER`` lbfgs iterations on the probe: time, iterations, evaluations of the objective, the objective."""

    table = "dask"
    params = [ENGINES]
    param_names = ["engine"]
    timeout = 900

    def setup(self, engine):
        distributed = common.require("distributed")
        common.require("dask.array")
        X, y = probe_data()
        parameters = dict(solver="lbfgs", alpha=PROBE_ALPHA, dtype="float32", max_iter=MAX_ITER, gtol=0.0)
        self.client = self.cluster = None
        if engine == "in-process":
            from softmax_fast import SoftmaxRegression

            self.make = lambda: SoftmaxRegression(n_jobs=IN_PROCESS_THREADS, **parameters)
            self.data, warmup = (X, y), (X[:WARMUP_ROWS], y[:WARMUP_ROWS])
            self.cluster_cpu_seconds = lambda: 0.0
        else:
            from softmax_fast.dask import SoftmaxRegression

            self.make = lambda: SoftmaxRegression(**parameters)
            self.cluster = distributed.LocalCluster(n_workers=WORKERS[engine], threads_per_worker=1, processes=True,
                                                    host="127.0.0.1", dashboard_address=None)
            self.client = distributed.Client(self.cluster)
            rows = WARMUP_ROWS * WORKERS[engine]
            warmup = _on_workers(self.client, X[:rows], y[:rows], WORKERS[engine])
            self.data = _on_workers(self.client, X, y, BLOCKS)
            self.cluster_cpu_seconds = lambda: sum(t.user + t.system for t in self.client.run(os.times).values())
        _quietly(lambda: self.make().set_params(max_iter=1).fit(*warmup))
        self.fit()

    def fit(self):
        """One timed fit, its evaluations counted; the other processes' load over it, without the workers'."""
        from softmax_fast import _lbfgs

        def counters():
            wall, busy, own = _runner.cpu_counters()
            return wall, busy, own + self.cluster_cpu_seconds()

        self.model, before = self.make(), counters()
        with mock.patch.object(_lbfgs.Objective, "__call__", autospec=True,
                               side_effect=_lbfgs.Objective.__call__) as evaluations:
            self.seconds = _quietly(lambda: self.model.fit(*self.data))
        self.evaluations = evaluations.call_count
        self.other_cpus, _ = _runner._recent_other_cpus([before, counters()])

    def teardown(self, engine):
        if self.client is not None:
            self.client.close()
            self.cluster.close()

    def track_seconds(self, engine):
        return self.seconds

    track_seconds.unit = "seconds"

    def track_iterations(self, engine):
        return self.model.n_iter_

    track_iterations.unit = "iterations"

    def track_evaluations(self, engine):
        """Evaluations of the objective and its gradient: one pass over every row each."""
        return self.evaluations

    track_evaluations.unit = "evaluations"

    def track_objective(self, engine):
        return self.model.history_[-1]["objective"]

    track_objective.unit = "objective"

    def describe(self, method, engine):
        from softmax_fast import kernels

        n, d, k = PROBE_SHAPE
        how = (f"softmax_fast.SoftmaxRegression, n_jobs={IN_PROCESS_THREADS}" if engine == "in-process" else
               f"softmax_fast.dask.SoftmaxRegression, {engine} × 1 thread, {BLOCKS} blocks of {n // BLOCKS} rows")
        backend = kernels.get_backend("auto").name
        return {"label": f"{how}: lbfgs, {MAX_ITER} iterations, probe {n}×{d}×{k} float32, backend auto ({backend})",
                "engine": engine, "backend": backend, "dtype": "float32",
                "other_cpus": getattr(self, "other_cpus", None)}
