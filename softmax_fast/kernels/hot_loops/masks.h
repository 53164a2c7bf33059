/*
 * hot_loops/masks.h: the rows' nonzero masks, with which the narrow loops
 * visit only the vectors of features that are not all zero. Owns the mask
 * group (SF_GROUP), the masks' layout (sf_mask_words, sf_mask_rows), their
 * making (sf_nonzero_groups, with sf_words_with_bits) and the reading of a
 * column of them (sf_active_rows). Not a template: the same code serves
 * features of any size, given as an argument (each pair's multiversioned
 * entry, sf_nonzero_groups_<pair>, is in narrow_impl.h). Uses config.h.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_MASKS_H
#define SOFTMAX_FAST_HOT_LOOPS_MASKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

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

#endif
