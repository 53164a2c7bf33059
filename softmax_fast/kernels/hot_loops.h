/*
 * The matrix loops of the Cython kernels: the logits X @ W of a block of rows
 * and the weight gradient X.T @ G of a block of features.
 *
 * They are C so that GCC can compile each loop for several instruction sets
 * and pick one when the extension is loaded (target_clones): a wheel built
 * here stays portable and still uses AVX-512 or AVX2 where the CPU has them.
 * The batch-level orchestration (threads, scratch, the bias) stays in Cython.
 *
 * Two families, by the number of classes k:
 *
 * Up to SF_CLASS_BLOCK classes (MNIST's case), the loops run their vectors
 * along the features, SF_LANES of them (64 bytes of weights) at a time: the
 * weights are held transposed, Wt (k, dp), each class a row padded with zeros
 * to dp features, a whole number of vectors, and the gradient updates them
 * as it is produced (with the penalty and the momentum, whose velocities Vt
 * (k, dp) share that layout: steps.h). The loops read uint8 pixels as they are stored (a
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
 * multiply-adds; the gradient updates W (and V (d, k)) as it is produced.
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
 * The code is split by concern under hot_loops/: config.h (sizes,
 * multiversioning, what the compiler offers), masks.h (the nonzero masks),
 * buffers.h (the sizes that the callers allocate), steps.h (what the weight
 * gradient does to the weights: the step, written once), and pair_impl.h,
 * included once per (weight type, feature type) pair below, which includes the
 * templates of a pair: vectors_impl.h (the vector type and its loads),
 * narrow_impl.h and gemm_impl.h (the two families), exp_impl.h (the vector
 * exp) and rows_impl.h (the rows' finishing, softmax and cross-entropy rows).
 * The CSR kernels' loops, csr_impl.h, are included once per (weight type,
 * index type) pair after them.
 * What depends on the weight type alone is compiled in the pair whose
 * features have that type (SF_X_IS_T), named by SF_T_NAME.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_H
#define SOFTMAX_FAST_HOT_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hot_loops/config.h"
#include "hot_loops/masks.h"
#include "hot_loops/buffers.h"
#include "hot_loops/steps.h"

/* The type pairs, as setup.py's LOOP_TYPES names them. */
#define SF_T float
#define SF_T_SIZE 4
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f32_u8
#include "hot_loops/pair_impl.h"

#define SF_T float
#define SF_T_SIZE 4
#define SF_X float
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f32_f32
#define SF_T_NAME(name) name##_f32
#include "hot_loops/pair_impl.h"

#define SF_T double
#define SF_T_SIZE 8
#define SF_X uint8_t
#define SF_X_IS_T 0
#define SF_NAME(name) name##_f64_u8
#include "hot_loops/pair_impl.h"

#define SF_T double
#define SF_T_SIZE 8
#define SF_X double
#define SF_X_IS_T 1
#define SF_NAME(name) name##_f64_f64
#define SF_T_NAME(name) name##_f64
#include "hot_loops/pair_impl.h"

/* The CSR loops' (weights, indices) type pairs, as setup.py's CSR_TYPES names them. */
#define SF_T float
#define SF_I int32_t
#define SF_I_IS_32 1
#define SF_CSR_NAME(name) name##_f32_i32
#define SF_T_NAME(name) name##_f32
#include "hot_loops/csr_impl.h"

#define SF_T float
#define SF_I int64_t
#define SF_I_IS_32 0
#define SF_CSR_NAME(name) name##_f32_i64
#include "hot_loops/csr_impl.h"

#define SF_T double
#define SF_I int32_t
#define SF_I_IS_32 1
#define SF_CSR_NAME(name) name##_f64_i32
#define SF_T_NAME(name) name##_f64
#include "hot_loops/csr_impl.h"

#define SF_T double
#define SF_I int64_t
#define SF_I_IS_32 0
#define SF_CSR_NAME(name) name##_f64_i64
#include "hot_loops/csr_impl.h"

#endif
