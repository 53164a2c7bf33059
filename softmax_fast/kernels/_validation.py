"""Argument checks for the kernels: the one place where their inputs are validated.

Every backend is called through :class:`softmax_fast.kernels.Backend`, which
runs these checks first, so the compiled kernels can skip bounds checks: no
input that passes here can make them read or write outside their arrays.

Arrays that a kernel only reads are accepted in any memory layout and copied to
C order when they are not in it already (a copy per call: pass C-ordered arrays
to avoid it). Arrays that a kernel writes (``W``, ``b``, ``out``) must already
be C-contiguous and writable, since a copy would silently drop the update.
Wrong types and dtypes raise ``TypeError``; wrong shapes, sizes, layouts and
values raise ``ValueError``. Each message names the argument and what was
expected.

Sparse ``X`` is a scipy.sparse CSR matrix or array (:func:`check_csr`), which
the kernels take as its three arrays, checked whole on every call (O(nnz)):
an index out of range or an ``indptr`` that runs past the data would make the
kernels read outside them.
"""

import numbers
import os
import sys
import typing

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


class CSR(typing.NamedTuple):
    """Checked CSR rows: ``data (nnz,)`` of the weights' dtype, ``indices (nnz,)`` and ``indptr (n + 1,)`` of one
    integer dtype (int32 or int64), each row's indices sorted and unique in ``[0, d)``; ``shape`` ``(n, d)``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple

    @classmethod
    def of_checked(cls, X):
        """The rows of the scipy.sparse CSR matrix ``X`` that :func:`checked_csr_rows` has checked (or of rows
        taken from such a matrix: each keeps its checked values), without reading them again."""
        return cls(X.data, X.indices, X.indptr, X.shape)


def default_num_threads():
    """The number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _describe(array):
    return f"shape {array.shape} and dtype {array.dtype}"


def _as_array(name, value):
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from exc


def _check_in_place(name, array):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} is updated in place and must be a numpy.ndarray, got {type(array).__name__}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(
            f"{name} is written in place and must be C-contiguous and writable; "
            f"pass np.ascontiguousarray({name}) (and keep that array)"
        )


def check_weights(W, b, *, in_place):
    """Check ``W (d, k)`` and ``b (k,)``: same float dtype, finite; returns them C-ordered.

    With ``in_place`` they must already be C-contiguous, writable ndarrays.
    """
    if in_place:
        _check_in_place("W", W)
        _check_in_place("b", b)
    else:
        W = np.ascontiguousarray(_as_array("W", W))
        b = np.ascontiguousarray(_as_array("b", b))
    if W.dtype not in FLOAT_DTYPES:
        raise TypeError(f"W must have dtype float32 or float64, got {W.dtype}")
    if b.dtype != W.dtype:
        raise TypeError(f"b must have the dtype of W ({W.dtype}), got {b.dtype}")
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W must be a non-empty 2-D array (n_features, n_classes), got shape {W.shape}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"b must have shape ({W.shape[1]},) to match W {W.shape}, got {b.shape}")
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise ValueError("W and b must be finite; they contain NaN or inf (did training diverge?)")
    return W, b


def is_sparse(X):
    """Whether ``X`` is a scipy.sparse matrix or array (without importing scipy: it is loaded if ``X`` is one)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def check_features(X, W):
    """Check ``X (n, d)`` against ``W (d, k)``: dtype uint8 or that of ``W``; returns it C-ordered, or a
    :class:`CSR` for scipy.sparse CSR ``X`` (:func:`check_csr`). A :class:`CSR` is rows already checked (see
    there): only its shape and dtypes are checked against ``W``."""
    if isinstance(X, CSR):
        return _csr_against(X, W)
    if is_sparse(X):
        return check_csr(X, W)
    X = _as_array("X", X)
    if X.dtype not in (np.dtype(np.uint8), W.dtype):
        raise TypeError(f"X must have dtype uint8 or {W.dtype} (the dtype of W), got {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got {X.ndim}-D with shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X must have at least one row, got 0")
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features but W has {W.shape[0]} rows: {X.shape} vs {W.shape}")
    return np.ascontiguousarray(X)


def check_csr(X, W):
    """Check the scipy.sparse matrix ``X (n, d)`` against ``W (d, k)``: CSR, data of ``W``'s dtype and finite,
    int32 or int64 indices in ``[0, d)``, sorted and unique within each row, an ``indptr`` that starts at 0,
    never decreases and ends at the number of stored values; returns its :class:`CSR`."""
    return _csr_against(checked_csr_rows(X), W)


def checked_csr_rows(X):
    """The scipy.sparse matrix ``X (n, d)`` as a :class:`CSR`, after the checks of :func:`check_csr` that do not
    involve ``W``: those that read every stored value (O(nnz)).

    The rows of its result stay checked when taken in any order (each keeps
    its values), so the estimator checks its ``X`` once here and hands the
    kernels the rows of each call as a :class:`CSR`.
    """
    if X.format != "csr":
        raise TypeError(f"X is a scipy.sparse {X.format} matrix; the kernels take CSR rows: convert it once with "
                        "X.tocsr()")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    n, d = X.shape
    if n == 0:
        raise ValueError("X must have at least one row, got 0")
    data, indices, indptr = (np.ascontiguousarray(a) for a in (X.data, X.indices, X.indptr))
    if indices.dtype not in INDEX_DTYPES or indptr.dtype != indices.dtype:
        raise TypeError(f"X's indices and indptr must both be int32 or both int64, got {indices.dtype} and "
                        f"{indptr.dtype}")
    nnz = len(data)
    if indptr.shape != (n + 1,) or indptr[0] != 0 or indptr[-1] != nnz or len(indices) != nnz:
        raise ValueError(f"X's indptr must have n + 1 = {n + 1} entries from 0 to the {nnz} stored values, got "
                         f"{len(indptr)} entries from {indptr[0] if len(indptr) else None} to "
                         f"{indptr[-1] if len(indptr) else None} (and {len(indices)} indices)")
    if (np.diff(indptr) < 0).any():
        raise ValueError("X's indptr must not decrease: row i's values are data[indptr[i]:indptr[i + 1]]")
    if nnz and (indices.min() < 0 or indices.max() >= d):
        raise ValueError(f"X's column indices must be in [0, {d}), got {indices.min()} to {indices.max()}")
    increasing = np.diff(indices) > 0
    increasing[indptr[1:-1][(indptr[1:-1] > 0) & (indptr[1:-1] < nnz)] - 1] = True  # a row's first index
    if not increasing.all():
        raise ValueError("X's column indices must be sorted and unique within each row: X.sum_duplicates() "
                         "sorts them and adds duplicates up, in place")
    if not np.isfinite(data).all():
        raise ValueError("X must be finite; its data holds NaN or inf")
    return CSR(data, indices, indptr, (n, d))


def _csr_against(rows, W):
    """The checked :class:`CSR` ``rows``, after checking their features' count and dtype against ``W (d, k)``."""
    if rows.shape[1] != W.shape[0]:
        raise ValueError(f"X has {rows.shape[1]} features but W has {W.shape[0]} rows: {rows.shape} vs {W.shape}")
    if rows.data.dtype != W.dtype:
        raise TypeError(f"X's data must have the dtype of W ({W.dtype}), got {rows.data.dtype}: X.astype(W.dtype)")
    return rows


def check_labels(y, n_samples, n_classes):
    """Check integer labels ``y (n_samples,)`` in ``[0, n_classes)``; returns them as C-ordered ``np.intp``."""
    y = _as_array("y", y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"y has {y.shape[0]} labels but there are {n_samples} rows")
    low, high = y.min(), y.max()
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(f"y must hold labels in [0, {n_classes}) for {n_classes} classes, got {bad}")
    return np.ascontiguousarray(y, dtype=np.intp)


def check_logits(Z):
    """Check logits ``Z (n, k)``: float32 or float64, non-empty; returns them C-ordered."""
    Z = _as_array("Z", Z)
    if Z.dtype not in FLOAT_DTYPES:
        raise TypeError(f"Z must have dtype float32 or float64, got {Z.dtype}")
    if Z.ndim != 2 or Z.shape[0] < 1 or Z.shape[1] < 1:
        raise ValueError(f"Z must be a non-empty 2-D array (n_samples, n_classes), got shape {Z.shape}")
    return np.ascontiguousarray(Z)


def check_out(out, Z):
    """Check an output array for ``Z``: same shape and dtype, C-contiguous, writable."""
    _check_in_place("out", out)
    if out.shape != Z.shape or out.dtype != Z.dtype:
        raise ValueError(f"out must have {_describe(Z)} like Z, got {_describe(out)}")
    return out


def check_positive(name, value):
    """Check a finite real number ``> 0`` (a learning rate or a feature scale); returns a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def check_positive_in(name, value, dtype):
    """:func:`check_positive`, and representable in the weights' ``dtype``: returns a ``dtype`` scalar.

    A float32 model computes with a float32 ``lr`` and ``scale``: ``1e39``
    would become inf there and ``1e-50`` zero (or a subnormal), so both are
    rejected rather than silently changed.
    """
    value = check_positive(name, value)
    info = np.finfo(dtype)
    if not float(info.smallest_normal) <= value <= float(info.max):
        raise ValueError(f"{name} must be between {info.smallest_normal:.3g} and {info.max:.3g} to be a {dtype} "
                         f"(the dtype of W), got {value:g}")
    return dtype.type(value)


def check_nonnegative_in(name, value, dtype, below=None):
    """Check a finite real number ``>= 0`` (and ``< below`` if given); returns it as a scalar of ``dtype``.

    For ``alpha`` and ``momentum``, which enter the update in the weights' dtype.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    if below is not None and not value < below:
        raise ValueError(f"{name} must be < {below}, got {value}")
    if value > float(np.finfo(dtype).max):
        raise ValueError(f"{name} = {value:g} overflows {dtype} (the dtype of W)")
    return dtype.type(value)


def check_rates(lr, n_batches, dtype):
    """The learning rate of each of ``n_batches`` batches, ``(n_batches,)`` of ``dtype``, C-ordered.

    ``lr`` is one rate for every batch or a 1-D array with one per batch; each
    is checked as :func:`check_positive_in` checks one.
    """
    if np.ndim(lr) == 0:
        return np.full(n_batches, check_positive_in("lr", lr, dtype), dtype=dtype)
    rates = _as_array("lr", lr)
    if rates.dtype.kind not in "fiu":
        raise TypeError(f"lr must be a real number or an array of real numbers, got dtype {rates.dtype}")
    if rates.shape != (n_batches,):
        raise ValueError(f"lr must be a number or a 1-D array of one rate per batch, shape ({n_batches},), "
                         f"got shape {rates.shape}")
    info = np.finfo(dtype)
    rates = rates.astype(np.float64)
    bad = ~(np.isfinite(rates) & (rates >= float(info.smallest_normal)) & (rates <= float(info.max)))
    if bad.any():
        raise ValueError(f"lr must hold finite rates between {info.smallest_normal:.3g} and {info.max:.3g} "
                         f"(> 0, a {dtype} like W), got {rates[bad][0]:g} for batch {np.flatnonzero(bad)[0]}")
    return np.ascontiguousarray(rates, dtype=dtype)


def check_sample_weight(sample_weight, n_samples, dtype):
    """Row weights ``(n_samples,)`` of ``dtype``, finite and ``>= 0``, C-ordered; ones when ``None``."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    weights = _as_array("sample_weight", sample_weight)
    if weights.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {weights.dtype}")
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per row, got {weights.shape}")
    as_float64 = weights.astype(np.float64, copy=False)
    if not (np.isfinite(as_float64) & (as_float64 >= 0) & (as_float64 <= float(np.finfo(dtype).max))).all():
        raise ValueError(f"sample_weight must be finite and >= 0 (as a {dtype} like W)")
    return np.ascontiguousarray(weights, dtype=dtype)


def check_momentum(momentum, nesterov, velocity, W, b):
    """Check the momentum options; returns ``(momentum, nesterov, VW, vb)``.

    ``momentum`` in ``[0, 1)`` as a scalar of ``W``'s dtype; ``nesterov`` a
    bool, which needs ``momentum > 0``; ``velocity`` a pair ``(VW, vb)`` shaped
    like ``(W, b)``, C-contiguous and writable, required when ``momentum > 0``.
    With ``momentum == 0`` no velocity is used: empty arrays take its place.
    """
    momentum = check_nonnegative_in("momentum", momentum, W.dtype, below=1)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if momentum == 0:
        return momentum, False, np.empty((0, 0), dtype=W.dtype), np.empty(0, dtype=W.dtype)
    if velocity is None:
        raise ValueError(f"momentum={momentum:g} needs velocity=(VW, vb), arrays shaped like W and b "
                         "(zeros at the start), which the step updates in place")
    if not isinstance(velocity, (tuple, list)) or len(velocity) != 2:
        raise TypeError(f"velocity must be a pair (VW, vb), got {type(velocity).__name__}")
    VW, vb = velocity
    for name, array, like in (("velocity[0]", VW, W), ("velocity[1]", vb, b)):
        _check_in_place(name, array)
        if array.shape != like.shape or array.dtype != like.dtype:
            raise ValueError(f"{name} must have {_describe(like)} like {'W' if like is W else 'b'}, "
                             f"got {_describe(array)}")
        if np.shares_memory(array, W) or np.shares_memory(array, b):
            raise ValueError(f"{name} must not share memory with W or b")
    if not (np.isfinite(VW).all() and np.isfinite(vb).all()):
        raise ValueError("velocity must be finite; it contains NaN or inf (did training diverge?)")
    return momentum, bool(nesterov), VW, vb


def check_count(name, value):
    """Check an integer ``>= 1`` (a batch size or a thread count); returns an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)
