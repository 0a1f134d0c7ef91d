/* vecguard_fixture.h -- C loops for tests/test_vecreport.py, written as the kernels' headers
 * are (one macro, one instance per float type), so that the report's line mapping of macro
 * loops is tested too. */
#include <stddef.h>

#define FIXTURE_SUMS(T, SUFFIX)                                                             \
/* can vectorize: an omp simd reduction keeps one partial sum per lane */                   \
static inline double fixture_sum_##SUFFIX(const T* x, ptrdiff_t n) {                        \
    double s = 0;                                                                           \
    _Pragma("omp simd reduction(+:s)")                                                      \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)x[j];                        /* simd */  \
    return s;                                                                               \
}                                                                                           \
/* cannot: without the pragma the additions stay in program order */                        \
static inline double fixture_serial_sum_##SUFFIX(const T* x, ptrdiff_t n) {                 \
    double s = 0;                                                                           \
    for (ptrdiff_t j = 0; j < n; j++) s += (double)x[j];                        /* simd */  \
    return s;                                                                               \
}

FIXTURE_SUMS(float, f32)
FIXTURE_SUMS(double, f64)

#undef FIXTURE_SUMS
