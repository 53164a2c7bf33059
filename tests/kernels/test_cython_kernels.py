"""The Cython extension: what happens when it is missing, and when the compiler has no OpenMP."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import softmax_fast.kernels as kernels
import softmax_fast.kernels.cython_kernels as cython_kernels
from problems import make_problem

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def run_python(code, **kwargs):
    """Run ``code`` in a fresh interpreter; returns the completed process (raises if it failed)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, **kwargs
    )


def test_extension_is_built_with_openmp_here():
    assert cython_kernels.OPENMP_ENABLED


def test_missing_extension_leaves_the_package_importable():
    # A None entry in sys.modules makes the import raise ImportError, as a failed build would.
    result = run_python(
        """
        import sys
        sys.modules["softmax_fast.kernels.cython_kernels"] = None
        import softmax_fast.kernels as kernels
        print(kernels.available_backends())
        try:
            kernels.get_backend("cython")
        except kernels.BackendUnavailableError as exc:
            print(exc)
        """
    )
    backends, reason = result.stdout.splitlines()
    assert backends == "['numpy', 'numba']"
    assert reason.startswith("the 'cython' backend is unavailable: ModuleNotFoundError")
    assert "softmax_fast.kernels.cython_kernels" in reason


@pytest.mark.skipif(not (SOURCE_ROOT / "setup.py").exists(), reason="needs the source tree's setup.py")
def test_compiler_without_openmp_gives_a_serial_build_with_the_same_results(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(SOURCE_ROOT / "setup.py", build)
    shutil.copytree(
        SOURCE_ROOT / "softmax_fast", build / "softmax_fast", ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__")
    )
    # A compiler driver that rejects -fopenmp, as Apple clang without libomp does.
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text('#!/bin/sh\nfor arg; do [ "$arg" = -fopenmp ] && exit 1; done\nexec gcc "$@"\n')
    compiler.chmod(0o755)
    env = os.environ | {"CC": str(compiler)}
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "building the Cython kernels WITHOUT OpenMP" in result.stderr

    X, y, W, b, scale = make_problem(300, 784, 10, np.float32, "uint8")
    np.savez(tmp_path / "problem.npz", X=X, y=y, W=W, b=b)
    serial = run_python(
        f"""
        import numpy as np
        import softmax_fast.kernels as kernels
        from softmax_fast.kernels import cython_kernels
        assert not cython_kernels.OPENMP_ENABLED
        assert cython_kernels.__file__.startswith({str(build)!r}), cython_kernels.__file__
        p = dict(np.load({str(tmp_path / "problem.npz")!r}))
        kernels.get_backend("cython").train_epoch(p["X"], p["y"], p["W"], p["b"], 0.2, 128, {scale})
        np.save({str(tmp_path / "W_serial.npy")!r}, p["W"])
        """,
        cwd=build,
        env=os.environ | {"PYTHONPATH": str(build)},
    )
    assert serial.returncode == 0
    kernels.get_backend("cython").train_epoch(X, y, W, b, 0.2, 128, scale)
    np.testing.assert_array_equal(np.load(tmp_path / "W_serial.npy"), W)
