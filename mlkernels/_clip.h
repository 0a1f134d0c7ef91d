/* _clip.h -- the per-unit reductions of gradient clipping (_clip.pyx) for the norms other
 * than p = 2 (which is _reduce.h's Σ (x − 0)²): Σ|x|, the number of nonzeros, and max/min |x|.
 *
 * Sums take one partial sum per vector lane in double (`omp simd reduction`, as _reduce.h,
 * which says why). max/min reduce per lane as well; comparisons are exact, so their result
 * does not depend on the order. A NaN anywhere makes max/min NaN (torch's norms propagate
 * NaN).
 */
#ifndef MLK_CLIP_H
#define MLK_CLIP_H

#include <math.h>
#include <stddef.h>

#define MLK_CLIP_REDUCTIONS(T, SUFFIX, ABS)                                                 \
static inline double mlk_sum_abs_##SUFFIX(const T* x, ptrdiff_t n) {                        \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")  /* simd */                                          \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)ABS(x[j]);                               \
    return s;                                                                               \
}                                                                                           \
static inline double mlk_count_nonzero_##SUFFIX(const T* x, ptrdiff_t n) {                  \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")  /* simd */                                          \
    for (ptrdiff_t j = 0; j < n; j++) s += (x[j] != 0) ? 1.0 : 0.0;                         \
    return s;                                                                               \
}                                                                                           \
/* max |x| (0 for n = 0) and min |x| (+inf for n = 0), NaN if any x is NaN. The NaN test is  \
 * a reduction of its own: written as one select `a > m || a != a ? a : m`, GCC saw control  \
 * flow and left the loop scalar (14x slower). */                                           \
static inline double mlk_max_abs_##SUFFIX(const T* x, ptrdiff_t n) {                        \
    T m = 0;                                                                                \
    int nan_seen = 0;                                                                       \
    _Pragma("omp simd reduction(max:m) reduction(|:nan_seen)")  /* simd */                  \
    for (ptrdiff_t j = 0; j < n; j++) {                                                     \
        T a = ABS(x[j]);                                                                    \
        m = a > m ? a : m;                                                                  \
        nan_seen |= a != a;                                                                 \
    }                                                                                       \
    return nan_seen ? (double)NAN : (double)m;                                              \
}                                                                                           \
static inline double mlk_min_abs_##SUFFIX(const T* x, ptrdiff_t n) {                        \
    T m = (T)INFINITY;                                                                      \
    int nan_seen = 0;                                                                       \
    _Pragma("omp simd reduction(min:m) reduction(|:nan_seen)")  /* simd */                  \
    for (ptrdiff_t j = 0; j < n; j++) {                                                     \
        T a = ABS(x[j]);                                                                    \
        m = a < m ? a : m;                                                                  \
        nan_seen |= a != a;                                                                 \
    }                                                                                       \
    return nan_seen ? (double)NAN : (double)m;                                              \
}

MLK_CLIP_REDUCTIONS(float, f32, fabsf)
MLK_CLIP_REDUCTIONS(double, f64, fabs)

#undef MLK_CLIP_REDUCTIONS

#endif
