"""Reductions that vectorize: sums and dot products of a row (in double), the row maximum,
and column sums of four rows.

They are the C loops of _reduce.h (an OpenMP ``simd reduction`` lets the compiler keep one
partial result per vector lane without -ffast-math; the header says why); here each gets its
fused-type face, so a kernel calls ``sum_of(x, n)`` for float or double x.
"""
from cython cimport floating

cdef extern from "_reduce.h" nogil:
    double mlk_sum_f32(const float* x, Py_ssize_t n)
    double mlk_sum_f64(const double* x, Py_ssize_t n)
    double mlk_dot_f32(const float* a, const float* b, Py_ssize_t n)
    double mlk_dot_f64(const double* a, const double* b, Py_ssize_t n)
    float mlk_max_f32(const float* x, Py_ssize_t n)
    double mlk_max_f64(const double* x, Py_ssize_t n)
    double mlk_sum_sq_centered_f32(const float* x, Py_ssize_t n, double c)
    double mlk_sum_sq_centered_f64(const double* x, Py_ssize_t n, double c)
    void mlk_centered_sums_f32(const float* x, Py_ssize_t n, double c, double* sum,
                               double* sum_sq)
    void mlk_centered_sums_f64(const double* x, Py_ssize_t n, double c, double* sum,
                               double* sum_sq)
    void mlk_grad_sums_f32(const float* g, const float* w, const float* x, Py_ssize_t n,
                           double c, double* sum_gw, double* sum_gw_centered)
    void mlk_grad_sums_f64(const double* g, const double* w, const double* x, Py_ssize_t n,
                           double c, double* sum_gw, double* sum_gw_centered)
    void mlk_add4_centered_sums_f32(const float* x, Py_ssize_t n, const float* k, float* sum,
                                    float* sum_sq)
    void mlk_add4_centered_sums_f64(const double* x, Py_ssize_t n, const double* k,
                                    double* sum, double* sum_sq)
    void mlk_add4_grad_sums_f32(const float* g, const float* x, Py_ssize_t n, const float* m,
                                float* sum_g, float* sum_g_centered)
    void mlk_add4_grad_sums_f64(const double* g, const double* x, Py_ssize_t n,
                                const double* m, double* sum_g, double* sum_g_centered)


cdef inline double sum_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """Σ x[j], in double."""
    if floating is float:
        return mlk_sum_f32(x, n)
    else:
        return mlk_sum_f64(x, n)


cdef inline double dot_of(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """Σ a[j]·b[j], in double."""
    if floating is float:
        return mlk_dot_f32(a, b, n)
    else:
        return mlk_dot_f64(a, b, n)


cdef inline double sum_sq_centered(const floating* x, Py_ssize_t n, double c) noexcept nogil:
    """Σ (x[j] − c)², in double: the second pass of a two-pass variance (c = 0: Σ x²)."""
    if floating is float:
        return mlk_sum_sq_centered_f32(x, n, c)
    else:
        return mlk_sum_sq_centered_f64(x, n, c)


cdef inline void centered_sums(const floating* x, Py_ssize_t n, double c,
                               double* sum, double* sum_sq) noexcept nogil:
    """Σ (x[j] − c) and Σ (x[j] − c)², in double, in one pass."""
    if floating is float:
        mlk_centered_sums_f32(x, n, c, sum, sum_sq)
    else:
        mlk_centered_sums_f64(x, n, c, sum, sum_sq)


cdef inline void grad_sums(const floating* g, const floating* w, const floating* x,
                           Py_ssize_t n, double c,
                           double* sum_gw, double* sum_gw_centered) noexcept nogil:
    """Σ g[j]·w[j] and Σ g[j]·w[j]·(x[j] − c), in double, in one pass; w NULL means 1."""
    if floating is float:
        mlk_grad_sums_f32(g, w, x, n, c, sum_gw, sum_gw_centered)
    else:
        mlk_grad_sums_f64(g, w, x, n, c, sum_gw, sum_gw_centered)


cdef inline void add4_centered_sums(const floating* x, Py_ssize_t n, const floating* k,
                                    floating* sum, floating* sum_sq) noexcept nogil:
    """Column sums of four rows (x, x + n, x + 2n, x + 3n), added into sum and sum_sq:
    Σ_r (x_r[j] − k[j]) and Σ_r (x_r[j] − k[j])², in the rows' type."""
    if floating is float:
        mlk_add4_centered_sums_f32(x, n, k, sum, sum_sq)
    else:
        mlk_add4_centered_sums_f64(x, n, k, sum, sum_sq)


cdef inline void add4_grad_sums(const floating* g, const floating* x, Py_ssize_t n,
                                const floating* m, floating* sum_g,
                                floating* sum_g_centered) noexcept nogil:
    """Column sums of four rows of g and x, added into sum_g and sum_g_centered: Σ_r g_r[j]
    and Σ_r g_r[j]·(x_r[j] − m[j]), in the rows' type."""
    if floating is float:
        mlk_add4_grad_sums_f32(g, x, n, m, sum_g, sum_g_centered)
    else:
        mlk_add4_grad_sums_f64(g, x, n, m, sum_g, sum_g_centered)


cdef inline floating max_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """max x[j] over the values that are not NaN (−inf for an empty or all-NaN row). Callers
    rely on NaN reaching the result another way (softmax: e^(NaN − m) makes the sum NaN)."""
    if floating is float:
        return mlk_max_f32(x, n)
    else:
        return mlk_max_f64(x, n)
