/* _reduce.h -- row reductions that vectorize: sums and dot products of a row, in double.
 *
 * Why a C header: a running sum must be added in program order unless the compiler is told
 * it may reorder it, so `for (j...) total += x[j]` stays scalar without -ffast-math (which we
 * never use: it breaks NaN/Inf semantics everywhere). OpenMP's `simd reduction` clause gives
 * that permission to these loops alone: each vector lane keeps its own partial sum, and the
 * lanes are added together at the end. Cython cannot write the pragma, hence C.
 *
 * (These loops were once spelled in Cython as 16 explicit partial sums. GCC 12 vectorized that
 * for double input but left it scalar for float32 input, which has to be widened to double:
 * 0.35 ns per element against 0.062 ns with the loop below -- AVX-512, 100k floats in cache,
 * one thread; 0.32 against 0.12 ns with AVX2.)
 *
 * The order of the additions depends on the vector width, so on the ISA variant, and never on
 * the thread count. Needs -fopenmp or -fopenmp-simd (setup.py always passes the latter);
 * without either the loops are still correct, only scalar.
 *
 * Each function exists for float and double input (suffix _f32, _f64); partial sums are
 * double for both.
 */
#ifndef MLK_REDUCE_H
#define MLK_REDUCE_H

#include <stddef.h>

#define MLK_REDUCTIONS(T, SUFFIX)                                                           \
/* Σ x[j] */                                                                                \
static inline double mlk_sum_##SUFFIX(const T* x, ptrdiff_t n) {                            \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)x[j];                                    \
    return s;                                                                               \
}                                                                                           \
/* Σ (x[j] − c)²: the second pass of a two-pass variance */                                \
static inline double mlk_sum_sq_dev_##SUFFIX(const T* x, ptrdiff_t n, double c) {           \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) { double d = (double)x[j] - c; s += d * d; }          \
    return s;                                                                               \
}                                                                                           \
/* Σ (x[j] − c) and Σ (x[j] − c)² in one pass (shifted sums: with c near the data,          \
 * E[d²] − E[d]² does not cancel) */                                                        \
static inline void mlk_sums_dev_##SUFFIX(const T* x, ptrdiff_t n, double c,                 \
                                         double* sum_d, double* sum_d2) {                   \
    double s1 = 0, s2 = 0;                                                                  \
    _Pragma("omp simd reduction(+:s1,s2)")                                                  \
    for (ptrdiff_t j = 0; j < n; j++) { double d = (double)x[j] - c; s1 += d; s2 += d * d; } \
    *sum_d = s1;                                                                            \
    *sum_d2 = s2;                                                                           \
}                                                                                           \
/* Σ g[j]·w[j] and Σ g[j]·w[j]·(x[j] − c) in one pass, w NULL meaning 1 (every norm         \
 * backward). x − c is formed before any product: no cancellation for data far from 0.      \
 * Two loops, not one with `w ? w[j] : 1`: GCC does not unswitch that one, and with w NULL   \
 * it ran 7x slower (0.97 against 0.13 ns per element, AVX-512, n = 1024). */               \
static inline void mlk_sums_grad_dev_##SUFFIX(const T* g, const T* w, const T* x,           \
                                              ptrdiff_t n, double c,                        \
                                              double* sum_gw, double* sum_gw_d) {           \
    double s1 = 0, s2 = 0;                                                                  \
    if (w == NULL) {                                                                        \
        _Pragma("omp simd reduction(+:s1,s2)")                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            double gw = (double)g[j];                                                       \
            s1 += gw;                                                                       \
            s2 += gw * ((double)x[j] - c);                                                  \
        }                                                                                   \
    } else {                                                                                \
        _Pragma("omp simd reduction(+:s1,s2)")                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            double gw = (double)g[j] * (double)w[j];                                        \
            s1 += gw;                                                                       \
            s2 += gw * ((double)x[j] - c);                                                  \
        }                                                                                   \
    }                                                                                       \
    *sum_gw = s1;                                                                           \
    *sum_gw_d = s2;                                                                         \
}                                                                                           \
/* Σ a[j]·b[j] */                                                                           \
static inline double mlk_dot_##SUFFIX(const T* a, const T* b, ptrdiff_t n) {                \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)a[j] * (double)b[j];                     \
    return s;                                                                               \
}

MLK_REDUCTIONS(float, f32)
MLK_REDUCTIONS(double, f64)

#undef MLK_REDUCTIONS

#endif
