"""The Numba kernels' on-disk cache: a second process loads instead of compiling, even from a read-only install."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import softmax_fast

PACKAGE_DIR = Path(softmax_fast.__file__).resolve().parent

# Trains one epoch with the Numba backend and prints how many of train_epoch's
# specialisations were loaded from the cache and how many were compiled.
TRAIN_AND_REPORT_CACHE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import softmax_fast.kernels as kernels
    from softmax_fast.kernels import numba_kernels
    assert numba_kernels.__file__.startswith(sys.argv[1]), numba_kernels.__file__
    X = np.zeros((10, 4), dtype=np.uint8)
    W = np.zeros((4, 3), dtype=np.float32)
    kernels.get_backend("numba").train_epoch(X, np.zeros(10, dtype=int), W, np.zeros(3, np.float32), 0.1, 4)
    stats = numba_kernels.train_epoch.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    """
)


def copy_package(tmp_path):
    """A copy of the installed package (with its built extension) in ``tmp_path/site``, without caches."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE_DIR, site / "softmax_fast", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_twice(site, env, read_only):
    """Run the training snippet twice, the package dir mounted read-only if asked; returns both reports."""
    command = [sys.executable, "-c", TRAIN_AND_REPORT_CACHE, str(site)]
    if read_only:
        command = read_only_command(site / "softmax_fast", command)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"PYTHONPATH": str(site)} | env
    reports = []
    for _ in range(2):
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


def test_second_process_loads_from_a_user_cache_when_the_package_is_read_only(tmp_path):
    site = copy_package(tmp_path)
    cache_home = tmp_path / "cache-home"
    first, second = run_twice(site, {"XDG_CACHE_HOME": str(cache_home), "HOME": str(tmp_path)}, read_only=True)
    assert first[1] >= 1 and second == (first[1], 0)
    assert not (site / "softmax_fast" / "kernels" / "__pycache__").exists()
    assert list(cache_home.rglob("*train_epoch*.nbi"))


def test_numba_cache_dir_wins(tmp_path):
    site = copy_package(tmp_path)
    cache_dir = tmp_path / "numba-cache"
    first, second = run_twice(site, {"NUMBA_CACHE_DIR": str(cache_dir)}, read_only=False)
    assert first[1] >= 1 and second == (first[1], 0)
    assert list(cache_dir.rglob("*train_epoch*.nbi"))
    assert not list((site / "softmax_fast").rglob("*.nbi"))
