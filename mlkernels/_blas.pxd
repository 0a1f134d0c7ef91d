"""One BLAS helper for every kernel module: row-major gemm over the fused type ``floating``,
run in blocks on our own OpenMP team.

Inline, so that any kernel module (in any ISA variant) can cimport it; the BLAS itself is
``scipy.linalg.cython_blas`` (the OpenBLAS NumPy and SciPy ship), reached through function
pointers that SciPy exports.

Threads: OpenBLAS is kept single-threaded (``blas_single_thread``) and a product is cut into
as many blocks of C as we have threads, each block one ordinary gemm call on one thread of our
team (``gemm_parallel``). Why not OpenBLAS's own threads: its threaded gemm makes its threads
wait for each other's packed panels, spinning, many times per call; when another process (or
pool) holds a core, each of those waits lasts a scheduler time slice, and a product can take
50 times as long (docs/threads.md). Independent blocks only meet at the end.
And one team serves kernels and products alike: no second pool spinning between them.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

from mlkernels._runtime cimport blas_single_thread

cdef enum:
    INT_MAX = 2147483647     # BLAS takes 32-bit ints: larger dims are split
    BLOCK_ALIGN = 16         # column blocks start at multiples of 16 elements (64-byte lines)
    PARALLEL_FLOPS = 1 << 22  # below ~4 MFLOP (tens of µs on one core) one thread does it all


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                      floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C := op(A)·op(B) + beta·C for row-major matrices; C is m×n, the sum runs over k; on
    the calling thread (call ``blas_single_thread()`` once before, outside any parallel region).

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


cdef inline int gemm_threads(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """How many blocks (and threads) a product of this size is worth."""
    if n_threads <= 1 or 2.0 * m * n * k < PARALLEL_FLOPS:
        return 1
    return n_threads


cdef inline void block_range(Py_ssize_t size, int block, int n_blocks, bint align,
                             Py_ssize_t* start, Py_ssize_t* stop) noexcept nogil:
    """[start, stop) of block ``block`` of ``n_blocks`` near-equal blocks of 0..size (starts at
    multiples of BLOCK_ALIGN when ``align``: column blocks then start on a cache line)."""
    cdef Py_ssize_t lo = size * block // n_blocks, hi = size * (block + 1) // n_blocks
    if align and size >= BLOCK_ALIGN * n_blocks:
        lo = lo // BLOCK_ALIGN * BLOCK_ALIGN
        hi = size if block == n_blocks - 1 else hi // BLOCK_ALIGN * BLOCK_ALIGN
    start[0] = lo
    stop[0] = hi


cdef inline void gemm_block(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                            floating beta, floating* c, Py_ssize_t ldc, bint split_rows,
                            int block, int n_blocks) noexcept nogil:
    """Block ``block`` of C := op(A)·op(B) + beta·C: a band of C's rows (with the same rows
    of op(A)) or of its columns (with the same columns of op(B))."""
    cdef Py_ssize_t lo, hi
    if split_rows:
        block_range(m, block, n_blocks, False, &lo, &hi)
        gemm(trans_a, trans_b, hi - lo, n, k, a + (lo * lda if not trans_a else lo), lda,
             b, ldb, beta, c + lo * ldc, ldc)
    else:
        block_range(n, block, n_blocks, True, &lo, &hi)
        gemm(trans_a, trans_b, m, hi - lo, k, a, lda, b + (lo if not trans_b else lo * ldb),
             ldb, beta, c + lo, ldc)


cdef inline void gemm_parallel(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                               Py_ssize_t k, const floating* a, Py_ssize_t lda,
                               const floating* b, Py_ssize_t ldb, floating beta, floating* c,
                               Py_ssize_t ldc, int n_threads) noexcept nogil:
    """C := op(A)·op(B) + beta·C on up to ``n_threads`` threads of our team, one block of C
    each. Cut along C's longer side: cutting rows makes every thread pack all of op(B) (k×n),
    cutting columns all of op(A) (m×k), so the shorter side's operand is the one repacked."""
    cdef int blk, nt = gemm_threads(m, n, k, n_threads)
    cdef bint split_rows = m >= n
    blas_single_thread()
    if nt == 1:
        gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)
        return
    for blk in prange(nt, num_threads=nt, schedule="static", chunksize=1):
        gemm_block(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, split_rows, blk, nt)
