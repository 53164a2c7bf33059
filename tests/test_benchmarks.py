"""The benchmark suite cannot rot: ``python -m benchmarks --quick`` runs and writes its outputs.

No timing is asserted; only that every section, row and file is there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks package lives at the repository's root, beside tests/.
sys.path.insert(0, str(ROOT))
from benchmarks import _report, common  # noqa: E402

SECTIONS = ("machine", "settings", "gemm_peaks_gflops", "limits", "epochs", "kernels", "peers", "compile", "memory",
            "disk", "solvers", "dask", "text", "targets")
KERNELS = {"time_softmax", "time_cross_entropy", "time_loss_and_grad", "time_sgd_step"}


def _run_quick(out, *options):
    """``python -m benchmarks --quick --out out *options`` from the repository: its completed process.

    The timeout only guards against a hang: with an empty Numba cache the quick run compiles every kernel, and
    took 8 minutes (480 s) on 2 cores.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), *options], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--quick`` run for the whole module: (its completed process, its output directory)."""
    out = tmp_path_factory.mktemp("benchmarks")
    return _run_quick(out), out


@pytest.fixture(scope="module")
def results(quick_run):
    return json.loads((quick_run[1] / "results.json").read_text())


def _rows(results, section, benchmark=None):
    return [r for r in results[section] if benchmark is None or r["benchmark"] == benchmark]


def _measured_rows(results, section):
    """The rows of ``section`` by ``(class, method, parameter values)``, after checking that each was measured."""
    rows = {(r["class"], r["method"], tuple(r["params"].values())): r for r in _rows(results, section)}
    assert all(r["status"] == "ok" for r in rows.values()), [r.get("reason") for r in rows.values()]
    return rows


@pytest.mark.slow  # the run itself: a minute or more
def test_exits_cleanly_and_prints_the_tables(quick_run):
    done, out = quick_run
    assert done.returncode == 0, done.stderr[-5000:]
    for heading in ("## Machine limits", "## One epoch", "## Kernels alone", "## Peers", "## Numba compile",
                    "## Peak memory", "## Data on disk", "## Full-batch training against scikit-learn",
                    "## Text: 20 Newsgroups TF-IDF (issue 18)", "## Targets of the issues"):
        assert heading in done.stdout
    assert "| implementation | dtype | input | threads | median ms |" in done.stdout
    assert "QUICK MODE" in done.stdout
    assert (out / "results.md").read_text().strip() in done.stdout


@pytest.mark.slow  # the run itself: a minute or more
def test_writes_the_chart(quick_run):
    png = quick_run[1] / "epochs.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_epoch_rows_writes_no_chart(tmp_path):
    """``--select`` may leave no epoch to draw; the run still reports, and no older chart is left behind."""
    (tmp_path / "epochs.png").write_bytes(b"an older run's chart")
    done = _run_quick(tmp_path, "--select", "ReadBandwidth")
    assert done.returncode == 0, done.stderr[-5000:]
    assert "no epoch rows to chart" in done.stdout
    assert not (tmp_path / "epochs.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["limits"]


@pytest.mark.slow  # the run itself: a minute or more
def test_json_has_every_section_and_the_machine(results):
    assert set(SECTIONS) <= set(results)
    machine = results["machine"]
    assert machine["cpu_model"] and machine["cpus_usable"] >= 1
    assert {"numpy", "numba", "Cython"} <= set(machine["versions"])
    assert results["settings"]["quick"] is True
    every = results["machine"]["cpus_usable"]
    assert {(p["dtype"], p["threads"]) for p in results["gemm_peaks_gflops"]} >= {("float32", every),
                                                                                  ("float64", every)}


def _ok_or_no_threadpoolctl(row):
    """Fewer threads than all need threadpoolctl (an optional dependency); without it such rows are skipped."""
    return row["status"] == "ok" or (row["status"] == "skipped" and "threadpoolctl" in row["reason"])


@pytest.mark.slow  # the run itself: a minute or more
def test_machine_limits_rows(results):
    gemm = _rows(results, "limits", "bench_machine.Gemm.time_matmul")
    assert {r["params"]["dtype"] for r in gemm} == {"float32", "float64"}
    assert all(_ok_or_no_threadpoolctl(r) for r in gemm)
    assert all(r["gflops"] > 0 and len(r["samples"]) >= 1 for r in gemm if r["status"] == "ok")
    read = _rows(results, "limits", "bench_machine.ReadBandwidth.time_read")
    assert read and all(r["status"] == "ok" and r["gbytes_per_s"] > 0 for r in read)


@pytest.mark.slow  # the run itself: a minute or more
def test_epoch_rows(results):
    seed = _rows(results, "epochs", "bench_epoch.SeedLoop.time_epoch")
    assert {r["params"]["dtype"] for r in seed} == {"float32", "float64"}
    assert all(_ok_or_no_threadpoolctl(r) for r in seed)
    assert any(r["info"].get("seed") and r["speedup_vs_seed"] == pytest.approx(1.0) for r in seed)
    backends = _rows(results, "epochs", "bench_epoch.BackendEpoch.time_epoch")
    combos = {(r["params"]["backend"], r["params"]["dtype"], r["params"]["input"]) for r in backends}
    assert len(combos) == 3 * 2 * 2
    measured = [r for r in backends if r["status"] == "ok"]
    # The reference needs nothing but NumPy; a compiled backend may be skipped, with its reason, where unavailable.
    assert {r["params"]["backend"] for r in measured} >= {"numpy"}
    assert all(r["status"] == "skipped" and r["reason"] for r in backends if r["status"] != "ok")
    assert {r["params"]["backend"] for r in measured if r["params"]["threads"] == 1} >= {"numba"}
    options = _rows(results, "epochs", "bench_epoch.OptionsEpoch.time_epoch")
    assert {(r["params"]["backend"], r["params"]["dtype"], r["params"]["input"]) for r in options} == {
        (backend, dtype, kind) for backend, dtype, kind in combos if backend != "numpy"}
    measured += [r for r in options if r["status"] == "ok"]
    for r in measured:
        assert r["stats"]["min"] <= r["stats"]["median"] <= r["stats"]["max"]
        assert r["gflops"] > 0 and r["speedup_vs_seed"] > 0
        # % of peak needs the GEMM peak of the row's dtype and thread count (missing only without threadpoolctl).
        assert r["peak_gflops"] is None or r["pct_peak"] > 0


@pytest.mark.slow  # the run itself: a minute or more
def test_kernel_rows(results):
    rows = _rows(results, "kernels")
    assert {r["method"] for r in rows} == KERNELS
    assert {r["params"]["shape"] for r in rows} == {"mnist", "probe"}
    assert {r["params"]["backend"] for r in rows} == {"numpy", "numba", "cython"}
    assert all(r["gflops"] > 0 for r in rows if r["status"] == "ok")


@pytest.mark.slow  # the run itself: a minute or more
def test_peer_compile_and_memory_rows(results):
    peers = {r["class"] for r in _rows(results, "peers")}
    assert peers == {"TorchEpoch", "SGDClassifierEpoch", "LogisticRegressionFit"}
    # A peer that is not installed is skipped with a one-line reason, never an error.
    assert all(r["status"] in ("ok", "skipped") for r in _rows(results, "peers"))
    compile_methods = {r["method"] for r in _rows(results, "compile")}
    assert compile_methods == {"track_compile_seconds", "track_load_seconds", "track_run_seconds"}
    rss = _rows(results, "memory", "bench_memory.TrainCommand.track_peak_rss_mb")
    assert len(rss) == 1 and rss[0]["status"] == "ok" and rss[0]["value"] > 10
    assert _rows(results, "memory", "bench_memory.FitEpoch.peakmem_fit")
    disk = _rows(results, "disk", "bench_memory.MemmapEpoch.time_fit")
    assert sorted(r["params"]["source"] for r in disk) == ["memmap", "memory"]
    assert all(r["status"] == "ok" for r in disk)


@pytest.mark.slow  # the run itself: a minute or more
def test_solver_rows(results):
    rows = _measured_rows(results, "solvers")
    for dtype in ("float32", "float64"):
        assert rows["MnistLbfgs", "time_fit", (dtype,)]["stats"]["median"] > 0
        # Each fit ends once its objective is at most scikit-learn's (1e-6 relative), or it is below it.
        assert rows["MnistLbfgs", "track_objective_gap", (dtype,)]["value"] <= 1e-6
    assert rows["SklearnMnist", "track_seconds", ()]["value"] > 0
    assert all(rows["ProbePass", "time_pass", (backend,)]["pct_peak"] > 0 for backend in ("numba", "cython"))
    assert rows["ProbeLbfgs", "track_objective_gap", ()]["value"] <= 1e-6
    assert {rows["DigitsCV", "track_best_score", (library,)]["value"] > 0.5
            for library in ("softmax_fast", "scikit-learn")} == {True}


@pytest.mark.slow  # the run itself: a minute or more
def test_text_rows(results):
    rows = _measured_rows(results, "text")
    for library in ("scikit-learn", "softmax_fast"):
        assert rows["NewsSgd", "time_fit", (library,)]["stats"]["median"] > 0
        # The quick mode's synthetic documents are learnable: far above the 1 in 20 of a guess.
        assert rows["NewsSgd", "track_test_accuracy", (library,)]["value"] > 0.5
    assert rows["NewsLogisticRegression", "track_seconds", ()]["value"] > 0
    assert rows["NewsLbfgs", "time_fit", ()]["stats"]["median"] > 0
    assert rows["NewsLbfgs", "track_objective_gap", ()]["value"] <= 1e-6
    for backend in ("numba", "cython"):
        assert rows["SparsePass", "time_loss_and_grad", (backend,)]["gflops"] > 0


@pytest.mark.slow  # the run itself: a minute or more
def test_targets_are_listed(results):
    targets = results["targets"]
    # Numba against Cython: one target per dtype, input kind and thread count (1 and every usable CPU); the
    # epoch with the training options against the plain one: one per compiled backend, dtype and input kind.
    thread_counts = {1, results["machine"]["cpus_usable"]}
    # Issue 16's: MNIST's time and objective per dtype, the probe's pass, the CV's time and score. Issue 17's: the
    # Dask fit's speed-up from 1 worker to 2, its time against the in-process fit's, the fits' objectives. Issue 18's:
    # 20 Newsgroups' SGD accuracy and speed-up, lbfgs speed-up and objective.
    assert len(targets) == 4 + 4 * len(thread_counts) + 2 * 4 + 2 + 1 + 2 * 2 + 1 + 2 + 3 + 4
    assert all(t["result"] in ("pass", "miss", "n/a") for t in targets)
    rss = next(t for t in targets if "peak RSS" in t["target"])
    assert rss["result"] == "n/a" and "quick mode" in rss["measured"]
    # The quick mode's documents are synthetic: only the lbfgs objective of issue 18 is graded.
    text = [t for t in targets if t["target"].startswith("20 Newsgroups")]
    assert [t["result"] == "n/a" and "synthetic" in t["measured"] for t in text] == [True, True, True, False]


def _timed(benchmark, params, median, other_cpus=0.0, **info):
    """A record as the runner writes it, of one timed row: enough for ``_report.derive`` and ``targets``."""
    module, cls, method = benchmark.split(".")
    return {"benchmark": benchmark, "class": cls, "method": method, "kind": "time", "status": "ok",
            "params": params, "info": info, "stats": {"median": median}, "other_cpus": other_cpus}


def _graded_records(disturbed_cpus):
    """A full run's worth of rows that meets every target, the fastest Cython float32 epoch disturbed by
    ``disturbed_cpus`` busy CPUs."""
    every, flops = common.ALL_THREADS, common.epoch_flops(60000)
    records = [_timed("bench_machine.Gemm.time_matmul", {"dtype": dtype, "threads": threads}, 1.0,
                      dtype=dtype, threads=threads, flops=2e11) for dtype in common.DTYPES for threads in common.THREADS]
    records.append(_timed("bench_epoch.SeedLoop.time_epoch", {"dtype": "float64", "threads": every}, 0.14,
                          seed=True, epoch=True, dtype="float64", threads=every, flops=flops))
    records.append(_timed("bench_epoch.SeedLoop.time_epoch", {"dtype": "float32", "threads": every}, 0.07,
                          epoch=True, dtype="float32", threads=every, flops=flops))
    for backend in common.COMPILED_BACKENDS:
        for dtype in common.DTYPES:
            for kind in common.INPUTS:
                for threads in common.THREADS:
                    fastest = backend == "cython" and dtype == "float32" and threads == every and kind == "uint8"
                    records.append(_timed(
                        "bench_epoch.BackendEpoch.time_epoch",
                        {"backend": backend, "dtype": dtype, "input": kind, "threads": threads},
                        0.006 if fastest else 0.008, disturbed_cpus if fastest else 0.0,
                        epoch=True, dtype=dtype, threads=threads, flops=flops))
                records.append(_timed(
                    "bench_epoch.OptionsEpoch.time_epoch", {"backend": backend, "dtype": dtype, "input": kind,
                                                            "threads": every},
                    1.1 * (0.006 if backend == "cython" and dtype == "float32" and kind == "uint8" else 0.008),
                    epoch=True, dtype=dtype, threads=every, flops=flops))
        records.append(_timed("bench_kernels.Kernels.time_sgd_step",
                              {"shape": "probe", "backend": backend, "dtype": "float32", "threads": every}, 0.004,
                              dtype="float32", threads=every, flops=1.5e11))
    records.append(_tracked("bench_memory.TrainCommand.track_peak_rss_mb", {}, 200.0))
    records.append(_tracked("bench_solvers.SklearnMnist.track_seconds", {}, 15.0))
    for dtype in common.DTYPES:
        records.append(_timed("bench_solvers.MnistLbfgs.time_fit", {"dtype": dtype}, 1.0, dtype=dtype))
        records.append(_tracked("bench_solvers.MnistLbfgs.track_objective_gap", {"dtype": dtype}, -1e-7))
    for backend in common.COMPILED_BACKENDS:
        records.append(_timed("bench_solvers.ProbePass.time_pass", {"backend": backend}, 1.0, dtype="float32",
                              threads=every, flops=1.5e11))
    for library, seconds in (("softmax_fast", 0.3), ("scikit-learn", 2.0)):
        records.append(_timed("bench_solvers.DigitsCV.time_fit", {"library": library}, seconds))
        records.append(_tracked("bench_solvers.DigitsCV.track_best_score", {"library": library}, 0.926))
    for engine, seconds in (("1 worker", 10.0), ("2 workers", 5.5), ("in-process", 5.0)):
        for figure, value in (("seconds", seconds), ("iterations", 5), ("evaluations", 6), ("objective", 6.9)):
            records.append(_tracked(f"bench_dask.ProbeFit.track_{figure}", {"engine": engine}, value))
    for library, seconds, accuracy in (("scikit-learn", 1.2, 0.85), ("softmax_fast", 0.5, 0.86)):
        records.append(_timed("bench_text.NewsSgd.time_fit", {"library": library}, seconds))
        records.append(_tracked("bench_text.NewsSgd.track_test_accuracy", {"library": library}, accuracy))
    records.append(_tracked("bench_text.NewsLogisticRegression.track_seconds", {}, 25.0))
    records.append(_timed("bench_text.NewsLbfgs.time_fit", {}, 2.0))
    records.append(_tracked("bench_text.NewsLbfgs.track_objective_gap", {}, 5e-7))
    return records


def _tracked(benchmark, params, value):
    """A record as the runner writes it, of one track row."""
    module, cls, method = benchmark.split(".")
    return {"benchmark": benchmark, "class": cls, "method": method, "kind": "track", "status": "ok",
            "params": params, "info": {}, "value": value}


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_a_target_on_a_disturbed_row_is_not_graded(quick):
    undisturbed = _graded_records(0.0)
    _report.derive(undisturbed)
    assert {t["result"] for t in _report.targets(undisturbed)} == {"pass"}
    disturbed = _graded_records(0.8)
    _report.derive(disturbed)
    results = {t["target"]: t for t in _report.targets(disturbed, quick=quick)}
    on_that_row = [t for name, t in results.items() if name.startswith("best float32")
                   or name == f"numba / cython epoch, float32, uint8 X, {common.ALL_THREADS} thread(s)"
                   or name.endswith("/ plain epoch, cython, float32, uint8 X")]
    assert len(on_that_row) == 5
    for target in on_that_row:
        assert target["result"] == "n/a"
        assert "not graded: other processes kept 0.80 CPUs busy during BackendEpoch.time_epoch" in target["measured"]
    rss = results["peak RSS of python -m softmax_fast.train (default run)"]
    assert rss["result"] == ("n/a" if quick else "pass")
