/*
 * One instantiation of the hot loops (see hot_loops.h) for features and
 * weights of type SF_T; SF_NAME(name) gives the function names.
 * No include guard: hot_loops.h includes this file once per type.
 */

/* Features per 8-byte word: what one zero test passes over. */
#define SF_PER_WORD ((ptrdiff_t)(8 / sizeof(SF_T)))
/* Features per group in the narrow logits: at least one per accumulator. */
#define SF_GROUP (SF_PER_WORD > 4 ? SF_PER_WORD : 4)
/* Features per vector of the gradient: 64 bytes, one AVX-512 register. */
#define SF_LANES ((ptrdiff_t)(64 / sizeof(SF_T)))

#if SF_VECTOR_EXTENSIONS
/* SF_BLOCK consecutive classes of a row of W or Z. */
typedef SF_T SF_NAME(sf_classes) __attribute__((vector_size(SF_BLOCK * sizeof(SF_T))));
/* SF_LANES consecutive features of a row of X. */
typedef SF_T SF_NAME(sf_features) __attribute__((vector_size(SF_LANES * sizeof(SF_T))));
#endif

/* F[0:count] = X[0:count] as SF_T: uint8 pixels widened for the loops below. */
SF_MULTIVERSION
static void SF_NAME(sf_widen)(const uint8_t *X, ptrdiff_t count, SF_T *F)
{
    for (ptrdiff_t i = 0; i < count; i++)
        F[i] = (SF_T)X[i];
}

/* Whether the count (a multiple of SF_PER_WORD) features at x are all zero, tested a word at a time. */
SF_INLINE int SF_NAME(sf_all_zero)(const SF_T *x, ptrdiff_t count)
{
    int all_zero = 1;
    for (ptrdiff_t j = 0; j < count; j += SF_PER_WORD)
        all_zero &= sf_word_is_zero(x + j);
    return all_zero;
}

#if SF_VECTOR_EXTENSIONS
/* *acc += value * p[0:SF_BLOCK] */
SF_INLINE void SF_NAME(sf_multiply_add)(SF_NAME(sf_classes) *acc, SF_T value, const SF_T *p)
{
    SF_NAME(sf_classes) loaded;
    memcpy(&loaded, p, sizeof loaded);
    *acc += value * loaded;
}

/*
 * z[0:SF_BLOCK] = x[0:d] @ W for one row and W (d, SF_BLOCK): the narrow case
 * (k <= SF_BLOCK, MNIST's). All-zero groups of SF_GROUP features are passed
 * over; feature j goes to accumulator j % 4 (a last, short group to the
 * first): four independent chains of adds whose order depends on j alone.
 */
SF_INLINE void SF_NAME(sf_logits_narrow_row)(const SF_T *x, ptrdiff_t d, const SF_T *W, SF_T *z)
{
    SF_NAME(sf_classes) acc[4];
    memset(acc, 0, sizeof acc);
    ptrdiff_t j = 0;
    for (; j + SF_GROUP <= d; j += SF_GROUP) {
        if (SF_NAME(sf_all_zero)(x + j, SF_GROUP))
            continue;
        /* Zeros inside a nonzero group are multiplied too: a branch per feature would mispredict. */
        for (int m = 0; m < SF_GROUP; m++)
            SF_NAME(sf_multiply_add)(&acc[m % 4], x[j + m], W + (j + m) * SF_BLOCK);
    }
    for (; j < d; j++)
        SF_NAME(sf_multiply_add)(&acc[0], x[j], W + j * SF_BLOCK);
    const SF_NAME(sf_classes) total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    memcpy(z, &total, sizeof total);
}

/*
 * out[r][c0:c0 + SF_BLOCK] = sum over features j in order of rows[r][j] * W[j, c0:c0 + SF_BLOCK]
 * for SF_TILE rows (the first n_out of them stored): the wide case, where
 * each load of W serves four rows. Words that are zero in every row are
 * passed over.
 */
SF_INLINE void SF_NAME(sf_logits_tile)(const SF_T *const rows[SF_TILE], ptrdiff_t d, const SF_T *W, ptrdiff_t kp,
                                       ptrdiff_t c0, int n_out, SF_T *const out[SF_TILE])
{
    SF_NAME(sf_classes) acc[SF_TILE];
    memset(acc, 0, sizeof acc);
    ptrdiff_t j = 0;
    for (; j + SF_PER_WORD <= d; j += SF_PER_WORD) {
        if (sf_word_is_zero(rows[0] + j) && sf_word_is_zero(rows[1] + j) && sf_word_is_zero(rows[2] + j)
            && sf_word_is_zero(rows[3] + j))
            continue;
        for (ptrdiff_t e = j; e < j + SF_PER_WORD; e++)
            for (int r = 0; r < SF_TILE; r++)
                SF_NAME(sf_multiply_add)(&acc[r], rows[r][e], W + e * kp + c0);
    }
    for (; j < d; j++)
        for (int r = 0; r < SF_TILE; r++)
            SF_NAME(sf_multiply_add)(&acc[r], rows[r][j], W + j * kp + c0);
    for (int r = 0; r < n_out; r++)
        memcpy(out[r] + c0, &acc[r], sizeof acc[r]);
}

/*
 * dWt[c, j:j + SF_LANES] = sum over rows i < n in order of G[i, c] * X[i, j:j + SF_LANES]
 * for the n_classes <= SF_BLOCK classes from c0. One vector accumulator per
 * class stays in a register (the class loop is unrolled, its test
 * predictable); rows whose SF_LANES features are all zero are passed over.
 */
SF_INLINE void SF_NAME(sf_gradient_lanes)(const SF_T *X, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j, const SF_T *G,
                                          ptrdiff_t kp, ptrdiff_t c0, int n_classes, SF_T *dWt)
{
    SF_NAME(sf_features) acc[SF_BLOCK];
    memset(acc, 0, sizeof acc);
    for (ptrdiff_t i = 0; i < n; i++) {
        const SF_T *x = X + i * d + j;
        if (SF_NAME(sf_all_zero)(x, SF_LANES))
            continue;
        SF_NAME(sf_features) features;
        memcpy(&features, x, sizeof features);
        const SF_T *g = G + i * kp + c0;
#pragma GCC unroll 16
        for (int c = 0; c < SF_BLOCK; c++)
            if (c < n_classes)
                acc[c] += g[c] * features;
    }
    for (int c = 0; c < n_classes; c++)
        memcpy(dWt + (c0 + c) * d + j, &acc[c], sizeof acc[c]);
}
#endif

/*
 * Z[i, :] = X[i, :] @ W for the n rows of X (n, d); W is (d, kp), Z is (n, kp).
 * Wide W go in tiles of SF_TILE rows; a last, short tile repeats its last row,
 * and the copies are computed and dropped.
 */
SF_MULTIVERSION
static void SF_NAME(sf_logits)(const SF_T *X, ptrdiff_t n, ptrdiff_t d, const SF_T *W, ptrdiff_t kp, SF_T *Z)
{
#if SF_VECTOR_EXTENSIONS
    if (kp == SF_BLOCK) {
        for (ptrdiff_t i = 0; i < n; i++)
            SF_NAME(sf_logits_narrow_row)(X + i * d, d, W, Z + i * kp);
        return;
    }
    for (ptrdiff_t i = 0; i < n; i += SF_TILE) {
        const int n_rows = n - i < SF_TILE ? (int)(n - i) : SF_TILE;
        const SF_T *rows[SF_TILE];
        SF_T *out[SF_TILE];
        for (int r = 0; r < SF_TILE; r++) {
            const ptrdiff_t row = i + (r < n_rows ? r : n_rows - 1);
            rows[r] = X + row * d;
            out[r] = Z + row * kp;
        }
        for (ptrdiff_t c0 = 0; c0 < kp; c0 += SF_BLOCK)
            SF_NAME(sf_logits_tile)(rows, d, W, kp, c0, n_rows, out);
    }
#else
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t c = 0; c < kp; c++) {
            SF_T total = 0;
            for (ptrdiff_t j = 0; j < d; j++)
                total += X[i * d + j] * W[j * kp + c];
            Z[i * kp + c] = total;
        }
#endif
}

/*
 * dWt[c, j] = sum over rows i in order of X[i, j] * G[i, c], for features
 * j0 <= j < j1 and classes c < k: the weight gradient transposed, (k, d), so
 * that its vectors run along the features of X's rows. X (n, d), G (n, kp).
 */
SF_MULTIVERSION
static void SF_NAME(sf_weight_gradient)(const SF_T *X, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1,
                                        const SF_T *G, ptrdiff_t k, ptrdiff_t kp, SF_T *dWt)
{
    ptrdiff_t j = j0;
#if SF_VECTOR_EXTENSIONS
    for (; j + SF_LANES <= j1; j += SF_LANES)
        for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_BLOCK)
            SF_NAME(sf_gradient_lanes)(X, n, d, j, G, kp, c0, k - c0 < SF_BLOCK ? (int)(k - c0) : SF_BLOCK, dWt);
#endif
    for (; j < j1; j++)
        for (ptrdiff_t c = 0; c < k; c++) {
            SF_T total = 0;
            for (ptrdiff_t i = 0; i < n; i++)
                total += X[i * d + j] * G[i * kp + c];
            dWt[c * d + j] = total;
        }
}

#undef SF_PER_WORD
#undef SF_GROUP
#undef SF_LANES
#undef SF_T
#undef SF_NAME
