"""The L-BFGS solver's two passes over its curvature pairs, compiled by Numba and threaded.

At a million parameters and more an iteration of :mod:`softmax_fast._lbfgs`
is bound by memory bandwidth: it reads every pair twice, once for the pairs'
products with the newest step, gradient change and gradient
(:func:`pair_products`), and once to combine them into the next direction
(:func:`combine_pairs`). At 1.47 million parameters (20 Newsgroups) and 11
pairs of float64, each pass read 260 MB: NumPy did them on one BLAS thread
(``_lbfgs.minimize`` says why BLAS is held to one) in 47 ms an iteration,
these loops on 2 threads in 22 ms. The pairs are now float32
(``_lbfgs.CurvaturePairs`` says why), read in 12 ms.

Both passes also read the diagonal ``metric`` of the solver's initial inverse
Hessian (``_lbfgs.CurvaturePairs``), and :func:`pair_products` writes the new
pair, the step and the gradients' change, as it reads them.

Every product is summed in float64: a float32 value is widened before it is
multiplied. No result depends on the thread count: the vectors are cut into
``PIECE``-long pieces whatever the threads, a thread takes whole pieces, and
a product is the sum of its pieces' partial sums, added in piece order after
the loop. The arrays are C-contiguous; the callers make them so.
"""

import numpy as np
from numba import njit, prange

from .kernels import _numba_threads
from .kernels.numba_kernels._jit import FASTMATH_FLAGS

# Elements of a piece. A piece of what pair_products reads (a row of S and of Y, the new pair's rows, the two
# points and gradients, the metric) is at most 224 KB, within every L2 cache of the CPUs we run on: a row's piece
# is read from memory once, the vectors' from cache.
PIECE = 4096


def pair_products(S, Y, free, theta, new_theta, gradient, new_gradient, metric, n_threads):
    """Write the step ``s = new_theta - theta`` into ``S[free]`` and the gradient change ``y = new_gradient -
    gradient`` into ``Y[free]``, rounded to their dtype; return ``(S @ y, S @ new_gradient, Y @ s, Y @ (metric *
    y), Y @ (metric * new_gradient))``, five float64 ``(m,)`` arrays, of the rounded ``s`` and ``y``: in one read
    of ``S`` and ``Y``.

    ``S``, ``Y``: ``(m, n)`` float32 or float64, the pairs, of which only
    row ``free`` is modified; the four vectors and ``metric``: ``(n,)``
    float64. ``n_threads`` threads.
    """
    sums = np.empty((-(-S.shape[1] // PIECE), 5, len(S)))
    _numba_threads(n_threads)
    _pair_products_by_piece(S, Y, free, theta, new_theta, gradient, new_gradient, metric, sums)
    return tuple(sums.sum(axis=0))


def combine_pairs(S, Y, s_weights, y_weights, gradient_weight, gradient, metric, n_threads):
    """``s_weights @ S + metric * (y_weights @ Y + gradient_weight * gradient)``, a new float64 ``(n,)`` array, in
    one read of ``S`` and ``Y``.

    ``S``, ``Y``: ``(m, n)`` float32 or float64; ``s_weights``,
    ``y_weights``: ``(m,)`` float64 (a row whose weight is 0 is not read);
    ``gradient``, ``metric``: ``(n,)`` float64. ``n_threads`` threads.
    """
    out = np.empty(S.shape[1])
    _numba_threads(n_threads)
    _combine_pairs_by_piece(S, Y, s_weights, y_weights, float(gradient_weight), gradient, metric, out)
    return out


# The loops below run over 1-d slices of a piece: indexed as S[row, i], the same loops did not vectorize (50 ms
# against 13 ms for pair_products at 1.5 million parameters and 10 pairs).
@njit(cache=True, nogil=True, parallel=True, fastmath=set(FASTMATH_FLAGS))
def _pair_products_by_piece(S, Y, free, theta, new_theta, gradient, new_gradient, metric, sums):
    """Piece ``p`` of the columns of :func:`pair_products`: its part of the new pair, then ``sums[p] = (S @ y,
    S @ new_gradient, Y @ s, Y @ (metric * y), Y @ (metric * new_gradient))`` over it."""
    n = S.shape[1]
    for piece in prange(sums.shape[0]):
        start = piece * PIECE
        stop = min(n, start + PIECE)
        s_piece, y_piece = S[free, start:stop], Y[free, start:stop]
        for i in range(stop - start):
            s_piece[i] = new_theta[start + i] - theta[start + i]
            y_piece[i] = new_gradient[start + i] - gradient[start + i]
        gradient_piece, metric_piece = new_gradient[start:stop], metric[start:stop]
        for row in range(S.shape[0]):
            S_row, Y_row = S[row, start:stop], Y[row, start:stop]
            s_y = s_gradient = y_s = y_y = y_gradient = 0.0
            for i in range(stop - start):
                s_i = np.float64(S_row[i])
                s_y += s_i * y_piece[i]
                s_gradient += s_i * gradient_piece[i]
            for i in range(stop - start):
                y_i = np.float64(Y_row[i])
                y_s += y_i * s_piece[i]
                y_metric = y_i * metric_piece[i]
                y_y += y_metric * y_piece[i]
                y_gradient += y_metric * gradient_piece[i]
            sums[piece, 0, row] = s_y
            sums[piece, 1, row] = s_gradient
            sums[piece, 2, row] = y_s
            sums[piece, 3, row] = y_y
            sums[piece, 4, row] = y_gradient


@njit(cache=True, nogil=True, parallel=True, fastmath=set(FASTMATH_FLAGS))
def _combine_pairs_by_piece(S, Y, s_weights, y_weights, gradient_weight, gradient, metric, out):
    """``out = s_weights @ S + metric * (y_weights @ Y + gradient_weight * gradient)``, piece by piece (a piece of
    ``out`` stays in cache while every pair's piece is added to it)."""
    n = S.shape[1]
    for piece in prange(-(-n // PIECE)):
        start = piece * PIECE
        stop = min(n, start + PIECE)
        out_piece, gradient_piece, metric_piece = out[start:stop], gradient[start:stop], metric[start:stop]
        for i in range(stop - start):
            out_piece[i] = gradient_weight * gradient_piece[i]
        for row in range(Y.shape[0]):
            y_weight, Y_row = y_weights[row], Y[row, start:stop]
            if y_weight != 0:
                for i in range(stop - start):
                    out_piece[i] += y_weight * Y_row[i]
        for i in range(stop - start):
            out_piece[i] *= metric_piece[i]
        for row in range(S.shape[0]):
            s_weight, S_row = s_weights[row], S[row, start:stop]
            if s_weight != 0:
                for i in range(stop - start):
                    out_piece[i] += s_weight * S_row[i]
