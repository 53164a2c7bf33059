/*
 * One instantiation of the hot loops (see hot_loops.h) for weights of type
 * SF_T and features of type SF_X (SF_T itself, or uint8_t with SF_X_IS_T 0);
 * SF_NAME(name) gives the function names.
 * No include guard: hot_loops.h includes this file once per type pair.
 */

/* Features per vector: 64 bytes of weights, whole mask groups. */
#define SF_LANES ((ptrdiff_t)(SF_VECTOR_BYTES / sizeof(SF_T)))
/* SF_LANES for the preprocessor: 16 floats or 8 doubles. */
#define SF_LANES_LITERAL (SF_VECTOR_BYTES / SF_T_SIZE)
#define SF_GROUPS_PER_LANES (SF_LANES / SF_GROUP)

/* The rows' nonzero masks (see sf_nonzero_groups in hot_loops.h). */
SF_MULTIVERSION
static void SF_NAME(sf_nonzero_groups)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, uint64_t *masks)
{
    sf_nonzero_groups(X, n, d, sizeof(SF_X), masks);
}

/* The bits of mask word `bits` that start a vector of features (SF_GROUPS_PER_LANES groups), set where any of its groups is. */
SF_INLINE uint64_t SF_NAME(sf_nonzero_vectors)(uint64_t bits)
{
    return SF_GROUPS_PER_LANES == 2 ? (bits | bits >> 1) & 0x5555555555555555ull : bits;
}

#if !SF_VECTOR_EXTENSIONS
/* The plain loops' one sum: x[0] * w[0] + x[x_step] * w[w_step] + ..., count terms in order. */
SF_INLINE SF_T SF_NAME(sf_strided_dot)(const SF_X *x, ptrdiff_t x_step, const SF_T *w, ptrdiff_t w_step,
                                       ptrdiff_t count)
{
    SF_T total = 0;
    for (ptrdiff_t i = 0; i < count; i++)
        total += (SF_T)x[i * x_step] * w[i * w_step];
    return total;
}
#endif

#if SF_VECTOR_EXTENSIONS
/* SF_LANES consecutive features of a row of X, or weights of a row of Wt. */
typedef SF_T SF_NAME(sf_features) __attribute__((vector_size(SF_LANES * sizeof(SF_T))));

/* Features p[0:count] as a vector of SF_T, zeros after them (count <= SF_LANES; a compile-time SF_LANES in the hot loops). */
SF_INLINE SF_NAME(sf_features) SF_NAME(sf_load_features)(const SF_X *p, ptrdiff_t count)
{
    SF_NAME(sf_features) features;
    if (count < SF_LANES) {
        features = (SF_NAME(sf_features)){0};
        for (ptrdiff_t l = 0; l < count; l++)
            features[l] = (SF_T)p[l];
        return features;
    }
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

/* The sum of the lanes of v, halves added pairwise: in registers where the compiler shuffles vectors. */
SF_INLINE SF_T SF_NAME(sf_sum_lanes)(SF_NAME(sf_features) v)
{
#if SF_SHUFFLEVECTOR
#if SF_LANES_LITERAL == 16
    typedef SF_T eight __attribute__((vector_size(8 * sizeof(SF_T))));
    const eight v8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                     __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    const SF_NAME(sf_features) v8 = v;
#endif
    typedef SF_T four __attribute__((vector_size(4 * sizeof(SF_T))));
    typedef SF_T two __attribute__((vector_size(2 * sizeof(SF_T))));
    const four v4 = __builtin_shufflevector(v8, v8, 0, 1, 2, 3) + __builtin_shufflevector(v8, v8, 4, 5, 6, 7);
    const two v2 = __builtin_shufflevector(v4, v4, 0, 1) + __builtin_shufflevector(v4, v4, 2, 3);
    return v2[0] + v2[1];
#else
    SF_T lanes[SF_LANES];
    memcpy(lanes, &v, sizeof lanes);
    for (int width = SF_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            lanes[l] += lanes[l + width];
    return lanes[0];
#endif
}

/* acc[c] += features * Wt[c, j:j + SF_LANES] for c < k <= SF_CLASS_BLOCK. */
SF_INLINE void SF_NAME(sf_multiply_add_weights)(SF_NAME(sf_features) acc[SF_CLASS_BLOCK],
                                                SF_NAME(sf_features) features, const SF_T *Wt, ptrdiff_t dp,
                                                ptrdiff_t j, ptrdiff_t k)
{
#define SF_WEIGHTS_TERM(c)                                                                                         \
    do {                                                                                                           \
        SF_NAME(sf_features) weights;                                                                              \
        memcpy(&weights, Wt + (c) * dp + j, sizeof weights);                                                       \
        acc[c] += features * weights;                                                                              \
    } while (0)
    SF_FOR_CLASSES(k, SF_WEIGHTS_TERM)
#undef SF_WEIGHTS_TERM
}

/*
 * z[c] = x @ Wt[c, :d] for one row x (d,) and c < k <= SF_CLASS_BLOCK:
 * MNIST's case, a vector of features serving every class. Only the vectors
 * set in the row's mask are visited; the last, short one (where d is not a
 * whole number of vectors) after the others, so that the loop loads whole
 * vectors only.
 */
SF_INLINE void SF_NAME(sf_logits_narrow_row)(const SF_X *x, const uint64_t *mask, ptrdiff_t d, const SF_T *Wt,
                                             ptrdiff_t dp, ptrdiff_t k, SF_T *z)
{
    SF_NAME(sf_features) acc[SF_CLASS_BLOCK];
    for (int c = 0; c < SF_CLASS_BLOCK; c++)
        acc[c] = (SF_NAME(sf_features)){0};
    /* The short vector's bit (past the mask words when there is none) is taken out of the loop. */
    const ptrdiff_t whole = d / SF_LANES * SF_LANES, short_group = whole / SF_GROUP;
    for (ptrdiff_t w = 0; w < sf_mask_words(d); w++) {
        uint64_t bits = SF_NAME(sf_nonzero_vectors)(mask[w]);
        if (w == short_group / 64)
            bits &= ~((uint64_t)1 << (short_group % 64));
        for (; bits != 0; bits &= bits - 1) {
            const ptrdiff_t j = SF_GROUP * (64 * w + __builtin_ctzll(bits));
            SF_NAME(sf_multiply_add_weights)(acc, SF_NAME(sf_load_features)(x + j, SF_LANES), Wt, dp, j, k);
        }
    }
    if (whole < d && (SF_NAME(sf_nonzero_vectors)(mask[short_group / 64]) >> (short_group % 64) & 1))
        SF_NAME(sf_multiply_add_weights)(acc, SF_NAME(sf_load_features)(x + whole, d - whole), Wt, dp, whole, k);
    for (int c = 0; c < k; c++)
        z[c] = SF_NAME(sf_sum_lanes)(acc[c]);
}

/*
 * out[r][c] = rows[r] @ Wt[c0 + c, :d] for r < SF_TILE and c < n_classes <=
 * SF_TILE_CLASSES: the wide case, each vector of weights serving SF_TILE
 * rows. Only the vectors of features that are nonzero in some row of the
 * tile (by the rows' masks) are visited.
 */
SF_INLINE void SF_NAME(sf_logits_tile)(const SF_X *const rows[SF_TILE], const uint64_t *const masks[SF_TILE],
                                       ptrdiff_t d, const SF_T *Wt, ptrdiff_t dp, ptrdiff_t c0, int n_classes,
                                       SF_T *const out[SF_TILE])
{
    SF_NAME(sf_features) acc[SF_TILE][SF_TILE_CLASSES];
    for (int r = 0; r < SF_TILE; r++)
        for (int c = 0; c < SF_TILE_CLASSES; c++)
            acc[r][c] = (SF_NAME(sf_features)){0};
    for (ptrdiff_t w = 0; w < sf_mask_words(d); w++)
        for (uint64_t bits = SF_NAME(sf_nonzero_vectors)(masks[0][w] | masks[1][w] | masks[2][w] | masks[3][w]);
             bits != 0; bits &= bits - 1) {
            const ptrdiff_t j = SF_GROUP * (64 * w + __builtin_ctzll(bits));
            const ptrdiff_t count = d - j < SF_LANES ? d - j : SF_LANES;
            SF_NAME(sf_features) features[SF_TILE];
            for (int r = 0; r < SF_TILE; r++)
                features[r] = SF_NAME(sf_load_features)(rows[r] + j, count);
            for (int c = 0; c < SF_TILE_CLASSES; c++)
                if (c < n_classes) {
                    SF_NAME(sf_features) weights;
                    memcpy(&weights, Wt + (c0 + c) * dp + j, sizeof weights);
                    for (int r = 0; r < SF_TILE; r++)
                        acc[r][c] += features[r] * weights;
                }
        }
    for (int r = 0; r < SF_TILE; r++)
        for (int c = 0; c < n_classes; c++)
            out[r][c] = SF_NAME(sf_sum_lanes)(acc[r][c]);
}

/*
 * dWt[c0 + c, j:j + SF_LANES] = sum over rows i < n in order of G[i, c0 + c] * X[i, j:j + SF_LANES]
 * for the n_classes <= SF_CLASS_BLOCK classes from c0. One vector
 * accumulator per class stays in a register (SF_FOR_CLASSES); rows whose
 * masks show these features all zero are passed over.
 */
SF_INLINE void SF_NAME(sf_gradient_lanes)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                          ptrdiff_t j, const SF_T *G, ptrdiff_t k, ptrdiff_t c0, int n_classes,
                                          SF_T *dWt, ptrdiff_t dp)
{
    SF_NAME(sf_features) acc[SF_CLASS_BLOCK];
    for (int c = 0; c < SF_CLASS_BLOCK; c++)
        acc[c] = (SF_NAME(sf_features)){0};
    const ptrdiff_t words = sf_mask_words(d), group = j / SF_GROUP;
    const ptrdiff_t count = d - j < SF_LANES ? d - j : SF_LANES;
    const uint64_t lanes_groups = ((uint64_t)1 << SF_GROUPS_PER_LANES) - 1;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += 64) {
        /* The rows among the next 64 with a nonzero feature here, as bits: visited without a branch each. */
        uint64_t active = 0;
        for (int r = 0; r < 64 && i0 + r < n; r++)
            active |= (uint64_t)(((masks[(i0 + r) * words + group / 64] >> (group % 64)) & lanes_groups) != 0) << r;
        for (; active != 0; active &= active - 1) {
            const ptrdiff_t i = i0 + __builtin_ctzll(active);
            const SF_NAME(sf_features) features = SF_NAME(sf_load_features)(X + i * d + j, count);
            const SF_T *g = G + i * k + c0;
#define SF_GRADIENT_TERM(c) (acc[c] += g[c] * features)
            SF_FOR_CLASSES(n_classes, SF_GRADIENT_TERM)
#undef SF_GRADIENT_TERM
        }
    }
    for (int c = 0; c < n_classes; c++)
        memcpy(dWt + (c0 + c) * dp + j, &acc[c], sizeof acc[c]);
}
#endif

#if SF_VECTOR_EXTENSIONS
/* Z[i, :k] for rows X (n, d) and k <= SF_CLASS_BLOCK: a row at a time. */
SF_MULTIVERSION
static void SF_NAME(sf_logits_narrow)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                      const SF_T *Wt, ptrdiff_t dp, ptrdiff_t k, SF_T *Z)
{
    for (ptrdiff_t i = 0; i < n; i++)
        SF_NAME(sf_logits_narrow_row)(X + i * d, masks + i * sf_mask_words(d), d, Wt, dp, k, Z + i * k);
}

/*
 * Z[i, :k] for rows X (n, d) and more classes: rows in tiles of SF_TILE,
 * each block of classes done for every row before the next, so that its
 * weights stay in cache. A last, short tile repeats its last row; the copies
 * are computed and dropped.
 */
SF_MULTIVERSION
static void SF_NAME(sf_logits_wide)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                    const SF_T *Wt, ptrdiff_t dp, ptrdiff_t k, SF_T *Z)
{
    const ptrdiff_t words = sf_mask_words(d);
    for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_TILE_CLASSES)
        for (ptrdiff_t i = 0; i < n; i += SF_TILE) {
            const SF_X *rows[SF_TILE];
            const uint64_t *row_masks[SF_TILE];
            SF_T *out[SF_TILE];
            for (int r = 0; r < SF_TILE; r++) {
                const ptrdiff_t row = i + r < n ? i + r : n - 1;
                rows[r] = X + row * d;
                row_masks[r] = masks + row * words;
                out[r] = Z + row * k + c0;
            }
            SF_NAME(sf_logits_tile)(rows, row_masks, d, Wt, dp, c0,
                                    k - c0 < SF_TILE_CLASSES ? (int)(k - c0) : SF_TILE_CLASSES, out);
        }
}
#endif

/* Z[i, c] = X[i, :] @ Wt[c, :d] for the n rows of X (n, d) and their masks; Wt is (k, dp), Z is (n, k). */
static void SF_NAME(sf_logits)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d, const SF_T *Wt,
                               ptrdiff_t dp, ptrdiff_t k, SF_T *Z)
{
#if SF_VECTOR_EXTENSIONS
    if (k <= SF_CLASS_BLOCK)
        SF_NAME(sf_logits_narrow)(X, masks, n, d, Wt, dp, k, Z);
    else
        SF_NAME(sf_logits_wide)(X, masks, n, d, Wt, dp, k, Z);
#else
    (void)masks;
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t c = 0; c < k; c++)
            Z[i * k + c] = SF_NAME(sf_strided_dot)(X + i * d, 1, Wt + c * dp, 1, d);
#endif
}

/*
 * dWt[c, j] = sum over rows i in order of X[i, j] * G[i, c], for features
 * j0 <= j < j1 and classes c < k: the weight gradient transposed, (k, dp),
 * so that its vectors run along X's rows. X (n, d), G (n, k); j0 is a whole
 * number of vectors. (The vector loops write the one that holds d - 1 whole,
 * its lanes from d on zero.)
 */
SF_MULTIVERSION
static void SF_NAME(sf_weight_gradient)(const SF_X *X, const uint64_t *masks, ptrdiff_t n, ptrdiff_t d,
                                        ptrdiff_t j0, ptrdiff_t j1, const SF_T *G, ptrdiff_t k, SF_T *dWt,
                                        ptrdiff_t dp)
{
#if SF_VECTOR_EXTENSIONS
    for (ptrdiff_t j = j0; j < j1; j += SF_LANES)
        for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_CLASS_BLOCK)
            SF_NAME(sf_gradient_lanes)(X, masks, n, d, j, G, k, c0,
                                       k - c0 < SF_CLASS_BLOCK ? (int)(k - c0) : SF_CLASS_BLOCK, dWt, dp);
#else
    (void)masks;
    for (ptrdiff_t j = j0; j < j1; j++)
        for (ptrdiff_t c = 0; c < k; c++)
            dWt[c * dp + j] = SF_NAME(sf_strided_dot)(X + j, d, G + c, k, n);
#endif
}

#undef SF_LANES
#undef SF_LANES_LITERAL
#undef SF_T_SIZE
#undef SF_GROUPS_PER_LANES
#undef SF_T
#undef SF_X
#undef SF_X_IS_T
#undef SF_NAME
