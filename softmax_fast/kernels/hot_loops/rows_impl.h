/*
 * hot_loops/rows_impl.h: what is done to whole rows of logits. Owns the
 * finishing of a batch's rows (sf_finish_rows: softmax, cross-entropy and
 * the gradient of the logits; across the rows up to SF_CLASS_BLOCK classes,
 * along them with more; sf_first_equal finds the first largest logit) and
 * the rows of the softmax and cross_entropy kernels (sf_exp_row,
 * sf_softmax_rows, sf_cross_entropy_rows). Uses config.h, vectors_impl.h and
 * exp_impl.h.
 *
 * A template: pair_impl.h includes it once per (weights, features) type
 * pair. No include guard. All of it depends on the weights' type alone: it is
 * compiled in the pair whose features have that type (SF_X_IS_T), named by
 * SF_T_NAME.
 */

#if SF_X_IS_T
#if SF_VECTOR_EXTENSIONS
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
