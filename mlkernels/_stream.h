/* _stream.h -- writing a large output with non-temporal ("streaming") stores.
 *
 * Why: an ordinary store to a line that is not in cache first reads the line from memory
 * (read-for-ownership), then writes it back when it is evicted: an output array costs two
 * memory traffics, not one. A non-temporal store writes whole lines straight to memory, with
 * no read. For a kernel that reads two arrays and writes one (BatchNorm's dx = a·g + b·x̂ + c)
 * that is 3 traffics instead of 4.
 * The price: the output is not left in cache, so this only pays for outputs far larger than
 * the cache, which the next reader would have to fetch from memory anyway. Callers decide.
 *
 * How: the kernel computes a short tile (TILE_BYTES, in L1) with ordinary vectorized code,
 * then mlk_stream_* copies the tile out with aligned non-temporal stores (the unaligned
 * head and tail of dst with ordinary ones). A 512-byte tile was as fast as storing straight
 * from the computing loop; larger tiles (1-4 KiB) lost much of the gain.
 * (The row norms compute a whole row, up to 64 KiB, into a per-thread buffer instead: their
 * loops are per row.) Measured figures: docs/kernels/norm.md.
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

/* One non-temporal store of a vector loaded from s to the aligned d; PS is ps or pd. */
#if !MLK_HAVE_STREAM
#define MLK_STREAM_VECTOR(PS, d, s)
#elif defined(__AVX512F__)
#define MLK_STREAM_VECTOR(PS, d, s) _mm512_stream_##PS((d), _mm512_loadu_##PS(s))
#elif defined(__AVX__)
#define MLK_STREAM_VECTOR(PS, d, s) _mm256_stream_##PS((d), _mm256_loadu_##PS(s))
#else
#define MLK_STREAM_VECTOR(PS, d, s) _mm_stream_##PS((d), _mm_loadu_##PS(s))
#endif

/* dst[0:n] = src[0:n]: dst's unaligned head and tail with ordinary stores, its aligned body
 * with non-temporal ones (all ordinary without SSE2). No simd marker: the body loop is vector
 * code already (intrinsics), the head and tail loops copy less than one vector. */
#define MLK_STREAM_COPY(T, SUFFIX, PS)                                                      \
static inline void mlk_stream_##SUFFIX(T* dst, const T* src, ptrdiff_t n) {                 \
    const ptrdiff_t lanes = MLK_STREAM_ALIGN / (ptrdiff_t)sizeof(T);                        \
    ptrdiff_t i = 0;                                                                        \
    if (MLK_HAVE_STREAM) {                                                                  \
        for (; i < n && ((uintptr_t)(dst + i) % MLK_STREAM_ALIGN) != 0; i++) dst[i] = src[i];\
        for (; i + lanes <= n; i += lanes) MLK_STREAM_VECTOR(PS, dst + i, src + i);          \
    }                                                                                       \
    for (; i < n; i++) dst[i] = src[i];                                                     \
}

MLK_STREAM_COPY(float, f32, ps)
MLK_STREAM_COPY(double, f64, pd)
#undef MLK_STREAM_VECTOR

/* 16-bit values (bfloat16, float16 storage: _half.h), the same way, with integer vectors */
#if !MLK_HAVE_STREAM
#define MLK_STREAM_VECTOR(PS, d, s)
#elif defined(__AVX512F__)
#define MLK_STREAM_VECTOR(PS, d, s) _mm512_stream_si512((void*)(d), _mm512_loadu_si512((const void*)(s)))
#elif defined(__AVX__)
#define MLK_STREAM_VECTOR(PS, d, s) _mm256_stream_si256((__m256i*)(d), _mm256_loadu_si256((const __m256i*)(s)))
#else
#define MLK_STREAM_VECTOR(PS, d, s) _mm_stream_si128((__m128i*)(d), _mm_loadu_si128((const __m128i*)(s)))
#endif
MLK_STREAM_COPY(uint16_t, u16, si)

#undef MLK_STREAM_COPY
#undef MLK_STREAM_VECTOR

static inline void mlk_stream_fence(void) {
#if MLK_HAVE_STREAM
    _mm_sfence();
#endif
}

#endif
