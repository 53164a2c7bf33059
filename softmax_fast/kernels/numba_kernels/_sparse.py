"""The kernels on CSR rows: ``X`` given as ``(data, indices, indptr)``, scipy.sparse's arrays, a pass costing
O(nnz * k).

Row ``i``'s features are ``data[indptr[i]:indptr[i + 1]] * scale`` at the
columns ``indices[indptr[i]:indptr[i + 1]]`` (sorted, without duplicates, in
``[0, d)``: :mod:`softmax_fast.kernels` checks them once). ``data`` has the
weights' dtype; ``indices`` and ``indptr`` are int32 or int64.

The gradient of a batch touches only the rows of ``W`` whose features occur
in it, and a step adds it to them straight from the batch's rows
(``_csr_scatter``: each stored value's row of ``G``, in row order), with no
pass over ``W``. The L2 penalty would make every step cost O(d * k) (each
step shrinks all of ``W``): ``train_epoch`` keeps ``W`` as ``c * V``
(scikit-learn's scaled weight vector), so that the penalty's step
``W <- (1 - lr * alpha) * W`` is ``c <- (1 - lr * alpha) * c``, and the
data's step is ``V[j] -= (lr / c) * g[j]``; ``V`` becomes ``W`` again
(``V *= c``) at the end of the call, or when ``c`` falls below
``_SMALLEST_SCALE``. Momentum has no such form: its velocity changes every
weight every step, so with ``momentum > 0`` a step costs O(d * k).

The rows of the forward pass run in parallel. An SGD batch's gradient is
summed serially, in row order (a batch's rows are too few to share);
``loss_and_grad_csr``'s, over blocks of thousands of rows, shares the rows of
``W`` among the threads (``_csr_scatter_by_features``), each weight's sum
still in row order: the results do not depend on the thread count.

Calls :mod:`._jit`, :mod:`._update`, :mod:`._rows` and :mod:`._batch` (the options' defaults, the rates).
"""

import numpy as np
from numba import prange

from ._batch import _add_penalty_gradient, _options, _rate, _row_weights
from ._jit import _kernel, _thread_count
from ._rows import _argmax, _softmax_in_place
from ._update import _update_weight

# Below this scale, V is folded back into W: V grows as 1 / c, and its rows must stay far from overflow.
_SMALLEST_SCALE = 1e-9
# loss_and_grad_csr's rows at a time: its scratch (rows, k) stays bounded whatever n.
_GRADIENT_BLOCK_ROWS = 4096


# _row_logits and _finish_row are not inlined: compiled once per type, not into each of their callers (which
# took 12 to 24 s of Numba compiles per pair of dtypes); a call per row costs little against a row's work.
@_kernel()
def _row_logits(data, indices, indptr, i, V, c, b, scale, z):
    """``z (k,) = c * (x_i * scale) @ V + b`` for CSR row ``i``."""
    k = V.shape[1]
    for cls in range(k):
        z[cls] = 0
    for p in range(indptr[i], indptr[i + 1]):
        x = data[p] * scale
        v = V[indices[p]]
        for cls in range(k):
            z[cls] += x * v[cls]
    for cls in range(k):
        z[cls] = c * z[cls] + b[cls]


@_kernel()
def _finish_row(z, label, weight, inv_rows):
    """Turn a row's logits ``z (k,)`` into ``d loss / d z = s * (p - onehot) / m`` in place; returns the row's
    weighted loss ``s * CE`` (float64) and whether its argmax is ``label``."""
    best = _argmax(z)
    label_logit = z[label]
    cross_entropy = _softmax_in_place(z, best) - label_logit
    z[label] -= 1
    for cls in range(z.shape[0]):
        z[cls] *= weight * inv_rows
    return np.float64(weight) * np.float64(cross_entropy), best == label


@_kernel(parallel=True)
def _csr_logits(data, indices, indptr, start, stop, V, c, b, scale, Z):
    """``Z[i - start] = c * (x_i * scale) @ V + b`` for the rows ``start <= i < stop``, rows in parallel."""
    for r in prange(stop - start):
        _row_logits(data, indices, indptr, start + r, V, c, b, scale, Z[r])


@_kernel(parallel=True)
def _finish_rows(Z, y, start, weights, inv_rows, row_loss, row_correct):
    """:func:`_finish_row` for the logits ``Z (m, k)`` of rows ``start..start + m``, rows in parallel; the losses
    and rights go to ``row_loss`` and ``row_correct``."""
    for r in prange(Z.shape[0]):
        row_loss[r], row_correct[r] = _finish_row(Z[r], y[start + r], weights[start + r], inv_rows)


@_kernel()
def _batch_forward(data, indices, indptr, start, y, weights, V, c, b, scale, G):
    """A batch's forward pass, serially (a batch's rows are too few to pay for waking threads): ``G (m, k)``
    becomes ``d loss / d Z`` of the rows ``start..start + m``; returns ``(sum of s * CE, rows right)``."""
    inv_rows = V.dtype.type(1) / G.shape[0]
    loss, n_correct = 0.0, 0
    for r in range(G.shape[0]):
        _row_logits(data, indices, indptr, start + r, V, c, b, scale, G[r])
        row_loss, correct = _finish_row(G[r], y[start + r], weights[start + r], inv_rows)
        loss += row_loss
        n_correct += correct
    return loss, n_correct


@_kernel()
def _csr_scatter(data, indices, indptr, start, G, scale, factor, out):
    """``out[j] += factor * (x_ij * scale) * G[i - start]`` for every stored feature ``j`` of the rows ``start..start
    + m`` (``m`` the rows of ``G``), in row order: the rows of ``X.T @ G`` times ``factor``, added where the rows
    touch ``out`` and nowhere else."""
    for r in range(G.shape[0]):
        i = start + r
        _scatter_values(data, indices, indptr[i], indptr[i + 1], scale, factor, G[r], out)


@_kernel(inline=True)
def _scatter_values(data, indices, first, stop, scale, factor, g, out):
    """``out[indices[p]] += (data[p] * scale * factor) * g`` for the stored values ``first <= p < stop`` of one
    row, in order (``g (k,)``, that row's row of ``G``)."""
    for p in range(first, stop):
        x = data[p] * scale * factor
        row = out[indices[p]]
        for cls in range(g.shape[0]):
            row[cls] += x * g[cls]


@_kernel()
def _lower_bound(indices, lo, hi, j):
    """The first stored value ``p`` of ``[lo, hi)`` whose index is ``>= j``, or ``hi``: ``indices[lo:hi]`` are
    sorted."""
    while lo < hi:
        middle = lo + (hi - lo) // 2
        if indices[middle] < j:
            lo = middle + 1
        else:
            hi = middle
    return lo


@_kernel(parallel=True)
def _csr_scatter_by_features(data, indices, indptr, start, G, scale, out):
    """:func:`_csr_scatter` with ``factor`` 1 and the rows of ``out`` shared among the threads: thread ``t`` of
    ``T`` owns the features ``[t * d / T, (t + 1) * d / T)`` (in blocks of 16 rows of ``out``, whole cache lines
    for any ``k``), finds its values in each row by bisection and adds their terms in row order, so that every
    sum is still the serial one."""
    d, one = out.shape[0], out.dtype.type(1)
    blocks = -(-d // 16)
    shares = min(_thread_count(), blocks)
    for share in prange(shares):
        j0, j1 = min(d, share * blocks // shares * 16), min(d, (share + 1) * blocks // shares * 16)
        for r in range(G.shape[0]):
            i = start + r
            end = _lower_bound(indices, indptr[i], indptr[i + 1], j1)
            _scatter_values(data, indices, _lower_bound(indices, indptr[i], end, j0), end, scale, one, G[r], out)


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
def _csr_step(data, indices, indptr, start, G, scale, V, c, gradient, lr, alpha, momentum, nesterov, VW):
    """The SGD step of :mod:`softmax_fast.kernels.reference` on ``W = c * V`` for the rows ``start..start + m`` whose
    ``d loss / d Z`` is ``G (m, k)``; returns the new ``c``.

    Without momentum, the penalty's shrinking goes to ``c`` (O(1)) and the
    data's step is added straight to the rows of ``V`` the batch touches;
    with momentum, or when ``c`` would fall below ``_SMALLEST_SCALE`` (or not
    stay > 0), ``V`` is folded into ``W``, the data's gradient is summed in
    ``gradient (d, k)`` (scratch) and every weight takes the step.
    """
    shrink = 1 - lr * alpha
    if momentum == 0 and c * shrink >= _SMALLEST_SCALE:
        c = c * shrink
        _csr_scatter(data, indices, indptr, start, G, scale, -lr / c, V)
        return c
    if c != 1:
        _fold(V, c)
        c = V.dtype.type(1)
    gradient[:] = 0
    _csr_scatter(data, indices, indptr, start, G, scale, V.dtype.type(1), gradient)
    for j in range(V.shape[0]):
        for cls in range(V.shape[1]):
            _update_weight(V, VW, (j, cls), gradient[j, cls], lr, alpha, momentum, nesterov)
    return c


@_kernel()
def _csr_train(data, indices, indptr, y, W, b, batch_size, scale, lr, alpha, momentum, nesterov, VW, vb, weights):
    """SGD over the batches of ``batch_size`` CSR rows in order, ``W``, ``b`` (and ``VW``, ``vb``) in place; batch
    ``i`` at the rate ``_rate(lr, i)``. Returns ``(sum of batch losses, n_batches, n_correct)``."""
    n = y.shape[0]
    G = np.empty((min(batch_size, n), W.shape[1]), dtype=W.dtype)
    db = np.empty(W.shape[1], dtype=W.dtype)
    # The whole gradient, for the steps that need it (momentum, a fold): none without them.
    gradient = np.empty((W.shape[0], W.shape[1]) if momentum > 0 or alpha > 0 else (0, W.shape[1]), dtype=W.dtype)
    c = W.dtype.type(1)
    loss_sum = 0.0
    n_batches = 0
    n_correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        m = stop - start
        batch_loss, batch_correct = _batch_forward(data, indices, indptr, start, y, weights, W, c, b, scale, G[:m])
        loss_sum += batch_loss / m
        n_correct += batch_correct
        _bias_gradient(G[:m], db)
        rate = _rate(lr, n_batches)
        c = _csr_step(data, indices, indptr, start, G[:m], scale, W, c, gradient, rate, alpha, momentum, nesterov,
                      VW)
        zero = W.dtype.type(0)
        for cls in range(W.shape[1]):
            _update_weight(b, vb, (cls,), db[cls], rate, zero, momentum, nesterov)
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
    # The rate as train_epoch's array of rates: one compiled _csr_train serves both.
    loss, _, n_correct = _csr_train(data, indices, indptr, y, W, b, y.shape[0], scale, np.full(1, lr, dtype=W.dtype),
                                    *_options(y, W, alpha, momentum, nesterov, VW, vb, sample_weight))
    return loss, n_correct


@_kernel()
def loss_and_grad_csr(data, indices, indptr, y, W, b, scale, alpha=0.0, sample_weight=None):
    """``loss_and_grad`` on the CSR rows ``(data, indices, indptr)``: ``(loss, gW (d, k), gb (k,))``, ``W``, ``b``
    unchanged. ``_GRADIENT_BLOCK_ROWS`` rows at a time, one scratch for all, the sums in row order."""
    weights = _row_weights(sample_weight, y, W)
    n = y.shape[0]
    block = min(n, _GRADIENT_BLOCK_ROWS)
    G = np.empty((block, W.shape[1]), dtype=W.dtype)
    row_loss, row_correct = np.empty(block, dtype=np.float64), np.empty(block, dtype=np.bool_)
    gradient, db, block_db = np.zeros_like(W), np.zeros_like(b), np.empty_like(b)
    one = W.dtype.type(1)
    loss_sum = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        m = stop - start
        _csr_logits(data, indices, indptr, start, stop, W, one, b, scale, G[:m])
        _finish_rows(G[:m], y, start, weights, one / n, row_loss[:m], row_correct[:m])
        for r in range(m):
            loss_sum += row_loss[r]
        _csr_scatter_by_features(data, indices, indptr, start, G[:m], scale, gradient)
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
