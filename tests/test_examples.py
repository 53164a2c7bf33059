"""The examples in examples/ run as their docstrings say (the Cython one: tests/test_extending.py)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="needs the source tree's examples/")


def run_example(name, tmp_path, *args):
    """Run a copy of ``examples/name`` in ``tmp_path`` (so that caches stay there); returns its stdout."""
    shutil.copy(EXAMPLES / name, tmp_path)
    result = subprocess.run([sys.executable, name, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_own_data_on_synthetic_data(tmp_path):
    output = run_example("train_own_data.py", tmp_path)
    assert "classes ['cat', 'dog', 'owl'], 20 features" in output
    assert float(re.search(r"test accuracy (\S+)", output).group(1)) > 0.6


def test_train_own_data_on_an_npz_file(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=400)
    X = (rng.normal(size=(400, 5)) + 2.0 * y[:, None]).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    output = run_example("train_own_data.py", tmp_path, "data.npz")
    assert "classes [0, 1], 5 features" in output
    assert float(re.search(r"test accuracy (\S+)", output).group(1)) > 0.9


def test_numba_user_matches_the_reference(tmp_path):
    output = run_example("numba_user.py", tmp_path)
    assert float(re.search(r"training accuracy (\S+)", output).group(1)) > 0.9
    assert float(re.search(r"largest difference from the NumPy reference: (\S+)", output).group(1)) < 1e-5
