"""softmax_fast: fast, tested softmax-regression (multinomial logistic regression) training.

:class:`SoftmaxRegression` is the estimator; the compiled kernels and their
NumPy reference live in :mod:`softmax_fast.kernels`.
"""

__version__ = "0.1.0"

from .estimator import SoftmaxRegression  # noqa: E402  (the estimator reads __version__)

__all__ = ["SoftmaxRegression", "__version__"]
