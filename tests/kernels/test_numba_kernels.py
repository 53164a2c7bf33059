"""The Numba kernels: called from a user's own @njit code, and their on-disk cache (a second process loads
instead of compiling, even from a read-only install, and recompiles after an edit to any module of the
package)."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import softmax_fast
from problems import assert_close, make_problem
from softmax_fast.kernels import numba_kernels

PACKAGE_DIR = Path(softmax_fast.__file__).resolve().parent
NUMBA_KERNELS = Path("softmax_fast", "kernels", "numba_kernels")


@numba.njit
def user_training_loop(X, y, W, b, lr, batch_size, scale, epochs):
    """A user's own jitted loop: SGD steps on batches in reverse order, the learning rate halved each epoch."""
    losses = np.empty(epochs)
    for epoch in range(epochs):
        total = 0.0
        for start in range(X.shape[0] - batch_size, -batch_size, -batch_size):
            rows = slice(max(start, 0), start + batch_size)
            loss, _ = numba_kernels.sgd_step(X[rows], y[rows], W, b, lr / 2**epoch, scale)
            total += loss
        losses[epoch] = total
    return losses


def test_kernels_called_from_a_user_njit_function_match_the_reference(reference, dtype, input_kind):
    X, y, W, b, scale = make_problem(250, 30, 4, dtype, input_kind)
    W_reference, b_reference = W.copy(), b.copy()
    cast = np.dtype(dtype).type
    losses = user_training_loop(X, y, W, b, cast(0.5), 64, cast(scale), 3)
    for epoch in range(3):
        total = 0.0
        for start in range(250 - 64, -64, -64):
            rows = slice(max(start, 0), start + 64)
            loss, _ = reference.sgd_step(X[rows], y[rows], W_reference, b_reference, 0.5 / 2**epoch, scale)
            total += loss
        assert_close(losses[epoch], total, dtype)
    assert_close(W, W_reference, dtype)
    assert_close(b, b_reference, dtype)


def test_a_new_process_calls_the_cached_kernels_from_njit_code():
    # Without Numba's threads started on import the kernels, loaded from the
    # cache, abort such a process (numba/numba#9938).
    code = textwrap.dedent(
        """
        import numba
        import numpy as np
        from softmax_fast.kernels.numba_kernels import train_epoch

        @numba.njit
        def two_epochs(X, y, W, b):
            for _ in range(2):
                loss, _ = train_epoch(X, y, W, b, np.float32(0.1), 4, np.float32(1))
            return loss

        print(two_epochs(np.ones((10, 3), np.float32), np.zeros(10, np.intp), np.zeros((3, 2), np.float32),
                         np.zeros(2, np.float32)))
        """
    )
    for _ in range(2):  # the first run may compile; the second loads every kernel from the cache
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert float(result.stdout) < np.log(2)


def report_cache(kernel, call):
    """A snippet for a new process: it runs ``call`` (code) with the package in ``sys.argv[1]`` and prints how
    many of ``kernel``'s specialisations were loaded from the cache and how many were compiled."""
    return textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import softmax_fast.kernels as kernels
        from softmax_fast.kernels import numba_kernels
        assert numba_kernels.__file__.startswith(sys.argv[1]), numba_kernels.__file__
        {call}
        stats = numba_kernels.{kernel}.stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
        """
    )


# softmax: one kernel, a quick compile (a cold train_epoch took 20 s a process), that inlines helpers of _rows,
# _exp and _vectors.
SOFTMAX_AND_REPORT_CACHE = report_cache("softmax", "numba_kernels.softmax(np.zeros((3, 4)), np.zeros((3, 4)))")


def copy_package(tmp_path):
    """A copy of the installed package (with its built extension) in ``tmp_path/site``, without caches."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE_DIR, site / "softmax_fast", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_new_processes(site, env, read_only, runs=2):
    """Run ``SOFTMAX_AND_REPORT_CACHE`` ``runs`` times in new processes, the package
    dir mounted read-only if asked; returns each run's ``(cache hits, cache misses)``."""
    command = [sys.executable, "-c", SOFTMAX_AND_REPORT_CACHE, str(site)]
    if read_only:
        command = read_only_command(site / "softmax_fast", command)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"PYTHONPATH": str(site)} | env
    reports = []
    for _ in range(runs):
        # cwd: python -c imports from the working directory first, which may be a source checkout.
        result = subprocess.run(command, env=env, cwd=site, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        reports.append(tuple(int(n) for n in result.stdout.split()))
    return reports


def read_only_command(directory, command):
    """``command`` run with ``directory`` read-only: a read-only bind mount as root, file modes otherwise."""
    if os.geteuid() != 0:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return command
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"root without mount namespaces cannot make a directory read-only: {probe.stderr!r}")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(directory), *command]


@pytest.mark.slow
def test_second_process_loads_from_a_user_cache_when_the_package_is_read_only(tmp_path):
    site = copy_package(tmp_path)
    cache_home = tmp_path / "cache-home"
    first, second = run_new_processes(site, {"XDG_CACHE_HOME": str(cache_home), "HOME": str(tmp_path)}, read_only=True)
    assert first[1] >= 1 and second == (first[1], 0)
    assert not (site / NUMBA_KERNELS / "__pycache__").exists()
    assert list(cache_home.rglob("*softmax*.nbi"))


@pytest.mark.slow
def test_numba_cache_dir_wins(tmp_path):
    site = copy_package(tmp_path)
    cache_dir = tmp_path / "numba-cache"
    first, second = run_new_processes(site, {"NUMBA_CACHE_DIR": str(cache_dir)}, read_only=False)
    assert first[1] >= 1 and second == (first[1], 0)
    assert list(cache_dir.rglob("*softmax*.nbi"))
    assert not list((site / "softmax_fast").rglob("*.nbi"))


@pytest.mark.slow
def test_an_edit_to_a_helper_module_recompiles_the_kernels_in_the_next_process(tmp_path):
    # Numba's own stamp hashes only the file of the cached kernel (_public.py): after an edit to _exp.py,
    # whose vector exp softmax inlines, it would load the old machine code.
    site = copy_package(tmp_path)
    first, second = run_new_processes(site, {}, read_only=False)
    assert first[1] >= 1 and second == (first[1], 0)
    with open(site / NUMBA_KERNELS / "_exp.py", "a") as module:
        module.write("# an edit that changes no code\n")
    (edited,) = run_new_processes(site, {}, read_only=False, runs=1)
    assert edited[1] >= 1
    assert list((site / NUMBA_KERNELS / "__pycache__").glob("*softmax*.nbi"))
