"""Normalization kernels: LayerNorm, RMSNorm, GroupNorm and BatchNorm, forward and backward.

Reading guide
-------------
Each public function of ``mlkernels/norm.py`` checks its arguments and calls the entry point
of the same name here (``layer_norm``, ``layer_norm_backward``, ...). An entry takes the
validated ndarrays, reads their data pointers (no memoryviews: acquiring one costs more than
a small call's whole work), picks the float or double kernel and the thread count, and calls
the kernel: ``<norm>_rows`` for the row norms, ``batch_norm_*`` for BatchNorm, each just
below its entry and opening with its math, the scalar loop it computes, why it is fast and
its reference in ``mlkernels/reference/norm.py``. Forward and backward sit side by side.

How they are built (what every kernel here shares)
--------------------------------------------------
* Statistics and sums are taken in double, through the lane-parallel reductions of
  ``_reduce.h`` (a running ``total += x[j]`` would keep the loop scalar).
* The row norms read a row from memory once: the second pass of the two-pass variance and the
  normalizing pass (or the backward's second pass) read it again from cache.
* Where the forward forms x − mean in float32 with the mean computed in double, the mean is a
  pair hi + lo of floats: rounding the mean alone loses the digits of data like
  1e4 + N(0, 1e-2). (A backward reads the mean the forward stored, in the array's type: it
  is exact as it is.)
* Sums across rows (dγ, dβ; BatchNorm's per-channel sums) are cut into *parts*, contiguous
  runs of rows fixed by the shape alone (``Parts``). A part's sums are its own, in double, and
  the parts are added in order at the end: the result does not depend on the thread count.
  With one value per channel the sums go through block sums of ROWS_PER_BLOCK rows in the
  array's type first (a row added straight into double sums is a widening and a
  read-modify-write of twice the bytes).
* Threads: a kernel given n_threads > 1 hands each thread a contiguous share of its rows (or
  parts, or channels) by calling itself with one thread inside a ``prange``; with one thread
  it runs its loops directly. Calls below SERIAL_BELOW_NORM elements run on one thread without
  opening a parallel region (opening one costs microseconds).
* Large outputs are written with streaming stores (``_stream.h``): the row norms compute a row
  into a per-thread buffer and stream it out, BatchNorm's second pass streams 512-byte tiles.
Measured figures, and what was tried and dropped: ``docs/kernels/norm.md``.
Shapes are validated in ``mlkernels/norm.py`` (bounds checks are off).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, NAN
from libc.stdlib cimport calloc, free

cimport numpy as cnp

from libc.stdint cimport uint16_t

from mlkernels._half cimport MLK_BF16, mlk_bf16_widen, mlk_widen, mlk_narrow_to
from mlkernels._reduce cimport (add4_centered_sums, add4_grad_sums, centered_sums, grad_sums,
                               sum_of, sum_sq_centered)
from mlkernels._runtime cimport SERIAL_BELOW_NORM, kernel_threads, stream_from
from mlkernels._stream cimport (TILE_BYTES, TILE_MAX, TileMemory, mlk_stream_fence, stream_out,
                               tile_in, tile_len)

cnp.import_array()


# ================================================================================ plumbing

cdef enum:
    ROWS_PER_BLOCK = 16        # rows summed in the array's type before joining double sums
    MAX_PARTS = 16             # at most this many parts (so threads) per cross-row sum
    PART_MIN = 32768           # elements: a part has at least this many (but one part at least)
    ROW_BUFFER_MAX = 64 * 1024     # bytes: a longer row is written straight to its output


cdef int threads_for(Py_ssize_t total, Py_ssize_t work_items):
    """Threads for a kernel over `total` elements split into `work_items`: one below
    SERIAL_BELOW_NORM (_runtime.pxd), else the runtime's count, at most work_items."""
    if total < SERIAL_BELOW_NORM or work_items <= 1:
        return 1
    return <int>min(<Py_ssize_t>kernel_threads(), work_items)


ctypedef void* Pointer


cdef inline Pointer data(object a):
    """The data pointer of a validated ndarray, NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint is_double(object a):
    return cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_DOUBLE


cdef void* scratch(size_t nbytes) except NULL:
    """Zeroed memory for a kernel's sums (free it); MemoryError if there is none."""
    cdef void* p = calloc(nbytes + 64, 1)
    if p == NULL:
        raise MemoryError()
    return p


cdef struct Parts:
    # Rows [0, rows) cut into `count` contiguous parts of whole units of `unit` rows; part k
    # is rows [start(k), start(k + 1)). Fixed by the shape, never by the thread count.
    Py_ssize_t rows, unit, units, count


cdef Parts parts_of(Py_ssize_t rows, Py_ssize_t row_len, Py_ssize_t unit):
    cdef Parts p
    p.rows, p.unit = rows, unit
    p.units = (rows + unit - 1) // unit
    p.count = max(1, min(p.units, min(<Py_ssize_t>MAX_PARTS, rows * row_len // PART_MIN)))
    return p


cdef inline Py_ssize_t part_start(const Parts* p, Py_ssize_t k) noexcept nogil:
    return min(p.rows, (p.units * k // p.count) * p.unit)


cdef struct Sums:
    # Sums across rows, in double: part k's `width` sums at parts + k·width (Parts), and
    # `total`, the parts added in order (add_parts); `blocks`: each thread's block sums, in
    # the array's type. parts is NULL when the call wants no sums.
    double* parts
    double* total
    void* blocks
    Py_ssize_t count, width


cdef Sums sums_for(bint wanted, Py_ssize_t count, Py_ssize_t width, Py_ssize_t block_bytes,
                   int n_threads) except *:
    cdef Sums s
    s.parts, s.total, s.blocks, s.count, s.width = NULL, NULL, NULL, count, width
    if wanted:
        s.parts = <double*>scratch((count + 1) * width * sizeof(double))
        s.total = s.parts + count * width
        try:
            s.blocks = scratch(n_threads * block_bytes)
        except MemoryError:
            free(s.parts)
            raise
    return s


cdef void free_sums(Sums* s):
    free(s.parts)
    free(s.blocks)


cdef void add_parts(Sums* s) noexcept nogil:
    """total[j] = Σ_k parts[k·width + j], the parts added in order k = 0, 1, ..."""
    cdef Py_ssize_t k, j
    for j in range(s.width):
        s.total[j] = 0
    for k in range(s.count):
        for j in range(s.width):  # simd
            s.total[j] += s.parts[k * s.width + j]


cdef void store(void* out, bint as_double, const double* values, Py_ssize_t n) noexcept nogil:
    """out[0:n] = values, rounded to out's type (nothing when out is NULL)."""
    cdef Py_ssize_t j
    if out == NULL:
        return
    for j in range(n):
        if as_double:
            (<double*>out)[j] = values[j]
        else:
            (<float*>out)[j] = <float>values[j]


cdef inline void flush_block(floating* block, double* sums, Py_ssize_t n) noexcept nogil:
    """sums += block, then block = 0: a block's sums join the part's double sums."""
    cdef Py_ssize_t i
    for i in range(n):  # simd
        sums[i] += block[i]
        block[i] = 0


cdef struct RowBuffers:
    # With `stream`, thread t computes each row into its own line-aligned buffer
    # first + t·stride (which stays in cache), then streams it to the output (_stream.h).
    bint stream
    void* memory                  # what to free (NULL when not streaming)
    char* first
    Py_ssize_t stride             # bytes


cdef RowBuffers row_buffers(Py_ssize_t rows, Py_ssize_t row_len, Py_ssize_t itemsize,
                            int n_threads) except *:
    cdef RowBuffers b
    b.stream = (row_len > 0 and rows * row_len * itemsize >= stream_from()
                and row_len * itemsize <= ROW_BUFFER_MAX)
    b.memory = NULL
    b.first = NULL
    b.stride = (row_len * itemsize + 63) // 64 * 64
    if b.stream:
        b.memory = scratch(n_threads * b.stride)
        b.first = <char*>((<size_t>b.memory + 63) & ~(<size_t>63))
    return b


cdef inline void* row_buffer(const RowBuffers* b, Py_ssize_t thread) noexcept nogil:
    """Thread `thread`'s row buffer, NULL when rows are written straight to the output."""
    return b.first + thread * b.stride if b.stream else NULL


# ================================================================================ LayerNorm

def layer_norm(cnp.ndarray x, weight, bias, cnp.ndarray y, cnp.ndarray mean,
               cnp.ndarray rstd, Py_ssize_t rows, Py_ssize_t cols, double eps):
    """y, mean, rstd of mlkernels.norm.layer_norm: x and y (rows, cols), weight and bias
    (cols,) or None, mean and rstd (rows,), all validated C-contiguous arrays of one type."""
    cdef int nt = threads_for(rows * cols, rows)
    cdef RowBuffers buffers = row_buffers(rows, cols, cnp.PyArray_ITEMSIZE(x), nt)
    cdef Pointer px = data(x), pw = data(weight), pb = data(bias)
    cdef Pointer py = data(y), pm = data(mean), pr = data(rstd)
    cdef bint f64 = is_double(x)
    try:
        with nogil:
            if f64:
                layer_norm_rows(<const double*>px, <const double*>pw, <const double*>pb,
                                <double*>py, <double*>pm, <double*>pr, 0, rows, cols, 1, eps,
                                &buffers, nt, 0)
            else:
                layer_norm_rows(<const float*>px, <const float*>pw, <const float*>pb,
                                <float*>py, <float*>pm, <float*>pr, 0, rows, cols, 1, eps,
                                &buffers, nt, 0)
    finally:
        free(buffers.memory)


cdef void layer_norm_rows(const floating* x, const floating* weight, const floating* bias,
                          floating* y, floating* mean, floating* rstd,
                          Py_ssize_t first, Py_ssize_t end, Py_ssize_t n, Py_ssize_t groups,
                          double eps, const RowBuffers* buffers, int n_threads,
                          int thread) noexcept nogil:
    """LayerNorm forward of rows [first, end) of x, n values a row.

    Scalar math, per row (weight and bias may be NULL: 1 and 0):
        mean    = Σ x[i] / n
        var     = Σ (x[i] − mean)² / n            biased, in double
        rstd    = 1 / √(var + eps)                 (an empty row: mean 0, rstd NaN, as torch)
        y[i]    = (x[i] − mean) · rstd · weight[i] + bias[i]

    GroupNorm of (N, C) data (one value per channel) runs here too: its rows cycle through
    `groups` weight and bias segments of n values (row r uses segment r % groups); LayerNorm
    has one. Why it is fast: the row is read from memory once -- the variance's second pass
    and the normalizing pass read it from cache, so the statistics are two-pass (no
    E[x²] − E[x]² cancellation) for one pass's memory traffic; the sums are the lane-parallel
    double reductions sum_of and sum_sq_centered; x − mean is (x − mean_hi) − mean_lo with the
    mean as a pair of floats; one loop per case of weight and bias, none testing per element.
    A large output is computed row by row into this thread's buffer and streamed out.
    Reference: mlkernels/reference/norm.py, layer_norm (and group_norm).
    """
    cdef Py_ssize_t t, r, i
    cdef double mu, var, rs
    cdef floating mean_hi, mean_lo, r_f
    cdef const floating* xr
    cdef const floating* w
    cdef const floating* b
    cdef floating* out
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    if n_threads > 1:           # each thread: a contiguous share of the rows, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            layer_norm_rows(x, weight, bias, y, mean, rstd,
                            first + (end - first) * t // n_threads,
                            first + (end - first) * (t + 1) // n_threads,
                            n, groups, eps, buffers, 1, t)
        return
    for r in range(first, end):
        xr = x + r * n
        out = buffer if buffer != NULL else y + r * n
        w = weight + (r % groups) * n if weight != NULL else NULL
        b = bias + (r % groups) * n if bias != NULL else NULL
        mu = sum_of(xr, n) / n if n else 0
        var = sum_sq_centered(xr, n, mu) / n if n else NAN     # second pass, cache-hot
        rs = 1 / sqrt(var + eps)
        mean[r] = <floating>mu
        rstd[r] = <floating>rs
        mean_hi = <floating>mu
        mean_lo = <floating>(mu - mean_hi)
        r_f = <floating>rs
        if w != NULL and b != NULL:
            for i in range(n):  # simd
                out[i] = ((xr[i] - mean_hi) - mean_lo) * r_f * w[i] + b[i]
        elif w != NULL:
            for i in range(n):  # simd
                out[i] = ((xr[i] - mean_hi) - mean_lo) * r_f * w[i]
        elif b != NULL:
            for i in range(n):  # simd
                out[i] = ((xr[i] - mean_hi) - mean_lo) * r_f + b[i]
        else:
            for i in range(n):  # simd
                out[i] = ((xr[i] - mean_hi) - mean_lo) * r_f
        if buffer != NULL:
            stream_out(y + r * n, buffer, n)
    if buffer != NULL:
        mlk_stream_fence()


def layer_norm_backward(cnp.ndarray grad_out, cnp.ndarray x, cnp.ndarray mean,
                        cnp.ndarray rstd, weight, cnp.ndarray grad_x, grad_weight, grad_bias,
                        Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t groups=1):
    """grad_x, grad_weight, grad_bias of mlkernels.norm.layer_norm_backward: grad_out, x and
    grad_x (rows, cols); mean and rstd (rows,) as the forward returned them; weight,
    grad_weight and grad_bias (groups·cols,) or None; validated C-contiguous arrays of one
    type. groups > 1: GroupNorm of (N, C) data (see layer_norm_rows)."""
    cdef Py_ssize_t C = groups * cols, itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef Parts parts = parts_of(rows, cols, ROWS_PER_BLOCK)
    cdef int nt = threads_for(rows * cols, parts.count)
    cdef RowBuffers buffers
    # per part [dγ C | dβ C]; per thread, the block sums of both
    cdef Sums sums = sums_for(grad_weight is not None or grad_bias is not None, parts.count,
                              2 * C, 2 * C * itemsize, nt)
    cdef Pointer pg = data(grad_out), px = data(x), pm = data(mean), pr = data(rstd)
    cdef Pointer pw = data(weight), pgx = data(grad_x)
    cdef Pointer pgw = data(grad_weight), pgb = data(grad_bias)
    cdef bint f64 = is_double(x)
    buffers.memory = NULL
    try:
        buffers = row_buffers(rows, cols, itemsize, nt)
        with nogil:
            if f64:
                layer_norm_backward_rows(<const double*>pg, <const double*>px,
                                         <const double*>pm, <const double*>pr,
                                         <const double*>pw, <double*>pgx, sums.parts,
                                         <double*>sums.blocks, &parts, 0, parts.count, cols,
                                         groups, &buffers, nt, 0)
            else:
                layer_norm_backward_rows(<const float*>pg, <const float*>px,
                                         <const float*>pm, <const float*>pr,
                                         <const float*>pw, <float*>pgx, sums.parts,
                                         <float*>sums.blocks, &parts, 0, parts.count, cols,
                                         groups, &buffers, nt, 0)
            if sums.parts != NULL:
                add_parts(&sums)
                store(pgw, f64, sums.total, C)
                store(pgb, f64, sums.total + C, C)
    finally:
        free_sums(&sums)
        free(buffers.memory)


cdef void layer_norm_backward_rows(const floating* g, const floating* x,
                                   const floating* mean, const floating* rstd,
                                   const floating* weight, floating* grad_x,
                                   double* part_sums, floating* blocks, const Parts* parts,
                                   Py_ssize_t first, Py_ssize_t end, Py_ssize_t n,
                                   Py_ssize_t groups, const RowBuffers* buffers,
                                   int n_threads, int thread) noexcept nogil:
    """LayerNorm backward of the rows of parts [first, end): grad_x, and each part's sums of
    dγ and dβ into part_sums [dγ C | dβ C] (NULL when neither is wanted).

    Scalar math, per row (x̂ = (x − mean)·rstd, ĝ = g·weight; weight NULL: ĝ = g):
        mean_gw      = Σ ĝ[i] / n
        mean_gw_xhat = Σ ĝ[i]·x̂[i] / n
        grad_x[i]    = rstd · (ĝ[i] − mean_gw − x̂[i]·mean_gw_xhat)
                               term 1  term 2   term 3
        dγ[i] += g[i]·x̂[i],  dβ[i] += g[i]                  (summed over the rows)

    (GroupNorm of (N, C) data too: rows cycle through `groups` weight segments, as in
    layer_norm_rows.) Why it is fast: pass 1 takes both means in one lane-parallel double
    reduction (grad_sums: Σ ĝ and Σ ĝ·(x − mean)); pass 2 reads the row from cache. dγ and dβ
    go into block sums of ROWS_PER_BLOCK rows in the array's type (this thread's), which join
    the part's double sums once a block; their loop is separate from grad_x's (fused, GCC's
    alias checks kept it scalar). A large grad_x is streamed out row by row.
    Reference: mlkernels/reference/norm.py, layer_norm_backward.
    """
    cdef Py_ssize_t C = groups * n, t, k, r, block_end, part_end
    cdef floating* out
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    cdef floating* block = blocks + thread * 2 * C if part_sums != NULL else NULL
    if n_threads > 1:           # each thread: a contiguous share of the parts, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            layer_norm_backward_rows(g, x, mean, rstd, weight, grad_x, part_sums, blocks,
                                     parts, first + (end - first) * t // n_threads,
                                     first + (end - first) * (t + 1) // n_threads, n, groups,
                                     buffers, 1, t)
        return
    for k in range(first, end):
        r = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        while r < part_end:
            block_end = min(r + ROWS_PER_BLOCK, part_end)
            while r < block_end:
                out = buffer if buffer != NULL else grad_x + r * n
                layer_norm_backward_row(g + r * n, x + r * n,
                                        weight + (r % groups) * n if weight != NULL else NULL,
                                        out, n, mean[r], rstd[r],
                                        block + (r % groups) * n if block != NULL else NULL,
                                        block + C + (r % groups) * n if block != NULL else NULL)
                if buffer != NULL:
                    stream_out(grad_x + r * n, buffer, n)
                r += 1
            if block != NULL:
                flush_block(block, part_sums + k * 2 * C, 2 * C)
    if buffer != NULL:
        mlk_stream_fence()


cdef void layer_norm_backward_row(const floating* gr, const floating* xr, const floating* w,
                                  floating* out, Py_ssize_t n, floating mean_f, floating r_f,
                                  floating* block_gw, floating* block_gb) noexcept nogil:
    """One row of layer_norm_backward_rows: grad_x into out, g·x̂ and g added into block_gw
    and block_gb (NULL: not wanted). Not inline: the float32 and the 16-bit kernels call the
    same machine code (inlined into the 16-bit kernel, whose row buffers GCC can see, the
    grad_x loop was compiled otherwise, and where g and mean(ĝ) both held a NaN, the other
    one came out)."""
    cdef Py_ssize_t i
    cdef double sum_gw, sum_gw_centered, rs = r_f
    cdef floating mean_gw, mean_gw_xhat, xhat
    grad_sums(gr, w, xr, n, mean_f, &sum_gw, &sum_gw_centered)     # pass 1
    mean_gw = <floating>(sum_gw / n)
    mean_gw_xhat = <floating>(sum_gw_centered * rs / n)
    if block_gw != NULL:        # pass 2: dγ, dβ ...
        for i in range(n):  # simd
            xhat = (xr[i] - mean_f) * r_f
            block_gw[i] += gr[i] * xhat
            block_gb[i] += gr[i]
    if w != NULL:               # ... and grad_x
        for i in range(n):  # simd
            xhat = (xr[i] - mean_f) * r_f
            out[i] = r_f * (gr[i] * w[i] - mean_gw - xhat * mean_gw_xhat)
    else:
        for i in range(n):  # simd
            xhat = (xr[i] - mean_f) * r_f
            out[i] = r_f * (gr[i] - mean_gw - xhat * mean_gw_xhat)


# ================================================================================ RMSNorm

def rms_norm(cnp.ndarray x, weight, cnp.ndarray y, cnp.ndarray rstd, Py_ssize_t rows,
             Py_ssize_t cols, double eps):
    """y, rstd of mlkernels.norm.rms_norm: x and y (rows, cols), weight (cols,) or None,
    rstd (rows,), all validated C-contiguous arrays of one type."""
    cdef int nt = threads_for(rows * cols, rows)
    cdef RowBuffers buffers = row_buffers(rows, cols, cnp.PyArray_ITEMSIZE(x), nt)
    cdef Pointer px = data(x), pw = data(weight), py = data(y), pr = data(rstd)
    cdef bint f64 = is_double(x)
    try:
        with nogil:
            if f64:
                rms_norm_rows(<const double*>px, <const double*>pw, <double*>py,
                              <double*>pr, 0, rows, cols, eps, &buffers, nt, 0)
            else:
                rms_norm_rows(<const float*>px, <const float*>pw, <float*>py, <float*>pr, 0,
                              rows, cols, eps, &buffers, nt, 0)
    finally:
        free(buffers.memory)


cdef void rms_norm_rows(const floating* x, const floating* weight, floating* y,
                        floating* rstd, Py_ssize_t first, Py_ssize_t end, Py_ssize_t n,
                        double eps, const RowBuffers* buffers, int n_threads,
                        int thread) noexcept nogil:
    """RMSNorm forward of rows [first, end) of x, n values a row.

    Scalar math, per row (weight NULL: 1):
        rstd = 1 / √(Σ x[i]² / n + eps)           in double (an empty row: NaN)
        y[i] = x[i] · rstd · weight[i]

    Why it is fast: one lane-parallel double reduction (sum_sq_centered about 0), then the
    scaling pass on the cache-hot row; a large output is streamed out row by row.
    Reference: mlkernels/reference/norm.py, rms_norm.
    """
    cdef Py_ssize_t t, r, i
    cdef double rs
    cdef floating r_f
    cdef const floating* xr
    cdef floating* out
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    if n_threads > 1:           # each thread: a contiguous share of the rows, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            rms_norm_rows(x, weight, y, rstd, first + (end - first) * t // n_threads,
                          first + (end - first) * (t + 1) // n_threads, n, eps, buffers, 1, t)
        return
    for r in range(first, end):
        xr = x + r * n
        out = buffer if buffer != NULL else y + r * n
        rs = 1 / sqrt(sum_sq_centered(xr, n, 0) / n + eps) if n else NAN
        rstd[r] = <floating>rs
        r_f = <floating>rs
        if weight != NULL:
            for i in range(n):  # simd
                out[i] = xr[i] * r_f * weight[i]
        else:
            for i in range(n):  # simd
                out[i] = xr[i] * r_f
        if buffer != NULL:
            stream_out(y + r * n, buffer, n)
    if buffer != NULL:
        mlk_stream_fence()


def rms_norm_backward(cnp.ndarray grad_out, cnp.ndarray x, cnp.ndarray rstd, weight,
                      cnp.ndarray grad_x, grad_weight, Py_ssize_t rows, Py_ssize_t cols):
    """grad_x, grad_weight of mlkernels.norm.rms_norm_backward: grad_out, x and grad_x
    (rows, cols); rstd (rows,) as the forward returned it; weight and grad_weight (cols,) or
    None; validated C-contiguous arrays of one type."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef Parts parts = parts_of(rows, cols, ROWS_PER_BLOCK)
    cdef int nt = threads_for(rows * cols, parts.count)
    cdef RowBuffers buffers
    cdef Sums sums = sums_for(grad_weight is not None, parts.count, cols, cols * itemsize, nt)
    cdef Pointer pg = data(grad_out), px = data(x), pr = data(rstd), pw = data(weight)
    cdef Pointer pgx = data(grad_x), pgw = data(grad_weight)
    cdef bint f64 = is_double(x)
    buffers.memory = NULL
    try:
        buffers = row_buffers(rows, cols, itemsize, nt)
        with nogil:
            if f64:
                rms_norm_backward_rows(<const double*>pg, <const double*>px,
                                       <const double*>pr, <const double*>pw, <double*>pgx,
                                       sums.parts, <double*>sums.blocks, &parts, 0,
                                       parts.count, cols, &buffers, nt, 0)
            else:
                rms_norm_backward_rows(<const float*>pg, <const float*>px, <const float*>pr,
                                       <const float*>pw, <float*>pgx, sums.parts,
                                       <float*>sums.blocks, &parts, 0, parts.count, cols,
                                       &buffers, nt, 0)
            if sums.parts != NULL:
                add_parts(&sums)
                store(pgw, f64, sums.total, cols)
    finally:
        free_sums(&sums)
        free(buffers.memory)


cdef void rms_norm_backward_rows(const floating* g, const floating* x, const floating* rstd,
                                 const floating* weight, floating* grad_x, double* part_sums,
                                 floating* blocks, const Parts* parts, Py_ssize_t first,
                                 Py_ssize_t end, Py_ssize_t n, const RowBuffers* buffers,
                                 int n_threads, int thread) noexcept nogil:
    """RMSNorm backward of the rows of parts [first, end): grad_x, and each part's dγ sums
    (n of them) into part_sums (NULL when not wanted).

    Scalar math, per row (x̂ = x·rstd, ĝ = g·weight; weight NULL: ĝ = g):
        mean_gw_xhat = Σ ĝ[i]·x̂[i] / n
        grad_x[i]    = rstd · (ĝ[i] − x̂[i]·mean_gw_xhat)
                               term 1  term 2
        dγ[i] += g[i]·x̂[i]                                    (summed over the rows)

    Why it is fast: as layer_norm_backward_rows (one double reduction, the second pass from
    cache, dγ through block sums, streamed grad_x), without the mean's terms.
    Reference: mlkernels/reference/norm.py, rms_norm_backward.
    """
    cdef Py_ssize_t t, k, r, block_end, part_end
    cdef floating* out
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    cdef floating* block_gw = blocks + thread * n if part_sums != NULL else NULL
    if n_threads > 1:           # each thread: a contiguous share of the parts, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            rms_norm_backward_rows(g, x, rstd, weight, grad_x, part_sums, blocks, parts,
                                   first + (end - first) * t // n_threads,
                                   first + (end - first) * (t + 1) // n_threads, n, buffers,
                                   1, t)
        return
    for k in range(first, end):
        r = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        while r < part_end:
            block_end = min(r + ROWS_PER_BLOCK, part_end)
            while r < block_end:
                out = buffer if buffer != NULL else grad_x + r * n
                rms_norm_backward_row(g + r * n, x + r * n, weight, out, n, rstd[r], block_gw)
                if buffer != NULL:
                    stream_out(grad_x + r * n, buffer, n)
                r += 1
            if block_gw != NULL:
                flush_block(block_gw, part_sums + k * n, n)
    if buffer != NULL:
        mlk_stream_fence()


cdef void rms_norm_backward_row(const floating* gr, const floating* xr, const floating* weight,
                                floating* out, Py_ssize_t n, floating r_f,
                                floating* block_gw) noexcept nogil:
    """One row of rms_norm_backward_rows: grad_x into out, g·x̂ added into block_gw (NULL:
    not wanted). Not inline, as layer_norm_backward_row."""
    cdef Py_ssize_t i
    cdef double sum_gw, sum_gw_x, rs = r_f
    cdef floating mean_gw_xhat, xhat
    grad_sums(gr, weight, xr, n, 0, &sum_gw, &sum_gw_x)             # pass 1
    mean_gw_xhat = <floating>(sum_gw_x * rs / n)
    if block_gw != NULL:        # pass 2: dγ ...
        for i in range(n):  # simd
            block_gw[i] += gr[i] * (xr[i] * r_f)
    if weight != NULL:          # ... and grad_x
        for i in range(n):  # simd
            xhat = xr[i] * r_f
            out[i] = r_f * (gr[i] * weight[i] - xhat * mean_gw_xhat)
    else:
        for i in range(n):  # simd
            xhat = xr[i] * r_f
            out[i] = r_f * (gr[i] - xhat * mean_gw_xhat)


# ================================================================================ GroupNorm
# x is seen as (N, C, S): S = the product of the spatial dims. Row r = (sample r // G,
# group r % G) holds the group's Cg = C / G channels of S values each.

def group_norm(cnp.ndarray x, weight, bias, cnp.ndarray y, cnp.ndarray mean,
               cnp.ndarray rstd, Py_ssize_t N, Py_ssize_t C, Py_ssize_t G, Py_ssize_t S,
               double eps):
    """y, mean, rstd of mlkernels.norm.group_norm: x and y (N, C, S), weight and bias (C,) or
    None, mean and rstd (N, G), all validated C-contiguous arrays of one type."""
    cdef Py_ssize_t rows = N * G, Cg = C // G if G else 0
    cdef int nt = threads_for(rows * Cg * S, rows)
    cdef RowBuffers buffers = row_buffers(rows, Cg * S, cnp.PyArray_ITEMSIZE(x), nt)
    cdef Pointer px = data(x), pw = data(weight), pb = data(bias)
    cdef Pointer py = data(y), pm = data(mean), pr = data(rstd)
    cdef bint f64 = is_double(x)
    try:
        with nogil:
            if S == 1 and f64:              # one value per channel: LayerNorm's loops
                layer_norm_rows(<const double*>px, <const double*>pw, <const double*>pb,
                                <double*>py, <double*>pm, <double*>pr, 0, rows, Cg, G, eps,
                                &buffers, nt, 0)
            elif S == 1:
                layer_norm_rows(<const float*>px, <const float*>pw, <const float*>pb,
                                <float*>py, <float*>pm, <float*>pr, 0, rows, Cg, G, eps,
                                &buffers, nt, 0)
            elif f64:
                group_norm_rows(<const double*>px, <const double*>pw, <const double*>pb,
                                <double*>py, <double*>pm, <double*>pr, 0, rows, G, Cg, S, eps,
                                &buffers, nt, 0)
            else:
                group_norm_rows(<const float*>px, <const float*>pw, <const float*>pb,
                                <float*>py, <float*>pm, <float*>pr, 0, rows, G, Cg, S, eps,
                                &buffers, nt, 0)
    finally:
        free(buffers.memory)


cdef void group_norm_rows(const floating* x, const floating* weight, const floating* bias,
                          floating* y, floating* mean, floating* rstd, Py_ssize_t first,
                          Py_ssize_t end, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S,
                          double eps, const RowBuffers* buffers, int n_threads,
                          int thread) noexcept nogil:
    """GroupNorm forward of rows [first, end): a row is one sample's group of Cg channels of
    S values, channel c = (r % G)·Cg + j.

    Scalar math, per row (n = Cg·S; weight and bias may be NULL: 1 and 0):
        mean       = Σ x / n,  var = Σ (x − mean)² / n,  rstd = 1 / √(var + eps)
        y[j, s]    = (x[j, s] − mean) · rstd · weight[c] + bias[c]

    Why it is fast: as layer_norm_rows (the row read from memory once, two-pass double
    statistics from cache, the mean as a pair of floats, streamed output); the affine
    parameters are scalars for each run of S values.
    Reference: mlkernels/reference/norm.py, group_norm.
    """
    cdef Py_ssize_t n = Cg * S, t, r, j, s
    cdef double mu, var, rs
    cdef floating mean_hi, mean_lo, r_f, scale, shift
    cdef const floating* xr
    cdef floating* out
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    if n_threads > 1:           # each thread: a contiguous share of the rows, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            group_norm_rows(x, weight, bias, y, mean, rstd,
                            first + (end - first) * t // n_threads,
                            first + (end - first) * (t + 1) // n_threads,
                            G, Cg, S, eps, buffers, 1, t)
        return
    for r in range(first, end):
        xr = x + r * n
        out = buffer if buffer != NULL else y + r * n
        mu = sum_of(xr, n) / n if n else 0
        var = sum_sq_centered(xr, n, mu) / n if n else NAN     # second pass, cache-hot
        rs = 1 / sqrt(var + eps)
        mean[r] = <floating>mu
        rstd[r] = <floating>rs
        mean_hi = <floating>mu
        mean_lo = <floating>(mu - mean_hi)
        r_f = <floating>rs
        for j in range(Cg):
            scale = weight[(r % G) * Cg + j] if weight != NULL else 1
            shift = bias[(r % G) * Cg + j] if bias != NULL else 0
            for s in range(j * S, j * S + S):  # simd
                out[s] = ((xr[s] - mean_hi) - mean_lo) * r_f * scale + shift
        if buffer != NULL:
            stream_out(y + r * n, buffer, n)
    if buffer != NULL:
        mlk_stream_fence()


def group_norm_backward(cnp.ndarray grad_out, cnp.ndarray x, cnp.ndarray mean,
                        cnp.ndarray rstd, weight, cnp.ndarray grad_x, grad_weight, grad_bias,
                        Py_ssize_t N, Py_ssize_t C, Py_ssize_t G, Py_ssize_t S):
    """grad_x, grad_weight, grad_bias of mlkernels.norm.group_norm_backward: grad_out, x and
    grad_x (N, C, S); mean and rstd (N, G) as the forward returned them; weight, grad_weight
    and grad_bias (C,) or None; validated C-contiguous arrays of one type."""
    cdef Py_ssize_t rows = N * G, Cg = C // G if G else 0
    if S == 1:          # one value per channel: LayerNorm's loops, rows cycling through groups
        return layer_norm_backward(grad_out, x, mean, rstd, weight, grad_x, grad_weight,
                                   grad_bias, rows, Cg, G)
    cdef Parts parts = parts_of(rows, Cg * S, 1)
    cdef int nt = threads_for(rows * Cg * S, parts.count)
    cdef RowBuffers buffers
    # per part [dγ C | dβ C] (no block sums: a channel's S values are summed in one go)
    cdef Sums sums = sums_for(grad_weight is not None or grad_bias is not None, parts.count,
                              2 * C, 0, nt)
    cdef Pointer pg = data(grad_out), px = data(x), pm = data(mean), pr = data(rstd)
    cdef Pointer pw = data(weight), pgx = data(grad_x)
    cdef Pointer pgw = data(grad_weight), pgb = data(grad_bias)
    cdef bint f64 = is_double(x)
    buffers.memory = NULL
    try:
        buffers = row_buffers(rows, Cg * S, cnp.PyArray_ITEMSIZE(x), nt)
        with nogil:
            if f64:
                group_norm_backward_rows(<const double*>pg, <const double*>px,
                                         <const double*>pm, <const double*>pr,
                                         <const double*>pw, <double*>pgx, sums.parts, &parts,
                                         0, parts.count, G, Cg, S, &buffers, nt, 0)
            else:
                group_norm_backward_rows(<const float*>pg, <const float*>px,
                                         <const float*>pm, <const float*>pr,
                                         <const float*>pw, <float*>pgx, sums.parts, &parts,
                                         0, parts.count, G, Cg, S, &buffers, nt, 0)
            if sums.parts != NULL:
                add_parts(&sums)
                store(pgw, f64, sums.total, C)
                store(pgb, f64, sums.total + C, C)
    finally:
        free_sums(&sums)
        free(buffers.memory)


cdef void group_norm_backward_rows(const floating* g, const floating* x,
                                   const floating* mean, const floating* rstd,
                                   const floating* weight, floating* grad_x,
                                   double* part_sums, const Parts* parts, Py_ssize_t first,
                                   Py_ssize_t end, Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S,
                                   const RowBuffers* buffers, int n_threads,
                                   int thread) noexcept nogil:
    """GroupNorm backward (S > 1 values per channel) of the rows of parts [first, end):
    grad_x, and each part's per-channel dγ and dβ into part_sums (NULL: not wanted).

    Scalar math, per row (channels c = (r % G)·Cg + j of S values; x̂ = (x − mean)·rstd;
    n = Cg·S; weight NULL: 1):
        sum_g[j]          = Σ_s g[j, s]
        sum_g_centered[j] = Σ_s g[j, s]·(x[j, s] − mean)
        mean_gw           = Σ_j weight[c]·sum_g[j] / n
        mean_gw_xhat      = Σ_j weight[c]·sum_g_centered[j]·rstd / n
        grad_x[j, s]      = rstd · (g[j, s]·weight[c] − mean_gw − x̂[j, s]·mean_gw_xhat)
                                    term 1              term 2    term 3
        dγ[c] += sum_g_centered[j]·rstd,  dβ[c] += sum_g[j]

    Why it is fast: the per-channel sums of pass 1 are at once the means' terms and dγ, dβ
    (one lane-parallel double reduction per run of S values); pass 2 reads the row from
    cache; a large grad_x is streamed out row by row.
    Reference: mlkernels/reference/norm.py, group_norm_backward.
    """
    cdef Py_ssize_t n = Cg * S, C = G * Cg, t, k, r, segment
    cdef floating* out
    cdef double* sums
    cdef floating* buffer = <floating*>row_buffer(buffers, thread)
    if n_threads > 1:           # each thread: a contiguous share of the parts, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            group_norm_backward_rows(g, x, mean, rstd, weight, grad_x, part_sums, parts,
                                     first + (end - first) * t // n_threads,
                                     first + (end - first) * (t + 1) // n_threads,
                                     G, Cg, S, buffers, 1, t)
        return
    for k in range(first, end):
        sums = part_sums + k * 2 * C if part_sums != NULL else NULL
        for r in range(part_start(parts, k), part_start(parts, k + 1)):
            out = buffer if buffer != NULL else grad_x + r * n
            segment = (r % G) * Cg                      # the group's first channel
            group_norm_backward_row(g + r * n, x + r * n,
                                    weight + segment if weight != NULL else NULL, out, Cg, S,
                                    mean[r], rstd[r], sums + segment if sums != NULL else NULL,
                                    sums + C + segment if sums != NULL else NULL)
            if buffer != NULL:
                stream_out(grad_x + r * n, buffer, n)
    if buffer != NULL:
        mlk_stream_fence()


cdef void group_norm_backward_row(const floating* gr, const floating* xr, const floating* w,
                                  floating* out, Py_ssize_t Cg, Py_ssize_t S, floating mean_f,
                                  floating r_f, double* sums_gw, double* sums_gb) noexcept nogil:
    """One row of group_norm_backward_rows: grad_x into out; w the group's Cg weights (NULL:
    1); each channel's g·x̂ and g added into sums_gw and sums_gb (NULL: not wanted). Not
    inline, as layer_norm_backward_row: the float32 and 16-bit kernels run the same machine
    code (with a copy inlined into each, a row of NaN grad_x came out +NaN from one and
    −NaN from the other)."""
    cdef Py_ssize_t n = Cg * S, j, s
    cdef double sum_g, sum_g_centered, sum_gw = 0, sum_gw_centered = 0, wj, rs = r_f
    cdef floating mean_gw, mean_gw_xhat, w_f, xhat
    for j in range(Cg):                                                          # pass 1
        grad_sums(gr + j * S, <const floating*>NULL, xr + j * S, S, mean_f, &sum_g,
                  &sum_g_centered)
        wj = w[j] if w != NULL else 1
        sum_gw += wj * sum_g
        sum_gw_centered += wj * sum_g_centered
        if sums_gw != NULL:
            sums_gw[j] += sum_g_centered * rs
            sums_gb[j] += sum_g
    mean_gw = <floating>(sum_gw / n)
    mean_gw_xhat = <floating>(sum_gw_centered * rs / n)
    for j in range(Cg):                                                          # pass 2
        w_f = w[j] if w != NULL else 1
        for s in range(j * S, j * S + S):  # simd
            xhat = (xr[s] - mean_f) * r_f
            out[s] = r_f * (gr[s] * w_f - mean_gw - xhat * mean_gw_xhat)


# ================================================================================ BatchNorm
# x is seen as (N, C, S): N samples, C channels, S = the product of the spatial dims. Both
# directions make two passes over memory: per-channel sums (statistics, or the gradient's
# sums), then one elementwise pass, batch_norm_affine, with everything per channel folded into
# four coefficients.

cdef enum:
    FEW_SAMPLES = 4     # fewer samples (with S > 1): statistics channel by channel


def batch_norm(cnp.ndarray x, running_mean, running_var, weight, bias, cnp.ndarray y,
               cnp.ndarray save_mean, cnp.ndarray save_rstd, Py_ssize_t N, Py_ssize_t C,
               Py_ssize_t S, bint training, double factor, double eps):
    """y, save_mean, save_rstd of mlkernels.norm.batch_norm, and in training the running
    statistics updated in place: x and y (N, C, S); the rest (C,) or None; validated
    C-contiguous arrays of one type. `factor` is the running statistics' momentum."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x), total = N * C * S
    cdef bint by_channel = S > 1 and N < FEW_SAMPLES
    cdef Parts parts = parts_of(N, C * S, ROWS_PER_BLOCK if S == 1 else 1)
    cdef int nt_sums = threads_for(total, C if by_channel else parts.count)
    cdef int nt = threads_for(total, total // TILE_MAX + 1)
    cdef bint f64 = is_double(x), stream = total * itemsize >= stream_from()
    # per part [Σd C | Σd² C] (by channel: one part); per thread, S = 1: the block sums
    cdef Sums sums = sums_for(True, 1 if by_channel else parts.count, 2 * C,
                              2 * C * itemsize if training and S == 1 else 0, nt_sums)
    # per channel, in the array's type: [mean_hi | a | b | c] of batch_norm_affine
    cdef void* coef = NULL
    cdef Pointer px = data(x), py = data(y), pw = data(weight), pb = data(bias)
    cdef Pointer prm = data(running_mean), prv = data(running_var)
    cdef Pointer psm = data(save_mean), psr = data(save_rstd)
    try:
        coef = scratch(4 * C * itemsize)
        with nogil:
            if training and total and f64:              # pass 1: the statistics' sums
                batch_norm_stats(<const double*>px, N, C, S, by_channel, sums.parts,
                                 <double*>sums.blocks, &parts, 0,
                                 C if by_channel else parts.count, nt_sums, 0)
            elif training and total:
                batch_norm_stats(<const float*>px, N, C, S, by_channel, sums.parts,
                                 <float*>sums.blocks, &parts, 0,
                                 C if by_channel else parts.count, nt_sums, 0)
            add_parts(&sums)
            if f64:                                     # per channel: what pass 2 needs
                batch_norm_forward_channels(<const double*>px, S, N, C, S, sums.total, training,
                                            <double*>prm, <double*>prv, <const double*>pw,
                                            <const double*>pb, factor, eps, <double*>psm,
                                            <double*>psr, <double*>coef)
            else:
                batch_norm_forward_channels(<const float*>px, S, N, C, S, sums.total, training,
                                            <float*>prm, <float*>prv, <const float*>pw,
                                            <const float*>pb, factor, eps, <float*>psm,
                                            <float*>psr, <float*>coef)
            if total and f64:                           # pass 2: y
                batch_norm_affine(<const double*>NULL, <const double*>px, <double*>coef,
                                  <double*>py, C, S, 0, total, stream, nt, 0)
            elif total:
                batch_norm_affine(<const float*>NULL, <const float*>px, <float*>coef,
                                  <float*>py, C, S, 0, total, stream, nt, 0)
    finally:
        free_sums(&sums)
        free(coef)


cdef void batch_norm_stats(const floating* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                           bint by_channel, double* part_sums, floating* blocks,
                           const Parts* parts, Py_ssize_t first, Py_ssize_t end,
                           int n_threads, int thread) noexcept nogil:
    """BatchNorm's statistics, as shifted sums per channel: for the channels [first, end)
    (by_channel) or the parts [first, end) of the samples, into part_sums [Σd C | Σd² C] per
    part (by_channel: part 0 only).

    Scalar math, per channel c (K[c] = x[0, c, 0], a value of the channel):
        Σd[c]  += x[n, c, s] − K[c]            over every sample n and position s
        Σd²[c] += (x[n, c, s] − K[c])²
    (batch_norm_forward_channels turns them into the mean and the biased variance.)

    Why it is fast: the sums of values shifted by one of their own stay small for data far
    from 0 (no E[x²] − E[x]² cancellation), in one pass, in double. The samples are walked in
    memory order (a channel's runs lie C·S values apart; walked channel by channel the
    prefetcher does poorly), except with few samples, where channels are the only work to
    share out. With S > 1, each run of S values is one lane-parallel double reduction
    (centered_sums); with one value per channel (S = 1) four samples at a time are added in
    registers into block sums of the array's type (add4_centered_sums, with K exact in that
    type), which join the part's double sums once a block.
    Reference: mlkernels/reference/norm.py, batch_norm.
    """
    cdef Py_ssize_t t, k, n, c, block_end, part_end, sample
    cdef double d1, d2, t1, t2
    cdef double* sums
    cdef floating* block = blocks + thread * 2 * C if S == 1 else NULL
    cdef floating d
    if n_threads > 1:       # each thread: a contiguous share of the channels or parts
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            batch_norm_stats(x, N, C, S, by_channel, part_sums, blocks, parts,
                             first + (end - first) * t // n_threads,
                             first + (end - first) * (t + 1) // n_threads, 1, t)
        return
    if by_channel:
        for c in range(first, end):
            t1 = 0
            t2 = 0
            for n in range(N):
                centered_sums(x + (n * C + c) * S, S, x[c * S], &d1, &d2)
                t1 += d1
                t2 += d2
            part_sums[c] = t1
            part_sums[C + c] = t2
        return
    for k in range(first, end):
        sums = part_sums + k * 2 * C
        n = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        if S > 1:
            for sample in range(n, part_end):
                for c in range(C):
                    centered_sums(x + (sample * C + c) * S, S, x[c * S], &d1, &d2)
                    sums[c] += d1
                    sums[C + c] += d2
            continue
        while n < part_end:                 # S = 1: blocks of ROWS_PER_BLOCK samples
            block_end = min(n + ROWS_PER_BLOCK, part_end)
            while n + 4 <= block_end:
                add4_centered_sums(x + n * C, C, x, block, block + C)
                n += 4
            while n < block_end:
                for c in range(C):  # simd
                    d = x[n * C + c] - x[c]
                    block[c] += d
                    block[C + c] += d * d
                n += 1
            flush_block(block, sums, 2 * C)


cdef void batch_norm_forward_channels(const floating* k, Py_ssize_t k_stride,
                                      Py_ssize_t N, Py_ssize_t C,
                                      Py_ssize_t S, const double* sums, bint training,
                                      floating* running_mean, floating* running_var,
                                      const floating* weight, const floating* bias,
                                      double factor, double eps, floating* save_mean,
                                      floating* save_rstd, floating* coef) noexcept nogil:
    """Per channel c: the statistics, the running statistics' update, and the coefficients of
    pass 2 (weight, bias, running_*: NULL when not given). K[c] = k[c·k_stride], the value
    batch_norm_stats shifted channel c by (x[0, c, 0]: x and S, or a widened copy and 1).

    Scalar math (count = N·S; f = factor, the momentum):
        training: mean = K[c] + Σd/count,  var = Σd²/count − (Σd/count)²  (≥ 0)
                  running_mean = (1 − f)·running_mean + f·mean
                  running_var  = (1 − f)·running_var + f·var·count/(count − 1)   (unbiased)
        eval:     mean, var = running_mean, running_var
        rstd = 1/√(var + eps),  scale = rstd·weight,  shift = bias
        y = (x − mean)·scale + shift:  coefficients [mean_hi | 0 | scale | shift − scale·mean_lo]

    rstd and γ folded into one scale make pass 2 one multiply-add per element; the mean is
    a pair hi + lo of the array's type, its low half folded into the constant (in double).
    Reference: mlkernels/reference/norm.py, batch_norm.
    """
    cdef Py_ssize_t c
    cdef double count = N * S, mean, var, rstd, scale, shift
    cdef floating mean_hi
    for c in range(C):
        if training:
            mean = sums[c] / count
            var = sums[C + c] / count - mean * mean
            mean = mean + k[c * k_stride]
            if var < 0:                     # rounding of the shifted sums: clamp at 0
                var = 0
            if running_mean != NULL:        # as torch, in the array's type
                running_mean[c] = running_mean[c] * <floating>(1 - factor)
                running_mean[c] = running_mean[c] + <floating>(factor * mean)
                running_var[c] = running_var[c] * <floating>(1 - factor)
                running_var[c] = running_var[c] + <floating>(factor * var * count / (count - 1))
        else:
            mean = running_mean[c]
            var = running_var[c]
        rstd = 1 / sqrt(var + eps)
        scale = rstd * weight[c] if weight != NULL else rstd
        shift = bias[c] if bias != NULL else 0
        save_mean[c] = <floating>mean
        save_rstd[c] = <floating>rstd
        mean_hi = <floating>mean
        coef[c] = mean_hi
        coef[C + c] = 0
        coef[2 * C + c] = <floating>scale
        coef[3 * C + c] = <floating>(shift - scale * (mean - <double>mean_hi))


def batch_norm_backward(cnp.ndarray grad_out, cnp.ndarray x, cnp.ndarray save_mean,
                        cnp.ndarray save_rstd, weight, cnp.ndarray grad_x, grad_weight,
                        grad_bias, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, bint training):
    """grad_x, grad_weight, grad_bias of mlkernels.norm.batch_norm_backward: grad_out, x and
    grad_x (N, C, S); save_mean, save_rstd as the forward returned them, weight, grad_weight
    and grad_bias (C,) or None; validated C-contiguous arrays of one type."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x), total = N * C * S
    cdef bint need_sums = training or grad_weight is not None or grad_bias is not None
    cdef Parts parts = parts_of(N, C * S, ROWS_PER_BLOCK if S == 1 else 1)
    cdef int nt_sums = threads_for(total, parts.count)
    cdef int nt = threads_for(total, total // TILE_MAX + 1)
    cdef bint f64 = is_double(x), stream = total * itemsize >= stream_from()
    # per part [Σg C | Σg·(x − mean) C]; per thread, S = 1: the block sums
    cdef Sums sums = sums_for(True, parts.count, 2 * C,
                              2 * C * itemsize if need_sums and S == 1 else 0, nt_sums)
    # per channel, in the array's type: [mean | a | b | c] of batch_norm_affine
    cdef void* coef = NULL
    cdef Pointer pg = data(grad_out), px = data(x), pm = data(save_mean), pgx = data(grad_x)
    cdef Pointer pr = data(save_rstd), pw = data(weight)
    cdef Pointer pgw = data(grad_weight), pgb = data(grad_bias)
    try:
        coef = scratch(4 * C * itemsize)
        with nogil:
            if need_sums and total and f64:             # pass 1: Σg, Σg·(x − mean)
                batch_norm_grad_sums(<const double*>pg, <const double*>px, <const double*>pm,
                                     C, S, sums.parts, <double*>sums.blocks, &parts, 0,
                                     parts.count, nt_sums, 0)
            elif need_sums and total:
                batch_norm_grad_sums(<const float*>pg, <const float*>px, <const float*>pm,
                                     C, S, sums.parts, <float*>sums.blocks, &parts, 0,
                                     parts.count, nt_sums, 0)
            add_parts(&sums)
            if f64:                                     # per channel: what pass 2 needs
                batch_norm_backward_channels(<const double*>pm, <const double*>pr,
                                             <const double*>pw, C, N * S, sums.total, training,
                                             <double*>pgw, <double*>pgb, <double*>coef)
            else:
                batch_norm_backward_channels(<const float*>pm, <const float*>pr,
                                             <const float*>pw, C, N * S, sums.total, training,
                                             <float*>pgw, <float*>pgb, <float*>coef)
            if total and f64:                           # pass 2: grad_x
                batch_norm_affine(<const double*>pg, <const double*>px, <double*>coef,
                                  <double*>pgx, C, S, 0, total, stream, nt, 0)
            elif total:
                batch_norm_affine(<const float*>pg, <const float*>px, <float*>coef,
                                  <float*>pgx, C, S, 0, total, stream, nt, 0)
    finally:
        free_sums(&sums)
        free(coef)


cdef void batch_norm_grad_sums(const floating* g, const floating* x, const floating* mean,
                               Py_ssize_t C, Py_ssize_t S, double* part_sums,
                               floating* blocks, const Parts* parts, Py_ssize_t first,
                               Py_ssize_t end, int n_threads, int thread) noexcept nogil:
    """BatchNorm backward's pass 1: per channel Σg and Σg·(x − mean) over the samples of parts
    [first, end), into part_sums [Σg C | Σg·(x − mean) C] per part.

    Scalar math, per channel c:
        sum_g[c]          += g[n, c, s]                    over every sample n and position s
        sum_g_centered[c] += g[n, c, s]·(x[n, c, s] − mean[c])

    Why it is fast: as batch_norm_stats -- samples in memory order; S > 1: one lane-parallel
    double reduction per run (grad_sums); S = 1: four samples at a time in registers into
    block sums of the array's type (add4_grad_sums), joined into the part's double sums once
    a block. The mean is the forward's, in the array's type: x − mean is formed exactly as the
    reference does.
    Reference: mlkernels/reference/norm.py, batch_norm_backward.
    """
    cdef Py_ssize_t t, k, n, c, i, block_end, part_end, sample
    cdef double tg, tgx
    cdef double* sums
    cdef floating* block = blocks + thread * 2 * C if S == 1 else NULL
    if n_threads > 1:       # each thread: a contiguous share of the parts, on one thread
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            batch_norm_grad_sums(g, x, mean, C, S, part_sums, blocks, parts,
                                 first + (end - first) * t // n_threads,
                                 first + (end - first) * (t + 1) // n_threads, 1, t)
        return
    for k in range(first, end):
        sums = part_sums + k * 2 * C
        n = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        if S > 1:
            for sample in range(n, part_end):
                for c in range(C):
                    i = (sample * C + c) * S
                    grad_sums(g + i, <const floating*>NULL, x + i, S, mean[c], &tg, &tgx)
                    sums[c] += tg
                    sums[C + c] += tgx
            continue
        while n < part_end:                 # S = 1: blocks of ROWS_PER_BLOCK samples
            block_end = min(n + ROWS_PER_BLOCK, part_end)
            while n + 4 <= block_end:
                add4_grad_sums(g + n * C, x + n * C, C, mean, block, block + C)
                n += 4
            while n < block_end:
                i = n * C
                for c in range(C):  # simd
                    block[c] += g[i + c]
                    block[C + c] += g[i + c] * (x[i + c] - mean[c])
                n += 1
            flush_block(block, sums, 2 * C)


cdef void batch_norm_backward_channels(const floating* mean, const floating* rstd,
                                       const floating* weight, Py_ssize_t C, Py_ssize_t count,
                                       const double* sums, bint training,
                                       floating* grad_weight, floating* grad_bias,
                                       floating* coef) noexcept nogil:
    """Per channel c: dγ, dβ and the coefficients of pass 2 (weight, grad_*: NULL when not
    given), from pass 1's sums [Σg C | Σg·(x − mean) C].

    Scalar math (γ = weight[c] or 1, x̂ = (x − mean)·rstd, means over the count = N·S values):
        training: grad_x = γ·rstd·(g − mean(g) − x̂·mean(g·x̂))
                         = a·g + b·(x − mean) + c  with  a = γ·rstd,
                           b = −γ·rstd³·Σg·(x − mean)/count,  c = −γ·rstd·Σg/count
        eval:     grad_x = γ·rstd·g                (the statistics are constants): b = c = 0
        dγ = rstd·Σg·(x − mean),  dβ = Σg
    Reference: mlkernels/reference/norm.py, batch_norm_backward.
    """
    cdef Py_ssize_t ch
    cdef double gamma, rs, a, b, c
    for ch in range(C):
        gamma = weight[ch] if weight != NULL else 1
        rs = rstd[ch]
        a = gamma * rs
        b = -gamma * rs * rs * rs * sums[C + ch] / count if training else 0
        c = -gamma * rs * sums[ch] / count if training else 0
        coef[ch] = mean[ch]
        coef[C + ch] = <floating>a
        coef[2 * C + ch] = <floating>b
        coef[3 * C + ch] = <floating>c
        if grad_weight != NULL:
            grad_weight[ch] = <floating>(rs * sums[C + ch])
        if grad_bias != NULL:
            grad_bias[ch] = <floating>sums[ch]


cdef void batch_norm_affine(const floating* g, const floating* x, const floating* coef,
                            floating* out, Py_ssize_t C, Py_ssize_t S, Py_ssize_t first,
                            Py_ssize_t end, bint stream, int n_threads,
                            Py_ssize_t origin) noexcept nogil:
    """BatchNorm's pass 2 (both directions), elements [first, end) of the flat (N, C, S) arrays:
    out = a·g + b·(x − mean_hi) + c per channel, coef = [mean_hi | a | b | c] (C each);
    g NULL for the forward (y = scale·(x − mean_hi) + shift'). The arrays' element 0 is
    element `origin` of the (N, C, S) array (0; the 16-bit kernel passes a widened block).

    Scalar math, per element i of channel ch = (i // S) % C:
        out[i] = a[ch]·g[i] + b[ch]·(x[i] − mean_hi[ch]) + c[ch]

    Why it is fast: everything per channel is folded into the four coefficients (forward:
    rstd·γ one scale; the mean's low half in c), so an element costs one or two multiply-adds
    and 3 (forward: 2) memory traffics. The arrays are one contiguous run split between the
    threads on TILE_BYTES boundaries of out (no cache line written by two threads); with
    `stream`, each tile is computed into an L1 buffer and streamed out (_stream.h), saving the
    read of out's lines. One loop per run of a channel (S > 1) or to the end of a row of C
    (S = 1, coefficient vectors).
    Reference: mlkernels/reference/norm.py, batch_norm and batch_norm_backward.
    """
    cdef const floating* mean_hi = coef
    cdef const floating* a = coef + C
    cdef const floating* b = coef + 2 * C
    cdef const floating* c = coef + 3 * C
    cdef Py_ssize_t t, p = first, ch = ((origin + first) // S) % C, s = (origin + first) % S
    cdef Py_ssize_t m, k, run, i
    cdef floating mh, fa, fb, fc
    cdef TileMemory tile
    cdef floating* buffer = tile_in(&tile, out)   # line-aligned, in L1
    cdef floating* dst
    cdef floating* o
    cdef const floating* xs
    cdef const floating* gs
    if n_threads > 1:       # each thread: a share of the elements, cut on tile boundaries
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            batch_norm_affine(g, x, coef, out, C, S, split_at(out, first, end, t, n_threads),
                              split_at(out, first, end, t + 1, n_threads), stream, 1, origin)
        return
    while p < end:
        m = tile_len(out + p, end - p) if stream else end - p
        dst = buffer if stream else out + p
        k = 0
        while k < m:
            o = dst + k
            xs = x + p + k
            gs = g + p + k if g != NULL else NULL
            if S == 1:                  # coefficients per element: to the end of the row
                run = min(m - k, C - ch)
                if gs != NULL:
                    for i in range(run):  # simd
                        o[i] = a[ch + i] * gs[i] + b[ch + i] * (xs[i] - mean_hi[ch + i]) + c[ch + i]
                else:
                    for i in range(run):  # simd
                        o[i] = b[ch + i] * (xs[i] - mean_hi[ch + i]) + c[ch + i]
                ch += run
            else:                       # one channel: to the end of its run of S values
                run = min(m - k, S - s)
                mh, fa, fb, fc = mean_hi[ch], a[ch], b[ch], c[ch]
                if gs != NULL:
                    for i in range(run):  # simd
                        o[i] = fa * gs[i] + fb * (xs[i] - mh) + fc
                else:
                    for i in range(run):  # simd
                        o[i] = fb * (xs[i] - mh) + fc
                s += run
                if s == S:
                    s = 0
                    ch += 1
            if ch == C:
                ch = 0
            k += run
        if stream:
            stream_out(out + p, buffer, m)
        p += m
    if stream:
        mlk_stream_fence()


cdef inline Py_ssize_t split_at(const floating* dst, Py_ssize_t first, Py_ssize_t end,
                                Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """Where share `part` of `parts` near-equal shares of dst[first:end] starts, moved up to a
    TILE_BYTES boundary of dst: no two threads write into one cache line."""
    cdef Py_ssize_t p = first + (end - first) * part // parts
    if first < p < end and <size_t>(dst + p) % TILE_BYTES != 0:
        p += tile_len(dst + p, end - p)
    return p


# ================================================================================ 16-bit storage

cdef enum:
    HALF_BLOCK = 4096          # float32 values a thread widens at once (16 KiB, in place: L1)
    NORM_LAYER = 0
    NORM_RMS = 1
    NORM_GROUP = 2             # rows of (sample, group): Cg = cols / S channels of S values


def half_norm(int norm, int kind, cnp.ndarray x, weight, bias, cnp.ndarray y, mean,
              cnp.ndarray rstd, Py_ssize_t rows, Py_ssize_t cols, double eps,
              Py_ssize_t groups=1, Py_ssize_t S=1):
    """LayerNorm (norm 0), RMSNorm (norm 1) or GroupNorm (norm 2) forward of 16-bit x into
    16-bit y (storage kind of _half.h: 1 bfloat16, 2 float16): a row is cols·S values (S = 1
    but for GroupNorm); weight and bias float32 (groups·cols,) or None, mean (None for
    RMSNorm) and rstd float32 (rows,), all validated C-contiguous (mlkernels/norm.py).
    GroupNorm: rows = N·groups of cols = C / groups channels of S values."""
    cdef Py_ssize_t n = cols * S                                    # values a row
    cdef int nt = threads_for(rows * n, rows)
    cdef Py_ssize_t block_rows = max(<Py_ssize_t>1, HALF_BLOCK // max(n, <Py_ssize_t>1))
    cdef Py_ssize_t per_thread = (block_rows * n + 15) // 16 * 16 + 16     # floats
    cdef float* work = <float*>scratch(nt * per_thread * sizeof(float) + 64)
    cdef float* aligned = <float*>((<size_t>work + 63) & ~(<size_t>63))
    cdef bint stream = rows * n * 2 >= stream_from()
    cdef const uint16_t* px = <const uint16_t*>data(x)
    cdef uint16_t* py = <uint16_t*>data(y)
    cdef const float* pw = <const float*>data(weight)
    cdef const float* pb = <const float*>data(bias)
    cdef float* pm = <float*>data(mean)
    cdef float* pr = <float*>data(rstd)
    cdef int t
    try:
        with nogil:
            if nt == 1:
                half_norm_rows(norm, kind, px, pw, pb, py, pm, pr, 0, rows, n, groups, cols,
                               S, eps, aligned, block_rows, stream)
            else:
                for t in prange(nt, num_threads=nt, schedule="static"):
                    half_norm_rows(norm, kind, px, pw, pb, py, pm, pr, rows * t // nt,
                                   rows * (t + 1) // nt, n, groups, cols, S, eps,
                                   aligned + t * per_thread, block_rows, stream)
    finally:
        free(work)


cdef void half_norm_rows(int norm, int kind, const uint16_t* x, const float* weight,
                         const float* bias, uint16_t* y, float* mean, float* rstd,
                         Py_ssize_t first, Py_ssize_t end, Py_ssize_t n, Py_ssize_t groups,
                         Py_ssize_t Cg, Py_ssize_t S, double eps, float* work,
                         Py_ssize_t block_rows, bint stream) noexcept nogil:
    """Rows [first, end) of a 16-bit x: the float32 kernel (layer_norm_rows, rms_norm_rows,
    group_norm_rows -- the same compiled code the float32 entry calls for that shape) on
    blocks of rows widened to float32, rounded once on store.

    Scalar math: y[r, i] = round16(norm_float32(widen(x[r, :]))[i]): the float32 kernel's
    result, rounded -- the same float32 operations on the same values, in the same order.
    Why it is fast: memory moves 2 bytes in and 2 out per value, half of float32's. A block
    (one row of up to HALF_BLOCK values, or as many short rows) is widened into a float32
    buffer that stays in L1; the float32 kernel normalizes it in place -- its run-time alias
    check lets exactly equal input and output take the vector loop -- and the block is
    rounded into y (streamed when y is large). A longer row (a GroupNorm group of
    Cg·S values, say) is widened whole into the thread's heap buffer, in L2 or beyond: its
    statistics need all of it before the first value of y. So the 16-bit kernel's arithmetic is the
    float32 kernel's plus a widening and a rounding pass over L1. It calls the float32
    kernel itself, not an inlined copy of its row code: in a row with NaNs of both signs,
    which NaN a sum returns depends on the operand order GCC picks per copy (a copy inlined
    here gave LayerNorm's mean +NaN where float32's was −NaN, baseline variant). (Widening inside the first sum's
    loop instead, and prefetching the next block, were measured and dropped:
    docs/kernels/bf16.md.)
    Reference: mlkernels/reference/norm.py (in float64).
    """
    cdef RowBuffers direct                  # the float32 kernel writes straight into work
    direct.stream, direct.memory, direct.first, direct.stride = False, NULL, NULL, 0
    cdef Py_ssize_t r0 = first, m, shift
    while r0 < end:
        # GroupNorm: row r uses the affine segment r % groups. A block starting mid-cycle
        # ends at the cycle's end, so its local rows 0, 1, ... take the segments from
        # shift = r0 % groups on, in order; a block starting at shift 0 may wrap.
        shift = r0 % groups
        m = min(block_rows, end - r0, groups - shift if shift else block_rows)
        mlk_widen(kind, x + r0 * n, work, m * n)
        if norm == NORM_GROUP and S > 1:   # in place, as below
            group_norm_rows(<const float*>work,
                            weight + shift * Cg if weight != NULL else NULL,
                            bias + shift * Cg if bias != NULL else NULL, work, mean + r0,
                            rstd + r0, 0, m, groups, Cg, S, eps, &direct, 1, 0)
        elif norm != NORM_RMS:      # in place: out[i] depends on x[i] and the row's sums
            layer_norm_rows(<const float*>work,
                            weight + shift * Cg if weight != NULL else NULL,
                            bias + shift * Cg if bias != NULL else NULL, work, mean + r0,
                            rstd + r0, 0, m, n, groups, eps, &direct, 1, 0)
        else:
            rms_norm_rows(<const float*>work, weight, work, rstd + r0, 0, m, n, eps, &direct,
                          1, 0)
        mlk_narrow_to(kind, work, y + r0 * n, m * n, stream)
        r0 += m
    if stream:
        mlk_stream_fence()


def half_norm_backward(int norm, int kind, cnp.ndarray grad_out, cnp.ndarray x, mean,
                       cnp.ndarray rstd, weight, cnp.ndarray grad_x, grad_weight, grad_bias,
                       Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t groups=1, Py_ssize_t S=1):
    """LayerNorm (norm 0), RMSNorm (norm 1) or GroupNorm (norm 2) backward of 16-bit grad_out
    and x into 16-bit grad_x (storage kind of _half.h): mean (None for RMSNorm) and rstd
    float32 (rows,) as the forward returned them; weight float32 (groups·cols,) or None;
    grad_weight and grad_bias float32 (groups·cols,) or None; all validated C-contiguous
    (mlkernels/norm.py). A row is cols·S values (S = 1 but for GroupNorm: rows = N·groups of
    cols = C / groups channels of S values); the float32 entry's parts and sums
    (group_norm_backward's; layer_norm_backward's when S == 1)."""
    cdef Py_ssize_t n = cols * S, C = groups * cols                 # values a row; channels
    cdef bint by_channel = norm == NORM_GROUP and S != 1       # group_norm_backward_rows
    cdef Parts parts = parts_of(rows, n, 1 if by_channel else ROWS_PER_BLOCK)
    cdef int nt = threads_for(rows * n, parts.count), t
    cdef Py_ssize_t width = (1 if norm == NORM_RMS else 2) * C
    cdef Sums sums = sums_for(grad_weight is not None or grad_bias is not None, parts.count,
                              width, 0 if by_channel else width * sizeof(float), nt)
    cdef Py_ssize_t per_thread = 3 * ((n + 15) // 16 * 16) + 16     # floats: g, x, grad_x
    cdef float* work = NULL
    cdef float* aligned
    cdef bint stream = rows * n * 2 >= stream_from()
    cdef const uint16_t* pg = <const uint16_t*>data(grad_out)
    cdef const uint16_t* px = <const uint16_t*>data(x)
    cdef uint16_t* pgx = <uint16_t*>data(grad_x)
    cdef const float* pm = <const float*>data(mean)
    cdef const float* pr = <const float*>data(rstd)
    cdef const float* pw = <const float*>data(weight)
    cdef Pointer pgw = data(grad_weight), pgb = data(grad_bias)
    try:
        work = <float*>scratch(nt * per_thread * sizeof(float) + 64)
        aligned = <float*>((<size_t>work + 63) & ~(<size_t>63))
        with nogil:
            if nt == 1:
                half_norm_backward_rows(norm, kind, pg, px, pm, pr, pw, pgx, sums.parts,
                                        <float*>sums.blocks, &parts, 0, parts.count, n,
                                        groups, cols, S, aligned, stream, 0)
            else:
                for t in prange(nt, num_threads=nt, schedule="static"):
                    half_norm_backward_rows(norm, kind, pg, px, pm, pr, pw, pgx, sums.parts,
                                            <float*>sums.blocks, &parts,
                                            parts.count * t // nt, parts.count * (t + 1) // nt,
                                            n, groups, cols, S, aligned + t * per_thread,
                                            stream, t)
            if sums.parts != NULL:
                add_parts(&sums)
                store(pgw, False, sums.total, C)
                if norm != NORM_RMS:
                    store(pgb, False, sums.total + C, C)
    finally:
        free_sums(&sums)
        free(work)


cdef void half_norm_backward_rows(int norm, int kind, const uint16_t* g, const uint16_t* x,
                                  const float* mean, const float* rstd, const float* weight,
                                  uint16_t* grad_x, double* part_sums, float* blocks,
                                  const Parts* parts, Py_ssize_t first, Py_ssize_t end,
                                  Py_ssize_t n, Py_ssize_t groups, Py_ssize_t Cg, Py_ssize_t S,
                                  float* work, bint stream, int thread) noexcept nogil:
    """The rows of parts [first, end) of a 16-bit backward: the float32 kernel's row
    (layer_norm_backward_row, rms_norm_backward_row) on g and x widened to float32, grad_x
    rounded once on store; dγ (and dβ) in this thread's float32 block sums, joining each
    part's double sums once a block of ROWS_PER_BLOCK rows -- the float32 kernel's parts,
    blocks and order, so grad_weight and grad_bias equal the float32 kernel's bit for bit.
    GroupNorm with S > 1: group_norm_backward_row, adding straight into the part's double
    sums of the row's group as the float32 kernel does; with S == 1, LayerNorm's row, rows
    cycling through the groups' weight and block segments (as layer_norm_backward_rows).

    Scalar math: as layer_norm_backward_rows and rms_norm_backward_rows, on widen(g), widen(x).
    Why it is fast: 2 bytes read per value of g and of x and 2 written, in place of 4 each;
    a row's float32 copies stay in cache; grad_x is computed into a third row buffer, then
    rounded into grad_x (streamed when it is large). Not in place over the copy of g: the
    row function's run-time alias check would then take its scalar loop, whose NaN results
    can differ in sign from the vector loop's.
    Reference: mlkernels/reference/norm.py (in float64).
    """
    cdef Py_ssize_t k, r, block_end, part_end, shift, C = groups * Cg       # channels of dγ
    cdef Py_ssize_t width = (1 if norm == NORM_RMS else 2) * C
    cdef float* gs = work
    cdef float* xs = work + (n + 15) // 16 * 16
    cdef float* out = work + 2 * ((n + 15) // 16 * 16)
    cdef bint by_channel = norm == NORM_GROUP and S != 1
    cdef float* block = blocks + thread * width if part_sums != NULL and not by_channel \
        else NULL
    for k in range(first, end):
        r = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        while r < part_end:
            block_end = min(r + ROWS_PER_BLOCK, part_end)
            while r < block_end:
                mlk_widen(kind, g + r * n, gs, n)
                mlk_widen(kind, x + r * n, xs, n)
                shift = (r % groups) * Cg
                if by_channel:
                    group_norm_backward_row(<const float*>gs, <const float*>xs,
                                            weight + shift if weight != NULL else NULL, out,
                                            Cg, S, mean[r], rstd[r], part_sums + k * width +
                                            shift if part_sums != NULL else NULL, part_sums +
                                            k * width + C + shift if part_sums != NULL else NULL)
                elif norm != NORM_RMS:
                    layer_norm_backward_row(<const float*>gs, <const float*>xs,
                                            weight + shift if weight != NULL else NULL, out,
                                            n, mean[r], rstd[r],
                                            block + shift if block != NULL else NULL,
                                            block + C + shift if block != NULL else NULL)
                else:
                    rms_norm_backward_row(<const float*>gs, <const float*>xs, weight, out, n,
                                          rstd[r], block)
                mlk_narrow_to(kind, out, grad_x + r * n, n, stream)
                r += 1
            if block != NULL:
                flush_block(block, part_sums + k * width, width)
    if stream:
        mlk_stream_fence()


# -------------------------------------------------------------------- BatchNorm in 16 bits
# The float32 BatchNorm's two passes on 16-bit x (and grad_out): pass 1 widens runs of x into
# a per-thread float32 buffer and feeds them to the float32 kernel's own sum routines, in the
# float32 kernel's parts, blocks and order, so the sums -- hence save_mean, save_rstd, the
# running statistics, grad_weight and grad_bias -- are the float32 kernel's bit for bit; the
# per-channel step is the float32 function itself; pass 2 widens a block, runs the float32
# batch_norm_affine on it and rounds the block once into y (grad_x).

cdef enum:
    # floats of x widened at once by pass 1 (backward: of g and of x, half each) when the runs
    # are short: 8 KiB, less than the row norms' HALF_BLOCK -- pass 1's sums are quick, so the
    # next block's loads should not wait long (measured: docs/kernels/bf16.md)
    HALF_BN_BLOCK = 2048
    # values per block of pass 2 (x, g and the result: 4 KiB each); half that with S = 1, where
    # the four coefficient vectors (4·C floats) share L1 with the blocks (measured:
    # docs/kernels/bf16.md)
    HALF_AFFINE = 1024


ctypedef struct HalfAffineMemory:
    # pass 2's three float32 blocks on a thread's stack, with the slack to align them
    char bytes[3 * 4 * HALF_AFFINE + 64]


cdef Py_ssize_t half_bn_work_len(Py_ssize_t C, Py_ssize_t S, bint by_channel,
                                 Py_ssize_t base):
    """Floats of one widened buffer of pass 1 (a multiple of 16): a run of S values at least
    (S > 1; with few samples exactly one run), or 4 rows of C (S = 1: add4's four rows)."""
    cdef Py_ssize_t n = S if by_channel else max(S, base) if S > 1 else max(4 * C, base)
    return (max(n, <Py_ssize_t>1) + 15) // 16 * 16


def half_batch_norm(int kind, cnp.ndarray x, running_mean, running_var, weight, bias,
                    cnp.ndarray y, cnp.ndarray save_mean, cnp.ndarray save_rstd, Py_ssize_t N,
                    Py_ssize_t C, Py_ssize_t S, bint training, double factor, double eps):
    """batch_norm of a 16-bit x (storage kind of _half.h: 1 bfloat16, 2 float16) into a 16-bit
    y: x and y (N, C, S); weight, bias float32 (C,) or None (widened exactly from the storage
    dtype); running_mean, running_var float32 (C,) or None, updated in place in training;
    save_mean, save_rstd float32 (C,); all validated C-contiguous (mlkernels/norm.py). The
    same parts, thread counts and per-channel step as the float32 entry, batch_norm."""
    cdef Py_ssize_t total = N * C * S, c, work_len
    cdef bint by_channel = S > 1 and N < FEW_SAMPLES
    cdef Parts parts = parts_of(N, C * S, ROWS_PER_BLOCK if S == 1 else 1)
    cdef int nt_sums = threads_for(total, C if by_channel else parts.count)
    cdef int nt = threads_for(total, total // TILE_MAX + 1)
    cdef bint stream = total * 2 >= stream_from()
    cdef Sums sums = sums_for(True, 1 if by_channel else parts.count, 2 * C,
                              2 * C * sizeof(float) if training and S == 1 else 0, nt_sums)
    cdef float* coef = NULL         # [mean_hi | a | b | c] of batch_norm_affine
    cdef float* shift = NULL        # K[c] = x[0, c, 0], widened: what pass 1 shifts by
    cdef float* work = NULL
    cdef float* aligned = NULL
    cdef const uint16_t* px = <const uint16_t*>data(x)
    cdef uint16_t* py = <uint16_t*>data(y)
    cdef float* prm = <float*>data(running_mean)
    cdef float* prv = <float*>data(running_var)
    cdef const float* pw = <const float*>data(weight)
    cdef const float* pb = <const float*>data(bias)
    cdef float* psm = <float*>data(save_mean)
    cdef float* psr = <float*>data(save_rstd)
    work_len = half_bn_work_len(C, S, by_channel, HALF_BN_BLOCK)
    try:
        coef = <float*>scratch(4 * C * sizeof(float))
        shift = <float*>scratch(C * sizeof(float))
        if training and total:
            work = <float*>scratch(nt_sums * work_len * sizeof(float) + 64)
            aligned = <float*>((<size_t>work + 63) & ~(<size_t>63))
        with nogil:
            if training and total:
                for c in range(C):
                    mlk_widen(kind, px + c * S, shift + c, 1)
                half_batch_norm_stats(kind, px, shift, N, C, S, by_channel, sums.parts,
                                      <float*>sums.blocks, &parts, 0,
                                      C if by_channel else parts.count, aligned, work_len,
                                      nt_sums, 0)
            add_parts(&sums)
            batch_norm_forward_channels(<const float*>shift, 1, N, C, S, sums.total, training,
                                        prm, prv, pw, pb, factor, eps, psm, psr, coef)
            if total:
                half_batch_norm_affine(kind, NULL, px, coef, py, C, S, 0, total, stream, nt)
    finally:
        free_sums(&sums)
        free(coef)
        free(shift)
        free(work)


cdef void half_batch_norm_stats(int kind, const uint16_t* x, const float* shift, Py_ssize_t N,
                                Py_ssize_t C, Py_ssize_t S, bint by_channel,
                                double* part_sums, float* blocks, const Parts* parts,
                                Py_ssize_t first, Py_ssize_t end, float* work,
                                Py_ssize_t work_len, int n_threads, int thread) noexcept nogil:
    """batch_norm_stats on a 16-bit x: the same channels or parts [first, end), the same sums
    into part_sums [Σd C | Σd² C], on runs widened into this thread's buffer
    (work + thread·work_len floats); K[c] = shift[c], the widened x[0, c, 0].

    Scalar math: as batch_norm_stats, on widen(x): Σd[c] += widen(x[n, c, s]) − K[c],
    Σd²[c] += (widen(x[n, c, s]) − K[c])².
    Why it is fast: 2 bytes read from memory per value instead of 4. Runs of S values (as many
    whole runs as fit in HALF_BN_BLOCK floats: consecutive runs of a sample, and of the next
    samples, lie end to end) or rows of C (S = 1: up to work_len / C rows, add4's four at
    least) are widened in one call into L1, then each goes to the float32 kernel's sum
    routine -- centered_sums per run, add4_centered_sums per four rows into float32 block sums
    flushed into double every ROWS_PER_BLOCK rows -- in the float32 kernel's order; bfloat16
    rows with S = 1 skip the buffer (bf16_add4_centered_sums widens in registers). The same
    float operations on the same values in the same order: the same sums, bit for bit.
    Reference: mlkernels/reference/norm.py, batch_norm.
    """
    cdef Py_ssize_t t, k, n, c, j, m, r, r_end, block_end, part_end, w0, w_end, rows_fit
    cdef double d1, d2, t1, t2
    cdef double* sums
    cdef float* block = blocks + thread * 2 * C if S == 1 else NULL
    cdef float* xs = work + thread * work_len
    cdef const float* xr
    cdef float d
    if n_threads > 1:       # each thread: a contiguous share of the channels or parts
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            half_batch_norm_stats(kind, x, shift, N, C, S, by_channel, part_sums, blocks,
                                  parts, first + (end - first) * t // n_threads,
                                  first + (end - first) * (t + 1) // n_threads, work,
                                  work_len, 1, t)
        return
    if by_channel:          # few samples: channel by channel, a run at a time
        for c in range(first, end):
            t1 = 0
            t2 = 0
            for n in range(N):
                mlk_widen(kind, x + (n * C + c) * S, xs, S)
                centered_sums(<const float*>xs, S, shift[c], &d1, &d2)
                t1 += d1
                t2 += d2
            part_sums[c] = t1
            part_sums[C + c] = t2
        return
    for k in range(first, end):
        sums = part_sums + k * 2 * C
        n = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        if S > 1:           # runs n·C .. part_end·C, in memory order, work_len // S at a time
            r = n * C
            r_end = part_end * C
            while r < r_end:
                m = min(r_end - r, work_len // S)
                mlk_widen(kind, x + r * S, xs, m * S)
                for j in range(m):
                    c = (r + j) % C
                    centered_sums(<const float*>xs + j * S, S, shift[c], &d1, &d2)
                    sums[c] += d1
                    sums[C + c] += d2
                r += m
            continue
        rows_fit = work_len // C            # S = 1: at least 4
        w0 = n                              # rows [w0, w_end) are widened at xs
        w_end = n
        while n < part_end:                 # blocks of ROWS_PER_BLOCK samples
            block_end = min(n + ROWS_PER_BLOCK, part_end)
            while n + 4 <= block_end:
                if kind == MLK_BF16:        # widened in registers
                    bf16_add4_centered_sums(x + n * C, C, shift, block, block + C)
                    n += 4
                    continue
                if n + 4 > w_end:
                    w0 = n
                    w_end = min(part_end, n + rows_fit)
                    mlk_widen(kind, x + w0 * C, xs, (w_end - w0) * C)
                add4_centered_sums(<const float*>xs + (n - w0) * C, C, shift, block,
                                   block + C)
                n += 4
            while n < block_end:
                if n >= w_end:
                    w0 = n
                    w_end = min(part_end, n + rows_fit)
                    mlk_widen(kind, x + w0 * C, xs, (w_end - w0) * C)
                xr = xs + (n - w0) * C
                for c in range(C):  # simd
                    d = xr[c] - shift[c]
                    block[c] += d
                    block[C + c] += d * d
                n += 1
            flush_block(block, sums, 2 * C)


def half_batch_norm_backward(int kind, cnp.ndarray grad_out, cnp.ndarray x,
                             cnp.ndarray save_mean, cnp.ndarray save_rstd, weight,
                             cnp.ndarray grad_x, grad_weight, grad_bias, Py_ssize_t N,
                             Py_ssize_t C, Py_ssize_t S, bint training):
    """batch_norm_backward of 16-bit grad_out and x (storage kind of _half.h) into a 16-bit
    grad_x: (N, C, S); save_mean, save_rstd float32 (C,) as the forward returned them; weight
    float32 (C,) or None; grad_weight, grad_bias float32 (C,) or None; all validated
    C-contiguous (mlkernels/norm.py). The float32 entry's parts, thread counts and
    per-channel step."""
    cdef Py_ssize_t total = N * C * S, work_len
    cdef bint need_sums = training or grad_weight is not None or grad_bias is not None
    cdef Parts parts = parts_of(N, C * S, ROWS_PER_BLOCK if S == 1 else 1)
    cdef int nt_sums = threads_for(total, parts.count)
    cdef int nt = threads_for(total, total // TILE_MAX + 1)
    cdef bint stream = total * 2 >= stream_from()
    cdef Sums sums = sums_for(True, parts.count, 2 * C,
                              2 * C * sizeof(float) if need_sums and S == 1 else 0, nt_sums)
    cdef float* coef = NULL
    cdef float* work = NULL
    cdef float* aligned = NULL
    cdef const uint16_t* pg = <const uint16_t*>data(grad_out)
    cdef const uint16_t* px = <const uint16_t*>data(x)
    cdef const float* pm = <const float*>data(save_mean)
    cdef const float* pr = <const float*>data(save_rstd)
    cdef const float* pw = <const float*>data(weight)
    cdef uint16_t* pgx = <uint16_t*>data(grad_x)
    cdef float* pgw = <float*>data(grad_weight)
    cdef float* pgb = <float*>data(grad_bias)
    work_len = half_bn_work_len(C, S, False, HALF_BN_BLOCK // 2)      # g and x: two buffers
    try:
        coef = <float*>scratch(4 * C * sizeof(float))
        if need_sums and total:
            work = <float*>scratch(nt_sums * 2 * work_len * sizeof(float) + 64)
            aligned = <float*>((<size_t>work + 63) & ~(<size_t>63))
        with nogil:
            if need_sums and total:
                half_batch_norm_grad_sums(kind, pg, px, pm, C, S, sums.parts,
                                          <float*>sums.blocks, &parts, 0, parts.count,
                                          aligned, work_len, nt_sums, 0)
            add_parts(&sums)
            batch_norm_backward_channels(pm, pr, pw, C, N * S, sums.total, training, pgw,
                                         pgb, coef)
            if total:
                half_batch_norm_affine(kind, pg, px, coef, pgx, C, S, 0, total, stream, nt)
    finally:
        free_sums(&sums)
        free(coef)
        free(work)


cdef void half_batch_norm_grad_sums(int kind, const uint16_t* g, const uint16_t* x,
                                    const float* mean, Py_ssize_t C, Py_ssize_t S,
                                    double* part_sums, float* blocks, const Parts* parts,
                                    Py_ssize_t first, Py_ssize_t end, float* work,
                                    Py_ssize_t work_len, int n_threads,
                                    int thread) noexcept nogil:
    """batch_norm_grad_sums on 16-bit g and x: the parts [first, end), into part_sums
    [Σg C | Σg·(x − mean) C], on runs (rows) of g and x widened into this thread's two
    buffers (work + thread·2·work_len floats).

    Scalar math: as batch_norm_grad_sums, on widen(g), widen(x) and the float32 mean.
    Why it is fast: as half_batch_norm_stats -- 2 bytes read per value of g and of x, widened
    into L1 and fed to the float32 kernel's grad_sums (per run) or add4_grad_sums (four rows,
    float32 block sums; bfloat16: bf16_add4_grad_sums, widening in registers) in its order:
    the same sums, so grad_weight and grad_bias are the float32 kernel's bit for bit.
    Reference: mlkernels/reference/norm.py, batch_norm_backward.
    """
    cdef Py_ssize_t t, k, n, c, j, m, r, r_end, block_end, part_end, w0, w_end, rows_fit
    cdef double tg, tgx
    cdef double* sums
    cdef float* block = blocks + thread * 2 * C if S == 1 else NULL
    cdef float* gs = work + thread * 2 * work_len
    cdef float* xs = gs + work_len
    cdef const float* gr
    cdef const float* xr
    if n_threads > 1:       # each thread: a contiguous share of the parts
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            half_batch_norm_grad_sums(kind, g, x, mean, C, S, part_sums, blocks, parts,
                                      first + (end - first) * t // n_threads,
                                      first + (end - first) * (t + 1) // n_threads, work,
                                      work_len, 1, t)
        return
    for k in range(first, end):
        sums = part_sums + k * 2 * C
        n = part_start(parts, k)
        part_end = part_start(parts, k + 1)
        if S > 1:           # runs n·C .. part_end·C in memory order
            r = n * C
            r_end = part_end * C
            while r < r_end:
                m = min(r_end - r, work_len // S)
                mlk_widen(kind, g + r * S, gs, m * S)
                mlk_widen(kind, x + r * S, xs, m * S)
                for j in range(m):
                    c = (r + j) % C
                    grad_sums(<const float*>gs + j * S, <const float*>NULL,
                              <const float*>xs + j * S, S, mean[c], &tg, &tgx)
                    sums[c] += tg
                    sums[C + c] += tgx
                r += m
            continue
        rows_fit = work_len // C            # S = 1: at least 4
        w0 = n
        w_end = n
        while n < part_end:                 # blocks of ROWS_PER_BLOCK samples
            block_end = min(n + ROWS_PER_BLOCK, part_end)
            while n + 4 <= block_end:
                if kind == MLK_BF16:        # widened in registers
                    bf16_add4_grad_sums(g + n * C, x + n * C, C, mean, block, block + C)
                    n += 4
                    continue
                if n + 4 > w_end:
                    w0 = n
                    w_end = min(part_end, n + rows_fit)
                    mlk_widen(kind, g + w0 * C, gs, (w_end - w0) * C)
                    mlk_widen(kind, x + w0 * C, xs, (w_end - w0) * C)
                add4_grad_sums(<const float*>gs + (n - w0) * C,
                               <const float*>xs + (n - w0) * C, C, mean, block, block + C)
                n += 4
            while n < block_end:
                if n >= w_end:
                    w0 = n
                    w_end = min(part_end, n + rows_fit)
                    mlk_widen(kind, g + w0 * C, gs, (w_end - w0) * C)
                    mlk_widen(kind, x + w0 * C, xs, (w_end - w0) * C)
                gr = gs + (n - w0) * C
                xr = xs + (n - w0) * C
                for c in range(C):  # simd
                    block[c] += gr[c]
                    block[C + c] += gr[c] * (xr[c] - mean[c])
                n += 1
            flush_block(block, sums, 2 * C)


cdef void bf16_add4_centered_sums(const uint16_t* x, Py_ssize_t n, const float* k,
                                  float* sum, float* sum_sq) noexcept nogil:
    """_reduce.h's mlk_add4_centered_sums_f32 on four bfloat16 rows (x, x + n, x + 2n,
    x + 3n), widened in registers (a shift): the same float operations per column, written
    as there, so the same bits (the column sums are elementwise: no lane order to match).

    Scalar math: d_r = widen(x_r[j]) − k[j]; sum[j] += (d0 + d1) + (d2 + d3);
    sum_sq[j] += (d0·d0 + d1·d1) + (d2·d2 + d3·d3).
    """
    cdef Py_ssize_t j
    cdef float d0, d1, d2, d3
    for j in range(n):  # simd
        d0 = mlk_bf16_widen(x[j]) - k[j]
        d1 = mlk_bf16_widen(x[n + j]) - k[j]
        d2 = mlk_bf16_widen(x[2 * n + j]) - k[j]
        d3 = mlk_bf16_widen(x[3 * n + j]) - k[j]
        sum[j] += (d0 + d1) + (d2 + d3)
        sum_sq[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)


cdef void bf16_add4_grad_sums(const uint16_t* g, const uint16_t* x, Py_ssize_t n,
                              const float* m, float* sum_g,
                              float* sum_g_centered) noexcept nogil:
    """_reduce.h's mlk_add4_grad_sums_f32 on four bfloat16 rows of g and x, widened in
    registers: the same float operations per column, so the same bits.

    Scalar math: sum_g[j] += (g0 + g1) + (g2 + g3);
    sum_g_centered[j] += (g0·(x0 − m[j]) + g1·(x1 − m[j])) + (g2·(x2 − m[j]) + g3·(x3 − m[j])).
    """
    cdef Py_ssize_t j
    cdef float mj, g0, g1, g2, g3
    for j in range(n):  # simd
        mj = m[j]
        g0 = mlk_bf16_widen(g[j])
        g1 = mlk_bf16_widen(g[n + j])
        g2 = mlk_bf16_widen(g[2 * n + j])
        g3 = mlk_bf16_widen(g[3 * n + j])
        sum_g[j] += (g0 + g1) + (g2 + g3)
        sum_g_centered[j] += ((g0 * (mlk_bf16_widen(x[j]) - mj)
                               + g1 * (mlk_bf16_widen(x[n + j]) - mj))
                              + (g2 * (mlk_bf16_widen(x[2 * n + j]) - mj)
                                 + g3 * (mlk_bf16_widen(x[3 * n + j]) - mj)))


cdef void half_batch_norm_affine(int kind, const uint16_t* g, const uint16_t* x,
                                 const float* coef, uint16_t* out, Py_ssize_t C, Py_ssize_t S,
                                 Py_ssize_t first, Py_ssize_t end, bint stream,
                                 int n_threads) noexcept nogil:
    """BatchNorm's pass 2 on 16-bit data, elements [first, end): out = round16(a·widen(g) +
    b·(widen(x) − mean_hi) + c) per channel, coef as batch_norm_affine's; g NULL for the
    forward.

    Scalar math: out[i] = round16(batch_norm_affine's out[i] on the widened g and x).
    Why it is fast: 2 bytes read per value of x (and g) and 2 written, instead of 4. A block of
    at most HALF_AFFINE values (S = 1: half), ending on a boundary of its size in out, is
    widened into L1, batch_norm_affine itself (the float32 code) computes it into a third L1 block,
    which is rounded into out once -- with streaming stores when out is large. The threads
    split the elements on TILE_BYTES boundaries of out: no cache line written by two.
    Reference: mlkernels/reference/norm.py, batch_norm and batch_norm_backward.
    """
    cdef Py_ssize_t t, p, m, block = HALF_AFFINE if S > 1 else HALF_AFFINE // 2
    cdef HalfAffineMemory memory
    cdef float* xs = <float*>((<size_t>&memory.bytes[0] + 63) & ~(<size_t>63))
    cdef float* gs = xs + block
    cdef float* os = gs + block
    if n_threads > 1:
        for t in prange(n_threads, num_threads=n_threads, schedule="static"):
            half_batch_norm_affine(kind, g, x, coef, out, C, S,
                                   half_split_at(out, first, end, t, n_threads),
                                   half_split_at(out, first, end, t + 1, n_threads), stream, 1)
        return
    p = first
    while p < end:
        m = min(end - p, block - <Py_ssize_t>(<size_t>(out + p) % (2 * block) // 2))
        mlk_widen(kind, x + p, xs, m)
        if g != NULL:
            mlk_widen(kind, g + p, gs, m)
        batch_norm_affine(<const float*>gs if g != NULL else <const float*>NULL,
                          <const float*>xs, coef, os, C, S, 0, m, False, 1, p)
        mlk_narrow_to(kind, os, out + p, m, stream)
        p += m
    if stream:
        mlk_stream_fence()


cdef inline Py_ssize_t half_split_at(const uint16_t* dst, Py_ssize_t first, Py_ssize_t end,
                                     Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """split_at for a 16-bit dst: share `part` of `parts` starts on a TILE_BYTES boundary."""
    cdef Py_ssize_t p = first + (end - first) * part // parts
    cdef Py_ssize_t to_boundary
    if first < p < end and <size_t>(dst + p) % TILE_BYTES != 0:
        to_boundary = <Py_ssize_t>((TILE_BYTES - <size_t>(dst + p) % TILE_BYTES) // 2)
        p += min(to_boundary, end - p)
    return p
