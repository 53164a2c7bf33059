"""Settings for the whole test suite."""

import os

import pytest
from hypothesis import settings

# Numba compiles on a kernel's first call with new types, which can take seconds.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def mnist_dir(request):
    """A directory in pytest's cache that keeps real MNIST across test sessions (fetched by the first)."""
    return request.config.cache.mkdir("mnist")


# The files CI's two xdist workers start with (see pytest_collection_modifyitems), handed out in this order to
# whichever worker is free: test_backends.py to one, the rest to the other while it runs (the measured CI run).
FIRST_FILES = ("test_backends.py", "test_cython_kernels.py", "test_numba_kernels.py", "test_extending.py")


def pytest_collection_modifyitems(config, items):
    """Order the test files for CI's ``-n auto --dist loadfile --no-loadscope-reorder``, which hands them out in
    collection order (pytest-xdist's default order is by a file's count of tests).

    - First, ``FIRST_FILES``: one worker compiles the Numba kernels in every specialisation
      (``test_backends.py``, a cold cache in a clean clone) while the other takes the extension's rebuilds,
      the kernels called from users' ``@njit`` code (their own specialisations) and the example extension,
      rather than compile the same kernels at the same time; the files after them load what it compiled
      from the package's on-disk cache.
    - Last, the benchmark smoke test: its ``python -m benchmarks --quick`` child calls most kernels in every
      specialisation, 5 to 6 minutes on 2 cores on an empty cache, a minute when it loads what the tests
      compiled.
    """
    def position(item):
        name = item.path.name
        if name in FIRST_FILES:
            return FIRST_FILES.index(name) - len(FIRST_FILES)
        return 1 if name == "test_benchmarks.py" else 0

    items.sort(key=position)
