/* _stream.h -- writing a large output with non-temporal ("streaming") stores.
 *
 * Why: an ordinary store to a line that is not in cache first reads the line from memory
 * (read-for-ownership), then writes it back when it is evicted: an output array costs two
 * memory traffics, not one. A non-temporal store writes whole lines straight to memory, with
 * no read. For a kernel that reads two arrays and writes one (BatchNorm's dx = a·g + b·x̂ + c)
 * that is 3 traffics instead of 4. Measured (AVX-512 EPYC, 2 threads, 16384×1024 float32,
 * a C harness): BatchNorm's backward 7.6 -> 6.8-6.9 ms, a 64 MiB copy 2.85 -> 2.2 ms.
 * The price: the output is not left in cache, so this only pays for outputs far larger than
 * the cache, which the next reader would have to fetch from memory anyway. Callers decide.
 *
 * How: the kernel computes a short tile (TILE_BYTES, in L1) with ordinary vectorized code,
 * then mlk_stream_* copies the tile out with aligned non-temporal stores (the unaligned
 * head and tail of dst with ordinary ones). A 512-byte tile measured as fast as storing
 * straight from the computing loop (6.68 vs 6.67 ms); 1-4 KiB tiles lost a third to a half
 * of the gain.
 * (The row norms compute a whole row, up to 64 KiB, into a per-thread buffer instead: their
 * loops are per row, and the gain there is smaller -- see _norm.pyx.)
 * After its last streamed tile each thread calls mlk_stream_fence(): non-temporal stores are
 * weakly ordered, the fence makes them visible before the kernel returns.
 *
 * Without SSE2 (non-x86 builds) these are plain copies.
 */
#ifndef MLK_STREAM_H
#define MLK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#define MLK_HAVE_STREAM 1
#else
#define MLK_HAVE_STREAM 0
#endif

#if defined(__AVX512F__)
#define MLK_STREAM_ALIGN 64
#elif defined(__AVX__)
#define MLK_STREAM_ALIGN 32
#else
#define MLK_STREAM_ALIGN 16
#endif

/* dst[0:n] = src[0:n]; dst's aligned body with non-temporal stores */
static inline void mlk_stream_f32(float* dst, const float* src, ptrdiff_t n) {
    ptrdiff_t i = 0;
#if MLK_HAVE_STREAM
    for (; i < n && ((uintptr_t)(dst + i) % MLK_STREAM_ALIGN) != 0; i++) dst[i] = src[i];
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
#elif defined(__AVX__)
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
#else
    for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
#endif
#endif
    for (; i < n; i++) dst[i] = src[i];
}

static inline void mlk_stream_f64(double* dst, const double* src, ptrdiff_t n) {
    ptrdiff_t i = 0;
#if MLK_HAVE_STREAM
    for (; i < n && ((uintptr_t)(dst + i) % MLK_STREAM_ALIGN) != 0; i++) dst[i] = src[i];
#if defined(__AVX512F__)
    for (; i + 8 <= n; i += 8) _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
#elif defined(__AVX__)
    for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
#else
    for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
#endif
#endif
    for (; i < n; i++) dst[i] = src[i];
}

static inline void mlk_stream_fence(void) {
#if MLK_HAVE_STREAM
    _mm_sfence();
#endif
}

#endif
