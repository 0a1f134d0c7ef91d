# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/_activations.pyx.tp); do not edit.
"""Activation kernels: the entries of mlkernels/activations.py, PReLU, and a test hook.

Reading guide
-------------
Each public function of ``mlkernels/activations.py`` (``gelu``, ``gelu_backward``, ...)
checks its parameters and calls the entry of the same name here (``gelu`` with
``approximate="tanh"`` calls ``gelu_tanh``). The entry takes the ndarrays themselves, reads
their data pointers (no memoryviews: acquiring one costs more than a small call's whole
work), chooses how the kernel runs (``Run``: threads, streaming) and calls the kernel of the
same name in ``_act.pxd``, whose loop sits under its math. The entries and kernels are
generated from ``_activation_table.py``; PReLU (a learned slope per channel: a weight array
and a sum, not a table row) and the test hook of ``_vecmath.h`` are written in the template.

An entry takes only *plain* arrays: float32 or float64, C-contiguous, aligned, native byte
order, and an ``out`` of the input's shape and dtype that is the input itself or does not
overlap it. Anything else returns ``NotImplemented``, and the public function checks every
argument (naming what is wrong) and copies the input into shape before calling again: small
calls with plain arrays pay for no checks they do not need.
"""
from cython cimport floating
from libc.stdlib cimport calloc, free

cimport numpy as cnp
import numpy as np

cimport mlkernels._act as act
from mlkernels._act cimport Run
from mlkernels._arrays cimport plain, same_shape, share_bytes
from mlkernels._reduce cimport sum_of
from mlkernels._runtime cimport (SERIAL_BELOW_COMPUTE_BOUND, SERIAL_BELOW_MEMORY_BOUND,
                                kernel_threads, stream_from)
from mlkernels._vecmath cimport v_select
from mlkernels._vecmath cimport (mlk_expf, mlk_expm1f, mlk_log1pf, mlk_tanhf, mlk_sigmoidf,
                                 mlk_ndtrf, mlk_exp_half_sqf, mlk_softplusf, mlk_exp, mlk_expm1,
                                 mlk_log1p, mlk_tanh, mlk_sigmoid, mlk_ndtr, mlk_exp_half_sq,
                                 mlk_softplus)

cnp.import_array()


# ================================================================================ plumbing

cdef struct Arrays:
    # A plain call's data: what an entry hands its kernel.
    void* g                   # the gradient of the output (backward)
    void* x
    void* y                   # the output
    Py_ssize_t n
    bint f64


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b):
    """Whether two C-contiguous arrays share any byte; exactly the same memory is fine (an
    elementwise kernel may write in place)."""
    return cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) and share_bytes(a, b)


cdef object output_for(cnp.ndarray x, object out, int typenum):
    """out itself if usable (right type and shape, C-contiguous, writeable), a fresh array if
    out is None, else None."""
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0)
    if type(out) is not np.ndarray:
        return None
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not (plain(o, typenum) and cnp.PyArray_ISWRITEABLE(o) and same_shape(o, x)):
        return None
    return o


cdef object forward_arrays(object x, object out, Arrays* a):
    """The output (out, or a new array) and a's pointers when x and out are plain; None
    otherwise."""
    if type(x) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x
    cdef int typenum = cnp.PyArray_TYPE(xa)
    if (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or not plain(xa, typenum):
        return None
    y = output_for(xa, out, typenum)
    if y is None or overlaps(<cnp.ndarray>y, xa):
        return None
    a.x = cnp.PyArray_DATA(xa)
    a.y = cnp.PyArray_DATA(<cnp.ndarray>y)
    a.n = cnp.PyArray_SIZE(xa)
    a.f64 = typenum == cnp.NPY_FLOAT64
    return y


cdef object backward_arrays(object grad_out, object x, object out, Arrays* a):
    """As forward_arrays, with grad_out of x's shape and dtype (out may be grad_out or x)."""
    if type(x) is not np.ndarray or type(grad_out) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x
    cdef cnp.ndarray ga = <cnp.ndarray>grad_out
    cdef int typenum = cnp.PyArray_TYPE(xa)
    if ((typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or not plain(xa, typenum)
            or not plain(ga, typenum) or not same_shape(ga, xa)):
        return None
    y = output_for(xa, out, typenum)
    if y is None or overlaps(<cnp.ndarray>y, xa) or overlaps(<cnp.ndarray>y, ga):
        return None
    a.g = cnp.PyArray_DATA(ga)
    a.x = cnp.PyArray_DATA(xa)
    a.y = cnp.PyArray_DATA(<cnp.ndarray>y)
    a.n = cnp.PyArray_SIZE(xa)
    a.f64 = typenum == cnp.NPY_FLOAT64
    return y


cdef inline Run run_for(const Arrays* a, Py_ssize_t serial_below, bint streams) noexcept nogil:
    """One thread below serial_below elements, else the runtime's count (_runtime.pxd);
    streamed when the kernel streams and the output is large (stream_from())."""
    cdef Run run
    run.threads = 1 if a.n < serial_below else kernel_threads()
    run.stream = streams and a.n * (8 if a.f64 else 4) >= stream_from()
    return run


# ================================================================================ entries
# One pair per kernel: `<name>(x, out, params...)` -> y, `<name>_backward(grad_out, x, out,
# params...)` -> grad_x, or NotImplemented (see the module's docstring).


def relu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.relu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.relu(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.relu(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def relu_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.relu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.relu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.relu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def leaky_relu(x, out, double negative_slope):
    """y = f(x) into out (or a new array), for mlkernels.activations.leaky_relu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.leaky_relu(<const double*>a.x, <double*>a.y, a.n, negative_slope, run)
        else:
            act.leaky_relu(<const float*>a.x, <float*>a.y, a.n, <float>negative_slope, run)
    return y


def leaky_relu_backward(grad_out, x, out, double negative_slope):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.leaky_relu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.leaky_relu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        negative_slope, run)
        else:
            act.leaky_relu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        <float>negative_slope, run)
    return y


def elu(x, out, double alpha):
    """y = f(x) into out (or a new array), for mlkernels.activations.elu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.elu(<const double*>a.x, <double*>a.y, a.n, alpha, run)
        else:
            act.elu(<const float*>a.x, <float*>a.y, a.n, <float>alpha, run)
    return y


def elu_backward(grad_out, x, out, double alpha):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.elu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.elu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        alpha, run)
        else:
            act.elu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        <float>alpha, run)
    return y


def selu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.selu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.selu(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.selu(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def selu_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.selu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.selu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.selu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def gelu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.gelu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.gelu(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.gelu(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def gelu_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.gelu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.gelu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.gelu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def gelu_tanh(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.gelu
    (approximate="tanh")."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.gelu_tanh(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.gelu_tanh(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def gelu_tanh_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.gelu_backward (approximate="tanh")."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.gelu_tanh_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.gelu_tanh_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def silu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.silu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.silu(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.silu(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def silu_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.silu_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.silu_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.silu_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def swish(x, out, double beta):
    """y = f(x) into out (or a new array), for mlkernels.activations.swish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.swish(<const double*>a.x, <double*>a.y, a.n, beta, run)
        else:
            act.swish(<const float*>a.x, <float*>a.y, a.n, <float>beta, run)
    return y


def swish_backward(grad_out, x, out, double beta):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.swish_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.swish_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        beta, run)
        else:
            act.swish_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        <float>beta, run)
    return y


def sigmoid(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.sigmoid."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.sigmoid(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.sigmoid(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def sigmoid_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.sigmoid_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.sigmoid_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.sigmoid_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def tanh(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.tanh."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.tanh(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.tanh(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def tanh_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.tanh_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.tanh_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.tanh_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def softplus(x, out, double beta, double threshold):
    """y = f(x) into out (or a new array), for mlkernels.activations.softplus."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            act.softplus(<const double*>a.x, <double*>a.y, a.n, beta, threshold, run)
        else:
            act.softplus(<const float*>a.x, <float*>a.y, a.n, <float>beta, <float>threshold, run)
    return y


def softplus_backward(grad_out, x, out, double beta, double threshold):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.softplus_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.softplus_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        beta, threshold, run)
        else:
            act.softplus_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        <float>beta, <float>threshold, run)
    return y


def hardswish(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.hardswish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.hardswish(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.hardswish(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def hardswish_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.hardswish_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.hardswish_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.hardswish_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def hardsigmoid(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.hardsigmoid."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.hardsigmoid(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.hardsigmoid(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def hardsigmoid_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.hardsigmoid_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            act.hardsigmoid_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.hardsigmoid_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


def mish(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.mish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.mish(<const double*>a.x, <double*>a.y, a.n, run)
        else:
            act.mish(<const float*>a.x, <float*>a.y, a.n, run)
    return y


def mish_backward(grad_out, x, out):
    """grad_x = grad_out·f'(x) into out (or a new array), for
    mlkernels.activations.mish_backward."""
    cdef Arrays a
    y = backward_arrays(grad_out, x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            act.mish_backward(<const double*>a.g, <const double*>a.x, <double*>a.y, a.n,
                        run)
        else:
            act.mish_backward(<const float*>a.g, <const float*>a.x, <float*>a.y, a.n,
                        run)
    return y


# ================================================================================ PReLU
# y = x if x > 0 else w[c]·x, with c the channel (axis 1; one channel when x.ndim < 2).
# x is seen as (N, C, S): S = the product of the dimensions after the channel axis.
# Reference: mlkernels/reference/activations.py (prelu, prelu_backward).

cdef void prelu_forward_all(const floating* x, const floating* w, Py_ssize_t n_w,
                            floating* y, Py_ssize_t N, Py_ssize_t C,
                            Py_ssize_t S) noexcept nogil:
    """Scalar math: y[n, c, s] = x if x > 0 else slope·x, slope = w[c] (or w[0]).
    Each inner loop is a select on the bits (v_select: both arms loaded in full, no masked
    load) over contiguous values: the whole array when one slope serves all, a row of channels
    (slopes w[0:C]) when S = 1, else a run of S values."""
    cdef Py_ssize_t n, c, s, total = N * C * S
    cdef floating slope
    cdef const floating* xs
    cdef floating* ys
    if n_w == 1:
        slope = w[0]
        for s in range(total):  # simd
            y[s] = v_select(x[s] > 0, x[s], slope * x[s])
    elif S == 1:
        for n in range(N):
            xs = x + n * C
            ys = y + n * C
            for c in range(C):  # simd
                ys[c] = v_select(xs[c] > 0, xs[c], w[c] * xs[c])
    else:
        for n in range(N):
            for c in range(C):
                slope = w[c]
                xs = x + (n * C + c) * S
                ys = y + (n * C + c) * S
                for s in range(S):  # simd
                    ys[s] = v_select(xs[s] > 0, xs[s], slope * xs[s])


cdef enum:
    PRELU_BLOCK = 256          # terms of grad_w buffered on the stack before their sum


cdef double prelu_backward_run(const floating* g, const floating* x, floating slope,
                               floating* gx, Py_ssize_t n) noexcept nogil:
    """gx = g if x > 0 else slope·g over a run of n values; returns Σ over x ≤ 0 of g·x, in
    double. Block by block: one loop forms the terms of the sum, another adds them (sum_of;
    a running sum in the first loop would be a serial chain and keep it scalar), then gx is
    written -- after the terms, as gx may be g itself. The terms select on the bits
    (v_select): written `0 if x > 0 else g·x`, GCC loaded g masked by x ≤ 0 (_vecmath.pxd)."""
    cdef floating term[PRELU_BLOCK]
    cdef Py_ssize_t start = 0, size, i
    cdef double total = 0
    while start < n:
        size = min(<Py_ssize_t>PRELU_BLOCK, n - start)
        for i in range(size):  # simd
            term[i] = v_select(x[start + i] > 0, <floating>0, g[start + i] * x[start + i])
        total += sum_of(term, size)
        for i in range(size):  # simd
            gx[start + i] = v_select(x[start + i] > 0, g[start + i], slope * g[start + i])
        start += size
    return total


cdef void prelu_backward_all(const floating* g, const floating* x, const floating* w,
                             Py_ssize_t n_w, floating* gx, floating* gw, Py_ssize_t N,
                             Py_ssize_t C, Py_ssize_t S) noexcept nogil:
    """Scalar math: gx = g if x > 0 else slope·g;  gw[c] = Σ over x ≤ 0 of g·x, summed in
    double (over every element when one slope serves all channels). Runs as in the forward;
    with S = 1 the channel sums are a row of double accumulators added row by row."""
    cdef Py_ssize_t n, c
    cdef double total
    cdef double* sums
    cdef const floating* gs
    cdef const floating* xs
    cdef floating* gxs
    if n_w == 1:
        gw[0] = <floating>prelu_backward_run(g, x, w[0], gx, N * C * S)
    elif S == 1:
        sums = <double*>calloc(C, sizeof(double))
        if sums == NULL:
            return      # (C doubles; the caller's arrays are far larger)
        for n in range(N):
            gs = g + n * C
            xs = x + n * C
            gxs = gx + n * C
            for c in range(C):  # simd
                sums[c] += v_select(xs[c] > 0, <floating>0, gs[c] * xs[c])
                gxs[c] = v_select(xs[c] > 0, gs[c], w[c] * gs[c])
        for c in range(C):
            gw[c] = <floating>sums[c]
        free(sums)
    else:
        for c in range(C):
            total = 0
            for n in range(N):
                total += prelu_backward_run(g + (n * C + c) * S, x + (n * C + c) * S, w[c],
                                            gx + (n * C + c) * S, S)
            gw[c] = <floating>total


def prelu_forward(x, w, y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S):
    """y = prelu(x, w) for x seen as (N, C, S) (arrays checked by mlkernels/activations.py)."""
    cdef void* px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void* pw = cnp.PyArray_DATA(<cnp.ndarray>w)
    cdef void* py = cnp.PyArray_DATA(<cnp.ndarray>y)
    cdef Py_ssize_t n_w = cnp.PyArray_SIZE(<cnp.ndarray>w)
    cdef bint f64 = cnp.PyArray_TYPE(<cnp.ndarray>y) == cnp.NPY_FLOAT64
    with nogil:
        if f64:
            prelu_forward_all[double](<double*>px, <double*>pw, n_w, <double*>py, N, C, S)
        else:
            prelu_forward_all[float](<float*>px, <float*>pw, n_w, <float*>py, N, C, S)


def prelu_backward(g, x, w, gx, gw, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S):
    """(grad_x, grad_weight) of prelu (arrays checked by mlkernels/activations.py)."""
    cdef void* pg = cnp.PyArray_DATA(<cnp.ndarray>g)
    cdef void* px = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void* pw = cnp.PyArray_DATA(<cnp.ndarray>w)
    cdef void* pgx = cnp.PyArray_DATA(<cnp.ndarray>gx)
    cdef void* pgw = cnp.PyArray_DATA(<cnp.ndarray>gw)
    cdef Py_ssize_t n_w = cnp.PyArray_SIZE(<cnp.ndarray>w)
    cdef bint f64 = cnp.PyArray_TYPE(<cnp.ndarray>gx) == cnp.NPY_FLOAT64
    with nogil:
        if f64:
            prelu_backward_all[double](<double*>pg, <double*>px, <double*>pw, n_w,
                                       <double*>pgx, <double*>pgw, N, C, S)
        else:
            prelu_backward_all[float](<float*>pg, <float*>px, <float*>pw, n_w, <float*>pgx,
                                      <float*>pgw, N, C, S)


# ================================================================================ test hook
VECMATH_FLOAT = ["expf", "expm1f", "log1pf", "tanhf", "sigmoidf", "exp_half_sqf", "ndtrf",
                 "softplusf"]
VECMATH_DOUBLE = ["exp", "expm1", "log1p", "tanh", "sigmoid", "exp_half_sq", "ndtr", "softplus"]


cdef void apply_vecmath(int which, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    """y = the which-th function of _vecmath.h (float32 or float64 list above) of x, in a loop
    of its own, vectorized as the kernels' loops are."""
    cdef Py_ssize_t i
    if floating is float:
        if which == 0:
            for i in range(n):         # simd
                y[i] = mlk_expf(x[i])
        elif which == 1:
            for i in range(n):         # simd
                y[i] = mlk_expm1f(x[i])
        elif which == 2:
            for i in range(n):         # simd
                y[i] = mlk_log1pf(x[i])
        elif which == 3:
            for i in range(n):         # simd
                y[i] = mlk_tanhf(x[i])
        elif which == 4:
            for i in range(n):         # simd
                y[i] = mlk_sigmoidf(x[i])
        elif which == 5:
            for i in range(n):         # simd
                y[i] = mlk_exp_half_sqf(x[i])
        elif which == 6:
            for i in range(n):         # simd
                y[i] = mlk_ndtrf(x[i])
        else:
            for i in range(n):         # simd
                y[i] = mlk_softplusf(x[i])
    else:
        if which == 0:
            for i in range(n):         # simd
                y[i] = mlk_exp(x[i])
        elif which == 1:
            for i in range(n):         # simd
                y[i] = mlk_expm1(x[i])
        elif which == 2:
            for i in range(n):         # simd
                y[i] = mlk_log1p(x[i])
        elif which == 3:
            for i in range(n):         # simd
                y[i] = mlk_tanh(x[i])
        elif which == 4:
            for i in range(n):         # simd
                y[i] = mlk_sigmoid(x[i])
        elif which == 5:
            for i in range(n):         # simd
                y[i] = mlk_exp_half_sq(x[i])
        elif which == 6:
            for i in range(n):         # simd
                y[i] = mlk_ndtr(x[i])
        else:
            for i in range(n):         # simd
                y[i] = mlk_softplus(x[i])


def vecmath(str name, const floating[::1] x):
    """Apply one function of _vecmath.h to x: a float32 one (``VECMATH_FLOAT``) to float32 x,
    a float64 one (``VECMATH_DOUBLE``) to float64 x. For tests/test_vecmath.py, which
    measures ulps."""
    cdef Py_ssize_t n = x.shape[0]
    names = VECMATH_FLOAT if floating is float else VECMATH_DOUBLE
    if name not in names:
        raise ValueError(f"vecmath: {name!r} is not one of {names} (for {np.asarray(x).dtype})")
    cdef int which = names.index(name)
    y = np.empty(n, np.float32 if floating is float else np.float64)
    cdef floating[::1] out = y
    if n:
        with nogil:
            apply_vecmath(which, &x[0], &out[0], n)
    return y
