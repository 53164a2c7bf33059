"""Train softmax_fast on your own ``(X, y)`` arrays, from plain Python.

    python examples/train_own_data.py             # synthetic data
    python examples/train_own_data.py data.npz    # arrays X and y of your own

X is ``(n_samples, n_features)`` of any real dtype (uint8 is read as pixel
intensities and scaled by 1/255 without a copy); y holds one label per row, of
any kind (integers, strings). A quarter of the rows is held out for testing.
"""

import sys

import numpy as np

from softmax_fast import SoftmaxRegression
from softmax_fast.kernels import get_backend


def synthetic_data(n=3000, d=20, k=3, seed=0):
    """Three overlapping Gaussian clusters with string labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.3, size=(k, d))
    indices = rng.integers(0, k, size=n)
    X = centers[indices] + rng.normal(size=(n, d))
    return X, np.array(["cat", "dog", "owl"])[indices]


def main(argv):
    if argv:
        with np.load(argv[0], allow_pickle=False) as data:
            X, y = data["X"], data["y"]
    else:
        X, y = synthetic_data()
    split = len(X) * 3 // 4
    model = SoftmaxRegression(lr=0.1, epochs=20, batch_size=64, shuffle=True, random_state=0)
    model.fit(X[:split], y[:split], validation_data=(X[split:], y[split:]))
    last = model.history_[-1]
    print(f"classes {model.classes_.tolist()}, {model.n_features_in_} features, backend {get_backend('auto').name}")
    print(f"after {model.n_iter_} epochs: train loss {last['train_loss']:.4f}, "
          f"test loss {last['test_loss']:.4f}, test accuracy {model.score(X[split:], y[split:]):.3f}")
    print("first test predictions:", model.predict(X[split:split + 5]).tolist())


if __name__ == "__main__":
    main(sys.argv[1:])
