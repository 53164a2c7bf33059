"""Every compiled kernel on 1, 2, 3, 5 and 8 threads, in a process of its own: ``python thread_runs.py OUT.npz``.

Run by ``test_threads.py`` with ``NUMBA_NUM_THREADS`` at least the largest count, since Numba sizes its pool
when it starts. The kernels clip a thread count to the CPUs this process may use; this process lifts that clip
(``kernels._CPUS``, test-only), so that on a 2-CPU machine 8 threads really are 8: oversubscribing the cores
makes the kernels slow, not wrong. It writes to ``OUT.npz``:

- ``<backend>/t<threads>/<dtype>/<input>/k<k>/<kernel>/<i>``: the i-th array or number a kernel returned (or
  the weights it trained: see ``problems.every_kernel``), for every backend, thread count, dtype, input kind
  and class count;
- ``<backend>/asked/t<threads>``: the thread counts the backend's kernels were called with (Numba: its
  ``get_num_threads()`` during the call; Cython: the ``n_threads`` argument), all of them;
- ``<backend>/team/t<threads>``: how many threads the runtime then gave a parallel region (Numba: distinct
  thread ids in a ``prange`` loop; Cython: OpenMP's team size, ``cython_kernels.team_size``);
- ``<backend>/unavailable``: why a backend could not run, instead of the above.
"""

import sys

import numba
import numpy as np

import softmax_fast.kernels as kernels
from problems import COMPILED_BACKENDS, DTYPES, INPUT_KINDS, every_kernel_on

THREAD_COUNTS = (1, 2, 3, 5, 8)
# MNIST's narrow path and the GEMM path: 784 features are 49 tiles of 16 (Cython) or vectors (Numba), and a
# batch of 128 rows 22 GEMM tiles of 6, shared unevenly by 3, 5 and 8 threads.
CLASS_COUNTS = (10, 70)
CASES = [(dtype, input_kind, k) for dtype in DTYPES for input_kind in INPUT_KINDS for k in CLASS_COUNTS]


class RecordingKernels:
    """A backend's kernel module whose calls also record the thread count each call ran with."""

    def __init__(self, module, backend_name):
        self._module, self._backend_name, self.asked = module, backend_name, []

    def __getattr__(self, name):
        kernel = getattr(self._module, name)

        def recorded(*args):
            self.asked.append(numba.get_num_threads() if self._backend_name == "numba" else args[-1])
            return kernel(*args)

        return recorded


@numba.njit(parallel=True, cache=False)
def numba_team(n_items):
    """How many distinct Numba threads ran a ``prange`` of ``n_items`` (each gets an even share)."""
    ids = np.full(n_items, -1)
    for i in numba.prange(n_items):
        ids[i] = numba.get_thread_id()
    return len(np.unique(ids))


def team(backend_name, n_threads):
    """The threads the backend's runtime gives a parallel region that asks for ``n_threads``."""
    if backend_name == "numba":
        numba.set_num_threads(n_threads)
        return numba_team(64 * n_threads)
    from softmax_fast.kernels import cython_kernels

    return cython_kernels.team_size(n_threads)


def main(out):
    kernels._CPUS = max(THREAD_COUNTS)
    arrays = {}
    for backend_name in COMPILED_BACKENDS:
        try:
            backend = kernels.get_backend(backend_name)
        except kernels.BackendUnavailableError as exc:
            arrays[f"{backend_name}/unavailable"] = str(exc)
            continue
        recording = backend._kernels = RecordingKernels(backend._kernels, backend_name)
        for n_threads in THREAD_COUNTS:
            recording.asked.clear()
            results = every_kernel_on(backend, CASES, 1000, 784, seed=2, n_threads=n_threads)
            arrays |= {f"{backend_name}/t{n_threads}/{name}": value for name, value in results.items()}
            arrays[f"{backend_name}/asked/t{n_threads}"] = np.array(recording.asked)
            arrays[f"{backend_name}/team/t{n_threads}"] = team(backend_name, n_threads)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
