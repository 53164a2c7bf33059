/*
 * hot_loops/pair_impl.h: one instantiation of the hot loops (see hot_loops.h)
 * for weights of type SF_T and features of type SF_X (SF_T itself, or
 * uint8_t with SF_X_IS_T 0); SF_NAME(name) gives the function names and,
 * where SF_X_IS_T, SF_T_NAME(name) the names of what depends on the weights'
 * type alone. No include guard: hot_loops.h defines those macros and
 * includes this file once per type pair, after config.h, masks.h, buffers.h
 * and the C library's headers.
 *
 * It defines the pair's sizes, includes the templates in the order that they
 * use each other, and undefines every macro that the pair defined, so that
 * the next pair starts clean.
 */

/* Features per vector: 64 bytes of weights, whole mask groups. */
#define SF_LANES ((ptrdiff_t)(SF_VECTOR_BYTES / sizeof(SF_T)))
/* SF_LANES for the preprocessor: 16 floats or 8 doubles. */
#define SF_LANES_LITERAL (SF_VECTOR_BYTES / SF_T_SIZE)
#define SF_GROUPS_PER_LANES (SF_LANES / SF_GROUP)

#include "vectors_impl.h"
#include "narrow_impl.h"
#include "gemm_impl.h"
#include "exp_impl.h"
#include "rows_impl.h"

/* Defined by gemm_impl.h and exp_impl.h. */
#undef SF_PANEL
#undef SF_EXP
#undef SF_LOG
/* Defined above. */
#undef SF_LANES
#undef SF_LANES_LITERAL
#undef SF_GROUPS_PER_LANES
/* Defined by hot_loops.h for this pair. */
#undef SF_T
#undef SF_T_SIZE
#undef SF_X
#undef SF_X_IS_T
#undef SF_NAME
#undef SF_T_NAME
