"""Train with the example extension on synthetic pixels and check it against softmax_fast's NumPy reference.

    python check.py      (after python setup.py build_ext --inplace)
"""

import numpy as np

import softmax_fast
import softmax_user
from softmax_fast.kernels import get_backend

rng = np.random.default_rng(0)
n, d, k = 1000, 64, 4
templates = rng.integers(0, 256, size=(k, d))
y = rng.integers(0, k, size=n).astype(np.intp)
X = np.clip(templates[y] + rng.integers(-80, 81, size=(n, d)), 0, 255).astype(np.uint8)
W = (np.random.RandomState(42).randn(d, k) * 0.01).astype(np.float32)
b = np.zeros(k, dtype=np.float32)
W_reference, b_reference = W.copy(), b.copy()

losses = softmax_user.train_with_decay(X, y, W, b, lr=0.2, decay=0.5, batch_size=32, epochs=3)

reference = get_backend("numpy")
for epoch in range(3):
    loss, _ = reference.train_epoch(X, y, W_reference, b_reference, 0.2 / (1 + 0.5 * epoch), 32, scale=1 / 255)
    np.testing.assert_allclose(losses[epoch], loss, rtol=1e-4)
np.testing.assert_allclose(W, W_reference, rtol=1e-4, atol=1e-5)
np.testing.assert_allclose(b, b_reference, rtol=1e-4, atol=1e-5)
accuracy = np.mean(softmax_user.predict(X, W, b) == y)
assert accuracy > 0.9, accuracy
print(f"softmax_user matches the NumPy reference over 3 epochs (softmax_fast {softmax_fast.__version__} "
      f"from {softmax_fast.get_include()}); losses {np.round(losses, 4).tolist()}, accuracy {accuracy:.3f}")
