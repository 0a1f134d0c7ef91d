"""Optimizers: many steps vs the reference in every option combination, vs torch.optim when
installed, state dicts, param groups, and bad input that must change nothing."""
import itertools

import numpy as np
import pytest

from mlkernels import optim
from mlkernels import reference as ref
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]
SHAPES = [(5,), (3, 7), (40000,)]      # the last one crosses several work units and threads


def _tol(dtype):
    # float32: 25 steps of float32 rounding accumulate in p and the state (each step rounds p,
    # m and v once or twice): ~25·ulp(1) ≈ 3e-6; the reference runs in float64 throughout.
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(25)]
    return params, grads


CASES = {
    "SGD": [dict(lr=0.05, momentum=m, dampening=d, weight_decay=w, nesterov=n, maximize=x)
            for m, d, w, n, x in itertools.product([0.0, 0.9], [0.0, 0.2], [0.0, 0.01],
                                                   [False, True], [False, True])
            if not (n and (m == 0 or d != 0))],
    "Adam": [dict(lr=0.01, weight_decay=w, amsgrad=a, maximize=x)
             for w, a, x in itertools.product([0.0, 0.1], [False, True], [False, True])],
    "AdamW": [dict(lr=0.01, weight_decay=w, amsgrad=a, maximize=x)
              for w, a, x in itertools.product([0.0, 0.1], [False, True], [False, True])],
    "RMSprop": [dict(lr=0.01, weight_decay=w, momentum=m, centered=c, maximize=x)
                for w, m, c, x in itertools.product([0.0, 0.01], [0.0, 0.9], [False, True],
                                                    [False, True])],
    "Adagrad": [dict(lr=0.05, lr_decay=d, weight_decay=w, initial_accumulator_value=i,
                     maximize=x)
                for d, w, i, x in itertools.product([0.0, 0.01], [0.0, 0.01], [0.0, 0.1],
                                                    [False, True])],
}


def _reference_run(name, opts, params, grads):
    """The reference functional steps, chained for len(grads) steps, in float64."""
    p = [a.astype(np.float64) for a in params]
    zeros = [np.zeros_like(a) for a in p]
    state = {}
    for t, g in enumerate(grads, 1):
        if name == "SGD":
            out = ref.sgd_step(p, g, state.get("buf"), step=t, **opts)
            p = out[0]
            if opts["momentum"]:
                state["buf"] = out[1]
        elif name in ("Adam", "AdamW"):
            fn = ref.adam_step if name == "Adam" else ref.adamw_step
            out = fn(p, g, state.get("m", zeros), state.get("v", zeros), state.get("vmax", zeros),
                     step=t, **opts)
            p, state["m"], state["v"] = out[:3]
            if opts["amsgrad"]:
                state["vmax"] = out[3]
        elif name == "RMSprop":
            out = ref.rmsprop_step(p, g, state.get("s", zeros), state.get("buf", zeros),
                                   state.get("gavg", zeros), **opts)
            p, state["s"] = out[:2]
            rest = list(out[2:])
            if opts["momentum"]:
                state["buf"] = rest.pop(0)
            if opts["centered"]:
                state["gavg"] = rest.pop(0)
        else:
            o = dict(opts)
            init = o.pop("initial_accumulator_value")
            sums = state.get("sum", [np.full_like(a, init) for a in p])
            p, state["sum"] = ref.adagrad_step(p, g, sums, step=t, **o)
    return p


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_25_steps_match_reference_in_every_combination(name, dtype):
    for opts in CASES[name]:
        params, grads = _problem(dtype)
        expected = _reference_run(name, opts, params, grads)
        opt = getattr(optim, name)(params, **opts)
        for g in grads:
            opt.step(g)
        for p, e in zip(params, expected):
            assert_close(p, e, dtype, err_msg=f"{name} {opts}", **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_optim(name, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is only a comparison peer)")
    for opts in CASES[name][::3]:
        params, grads = _problem(dtype, seed=1)
        tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
        topt = getattr(torch.optim, name)(tparams, **opts, foreach=False)
        opt = getattr(optim, name)(params, **opts)
        for g in grads:
            opt.step(g)
            for tp, gi in zip(tparams, g):
                tp.grad = torch.from_numpy(gi.copy())
            topt.step()
        for p, tp in zip(params, tparams):
            assert_close(p, tp.detach().numpy().astype(np.float64), dtype,
                         err_msg=f"{name} {opts}", **_tol(dtype))


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip_is_bit_exact(name, tmp_path):
    opts = CASES[name][-1]
    params, grads = _problem(np.float32, seed=2)
    twin = [p.copy() for p in params]
    straight = getattr(optim, name)(twin, **opts)
    for g in grads[:20]:
        straight.step(g)
    first = getattr(optim, name)(params, **opts)
    for g in grads[:10]:
        first.step(g)
    np.savez(tmp_path / "opt.npz", **first.state_dict())
    resumed = getattr(optim, name)(params, **opts)
    with np.load(tmp_path / "opt.npz") as f:
        resumed.load_state_dict(f)
    for g in grads[10:20]:
        resumed.step(g)
    for p, q in zip(params, twin):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_gradient_without_weight_decay_changes_nothing(name):
    params = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in SHAPES]
    before = [p.copy() for p in params]
    opts = {"SGD": dict(lr=0.1, momentum=0.9), "Adam": {}, "AdamW": dict(weight_decay=0.0),
            "RMSprop": dict(momentum=0.5, centered=True), "Adagrad": {}}[name]
    opt = getattr(optim, name)(params, **opts)
    for _ in range(3):
        opt.step([np.zeros_like(p) for p in params])
    for p, b in zip(params, before):
        assert np.array_equal(p, b)


def test_param_groups_and_hyperparameter_changes():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    a0, b0 = a.copy(), b.copy()
    opt = optim.SGD([{"params": [a], "lr": 0.0}, {"params": [b]}], lr=0.1)
    g = [np.ones(10), np.ones(10)]
    opt.step(g)
    assert np.array_equal(a, a0) and np.allclose(b, b0 - 0.1)
    opt.param_groups[0]["lr"] = 0.5
    opt.step(g)
    assert np.allclose(a, a0 - 0.5)
    opt.step([None, np.ones(10)])                 # a has no gradient: skipped
    assert np.allclose(a, a0 - 0.5) and np.allclose(b, b0 - 0.3)


def test_functional_steps_on_single_arrays_and_lists():
    p = np.ones(4)
    optim.adamw_step(p, np.ones(4), np.zeros(4), np.zeros(4), step=1, lr=0.1, weight_decay=0.0)
    assert np.allclose(p, 0.9)
    ps = [np.ones(3), np.ones(5)]
    optim.sgd_step(ps, [np.ones(3), np.ones(5)], lr=0.5)
    assert all(np.allclose(q, 0.5) for q in ps)
    # a non-contiguous gradient is read correctly
    g = np.arange(8.0)[::2]
    p = np.zeros(4)
    optim.sgd_step(p, g, lr=1.0)
    assert np.array_equal(p, -g)


def test_many_small_arrays_equal_one_large():
    rng = np.random.default_rng(0)
    small = [rng.standard_normal(1000).astype(np.float32) for _ in range(100)]
    big = np.concatenate(small)
    grads = [rng.standard_normal(1000).astype(np.float32) for _ in range(100)]
    o1, o2 = optim.AdamW(small), optim.AdamW([big])
    for _ in range(3):
        o1.step(grads)
        o2.step([np.concatenate(grads)])
    assert np.array_equal(np.concatenate(small), big)


def test_fast_and_validated_paths_agree():
    """Lists of plain arrays take the C fast path of the validation; one strided gradient
    sends the whole call through the Python path (which copies it): same results."""
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        p1 = [rng.standard_normal(n).astype(dtype) for n in (1, 7, 1000)] + [np.ones((), dtype)]
        g = [rng.standard_normal(q.shape).astype(dtype) for q in p1]
        p2 = [q.copy() for q in p1]
        g_strided = [np.repeat(q, 2)[::2].reshape(q.shape) if q.ndim else q for q in g]
        assert not g_strided[2].flags.c_contiguous
        s1 = [[np.zeros_like(q) for q in p1] for _ in range(2)]
        s2 = [[np.zeros_like(q) for q in p1] for _ in range(2)]
        for step in (1, 2, 3):
            optim.adamw_step(p1, g, *s1, step=step, lr=1e-2)
            optim.adamw_step(p2, g_strided, *s2, step=step, lr=1e-2)
        assert all(np.array_equal(a, b) for a, b in zip(p1 + s1[0] + s1[1], p2 + s2[0] + s2[1]))


@pytest.mark.parametrize("problem", ["overlap", "read-only", "dtype", "shape", "swapped"])
def test_one_bad_array_in_a_long_list_is_found_and_changes_nothing(problem):
    """The fast path must decline anything the full validation refuses."""
    n = 50
    p = [np.ones(8, np.float32) for _ in range(n)]
    g = [np.ones(8, np.float32) for _ in range(n)]
    m = [np.zeros(8, np.float32) for _ in range(n)]
    v = [np.zeros(8, np.float32) for _ in range(n)]
    if problem == "overlap":
        v[30] = m[30][:]                         # a view of another state array
    elif problem == "read-only":
        m[30].flags.writeable = False
    elif problem == "dtype":
        g[30] = g[30].astype(np.float64)
    elif problem == "shape":
        v[30] = np.zeros(9, np.float32)
    else:
        m[30] = np.zeros(8, np.dtype(np.float32).newbyteorder())
    before = [a.copy() for a in p + m + v]
    with pytest.raises((TypeError, ValueError), match=r"\[30\]"):
        optim.adam_step(p, g, m, v, step=1, lr=0.1)
    assert all(np.array_equal(a, b) for a, b in zip(p + m + v, before))


# ---------------------------------------------------------------------------- bad input

def _snapshot(opt, params):
    return [p.copy() for p in params], {i: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                            for k, v in st.items()} for i, st in opt.state.items()}


def _unchanged(opt, params, snap):
    ps, st = snap
    assert all(np.array_equal(p, q) for p, q in zip(params, ps))
    assert st.keys() == opt.state.keys()
    for i in st:
        for k, v in st[i].items():
            assert np.array_equal(opt.state[i][k], v)


@pytest.mark.parametrize("bad,exc,match", [
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(eps=-1e-8), ValueError, "eps"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(betas=(1.0, 0.999)), ValueError, "betas"),
    (dict(betas=(0.9, -0.1)), ValueError, "betas"),
    (dict(betas=0.9), ValueError, "betas"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
])
def test_bad_hyperparameters(bad, exc, match):
    with pytest.raises(exc, match=match):
        optim.AdamW([np.ones(3)], **bad)
    opt = optim.AdamW([np.ones(3)])
    opt.param_groups[0].update(bad)       # a bad schedule: caught at the step, nothing written
    p = opt.param_groups[0]["params"][0]
    with pytest.raises(exc, match=match):
        opt.step([np.ones(3)])
    assert np.array_equal(p, np.ones(3)) and not opt.state


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([np.ones(2)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([np.ones(2)], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_bad_grads_and_params_change_nothing():
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(4).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    snap = _snapshot(opt, params)
    bad = [
        ([np.ones(4, np.float32)], ValueError, "grads"),
        ([np.ones(4, np.float32), np.ones(4, np.float32)], ValueError, "shape"),
        ([np.ones(4, np.float32), np.ones(3, np.float64)], TypeError, "dtype"),
        ([np.ones(4, np.float32), np.ones(3, np.int32)], TypeError, "dtype"),
        ([np.ones(4, np.float32), [1.0, 2.0, 3.0]], TypeError, "ndarray"),
        (np.ones(4, np.float32), ValueError, "grads"),
    ]
    for grads, exc, match in bad:
        with pytest.raises(exc, match=match):
            opt.step(grads)
        _unchanged(opt, params, snap)


def test_bad_params_refused_at_construction():
    ro = np.ones(3)
    ro.flags.writeable = False
    for params, exc, match in [([ro], ValueError, "read-only"),
                               ([np.ones(6)[::2]], ValueError, "C-contiguous"),
                               ([np.ones(3, np.int64)], TypeError, "dtype"),
                               ([], ValueError, "empty"),
                               ([np.ones(3)] * 2, ValueError, "twice")]:
        with pytest.raises(exc, match=match):
            optim.SGD(params, lr=0.1)


def test_functional_state_mismatch_changes_nothing():
    p, g = np.ones(4), np.ones(4)
    m, v = np.zeros(4), np.zeros(4)
    for args, exc, match in [((p, g, m, np.zeros(5)), ValueError, "shape"),
                             ((p, g, m, m), ValueError, "shares memory"),
                             ((p, g, m, np.zeros(4, np.float32)), TypeError, "dtype")]:
        with pytest.raises(exc, match=match):
            optim.adam_step(*args, step=1)
        assert np.array_equal(p, np.ones(4)) and not m.any() and not v.any()
    with pytest.raises(ValueError, match="step"):
        optim.adam_step(p, g, m, v, step=0)


def test_state_dict_from_another_optimizer_or_shape_is_refused():
    a = [np.ones(3, np.float32)]
    adam = optim.Adam(a)
    adam.step([np.ones(3, np.float32)])
    sgd = optim.SGD([np.ones(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="Adam"):
        sgd.load_state_dict(adam.state_dict())
    other = optim.Adam([np.ones(4, np.float32)])
    snap = _snapshot(other, other.param_groups[0]["params"])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(adam.state_dict())
    _unchanged(other, other.param_groups[0]["params"], snap)
