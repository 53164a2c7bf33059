"""softmax_fast benchmark suite (issue 4).

asv-style benchmark classes, one module per subject:

* ``bench_machine``: the machine's own limits, NumPy GEMM GFLOP/s and streaming read bandwidth;
* ``bench_epoch``: one training epoch on MNIST, the seed's NumPy loop and every backend;
* ``bench_kernels``: each kernel alone at MNIST's batch shape and at a linear-probe shape;
* ``bench_peers``: PyTorch eager and scikit-learn, where installed;
* ``bench_compile``: Numba's compile and cache-load time, each in a fresh process;
* ``bench_memory``: peak RSS of ``python -m softmax_fast.train`` and of a one-epoch fit.

``asv run`` discovers them through ``asv.conf.json`` at the repository root.
``python -m benchmarks [--quick] [--out DIR]`` runs them all once, in one
process, on the same data, and prints the comparison asv does not: GFLOP/s,
percent of the measured GEMM peak, speed-up over the seed loop and the issue's
targets (see ``benchmarks/__main__.py``).

This file imports nothing, so that the runner can choose the quick mode (an
environment variable read by ``benchmarks.common``) before any benchmark
module is loaded.
"""
