"""Spec rows of the optimizer family: the functional steps.

The fast steps update in place and return nothing; the rows wrap them to return the updated
arrays in the reference's layout ``(params, state_1, ...)`` so both can be compared.
"""
from __future__ import annotations

import numpy as np

from .. import optim as fast
from .. import reference as ref
from . import BenchCase, KernelSpec, torch_or_none
from .storage16 import with_storage16

SHAPES = [((1,),), ((7,), (3, 5)), ((33,),), ((0,), (4,)), ((2, 3, 4), (17,), (1,)),
          ((40000,),), ((1000,), (16385,))]


def _arrays(rng, dtype, shapes, scale=1.0, positive=False):
    out = [rng.standard_normal(s) * scale for s in shapes]
    return [(np.abs(a) if positive else a).astype(dtype) for a in out]


def _options(rng, names):
    return {n: bool(rng.integers(2)) for n in names}


# each row: make_args draws the state and a combination of options from rng
def _sgd_args(rng, dtype, shapes):
    o = _options(rng, ["momentum_on", "nesterov", "maximize", "decay", "first"])
    momentum = 0.9 if o["momentum_on"] or o["nesterov"] else 0.0
    kwargs = dict(step=1 if o["first"] else 4, lr=0.05, momentum=momentum,
                  dampening=0.0 if o["nesterov"] else 0.1 * o["decay"],
                  weight_decay=0.01 * o["decay"], nesterov=o["nesterov"], maximize=o["maximize"])
    bufs = _arrays(rng, dtype, shapes) if momentum else None
    return (_arrays(rng, dtype, shapes), _arrays(rng, dtype, shapes), bufs), kwargs


def _adam_args(rng, dtype, shapes):
    o = _options(rng, ["amsgrad", "maximize", "decay"])
    kwargs = dict(step=int(rng.integers(1, 20)), lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                  weight_decay=0.05 * o["decay"], amsgrad=o["amsgrad"], maximize=o["maximize"])
    vmax = _arrays(rng, dtype, shapes, 0.1, True) if o["amsgrad"] else None
    return (_arrays(rng, dtype, shapes), _arrays(rng, dtype, shapes),
            _arrays(rng, dtype, shapes, 0.1), _arrays(rng, dtype, shapes, 0.1, True), vmax), kwargs


def _rmsprop_args(rng, dtype, shapes):
    o = _options(rng, ["centered", "momentum_on", "maximize", "decay"])
    kwargs = dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01 * o["decay"],
                  momentum=0.9 * o["momentum_on"], centered=o["centered"], maximize=o["maximize"])
    bufs = _arrays(rng, dtype, shapes) if o["momentum_on"] else None
    gavg = _arrays(rng, dtype, shapes, 0.1) if o["centered"] else None
    # a real run keeps the mean of g² at least the square of the mean of g (s ≥ ḡ²), well
    # away from the cancellation of √(s − ḡ²) when they are equal
    sq = [(np.abs(rng.standard_normal(sh)) + 0.5).astype(dtype) for sh in shapes]
    if gavg is not None:
        sq = [(s + ga.astype(np.float64) ** 2).astype(dtype) for s, ga in zip(sq, gavg)]
    return (_arrays(rng, dtype, shapes), _arrays(rng, dtype, shapes), sq, bufs, gavg), kwargs


def _adagrad_args(rng, dtype, shapes):
    o = _options(rng, ["maximize", "decay"])
    kwargs = dict(step=int(rng.integers(1, 20)), lr=0.01, lr_decay=0.01 * o["decay"],
                  weight_decay=0.01 * o["decay"], eps=1e-10, maximize=o["maximize"])
    return (_arrays(rng, dtype, shapes), _arrays(rng, dtype, shapes),
            _arrays(rng, dtype, shapes, 1.0, True)), kwargs


def _in_place(step, layout):
    """The fast step, returning the arrays it updated in the reference's layout.

    ``layout(args, kwargs)`` gives the positions of the updated argument lists."""
    def run(*args, **kwargs):
        step(*args, **kwargs)
        return tuple(_as_list(args[i]) for i in layout(args, kwargs))
    run.__name__ = step.__name__
    return run


def _as_list(a):
    return [a] if isinstance(a, np.ndarray) else list(a)


def _outputs(result):
    return [a for group in result for a in group]


def _numpy_adamw(params, grads, ms, vs, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=1e-2):
    """AdamW as a NumPy user writes it, in place: ~10 passes over memory per array."""
    for p, g, m, v in zip(params, grads, ms, vs):
        p *= 1 - lr * wd
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2 ** step))
        denom += eps
        p -= (lr / (1 - b1 ** step)) * m / denom


def _numpy_sgd_momentum(params, grads, bufs, lr=1e-3, mu=0.9):
    for p, g, b in zip(params, grads, bufs):
        b *= mu
        b += g
        p -= lr * b


def _bench(quick):
    torch = torch_or_none()
    n = 4 * 2**20 if quick else 16 * 2**20
    rng = np.random.default_rng(0)
    cases = []
    scale_buf = np.ones(n, np.float32)
    roofline = lambda a=scale_buf: np.multiply(a, np.float32(1.0), out=a)  # 8 bytes/element
    for name, state_arrays, per_param in (("adamw_step", 2, 28), ("adam_step", 2, 28),
                                          ("sgd_step momentum", 1, 20)):
        p = [rng.standard_normal(n, dtype=np.float32)]
        g = [rng.standard_normal(n, dtype=np.float32) * 1e-3]
        st = [[np.zeros(n, np.float32)] for _ in range(state_arrays)]
        if name == "adamw_step":
            impls = {"mlkernels": lambda p=p, g=g, st=st: fast.adamw_step(p, g, *st, step=5),
                     "numpy (in place)": lambda p=p, g=g, st=st: _numpy_adamw(p, g, *st, 5)}
        elif name == "adam_step":
            impls = {"mlkernels": lambda p=p, g=g, st=st: fast.adam_step(p, g, *st, step=5),
                     "numpy (in place)": lambda p=p, g=g, st=st: _numpy_adamw(p, g, *st, 5,
                                                                              wd=0.0)}
        else:
            impls = {"mlkernels": lambda p=p, g=g, st=st: fast.sgd_step(
                         p, g, st[0], step=5, lr=1e-3, momentum=0.9),
                     "numpy (in place)": lambda p=p, g=g, st=st: _numpy_sgd_momentum(p, g, st[0])}
        if torch is not None:
            tp = [torch.from_numpy(p[0])]
            tp[0].grad = torch.from_numpy(g[0])
            klass = {"adamw_step": torch.optim.AdamW, "adam_step": torch.optim.Adam}.get(name)
            topt = (klass(tp, fused=True) if klass else
                    torch.optim.SGD(tp, lr=1e-3, momentum=0.9, foreach=True))
            topt.step()
            impls["torch (fused)" if klass else "torch (foreach)"] = lambda o=topt: o.step()
        cases_label = f"float32 {n // 2**20}M params"
        cases.append((name, BenchCase(cases_label, impls, shape=(n,), nbytes=per_param * n,
                                      roofline=roofline, copy_factor=per_param / 8)))
    # per-array overhead: 1,000 arrays of 1,000 vs one array of 1,000,000
    many = [rng.standard_normal(1000, dtype=np.float32) for _ in range(1000)]
    many_g = [np.ones(1000, np.float32) for _ in range(1000)]
    many_st = [[np.zeros(1000, np.float32) for _ in range(1000)] for _ in range(2)]
    one = [rng.standard_normal(10**6, dtype=np.float32)]
    one_g = [np.ones(10**6, np.float32)]
    one_st = [[np.zeros(10**6, np.float32)] for _ in range(2)]
    cases.append(("adamw_step", BenchCase(
        "float32 1000 arrays x 1000 vs 1 x 1M", shape=(10**6,), impls=
        {"mlkernels 1000 arrays": lambda: fast.adamw_step(many, many_g, *many_st, step=5),
         "mlkernels 1 array": lambda: fast.adamw_step(one, one_g, *one_st, step=5)},
        nbytes=28 * 10**6)))
    return cases


_BENCH = {}


def _bench_for(name):
    def bench(quick):
        if quick not in _BENCH:
            _BENCH[quick] = _bench(quick)
        return [c for n, c in _BENCH[quick] if n.split()[0] == name]
    return bench


SPECS = [
    KernelSpec("sgd_step", "optim",
               _in_place(fast.sgd_step, lambda a, k: [0, 2] if k.get("momentum") else [0]),
               ref.sgd_step, lambda r, d, s: _sgd_args(r, d, s), SHAPES, outputs=_outputs,
               bench=_bench_for("sgd_step")),
    KernelSpec("adam_step", "optim",
               _in_place(fast.adam_step, lambda a, k: [0, 2, 3, 4] if k.get("amsgrad") else [0, 2, 3]),
               ref.adam_step, lambda r, d, s: _adam_args(r, d, s), SHAPES, outputs=_outputs,
               bench=_bench_for("adam_step")),
    KernelSpec("adamw_step", "optim",
               _in_place(fast.adamw_step, lambda a, k: [0, 2, 3, 4] if k.get("amsgrad") else [0, 2, 3]),
               ref.adamw_step, lambda r, d, s: _adam_args(r, d, s), SHAPES, outputs=_outputs,
               bench=with_storage16(_bench_for("adamw_step"), "adamw_step")),
    KernelSpec("rmsprop_step", "optim",
               _in_place(fast.rmsprop_step,
                         lambda a, k: [0, 2] + ([3] if k.get("momentum") else [])
                         + ([4] if k.get("centered") else [])),
               ref.rmsprop_step, lambda r, d, s: _rmsprop_args(r, d, s), SHAPES,
               outputs=_outputs, bench=with_storage16(None, "rmsprop_step")),
    KernelSpec("adagrad_step", "optim", _in_place(fast.adagrad_step, lambda a, k: [0, 2]),
               ref.adagrad_step, lambda r, d, s: _adagrad_args(r, d, s), SHAPES,
               outputs=_outputs, bench=with_storage16(None, "adagrad_step")),
]
