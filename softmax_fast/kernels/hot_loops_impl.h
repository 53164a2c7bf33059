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

/* The rows' nonzero masks (see sf_nonzero_groups in hot_loops/masks.h). */
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
 * over. With `update`, Wt[c, j:j + SF_LANES] -= lr * (scale * gradient);
 * without, Wt[c, j:j + SF_LANES] = scale * gradient.
 */
SF_INLINE void SF_NAME(sf_gradient_lanes)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n,
                                          ptrdiff_t d, ptrdiff_t j, const SF_T *G, ptrdiff_t ldg, int k, SF_T lr,
                                          SF_T scale, int update, SF_T *Wt, ptrdiff_t dp)
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
    for (int c = 0; c < k; c++) {
        SF_NAME(sf_features) weights = scale * acc[c];
        if (update) {
            SF_NAME(sf_features) old;
            memcpy(&old, Wt + c * dp + j, sizeof old);
            weights = old - lr * weights;
        }
        memcpy(Wt + c * dp + j, &weights, sizeof weights);
    }
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

/* Classes of one panel of the GEMM loops: SF_GEMM_VECTORS vectors. */
#define SF_PANEL (SF_GEMM_VECTORS * SF_LANES)

/* A tile of the GEMM loops: SF_GEMM_ROWS rows of one panel of classes. */
typedef SF_NAME(sf_features) SF_NAME(sf_tile)[SF_GEMM_ROWS][SF_GEMM_VECTORS];

/*
 * acc[m][v] = sum over t < depth, in order, of A[t][m] * B[t * ldb + v * SF_LANES : ...]:
 * the register-blocked kernel of both GEMM loops, for A (depth, SF_GEMM_ROWS)
 * packed and B rows of SF_PANEL values ldb apart. Each output is one lane's
 * chain of multiply-adds in the order of t, whatever the tiling.
 */
SF_INLINE void SF_NAME(sf_gemm_tile)(const SF_T *A, const SF_T *B, ptrdiff_t ldb, ptrdiff_t depth,
                                     SF_NAME(sf_tile) out)
{
    SF_NAME(sf_tile) acc;
#pragma GCC unroll 8
    for (int m = 0; m < SF_GEMM_ROWS; m++)
#pragma GCC unroll 8
        for (int v = 0; v < SF_GEMM_VECTORS; v++)
            acc[m][v] = (SF_NAME(sf_features)){0};
    for (ptrdiff_t t = 0; t < depth; t++) {
        SF_NAME(sf_features) b[SF_GEMM_VECTORS];
#pragma GCC unroll 8
        for (int v = 0; v < SF_GEMM_VECTORS; v++)
            memcpy(&b[v], B + t * ldb + v * SF_LANES, sizeof b[v]);
#pragma GCC unroll 8
        for (int m = 0; m < SF_GEMM_ROWS; m++) {
            const SF_T a = A[t * SF_GEMM_ROWS + m];
#pragma GCC unroll 8
            for (int v = 0; v < SF_GEMM_VECTORS; v++)
                acc[m][v] += a * b[v];
        }
    }
    memcpy(out, acc, sizeof acc);
}
#endif

/*
 * out[t * SF_GEMM_ROWS + m] = X[t * t_step + m * m_step] as SF_T, for t < depth
 * and m < count, and 0 for count <= m < SF_GEMM_ROWS: the A operand of
 * sf_gemm_tile, packed once and read by every panel. Converts uint8 pixels.
 */
SF_INLINE void SF_NAME(sf_pack)(const SF_X *X, ptrdiff_t t_step, ptrdiff_t m_step, ptrdiff_t depth, ptrdiff_t count,
                                SF_T *out)
{
    for (ptrdiff_t t = 0; t < depth; t++)
        for (ptrdiff_t m = 0; m < SF_GEMM_ROWS; m++)
            out[t * SF_GEMM_ROWS + m] = m < count ? (SF_T)X[t * t_step + m * m_step] : 0;
}

/*
 * Z[i * ldz + c] = X[i, :] @ W[:, c] for rows X (n, d), W (d, k), c < k: the
 * logits when there are more classes than SF_CLASS_BLOCK, a GEMM on W as it
 * is. The rows are packed in tiles of SF_GEMM_ROWS (uint8 converted once);
 * each panel of SF_PANEL classes then meets every tile while it is in cache.
 * The last, short panel is read from a zero-padded copy, so that no load
 * goes past W. scratch: sf_gemm_logits_scratch(n, d, sizeof(SF_T)) values, 64-byte aligned.
 */
SF_MULTIVERSION
static void SF_NAME(sf_gemm_logits)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, const SF_T *W, ptrdiff_t k, SF_T *Z,
                                    ptrdiff_t ldz, SF_T *scratch)
{
#if SF_VECTOR_EXTENSIONS
    const ptrdiff_t tiles = (n + SF_GEMM_ROWS - 1) / SF_GEMM_ROWS, full = k / SF_PANEL * SF_PANEL;
    SF_T *packed = scratch, *last_panel = scratch + tiles * SF_GEMM_ROWS * d;
    for (ptrdiff_t tile = 0; tile < tiles; tile++) {
        const ptrdiff_t i = tile * SF_GEMM_ROWS, rows = n - i < SF_GEMM_ROWS ? n - i : SF_GEMM_ROWS;
        SF_NAME(sf_pack)(X + i * d, 1, d, d, rows, packed + i * d);
    }
    for (ptrdiff_t j = 0; full < k && j < d; j++)
        for (ptrdiff_t c = 0; c < SF_PANEL; c++)
            last_panel[j * SF_PANEL + c] = full + c < k ? W[j * k + full + c] : 0;
    for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_PANEL) {
        const ptrdiff_t classes = k - c0 < SF_PANEL ? k - c0 : SF_PANEL;
        for (ptrdiff_t tile = 0; tile < tiles; tile++) {
            const ptrdiff_t i = tile * SF_GEMM_ROWS, rows = n - i < SF_GEMM_ROWS ? n - i : SF_GEMM_ROWS;
            SF_NAME(sf_tile) acc;
            if (c0 < full)
                SF_NAME(sf_gemm_tile)(packed + i * d, W + c0, k, d, acc);
            else
                SF_NAME(sf_gemm_tile)(packed + i * d, last_panel, SF_PANEL, d, acc);
            for (ptrdiff_t m = 0; m < rows; m++)
                if (classes == SF_PANEL)
                    memcpy(Z + (i + m) * ldz + c0, acc[m], sizeof acc[m]);
                else
                    for (ptrdiff_t c = 0; c < classes; c++)
                        Z[(i + m) * ldz + c0 + c] = acc[m][c / SF_LANES][c % SF_LANES];
        }
    }
#else
    (void)scratch;
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t c = 0; c < k; c++)
            Z[i * ldz + c] = SF_NAME(sf_strided_dot)(X + i * d, 1, W + c, k, d);
#endif
}

/*
 * For features j0 <= j < j1 and classes c < k, the weight gradient
 * dW[j, c] = sum over rows i < n in order of X[i, j] * G[i * ldg + c], a GEMM
 * X.T @ G for many classes. With `update`, W[j, c] -= lr * (scale * dW[j, c])
 * (W (d, k) trained in place); without it, W[j, c] = scale * dW[j, c] (W is
 * then the gradient's output). X (n, d); ldg is sf_gemm_padded_classes(k, sizeof(SF_T))
 * and G's columns from k on are finite (zeros): every panel is read whole.
 * Features go in tiles of SF_GEMM_ROWS, packed (and converted) once for all
 * panels. scratch: sf_gemm_gradient_scratch(n, sizeof(SF_T)) values, 64-byte
 * aligned.
 */
SF_MULTIVERSION
static void SF_NAME(sf_gemm_weight_gradient)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1,
                                             const SF_T *G, ptrdiff_t ldg, ptrdiff_t k, SF_T lr, SF_T scale,
                                             int update, SF_T *W, SF_T *scratch)
{
#if SF_VECTOR_EXTENSIONS
    for (ptrdiff_t j = j0; j < j1; j += SF_GEMM_ROWS) {
        const ptrdiff_t features = j1 - j < SF_GEMM_ROWS ? j1 - j : SF_GEMM_ROWS;
        SF_NAME(sf_pack)(X + j, d, 1, n, features, scratch);
        for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_PANEL) {
            const ptrdiff_t classes = k - c0 < SF_PANEL ? k - c0 : SF_PANEL;
            SF_NAME(sf_tile) acc;
            SF_NAME(sf_gemm_tile)(scratch, G + c0, ldg, n, acc);
            for (ptrdiff_t m = 0; m < features; m++) {
                SF_T gradient[SF_PANEL], *w = W + (j + m) * k + c0;
                memcpy(gradient, acc[m], sizeof gradient);
                /* Over the panel's classes: a loop GCC vectorises. */
                if (update)
                    for (ptrdiff_t c = 0; c < classes; c++)
                        w[c] -= lr * (scale * gradient[c]);
                else
                    for (ptrdiff_t c = 0; c < classes; c++)
                        w[c] = scale * gradient[c];
            }
        }
    }
#else
    (void)scratch;
    for (ptrdiff_t j = j0; j < j1; j++)
        for (ptrdiff_t c = 0; c < k; c++) {
            const SF_T gradient = SF_NAME(sf_strided_dot)(X + j, d, G + c, ldg, n);
            W[j * k + c] = update ? W[j * k + c] - lr * (scale * gradient) : scale * gradient;
        }
#endif
}

/* exp and log in SF_T's own precision (a ?: of expf and exp would be a double). */
#if SF_T_SIZE == 4
#define SF_EXP expf
#define SF_LOG logf
#else
#define SF_EXP exp
#define SF_LOG log
#endif

#if SF_X_IS_T && SF_VECTOR_EXTENSIONS
/* Integers of SF_T's width, lane for lane: the exponent field of a vector. */
#if SF_T_SIZE == 4
typedef int32_t SF_T_NAME(sf_integer);
#else
typedef int64_t SF_T_NAME(sf_integer);
#endif
typedef SF_T_NAME(sf_integer) SF_T_NAME(sf_integers) __attribute__((vector_size(SF_VECTOR_BYTES)));

/* Lane by lane, a where mask is set (all bits), b where it is clear: C's vectors have no ?: */
SF_INLINE SF_NAME(sf_features) SF_T_NAME(sf_select)(SF_T_NAME(sf_integers) mask, SF_NAME(sf_features) a,
                                                   SF_NAME(sf_features) b)
{
    SF_T_NAME(sf_integers) a_bits, b_bits;
    memcpy(&a_bits, &a, sizeof a_bits);
    memcpy(&b_bits, &b, sizeof b_bits);
    const SF_T_NAME(sf_integers) bits = (mask & a_bits) | (~mask & b_bits);
    SF_NAME(sf_features) selected;
    memcpy(&selected, &bits, sizeof selected);
    return selected;
}

/*
 * exp(x) lane by lane for x <= 0 (or NaN): x = n ln 2 + r with |r| <= ln 2 / 2,
 * exp(r) by a polynomial (Cephes' for float, Taylor to r**13 for double:
 * within a few units in the last place), times 2**n built in the exponent
 * field. Below the smallest normal result it gives 0; NaN stays NaN. A
 * vector of these costs about what one call of expf does.
 */
SF_INLINE SF_NAME(sf_features) SF_T_NAME(sf_exp_nonpositive)(SF_NAME(sf_features) x)
{
    typedef SF_NAME(sf_features) vector;
#if SF_T_SIZE == 4
    const SF_T lowest = -87.3365447505531f, shifter = 12582912.0f; /* 1.5 * 2**23: rounds to an integer */
    const int bias = 127, mantissa_bits = 23;
#else
    const SF_T lowest = -708.3964185322641, shifter = 6755399441055744.0; /* 1.5 * 2**52 */
    const int bias = 1023, mantissa_bits = 52;
#endif
    const SF_T log2e = (SF_T)1.4426950408889634;
#if SF_T_SIZE == 4
    /* ln 2 = ln2_high + ln2_low, ln2_high with few enough bits that n * ln2_high is exact. */
    const SF_T ln2_high = 0.693359375f, ln2_low = -2.12194440e-4f;
#else
    const SF_T ln2_high = 6.93145751953125e-1, ln2_low = 1.42860682030941723212e-6;
#endif
    const SF_T_NAME(sf_integers) underflow = x < lowest;
    x = SF_T_NAME(sf_select)(underflow, (vector){0} + lowest, x);
    const vector shifted = x * log2e + shifter, n = shifted - shifter;
    const vector r = (x - n * ln2_high) - n * ln2_low;
#if SF_T_SIZE == 4
    vector p = (vector){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
#else
    vector p = (vector){0} + 1.0 / 6227020800.0;
    static const double inverse_factorials[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                                1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                                1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                                1.0 / 6.0,         0.5,              1.0,
                                                1.0};
    for (int term = 0; term < 13; term++)
        p = p * r + inverse_factorials[term];
#endif
    SF_T_NAME(sf_integers) exponent;
    memcpy(&exponent, &shifted, sizeof exponent);
    SF_T_NAME(sf_integers) shifter_bits;
    const vector shifter_vector = (vector){0} + shifter;
    memcpy(&shifter_bits, &shifter_vector, sizeof shifter_bits);
    exponent = (exponent - shifter_bits + bias) << mantissa_bits;
    vector power;
    memcpy(&power, &exponent, sizeof power);
    return SF_T_NAME(sf_select)(underflow, (vector){0}, p * power);
}
#endif

#if SF_X_IS_T && SF_VECTOR_EXTENSIONS
/*
 * The index of the first of z[:k] equal to `largest` (k if none), for z's
 * lanes past k not equal to it: the first equal lane of a vector is found
 * without a branch. (A loop that stops at a different class in every row
 * would mispredict once a row, and flush the next rows' work.)
 */
SF_INLINE ptrdiff_t SF_T_NAME(sf_first_equal)(const SF_T *z, ptrdiff_t k, SF_T largest)
{
    typedef SF_T_NAME(sf_integers) integers;
    typedef SF_T_NAME(sf_integer) integer;
    integers lane = {0};
    for (int l = 0; l < SF_LANES; l++)
        lane[l] = l;
    ptrdiff_t first = k;
    for (ptrdiff_t c = 0; first == k && c < k; c += SF_LANES) {
        SF_NAME(sf_features) logits;
        memcpy(&logits, z + c, sizeof logits);
        const integers none = (integers){0} + (integer)k, hit = logits == largest;
        const integers candidates = (hit & (lane + (integer)c)) | (~hit & none);
        integer smallest = candidates[0];
        for (int l = 1; l < SF_LANES; l++)
            smallest = candidates[l] < smallest ? candidates[l] : smallest;
        first = smallest;
    }
    return first;
}

/* sf_finish_rows for many classes: vectors along each row, the exp of a vector at a time. */
SF_INLINE void SF_T_NAME(sf_finish_rows_vectors)(SF_T *Z, ptrdiff_t n, ptrdiff_t ldz, ptrdiff_t k,
                                                 const ptrdiff_t *labels, const SF_T *b, SF_T scale, SF_T inv_n,
                                                 double *row_loss, unsigned char *row_correct)
{
    typedef SF_NAME(sf_features) vector;
    typedef SF_T_NAME(sf_integer) integer;
    SF_T_NAME(sf_integers) lane = {0};
    for (int l = 0; l < SF_LANES; l++)
        lane[l] = l;
    const vector minus_infinity = (vector){0} - (SF_T)INFINITY;
    for (ptrdiff_t i = 0; i < n; i++) {
        SF_T *z = Z + i * ldz;
        const ptrdiff_t label = labels[i];
        vector largest_lanes = minus_infinity, totals = {0};
        for (ptrdiff_t c = 0; c < k; c += SF_LANES) {
            vector logits, bias;
            memcpy(&logits, z + c, sizeof logits);
            memcpy(&bias, b + c, sizeof bias);
            /* Lanes past k: -inf, never the largest, and their exp adds 0. */
            logits = SF_T_NAME(sf_select)(lane + (integer)c < (integer)k, logits * scale + bias, minus_infinity);
            memcpy(z + c, &logits, sizeof logits);
            largest_lanes = SF_T_NAME(sf_select)(logits > largest_lanes, logits, largest_lanes);
        }
        SF_T largest = -(SF_T)INFINITY;
        for (int l = 0; l < SF_LANES; l++)
            largest = largest_lanes[l] > largest ? largest_lanes[l] : largest;
        const ptrdiff_t first = SF_T_NAME(sf_first_equal)(z, k, largest);
        /* No largest (every logit NaN): class 0, as np.argmax. */
        row_correct[i] = (first >= k ? 0 : first) == label;
        const SF_T target = z[label];
        for (ptrdiff_t c = 0; c < k; c += SF_LANES) {
            vector logits;
            memcpy(&logits, z + c, sizeof logits);
            const vector e = SF_T_NAME(sf_exp_nonpositive)(logits - largest);
            memcpy(z + c, &e, sizeof e);
            totals += e;
        }
        const SF_T total = SF_NAME(sf_sum_lanes)(totals);
        for (ptrdiff_t c = 0; c < k; c += SF_LANES) {
            vector p;
            memcpy(&p, z + c, sizeof p);
            p /= total;
            p = SF_T_NAME(sf_select)(lane + (integer)c == (integer)label, p - 1, p) * inv_n;
            memcpy(z + c, &p, sizeof p);
        }
        row_loss[i] = (double)(largest + SF_LOG(total) - target);
    }
}
/*
 * sf_finish_rows for up to SF_CLASS_BLOCK classes: a row is too short for
 * vectors along it (their reductions would be a chain of dependent steps),
 * so the vectors run across SF_LANES rows at a time, lane r holding row i0 +
 * r, a class at a time: every step is one vector operation for SF_LANES rows.
 */
SF_INLINE void SF_T_NAME(sf_finish_rows_across)(SF_T *Z, ptrdiff_t n, ptrdiff_t ldz, ptrdiff_t k,
                                                const ptrdiff_t *labels, const SF_T *b, SF_T scale, SF_T inv_n,
                                                double *row_loss, unsigned char *row_correct)
{
    typedef SF_NAME(sf_features) vector;
    typedef SF_T_NAME(sf_integers) integers;
    typedef SF_T_NAME(sf_integer) integer;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += SF_LANES) {
        const ptrdiff_t count = n - i0 < SF_LANES ? n - i0 : SF_LANES;
        /* z[c] lane r: the logit of class c in row i0 + r; the lanes past count hold zeros, and are not stored. */
        SF_T columns[SF_CLASS_BLOCK][SF_LANES] = {{0}};
        integers label = {0};
        for (ptrdiff_t r = 0; r < count; r++) {
            label[r] = (integer)labels[i0 + r];
            for (ptrdiff_t c = 0; c < k; c++)
                columns[c][r] = Z[(i0 + r) * ldz + c];
        }
        vector z[SF_CLASS_BLOCK];
        vector largest = (vector){0} - (SF_T)INFINITY, target = {0}, total = {0};
        integers first = {0}; /* np.argmax's answer when every logit is NaN */
        for (ptrdiff_t c = 0; c < k; c++) {
            memcpy(&z[c], columns[c], sizeof z[c]);
            z[c] = z[c] * scale + b[c];
            const integers larger = z[c] > largest;
            largest = SF_T_NAME(sf_select)(larger, z[c], largest);
            first = (larger & (integer)c) | (~larger & first);
            target = SF_T_NAME(sf_select)(label == (integer)c, z[c], target);
        }
        for (ptrdiff_t c = 0; c < k; c++) {
            z[c] = SF_T_NAME(sf_exp_nonpositive)(z[c] - largest);
            total += z[c];
        }
        for (ptrdiff_t c = 0; c < k; c++) {
            const vector p = z[c] / total;
            z[c] = SF_T_NAME(sf_select)(label == (integer)c, p - 1, p) * inv_n;
            memcpy(columns[c], &z[c], sizeof z[c]);
        }
        for (ptrdiff_t r = 0; r < count; r++) {
            for (ptrdiff_t c = 0; c < k; c++)
                Z[(i0 + r) * ldz + c] = columns[c][r];
            row_correct[i0 + r] = first[r] == label[r];
            row_loss[i0 + r] = (double)(largest[r] + SF_LOG(total[r]) - target[r]);
        }
    }
}
#endif

#if SF_X_IS_T
/*
 * Finish the rows of Z (n rows ldz apart, k classes): from a row of raw
 * logits z (X @ W) to z * scale + b, then to its row of the gradient of the
 * batch's mean loss with respect to the logits, (softmax(z) - onehot(label))
 * * inv_n, in place. row_loss[i] gets the row's cross-entropy
 * (logsumexp(z) - z[label]) and row_correct[i] whether the first largest
 * logit is the label's. The largest logit is subtracted before exp (no
 * overflow); the sums run along the classes in an order fixed by k alone.
 * Z's rows and b hold whole vectors (ldz and b's length at least k rounded
 * up to SF_LANES): with more than SF_CLASS_BLOCK classes the lanes past k are
 * read, set to 0 in Z, and otherwise ignored; with fewer they are left alone.
 *
 * The vectors run across the rows up to SF_CLASS_BLOCK classes
 * (sf_finish_rows_across), along them with more (sf_finish_rows_vectors),
 * both with their own exp; the plain loops take a class at a time with the C
 * library's exp.
 */
SF_MULTIVERSION
static void SF_T_NAME(sf_finish_rows)(SF_T *Z, ptrdiff_t n, ptrdiff_t ldz, ptrdiff_t k, const ptrdiff_t *labels,
                                      const SF_T *b, SF_T scale, SF_T inv_n, double *row_loss,
                                      unsigned char *row_correct)
{
#if SF_VECTOR_EXTENSIONS
    if (k > SF_CLASS_BLOCK)
        SF_T_NAME(sf_finish_rows_vectors)(Z, n, ldz, k, labels, b, scale, inv_n, row_loss, row_correct);
    else
        SF_T_NAME(sf_finish_rows_across)(Z, n, ldz, k, labels, b, scale, inv_n, row_loss, row_correct);
#else
    for (ptrdiff_t i = 0; i < n; i++) {
        SF_T *z = Z + i * ldz;
        const ptrdiff_t label = labels[i];
        SF_T largest = -(SF_T)INFINITY, total = 0;
        ptrdiff_t first = 0; /* np.argmax's answer when every logit is NaN */
        for (ptrdiff_t c = 0; c < k; c++) {
            z[c] = z[c] * scale + b[c];
            if (z[c] > largest) {
                largest = z[c];
                first = c;
            }
        }
        row_correct[i] = first == label;
        const SF_T target = z[label];
        for (ptrdiff_t c = 0; c < k; c++) {
            z[c] = SF_EXP(z[c] - largest);
            total += z[c];
        }
        for (ptrdiff_t c = 0; c < k; c++)
            z[c] /= total;
        z[label] -= 1;
        for (ptrdiff_t c = 0; c < k; c++)
            z[c] *= inv_n;
        row_loss[i] = (double)(largest + SF_LOG(total) - target);
    }
#endif
}
#endif

#if SF_X_IS_T
#if SF_VECTOR_EXTENSIONS
/* sf_exp_row a vector at a time (see there). */
SF_INLINE SF_T SF_T_NAME(sf_exp_row_vectors)(const SF_T *z, ptrdiff_t k, SF_T *e, SF_T *largest)
{
    typedef SF_NAME(sf_features) vector;
    const ptrdiff_t whole = k / SF_LANES * SF_LANES;
    const size_t tail_bytes = (size_t)(k - whole) * sizeof(SF_T);
    vector tail = (vector){0} - (SF_T)INFINITY, largest_lanes = tail, totals = {0};
    memcpy(&tail, z + whole, tail_bytes);
    for (ptrdiff_t c = 0; c < whole; c += SF_LANES) {
        vector v;
        memcpy(&v, z + c, sizeof v);
        largest_lanes = SF_T_NAME(sf_select)(v > largest_lanes, v, largest_lanes);
    }
    largest_lanes = SF_T_NAME(sf_select)(tail > largest_lanes, tail, largest_lanes);
    SF_T top = -(SF_T)INFINITY;
    for (int l = 0; l < SF_LANES; l++)
        top = largest_lanes[l] > top ? largest_lanes[l] : top;
    for (ptrdiff_t c = 0; c < whole; c += SF_LANES) {
        vector v;
        memcpy(&v, z + c, sizeof v);
        v = SF_T_NAME(sf_exp_nonpositive)(v - top);
        if (e != NULL)
            memcpy(e + c, &v, sizeof v);
        totals += v;
    }
    tail = SF_T_NAME(sf_exp_nonpositive)(tail - top);
    if (e != NULL)
        memcpy(e + whole, &tail, tail_bytes);
    *largest = top;
    return SF_NAME(sf_sum_lanes)(totals + tail);
}
#endif

/*
 * exp(z[c] - largest) for the k values of z, largest their maximum (set in
 * *largest): written to e (which may be z) unless e is NULL, and summed in an
 * order fixed by k; returns the sum. A row with a NaN, or no finite largest,
 * sums to NaN. Rows of more than SF_CLASS_BLOCK values go a vector at a time,
 * with sf_exp_nonpositive; nothing past z[k - 1] is read or e[k - 1] written:
 * the last, partial vector goes through a copy padded with -inf, whose exp
 * adds 0. Shorter rows would fill less than a vector, and go a value at a
 * time, with the C library's exp.
 */
SF_INLINE SF_T SF_T_NAME(sf_exp_row)(const SF_T *z, ptrdiff_t k, SF_T *e, SF_T *largest)
{
#if SF_VECTOR_EXTENSIONS
    if (k > SF_CLASS_BLOCK)
        return SF_T_NAME(sf_exp_row_vectors)(z, k, e, largest);
#endif
    SF_T top = z[0], total = 0;
    for (ptrdiff_t c = 1; c < k; c++)
        top = z[c] > top ? z[c] : top;
    for (ptrdiff_t c = 0; c < k; c++) {
        const SF_T v = SF_EXP(z[c] - top);
        if (e != NULL)
            e[c] = v;
        total += v;
    }
    *largest = top;
    return total;
}

/* out (n, k) = softmax of each row of Z (n, k), both C-ordered; out may be Z. */
SF_MULTIVERSION
static void SF_T_NAME(sf_softmax_rows)(const SF_T *Z, ptrdiff_t n, ptrdiff_t k, SF_T *out)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        SF_T largest, *p = out + i * k;
        const SF_T total = SF_T_NAME(sf_exp_row)(Z + i * k, k, p, &largest);
        for (ptrdiff_t c = 0; c < k; c++)
            p[c] /= total;
    }
}

/* row_loss[i] = logsumexp(Z[i, :]) - Z[i, labels[i]] for the rows of Z (n, k), C-ordered: rounded to SF_T. */
SF_MULTIVERSION
static void SF_T_NAME(sf_cross_entropy_rows)(const SF_T *Z, ptrdiff_t n, ptrdiff_t k, const ptrdiff_t *labels,
                                             double *row_loss)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        SF_T largest;
        const SF_T total = SF_T_NAME(sf_exp_row)(Z + i * k, k, NULL, &largest);
        row_loss[i] = (double)(largest + SF_LOG(total) - Z[i * k + labels[i]]);
    }
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
 * transposed so that its vectors run along X's rows: with `update`, Wt[c,
 * j] -= lr * (scale * gradient) (Wt (k, dp) trained in place); without it,
 * Wt[c, j] = scale * gradient (Wt is then the gradient's output). X (n, d)
 * and its rows' nonzero masks, words ldm apart; j0 is a whole number of
 * vectors. (The vector loops write the one that holds d - 1 whole, its lanes
 * from d on zero.)
 */
SF_MULTIVERSION
static void SF_NAME(sf_weight_gradient)(const SF_X *X, const uint64_t *masks, ptrdiff_t ldm, ptrdiff_t n,
                                        ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1, const SF_T *G, ptrdiff_t ldg,
                                        ptrdiff_t k, SF_T lr, SF_T scale, int update, SF_T *Wt, ptrdiff_t dp)
{
#if SF_VECTOR_EXTENSIONS
#define SF_FEATURES(K)                                                                                             \
    for (ptrdiff_t j = j0; j < j1; j += SF_LANES)                                                                  \
    SF_NAME(sf_gradient_lanes)(X, masks, ldm, n, d, j, G, ldg, K, lr, scale, update, Wt, dp)
    SF_WITH_CONSTANT_CLASSES(k, SF_FEATURES)
#undef SF_FEATURES
#else
    (void)masks;
    (void)ldm;
    for (ptrdiff_t j = j0; j < j1; j++)
        for (ptrdiff_t c = 0; c < k; c++) {
            const SF_T gradient = SF_NAME(sf_strided_dot)(X + j, d, G + c, ldg, n);
            Wt[c * dp + j] = update ? Wt[c * dp + j] - lr * (scale * gradient) : scale * gradient;
        }
#endif
}

#undef SF_PANEL
#undef SF_EXP
#undef SF_LOG
#undef SF_LANES
#undef SF_LANES_LITERAL
#undef SF_T_SIZE
#undef SF_GROUPS_PER_LANES
#undef SF_T
#undef SF_X
#undef SF_X_IS_T
#undef SF_NAME
#undef SF_T_NAME
