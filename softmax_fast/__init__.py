"""softmax_fast: fast, tested softmax-regression (multinomial logistic regression) training.

:class:`SoftmaxRegression` is the estimator; the compiled kernels and their
NumPy reference live in :mod:`softmax_fast.kernels`. The API is described in
``docs/API.md``; what it calls stable does not change within a minor series (0.1.x).
"""

import os

# Before the estimator's import: it reads the version.
__version__ = "0.1.0"

from .estimator import SoftmaxRegression, TrainingDivergedError, TrainingInterrupted  # noqa: E402
from .cross_validation import SoftmaxRegressionCV  # noqa: E402

__all__ = ["SoftmaxRegression", "SoftmaxRegressionCV", "TrainingDivergedError", "TrainingInterrupted", "__version__", "get_include"]


def get_include():
    """The directory to put on a Cython build's include path to ``cimport softmax_fast.kernels.cython_kernels``.

    It holds the installed ``softmax_fast`` package, whose ``.pxd`` declares the
    C API. (Cython also searches ``sys.path``, but an editable install reaches
    the package through an import hook that Cython does not follow.) The
    extension that cimports needs no C headers of ours: the functions are
    looked up in the installed module when it is imported.
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
