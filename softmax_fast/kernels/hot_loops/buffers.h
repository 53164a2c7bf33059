/*
 * hot_loops/buffers.h: the sizes of what the callers allocate for the loops:
 * rows of whole vectors (sf_whole_vectors), the GEMM loops' scratch
 * (sf_gemm_logits_scratch, sf_gemm_gradient_scratch), the row stride of
 * their G (sf_gemm_padded_classes) and the blocks of rows of a gradient
 * (sf_gradient_block_rows). Not a template: the values' size is an
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

/*
 * The features of one call of sf_gemm_weight_gradient on n rows of item_size
 * bytes: the whole tiles whose packed features SF_GEMM_PACKED_BYTES hold, at
 * least one.
 */
SF_INLINE ptrdiff_t sf_gemm_gradient_features(ptrdiff_t n, size_t item_size)
{
    const ptrdiff_t tiles = SF_GEMM_PACKED_BYTES / (n * SF_GEMM_ROWS * (ptrdiff_t)item_size);
    return (tiles > 1 ? tiles : 1) * SF_GEMM_ROWS;
}

/*
 * The scratch, in item_size-byte values, of sf_gemm_weight_gradient on up to
 * n rows (on n' <= n rows its calls take sf_gemm_gradient_features(n') features).
 */
SF_INLINE ptrdiff_t sf_gemm_gradient_scratch(ptrdiff_t n, size_t item_size)
{
    const ptrdiff_t packed = SF_GEMM_PACKED_BYTES / (ptrdiff_t)item_size;
    return sf_whole_vectors(packed > n * SF_GEMM_ROWS ? packed : n * SF_GEMM_ROWS, item_size);
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
 * The bytes of a block of loss_and_grad's rows and of their gradient of the
 * logits (G), which the backward pass reads again: a size that keeps them in
 * cache until then. At the linear probe's shape (float32, d = 768, k = 1000)
 * the Cython kernels' pass ran at 68 % of the GEMM peak on blocks of 256
 * rows, 49 % on 512 and 40 % on 1024; on MNIST (uint8, k = 10, float64;
 * 2427 rows a block) it took 16 ms, against 23 ms in one block.
 */
#define SF_GRADIENT_BLOCK_BYTES ((ptrdiff_t)2 << 20)
/* The fewest rows of a block, so that each is long enough for every thread. */
#define SF_GRADIENT_BLOCK_MIN_ROWS 256

/*
 * The rows of one block of loss_and_grad on n rows of d features of x_size
 * bytes and k classes of item_size bytes: SF_GRADIENT_BLOCK_BYTES of rows
 * and G, at least SF_GRADIENT_BLOCK_MIN_ROWS, at most n. It depends on the
 * shapes and types alone, never on the threads: the sums are the same for
 * any thread count.
 */
SF_INLINE ptrdiff_t sf_gradient_block_rows(ptrdiff_t n, ptrdiff_t d, size_t x_size, ptrdiff_t k, size_t item_size)
{
    const ptrdiff_t row_bytes = d * (ptrdiff_t)x_size + k * (ptrdiff_t)item_size;
    const ptrdiff_t rows = SF_GRADIENT_BLOCK_BYTES / row_bytes;
    const ptrdiff_t block = rows > SF_GRADIENT_BLOCK_MIN_ROWS ? rows : SF_GRADIENT_BLOCK_MIN_ROWS;
    return block < n ? block : n;
}

#endif
