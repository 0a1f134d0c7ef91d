"""Row reductions that vectorize: sums and dot products (in double) and maxima.

The sums and the maximum are the C loops of _reduce.h (an OpenMP ``simd reduction`` lets the
compiler keep one partial result per vector lane without -ffast-math; the header says why and
what it measured);
here each gets its fused-type face, so a kernel calls ``sum_of(x, n)`` for float or double x.
Two-result loops: ``sums_dev`` (Σ d, Σ d², d = x − c: BatchNorm's shifted sums) and
``sums_grad_dev`` (Σ g·w, Σ g·w·(x − c), w optional: every norm backward).
Column sums of four rows (``add4_*``): BatchNorm's per-channel sums with one value per sample.
"""
from cython cimport floating

cdef extern from "_reduce.h" nogil:
    double mlk_sum_f32(const float* x, Py_ssize_t n)
    double mlk_sum_f64(const double* x, Py_ssize_t n)
    double mlk_sum_sq_dev_f32(const float* x, Py_ssize_t n, double c)
    double mlk_sum_sq_dev_f64(const double* x, Py_ssize_t n, double c)
    void mlk_sums_dev_f32(const float* x, Py_ssize_t n, double c, double* sum_d, double* sum_d2)
    void mlk_sums_dev_f64(const double* x, Py_ssize_t n, double c, double* sum_d,
                          double* sum_d2)
    void mlk_sums_grad_dev_f32(const float* g, const float* w, const float* x, Py_ssize_t n,
                               double c, double* sum_gw, double* sum_gw_d)
    void mlk_sums_grad_dev_f64(const double* g, const double* w, const double* x,
                               Py_ssize_t n, double c, double* sum_gw, double* sum_gw_d)
    double mlk_dot_f32(const float* a, const float* b, Py_ssize_t n)
    double mlk_dot_f64(const double* a, const double* b, Py_ssize_t n)
    float mlk_max_f32(const float* x, Py_ssize_t n)
    double mlk_max_f64(const double* x, Py_ssize_t n)
    void mlk_add4_sums_dev_f32(const float* x, Py_ssize_t n, const float* k, float* sum_d,
                               float* sum_d2)
    void mlk_add4_sums_dev_f64(const double* x, Py_ssize_t n, const double* k, double* sum_d,
                               double* sum_d2)
    void mlk_add4_sums_grad_dev_f32(const float* g, const float* x, Py_ssize_t n,
                                    const float* m_hi, const float* m_lo, float* sum_g,
                                    float* sum_gd)
    void mlk_add4_sums_grad_dev_f64(const double* g, const double* x, Py_ssize_t n,
                                    const double* m_hi, const double* m_lo, double* sum_g,
                                    double* sum_gd)


cdef inline double sum_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """Σ x[j], in double."""
    if floating is float:
        return mlk_sum_f32(x, n)
    else:
        return mlk_sum_f64(x, n)


cdef inline double sum_sq_dev(const floating* x, Py_ssize_t n, double c) noexcept nogil:
    """Σ (x[j] − c)², in double: the second pass of a two-pass variance."""
    if floating is float:
        return mlk_sum_sq_dev_f32(x, n, c)
    else:
        return mlk_sum_sq_dev_f64(x, n, c)


cdef inline void sums_dev(const floating* x, Py_ssize_t n, double c,
                          double* sum_d, double* sum_d2) noexcept nogil:
    """Σ (x[j] − c) and Σ (x[j] − c)², in double, in one pass."""
    if floating is float:
        mlk_sums_dev_f32(x, n, c, sum_d, sum_d2)
    else:
        mlk_sums_dev_f64(x, n, c, sum_d, sum_d2)


cdef inline void sums_grad_dev(const floating* g, const floating* w, const floating* x,
                               Py_ssize_t n, double c,
                               double* sum_gw, double* sum_gw_d) noexcept nogil:
    """Σ g[j]·w[j] and Σ g[j]·w[j]·(x[j] − c), in double, in one pass; w NULL means 1."""
    if floating is float:
        mlk_sums_grad_dev_f32(g, w, x, n, c, sum_gw, sum_gw_d)
    else:
        mlk_sums_grad_dev_f64(g, w, x, n, c, sum_gw, sum_gw_d)


cdef inline double dot_of(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """Σ a[j]·b[j], in double."""
    if floating is float:
        return mlk_dot_f32(a, b, n)
    else:
        return mlk_dot_f64(a, b, n)


cdef inline void add4_sums_dev(const floating* x, Py_ssize_t n, const floating* k,
                               floating* sum_d, floating* sum_d2) noexcept nogil:
    """Column sums of four rows (x, x + n, x + 2n, x + 3n), added into sum_d and sum_d2:
    Σ_r (x_r[j] − k[j]) and Σ_r (x_r[j] − k[j])², in the rows' type."""
    if floating is float:
        mlk_add4_sums_dev_f32(x, n, k, sum_d, sum_d2)
    else:
        mlk_add4_sums_dev_f64(x, n, k, sum_d, sum_d2)


cdef inline void add4_sums_grad_dev(const floating* g, const floating* x, Py_ssize_t n,
                                    const floating* m_hi, const floating* m_lo,
                                    floating* sum_g, floating* sum_gd) noexcept nogil:
    """Column sums of four rows of g and x, added into sum_g and sum_gd: Σ_r g_r[j] and
    Σ_r g_r[j]·(x_r[j] − m[j]), m = m_hi + m_lo, in the rows' type."""
    if floating is float:
        mlk_add4_sums_grad_dev_f32(g, x, n, m_hi, m_lo, sum_g, sum_gd)
    else:
        mlk_add4_sums_grad_dev_f64(g, x, n, m_hi, m_lo, sum_g, sum_gd)


cdef inline floating max_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """max x[j] over the values that are not NaN (−inf for an empty or all-NaN row). Callers
    rely on NaN reaching the result another way (softmax: e^(NaN − m) makes the sum NaN)."""
    if floating is float:
        return mlk_max_f32(x, n)
    else:
        return mlk_max_f64(x, n)
