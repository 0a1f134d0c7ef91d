/* _half.h -- 16-bit storage: bfloat16 and float16 values widened to float32 and rounded back.
 *
 * The storage dtypes (ml_dtypes.bfloat16, numpy.float16) only ever hold data: every kernel
 * widens its 16-bit inputs to float32, computes exactly what its float32 version computes, and
 * rounds each result once, to nearest with ties to even, when it stores it. So a 16-bit result
 * is the float32 kernel's result, rounded; NaN stays NaN (quiet); ±inf and ±0 keep their sign.
 *
 *   bfloat16: the upper half of a float32 (1 sign, 8 exponent, 7 fraction bits).
 *     widen:  bits << 16 (exact).
 *     round:  (u + 0x7FFF + ((u >> 16) & 1)) >> 16 on the float32's bits u: adding just under
 *             half a unit of the kept part, plus the kept part's lowest bit, carries into it
 *             exactly when the dropped half is above one half, or one half with an odd kept
 *             part (ties to even); a carry out of the fraction moves the exponent up, and the
 *             largest finite values round to inf, as they should. NaN: the quiet NaN of its
 *             sign, 0x7FC0 | sign, payload dropped, as ml_dtypes does (the add could carry
 *             a NaN's payload into inf).
 *   float16 (IEEE binary16: 5 exponent bits, bias 15, 10 fraction bits, subnormals below
 *   2^-14): see mlk_f16_round / mlk_f16_widen below.
 *
 * Two paths, the same bits:
 * * portable: the scalar functions below, integer arithmetic and selects with no branch,
 *   which GCC vectorizes (the `simd` loops); every ISA variant has them;
 * * hardware: AVX-512 BF16's vcvtne2ps2bf16 (32 floats -> 32 bf16 in one instruction) in the
 *   avx512 variant when the CPU has it (checked at run time, once: a CPU feature beyond
 *   x86-64-v4, so a runtime branch per call of mlk_narrow rather than a fourth build of every
 *   module), and F16C's vcvtps2ph / vcvtph2ps in the avx2 and avx512 variants (F16C is part of
 *   x86-64-v3: known at compile time). The baseline and avx2 variants round bf16 with the
 *   portable code, so MLKERNELS_ISA=avx2 (and the tests' runs over every variant) exercise it.
 *   vcvtneps2bf16 treats a float32 subnormal input as zero (it behaves as if DAZ were set)
 *   and keeps NaN payloads; those lanes are redone with the portable formula, so both paths
 *   agree on every input.
 *
 * Agreement with ml_dtypes (bfloat16) and NumPy (float16), tested bit for bit on every
 * variant: every non-NaN value both ways; NaN -> bf16 gives 0x7FC0 | sign as ml_dtypes;
 * NaN -> f16 and f16 -> float32 as NumPy for quiet NaNs (payload top bits kept), while a
 * signalling NaN comes out quiet (as F16C does; NumPy keeps it signalling). Kernels never
 * produce signalling NaNs, so only an input could carry one.
 *
 * Kernels use the row functions mlk_widen / mlk_narrow (kind MLK_BF16 or MLK_F16) on short
 * runs that stay in L1, and mlk_narrow_stream for outputs written with streaming stores
 * (_stream.h says when and why).
 */
#ifndef MLK_HALF_H
#define MLK_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_stream.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

enum { MLK_NATIVE = 0, MLK_BF16 = 1, MLK_F16 = 2 };   /* storage kinds */

static inline uint32_t mlk_float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float mlk_bits_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---------------------------------------------------------------- bfloat16, portable */

static inline float mlk_bf16_widen(uint16_t h) { return mlk_bits_float((uint32_t)h << 16); }

static inline uint16_t mlk_bf16_round(float f) {
    uint32_t u = mlk_float_bits(f);
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = ((u >> 16) & 0x8000u) | 0x7FC0u;
    return (uint16_t)((u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}

/* ---------------------------------------------------------------- float16, portable */

/* float32 -> float16, to nearest even, branchless (after F. Giesen's float_to_half_fast3_rtne):
 *   |f| >= 65520 (2^16 − 2^4: halfway past the largest half, 65504)  -> inf; NaN -> quiet NaN
 *       with the top 9 payload bits kept (as vcvtps2ph);
 *   |f| < 2^-14 (half's smallest normal)  -> subnormal or 0: adding 0.5 (2^-1) lines the
 *       half's 10 fraction bits up with the bottom of the float32's, and the float addition
 *       itself rounds to nearest even;
 *   else normal: rebias the exponent (−112 << 23) and round the 13 dropped bits as for bf16. */
static inline uint16_t mlk_f16_round(float f) {
    uint32_t u = mlk_float_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7FFFFFFFu;
    uint32_t special = a > 0x7F800000u ? (0x7E00u | ((a >> 13) & 0x3FFu)) : 0x7C00u;
    uint32_t sub = mlk_float_bits(mlk_bits_float(a) + 0.5f) - 0x3F000000u;
    uint32_t normal = (a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13;  /* 0xC8000000 = −112 << 23 */
    uint32_t h = a >= 0x477FF000u ? special : a < 0x38800000u ? sub : normal;
    return (uint16_t)(h | sign);
}

/* float16 -> float32, exact, branchless: the exponent rebiased (+112 << 23); inf/NaN get the
 * rest of the float32's exponent range (+112 more); subnormals and zero are renormalized by a
 * float subtraction of 2^-14 (the magic value with the same bits lined up). */
static inline float mlk_f16_widen(uint16_t h) {
    uint32_t shifted = ((uint32_t)h & 0x7FFFu) << 13;           /* exponent and fraction */
    uint32_t exponent = shifted & 0x0F800000u;
    uint32_t normal = shifted + 0x38000000u;                    /* (127 − 15) << 23 */
    uint32_t special = shifted + 0x70000000u;                   /* + (128 − 16) << 23 more */
    uint32_t small = mlk_float_bits(mlk_bits_float(shifted + 0x38800000u) - 6.103515625e-05f);
    uint32_t a = exponent == 0x0F800000u ? special : exponent == 0 ? small : normal;
    return mlk_bits_float(a | (((uint32_t)h & 0x8000u) << 16));
}

/* ---------------------------------------------------------------- row loops, portable */

static inline void mlk_widen_bf16_portable(const uint16_t* src, float* dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = mlk_bf16_widen(src[i]);  /* simd */
}
static inline void mlk_narrow_bf16_portable(const float* src, uint16_t* dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = mlk_bf16_round(src[i]);  /* simd */
}
static inline void mlk_widen_f16_portable(const uint16_t* src, float* dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = mlk_f16_widen(src[i]);  /* simd */
}
static inline void mlk_narrow_f16_portable(const float* src, uint16_t* dst, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = mlk_f16_round(src[i]);  /* simd */
}

/* ---------------------------------------------------------------- hardware paths */

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) \
    && (defined(__GNUC__) || defined(__clang__))
#define MLK_HAVE_BF16_HW_PATH 1
/* The lanes vcvtneps2bf16 rounds differently from mlk_bf16_round: subnormals (it flushes
 * them to zero) and NaNs (it keeps the payload's top bits, where ml_dtypes, and so we, give
 * the plain quiet NaN of the sign). Rare in data: one vfpclassps (AVX512DQ, in x86-64-v4)
 * per 16 values finds them -- class bits quiet NaN 0x01, denormal 0x20, signalling NaN 0x80
 * -- and a branch not taken. (Found with two compares and two tests, the check cost as much
 * as the conversion itself: docs/kernels/bf16.md.) */
static inline __mmask16 mlk_bf16_fixup_lanes(__m512 v) {
    return _mm512_fpclass_ps_mask(v, 0x01 | 0x20 | 0x80);
}

__attribute__((target("avx512bf16")))
static void mlk_narrow_bf16_avx512bf16(const float* src, uint16_t* dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
        __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512((void*)(dst + i), both);
        if (mlk_bf16_fixup_lanes(lo) | mlk_bf16_fixup_lanes(hi))
            mlk_narrow_bf16_portable(src + i, dst + i, 32);
    }
    mlk_narrow_bf16_portable(src + i, dst + i, n - i);
}

static int mlk_bf16_hw_state = -1;     /* -1: not asked yet; 0/1: whether to use the above */

static inline int mlk_bf16_hw(void) {
    if (mlk_bf16_hw_state < 0) {
        __builtin_cpu_init();
        mlk_bf16_hw_state = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return mlk_bf16_hw_state;
}
#else
#define MLK_HAVE_BF16_HW_PATH 0
static inline int mlk_bf16_hw(void) { return 0; }
#endif

#if defined(__F16C__)
#define MLK_HAVE_F16C 1
static inline void mlk_widen_f16_f16c(const uint16_t* src, float* dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(src + i))));
#endif
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i))));
    for (; i < n; i++) dst[i] = mlk_f16_widen(src[i]);
}
static inline void mlk_narrow_f16_f16c(const float* src, uint16_t* dst, ptrdiff_t n) {
    ptrdiff_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i*)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = mlk_f16_round(src[i]);
}
#else
#define MLK_HAVE_F16C 0
#endif

/* ---------------------------------------------------------------- what kernels call */

/* dst[0:n] = src[0:n] widened to float32 (kind MLK_BF16 or MLK_F16) */
static inline void mlk_widen(int kind, const uint16_t* src, float* dst, ptrdiff_t n) {
    if (kind == MLK_BF16) {
        mlk_widen_bf16_portable(src, dst, n);        /* a shift: nothing faster exists */
    } else {
#if MLK_HAVE_F16C
        mlk_widen_f16_f16c(src, dst, n);
#else
        mlk_widen_f16_portable(src, dst, n);
#endif
    }
}

/* dst[0:n] = src[0:n] rounded to nearest even (kind MLK_BF16 or MLK_F16) */
static inline void mlk_narrow(int kind, const float* src, uint16_t* dst, ptrdiff_t n) {
    if (kind == MLK_BF16) {
#if MLK_HAVE_BF16_HW_PATH
        if (mlk_bf16_hw()) { mlk_narrow_bf16_avx512bf16(src, dst, n); return; }
#endif
        mlk_narrow_bf16_portable(src, dst, n);
    } else {
#if MLK_HAVE_F16C
        mlk_narrow_f16_f16c(src, dst, n);
#else
        mlk_narrow_f16_portable(src, dst, n);
#endif
    }
}

/* Which path mlk_narrow takes for bf16 and f16 here: 1 hardware, 0 portable (for info()). */
static inline int mlk_bf16_uses_hardware(void) { return MLK_HAVE_BF16_HW_PATH && mlk_bf16_hw(); }
static inline int mlk_f16_uses_hardware(void) { return MLK_HAVE_F16C; }

enum { MLK_NARROW_TILE = 256 };   /* values rounded into an L1 tile before streaming it out */

/* dst[0:n] = src[0:n] rounded, written with streaming stores (_stream.h): rounded a tile at a
 * time into L1, the tile then streamed out; tiles end on 512-byte boundaries of dst. */
static inline void mlk_narrow_stream(int kind, const float* src, uint16_t* dst, ptrdiff_t n) {
    uint16_t tile[MLK_NARROW_TILE] __attribute__((aligned(64)));
    ptrdiff_t p = 0;
    while (p < n) {
        ptrdiff_t to_boundary = (ptrdiff_t)((511 - (uintptr_t)(dst + p) % 512) / 2 + 1);
        ptrdiff_t m = to_boundary < n - p ? to_boundary : n - p;
        mlk_narrow(kind, src + p, tile, m);
        mlk_stream_u16(dst + p, tile, m);
        p += m;
    }
}

/* dst[0:n] = src[0:n] rounded: with streaming stores when the caller's output is large
 * (stream), else through the cache -- the choice every 16-bit kernel's store makes. */
static inline void mlk_narrow_to(int kind, const float* src, uint16_t* dst, ptrdiff_t n,
                                 int stream) {
    if (stream)
        mlk_narrow_stream(kind, src, dst, n);
    else
        mlk_narrow(kind, src, dst, n);
}

#endif
