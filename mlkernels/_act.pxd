# Generated from mlkernels/_activation_table.py by mlkernels/_generate.py
# (template: mlkernels/_act.pxd.tp); do not edit.
"""The activation kernels: for each activation f, ``<name>(x, y, n, ..., run)`` computes
y = f(x) and ``<name>_backward(g, x, gx, n, ..., run)`` computes gx = g·f'(x) (g the
gradient of the output, x the forward's input), side by side, each under its math.

Reading guide: ``mlkernels.activations.<name>`` checks its parameters and calls the entry of
the same name in ``_activations.pyx``, which reads the arrays' data pointers, chooses how the
kernel runs (``Run``) and calls the kernel of the same name here. The fused linear +
activation (``_linear.pyx``) calls the forward kernels through ``forward_run``. Generated,
like its callers, from ``_activation_table.py``: each loop's body is a row's snippet.

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

``_vecmath.pxd``'s helpers come with this file: ``from mlkernels._act cimport v_exp`` works.
Figures: docs/kernels/activations.md.
"""
from cython cimport floating
from cython.parallel cimport prange

from mlkernels._stream cimport TileMemory, mlk_stream_fence, stream_out, tile_in, tile_len
from mlkernels._vecmath cimport (GELU_C, SELU_ALPHA, SELU_SCALE, SQRT_2_OVER_PI, sigmoid_slope,
                                 v_abs, v_exp, v_exp_neg_abs, v_exp_nonpositive, v_expm1,
                                 v_ndtr, v_npdf, v_select, v_sigmoid, v_softplus, v_tanh)

# The operations, in the table's order (mlkernels/activations.py has the same codes; the fused
# linear takes them).
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


cdef enum:
    CHUNK = 16384                  # elements per OpenMP work item (64 KiB of float32)


cdef struct Run:
    # How a kernel runs, as its entry in _activations.pyx chose: on `threads` OpenMP threads
    # (1: the calling thread, no parallel region); with `stream`, the output is written
    # through an L1 tile with streaming stores (only the kernels that stream look at it).
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


# ================================================================================ relu
# y = f(x): max(x, 0); NaN and -0 pass through
# f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is NaN)
# The backward selects on the bits (v_select): as a plain select GCC loaded g under a mask, and
# the loop ran slower from memory than leaky_relu's, which loads g for both arms
# (docs/kernels/activations.md).
# Reference: mlkernels/reference/activations.py, relu and relu_backward.
# Run: both directions stream large outputs; a memory-bound loop (SERIAL_BELOW_MEMORY_BOUND).

cdef inline void relu(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = max(x, 0); NaN and -0 pass through."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            relu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void relu_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else 0 (0 at the kink x = 0; NaN where x is NaN)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            relu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void leaky_relu(const floating* x, floating* y, Py_ssize_t n, floating negative_slope,
                            Run run) noexcept nogil:
    """y = x if x > 0 else negative_slope·x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            leaky_relu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), negative_slope, alone(run))
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


cdef inline void leaky_relu_backward(const floating* g, const floating* x, floating* gx,
                                     Py_ssize_t n, floating negative_slope,
                                     Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else negative_slope."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            leaky_relu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                negative_slope, alone(run))
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

cdef inline void elu(const floating* x, floating* y, Py_ssize_t n, floating alpha,
                     Run run) noexcept nogil:
    """y = x if x > 0 else alpha·(e^x − 1)."""
    cdef Py_ssize_t i, c
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            elu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alpha, alone(run))
        return
    for i in range(n):               # simd
        e = alpha * v_expm1(x[i])
        y[i] = x[i] if x[i] > 0 else e


cdef inline void elu_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                              floating alpha, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 if x > 0 else alpha·e^x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            elu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c), alpha,
                         alone(run))
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

cdef inline void selu(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = λ·(x if x > 0 else α·(e^x − 1)), α = 1.6732632423543772, λ = 1.0507009873554805."""
    cdef Py_ssize_t i, c
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            selu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        e = <floating>SELU_ALPHA * v_expm1(x[i])
        y[i] = <floating>SELU_SCALE * (x[i] if x[i] > 0 else e)


cdef inline void selu_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = λ if x > 0 else λ·α·e^x."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            selu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void gelu(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·Φ(x), Φ the standard normal CDF."""
    cdef Py_ssize_t i, c
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        y[i] = x[i] * v_ndtr(x[i])


cdef inline void gelu_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = Φ(x) + x·φ(x), φ the standard normal density."""
    cdef Py_ssize_t i, c
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void gelu_tanh(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = 0.5·x·(1 + tanh(u)) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³)."""
    cdef Py_ssize_t i, c
    cdef floating v, u
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_tanh(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
        return
    for i in range(n):               # simd
        v = x[i]
        u = <floating>SQRT_2_OVER_PI * (v + <floating>GELU_C * v * v * v)
        y[i] = v * v_sigmoid(u + u)


cdef inline void gelu_tanh_backward(const floating* g, const floating* x, floating* gx,
                                    Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(2u) + 2x·σ'(2u)·u', u' = √(2/π)·(1 + 3·0.044715·x²)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v, u, xc, d
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            gelu_tanh_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                               alone(run))
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

cdef inline void silu(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·σ(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            silu(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void silu_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(x) + x·σ'(x) = σ(x)·(1 + x·(1 − σ(x)))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            silu_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void swish(const floating* x, floating* y, Py_ssize_t n, floating beta,
                       Run run) noexcept nogil:
    """y = x·σ(beta·x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            swish(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), beta, alone(run))
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


cdef inline void swish_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                                floating beta, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(βx) + βx·σ'(βx) (the gradient with respect to x only)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            swish_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c), beta,
                           alone(run))
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

cdef inline void sigmoid(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = σ(x) = 1/(1 + e^−x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            sigmoid(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void sigmoid_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                                  Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ'(x) = σ(x)·(1 − σ(x))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            sigmoid_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void tanh(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = tanh(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            tanh(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void tanh_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1 − tanh²(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            tanh_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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

cdef inline void softplus(const floating* x, floating* y, Py_ssize_t n, floating beta,
                          floating threshold, Run run) noexcept nogil:
    """y = log(1 + e^(beta·x))/beta, or x where beta·x > threshold."""
    cdef Py_ssize_t i, c
    cdef floating v, e, inv_beta
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            softplus(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), beta, threshold, alone(run))
        return
    inv_beta = 1 / beta           # one division per call, not per element
    for i in range(n):               # simd
        v = beta * x[i]
        e = v_softplus(v) * inv_beta
        y[i] = x[i] if v > threshold else e


cdef inline void softplus_backward(const floating* g, const floating* x, floating* gx,
                                   Py_ssize_t n, floating beta, floating threshold,
                                   Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = σ(beta·x), or 1 where beta·x > threshold."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating v, e
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            softplus_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c), beta,
                              threshold, alone(run))
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

cdef inline void hardswish(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·min(max(x + 3, 0), 6)/6."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating r
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardswish(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void hardswish_backward(const floating* g, const floating* x, floating* gx,
                                    Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating d
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardswish_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                               alone(run))
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

cdef inline void hardsigmoid(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = min(max(x + 3, 0), 6)/6."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating r
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardsigmoid(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void hardsigmoid_backward(const floating* g, const floating* x, floating* gx,
                                      Py_ssize_t n, Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = 1/6 for −3 < x < 3, else 0 (0 at the kinks, as torch)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating s
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            hardsigmoid_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
                                 alone(run))
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

cdef inline void mish(const floating* x, floating* y, Py_ssize_t n, Run run) noexcept nogil:
    """y = x·tanh(log(1 + e^x))."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = y
    cdef floating z, num
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            mish(x + c * CHUNK, y + c * CHUNK, chunk_len(n, c), alone(run))
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


cdef inline void mish_backward(const floating* g, const floating* x, floating* gx, Py_ssize_t n,
                               Run run) noexcept nogil:
    """gx = g·f'(x), f'(x) = tanh(sp) + x·σ(x)·(1 − tanh²(sp)), sp = softplus(x)."""
    cdef Py_ssize_t i, c, m
    cdef TileMemory tile
    cdef floating* out = gx
    cdef floating z, num, r, q, s
    if run.threads > 1:
        for c in prange(chunk_count(n), num_threads=run.threads, schedule="static"):
            mish_backward(g + c * CHUNK, x + c * CHUNK, gx + c * CHUNK, chunk_len(n, c),
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
# ================================================================================ fused linear

cdef inline void forward_run(Op op, const floating* x, floating* y, Py_ssize_t n, floating a,
                             floating b) noexcept nogil:
    """y = f(x) on the calling thread, unstreamed: the fused linear + activation
    (_linear.pyx) applies it to a band of rows still in cache. a, b: the operation's
    parameters, in the table's order (those it has)."""
    cdef Run run
    run.threads, run.stream = 1, False
    if op == RELU:
        relu(x, y, n, run)
    elif op == LEAKY_RELU:
        leaky_relu(x, y, n, a, run)
    elif op == ELU:
        elu(x, y, n, a, run)
    elif op == SELU:
        selu(x, y, n, run)
    elif op == GELU:
        gelu(x, y, n, run)
    elif op == GELU_TANH:
        gelu_tanh(x, y, n, run)
    elif op == SILU:
        silu(x, y, n, run)
    elif op == SWISH:
        swish(x, y, n, a, run)
    elif op == SIGMOID:
        sigmoid(x, y, n, run)
    elif op == TANH:
        tanh(x, y, n, run)
    elif op == SOFTPLUS:
        softplus(x, y, n, a, b, run)
    elif op == HARDSWISH:
        hardswish(x, y, n, run)
    elif op == HARDSIGMOID:
        hardsigmoid(x, y, n, run)
    elif op == MISH:
        mish(x, y, n, run)
