"""Numba's compile time, apart from run time: the first ``train_epoch`` call in a fresh process.

``setup`` runs a child Python with an empty ``NUMBA_CACHE_DIR``: its first
call compiles (and fills that cache). ``track_load_seconds`` runs a second
child on the filled cache: its first call loads the compiled code. Each child
also times a second call, the run time on its small data (512 rows, 4 batches),
so the compile and load figures can be read net of it.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import common

# The child: time the import, the first and the second train_epoch call; print them as JSON.
_CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from softmax_fast import kernels
backend = kernels.get_backend("numba")
imported = time.perf_counter()
dtype, kind = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (512, 784), dtype=np.uint8)
scale = 1 / 255
if kind == "float":
    X, scale = X.astype(dtype) / np.asarray(255, dtype=dtype), 1.0
y = rng.integers(0, 10, 512).astype(np.intp)
W, b = np.zeros((784, 10), dtype=dtype), np.zeros(10, dtype=dtype)
times = []
for _ in range(2):
    t = time.perf_counter()
    backend.train_epoch(X, y, W, b, 0.2, 128, scale)
    times.append(time.perf_counter() - t)
print(json.dumps({"import_s": imported - started, "first_call_s": times[0], "second_call_s": times[1]}))
"""


def _first_call(cache_dir, dtype, kind):
    """Run the child with ``NUMBA_CACHE_DIR=cache_dir``; its timings as a dict."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    done = subprocess.run([sys.executable, "-c", _CHILD, dtype, kind], env=env, cwd=cache_dir,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the Numba child failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class NumbaCompile:
    """Seconds of the first ``numba`` ``train_epoch`` call: compiling (empty cache) and loading (cache filled)."""

    table = "compile"
    params = [["float32"] if common.QUICK else common.DTYPES, ["uint8"] if common.QUICK else common.INPUTS]
    param_names = ["dtype", "input"]
    timeout = 900

    def setup(self, dtype, input):
        common.backend("numba")
        self.cache_dir = tempfile.mkdtemp(prefix="softmax-fast-numba-cache-")
        self.cold = _first_call(self.cache_dir, dtype, input)

    def teardown(self, dtype, input):
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def track_compile_seconds(self, dtype, input):
        """First call in a process whose Numba cache is empty: compiles every kernel it reaches."""
        return self.cold["first_call_s"]

    track_compile_seconds.unit = "seconds"

    def track_load_seconds(self, dtype, input):
        """First call in a second process, on the cache the first one filled: loads the compiled code."""
        return _first_call(self.cache_dir, dtype, input)["first_call_s"]

    track_load_seconds.unit = "seconds"

    def track_run_seconds(self, dtype, input):
        """The compiled code's run time on the child's 512 rows (its second call)."""
        return self.cold["second_call_s"]

    track_run_seconds.unit = "seconds"

    def describe(self, method, dtype, input):
        return {"label": f"numba train_epoch({dtype}, {input} X)", "dtype": dtype, "input": input}
