"""Dropout with a counter-based generator: the mask is a function of (seed, element index).

Scalar math (element i of x, e = offset + i its global index)::

    u = philox_u16(seed, e) / 65536                 # uniform on {0, 1/65536, ..., 65535/65536}
    out[i] = x[i] * (1/(1 − p) if u >= p else 0)    # dropout_backward: grad_out in place of x

which is ``keep = bits >= threshold`` with threshold = ceil(p·65536): an element is dropped
with probability threshold/65536, within 2^-16 of p (exactly p when p·65536 is an integer).
p = 1 (or any p above 65535/65536) keeps nothing: threshold 0 with a scale of 0, i.e.
out = x·0, as torch (NaN·0 is NaN: a dropped NaN stays NaN, as in torch's x·mask).

How it is built
---------------
* No mask is stored. The bits come from Philox4x32-10 (``_philox.h``) keyed by the seed and
  indexed by e, so any block of elements computes its own bits: the result is the same for
  any thread count and ISA variant, a call with offset = k continues exactly where a call
  over k elements stopped, and the backward regenerates the forward's mask.
* Sixteen bits per element, eight elements per Philox call: the generator, not memory, is the
  cost here (10 rounds of 2 multiplies per call), and 32 bits per element cost 20-25% more
  time over 16M float32 (docs/kernels/dropout.md). Sixteen bits resolve p to 1.5e-5
  (FlashAttention-2's dropout uses 8).
* One pass: read x, write out. Blocks of BLOCK elements go to the threads; a block draws its
  uniforms into a 4 KiB stack buffer, then one branchless loop selects the scale or 0 and
  multiplies. Outputs from 16 MiB on are written with streaming stores (_stream.h).
Reference: mlkernels/reference/dropout.py.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint16_t, uint32_t, uint64_t

from mlkernels._runtime cimport stream_from
from mlkernels._stream cimport TILE_MAX, mlk_stream_fence, stream_out, tile_len

from mlkernels._half cimport mlk_widen, mlk_narrow_to

cdef extern from "_philox.h" nogil:
    void mlk_philox4x32_10(uint32_t* ctr, const uint32_t* key)
    void mlk_philox_tile(uint64_t t, uint32_t k0, uint32_t k1, uint32_t* words)
    void mlk_philox_u16(uint64_t e0, Py_ssize_t n, uint32_t k0, uint32_t k1, uint16_t* u)

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef enum:
    BLOCK = 2048              # elements whose uniforms are drawn at once (4 KiB, on the stack)
    CHUNK = 16384             # elements per OpenMP work unit
    SERIAL_BELOW = 32768      # the generator is arithmetic: threads pay off early



cdef inline void mask_run(const floating* x, const uint16_t* u, floating* out, Py_ssize_t n,
                          uint32_t threshold, floating scale) noexcept nogil:
    """out[j] = x[j]·(scale if u[j] >= threshold else 0): a select and a multiply."""
    cdef Py_ssize_t j
    cdef floating zero = 0
    for j in range(n):  # simd
        out[j] = x[j] * (scale if u[j] >= threshold else zero)


cdef void dropout_block(const floating* x, floating* out, Py_ssize_t n, uint64_t e0,
                        uint32_t k0, uint32_t k1, uint32_t threshold, floating scale,
                        bint stream) noexcept nogil:
    """One block (n <= BLOCK) of elements e0, e0 + 1, ...: its uniforms, then the mask."""
    cdef uint16_t u[BLOCK]
    cdef floating raw[TILE_MAX + 16]
    cdef floating* tile = <floating*>((<size_t>&raw[0] + 63) & ~(<size_t>63))
    cdef Py_ssize_t p = 0, m
    mlk_philox_u16(e0, n, k0, k1, u)
    if not stream:
        mask_run(x, u, out, n, threshold, scale)
        return
    while p < n:                                 # through an L1 tile, then streamed out
        m = tile_len(out + p, n - p)
        mask_run(x + p, u + p, tile, m, threshold, scale)
        stream_out(out + p, tile, m)
        p += m


cdef void dropout_chunk(const floating* x, floating* out, Py_ssize_t n, uint64_t e0,
                        uint32_t k0, uint32_t k1, uint32_t threshold, floating scale,
                        bint stream) noexcept nogil:
    """One thread's work unit: blocks of BLOCK elements, then (if streamed) a fence that
    makes this thread's streaming stores visible (they are weakly ordered, _stream.h)."""
    cdef Py_ssize_t start = 0
    while start < n:
        dropout_block(x + start, out + start, min(<Py_ssize_t>BLOCK, n - start),
                      e0 + <uint64_t>start, k0, k1, threshold, scale, stream)
        start += BLOCK
    if stream:
        mlk_stream_fence()


def dropout_apply(cnp.ndarray x,      # IN  (n,) the input (forward) or grad_out
                  cnp.ndarray out,    # OUT (n,) may be x itself
                  uint64_t seed, uint64_t offset, uint32_t threshold, double scale,
                  int n_threads):
    """out = x·mask, mask[i] = scale if u(seed, offset + i) >= threshold/65536 else 0.
    Validated by mlkernels/dropout.py: x and out C-contiguous of one float type and the same
    length, offset + n <= 2^64, threshold <= 65535. (ndarrays rather than typed memoryviews:
    no memoryview code in the module, and no view to acquire per call.)"""
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* po = cnp.PyArray_DATA(out)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef bint f64 = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT64
    with nogil:
        if f64:
            dropout_run[double](<const double*>px, <double*>po, n, seed, offset, threshold,
                                scale, n_threads)
        else:
            dropout_run[float](<const float*>px, <float*>po, n, seed, offset, threshold,
                               scale, n_threads)


cdef void dropout_run(const floating* px, floating* po, Py_ssize_t n, uint64_t seed,
                      uint64_t offset, uint32_t threshold, double scale,
                      int n_threads) noexcept nogil:
    """dropout_apply's work: chunks of CHUNK elements over the team (or on this thread)."""
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK, c
    cdef uint32_t k0 = <uint32_t>seed, k1 = <uint32_t>(seed >> 32)
    cdef floating s = <floating>scale
    cdef bint stream = n * <Py_ssize_t>sizeof(floating) >= stream_from()
    cdef int nt = 1 if n < SERIAL_BELOW else n_threads
    if n == 0:
        return
    if nt <= 1:
        dropout_chunk(px, po, n, offset, k0, k1, threshold, s, stream)
    else:
        for c in prange(n_chunks, num_threads=nt, schedule="static"):
            dropout_chunk(px + c * CHUNK, po + c * CHUNK, min(<Py_ssize_t>CHUNK, n - c * CHUNK),
                          offset + <uint64_t>(c * CHUNK), k0, k1, threshold, s, stream)


# ------------------------------------------------------------------ 16-bit storage

cdef void dropout_chunk_half(int kind, const uint16_t* x, uint16_t* out, Py_ssize_t n,
                             uint64_t e0, uint32_t k0, uint32_t k1, uint32_t threshold,
                             float scale, bint stream) noexcept nogil:
    """dropout_chunk on 16-bit values (storage kind of _half.h): each block widened to float32
    (in L1), masked as float32 is, rounded once on store: out = round16(float32 result).
    Why it is fast: 2 bytes read and 2 written per value in place of 4 and 4."""
    cdef uint16_t u[BLOCK]
    cdef float xs[BLOCK]
    cdef float ys[BLOCK]
    cdef Py_ssize_t start = 0, m
    while start < n:
        m = min(<Py_ssize_t>BLOCK, n - start)
        mlk_philox_u16(e0 + <uint64_t>start, m, k0, k1, u)
        mlk_widen(kind, x + start, xs, m)
        mask_run(<const float*>xs, u, ys, m, threshold, scale)
        mlk_narrow_to(kind, ys, out + start, m, stream)
        start += BLOCK
    if stream:
        mlk_stream_fence()


def dropout_apply_half(cnp.ndarray x, cnp.ndarray out, int kind, uint64_t seed,
                       uint64_t offset, uint32_t threshold, double scale, int n_threads):
    """dropout_apply of 16-bit storage seen as uint16 (kind 1 bfloat16, 2 float16): the same
    mask, the float32 result rounded. out may be x itself."""
    cdef Py_ssize_t n = x.shape[0], n_chunks = (n + CHUNK - 1) // CHUNK, c
    cdef uint32_t k0 = <uint32_t>seed, k1 = <uint32_t>(seed >> 32)
    cdef float s = <float>scale
    cdef bint stream = n * 2 >= stream_from()
    cdef int nt = 1 if n < SERIAL_BELOW else n_threads
    if n == 0:
        return
    cdef const uint16_t* px = <const uint16_t*>cnp.PyArray_DATA(x)
    cdef uint16_t* po = <uint16_t*>cnp.PyArray_DATA(out)
    with nogil:
        if nt <= 1:
            dropout_chunk_half(kind, px, po, n, offset, k0, k1, threshold, s, stream)
        else:
            for c in prange(n_chunks, num_threads=nt, schedule="static"):
                dropout_chunk_half(kind, px + c * CHUNK, po + c * CHUNK,
                                   min(<Py_ssize_t>CHUNK, n - c * CHUNK),
                                   offset + <uint64_t>(c * CHUNK), k0, k1, threshold, s, stream)


# ------------------------------------------------------------------ the generator, exposed

cdef uint32_t* words_of(cnp.ndarray a, Py_ssize_t at_least) except NULL:
    """The data of a test hook's uint32 array, checked (the hooks are not behind the API)."""
    if (cnp.PyArray_TYPE(a) != cnp.NPY_UINT32 or cnp.PyArray_SIZE(a) < at_least
            or not cnp.PyArray_CHKFLAGS(a, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_WRITEABLE)):
        raise ValueError("expected a writeable C-contiguous uint32 array of at least %d values" % at_least)
    return <uint32_t*>cnp.PyArray_DATA(a)


def philox4x32_10(cnp.ndarray counter, cnp.ndarray key):
    """Philox4x32-10 of one 128-bit counter (4 words) under a 64-bit key (2 words), in place
    (the known-answer tests call it)."""
    mlk_philox4x32_10(words_of(counter, 4), words_of(key, 2))


def philox_tile(uint64_t tile, uint32_t k0, uint32_t k1, cnp.ndarray words):
    """The 64 words of counters 16·tile ... 16·tile + 15 (``mlk_philox_tile``): words[16j + l]
    is word j of counter 16·tile + l."""
    mlk_philox_tile(tile, k0, k1, words_of(words, 64))


def philox_u16(uint64_t e0, uint32_t k0, uint32_t k1, cnp.ndarray u):
    """The 16-bit uniforms of elements e0, e0 + 1, ..., e0 + len(u) − 1 (``mlk_philox_u16``)."""
    if (cnp.PyArray_TYPE(u) != cnp.NPY_UINT16
            or not cnp.PyArray_CHKFLAGS(u, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_WRITEABLE)):
        raise ValueError("expected a writeable C-contiguous uint16 array")
    if cnp.PyArray_SIZE(u):
        mlk_philox_u16(e0, cnp.PyArray_SIZE(u), k0, k1, <uint16_t*>cnp.PyArray_DATA(u))
