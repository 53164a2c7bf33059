"""Train with the example extension on synthetic pixels and check it against softmax_fast's NumPy reference.

    python check.py      (after python setup.py build_ext --inplace)
"""

import numpy as np
from scipy import sparse

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

# The same pixels scaled to [0, 1] as CSR rows (a third of them dropped to zero), with an L2 penalty.
X_sparse = sparse.csr_array(np.where(rng.random((n, d)) < 1 / 3, 0, X / 255).astype(np.float32))
W_sparse, b_sparse = W_reference.copy(), b_reference.copy()
sparse_losses = softmax_user.train_csr_with_decay(X_sparse.data, X_sparse.indices, X_sparse.indptr, y, W_sparse,
                                                  b_sparse, lr=0.2, decay=0.5, alpha=1e-3, batch_size=32, epochs=3)
for epoch in range(3):
    loss, _ = reference.train_epoch(X_sparse, y, W_reference, b_reference, 0.2 / (1 + 0.5 * epoch), 32, alpha=1e-3)
    np.testing.assert_allclose(sparse_losses[epoch], loss, rtol=1e-4)
np.testing.assert_allclose(W_sparse, W_reference, rtol=1e-4, atol=1e-5)
np.testing.assert_allclose(b_sparse, b_reference, rtol=1e-4, atol=1e-5)
print(f"softmax_user's CSR training matches the NumPy reference over 3 epochs; losses "
      f"{np.round(sparse_losses, 4).tolist()}")
