"""Embedding lookup and its deterministic backward (a scatter-add without atomics).

Scalar math (weight (V, d), n indices, grad_out (n, d))::

    forward:   out[i, :] = weight[idx[i], :]
    backward:  grad_weight[r, :] = Σ_{i : idx[i] == r} grad_out[i, :]     (0 when r is the
               padding row or no index names r)

How it is built
---------------
* The forward copies rows: the threads take ranges of indices, one memcpy (or a streaming
  copy for outputs from 16 MiB, _stream.h) per row.
* The backward never lets two threads add into one row. A counting sort first lists, for
  each row r of grad_weight, the positions i with idx[i] == r in increasing order (one serial
  pass over the indices and one over the rows: O(n + V)). Then the threads take ranges of
  rows, and each row is written exactly once: zeros, a copy of its one gradient row, or the
  sum of its rows in the order of their positions. So the result is the same bits for any
  thread count, with no atomics and no per-thread copies of grad_weight.
* float32 sums are accumulated in double (a word repeated thousands of times in a batch would
  otherwise lose digits); float64 sums in double.
* grad_weight is mostly rows no index names (V = 50k, 16k indices): written with streaming
  stores from 16 MiB on, and skipped altogether when the caller passes a zero-filled array
  (``zeroed``: a fresh np.zeros, whose pages the kernel then never touches).
* 16-bit storage (bfloat16, float16; _half.h): the forward copies the rows' 16-bit bits (a
  gather computes nothing: the float32 result, rounded, is the value itself; a NaN keeps its
  payload, as any copy). The backward widens each grad_out row to float32 as it reads it and
  sums in double exactly as the float32 kernel does (``embedding_backward_half``), then
  writes the float32 row -- grad_weight float32, the default -- or rounds it once to 16
  bits. So either is the float32 kernel's result on the widened grad_out (rounded). Summing
  in 16 bits instead would stall: a row named 1000 times by a gradient of 0.01 sums to 10,
  where a bfloat16 accumulator stops growing at 4 (0.01 is under half its unit there).
Reference: mlkernels/reference/embedding.py.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from libc.stdint cimport uint16_t

cimport numpy as cnp

cnp.import_array()

from mlkernels._half cimport mlk_widen, mlk_narrow_to
from mlkernels._runtime cimport stream_from
from mlkernels._stream cimport TILE_BYTES, TILE_MAX, mlk_stream_fence, stream_out, tile_len

cdef extern from "_stream.h" nogil:
    void mlk_stream_u16(uint16_t* dst, const uint16_t* src, Py_ssize_t n)

ctypedef fused index_t:
    int
    long long

ctypedef fused stored_t:        # what the forward copies: float32, float64, or 16-bit bits
    float
    double
    uint16_t

cdef enum:
    ROWS_PER_UNIT = 64         # rows of grad_weight (or indices of the forward) per work unit
    SERIAL_BELOW = 65536       # elements moved under which one thread is faster



cdef inline int threads_for(Py_ssize_t elements, int n_threads) noexcept nogil:
    return 1 if elements < SERIAL_BELOW else n_threads


cdef inline void put_row(stored_t* dst, const stored_t* src, Py_ssize_t d,
                         bint stream) noexcept nogil:
    if not stream:
        memcpy(dst, src, d * sizeof(stored_t))
    elif stored_t is uint16_t:
        mlk_stream_u16(dst, src, d)
    else:
        stream_out(dst, src, d)


# ------------------------------------------------------------------ forward

cdef void gather_unit(const stored_t* weight, const index_t* idx, stored_t* out, Py_ssize_t first,
                      Py_ssize_t count, Py_ssize_t d, bint stream) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(first, first + count):
        put_row(out + i * d, weight + <Py_ssize_t>idx[i] * d, d, stream)
    if stream:
        mlk_stream_fence()


# The entries take ndarrays (validated by mlkernels/embedding.py: C-contiguous, indices int32
# or int64) and dispatch on their types once: no typed memoryviews, so no memoryview code in
# the module and none to acquire per call.

def embedding_forward(cnp.ndarray weight,     # IN  (V, d)
                      cnp.ndarray indices,    # IN  (n,) int32 or int64, every one in [0, V)
                      cnp.ndarray out,        # OUT (n, d), weight's type
                      int n_threads):
    """out[i] = weight[indices[i]]. Indices are validated by mlkernels/embedding.py.
    16-bit storage comes as uint16 views: its rows are copied as bits."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(indices), d = cnp.PyArray_DIM(weight, 1)
    cdef void* pw = cnp.PyArray_DATA(weight)
    cdef void* pi = cnp.PyArray_DATA(indices)
    cdef void* po = cnp.PyArray_DATA(out)
    cdef int item = cnp.PyArray_ITEMSIZE(weight)
    cdef bint wide_index = cnp.PyArray_ITEMSIZE(indices) == 8
    if n == 0 or d == 0:
        return
    with nogil:
        if item == 8:
            if wide_index:
                gather_all(<const double*>pw, <const long long*>pi, <double*>po, n, d, n_threads)
            else:
                gather_all(<const double*>pw, <const int*>pi, <double*>po, n, d, n_threads)
        elif item == 4:
            if wide_index:
                gather_all(<const float*>pw, <const long long*>pi, <float*>po, n, d, n_threads)
            else:
                gather_all(<const float*>pw, <const int*>pi, <float*>po, n, d, n_threads)
        else:
            if wide_index:
                gather_all(<const uint16_t*>pw, <const long long*>pi, <uint16_t*>po, n, d,
                           n_threads)
            else:
                gather_all(<const uint16_t*>pw, <const int*>pi, <uint16_t*>po, n, d, n_threads)


cdef void gather_all(const stored_t* pw, const index_t* pi, stored_t* po, Py_ssize_t n,
                     Py_ssize_t d, int n_threads) noexcept nogil:
    """embedding_forward's work: units of ROWS_PER_UNIT indices over the team."""
    cdef Py_ssize_t n_units = (n + ROWS_PER_UNIT - 1) // ROWS_PER_UNIT, u
    cdef bint stream = n * d * <Py_ssize_t>sizeof(stored_t) >= stream_from()
    cdef int nt = threads_for(n * d, n_threads)
    if nt <= 1:
        gather_unit(pw, pi, po, 0, n, d, stream)
    else:
        for u in prange(n_units, num_threads=nt, schedule="static"):
            gather_unit(pw, pi, po, u * ROWS_PER_UNIT, min(<Py_ssize_t>ROWS_PER_UNIT,
                                                           n - u * ROWS_PER_UNIT), d, stream)


# ------------------------------------------------------------------ backward

cdef void zero_row(floating* dst, Py_ssize_t d, bint stream) noexcept nogil:
    cdef floating zeros[TILE_MAX]
    cdef Py_ssize_t p = 0, m
    if not stream:
        memset(dst, 0, d * sizeof(floating))
        return
    memset(zeros, 0, sizeof(zeros))
    while p < d:
        m = tile_len(dst + p, d - p)
        stream_out(dst + p, zeros, m)
        p += m


cdef void sum_rows(const floating* grad, const Py_ssize_t* positions, Py_ssize_t count,
                   Py_ssize_t d, double* acc, floating* dst, bint stream) noexcept nogil:
    """dst = Σ_k grad[positions[k], :], accumulated in double in the order of positions."""
    cdef Py_ssize_t k, j, p = 0, m
    cdef const floating* row = grad + positions[0] * d
    cdef floating raw[TILE_MAX + 16]
    cdef floating* tile = <floating*>((<size_t>&raw[0] + 63) & ~(<size_t>63))
    for j in range(d):  # simd
        acc[j] = row[j]
    for k in range(1, count):
        row = grad + positions[k] * d
        for j in range(d):  # simd
            acc[j] = acc[j] + row[j]
    if not stream:
        for j in range(d):  # simd
            dst[j] = <floating>acc[j]
        return
    while p < d:
        m = tile_len(dst + p, d - p)
        for j in range(m):  # simd
            tile[j] = <floating>acc[p + j]
        stream_out(dst + p, tile, m)
        p += m


cdef void scatter_unit(const floating* grad, const Py_ssize_t* start, const Py_ssize_t* order,
                       floating* gw, Py_ssize_t first, Py_ssize_t rows, Py_ssize_t d,
                       Py_ssize_t padding_idx, bint zeroed, double* acc,
                       bint stream) noexcept nogil:
    """Rows first ... first + rows − 1 of grad_weight, each written once (acc: d doubles of
    this thread's own)."""
    cdef Py_ssize_t r, count
    for r in range(first, first + rows):
        count = start[r + 1] - start[r]
        if count == 0 or r == padding_idx:
            if not zeroed:
                zero_row(gw + r * d, d, stream)
        elif count == 1:
            put_row(gw + r * d, grad + order[start[r]] * d, d, stream)
        else:
            sum_rows(grad, order + start[r], count, d, acc, gw + r * d, stream)
    if stream:
        mlk_stream_fence()


cdef int counting_sort(const index_t* idx, Py_ssize_t n, Py_ssize_t V, Py_ssize_t* start,
                       Py_ssize_t* order) noexcept nogil:
    """start[r] ... start[r + 1] − 1 index the positions of row r in ``order``, in increasing
    order (a stable counting sort). start has V + 1 entries. Returns -1 if out of memory."""
    cdef Py_ssize_t i, r
    cdef Py_ssize_t* cursor
    memset(start, 0, (V + 1) * sizeof(Py_ssize_t))
    for i in range(n):
        start[<Py_ssize_t>idx[i] + 1] += 1
    for r in range(V):
        start[r + 1] += start[r]
    cursor = <Py_ssize_t*>malloc(max(V, 1) * sizeof(Py_ssize_t))
    if cursor == NULL:
        return -1
    memcpy(cursor, start, V * sizeof(Py_ssize_t))
    for i in range(n):
        r = idx[i]
        order[cursor[r]] = i
        cursor[r] += 1
    free(cursor)
    return 0


def embedding_backward(cnp.ndarray grad_out,      # IN  (n, d)
                       cnp.ndarray indices,       # IN  (n,) int32 or int64, in [0, V)
                       cnp.ndarray grad_weight,   # OUT (V, d), grad_out's float type
                       Py_ssize_t padding_idx,    # a row in [0, V), or -1 for none
                       bint zeroed,               # grad_weight holds zeros already
                       int n_threads):
    """grad_weight[r] = Σ grad_out[i] over the i with indices[i] == r (see the module's
    comment); deterministic for any thread count."""
    cdef void* pg = cnp.PyArray_DATA(grad_out)
    cdef void* pi = cnp.PyArray_DATA(indices)
    cdef void* pw = cnp.PyArray_DATA(grad_weight)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(indices)
    cdef Py_ssize_t V = cnp.PyArray_DIM(grad_weight, 0), d = cnp.PyArray_DIM(grad_weight, 1)
    cdef bint f64 = cnp.PyArray_TYPE(grad_weight) == cnp.NPY_FLOAT64
    cdef bint wide_index = cnp.PyArray_ITEMSIZE(indices) == 8
    cdef int status = 0
    with nogil:
        if f64:
            if wide_index:
                status = scatter_all(<const double*>pg, <const long long*>pi, <double*>pw, n, V,
                                     d, padding_idx, zeroed, n_threads)
            else:
                status = scatter_all(<const double*>pg, <const int*>pi, <double*>pw, n, V, d,
                                     padding_idx, zeroed, n_threads)
        else:
            if wide_index:
                status = scatter_all(<const float*>pg, <const long long*>pi, <float*>pw, n, V,
                                     d, padding_idx, zeroed, n_threads)
            else:
                status = scatter_all(<const float*>pg, <const int*>pi, <float*>pw, n, V, d,
                                     padding_idx, zeroed, n_threads)
    if status != 0:
        raise MemoryError()


cdef int scatter_all(const floating* pg, const index_t* indices, floating* pw, Py_ssize_t n,
                     Py_ssize_t V, Py_ssize_t d, Py_ssize_t padding_idx, bint zeroed,
                     int n_threads) noexcept nogil:
    """embedding_backward's work (-1 if out of memory): the counting sort, then units of
    ROWS_PER_UNIT rows of grad_weight over the team."""
    cdef Py_ssize_t n_units = (V + ROWS_PER_UNIT - 1) // ROWS_PER_UNIT, u
    cdef bint stream = V * d * <Py_ssize_t>sizeof(floating) >= stream_from()
    cdef int nt = threads_for(V * d, n_threads)
    if V == 0 or d == 0:
        return 0
    cdef Py_ssize_t* start = positions_by_row(indices, n, V)
    cdef double* acc = <double*>malloc(max(nt, 1) * d * sizeof(double))   # one row per thread
    if start == NULL or acc == NULL:
        free(start); free(acc)
        return -1
    cdef Py_ssize_t* order = start + V + 1
    if nt <= 1:
        scatter_unit(pg, start, order, pw, 0, V, d, padding_idx, zeroed, acc, stream)
    else:
        for u in prange(n_units, num_threads=nt, schedule="static"):
            scatter_unit(pg, start, order, pw, u * ROWS_PER_UNIT,
                         min(<Py_ssize_t>ROWS_PER_UNIT, V - u * ROWS_PER_UNIT), d,
                         padding_idx, zeroed, acc + threadid() * d, stream)
    free(start)
    free(acc)
    return 0


cdef Py_ssize_t* positions_by_row(const index_t* indices, Py_ssize_t n,
                                  Py_ssize_t V) noexcept nogil:
    """start (V + 1 entries), then order (n): the positions of each row's indices (a counting
    sort, below), in one allocation for the caller to free; NULL if out of memory."""
    cdef Py_ssize_t* start = <Py_ssize_t*>malloc((V + 1 + max(n, 1)) * sizeof(Py_ssize_t))
    if start == NULL:
        return NULL
    if n == 0:
        memset(start, 0, (V + 1) * sizeof(Py_ssize_t))
    elif counting_sort(indices, n, V, start, start + V + 1) != 0:
        free(start)
        return NULL
    return start


# ------------------------------------------------------------------ backward, 16-bit grad_out
# The same rows and order as embedding_backward; each grad_out row is widened to float32
# (exact) into this thread's ``wide`` buffer as it is read, so the double sums are the float32
# kernel's bit for bit. The result is written as float32 (out16 = 0) or rounded once to the
# storage kind (out16 = kind).

cdef void zero_row16(uint16_t* dst, Py_ssize_t d, bint stream) noexcept nogil:
    """zero_row for 16-bit rows: streamed in pieces that end on TILE_BYTES boundaries of dst,
    so that only the first can start misaligned (a misaligned start is stored element by
    element: cut every TILE_BYTES from a 16-byte-aligned array, it was 2x slower)."""
    cdef uint16_t zeros[2 * TILE_MAX]                   # TILE_BYTES of them
    cdef Py_ssize_t p = 0, m
    if not stream:
        memset(dst, 0, d * sizeof(uint16_t))
        return
    memset(zeros, 0, sizeof(zeros))
    while p < d:
        m = min(<Py_ssize_t>((TILE_BYTES - 1 - <size_t>(dst + p) % TILE_BYTES) // 2 + 1), d - p)
        mlk_stream_u16(dst + p, zeros, m)
        p += m


cdef void write_row(const float* row, Py_ssize_t d, void* dst, int out16, bint stream) noexcept nogil:
    """dst[0:d] = row as float32 (out16 == 0) or rounded to the 16-bit kind out16."""
    if out16:
        mlk_narrow_to(out16, row, <uint16_t*>dst, d, stream)
    else:
        put_row(<float*>dst, row, d, stream)


cdef void scatter_unit_half(int kind, const uint16_t* grad, const Py_ssize_t* start,
                            const Py_ssize_t* order, void* gw, int out16, Py_ssize_t first,
                            Py_ssize_t rows, Py_ssize_t d, Py_ssize_t padding_idx, bint zeroed,
                            double* acc, float* wide, bint stream) noexcept nogil:
    """Rows first ... first + rows − 1 of grad_weight (float32, or 16-bit of kind out16), each
    written once; acc (d doubles) and wide (d floats) are this thread's own."""
    cdef Py_ssize_t r, k, j, count
    cdef Py_ssize_t item = 2 if out16 else 4
    cdef char* dst
    for r in range(first, first + rows):
        count = start[r + 1] - start[r]
        dst = <char*>gw + r * d * item
        if count == 0 or r == padding_idx:
            if not zeroed:
                if out16:
                    zero_row16(<uint16_t*>dst, d, stream)
                else:
                    zero_row(<float*>dst, d, stream)
        else:
            mlk_widen(kind, grad + order[start[r]] * d, wide, d)
            if count > 1:
                for j in range(d):  # simd
                    acc[j] = wide[j]
                for k in range(start[r] + 1, start[r + 1]):
                    mlk_widen(kind, grad + order[k] * d, wide, d)
                    for j in range(d):  # simd
                        acc[j] = acc[j] + wide[j]
                for j in range(d):  # simd
                    wide[j] = <float>acc[j]
            write_row(wide, d, dst, out16, stream)
    if stream:
        mlk_stream_fence()


def embedding_backward_half(int kind,                # _half.h kind of grad_out
                            cnp.ndarray grad_out,    # IN  (n, d), 16-bit bits (uint16 view)
                            cnp.ndarray indices,     # IN  (n,) int32 or int64, in [0, V)
                            cnp.ndarray grad_weight, # OUT (V, d): float32, or uint16
                            int out16,               # 0: float32 out; else its kind
                            Py_ssize_t padding_idx, bint zeroed, int n_threads):
    """embedding_backward for 16-bit grad_out (see the comment above); grad_weight is a
    C-contiguous float32 array, or a uint16 view of a 16-bit one (out16 its kind)."""
    cdef const uint16_t* pg = <const uint16_t*>cnp.PyArray_DATA(grad_out)
    cdef void* pi = cnp.PyArray_DATA(indices)
    cdef void* pw = cnp.PyArray_DATA(grad_weight)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(indices)
    cdef Py_ssize_t V = cnp.PyArray_DIM(grad_weight, 0), d = cnp.PyArray_DIM(grad_weight, 1)
    cdef int status = 0
    with nogil:
        if cnp.PyArray_ITEMSIZE(indices) == 8:
            status = scatter_all_half(kind, pg, <const long long*>pi, pw, out16, n, V, d,
                                      padding_idx, zeroed, n_threads)
        else:
            status = scatter_all_half(kind, pg, <const int*>pi, pw, out16, n, V, d,
                                      padding_idx, zeroed, n_threads)
    if status != 0:
        raise MemoryError()


cdef int scatter_all_half(int kind, const uint16_t* pg, const index_t* indices, void* pw,
                          int out16, Py_ssize_t n, Py_ssize_t V, Py_ssize_t d,
                          Py_ssize_t padding_idx, bint zeroed, int n_threads) noexcept nogil:
    """embedding_backward_half's work (-1 if out of memory), as scatter_all's."""
    cdef Py_ssize_t n_units = (V + ROWS_PER_UNIT - 1) // ROWS_PER_UNIT, u
    cdef Py_ssize_t item = 2 if out16 else 4
    cdef bint stream = V * d * item >= stream_from()
    cdef int nt = threads_for(V * d, n_threads)
    if V == 0 or d == 0:
        return 0
    cdef Py_ssize_t* start = positions_by_row(indices, n, V)
    cdef double* acc = <double*>malloc(max(nt, 1) * d * sizeof(double))   # one row per thread
    cdef float* wide = <float*>malloc(max(nt, 1) * d * sizeof(float))
    if start == NULL or acc == NULL or wide == NULL:
        free(start); free(acc); free(wide)
        return -1
    cdef Py_ssize_t* order = start + V + 1
    if nt <= 1:
        scatter_unit_half(kind, pg, start, order, pw, out16, 0, V, d, padding_idx,
                          zeroed, acc, wide, stream)
    else:
        for u in prange(n_units, num_threads=nt, schedule="static"):
            scatter_unit_half(kind, pg, start, order, pw, out16, u * ROWS_PER_UNIT,
                              min(<Py_ssize_t>ROWS_PER_UNIT, V - u * ROWS_PER_UNIT), d,
                              padding_idx, zeroed, acc + threadid() * d,
                              wide + threadid() * d, stream)
    free(start)
    free(acc)
    free(wide)
    return 0
