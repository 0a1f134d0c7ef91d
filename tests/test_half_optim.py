"""Optimizers with bfloat16/float16 parameters: the update is the float32 optimizer's own
arithmetic; p is stored rounded to nearest even, from float32 master copies, or (bfloat16)
with stochastic rounding. States float32 by default, 16-bit on request.
"""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import optim

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = [BF16, np.dtype(np.float16)]
IDS = ["bfloat16", "float16"]


def bits(a):
    return a.view(np.uint16)


def make(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)


STEPS = {
    "adamw": lambda p, g, s, **kw: optim.adamw_step(p, g, s[0], s[1], lr=1e-2, weight_decay=0.1,
                                                    **kw),
    "adam": lambda p, g, s, **kw: optim.adam_step(p, g, s[0], s[1], s[2], lr=1e-2,
                                                  weight_decay=0.01, amsgrad=True, **kw),
    "sgd": lambda p, g, s, **kw: optim.sgd_step(p, g, s[0], lr=0.1, momentum=0.9,
                                                weight_decay=0.01, **kw),
}


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("size", [1, 1000, 70000])
def test_master_weights_equal_float32_rounded(isa, dtype, name, size):
    p = make(size, dtype, 0)
    master = p.astype(np.float32)
    p32 = master.copy()
    s, s32 = [np.zeros(size, np.float32) for _ in range(3)], [np.zeros(size, np.float32)
                                                             for _ in range(3)]
    for step in range(1, 6):
        g = make(size, dtype, step)
        STEPS[name](p, g, s, step=step, master_params=[master])
        STEPS[name](p32, g.astype(np.float32), s32, step=step)
        np.testing.assert_array_equal(master, p32)
        assert (bits(p) == bits(p32.astype(dtype))).all()
        for a, b in zip(s, s32):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("state16", [False, True], ids=["float32_states", "16bit_states"])
def test_round_to_nearest_is_one_float32_step_rounded(isa, dtype, name, state16):
    size = 40000
    p = make(size, dtype, 0)
    sdt = dtype if state16 else np.float32
    s = [make(size, dtype, 9 + j).astype(sdt) ** 2 for j in range(3)]
    for step in (1, 2):
        g = make(size, dtype, step)
        p32, s32 = p.astype(np.float32), [a.astype(np.float32) for a in s]
        STEPS[name](p, g, s, step=step)
        STEPS[name](p32, g.astype(np.float32), s32, step=step)
        assert (bits(p) == bits(p32.astype(dtype))).all()
        for a, b in zip(s, s32):
            if state16:
                assert (bits(a) == bits(b.astype(dtype))).all()
            else:
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_stochastic_rounding(isa, name):
    size = 70000
    p0, g = make(size, BF16, 0), make(size, BF16, 1)
    s0 = [np.zeros(size, np.float32) for _ in range(3)]

    def run(seed, threads=None):
        p, s = p0.copy(), [a.copy() for a in s0]
        with mk.threads(threads or mk.get_num_threads()):
            STEPS[name](p, g, s, step=3, stochastic_rounding=True, seed=seed)
        return p, s
    p, s = run(5)
    p32, s32 = p0.astype(np.float32), [a.copy() for a in s0]
    STEPS[name](p32, g.astype(np.float32), s32, step=3)
    for a, b in zip(s, s32):
        np.testing.assert_array_equal(a, b)            # the states are the float32 ones
    # p is the float32 result rounded down or up (truncated, or truncated + one unit)
    down = (p32.view(np.uint32) >> 16).astype(np.uint16)
    got = bits(p)
    finite = np.isfinite(p32)
    assert ((got == down) | (got == down + 1))[finite].all()
    assert (got != bits(p32.astype(BF16))).any()       # not round to nearest
    # reproducible from the seed, whatever the thread count; another seed, other bits
    assert (bits(run(5, 1)[0]) == got).all() and (bits(run(5, 2)[0]) == got).all()
    assert (bits(run(6)[0]) != got).any()


def test_small_updates_lost_by_round_to_nearest_kept_by_the_others():
    """p = 1 in bfloat16 (a unit in the last place: 2^-7); 2000 SGD steps of +1e-4 (lr·g):
    each is below half a unit, so round to nearest loses every one; master weights reach
    1.2 (rounded); stochastic rounding reaches it on average (over 4096 params)."""
    n, steps, lr = 4096, 2000, 1e-4
    g = np.full(n, -1.0, np.float32).astype(BF16)
    plain = np.ones(n, BF16)
    master_p, master = np.ones(n, BF16), np.ones(n, np.float32)
    sr = np.ones(n, BF16)
    for step in range(1, steps + 1):
        optim.sgd_step(plain, g, step=step, lr=lr)
        optim.sgd_step(master_p, g, step=step, lr=lr, master_params=[master])
        optim.sgd_step(sr, g, step=step, lr=lr, stochastic_rounding=True, seed=11)
    target = 1 + steps * lr
    assert (plain.astype(np.float32) == 1.0).all()                     # every update lost
    assert abs(master[0] - target) < 1e-3                                # float32 kept them
    assert (bits(master_p) == bits(master.astype(BF16))).all()
    assert abs(sr.astype(np.float64).mean() - target) < 2e-3             # kept on average


def test_weight_decay_applied_in_float32():
    """AdamW's decay p·(1 − lr·wd) with lr·wd = 1e-5 is below bfloat16's resolution at 1: with
    master weights it accumulates (1000 steps: p ≈ 0.99), round to nearest loses it."""
    n = 16
    p_plain, p_master, master = np.ones(n, BF16), np.ones(n, BF16), np.ones(n, np.float32)
    zero = np.zeros(n, BF16)
    s1 = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    s2 = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    p32, s3 = np.ones(n, np.float32), [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    for step in range(1, 1001):
        optim.adamw_step(p_plain, zero, *s1, step=step, lr=1e-3, weight_decay=1e-2)
        optim.adamw_step(p_master, zero, *s2, step=step, lr=1e-3, weight_decay=1e-2,
                         master_params=[master])
        optim.adamw_step(p32, np.zeros(n, np.float32), *s3, step=step, lr=1e-3,
                         weight_decay=1e-2)
    assert (p_plain.astype(np.float32) == 1).all()
    np.testing.assert_array_equal(master, p32)           # float32 AdamW's decay, exactly
    np.testing.assert_allclose(master, (1 - 1e-5) ** 1000, rtol=3e-5)
    assert (p_master.astype(np.float32) < 1).all()


def test_errors_write_nothing():
    p, g = make(8, BF16, 0), make(8, BF16, 1)
    m, v = np.zeros(8, np.float32), np.zeros(8, np.float32)
    before = [p.copy(), m.copy(), v.copy()]

    def unchanged():
        assert (bits(p) == bits(before[0])).all() and (m == 0).all() and (v == 0).all()
    with pytest.raises(ValueError, match="different modes"):
        optim.adamw_step(p, g, m, v, step=1, master_params=[np.zeros(8, np.float32)],
                         stochastic_rounding=True)
    unchanged()
    with pytest.raises(ValueError, match="stochastic_rounding=True is for bfloat16"):
        optim.adamw_step(p.astype(np.float16), g.astype(np.float16), m, v, step=1,
                         stochastic_rounding=True)
    with pytest.raises(ValueError, match="are for bfloat16/float16 params"):
        optim.adamw_step(np.zeros(8, np.float32), np.zeros(8, np.float32), m, v, step=1,
                         stochastic_rounding=True)
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\] has dtype bfloat16; expected float32"):
        optim.adamw_step(p, g, m, np.zeros(8, BF16), step=1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] has dtype float64; expected float32"):
        optim.adamw_step(p, g, np.zeros(8), v, step=1)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float32 but params\[0\] has"):
        optim.adamw_step(p, g.astype(np.float32), m, v, step=1)
    with pytest.raises(TypeError, match=r"master_params\[0\] has dtype bfloat16; expected float32"):
        optim.adamw_step(p, g, m, v, step=1, master_params=[p.copy()])
    with pytest.raises(ValueError, match=r"master_params\[0\] shares memory"):
        optim.adamw_step(p, g, m, v, step=1, master_params=[m])
    with pytest.raises(TypeError, match=r"rmsprop_step\(\): params\[0\] has dtype bfloat16"):
        optim.rmsprop_step(p, g, [m], lr=0.1)
    with pytest.raises(TypeError, match=r"adagrad_step\(\): params\[0\] has dtype bfloat16"):
        optim.adagrad_step(p, g, [m], step=1)
    with pytest.raises(TypeError, match="does not take 16-bit"):
        optim.AdamW([p])
    unchanged()
