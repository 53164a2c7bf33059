"""No result of a compiled kernel depends on the thread count: 1, 2, 3, 5 and 8 threads give the same bits.

The counts include uneven splits (3, 5) and more threads than this machine's CPUs. They run in a child process
(``thread_runs.py``) that lifts the kernels' clip to the CPU count and starts Numba's pool with 8 threads, and
that reports the thread counts each kernel call was given and the team the runtime then formed: a comparison
is only made for a count that really ran, and skipped with the reason where it cannot run here.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from problems import COMPILED_BACKENDS, DTYPES, INPUT_KINDS, KERNELS
from thread_runs import CLASS_COUNTS, THREAD_COUNTS

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The arrays ``thread_runs.py`` wrote (see there), as a dict."""
    out = tmp_path_factory.mktemp("threads") / "runs.npz"
    env = os.environ | {"NUMBA_NUM_THREADS": str(max(THREAD_COUNTS))}
    done = subprocess.run([sys.executable, str(HERE / "thread_runs.py"), str(out)], cwd=HERE, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-5000:]
    with np.load(out) as saved:
        return dict(saved)


def threads_that_ran(runs, backend, n_threads):
    """Skip unless ``backend`` really ran every call on ``n_threads`` threads; the reason if not."""
    if f"{backend}/unavailable" in runs:
        pytest.skip(str(runs[f"{backend}/unavailable"]))
    asked = set(runs[f"{backend}/asked/t{n_threads}"].tolist())
    assert asked == {n_threads}, f"the kernels were called with {asked} threads, not {n_threads}"
    team = int(runs[f"{backend}/team/t{n_threads}"])
    if team != n_threads:
        from softmax_fast.kernels import cython_kernels

        if backend == "cython" and not cython_kernels.OPENMP_ENABLED:
            pytest.skip("the extension is built without OpenMP: every kernel runs on one thread")
        pytest.fail(f"{backend} asked for {n_threads} threads, and the runtime ran {team}")


@pytest.mark.parametrize("n_threads", THREAD_COUNTS)
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_the_asked_thread_count_runs(runs, backend, n_threads):
    threads_that_ran(runs, backend, n_threads)


@pytest.mark.parametrize("k", CLASS_COUNTS, ids=lambda k: f"k{k}")
@pytest.mark.parametrize("input_kind", INPUT_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: dtype.__name__)
@pytest.mark.parametrize("n_threads", [n for n in THREAD_COUNTS if n > 1])
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_every_kernel_gives_the_bits_of_one_thread(runs, backend, n_threads, dtype, input_kind, k):
    threads_that_ran(runs, backend, n_threads)
    case = f"{np.dtype(dtype).name}/{input_kind}/k{k}"
    for kernel in KERNELS:
        one_thread = sorted(name for name in runs if name.startswith(f"{backend}/t1/{case}/{kernel}/"))
        assert one_thread, f"no results of {kernel}"
        for name in one_thread:
            np.testing.assert_array_equal(runs[name.replace("/t1/", f"/t{n_threads}/")], runs[name],
                                          err_msg=f"{kernel} on {n_threads} threads, result {name.rsplit('/', 1)[1]}")
