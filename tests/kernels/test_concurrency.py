"""Kernels called from several Python threads at once, each on its own arrays, give the results of serial calls."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

from problems import every_kernel, make_problem

N_CALLERS = 4
ROUNDS = 5


def run_every_kernel(backend, problem):
    """Every kernel's results on ``problem`` in batches of 16, as one flat list."""
    return [value for values in every_kernel(backend, problem, batch_size=16).values() for value in values]


def test_kernels_called_from_several_threads_at_once_match_serial_calls(backend, dtype, input_kind):
    # A different problem per caller: a kernel that kept scratch or state between calls would mix them up.
    problems = [make_problem(200 + 10 * i, 60, 5 + i, dtype, input_kind, seed=i) for i in range(N_CALLERS)]
    expected = [run_every_kernel(backend, problem) for problem in problems]
    if backend.name == "numba" and numba.threading_layer() == "workqueue":
        pytest.skip("Numba's workqueue threading layer aborts the process on concurrent calls; tbb or omp do not")
    start = threading.Barrier(N_CALLERS)

    def caller(index):
        start.wait()
        return [run_every_kernel(backend, problems[index]) for _ in range(ROUNDS)]

    with ThreadPoolExecutor(N_CALLERS) as pool:
        results = list(pool.map(caller, range(N_CALLERS)))
    for index, rounds in enumerate(results):
        for result in rounds:
            for got, want in zip(result, expected[index], strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"caller {index}")
