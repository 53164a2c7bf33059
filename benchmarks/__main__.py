"""``python -m benchmarks [--quick] [--out DIR] [--select REGEX]``: the whole suite once, side by side.

Runs every asv-style benchmark class of this package in one process on the same
data (``benchmarks._runner``), then prints the comparison asv does not
(``benchmarks._report``): Markdown tables of the machine's limits, the epochs,
the kernels, the peers, Numba's compile time and peak memory, with GFLOP/s,
% of the measured GEMM peak, speed-up over the seed loop and the issue's
targets. Writes ``results.json`` (every timing and the machine) and
``epochs.png`` to ``--out`` (default ``benchmarks/results/``). Progress goes to
stderr. Exit status 1 if a benchmark failed (skipped ones are fine).

``--quick``: small synthetic sizes, 2 repeats, no real MNIST: seconds, for CI.
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small synthetic sizes, 2 repeats, no real MNIST (seconds; what CI runs)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--select", metavar="REGEX",
                        help="run only the benchmarks whose id (module.Class.method) matches (re.search)")
    parser.add_argument("--child-peakmem", help=argparse.SUPPRESS)
    parser.add_argument("--child-params", default="[]", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        # Read by benchmarks.common at import, so set before any benchmark module is loaded.
        os.environ["SOFTMAX_FAST_BENCH_QUICK"] = "1"
    from . import _report, _runner, common

    if args.child_peakmem:
        return _runner.child_peakmem(args.child_peakmem, args.child_params)

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    classes = _runner.discover()
    pattern = re.compile(args.select) if args.select else None
    records, other_cpus_before = _runner.run(classes, progress,
                                             selected=lambda i: pattern is None or bool(pattern.search(i)))
    settings = {
        "quick": common.QUICK,
        "repeat": common.REPEAT,
        "warmup_calls": 1,
        "sample_time": common.SAMPLE_TIME,
        "dataset": common.dataset_description(),
        "epoch_rows": common.epoch_rows(),
        "epoch_flop_formula": common.EPOCH_FLOP_FORMULA,
        "kernel_flop_formulas": {name: formula for name, (formula, _) in common.KERNEL_FLOPS.items()},
        "kernel_shapes": common.KERNEL_SHAPES,
        "gemm_sizes": common.GEMM_SIZES,
        "read_bytes": common.READ_BYTES,
        "threads": common.THREADS,
        "select": args.select,
        "seconds": None,
    }
    machine = _report.machine_description(load_before)
    machine["other_cpus_before_run"] = other_cpus_before
    report = _report.build(records, machine, settings)
    settings["seconds"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(_report.to_json(report))
    chart_path = args.out / "epochs.png"
    # An older run's chart beside this run's tables would pass for this run's.
    chart_path.unlink(missing_ok=True)
    charted = _report.chart(report, chart_path)
    text = _report.markdown(report)
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    written = "results.json, results.md, epochs.png" if charted else "results.json, results.md (no epoch rows to chart)"
    print(f"Ran in {settings['seconds']:.0f} s; wrote {written} to {args.out}")

    errors = [r for r in records if r["status"] == "error"]
    for r in errors:
        progress(f"ERROR in {r['benchmark']} {r['params']}:\n{r['reason']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
