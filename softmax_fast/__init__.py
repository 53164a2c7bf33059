"""softmax_fast: fast, tested softmax-regression (multinomial logistic regression) training.

The compiled kernels and their NumPy reference live in :mod:`softmax_fast.kernels`.
"""

__version__ = "0.1.0"
