/*
 * hot_loops/narrow_impl.h: the narrow family (see hot_loops.h), up to
 * SF_CLASS_BLOCK classes, vectors along the features of the transposed
 * weights Wt (k, dp). Owns the pair's entry to the nonzero masks
 * (sf_nonzero_groups_<pair>) and the vectors they mark (sf_nonzero_vectors),
 * the logits of a row (sf_logits_narrow_row, sf_logits_narrow, sf_logits)
 * and the weight gradient of a vector of features with the step it takes
 * (sf_gradient_lanes, sf_weight_gradient), each with its plain loops. Uses
 * config.h, masks.h, steps.h and vectors_impl.h.
 *
 * A template: pair_impl.h includes it once per (weights, features) type
 * pair. No include guard.
 */

/* The rows' nonzero masks (see sf_nonzero_groups in masks.h). */
SF_MULTIVERSION
static void SF_NAME(sf_nonzero_groups)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, uint64_t *masks,
                                       ptrdiff_t ldm)
{
    sf_nonzero_groups(X, n, d, sizeof(SF_X), masks, ldm);
}

/* The bits of mask word `bits` that start a vector of features (SF_GROUPS_PER_LANES groups), set where any of its groups is. */
SF_INLINE uint64_t SF_NAME(sf_nonzero_vectors)(uint64_t bits)
{
    return SF_GROUPS_PER_LANES == 2 ? (bits | bits >> 1) & 0x5555555555555555ull : bits;
}

#if SF_VECTOR_EXTENSIONS
/*
 * acc[c] += features * Wt[c, j:j + SF_LANES] for c < k <= SF_CLASS_BLOCK, k a
 * compile-time constant (SF_WITH_CONSTANT_CLASSES).
 */
SF_INLINE void SF_NAME(sf_multiply_add_weights)(SF_NAME(sf_features) acc[SF_CLASS_BLOCK],
                                                SF_NAME(sf_features) features, const SF_T *Wt, ptrdiff_t dp,
                                                ptrdiff_t j, int k)
{
#pragma GCC unroll 16
    for (int c = 0; c < k; c++) {
        SF_NAME(sf_features) weights;
        memcpy(&weights, Wt + c * dp + j, sizeof weights);
        acc[c] += features * weights;
    }
}

/*
 * z[c] = x @ Wt[c, :d] for one row x (d,) and c < k <= SF_CLASS_BLOCK (a
 * compile-time constant): MNIST's case, a vector of features serving every
 * class. Only the vectors set in the row's mask (its words ldm apart) are
 * visited; the last, short one (where d is not a whole number of vectors)
 * after the others, so that the loop loads whole vectors only.
 */
SF_INLINE void SF_NAME(sf_logits_narrow_row)(const SF_X *x, const uint64_t *mask, ptrdiff_t ldm, ptrdiff_t d,
                                             const SF_T *Wt, ptrdiff_t dp, int k, SF_T *z)
{
    SF_NAME(sf_features) acc[SF_CLASS_BLOCK];
    for (int c = 0; c < SF_CLASS_BLOCK; c++)
        acc[c] = (SF_NAME(sf_features)){0};
    /* The short vector's bit (past the mask words when there is none) is taken out of the loop. */
    const ptrdiff_t whole = d / SF_LANES * SF_LANES, short_group = whole / SF_GROUP;
    for (ptrdiff_t w = 0; w < sf_mask_words(d); w++) {
        uint64_t bits = SF_NAME(sf_nonzero_vectors)(mask[w * ldm]);
        if (w == short_group / 64)
            bits &= ~((uint64_t)1 << (short_group % 64));
        for (; bits != 0; bits &= bits - 1) {
            const ptrdiff_t j = SF_GROUP * (64 * w + __builtin_ctzll(bits));
            SF_NAME(sf_multiply_add_weights)(acc, SF_NAME(sf_load_features)(x + j, SF_LANES), Wt, dp, j, k);
        }
    }
    if (whole < d && (SF_NAME(sf_nonzero_vectors)(mask[short_group / 64 * ldm]) >> (short_group % 64) & 1))
        SF_NAME(sf_multiply_add_weights)(acc, SF_NAME(sf_load_features)(x + whole, d - whole), Wt, dp, whole, k);
    for (int c = 0; c < k; c++)
        z[c] = SF_NAME(sf_sum_lanes)(acc[c]);
}

/*
 * For features j to j + SF_LANES, the weight gradient of the k <=
 * SF_CLASS_BLOCK (a compile-time constant) classes, sum over rows i < n in
 * order of G[i, c] * X[i, j:j + SF_LANES], one vector accumulator per class
 * in a register; rows whose masks show these features all zero are passed
 * over. Then, for each class, `step` (steps.h) on the vectors Wt[c, j:j +
 * SF_LANES] and Vt[c, j:j + SF_LANES] with g = scale * gradient: the penalty
 * and the momentum in the pass that writes the weights.
 */
SF_INLINE void SF_NAME(sf_gradient_lanes)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n,
                                          ptrdiff_t d, ptrdiff_t j, const SF_T *G, ptrdiff_t ldg, int k, int step,
                                          SF_T lr, SF_T scale, SF_T alpha, SF_T momentum, SF_T *Wt, SF_T *Vt,
                                          ptrdiff_t dp)
{
    SF_NAME(sf_features) acc[SF_CLASS_BLOCK];
    for (int c = 0; c < SF_CLASS_BLOCK; c++)
        acc[c] = (SF_NAME(sf_features)){0};
    const ptrdiff_t group = j / SF_GROUP;
    const ptrdiff_t count = d - j < SF_LANES ? d - j : SF_LANES;
    const uint64_t lanes_groups = ((uint64_t)1 << SF_GROUPS_PER_LANES) - 1;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += 64) {
        /* The rows among the next 64 with a nonzero feature here, as bits: visited without a branch each. */
        uint64_t active = sf_active_rows(masks + group / 64 * ldm + i0, lanes_groups << (group % 64), n - i0);
        for (; active != 0; active &= active - 1) {
            const ptrdiff_t i = i0 + __builtin_ctzll(active);
            const SF_NAME(sf_features) features = SF_NAME(sf_load_features)(X + i * d + j, count);
            const SF_T *g = G + i * ldg;
#pragma GCC unroll 16
            for (int c = 0; c < k; c++)
                acc[c] += g[c] * features;
        }
    }
#define SF_STORE(UPDATE, VELOCITY)                                                                                 \
    for (int c = 0; c < k; c++) {                                                                                  \
        SF_NAME(sf_features) g = scale * acc[c], w, v = {0};                                                       \
        memcpy(&w, Wt + c * dp + j, sizeof w);                                                                     \
        if (VELOCITY)                                                                                              \
            memcpy(&v, Vt + c * dp + j, sizeof v);                                                                 \
        UPDATE(w, v, g, lr, alpha, momentum);                                                                      \
        memcpy(Wt + c * dp + j, &w, sizeof w);                                                                     \
        if (VELOCITY)                                                                                              \
            memcpy(Vt + c * dp + j, &v, sizeof v);                                                                 \
    }
    SF_WITH_STEP(step, SF_STORE)
#undef SF_STORE
}

/* Z[i, :k] for rows X (n, d) and their masks, k <= SF_CLASS_BLOCK: a row at a time. */
SF_MULTIVERSION
static void SF_NAME(sf_logits_narrow)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n, ptrdiff_t d,
                                      const SF_T *Wt, ptrdiff_t dp, ptrdiff_t k, SF_T *Z, ptrdiff_t ldz)
{
#define SF_ROWS(K)                                                                                                 \
    for (ptrdiff_t i = 0; i < n; i++)                                                                              \
    SF_NAME(sf_logits_narrow_row)(X + i * d, masks + i, ldm, d, Wt, dp, K, Z + i * ldz)
    SF_WITH_CONSTANT_CLASSES(k, SF_ROWS)
#undef SF_ROWS
}
#endif

/*
 * Z[i * ldz + c] = X[i, :] @ Wt[c, :d] for the n rows of X (n, d) and their
 * masks (words ldm apart), c < k <= SF_CLASS_BLOCK; Wt is (k, dp).
 */
static void SF_NAME(sf_logits)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n, ptrdiff_t d,
                               const SF_T *Wt, ptrdiff_t dp, ptrdiff_t k, SF_T *Z, ptrdiff_t ldz)
{
#if SF_VECTOR_EXTENSIONS
    SF_NAME(sf_logits_narrow)(X, masks, ldm, n, d, Wt, dp, k, Z, ldz);
#else
    (void)masks;
    (void)ldm;
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t c = 0; c < k; c++)
            Z[i * ldz + c] = SF_NAME(sf_strided_dot)(X + i * d, 1, Wt + c * dp, 1, d);
#endif
}

/*
 * The weight gradient of features j0 <= j < j1 and classes c < k <=
 * SF_CLASS_BLOCK, sum over rows i < n in order of X[i, j] * G[i * ldg + c],
 * transposed so that its vectors run along X's rows, and `step` (steps.h)
 * with it on Wt[c, j] and Vt[c, j]: with an update, Wt (k, dp) and the
 * velocities Vt (k, dp, NULL for the steps without) are trained in place;
 * without, Wt is the gradient's output. X (n, d) and its rows' nonzero
 * masks, words ldm apart; j0 is a whole number of vectors. (The vector
 * loops write the one that holds d - 1 whole, its lanes from d on zero where
 * those of Wt and Vt are.)
 */
SF_MULTIVERSION
static void SF_NAME(sf_weight_gradient)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n,
                                        ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const SF_T *G, ptrdiff_t ldg,
                                        ptrdiff_t k, int step, SF_T lr, SF_T scale, SF_T alpha, SF_T momentum,
                                        SF_T *Wt, SF_T *Vt, ptrdiff_t dp)
{
#if SF_VECTOR_EXTENSIONS
#define SF_FEATURES(K)                                                                                             \
    for (ptrdiff_t j = j0; j < j1; j += SF_LANES)                                                                  \
    SF_NAME(sf_gradient_lanes)(X, masks, ldm, n, d, j, G, ldg, K, step, lr, scale, alpha, momentum, Wt, Vt, dp)
    SF_WITH_CONSTANT_CLASSES(k, SF_FEATURES)
#undef SF_FEATURES
#else
    (void)masks;
    (void)ldm;
    SF_NAME(sf_strided_weight_gradient)(X, n, d, j0, j1, G, ldg, k, step, lr, scale, alpha, momentum, Wt, Vt, 1,
                                        dp);
#endif
}
