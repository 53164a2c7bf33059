# The kernels on CSR rows: X given as scipy.sparse's (data, indices, indptr), a pass costing O(nnz * k).
# Included by cython_kernels.pyx, after the dense kernels, whose helpers it uses (_finish_rows, _weigh_rows,
# _share, _step_bias, the checks); the loops are hot_loops/csr_impl.h's.
#
# Row i's features are data[indptr[i]:indptr[i + 1]] * scale at the columns indices[indptr[i]:indptr[i + 1]];
# data has the weights' type (floating), indices and indptr are int32 or int64 (index_t). The kernels check
# that indptr starts at 0 and never decreases and that every index is in [0, d) (what would make them read or
# write outside their arrays); the Python layer has also checked that each row's indices are sorted and unique.
#
# The design is the Numba backend's (numba_kernels/_sparse.py), with the work shared among an OpenMP team:
#
# * a batch's rows are shared for the forward pass (the rows' products with W, then sf_finish_rows), W's rows
#   for the backward pass: each thread adds X.T @ G to those of its rows of W that the batch touches, the
#   batch's rows in order (each row's values in its range found by bisection, its indices being sorted), and
#   thread 0 steps the bias. Every value is summed by one thread in an order fixed by the data, so results
#   are bitwise independent of the thread count. Splitting W by rows rather than classes keeps each thread's
#   writes on cache lines of its own: a 20-class row of W is 80 bytes, and two threads writing the two ends of
#   every row the batch touches made 2 threads twice as slow as 1.
# * The L2 penalty would make every step cost O(d * k): train_epoch keeps W as c * V (scikit-learn's scaled
#   weight vector), the penalty's step W <- (1 - lr * alpha) * W being c <- (1 - lr * alpha) * c and the data's
#   V[j] -= (lr / c) * g[j]. V becomes W again (V *= c) at the end of the call, or when c would fall below
#   _SMALLEST_SCALE. Every thread keeps its own c, computed alike.
# * Momentum has no such form: its velocity changes every weight every step, so with momentum > 0 the batch's
#   gradient goes to a (d, k) scratch and every weight takes the step: O(d * k) a batch.

# Below this scale, V is folded back into W: V grows as 1 / c, and its rows must stay far from overflow.
cdef double _SMALLEST_SCALE = 1e-9
# A batch's multiply-adds (stored values times classes) below which its threads would cost more than they save:
# the threads take turns writing and reading the rows of W the batches share, and on 2 cores 20 Newsgroups'
# batches of 32 rows (83,000 multiply-adds) took 1.35 times as long on 2 threads as on 1, batches of 128 rows as
# long, and batches of 512 rows 0.77 times as long.
cdef Py_ssize_t _CSR_THREADED_WORK = 1 << 19
# loss_and_grad's rows at a time: its scratch (rows, k) stays bounded whatever n.
cdef Py_ssize_t _CSR_GRADIENT_BLOCK_ROWS = 4096


cdef inline int _check_csr(const index_t *indices, const index_t *indptr, Py_ssize_t n,
                           Py_ssize_t d) noexcept nogil:
    """``SF_OK``, or ``SF_ERROR_SPARSE`` if ``indptr (n + 1,)`` does not start at 0 or decreases, or an index of the
    rows is outside ``[0, d)``."""
    cdef Py_ssize_t i, p
    if indptr[0] != 0:
        return SF_ERROR_SPARSE
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            return SF_ERROR_SPARSE
    for p in range(indptr[n]):
        if indices[p] < 0 or indices[p] >= d:
            return SF_ERROR_SPARSE
    return SF_OK


cdef inline int _check_csr_call(const index_t *indices, const index_t *indptr, const Py_ssize_t *y, Py_ssize_t n,
                                Py_ssize_t d, Py_ssize_t k, Py_ssize_t batch_size, int n_threads) noexcept nogil:
    """The checks of a CSR kernel's call: the sizes, the rows (``_check_csr``) and the labels (``y`` may be
    ``NULL``)."""
    cdef int status = _check_sizes(n, d, k, batch_size, n_threads)
    if status == SF_OK:
        status = _check_csr(indices, indptr, n, d)
    if status == SF_OK and y != NULL:
        status = _check_labels(y, n, k)
    return status


cdef inline int _csr_team(Py_ssize_t nnz, Py_ssize_t n, Py_ssize_t batch_size, Py_ssize_t k,
                          int n_threads) noexcept nogil:
    """The threads for batches of ``batch_size`` of ``n`` CSR rows storing ``nnz`` values, ``k`` classes: one when a
    batch's multiply-adds are fewer than ``_CSR_THREADED_WORK``, else ``n_threads``."""
    if nnz * k // ((n + batch_size - 1) // batch_size) < _CSR_THREADED_WORK:
        return 1
    return n_threads


cdef void _csr_worker(const floating *data, const index_t *indices, const index_t *indptr, const Py_ssize_t *y,
                      Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, floating *W, floating *VW, floating *bias,
                      floating *vb, const floating *rates, Py_ssize_t rate_step, Py_ssize_t batch_size,
                      floating scale, floating alpha, floating momentum, const floating *sample_weight, int step,
                      floating *G, Py_ssize_t ldg, double *row_loss, unsigned char *row_correct, floating *gradient,
                      floating *db, double *loss_sum, Py_ssize_t *n_correct) noexcept nogil:
    """One thread's share of SGD over the CSR batches of ``batch_size`` rows, in an OpenMP team.

    ``W (d, k)``, ``bias (ldg,)`` (zero past ``k``) and, for the momentum
    steps, the velocities ``VW (d, k)`` and ``vb (k,)`` are trained in
    place, batch ``i`` at the rate ``rates[i * rate_step]``, by ``step``
    (``hot_loops/steps.h``). Without an update (``loss_and_grad``: the
    batches are blocks of one gradient's rows, each scaled by ``1 / n``) they
    stay, the data gradient of all the rows goes to ``gradient (d, k)`` and
    ``db (k,)``, then the penalty's ``alpha * W``. ``G (rows, ldg)``,
    ``row_loss`` and ``row_correct`` have ``rows = min(batch_size, n)`` rows;
    ``gradient`` is scratch for the momentum steps (else unused) when
    training. Thread 0 adds the batches' mean losses (or the rows' losses)
    to ``loss_sum`` and the rows predicted right to ``n_correct``.
    """
    cdef int thread = sf_thread_number(), n_threads = sf_team_size()
    cdef bint update = _updates(step), moving = step == SF_MOMENTUM or step == SF_NESTEROV
    cdef Py_ssize_t start = 0, batch_index = 0, rows, first, stop, j0, j1, j
    cdef floating inv_n, lr = 0, shrink, c_scale = 1, one = 1
    # A thread owns the rows j0..j1 of W (and of the gradient and velocities): 16 rows of any k are whole cache
    # lines, so no two threads write to one line.
    _share(d, thread, n_threads, 16, &j0, &j1)
    if not update:
        memset(gradient + j0 * k, 0, (j1 - j0) * k * sizeof(floating))
    while start < n:
        rows = min(batch_size, n - start)
        inv_n = one / (rows if update else n)
        _share(rows, thread, n_threads, 1, &first, &stop)
        _csr_products(data, indices, indptr, start + first, start + stop, W, k, G + first * ldg, ldg)
        _finish_rows(G + first * ldg, stop - first, ldg, k, y + start + first, bias, scale * c_scale, inv_n,
                     row_loss + first, row_correct + first)
        if sample_weight != NULL:
            _weigh_rows(G + first * ldg, stop - first, ldg, k, sample_weight + start + first, row_loss + first)
        sf_barrier()

        if update:
            lr = rates[batch_index * rate_step]
            shrink = one - lr * alpha
            if not moving and c_scale * shrink >= _SMALLEST_SCALE:
                c_scale = c_scale * shrink
                _csr_scatter(data, indices, indptr, start, start + rows, G, ldg, -lr * scale / c_scale, j0, j1, d,
                             W, k)
            elif not moving:
                # c_scale would underflow: W's rows become c_scale * shrink * V, and the data's step is added.
                for j in range(j0 * k, j1 * k):
                    W[j] *= c_scale * shrink
                c_scale = 1
                _csr_scatter(data, indices, indptr, start, start + rows, G, ldg, -lr * scale, j0, j1, d, W, k)
            else:
                memset(gradient + j0 * k, 0, (j1 - j0) * k * sizeof(floating))
                _csr_scatter(data, indices, indptr, start, start + rows, G, ldg, scale, j0, j1, d, gradient, k)
                _csr_step(gradient, W, VW, j0 * k, j1 * k, step, lr, alpha, momentum)
        else:
            _csr_scatter(data, indices, indptr, start, start + rows, G, ldg, scale, j0, j1, d, gradient, k)
        if thread == 0:
            _end_batch(G, ldg, rows, k, row_loss, row_correct, batch_index, step, lr, momentum, bias, vb, db,
                       loss_sum, n_correct)
        sf_barrier()
        start += rows
        batch_index += 1
    if update and c_scale != 1:
        for j in range(j0 * k, j1 * k):
            W[j] *= c_scale
    if not update and alpha != 0:
        for j in range(j0 * k, j1 * k):
            gradient[j] += alpha * W[j]


cdef int _csr_sgd(const floating *data, const index_t *indices, const index_t *indptr, const Py_ssize_t *y,
                  Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, floating *W, floating *b, const floating *rates,
                  Py_ssize_t rate_step, Py_ssize_t batch_size, floating scale, floating alpha, floating momentum,
                  bint nesterov, floating *VW, floating *vb, const floating *sample_weight, int n_threads,
                  bint update, double *loss_sum, Py_ssize_t *n_correct, floating *dW, floating *db) noexcept nogil:
    """``_sgd`` (which see, for the arguments) on the CSR rows ``(data, indices, indptr)`` of ``n`` rows and ``d``
    features; a status, with nothing modified unless it is ``SF_OK``."""
    cdef int status = _check_csr_call(indices, indptr, y, n, d, k, batch_size, n_threads)
    if status == SF_OK:
        status = _check_options(alpha, momentum, nesterov, VW, vb)
    if status != SF_OK:
        return status
    cdef int step = _step_of(update, alpha, momentum, nesterov)
    cdef bint moving = step == SF_MOMENTUM or step == SF_NESTEROV
    cdef Py_ssize_t rows = min(batch_size, n), ldg = sf_whole_vectors(k, sizeof(floating)), c
    # The whole gradient: loss_and_grad's output, or the momentum steps' scratch.
    cdef floating *gradient = dW if not update else (
        <floating *> sf_aligned_malloc(d * k * sizeof(floating)) if moving else NULL)
    cdef floating *G = <floating *> sf_aligned_malloc(rows * ldg * sizeof(floating))
    cdef floating *bias = <floating *> sf_aligned_malloc(ldg * sizeof(floating))
    cdef floating *db_batch = db if not update else <floating *> sf_aligned_malloc(k * sizeof(floating))
    cdef double *row_loss = <double *> sf_aligned_malloc(rows * sizeof(double))
    cdef unsigned char *row_correct = <unsigned char *> sf_aligned_malloc(rows)
    if ((gradient == NULL and (moving or not update)) or G == NULL or bias == NULL or db_batch == NULL
            or row_loss == NULL or row_correct == NULL):
        status = SF_ERROR_NO_MEMORY
    else:
        # sf_finish_rows reads the padding past k of G's rows and the bias: zeros.
        memset(G, 0, rows * ldg * sizeof(floating))
        memset(bias, 0, ldg * sizeof(floating))
        for c in range(k):
            bias[c] = b[c]
        loss_sum[0] = 0
        n_correct[0] = 0
        with parallel(num_threads=_csr_team(indptr[n], n, batch_size, k, n_threads)):
            _csr_worker(data, indices, indptr, y, n, d, k, W, VW, bias, vb, rates, rate_step, batch_size, scale,
                        alpha, momentum, sample_weight, step, G, ldg, row_loss, row_correct, gradient, db_batch,
                        loss_sum, n_correct)
        for c in range(k if update else 0):
            b[c] = bias[c]
    if update:
        sf_aligned_free(gradient)
        sf_aligned_free(db_batch)
    sf_aligned_free(G)
    sf_aligned_free(bias)
    sf_aligned_free(row_loss)
    sf_aligned_free(row_correct)
    return status


cdef int _loss_and_grad_csr(const floating *data, const index_t *indices, const index_t *indptr,
                            const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, const floating *W,
                            const floating *b, floating scale, floating alpha, const floating *sample_weight,
                            int n_threads, double *loss, floating *dW, floating *db) noexcept nogil:
    """``_loss_and_grad`` on CSR rows, ``_CSR_GRADIENT_BLOCK_ROWS`` rows at a time; a status."""
    cdef Py_ssize_t n_correct
    cdef double loss_sum = 0
    # Without an update _csr_sgd only reads W and b.
    cdef int status = _csr_sgd(data, indices, indptr, y, n, d, k, <floating *> W, <floating *> b, NULL, 0,
                               _CSR_GRADIENT_BLOCK_ROWS, scale, alpha, 0, False, NULL, NULL, sample_weight,
                               n_threads, False, &loss_sum, &n_correct, dW, db)
    loss[0] = loss_sum / n
    return status


cdef int _sgd_step_csr(const floating *data, const index_t *indices, const index_t *indptr, const Py_ssize_t *y,
                       Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, floating *W, floating *b, floating lr,
                       floating scale, floating alpha, floating momentum, bint nesterov, floating *VW, floating *vb,
                       const floating *sample_weight, int n_threads, double *loss,
                       Py_ssize_t *n_correct) noexcept nogil:
    """``_sgd_step`` on CSR rows: one step on the batch of all ``n`` rows; a status."""
    return _csr_sgd(data, indices, indptr, y, n, d, k, W, b, &lr, 0, n, scale, alpha, momentum, nesterov, VW, vb,
                    sample_weight, n_threads, True, loss, n_correct, NULL, NULL)


cdef int _train_epoch_csr(const floating *data, const index_t *indices, const index_t *indptr, const Py_ssize_t *y,
                          Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, floating *W, floating *b, const floating *rates,
                          Py_ssize_t rate_step, Py_ssize_t batch_size, floating scale, floating alpha,
                          floating momentum, bint nesterov, floating *VW, floating *vb,
                          const floating *sample_weight, int n_threads, double *mean_loss,
                          double *accuracy) noexcept nogil:
    """``_train_epoch`` on CSR rows; a status."""
    cdef double loss_sum
    cdef Py_ssize_t n_correct
    cdef int status = _csr_sgd(data, indices, indptr, y, n, d, k, W, b, rates, rate_step, batch_size, scale, alpha,
                               momentum, nesterov, VW, vb, sample_weight, n_threads, True, &loss_sum, &n_correct,
                               NULL, NULL)
    if status == SF_OK:
        mean_loss[0] = loss_sum / ((n + batch_size - 1) // batch_size)
        accuracy[0] = <double> n_correct / n
    return status


cdef int _csr_logits(const floating *data, const index_t *indices, const index_t *indptr, Py_ssize_t n,
                     Py_ssize_t d, Py_ssize_t k, const floating *W, const floating *b, floating scale, int n_threads,
                     floating *Z) noexcept nogil:
    """``Z (n, k) = X * scale @ W + b`` for the CSR rows, rows in parallel; a status."""
    cdef int status = _check_csr_call(indices, indptr, NULL, n, d, k, 1, n_threads)
    cdef Py_ssize_t tile_rows = 256, tile, first, rows, i, c
    if status != SF_OK:
        return status
    for tile in prange((n + tile_rows - 1) // tile_rows, schedule="static", num_threads=n_threads):
        first = tile * tile_rows
        rows = min(tile_rows, n - first)
        _csr_products(data, indices, indptr, first, first + rows, W, k, Z + first * k, k)
        for i in range(first, first + rows):
            for c in range(k):
                Z[i * k + c] = Z[i * k + c] * scale + b[c]
    return SF_OK


cdef int _predict_proba_csr(const floating *data, const index_t *indices, const index_t *indptr, Py_ssize_t n,
                            Py_ssize_t d, Py_ssize_t k, const floating *W, const floating *b, floating scale,
                            int n_threads, floating *P) noexcept nogil:
    """``P (n, k)``: the class probabilities of the CSR rows; a status."""
    cdef int status = _csr_logits(data, indices, indptr, n, d, k, W, b, scale, n_threads, P)
    if status == SF_OK:
        status = _softmax(P, n, k, P, n_threads)
    return status


cdef int _predict_csr(const floating *data, const index_t *indices, const index_t *indptr, Py_ssize_t n,
                      Py_ssize_t d, Py_ssize_t k, const floating *W, const floating *b, floating scale,
                      int n_threads, Py_ssize_t *labels) noexcept nogil:
    """``labels (n,)``: the index of each CSR row's largest logit (the first of ties); a status."""
    cdef floating *Z = <floating *> sf_aligned_malloc(max(1, n * k) * sizeof(floating))
    cdef Py_ssize_t i
    cdef int status
    if Z == NULL:
        return SF_ERROR_NO_MEMORY
    status = _csr_logits(data, indices, indptr, n, d, k, W, b, scale, n_threads, Z)
    if status == SF_OK:
        for i in prange(n, schedule="static", num_threads=n_threads):
            labels[i] = _argmax(Z + i * k, k)
    sf_aligned_free(Z)
    return status


# The Python functions, reached through softmax_fast.kernels (which has checked every argument) with the three
# arrays of a CSR matrix in place of X.

cdef inline const floating *_values(const floating[::1] data) noexcept nogil:
    """``data``'s first value, or ``NULL`` for a matrix that stores none."""
    if data.shape[0] == 0:
        return NULL
    return &data[0]


cdef inline const index_t *_indices(const index_t[::1] indices) noexcept nogil:
    """``indices``' first index, or ``NULL`` for a matrix that stores none."""
    if indices.shape[0] == 0:
        return NULL
    return &indices[0]


def loss_and_grad_csr(const floating[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                      const Py_ssize_t[::1] y, const floating[:, ::1] W, const floating[::1] b, double scale,
                      double alpha, const floating[::1] sample_weight, int n_threads):
    dtype = _dtype_of(b)
    cdef floating[:, ::1] dW = np.empty((W.shape[0], W.shape[1]), dtype=dtype)
    cdef floating[::1] db = np.empty(W.shape[1], dtype=dtype)
    cdef double loss = 0
    cdef int status
    with nogil:
        status = _loss_and_grad_csr(_values(data), _indices(indices), &indptr[0], &y[0], y.shape[0], W.shape[0],
                                    W.shape[1], &W[0, 0], &b[0], <floating> scale, <floating> alpha,
                                    _row_weights(sample_weight), n_threads, &loss, &dW[0, 0], &db[0])
    _raise_for(status)
    return loss, dW.base, db.base


def sgd_step_csr(const floating[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                 const Py_ssize_t[::1] y, floating[:, ::1] W, floating[::1] b, double lr, double scale, double alpha,
                 double momentum, bint nesterov, floating[:, ::1] VW, floating[::1] vb,
                 const floating[::1] sample_weight, int n_threads):
    cdef double loss = 0
    cdef Py_ssize_t n_correct = 0
    cdef int status
    cdef floating *VW_data = NULL if VW.shape[0] == 0 else &VW[0, 0]
    cdef floating *vb_data = NULL if vb.shape[0] == 0 else &vb[0]
    with nogil:
        status = _sgd_step_csr(_values(data), _indices(indices), &indptr[0], &y[0], y.shape[0], W.shape[0],
                               W.shape[1], &W[0, 0], &b[0], <floating> lr, <floating> scale, <floating> alpha,
                               <floating> momentum, nesterov, VW_data, vb_data, _row_weights(sample_weight),
                               n_threads, &loss, &n_correct)
    _raise_for(status)
    return loss, n_correct


def train_epoch_csr(const floating[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                    const Py_ssize_t[::1] y, floating[:, ::1] W, floating[::1] b, const floating[::1] rates,
                    Py_ssize_t batch_size, double scale, double alpha, double momentum, bint nesterov,
                    floating[:, ::1] VW, floating[::1] vb, const floating[::1] sample_weight, int n_threads):
    cdef double mean_loss = 0, accuracy = 0
    cdef int status
    cdef floating *VW_data = NULL if VW.shape[0] == 0 else &VW[0, 0]
    cdef floating *vb_data = NULL if vb.shape[0] == 0 else &vb[0]
    with nogil:
        status = _train_epoch_csr(_values(data), _indices(indices), &indptr[0], &y[0], y.shape[0], W.shape[0],
                                  W.shape[1], &W[0, 0], &b[0], &rates[0], 1, batch_size, <floating> scale,
                                  <floating> alpha, <floating> momentum, nesterov, VW_data, vb_data,
                                  _row_weights(sample_weight), n_threads, &mean_loss, &accuracy)
    _raise_for(status)
    return mean_loss, accuracy


def predict_proba_csr(const floating[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                      const floating[:, ::1] W, const floating[::1] b, double scale, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef floating[:, ::1] P = np.empty((n, W.shape[1]), dtype=_dtype_of(b))
    cdef int status
    with nogil:
        status = _predict_proba_csr(_values(data), _indices(indices), &indptr[0], n, W.shape[0], W.shape[1],
                                    &W[0, 0], &b[0], <floating> scale, n_threads, &P[0, 0])
    _raise_for(status)
    return P.base


def predict_csr(const floating[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                const floating[:, ::1] W, const floating[::1] b, double scale, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef Py_ssize_t[::1] labels = np.empty(n, dtype=np.intp)
    cdef int status
    with nogil:
        status = _predict_csr(_values(data), _indices(indices), &indptr[0], n, W.shape[0], W.shape[1], &W[0, 0],
                              &b[0], <floating> scale, n_threads, &labels[0])
    _raise_for(status)
    return labels.base
