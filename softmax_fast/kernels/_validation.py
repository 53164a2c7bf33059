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
"""

import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def check_features(X, W):
    """Check ``X (n, d)`` against ``W (d, k)``: dtype uint8 or that of ``W``; returns it C-ordered."""
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


def check_count(name, value):
    """Check an integer ``>= 1`` (a batch size or a thread count); returns an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)
