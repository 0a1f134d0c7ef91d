"""Gradient clipping by total norm: one reading pass for the norms, one scaling pass if needed.

Scalar math (grads g_1 ... g_m, p = norm_type)::

    norm_i = (Σ_j |g_i[j]|^p)^(1/p)        (p = inf: max |g|, -inf: min |g|, 0: #nonzero)
    total  = the same p-norm of (norm_1, ..., norm_m)                 (torch's definition)
    coef   = max_norm / (total + 1e-6);  if coef < 1 (or NaN):  g_i[j] *= coef

How it is built
---------------
* Every array is cut into units of UNIT elements; the threads take units (a list of 100
  arrays is one parallel region) and each unit leaves one partial result, in double. The
  partials of an array are then combined in unit order: the norm is the same bits for any
  thread count (the order within a unit is the vector lanes', set by the ISA variant).
* p = 2 (the common case) is Σ g² in double through the lane-parallel sums of _reduce.h; p = 1,
  inf, -inf and 0 are branchless lane loops as well (_clip.h); any other p calls pow (scalar).
* max/min |g| propagate NaN (a NaN gradient gives a NaN norm, as torch).
* The scaling pass is a multiply in place, per unit; the caller skips it when coef >= 1.
  (The optimizer classes skip it altogether: their fused step multiplies g by coef as it
  reads g -- see optim.py's ``max_grad_norm``.)
Reference: mlkernels/reference/clip.py.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, fabs, INFINITY
from libc.stdlib cimport malloc, free

cimport numpy as cnp
cnp.import_array()

from mlkernels._reduce cimport sum_sq_dev

cdef extern from "_clip.h" nogil:
    double mlk_sum_abs_f32(const float* x, Py_ssize_t n)
    double mlk_sum_abs_f64(const double* x, Py_ssize_t n)
    double mlk_count_nonzero_f32(const float* x, Py_ssize_t n)
    double mlk_count_nonzero_f64(const double* x, Py_ssize_t n)
    double mlk_max_abs_f32(const float* x, Py_ssize_t n)
    double mlk_max_abs_f64(const double* x, Py_ssize_t n)
    double mlk_min_abs_f32(const float* x, Py_ssize_t n)
    double mlk_min_abs_f64(const double* x, Py_ssize_t n)

cdef enum:
    UNIT = 65536          # elements per work unit (256 KiB of float32)
    SERIAL_BELOW = 65536  # total elements under which one thread is faster than a region

# what a unit computes (mlkernels/clip.py picks it from norm_type)
cdef enum Kind:
    SUM_SQUARES = 0       # p = 2
    SUM_ABS = 1           # p = 1
    MAX_ABS = 2           # p = inf
    MIN_ABS = 3           # p = -inf
    COUNT_NONZERO = 4     # p = 0
    SUM_POW = 5           # any other p: Σ |x|^p


cdef double unit_partial(Kind kind, const floating* x, Py_ssize_t n, double p) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s = 0
    if kind == SUM_SQUARES:
        return sum_sq_dev(x, n, 0.0)
    if floating is float:
        if kind == SUM_ABS:
            return mlk_sum_abs_f32(x, n)
        if kind == COUNT_NONZERO:
            return mlk_count_nonzero_f32(x, n)
        if kind == MAX_ABS:
            return mlk_max_abs_f32(x, n)
        if kind == MIN_ABS:
            return mlk_min_abs_f32(x, n)
    else:
        if kind == SUM_ABS:
            return mlk_sum_abs_f64(x, n)
        if kind == COUNT_NONZERO:
            return mlk_count_nonzero_f64(x, n)
        if kind == MAX_ABS:
            return mlk_max_abs_f64(x, n)
        if kind == MIN_ABS:
            return mlk_min_abs_f64(x, n)
    for j in range(n):                       # SUM_POW: libm's pow, scalar
        s += pow(fabs(<double>x[j]), p)
    return s


cdef inline double combine(Kind kind, double a, double b) noexcept nogil:
    """Two partial results of one array, a first: sums add; max/min keep NaN."""
    if kind == MAX_ABS:
        return a if (a != a or a >= b) else b
    if kind == MIN_ABS:
        return a if (a != a or a <= b) else b
    return a + b


cdef void partials_all(Kind kind, floating** data, Py_ssize_t* sizes, Py_ssize_t n_arrays,
                       double p, double* result, int n_threads) noexcept nogil:
    """result[a] = the combined partial of array a (the identity for an empty array)."""
    cdef Py_ssize_t a, u, start, n_units = 0, total = 0
    cdef double identity = 0 if kind != MIN_ABS else INFINITY
    for a in range(n_arrays):
        n_units += (sizes[a] + UNIT - 1) // UNIT
        total += sizes[a]
    cdef Py_ssize_t* unit_array = <Py_ssize_t*>malloc((2 * n_units + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* unit_start = unit_array + n_units
    cdef double* partial = <double*>malloc((n_units + 1) * sizeof(double))
    if unit_array == NULL or partial == NULL:       # serially, without the unit tables
        for a in range(n_arrays):
            result[a] = identity
            u = 0
            while u < sizes[a]:
                result[a] = combine(kind, result[a],
                                    unit_partial(kind, data[a] + u, min(<Py_ssize_t>UNIT, sizes[a] - u), p))
                u += UNIT
        free(unit_array); free(partial)
        return
    u = 0
    for a in range(n_arrays):
        start = 0
        while start < sizes[a]:
            unit_array[u] = a
            unit_start[u] = start
            start += UNIT
            u += 1
    if total < SERIAL_BELOW or n_threads <= 1:
        for u in range(n_units):
            a = unit_array[u]
            partial[u] = unit_partial(kind, data[a] + unit_start[u],
                                      min(<Py_ssize_t>UNIT, sizes[a] - unit_start[u]), p)
    else:
        for u in prange(n_units, num_threads=n_threads, schedule="static"):
            partial[u] = unit_partial(kind, data[unit_array[u]] + unit_start[u],
                                      min(<Py_ssize_t>UNIT, sizes[unit_array[u]] - unit_start[u]), p)
    for a in range(n_arrays):
        result[a] = identity
    for u in range(n_units):                         # in unit order: deterministic
        a = unit_array[u]
        result[a] = combine(kind, result[a], partial[u])
    free(unit_array)
    free(partial)


cdef void scale_unit(floating* x, Py_ssize_t n, floating coef) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):  # simd
        x[j] = x[j] * coef


cdef void scale_all(floating** data, Py_ssize_t* sizes, Py_ssize_t n_arrays, floating coef,
                    int n_threads) noexcept nogil:
    cdef Py_ssize_t a, c, total = 0
    for a in range(n_arrays):
        total += sizes[a]
    for a in range(n_arrays):
        if total < SERIAL_BELOW or n_threads <= 1 or sizes[a] < 2 * UNIT:
            scale_unit(data[a], sizes[a], coef)
        else:
            for c in prange((sizes[a] + UNIT - 1) // UNIT, num_threads=n_threads,
                            schedule="static"):
                scale_unit(data[a] + c * UNIT, min(<Py_ssize_t>UNIT, sizes[a] - c * UNIT), coef)


cdef int table(list arrays, void*** data, Py_ssize_t** sizes) except -1:
    cdef Py_ssize_t n = len(arrays), a
    data[0] = <void**>malloc(max(n, 1) * sizeof(void*))
    sizes[0] = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
    if data[0] == NULL or sizes[0] == NULL:
        free(data[0]); free(sizes[0])
        raise MemoryError()
    for a in range(n):
        data[0][a] = cnp.PyArray_DATA(<cnp.ndarray>arrays[a])
        sizes[0][a] = cnp.PyArray_SIZE(<cnp.ndarray>arrays[a])
    return 0


def norm_partials(list arrays, bint is_double, int kind, double p, double[::1] result,
                  int n_threads):
    """result[a] = Σ_j |arrays[a][j]|^p (or max/min |x|, or the count of nonzeros: ``kind``)
    for C-contiguous, aligned, native arrays of one float type (validated by clip.py)."""
    cdef void** data
    cdef Py_ssize_t* sizes
    cdef Py_ssize_t n = len(arrays)
    table(arrays, &data, &sizes)
    try:
        with nogil:
            if is_double:
                partials_all[double](<Kind>kind, <double**>data, sizes, n, p, &result[0] if n else NULL, n_threads)
            else:
                partials_all[float](<Kind>kind, <float**>data, sizes, n, p, &result[0] if n else NULL, n_threads)
    finally:
        free(data)
        free(sizes)


def scale(list arrays, bint is_double, double coef, int n_threads):
    """arrays[a] *= coef, in place (coef rounded once to the arrays' type)."""
    cdef void** data
    cdef Py_ssize_t* sizes
    cdef Py_ssize_t n = len(arrays)
    table(arrays, &data, &sizes)
    try:
        with nogil:
            if is_double:
                scale_all[double](<double**>data, sizes, n, coef, n_threads)
            else:
                scale_all[float](<float**>data, sizes, n, <float>coef, n_threads)
    finally:
        free(data)
        free(sizes)
