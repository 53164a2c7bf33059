/*
 * hot_loops/vectors_impl.h: the vectors that every loop of a type pair works
 * on. Owns the vector of SF_LANES values of type SF_T (sf_features), its load
 * from features of type SF_X (sf_load_features) and the sum of its lanes
 * (sf_sum_lanes); for the plain loops (no vector extensions), their one sum
 * (sf_strided_dot) and the weight gradient made of it, with its step
 * (sf_strided_weight_gradient). Uses config.h, steps.h and the pair's macros.
 *
 * A template: pair_impl.h includes it once per (weights, features) type
 * pair, with SF_T, SF_X, SF_NAME and SF_LANES defined. No include guard.
 */

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

/*
 * The plain loops' weight gradient of features j0 <= j < j1 and classes c < k: the sum over rows i < n in order
 * of X[i, j] * G[i * ldg + c], and `step` (steps.h) with g = scale * gradient on out[j * feature_step + c *
 * class_step] and the velocity at the same place of velocity (W and V (d, k), or Wt and Vt (k, dp), alike).
 */
SF_INLINE void SF_NAME(sf_strided_weight_gradient)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0,
                                                   ptrdiff_t j1, const SF_T *G, ptrdiff_t ldg, ptrdiff_t k, int step,
                                                   SF_T lr, SF_T scale, SF_T alpha, SF_T momentum, SF_T *out,
                                                   SF_T *velocity, ptrdiff_t feature_step, ptrdiff_t class_step)
{
#define SF_STORE(UPDATE, VELOCITY)                                                                                 \
    for (ptrdiff_t j = j0; j < j1; j++)                                                                            \
        for (ptrdiff_t c = 0; c < k; c++) {                                                                        \
            SF_T g = scale * SF_NAME(sf_strided_dot)(X + j, d, G + c, ldg, n);                                     \
            const ptrdiff_t at = j * feature_step + c * class_step;                                                \
            UPDATE(out[at], velocity[at], g, lr, alpha, momentum);                                                 \
        }
    SF_WITH_STEP(step, SF_STORE)
#undef SF_STORE
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
#endif
