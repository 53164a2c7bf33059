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
