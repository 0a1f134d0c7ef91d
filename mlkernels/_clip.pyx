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

from mlkernels._reduce cimport sum_sq_centered

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
        return sum_sq_centered(x, n, 0.0)
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


cdef struct Units:
    # the arrays, and their cut into work units of at most UNIT elements (unit u is
    # elements unit_start[u] ... of array unit_array[u]); one table for the whole list, so a
    # list of arrays is one parallel region, whatever their number and sizes
    Py_ssize_t n_arrays, n_units, total
    void** data
    Py_ssize_t* sizes
    Py_ssize_t* unit_array
    Py_ssize_t* unit_start


cdef int make_units(list arrays, Units* t) except -1:
    cdef Py_ssize_t a, u = 0, start, n = len(arrays)
    t.n_arrays, t.n_units, t.total = n, 0, 0
    t.data = <void**>malloc(max(n, 1) * sizeof(void*))
    t.sizes = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
    t.unit_array = NULL
    if t.data != NULL and t.sizes != NULL:
        for a in range(n):
            t.data[a] = cnp.PyArray_DATA(<cnp.ndarray>arrays[a])
            t.sizes[a] = cnp.PyArray_SIZE(<cnp.ndarray>arrays[a])
            t.n_units += (t.sizes[a] + UNIT - 1) // UNIT
            t.total += t.sizes[a]
        t.unit_array = <Py_ssize_t*>malloc((2 * t.n_units + 1) * sizeof(Py_ssize_t))
    if t.data == NULL or t.sizes == NULL or t.unit_array == NULL:
        free_units(t)
        raise MemoryError()
    t.unit_start = t.unit_array + t.n_units
    for a in range(n):
        start = 0
        while start < t.sizes[a]:
            t.unit_array[u] = a
            t.unit_start[u] = start
            start += UNIT
            u += 1
    return 0


cdef void free_units(Units* t) noexcept nogil:
    free(t.data)
    free(t.sizes)
    free(t.unit_array)
    t.data, t.sizes, t.unit_array = NULL, NULL, NULL


cdef inline Py_ssize_t unit_len(const Units* t, Py_ssize_t u) noexcept nogil:
    return min(<Py_ssize_t>UNIT, t.sizes[t.unit_array[u]] - t.unit_start[u])


cdef inline int threads_for(const Units* t, int n_threads) noexcept nogil:
    return 1 if t.total < SERIAL_BELOW or t.n_units < 2 else n_threads


cdef void partials_all(Kind kind, const Units* t, floating** data, double p, double* partial,
                       double* result, int n_threads) noexcept nogil:
    """result[a] = the partials of array a's units (each in double), combined in unit order
    (the identity for an empty array): the same bits for any thread count. (``data`` is
    t.data, typed.)"""
    cdef Py_ssize_t a, u
    cdef int nt = threads_for(t, n_threads)
    if nt <= 1:
        for u in range(t.n_units):
            partial[u] = unit_partial(kind, data[t.unit_array[u]] + t.unit_start[u],
                                      unit_len(t, u), p)
    else:
        for u in prange(t.n_units, num_threads=nt, schedule="static"):
            partial[u] = unit_partial(kind, data[t.unit_array[u]] + t.unit_start[u],
                                      unit_len(t, u), p)
    for a in range(t.n_arrays):
        result[a] = 0 if kind != MIN_ABS else INFINITY
    for u in range(t.n_units):
        a = t.unit_array[u]
        result[a] = combine(kind, result[a], partial[u])


cdef void scale_unit(floating* x, Py_ssize_t n, floating coef) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):  # simd
        x[j] = x[j] * coef


cdef void scale_all(const Units* t, floating** data, floating coef, int n_threads) noexcept nogil:
    """Every array times coef, in place: one parallel region over the units of all arrays
    (one region per array costs a wake-up of the team per array; docs/kernels/clip.md)."""
    cdef Py_ssize_t u
    cdef int nt = threads_for(t, n_threads)
    if nt <= 1:
        for u in range(t.n_units):
            scale_unit(data[t.unit_array[u]] + t.unit_start[u], unit_len(t, u), coef)
    else:
        for u in prange(t.n_units, num_threads=nt, schedule="static"):
            scale_unit(data[t.unit_array[u]] + t.unit_start[u], unit_len(t, u), coef)


def norm_partials(list arrays, bint is_double, int kind, double p, cnp.ndarray result,
                  int n_threads):
    """result[a] = Σ_j |arrays[a][j]|^p (or max/min |x|, or the count of nonzeros: ``kind``)
    for C-contiguous, aligned, native arrays of one float type, into result, a C-contiguous
    float64 array of len(arrays) (all validated by clip.py)."""
    cdef double* sums = <double*>cnp.PyArray_DATA(result)
    cdef Units t
    make_units(arrays, &t)
    cdef double* partial = <double*>malloc((t.n_units + 1) * sizeof(double))
    if partial == NULL:
        free_units(&t)
        raise MemoryError()
    try:
        with nogil:
            if is_double:
                partials_all[double](<Kind>kind, &t, <double**>t.data, p, partial, sums,
                                     n_threads)
            else:
                partials_all[float](<Kind>kind, &t, <float**>t.data, p, partial, sums,
                                    n_threads)
    finally:
        free(partial)
        free_units(&t)


def scale(list arrays, bint is_double, double coef, int n_threads):
    """arrays[a] *= coef, in place (coef rounded once to the arrays' type)."""
    cdef Units t
    make_units(arrays, &t)
    try:
        with nogil:
            if is_double:
                scale_all[double](&t, <double**>t.data, coef, n_threads)
            else:
                scale_all[float](&t, <float**>t.data, <float>coef, n_threads)
    finally:
        free_units(&t)
