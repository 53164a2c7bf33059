"""Turn the runner's records into the comparison: derived figures, Markdown tables, targets, JSON, chart.

Derived per timed row (from its median):

* GFLOP/s = the row's FLOP count (its class's ``describe``) / median;
* % of peak = GFLOP/s / the GEMM peak of the row's dtype at the row's thread count
  (the best median GFLOP/s of ``bench_machine.Gemm`` over its sizes, in this run);
* × seed = the seed loop's median / the row's median, for epoch rows; the seed
  loop is ``bench_epoch.SeedLoop`` in float64 on all threads, the seed as written.
"""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from . import common
from ._runner import ROOT

TABLE_ORDER = ("limits", "epochs", "kernels", "peers", "compile", "memory", "disk", "solvers", "dask", "text")
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
PACKAGES = ("numpy", "numba", "llvmlite", "Cython", "threadpoolctl", "torch", "scikit-learn", "matplotlib",
            "softmax_fast")

# The targets.
SPEEDUP_VS_SEED_F32 = 6.0
SPEEDUP_VS_NUMPY_F32 = 4.0
PEAK_FRACTION_F32 = 40.0
SPEEDUP_VS_SEED_F64 = 3.0
NUMBA_CYTHON_RATIO = 1.5
PROBE_PEAK_FRACTION = 50.0
OPTIONS_EPOCH_RATIO = 1.15
# Issue 16's: lbfgs on MNIST to scikit-learn's objective, the probe's pass, the cross-validated penalty.
LBFGS_MNIST_SPEEDUP = 10.0
LBFGS_OBJECTIVE_GAP = 1e-6
PROBE_PASS_PEAK_FRACTION = 60.0
CV_SPEEDUP = 5.0
CV_SCORE_MARGIN = 0.005
# Issue 17's: the Dask lbfgs fit's speed-up from 1 worker to 2, its time over the in-process fit's on 2 threads, and
# how far apart the fits' objectives may end (they run the same iterations).
DASK_SPEEDUP = 1.6
DASK_OVERHEAD = 1.3
DASK_OBJECTIVE_SPREAD = 1e-6
# Issue 18's, on 20 Newsgroups: our SGD's test accuracy and its speed-up over SGDClassifier's fit, and our lbfgs's
# speed-up over LogisticRegression(C=1) to its objective (and how close it gets to it: LBFGS_OBJECTIVE_GAP).
TEXT_SGD_ACCURACY = 0.85
TEXT_SGD_SPEEDUP = 2.0
TEXT_LBFGS_SPEEDUP = 10.0


# -- the machine ------------------------------------------------------------------------------------

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_state():
    """The commit and whether the kernels' sources differ from it (they are being rewritten)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "softmax_fast"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "softmax_fast_changes": changed}


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return threadpool_info()


def machine_description(load_before):
    """CPU, cores, memory, versions, BLAS as threadpoolctl sees it, OpenBLAS variables, load."""
    from softmax_fast import kernels

    try:
        import numba

        threading_layer = numba.threading_layer()
    except Exception:  # noqa: BLE001 - unset until a parallel kernel has run, or Numba missing
        threading_layer = None
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": common.ALL_THREADS,
        "memory_bytes": common.proc_kilobytes_field("/proc/meminfo", "MemTotal"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "threadpoolctl": _blas_info(),
        "openblas_environment": {name: os.environ[name] for name in OPENBLAS_VARIABLES if name in os.environ},
        "numba_threading_layer": threading_layer,
        "backend_status": kernels.backend_status(),
        "git": _git_state(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


#: A row during which other processes kept at least this many CPUs busy, on average, is marked.
CONTENDED_CPUS = 0.25
CONTENDED_MARK = "⚠"


def _contended(r):
    return (r.get("other_cpus") or 0.0) >= CONTENDED_CPUS


# -- derived figures --------------------------------------------------------------------------------

def _ok(record):
    return record["status"] == "ok"


def _median(record):
    return record["stats"]["median"]


def gemm_peaks(records):
    """``{(dtype, threads): best median GFLOP/s}`` of the GEMM rows."""
    peaks = {}
    for r in records:
        if _ok(r) and r["method"] == "time_matmul":
            key = (r["info"]["dtype"], r["info"]["threads"])
            peaks[key] = max(peaks.get(key, 0.0), r["info"]["flops"] / _median(r) / 1e9)
    return peaks


def _seed(records):
    return next((r for r in records if _ok(r) and r["kind"] == "time" and r["info"].get("seed")), None)


def derive(records):
    """Add ``gflops``, ``pct_peak``, ``gbytes_per_s`` and ``speedup_vs_seed`` to the timed records."""
    peaks = gemm_peaks(records)
    seed = _seed(records)
    for r in records:
        if _ok(r) and "other_cpus" in r["info"]:
            # The row's own figure (bench_dask's, without its Dask workers, which the runner counts as others).
            r["other_cpus"] = r["info"]["other_cpus"]
        if not (_ok(r) and r["kind"] == "time"):
            continue
        info, median = r["info"], _median(r)
        if info.get("flops"):
            r["gflops"] = info["flops"] / median / 1e9
            peak = peaks.get((info.get("dtype"), info.get("threads")))
            r["peak_gflops"] = peak
            r["pct_peak"] = 100 * r["gflops"] / peak if peak else None
        if info.get("bytes"):
            r["gbytes_per_s"] = info["bytes"] / median / 1e9
        if info.get("epoch") and seed is not None:
            r["speedup_vs_seed"] = _median(seed) / median
    return peaks


# -- targets ----------------------------------------------------------------------------------------

def _rows(records, benchmark, **params):
    return [r for r in records if _ok(r) and r["benchmark"] == benchmark
            and all(r["params"].get(k) == v for k, v in params.items())]


def _fastest(rows):
    return min(rows, key=_median) if rows else None


def _verdict(value, goal, at_most=False):
    if value is None:
        return "n/a"
    return "pass" if (value <= goal if at_most else value >= goal) else "miss"


def _epoch_name(r):
    p = r["params"]
    return f"{p['backend']}, {p['input']} X, {p['threads']} thr, {_median(r) * 1e3:.1f} ms"


def _row_name(r):
    return " ".join([r["benchmark"].split(".", 1)[-1], *(f"{k}={v}" for k, v in r["params"].items())])


def _peak_rows(records, r):
    """The GEMM rows whose best is the peak that row ``r``'s "% of GEMM peak" divides by."""
    info = r["info"]
    return [g for g in records if _ok(g) and g["method"] == "time_matmul" and g["info"]["dtype"] == info.get("dtype")
            and g["info"]["threads"] == info.get("threads")]


def targets(records, quick=False):
    """The issue's targets, each ``{"target", "measured", "value", "goal", "result"}``, from this run.

    A target is graded only on rows that ran undisturbed: when a row it rests on (or the GEMM peak that
    divides it) ran while other processes kept ``CONTENDED_CPUS`` or more busy, it is "n/a" with that
    reason, since a slowed row proves nothing either way. The peak-memory target is "n/a" in quick mode,
    whose training run is a tiny synthetic data set, not MNIST.
    """
    every = common.ALL_THREADS
    epoch = "bench_epoch.BackendEpoch.time_epoch"
    seed = _seed(records)
    numpy_f32 = _first_row(records, "bench_epoch.SeedLoop.time_epoch", dtype="float32", threads=every)
    out = []

    def add(target, value, goal, text, unit="×", at_most=False, rows=(), not_graded=None):
        disturbed = [r for r in rows if r is not None and _contended(r)]
        if disturbed and not_graded is None:
            worst = max(disturbed, key=lambda r: r["other_cpus"])
            not_graded = (f"other processes kept {worst['other_cpus']:.2f} CPUs busy during "
                          f"{_row_name(worst)}")
        result = "n/a" if not_graded else _verdict(value, goal, at_most)
        measured = text if value is not None else "n/a"
        if not_graded:
            measured = f"{measured}; not graded: {not_graded}" if value is not None else f"not graded: {not_graded}"
        out.append({"target": target, "value": value, "goal": goal, "measured": measured,
                    "goal_text": f"{'≤' if at_most else '≥'} {goal:g}{unit}", "result": result})

    best = {}
    for dtype in common.DTYPES:
        best[dtype] = _fastest([r for r in _rows(records, epoch, dtype=dtype, threads=every)
                                if r["params"]["backend"] in common.COMPILED_BACKENDS])
    b32, b64 = best["float32"], best["float64"]
    value = _median(seed) / _median(b32) if seed and b32 else None
    add("best float32 compiled epoch (all threads) vs the seed loop", value, SPEEDUP_VS_SEED_F32,
        f"{value:.2f}× ({_epoch_name(b32)} vs {_median(seed) * 1e3:.1f} ms)" if value else "", rows=(seed, b32))
    value = _median(numpy_f32) / _median(b32) if numpy_f32 and b32 else None
    add("best float32 compiled epoch (all threads) vs the NumPy float32 loop", value, SPEEDUP_VS_NUMPY_F32,
        f"{value:.2f}× (vs {_median(numpy_f32) * 1e3:.1f} ms)" if value else "", rows=(numpy_f32, b32))
    value = b32.get("pct_peak") if b32 else None
    add("best float32 compiled epoch (all threads), % of float32 GEMM peak", value, PEAK_FRACTION_F32,
        f"{value:.1f} % ({b32['gflops']:.1f} of {b32['peak_gflops']:.1f} GFLOP/s)" if value else "", unit=" %",
        rows=(b32, *(_peak_rows(records, b32) if b32 else ())))
    value = _median(seed) / _median(b64) if seed and b64 else None
    add("best float64 compiled epoch (all threads) vs the seed loop", value, SPEEDUP_VS_SEED_F64,
        f"{value:.2f}× ({_epoch_name(b64)})" if value else "", rows=(seed, b64))
    for dtype in common.DTYPES:
        for kind in common.INPUTS:
            for threads in common.THREADS:
                numba = _fastest(_rows(records, epoch, backend="numba", dtype=dtype, input=kind, threads=threads))
                cython = _fastest(_rows(records, epoch, backend="cython", dtype=dtype, input=kind, threads=threads))
                ratio = _median(numba) / _median(cython) if numba and cython else None
                # Either way round: neither backend more than 1.5x slower than the other.
                worst = max(ratio, 1 / ratio) if ratio else None
                add(f"numba / cython epoch, {dtype}, {kind} X, {threads} thread(s)", worst, NUMBA_CYTHON_RATIO,
                    f"{ratio:.2f} ({_median(numba) * 1e3:.1f} / {_median(cython) * 1e3:.1f} ms)" if ratio else "",
                    at_most=True, rows=(numba, cython))
    for backend in common.COMPILED_BACKENDS:
        for dtype in common.DTYPES:
            for kind in common.INPUTS:
                plain = _fastest(_rows(records, epoch, backend=backend, dtype=dtype, input=kind, threads=every))
                options = _fastest(_rows(records, "bench_epoch.OptionsEpoch.time_epoch", backend=backend, dtype=dtype,
                                         input=kind, threads=every))
                ratio = _median(options) / _median(plain) if plain and options else None
                add(f"epoch with alpha, momentum and sample_weight / plain epoch, {backend}, {dtype}, {kind} X",
                    ratio, OPTIONS_EPOCH_RATIO,
                    f"{ratio:.2f} ({_median(options) * 1e3:.1f} / {_median(plain) * 1e3:.1f} ms)" if ratio else "",
                    at_most=True, rows=(options, plain))
    for backend in common.COMPILED_BACKENDS:
        probe = _fastest(_rows(records, "bench_kernels.Kernels.time_sgd_step", shape="probe", backend=backend,
                               dtype="float32", threads=every))
        value = probe.get("pct_peak") if probe else None
        add(f"linear-probe sgd_step, {backend}, float32, all threads: % of GEMM peak", value, PROBE_PEAK_FRACTION,
            f"{value:.1f} % ({probe['gflops']:.1f} GFLOP/s, {_median(probe) * 1e6:.0f} µs)" if value else "",
            unit=" %", rows=(probe, *(_peak_rows(records, probe) if probe else ())))
    _solver_targets(records, every, add)
    _dask_targets(records, add, quick)
    _text_targets(records, add, quick)
    rss = _first_row(records, "bench_memory.TrainCommand.track_peak_rss_mb")
    from .bench_memory import RSS_TARGET_MB

    add("peak RSS of python -m softmax_fast.train (default run)", rss["value"] if rss else None, RSS_TARGET_MB,
        f"{rss['value']:.0f} MB" if rss else "", unit=" MB", at_most=True,
        not_graded="quick mode trains on a tiny synthetic data set, not MNIST" if quick and rss else None)
    return out


def _first_row(records, benchmark, **params):
    """The first measured row of ``benchmark`` with ``params``, or None."""
    return next(iter(_rows(records, benchmark, **params)), None)


def _solver_targets(records, every, add):
    """Issue 16's targets (see ``benchmarks.bench_solvers``), through ``targets``' ``add``."""
    sklearn = _first_row(records, "bench_solvers.SklearnMnist.track_seconds")
    for dtype in common.DTYPES:
        ours = _first_row(records, "bench_solvers.MnistLbfgs.time_fit", dtype=dtype)
        ratio = sklearn["value"] / _median(ours) if sklearn and ours else None
        add(f"MNIST alpha 1e-4, {dtype}: scikit-learn LogisticRegression's time / our lbfgs time to its objective",
            ratio, LBFGS_MNIST_SPEEDUP,
            f"{ratio:.1f}× ({sklearn['value']:.2f} s / {_median(ours):.2f} s)" if ratio else "", rows=(ours,))
        gap = _first_row(records, "bench_solvers.MnistLbfgs.track_objective_gap", dtype=dtype)
        add(f"MNIST alpha 1e-4, {dtype}: our objective above scikit-learn's, relative", gap and gap["value"],
            LBFGS_OBJECTIVE_GAP, f"{gap['value']:.2e}" if gap else "", unit="", at_most=True)
    # The pass of the faster compiled backend, as the epoch targets take the best compiled epoch.
    probe = _fastest(_rows(records, "bench_solvers.ProbePass.time_pass"))
    value = probe.get("pct_peak") if probe else None
    add("linear-probe lbfgs objective and gradient, one pass, float32, best compiled backend: % of GEMM peak", value,
        PROBE_PASS_PEAK_FRACTION, f"{value:.1f} % ({probe['params']['backend']}, {probe['gflops']:.1f} GFLOP/s, "
                                  f"{_median(probe) * 1e3:.0f} ms)" if value else "", unit=" %",
        rows=(probe, *(_peak_rows(records, probe) if probe else ())))
    cv = {library: _first_row(records, "bench_solvers.DigitsCV.time_fit", library=library)
          for library in ("softmax_fast", "scikit-learn")}
    ratio = _median(cv["scikit-learn"]) / _median(cv["softmax_fast"]) if all(cv.values()) else None
    add("load_digits, 10 penalties × 5 folds: LogisticRegressionCV's time / SoftmaxRegressionCV's", ratio,
        CV_SPEEDUP, f"{ratio:.1f}× ({_median(cv['scikit-learn']):.2f} s / {_median(cv['softmax_fast']):.3f} s)"
        if ratio else "", rows=tuple(cv.values()))
    scores = {library: _first_row(records, "bench_solvers.DigitsCV.track_best_score", library=library)
              for library in cv}
    margin = scores["softmax_fast"]["value"] - scores["scikit-learn"]["value"] if all(scores.values()) else None
    add("load_digits CV: our best mean accuracy minus LogisticRegressionCV's", margin, -CV_SCORE_MARGIN,
        f"{margin:+.4f} ({scores['softmax_fast']['value']:.4f} vs {scores['scikit-learn']['value']:.4f})"
        if margin is not None else "", unit="")


def _dask_targets(records, add, quick):
    """Issue 17's targets (see ``benchmarks.bench_dask``), through ``targets``' ``add``. The timings are not graded
    in quick mode, whose probe is so small that the fits are the engines' fixed costs."""
    from .bench_dask import ENGINES

    fits = {engine: {figure: _first_row(records, f"bench_dask.ProbeFit.track_{figure}", engine=engine)
                     for figure in ("seconds", "iterations", "evaluations", "objective")} for engine in ENGINES}
    one, two, local = (fits[engine]["seconds"] for engine in ENGINES)
    small = "quick mode's probe is tiny: the fits are the engines' fixed costs" if quick and one else None
    ratio = one["value"] / two["value"] if one and two else None
    add("Dask lbfgs fit of the probe, float32: 1 worker's time / 2 workers'", ratio, DASK_SPEEDUP,
        f"{ratio:.2f}× ({one['value']:.2f} s / {two['value']:.2f} s)" if ratio else "", rows=(one, two),
        not_graded=small)
    ratio = two["value"] / local["value"] if two and local else None
    add("Dask lbfgs fit of the probe, float32: 2 workers' time / the in-process fit's on 2 threads", ratio,
        DASK_OVERHEAD, f"{ratio:.2f} ({two['value']:.2f} s / {local['value']:.2f} s)" if ratio else "",
        at_most=True, rows=(two, local), not_graded=small)
    spread, text = None, ""
    if all(all(figures.values()) for figures in fits.values()):
        objectives = [figures["objective"]["value"] for figures in fits.values()]
        counts = [(figures["iterations"]["value"], figures["evaluations"]["value"]) for figures in fits.values()]
        spread = (max(objectives) - min(objectives)) / abs(min(objectives))
        text = (f"{spread:.1e}; " + ", ".join(f"{engine} {objective:.9g} ({iterations} iterations, {evaluations} "
                                              "evaluations)" for engine, objective, (iterations, evaluations)
                                              in zip(fits, objectives, counts)))
        # Fits that took different paths are no comparison of speed, whatever their objectives.
        spread = spread if len(set(counts)) == 1 else float("inf")
    add("the three probe fits: same iterations and evaluations, objectives' relative spread", spread,
        DASK_OBJECTIVE_SPREAD, text, unit="", at_most=True)


def _text_targets(records, add, quick):
    """Issue 18's targets (see ``benchmarks.bench_text``), through ``targets``' ``add``. In quick mode only the
    objective's is graded: the data is a small synthetic stand-in for 20 Newsgroups."""
    def row(cls, method, **params):
        return _first_row(records, f"bench_text.{cls}.{method}", **params)

    sgd, ours = (row("NewsSgd", "time_fit", library=library) for library in ("scikit-learn", "softmax_fast"))
    theirs, mine = (row("NewsSgd", "track_test_accuracy", library=library)
                    for library in ("scikit-learn", "softmax_fast"))
    stand_in = "quick mode's data is a small synthetic stand-in for 20 Newsgroups" if quick else None
    value = mine["value"] if mine else None
    add("20 Newsgroups: our SGD's test accuracy", value, TEXT_SGD_ACCURACY,
        "" if value is None else f"{value:.4f}" + (f" (SGDClassifier {theirs['value']:.4f})" if theirs else ""),
        unit="", not_graded=stand_in if mine else None)
    ratio = _median(sgd) / _median(ours) if sgd and ours else None
    add("20 Newsgroups: SGDClassifier's fit time / our SGD fit's", ratio, TEXT_SGD_SPEEDUP,
        f"{ratio:.2f}× ({_median(sgd):.2f} s / {_median(ours):.2f} s)" if ratio else "", rows=(sgd, ours),
        not_graded=stand_in if ours else None)
    sklearn, lbfgs = row("NewsLogisticRegression", "track_seconds"), row("NewsLbfgs", "time_fit")
    ratio = sklearn["value"] / _median(lbfgs) if sklearn and lbfgs else None
    add("20 Newsgroups, C=1: LogisticRegression's time / our lbfgs time to its objective", ratio, TEXT_LBFGS_SPEEDUP,
        f"{ratio:.1f}× ({sklearn['value']:.2f} s / {_median(lbfgs):.2f} s)" if ratio else "", rows=(sklearn, lbfgs),
        not_graded=stand_in if lbfgs else None)
    gap = row("NewsLbfgs", "track_objective_gap")
    add("20 Newsgroups, C=1: our lbfgs objective above LogisticRegression's, relative", gap and gap["value"],
        LBFGS_OBJECTIVE_GAP, f"{gap['value']:.2e}" if gap else "", unit="", at_most=True)


# -- Markdown ---------------------------------------------------------------------------------------

def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _time(seconds, unit):
    scale = {"s": 1, "ms": 1e3, "µs": 1e6}[unit]
    value = seconds * scale
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _mark(r):
    return f" {CONTENDED_MARK}" if _contended(r) else ""


def _median_cell(r, unit):
    return _time(_median(r), unit) + _mark(r)


def _spread(r, unit):
    s = r["stats"]
    return f"{_time(s['min'], unit)}–{_time(s['max'], unit)}"


def _fmt(value, spec, empty="—"):
    return empty if value is None else format(value, spec)


def _not_ok(r, columns):
    reason = (r.get("reason") or "").strip().splitlines()
    text = f"{r['status']}: {reason[-1] if reason else ''}"
    return [text] + [""] * (columns - 1)


def _limits_table(records):
    rows = []
    for r in records:
        p, info = r["params"], r["info"]
        head = [info.get("label", r["method"]), info.get("dtype", ""), p.get("threads", "")]
        if not _ok(r):
            rows.append(head + _not_ok(r, 3))
            continue
        rate = (f"{r['gflops']:.1f} GFLOP/s" if "gflops" in r else f"{r['gbytes_per_s']:.2f} GB/s")
        rows.append(head + [_median_cell(r, "ms"), _spread(r, "ms"), rate])
    return _table(["measurement", "dtype", "threads", "median ms", "spread ms (min–max)", "rate"], rows)


def _epoch_rows(records):
    rows = []
    for r in records:
        info = r["info"]
        head = [info.get("label", r["benchmark"]), info.get("dtype", ""), info.get("input", ""),
                info.get("threads", "")]
        if not _ok(r):
            rows.append(head + _not_ok(r, 5))
            continue
        speedup = r.get("speedup_vs_seed")
        rows.append(head + [_median_cell(r, "ms"), _spread(r, "ms"), _fmt(r.get("gflops"), ".2f"),
                            _fmt(r.get("pct_peak"), ".1f"),
                            _fmt(speedup, ".2f") + (" (seed)" if info.get("seed") else "")])
    return _table(["implementation", "dtype", "input", "threads", "median ms", "spread ms (min–max)", "GFLOP/s",
                   "% of GEMM peak", "× seed"], rows)


def _kernel_rows(records):
    order = {name: i for i, name in enumerate(common.KERNEL_FLOPS)}
    ordered = sorted(records, key=lambda r: (list(common.KERNEL_SHAPES).index(r["params"]["shape"]),
                                             order.get(r["info"].get("kernel"), 99), r["params"]["dtype"],
                                             r["params"]["threads"], common.BACKENDS.index(r["params"]["backend"])))
    rows = []
    for r in ordered:
        p, info = r["params"], r["info"]
        head = [info.get("kernel", r["method"]), f"{p['shape']} {info.get('nxdxk', '')}", p["backend"], p["dtype"],
                p["threads"]]
        if not _ok(r):
            rows.append(head + _not_ok(r, 4))
            continue
        rows.append(head + [_median_cell(r, "µs"), _spread(r, "µs"), _fmt(r.get("gflops"), ".2f"),
                            _fmt(r.get("pct_peak"), ".1f")])
    return _table(["kernel", "shape n×d×k", "backend", "dtype", "threads", "median µs", "spread µs (min–max)",
                   "GFLOP/s", "% of GEMM peak"], rows)


def _compile_rows(records):
    by_params = {}
    for r in records:
        by_params.setdefault(tuple(r["param_values"]), {})[r["method"]] = r
    rows = []
    for methods in by_params.values():
        first = next(iter(methods.values()))
        cells = []
        for name in ("track_compile_seconds", "track_load_seconds", "track_run_seconds"):
            r = methods.get(name)
            cells.append("—" if r is None else (f"{r['value']:.3f}{_mark(r)}" if _ok(r) else _not_ok(r, 1)[0]))
        rows.append([first["info"].get("label", first["benchmark"])] + cells)
    return _table(["signature", "compile s (1st call, empty cache)", "load s (1st call, cache filled)",
                   "run s (2nd call, 512 rows)"], rows)


def _memory_rows(records):
    from .bench_memory import RSS_TARGET_MB

    rows = []
    train = {r["method"]: r for r in records if r["class"] == "TrainCommand"}
    rss = train.get("track_peak_rss_mb")
    if rss is not None:
        label = rss["info"].get("label", rss["benchmark"])
        if _ok(rss):
            accuracy, seconds = train.get("track_test_accuracy"), train.get("track_train_seconds")
            note = (f"test accuracy {accuracy['value']:.4f}, trained in {seconds['value']:.2f} s{_mark(seconds)}"
                    if accuracy and seconds and _ok(accuracy) and _ok(seconds) else "")
            rows.append([label, f"{rss['value']:.1f}", f"≤ {RSS_TARGET_MB}",
                         _verdict(rss["value"], RSS_TARGET_MB, at_most=True), note])
        else:
            rows.append([label] + _not_ok(rss, 4))
    for r in records:
        if r["kind"] != "peakmem":
            continue
        label = r["info"].get("label", r["benchmark"])
        if _ok(r):
            before = r.get("peak_before_method")
            rows.append([label, f"{r['value'] / 1e6:.1f}", "", "",
                         f"peak before the fit {before / 1e6:.1f} MB" if before else ""])
        else:
            rows.append([label] + _not_ok(r, 4))
    return _table(["process", "peak RSS MB", "target MB", "result", "note"], rows)


def _disk_table(records):
    """The shuffled epoch from memory and from a memory-mapped file, and the second's time over the first's."""
    rows, by_source = [], {}
    for r in records:
        label = r["info"].get("label", r["benchmark"])
        if not _ok(r):
            rows.append([label] + _not_ok(r, 3))
            continue
        by_source[r["params"]["source"]] = r
        rows.append([label, _median_cell(r, "ms"), _spread(r, "ms"), ""])
    if len(by_source) == 2:
        rows[-1][-1] = f"{_median(by_source['memmap']) / _median(by_source['memory']):.2f}× the in-memory fit"
    return _table(["fit", "median ms", "spread ms (min–max)", "note"], rows)


def _solver_table(records):
    rows = []
    for r in records:
        head = [r["info"].get("label", r["benchmark"]), r["method"].removeprefix("time_").removeprefix("track_")]
        if not _ok(r):
            rows.append(head + _not_ok(r, 2))
        elif r["kind"] == "time":
            rate = f", {r['gflops']:.1f} GFLOP/s, {r['pct_peak']:.1f} % of GEMM peak" if r.get("pct_peak") else ""
            rows.append(head + [f"{_median_cell(r, 's')} s", f"median of {r['stats']['n']}, spread "
                                                             f"{_spread(r, 's')} s{rate}"])
        else:
            value = r["value"]
            text = f"{value:.3e}" if r["unit"] in ("relative", "objective") else (
                f"{value:.4f}" if isinstance(value, float) and r["unit"] != "seconds" else f"{value:.4g}")
            rows.append(head + [text, r["unit"]])
    return _table(["run", "figure", "value", "unit / note"], rows)


def _dask_table(records):
    """One row a fit (engine): its seconds, iterations, evaluations and objective."""
    by_engine = {}
    for r in records:
        by_engine.setdefault(r["params"]["engine"], {})[r["method"].removeprefix("track_")] = r
    rows = []
    for figures in by_engine.values():
        seconds = figures["seconds"]
        label = seconds["info"].get("label", seconds["benchmark"])
        if not _ok(seconds):
            rows.append([label] + _not_ok(seconds, 4))
            continue
        rows.append([label, f"{seconds['value']:.2f}{_mark(seconds)}",
                     *(figures[name]["value"] for name in ("iterations", "evaluations")),
                     f"{figures['objective']['value']:.9g}"])
    return _table(["fit", "seconds", "iterations", "evaluations", "objective"], rows)


def _text_table(records):
    """One row a run (class and parameters): its seconds, test accuracy and what else it tracks."""
    by_run = {}
    for r in records:
        figures = by_run.setdefault((r["class"], tuple(r["param_values"])), {})
        figures[r["method"].removeprefix("time_").removeprefix("track_")] = r
    rows = []
    for figures in by_run.values():
        main = figures.get("fit") or figures.get("seconds") or figures.get("loss_and_grad")
        first = main or next(iter(figures.values()))
        label = first["info"].get("label", first["benchmark"])
        if not _ok(first):
            rows.append([label] + _not_ok(first, 3))
            continue
        if main is None:  # --select left its time out
            seconds, notes = "—", []
        elif main["kind"] == "time":
            seconds = _median_cell(main, "s")
            notes = [f"median of {main['stats']['n']}, spread {_spread(main, 's')} s"]
        else:
            seconds, notes = f"{main['value']:.3g}{_mark(main)}", ["one fit"]
        if main and main.get("gflops"):
            notes.append(f"{main['gflops']:.2f} GFLOP/s" + (f", {main['pct_peak']:.1f} % of GEMM peak"
                                                            if main.get("pct_peak") else ""))
        for name, text in (("iterations", "{} iterations"), ("objective", "objective {:.9g}"),
                           ("objective_gap", "objective {:+.2e} relative to LogisticRegression's")):
            if name in figures and _ok(figures[name]):
                notes.append(text.format(figures[name]["value"]))
        accuracy = figures.get("test_accuracy")
        rows.append([label, seconds, f"{accuracy['value']:.4f}" if accuracy and _ok(accuracy) else "—",
                     "; ".join(notes)])
    return _table(["run", "seconds", "test accuracy", "note"], rows)


def _machine_lines(machine, settings, records):
    versions = machine["versions"]
    lines = [
        f"- CPU: {machine['cpu_model']}, {machine['cpus_usable']} of {machine['cpus']} CPUs usable"
        + (f", {machine['memory_bytes'] / 2**30:.0f} GiB" if machine["memory_bytes"] else ""),
        f"- Python {machine['python']}; "
        + ", ".join(f"{name} {versions[name]}" for name in PACKAGES if versions.get(name)),
    ]
    blas = machine["threadpoolctl"]
    if blas is None:
        lines.append("- BLAS: threadpoolctl is not installed; BLAS unknown, 1-thread BLAS rows skipped")
    else:
        for lib in sorted(blas, key=lambda lib: lib.get("user_api") != "blas"):
            where = os.path.join(*Path(lib.get("filepath", "?")).parts[-2:])
            if lib.get("user_api") == "blas":
                lines.append(f"- BLAS (threadpoolctl): {lib.get('internal_api')} {lib.get('version')}, kernel "
                             f"{lib.get('architecture')}, {lib.get('threading_layer')}, {lib.get('num_threads')} "
                             f"threads: {where}")
            else:
                lines.append(f"- {lib.get('user_api')} (threadpoolctl): {lib.get('internal_api')}, "
                             f"{lib.get('num_threads')} threads: {where}")
    env = machine["openblas_environment"]
    lines.append("- " + ("; ".join(f"{k}={v} is SET (it chooses OpenBLAS's kernel / cache size)"
                                   for k, v in env.items())
                         if env else "OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE: not set (OpenBLAS detects the CPU)"))
    backends = ", ".join(f"{name} {'ok' if reason is None else 'unavailable'}"
                         for name, reason in machine["backend_status"].items())
    lines.append(f"- Numba threading layer: {machine['numba_threading_layer']}; backends: {backends}")
    git = machine.get("git")
    if git:
        lines.append(f"- Commit {git['commit'][:12] if git['commit'] else '?'}"
                     + (f", with {len(git['softmax_fast_changes'])} uncommitted change(s) under softmax_fast/"
                        if git["softmax_fast_changes"] else ""))
    load = machine["load_average_before"]
    if load:
        lines.append(f"- Load average (1 min, this run included) before {load[0]:.2f}, "
                     f"after {machine['load_average_after'][0]:.2f}")
    timed = [r for r in records if r["status"] == "ok" and r["kind"] != "peakmem"]
    contended = [r for r in timed if _contended(r)]
    before = machine.get("other_cpus_before_run")
    lines.append(f"- Other processes kept {_fmt(before, '.2f', '?')} CPUs busy in the second before the run. "
                 f"{CONTENDED_MARK} marks a row during which they kept ≥ {CONTENDED_CPUS} CPUs busy on average "
                 f"(/proc/stat minus this process, over the row or the last second): {len(contended)} of "
                 f"{len(timed)} timed rows. All-thread "
                 "rows need every CPU: one busy CPU stalls them at each barrier.")
    lines.append(f"- Data: {settings['dataset']}; {settings['repeat']} timed repeats after 1 warm-up call "
                 f"(fast calls repeated within a sample to ~{settings['sample_time'] * 1e3:g} ms); "
                 "median and spread (min–max) per call")
    return lines


def markdown(report):
    """The whole comparison as Markdown."""
    sections, peaks, settings = report["sections"], report["peaks"], report["settings"]
    quick = " (QUICK MODE: synthetic, small sizes; not comparable)" if settings["quick"] else ""
    out = [f"# softmax_fast benchmarks{quick}", "", *_machine_lines(report["machine"], settings, report["records"]), ""]

    out += ["## Machine limits", "", _limits_table(sections["limits"]), ""]
    if peaks:
        out.append("GEMM peak (best median over the sizes), the 100 % of every \"% of GEMM peak\": "
                   + "; ".join(f"{dtype} {threads} thread(s) {value:.1f} GFLOP/s"
                               for (dtype, threads), value in sorted(peaks.items())))
        out.append("")

    n = settings["epoch_rows"]
    out += [f"## One epoch ({n} rows, batches of {common.BATCH_SIZE}, lr {common.LR})", "",
            _epoch_rows(sections["epochs"]), ""]
    out.append(f"FLOP per epoch: {settings['epoch_flop_formula']}"
               + (f" (this run: {common.epoch_flops(n) / 1e9:.3f} GFLOP)" if settings["quick"] else "")
               + ". × seed: the seed loop (float64, all threads) median / the row's median.")
    limits = [f"{dtype}, {threads} thread(s): {common.epoch_flops(n) / (value * 1e9) * 1e3:.2f} ms"
              for (dtype, threads), value in sorted(peaks.items())]
    if limits:
        out.append("Arithmetic limit (epoch FLOP / GEMM peak): " + "; ".join(limits) + ".")
    out.append("")

    out += ["## Kernels alone", "", _kernel_rows(sections["kernels"]), ""]
    out.append("FLOP per call: " + "; ".join(f"{name} {formula}"
                                              for name, (formula, _) in common.KERNEL_FLOPS.items()) + ".")
    out.append("")

    out += ["## Peers", "", _epoch_rows(sections["peers"]), "",
            "LogisticRegression is a time per fit (max_iter iterations of lbfgs, each at least one full-batch "
            "gradient), not per epoch: no GFLOP/s or × seed.", ""]
    out += ["## Numba compile and cache load (fresh processes)", "", _compile_rows(sections["compile"]), ""]
    out += ["## Peak memory (child processes; MB = 10⁶ bytes)", "", _memory_rows(sections["memory"]), ""]
    out += ["## Data on disk (issue 17)", "", _disk_table(sections["disk"]), ""]

    out += ["## Full-batch training against scikit-learn (issue 16)", "", _solver_table(sections["solvers"]), "",
            "Our lbfgs fits run until their objective is at most scikit-learn's times (1 + 1e-6); every objective "
            "is evaluated afterwards in float64 by the reference kernels. scikit-learn fits run once each (one "
            "time, no median); so do both probe fits.", ""]
    out += ["## Dask cluster (issue 17)", "", _dask_table(sections["dask"]), "",
            "One fit each: a single time, not a median. ⚠ here counts the CPUs other processes kept busy during the "
            "fit, the cluster's worker processes (this benchmark's own) left out.", ""]
    data = next((r["info"]["data"] for r in sections["text"] if r["info"].get("data")), None)
    out += ["## Text: 20 Newsgroups TF-IDF (issue 18)", "", _text_table(sections["text"]), "",
            (f"Data: {data}. " if data else "")
            + "Fits on the training documents as loaded, accuracy on the test ones; a median is over fits after a "
            "warm-up one. Our lbfgs runs until its objective is at most LogisticRegression's times (1 + 1e-6), both "
            "evaluated in float64 by the reference kernels. The CSR pass counts 4·nnz·k FLOP (forward X@W and "
            "backward X.T@G).", ""]

    rows = [[t["target"], t["measured"], t["goal_text"], t["result"].upper() if t["result"] == "miss"
             else t["result"]] for t in report["targets"]]
    tally = {k: sum(t["result"] == k for t in report["targets"]) for k in ("pass", "miss", "n/a")}
    out += ["## Targets of the issues (ratios measured in this run)", "",
            _table(["target", "measured", "goal", "result"], rows), "",
            "numba / cython: the ratio of the two medians; it passes when neither backend is more than "
            f"{NUMBA_CYTHON_RATIO:g}× slower than the other. "
            f"{tally['pass']} pass, {tally['miss']} miss, {tally['n/a']} not graded (n/a: not measured, or measured "
            "while other processes were busy, or in quick mode where its small synthetic data says nothing of the "
            "target: peak memory, the Dask timings, 20 Newsgroups).", ""]

    bad = [r for r in report["records"] if r["status"] != "ok"]
    if bad:
        out.append("Not measured:")
        seen = set()
        for r in bad:
            reason = (r.get("reason") or "").strip().splitlines()
            line = f"- {r['benchmark']} {r['params']}: {r['status']}: {reason[-1] if reason else ''}"
            if line not in seen:
                seen.add(line)
                out.append(line)
        out.append("")
    return "\n".join(out)


# -- JSON and chart ---------------------------------------------------------------------------------

def build(records, machine, settings):
    """The report: every record (with derived figures) by table, the peaks, targets, machine and settings."""
    peaks = derive(records)
    sections = {name: [] for name in TABLE_ORDER}
    for r in records:
        sections.setdefault(r["table"], []).append(r)
    return {"machine": machine, "settings": settings, "peaks": peaks, "sections": sections,
            "targets": targets(records, quick=settings["quick"]), "records": records}


def to_json(report):
    """JSON text: ``machine``, ``settings``, ``gemm_peaks_gflops``, one list per table, ``targets``."""
    document = {
        "machine": report["machine"],
        "settings": report["settings"],
        "gemm_peaks_gflops": [{"dtype": d, "threads": t, "gflops": v} for (d, t), v in sorted(report["peaks"].items())],
        **report["sections"],
        "targets": report["targets"],
    }
    return json.dumps(document, indent=1, default=str)


def chart(report, path):
    """A horizontal bar chart of ms per epoch for every epoch row (log scale), seed loop and limits marked.

    Returns whether it was written: a run without epoch rows (``--select``) has nothing to draw.
    """
    rows = [r for name in ("epochs", "peers") for r in report["sections"][name]
            if _ok(r) and r["kind"] == "time" and r["info"].get("epoch")]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, medians, low, high, colors = [], [], [], [], []
    palette = {"seed": "tab:gray", "numpy": "tab:blue", "numba": "tab:orange", "cython": "tab:green",
               "peer": "tab:purple"}
    for r in rows:
        info = r["info"]
        labels.append(f"{info['label']} · {info['dtype']} · {info.get('input', '')} · {info['threads']} thr")
        m = _median(r) * 1e3
        medians.append(m)
        low.append(m - r["stats"]["min"] * 1e3)
        high.append(r["stats"]["max"] * 1e3 - m)
        family = ("seed" if r["class"] == "SeedLoop" else r["params"].get("backend", "peer")
                  if r["class"] in ("BackendEpoch", "OptionsEpoch") else "peer")
        colors.append(palette[family])
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.28 * max(len(rows), 1)))
    positions = range(len(rows))
    axes.barh(positions, medians, xerr=[low, high], color=colors, capsize=2)
    axes.set_yticks(list(positions), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("ms per epoch (median; bars: min–max)")
    seed = _seed(report["records"])
    if seed is not None:
        axes.axvline(_median(seed) * 1e3, color="tab:red", linestyle="--", label="seed loop")
    flops = common.epoch_flops(report["settings"]["epoch_rows"])
    styles = {"float32": ":", "float64": "-."}
    for (dtype, threads), peak in sorted(report["peaks"].items()):
        if threads == common.ALL_THREADS:
            axes.axvline(flops / (peak * 1e9) * 1e3, color="black", linestyle=styles.get(dtype, ":"),
                         label=f"{flops / 1e9:.2g} GFLOP / {dtype} GEMM peak ({threads} thr)")
    axes.legend(fontsize=7, loc="upper right")
    machine = report["machine"]
    axes.set_title(f"softmax_fast: one epoch on {report['settings']['dataset']}\n{machine['cpu_model']}, "
                   f"{machine['cpus_usable']} CPUs", fontsize=9)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True
