"""Downstream use of the C API: the example Cython extension built against softmax_fast as installed.

As scipy's test_extending.py and pyarrow's test_cython.py do, the extension in
examples/cython_extension is copied to a temporary directory, built there with
its own setup.py, imported, and checked against the NumPy reference by its
check.py. It is built twice: against the softmax_fast these tests import
(editable in development, served through softmax_fast.get_include()) and
against a regular, non-editable installation made with pip into a temporary
directory, with the source tree out of reach, so that the .pxd must come from
the installed package data.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import softmax_fast

SOURCE_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = SOURCE_ROOT / "examples" / "cython_extension"

# Each test compiles an extension: slow by nature.
pytestmark = [pytest.mark.skipif(not EXAMPLE.is_dir(), reason="needs the source tree's examples/"), pytest.mark.slow]


def run(command, cwd, env=None):
    """Run ``command``; fail the test with its output if it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def build_and_check(tmp_path, env=None):
    """Build the example in ``tmp_path`` with ``env``; returns what its check.py printed."""
    work = tmp_path / "cython_extension"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("build", "*.so", "*.c"))
    run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work, env=env)
    return run([sys.executable, "check.py"], cwd=work, env=env).stdout


def test_example_extension_builds_against_the_imported_package(tmp_path):
    output = build_and_check(tmp_path)
    assert f"from {softmax_fast.get_include()}" in output
    assert "matches the NumPy reference over 3 epochs" in output
    assert "CSR training matches the NumPy reference over 3 epochs" in output


def test_example_extension_builds_against_a_regular_install(tmp_path):
    # From a copy of the sources (pip builds in the tree it is given: not in the developer's build/), with the
    # plain loops (-DSF_VECTOR_EXTENSIONS=0), which compile in a tenth of the vector loops' time: this test is
    # about what an installation ships, and test_cython_kernels holds the plain loops to the reference.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(SOURCE_ROOT / name, source)
    shutil.copytree(SOURCE_ROOT / "softmax_fast", source / "softmax_fast",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)], cwd=tmp_path, env=os.environ | {"CFLAGS": "-DSF_VECTOR_EXTENSIONS=0"})
    assert (site / "softmax_fast" / "kernels" / "cython_kernels.pxd").is_file()
    # The installed copy comes first on the path; an editable install's import
    # hook only answers for modules that nothing on the path provides.
    env = {**os.environ, "PYTHONPATH": str(site)}
    output = build_and_check(tmp_path, env)
    assert f"from {site}" in output
    assert "matches the NumPy reference over 3 epochs" in output
