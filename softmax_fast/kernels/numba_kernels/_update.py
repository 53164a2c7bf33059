"""The SGD update of one weight with the training options: the L2 penalty, the momentum and the step.

The formulas are :mod:`softmax_fast.kernels.reference`'s. ``_update_weight``
is called where a weight's gradient is complete: the narrow loops' vector of
features right after its gradient, the GEMM's store of a tile, and the bias;
no pass over the weights is added. Without the penalty and the momentum the
callers keep their plain ``w -= lr * g``, the same bits as before these options.

Calls only :mod:`._jit`.
"""

from ._jit import _kernel


@_kernel(inline=True)
def _update_weight(W, V, index, g, lr, alpha, momentum, nesterov):
    """``W[index] -= lr * step`` for the data loss's gradient ``g``: one weight's SGD step.

    The objective's gradient is ``g + alpha * W[index]``; with ``momentum >
    0`` its velocity ``V[index]`` becomes ``momentum * V[index] + gradient``
    and the step is ``gradient + momentum * V[index]`` with ``nesterov``, else
    ``V[index]``; with ``momentum == 0`` it is the gradient and ``V`` (then
    possibly empty) is not touched. ``index`` is a tuple of ``W``'s indices
    (``V`` is laid out like ``W``); the scalars are of ``W``'s dtype.
    """
    gradient = g + alpha * W[index]
    if momentum > 0:
        velocity = momentum * V[index] + gradient
        V[index] = velocity
        gradient = gradient + momentum * velocity if nesterov else velocity
    W[index] -= lr * gradient
