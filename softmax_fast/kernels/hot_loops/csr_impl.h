/*
 * hot_loops/csr_impl.h: the loops of the kernels on CSR rows (scipy.sparse's
 * data, indices and indptr). Owns the rows' products with the weights
 * (sf_csr_products), the gradient's rows added where the batch's features
 * occur (sf_csr_scatter) and, for the weights' type alone, the step of a
 * range of weights (sf_csr_step, the momentum's O(d * k) step). Uses config.h, steps.h and the macros below.
 *
 * A template: hot_loops.h includes it once per (weights, indices) type pair,
 * with SF_T the weights' type, SF_I the indices' (int32_t or int64_t),
 * SF_CSR_NAME(name) the pair's function names and, where SF_I_IS_32,
 * SF_T_NAME(name) the names of what depends on the weights' type alone. No
 * include guard; it undefines those macros at its end.
 *
 * A row's stored values are few and its columns scattered, so the vectors
 * run along the classes of one row of W at a time: plain loops over the
 * classes, which GCC vectorises in each clone of SF_MULTIVERSION. Every
 * output is summed in an order fixed by the data (a logit: the row's stored
 * values in order; a gradient entry: the rows in order, then their values),
 * never by the caller's split of rows or features among threads.
 */

#ifndef SF_CSR_AHEAD
/*
 * The rows of W that a row's features name are scattered over W, and most
 * of a pass waits for them to come from memory: the loops ask for the row
 * of the value SF_CSR_AHEAD places ahead while they work on this one, its
 * first SF_CSR_AHEAD_BYTES (the hardware prefetcher follows a longer row).
 */
#define SF_CSR_AHEAD 8
#define SF_CSR_AHEAD_BYTES 256
SF_INLINE void sf_csr_prefetch_row(const void *row, ptrdiff_t bytes)
{
#if defined(__GNUC__)
    for (ptrdiff_t offset = 0; offset < bytes && offset < SF_CSR_AHEAD_BYTES; offset += 64)
        __builtin_prefetch((const char *)row + offset);
#else
    (void)row;
    (void)bytes;
#endif
}
#endif

/*
 * Z[i - first, 0:k] = sum over the stored values p of row i, in order, of
 * data[p] * V[indices[p], 0:k], for the rows first <= i < stop; Z's rows are
 * ldz apart, V is (d, k). Unscaled, without a bias: sf_finish_rows applies them.
 */
SF_MULTIVERSION
static void SF_CSR_NAME(sf_csr_products)(const SF_T *data, const SF_I *indices, const SF_I *indptr, ptrdiff_t first,
                                         ptrdiff_t stop, const SF_T *V, ptrdiff_t k, SF_T *Z, ptrdiff_t ldz)
{
    const SF_I last = indptr[stop];
    for (ptrdiff_t i = first; i < stop; i++) {
        SF_T *restrict z = Z + (i - first) * ldz;
        for (ptrdiff_t c = 0; c < k; c++)
            z[c] = 0;
        for (SF_I p = indptr[i]; p < indptr[i + 1]; p++) {
            if (p + SF_CSR_AHEAD < last)
                sf_csr_prefetch_row(V + (ptrdiff_t)indices[p + SF_CSR_AHEAD] * k, k * (ptrdiff_t)sizeof(SF_T));
            const SF_T x = data[p];
            const SF_T *restrict v = V + (ptrdiff_t)indices[p] * k;
            for (ptrdiff_t c = 0; c < k; c++)
                z[c] += x * v[c];
        }
    }
}

/* The first of the stored values p of [lo, hi) whose index is >= j, or hi: indices[lo:hi] are sorted. */
SF_INLINE SF_I SF_CSR_NAME(sf_csr_lower_bound)(const SF_I *indices, SF_I lo, SF_I hi, ptrdiff_t j)
{
    while (lo < hi) {
        const SF_I middle = lo + (hi - lo) / 2;
        if (indices[middle] < j)
            lo = middle + 1;
        else
            hi = middle;
    }
    return lo;
}

/*
 * out[indices[p], 0:k] += (factor * data[p]) * G[i - first, 0:k] for every
 * stored value p of the rows first <= i < stop whose index is in [j0, j1),
 * rows in order: the rows j0..j1 of factor * X.T @ G, added to the rows of
 * out (d, k) that the batch's features name and to no other. G's rows are
 * ldg apart. Each row's indices are sorted, so its values in [j0, j1) are
 * found by bisection: a thread that owns a range of W's rows visits only its
 * own values.
 */
SF_MULTIVERSION
static void SF_CSR_NAME(sf_csr_scatter)(const SF_T *data, const SF_I *indices, const SF_I *indptr, ptrdiff_t first,
                                        ptrdiff_t stop, const SF_T *G, ptrdiff_t ldg, SF_T factor, ptrdiff_t j0,
                                        ptrdiff_t j1, ptrdiff_t d, SF_T *out, ptrdiff_t k)
{
    for (ptrdiff_t i = first; i < stop; i++) {
        const SF_T *restrict g = G + (i - first) * ldg;
        SF_I p = indptr[i], end = indptr[i + 1];
        if (j0 > 0)
            p = SF_CSR_NAME(sf_csr_lower_bound)(indices, p, end, j0);
        if (j1 < d)
            end = SF_CSR_NAME(sf_csr_lower_bound)(indices, p, end, j1);
        for (; p < end; p++) {
            if (p + SF_CSR_AHEAD < end)
                sf_csr_prefetch_row(out + (ptrdiff_t)indices[p + SF_CSR_AHEAD] * k, k * (ptrdiff_t)sizeof(SF_T));
            const SF_T x = factor * data[p];
            SF_T *restrict row = out + (ptrdiff_t)indices[p] * k;
            for (ptrdiff_t c = 0; c < k; c++)
                row[c] += x * g[c];
        }
    }
}

#if SF_I_IS_32
/*
 * `step` (steps.h) on the weights w[j0:j1] of W, their data gradients the
 * same places of gradient (used up) and their velocities of V (NULL for the
 * steps without): the rows j0..j1 of (d, k) arrays are w[j0 * k:j1 * k].
 */
SF_MULTIVERSION
static void SF_T_NAME(sf_csr_step)(SF_T *gradient, SF_T *W, SF_T *V, ptrdiff_t j0, ptrdiff_t j1, int step, SF_T lr,
                                   SF_T alpha, SF_T mu)
{
#define SF_CSR_STEP_LOOP(UPDATE, VELOCITY)                                                                           \
    for (ptrdiff_t j = j0; j < j1; j++)                                                                            \
        UPDATE(W[j], V[j], gradient[j], lr, alpha, mu);
    SF_WITH_STEP(step, SF_CSR_STEP_LOOP)
#undef SF_CSR_STEP_LOOP
}
#endif

#undef SF_T
#undef SF_I
#undef SF_I_IS_32
#undef SF_CSR_NAME
#undef SF_T_NAME
