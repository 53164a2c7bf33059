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
  models compute in float32.
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


def cross_entropy(Z, y):
    """Mean over rows of ``logsumexp(Z[i]) - Z[i, y[i]]``, as a float.

    Taken from the logits, so it never evaluates ``log(0)``; summed in float64.
    """
    per_row = _logsumexp(Z) - Z[np.arange(len(y)), y]
    return float(np.mean(per_row, dtype=np.float64))


def _features(X, dtype, scale):
    """``X * scale`` as a new ``(n, d)`` array of the weights' ``dtype``."""
    return X.astype(dtype) * scale


def _gradients(features, Z, y):
    """Gradients of the batch's mean cross-entropy with respect to ``W`` and ``b``.

    ``d loss / d Z = (P - onehot(y)) / n``: the mean over the actual batch, so a
    short last batch divides by its own length.
    """
    n = len(y)
    G = softmax(Z, np.empty_like(Z))
    G[np.arange(n), y] -= 1
    G /= n
    return features.T @ G, G.sum(axis=0)


def loss_and_grad(X, y, W, b, scale):
    """Mean cross-entropy of the batch and its gradients: ``(loss, dW (d, k), db (k,))``."""
    features = _features(X, W.dtype, scale)
    Z = features @ W + b
    dW, db = _gradients(features, Z, y)
    return cross_entropy(Z, y), dW, db


def sgd_step(X, y, W, b, lr, scale):
    """One SGD step on one batch; updates ``W`` and ``b`` in place.

    Returns ``(loss, n_correct)``, both measured on the logits before the update.
    Ties in the prediction go to the lowest class index, as ``np.argmax`` does.
    """
    features = _features(X, W.dtype, scale)
    Z = features @ W + b
    loss = cross_entropy(Z, y)
    n_correct = int(np.count_nonzero(Z.argmax(axis=1) == y))
    dW, db = _gradients(features, Z, y)
    W -= lr * dW
    b -= lr * db
    return loss, n_correct


def train_epoch(X, y, W, b, lr, batch_size, scale):
    """One epoch of SGD over the batches ``X[i:i + batch_size]`` in order; ``W`` and ``b`` in place.

    Returns ``(mean_loss, accuracy)``: the mean of the batch losses and the
    fraction of rows predicted right before their batch's update.
    """
    batch_losses = []
    n_correct = 0
    for start in range(0, len(y), batch_size):
        batch = slice(start, start + batch_size)
        loss, batch_correct = sgd_step(X[batch], y[batch], W, b, lr, scale)
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
