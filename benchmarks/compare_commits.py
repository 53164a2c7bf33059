"""``python -m benchmarks.compare_commits OLD [NEW]``: did a change keep every bit and the speed?

For a change that should alter neither results nor speed (a refactoring, a move of code), this checks both
against the commit before it, in one run on this machine:

1. **Bits.** The seed experiment (real MNIST, ``SoftmaxRegression``'s defaults: W from seed 42, lr 0.2,
   10 epochs, batches of 128, in order) trained by each tree for every backend, dtype and input kind (uint8
   pixels, and float pixels pre-scaled to [0, 1]): final ``coef_``, ``intercept_`` and the per-epoch losses
   and accuracies must be bitwise equal.
2. **Speed.** The MNIST epoch rows of ``python -m benchmarks`` (every compiled backend, dtype, input kind,
   1 thread and all), timed in rounds that alternate between the two trees, each round a fresh process per
   tree: the medians over all rounds side by side, and their ratio. Run it on an idle machine.

``OLD`` and ``NEW`` are git revisions of this repository (``NEW`` defaults to the working tree as it is,
uncommitted changes included). Each revision is checked out into a worktree under ``--work`` and its
extension built in place with this interpreter; a worktree that exists is reused (and rebuilt only if its
sources changed). The first run of each tree compiles the Numba kernels (minutes); later runs load them.
Prints Markdown; writes ``compare.json`` to ``--out``. Exit status 1 if a bit differs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "_compare_child.py"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_commits",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the revision before the change (e.g. main~3, a commit)")
    parser.add_argument("new", nargs="?", help="the revision after it (default: the working tree as it is)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds, alternating the trees (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per row and round (default 3)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/softmax_fast-compare"),
                        help="where the worktrees are made (default /tmp/softmax_fast-compare)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="directory of compare.json (default benchmarks/results)")
    parser.add_argument("--skip-bits", action="store_true", help="time only")
    parser.add_argument("--skip-speed", action="store_true", help="compare the bits only")
    return parser.parse_args(argv)


def progress(line):
    print(line, file=sys.stderr, flush=True)


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def tree_of(revision, work):
    """A directory holding ``revision`` (``None``: this working tree) with its extension built in place."""
    if revision is None:
        tree = ROOT
    else:
        commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
        tree = work / commit[:12]
        if not tree.exists():
            work.mkdir(parents=True, exist_ok=True)
            git("worktree", "add", "--detach", str(tree), commit)
    progress(f"building the extension in {tree}")
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, check=True,
                   capture_output=True)
    return tree


def run_child(tree, *args):
    """Run ``_compare_child.py`` with ``tree``'s softmax_fast; returns its JSON answer."""
    env = os.environ | {"PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(CHILD), *args], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{CHILD.name} {' '.join(args)} failed in {tree}:\n{done.stderr[-5000:]}")
    return json.loads(done.stdout)


def compare_bits(trees, out):
    """``[(case, equal, detail)]`` of the seed experiment's weights and history in both trees."""
    import numpy as np

    files = []
    for name, tree in trees.items():
        path = out / f"seed-weights-{name}.npz"
        progress(f"training the seed experiment in every case with the {name} tree")
        run_child(tree, "weights", str(path))
        files.append(np.load(path))
    old, new = files
    rows = []
    for case in sorted({name.rsplit("/", 1)[0] for name in old.files}):
        names = [name for name in old.files if name.startswith(case + "/")]
        differing = [name.rsplit("/", 1)[1] for name in names
                     if name not in new.files or not np.array_equal(old[name], new[name])]
        largest = max((float(np.max(np.abs(old[name] - new[name]))) for name in names
                       if name in new.files and old[name].shape == new[name].shape), default=0.0)
        rows.append((case, not differing, "bitwise equal" if not differing
                     else f"differ: {', '.join(differing)} (largest difference {largest:.3g})"))
    return rows


def compare_speed(trees, rounds, repeat):
    """``{row: {tree name: [seconds per epoch, every sample of every round]}}``, the rounds interleaved."""
    samples = {}
    for name, tree in trees.items():
        progress(f"warming up the {name} tree (its first run may compile the Numba kernels)")
        run_child(tree, "epochs", "1")
    for number in range(rounds):
        # Alternate which tree goes first, so that neither always runs right after the other.
        for name, tree in (trees.items() if number % 2 == 0 else reversed(trees.items())):
            progress(f"round {number + 1}/{rounds}: {name}")
            for row, seconds in run_child(tree, "epochs", str(repeat)).items():
                samples.setdefault(row, {}).setdefault(name, []).extend(seconds)
    return samples


def markdown(bits, speed, names, load):
    lines = [f"# {names['old']} against {names['new']}", ""]
    if bits is not None:
        lines += ["## The seed experiment's weights and history (10 epochs of MNIST)", "",
                  "| backend / dtype / input | result |", "|---|---|"]
        lines += [f"| {case} | {detail} |" for case, _, detail in bits]
        lines += ["", f"{sum(equal for _, equal, _ in bits)} of {len(bits)} cases bitwise equal.", ""]
    if speed is not None:
        lines += ["## One MNIST epoch, ms (median of every sample of every round; rounds alternate the trees)", "",
                  "| backend | dtype | input | threads | old | new | new / old | old spread | new spread |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row, by_tree in speed.items():
            old, new = by_tree["old"], by_tree["new"]
            old_ms, new_ms = statistics.median(old) * 1e3, statistics.median(new) * 1e3
            lines.append(f"| {row.replace('/', ' | ')} | {old_ms:.1f} | {new_ms:.1f} | {new_ms / old_ms:.3f} | "
                         f"{min(old) * 1e3:.1f}–{max(old) * 1e3:.1f} | {min(new) * 1e3:.1f}–{max(new) * 1e3:.1f} |")
        lines += ["", f"Load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    names = {"old": args.old, "new": args.new or "the working tree"}
    trees = {"old": tree_of(args.old, args.work), "new": tree_of(args.new, args.work)}
    args.out.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()[0]
    bits = None if args.skip_bits else compare_bits(trees, args.out)
    speed = None if args.skip_speed else compare_speed(trees, args.rounds, args.repeat)
    report = markdown(bits, speed, names, (before, os.getloadavg()[0]))
    print(report)
    (args.out / "compare.json").write_text(json.dumps(
        {"revisions": names, "trees": {name: str(tree) for name, tree in trees.items()}, "bits": bits,
         "speed": speed}, indent=1))
    return 1 if bits is not None and not all(equal for _, equal, _ in bits) else 0


if __name__ == "__main__":
    sys.exit(main())
