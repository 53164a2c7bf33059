"""The rows :class:`~softmax_fast.SoftmaxRegression` trains on: their class indices, weights and held-out share.

This module owns what the estimator makes of ``y``, ``sample_weight`` and
``class_weight`` before any kernel runs: the positions of labels in
``classes_``, each row's weight (``sample_weight`` times its class's weight,
``"balanced"`` as scikit-learn computes it), the checks that weighted rows
leave something to learn, and early stopping's stratified held-out rows.
:class:`Rows` carries kernel-ready rows (features, class indices, weights) and
takes subsets of them. NumPy only; the estimator calls these functions.
"""

import math
import typing

import numpy as np

from .kernels._validation import CSR, check_sample_weight, is_sparse


class Rows(typing.NamedTuple):
    """Kernel-ready rows: class indices ``y (n,)`` and row weights ``(n,)`` of the weights' dtype (or None) of the
    rows ``index (n,)`` (intp) of the features ``X`` (``None``: all of ``X``'s rows, in order).

    Taking rows composes ``index`` and never copies ``X``, which may be a
    memory-mapped file larger than memory: :meth:`features` gathers the rows
    of one kernel call at a time. ``X`` may also be a CSR matrix
    (``scipy.sparse``) checked whole by
    :func:`~softmax_fast.kernels._validation.checked_csr_rows` (the
    estimator's ``_validated`` does), whose rows it gathers into a new one.
    """

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    index: np.ndarray | None = None

    def take(self, rows):
        """These rows at the indices (or slice) ``rows``."""
        index = np.arange(len(self.y))[rows] if self.index is None else self.index[rows]
        return Rows(self.X, self.y[rows], None if self.weights is None else self.weights[rows], index)

    def features(self, rows, out):
        """The features of these rows at the slice ``rows``: a view of ``X`` when they are its rows in order,
        else gathered into the start of ``out`` (from :meth:`scratch`). For a sparse ``X``, a new CSR matrix of
        them as a checked :class:`~softmax_fast.kernels._validation.CSR`: ``X`` was checked whole, and rows
        keep their checked values in any order, so the kernels check only its shape and dtypes again."""
        if is_sparse(self.X):
            return CSR.of_checked(self.X[rows if self.index is None else self.index[rows]])
        if self.index is None:
            return self.X[rows]
        index = self.index[rows]
        return np.take(self.X, index, axis=0, out=out[:len(index)])

    def scratch(self, rows):
        """``out`` for :meth:`features` of up to ``rows`` rows: ``None`` when they are views of ``X``, or when
        ``X`` is sparse."""
        if self.index is None or not isinstance(self.X, np.ndarray):
            return None
        return np.empty((min(rows, len(self.y)), self.X.shape[1]), self.X.dtype)


def label_indices(classes, y):
    """Positions in ``classes`` of the 1-D labels ``y``, as ``np.intp``; ``ValueError`` for an unknown label."""
    indices = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    unknown = classes[indices] != y
    if np.any(unknown):
        raise ValueError(f"y holds labels the model was not fitted with, e.g. {y[unknown].tolist()[0]!r}; "
                         f"known: {classes.tolist()}")
    return indices.astype(np.intp)


def check_two_classes(classes):
    """Reject fewer than 2 classes, naming the one there is."""
    if len(classes) < 2:
        raise ValueError(f"SoftmaxRegression needs samples of at least 2 classes, "
                         f"but y holds only one class: {classes.tolist()[0]!r}")


def checked_sample_weight(sample_weight, n, dtype):
    """``sample_weight`` as ``(n,)`` finite weights >= 0 of ``dtype`` (``None`` stays ``None``)."""
    return None if sample_weight is None else check_sample_weight(sample_weight, n, np.dtype(dtype))


def _class_weights(class_weight, classes, y):
    """The weight of each class, ``(k,)`` float64: ``"balanced"``'s ``n / (k * bincount(y))``, or the dict's."""
    if isinstance(class_weight, str):
        return balanced_class_weights(np.bincount(y, minlength=len(classes)))
    weights = np.ones(len(classes))
    for label, weight in class_weight.items():
        match = np.flatnonzero(classes == label)
        if len(match) == 0:
            raise ValueError(f"class_weight has a key that is not a class: {label!r}; the classes are "
                             f"{classes.tolist()}")
        weights[match] = weight
    return weights


def balanced_class_weights(counts):
    """``class_weight="balanced"``'s weight of each class, ``n / (k * count)`` (1 for a class without rows), from
    the ``(k,)`` counts of the classes' rows: ``(k,)`` float64."""
    return np.divide(counts.sum(), len(counts) * counts, out=np.ones(len(counts)), where=counts > 0)


def row_weights(class_weight, classes, y, sample_weight, dtype):
    """Each row's weight, ``sample_weight`` times its class's weight, ``(n,)`` of ``dtype``; ``None`` for all 1."""
    if class_weight is None:
        return sample_weight
    weights = _class_weights(class_weight, classes, y)[y]
    if sample_weight is not None:
        weights *= sample_weight
    with np.errstate(over="ignore"):
        return weights.astype(dtype)


def check_weighted_classes(weights, y, classes, at_least=2):
    """Reject row weights that are not finite, all zero, or that leave fewer than ``at_least`` classes."""
    if weights is None:
        return
    if not np.isfinite(weights).all():
        raise ValueError(f"sample_weight times class_weight overflows {weights.dtype} (the model's dtype)")
    present = np.unique(y[weights > 0])
    if len(present) == 0:
        raise ValueError("sample_weight times class_weight is zero for every row: there is nothing to train on")
    if len(present) < at_least:
        raise ValueError(f"only the rows of class {classes[present].tolist()[0]!r} have a nonzero weight (sample_weight "
                         f"times class_weight): SoftmaxRegression needs rows of at least {at_least} classes")


def block_shuffle(n, block_size, rng):
    """An order of ``n`` rows ``(n,)`` intp: the blocks of ``block_size`` consecutive rows (the last one may be
    shorter) in a random order, and each block's rows in a random order, drawn from ``rng`` by
    :func:`shuffled_blocks`."""
    starts = np.arange(0, n, block_size)
    order, row_orders = shuffled_blocks(np.minimum(block_size, n - starts), rng)
    return np.concatenate([starts[block] + rows for block, rows in zip(order, row_orders)]).astype(np.intp)


def shuffled_blocks(lengths, rng):
    """Blocks of ``lengths (m,)`` rows in a random order, ``(m,)``, and the list of each one's rows in a random
    order, in that order, drawn from ``rng``: the order of the blocks first, then each block's."""
    order = rng.permutation(len(lengths))
    return order, [rng.permutation(lengths[block]) for block in order]


def stratified_holdout(y, n_classes, fraction, rng):
    """The rows early stopping holds out: ``ceil(fraction * n)`` indices of ``y``, sorted, drawn from ``rng``.

    Each class gives its share of them, rounded down, and the rows still
    to place go to the classes with the largest remainders (the first of
    equal ones): scikit-learn's stratified split, within a row.
    """
    n = len(y)
    n_held = math.ceil(fraction * n)
    if n_held >= n:
        raise ValueError(f"validation_fraction={fraction} of {n} rows leaves no row to train on")
    counts = np.bincount(y, minlength=n_classes)
    share = counts * (n_held / n)
    take = np.floor(share).astype(np.intp)
    by_remainder = np.argsort(take - share, kind="stable")
    by_remainder = by_remainder[take[by_remainder] < counts[by_remainder]]
    take[by_remainder[:n_held - take.sum()]] += 1
    rows = [np.flatnonzero(y == c)[rng.permutation(counts[c])[:take[c]]] for c in range(n_classes)]
    return np.sort(np.concatenate(rows))
