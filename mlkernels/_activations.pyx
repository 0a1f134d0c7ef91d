# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/_activations.pyx.tp); do not edit.
"""Activation kernels: one per activation and direction, each beside the entry that calls it.

Reading guide
-------------
Each public function of ``mlkernels/activations.py`` (``gelu``, ``gelu_backward``, ...)
checks its parameters and calls the entry of the same name here (``gelu`` with
``approximate="tanh"`` calls ``gelu_tanh``). The entry takes the ndarrays themselves, reads
their data pointers (no memoryviews: acquiring one costs more than a small call's whole
work), chooses how the kernel runs (``Run``: threads, streaming) and calls its kernel, just
below it: ``<name>_kernel`` / ``<name>_backward_kernel``, under the activation's math. The
entries and kernels are generated from ``_activation_table.py``, each loop's body from its
row; PReLU (a learned slope per channel: a weight array and a sum, not a table row) and the
test hook of ``_vecmath.h`` are written in the template. 16-bit storage (bfloat16, float16)
goes through one more entry, ``half``, which runs these same kernels on blocks widened to
float32 (section "16-bit storage").

An entry takes only *plain* arrays: float32 or float64, C-contiguous, aligned, native byte
order, and an ``out`` of the input's shape and dtype that is the input itself or does not
overlap it. Anything else returns ``NotImplemented``, and the public function checks every
argument (naming what is wrong) and copies the input into shape before calling again: small
calls with plain arrays pay for no checks they do not need.

Every kernel has the same skeleton around its loop:

* **Threads**: with ``run.threads > 1`` the kernel hands CHUNK-element pieces to an OpenMP
  team, each calling the kernel again on one thread. The entry chooses: one thread below
  ``SERIAL_BELOW_*`` elements (``_runtime.pxd``), where opening a parallel region costs more
  than it saves.
* **The loop** is the plain scalar loop, which GCC vectorizes (AVX-512: 16 float32 or 8
  float64 lanes): no branch (``a if c else b`` is a select, both arms computed), no libm
  call (``_vecmath.pxd``'s inline math), constants typed ``<floating>``. Its marker comment
  (simd) is checked by the vectorization guard (docs/vectorization.md).
* **Streaming**, in the directions whose large outputs memory bounds (the table's
  ``streams``): with ``run.stream`` the same loop runs tile after tile, writing a 512-byte
  tile in L1 that is then copied out with non-temporal stores (``_stream.h``: the output's
  lines are not read first). It is written out twice rather than once with a pointer that
  is either the output or the tile: GCC compiled that single loop less well (tanh's backward
  ran slower streamed; docs/kernels/activations.md). A kernel that does not stream has no
  tile code at all.

The kernels are plain (not inline) functions of this module: GCC keeps one copy of each
rather than one inside every caller (the entry, the OpenMP region), which kept the module
within GCC's inlining budget -- past it, GCC leaves calls to the math in the loops, which
then stay scalar. The fused linear's copies of the same loops are ``_act.pxd``'s
``forward_run``. Figures: docs/kernels/activations.md.
"""
from cython cimport floating
from libc.stdint cimport uint16_t
from libc.stdlib cimport calloc, free

cimport numpy as cnp
import numpy as np

from cython.parallel cimport prange

from mlkernels._arrays cimport plain, same_shape, share_bytes
from mlkernels._half cimport (MLK_BF16, MLK_F16, mlk_bf16_round, mlk_bf16_widen, mlk_f16_round,
                             mlk_f16_widen, mlk_narrow, mlk_narrow_to, mlk_widen)
from mlkernels._reduce cimport sum_of
from mlkernels._runtime cimport (SERIAL_BELOW_COMPUTE_BOUND, SERIAL_BELOW_MEMORY_BOUND,
                                kernel_threads, stream_from)
from mlkernels._stream cimport (TILE_BYTES, TileMemory, mlk_stream_fence, stream_out, tile_in,
                                tile_len)
from mlkernels._vecmath cimport (GELU_C, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI, sigmoid_slope,
                                 v_abs, v_exp, v_exp_neg_abs, v_exp_nonpositive, v_expm1,
                                 v_ndtr, v_npdf, v_select, v_sigmoid, v_softplus, v_tanh)
from mlkernels._vecmath cimport (mlk_expf, mlk_expm1f, mlk_log1pf, mlk_tanhf, mlk_sigmoidf,
                                 mlk_ndtrf, mlk_exp_half_sqf, mlk_softplusf, mlk_exp_nonposf,
                                 mlk_exp, mlk_expm1, mlk_log1p, mlk_tanh, mlk_sigmoid, mlk_ndtr,
                                 mlk_exp_half_sq, mlk_softplus)

cnp.import_array()


# ================================================================================ plumbing

cdef enum:
    CHUNK = 16384                  # elements per OpenMP work item (64 KiB of float32)


cdef struct Run:
    # How a kernel runs, as its entry chose: on `threads` OpenMP threads (1: the calling
    # thread, no parallel region); with `stream`, the output is written through an L1 tile
    # with streaming stores (only the kernels that stream look at it).
    int threads
    bint stream


cdef inline Py_ssize_t chunk_count(Py_ssize_t n) noexcept nogil:
    return (n + CHUNK - 1) // CHUNK


cdef inline Py_ssize_t chunk_len(Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """The length of chunk c of n elements."""
    return min(<Py_ssize_t>CHUNK, n - c * CHUNK)


cdef inline Run alone(Run run) noexcept nogil:
    """The same run on the calling thread (a chunk's)."""
    run.threads = 1
    return run


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


# ================================================================================ kernels
# One pair per row of the table: `<name>(x, out, params...)` -> y, the entry, and
# `<name>_kernel`, the loop; then `<name>_backward(grad_out, x, out, params...)` -> grad_x and
# `<name>_backward_kernel`. An entry returns NotImplemented unless its arrays are plain (see
# the module's docstring).


# ================================================================================ relu
# y = f(x): max(x, 0); NaN and -0 pass through
# f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is NaN)
# The backward selects on the bits (v_select): as a plain select GCC loaded g under a mask, and
# the loop ran slower from memory than leaky_relu's, which loads g for both arms
# (docs/kernels/activations.md).
# Reference: mlkernels/reference/activations.py, relu and relu_backward.
# Run: both directions stream large outputs; a memory-bound loop (SERIAL_BELOW_MEMORY_BOUND).


def relu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.relu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            relu_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            relu_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void relu_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = max(x, 0); NaN and -0 pass through."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            relu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = 0 if x[i] < 0 else x[i]
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = 0 if x[i] < 0 else x[i]
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            relu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            relu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void relu_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is NaN)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            relu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            gx[i] = v_select(x[i] > 0, g[i], x[i] if x[i] != x[i] else 0)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            gx[i] = v_select(x[i] > 0, g[i], x[i] if x[i] != x[i] else 0)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ leaky_relu
# y = f(x): x if x > 0 else negative_slope·x
# f'(x) = 1 if x > 0 else negative_slope
# Reference: mlkernels/reference/activations.py, leaky_relu and leaky_relu_backward.
# Run: both directions stream large outputs; a memory-bound loop (SERIAL_BELOW_MEMORY_BOUND).


def leaky_relu(x, out, double negative_slope):
    """y = f(x) into out (or a new array), for mlkernels.activations.leaky_relu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            leaky_relu_kernel[double](<const double*>a.x, <double*>a.y, a.n, negative_slope, run)
        else:
            leaky_relu_kernel[float](<const float*>a.x, <float*>a.y, a.n, <float>negative_slope, run)
    return y


cdef void leaky_relu_kernel(const floating* x, floating* y, Py_ssize_t n, floating negative_slope,
                            Run run) noexcept nogil:
    """y = x if x > 0 else negative_slope·x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            leaky_relu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), negative_slope,
                              alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = x[i] if x[i] > 0 else negative_slope * x[i]
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = x[i] if x[i] > 0 else negative_slope * x[i]
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            leaky_relu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, negative_slope, run)
        else:
            leaky_relu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, <float>negative_slope, run)
    return y


cdef void leaky_relu_backward_kernel(const floating* g, const floating* x, floating* gx,
                                     Py_ssize_t n, floating negative_slope,
                                     Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else negative_slope."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            leaky_relu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                                       chunk_len(n, c), negative_slope, alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            gx[i] = g[i] if x[i] > 0 else negative_slope * g[i]
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            gx[i] = g[i] if x[i] > 0 else negative_slope * g[i]
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ elu
# y = f(x): x if x > 0 else alpha·(e^x − 1)
# f'(x) = 1 if x > 0 else alpha·e^x
# e^x − 1 through expm1: full relative accuracy near 0. Both arms are computed for every
# element, then one is selected.
# Reference: mlkernels/reference/activations.py, elu and elu_backward.
# Run: the backward streams large outputs, not the forward, whose arithmetic is its bound; a
# compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def elu(x, out, double alpha):
    """y = f(x) into out (or a new array), for mlkernels.activations.elu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            elu_kernel[double](<const double*>a.x, <double*>a.y, a.n, alpha, run)
        else:
            elu_kernel[float](<const float*>a.x, <float*>a.y, a.n, <float>alpha, run)
    return y


cdef void elu_kernel(const floating* x, floating* y, Py_ssize_t n, floating alpha,
                     Run run) noexcept nogil:
    """y = x if x > 0 else alpha·(e^x − 1)."""
    cdef Py_ssize_t i, c
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            elu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alpha, alone(run))
        return
    for i in range(n):               # simd
        e = alpha * v_expm1(x[i])
        y[i] = x[i] if x[i] > 0 else e


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
            elu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, alpha, run)
        else:
            elu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, <float>alpha, run)
    return y


cdef void elu_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                              floating alpha, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else alpha·e^x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            elu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                alpha, alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            e = alpha * v_exp_nonpositive(x[i])
            gx[i] = g[i] * (<floating>1 if x[i] > 0 else e)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            e = alpha * v_exp_nonpositive(x[i])
            gx[i] = g[i] * (<floating>1 if x[i] > 0 else e)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ selu
# y = f(x): λ·(x if x > 0 else α·(e^x − 1)), α = 1.6732632423543772, λ = 1.0507009873554805
# f'(x) = λ if x > 0 else λ·α·e^x
# Reference: mlkernels/reference/activations.py, selu and selu_backward.
# Run: the backward streams large outputs, not the forward, whose arithmetic is its bound; a
# compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def selu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.selu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            selu_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            selu_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void selu_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = λ·(x if x > 0 else α·(e^x − 1)), α = 1.6732632423543772, λ = 1.0507009873554805."""
    cdef Py_ssize_t i, c
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            selu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        e = <floating>SELU_ALPHA * v_expm1(x[i])
        y[i] = <floating>SELU_SCALE * (x[i] if x[i] > 0 else e)


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
            selu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            selu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void selu_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = λ if x > 0 else λ·α·e^x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            selu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            e = <floating>SELU_ALPHA * v_exp_nonpositive(x[i])
            gx[i] = g[i] * <floating>SELU_SCALE * (<floating>1 if x[i] > 0 else e)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            e = <floating>SELU_ALPHA * v_exp_nonpositive(x[i])
            gx[i] = g[i] * <floating>SELU_SCALE * (<floating>1 if x[i] > 0 else e)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ gelu
# y = f(x): x·Φ(x), Φ the standard normal CDF
# f'(x) = Φ(x) + x·φ(x), φ the standard normal density
# Φ and φ are _vecmath.h's vectorizable erfc-based pieces, relative in the left tail.
# Reference: mlkernels/reference/activations.py, gelu and gelu_backward.
# Run: neither direction streams: the arithmetic is the bound; a compute-bound loop
# (SERIAL_BELOW_COMPUTE_BOUND).


def gelu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.gelu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            gelu_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            gelu_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void gelu_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·Φ(x), Φ the standard normal CDF."""
    cdef Py_ssize_t i, c
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        y[i] = x[i] * v_ndtr(x[i])


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
            gelu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            gelu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void gelu_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = Φ(x) + x·φ(x), φ the standard normal density."""
    cdef Py_ssize_t i, c
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    for i in range(n):               # simd
        gx[i] = g[i] * (v_ndtr(x[i]) + x[i] * v_npdf(x[i]))


# =================================================================== gelu_tanh (approximate="tanh")
# y = f(x): 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)
# f'(x) = σ(2u) + 2x·σ'(2u)·u', u' = √(2/π)·(1 + 3·0.044715·x²)
# The σ form: 1 + tanh(u) cancels for x << 0, 2σ(2u) does not.
# Reference: mlkernels/reference/activations.py, gelu and gelu_backward (approximate="tanh").
# Run: the backward streams large outputs, not the forward, whose arithmetic is its bound; a
# compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


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
            gelu_tanh_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            gelu_tanh_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void gelu_tanh_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)."""
    cdef Py_ssize_t i, c
    cdef floating v, u
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_tanh_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        v = x[i]
        u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
        y[i] = v * v_sigmoid(u + u)


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
            gelu_tanh_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            gelu_tanh_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void gelu_tanh_backward_kernel(const floating* g, const floating* x, floating* gx,
                                    Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(2u) + 2x·σ'(2u)·u', u' = √(2/π)·(1 + 3·0.044715·x²)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v, u, xc, d
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_tanh_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                                      chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            v = x[i]
            u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
            # σ'(2u) is exactly 0 for |x| > 1e4: clamp x there so that x·u' stays finite
            xc = v if v_abs(v) < 1e4 else (<floating>1e4 if v > 0 else <floating>-1e4)
            d = <floating>SQRT_2_OVER_PI * (<floating>1 + <floating>(3 * GELU_C) * xc * xc)
            gx[i] = g[i] * (v_sigmoid(u + u) + (xc + xc) * sigmoid_slope(u + u) * d)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            v = x[i]
            u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
            # σ'(2u) is exactly 0 for |x| > 1e4: clamp x there so that x·u' stays finite
            xc = v if v_abs(v) < 1e4 else (<floating>1e4 if v > 0 else <floating>-1e4)
            d = <floating>SQRT_2_OVER_PI * (<floating>1 + <floating>(3 * GELU_C) * xc * xc)
            gx[i] = g[i] * (v_sigmoid(u + u) + (xc + xc) * sigmoid_slope(u + u) * d)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ silu
# y = f(x): x·σ(x)
# f'(x) = σ(x) + x·σ'(x) = σ(x)·(1 + x·(1 − σ(x)))
# σ and σ' share e^−|x| and 1/(1 + e^−|x|) in the backward (sigmoid_slope).
# Reference: mlkernels/reference/activations.py, silu and silu_backward.
# Run: both directions stream large outputs; a compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def silu(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.silu."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            silu_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            silu_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void silu_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·σ(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            silu_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = x[i] * v_sigmoid(x[i])
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = x[i] * v_sigmoid(x[i])
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            silu_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            silu_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void silu_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(x) + x·σ'(x) = σ(x)·(1 + x·(1 − σ(x)))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            silu_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            gx[i] = g[i] * (v_sigmoid(x[i]) + x[i] * sigmoid_slope(x[i]))
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            gx[i] = g[i] * (v_sigmoid(x[i]) + x[i] * sigmoid_slope(x[i]))
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ swish
# y = f(x): x·σ(beta·x)
# f'(x) = σ(βx) + βx·σ'(βx) (the gradient with respect to x only)
# Reference: mlkernels/reference/activations.py, swish and swish_backward.
# Run: both directions stream large outputs; a compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def swish(x, out, double beta):
    """y = f(x) into out (or a new array), for mlkernels.activations.swish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            swish_kernel[double](<const double*>a.x, <double*>a.y, a.n, beta, run)
        else:
            swish_kernel[float](<const float*>a.x, <float*>a.y, a.n, <float>beta, run)
    return y


cdef void swish_kernel(const floating* x, floating* y, Py_ssize_t n, floating beta,
                       Run run) noexcept nogil:
    """y = x·σ(beta·x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            swish_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), beta, alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = x[i] * v_sigmoid(beta * x[i])
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = x[i] * v_sigmoid(beta * x[i])
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            swish_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, beta, run)
        else:
            swish_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, <float>beta, run)
    return y


cdef void swish_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                                floating beta, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(βx) + βx·σ'(βx) (the gradient with respect to x only)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            swish_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                  beta, alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            v = beta * x[i]
            gx[i] = g[i] * (v_sigmoid(v) + v * sigmoid_slope(v))
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            v = beta * x[i]
            gx[i] = g[i] * (v_sigmoid(v) + v * sigmoid_slope(v))
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ sigmoid
# y = f(x): σ(x) = 1/(1 + e^−x)
# f'(x) = σ'(x) = σ(x)·(1 − σ(x))
# σ' as z/(1 + z)², z = e^−|x|: no cancellation of 1 − σ near σ = 1.
# Reference: mlkernels/reference/activations.py, sigmoid and sigmoid_backward.
# Run: both directions stream large outputs; a compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def sigmoid(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.sigmoid."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            sigmoid_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            sigmoid_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void sigmoid_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = σ(x) = 1/(1 + e^−x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            sigmoid_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = v_sigmoid(x[i])
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = v_sigmoid(x[i])
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            sigmoid_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            sigmoid_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void sigmoid_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                                  Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ'(x) = σ(x)·(1 − σ(x))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            sigmoid_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                    alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            gx[i] = g[i] * sigmoid_slope(x[i])
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            gx[i] = g[i] * sigmoid_slope(x[i])
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ tanh
# y = f(x): tanh(x)
# f'(x) = 1 − tanh²(x)
# The backward as 1 − tanh²(x) = 4σ'(2x): no cancellation near tanh = ±1.
# Reference: mlkernels/reference/activations.py, tanh and tanh_backward.
# Run: both directions stream large outputs; a compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def tanh(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.tanh."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            tanh_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            tanh_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void tanh_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = tanh(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            tanh_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            y[i] = v_tanh(x[i])
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            y[i] = v_tanh(x[i])
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            tanh_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            tanh_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void tanh_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 − tanh²(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            tanh_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            gx[i] = g[i] * (<floating>4 * sigmoid_slope(x[i] + x[i]))
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            gx[i] = g[i] * (<floating>4 * sigmoid_slope(x[i] + x[i]))
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ softplus
# y = f(x): log(1 + e^(beta·x))/beta, or x where beta·x > threshold
# f'(x) = σ(beta·x), or 1 where beta·x > threshold
# log(1 + e^v) as max(v, 0) + log1p(e^−|v|): never overflows, relative in the left tail.
# Reference: mlkernels/reference/activations.py, softplus and softplus_backward.
# Run: the backward streams large outputs, not the forward, whose arithmetic is its bound; a
# compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def softplus(x, out, double beta, double threshold):
    """y = f(x) into out (or a new array), for mlkernels.activations.softplus."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, False)
    with nogil:
        if a.f64:
            softplus_kernel[double](<const double*>a.x, <double*>a.y, a.n, beta, threshold, run)
        else:
            softplus_kernel[float](<const float*>a.x, <float*>a.y, a.n, <float>beta, <float>threshold, run)
    return y


cdef void softplus_kernel(const floating* x, floating* y, Py_ssize_t n, floating beta,
                          floating threshold, Run run) noexcept nogil:
    """y = log(1 + e^(beta·x))/beta, or x where beta·x > threshold."""
    cdef Py_ssize_t i, c
    cdef floating v, e, inv_beta
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            softplus_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), beta, threshold,
                            alone(run))
        return
    inv_beta = 1 / beta           # one division per call, not per element
    for i in range(n):               # simd
        v = beta * x[i]
        e = v_softplus(v) * inv_beta
        y[i] = x[i] if v > threshold else e


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
            softplus_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, beta, threshold, run)
        else:
            softplus_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, <float>beta, <float>threshold, run)
    return y


cdef void softplus_backward_kernel(const floating* g, const floating* x, floating* gx,
                                   Py_ssize_t n, floating beta, floating threshold,
                                   Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(beta·x), or 1 where beta·x > threshold."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v, e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            softplus_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                     beta, threshold, alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            v = beta * x[i]
            e = v_sigmoid(v)
            gx[i] = g[i] * (<floating>1 if v > threshold else e)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            v = beta * x[i]
            e = v_sigmoid(v)
            gx[i] = g[i] * (<floating>1 if v > threshold else e)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ hardswish
# y = f(x): x·min(max(x + 3, 0), 6)/6
# f'(x) = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3
# Arithmetic as torch's (x·r/6, x/3 + 1/2). min and max are selects written so that NaN passes
# through.
# Reference: mlkernels/reference/activations.py, hardswish and hardswish_backward.
# Run: both directions stream large outputs; a memory-bound loop (SERIAL_BELOW_MEMORY_BOUND).


def hardswish(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.hardswish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            hardswish_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            hardswish_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void hardswish_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·min(max(x + 3, 0), 6)/6."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating r
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardswish_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = x[i] * r / <floating>6
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = x[i] * r / <floating>6
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            hardswish_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            hardswish_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void hardswish_backward_kernel(const floating* g, const floating* x, floating* gx,
                                    Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating d
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardswish_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                                      chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            d = x[i] / <floating>3 + <floating>0.5      # the slope between the kinks
            d = <floating>1 if x[i] >= 3 else d
            gx[i] = v_select(x[i] <= -3, <floating>0, g[i] * d)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            d = x[i] / <floating>3 + <floating>0.5      # the slope between the kinks
            d = <floating>1 if x[i] >= 3 else d
            gx[i] = v_select(x[i] <= -3, <floating>0, g[i] * d)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ hardsigmoid
# y = f(x): min(max(x + 3, 0), 6)/6
# f'(x) = 1/6 for −3 < x < 3, else 0 (0 at the kinks, as torch)
# The backward selects, on the bits (v_select: no masked load of g), g inside the kinks, x where
# x is NaN and 0 elsewhere, then scales by 1/6.
# Reference: mlkernels/reference/activations.py, hardsigmoid and hardsigmoid_backward.
# Run: both directions stream large outputs; a memory-bound loop (SERIAL_BELOW_MEMORY_BOUND).


def hardsigmoid(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.hardsigmoid."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_MEMORY_BOUND, True)
    with nogil:
        if a.f64:
            hardsigmoid_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            hardsigmoid_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void hardsigmoid_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = min(max(x + 3, 0), 6)/6."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating r
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardsigmoid_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = r / <floating>6
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            r = x[i] + <floating>3        # relu6(x + 3); NaN passes through
            r = <floating>0 if r < 0 else r
            r = <floating>6 if r > 6 else r
            y[i] = r / <floating>6
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            hardsigmoid_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            hardsigmoid_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void hardsigmoid_backward_kernel(const floating* g, const floating* x, floating* gx,
                                      Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1/6 for −3 < x < 3, else 0 (0 at the kinks, as torch)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating s
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardsigmoid_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK,
                                        chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            s = v_select((x[i] > -3) & (x[i] < 3), g[i],
                         x[i] if x[i] != x[i] else <floating>0)
            gx[i] = s * <floating>(1.0 / 6)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            s = v_select((x[i] > -3) & (x[i] < 3), g[i],
                         x[i] if x[i] != x[i] else <floating>0)
            gx[i] = s * <floating>(1.0 / 6)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()


# ================================================================================ mish
# y = f(x): x·tanh(log(1 + e^x))
# f'(x) = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x)
# One e^−|x| and one division per element; 1 − tanh² is formed from z, not by subtracting from
# 1.
# Reference: mlkernels/reference/activations.py, mish and mish_backward.
# Run: both directions stream large outputs; a compute-bound loop (SERIAL_BELOW_COMPUTE_BOUND).


def mish(x, out):
    """y = f(x) into out (or a new array), for mlkernels.activations.mish."""
    cdef Arrays a
    y = forward_arrays(x, out, &a)
    if y is None:
        return NotImplemented
    cdef Run run = run_for(&a, SERIAL_BELOW_COMPUTE_BOUND, True)
    with nogil:
        if a.f64:
            mish_kernel[double](<const double*>a.x, <double*>a.y, a.n, run)
        else:
            mish_kernel[float](<const float*>a.x, <float*>a.y, a.n, run)
    return y


cdef void mish_kernel(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·tanh(log(1 + e^x))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating z, num
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            mish_kernel(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            z = v_exp_neg_abs(x[i])
            # tanh(softplus(x)) = num/den, over z: x ≥ 0: (1 + 2z)/(1 + 2z + 2z²),
            # x < 0: z(z + 2)/(z(z + 2) + 2)
            num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)
            y[i] = x[i] * num / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (y), copied out (_stream.h)
    y = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            z = v_exp_neg_abs(x[i])
            # tanh(softplus(x)) = num/den, over z: x ≥ 0: (1 + 2z)/(1 + 2z + 2z²),
            # x < 0: z(z + 2)/(z(z + 2) + 2)
            num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)
            y[i] = x[i] * num / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))
        stream_out(out, y, m)
        x += m
        out += m
        n -= m
    mlk_stream_fence()


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
            mish_backward_kernel[double](<const double*>a.g, <const double*>a.x,
                        <double*>a.y, a.n, run)
        else:
            mish_backward_kernel[float](<const float*>a.g, <const float*>a.x,
                        <float*>a.y, a.n, run)
    return y


cdef void mish_backward_kernel(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating z, num, r, q, s
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            mish_backward_kernel(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
        return
    if not run.stream:
        for i in range(n):           # simd
            z = v_exp_neg_abs(x[i])
            num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)
            r = <floating>1 / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))
            # σ(x)·(1 − tanh²(softplus(x))) = 4z(1 + z)·q/den², q = z (x ≥ 0) or 1
            q = z if x[i] >= 0 else <floating>1
            s = <floating>4 * z * (<floating>1 + z) * q * r * r
            gx[i] = g[i] * (num * r + x[i] * s)
        return
    # streaming: the same loop, tile after tile, into a tile in L1 (gx), copied out (_stream.h;
    # out may be g or x: each tile is read before it is written)
    gx = tile_in(&tile, out)
    while n > 0:
        m = tile_len(out, n)
        for i in range(m):           # simd
            z = v_exp_neg_abs(x[i])
            num = (<floating>1 + z + z) if x[i] >= 0 else z * (z + <floating>2)
            r = <floating>1 / (num + (<floating>2 * z * z if x[i] >= 0 else <floating>2))
            # σ(x)·(1 − tanh²(softplus(x))) = 4z(1 + z)·q/den², q = z (x ≥ 0) or 1
            q = z if x[i] >= 0 else <floating>1
            s = <floating>4 * z * (<floating>1 + z) * q * r * r
            gx[i] = g[i] * (num * r + x[i] * s)
        stream_out(out, gx, m)
        g += m
        x += m
        out += m
        n -= m
    mlk_stream_fence()



# ================================================================================ 16-bit storage
# bfloat16 (ml_dtypes) and float16 arrays, seen as uint16 (storage kind of _half.h: MLK_BF16,
# MLK_F16): every activation, forward and backward, through one driver rather than a 16-bit
# loop per activation and kind (that would multiply this module's code, already the largest).
#
# Scalar math: y[i] = round16(f(widen(x[i]))), gx[i] = round16(f'(widen(x[i]))·widen(g[i])),
# with f the float32 kernel above: its own function, so the result is the float32 kernel's
# result on the widened input, rounded once to nearest even, by construction (NaN stays NaN).
# How: each thread takes CHUNK-element chunks; a chunk goes HALF_BLOCK values at a time through
# widen (into a float32 block on the stack, in L1) -> the float32 kernel on the block (one
# thread, no streaming: its plain loop) -> round into the output (streaming stores for large
# outputs, as the float32 kernel streams: the table's `streams`). Memory moves 2 bytes per
# value each way instead of 4; the widen and round passes run in L1.
# Reference: mlkernels/reference/activations.py in float64, and tests/test_half_activations.py
# (bit for bit against the float32 kernel, rounded by ml_dtypes / NumPy).

cdef enum:
    HALF_BLOCK = 2048              # values per widened block (8 KiB of float32 per array)


cdef void narrow_out(int kind, const float* src, uint16_t* dst, Py_ssize_t n,
                     bint stream) noexcept nogil:
    """dst[0:n] = src[0:n] rounded (_half.h), with streaming stores when stream. One function
    that every 16-bit loop calls, rather than _half.h's loops inlined into each."""
    mlk_narrow_to(kind, src, dst, n, stream)


cdef void forward_block(int op, const float* x, float* y, Py_ssize_t n, float a,
                        float b) noexcept nogil:
    """y = f(x) over n float32 values on the calling thread: the float32 kernel of op (_act.pxd's
    Op numbering), unstreamed; a, b its parameters in the table's order."""
    cdef Run run
    run.threads, run.stream = 1, False
    if op == 0:  # relu
        relu_kernel[float](x, y, n, run)
    elif op == 1:  # leaky_relu
        leaky_relu_kernel[float](x, y, n, a, run)
    elif op == 2:  # elu
        elu_kernel[float](x, y, n, a, run)
    elif op == 3:  # selu
        selu_kernel[float](x, y, n, run)
    elif op == 4:  # gelu
        gelu_kernel[float](x, y, n, run)
    elif op == 5:  # gelu_tanh
        gelu_tanh_kernel[float](x, y, n, run)
    elif op == 6:  # silu
        silu_kernel[float](x, y, n, run)
    elif op == 7:  # swish
        swish_kernel[float](x, y, n, a, run)
    elif op == 8:  # sigmoid
        sigmoid_kernel[float](x, y, n, run)
    elif op == 9:  # tanh
        tanh_kernel[float](x, y, n, run)
    elif op == 10:  # softplus
        softplus_kernel[float](x, y, n, a, b, run)
    elif op == 11:  # hardswish
        hardswish_kernel[float](x, y, n, run)
    elif op == 12:  # hardsigmoid
        hardsigmoid_kernel[float](x, y, n, run)
    elif op == 13:  # mish
        mish_kernel[float](x, y, n, run)


cdef void backward_block(int op, const float* g, const float* x, float* gx, Py_ssize_t n,
                         float a, float b) noexcept nogil:
    """gx = g·f'(x) over n float32 values on the calling thread: op's float32 backward kernel."""
    cdef Run run
    run.threads, run.stream = 1, False
    if op == 0:  # relu
        relu_backward_kernel[float](g, x, gx, n, run)
    elif op == 1:  # leaky_relu
        leaky_relu_backward_kernel[float](g, x, gx, n, a, run)
    elif op == 2:  # elu
        elu_backward_kernel[float](g, x, gx, n, a, run)
    elif op == 3:  # selu
        selu_backward_kernel[float](g, x, gx, n, run)
    elif op == 4:  # gelu
        gelu_backward_kernel[float](g, x, gx, n, run)
    elif op == 5:  # gelu_tanh
        gelu_tanh_backward_kernel[float](g, x, gx, n, run)
    elif op == 6:  # silu
        silu_backward_kernel[float](g, x, gx, n, run)
    elif op == 7:  # swish
        swish_backward_kernel[float](g, x, gx, n, a, run)
    elif op == 8:  # sigmoid
        sigmoid_backward_kernel[float](g, x, gx, n, run)
    elif op == 9:  # tanh
        tanh_backward_kernel[float](g, x, gx, n, run)
    elif op == 10:  # softplus
        softplus_backward_kernel[float](g, x, gx, n, a, b, run)
    elif op == 11:  # hardswish
        hardswish_backward_kernel[float](g, x, gx, n, run)
    elif op == 12:  # hardsigmoid
        hardsigmoid_backward_kernel[float](g, x, gx, n, run)
    elif op == 13:  # mish
        mish_backward_kernel[float](g, x, gx, n, run)


cdef void half_chunk(int op, int kind, const uint16_t* g, const uint16_t* x, uint16_t* y,
                     Py_ssize_t start, Py_ssize_t end, float a, float b, bint stream,
                     bint fused) noexcept nogil:
    """Values [start, end) of op's forward (g NULL) or backward on 16-bit arrays, block by block
    (see above). y may be x or g: a block is read whole before its result is stored."""
    cdef float xs[HALF_BLOCK]
    cdef float gs[HALF_BLOCK]
    cdef float ys[HALF_BLOCK]
    cdef Py_ssize_t m
    if fused and fused_chunk(op, kind, g, x, y, start, end, a, b, stream):
        return
    while start < end:
        m = min(<Py_ssize_t>HALF_BLOCK, end - start)
        mlk_widen(kind, x + start, xs, m)
        if g == NULL:
            forward_block(op, xs, ys, m, a, b)
        else:
            mlk_widen(kind, g + start, gs, m)
            backward_block(op, gs, xs, ys, m, a, b)
        narrow_out(kind, ys, y + start, m, stream)
        start += m
    if stream:
        mlk_stream_fence()


# ---------------------------------------------------------------- one-pass loops, memory-bound rows
# Where the float32 loop only moves memory, half_chunk's widen and round passes cost about as
# much as the memory they save. Two kinds of one-pass loop replace them there:
# * relu (both kinds): on the 16-bit patterns themselves (relu_bits16): relu's result is x, 0 or
#   g, which rounding keeps as they are -- except NaN, made quiet as rounding makes it;
# * the table's fused16 rows (leaky_relu), bfloat16: uint16 load, widen (a shift), the row's own
#   float32 expression (the text of its kernel's loop), into an L1 tile of float32 that is then
#   rounded (mlk_narrow: the hardware rounding where the CPU has it) -- when streaming, one
#   512-byte piece of the output at a time, rounded into an L1 tile of uint16 and streamed out
#   (handing the float32 tile to mlk_narrow_stream measured 2x slower). float16 keeps the
#   blockwise driver: its portable widening inside the loop measured slower than F16C's pass.
# Both give the blockwise driver's bits (tests/test_half_activations.py checks both paths on
# every 16-bit pattern); figures in docs/kernels/bf16.md.

cdef enum:
    FUSED_TILE = 512               # float32 values computed before they are rounded
    RELU_OP = 0                    # relu's operation code (_act.pxd's Op)

cdef extern from "_stream.h" nogil:
    void mlk_stream_u16(uint16_t* dst, const uint16_t* src, Py_ssize_t n)


cdef inline Py_ssize_t u16_tile_len(const uint16_t* dst, Py_ssize_t left) noexcept nogil:
    """Values from dst up to its next TILE_BYTES boundary (at least 1, at most left)."""
    cdef Py_ssize_t to_boundary = (TILE_BYTES - 1 - <size_t>dst % TILE_BYTES) // 2 + 1
    return to_boundary if to_boundary < left else left


cdef void leaky_relu_fused16(const uint16_t* g, const uint16_t* x, uint16_t* y, Py_ssize_t n,
                             float negative_slope, bint stream) noexcept nogil:
    """y = round16(f(x)) over n 16-bit values on the calling thread, one pass (see above);
    streamed through an L1 tile with stream. y may be x (g: unused)."""
    cdef Py_ssize_t i, start = 0, m
    cdef float xv, gv, result
    cdef float tile[FUSED_TILE]
    cdef TileMemory rounded
    cdef uint16_t* t = <uint16_t*>tile_in(&rounded, <float*>NULL)
    while start < n:
        m = min(<Py_ssize_t>FUSED_TILE, n - start)
        if stream:
            m = u16_tile_len(y + start, m)
        for i in range(m):               # simd
            xv = mlk_bf16_widen(x[start + i])
            result = xv if xv > 0 else negative_slope * xv
            tile[i] = result
        if stream:                       # rounded into an L1 tile, streamed out
            mlk_narrow(MLK_BF16, tile, t, m)
            mlk_stream_u16(y + start, t, m)
        else:
            mlk_narrow(MLK_BF16, tile, y + start, m)
        start += m
    if stream:
        mlk_stream_fence()


cdef void leaky_relu_backward_fused16(const uint16_t* g, const uint16_t* x, uint16_t* y,
                                      Py_ssize_t n, float negative_slope,
                                      bint stream) noexcept nogil:
    """gx = round16(g·f'(x)) over n 16-bit values on the calling thread, one pass (see above);
    streamed through an L1 tile with stream. y may be x or g."""
    cdef Py_ssize_t i, start = 0, m
    cdef float xv, gv, result
    cdef float tile[FUSED_TILE]
    cdef TileMemory rounded
    cdef uint16_t* t = <uint16_t*>tile_in(&rounded, <float*>NULL)
    while start < n:
        m = min(<Py_ssize_t>FUSED_TILE, n - start)
        if stream:
            m = u16_tile_len(y + start, m)
        for i in range(m):               # simd
            gv = mlk_bf16_widen(g[start + i])
            xv = mlk_bf16_widen(x[start + i])
            result = gv if xv > 0 else negative_slope * gv
            tile[i] = result
        if stream:                       # rounded into an L1 tile, streamed out
            mlk_narrow(MLK_BF16, tile, t, m)
            mlk_stream_u16(y + start, t, m)
        else:
            mlk_narrow(MLK_BF16, tile, y + start, m)
        start += m
    if stream:
        mlk_stream_fence()



cdef void relu_bits16(int kind, const uint16_t* g, const uint16_t* x, uint16_t* y, Py_ssize_t n,
                      bint stream) noexcept nogil:
    """ReLU (g NULL) and its backward on the 16-bit patterns themselves, bfloat16 or float16.
    Exact: relu's result is x, 0 or g, each a 16-bit value that rounding keeps, except NaN,
    which rounding makes the quiet NaN (bfloat16: 0x7FC0 with the sign, as mlk_bf16_round;
    float16: the payload kept, quiet bit set, as mlk_f16_round). So, on the bits:
      forward:  y = NaN(x) if x is NaN, else 0 where x < 0 (a pattern above 0x8000: negative,
                not -0), else x;
      backward: p = g where x > 0 (a pattern in [1, inf]), x where x is NaN, else 0;
                gx = NaN(p) if p is NaN, else p."""
    cdef uint16_t inf = 0x7F80 if kind == MLK_BF16 else 0x7C00    # +inf: exponent all ones
    cdef uint16_t keep = 0x8000 if kind == MLK_BF16 else 0xFFFF   # what a NaN keeps
    cdef uint16_t quiet = 0x7FC0 if kind == MLK_BF16 else 0x0200  # and what it gets
    cdef Py_ssize_t i, start = 0, m
    cdef uint16_t h, p
    cdef TileMemory tile
    cdef uint16_t* t = <uint16_t*>tile_in(&tile, <float*>NULL)
    cdef uint16_t* dst
    while start < n:
        m, dst = n - start, y + start
        if stream:
            m, dst = u16_tile_len(y + start, n - start), t
        if g == NULL:
            for i in range(m):           # simd
                h = x[start + i]
                p = 0 if h > 0x8000 else h
                dst[i] = ((h & keep) | quiet) if (h & 0x7FFF) > inf else p
        else:
            for i in range(m):           # simd
                h = x[start + i]
                p = g[start + i]             # loaded for every lane: no masked load (avx2)
                p = p if (h >= 1) & (h <= inf) else (h if (h & 0x7FFF) > inf else 0)
                dst[i] = ((p & keep) | quiet) if (p & 0x7FFF) > inf else p
        if stream:
            mlk_stream_u16(y + start, t, m)
        start += m
    if stream:
        mlk_stream_fence()

cdef bint fused_chunk(int op, int kind, const uint16_t* g, const uint16_t* x, uint16_t* y,
                      Py_ssize_t start, Py_ssize_t end, float a, float b,
                      bint stream) noexcept nogil:
    """Values [start, end) of op through its fused loop; False (nothing done) when op has none
    or kind is not bfloat16."""
    cdef const uint16_t* gs = g
    if g != NULL:
        gs = g + start
    if op == RELU_OP:
        relu_bits16(kind, gs, x + start, y + start, end - start, stream)
        return True
    if kind != MLK_BF16:
        return False
    if op == 1:  # leaky_relu
        if g == NULL:
            leaky_relu_fused16(NULL, x + start, y + start, end - start, a, stream)
        else:
            leaky_relu_backward_fused16(gs, x + start, y + start, end - start, a, stream)
        return True
    return False


def fused_ops():
    """The operation codes that have a fused 16-bit loop."""
    return [RELU_OP, 1]


# (memory-bound, forward streams, backward streams) of each op, from the table
HALF_TRAITS = [(True, True, True), (True, True, True), (False, False, True), (False, False, True),
               (False, False, False), (False, False, True), (False, True, True),
               (False, True, True), (False, True, True), (False, True, True), (False, False, True),
               (True, True, True), (True, True, True), (False, True, True)]


def half(int op, int kind, grad_out, cnp.ndarray x, cnp.ndarray y, double a=0, double b=0,
         bint fused=True):
    """y = op's forward of x (grad_out None) or its backward (grad_x = grad_out·f'(x)), on 16-bit
    storage (kind 1 bfloat16, 2 float16): arrays of one 16-bit dtype, C-contiguous, of one shape,
    y writeable and either an input or apart from them -- all checked by
    mlkernels/activations.py. a, b: op's parameters (as float32, as the float32 entries take
    them)."""
    if not 0 <= op < len(HALF_TRAITS) or kind not in (MLK_BF16, MLK_F16):
        raise ValueError(f"half: op {op} or storage kind {kind} out of range")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x), c
    for a16 in (x, y) if grad_out is None else (grad_out, x, y):   # the sizes the loops trust
        if (type(a16) is not np.ndarray or cnp.PyArray_ITEMSIZE(<cnp.ndarray>a16) != 2
                or cnp.PyArray_SIZE(<cnp.ndarray>a16) != n
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a16)):
            raise ValueError("half: expected C-contiguous 16-bit arrays of one size")
    if not cnp.PyArray_ISWRITEABLE(y):
        raise ValueError("half: y is read-only")
    memory_bound, streams_forward, streams_backward = HALF_TRAITS[op]
    cdef const uint16_t* pg = NULL
    if grad_out is not None:
        pg = <const uint16_t*>cnp.PyArray_DATA(<cnp.ndarray>grad_out)
    cdef const uint16_t* px = <const uint16_t*>cnp.PyArray_DATA(x)
    cdef uint16_t* py = <uint16_t*>cnp.PyArray_DATA(y)
    cdef float fa = <float>a, fb = <float>b
    cdef bint stream = ((streams_forward if grad_out is None else streams_backward)
                        and n * 2 >= stream_from())
    cdef int threads = 1 if n < (SERIAL_BELOW_MEMORY_BOUND if memory_bound
                                 else SERIAL_BELOW_COMPUTE_BOUND) else kernel_threads()
    with nogil:
        if threads == 1:
            half_chunk(op, kind, pg, px, py, 0, n, fa, fb, stream, fused)
        else:
            for c in prange(chunk_count(n), num_threads=threads, schedule="static"):
                half_chunk(op, kind, pg, px, py, c * CHUNK, c * CHUNK + chunk_len(n, c), fa, fb,
                           stream, fused)
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
                 "softplusf", "exp_nonposf"]
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
        elif which == 7:
            for i in range(n):         # simd
                y[i] = mlk_softplusf(x[i])
        else:
            for i in range(n):         # simd
                y[i] = mlk_exp_nonposf(x[i])
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


def vecmath(str name, x):
    """Apply one function of _vecmath.h to x: a float32 one (``VECMATH_FLOAT``) to float32 x,
    a float64 one (``VECMATH_DOUBLE``) to float64 x (1-d). For tests/test_vecmath.py, which
    measures ulps."""
    cdef cnp.ndarray xs = np.ascontiguousarray(x)
    if xs.ndim != 1 or xs.dtype not in (np.float32, np.float64):
        raise TypeError(f"vecmath: x must be a 1-d float32 or float64 array, got {xs.dtype} of {xs.ndim} dimension(s)")
    cdef bint f64 = xs.dtype == np.float64
    names = VECMATH_DOUBLE if f64 else VECMATH_FLOAT
    if name not in names:
        raise ValueError(f"vecmath: {name!r} is not one of {names} (for {xs.dtype})")
    cdef int which = names.index(name)
    cdef Py_ssize_t n = xs.shape[0]
    cdef cnp.ndarray y = np.empty(n, xs.dtype)
    cdef void* px = cnp.PyArray_DATA(xs)
    cdef void* py = cnp.PyArray_DATA(y)
    if n:
        with nogil:
            if f64:
                apply_vecmath(which, <const double*>px, <double*>py, n)
            else:
                apply_vecmath(which, <const float*>px, <float*>py, n)
    return y
