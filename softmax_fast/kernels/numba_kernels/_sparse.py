"""The kernels on CSR rows: ``X`` given as ``(data, indices, indptr)``, scipy.sparse's arrays, a pass costing
O(nnz * k).

Row ``i``'s features are ``data[indptr[i]:indptr[i + 1]] * scale`` at the
columns ``indices[indptr[i]:indptr[i + 1]]`` (sorted, without duplicates, in
``[0, d)``: :mod:`softmax_fast.kernels` checks them once). ``data`` has the
weights' dtype; ``indices`` and ``indptr`` are int32 or int64.

The gradient of a batch touches only the rows of ``W`` whose features occur
in it: they are summed into a scratch ``(d, k)`` that only those rows of are
written, then read and zeroed. The L2 penalty would make every step cost
O(d * k) (each step shrinks all of ``W``): ``train_epoch`` keeps ``W`` as
``c * V`` (scikit-learn's scaled weight vector), so that the penalty's step
``W <- (1 - lr * alpha) * W`` is ``c <- (1 - lr * alpha) * c``, and the
data's step on a touched row is ``V[j] -= lr * g[j] / c``; ``V`` becomes ``W``
again (``V *= c``) at the end of the call, or when ``c`` falls below
``_SMALLEST_SCALE``. Momentum has no such form: its velocity changes every
weight every step, so with ``momentum > 0`` a step costs O(d * k).

The rows of the forward pass run in parallel; the gradient's sums over rows
run serially in row order: the results do not depend on the thread count.

Calls :mod:`._jit`, :mod:`._update`, :mod:`._rows` and :mod:`._batch` (the options' defaults, the rates).
"""

import numpy as np
from numba import prange

from ._batch import _add_penalty_gradient, _options, _rate, _row_weights
from ._jit import _kernel
from ._rows import _argmax, _softmax_in_place
from ._update import _update_weight

# Below this scale, V is folded back into W: V grows as 1 / c, and its rows must stay far from overflow.
_SMALLEST_SCALE = 1e-9
# loss_and_grad_csr's rows at a time: its scratch (rows, k) stays bounded whatever n.
_GRADIENT_BLOCK_ROWS = 4096


@_kernel(parallel=True)
def _csr_logits(data, indices, indptr, start, stop, V, c, b, scale, Z):
    """``Z[i - start] = c * (x_i * scale) @ V + b`` for the rows ``start <= i < stop``, rows in parallel."""
    k = V.shape[1]
    for r in prange(stop - start):
        i = start + r
        for cls in range(k):
            Z[r, cls] = 0
        for p in range(indptr[i], indptr[i + 1]):
            x = data[p] * scale
            j = indices[p]
            for cls in range(k):
                Z[r, cls] += x * V[j, cls]
        for cls in range(k):
            Z[r, cls] = c * Z[r, cls] + b[cls]


@_kernel(parallel=True)
def _finish_rows(Z, y, start, weights, inv_rows, row_loss, row_correct):
    """Turn the logits ``Z (m, k)`` of rows ``start..start + m`` into ``d loss / d Z``: ``s * (P - Y) / m``, in
    place; ``row_loss[r] = s * CE`` (float64) and whether each row's argmax is its label."""
    for r in prange(Z.shape[0]):
        label = y[start + r]
        best = _argmax(Z[r])
        row_correct[r] = best == label
        label_logit = Z[r, label]
        cross_entropy = _softmax_in_place(Z[r], best) - label_logit
        weight = weights[start + r]
        row_loss[r] = np.float64(weight) * np.float64(cross_entropy)
        Z[r, label] -= 1
        for cls in range(Z.shape[1]):
            Z[r, cls] *= weight * inv_rows


@_kernel()
def _csr_gradient(data, indices, indptr, start, G, scale, gradient, touched, is_touched):
    """Add ``(x_i * scale) * G[i - start]`` to ``gradient[j]`` for every stored feature ``j`` of the rows
    ``start..start + m``, in row order; list the rows of ``gradient`` it writes in ``touched`` (``is_touched``
    marks them); returns their count. Rows of ``gradient`` not yet touched must be zero."""
    k = G.shape[1]
    count = 0
    for r in range(G.shape[0]):
        i = start + r
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if not is_touched[j]:
                is_touched[j] = True
                touched[count] = j
                count += 1
            x = data[p] * scale
            for cls in range(k):
                gradient[j, cls] += x * G[r, cls]
    return count


@_kernel()
def _bias_gradient(G, db):
    """``db = G.sum(axis=0)``, summed in row order."""
    db[:] = 0
    for r in range(G.shape[0]):
        for cls in range(G.shape[1]):
            db[cls] += G[r, cls]


@_kernel()
def _fold(V, c):
    """``V *= c``: the scaled weights become the weights again."""
    for j in range(V.shape[0]):
        for cls in range(V.shape[1]):
            V[j, cls] *= c


@_kernel()
def _csr_step(V, c, gradient, touched, count, is_touched, db, b, lr, alpha, momentum, nesterov, VW, vb):
    """The SGD step of :mod:`softmax_fast.kernels.reference` on ``W = c * V`` for the data gradient whose rows
    ``touched[:count]`` are in ``gradient`` (those rows zeroed after); returns the new ``c``.

    Without momentum, the penalty's shrinking goes to ``c`` (O(1)) and only
    the touched rows of ``V`` move; with momentum, or when ``c`` would fall
    below ``_SMALLEST_SCALE`` (or not stay > 0), ``V`` is folded into ``W``
    and every weight takes the step.
    """
    d, k = V.shape
    shrink = 1 - lr * alpha
    if momentum == 0 and c * shrink >= _SMALLEST_SCALE:
        c = c * shrink
        for t in range(count):
            j = touched[t]
            for cls in range(k):
                V[j, cls] -= lr * gradient[j, cls] / c
    else:
        if c != 1:
            _fold(V, c)
            c = V.dtype.type(1)
        for j in range(d):
            for cls in range(k):
                _update_weight(V, VW, (j, cls), gradient[j, cls], lr, alpha, momentum, nesterov)
    for t in range(count):
        j = touched[t]
        is_touched[j] = False
        for cls in range(k):
            gradient[j, cls] = 0
    zero = V.dtype.type(0)
    for cls in range(k):
        _update_weight(b, vb, (cls,), db[cls], lr, zero, momentum, nesterov)
    return c


@_kernel()
def _csr_scratch(rows, W):
    """The scratch of SGD or a gradient over ``rows`` CSR rows at a time: ``G (rows, k)``, the rows' float64 losses
    and whether they are right, the weight gradient ``(d, k)`` (zeros), the list of its touched rows and their
    marks (none), and ``db (k,)``."""
    d, k = W.shape
    return (np.empty((rows, k), dtype=W.dtype), np.empty(rows, dtype=np.float64), np.empty(rows, dtype=np.bool_),
            np.zeros((d, k), dtype=W.dtype), np.empty(d, dtype=np.intp), np.zeros(d, dtype=np.bool_),
            np.empty(k, dtype=W.dtype))


@_kernel()
def _csr_train(data, indices, indptr, y, W, b, batch_size, scale, lr, alpha, momentum, nesterov, VW, vb, weights):
    """SGD over the batches of ``batch_size`` CSR rows in order, ``W``, ``b`` (and ``VW``, ``vb``) in place; batch
    ``i`` at the rate ``_rate(lr, i)``. Returns ``(sum of batch losses, n_batches, n_correct)``."""
    n = y.shape[0]
    G, row_loss, row_correct, gradient, touched, is_touched, db = _csr_scratch(min(batch_size, n), W)
    c = W.dtype.type(1)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        _csr_logits(data, indices, indptr, start, stop, W, c, b, scale, G[:m])
        _finish_rows(G[:m], y, start, weights, W.dtype.type(1) / m, row_loss[:m], row_correct[:m])
        batch_loss = 0.0
        for r in range(m):
            batch_loss += row_loss[r]
            n_correct += row_correct[r]
        loss_sum += batch_loss / m
        count = _csr_gradient(data, indices, indptr, start, G[:m], scale, gradient, touched, is_touched)
        _bias_gradient(G[:m], db)
        c = _csr_step(W, c, gradient, touched, count, is_touched, db, b, _rate(lr, n_batches), alpha, momentum,
                      nesterov, VW, vb)
        n_batches += 1
    if c != 1:
        _fold(W, c)
    return loss_sum, n_batches, n_correct


@_kernel()
def train_epoch_csr(data, indices, indptr, y, W, b, lr, batch_size, scale, alpha=0.0, momentum=0.0, nesterov=False,
                    VW=None, vb=None, sample_weight=None):
    """``train_epoch`` on the CSR rows ``(data, indices, indptr)``: SGD over batches of ``batch_size`` rows in
    order, ``lr`` a rate or one per batch, ``W``, ``b`` (and ``VW``, ``vb``) in place; ``(mean batch loss,
    accuracy)``."""
    loss_sum, n_batches, n_correct = _csr_train(
        data, indices, indptr, y, W, b, batch_size, scale, lr,
        *_options(y, W, alpha, momentum, nesterov, VW, vb, sample_weight))
    return loss_sum / n_batches, n_correct / y.shape[0]


@_kernel()
def sgd_step_csr(data, indices, indptr, y, W, b, lr, scale, alpha=0.0, momentum=0.0, nesterov=False, VW=None,
                 vb=None, sample_weight=None):
    """``sgd_step`` on the CSR rows ``(data, indices, indptr)``, one batch, ``W``, ``b`` (and ``VW``, ``vb``) in
    place; ``(loss, n_correct)``."""
    loss, _, n_correct = _csr_train(data, indices, indptr, y, W, b, y.shape[0], scale, lr,
                                    *_options(y, W, alpha, momentum, nesterov, VW, vb, sample_weight))
    return loss, n_correct


@_kernel()
def loss_and_grad_csr(data, indices, indptr, y, W, b, scale, alpha=0.0, sample_weight=None):
    """``loss_and_grad`` on the CSR rows ``(data, indices, indptr)``: ``(loss, gW (d, k), gb (k,))``, ``W``, ``b``
    unchanged. ``_GRADIENT_BLOCK_ROWS`` rows at a time, one scratch for all, the sums in row order."""
    weights = _row_weights(sample_weight, y, W)
    n = y.shape[0]
    block = min(n, _GRADIENT_BLOCK_ROWS)
    G, row_loss, row_correct, gradient, touched, is_touched, block_db = _csr_scratch(block, W)
    db = np.zeros_like(block_db)
    one = W.dtype.type(1)
    loss_sum = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        m = stop - start
        _csr_logits(data, indices, indptr, start, stop, W, one, b, scale, G[:m])
        _finish_rows(G[:m], y, start, weights, one / n, row_loss[:m], row_correct[:m])
        for r in range(m):
            loss_sum += row_loss[r]
        _csr_gradient(data, indices, indptr, start, G[:m], scale, gradient, touched, is_touched)
        _bias_gradient(G[:m], block_db)
        db += block_db
    _add_penalty_gradient(gradient, W, alpha)
    return loss_sum / n, gradient, db


@_kernel(parallel=True)
def predict_proba_csr(data, indices, indptr, W, b, scale):
    """Class probabilities ``(n, k)`` of the CSR rows ``(data, indices, indptr)`` times ``scale``, in ``W``'s
    dtype."""
    n = indptr.shape[0] - 1
    P = np.empty((n, W.shape[1]), dtype=W.dtype)
    _csr_logits(data, indices, indptr, 0, n, W, W.dtype.type(1), b, scale, P)
    for i in prange(n):
        _softmax_in_place(P[i], _argmax(P[i]))
    return P


@_kernel(parallel=True)
def predict_csr(data, indices, indptr, W, b, scale):
    """Index of each CSR row's largest logit, ``(n,)`` np.intp (the first of ties)."""
    n = indptr.shape[0] - 1
    Z = np.empty((n, W.shape[1]), dtype=W.dtype)
    _csr_logits(data, indices, indptr, 0, n, W, W.dtype.type(1), b, scale, Z)
    labels = np.empty(n, dtype=np.intp)
    for i in prange(n):
        labels[i] = _argmax(Z[i])
    return labels
