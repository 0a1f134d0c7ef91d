# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/_act.pxd.tp); do not edit.
"""The activations' operation codes, and their loops for the fused linear + activation.

``Op`` numbers the activation kernels in the table's order (``mlkernels/activations.py`` has
the same codes; ``linear(..., activation=name)`` passes them here). ``forward_run`` is the
loop the fused linear + activation (``_linear.pyx``) applies to a band of rows still in
cache, for the rows of the table it takes. The kernels of the public activations -- the same
loops, with threads and streaming stores around them -- are in ``_activations.pyx``, each
beside the entry its public function calls. Generated from ``_activation_table.py``.

``_vecmath.pxd``'s helpers come with this file: ``from mlkernels._act cimport v_exp`` works.
"""
from cython cimport floating

from mlkernels._vecmath cimport (GELU_C, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI, sigmoid_slope,
                                 v_abs, v_exp, v_exp_neg_abs, v_exp_nonpositive, v_expm1,
                                 v_ndtr, v_npdf, v_select, v_sigmoid, v_softplus, v_tanh)

# The operations, in the table's order.
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
    HARDSWISH = 11
    HARDSIGMOID = 12
    MISH = 13


cdef inline void forward_run(Op op, const floating* x, floating* y, Py_ssize_t n, floating a,
                             floating b) noexcept nogil:
    """y = f(x) over n values on the calling thread, for the fused linear + activation: the
    loops of the kernels in _activations.pyx (their math is there). a, b: unused (the fused
    linear takes activations without parameters); another op leaves y as it is."""
    cdef Py_ssize_t i
    cdef floating num, r, u, v, z
    if op == RELU:  # y = max(x, 0); NaN and -0 pass through
        for i in range(n):           # simd
            y[i] = 0 if x[i] < 0 else x[i]
    elif op == GELU:  # y = x·Φ(x), Φ the standard normal CDF
        for i in range(n):           # simd
            y[i] = x[i] * v_ndtr(x[i])
    elif op == GELU_TANH:  # y = 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)
        for i in range(n):           # simd
            v = x[i]
            u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
            y[i] = v * v_sigmoid(u + u)
    elif op == SILU:  # y = x·σ(x)
        for i in range(n):           # simd
            y[i] = x[i] * v_sigmoid(x[i])
    elif op == SIGMOID:  # y = σ(x) = 1/(1 + e^−x)
        for i in range(n):           # simd
            y[i] = v_sigmoid(x[i])
    elif op == TANH:  # y = tanh(x)
        for i in range(n):           # simd
            y[i] = v_tanh(x[i])
    elif op == HARDSWISH:  # y = x·min(max(x + 3, 0), 6)/6
        for i in range(n):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = x[i] * r / <floating>6
    elif op == HARDSIGMOID:  # y = min(max(x + 3, 0), 6)/6
        for i in range(n):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = r / <floating>6
    elif op == MISH:  # y = x·tanh(log(1 + e^x))
        for i in range(n):           # simd
            z = v_exp_neg_abs(x[i])
            # tanh(softplus(x)) = num/den, over z: x ≥ 0: (1 + 2z)/(1 + 2z + 2z²),
            # x < 0: z(z + 2)/(z(z + 2) + 2)
            num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)
            y[i] = x[i] * num / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))
