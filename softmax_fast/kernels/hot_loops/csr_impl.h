/*
 * hot_loops/csr_impl.h: the loops of the kernels on CSR rows (scipy.sparse's
 * data, indices and indptr). Owns the rows' products with the weights
 * (sf_csr_products), the gradient's rows added where the batch's features
 * occur (sf_csr_scatter) and, for the weights' type alone, the step of every
 * weight of a block of classes (sf_csr_step_columns, the momentum's O(d * k)
 * step). Uses config.h, steps.h and the macros below.
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
 * never by the caller's split of rows or classes among threads.
 */

/*
 * Z[i - first, 0:k] = sum over the stored values p of row i, in order, of
 * data[p] * V[indices[p], 0:k], for the rows first <= i < stop; Z's rows are
 * ldz apart, V is (d, k). Unscaled, without a bias: sf_finish_rows applies them.
 */
SF_MULTIVERSION
static void SF_CSR_NAME(sf_csr_products)(const SF_T *data, const SF_I *indices, const SF_I *indptr, ptrdiff_t first,
                                         ptrdiff_t stop, const SF_T *V, ptrdiff_t k, SF_T *Z, ptrdiff_t ldz)
{
    for (ptrdiff_t i = first; i < stop; i++) {
        SF_T *restrict z = Z + (i - first) * ldz;
        for (ptrdiff_t c = 0; c < k; c++)
            z[c] = 0;
        for (SF_I p = indptr[i]; p < indptr[i + 1]; p++) {
            const SF_T x = data[p];
            const SF_T *restrict v = V + (ptrdiff_t)indices[p] * k;
            for (ptrdiff_t c = 0; c < k; c++)
                z[c] += x * v[c];
        }
    }
}

/*
 * out[indices[p], c0:c1] += (factor * data[p]) * G[i - first, c0:c1] for
 * every stored value p of the rows first <= i < stop, rows in order: the
 * classes c0..c1 of factor * X.T @ G, added to the rows of out (d, k) that
 * the rows' features name and to no other. G's rows are ldg apart.
 */
SF_MULTIVERSION
static void SF_CSR_NAME(sf_csr_scatter)(const SF_T *data, const SF_I *indices, const SF_I *indptr, ptrdiff_t first,
                                        ptrdiff_t stop, const SF_T *G, ptrdiff_t ldg, SF_T factor, ptrdiff_t c0,
                                        ptrdiff_t c1, SF_T *out, ptrdiff_t k)
{
    for (ptrdiff_t i = first; i < stop; i++) {
        const SF_T *restrict g = G + (i - first) * ldg;
        for (SF_I p = indptr[i]; p < indptr[i + 1]; p++) {
            const SF_T x = factor * data[p];
            SF_T *restrict row = out + (ptrdiff_t)indices[p] * k;
            for (ptrdiff_t c = c0; c < c1; c++)
                row[c] += x * g[c];
        }
    }
}

#if SF_I_IS_32
/*
 * `step` (steps.h) on every weight of the classes c0..c1 of W (d, k), its
 * data gradient g the same place of gradient (d, k) (used up) and its
 * velocity of V (d, k) (NULL for the steps without).
 */
SF_MULTIVERSION
static void SF_T_NAME(sf_csr_step_columns)(SF_T *gradient, SF_T *W, SF_T *V, ptrdiff_t d, ptrdiff_t k, ptrdiff_t c0,
                                           ptrdiff_t c1, int step, SF_T lr, SF_T alpha, SF_T mu)
{
#define SF_CSR_STEP_LOOP(UPDATE, VELOCITY)                                                                           \
    for (ptrdiff_t j = 0; j < d; j++)                                                                              \
        for (ptrdiff_t c = c0; c < c1; c++)                                                                        \
            UPDATE(W[j * k + c], V[j * k + c], gradient[j * k + c], lr, alpha, mu);
    SF_WITH_STEP(step, SF_CSR_STEP_LOOP)
#undef SF_CSR_STEP_LOOP
}
#endif

#undef SF_T
#undef SF_I
#undef SF_I_IS_32
#undef SF_CSR_NAME
#undef SF_T_NAME
