"""The layer API and the demo: layers against the functional kernels, the demo's figures."""
import io

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import _demo, nn, optim
from mlkernels.testing import assert_close, gradcheck


def _mlp(dtype=np.float64, norm="layer"):
    rng = np.random.default_rng(0)
    layers = [nn.Linear(5, 7, rng=rng, dtype=dtype)]
    layers.append(nn.LayerNorm(7, dtype=dtype) if norm == "layer" else nn.BatchNorm1d(7, dtype=dtype))
    layers += [nn.GELU(), nn.Linear(7, 3, rng=rng, dtype=dtype)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_sequential_backward_matches_finite_differences(norm):
    model = _mlp(np.float64, norm)
    x = np.random.default_rng(1).standard_normal((6, 5))
    gradcheck(lambda x: model.forward(x), lambda r, x: (model.forward(x), model.backward(r))[1:],
              (x,), (0,))
    # parameter gradients: perturb the first Linear's weight through a closure
    w = model.layers[0].weight

    def f(w_new):
        w[...] = w_new
        return model.forward(x)

    def b(r, w_new):
        w[...] = w_new
        model.forward(x)
        model.backward(r)
        return (model.grads()[0].copy(),)
    gradcheck(f, b, (w.copy(),), (0,))


def test_parameters_and_grads_align_and_plug_into_optim():
    model = _mlp(np.float32)
    params, grads = model.parameters(), model.grads()
    assert len(params) == len(grads) == 2 + 2 + 2
    assert all(p.shape == g.shape and p.dtype == g.dtype for p, g in zip(params, grads))
    opt = optim.AdamW(params, lr=1e-2)
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    first = float(mk.cross_entropy(model.forward(x), y))
    for _ in range(50):
        logits = model.forward(x)
        model.backward(mk.cross_entropy_backward(np.ones((), np.float32), logits, y))
        opt.step(model.grads())
    assert float(mk.cross_entropy(model.forward(x), y)) < first / 2


def test_reference_backend_gives_the_same_network():
    x = np.random.default_rng(2).standard_normal((4, 5))
    fast = _mlp(np.float64)
    slow = _mlp(np.float64).use_backend(nn.REFERENCE)
    assert_close(fast.forward(x), slow.forward(x), np.float64, rtol=1e-10)
    r = np.ones((4, 3))
    assert_close(fast.backward(r), slow.backward(r), np.float64, rtol=1e-10)


def test_backward_before_forward_is_a_clear_error():
    for layer in (nn.Linear(2, 3), nn.GELU(), nn.LayerNorm(3), nn.BatchNorm1d(3), nn.ReLU()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.ones((2, 3), np.float32))


def test_batchnorm_train_updates_running_stats_eval_freezes_them():
    bn = nn.BatchNorm1d(3)
    x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32) * 2 + 5
    bn.train().forward(x)
    assert not np.allclose(bn.running_mean, 0)
    frozen = bn.running_mean.copy(), bn.running_var.copy()
    bn.eval().forward(x * 3)
    assert np.array_equal(frozen[0], bn.running_mean) and np.array_equal(frozen[1], bn.running_var)


@pytest.mark.parametrize("backend", [None, nn.REFERENCE])
def test_batchnorm_momentum_none_averages_every_training_batch(backend):
    """momentum=None: the running mean is the plain average of the batch means (torch's
    cumulative average), the running variance that of the unbiased batch variances."""
    bn = nn.BatchNorm1d(3, momentum=None, dtype=np.float64, backend=backend)
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((8, 3)) * (i + 1) + i for i in range(4)]
    for x in batches:
        bn.forward(x)
    assert bn.num_batches_tracked == 4
    assert_close(bn.running_mean, np.mean([x.mean(0) for x in batches], axis=0), np.float64)
    assert_close(bn.running_var, np.mean([x.var(0, ddof=1) for x in batches], axis=0),
                 np.float64)
    bn.eval()
    bn.forward(batches[0])
    assert bn.num_batches_tracked == 4      # eval mode neither counts nor updates


def test_linear_regression_worked_example():
    r = _demo.linear_regression(0.1)
    assert r["first"]["W"] == pytest.approx(1.5333333, abs=1e-6)
    assert r["first"]["b"] == pytest.approx(0.6666667, abs=1e-6)
    assert r["last"]["W"] == pytest.approx(1.5, abs=1e-6)
    assert r["last"]["b"] == pytest.approx(1 / 3, abs=1e-6)
    bad = _demo.linear_regression(0.2, steps=60)
    ws = [h["W"] for h in bad["history"]]
    assert bad["last"]["loss"] > 100 * bad["first"]["loss"]       # diverges
    assert any(np.sign(ws[i + 1] - 1.5) != np.sign(ws[i] - 1.5) for i in range(5))  # oscillates


def test_xor_needs_a_hidden_layer():
    r = _demo.xor()
    assert r["two layers + tanh"]["accuracy"] == 1.0
    assert r["one linear layer"]["accuracy"] <= 0.75


def test_sine_error_falls_with_width():
    r = _demo.sine()
    assert r[32]["mse"] < r[8]["mse"] < r[2]["mse"]


def test_digits_reaches_95_percent():
    pytest.importorskip("sklearn", reason="the digits data ships with scikit-learn (demo extra)")
    r = _demo.digits()
    assert r["source"] == "sklearn digits"
    assert r["LayerNorm"]["test_accuracy"] >= 0.95
    assert r["BatchNorm"]["test_accuracy"] >= 0.95
    assert r["BatchNorm"]["eval_vs_train_mode_max_logit_diff"] > 0


def test_digits_synthetic_fallback(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_sklearn(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    xtr, ytr, xte, yte, source = _demo.digits_data()
    assert "synthetic" in source and xtr.shape[1] == 64 and set(np.unique(ytr)) <= set(range(10))


def test_demo_cli_prints_every_step(tmp_path):
    buf = io.StringIO()
    _demo.run(out=buf)
    text = buf.getvalue()
    for step in ("1. Linear regression", "2. XOR", "3. Universal", "4. Optimizers",
                 "5. MLP classifier", "6. One training epoch"):
        assert step in text


def test_gradients_can_live_in_one_flat_buffer():
    """set_grad_arrays: the backward then writes into the given arrays (views of one buffer,
    as mlkernels.distributed does for a single Allreduce), with the same results."""
    x = np.random.default_rng(3).standard_normal((6, 5))
    model, twin = _mlp(np.float64), _mlp(np.float64)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    sizes = [g.size for g in model.grads()]
    flat = np.zeros(sum(sizes))
    views, start = [], 0
    for g, n in zip(model.grads(), sizes):
        views.append(flat[start:start + n].reshape(g.shape))
        start += n
    model.set_grad_arrays(views)
    r = np.ones((6, 3))
    model.forward(x)
    model.backward(r)
    twin.forward(x)
    twin.backward(r)
    assert all(a is b for a, b in zip(model.grads(), views))
    np.testing.assert_array_equal(flat, np.concatenate([g.ravel() for g in twin.grads()]))
    with pytest.raises(ValueError, match="one per parameter"):
        model.set_grad_arrays(views[:-1])
    with pytest.raises(ValueError, match="shape"):
        model.set_grad_arrays([np.zeros(1)] * len(views))


@pytest.mark.parametrize("make, error, words", [
    (lambda: nn.Linear(-1, 2), ValueError, "in_features is -1"),
    (lambda: nn.Linear(3.5, 2), TypeError, "in_features must be an int"),
    (lambda: nn.Linear(3, 2, dtype=np.int32), TypeError, "dtype"),
    (lambda: nn.Linear(3, 2, rng=0), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: nn.GELU(approximate="fast"), ValueError, "approximate"),
    (lambda: nn.LeakyReLU("a"), TypeError, "negative_slope"),
    (lambda: nn.LayerNorm(-3), ValueError, "normalized_shape is -3"),
    (lambda: nn.LayerNorm(()), ValueError, "normalized_shape is empty"),
    (lambda: nn.LayerNorm(4, eps=-1.0), ValueError, "eps"),
    (lambda: nn.BatchNorm1d(4, momentum=2), ValueError, "momentum"),
    (lambda: nn.BatchNorm1d(0), ValueError, "num_features is 0"),
    (lambda: nn.Sequential(nn.ReLU(), 3), TypeError, "layer 1 is a int"),
])
def test_layer_constructors_refuse_bad_arguments(make, error, words):
    with pytest.raises(error, match=words):
        make()
