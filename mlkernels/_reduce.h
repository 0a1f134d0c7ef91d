/* _reduce.h -- row reductions that vectorize: sums and dot products of a row, in double, and
 * the row maximum.
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
#include <stdint.h>

#define MLK_REDUCTIONS(T, SUFFIX)                                                           \
/* Σ x[j] */                                                                                \
static inline double mlk_sum_##SUFFIX(const T* x, ptrdiff_t n) {                            \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)x[j];                        /* simd */  \
    return s;                                                                               \
}                                                                                           \
/* Σ (x[j] − c)²: the second pass of a two-pass variance */                                \
static inline double mlk_sum_sq_dev_##SUFFIX(const T* x, ptrdiff_t n, double c) {           \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) { double d = (double)x[j] - c; s += d * d; } /* simd */\
    return s;                                                                               \
}                                                                                           \
/* Σ (x[j] − c) and Σ (x[j] − c)² in one pass (shifted sums: with c near the data,          \
 * E[d²] − E[d]² does not cancel) */                                                        \
static inline void mlk_sums_dev_##SUFFIX(const T* x, ptrdiff_t n, double c,                 \
                                         double* sum_d, double* sum_d2) {                   \
    double s1 = 0, s2 = 0;                                                                  \
    _Pragma("omp simd reduction(+:s1,s2)")                                                  \
    for (ptrdiff_t j = 0; j < n; j++) {                                         /* simd */  \
        double d = (double)x[j] - c;                                                        \
        s1 += d;                                                                            \
        s2 += d * d;                                                                        \
    }                                                                                       \
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
        for (ptrdiff_t j = 0; j < n; j++) {                                     /* simd */  \
            double gw = (double)g[j];                                                       \
            s1 += gw;                                                                       \
            s2 += gw * ((double)x[j] - c);                                                  \
        }                                                                                   \
    } else {                                                                                \
        _Pragma("omp simd reduction(+:s1,s2)")                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                     /* simd */  \
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
    for (ptrdiff_t j = 0; j < n; j++) s += (double)a[j] * (double)b[j];         /* simd */  \
    return s;                                                                               \
}                                                                                           \
/* max x[j] over the values that are not NaN (−inf for an empty or all-NaN row): one        \
 * running maximum per lane, as the sums. (Written in Cython as 16 explicit partial maxima,  \
 * GCC left the loop scalar: 16 vmaxss per 16 elements, the maxima spilled to the stack.) */ \
static inline T mlk_max_##SUFFIX(const T* x, ptrdiff_t n) {                                 \
    T m = -(T)__builtin_inf();                                                              \
    _Pragma("omp simd reduction(max:m)")                                                    \
    for (ptrdiff_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;                  /* simd */  \
    return m;                                                                               \
}

MLK_REDUCTIONS(float, f32)
MLK_REDUCTIONS(double, f64)

#undef MLK_REDUCTIONS

/* Column sums of four consecutive rows of length n (row stride n), added element-wise into
 * running sums of the rows' own type: BatchNorm's per-channel sums when a channel has one
 * value per sample. Four rows per call add their terms in registers and touch the running
 * sums once: a quarter of the loads and stores of the sums (16384×1024 float32, 2 threads,
 * a C harness: 2.9 -> 2.0 ms for the gradient sums; 3.5 -> 3.0 ms in a slower-memory
 * moment). In C for `omp simd`: spelled in Cython the loop has too many pointers for GCC's
 * run-time alias checks and stays scalar.
 * The columns before x's first 64-byte boundary go first, on their own, so that the vector
 * loop's loads do not straddle cache lines: NumPy's large arrays start 16 bytes past a line
 * (and g and x usually share that offset). In the same harness the gradient sums took
 * 2.45 ms on rows 16 bytes past a line against 2.09 ms on aligned rows when memory was fast;
 * no difference when it was slow. */
#define MLK_COLUMN_SUMS(T, SUFFIX)                                                          \
static inline ptrdiff_t mlk_to_line_##SUFFIX(const T* x, ptrdiff_t n) {                     \
    ptrdiff_t head = (ptrdiff_t)((64 - (uintptr_t)x % 64) % 64 / sizeof(T));                \
    return head < n ? head : n;                                                             \
}                                                                                           \
static inline void mlk_add4_sums_dev_cols_##SUFFIX(const T* x, ptrdiff_t n, const T* k,     \
                                                   T* sum_d, T* sum_d2,                     \
                                                   ptrdiff_t j0, ptrdiff_t j1) {            \
    const T *x0 = x, *x1 = x + n, *x2 = x + 2 * n, *x3 = x + 3 * n;                         \
    _Pragma("omp simd")                                                                     \
    for (ptrdiff_t j = j0; j < j1; j++) {                                       /* simd */  \
        T d0 = x0[j] - k[j], d1 = x1[j] - k[j], d2 = x2[j] - k[j], d3 = x3[j] - k[j];       \
        sum_d[j] += (d0 + d1) + (d2 + d3);                                                  \
        sum_d2[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);                             \
    }                                                                                       \
}                                                                                           \
/* sum_d[j] += Σ_r (x_r[j] − k[j]),  sum_d2[j] += Σ_r (x_r[j] − k[j])² */                   \
static inline void mlk_add4_sums_dev_##SUFFIX(const T* x, ptrdiff_t n, const T* k,          \
                                              T* sum_d, T* sum_d2) {                        \
    ptrdiff_t head = mlk_to_line_##SUFFIX(x, n);                                            \
    mlk_add4_sums_dev_cols_##SUFFIX(x, n, k, sum_d, sum_d2, 0, head);                       \
    mlk_add4_sums_dev_cols_##SUFFIX(x, n, k, sum_d, sum_d2, head, n);                       \
}                                                                                           \
static inline void mlk_add4_sums_grad_dev_cols_##SUFFIX(const T* g, const T* x, ptrdiff_t n,\
                                                        const T* m_hi, const T* m_lo,       \
                                                        T* sum_g, T* sum_gd,                \
                                                        ptrdiff_t j0, ptrdiff_t j1) {       \
    const T *g0 = g, *g1 = g + n, *g2 = g + 2 * n, *g3 = g + 3 * n;                         \
    const T *x0 = x, *x1 = x + n, *x2 = x + 2 * n, *x3 = x + 3 * n;                         \
    _Pragma("omp simd")                                                                     \
    for (ptrdiff_t j = j0; j < j1; j++) {                                       /* simd */  \
        T mh = m_hi[j], ml = m_lo[j];                                                       \
        sum_g[j] += (g0[j] + g1[j]) + (g2[j] + g3[j]);                                      \
        sum_gd[j] += (g0[j] * ((x0[j] - mh) - ml) + g1[j] * ((x1[j] - mh) - ml))            \
                     + (g2[j] * ((x2[j] - mh) - ml) + g3[j] * ((x3[j] - mh) - ml));         \
    }                                                                                       \
}                                                                                           \
/* sum_g[j] += Σ_r g_r[j],  sum_gd[j] += Σ_r g_r[j]·(x_r[j] − m[j]), m = m_hi + m_lo */      \
static inline void mlk_add4_sums_grad_dev_##SUFFIX(const T* g, const T* x, ptrdiff_t n,     \
                                                   const T* m_hi, const T* m_lo,            \
                                                   T* sum_g, T* sum_gd) {                   \
    ptrdiff_t head = mlk_to_line_##SUFFIX(x, n);                                            \
    mlk_add4_sums_grad_dev_cols_##SUFFIX(g, x, n, m_hi, m_lo, sum_g, sum_gd, 0, head);      \
    mlk_add4_sums_grad_dev_cols_##SUFFIX(g, x, n, m_hi, m_lo, sum_g, sum_gd, head, n);      \
}

MLK_COLUMN_SUMS(float, f32)
MLK_COLUMN_SUMS(double, f64)

#undef MLK_COLUMN_SUMS

#endif
