/* _reduce.h -- reductions that vectorize: sums over a row, in double, the row maximum, and
 * column sums of four rows. Their Cython faces (one name for float and double input) are in
 * _reduce.pxd.
 *
 * Why a C header: a running sum must be added in program order unless the compiler is told
 * it may reorder it, so `for (j...) total += x[j]` stays scalar without -ffast-math (which we
 * never use: it breaks NaN/Inf semantics everywhere). OpenMP's `simd reduction` clause gives
 * that permission to these loops alone: each vector lane keeps its own partial sum, and the
 * lanes are added together at the end. Cython cannot write the pragma, hence C. (Spelled in
 * Cython as 16 explicit partial sums, the loops vectorized for double input but stayed scalar
 * for float32 input, which has to be widened: docs/kernels/norm.md has the figures.)
 *
 * The order of the additions depends on the vector width, so on the ISA variant, and never on
 * the thread count. Needs -fopenmp or -fopenmp-simd (setup.py always passes the latter);
 * without either the loops are still correct, only scalar.
 *
 * Each reduction is written once, as a macro that takes the function's name and element
 * type, and then defined for float and double input under its full name (mlk_sum_f32,
 * mlk_sum_f64, ...): grep finds every definition. Partial sums are double for both.
 */
#ifndef MLK_REDUCE_H
#define MLK_REDUCE_H

#include <stddef.h>
#include <stdint.h>

/* Σ x[j] */
#define MLK_SUM(NAME, T)                                                                    \
static inline double NAME(const T* x, ptrdiff_t n) {                                        \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)x[j];  /* simd */                        \
    return s;                                                                               \
}
MLK_SUM(mlk_sum_f32, float)
MLK_SUM(mlk_sum_f64, double)

/* Σ a[j]·b[j] */
#define MLK_DOT(NAME, T)                                                                    \
static inline double NAME(const T* a, const T* b, ptrdiff_t n) {                            \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)a[j] * (double)b[j];  /* simd */         \
    return s;                                                                               \
}
MLK_DOT(mlk_dot_f32, float)
MLK_DOT(mlk_dot_f64, double)

/* Σ (x[j] − c)²: the second pass of a two-pass variance (c = the mean), or Σ x² (c = 0) */
#define MLK_SUM_SQ_CENTERED(NAME, T)                                                        \
static inline double NAME(const T* x, ptrdiff_t n, double c) {                              \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) {  /* simd */                                         \
        double centered = (double)x[j] - c;                                                 \
        s += centered * centered;                                                           \
    }                                                                                       \
    return s;                                                                               \
}
MLK_SUM_SQ_CENTERED(mlk_sum_sq_centered_f32, float)
MLK_SUM_SQ_CENTERED(mlk_sum_sq_centered_f64, double)

/* Σ (x[j] − c) and Σ (x[j] − c)² in one pass: shifted sums (with c near the data,
 * E[d²] − E[d]² does not cancel) */
#define MLK_CENTERED_SUMS(NAME, T)                                                          \
static inline void NAME(const T* x, ptrdiff_t n, double c, double* sum, double* sum_sq) {   \
    double s1 = 0, s2 = 0;                                                                  \
    _Pragma("omp simd reduction(+:s1,s2)")                                                  \
    for (ptrdiff_t j = 0; j < n; j++) {  /* simd */                                         \
        double centered = (double)x[j] - c;                                                 \
        s1 += centered;                                                                     \
        s2 += centered * centered;                                                          \
    }                                                                                       \
    *sum = s1;                                                                              \
    *sum_sq = s2;                                                                           \
}
MLK_CENTERED_SUMS(mlk_centered_sums_f32, float)
MLK_CENTERED_SUMS(mlk_centered_sums_f64, double)

/* Σ g[j]·w[j] and Σ g[j]·w[j]·(x[j] − c) in one pass, w NULL meaning 1: the two sums of a
 * norm's backward. x − c is formed before any product: no cancellation for data far from 0.
 * Two loops, not one with `w ? w[j] : 1`: GCC does not unswitch that test, and the loop
 * with it ran several times slower with w NULL. */
#define MLK_GRAD_SUMS(NAME, T)                                                              \
static inline void NAME(const T* g, const T* w, const T* x, ptrdiff_t n, double c,          \
                        double* sum_gw, double* sum_gw_centered) {                          \
    double s1 = 0, s2 = 0;                                                                  \
    if (w == NULL) {                                                                        \
        _Pragma("omp simd reduction(+:s1,s2)")                                              \
        for (ptrdiff_t j = 0; j < n; j++) {  /* simd */                                     \
            double gw = (double)g[j];                                                       \
            s1 += gw;                                                                       \
            s2 += gw * ((double)x[j] - c);                                                  \
        }                                                                                   \
    } else {                                                                                \
        _Pragma("omp simd reduction(+:s1,s2)")                                              \
        for (ptrdiff_t j = 0; j < n; j++) {  /* simd */                                     \
            double gw = (double)g[j] * (double)w[j];                                        \
            s1 += gw;                                                                       \
            s2 += gw * ((double)x[j] - c);                                                  \
        }                                                                                   \
    }                                                                                       \
    *sum_gw = s1;                                                                           \
    *sum_gw_centered = s2;                                                                  \
}
MLK_GRAD_SUMS(mlk_grad_sums_f32, float)
MLK_GRAD_SUMS(mlk_grad_sums_f64, double)

/* max x[j] over the values that are not NaN (−inf for an empty or all-NaN row): one running
 * maximum per lane, as the sums. (Written in Cython as 16 explicit partial maxima, GCC left
 * the loop scalar: 16 vmaxss per 16 elements, the maxima spilled to the stack.) */
#define MLK_MAX(NAME, T)                                                                    \
static inline T NAME(const T* x, ptrdiff_t n) {                                             \
    T m = -(T)__builtin_inf();                                                              \
    _Pragma("omp simd reduction(max:m)")                                                    \
    for (ptrdiff_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;  /* simd */                  \
    return m;                                                                               \
}
MLK_MAX(mlk_max_f32, float)
MLK_MAX(mlk_max_f64, double)

#undef MLK_SUM
#undef MLK_DOT
#undef MLK_MAX
#undef MLK_SUM_SQ_CENTERED
#undef MLK_CENTERED_SUMS
#undef MLK_GRAD_SUMS

/* Column sums of four consecutive rows of length n (row stride n), added element-wise into
 * running sums of the rows' own type: BatchNorm's per-channel sums when a channel has one
 * value per sample. Four rows per call add their terms in registers and touch the running
 * sums once: a quarter of the loads and stores of the sums. In C for `omp simd`: spelled in
 * Cython the loop has too many pointers for GCC's run-time alias checks and stays scalar.
 * The columns before x's first 64-byte boundary go first, on their own, so that the vector
 * loop's loads do not straddle cache lines: NumPy's large arrays start 16 bytes past a line
 * (and g and x usually share that offset); straddling loads cost when memory is fast.
 * Figures: docs/kernels/norm.md. */

/* Columns of x (of T) before its first 64-byte boundary, at most n */
#define MLK_TO_LINE(x, n)                                                                   \
    ((ptrdiff_t)((64 - (uintptr_t)(x) % 64) % 64 / sizeof(*(x))) < (n)                     \
     ? (ptrdiff_t)((64 - (uintptr_t)(x) % 64) % 64 / sizeof(*(x))) : (n))

/* sum[j] += Σ_r (x_r[j] − k[j]),  sum_sq[j] += Σ_r (x_r[j] − k[j])²,  r = 0..3, j in [j0, j1) */
#define MLK_ADD4_CENTERED_SUMS_COLS(NAME, T)                                                \
static inline void NAME(const T* x, ptrdiff_t n, const T* k, T* sum, T* sum_sq,            \
                        ptrdiff_t j0, ptrdiff_t j1) {                                       \
    const T *x0 = x, *x1 = x + n, *x2 = x + 2 * n, *x3 = x + 3 * n;                         \
    _Pragma("omp simd")                                                                     \
    for (ptrdiff_t j = j0; j < j1; j++) {  /* simd */                                       \
        T d0 = x0[j] - k[j], d1 = x1[j] - k[j], d2 = x2[j] - k[j], d3 = x3[j] - k[j];       \
        sum[j] += (d0 + d1) + (d2 + d3);                                                    \
        sum_sq[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);                             \
    }                                                                                       \
}
MLK_ADD4_CENTERED_SUMS_COLS(mlk_add4_centered_sums_cols_f32, float)
MLK_ADD4_CENTERED_SUMS_COLS(mlk_add4_centered_sums_cols_f64, double)

/* sum_g[j] += Σ_r g_r[j],  sum_g_centered[j] += Σ_r g_r[j]·(x_r[j] − m[j]),  r = 0..3 */
#define MLK_ADD4_GRAD_SUMS_COLS(NAME, T)                                                    \
static inline void NAME(const T* g, const T* x, ptrdiff_t n, const T* m, T* sum_g,          \
                        T* sum_g_centered, ptrdiff_t j0, ptrdiff_t j1) {                    \
    const T *g0 = g, *g1 = g + n, *g2 = g + 2 * n, *g3 = g + 3 * n;                         \
    const T *x0 = x, *x1 = x + n, *x2 = x + 2 * n, *x3 = x + 3 * n;                         \
    _Pragma("omp simd")                                                                     \
    for (ptrdiff_t j = j0; j < j1; j++) {  /* simd */                                       \
        T mj = m[j];                                                                        \
        sum_g[j] += (g0[j] + g1[j]) + (g2[j] + g3[j]);                                      \
        sum_g_centered[j] += (g0[j] * (x0[j] - mj) + g1[j] * (x1[j] - mj))                  \
                             + (g2[j] * (x2[j] - mj) + g3[j] * (x3[j] - mj));               \
    }                                                                                       \
}
MLK_ADD4_GRAD_SUMS_COLS(mlk_add4_grad_sums_cols_f32, float)
MLK_ADD4_GRAD_SUMS_COLS(mlk_add4_grad_sums_cols_f64, double)

#undef MLK_ADD4_CENTERED_SUMS_COLS
#undef MLK_ADD4_GRAD_SUMS_COLS

/* The four-row column sums over all n columns: the columns up to x's first line boundary,
 * then the rest (aligned loads). */
#define MLK_ADD4_CENTERED_SUMS(NAME, COLS, T)                                               \
static inline void NAME(const T* x, ptrdiff_t n, const T* k, T* sum, T* sum_sq) {          \
    ptrdiff_t head = MLK_TO_LINE(x, n);                                                     \
    COLS(x, n, k, sum, sum_sq, 0, head);                                                    \
    COLS(x, n, k, sum, sum_sq, head, n);                                                    \
}
MLK_ADD4_CENTERED_SUMS(mlk_add4_centered_sums_f32, mlk_add4_centered_sums_cols_f32, float)
MLK_ADD4_CENTERED_SUMS(mlk_add4_centered_sums_f64, mlk_add4_centered_sums_cols_f64, double)

#define MLK_ADD4_GRAD_SUMS(NAME, COLS, T)                                                   \
static inline void NAME(const T* g, const T* x, ptrdiff_t n, const T* m, T* sum_g,          \
                        T* sum_g_centered) {                                                \
    ptrdiff_t head = MLK_TO_LINE(x, n);                                                     \
    COLS(g, x, n, m, sum_g, sum_g_centered, 0, head);                                       \
    COLS(g, x, n, m, sum_g, sum_g_centered, head, n);                                       \
}
MLK_ADD4_GRAD_SUMS(mlk_add4_grad_sums_f32, mlk_add4_grad_sums_cols_f32, float)
MLK_ADD4_GRAD_SUMS(mlk_add4_grad_sums_f64, mlk_add4_grad_sums_cols_f64, double)

#undef MLK_ADD4_CENTERED_SUMS
#undef MLK_ADD4_GRAD_SUMS
#undef MLK_TO_LINE

#endif
