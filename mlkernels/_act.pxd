"""Activation math and loops, inline, shared by _activations.pyx and _linear.pyx (the fused
linear + activation). See _activations.pyx for how the kernels are built."""
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
    double mlk_exp(double x)
    double mlk_expm1(double x)
    double mlk_log1p(double x)
    double mlk_tanh(double x)
    double mlk_sigmoid(double x)
    double mlk_ndtr(double x)
    double mlk_exp_half_sq(double x)
    double mlk_softplus(double x)
    double mlk_exp_neg_abs(double x)

# The operations (mlkernels/activations.py names them). Parameters a, b per operation:
#   LEAKY_RELU a = negative_slope;  ELU a = alpha;  SWISH a = beta;
#   SOFTPLUS a = beta, b = threshold
cdef enum Op:
    RELU = 0
    LEAKY_RELU = 1
    ELU = 2
    SELU = 3
    GELU = 4
    GELU_TANH = 5
    SILU = 6
    SWISH = 7
    SIGMOID = 8
    TANH = 9
    SOFTPLUS = 10

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
     * backward ran 1.4x slower from memory (16M float32: 4.7-5.0 ms; 3.5 ms for leaky_relu's,
     * which loads g for both arms). The mask must be the sign-extended -(c != 0): spelled
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


# ------------------------------------------------------------------ math, by type
# Every helper keeps the argument's type: libc's fabs returns a double, and a fused call
# such as v_exp(-fabs(x)) on a float x would then pick the double (scalar libm) version.
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

cdef inline floating v_exp_nonpositive(floating x) noexcept nogil:
    """e^x where only x ≤ 0 is used (the slope of ELU and SELU): float64 computes e^−|x|, whose
    scaling to 2^k is cheaper (nothing to overflow); float32 keeps mlk_expf."""
    if floating is float:
        return mlk_expf(x)
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
    as long as both compute e^−|v| the same way (measured, 1M float32, 1 thread: SiLU's
    backward 0.29 ms against its forward's 0.24 ms; 0.40 ms while this slope still went
    through mlk_expf and the sigmoid through the cheaper mlk_exp_neg_absf)."""
    cdef floating z
    if floating is float:
        z = mlk_exp_neg_absf(v)                 # the same e^−|v| as mlk_sigmoidf's
    else:
        z = mlk_exp_neg_abs(v)                  # the same e^−|v| as mlk_sigmoid's
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


# ------------------------------------------------------------------ forward and backward
# Each pair: y = f(x) over a run of n elements, then grad_x = g·f'(x). The backward of f
# takes the forward's input x, as in torch (for GELU the derivative needs x, not y).
# Written for the vectorizer: every expensive value is computed for all elements first and
# then selected with a cheap `a if c else b` (gcc if-converts a select, but not an expensive
# arm), and constants carry the element type (<floating>1): a bare literal is a double in
# the generated C and would turn float arithmetic into double arithmetic.

cdef inline void forward_run(Op op, const floating* x, floating* y, Py_ssize_t n,
                      floating a, floating b) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, u, e, inv_a
    if op == RELU:                     # max(x, 0); NaN and -0 pass through
        for i in range(n):             # simd
            y[i] = 0 if x[i] < 0 else x[i]
    elif op == LEAKY_RELU:             # x if x > 0 else a·x
        for i in range(n):             # simd
            y[i] = x[i] if x[i] > 0 else a * x[i]
    elif op == ELU:                    # x if x > 0 else α(e^x − 1)
        for i in range(n):             # simd
            e = a * v_expm1(x[i])
            y[i] = x[i] if x[i] > 0 else e
    elif op == SELU:                   # λ(x if x > 0 else α(e^x − 1))
        for i in range(n):             # simd
            e = <floating>SELU_ALPHA * v_expm1(x[i])
            y[i] = <floating>SELU_SCALE * (x[i] if x[i] > 0 else e)
    elif op == GELU:                   # x·Φ(x)
        for i in range(n):             # simd
            y[i] = x[i] * v_ndtr(x[i])
    elif op == GELU_TANH:              # 0.5x(1 + tanh(u)) = x·σ(2u), u = √(2/π)(x + 0.044715x³)
        for i in range(n):             # simd
            v = x[i]
            u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
            y[i] = v * v_sigmoid(u + u)   # σ form: no 1 + tanh cancellation for x << 0
    elif op == SILU:                   # x·σ(x)
        for i in range(n):             # simd
            y[i] = x[i] * v_sigmoid(x[i])
    elif op == SWISH:                  # x·σ(βx)
        for i in range(n):             # simd
            y[i] = x[i] * v_sigmoid(a * x[i])
    elif op == SIGMOID:
        for i in range(n):             # simd
            y[i] = v_sigmoid(x[i])
    elif op == TANH:
        for i in range(n):             # simd
            y[i] = v_tanh(x[i])
    elif op == SOFTPLUS:               # log(1 + e^(βx))/β, or x where βx > threshold
        inv_a = 1 / a                  # one division per call, not per element
        for i in range(n):             # simd
            v = a * x[i]
            e = v_softplus(v) * inv_a
            y[i] = x[i] if v > b else e


cdef inline void backward_run(Op op, const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                       floating a, floating b) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v, u, d, xc, e
    if op == RELU:                     # f' = 1 if x > 0 else 0 (0 at the kink); NaN x -> NaN
        for i in range(n):             # simd
            gx[i] = v_select(x[i] > 0, g[i], x[i] if x[i] != x[i] else 0)
    elif op == LEAKY_RELU:
        for i in range(n):             # simd
            gx[i] = g[i] if x[i] > 0 else a * g[i]
    elif op == ELU:                    # f' = 1 if x > 0 else α·e^x
        for i in range(n):             # simd
            e = a * v_exp_nonpositive(x[i])
            gx[i] = g[i] * (<floating>1 if x[i] > 0 else e)
    elif op == SELU:
        for i in range(n):             # simd
            e = <floating>SELU_ALPHA * v_exp_nonpositive(x[i])
            gx[i] = g[i] * <floating>SELU_SCALE * (<floating>1 if x[i] > 0 else e)
    elif op == GELU:                   # f' = Φ(x) + x·φ(x)
        for i in range(n):             # simd
            gx[i] = g[i] * (v_ndtr(x[i]) + x[i] * v_npdf(x[i]))
    elif op == GELU_TANH:              # f' = σ(2u) + 2x·σ'(2u)·u'
        for i in range(n):             # simd
            v = x[i]
            u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
            # σ'(2u) is exactly 0 for |x| > 1e4: clamp x there so that x·u' stays finite
            xc = v if v_abs(v) < 1e4 else (<floating>1e4 if v > 0 else <floating>-1e4)
            d = <floating>SQRT_2_OVER_PI * (<floating>1 + <floating>(3 * GELU_C) * xc * xc)
            gx[i] = g[i] * (v_sigmoid(u + u) + (xc + xc) * sigmoid_slope(u + u) * d)
    elif op == SILU:                   # f' = σ(x) + x·σ'(x)
        for i in range(n):             # simd
            gx[i] = g[i] * (v_sigmoid(x[i]) + x[i] * sigmoid_slope(x[i]))
    elif op == SWISH:                  # f' = σ(βx) + βx·σ'(βx)
        for i in range(n):             # simd
            v = a * x[i]
            gx[i] = g[i] * (v_sigmoid(v) + v * sigmoid_slope(v))
    elif op == SIGMOID:                # f' = σ'(x)
        for i in range(n):             # simd
            gx[i] = g[i] * sigmoid_slope(x[i])
    elif op == TANH:                   # f' = 1 − tanh² = 4σ'(2x)  (no cancellation near ±1)
        for i in range(n):             # simd
            gx[i] = g[i] * (<floating>4 * sigmoid_slope(x[i] + x[i]))
    elif op == SOFTPLUS:               # f' = σ(βx), or 1 where βx > threshold
        for i in range(n):             # simd
            v = a * x[i]
            e = v_sigmoid(v)
            gx[i] = g[i] * (<floating>1 if v > b else e)
