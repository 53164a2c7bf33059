"""Fixtures of the kernel tests: the backends, dtypes and input kinds they run over.

Session-scoped: they hold no state, and hypothesis tests may then use them.
"""

import pytest

import softmax_fast.kernels as kernels
from problems import COMPILED_BACKENDS, DTYPES, INPUT_KINDS


@pytest.fixture(scope="session", params=kernels.BACKENDS)
def backend(request):
    """Every backend; one that is unavailable here fails the test rather than skipping it."""
    return kernels.get_backend(request.param)


@pytest.fixture(scope="session", params=COMPILED_BACKENDS)
def compiled_backend(request):
    return kernels.get_backend(request.param)


@pytest.fixture(scope="session")
def reference():
    return kernels.get_backend("numpy")


@pytest.fixture(scope="session", params=DTYPES, ids=lambda dtype: dtype.__name__)
def dtype(request):
    return request.param


@pytest.fixture(scope="session", params=INPUT_KINDS)
def input_kind(request):
    return request.param
