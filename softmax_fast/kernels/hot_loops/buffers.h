/*
 * hot_loops/buffers.h: the sizes of what the callers allocate for the loops:
 * rows of whole vectors (sf_whole_vectors), the GEMM loops' scratch
 * (sf_gemm_logits_scratch, sf_gemm_gradient_scratch) and the row stride of
 * their G (sf_gemm_padded_classes). Not a template: the values' size is an
 * argument. Uses config.h (SF_VECTOR_BYTES and the GEMM tile).
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_BUFFERS_H
#define SOFTMAX_FAST_HOT_LOOPS_BUFFERS_H

#include <stddef.h>

#include "config.h"

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

#endif
