"""A fixture for tests/test_vecreport.py: marked loops that the vectorization report
(mlkernels/_vecreport.py) must find vectorized, and marked loops it must report as scalar.
Compiled by the test through the report's own machinery; never imported."""
from cython cimport floating
from libc.math cimport exp, expf

cdef extern from "vecguard_fixture.h" nogil:
    double fixture_sum_f32(const float* x, Py_ssize_t n)
    double fixture_sum_f64(const double* x, Py_ssize_t n)
    double fixture_serial_sum_f32(const float* x, Py_ssize_t n)
    double fixture_serial_sum_f64(const double* x, Py_ssize_t n)


cdef void scale(float* x, float a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):  # simd
        x[i] = x[i] * a                     # GOOD: branchless arithmetic


cdef void exp_libm(float* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):  # simd
        x[i] = expf(x[i])                   # BAD: a libm call


cdef float serial_sum(const float* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef float total = 0
    for i in range(n):  # simd
        total += x[i]                       # BAD: a serial float reduction (in program order)
    return total


cdef inline floating half_or_exp(floating v) noexcept nogil:
    if floating is float:
        return v * <float>0.5
    else:
        return exp(v)                       # libm in the float64 instance only


cdef void typed(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):  # simd float32
        x[i] = half_or_exp(x[i])            # float32 required (GOOD), float64 allowed scalar


cdef void typed_strict(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):  # simd
        x[i] = half_or_exp(x[i])            # both required: float64 (BAD) must be reported


def run(float[::1] x, double[::1] d):
    cdef Py_ssize_t n = x.shape[0]
    cdef double total = 0  # simd
    with nogil:
        scale(&x[0], 2, n)
        exp_libm(&x[0], n)
        total += serial_sum(&x[0], n)
        typed(&x[0], n)
        typed(&d[0], d.shape[0])
        typed_strict(&x[0], n)
        typed_strict(&d[0], d.shape[0])
        total += fixture_sum_f32(&x[0], n) + fixture_sum_f64(&d[0], d.shape[0])
        total += fixture_serial_sum_f32(&x[0], n) + fixture_serial_sum_f64(&d[0], d.shape[0])
    return total
