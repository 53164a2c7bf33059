/*
 * hot_loops/exp_impl.h: the exponential of the rows' finishing. Owns SF_EXP
 * and SF_LOG (the C library's, in SF_T's precision), and for the vector
 * loops the integers of SF_T's width (sf_integer, sf_integers), the lane by
 * lane select (sf_select) and the exp of a vector (sf_exp_nonpositive).
 * Uses config.h and vectors_impl.h.
 *
 * A template: pair_impl.h includes it once per (weights, features) type
 * pair. No include guard. The vector part depends on the weights' type
 * alone: it is compiled in the pair whose features have that type
 * (SF_X_IS_T), named by SF_T_NAME.
 */

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
