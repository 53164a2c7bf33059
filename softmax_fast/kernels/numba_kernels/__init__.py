"""Numba kernels: the ``@njit`` backend.

Same contract as :mod:`softmax_fast.kernels.reference`; they run on
``numba.get_num_threads()`` threads (set it with ``numba.set_num_threads``,
outside jitted code: calling it inside would stop Numba from caching the
kernel). The functions are reached from Python through
:mod:`softmax_fast.kernels`, which has already checked shapes, dtypes, C order
and the label range; nothing here checks them again. They take no Python
objects, so a user's own ``@njit`` code can call them directly with arrays that
meet the contract; ``scale`` and ``lr`` should then be of the weights' dtype.

Each training kernel and prediction has a CSR twin for sparse ``X``, given as
scipy.sparse's three arrays ``(data, indices, indptr)`` (``data`` of the
weights' dtype, int32 or int64 indices, sorted and unique within each row)
in place of ``X``, with the same options; a pass costs O(nnz * k)::

    loss_and_grad_csr(data, indices, indptr, y, W, b, scale, ...)
    sgd_step_csr(data, indices, indptr, y, W, b, lr, scale, ...)
    train_epoch_csr(data, indices, indptr, y, W, b, lr, batch_size, scale, ...)
    predict_proba_csr(data, indices, indptr, W, b, scale)
    predict_csr(data, indices, indptr, W, b, scale)

The training kernels take the reference's options as trailing parameters
with defaults (each default gives plain SGD, bitwise)::

    loss_and_grad(X, y, W, b, scale, alpha=0.0, sample_weight=None)
        -> (loss, gW (d, k), gb (k,))
    sgd_step(X, y, W, b, lr, scale, alpha=0.0, momentum=0.0, nesterov=False,
             VW=None, vb=None, sample_weight=None) -> (loss, n_correct)
    train_epoch(X, y, W, b, lr, batch_size, scale, alpha=0.0, momentum=0.0,
                nesterov=False, VW=None, vb=None, sample_weight=None)
        -> (mean_loss, accuracy)

``alpha`` and ``momentum`` are converted to the weights' dtype; ``VW (d,
k)`` and ``vb (k,)``, the velocities (zeros at the start), are updated in
place and needed, both, with ``momentum > 0`` (None then raises
ValueError); ``sample_weight (n,)`` of the weights' dtype, ones if None;
``train_epoch``'s ``lr`` is one rate or an array of one per batch. Given
all (as :mod:`softmax_fast.kernels` gives them), each kernel compiles once
per pair of dtypes; leaving some out compiles a specialisation of its own.
The penalty and the momentum are applied where each weight is updated, with
no pass of their own over the weights.

Parallel work is split so that no sum depends on how it is shared among
threads: chunks of rows for the forward pass, vectors of features (or, for
the GEMMs, tiles of them) for the weight gradient, every reduction over rows
done in row order by one thread, in groups fixed by the data alone. The
results are bitwise identical for any thread count.

The modules, in the order they depend on each other (each calls only modules
above it):

- ``_jit``: how kernels are compiled (``_kernel``), cached on disk (stamped
  with the source of the whole package) and threaded; the sizes every layer
  shares (``VECTOR_BYTES``, ``NARROW_CLASSES``).
- ``_vectors``: LLVM vector intrinsics on vectors of ``VECTOR_BYTES``, and
  64-byte-aligned arrays.
- ``_update``: one weight's SGD step with the penalty and the momentum
  (calls only ``_jit``).
- ``_exp``: the exponential of a vector.
- ``_rows``: a row's argmax, exponentials and softmax (calls ``_exp``).
- ``_narrow``: up to ``NARROW_CLASSES`` classes: packed weights, nonzero
  masks of rows, logits a row at a time, the weight gradient a vector of
  features at a time (calls ``_vectors``, not ``_exp`` or ``_rows``).
- ``_gemm``: more classes: logits and weight gradient as GEMMs, the
  training step fused into the gradient's store (calls ``_vectors`` and
  ``_update``, not ``_exp``, ``_rows`` or ``_narrow``).
- ``_batch``: a batch's SGD step and an epoch's batches, on ``_rows`` and on
  ``_narrow`` or ``_gemm`` by the count of classes (the narrow path's and the
  bias's updates by ``_update``).
- ``_public``: the seven kernels below, on ``_batch``.
- ``_sparse``: the CSR twins, on ``_rows``, ``_update`` and ``_batch``'s
  options: the gradient written to the rows of ``W`` a batch touches, and
  the penalty as a scale of ``W`` (see the module).
"""

from ._public import cross_entropy, loss_and_grad, predict, predict_proba, sgd_step, softmax, train_epoch
from ._sparse import loss_and_grad_csr, predict_csr, predict_proba_csr, sgd_step_csr, train_epoch_csr

__all__ = ["softmax", "cross_entropy", "loss_and_grad", "sgd_step", "train_epoch", "predict_proba", "predict",
           "loss_and_grad_csr", "sgd_step_csr", "train_epoch_csr", "predict_proba_csr", "predict_csr"]
