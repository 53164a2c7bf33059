"""Settings for the whole test suite."""

import os

from hypothesis import settings

# Numba compiles on a kernel's first call with new types, which can take seconds.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
