"""Spec rows of the attention family.

A shape is ``(*leading, Tq, Tk, d, dv)``: q (*leading, Tq, d), k (*leading, Tk, d),
v (*leading, Tk, dv). The shapes cover empty sequences, one query or key, d = 1, dv != d,
sizes either side of the kernels' 64-row blocks, and no leading axis at all.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import sys

import numpy as np

from .. import attention as fast
from .. import reference as ref
from ..testing import gradcheck
from . import BenchCase, KernelSpec, torch_or_none

SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 7, 4, 3), (1, 0, 4, 8, 8), (2, 3, 0, 4, 5),
          (3, 9, 9, 1, 2), (6, 4, 3, 5), (0, 5, 5, 4, 4), (2, 4, 5, 3, 0),
          (1, 2, 65, 63, 16, 24), (2, 129, 64, 64, 64), (1, 70, 200, 8, 33)]


def _split(shape):
    *lead, Tq, Tk, d, dv = shape
    return tuple(lead), Tq, Tk, d, dv


def _qkv(rng, dtype, shape):
    lead, Tq, Tk, d, dv = _split(shape)
    q = (rng.standard_normal(lead + (Tq, d)) * 1.5).astype(dtype)   # peaked and flat rows
    k = rng.standard_normal(lead + (Tk, d)).astype(dtype)
    v = rng.standard_normal(lead + (Tk, dv)).astype(dtype)
    return q, k, v


def _options(rng):
    return dict(is_causal=bool(rng.integers(2)), scale=[None, 0.3][int(rng.integers(2))])


def _forward_args(rng, dtype, shape):
    q, k, v = _qkv(rng, dtype, shape)
    return (q, k, v), dict(_options(rng), return_lse=True)


def _backward_args(rng, dtype, shape):
    q, k, v = _qkv(rng, dtype, shape)
    options = _options(rng)
    out, lse = fast.scaled_dot_product_attention(q, k, v, return_lse=True, **options)
    g = rng.standard_normal(out.shape).astype(dtype)
    return (g, q, k, v, out, lse), options


# ------------------------------------------------------------------ error scales

def visible(Tq: int, Tk: int, is_causal: bool) -> np.ndarray:
    """(Tq, Tk): does query i see key j."""
    i, j = np.arange(Tq)[:, None], np.arange(Tk)[None, :]
    return j <= i if is_causal else np.ones((Tq, Tk), bool)


def _probabilities(q, k, lse, is_causal, scale):
    """p and a first-order bound of its rounding error in the kernel's precision, in units
    of that precision: a computed p_ij = e^(s_ij − lse_i) is off by about
    u·p_ij·(1 + Σ_c |scale·q_ic·k_jc| + |s_ij − lse_i|) (the dot product's rounding, the
    subtraction's, the exponential's). Both are 0 where the query does not see the key."""
    q, k, lse = (np.asarray(a, np.float64) for a in (q, k, lse))
    factor = ref.attention._default_scale(q.shape[-1], scale)
    kt = np.swapaxes(k, -1, -2)
    s = (q * factor) @ kt
    terms = np.abs(q * factor) @ np.abs(kt)
    mask = visible(q.shape[-2], k.shape[-2], is_causal)
    with np.errstate(invalid="ignore", over="ignore"):
        shift = s - lse[..., None]
        p = np.where(mask, np.exp(shift), 0.0)
        budget = np.where(mask, p * (1 + terms + np.abs(shift)), 0.0)
    return p, budget, factor


def _forward_scale(args, kwargs):
    """out_i = Σ_j p_ij v_j: the errors of p weighted by |v|, and the sum's own rounding;
    lse: Σ_j of p's error budget."""
    q, k, v = args
    _, lse = ref.scaled_dot_product_attention(q, k, v, is_causal=kwargs["is_causal"],
                                              scale=kwargs["scale"], return_lse=True)
    p, budget, _ = _probabilities(q, k, lse, kwargs["is_causal"], kwargs["scale"])
    return [(budget + p) @ np.abs(np.asarray(v, np.float64)), 1 + budget.sum(axis=-1)]


def _backward_scale(args, kwargs):
    """ds_ij = p_ij (dp_ij − D_i), dp = dO·vᵀ: p's error budget times |dp − D|, and the
    rounding of dp (Σ|dO||v|) and D; then dq, dk, dv as sums of |terms| of those."""
    g, q, k, v, out, lse = (np.asarray(a, np.float64) for a in args)
    p, budget, factor = _probabilities(q, k, lse, kwargs["is_causal"], kwargs["scale"])
    vt = np.swapaxes(v, -1, -2)
    D = (g * out).sum(axis=-1)[..., None]
    dp = g @ vt
    ds = p * (dp - D)
    err_ds = budget * np.abs(dp - D) + p * (np.abs(g) @ np.abs(vt) + np.abs(D))
    weight = err_ds + np.abs(ds)
    return [factor * weight @ np.abs(k), factor * np.swapaxes(weight, -1, -2) @ np.abs(q),
            np.swapaxes(budget + p, -1, -2) @ np.abs(g)]


# ------------------------------------------------------------------ gradient checks

def _gradcheck(rng):
    """Finite differences of the forward, float64: causal or not, Tq != Tk both ways, a
    scale given, two leading axes."""
    for lead, Tq, Tk, d, dv, causal, scale in [((2,), 5, 3, 4, 3, True, None),
                                                ((1, 2), 3, 6, 2, 5, False, 0.7),
                                                ((2,), 4, 7, 3, 2, True, 1.3)]:
        q = rng.standard_normal(lead + (Tq, d))
        k = rng.standard_normal(lead + (Tk, d))
        v = rng.standard_normal(lead + (Tk, dv))

        def forward(q, k, v):
            return fast.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)

        def backward(r, q, k, v):
            out, lse = fast.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                         scale=scale, return_lse=True)
            return fast.scaled_dot_product_attention_backward(r, q, k, v, out, lse,
                                                              is_causal=causal, scale=scale)
        gradcheck(forward, backward, (q, k, v), (0, 1, 2))


# ------------------------------------------------------------------ benchmarks

def numpy_attention(q, k, v, is_causal):
    """How one writes attention in NumPy: the whole score matrix, in the inputs' dtype."""
    d = q.shape[-1]
    s = (q @ np.swapaxes(k, -1, -2)) * q.dtype.type(1 / np.sqrt(d))
    if is_causal:
        s = np.where(visible(q.shape[-2], k.shape[-2], True), s, -np.inf)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return (s / s.sum(axis=-1, keepdims=True)) @ v


def numpy_attention_backward(g, q, k, v, out, is_causal):
    d = q.shape[-1]
    scale = q.dtype.type(1 / np.sqrt(d))
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    if is_causal:
        s = np.where(visible(q.shape[-2], k.shape[-2], True), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    ds = p * (g @ np.swapaxes(v, -1, -2) - (g * out).sum(axis=-1, keepdims=True))
    return (ds @ k) * scale, (np.swapaxes(ds, -1, -2) @ q) * scale, np.swapaxes(p, -1, -2) @ g


def _case(quick):
    B, H, T, d = (1, 4, 256, 64) if quick else (4, 8, 1024, 64)
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((B, H, T, d), dtype=np.float32) for _ in range(4))
    return (B, H, T, d), q, k, v, g


_CASES = {}


def _cases(quick):
    if quick not in _CASES:
        _CASES[quick] = _case(quick)
    return _CASES[quick]


def _flops(shape, causal, directions):
    B, H, T, d = shape
    return 4.0 * B * H * T * T * d * (0.5 if causal else 1.0) * directions


def _bench_forward(quick):
    (shape, q, k, v, g), torch = _cases(quick), torch_or_none()
    B, H, T, d = shape
    cases = []
    for causal in (True, False):
        out = np.empty_like(q)
        lse = np.empty(q.shape[:-1], np.float32)
        impls = {"mlkernels": lambda c=causal, o=out, l=lse: fast.scaled_dot_product_attention(
                     q, k, v, is_causal=c, out=(o, l), return_lse=True),
                 "numpy": lambda c=causal: numpy_attention(q, k, v, c)}
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))

            def torch_forward(c=causal):
                with torch.no_grad():
                    return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                                            is_causal=c)
            impls["torch"] = torch_forward
        cases.append(BenchCase(f"float32 B{B} H{H} T{T} d{d}{' causal' if causal else ''}",
                               impls, flops=_flops(shape, causal, 1),
                               nbytes=4.0 * q.size * 4, copy_nbytes=4 * q.size))
    return cases


def _bench_backward(quick):
    (shape, q, k, v, g), torch = _cases(quick), torch_or_none()
    B, H, T, d = shape
    cases = []
    for causal in (True, False):
        out, lse = fast.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                     return_lse=True)
        grads = tuple(np.empty_like(a) for a in (q, k, v))
        impls = {"mlkernels": lambda c=causal, o=out, l=lse, gr=grads:
                 fast.scaled_dot_product_attention_backward(g, q, k, v, o, l, is_causal=c,
                                                            out=gr),
                 "numpy": lambda c=causal, o=out: numpy_attention_backward(g, q, k, v, o, c)}
        if torch is not None:
            tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
            tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
            tg = torch.from_numpy(g)
            impls["torch (autograd)"] = lambda to=tout, a=(tq, tk, tv): torch.autograd.grad(
                to, a, tg, retain_graph=True)
        cases.append(BenchCase(f"float32 B{B} H{H} T{T} d{d}{' causal' if causal else ''}",
                               impls, flops=_flops(shape, causal, 2.5),
                               nbytes=4.0 * q.size * 8, copy_nbytes=4 * q.size))
    return cases


# ------------------------------------------------------------------ peak memory

def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _rss_mark() -> int:
    """Start measuring a peak: the resident-memory high-water mark is reset to the current
    resident size (``clear_refs``), which is returned. (Not ru_maxrss: Linux carries it over
    from the parent across fork and exec, so a child never sees less than its parent's.)"""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def _same_package_env() -> dict:
    """The environment of a child Python that imports the mlkernels this process imported
    (run from a neutral folder: from a repository's root, '' would find the source tree)."""
    import mlkernels
    home = os.path.dirname(os.path.dirname(os.path.abspath(mlkernels.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([home] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                   else []))
    return env


def probe_memory(impl: str, shape, direction: str) -> dict:
    """Peak memory of one causal float32 call of ``impl`` ("mlkernels" or "torch") on q, k, v
    of ``shape`` (B, H, T, d), run in a fresh process (``_memory``): how far the resident
    memory's high-water mark rises during the call above what the process held before it
    (Linux), and the tracemalloc peak (NumPy's allocations: mlkernels' outputs and
    workspace; torch allocates outside Python's view)."""
    import tracemalloc
    torch = torch_or_none() if impl == "torch" else None
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
    small = [a[:1, :1, :64] for a in (q, k, v, g)]
    if impl == "torch":
        F = torch.nn.functional
        if direction == "forward":
            def call(q, k, v, g):
                with torch.no_grad():
                    return F.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)),
                                                          is_causal=True)
        else:
            def prepare(q, k, v, g):
                t = [torch.from_numpy(a).requires_grad_() for a in (q, k, v)]
                out = F.scaled_dot_product_attention(*t, is_causal=True)
                return lambda: torch.autograd.grad(out, t, torch.from_numpy(g))
    elif direction == "forward":
        def call(q, k, v, g):
            return fast.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    else:
        def prepare(q, k, v, g):
            out, lse = fast.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                         return_lse=True)
            return lambda: fast.scaled_dot_product_attention_backward(g, q, k, v, out, lse,
                                                                      is_causal=True)
    if direction != "forward":
        prepare(*small)()                               # load code, start thread pools
        run = prepare(q, k, v, g)
    else:
        call(*small)
        run = lambda: call(q, k, v, g)                  # noqa: E731
    before = _rss_mark()
    tracemalloc.start()
    result = run()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    growth = _status("VmHWM") - before
    del result
    return {"rss_growth": growth, "traced": traced if impl == "mlkernels" else None}


def _memory(shape, direction, impls):
    """{impl: figures}: each probe in its own process. The measure is the peak during the
    call -- the inputs plus the RSS growth -- against the arrays the call cannot do without:
    q + k + v + out for the forward (the goal: under 2x), its nine arrays for the backward."""
    B, H, T, d = shape
    array = 4 * B * H * T * d
    if direction == "forward":
        held, budget, of = 3 * array, 4 * array, "q+k+v+out"
    else:
        held = 5 * array + 4 * B * H * T                # grad_out, q, k, v, out, lse
        budget, of = held + 3 * array, "its arrays (grad_out, q, k, v, out, lse, dq, dk, dv)"
    results = {}
    for impl in impls:
        code = ("import json, sys; from mlkernels.specs.attention import probe_memory; "
                "print(json.dumps(probe_memory(*json.loads(sys.argv[1]))))")
        done = subprocess.run([sys.executable, "-c", code, json.dumps([impl, shape, direction])],
                              capture_output=True, text=True, env=_same_package_env(),
                              cwd=tempfile.mkdtemp(prefix="mlkernels-probe-"))
        if done.returncode:
            results[impl] = {"text": f"probe failed: {done.stderr.strip().splitlines()[-1:]}"}
            continue
        fig = json.loads(done.stdout)
        peak = held + fig["rss_growth"]
        traced = "" if fig["traced"] is None else f", NumPy allocations {fig['traced'] / 2**20:.1f} MiB"
        results[impl] = dict(fig, peak=peak, budget=budget, text=(
            f"{peak / 2**20:.0f} MiB = inputs {held / 2**20:.0f} + {fig['rss_growth'] / 2**20:.1f}"
            f" MiB RSS growth{traced}; {peak / budget:.2f}x {of}"))
    return results


def _bench_memory(quick):
    """The peak memory of the forward and backward with T = 4096 (T = 1024 when quick), timed
    too (NumPy's dense version would need several (T, T) arrays per head: it is left out)."""
    shape = (1, 4, 1024, 64) if quick else (4, 8, 4096, 64)
    B, H, T, d = shape
    torch = torch_or_none()
    impls = ["mlkernels"] + (["torch"] if torch is not None else [])
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
    out, lse = fast.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    label = f"float32 B{B} H{H} T{T} d{d} causal"
    forward = {"mlkernels": lambda: fast.scaled_dot_product_attention(
        q, k, v, is_causal=True, out=(out, lse), return_lse=True)}
    backward = {"mlkernels": lambda: fast.scaled_dot_product_attention_backward(
        g, q, k, v, out, lse, is_causal=True)}
    if torch is not None:
        tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))

        def torch_forward():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                                        is_causal=True)
        forward["torch"] = torch_forward
        tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        tg = torch.from_numpy(g)
        backward["torch (autograd)"] = lambda: torch.autograd.grad(tout, (tq, tk, tv), tg,
                                                                   retain_graph=True)
    return [BenchCase(label, forward, flops=_flops(shape, True, 1), copy_nbytes=4 * q.size,
                      memory=lambda: _memory(shape, "forward", impls)),
            BenchCase(label, backward, flops=_flops(shape, True, 2.5), copy_nbytes=4 * q.size,
                      memory=lambda: _memory(shape, "backward", impls))]


def _bench_forward_all(quick):
    return _bench_forward(quick) + _bench_memory(quick)[:1]


def _bench_backward_all(quick):
    return _bench_backward(quick) + _bench_memory(quick)[1:]


SPECS = [
    KernelSpec("scaled_dot_product_attention", "attention", fast.scaled_dot_product_attention,
               ref.scaled_dot_product_attention, _forward_args, SHAPES, scale=_forward_scale,
               bench=_bench_forward_all),
    KernelSpec("scaled_dot_product_attention_backward", "attention",
               fast.scaled_dot_product_attention_backward,
               ref.scaled_dot_product_attention_backward, _backward_args, SHAPES,
               scale=_backward_scale, gradcheck=_gradcheck, bench=_bench_backward_all,
               backward_of="scaled_dot_product_attention"),
]
