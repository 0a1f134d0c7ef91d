"""Activation kernels: y = f(x) and grad_x = grad_out · f'(x), elementwise.

How it is built
---------------
* One loop per activation and direction, each branchless (selects, not ifs) and calling only
  the inline math of ``_vecmath.h`` for float32, so GCC vectorizes it (16 lanes with
  AVX-512). float64 calls libm (correct, but scalar).
* One pass: read x (and grad_out), write y. A NumPy composition of GELU makes 5-10 passes and
  calls scipy's scalar erf.
* Large arrays are cut into chunks of ``CHUNK`` elements handed to OpenMP threads; below a
  threshold the call stays serial (opening a parallel region costs microseconds).
* The per-call cost on tiny arrays is kept small: ``unary``/``binary`` take the ndarray
  objects and read their data pointers directly (no memoryview acquisition); anything
  unusual (strides, byte order, a wrong ``out``...) returns ``NotImplemented`` and the
  Python API (mlkernels/activations.py) takes the fully validated path instead.
"""
from cython cimport floating
from cython.parallel cimport prange

from mlkernels._act cimport (Op, RELU, LEAKY_RELU, ELU, SELU, GELU, GELU_TANH, SILU, SWISH,
                             SIGMOID, TANH, SOFTPLUS, forward_run, backward_run)
from mlkernels._act cimport mlk_expf, mlk_expm1f, mlk_log1pf, mlk_tanhf, mlk_sigmoidf
from mlkernels._act cimport mlk_ndtrf, mlk_exp_half_sqf, mlk_softplusf

cimport numpy as cnp
from mlkernels._arrays cimport plain, same_shape, share_bytes
import numpy as np

from mlkernels._threads import get_num_threads

cnp.import_array()

cdef enum:
    CHUNK = 16384                  # elements per OpenMP work item (64 KiB of float32)
    SERIAL_BELOW_CHEAP = 262144    # relu-like ops: memory-bound, threads pay off late
    SERIAL_BELOW = 32768           # ops with exp/erf/tanh: compute-bound, threads pay off early

cdef inline bint is_cheap(Op op) noexcept nogil:
    return op == RELU or op == LEAKY_RELU


cdef void forward_all(Op op, const floating* x, floating* y, Py_ssize_t n, floating a,
                      floating b, int n_threads) noexcept nogil:
    cdef Py_ssize_t c, n_chunks = (n + CHUNK - 1) // CHUNK
    if n_threads <= 1:
        forward_run(op, x, y, n, a, b)
        return
    for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
        forward_run(op, x + c * CHUNK, y + c * CHUNK, min(<Py_ssize_t>CHUNK, n - c * CHUNK), a, b)


cdef void backward_all(Op op, const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                       floating a, floating b, int n_threads) noexcept nogil:
    cdef Py_ssize_t c, n_chunks = (n + CHUNK - 1) // CHUNK
    if n_threads <= 1:
        backward_run(op, g, x, gx, n, a, b)
        return
    for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
        backward_run(op, g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                     min(<Py_ssize_t>CHUNK, n - c * CHUNK), a, b)


# ------------------------------------------------------------------ entry points

cdef int threads_for(Op op, Py_ssize_t n):
    if n < (SERIAL_BELOW_CHEAP if is_cheap(op) else SERIAL_BELOW):
        return 1
    return get_num_threads()


cdef inline bint overlaps(cnp.ndarray a, cnp.ndarray b):
    """Whether two C-contiguous arrays share any byte; exactly the same memory is fine (an
    elementwise kernel may write in place)."""
    return cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) and share_bytes(a, b)


cdef object output_for(cnp.ndarray x, object out, int typenum):
    """out itself if usable (right type/shape, C-contiguous, writeable, and either exactly x
    or not overlapping it), a fresh array if out is None, else None (-> checked path)."""
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), typenum, 0)
    if type(out) is not np.ndarray:
        return None
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not (plain(o, typenum) and cnp.PyArray_ISWRITEABLE(o) and same_shape(o, x)):
        return None
    return o


def unary(int op, object x, object out, double a=0.0, double b=0.0):
    """y = f(x) into ``out`` (or a new array). NotImplemented when x or out is not a plain
    float array of matching shape: the caller then validates and copies."""
    if type(x) is not np.ndarray:
        return NotImplemented
    cdef cnp.ndarray xa = <cnp.ndarray>x
    cdef int typenum = cnp.PyArray_TYPE(xa)
    if (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or not plain(xa, typenum):
        return NotImplemented
    y = output_for(xa, out, typenum)
    if y is None or overlaps(<cnp.ndarray>y, xa):
        return NotImplemented
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    cdef int nt = threads_for(<Op>op, n)
    cdef void* px = cnp.PyArray_DATA(xa)
    cdef void* py = cnp.PyArray_DATA(<cnp.ndarray>y)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            forward_all[float](<Op>op, <float*>px, <float*>py, n, <float>a, <float>b, nt)
        else:
            forward_all[double](<Op>op, <double*>px, <double*>py, n, a, b, nt)
    return y


def binary(int op, object grad_out, object x, object out, double a=0.0, double b=0.0):
    """grad_x = grad_out·f'(x) into ``out`` (which may be grad_out or x itself)."""
    if type(x) is not np.ndarray or type(grad_out) is not np.ndarray:
        return NotImplemented
    cdef cnp.ndarray xa = <cnp.ndarray>x
    cdef cnp.ndarray ga = <cnp.ndarray>grad_out
    cdef int typenum = cnp.PyArray_TYPE(xa)
    if ((typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or not plain(xa, typenum)
            or not plain(ga, typenum) or not same_shape(ga, xa)):
        return NotImplemented
    y = output_for(xa, out, typenum)
    if y is None or overlaps(<cnp.ndarray>y, xa) or overlaps(<cnp.ndarray>y, ga):
        return NotImplemented
    cdef Py_ssize_t n = cnp.PyArray_SIZE(xa)
    cdef int nt = threads_for(<Op>op, n)
    cdef void* pg = cnp.PyArray_DATA(ga)
    cdef void* px = cnp.PyArray_DATA(xa)
    cdef void* py = cnp.PyArray_DATA(<cnp.ndarray>y)
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            backward_all[float](<Op>op, <float*>pg, <float*>px, <float*>py, n, <float>a,
                                <float>b, nt)
        else:
            backward_all[double](<Op>op, <double*>pg, <double*>px, <double*>py, n, a, b, nt)
    return y


# ------------------------------------------------------------------ PReLU
# y = x if x > 0 else w[c]·x, with c the channel (axis 1; one channel when x.ndim < 2).
# x is seen as (N, C, S): S = the product of the dimensions after the channel axis.

def prelu_forward(const floating[:, :, ::1] x, const floating[::1] w, floating[:, :, ::1] y):
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], n, c, s
    cdef floating slope
    with nogil:
        for n in range(N):
            for c in range(C):
                slope = w[c] if w.shape[0] > 1 else w[0]
                for s in range(S):
                    y[n, c, s] = x[n, c, s] if x[n, c, s] > 0 else slope * x[n, c, s]


def prelu_backward(const floating[:, :, ::1] g, const floating[:, :, ::1] x,
                   const floating[::1] w, floating[:, :, ::1] gx, floating[::1] gw):
    """grad_x = g if x > 0 else w·g;  grad_w[c] = Σ over x ≤ 0 of g·x (summed in double)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], S = x.shape[2], n, c, s
    cdef floating slope
    cdef double acc
    cdef double[::1] sums = np.zeros(C, np.float64)
    with nogil:
        for n in range(N):
            for c in range(C):
                slope = w[c] if w.shape[0] > 1 else w[0]
                acc = 0
                for s in range(S):
                    gx[n, c, s] = g[n, c, s] if x[n, c, s] > 0 else slope * g[n, c, s]
                    acc += 0 if x[n, c, s] > 0 else g[n, c, s] * x[n, c, s]
                sums[c] += acc
        for c in range(gw.shape[0]):
            gw[c] = 0
        for c in range(C):
            if gw.shape[0] > 1:
                gw[c] = <floating>sums[c]
            else:
                gw[0] += <floating>sums[c]


# ------------------------------------------------------------------ test hook
def vecmath(str name, const float[::1] x):
    """Apply one float32 function of _vecmath.h to x (tests/test_vecmath.py measures ulps)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef float[::1] y = np.empty(n, np.float32)
    cdef int which = ["expf", "expm1f", "log1pf", "tanhf", "sigmoidf", "exp_half_sqf",
                      "ndtrf", "softplusf"].index(name)
    with nogil:
        for i in range(n):
            if which == 0:
                y[i] = mlk_expf(x[i])
            elif which == 1:
                y[i] = mlk_expm1f(x[i])
            elif which == 2:
                y[i] = mlk_log1pf(x[i])
            elif which == 3:
                y[i] = mlk_tanhf(x[i])
            elif which == 4:
                y[i] = mlk_sigmoidf(x[i])
            elif which == 5:
                y[i] = mlk_exp_half_sqf(x[i])
            elif which == 6:
                y[i] = mlk_ndtrf(x[i])
            else:
                y[i] = mlk_softplusf(x[i])
    return np.asarray(y)
