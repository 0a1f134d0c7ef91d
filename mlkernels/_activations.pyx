"""Activation kernels: y = f(x) and grad_x = grad_out · f'(x), elementwise.

How it is built
---------------
* One loop per activation and direction, each branchless (selects, not ifs) and calling only
  the inline math of ``_vecmath.h``, so GCC vectorizes it (AVX-512: 16 float32 or 8 float64
  lanes).
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
from libc.stdlib cimport calloc, free

from mlkernels._stream cimport (STREAM_FROM_BYTES, TILE_MAX, mlk_stream_fence, stream_out,
                               tile_len)

from mlkernels._act cimport (Op, RELU, LEAKY_RELU, ELU, SELU, GELU, GELU_TANH, SILU, SWISH,
                             SIGMOID, TANH, SOFTPLUS, forward_run, backward_run, v_select)
from mlkernels._act cimport mlk_expf, mlk_expm1f, mlk_log1pf, mlk_tanhf, mlk_sigmoidf
from mlkernels._act cimport mlk_ndtrf, mlk_exp_half_sqf, mlk_softplusf
from mlkernels._act cimport (mlk_exp, mlk_expm1, mlk_log1p, mlk_tanh, mlk_sigmoid, mlk_ndtr,
                             mlk_exp_half_sq, mlk_softplus)
from mlkernels._reduce cimport sum_of

cimport numpy as cnp
from mlkernels._arrays cimport plain, same_shape, share_bytes
import numpy as np

from mlkernels._runtime cimport kernel_threads

cnp.import_array()

# Outputs of at least this many bytes are written with streaming stores (_stream.h; the same
# threshold as the norm kernels', and why).
cdef Py_ssize_t STREAM_FROM = STREAM_FROM_BYTES


def set_stream_from(Py_ssize_t nbytes):
    """Set the output size from which activations stream their output; returns the old
    value. For tests (to drive the streaming path with small arrays) and measurements."""
    global STREAM_FROM
    old, STREAM_FROM = STREAM_FROM, nbytes
    return old


cdef enum:
    CHUNK = 16384                  # elements per OpenMP work item (64 KiB of float32)
    SERIAL_BELOW_CHEAP = 262144    # relu-like ops: memory-bound, threads pay off late
    SERIAL_BELOW = 32768           # ops with exp/erf/tanh: compute-bound, threads pay off early

cdef inline bint is_cheap(Op op) noexcept nogil:
    return op == RELU or op == LEAKY_RELU


# Which large outputs are streamed (_stream.h): only where memory, not arithmetic, bounds the
# loop. 16M float32, 2 threads, streamed against not, alternating in one process (ms):
#   forward   relu 2.28-2.36 / 2.80-2.81, leaky_relu 2.31 / 2.78, silu 2.28-2.31 / 2.80-2.84,
#             swish 2.39 / 2.78, sigmoid 2.30 / 2.79, tanh 2.48 / 2.80; but elu 3.05 / 2.83,
#             selu 3.08 / 2.89, softplus 3.14 / 2.93-2.95, gelu 3.79-3.84 / 3.58-3.64,
#             gelu-tanh 3.00 / 2.96: there the arithmetic is the bound, and the tile's
#             extra pass through L1 is a loss.
#   backward  every one gains (silu 3.14 / 4.20, softplus 3.10 / 4.05, gelu-tanh 3.81 / 4.27)
#             but gelu, 4.92-5.04 / 4.80-4.83.
cdef inline bint streams_forward(Op op) noexcept nogil:
    return not (op == ELU or op == SELU or op == SOFTPLUS or op == GELU or op == GELU_TANH)


cdef inline bint streams_backward(Op op) noexcept nogil:
    return op != GELU


cdef void forward_all(Op op, const floating* x, floating* y, Py_ssize_t n, floating a,
                      floating b, int n_threads) noexcept nogil:
    cdef Py_ssize_t c, n_chunks = (n + CHUNK - 1) // CHUNK
    cdef bint stream = streams_forward(op) and n * <Py_ssize_t>sizeof(floating) >= STREAM_FROM
    if n_threads <= 1:
        forward_chunk(op, x, y, n, a, b, stream)
    else:
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            forward_chunk(op, x + c * CHUNK, y + c * CHUNK,
                          min(<Py_ssize_t>CHUNK, n - c * CHUNK), a, b, stream)


cdef void forward_chunk(Op op, const floating* x, floating* y, Py_ssize_t n, floating a,
                        floating b, bint stream) noexcept nogil:
    """y = f(x); streamed: tile by tile into a line-aligned L1 buffer, then out (_stream.h)."""
    cdef Py_ssize_t p = 0, m
    cdef floating raw[TILE_MAX + 16]
    cdef floating* buffer = <floating*>((<size_t>&raw[0] + 63) & ~(<size_t>63))
    if not stream:
        forward_run(op, x, y, n, a, b)
        return
    while p < n:
        m = tile_len(y + p, n - p)
        forward_run(op, x + p, buffer, m, a, b)
        stream_out(y + p, buffer, m)
        p += m
    mlk_stream_fence()


cdef void backward_all(Op op, const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                       floating a, floating b, int n_threads) noexcept nogil:
    cdef Py_ssize_t c, n_chunks = (n + CHUNK - 1) // CHUNK
    cdef bint stream = streams_backward(op) and n * <Py_ssize_t>sizeof(floating) >= STREAM_FROM
    if n_threads <= 1:
        backward_chunk(op, g, x, gx, n, a, b, stream)
    else:
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            backward_chunk(op, g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                           min(<Py_ssize_t>CHUNK, n - c * CHUNK), a, b, stream)


cdef void backward_chunk(Op op, const floating* g, const floating* x, floating* gx,
                         Py_ssize_t n, floating a, floating b, bint stream) noexcept nogil:
    """grad_x = g·f'(x); streamed as forward_chunk (gx may be g or x: each tile is read
    before it is written)."""
    cdef Py_ssize_t p = 0, m
    cdef floating raw[TILE_MAX + 16]
    cdef floating* buffer = <floating*>((<size_t>&raw[0] + 63) & ~(<size_t>63))
    if not stream:
        backward_run(op, g, x, gx, n, a, b)
        return
    while p < n:
        m = tile_len(gx + p, n - p)
        backward_run(op, g + p, x + p, buffer, m, a, b)
        stream_out(gx + p, buffer, m)
        p += m
    mlk_stream_fence()


# ------------------------------------------------------------------ entry points

cdef int threads_for(Op op, Py_ssize_t n):
    if n < (SERIAL_BELOW_CHEAP if is_cheap(op) else SERIAL_BELOW):
        return 1
    return kernel_threads()


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
    (v_select): written `0 if x > 0 else g·x`, GCC loaded g masked by x ≤ 0 (see _act.pxd)."""
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


# ------------------------------------------------------------------ test hook
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
