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


def pytest_collection_modifyitems(config, items):
    """Collect the benchmark smoke test's file last: CI's ``-n auto --dist loadfile --no-loadscope-reorder``
    then hands it out last (pytest-xdist's default order is by a file's count of tests).

    Its ``python -m benchmarks --quick`` child calls most Numba kernels in every specialisation: on an empty
    cache (a clean clone) it compiles them itself, 5 to 6 minutes on 2 cores, while the other tests compile
    the same ones; a minute when it loads what they compiled from the package's on-disk cache.
    """
    items.sort(key=lambda item: item.path.name == "test_benchmarks.py")
