"""One BLAS helper for every kernel module: row-major gemm over the fused type ``floating``.

Inline, so that any kernel module (in any ISA variant) can cimport it; the BLAS itself is
``scipy.linalg.cython_blas`` (the OpenBLAS NumPy and SciPy ship), reached through function
pointers that SciPy exports. Never call it from inside an OpenMP parallel region: OpenBLAS
has its own thread pool, and nesting the two pools oversubscribes the cores.
"""
from cython cimport floating
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef enum:
    INT_MAX = 2147483647   # BLAS takes 32-bit ints: larger dims are split


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                      floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C := op(A)·op(B) + beta·C for row-major matrices; C is m×n, the sum runs over k.

    BLAS is column-major, and a row-major matrix read column-major is its transpose. So the
    row-major C we want is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: call BLAS with the operands
    swapped (B first), each keeping its own transpose flag, and m, n swapped.
    m and k may exceed 2**31 - 1 (they are split into several calls); n and the leading
    dimensions may not (the caller refuses those). beta is 0 or 1.
    """
    cdef Py_ssize_t i, row, k0
    cdef int mi, ni = <int>n, ki, lda_i = <int>lda, ldb_i = <int>ldb, ldc_i = <int>ldc
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1, beta_k
    cdef const floating* a_part
    cdef const floating* b_part
    if m == 0 or n == 0:
        return
    if k == 0:                                   # an empty sum: C := beta·C
        if beta == 0:
            for row in range(m):
                memset(&c[row * ldc], 0, n * sizeof(floating))
        return
    row = 0
    while row < m:                               # rows of C, at most INT_MAX per call
        mi = <int>min(m - row, <Py_ssize_t>INT_MAX)
        beta_k = beta
        k0 = 0
        while k0 < k:                            # the sum, split: later parts add (beta = 1)
            ki = <int>min(k - k0, <Py_ssize_t>INT_MAX)
            # element (i, j) of op(A) sits at a[i*lda + j] (no trans) or a[j*lda + i] (trans)
            a_part = a + (row * lda + k0 if not trans_a else k0 * lda + row)
            b_part = b + (k0 * ldb if not trans_b else k0)
            if floating is float:
                sgemm(&tb, &ta, &ni, &mi, &ki, &one, <float*>b_part, &ldb_i,
                      <float*>a_part, &lda_i, &beta_k, &c[row * ldc], &ldc_i)
            else:
                dgemm(&tb, &ta, &ni, &mi, &ki, &one, <double*>b_part, &ldb_i,
                      <double*>a_part, &lda_i, &beta_k, &c[row * ldc], &ldc_i)
            beta_k = 1
            k0 += ki
        row += mi
