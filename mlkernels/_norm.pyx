"""Normalization kernels: LayerNorm, RMSNorm, GroupNorm (row kernels) and BatchNorm.

How it is built
---------------
* Row norms. LayerNorm, RMSNorm and GroupNorm all normalize *rows*: a row is ``Cg``
  channels of ``S`` contiguous elements, with one affine weight per channel (LayerNorm: a row
  of x with G = 1, S = 1, a weight per element; GroupNorm: the (n, group) blocks of x, a weight
  per channel). A row is read from memory once: its statistics are computed (two passes, in
  double, over the row while it sits in cache: no E[x²] − E[x]² cancellation), then the
  normalizing pass reads it again from cache and writes y. Rows are split across threads.
* Row backward: per row, the two reductions Σ ĝ and Σ ĝ·x̂ (ĝ = g·γ) in one pass, then
  dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)). dγ = Σ g·x̂ and dβ = Σ g are summed by each thread
  into its own buffer (no atomics, no false sharing) and reduced in a short second pass;
  LayerNorm's per-element sums go through a 16-row block sum in the array's type first (see
  ROWS_PER_BLOCK), GroupNorm's per-channel sums are pass 1's own reductions.
* A large output (STREAM_FROM) of rows up to 64 KiB is computed row by row into a per-thread
  buffer and streamed out (_stream.h): LayerNorm 16384×1024 float32, 2 threads, the same
  process: forward 3.02-3.15 against 3.20-3.22 ms, backward 4.71-5.13 against 5.17-5.39 ms.
* BatchNorm. Statistics per channel over (N, *spatial): one pass of shifted sums
  Σ(x − K), Σ(x − K)² in double (K = the channel's first value, which keeps the sums small for
  data far from 0), then one pass applying y = (x − mean)·scale + β with rstd and γ folded
  into one scale per channel: 3 array traffics (1.5 copies). Backward: one pass for Σg and
  Σg·x̂ per channel, one pass for dx (2.5 copies). With one value per channel (x of shape
  (N, C)) the sums are taken four samples at a time (_reduce.h's add4_*). A large y or dx is
  written with streaming stores (_stream.h): an ordinary store would first read each output
  line from memory, one more traffic of the output's size.
* Wherever x − mean is formed in float32, the mean is a pair hi + lo of floats: rounding the
  mean alone loses the digits of data like 1e4 + N(0, 1e-2).
* float32 statistics and reductions are accumulated in double; a row's sums are the
  lane-parallel reductions of _reduce.pxd, so that they vectorize.
Shapes are validated in mlkernels/norm.py (bounds checks are off).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport sqrt, NAN
from libc.stdlib cimport calloc, free, malloc

from mlkernels._reduce cimport (add4_sums_dev, add4_sums_grad_dev, sum_of, sum_sq_dev, sums_dev,
                               sums_grad_dev)
from mlkernels._stream cimport (STREAM_FROM_BYTES, TILE_BYTES, TILE_MAX, mlk_stream_fence,
                               stream_out, tile_len)

import numpy as np


cdef enum:
    SERIAL_BELOW = 65536      # elements: below this, one thread (a parallel region costs µs)


# Outputs of at least this many bytes are written with streaming stores (_stream.pxd: why).
cdef Py_ssize_t STREAM_FROM = STREAM_FROM_BYTES


cdef enum:
    ROW_BUFFER_MAX = 64 * 1024    # bytes: a longer row is written straight to its output


cdef struct RowBuffers:
    bint stream                   # rows are computed into per-thread buffers, then streamed
    void* memory                  # what to free (NULL when not streaming)
    char* first                   # thread t's buffer: first + t * stride, line-aligned
    Py_ssize_t stride


cdef RowBuffers row_buffers(Py_ssize_t rows, Py_ssize_t row_len, Py_ssize_t itemsize,
                            int n_threads) except *:
    """Row kernels stream a large output (STREAM_FROM) row by row: each thread computes a
    row into its own cache-resident buffer, then streams it out (_stream.h)."""
    cdef RowBuffers buffers
    buffers.stream = (row_len > 0 and rows * row_len * itemsize >= STREAM_FROM
                      and row_len * itemsize <= ROW_BUFFER_MAX)
    buffers.memory = NULL
    buffers.first = NULL
    buffers.stride = (row_len * itemsize + 63) // 64 * 64
    if buffers.stream:
        buffers.memory = malloc(n_threads * buffers.stride + 64)
        if buffers.memory == NULL:
            raise MemoryError()
        buffers.first = <char*>((<size_t>buffers.memory + 63) & ~(<size_t>63))
    return buffers


cdef inline void* row_buffer(RowBuffers* buffers, int thread) noexcept nogil:
    return buffers.first + thread * buffers.stride


def set_stream_from(Py_ssize_t nbytes):
    """Set the output size from which the norm kernels stream their output; returns the old
    value. For tests (to drive the streaming path with small arrays) and measurements."""
    global STREAM_FROM
    old, STREAM_FROM = STREAM_FROM, nbytes
    return old


cdef inline int threads_for(Py_ssize_t total, int n_threads) noexcept nogil:
    return 1 if total < SERIAL_BELOW else n_threads


cdef enum:
    # Sums taken element by element across rows (LayerNorm's dγ, dβ; BatchNorm's per-channel
    # sums when a channel has one value per sample) are summed over this many rows in the
    # array's type, then added into double. Adding every row straight into double sums (a
    # widening, two vectors per 16 floats, and a read-modify-write of twice the bytes) cost
    # LayerNorm's backward dearly (16384×1024 float32, 2 threads, norm bench: 7.0-7.7 ms
    # that way, 4.8-5.5 ms with blocks). A 16-row block sum adds at most 16 roundings before
    # it joins the double total.
    ROWS_PER_BLOCK = 16


cdef inline void flush_block(floating* block, double* acc, Py_ssize_t n) noexcept nogil:
    """acc += block, then block = 0: a block's sums join the thread's double sums."""
    cdef Py_ssize_t i
    for i in range(n):  # simd
        acc[i] += block[i]
        block[i] = 0


# ============================================================================ row norms

cdef void row_forward(const floating* x, floating* y, const floating* w, const floating* b,
                      Py_ssize_t Cg, Py_ssize_t S, double eps, bint center,
                      double* mean_out, double* rstd_out) noexcept nogil:
    """One row: mean and rstd = 1/√(var + eps) (RMSNorm: mean 0, var = E[x²]), then
    y = (x − mean)·rstd·γ[c] + β[c]; γ, β may be NULL."""
    cdef Py_ssize_t n = Cg * S, i, j, s
    cdef double sq, mean = 0, rstd
    cdef floating fm, fm_lo, fr, wj, bj
    if center:
        mean = sum_of(x, n) / n if n else 0
    sq = sum_sq_dev(x, n, mean)                 # second pass, on the cache-hot row
    rstd = 1 / sqrt(sq / n + eps) if n else NAN        # an empty row: mean 0, rstd NaN (torch)
    mean_out[0] = mean
    rstd_out[0] = rstd
    # the mean as a pair hi + lo of the array's type: (x − hi) − lo keeps the digits that
    # rounding the mean alone would lose (1e4 + N(0, 1e-2) in float32)
    fm = <floating>mean
    fm_lo = <floating>(mean - fm)
    fr = <floating>rstd
    if S == 1:                                  # LayerNorm/RMSNorm: a weight per element
        if w != NULL and b != NULL:
            for i in range(n):  # simd
                y[i] = ((x[i] - fm) - fm_lo) * fr * w[i] + b[i]
        elif w != NULL:
            for i in range(n):  # simd
                y[i] = ((x[i] - fm) - fm_lo) * fr * w[i]
        elif b != NULL:
            for i in range(n):  # simd
                y[i] = ((x[i] - fm) - fm_lo) * fr + b[i]
        else:
            for i in range(n):  # simd
                y[i] = ((x[i] - fm) - fm_lo) * fr
    else:                                       # GroupNorm: a weight per channel of S values
        for j in range(Cg):
            wj = w[j] if w != NULL else 1
            bj = b[j] if b != NULL else 0
            for s in range(S):  # simd
                y[j * S + s] = ((x[j * S + s] - fm) - fm_lo) * fr * wj + bj


def rows_forward(const floating[:, ::1] x,     # IN  (R, Cg*S): R rows
                 const floating[::1] weight,   # IN  (G*Cg,) or None
                 const floating[::1] bias,     # IN  (G*Cg,) or None
                 floating[:, ::1] y,           # OUT (R, Cg*S)
                 double[::1] mean,             # OUT (R,) statistics, in double
                 double[::1] rstd,             # OUT (R,)
                 Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S, double eps, bint center,
                 int n_threads):
    """Row r belongs to group r % G: its affine parameters start at channel (r % G)·Cg."""
    cdef Py_ssize_t R = x.shape[0], r
    cdef const floating* w = &weight[0] if weight is not None and weight.shape[0] else NULL
    cdef const floating* b = &bias[0] if bias is not None and bias.shape[0] else NULL
    cdef int nt = threads_for(R * Cg * S, n_threads)
    if R == 0:
        return
    cdef Py_ssize_t row_len = Cg * S
    cdef const floating* px = &x[0, 0] if row_len else NULL
    cdef floating* py = &y[0, 0] if row_len else NULL
    cdef RowBuffers rows = row_buffers(R, row_len, sizeof(floating), nt)
    cdef floating* out
    try:
        with nogil, parallel(num_threads=nt):
            for r in prange(R, schedule="static"):
                out = <floating*>row_buffer(&rows, threadid()) if rows.stream else py + r * row_len
                row_forward(px + r * row_len if px != NULL else NULL,
                            out if py != NULL else NULL,
                            w + (r % G) * Cg if w != NULL else NULL,
                            b + (r % G) * Cg if b != NULL else NULL,
                            Cg, S, eps, center, &mean[r], &rstd[r])
                if rows.stream:
                    stream_out(py + r * row_len, out, row_len)
            if rows.stream:
                mlk_stream_fence()
    finally:
        free(rows.memory)


cdef void row_backward(const floating* g, const floating* x, const floating* w,
                       Py_ssize_t Cg, Py_ssize_t S, double mean, double rstd, bint center,
                       floating* gx, floating* gw_block, floating* gb_block,
                       double* gw_acc, double* gb_acc) noexcept nogil:
    """One row: ĝ = g·γ, x̂ = (x − mean)·rstd;
    dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))   (RMSNorm: no mean(ĝ) term);
    dγ += g·x̂ and dβ += g: with one value per channel (S = 1: LayerNorm, RMSNorm, GroupNorm
    without spatial dims) element by element into this thread's block sums (gw_block,
    gb_block: NULL when neither is wanted); with S > 1 as per-channel sums, straight into the
    thread's double sums (gw_acc, gb_acc)."""
    cdef Py_ssize_t n = Cg * S, i, j
    cdef double sum_g = 0, sum_gx = 0, a, b, c1, c2
    cdef floating wj, xhf
    if S == 1:                                  # pass 1: the row's two reductions
        sums_grad_dev(g, w, x, n, mean, &sum_g, &sum_gx)
        sum_gx *= rstd
    else:                                       # per channel: Σ g and Σ g·(x − mean), × γ[c]
        for j in range(Cg):
            sums_grad_dev(g + j * S, <const floating*>NULL, x + j * S, S, mean, &a, &b)
            wj = w[j] if w != NULL else 1
            sum_g += wj * a
            sum_gx += wj * b * rstd
            if gw_acc != NULL:                  # dγ[c] = Σ g·x̂, dβ[c] = Σ g: the same sums
                gw_acc[j] += b * rstd
            if gb_acc != NULL:
                gb_acc[j] += a
    c1 = sum_g / n if center else 0
    c2 = sum_gx / n
    cdef floating f_c1 = <floating>c1, f_c2 = <floating>c2
    cdef floating f_mean = <floating>mean, f_rstd = <floating>rstd
    cdef floating f_mean_lo = <floating>(mean - f_mean)
    if S == 1:                                  # pass 2, on the cache-hot row
        if gw_block != NULL:                    # dγ, dβ first: gx may be g itself
            for i in range(n):  # simd
                xhf = ((x[i] - f_mean) - f_mean_lo) * f_rstd
                gw_block[i] += g[i] * xhf
                gb_block[i] += g[i]
        for i in range(n):  # simd
            xhf = ((x[i] - f_mean) - f_mean_lo) * f_rstd
            gx[i] = f_rstd * (g[i] * (w[i] if w != NULL else <floating>1) - f_c1 - xhf * f_c2)
        return
    for j in range(Cg):                         # pass 2, GroupNorm: dx only
        wj = w[j] if w != NULL else 1
        for i in range(j * S, j * S + S):  # simd
            xhf = ((x[i] - f_mean) - f_mean_lo) * f_rstd
            gx[i] = f_rstd * (g[i] * wj - f_c1 - xhf * f_c2)


def rows_backward(const floating[:, ::1] grad_out, const floating[:, ::1] x,
                  const double[::1] mean, const double[::1] rstd,
                  const floating[::1] weight,     # IN  (G*Cg,) or None
                  floating[:, ::1] grad_x,        # OUT (R, Cg*S)
                  floating[::1] grad_weight,      # OUT (G*Cg,) or None
                  floating[::1] grad_bias,        # OUT (G*Cg,) or None
                  Py_ssize_t G, Py_ssize_t Cg, Py_ssize_t S, bint center, int n_threads):
    cdef Py_ssize_t R = x.shape[0], r, c, t, blk, C = G * Cg, row_len = Cg * S
    cdef Py_ssize_t n_blocks = (R + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    cdef const floating* w = &weight[0] if weight is not None and weight.shape[0] else NULL
    cdef bint want_w = grad_weight is not None, want_b = grad_bias is not None
    cdef bint sums_by_element = S == 1 and (want_w or want_b)
    cdef int nt = threads_for(R * row_len, n_threads)
    # per thread: double sums [dγ C | dβ C], and for one value per channel (S = 1) the block
    # sums [dγ C | dβ C] in the array's type, flushed into them; reduced over the threads below
    cdef double* acc = <double*>calloc(nt * 2 * C + 1, sizeof(double))
    cdef floating* block_acc = NULL
    if sums_by_element:
        block_acc = <floating*>calloc(nt * 2 * C, sizeof(floating))
    if acc == NULL or (sums_by_element and block_acc == NULL):
        free(acc)
        free(block_acc)
        raise MemoryError()
    cdef const floating* pg = &grad_out[0, 0] if R and row_len else NULL
    cdef const floating* px = &x[0, 0] if R and row_len else NULL
    cdef floating* pgx = &grad_x[0, 0] if R and row_len else NULL
    cdef double* mine
    cdef floating* mine_block
    cdef RowBuffers rows = row_buffers(R, row_len, sizeof(floating), nt)
    cdef floating* out
    try:
        with nogil:
            with parallel(num_threads=nt):
                for blk in prange(n_blocks, schedule="static"):
                    mine = acc + threadid() * 2 * C
                    mine_block = block_acc + threadid() * 2 * C if sums_by_element else NULL
                    for r in range(blk * ROWS_PER_BLOCK, min(R, (blk + 1) * ROWS_PER_BLOCK)):
                        out = (<floating*>row_buffer(&rows, threadid()) if rows.stream
                               else pgx + r * row_len)
                        row_backward(pg + r * row_len, px + r * row_len,
                                     w + (r % G) * Cg if w != NULL else NULL, Cg, S, mean[r],
                                     rstd[r], center, out,
                                     mine_block + (r % G) * Cg if sums_by_element else NULL,
                                     mine_block + C + (r % G) * Cg if sums_by_element else NULL,
                                     mine + (r % G) * Cg if want_w else NULL,
                                     mine + C + (r % G) * Cg if want_b else NULL)
                        if rows.stream:
                            stream_out(pgx + r * row_len, out, row_len)
                    if sums_by_element:
                        flush_block(mine_block, mine, 2 * C)
                if rows.stream:
                    mlk_stream_fence()
            for c in range(C):                  # reduce the threads' partial sums
                if want_w:
                    grad_weight[c] = 0
                if want_b:
                    grad_bias[c] = 0
            for t in range(nt):
                for c in range(C):
                    if want_w:
                        grad_weight[c] += <floating>acc[t * 2 * C + c]
                    if want_b:
                        grad_bias[c] += <floating>acc[t * 2 * C + C + c]
    finally:
        free(acc)
        free(block_acc)
        free(rows.memory)


# ============================================================================ BatchNorm
# x is seen as (N, C, S): N samples, C channels, S = the product of the spatial dims.

cdef void channel_sums(const floating* x, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
                       Py_ssize_t c, double* total, double* sq, double shift) noexcept nogil:
    """Σ(x − K) and Σ(x − K)² over channel c (K = shift), in double."""
    cdef Py_ssize_t n
    cdef double t = 0, q = 0, d1, d2
    for n in range(N):
        sums_dev(x + (n * C + c) * S, S, shift, &d1, &d2)
        t += d1
        q += d2
    total[0] = t
    sq[0] = q


def batch_stats(const floating[:, :, ::1] x, double[::1] mean, double[::1] var,
                int n_threads):
    """Per channel: mean and the biased variance, from one pass of shifted sums."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], c, n, j, blk
    cdef Py_ssize_t n_blocks = (N + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    cdef double count = N * S, t, q
    cdef int nt = threads_for(N * C * S, n_threads)
    cdef const floating* px = &x[0, 0, 0]
    cdef double* tot
    cdef double* shift
    cdef floating* block = NULL
    cdef floating* mine_block
    if (S > 1 and N < 2 * nt) or (S == 1 and C < 16):
        # too few samples to share out, or rows too short to walk: a channel per work item
        with nogil:
            for c in prange(C, num_threads=nt, schedule="static"):
                channel_sums(px, N, C, S, c, &mean[c], &var[c], px[c * S])
                # mean[c], var[c] hold Σ(x−K), Σ(x−K)² here; finish: E[x] and E[(x − E[x])²]
                mean[c] = mean[c] / count
                var[c] = var[c] / count - mean[c] * mean[c]
                mean[c] = mean[c] + px[c * S]
    else:
        # sample by sample, through contiguous memory, into per-thread sums. (A channel's N
        # runs lie C·S values apart: walked channel by channel, as above, the (32, 64, 56, 56)
        # float32 statistics took 1.69 ms on one thread, 0.75 ms sample by sample.)
        tot = <double*>calloc(2 * nt * C + C, sizeof(double))
        if S == 1:
            block = <floating*>calloc(2 * nt * C, sizeof(floating))
        if tot == NULL or (S == 1 and block == NULL):
            free(tot)
            free(block)
            raise MemoryError()
        shift = tot + 2 * nt * C
        try:
            with nogil:
                for c in range(C):
                    shift[c] = px[c * S]
                for blk in prange(n_blocks, num_threads=nt, schedule="static"):
                    mine_block = block + threadid() * 2 * C if S == 1 else NULL
                    n = blk * ROWS_PER_BLOCK
                    samples_sums(px + n * C * S, min(N - n, ROWS_PER_BLOCK), C, S, px, shift,
                                 tot + threadid() * 2 * C, mine_block)
                    if S == 1:
                        flush_block(mine_block, tot + threadid() * 2 * C, 2 * C)
                for c in range(C):
                    t = 0
                    q = 0
                    for j in range(nt):
                        t = t + tot[j * 2 * C + c]
                        q = q + tot[j * 2 * C + C + c]
                    mean[c] = t / count
                    var[c] = q / count - mean[c] * mean[c]
                    mean[c] = mean[c] + shift[c]
        finally:
            free(tot)
            free(block)
    for c in range(C):
        if var[c] < 0:                          # rounding of the shifted sums: clamp at 0
            var[c] = 0


cdef void samples_sums(const floating* x, Py_ssize_t rows, Py_ssize_t C, Py_ssize_t S,
                       const floating* first, const double* shift, double* acc,
                       floating* block) noexcept nogil:
    """Σ (x[n, c, s] − K[c]) and Σ (x[n, c, s] − K[c])² over `rows` consecutive samples,
    K = the first sample's values. One value per channel (S = 1): into the block sums (K is
    first[c] itself, exact in the array's type), four samples at a time (add4_sums_dev: their
    terms meet in registers, the block is loaded and stored once per four). Else into the
    double sums acc, run by run."""
    cdef Py_ssize_t n = 0, c
    cdef floating d
    cdef double t, q
    if S == 1:
        while n + 4 <= rows:
            add4_sums_dev(x + n * C, C, first, block, block + C)
            n += 4
        while n < rows:
            for c in range(C):  # simd
                d = x[n * C + c] - first[c]
                block[c] += d
                block[C + c] += d * d
            n += 1
    else:
        for n in range(rows):
            for c in range(C):
                sums_dev(x + (n * C + c) * S, S, shift[c], &t, &q)
                acc[c] += t
                acc[C + c] += q


def batch_grad_sums(const floating[:, :, ::1] g, const floating[:, :, ::1] x,
                    const double[::1] mean, double[::1] sum_g, double[::1] sum_gx,
                    int n_threads):
    """Per channel: Σ g and Σ g·(x − mean), in double, one pass over g and x."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], c, n, j, blk
    cdef Py_ssize_t n_blocks = (N + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    cdef int nt = threads_for(N * C * S, n_threads)
    cdef double* acc = <double*>calloc(2 * nt * C + 1, sizeof(double))
    # S = 1: block sums [Σg C | Σg·(x − mean) C] per thread, then the mean as hi + lo pairs
    cdef floating* block = <floating*>calloc(2 * nt * C + 2 * C + 1, sizeof(floating))
    if acc == NULL or block == NULL:
        free(acc)
        free(block)
        raise MemoryError()
    cdef floating* mean_hi = block + 2 * nt * C
    cdef floating* mean_lo = mean_hi + C
    cdef floating* mine_block
    cdef const floating* pg = &g[0, 0, 0]
    cdef const floating* px = &x[0, 0, 0]
    cdef const double* pm = &mean[0]
    for c in range(C):
        mean_hi[c] = <floating>mean[c]
        mean_lo[c] = <floating>(mean[c] - <double>mean_hi[c])
    try:
        with nogil:
            for blk in prange(n_blocks, num_threads=nt, schedule="static"):
                mine_block = block + threadid() * 2 * C
                n = blk * ROWS_PER_BLOCK
                samples_grad_sums(pg + n * C * S, px + n * C * S, min(N - n, ROWS_PER_BLOCK),
                                  pm, mean_hi, mean_lo, C, S, acc + threadid() * 2 * C,
                                  mine_block)
                if S == 1:
                    flush_block(mine_block, acc + threadid() * 2 * C, 2 * C)
            for c in range(C):
                sum_g[c] = 0
                sum_gx[c] = 0
                for j in range(nt):
                    sum_g[c] += acc[j * 2 * C + c]
                    sum_gx[c] += acc[j * 2 * C + C + c]
    finally:
        free(acc)
        free(block)


cdef void samples_grad_sums(const floating* g, const floating* x, Py_ssize_t rows,
                            const double* mean, const floating* mean_hi,
                            const floating* mean_lo, Py_ssize_t C, Py_ssize_t S, double* acc,
                            floating* block) noexcept nogil:
    """Σ g and Σ g·(x − mean) per channel over `rows` consecutive samples: with one value per
    channel (S = 1) into the block sums, four samples at a time as in samples_sums; else into
    the double sums acc, run by run."""
    cdef Py_ssize_t n = 0, c, i
    cdef double tg, tgx
    if S == 1:
        while n + 4 <= rows:
            add4_sums_grad_dev(g + n * C, x + n * C, C, mean_hi, mean_lo, block, block + C)
            n += 4
        while n < rows:
            i = n * C
            for c in range(C):  # simd
                block[c] += g[i + c]
                block[C + c] += g[i + c] * ((x[i + c] - mean_hi[c]) - mean_lo[c])
            n += 1
    else:
        for n in range(rows):
            for c in range(C):
                sums_grad_dev(g + (n * C + c) * S, <const floating*>NULL, x + (n * C + c) * S,
                              S, mean[c], &tg, &tgx)
                acc[c] += tg
                acc[C + c] += tgx


def batch_affine(const floating[:, :, ::1] x, const floating[:, :, ::1] g,
                 const double[::1] mean, const double[::1] a, const double[::1] b,
                 const double[::1] c, floating[:, :, ::1] out, int n_threads):
    """out = a[ch]·g + b[ch]·(x − mean[ch]) + c[ch], per channel ch; g (and a) may be None.

    The second pass of both BatchNorm directions. Forward: y = (x − mean)·scale + β, rstd and
    γ folded into one scale (g None). Backward: dx = γ·rstd·(g − mean(g) − x̂·mean(g·x̂)) with
    its per-channel constants folded (eval: b = c = 0, a = γ·rstd).
    The mean is split into a pair m_hi + m_lo of the array's type (see row_forward), and
    b·(x − mean) + c computed as b·(x − m_hi) + (c − b·m_lo): x − m_hi is exact or nearly for
    data near its mean, and c − b·m_lo is formed in double. Folding all of the mean into c would
    cancel catastrophically for data far from 0; folding m_lo saves a load per element.
    The arrays are walked as one contiguous run of N·C·S values, split between the threads at
    tile boundaries (no cache line written by two threads); the channel, so the coefficients,
    changes every S values. An out of STREAM_FROM bytes or more is written with streaming
    stores (_stream.h), tile by tile. Measured against the sample-by-sample loops this
    replaced (16384×1024 float32, 2 threads, the same process): forward 2.2-2.5 against
    2.3-2.9 ms, backward 3.35-4.0 against 3.7-4.8 ms, most of it the load saved by folding
    m_lo."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], total = N * C * S
    cdef Py_ssize_t ch, part
    cdef int nt = threads_for(total, n_threads)
    cdef bint stream = total * <Py_ssize_t>sizeof(floating) >= STREAM_FROM
    cdef const floating* pg = &g[0, 0, 0] if g is not None else NULL
    cdef const floating* px = &x[0, 0, 0]
    cdef floating* pout = &out[0, 0, 0]
    cdef floating m_hi
    # per channel, in the array's type: [m_hi | a | b | c − b·m_lo]
    cdef floating* coef = <floating*>calloc(4 * C + 1, sizeof(floating))
    if coef == NULL:
        raise MemoryError()
    for ch in range(C):
        m_hi = <floating>mean[ch]
        coef[ch] = m_hi
        coef[C + ch] = <floating>a[ch] if a is not None else 0
        coef[2 * C + ch] = <floating>b[ch]
        coef[3 * C + ch] = <floating>(c[ch] - b[ch] * (mean[ch] - <double>m_hi))
    try:
        with nogil, parallel(num_threads=nt):
            for part in prange(nt, schedule="static"):
                affine_span(pg, px, coef, pout, C, S, split_at(pout, total, part, nt),
                            split_at(pout, total, part + 1, nt), stream)
            if stream:
                mlk_stream_fence()
    finally:
        free(coef)


cdef inline Py_ssize_t split_at(const floating* dst, Py_ssize_t total, Py_ssize_t part,
                                Py_ssize_t parts) noexcept nogil:
    """Where part `part` of `parts` near-equal ranges of dst[0:total] starts, moved up to a
    TILE_BYTES boundary of dst: no two threads write into one cache line."""
    cdef Py_ssize_t p = total * part // parts
    if 0 < p < total and <size_t>(dst + p) % TILE_BYTES != 0:
        p += tile_len(dst + p, total - p)
    return p


cdef void affine_span(const floating* g, const floating* x, const floating* coef,
                      floating* out, Py_ssize_t C, Py_ssize_t S, Py_ssize_t p, Py_ssize_t end,
                      bint stream) noexcept nogil:
    """out[p:end] of batch_affine, for the flat (N, C, S) arrays. Tile by tile: a tile is
    computed into `dst` -- out itself, or (stream) an L1 buffer then streamed to out -- one
    channel run at a time (S = 1: coefficient vectors, until the row of C wraps)."""
    cdef const floating* m_hi = coef
    cdef const floating* a = coef + C
    cdef const floating* b = coef + 2 * C
    cdef const floating* c = coef + 3 * C      # c − b·m_lo
    cdef Py_ssize_t ch = (p // S) % C, s = p % S, m, k, run, i
    cdef floating mh, fa, fb, fc
    cdef floating raw[TILE_MAX + 16]
    cdef floating* buffer = <floating*>((<size_t>&raw[0] + 63) & ~(<size_t>63))  # line-aligned
    cdef floating* dst
    cdef floating* o
    cdef const floating* xs
    cdef const floating* gs
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
                        o[i] = a[ch + i] * gs[i] + b[ch + i] * (xs[i] - m_hi[ch + i]) + c[ch + i]
                else:
                    for i in range(run):  # simd
                        o[i] = b[ch + i] * (xs[i] - m_hi[ch + i]) + c[ch + i]
                ch += run
            else:                       # one channel: to the end of its run of S values
                run = min(m - k, S - s)
                mh, fa, fb, fc = m_hi[ch], a[ch], b[ch], c[ch]
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
