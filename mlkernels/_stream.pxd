"""Streaming (non-temporal) stores for large outputs: the C of _stream.h (which says why and
what it measured) with a fused-type face.

A kernel computes a short tile in L1, then ``stream_out`` writes it to memory without first
reading the destination lines. ``tile_len`` cuts a span into tiles that end on TILE_BYTES
boundaries of the destination, so that every tile after the first is aligned. The tile itself
is a ``TileMemory`` on the thread's stack, seen through ``tile_in`` (line-aligned). The size
from which kernels stream is one setting for the whole process: ``stream_from()`` in
_runtime.pxd (``mlkernels._runtime.set_stream_from`` changes it, for tests).
"""
from cython cimport floating

cdef extern from "_stream.h" nogil:
    void mlk_stream_f32(float* dst, const float* src, Py_ssize_t n)
    void mlk_stream_f64(double* dst, const double* src, Py_ssize_t n)
    void mlk_stream_fence()


cdef enum:
    TILE_BYTES = 512                 # 128 float32 / 64 float64: stays in L1 (see _stream.h)
    TILE_MAX = TILE_BYTES // 4       # elements, for the smaller type
    # Outputs of at least this many bytes are streamed. Half our 32 MiB L3: a smaller output
    # can stay in cache for its next reader, and streaming it lost; from 12-16 MiB on
    # streaming won (docs/kernels/norm.md has the figures).
    STREAM_FROM_BYTES = 16 << 20


cdef inline void stream_out(floating* dst, const floating* tile, Py_ssize_t n) noexcept nogil:
    """dst[0:n] = tile[0:n], bypassing the cache."""
    if floating is float:
        mlk_stream_f32(dst, tile, n)
    else:
        mlk_stream_f64(dst, tile, n)


cdef inline Py_ssize_t tile_len(const floating* dst, Py_ssize_t left) noexcept nogil:
    """Elements from dst up to its next TILE_BYTES boundary, at least 1 (a misaligned dst
    only straddles it), at most left."""
    cdef Py_ssize_t to_boundary = ((TILE_BYTES - 1 - <size_t>dst % TILE_BYTES) // sizeof(floating)
                                   + 1)
    return to_boundary if to_boundary < left else left


ctypedef struct TileMemory:
    # One tile on a thread's stack, with the slack to start it on a cache line.
    char bytes[TILE_BYTES + 64]


cdef inline floating* tile_in(TileMemory* memory, const floating* like) noexcept nogil:
    """The line-aligned tile in memory, of like's element type (like's value is not used)."""
    return <floating*>((<size_t>&memory.bytes[0] + 63) & ~(<size_t>63))
