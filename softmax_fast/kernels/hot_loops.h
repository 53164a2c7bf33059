/*
 * The matrix loops of the Cython kernels: the logits X @ W of a block of rows
 * and the weight gradient X.T @ G of a block of features.
 *
 * They are C so that GCC can compile each loop for several instruction sets
 * and pick one when the extension is loaded (target_clones): a wheel built
 * here stays portable and still uses AVX-512 or AVX2 where the CPU has them.
 * Everything else (softmax, loss, threads, updates) stays in Cython.
 *
 * Two families, by the number of classes k:
 *
 * Up to SF_CLASS_BLOCK classes (MNIST's case), the loops run their vectors
 * along the features, SF_LANES of them (64 bytes of weights) at a time: the
 * weights are held transposed, Wt (k, dp), each class a row padded with zeros
 * to dp features, a whole number of vectors, and the gradient updates them
 * as it is produced. The loops read uint8 pixels as they are stored (a
 * quarter of float32's memory traffic) or features of the weights' type,
 * converting a vector of them at a time, once for all the classes it meets.
 * Accumulators stay in registers: a number of classes fixed at compile time
 * (SF_WITH_CONSTANT_CLASSES) and GCC's vector types see to it. Zeros are
 * skipped: each row gets a bit mask of its groups of SF_GROUP features that
 * are not all zero (sf_nonzero_groups), and the loops visit only the vectors
 * with a bit set, so MNIST's blank borders cost a bit test, not a branch per
 * feature to mispredict. A skipped term is an exact zero, so skipping never
 * changes a result.
 *
 * With more classes (a linear probe on embeddings, say), two GEMMs on W
 * (d, k) as it is, vectors along the classes: tiles of SF_GEMM_ROWS rows (or
 * features) by a panel of SF_GEMM_VECTORS vectors of classes, the rows packed
 * once for all panels, so that each value loaded serves several
 * multiply-adds; the gradient updates W as it is produced.
 *
 * Each output is summed in an order fixed by the data alone (a narrow logit:
 * lane l of a vector accumulator sums the features j = l mod SF_LANES in
 * ascending order, then the lanes are added in a fixed tree; a GEMM logit:
 * features ascending; a gradient entry: rows ascending), whatever the tiling
 * or the thread that computes it: results are bitwise independent of the
 * thread count.
 *
 * The rows of a batch are finished (softmax, loss, the gradient of the
 * logits) by sf_finish_rows, vectorised with its own exp: across rows up to
 * SF_CLASS_BLOCK classes, along the classes with more. The softmax and
 * cross_entropy kernels take rows of any length through sf_softmax_rows and
 * sf_cross_entropy_rows: vectors along each row, the same exp.
 *
 * hot_loops_impl.h is included once per (weight type, feature type) pair;
 * what depends on the weight type alone is compiled in the pair whose
 * features have that type (SF_X_IS_T), named by SF_T_NAME.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_H
#define SOFTMAX_FAST_HOT_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Bytes of one vector: one AVX-512 register (two AVX2 ones). */
#define SF_VECTOR_BYTES 64
/*
 * Classes done in one pass over a row's features (logits, up to this many
 * classes) or over a vector of features' rows (gradient): one vector
 * accumulator each, 16 of AVX-512's 32 registers. More classes than this go
 * to the GEMM loops.
 */
#define SF_CLASS_BLOCK 16
/*
 * A tile of the GEMM loops: SF_GEMM_ROWS rows (logits) or features
 * (gradient) by SF_GEMM_VECTORS vectors of classes, 24 accumulators in
 * AVX-512's 32 registers; each value loaded serves 4 or 6 multiply-adds.
 */
#define SF_GEMM_ROWS 6
#define SF_GEMM_VECTORS 4
/* Features per share of the gradient among threads: whole vectors of floats or doubles. */
#define SF_FEATURE_TILE 16

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define SF_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define SF_MULTIVERSIONED 1
#else
#define SF_MULTIVERSION
#define SF_MULTIVERSIONED 0
#endif

/*
 * GCC's and clang's vector types keep a tile's accumulators in registers;
 * other compilers get plain loops. -DSF_VECTOR_EXTENSIONS=0 builds the plain
 * loops anywhere (a test does, so that they stay right).
 */
#ifndef SF_VECTOR_EXTENSIONS
#if defined(__GNUC__)
#define SF_VECTOR_EXTENSIONS 1
#else
#define SF_VECTOR_EXTENSIONS 0
#endif
#endif

/* GCC 12 and clang shuffle vectors in registers (a horizontal sum without a trip through memory). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define SF_SHUFFLEVECTOR 1
#endif
#endif
#ifndef SF_SHUFFLEVECTOR
#define SF_SHUFFLEVECTOR 0
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

/*
 * CALL(K) with K the constant equal to k, 1 <= k <= SF_CLASS_BLOCK: the narrow
 * loops are compiled once per number of classes, so that their loops over the
 * classes unroll into straight runs of multiply-adds, each accumulator in its
 * own register and each weight at an address fixed at compile time. (With k
 * known at run time only, GCC kept a jump per row and spilled the classes'
 * pointers: about a tenth of an MNIST epoch.)
 */
#define SF_WITH_CONSTANT_CLASSES(k, CALL)                                                                          \
    switch (k) {                                                                                                   \
    case 1: CALL(1); break;                                                                                        \
    case 2: CALL(2); break;                                                                                        \
    case 3: CALL(3); break;                                                                                        \
    case 4: CALL(4); break;                                                                                        \
    case 5: CALL(5); break;                                                                                        \
    case 6: CALL(6); break;                                                                                        \
    case 7: CALL(7); break;                                                                                        \
    case 8: CALL(8); break;                                                                                        \
    case 9: CALL(9); break;                                                                                        \
    case 10: CALL(10); break;                                                                                      \
    case 11: CALL(11); break;                                                                                      \
    case 12: CALL(12); break;                                                                                      \
    case 13: CALL(13); break;                                                                                      \
    case 14: CALL(14); break;                                                                                      \
    case 15: CALL(15); break;                                                                                      \
    default: CALL(SF_CLASS_BLOCK); break;                                                                          \
    }

/* Features per bit of a row's nonzero mask. */
#define SF_GROUP 8

/* 64-bit words per row of nonzero masks for d features. */
SF_INLINE ptrdiff_t sf_mask_words(ptrdiff_t d)
{
    return (d + 64 * SF_GROUP - 1) / (64 * SF_GROUP);
}

/* The stride of the columns of masks of n rows: whole 64-row blocks, which sf_active_rows reads. */
SF_INLINE ptrdiff_t sf_mask_rows(ptrdiff_t n)
{
    return (n + 63) / 64 * 64;
}

/*
 * n values of item_size bytes rounded up to whole vectors: the row length of
 * Wt, dWt and G, and scratch sizes that keep the next block 64-byte aligned.
 */
SF_INLINE ptrdiff_t sf_whole_vectors(ptrdiff_t n, size_t item_size)
{
    const ptrdiff_t lanes = SF_VECTOR_BYTES / (ptrdiff_t)item_size;
    return (n + lanes - 1) / lanes * lanes;
}

/* The scratch, in item_size-byte values, of sf_gemm_logits on n rows of d features. */
SF_INLINE ptrdiff_t sf_gemm_logits_scratch(ptrdiff_t n, ptrdiff_t d, size_t item_size)
{
    const ptrdiff_t lanes = SF_VECTOR_BYTES / (ptrdiff_t)item_size;
    const ptrdiff_t tiles = (n + SF_GEMM_ROWS - 1) / SF_GEMM_ROWS;
    return sf_whole_vectors(tiles * SF_GEMM_ROWS * d + d * SF_GEMM_VECTORS * lanes, item_size);
}

/* The scratch, in item_size-byte values, of sf_gemm_weight_gradient on n rows. */
SF_INLINE ptrdiff_t sf_gemm_gradient_scratch(ptrdiff_t n, size_t item_size)
{
    return sf_whole_vectors(n * SF_GEMM_ROWS, item_size);
}

/*
 * The row stride of G for sf_gemm_weight_gradient, k classes of item_size
 * bytes: whole panels, and one vector more, so that rows are not a multiple
 * of 4 KiB apart (which would map them all to the same cache sets).
 */
SF_INLINE ptrdiff_t sf_gemm_padded_classes(ptrdiff_t k, size_t item_size)
{
    const ptrdiff_t lanes = SF_VECTOR_BYTES / (ptrdiff_t)item_size, panel = SF_GEMM_VECTORS * lanes;
    return (k + panel - 1) / panel * panel + lanes;
}

/*
 * Bit r set, r < 8 * blocks <= 64, where 8-byte word r of p has any bit of
 * `select` set: a vector of 8 words at a time, their bits gathered in one
 * vector and reduced once.
 */
SF_INLINE uint64_t sf_words_with_bits(const void *p, uint64_t select, int blocks)
{
    uint64_t found = 0;
#if SF_VECTOR_EXTENSIONS
    typedef uint64_t words_vector __attribute__((vector_size(64)));
    const words_vector weights = {1, 2, 4, 8, 16, 32, 64, 128};
    words_vector bits = {0};
    for (int t = 0; t < blocks; t++) {
        words_vector words;
        memcpy(&words, (const unsigned char *)p + 64 * t, sizeof words);
        bits |= (words_vector)((words & select) != 0) & (weights << (8 * t));
    }
    found = ((bits[0] | bits[1]) | (bits[2] | bits[3])) | ((bits[4] | bits[5]) | (bits[6] | bits[7]));
#else
    for (int r = 0; r < 8 * blocks; r++) {
        uint64_t word;
        memcpy(&word, (const unsigned char *)p + 8 * r, sizeof word);
        found |= (uint64_t)((word & select) != 0) << r;
    }
#endif
    return found;
}

/*
 * The nonzero masks of rows X (n, d) of item_size-byte features (1, 4 or
 * 8): bit g % 64 of row i's mask word g / 64, masks[g / 64 * ldm + i], is set
 * where features SF_GROUP * g to SF_GROUP * g + SF_GROUP - 1 are not all zero
 * bits. (A -0.0 counts as nonzero: it is multiplied, and adds nothing.) Each
 * word is a column of the rows' masks, ldm >= n apart, so that the rows a
 * group of features must visit are read 8 at a time (sf_active_rows). A
 * group is item_size 8-byte words, tested together.
 */
SF_INLINE void sf_nonzero_groups(const void *X, ptrdiff_t n, ptrdiff_t d, size_t item_size, uint64_t *masks,
                                 ptrdiff_t ldm)
{
    const ptrdiff_t words = sf_mask_words(d), full_groups = d / SF_GROUP;
    const size_t group_bytes = SF_GROUP * item_size, row_bytes = (size_t)d * item_size;
    for (ptrdiff_t i = 0; i < n; i++) {
        const unsigned char *x = (const unsigned char *)X + (size_t)i * row_bytes;
        for (ptrdiff_t w = 0; w < words; w++)
            masks[w * ldm + i] = 0;
#define SF_MASK(g) masks[(g) / 64 * ldm + i]
        ptrdiff_t g = 0;
        /* uint8 rows: a group is one word, and a mask word's 64 groups are tested together. */
        while (item_size == 1 && g + 8 <= full_groups) {
            const int blocks = (int)((full_groups - g) / 8 < (64 - g % 64) / 8 ? (full_groups - g) / 8
                                                                                : (64 - g % 64) / 8);
            SF_MASK(g) |= sf_words_with_bits(x + g * SF_GROUP, ~(uint64_t)0, blocks) << (g % 64);
            g += 8 * blocks;
        }
        for (; g < full_groups; g++) {
            uint64_t any = 0;
            for (size_t byte = 0; byte < group_bytes; byte += 8) {
                uint64_t word;
                memcpy(&word, x + (size_t)g * group_bytes + byte, sizeof word);
                any |= word;
            }
            SF_MASK(g) |= (uint64_t)(any != 0) << (g % 64);
        }
        unsigned char tail = 0;
        for (size_t byte = (size_t)full_groups * group_bytes; byte < row_bytes; byte++)
            tail |= x[byte];
        if (tail != 0)
            SF_MASK(full_groups) |= (uint64_t)1 << (full_groups % 64);
#undef SF_MASK
    }
}

/*
 * Bit r set where row r < count (<= 64) of a column of masks m (one word each
 * of 64 consecutive rows) has any of the bits `groups` set: the rows that a
 * vector of features must visit.
 */
SF_INLINE uint64_t sf_active_rows(const uint64_t *m, uint64_t groups, ptrdiff_t count)
{
    const uint64_t active = sf_words_with_bits(m, groups, 8);
    return count < 64 ? active & (((uint64_t)1 << count) - 1) : active;
}

#define SF_T float
#define SF_T_SIZE 4
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f32_u8
#include "hot_loops_impl.h"

#define SF_T float
#define SF_T_SIZE 4
#define SF_X float
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f32_f32
#define SF_T_NAME(name) name##_f32
#include "hot_loops_impl.h"

#define SF_T double
#define SF_T_SIZE 8
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f64_u8
#include "hot_loops_impl.h"

#define SF_T double
#define SF_T_SIZE 8
#define SF_X double
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f64_f64
#define SF_T_NAME(name) name##_f64
#include "hot_loops_impl.h"

#endif
