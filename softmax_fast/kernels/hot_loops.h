/*
 * The matrix loops of the Cython kernels: the logits X @ W of a block of rows
 * and the weight gradient G.T @ X of a block of features.
 *
 * They are C so that GCC can compile each loop for several instruction sets
 * and pick one when the extension is loaded (target_clones): a wheel built
 * here stays portable and still uses AVX-512 or AVX2 where the CPU has them.
 * Everything else (softmax, loss, threads, updates) stays in Cython.
 *
 * The loops read uint8 pixels as they are stored (a quarter of float32's
 * memory traffic) or features of the weights' type, converting as they go. W is
 * padded to kp classes, a multiple of SF_BLOCK, so that a row of W is whole
 * vector registers; its padded columns are zero. The gradient is produced
 * transposed, (k, d), so that its vectors run along X's rows. Accumulators
 * stay in registers: fixed trip counts and GCC's vector types see to it.
 *
 * Zeros are skipped: each row gets a bit mask of its groups of SF_GROUP
 * features that are not all zero (sf_nonzero_groups), and the loops visit
 * only the set bits, so MNIST's blank borders cost a bit test, not a
 * branch per feature to mispredict. A skipped term is an exact zero,
 * so skipping never changes a result, and each output is summed in an order
 * fixed by the data alone (features ascending for a logit, in four
 * interleaved chains; rows ascending for a gradient), whatever the tiling or
 * the thread that computes it: results are bitwise independent of the
 * thread count.
 *
 * hot_loops_impl.h is included once per (weight type, feature type) pair.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_H
#define SOFTMAX_FAST_HOT_LOOPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Classes per vector tile: 16 floats fill one AVX-512 register. */
#define SF_BLOCK 16
/* Rows per logits tile. */
#define SF_TILE 4
/* Features per share of the gradient among threads: whole vectors of floats or doubles. */
#define SF_FEATURE_TILE 16

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define SF_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SF_MULTIVERSIONED 1
#else
#define SF_MULTIVERSION
#define SF_MULTIVERSIONED 0
#endif

/* GCC's and clang's vector types keep a tile's accumulators in registers; other compilers get plain loops. */
#if defined(__GNUC__)
#define SF_VECTOR_EXTENSIONS 1
#else
#define SF_VECTOR_EXTENSIONS 0
#endif

/*
 * The helpers of a multiversioned function must be inlined into each of its
 * versions: a helper left out of line is compiled for the baseline ISA only.
 */
#if defined(__GNUC__)
#define SF_INLINE static inline __attribute__((always_inline))
#else
#define SF_INLINE static inline
#endif

/* Whether an 8-byte word at p is all zero bits. */
SF_INLINE int sf_word_is_zero(const void *p)
{
    uint64_t word;
    memcpy(&word, p, sizeof word);
    return word == 0;
}

/* Features per bit of a row's nonzero mask. */
#define SF_GROUP 8

/* 64-bit words per row of nonzero masks for d features. */
SF_INLINE ptrdiff_t sf_mask_words(ptrdiff_t d)
{
    return (d + 64 * SF_GROUP - 1) / (64 * SF_GROUP);
}

/*
 * masks (n, sf_mask_words(d)) for rows X (n, d) of item_size-byte features:
 * bit g of a row's masks is set where features SF_GROUP * g to
 * SF_GROUP * g + SF_GROUP - 1 are not all zero bits. (A -0.0 counts as
 * nonzero: it is multiplied, and adds nothing.)
 */
SF_INLINE void sf_nonzero_groups(const void *X, ptrdiff_t n, ptrdiff_t d, size_t item_size, uint64_t *masks)
{
    const ptrdiff_t words = sf_mask_words(d), full_groups = d / SF_GROUP;
    const size_t group_bytes = SF_GROUP * item_size, row_bytes = (size_t)d * item_size;
    for (ptrdiff_t i = 0; i < n; i++) {
        const unsigned char *x = (const unsigned char *)X + (size_t)i * row_bytes;
        uint64_t *mask = masks + i * words;
        memset(mask, 0, (size_t)words * sizeof *mask);
        uint64_t bits = 0;
        ptrdiff_t g = 0;
        for (; g < full_groups; g++) {
            uint64_t any = 0;
            for (size_t b = 0; b < group_bytes; b += 8) {
                uint64_t word;
                memcpy(&word, x + g * group_bytes + b, sizeof word);
                any |= word;
            }
            bits |= (uint64_t)(any != 0) << (g % 64);
            if (g % 64 == 63) {
                mask[g / 64] = bits;
                bits = 0;
            }
        }
        unsigned char tail = 0;
        for (size_t b = (size_t)g * group_bytes; b < row_bytes; b++)
            tail |= x[b];
        bits |= (uint64_t)(tail != 0) << (g % 64);
        if (g % 64 != 0 || tail != 0)
            mask[g / 64] |= bits;
    }
}

#define SF_T float
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f32_u8
#include "hot_loops_impl.h"

#define SF_T float
#define SF_X float
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f32_f32
#include "hot_loops_impl.h"

#define SF_T double
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f64_u8
#include "hot_loops_impl.h"

#define SF_T double
#define SF_X double
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f64_f64
#include "hot_loops_impl.h"

#endif
