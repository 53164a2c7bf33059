/*
 * hot_loops/config.h: how the hot loops are built. Owns the sizes the loops
 * are cut to (SF_VECTOR_BYTES, SF_CLASS_BLOCK, the GEMM tile,
 * SF_FEATURE_TILE), the multiversioning (SF_MULTIVERSION, SF_MULTIVERSIONED),
 * the detection of vector extensions (SF_VECTOR_EXTENSIONS) and of
 * __builtin_shufflevector (SF_SHUFFLEVECTOR), SF_INLINE, and
 * SF_WITH_CONSTANT_CLASSES. Uses only what the compiler predefines; every
 * other header of the hot loops may use it.
 */
#ifndef SOFTMAX_FAST_HOT_LOOPS_CONFIG_H
#define SOFTMAX_FAST_HOT_LOOPS_CONFIG_H

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
/*
 * Bytes of the packed features of one call of the weight gradient's GEMM:
 * with a panel of G they stay in the L2 cache (1 MB a core on Zen 4) while
 * that panel meets each of their tiles, so that G is read from memory once
 * per call, not once per tile. (Numba's PACKED_BYTES.)
 */
#define SF_GEMM_PACKED_BYTES (256 * 1024)
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

#endif
