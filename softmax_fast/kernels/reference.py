"""NumPy reference kernels: the specification every compiled backend is tested against.

Written to be obviously right rather than fast. The arguments have already been
checked by :mod:`softmax_fast.kernels._validation` (shapes, dtypes, C order, label
range), so nothing here checks them again.

Notation, shared by all backends:

* ``X`` ``(n, d)``: features, float32/float64 like ``W``, or uint8 (raw pixels);
  the effective features are ``X * scale``.
* ``y`` ``(n,)``: integer class labels in ``[0, k)``.
* ``W`` ``(d, k)`` and ``b`` ``(k,)``: weights and bias, float32 or float64.
* ``Z = (X * scale) @ W + b`` ``(n, k)``: logits. ``P = softmax(Z)``: probabilities.
* ``lr`` and ``scale`` arrive as scalars of the weights' dtype, so float32
  models compute in float32; so do ``alpha`` and ``momentum``.

Sparse ``X``: the ``*_csr`` kernels take a CSR matrix's three arrays ``(data,
indices, indptr)`` in place of ``X`` and are the same formulas on
``scipy.sparse.csr_array((data, indices, indptr))``, whose products with ``W``
and ``G`` are scipy's (the penalty still shrinks every weight).

The training options (every one at its default gives plain SGD, bitwise):

* ``sample_weight`` ``(n,)``: row weights ``s_i >= 0`` of the weights' dtype
  (ones when the caller gave none). A batch ``B`` of ``|B|`` rows has the data
  loss ``L_B = (1/|B|) * sum_i s_i * CE_i``, divided by the row count and not by
  the sum of the weights: weights of ``c`` on every row act as ``lr * c``.
* ``alpha >= 0``: the L2 penalty. The objective is ``L_B + (alpha/2) * ||W||_F^2``
  (the bias is not penalized), so the gradients are
  ``gW = X_B.T @ (s * (P - Y)) / |B| + alpha * W`` and
  ``gb = sum_i s_i * (P_i - Y_i) / |B|``. The loss the kernels return is ``L_B``.
* ``momentum = mu`` in ``[0, 1)`` and ``nesterov`` (PyTorch's ``SGD`` with no
  dampening): the velocities ``VW (d, k)`` and ``vb (k,)`` start at zero and
  follow ``V = mu * V + g``; the step is ``g + mu * V`` with ``nesterov``, else
  ``V``; then ``W -= lr * step_W`` and ``b -= lr * step_b``. With ``mu = 0`` the
  step is ``g`` and the velocities (then empty arrays) are not touched.
"""

import numpy as np


def softmax(Z, out):
    """Row-wise softmax of ``Z`` ``(n, k)`` written into ``out`` (may be ``Z``); returns ``out``.

    Subtracting the row maximum first keeps ``exp`` from overflowing; it does not
    change the result because softmax is invariant to a constant added to a row.
    """
    np.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _logsumexp(Z):
    """``log(sum(exp(Z), axis=1))`` ``(n,)``, computed without overflow."""
    row_max = Z.max(axis=1)
    return row_max + np.log(np.exp(Z - row_max[:, None]).sum(axis=1))


def _row_cross_entropy(Z, y):
    """``CE_i = logsumexp(Z[i]) - Z[i, y[i]]`` ``(n,)``: taken from the logits, so it never evaluates ``log(0)``."""
    return _logsumexp(Z) - Z[np.arange(len(y)), y]


def cross_entropy(Z, y):
    """Mean over rows of ``logsumexp(Z[i]) - Z[i, y[i]]``, as a float summed in float64."""
    return float(np.mean(_row_cross_entropy(Z, y), dtype=np.float64))


def _features(X, dtype, scale):
    """``X * scale`` as a new ``(n, d)`` array of the weights' ``dtype``."""
    return X.astype(dtype) * scale


def _data_loss(Z, y, sample_weight):
    """``L_B = (1/|B|) * sum_i s_i * CE_i`` from the logits ``Z (|B|, k)``, as a float summed in float64."""
    return float(np.mean(sample_weight.astype(np.float64) * _row_cross_entropy(Z, y), dtype=np.float64))


def _gradients(features, Z, y, W, alpha, sample_weight):
    """``(gW (d, k), gb (k,))``: the gradients of ``L_B + (alpha/2) * ||W||^2``.

    ``d L_B / d Z = s * (P - onehot(y)) / |B|``: divided by the actual batch's
    row count, so a short last batch divides by its own length.
    """
    n = len(y)
    G = softmax(Z, np.empty_like(Z))
    G[np.arange(n), y] -= 1
    G *= sample_weight[:, None]
    G /= n
    return features.T @ G + alpha * W, G.sum(axis=0)


def _momentum_step(gradient, velocity, momentum, nesterov):
    """The step for ``gradient``: ``velocity = mu * velocity + gradient`` (in place), then
    ``gradient + mu * velocity`` with ``nesterov``, else ``velocity``; ``gradient`` itself when ``mu = 0``."""
    if momentum == 0:
        return gradient
    velocity *= momentum
    velocity += gradient
    return gradient + momentum * velocity if nesterov else velocity


def loss_and_grad(X, y, W, b, scale, alpha, sample_weight):
    """The data loss ``L_B`` of the batch and the objective's gradients: ``(loss, gW (d, k), gb (k,))``."""
    features = _features(X, W.dtype, scale)
    Z = features @ W + b
    gW, gb = _gradients(features, Z, y, W, alpha, sample_weight)
    return _data_loss(Z, y, sample_weight), gW, gb


def sgd_step(X, y, W, b, lr, scale, alpha, momentum, nesterov, VW, vb, sample_weight):
    """One SGD step on one batch; updates ``W``, ``b`` and (with ``momentum > 0``) ``VW``, ``vb`` in place.

    Returns ``(loss, n_correct)``: the data loss ``L_B`` and the rows whose
    argmax is their label, both measured on the logits before the update. Ties
    in the prediction go to the lowest class index, as ``np.argmax`` does.
    """
    features = _features(X, W.dtype, scale)
    Z = features @ W + b
    loss = _data_loss(Z, y, sample_weight)
    n_correct = int(np.count_nonzero(Z.argmax(axis=1) == y))
    gW, gb = _gradients(features, Z, y, W, alpha, sample_weight)
    W -= lr * _momentum_step(gW, VW, momentum, nesterov)
    b -= lr * _momentum_step(gb, vb, momentum, nesterov)
    return loss, n_correct


def train_epoch(X, y, W, b, lr, batch_size, scale, alpha, momentum, nesterov, VW, vb, sample_weight):
    """One epoch of SGD over the batches ``X[i:i + batch_size]`` in order; ``W``, ``b``, ``VW``, ``vb`` in place.

    ``lr`` ``(n_batches,)``: the rate of each batch. Returns ``(mean_loss,
    accuracy)``: the mean of the batch losses and the fraction of rows
    predicted right before their batch's update.
    """
    batch_losses = []
    n_correct = 0
    for batch_index, start in enumerate(range(0, len(y), batch_size)):
        batch = slice(start, start + batch_size)
        loss, batch_correct = sgd_step(X[batch], y[batch], W, b, lr[batch_index], scale, alpha, momentum, nesterov,
                                       VW, vb, sample_weight[batch])
        batch_losses.append(loss)
        n_correct += batch_correct
    return float(np.mean(batch_losses)), n_correct / len(y)


def predict_proba(X, W, b, scale):
    """Class probabilities ``(n, k)`` of the weights' dtype."""
    Z = _features(X, W.dtype, scale) @ W + b
    return softmax(Z, Z)


def predict(X, W, b, scale):
    """Most probable class of each row, ``(n,)`` ``np.intp``; ties go to the lowest index."""
    Z = _features(X, W.dtype, scale) @ W + b
    return Z.argmax(axis=1)


def _csr_rows(data, indices, indptr, W):
    """The CSR rows ``(data, indices, indptr)`` of ``W``'s features as a ``scipy.sparse.csr_array``."""
    from scipy import sparse

    return sparse.csr_array((data, indices, indptr), shape=(len(indptr) - 1, W.shape[0]))


def loss_and_grad_csr(data, indices, indptr, y, W, b, scale, alpha, sample_weight):
    """:func:`loss_and_grad` of the CSR rows ``(data, indices, indptr)``."""
    return loss_and_grad(_csr_rows(data, indices, indptr, W), y, W, b, scale, alpha, sample_weight)


def sgd_step_csr(data, indices, indptr, y, W, b, lr, scale, alpha, momentum, nesterov, VW, vb, sample_weight):
    """:func:`sgd_step` on the CSR rows ``(data, indices, indptr)``."""
    return sgd_step(_csr_rows(data, indices, indptr, W), y, W, b, lr, scale, alpha, momentum, nesterov, VW, vb,
                    sample_weight)


def train_epoch_csr(data, indices, indptr, y, W, b, lr, batch_size, scale, alpha, momentum, nesterov, VW, vb,
                    sample_weight):
    """:func:`train_epoch` on the CSR rows ``(data, indices, indptr)``."""
    return train_epoch(_csr_rows(data, indices, indptr, W), y, W, b, lr, batch_size, scale, alpha, momentum,
                       nesterov, VW, vb, sample_weight)


def predict_proba_csr(data, indices, indptr, W, b, scale):
    """:func:`predict_proba` of the CSR rows ``(data, indices, indptr)``."""
    return predict_proba(_csr_rows(data, indices, indptr, W), W, b, scale)


def predict_csr(data, indices, indptr, W, b, scale):
    """:func:`predict` of the CSR rows ``(data, indices, indptr)``."""
    return predict(_csr_rows(data, indices, indptr, W), W, b, scale)
