"""Call softmax_fast's Numba kernels from your own ``@njit`` code.

    python examples/numba_user.py

The training loop below shuffles the rows and decays the learning rate inside
one jitted function: the kernels of :mod:`softmax_fast.kernels.numba_kernels`
take only arrays and numbers, so Numba compiles them into it. They do not
check their arguments (the Python API in :mod:`softmax_fast.kernels` does):
X must be C-contiguous, y np.intp labels in 0..k-1, and lr and scale of the
weights' dtype.
"""

import numpy as np
from numba import njit

from softmax_fast.kernels import get_backend
from softmax_fast.kernels.numba_kernels import predict, train_epoch


@njit(cache=True)
def train_shuffled_with_decay(X, y, W, b, lr, decay, batch_size, epochs, seed):
    """Train ``W (d, k)`` and ``b (k,)`` in place; each epoch visits the rows in a new order.

    Returns the mean batch loss of each epoch, ``(epochs,)`` float64.
    """
    np.random.seed(seed)
    losses = np.empty(epochs)
    one = W.dtype.type(1)
    for epoch in range(epochs):
        order = np.random.permutation(X.shape[0])
        rate = W.dtype.type(lr) / (one + W.dtype.type(decay) * epoch)
        losses[epoch], _ = train_epoch(X[order], y[order], W, b, rate, batch_size, one)
    return losses


def main():
    rng = np.random.default_rng(0)
    n, d, k = 2000, 32, 5
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n).astype(np.intp)
    X = (centers[y] + rng.normal(scale=1.5, size=(n, d))).astype(np.float32)
    W = (np.random.RandomState(42).randn(d, k) * 0.01).astype(np.float32)
    b = np.zeros(k, dtype=np.float32)

    losses = train_shuffled_with_decay(X, y, W, b, 0.2, 0.1, 64, 5, 7)
    accuracy = np.mean(predict(X, W, b, np.float32(1)) == y)
    print("epoch losses:", np.round(losses, 4).tolist())
    print(f"training accuracy {accuracy:.3f}")

    # The same loop on the NumPy reference, with the same row orders, gives the same weights.
    W_reference = (np.random.RandomState(42).randn(d, k) * 0.01).astype(np.float32)
    b_reference = np.zeros(k, dtype=np.float32)
    orders = _orders(n, 5, 7)
    reference = get_backend("numpy")
    for epoch, order in enumerate(orders):
        reference.train_epoch(X[order], y[order], W_reference, b_reference, 0.2 / (1 + 0.1 * epoch), 64)
    print(f"largest difference from the NumPy reference: {np.abs(W - W_reference).max():.2g}")


@njit(cache=True)
def _orders(n, epochs, seed):
    """The row orders that train_shuffled_with_decay draws (Numba's generator, seeded the same way)."""
    np.random.seed(seed)
    orders = np.empty((epochs, n), dtype=np.intp)
    for epoch in range(epochs):
        orders[epoch] = np.random.permutation(n)
    return orders


if __name__ == "__main__":
    main()
