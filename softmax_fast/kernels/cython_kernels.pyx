# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython kernels: the compiled, ``nogil``, OpenMP-parallel backend.

Same contract as :mod:`softmax_fast.kernels.reference`. The ``def`` functions
are reached only through :mod:`softmax_fast.kernels`, which has already checked
shapes, dtypes, C order and the label range, so nothing here checks bounds.

The matrix loops (logits ``X @ W`` and gradient ``X.T @ G``) and the rows'
finishing (softmax, loss, gradient of the logits) are C, in ``hot_loops.h``,
compiled for several instruction sets and chosen at load time; the
batch-level orchestration is here. Training runs one OpenMP parallel region
per call: in every batch the threads share the rows for the forward pass
(logits, softmax, loss), meet at a barrier, share the features for the
gradient and update, and meet again. No sum depends on how the work is
shared (each logit and each gradient entry is computed whole by one thread,
reductions over rows run serially in row order), so results are bitwise
identical for any ``n_threads``.

Up to ``SF_CLASS_BLOCK`` (16) classes, MNIST's case, the weights are copied
into a scratch ``Wt (k, dp)``, transposed so that the C loops run their
vectors along the features, each class's row padded with zeros to ``dp``
features (whole vector registers), and copied back when a call returns; the
momentum's velocities ``Vt`` alike. With more classes the C loops are GEMMs
on ``W (d, k)`` and the velocities ``V (d, k)`` in place. Either way the
gradient updates the weights as it is produced, the penalty and the momentum
fused into that pass (the steps of ``hot_loops/steps.h``); sample weights
scale the rows of the logits' gradient and their losses once the rows are
finished. With every option at its default the step is the plain SGD update.

The kernels on CSR rows (``*_csr``, the three arrays of a scipy.sparse CSR
matrix in place of ``X``) are in ``_sparse.pxi``, included below, over the
C loops of ``hot_loops/csr_impl.h``; its opening comment says how they share
the work.

Fused types: ``floating`` is the dtype of ``W`` and ``b`` (float32/float64),
``features_t`` the dtype of ``X`` (the Python layer only lets ``X`` be uint8 or
the weights' own dtype through) and ``index_t`` that of a CSR matrix's indices
(int32/int64).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

import numpy as np

ctypedef fused features_t:
    unsigned char
    float
    double

# The type of a CSR matrix's indices and indptr (_sparse.pxi).
ctypedef fused index_t:
    int32_t
    int64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #ifdef _OPENMP
    #include <omp.h>
    #define SOFTMAX_FAST_OPENMP 1
    static inline int sf_team_size(void) { return omp_get_num_threads(); }
    static inline int sf_thread_number(void) { return omp_get_thread_num(); }
    /* An orphaned barrier: it binds to the parallel region that calls it. */
    static inline void sf_barrier(void) { _Pragma("omp barrier") }
    #else
    #define SOFTMAX_FAST_OPENMP 0
    static inline int sf_team_size(void) { return 1; }
    static inline int sf_thread_number(void) { return 0; }
    static inline void sf_barrier(void) {}
    #endif
    /*
     * `bytes` of memory at an address that is a multiple of 64 (a cache line,
     * an AVX-512 vector), or NULL; released by sf_aligned_free. The block
     * from malloc is remembered just below the address returned.
     */
    static void *sf_aligned_malloc(size_t bytes) {
        unsigned char *block = (unsigned char *)malloc(bytes + 64 + sizeof(void *));
        if (block == NULL)
            return NULL;
        uintptr_t start = ((uintptr_t)(block + sizeof(void *)) + 63) & ~(uintptr_t)63;
        ((void **)start)[-1] = block;
        return (void *)start;
    }
    static void sf_aligned_free(void *p) {
        if (p != NULL)
            free(((void **)p)[-1]);
    }
    /* Ask for the cache lines of p[0:bytes] ahead of their use (a no-op without GCC builtins). */
    static inline void sf_prefetch(const void *p, Py_ssize_t bytes) {
    #if defined(__GNUC__)
        for (Py_ssize_t offset = 0; offset < bytes; offset += 64)
            __builtin_prefetch((const char *)p + offset);
    #endif
    }
    """
    int SOFTMAX_FAST_OPENMP
    int sf_team_size() noexcept nogil
    int sf_thread_number() noexcept nogil
    void sf_barrier() noexcept nogil
    void sf_prefetch(const void *p, Py_ssize_t bytes) noexcept nogil
    void *sf_aligned_malloc(size_t bytes) noexcept nogil
    void sf_aligned_free(void *p) noexcept nogil

cdef extern from "hot_loops.h" nogil:
    # What the weight gradient does to the weights (hot_loops/steps.h).
    enum sf_step:
        SF_GRADIENT
        SF_GRADIENT_PENALIZED
        SF_SGD
        SF_SGD_PENALIZED
        SF_MOMENTUM
        SF_NESTEROV
        SF_GRADIENT_ADD
    const int SF_CLASS_BLOCK
    const int SF_GEMM_ROWS
    const int SF_FEATURE_TILE
    const int SF_MULTIVERSIONED
    Py_ssize_t sf_mask_words(Py_ssize_t d)
    Py_ssize_t sf_mask_rows(Py_ssize_t n)
    Py_ssize_t sf_whole_vectors(Py_ssize_t n, size_t item_size)
    Py_ssize_t sf_gemm_logits_scratch(Py_ssize_t n, Py_ssize_t d, size_t item_size)
    Py_ssize_t sf_gemm_gradient_features(Py_ssize_t n, size_t item_size)
    Py_ssize_t sf_gemm_gradient_scratch(Py_ssize_t n, size_t item_size)
    Py_ssize_t sf_gemm_padded_classes(Py_ssize_t k, size_t item_size)
    Py_ssize_t sf_gradient_block_rows(Py_ssize_t n, Py_ssize_t d, size_t x_size, Py_ssize_t k, size_t item_size)

# The C loops of each type pair and the fused functions that pick one (generated by setup.py).
include "_hot_loops.pxi"

#: Whether this extension was compiled with OpenMP (otherwise every kernel runs on one thread).
OPENMP_ENABLED = bool(SOFTMAX_FAST_OPENMP)
#: Whether the matrix loops carry AVX-512 and AVX2 versions chosen at load time (GCC on x86-64 Linux).
MULTIVERSIONED = bool(SF_MULTIVERSIONED)


def team_size(int n_threads):
    """The threads OpenMP gives one of these kernels' parallel regions when it asks for ``n_threads`` (1 without
    OpenMP).

    The kernels share their work among the team they get, so a smaller team (``OMP_THREAD_LIMIT``, say) changes
    no result; the thread-count tests use this to know that the counts they ask for really run.
    """
    cdef int size[1]
    size[0] = 1
    with nogil, parallel(num_threads=n_threads):
        if sf_thread_number() == 0:
            size[0] = sf_team_size()
    return size[0]


cdef inline Py_ssize_t _argmax(const floating *z, Py_ssize_t k) noexcept nogil:
    """Index of the first maximum of ``z[:k]``, as ``np.argmax``."""
    cdef Py_ssize_t c, best = 0
    for c in range(1, k):
        if z[c] > z[best]:
            best = c
    return best


cdef inline void _share(Py_ssize_t n, int part, int n_parts, Py_ssize_t granule, Py_ssize_t *start,
                        Py_ssize_t *stop) noexcept nogil:
    """``[start, stop)``: part ``part`` of ``n_parts`` of ``range(n)``, in whole granules."""
    cdef Py_ssize_t granules = (n + granule - 1) // granule
    start[0] = min(n, granules * part // n_parts * granule)
    stop[0] = min(n, granules * (part + 1) // n_parts * granule)


cdef inline void _weigh_rows(floating *G, Py_ssize_t n, Py_ssize_t ldg, Py_ssize_t k, const floating *weights,
                             double *row_loss) noexcept nogil:
    """Row ``i`` of ``G`` (``n`` rows ``ldg`` apart, ``k`` classes) and ``row_loss[i]`` times ``weights[i]``: the
    rows' sample weights, exact for weights of 1."""
    cdef Py_ssize_t i, c
    for i in range(n):
        row_loss[i] *= weights[i]
        for c in range(k):
            G[i * ldg + c] *= weights[i]


cdef inline bint _updates(int step) noexcept nogil:
    """Whether ``step`` (``hot_loops/steps.h``) trains the weights, rather than writing or adding a gradient."""
    return step != SF_GRADIENT and step != SF_GRADIENT_PENALIZED and step != SF_GRADIENT_ADD


cdef inline void _step_bias(floating *b, floating *vb, const floating *db, Py_ssize_t k, int step, floating lr,
                            floating momentum) noexcept nogil:
    """The SGD step of ``b (k,)`` by its gradient ``db``, with the velocities ``vb`` for the momentum steps: the
    weights' ``step`` (``hot_loops/steps.h``) without the penalty, which spares the bias."""
    cdef Py_ssize_t c
    if step == SF_MOMENTUM or step == SF_NESTEROV:
        for c in range(k):
            vb[c] = momentum * vb[c] + db[c]
            b[c] -= lr * (db[c] + momentum * vb[c] if step == SF_NESTEROV else vb[c])
    elif _updates(step):
        for c in range(k):
            b[c] -= lr * db[c]


cdef inline void _end_batch(const floating *G, Py_ssize_t ldg, Py_ssize_t rows, Py_ssize_t k,
                            const double *row_loss, const unsigned char *row_correct, Py_ssize_t batch_index,
                            int step, floating lr, floating momentum, floating *b, floating *vb, floating *db,
                            double *loss_sum, Py_ssize_t *n_correct) noexcept nogil:
    """Thread 0's share of a batch's end, once its ``rows`` rows of ``G`` (``ldg`` apart, ``k`` classes), losses
    and rights are finished: the right predictions added to ``n_correct``, the batch's mean loss (without an
    update: its rows' losses) to ``loss_sum``, ``db = G.sum(0)`` (without an update, added to the earlier
    batches' from ``batch_index`` 1 on) and the bias's ``step`` (``_step_bias``). Every sum runs over the rows in
    order."""
    cdef bint update = _updates(step)
    cdef double batch_loss = 0
    cdef Py_ssize_t i, c
    for i in range(rows):
        batch_loss += row_loss[i]
        n_correct[0] += row_correct[i]
    loss_sum[0] += batch_loss / rows if update else batch_loss
    # Row by row, as G is laid out.
    for c in range(k if update or batch_index == 0 else 0):
        db[c] = 0
    for i in range(rows):
        for c in range(k):
            db[c] += G[i * ldg + c]
    _step_bias(b, vb, db, k, step, lr, momentum)


cdef void _sgd_worker(const features_t *X, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d,
                      Py_ssize_t k, floating *weights, floating *velocities, Py_ssize_t ldw, floating *b,
                      floating *vb, const floating *rates, Py_ssize_t rate_step, floating scale, floating alpha,
                      floating momentum, const floating *sample_weight, Py_ssize_t batch_size, int step,
                      uint64_t *masks, Py_ssize_t ldm, floating *G, Py_ssize_t ldg, double *row_loss,
                      unsigned char *row_correct, floating *gradient, floating *db, floating *scratch,
                      Py_ssize_t thread_scratch, double *loss_sum, Py_ssize_t *n_correct) noexcept nogil:
    """One thread's share of SGD over the batches ``X[i:i + batch_size]``, in an OpenMP team.

    Up to ``SF_CLASS_BLOCK`` classes, ``weights`` is ``Wt (k, ldw)``, the
    weights transposed and padded, and ``velocities`` ``Vt`` alike; with
    more, they are ``W (d, k)`` and ``V (d, k)`` themselves (``velocities``
    and ``vb`` are ``NULL`` for the steps without). ``b (ldg,)`` is the bias,
    zero past ``k``. Batch ``i`` takes the rate ``rates[i * rate_step]``.
    ``G (rows, ldg)``, ``row_loss`` and ``row_correct`` have ``rows =
    min(batch_size, n)`` rows; ``masks`` (narrow case) holds their nonzero
    masks, ``sf_mask_words(d)`` columns of ``ldm >= sf_mask_rows(rows)``
    words; ``db`` is ``(k,)``; ``scratch`` holds ``thread_scratch`` values
    per thread (GEMM case). Every thread calls this with the same arguments.
    ``step`` (``hot_loops/steps.h``) says what the gradient does, fused into
    the pass that computes it: with an update, the weights (and their
    velocities) take the step, and thread 0 adds each batch's mean loss to
    ``loss_sum``. Without one (``loss_and_grad``: the batches are blocks of
    one gradient's rows, each scaled by ``1 / n``) they stay, the first
    batch's gradient goes to ``gradient`` (``dWt (k, ldw)``, or ``dW (d, k)``
    with many classes, holding the weights on entry for the penalty) and
    each later one's is added to it (``SF_GRADIENT_ADD``), ``G.sum(0)`` is
    summed over all the rows into ``db`` and their losses into ``loss_sum``.
    ``sample_weight`` (``NULL``: ones) weighs the rows of ``G`` and their
    losses. Thread 0 adds the right predictions to ``n_correct``.
    """
    cdef int thread = sf_thread_number(), n_threads = sf_team_size()
    cdef bint wide = k > SF_CLASS_BLOCK
    cdef Py_ssize_t start = 0, batch_index = 0, rows, first, stop, j
    cdef floating inv_n, lr
    cdef const features_t *batch
    cdef floating *own_scratch = scratch + thread * thread_scratch
    # Rows are shared in whole GEMM tiles; the narrow loops take a row at a time, and even shares.
    cdef Py_ssize_t row_granule = SF_GEMM_ROWS if wide else 1
    # Features are shared in whole tiles, and the GEMM takes as many of a share's tiles a call as fit its scratch.
    cdef Py_ssize_t feature_tile = SF_GEMM_ROWS if wide else SF_FEATURE_TILE, features_per_call
    cdef Py_ssize_t tile_stop, fetch_bytes, fetched
    cdef const char *fetch = NULL
    cdef bint update = _updates(step)
    cdef int batch_step = step
    cdef floating *out = weights if update else gradient
    while start < n:
        rows = min(batch_size, n - start)
        batch = X + start * d
        inv_n = (<floating> 1) / (rows if update else n)
        lr = rates[batch_index * rate_step] if update else 0
        if not update and batch_index > 0:
            batch_step = SF_GRADIENT_ADD
        _share(rows, thread, n_threads, row_granule, &first, &stop)
        if wide:
            _gemm_logits(batch + first * d, stop - first, d, weights, k, G + first * ldg, ldg, own_scratch)
        else:
            _nonzero_groups(batch + first * d, stop - first, d, weights, masks + first, ldm)
            _row_logits(batch + first * d, masks + first, ldm, stop - first, d, weights, ldw, k,
                        G + first * ldg, ldg)
        _finish_rows(G + first * ldg, stop - first, ldg, k, y + start + first, b, scale, inv_n, row_loss + first,
                     row_correct + first)
        if sample_weight != NULL:
            _weigh_rows(G + first * ldg, stop - first, ldg, k, sample_weight + start + first, row_loss + first)
        sf_barrier()

        # The next batch's rows come from memory while this one's gradient is computed, a slice after each
        # call: asked for all at once, the fetches would fill the core's miss buffers and stall it.
        fetch_bytes = 0
        if start + rows < n:
            _share(min(batch_size, n - start - rows), thread, n_threads, row_granule, &first, &stop)
            fetch = <const char *> (batch + (rows + first) * d)
            fetch_bytes = (stop - first) * d * sizeof(features_t)
        _share(d, thread, n_threads, feature_tile, &first, &stop)
        features_per_call = sf_gemm_gradient_features(rows, sizeof(floating)) if wide else feature_tile
        fetched = 0
        j = first
        while j < stop:
            tile_stop = min(stop, j + features_per_call)
            if wide:
                _gemm_weight_gradient(batch, rows, d, j, tile_stop, G, ldg, k, batch_step, lr, scale, alpha,
                                      momentum, out, velocities, own_scratch)
            else:
                _weight_gradient(batch, masks, ldm, rows, d, j, tile_stop, G, ldg, k, batch_step, lr, scale, alpha,
                                 momentum, out, velocities, ldw)
            if fetch_bytes > 0:
                sf_prefetch(fetch + fetched, fetch_bytes * (tile_stop - first) // (stop - first) - fetched)
                fetched = fetch_bytes * (tile_stop - first) // (stop - first)
            j = tile_stop
        if thread == 0:
            _end_batch(G, ldg, rows, k, row_loss, row_correct, batch_index, step, lr, momentum, b, vb, db, loss_sum,
                       n_correct)
        sf_barrier()
        start += rows
        batch_index += 1


cdef inline int _check_sizes(Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, Py_ssize_t batch_size,
                             int n_threads) noexcept nogil:
    """``SF_OK``, or ``SF_ERROR_ARGUMENT`` if a size, ``batch_size`` or ``n_threads`` is below 1."""
    if n < 1 or d < 1 or k < 1 or batch_size < 1 or n_threads < 1:
        return SF_ERROR_ARGUMENT
    return SF_OK


cdef inline int _check_labels(const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """``SF_OK``, or ``SF_ERROR_LABEL`` if a label of ``y (n,)`` is outside ``0..k-1``: a cheap pass that
    keeps a wrong label from indexing outside the arrays."""
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= k:
            return SF_ERROR_LABEL
    return SF_OK


cdef inline int _check_options(floating alpha, floating momentum, bint nesterov, const floating *VW,
                               const floating *vb) noexcept nogil:
    """``SF_OK``, or ``SF_ERROR_ARGUMENT`` if ``alpha`` is negative (or NaN), ``momentum`` outside ``[0, 1)``,
    ``momentum > 0`` without both velocities, or ``nesterov`` without momentum."""
    if not alpha >= 0 or not 0 <= momentum < 1 or (momentum > 0 and (VW == NULL or vb == NULL)):
        return SF_ERROR_ARGUMENT
    if nesterov and momentum == 0:
        return SF_ERROR_ARGUMENT
    return SF_OK


cdef inline int _step_of(bint update, floating alpha, floating momentum, bint nesterov) noexcept nogil:
    """The step of the weight-gradient loops (``hot_loops/steps.h``) for these options: today's plain ``SF_SGD``
    (or ``SF_GRADIENT`` without an update) when every option is at its default."""
    if not update:
        return SF_GRADIENT_PENALIZED if alpha != 0 else SF_GRADIENT
    if momentum != 0:
        return SF_NESTEROV if nesterov else SF_MOMENTUM
    return SF_SGD_PENALIZED if alpha != 0 else SF_SGD


cdef floating *_transposed_weights(const floating *W, Py_ssize_t d, Py_ssize_t k, Py_ssize_t dp) noexcept nogil:
    """``W (d, k)`` copied into new aligned ``Wt (k, dp)``, each row zero-padded; ``NULL`` if out of memory."""
    cdef floating *Wt = <floating *> sf_aligned_malloc(k * dp * sizeof(floating))
    cdef Py_ssize_t c, j
    if Wt != NULL:
        for c in range(k):
            for j in range(dp):
                Wt[c * dp + j] = W[j * k + c] if j < d else 0
    return Wt


cdef int _sgd(const features_t *X, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
              floating *W, floating *b, const floating *rates, Py_ssize_t rate_step, Py_ssize_t batch_size,
              floating scale, floating alpha, floating momentum, bint nesterov, floating *VW, floating *vb,
              const floating *sample_weight, int n_threads, bint update, double *loss_sum, Py_ssize_t *n_correct,
              floating *dW, floating *db) noexcept nogil:
    """SGD over the batches ``X[i:i + batch_size]`` of ``X (n, d)`` on ``n_threads`` threads.

    With ``update``, ``W (d, k)`` and ``b (k,)`` are trained in place, batch
    ``i`` at the rate ``rates[i * rate_step]``, with the options of
    ``reference.sgd_step``: the penalty ``alpha``, the ``momentum`` (and
    ``nesterov``) on the velocities ``VW (d, k)`` and ``vb (k,)``, updated in
    place (``NULL`` without momentum), and the rows' ``sample_weight``
    (``NULL``: ones), and ``loss_sum`` receives the sum of the batches' mean
    (weighted) losses. Without it (for ``loss_and_grad``; ``rates`` and the
    momentum unused) they stay, the gradient of the objective of all ``n``
    rows goes to ``dW (d, k)`` and ``db (k,)``, made ``batch_size`` rows at a
    time, and ``loss_sum`` receives the sum of the rows' (weighted) losses.
    ``n_correct`` receives the rows predicted right before their batch's
    update. Returns ``SF_OK``, or an error code with nothing modified.
    """
    cdef int status = _check_sizes(n, d, k, batch_size, n_threads)
    if status == SF_OK:
        status = _check_options(alpha, momentum, nesterov, VW, vb)
    if status == SF_OK:
        status = _check_labels(y, n, k)
    if status != SF_OK:
        return status
    cdef bint wide = k > SF_CLASS_BLOCK
    cdef int step = _step_of(update, alpha, momentum, nesterov)
    cdef bint moving = step == SF_MOMENTUM or step == SF_NESTEROV
    cdef Py_ssize_t rows = min(batch_size, n), i, j, c
    # Narrow: the weights (and velocities) transposed, rows ldw apart; GEMM: W (and V) as they are. G's rows (and
    # the bias's working copy) hold whole vectors for the rows' finishing, whole panels for the GEMM.
    cdef Py_ssize_t ldw = k if wide else sf_whole_vectors(d, sizeof(floating))
    cdef Py_ssize_t ldg = (sf_gemm_padded_classes(k, sizeof(floating)) if wide
                           else sf_whole_vectors(k, sizeof(floating)))
    # A thread's share of a batch's rows (whole tiles) for the GEMM's packed rows.
    cdef Py_ssize_t tiles = (rows + SF_GEMM_ROWS - 1) // SF_GEMM_ROWS
    cdef Py_ssize_t share_rows = (tiles + n_threads - 1) // n_threads * SF_GEMM_ROWS
    cdef Py_ssize_t thread_scratch = max(sf_gemm_logits_scratch(share_rows, d, sizeof(floating)),
                                         sf_gemm_gradient_scratch(rows, sizeof(floating))) if wide else 0
    cdef floating *weights = W if wide else _transposed_weights(W, d, k, ldw)
    cdef floating *velocities = NULL
    if moving:
        velocities = VW if wide else _transposed_weights(VW, d, k, ldw)
    # Without update, the gradient's output: dW itself, or dWt (k, ldw) to be copied into it; either starts as
    # the weights, which the penalty reads.
    cdef floating *gradient = NULL if update else (dW if wide else _transposed_weights(W, d, k, ldw))
    cdef floating *G = <floating *> sf_aligned_malloc(rows * ldg * sizeof(floating))
    cdef floating *scratch = <floating *> sf_aligned_malloc(max(1, n_threads * thread_scratch) * sizeof(floating))
    cdef floating *bias = <floating *> sf_aligned_malloc(ldg * sizeof(floating))
    cdef floating *db_batch = <floating *> sf_aligned_malloc(k * sizeof(floating))
    cdef Py_ssize_t ldm = sf_mask_rows(rows)
    cdef uint64_t *masks = <uint64_t *> sf_aligned_malloc(ldm * sf_mask_words(d) * sizeof(uint64_t))
    cdef double *row_loss = <double *> sf_aligned_malloc(rows * sizeof(double))
    cdef unsigned char *row_correct = <unsigned char *> sf_aligned_malloc(rows)
    if (weights == NULL or (velocities == NULL and moving) or (gradient == NULL and not update) or G == NULL
            or scratch == NULL or bias == NULL or db_batch == NULL or masks == NULL or row_loss == NULL
            or row_correct == NULL):
        status = SF_ERROR_NO_MEMORY
    else:
        # The GEMM reads G's padding columns, and sf_active_rows whole columns of masks: zeros.
        memset(G, 0, rows * ldg * sizeof(floating))
        memset(masks, 0, ldm * sf_mask_words(d) * sizeof(uint64_t))
        memset(bias, 0, ldg * sizeof(floating))
        for c in range(k):
            bias[c] = b[c]
        if wide and step == SF_GRADIENT_PENALIZED:
            memcpy(dW, W, d * k * sizeof(floating))
        loss_sum[0] = 0
        n_correct[0] = 0
        with parallel(num_threads=n_threads):
            _sgd_worker(X, y, n, d, k, weights, velocities, ldw, bias, vb, rates, rate_step, scale, alpha,
                        momentum, sample_weight, batch_size, step, masks, ldm, G, ldg, row_loss, row_correct,
                        gradient, db_batch, scratch, thread_scratch, loss_sum, n_correct)
        for j in range(d if not wide else 0):
            for c in range(k):
                if update:
                    W[j * k + c] = weights[c * ldw + j]
                    if moving:
                        VW[j * k + c] = velocities[c * ldw + j]
                else:
                    dW[j * k + c] = gradient[c * ldw + j]
        for c in range(k):
            if update:
                b[c] = bias[c]
            else:
                db[c] = db_batch[c]
    if not wide:
        sf_aligned_free(weights)
        sf_aligned_free(velocities)
        sf_aligned_free(gradient)
    sf_aligned_free(G)
    sf_aligned_free(scratch)
    sf_aligned_free(bias)
    sf_aligned_free(db_batch)
    sf_aligned_free(masks)
    sf_aligned_free(row_loss)
    sf_aligned_free(row_correct)
    return status


cdef int _logits(const features_t *X, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, const floating *W,
                 const floating *b, floating scale, int n_threads, floating *Z) noexcept nogil:
    """``Z (n, k) = X * scale @ W + b`` for ``X (n, d)``, ``W (d, k)``, rows in parallel; a status."""
    cdef int status = _check_sizes(n, d, k, 1, n_threads)
    if status != SF_OK:
        return status
    cdef bint wide = k > SF_CLASS_BLOCK
    cdef Py_ssize_t dp = sf_whole_vectors(d, sizeof(floating)), words = sf_mask_words(d)
    cdef Py_ssize_t tile, first, rows, i, c
    # Rows go in tiles; each thread has scratch for a tile's nonzero masks (narrow, ldm words a column) or
    # packed rows (GEMM).
    cdef Py_ssize_t tile_rows = 128, ldm = sf_mask_rows(tile_rows)
    cdef Py_ssize_t thread_scratch = (sf_gemm_logits_scratch(tile_rows, d, sizeof(floating)) * sizeof(floating)
                                      if wide else ldm * words * sizeof(uint64_t))
    cdef unsigned char *own_scratch
    cdef floating *Wt = NULL if wide else _transposed_weights(W, d, k, dp)
    cdef unsigned char *scratch = <unsigned char *> sf_aligned_malloc(n_threads * thread_scratch)
    if (Wt == NULL and not wide) or scratch == NULL:
        status = SF_ERROR_NO_MEMORY
    else:
        for tile in prange((n + tile_rows - 1) // tile_rows, schedule="static", num_threads=n_threads):
            first = tile * tile_rows
            rows = min(tile_rows, n - first)
            own_scratch = scratch + threadid() * thread_scratch
            if wide:
                _gemm_logits(X + first * d, rows, d, W, k, Z + first * k, k, <floating *> own_scratch)
            else:
                _nonzero_groups(X + first * d, rows, d, Wt, <uint64_t *> own_scratch, ldm)
                _row_logits(X + first * d, <uint64_t *> own_scratch, ldm, rows, d, Wt, dp, k, Z + first * k, k)
            for i in range(first, first + rows):
                for c in range(k):
                    Z[i * k + c] = Z[i * k + c] * scale + b[c]
    sf_aligned_free(Wt)
    sf_aligned_free(scratch)
    return status


cdef int _softmax(const floating *Z, Py_ssize_t n, Py_ssize_t k, floating *out, int n_threads) noexcept nogil:
    """``out (n, k) = softmax(Z (n, k))`` row by row (``out`` may be ``Z``); a status."""
    cdef int status = _check_sizes(n, 1, k, 1, n_threads)
    cdef Py_ssize_t i
    if status == SF_OK:
        for i in prange(n, schedule="static", num_threads=n_threads):
            _softmax_rows(Z + i * k, 1, k, out + i * k)
    return status


cdef int _cross_entropy(const floating *Z, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t k, int n_threads,
                        double *loss) noexcept nogil:
    """``loss`` = the mean over rows of ``logsumexp(Z[i]) - Z[i, y[i]]``, summed in row order; a status."""
    cdef int status = _check_sizes(n, 1, k, 1, n_threads)
    if status == SF_OK:
        status = _check_labels(y, n, k)
    if status != SF_OK:
        return status
    cdef double *row_loss = <double *> sf_aligned_malloc(n * sizeof(double))
    cdef double total = 0
    cdef Py_ssize_t i
    if row_loss == NULL:
        return SF_ERROR_NO_MEMORY
    for i in prange(n, schedule="static", num_threads=n_threads):
        _cross_entropy_rows(Z + i * k, 1, k, y + i, row_loss + i)
    for i in range(n):
        total += row_loss[i]
    loss[0] = total / n
    sf_aligned_free(row_loss)
    return SF_OK


cdef int _predict_proba(const features_t *X, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, const floating *W,
                        const floating *b, floating scale, int n_threads, floating *P) noexcept nogil:
    """``P (n, k)``: the class probabilities of the rows of ``X (n, d)``; a status."""
    cdef int status = _logits(X, n, d, k, W, b, scale, n_threads, P)
    if status == SF_OK:
        status = _softmax(P, n, k, P, n_threads)
    return status


cdef int _predict(const features_t *X, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k, const floating *W,
                  const floating *b, floating scale, int n_threads, Py_ssize_t *labels) noexcept nogil:
    """``labels (n,)``: the index of each row's largest logit (the first of ties); a status."""
    cdef int status = _check_sizes(n, d, k, 1, n_threads)
    if status != SF_OK:
        return status
    cdef floating *Z = <floating *> sf_aligned_malloc(n * k * sizeof(floating))
    cdef Py_ssize_t i
    if Z == NULL:
        return SF_ERROR_NO_MEMORY
    status = _logits(X, n, d, k, W, b, scale, n_threads, Z)
    if status == SF_OK:
        for i in prange(n, schedule="static", num_threads=n_threads):
            labels[i] = _argmax(Z + i * k, k)
    sf_aligned_free(Z)
    return status


cdef int _loss_and_grad(const features_t *X, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                        const floating *W, const floating *b, floating scale, floating alpha,
                        const floating *sample_weight, int n_threads, double *loss, floating *dW,
                        floating *db) noexcept nogil:
    """The loss of the batch ``X (n, d)`` and the gradient of its objective ``dW (d, k)``, ``db (k,)``; a status.

    Made a block of ``sf_gradient_block_rows`` rows at a time, whose gradients are summed into ``dW``: each
    block's rows are still in cache when the backward pass reads them again, and one scratch serves every block.
    """
    cdef Py_ssize_t n_correct
    cdef double loss_sum = 0
    # Without an update _sgd only reads W and b.
    cdef int status = _sgd(X, y, n, d, k, <floating *> W, <floating *> b, NULL, 0,
                           sf_gradient_block_rows(n, d, sizeof(features_t), k, sizeof(floating)), scale, alpha, 0,
                           False, NULL, NULL, sample_weight, n_threads, False, &loss_sum, &n_correct, dW, db)
    loss[0] = loss_sum / n
    return status


cdef int _sgd_step(const features_t *X, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                   floating *W, floating *b, floating lr, floating scale, floating alpha, floating momentum,
                   bint nesterov, floating *VW, floating *vb, const floating *sample_weight, int n_threads,
                   double *loss, Py_ssize_t *n_correct) noexcept nogil:
    """One SGD step on the batch ``X (n, d)``, ``W``, ``b`` (and the velocities) in place; its loss and right
    predictions."""
    return _sgd(X, y, n, d, k, W, b, &lr, 0, n, scale, alpha, momentum, nesterov, VW, vb, sample_weight, n_threads,
                True, loss, n_correct, NULL, NULL)


cdef int _train_epoch(const features_t *X, const Py_ssize_t *y, Py_ssize_t n, Py_ssize_t d, Py_ssize_t k,
                      floating *W, floating *b, const floating *rates, Py_ssize_t rate_step, Py_ssize_t batch_size,
                      floating scale, floating alpha, floating momentum, bint nesterov, floating *VW, floating *vb,
                      const floating *sample_weight, int n_threads, double *mean_loss,
                      double *accuracy) noexcept nogil:
    """SGD over ``X[i:i + batch_size]`` in place, batch ``i`` at ``rates[i * rate_step]``; the mean of the batch
    losses and the accuracy before updates."""
    cdef double loss_sum
    cdef Py_ssize_t n_correct
    cdef int status = _sgd(X, y, n, d, k, W, b, rates, rate_step, batch_size, scale, alpha, momentum, nesterov, VW,
                           vb, sample_weight, n_threads, True, &loss_sum, &n_correct, NULL, NULL)
    if status == SF_OK:
        mean_loss[0] = loss_sum / ((n + batch_size - 1) // batch_size)
        accuracy[0] = <double> n_correct / n
    return status


# The Python functions, reached through softmax_fast.kernels, which has checked
# every argument; a status that is not SF_OK is a bug there or no memory.

cdef const floating *_row_weights(const floating[::1] sample_weight) noexcept nogil:
    """``sample_weight``'s data, or ``NULL`` when every weight is 1 (the ``Backend``'s stand-in for none): the
    kernels then skip weighing the rows, which would change no bit and only cost a pass over each batch's
    gradient of the logits."""
    cdef Py_ssize_t i
    for i in range(sample_weight.shape[0]):
        if sample_weight[i] != 1:
            return &sample_weight[0]
    return NULL


cdef inline object _dtype_of(const floating[::1] b):
    """The NumPy dtype that matches ``floating``."""
    return np.float32 if floating is float else np.float64


cdef object _raise_for(int status):
    """Raise the Python exception for a status other than ``SF_OK``."""
    if status == SF_ERROR_NO_MEMORY:
        raise MemoryError("softmax_fast: out of memory for the kernels' scratch")
    if status == SF_ERROR_LABEL:
        raise ValueError("y holds a label outside 0..n_classes-1")
    if status == SF_ERROR_ARGUMENT:
        raise ValueError("an array is empty, batch_size or n_threads is below 1, or an option is out of range")
    if status == SF_ERROR_SPARSE:
        raise ValueError("X's indptr does not start at 0 or decreases, or one of its indices is outside 0..d-1")


def softmax(const floating[:, ::1] Z, floating[:, ::1] out, int n_threads):
    cdef int status
    with nogil:
        status = _softmax(&Z[0, 0], Z.shape[0], Z.shape[1], &out[0, 0], n_threads)
    _raise_for(status)
    return out.base


def cross_entropy(const floating[:, ::1] Z, const Py_ssize_t[::1] y, int n_threads):
    cdef double loss = 0
    cdef int status
    with nogil:
        status = _cross_entropy(&Z[0, 0], &y[0], Z.shape[0], Z.shape[1], n_threads, &loss)
    _raise_for(status)
    return loss


def loss_and_grad(const features_t[:, ::1] X, const Py_ssize_t[::1] y, const floating[:, ::1] W,
                  const floating[::1] b, double scale, double alpha, const floating[::1] sample_weight,
                  int n_threads):
    dtype = _dtype_of(b)
    cdef floating[:, ::1] dW = np.empty((W.shape[0], W.shape[1]), dtype=dtype)
    cdef floating[::1] db = np.empty(W.shape[1], dtype=dtype)
    cdef double loss = 0
    cdef int status
    with nogil:
        status = _loss_and_grad(&X[0, 0], &y[0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0],
                                <floating> scale, <floating> alpha, _row_weights(sample_weight), n_threads, &loss,
                                &dW[0, 0], &db[0])
    _raise_for(status)
    return loss, dW.base, db.base


def sgd_step(const features_t[:, ::1] X, const Py_ssize_t[::1] y, floating[:, ::1] W, floating[::1] b,
             double lr, double scale, double alpha, double momentum, bint nesterov, floating[:, ::1] VW,
             floating[::1] vb, const floating[::1] sample_weight, int n_threads):
    cdef double loss = 0
    cdef Py_ssize_t n_correct = 0
    cdef int status
    # Without momentum the velocities are empty, and the kernels take NULL.
    cdef floating *VW_data = NULL if VW.shape[0] == 0 else &VW[0, 0]
    cdef floating *vb_data = NULL if vb.shape[0] == 0 else &vb[0]
    with nogil:
        status = _sgd_step(&X[0, 0], &y[0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0], <floating> lr,
                           <floating> scale, <floating> alpha, <floating> momentum, nesterov,
                           VW_data, vb_data, _row_weights(sample_weight), n_threads,
                           &loss, &n_correct)
    _raise_for(status)
    return loss, n_correct


def train_epoch(const features_t[:, ::1] X, const Py_ssize_t[::1] y, floating[:, ::1] W, floating[::1] b,
                const floating[::1] rates, Py_ssize_t batch_size, double scale, double alpha, double momentum,
                bint nesterov, floating[:, ::1] VW, floating[::1] vb, const floating[::1] sample_weight,
                int n_threads):
    cdef double mean_loss = 0, accuracy = 0
    cdef int status
    cdef floating *VW_data = NULL if VW.shape[0] == 0 else &VW[0, 0]
    cdef floating *vb_data = NULL if vb.shape[0] == 0 else &vb[0]
    with nogil:
        status = _train_epoch(&X[0, 0], &y[0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0], &rates[0], 1,
                              batch_size, <floating> scale, <floating> alpha, <floating> momentum, nesterov,
                              VW_data, vb_data, _row_weights(sample_weight),
                              n_threads, &mean_loss, &accuracy)
    _raise_for(status)
    return mean_loss, accuracy


def predict_proba(const features_t[:, ::1] X, const floating[:, ::1] W,
                  const floating[::1] b, double scale, int n_threads):
    cdef floating[:, ::1] P = np.empty((X.shape[0], W.shape[1]), dtype=_dtype_of(b))
    cdef int status
    with nogil:
        status = _predict_proba(&X[0, 0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0], <floating> scale,
                                n_threads, &P[0, 0])
    _raise_for(status)
    return P.base


def predict(const features_t[:, ::1] X, const floating[:, ::1] W,
            const floating[::1] b, double scale, int n_threads):
    cdef Py_ssize_t[::1] labels = np.empty(X.shape[0], dtype=np.intp)
    cdef int status
    with nogil:
        status = _predict(&X[0, 0], X.shape[0], X.shape[1], W.shape[1], &W[0, 0], &b[0], <floating> scale,
                          n_threads, &labels[0])
    _raise_for(status)
    return labels.base


include "_sparse.pxi"
include "_c_api.pxi"
