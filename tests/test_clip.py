"""Gradient clipping: torch's semantics (float64 parity, every norm type, NaN and inf), a
deterministic norm, in-place scaling of any layout, bad input that changes nothing, and the
optimizers' ``max_grad_norm`` (the same bits as clip_grad_norm_ followed by a step)."""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import optim
from mlkernels import reference as ref
from mlkernels.clip import NonFiniteNormError
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]
NORMS = [2.0, 1.0, np.inf, -np.inf, 0.0, 3.0, 0.5, -1.5, "inf"]


def _grads(dtype=np.float64, seed=0, shapes=((5,), (300, 7), (70001,), (1,))):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype) for s in shapes]


def _torch_clip(grads, max_norm, norm_type, error_if_nonfinite=False):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    params = [torch.zeros(g.shape, dtype=torch.float64) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.astype(np.float64))
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite)
    return float(total), [p.grad.numpy() for p in params]


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("factor", [0.3, 3.0])
def test_matches_torch_float64(norm_type, factor):
    grads = _grads()
    max_norm = float(ref.get_total_norm(grads, float(norm_type))) * factor
    want_total, want = _torch_clip(grads, max_norm, norm_type)
    total = mk.clip_grad_norm_(grads, max_norm, norm_type)
    assert isinstance(total, np.float64)
    assert_close(total, want_total, np.float64)
    for g, w in zip(grads, want):
        assert_close(g, w, np.float64)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("norm_type", [2.0, np.inf, 1.0])
def test_nonfinite_gradients_as_torch(bad, norm_type):
    grads = _grads(shapes=((4,), (3, 3)))
    grads[1][1, 2] = bad
    want_total, want = _torch_clip(grads, 1.0, norm_type)
    total = mk.clip_grad_norm_(grads, 1.0, norm_type)
    assert_close(total, want_total, np.float64)
    for g, w in zip(grads, want):
        assert_close(g, w, np.float64)          # NaN where torch has NaN, 0 for a 0 coef


def test_error_if_nonfinite_changes_nothing():
    grads = _grads(shapes=((4,), (5,)))
    grads[0][2] = np.inf
    before = [g.copy() for g in grads]
    with pytest.raises(NonFiniteNormError, match="total norm of order 2.0.*inf"):
        mk.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):                   # as torch's
        mk.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError):                     # as every bad input here
        mk.get_total_norm(grads, error_if_nonfinite=True)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_norm_is_the_same_bits_for_any_thread_count(dtype):
    grads = _grads(dtype, shapes=[(n,) for n in (1, 70000, 300001, 5, 65536, 65537)] * 5)
    for p in (2.0, 1.0, np.inf, 3.0):
        with mk.threads(1):
            want = mk.get_total_norm(grads, p)
        for n in (2, 3, 4):
            with mk.threads(n):
                assert mk.get_total_norm(grads, p).tobytes() == want.tobytes(), (p, n)


def test_float32_norm_is_accumulated_in_double():
    g = np.full(10_000_001, 0.1, np.float32)             # Σ g² in float32 drifts by ~1e-3
    exact = np.sqrt(np.sum(g.astype(np.float64) ** 2))
    assert abs(float(mk.get_total_norm([g])) - exact) <= 1e-6 * exact
    assert mk.get_total_norm([g]).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_layout_is_scaled_in_place(dtype):
    base = _grads(dtype, shapes=((40, 30), (20,)))
    want_total, want = ref.clip_grad_norm_([base[0][::2, ::-3], base[1]], 1.0)
    holder = [b.copy() for b in base]
    views = [holder[0][::2, ::-3], holder[1].astype(np.dtype(dtype).newbyteorder(">"))]
    total = mk.clip_grad_norm_(views, 1.0)
    assert_close(total, want_total, dtype)
    for v, w in zip(views, want):
        assert_close(v, w, dtype)
    untouched = np.ones((40, 30), bool)
    untouched[::2, ::-3] = False
    np.testing.assert_array_equal(holder[0][untouched], base[0][untouched])


def test_single_array_none_entries_and_no_gradients():
    g = np.array([3.0, 4.0])
    assert mk.clip_grad_norm_(g, 1.0) == 5.0
    assert_close(g, np.array([3.0, 4.0]) / (5 + 1e-6), np.float64)
    g = np.array([3.0, 4.0])
    assert mk.clip_grad_norm_([None, g, None], 10.0) == 5.0 and g.tolist() == [3.0, 4.0]
    assert mk.clip_grad_norm_([], 1.0) == 0.0 and mk.clip_grad_norm_([None], 1.0) == 0.0
    z = [np.zeros(3, np.float32)]
    assert mk.clip_grad_norm_(z, 0.0) == 0 and (z[0] == 0).all()
    assert mk.clip_grad_norm_([np.array([1e30])], np.inf) == 1e30      # never clips


def test_bad_input_changes_nothing():
    grads = _grads(np.float32, shapes=((4,), (5,)))
    before = [g.copy() for g in grads]
    ro = grads[1].copy()
    ro.flags.writeable = False
    for call, exc, match in [
        (lambda: mk.clip_grad_norm_(grads, -1.0), ValueError, "max_norm"),
        (lambda: mk.clip_grad_norm_(grads, np.nan), ValueError, "max_norm"),
        (lambda: mk.clip_grad_norm_(grads, "1"), TypeError, "max_norm"),
        (lambda: mk.clip_grad_norm_(grads, 1.0, "two"), ValueError, "norm_type"),
        (lambda: mk.clip_grad_norm_(grads, 1.0, np.nan), ValueError, "norm_type"),
        (lambda: mk.clip_grad_norm_([grads[0], ro], 1e-3), ValueError, r"grads\[1\] is read-only"),
        (lambda: mk.clip_grad_norm_([grads[0], grads[1].astype(np.float64)], 1e-3), TypeError,
         "dtype"),
        (lambda: mk.clip_grad_norm_([grads[0], np.ones(3, np.int32)], 1e-3), TypeError, "dtype"),
        (lambda: mk.clip_grad_norm_([grads[0], [1.0, 2.0]], 1e-3), TypeError, "grads"),
        (lambda: mk.clip_grad_norm_(3.0, 1e-3), TypeError, "grads"),
    ]:
        with pytest.raises(exc, match=match):
            call()
        for g, b in zip(grads, before):
            np.testing.assert_array_equal(g, b)


# ------------------------------------------------------------------ optimizers

OPTIMIZERS = [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
              ("SGD", dict(lr=0.1, maximize=True)),
              ("Adam", dict(lr=0.01, weight_decay=0.1)), ("AdamW", dict(lr=0.01)),
              ("AdamW", dict(lr=0.01, amsgrad=True, maximize=True)),
              ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
              ("Adagrad", dict(lr=0.1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, opts", OPTIMIZERS)
def test_max_grad_norm_equals_clip_then_step_bit_for_bit(name, opts, dtype):
    """Bit for bit, except with an L2 weight decay (SGD/Adam's weight_decay): there the step
    computes coef·g + wd·p, which the compiler may contract into one fused multiply-add where
    clip-then-step rounds coef·g first -- equal to that one rounding."""
    exact = not (opts.get("weight_decay") and name != "AdamW")
    params = _grads(dtype, seed=1)
    twin = [p.copy() for p in params]
    opt = getattr(optim, name)(params, **opts, max_grad_norm=0.5)
    ref_opt = getattr(optim, name)(twin, **opts)
    for step in range(4):
        grads = [g * (0.1 if step == 2 else 3.0) for g in _grads(dtype, seed=10 + step)]
        kept = [g.copy() for g in grads]
        total = opt.step(grads)
        for g, k in zip(grads, kept):                     # the step does not write grads
            np.testing.assert_array_equal(g, k)
        want_total = mk.clip_grad_norm_(kept, 0.5)        # clips (steps 0, 1, 3) or not
        ref_opt.step(kept)
        assert total.tobytes() == want_total.tobytes()
        for p, t in zip(params, twin):
            if exact:
                np.testing.assert_array_equal(p, t)
            else:
                assert_close(p, t, dtype)
    assert getattr(optim, name)(_grads(dtype), **opts).step(_grads(dtype)) is None


def test_max_grad_norm_matches_torch_adamw():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    params = _grads(seed=3)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = optim.AdamW(params, lr=0.01, max_grad_norm=1.0)
    topt = torch.optim.AdamW(tparams, lr=0.01, foreach=False)
    for step in range(5):
        grads = _grads(seed=20 + step)
        total = opt.step(grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
        topt.step()
        assert_close(total, float(ttotal), np.float64)
    for p, tp in zip(params, tparams):
        assert_close(p, tp.detach().numpy(), np.float64)


def test_max_grad_norm_over_groups_and_none_gradients():
    a, b, c = _grads(seed=4, shapes=((6,), (3, 2), (4,)))
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1,
                    max_grad_norm=0.2)
    ga, gb, gc = _grads(seed=5, shapes=((6,), (3, 2), (4,)))
    want = float(mk.get_total_norm([ga, gc]))
    a0, c0 = a.copy(), c.copy()
    total = opt.step([ga, None, gc])
    assert_close(total, want, np.float64)
    coef = 0.2 / (want + 1e-6)
    assert_close(a, a0 - 0.1 * ga * coef, np.float64)
    assert_close(c, c0 - 0.5 * gc * coef, np.float64)


def test_bad_max_grad_norm_changes_nothing():
    params = _grads(seed=6, shapes=((3,),))
    with pytest.raises(ValueError, match="max_grad_norm"):
        optim.Adam(params, max_grad_norm=-1.0)
    with pytest.raises(TypeError, match="max_grad_norm"):
        optim.Adam(params, max_grad_norm="1")
    opt = optim.Adam(params, max_grad_norm=1.0)
    opt.max_grad_norm = np.nan
    before = params[0].copy()
    with pytest.raises(ValueError, match="max_grad_norm"):
        opt.step(_grads(seed=7, shapes=((3,),)))
    np.testing.assert_array_equal(params[0], before)
    assert opt.state == {}
