"""Fused optimizer steps: one pass over memory per parameter array per step.

How it is built
---------------
* Every optimizer is one ``noexcept nogil`` function over a contiguous run of elements
  (``*_run``): it reads p, g and the state once, and writes p and the state once. A NumPy
  composition of AdamW makes ~10 passes over memory; this makes one (28 bytes per float32
  parameter: read p, g, m, v, write p, m, v).
* A step over a list of arrays is one call: the arrays are cut into work units of at most
  ``UNIT`` elements (a multiple of a cache line), and an OpenMP loop hands the units out to
  the threads, so 1,000 small arrays cost one parallel region, not 1,000.
* Per-step scalars (bias corrections, step sizes) are computed once per step in double by the
  caller and rounded once to the array's type: the inner loops do only the per-element math.
* Branches on hyperparameters (amsgrad, weight decay on or off, nesterov...) are invariant in
  the loops, so the compiler unswitches them and each variant vectorizes. They are copied
  into locals first: read through the ``Hyper*`` pointer, they could alias the arrays being
  written, and the compiler would have to reload them every iteration (no vectorization).
The formulas and their order of operations are those of torch.optim (see mlkernels/optim.py
and the reference, mlkernels/reference/optim.py).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt as sqrt_double, sqrtf
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint16_t, uint32_t, uint64_t

from mlkernels._half cimport (mlk_widen, mlk_narrow, mlk_float_bits, mlk_bf16_widen,
                             mlk_bf16_round, MLK_BF16)

cimport numpy as cnp
from mlkernels._arrays cimport plain, same_shape, share_bytes
cnp.import_array()

cdef enum:
    UNIT = 16384          # elements per work unit: 64 KiB of float32, a multiple of 64 bytes
    SERIAL_BELOW = 32768  # total elements under which one thread is faster than a region
    MAX_SLOTS = 5         # p, g and up to three state arrays

cdef enum Kind:
    SGD = 0
    ADAM = 1
    RMSPROP = 2
    ADAGRAD = 3


cdef inline floating sqrt(floating x) noexcept nogil:
    # sqrtf for float (libc.math.sqrt is the double one: it would promote the whole float32
    # expression to double -- half the vector width, and not float32 rounding)
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt_double(x)


cdef struct Hyper:
    # every hyperparameter of every optimizer, in double; the runs round them once
    double lr, momentum, dampening, weight_decay, sign      # sign: -1 when maximize, × clip
    double beta1, beta2, eps, step_size, bias_correction2_sqrt, decay
    double alpha
    bint nesterov, first_step, amsgrad, centered, has_momentum


# ------------------------------------------------------------------------------ SGD
cdef void sgd_run(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                  const Hyper* h) noexcept nogil:
    """d = sign·g + wd·p;  with momentum: buf = d (first step) or μ·buf + (1−τ)·d,
    d = d + μ·buf (nesterov) or buf;  p −= lr·d."""
    cdef floating lr = <floating>h.lr, wd = <floating>h.weight_decay, sign = <floating>h.sign
    cdef floating mu = <floating>h.momentum, damp = <floating>(1.0 - h.dampening)
    cdef bint has_momentum = h.has_momentum, first_step = h.first_step, nesterov = h.nesterov
    cdef floating d
    cdef Py_ssize_t i
    for i in range(n):  # simd
        d = sign * g[i]
        if wd != 0:
            d = d + wd * p[i]
        if has_momentum:
            if first_step:
                buf[i] = d
            else:
                buf[i] = mu * buf[i] + damp * d
            if nesterov:
                d = d + mu * buf[i]
            else:
                d = buf[i]
        p[i] = p[i] - lr * d


# ------------------------------------------------------------------------------ Adam / AdamW
cdef void adam_run(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                   Py_ssize_t n, const Hyper* h) noexcept nogil:
    """AdamW: p ← p·(1 − lr·wd) (``decay``); Adam: g ← g + wd·p (L2).
    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  v̂max ← max(v̂max, v) (amsgrad)
    p ← p − step_size·m / (√v / √(1−β2ᵗ) + eps),  step_size = lr / (1−β1ᵗ)."""
    cdef floating sign = <floating>h.sign, l2 = <floating>h.weight_decay
    cdef floating decay = <floating>h.decay, b1 = <floating>h.beta1, b2 = <floating>h.beta2
    cdef floating one_b1 = <floating>(1.0 - h.beta1), one_b2 = <floating>(1.0 - h.beta2)
    cdef floating step_size = <floating>h.step_size, eps = <floating>h.eps
    cdef floating bc2_sqrt = <floating>h.bias_correction2_sqrt
    cdef bint amsgrad = h.amsgrad
    cdef floating gi, mi, vi, denom, pi
    cdef Py_ssize_t i
    for i in range(n):  # simd
        gi = sign * g[i]
        if l2 != 0:
            gi = gi + l2 * p[i]
        pi = p[i] * decay              # decay is exactly 1 for Adam: p·1 = p, no branch needed
        mi = b1 * m[i] + one_b1 * gi
        vi = b2 * v[i] + one_b2 * gi * gi
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = vmax[i] if vmax[i] > vi else vi
            vmax[i] = vi
        denom = sqrt(vi) / bc2_sqrt + eps
        p[i] = pi - step_size * mi / denom


# ------------------------------------------------------------------------------ RMSprop
cdef inline floating rmsprop_point(floating p, floating g, floating* sq, floating* buf,
                                   floating* gavg, Py_ssize_t i, floating sign, floating wd,
                                   floating alpha, floating one_alpha, floating eps, floating lr,
                                   floating mu, bint centered, bint has_momentum) noexcept nogil:
    """One element of rmsprop_run: p and g its values, the states updated at [i]; returns the
    new p. centered and has_momentum are constants where it is inlined (each of rmsprop_run's
    loops is one combination; the 16-bit loop of rmsprop_run_bf16 calls it too)."""
    cdef floating gi, si, ai, b
    gi = sign * g
    if wd != 0:
        gi = gi + wd * p
    si = alpha * sq[i] + one_alpha * gi * gi
    sq[i] = si
    if centered:
        gavg[i] = alpha * gavg[i] + one_alpha * gi
        ai = sqrt(si - gavg[i] * gavg[i]) + eps
    else:
        ai = sqrt(si) + eps
    if has_momentum:
        b = mu * buf[i] + gi / ai
        buf[i] = b
        return p - lr * b
    return p - lr * gi / ai


cdef void rmsprop_run(floating* p, const floating* g, floating* sq, floating* buf,
                      floating* gavg, Py_ssize_t n, const Hyper* h) noexcept nogil:
    """g ← sign·g + wd·p;  s ← α·s + (1−α)·g²;  centered: ḡ ← α·ḡ + (1−α)·g, a = √(s − ḡ²) + eps,
    else a = √s + eps;  momentum: buf ← μ·buf + g/a, p ← p − lr·buf;  else p ← p − lr·g/a.
    One loop per combination of centered and momentum, written out: GCC did not unswitch
    the two flags of one loop -- it vectorized it with both square roots and masked loads of
    the absent states (buf, ḡ: NULL), and the plain step ran slower than the centered one
    with momentum that moves more bytes (docs/kernels/bf16.md)."""
    cdef floating sign = <floating>h.sign, wd = <floating>h.weight_decay
    cdef floating alpha = <floating>h.alpha, one_alpha = <floating>(1.0 - h.alpha)
    cdef floating eps = <floating>h.eps, lr = <floating>h.lr, mu = <floating>h.momentum
    cdef Py_ssize_t i
    if h.centered and h.has_momentum:
        for i in range(n):  # simd
            p[i] = rmsprop_point(p[i], g[i], sq, buf, gavg, i, sign, wd, alpha, one_alpha, eps,
                                 lr, mu, True, True)
    elif h.centered:
        for i in range(n):  # simd
            p[i] = rmsprop_point(p[i], g[i], sq, buf, gavg, i, sign, wd, alpha, one_alpha, eps,
                                 lr, mu, True, False)
    elif h.has_momentum:
        for i in range(n):  # simd
            p[i] = rmsprop_point(p[i], g[i], sq, buf, gavg, i, sign, wd, alpha, one_alpha, eps,
                                 lr, mu, False, True)
    else:
        for i in range(n):  # simd
            p[i] = rmsprop_point(p[i], g[i], sq, buf, gavg, i, sign, wd, alpha, one_alpha, eps,
                                 lr, mu, False, False)


# ------------------------------------------------------------------------------ Adagrad
cdef inline floating adagrad_point(floating p, floating g, floating* ssum, Py_ssize_t i,
                                   floating sign, floating wd, floating clr,
                                   floating eps) noexcept nogil:
    """One element of adagrad_run: p and g its values, S updated at [i]; returns the new p
    (the 16-bit loop of adagrad_run_bf16 calls it too)."""
    cdef floating gi, si
    gi = sign * g
    if wd != 0:
        gi = gi + wd * p
    si = ssum[i] + gi * gi
    ssum[i] = si
    return p - clr * gi / (sqrt(si) + eps)


cdef void adagrad_run(floating* p, const floating* g, floating* ssum, Py_ssize_t n,
                      const Hyper* h) noexcept nogil:
    """g ← sign·g + wd·p;  S ← S + g²;  p ← p − clr·g / (√S + eps),
    clr = lr / (1 + (t − 1)·lr_decay) (``step_size``)."""
    cdef floating sign = <floating>h.sign, wd = <floating>h.weight_decay
    cdef floating clr = <floating>h.step_size, eps = <floating>h.eps
    cdef Py_ssize_t i
    for i in range(n):  # simd
        p[i] = adagrad_point(p[i], g[i], ssum, i, sign, wd, clr, eps)


# ------------------------------------------------------------------------------ driver
cdef void run_unit(Kind kind, floating** slots, Py_ssize_t start, Py_ssize_t n,
                   const Hyper* h) noexcept nogil:
    cdef floating* s[MAX_SLOTS]
    cdef int j
    for j in range(MAX_SLOTS):
        s[j] = slots[j] + start if slots[j] != NULL else NULL
    if kind == SGD:
        sgd_run(s[0], s[1], s[2], n, h)
    elif kind == ADAM:
        adam_run(s[0], s[1], s[2], s[3], s[4], n, h)
    elif kind == RMSPROP:
        rmsprop_run(s[0], s[1], s[2], s[3], s[4], n, h)
    else:
        adagrad_run(s[0], s[1], s[2], n, h)


cdef void step_all(Kind kind, floating** table, Py_ssize_t* sizes, Py_ssize_t n_arrays,
                   const Hyper* h, int n_threads) noexcept nogil:
    """Cut every array into units of ≤ UNIT elements and run the units in parallel."""
    cdef Py_ssize_t a, u, start, n_units = 0, total = 0
    for a in range(n_arrays):
        n_units += (sizes[a] + UNIT - 1) // UNIT
        total += sizes[a]
    if n_units == 0:
        return
    cdef Py_ssize_t* unit_array = <Py_ssize_t*>malloc(2 * n_units * sizeof(Py_ssize_t))
    cdef Py_ssize_t* unit_start = unit_array + n_units
    if unit_array == NULL:     # cannot happen for sane inputs; fall back to whole arrays
        for a in range(n_arrays):
            run_unit(kind, &table[a * MAX_SLOTS], 0, sizes[a], h)
        return
    u = 0
    for a in range(n_arrays):
        start = 0
        while start < sizes[a]:
            unit_array[u] = a
            unit_start[u] = start
            start += UNIT
            u += 1
    if total < SERIAL_BELOW or n_threads <= 1:
        for u in range(n_units):
            a = unit_array[u]
            run_unit(kind, &table[a * MAX_SLOTS], unit_start[u],
                     min(<Py_ssize_t>UNIT, sizes[a] - unit_start[u]), h)
    else:
        for u in prange(n_units, num_threads=n_threads, schedule="static"):
            run_unit(kind, &table[unit_array[u] * MAX_SLOTS], unit_start[u],
                     min(<Py_ssize_t>UNIT, sizes[unit_array[u]] - unit_start[u]), h)
    free(unit_array)


cdef void* data_or_null(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline bint usable_as_is(object a, int typenum, bint writeable):
    """An exact ndarray the kernel can take the data pointer of (writeable too if it is updated
    in place)."""
    return (cnp.PyArray_CheckExact(a) and plain(<cnp.ndarray>a, typenum)
            and (not writeable or cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a)))


def all_usable_as_is(list params, list grads, list states):
    """The fast path of mlkernels/optim.py's validation, for long lists of small arrays: True
    when every array can go to the kernel as it is -- params, grads and the state arrays (lists
    of None or of arrays, one per param) all exact ndarrays of params[0]'s float type, native,
    C-contiguous and aligned, with the params' shapes; params and states writeable; no state
    array overlapping its param or another of its states. Checked in C, because the Python
    checks cost more than the step itself for a model of many small arrays.
    False says nothing more: the caller then runs the full validation, which names the problem
    (and accepts the cases this test declines, such as strided grads, by copying them)."""
    cdef Py_ssize_t n = len(params), i, j, k
    cdef int typenum
    cdef list column
    cdef cnp.ndarray p, s
    if n == 0 or len(grads) != n or not cnp.PyArray_CheckExact(params[0]):
        return False
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>params[0])
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        return False
    for column in states:
        if len(column) != n:
            return False
    for i in range(n):
        if not usable_as_is(params[i], typenum, True) or not usable_as_is(grads[i], typenum, False):
            return False
        p = <cnp.ndarray>params[i]
        if not same_shape(p, <cnp.ndarray>grads[i]):
            return False
        for j in range(len(states)):
            if states[j][i] is None:
                continue
            if not usable_as_is(states[j][i], typenum, True):
                return False
            s = <cnp.ndarray>states[j][i]
            if not same_shape(s, p) or share_bytes(s, p):
                return False
            for k in range(j):
                if states[k][i] is not None and share_bytes(s, <cnp.ndarray>states[k][i]):
                    return False
    return True


cdef Hyper hyper_of(dict hyper):
    """The run functions' Hyper from optim.py's dict of per-step scalars (absent: neutral)."""
    cdef Hyper h
    h.lr = hyper.get("lr", 0.0); h.momentum = hyper.get("momentum", 0.0)
    h.dampening = hyper.get("dampening", 0.0); h.weight_decay = hyper.get("weight_decay", 0.0)
    # sign: ±1 for maximize, times the gradient-clipping coefficient (optim.py's max_grad_norm):
    # g·(±coef) rounds like clip_grad_norm_'s g·coef, then negation (exact)
    h.sign = (-1.0 if hyper.get("maximize", False) else 1.0) * hyper.get("grad_scale", 1.0)
    h.beta1 = hyper.get("beta1", 0.0); h.beta2 = hyper.get("beta2", 0.0)
    h.eps = hyper.get("eps", 0.0); h.step_size = hyper.get("step_size", 0.0)
    h.bias_correction2_sqrt = hyper.get("bias_correction2_sqrt", 1.0)
    h.decay = hyper.get("decay", 1.0); h.alpha = hyper.get("alpha", 0.0)
    h.nesterov = hyper.get("nesterov", False); h.first_step = hyper.get("first_step", False)
    h.amsgrad = hyper.get("amsgrad", False); h.centered = hyper.get("centered", False)
    h.has_momentum = h.momentum != 0
    return h


def fused_step(int kind, bint is_double, list columns, dict hyper, int n_threads):
    """Run one optimizer step over lists of arrays, in place.

    ``columns`` is a list of up to five lists, all of the same length (one entry per parameter
    array): params, grads, then the state arrays in the order of the optimizer's run function;
    an entry is None where a state is unused. Everything has been validated by
    mlkernels/optim.py: same dtype, same size, C-contiguous, params and state writeable.
    """
    cdef Py_ssize_t n_arrays = len(columns[0]), a, c
    cdef Hyper h = hyper_of(hyper)
    cdef void** table = <void**>malloc(max(n_arrays, 1) * MAX_SLOTS * sizeof(void*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc(max(n_arrays, 1) * sizeof(Py_ssize_t))
    if table == NULL or sizes == NULL:
        free(table); free(sizes)
        raise MemoryError()
    try:
        for a in range(n_arrays):
            sizes[a] = cnp.PyArray_SIZE(<cnp.ndarray>columns[0][a])
            for c in range(MAX_SLOTS):
                table[a * MAX_SLOTS + c] = data_or_null(columns[c][a]) if c < len(columns) else NULL
        with nogil:
            if is_double:
                step_all[double](<Kind>kind, <double**>table, sizes, n_arrays, &h, n_threads)
            else:
                step_all[float](<Kind>kind, <float**>table, sizes, n_arrays, &h, n_threads)
    finally:
        free(table)
        free(sizes)


# ------------------------------------------------------------------------------ 16-bit params
# bfloat16 / float16 parameters (and grads), states float32 or 16-bit, optional float32 master
# copies, for every optimizer above (SGD, Adam/AdamW, RMSprop, Adagrad): blocks of HALF_BLOCK
# elements are widened into float32 buffers on the stack, the optimizer's float32 run function
# (through run_unit, as fused_step calls it) updates them, and the results are stored back --
# p rounded to nearest even, or (bfloat16) stochastically, or from the master copy. The float32
# math is the float32 optimizer's own, so with master weights p is exactly the float32
# optimizer's result, rounded.
# bfloat16 params with float32 states, rounded to nearest (with or without master copies) --
# the common case -- skips the blocks in the avx512 variant for Adam/AdamW (amsgrad off),
# plain RMSprop (not centered, no momentum) and Adagrad: adam_run_bf16, rmsprop_run_bf16 and
# adagrad_run_bf16 convert inside their one loop (faster there than the block path at 16M
# params; Adam's no faster in the avx2 and baseline variants: docs/kernels/bf16.md).
# RMSprop's and Adagrad's loops call the point functions of their float32 runs; Adam's writes
# out adam_run's contractions (adam_point, below).

cdef extern from "_philox.h" nogil:
    void mlk_philox_u16(uint64_t e0, Py_ssize_t n, uint32_t k0, uint32_t k1, uint16_t* u)

cdef enum:
    HALF_BLOCK = 1024            # elements widened at once: 5 float32 buffers, 20 KiB of stack
    ROUND_NEAREST = 0
    ROUND_STOCHASTIC = 1


cdef inline uint16_t bf16_round_stochastic(float f, uint16_t r) noexcept nogil:
    """bfloat16 of f rounded up with probability (dropped low 16 bits)/2^16, else down: the
    16 random bits r added under the kept part, then truncated. Unbiased: E[result] = f, so
    updates far below half a unit in the last place still move p on average (round to nearest
    would drop every one of them). NaN: the quiet NaN of its sign; a carry out of the
    largest finite value gives inf, as rounding up should."""
    cdef uint32_t u = mlk_float_bits(f)
    cdef uint32_t a = u & 0x7FFFFFFF
    cdef uint32_t quiet_nan = ((u >> 16) & 0x8000) | 0x7FC0
    cdef uint32_t noise = 0 if a >= 0x7F800000 else r        # (selects: the loop vectorizes)
    return <uint16_t>(quiet_nan if a > 0x7F800000 else (u + noise) >> 16)


cdef extern from *:
    """
    /* a·b + c rounded once where the CPU has FMA (the avx2 and avx512 variants), twice where
     * it has not (baseline). */
    #if defined(__FMA__)
    #define MLK_MUL_ADD_F(a, b, c) __builtin_fmaf((a), (b), (c))
    #else
    #define MLK_MUL_ADD_F(a, b, c) ((a) * (b) + (c))
    #endif
    /* The loops that convert in place (adam_run_bf16, rmsprop_run_bf16, adagrad_run_bf16)
     * are taken in the avx512 variant only, where they were measured faster than the block
     * path (at 16M params); in the avx2 variant adam's two ran even, in the baseline one its
     * loop was slower with master weights (docs/kernels/bf16.md). */
    #if defined(__AVX512F__)
    #define MLK_BF16_IN_LOOP 1
    #else
    #define MLK_BF16_IN_LOOP 0
    #endif
    """
    float MLK_MUL_ADD_F(float a, float b, float c) noexcept nogil
    bint MLK_BF16_IN_LOOP


cdef inline float adam_point(float p, float g, float* m, float* v, Py_ssize_t i, float sign,
                             float l2, float decay, float b1, float b2, float one_b1,
                             float one_b2, float step_size, float eps,
                             float bc2_sqrt) noexcept nogil:
    """One element of adam_run[float] (amsgrad off): updates m[i] and v[i], returns the new p.
    GCC contracts adam_run's sums of products into FMAs where the CPU has them (-ffp-contract
    =fast, its default), and which ones it contracts is its choice per loop: in a loop of
    other shape (this one's conversions) it chose differently, and p came out one ulp apart.
    So the contractions it makes in adam_run are written out here, and this loop computes
    adam_run's bits (tests/test_half_optim.py checks it on every ISA variant: a compiler that
    contracts adam_run otherwise fails them)."""
    cdef float gi = sign * g, mi, vi, denom
    if l2 != 0:
        gi = MLK_MUL_ADD_F(sign, g, l2 * p)             # ±g + wd·p
    mi = MLK_MUL_ADD_F(b1, m[i], one_b1 * gi)           # β1·m + (1−β1)·g
    vi = MLK_MUL_ADD_F(b2, v[i], one_b2 * gi * gi)      # β2·v + (1−β2)·g²
    m[i] = mi
    v[i] = vi
    denom = sqrtf(vi) / bc2_sqrt + eps
    return MLK_MUL_ADD_F(p, decay, -(step_size * mi / denom))   # p·decay − step_size·m/denom


cdef void adam_run_bf16(uint16_t* p16, const uint16_t* g16, float* master, Py_ssize_t start,
                        float* m, float* v, Py_ssize_t n, const Hyper* h) noexcept nogil:
    """adam_run for bfloat16 p and g with float32 states, rounding to nearest: adam_run's
    arithmetic per element (adam_point), with the conversions inside the loop -- g and p (or its float32
    master copy) widened as they are read (a shift), the new p rounded as it is stored (and
    kept in the master copy). One pass over memory and no block buffers: the common case of
    16-bit training (the block path of half_unit does the other modes, and amsgrad: with
    its third state the loop has too many arrays for GCC's run-time alias checks, and stays
    scalar). p16, g16, m, v point at element ``start`` already; master (or NULL) at 0."""
    cdef float sign = <float>h.sign, l2 = <float>h.weight_decay
    cdef float decay = <float>h.decay, b1 = <float>h.beta1, b2 = <float>h.beta2
    cdef float one_b1 = <float>(1.0 - h.beta1), one_b2 = <float>(1.0 - h.beta2)
    cdef float step_size = <float>h.step_size, eps = <float>h.eps
    cdef float bc2_sqrt = <float>h.bias_correction2_sqrt
    cdef float pn
    cdef Py_ssize_t i
    if master == NULL:
        for i in range(n):  # simd
            p16[i] = mlk_bf16_round(adam_point(mlk_bf16_widen(p16[i]), mlk_bf16_widen(g16[i]),
                                               m, v, i, sign, l2, decay, b1, b2, one_b1,
                                               one_b2, step_size, eps, bc2_sqrt))
    else:
        master = master + start
        for i in range(n):  # simd
            pn = adam_point(master[i], mlk_bf16_widen(g16[i]), m, v, i, sign, l2, decay,
                            b1, b2, one_b1, one_b2, step_size, eps, bc2_sqrt)
            master[i] = pn
            p16[i] = mlk_bf16_round(pn)


cdef bint use_run_bf16 = MLK_BF16_IN_LOOP


def set_run_bf16(bint flag):
    """Whether half_unit takes the loops that convert in place (adam_run_bf16,
    rmsprop_run_bf16, adagrad_run_bf16) where it can (True) or the block path; returns the
    previous setting (the default: True in the avx512 variant only). For benchmarks that
    time the two against each other and tests that check both (docs/kernels/bf16.md), in
    any variant."""
    global use_run_bf16
    previous = use_run_bf16
    use_run_bf16 = flag
    return previous


cdef void rmsprop_run_bf16(uint16_t* p16, const uint16_t* g16, float* master,
                           Py_ssize_t start, float* sq, Py_ssize_t n,
                           const Hyper* h) noexcept nogil:
    """rmsprop_run (not centered, no momentum: torch's defaults) for bfloat16 p and g with a
    float32 s, rounding to nearest: rmsprop_point per element, the conversions inside the
    loop as in adam_run_bf16. Pointers as adam_run_bf16's."""
    cdef float sign = <float>h.sign, wd = <float>h.weight_decay
    cdef float alpha = <float>h.alpha, one_alpha = <float>(1.0 - h.alpha)
    cdef float eps = <float>h.eps, lr = <float>h.lr
    cdef float pn
    cdef Py_ssize_t i
    if master == NULL:
        for i in range(n):  # simd
            p16[i] = mlk_bf16_round(rmsprop_point(mlk_bf16_widen(p16[i]), mlk_bf16_widen(g16[i]),
                                                  sq, <float*>NULL, <float*>NULL, i, sign, wd,
                                                  alpha, one_alpha, eps, lr, 0.0, False, False))
    else:
        master = master + start
        for i in range(n):  # simd
            pn = rmsprop_point(master[i], mlk_bf16_widen(g16[i]), sq, <float*>NULL,
                               <float*>NULL, i, sign, wd, alpha, one_alpha, eps, lr, 0.0,
                               False, False)
            master[i] = pn
            p16[i] = mlk_bf16_round(pn)


cdef void adagrad_run_bf16(uint16_t* p16, const uint16_t* g16, float* master,
                           Py_ssize_t start, float* ssum, Py_ssize_t n,
                           const Hyper* h) noexcept nogil:
    """adagrad_run for bfloat16 p and g with a float32 S, rounding to nearest:
    adagrad_point per element, the conversions inside the loop as in adam_run_bf16."""
    cdef float sign = <float>h.sign, wd = <float>h.weight_decay
    cdef float clr = <float>h.step_size, eps = <float>h.eps
    cdef float pn
    cdef Py_ssize_t i
    if master == NULL:
        for i in range(n):  # simd
            p16[i] = mlk_bf16_round(adagrad_point(mlk_bf16_widen(p16[i]), mlk_bf16_widen(g16[i]),
                                                  ssum, i, sign, wd, clr, eps))
    else:
        master = master + start
        for i in range(n):  # simd
            pn = adagrad_point(master[i], mlk_bf16_widen(g16[i]), ssum, i, sign, wd, clr, eps)
            master[i] = pn
            p16[i] = mlk_bf16_round(pn)


cdef void half_unit(Kind kind, int storage, int state_kind, int rounding, void** slots,
                    float* master, Py_ssize_t start, Py_ssize_t n, uint64_t e0, uint32_t k0,
                    uint32_t k1, const Hyper* h) noexcept nogil:
    """Elements [start, start + n) of one parameter: slots p, g, then up to three states
    (16-bit when state_kind != 0, else float32); master (float32) or NULL. e0: the
    stochastic-rounding counter of element `start`."""
    if (use_run_bf16 and storage == MLK_BF16 and state_kind == 0
            and rounding == ROUND_NEAREST):
        if kind == ADAM and not h.amsgrad:
            adam_run_bf16(<uint16_t*>slots[0] + start, <const uint16_t*>slots[1] + start,
                          master, start, <float*>slots[2] + start, <float*>slots[3] + start, n,
                          h)
            return
        if kind == RMSPROP and not h.centered and not h.has_momentum:
            rmsprop_run_bf16(<uint16_t*>slots[0] + start, <const uint16_t*>slots[1] + start,
                             master, start, <float*>slots[2] + start, n, h)
            return
        if kind == ADAGRAD:
            adagrad_run_bf16(<uint16_t*>slots[0] + start, <const uint16_t*>slots[1] + start,
                             master, start, <float*>slots[2] + start, n, h)
            return
    cdef float bp[HALF_BLOCK]
    cdef float bg[HALF_BLOCK]
    cdef float bs[MAX_SLOTS - 2][HALF_BLOCK]
    cdef uint16_t r[HALF_BLOCK]
    cdef float* fs[MAX_SLOTS]        # the float32 slots the run function gets: p, g, states
    cdef float* pf
    cdef uint16_t* p16
    cdef Py_ssize_t off = start, m, j, i, end = start + n
    while off < end:
        m = min(<Py_ssize_t>HALF_BLOCK, end - off)
        p16 = <uint16_t*>slots[0] + off
        if master != NULL:
            pf = master + off
        else:
            pf = bp
            mlk_widen(storage, p16, bp, m)
        mlk_widen(storage, <uint16_t*>slots[1] + off, bg, m)
        fs[0] = pf
        fs[1] = bg
        for j in range(2, MAX_SLOTS):          # the states this optimizer has (NULL: unused)
            if slots[j] == NULL:
                fs[j] = NULL
            elif state_kind == 0:
                fs[j] = <float*>slots[j] + off
            else:
                fs[j] = bs[j - 2]
                mlk_widen(state_kind, <uint16_t*>slots[j] + off, bs[j - 2], m)
        run_unit[float](kind, fs, 0, m, h)     # the float32 optimizer's own run function
        if state_kind != 0:
            for j in range(2, MAX_SLOTS):
                if slots[j] != NULL:
                    mlk_narrow(state_kind, bs[j - 2], <uint16_t*>slots[j] + off, m)
        if rounding == ROUND_STOCHASTIC:
            mlk_philox_u16(e0 + <uint64_t>(off - start), m, k0, k1, r)
            for i in range(m):  # simd
                p16[i] = bf16_round_stochastic(pf[i], r[i])
        else:
            mlk_narrow(storage, pf, p16, m)
        off += m


cdef inline void half_step_unit(Kind kind, int storage, int state_kind, int rounding,
                                void** table, const Py_ssize_t* info, Py_ssize_t u,
                                uint64_t counter, uint32_t k0, uint32_t k1,
                                const Hyper* h) noexcept nogil:
    """Work unit u: (array, start, length, number of its first element in the step)."""
    cdef void** slots = table + info[4 * u] * (MAX_SLOTS + 1)
    half_unit(kind, storage, state_kind, rounding, slots, <float*>slots[MAX_SLOTS],
              info[4 * u + 1], info[4 * u + 2], counter + <uint64_t>info[4 * u + 3], k0, k1, h)


def fused_step_half(int kind, int storage, int state_kind, int rounding, list columns,
                    list masters, dict hyper, uint64_t seed, uint64_t counter, int n_threads):
    """fused_step for 16-bit params (storage kind of _half.h: 1 bfloat16, 2 float16): columns
    as fused_step's (params and grads 16-bit; states 16-bit if state_kind else float32);
    masters: float32 copies of the params (or a list of None); rounding ROUND_*; the
    stochastic rounding of element e of the step draws Philox(seed) at counter + e, e counted
    across the params in order. Validated by mlkernels/optim.py."""
    cdef Py_ssize_t n_arrays = len(columns[0]), a, c, u, n_units = 0, total = 0, size
    cdef Hyper h = hyper_of(hyper)
    for a in range(n_arrays):
        size = cnp.PyArray_SIZE(<cnp.ndarray>columns[0][a])
        n_units += (size + UNIT - 1) // UNIT
        total += size
    if n_units == 0:
        return
    cdef void** table = <void**>malloc(n_arrays * (MAX_SLOTS + 1) * sizeof(void*))
    cdef Py_ssize_t* unit_info = <Py_ssize_t*>malloc(4 * n_units * sizeof(Py_ssize_t))
    if table == NULL or unit_info == NULL:
        free(table); free(unit_info)
        raise MemoryError()
    cdef uint32_t k0 = <uint32_t>seed, k1 = <uint32_t>(seed >> 32)
    cdef Py_ssize_t first = 0, st
    cdef int nt = 1 if total < SERIAL_BELOW else n_threads
    try:
        u = 0
        for a in range(n_arrays):
            size = cnp.PyArray_SIZE(<cnp.ndarray>columns[0][a])
            for c in range(MAX_SLOTS):
                table[a * (MAX_SLOTS + 1) + c] = (data_or_null(columns[c][a])
                                                  if c < len(columns) else NULL)
            table[a * (MAX_SLOTS + 1) + MAX_SLOTS] = data_or_null(masters[a])
            st = 0
            while st < size:
                unit_info[4 * u] = a
                unit_info[4 * u + 1] = st
                unit_info[4 * u + 2] = min(<Py_ssize_t>UNIT, size - st)
                unit_info[4 * u + 3] = first + st        # the element's number in the step
                st += UNIT
                u += 1
            first += size
        with nogil:
            if nt <= 1:
                for u in range(n_units):
                    half_step_unit(<Kind>kind, storage, state_kind, rounding, table, unit_info,
                                   u, counter, k0, k1, &h)
            else:
                for u in prange(n_units, num_threads=nt, schedule="static"):
                    half_step_unit(<Kind>kind, storage, state_kind, rounding, table, unit_info,
                                   u, counter, k0, k1, &h)
    finally:
        free(table)
        free(unit_info)
