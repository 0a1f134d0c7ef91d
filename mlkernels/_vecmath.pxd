"""The vectorizable math of _vecmath.h with a fused-type face: ``v_exp(x)`` is mlk_expf for a
float and mlk_exp for a double, so one Cython loop over ``floating`` serves float32 and float64.

The activation loops (_act.pxd, generated from _activation_table.py) and the loss kernels
use these. Each helper keeps its argument's type: libc's fabs returns a double, and a fused
call such as v_exp(-fabs(x)) on a float x would then pick the double (scalar-speed) version.
Constants a loop multiplies by carry the element type too (``<floating>SELU_SCALE``): a bare
literal is a double in the generated C and turns float arithmetic into double arithmetic.
"""
from cython cimport floating
from libc.math cimport fabs, fabsf

cdef extern from "_vecmath.h" nogil:
    float mlk_expf(float x)
    float mlk_expm1f(float x)
    float mlk_log1pf(float x)
    float mlk_tanhf(float x)
    float mlk_sigmoidf(float x)
    float mlk_ndtrf(float x)
    float mlk_exp_half_sqf(float x)
    float mlk_softplusf(float x)
    float mlk_exp_neg_absf(float x)
    float mlk_exp_nonposf(float x)
    double mlk_exp(double x)
    double mlk_expm1(double x)
    double mlk_log1p(double x)
    double mlk_tanh(double x)
    double mlk_sigmoid(double x)
    double mlk_ndtr(double x)
    double mlk_exp_half_sq(double x)
    double mlk_softplus(double x)
    double mlk_exp_neg_abs(double x)

cdef extern from *:
    """
    #define MLK_SELU_ALPHA 1.6732632423543772848170429916717
    #define MLK_SELU_SCALE 1.0507009873554804934193349852946
    #define MLK_SQRT_2_OVER_PI 0.7978845608028654
    #define MLK_GELU_C 0.044715
    #define MLK_INV_SQRT_2PI 0.3989422804014327
    """
    double SELU_ALPHA "MLK_SELU_ALPHA"
    double SELU_SCALE "MLK_SELU_SCALE"
    double SQRT_2_OVER_PI "MLK_SQRT_2_OVER_PI"
    double GELU_C "MLK_GELU_C"
    double INV_SQRT_2PI "MLK_INV_SQRT_2PI"


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* c ? a : b on the bits: both a and b are computed for every element. Written as a plain
     * select, GCC turns `x > 0 ? g[i] : 0` into a load of g masked by x > 0, and ReLU's
     * backward ran slower from memory than leaky_relu's, which loads g for both arms
     * (docs/kernels/activations.md). The mask must be the sign-extended -(c != 0): spelled
     * 0u - (c != 0), GCC saw through it and made the masked load again (objdump: a
     * vmovdqu32 (..),%zmm{%k}{z} in the loop). */
    #define MLK_SELECT_BITS(T, U, S, SUFFIX)                                                 \
    static inline T mlk_select_bits_##SUFFIX(int c, T a, T b) {                             \
        U m = (U)-(S)(c != 0), ia, ib, r;           /* all ones or all zeros */             \
        T f;                                                                                \
        memcpy(&ia, &a, sizeof a); memcpy(&ib, &b, sizeof b);                               \
        r = (ia & m) | (ib & ~m);                                                           \
        memcpy(&f, &r, sizeof f);                                                           \
        return f;                                                                           \
    }
    MLK_SELECT_BITS(float, uint32_t, int32_t, f32)
    MLK_SELECT_BITS(double, uint64_t, int64_t, f64)
    #undef MLK_SELECT_BITS
    """
    float mlk_select_bits_f32(bint c, float a, float b) nogil
    double mlk_select_bits_f64(bint c, double a, double b) nogil


cdef inline floating v_select(bint c, floating a, floating b) noexcept nogil:
    """c ? a : b, with both a and b loaded/computed (see mlk_select_bits_f32)."""
    if floating is float:
        return mlk_select_bits_f32(c, a, b)
    else:
        return mlk_select_bits_f64(c, a, b)

cdef inline floating v_abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)

cdef inline floating v_exp(floating x) noexcept nogil:
    if floating is float:
        return mlk_expf(x)
    else:
        return mlk_exp(x)

cdef inline floating v_exp_neg_abs(floating x) noexcept nogil:
    """e^−|x| in [0, 1]: never overflows, so cheaper than v_exp; NaN passes through."""
    if floating is float:
        return mlk_exp_neg_absf(x)
    else:
        return mlk_exp_neg_abs(x)

cdef inline floating v_exp_nonpositive(floating x) noexcept nogil:
    """e^x where only x ≤ 0 (or NaN) is used: softmax's e^(x − max), the slope of ELU and SELU.
    Cheaper than v_exp (nothing to overflow) and the same values on x ≤ 0: float32 computes
    mlk_expf without its overflow cases, float64 e^−|x|, whose scaling to 2^k is cheaper."""
    if floating is float:
        return mlk_exp_nonposf(x)
    else:
        return mlk_exp_neg_abs(x)

cdef inline floating v_expm1(floating x) noexcept nogil:
    if floating is float:
        return mlk_expm1f(x)
    else:
        return mlk_expm1(x)

cdef inline floating v_tanh(floating x) noexcept nogil:
    if floating is float:
        return mlk_tanhf(x)
    else:
        return mlk_tanh(x)

cdef inline floating v_sigmoid(floating x) noexcept nogil:
    """σ(x) through z = e^-|x|, never overflowing; z/(1+z) keeps the left tail relative."""
    if floating is float:
        return mlk_sigmoidf(x)
    else:
        return mlk_sigmoid(x)

cdef inline floating sigmoid_slope(floating v) noexcept nogil:
    """σ'(v) = σ(v)·σ(−v) = z/(1 + z)², z = e^−|v|: symmetric, never overflowing, and free of
    the cancellation of σ(1 − σ) when σ is near 1 (used by every σ-based backward). Beside
    v_sigmoid(v) in one loop, the two share e^−|v| and 1/(1 + z): the compiler merges them
    as long as both compute e^−|v| the same way (so not through mlk_expf, which SiLU's
    backward paid for: docs/kernels/activations.md)."""
    cdef floating z = v_exp_neg_abs(v)          # the same e^−|v| as v_sigmoid's
    cdef floating r = 1 / (<floating>1 + z)
    return z * r * r


cdef inline floating v_softplus(floating v) noexcept nogil:
    """log(1 + e^v) = max(v, 0) + log1p(e^−|v|): never overflows, relative in the left tail."""
    if floating is float:
        return mlk_softplusf(v)
    else:
        return mlk_softplus(v)


cdef inline floating v_ndtr(floating x) noexcept nogil:
    """Φ(x), the standard normal CDF (0.5·erfc(−x/√2), relative accuracy in the left tail)."""
    if floating is float:
        return mlk_ndtrf(x)
    else:
        return mlk_ndtr(x)

cdef inline floating v_npdf(floating x) noexcept nogil:
    """φ(x) = e^(−x²/2)/√(2π)."""
    if floating is float:
        return mlk_exp_half_sqf(x) * <float>INV_SQRT_2PI
    else:
        return mlk_exp_half_sq(x) * INV_SQRT_2PI
