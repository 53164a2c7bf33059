/*
 * hot_loops/gemm_impl.h: the GEMM family (see hot_loops.h), more than
 * SF_CLASS_BLOCK classes, vectors along the classes of W (d, k) as it is.
 * Owns the panel and tile of accumulators (SF_PANEL, sf_tile) and their
 * kernel (sf_gemm_tile), the packing of rows or features (sf_pack), the
 * logits (sf_gemm_logits) and the weight gradient with the step it takes
 * (sf_gemm_weight_gradient), each with its plain loops. Uses config.h,
 * steps.h and vectors_impl.h; the callers size the scratch and G with
 * buffers.h.
 *
 * A template: pair_impl.h includes it once per (weights, features) type
 * pair. No include guard.
 */

#if SF_VECTOR_EXTENSIONS
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
 * X.T @ G for many classes, and `step` (steps.h) with g = scale * dW[j, c]
 * on W[j, c] and V[j, c]: with an update, W (d, k) and the velocities V (d,
 * k, NULL for the steps without) are trained in place; without, W is the
 * gradient's output. X (n, d); ldg is sf_gemm_padded_classes(k, sizeof(SF_T))
 * and G's columns from k on are finite (zeros): every panel is read whole.
 * j1 - j0 is at most sf_gemm_gradient_features(n, sizeof(SF_T)). The
 * features go in tiles of SF_GEMM_ROWS, all packed (and converted) first;
 * then each panel of G meets every tile while it is in cache.
 * scratch: sf_gemm_gradient_scratch(n, sizeof(SF_T)) values, 64-byte aligned.
 */
SF_MULTIVERSION
static void SF_NAME(sf_gemm_weight_gradient)(const SF_X *X, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t j1,
                                             const SF_T *G, ptrdiff_t ldg, ptrdiff_t k, int step, SF_T lr,
                                             SF_T scale, SF_T alpha, SF_T momentum, SF_T *W, SF_T *V,
                                             SF_T *scratch)
{
#if SF_VECTOR_EXTENSIONS
    for (ptrdiff_t j = j0; j < j1; j += SF_GEMM_ROWS) {
        const ptrdiff_t features = j1 - j < SF_GEMM_ROWS ? j1 - j : SF_GEMM_ROWS;
        SF_NAME(sf_pack)(X + j, d, 1, n, features, scratch + (j - j0) * n);
    }
    for (ptrdiff_t c0 = 0; c0 < k; c0 += SF_PANEL) {
        const ptrdiff_t classes = k - c0 < SF_PANEL ? k - c0 : SF_PANEL;
        for (ptrdiff_t j = j0; j < j1; j += SF_GEMM_ROWS) {
            const ptrdiff_t features = j1 - j < SF_GEMM_ROWS ? j1 - j : SF_GEMM_ROWS;
            SF_NAME(sf_tile) acc;
            SF_NAME(sf_gemm_tile)(scratch + (j - j0) * n, G + c0, ldg, n, acc);
            for (ptrdiff_t m = 0; m < features; m++) {
                SF_T gradient[SF_PANEL], *w = W + (j + m) * k + c0;
                memcpy(gradient, acc[m], sizeof gradient);
                /* Over the panel's classes: a loop GCC vectorises, the step chosen outside it. */
#define SF_STORE(UPDATE, VELOCITY)                                                                                 \
    for (ptrdiff_t c = 0; c < classes; c++) {                                                                      \
        SF_T g = scale * gradient[c];                                                                              \
        UPDATE(w[c], V[(j + m) * k + c0 + c], g, lr, alpha, momentum);                                             \
    }
                SF_WITH_STEP(step, SF_STORE)
#undef SF_STORE
            }
        }
    }
#else
    (void)scratch;
    SF_NAME(sf_strided_weight_gradient)(X, n, d, j0, j1, G, ldg, k, step, lr, scale, alpha, momentum, W, V, k, 1);
#endif
}
