/*
 * One instantiation of the hot loops (see hot_loops.h) for weights of type
 * SF_T and features of type SF_X (SF_T itself, or uint8_t with SF_X_IS_T 0);
 * SF_NAME(name) gives the function names.
 * No include guard: hot_loops.h includes this file once per type pair.
 */

/* Features per vector of the gradient: 64 bytes, one AVX-512 register; whole mask groups. */
#define SF_LANES ((ptrdiff_t)(64 / sizeof(SF_T)))
#define SF_GROUPS_PER_LANES (SF_LANES / SF_GROUP)

#if SF_VECTOR_EXTENSIONS
/* SF_BLOCK consecutive classes of a row of W or Z. */
typedef SF_T SF_NAME(sf_classes) __attribute__((vector_size(SF_BLOCK * sizeof(SF_T))));
/* SF_LANES consecutive features of a row of X. */
typedef SF_T SF_NAME(sf_features) __attribute__((vector_size(SF_LANES * sizeof(SF_T))));
#endif

/* The rows' nonzero masks (see sf_nonzero_groups in hot_loops.h). */
SF_MULTIVERSION
static void SF_NAME(sf_nonzero_groups)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, uint64_t *masks)
{
    sf_nonzero_groups(X, n, d, sizeof(SF_X), masks);
}

#if SF_VECTOR_EXTENSIONS
/* *acc += value * p[0:SF_BLOCK] */
SF_INLINE void SF_NAME(sf_multiply_add)(SF_NAME(sf_classes) *acc, SF_T value, const SF_T *p)
{
    SF_NAME(sf_classes) loaded;
    memcpy(&loaded, p, sizeof loaded);
    *acc += value * loaded;
}

/* acc[m % 4] += x[j + m] * W[j + m, :] for the SF_GROUP features of group j / SF_GROUP (W (d, SF_BLOCK)). */
SF_INLINE void SF_NAME(sf_group_logits)(SF_NAME(sf_classes) acc[4], const SF_X *x, ptrdiff_t j, const SF_T *W)
{
    for (int m = 0; m < SF_GROUP; m++)
        SF_NAME(sf_multiply_add)(&acc[m % 4], (SF_T)x[j + m], W + (j + m) * SF_BLOCK);
}

/*
 * z[0:SF_BLOCK] = x[0:d] @ W for one row and W (d, SF_BLOCK): the narrow case
 * (k <= SF_BLOCK, MNIST's). Only the groups set in the row's mask are visited,
 * a bit at a time (no branch per group to mispredict); zeros inside them are
 * multiplied. Feature j goes to accumulator j % 4 (a last, short group to its
 * own): independent chains of adds whose order depends on j alone.
 */
SF_INLINE void SF_NAME(sf_logits_narrow_row)(const SF_X *x, const uint64_t *mask, ptrdiff_t d, const SF_T *W,
                                             SF_T *z)
{
    SF_NAME(sf_classes) acc[4], tail;
    memset(acc, 0, sizeof acc);
    memset(&tail, 0, sizeof tail);
    const ptrdiff_t full_groups = d / SF_GROUP;
    for (ptrdiff_t w = 0; w < sf_mask_words(d); w++)
        for (uint64_t bits = mask[w]; bits != 0; bits &= bits - 1) {
            const ptrdiff_t group = 64 * w + __builtin_ctzll(bits);
            if (group < full_groups)
                SF_NAME(sf_group_logits)(acc, x, group * SF_GROUP, W);
            else
                for (ptrdiff_t j = group * SF_GROUP; j < d; j++)
                    SF_NAME(sf_multiply_add)(&tail, (SF_T)x[j], W + j * SF_BLOCK);
        }
    const SF_NAME(sf_classes) total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail;
    memcpy(z, &total, sizeof total);
}

/*
 * out[r][c0:c0 + SF_BLOCK] = sum over features j in order of rows[r][j] * W[j, c0:c0 + SF_BLOCK]
 * for SF_TILE rows (the first n_out of them stored): the wide case, where
 * each load of W serves four rows. Groups that are zero in every row of the
 * tile (by their masks) are passed over.
 */
SF_INLINE void SF_NAME(sf_logits_tile)(const SF_X *const rows[SF_TILE], const uint64_t *const masks[SF_TILE],
                                       ptrdiff_t d, const SF_T *W, ptrdiff_t kp, ptrdiff_t c0, int n_out,
                                       SF_T *const out[SF_TILE])
{
    SF_NAME(sf_classes) acc[SF_TILE];
    memset(acc, 0, sizeof acc);
    for (ptrdiff_t w = 0; w < sf_mask_words(d); w++)
        for (uint64_t bits = masks[0][w] | masks[1][w] | masks[2][w] | masks[3][w]; bits != 0; bits &= bits - 1) {
            const ptrdiff_t j0 = SF_GROUP * (64 * w + __builtin_ctzll(bits));
            const ptrdiff_t j1 = j0 + SF_GROUP < d ? j0 + SF_GROUP : d;
            for (ptrdiff_t j = j0; j < j1; j++)
                for (int r = 0; r < SF_TILE; r++)
                    SF_NAME(sf_multiply_add)(&acc[r], (SF_T)rows[r][j], W + j * kp + c0);
        }
    for (int r = 0; r < n_out; r++)
        memcpy(out[r] + c0, &acc[r], sizeof acc[r]);
}

/*
 * dWt[c, j:j + SF_LANES] = sum over rows i < n in order of G[i, c] * X[i, j:j + SF_LANES]
 * for the n_classes <= SF_BLOCK classes from c0. One vector accumulator per
 * class stays in a register (the class loop is unrolled, its test
 * predictable); rows whose masks show these features all zero are passed over.
 */
/* SF_LANES features p[0:SF_LANES] as a vector of SF_T. */
SF_INLINE SF_NAME(sf_features) SF_NAME(sf_load_features)(const SF_X *p)
{
    SF_NAME(sf_features) features;
#if SF_X_IS_T
    memcpy(&features, p, sizeof features);
#else
    /* Through int32 lanes: GCC then emits one zero-extension and one conversion a vector. */
    typedef int32_t lanes_of_int32 __attribute__((vector_size(SF_LANES * sizeof(int32_t))));
    int32_t widened[SF_LANES];
    for (int l = 0; l < SF_LANES; l++)
        widened[l] = p[l];
    lanes_of_int32 ints;
    memcpy(&ints, widened, sizeof ints);
    features = __builtin_convertvector(ints, SF_NAME(sf_features));
#endif
    return features;
}

SF_INLINE void SF_NAME(sf_gradient_lanes)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                          ptrdiff_t j, const SF_T *G, ptrdiff_t kp, ptrdiff_t c0, int n_classes,
                                          SF_T *dWt)
{
    SF_NAME(sf_features) acc[SF_BLOCK];
    memset(acc, 0, sizeof acc);
    const ptrdiff_t words = sf_mask_words(d), group = j / SF_GROUP;
    const uint64_t lanes_groups = ((uint64_t)1 << SF_GROUPS_PER_LANES) - 1;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += 64) {
        /* The rows among the next 64 with a nonzero feature here, as bits: visited without a branch each. */
        uint64_t active = 0;
        for (int r = 0; r < 64 && i0 + r < n; r++)
            active |= (uint64_t)(((masks[(i0 + r) * words + group / 64] >> (group % 64)) & lanes_groups) != 0) << r;
        for (; active != 0; active &= active - 1) {
            const ptrdiff_t i = i0 + __builtin_ctzll(active);
            const SF_NAME(sf_features) features = SF_NAME(sf_load_features)(X + i * d + j);
            const SF_T *g = G + i * kp + c0;
#pragma GCC unroll 16
            for (int c = 0; c < SF_BLOCK; c++)
                if (c < n_classes)
                    acc[c] += g[c] * features;
        }
    }
    for (int c = 0; c < n_classes; c++)
        memcpy(dWt + (c0 + c) * d + j, &acc[c], sizeof acc[c]);
}
#endif

/*
 * Z[i, :] = X[i, :] @ W for the n rows of X (n, d) and their masks; W is (d, kp), Z is (n, kp).
 * Wide W go in tiles of SF_TILE rows; a last, short tile repeats its last row,
 * and the copies are computed and dropped.
 */
SF_MULTIVERSION
static void SF_NAME(sf_logits)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d, const SF_T *W,
                               ptrdiff_t kp, SF_T *Z)
{
#if SF_VECTOR_EXTENSIONS
    if (kp == SF_BLOCK) {
        for (ptrdiff_t i = 0; i < n; i++)
            SF_NAME(sf_logits_narrow_row)(X + i * d, masks + i * sf_mask_words(d), d, W, Z + i * kp);
        return;
    }
    for (ptrdiff_t i = 0; i < n; i += SF_TILE) {
        const int n_rows = n - i < SF_TILE ? (int)(n - i) : SF_TILE;
        const SF_X *rows[SF_TILE];
        const uint64_t *row_masks[SF_TILE];
        SF_T *out[SF_TILE];
        for (int r = 0; r < SF_TILE; r++) {
            const ptrdiff_t row = i + (r < n_rows ? r : n_rows - 1);
            rows[r] = X + row * d;
            row_masks[r] = masks + row * sf_mask_words(d);
            out[r] = Z + row * kp;
        }
        for (ptrdiff_t c0 = 0; c0 < kp; c0 += SF_BLOCK)
            SF_NAME(sf_logits_tile)(rows, row_masks, d, W, kp, c0, n_rows, out);
    }
#else
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t c = 0; c < kp; c++) {
            SF_T total = 0;
            for (ptrdiff_t j = 0; j < d; j++)
                total += (SF_T)X[i * d + j] * W[j * kp + c];
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
static void SF_NAME(sf_weight_gradient)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                        ptrdiff_t j0, ptrdiff_t j1, const SF_T *G, ptrdiff_t k, ptrdiff_t kp,
                                        SF_T *dWt)
{
    ptrdiff_t j = j0;
#if SF_VECTOR_EXTENSIONS
    for (; j + SF_LANES <= j1; j += SF_LANES)
        for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_BLOCK)
            SF_NAME(sf_gradient_lanes)(X, masks, n, d, j, G, kp, c0, k - c0 < SF_BLOCK ? (int)(k - c0) : SF_BLOCK,
                                       dWt);
#endif
    for (; j < j1; j++)
        for (ptrdiff_t c = 0; c < k; c++) {
            SF_T total = 0;
            for (ptrdiff_t i = 0; i < n; i++)
                total += (SF_T)X[i * d + j] * G[i * kp + c];
            dWt[c * d + j] = total;
        }
}

#undef SF_LANES
#undef SF_GROUPS_PER_LANES
#undef SF_T
#undef SF_X
#undef SF_X_IS_T
#undef SF_NAME
