"""Softmax and losses beyond the spec rows: stability, torch's semantics, bad input."""
import numpy as np
import pytest

import mlkernels as mk
from mlkernels import reference as ref
from mlkernels.testing import assert_close

pytestmark = pytest.mark.usefixtures("isa")
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_are_stable(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4 - 1]], dtype)
    for f in (mk.softmax, mk.log_softmax):
        y = f(x)
        assert np.isfinite(y).all()
        assert_close(y, getattr(ref, f.__name__)(x), dtype, atol=1e-4)
    t = np.array([1, 0, 2])
    loss = mk.cross_entropy(x, t, reduction="none")
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(2e4, rel=1e-6)
    assert np.isfinite(mk.cross_entropy_backward(1.0, x, t)).all()
    bce = mk.binary_cross_entropy_with_logits(np.array([1e4, -1e4], dtype),
                                              np.array([0.0, 1.0], dtype), reduction="none")
    assert_close(bce, [1e4, 1e4], dtype)


def test_scalar_dtype_and_reductions():
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, -100])
    for red in ("mean", "sum"):
        v = mk.cross_entropy(x, t, reduction=red)
        assert isinstance(v, np.float32)
    assert mk.cross_entropy(x, t, reduction="none").shape == (5,)
    assert mk.cross_entropy(x, t, reduction="none")[4] == 0
    assert np.isnan(mk.cross_entropy(x, np.full(5, -100)))          # all ignored: NaN
    assert isinstance(mk.mse_loss(x, x), np.float32) and mk.mse_loss(x, x) == 0


def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (it is only a comparison peer)")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5, 3))
    t = rng.integers(0, 5, (6, 3))
    t[0, 0] = -100
    for red in ("mean", "sum", "none"):
        for eps in (0.0, 0.2):
            ours = mk.cross_entropy(x, t, reduction=red, label_smoothing=eps)
            theirs = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t),
                                                       reduction=red, label_smoothing=eps)
            assert_close(np.asarray(ours), theirs.numpy(), np.float64)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    torch.nn.functional.cross_entropy(tx, torch.from_numpy(t), label_smoothing=0.2).backward()
    assert_close(mk.cross_entropy_backward(1.0, x, t, label_smoothing=0.2), tx.grad.numpy(),
                 np.float64)
    y = rng.uniform(0, 1, (4, 3))
    z = rng.standard_normal((4, 3)) * 5
    assert_close(np.asarray(mk.binary_cross_entropy_with_logits(z, y)),
                 torch.nn.functional.binary_cross_entropy_with_logits(
                     torch.from_numpy(z), torch.from_numpy(y)).numpy(), np.float64)


def test_softmax_any_axis_and_strides():
    x = np.random.default_rng(2).standard_normal((3, 4, 5))
    for axis in (0, 1, 2, -1, -3):
        assert_close(mk.softmax(x, axis), ref.softmax(x, axis), np.float64)
    xs = x[:, ::2, ::-1]
    assert_close(mk.log_softmax(xs, 1), ref.log_softmax(xs, 1), np.float64)


def test_bad_input():
    x = np.zeros((3, 4), np.float32)
    out = np.full((3, 4), 7, np.float32)
    with pytest.raises(ValueError, match="target holds 4"):
        mk.cross_entropy_backward(1.0, x, np.array([0, 4, 1]), out=out)
    with pytest.raises(TypeError, match="integer"):
        mk.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="target has shape"):
        mk.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        mk.cross_entropy(x, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        mk.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="target has shape"):
        mk.mse_loss(x, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="axis"):
        mk.softmax(x, axis=2, out=out)
    with pytest.raises(ValueError, match="grad_out has shape"):
        mk.mse_loss_backward(np.ones(3, np.float32), x, x, reduction="mean", out=out)
    with pytest.raises(TypeError, match="dtype"):
        mk.mse_loss(x, np.zeros((3, 4), np.float64))
    assert (out == 7).all()


def test_unsigned_target_beyond_int64_is_refused_not_wrapped():
    """Found by the long fuzz run: uint64(2**64 - 100) converted to int64 is -100, which is
    ignore_index -- a silently ignored row. It is out of range: a ValueError."""
    logits = np.zeros((1, 3), np.float32)
    target = np.array([2**64 - 100], np.uint64)
    for f in (lambda: mk.cross_entropy(logits, target),
              lambda: mk.cross_entropy_backward(np.float32(1), logits, target)):
        with pytest.raises(ValueError, match="target holds"):
            f()
    assert mk.cross_entropy(logits, np.array([2], np.uint64)) == mk.cross_entropy(
        logits, np.array([2]))


def test_misaligned_target_gives_the_aligned_answer():
    """Found by the sanitized suite (UBSan: a misaligned int64 load): an int64 target viewed
    from a byte buffer at an odd offset is copied to an aligned array before the kernel."""
    logits = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    aligned = np.array([0, 3, 1, 2, 3], np.int64)
    misaligned = np.zeros(aligned.nbytes + 1, np.uint8)[1:].view(np.int64)
    misaligned[...] = aligned
    assert not misaligned.flags.aligned
    assert mk.cross_entropy(logits, misaligned) == mk.cross_entropy(logits, aligned)
    np.testing.assert_array_equal(mk.cross_entropy_backward(np.float32(1), logits, misaligned),
                                  mk.cross_entropy_backward(np.float32(1), logits, aligned))
