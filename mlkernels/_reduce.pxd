"""Row reductions that vectorize: sums, dot products and maxima over LANES partial results.

Why: without -ffast-math the compiler must add a running sum in program order, one element
after the other -- a serial chain of dependent additions, so a loop such as
``for j in range(n): total += x[j]`` stays scalar (and so does any loop that contains one,
exp and all). Here the order is spelled out instead: LANES independent partial sums, lane k
taking the elements j ≡ k (mod LANES), added together at the end. The inner fixed-size loop
over the lanes becomes one vector instruction (16 floats with AVX-512, two halves with AVX2),
and the order of the additions does not depend on the thread count.
Partial sums are in double: as accurate as the single double sum they replace, or better.

Two-result loops: ``sums_dev`` (Σ d, Σ d², d = x − c: BatchNorm's shifted sums) and
``sums_grad_dev`` (Σ g·w, Σ g·w·(x − c), w optional: every norm backward). The one-result
sums (sum, Σ d², dot product) keep loops of their own: through the two-result loops, with an
unused accumulator, softmax and LayerNorm measured 15-60% slower (figures at each).
"""
from cython cimport floating
from libc.math cimport INFINITY

cdef enum:
    LANES = 16


cdef inline double lanes_total(double* part) noexcept nogil:
    """Σ of the LANES partial sums, pairwise."""
    cdef int width = LANES // 2, k
    while width >= 1:
        for k in range(width):
            part[k] = part[k] + part[k + width]
        width = width // 2
    return part[0]


cdef inline void sums_dev(const floating* x, Py_ssize_t n, double c,
                          double* sum_d, double* sum_d2) noexcept nogil:
    """Σ (x[j] − c) and Σ (x[j] − c)², in double, in one pass (shifted sums: with c near the
    data, E[d²] − E[d]² does not cancel; the second pass of a two-pass variance)."""
    cdef double p1[LANES]
    cdef double p2[LANES]
    cdef double d
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        p1[k] = 0
        p2[k] = 0
    while j < blocks:
        for k in range(LANES):
            d = x[j + k] - c
            p1[k] += d
            p2[k] += d * d
        j += LANES
    for k in range(n - blocks):
        d = x[blocks + k] - c
        p1[k] += d
        p2[k] += d * d
    sum_d[0] = lanes_total(p1)
    sum_d2[0] = lanes_total(p2)


cdef inline void sums_grad_dev(const floating* g, const floating* w, const floating* x,
                               Py_ssize_t n, double c,
                               double* sum_gw, double* sum_gw_d) noexcept nogil:
    """Σ g[j]·w[j] and Σ g[j]·w[j]·(x[j] − c), in double, in one pass; w NULL means 1 (the
    test is loop-invariant: the compiler hoists it, the lanes stay vectorized). x − c is
    formed before any product: no cancellation for data far from 0."""
    cdef double p1[LANES]
    cdef double p2[LANES]
    cdef double gw
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        p1[k] = 0
        p2[k] = 0
    while j < blocks:
        for k in range(LANES):
            gw = <double>g[j + k] * (w[j + k] if w != NULL else <floating>1)
            p1[k] += gw
            p2[k] += gw * (x[j + k] - c)
        j += LANES
    for k in range(n - blocks):
        gw = <double>g[blocks + k] * (w[blocks + k] if w != NULL else <floating>1)
        p1[k] += gw
        p2[k] += gw * (x[blocks + k] - c)
    sum_gw[0] = lanes_total(p1)
    sum_gw_d[0] = lanes_total(p2)


cdef inline double sum_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """Σ x[j], in double. (Softmax 4096×1000, one thread: 3.5 ms with this loop, 4.5 ms with
    sums_dev's second accumulator.)"""
    cdef double part[LANES]
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        part[k] = 0
    while j < blocks:
        for k in range(LANES):
            part[k] += x[j + k]
        j += LANES
    for k in range(n - blocks):
        part[k] += x[blocks + k]
    return lanes_total(part)


cdef inline double sum_sq_dev(const floating* x, Py_ssize_t n, double c) noexcept nogil:
    """Σ (x[j] − c)², in double: the second pass of a two-pass variance. (LayerNorm's forward
    measured 2.2 ms with this loop, 3.7 ms with sums_dev's extra accumulator, 4096×1024.)"""
    cdef double part[LANES]
    cdef double d
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        part[k] = 0
    while j < blocks:
        for k in range(LANES):
            d = x[j + k] - c
            part[k] += d * d
        j += LANES
    for k in range(n - blocks):
        d = x[blocks + k] - c
        part[k] += d * d
    return lanes_total(part)


cdef inline double dot_of(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """Σ a[j]·b[j], in double. (Softmax's backward 4096×1000, one thread: 2.1 ms with this
    loop, 2.4 ms through sums_grad_dev.)"""
    cdef double part[LANES]
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        part[k] = 0
    while j < blocks:
        for k in range(LANES):
            part[k] += <double>a[j + k] * b[j + k]
        j += LANES
    for k in range(n - blocks):
        part[k] += <double>a[blocks + k] * b[blocks + k]
    return lanes_total(part)


cdef inline floating max_of(const floating* x, Py_ssize_t n) noexcept nogil:
    """max x[j] over the values that are not NaN (−inf for an empty or all-NaN row). Callers
    rely on NaN reaching the result another way (softmax: e^(NaN − m) makes the sum NaN)."""
    cdef floating part[LANES]
    cdef floating m
    cdef Py_ssize_t j = 0, blocks = n - n % LANES
    cdef int k
    for k in range(LANES):
        part[k] = -INFINITY
    while j < blocks:
        for k in range(LANES):
            part[k] = x[j + k] if x[j + k] > part[k] else part[k]
        j += LANES
    for k in range(n - blocks):
        part[k] = x[blocks + k] if x[blocks + k] > part[k] else part[k]
    m = part[0]
    for k in range(1, LANES):
        m = part[k] if part[k] > m else m
    return m
