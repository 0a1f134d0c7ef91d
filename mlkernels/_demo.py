"""``python -m mlkernels demo``: the fundamentals of training, each step run and measured.

1. Linear regression by gradient descent (and a learning rate too large to converge).
2. XOR: one linear layer cannot fit it; two layers with a nonlinearity can.
3. Universal approximation: sin(x) with 2, 8 and 32 hidden units.
4. SGD vs momentum vs Adam vs AdamW on the same network.
5. An MLP classifier on scikit-learn's 8x8 digits (synthetic data if scikit-learn is absent),
   with LayerNorm, and with BatchNorm in train vs eval mode.
6. The same training epoch on the NumPy reference kernels: the measured speedup.

Every step returns its figures (``run()`` gives them as a dict; the tests assert them).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import numpy as np

import mlkernels as mk
from . import nn, optim

F32 = np.float32


def _say(out, text: str = "") -> None:
    if out is not None:
        print(text, file=out, flush=True)


# ----------------------------------------------------------------- 1. linear regression

def linear_regression(lr: float = 0.1, steps: int = 2000) -> Dict[str, object]:
    """Fit y = W·x + b to x = [1, 2, 3], y = [2, 3, 5] by full-batch gradient descent on
    the mean squared error, from W = b = 0. The least-squares answer is W = 1.5, b = 1/3."""
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[2.0], [3.0], [5.0]])
    W, b = np.zeros((1, 1)), np.zeros(1)
    opt = optim.SGD([W, b], lr=lr)
    history: List[dict] = []
    for step in range(1, steps + 1):
        pred = mk.linear(x, W, b)
        loss = float(mk.mse_loss(pred, y))
        grad_pred = mk.mse_loss_backward(np.ones(()), pred, y)
        _, gW, gb = mk.linear_backward(grad_pred, x, W)
        opt.step([gW, gb])
        history.append({"step": step, "loss": loss, "W": float(W[0, 0]), "b": float(b[0])})
        if not np.isfinite(W).all() or abs(W[0, 0]) > 1e6:
            break
    return {"first": history[0], "last": history[-1], "history": history}


# ----------------------------------------------------------------- training helpers

def _fit(model: nn.Module, opt, x: np.ndarray, y: np.ndarray, loss: str, steps: int,
         batch: Optional[int] = None, rng: Optional[np.random.Generator] = None) -> List[float]:
    """Train ``model`` for ``steps`` steps (full batch, or minibatches of ``batch`` rows)."""
    losses = []
    n = len(x)
    order = np.arange(n)
    pos = n
    for _ in range(steps):
        if batch is None:
            xb, yb = x, y
        else:
            if pos + batch > n:
                rng.shuffle(order)
                pos = 0
            idx = order[pos:pos + batch]
            pos += batch
            xb, yb = x[idx], y[idx]
        out = model.forward(xb)
        if loss == "mse":
            value = mk.mse_loss(out, yb)
            grad = mk.mse_loss_backward(np.ones((), out.dtype), out, yb)
        else:
            value = mk.cross_entropy(out, yb)
            grad = mk.cross_entropy_backward(np.ones((), out.dtype), out, yb)
        model.backward(grad)
        opt.step(model.grads())
        losses.append(float(value))
    return losses


def _mlp(sizes, act: Callable[[], nn.Module], seed: int, norm=None) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            if norm is not None:
                layers.append(norm(b))
            layers.append(act())
    return nn.Sequential(*layers)


# ----------------------------------------------------------------- 2. XOR

def xor(steps: int = 500) -> Dict[str, float]:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], F32)
    y = np.array([[0], [1], [1], [0]], F32)
    results = {}
    for name, model in (("one linear layer", _mlp([2, 1], nn.Tanh, seed=0)),
                        ("two layers + tanh", _mlp([2, 8, 1], nn.Tanh, seed=0))):
        losses = _fit(model, optim.Adam(model.parameters(), lr=0.05), x, y, "mse", steps)
        pred = model.forward(x)
        accuracy = float(np.mean((pred > 0.5) == (y > 0.5)))
        results[name] = {"loss": losses[-1], "accuracy": accuracy, "curve": losses}
    return results


# ----------------------------------------------------------------- 3. universal approximation

def sine(hidden=(2, 8, 32), steps: int = 1500) -> Dict[int, dict]:
    x = np.linspace(-np.pi, np.pi, 256, dtype=F32)[:, None]
    y = np.sin(x)
    results = {}
    for h in hidden:
        model = _mlp([1, h, 1], nn.Tanh, seed=1)
        losses = _fit(model, optim.Adam(model.parameters(), lr=0.01), x, y, "mse", steps)
        results[h] = {"mse": float(np.mean((model.forward(x) - y) ** 2)), "curve": losses}
    return results


# ----------------------------------------------------------------- 4. optimizers

def optimizers(steps: int = 300) -> Dict[str, dict]:
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (256, 2)).astype(F32)
    y = (np.sin(2 * x[:, :1]) * np.cos(x[:, 1:])).astype(F32)
    makers = {
        "SGD": lambda p: optim.SGD(p, lr=0.05),
        "SGD+momentum": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
        "Adam": lambda p: optim.Adam(p, lr=0.01),
        "AdamW": lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.01),
    }
    results = {}
    for name, make in makers.items():
        model = _mlp([2, 32, 32, 1], nn.Tanh, seed=4)
        losses = _fit(model, make(model.parameters()), x, y, "mse", steps)
        results[name] = {"loss": losses[-1], "curve": losses}
    return results


# ----------------------------------------------------------------- 5. digits classifier

def digits_data(seed: int = 0):
    """scikit-learn's bundled 8x8 digits (1797 images), or synthetic blobs without it."""
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y, source = d.data.astype(F32) / 16.0, d.target.astype(np.int64), "sklearn digits"
    except ImportError:
        rng = np.random.default_rng(seed)
        centers = rng.normal(0, 1, (10, 64))
        y = rng.integers(0, 10, 1797)
        x = (centers[y] + rng.normal(0, 1.0, (1797, 64))).astype(F32)
        source = "synthetic blobs (install the demo extra for the real digits)"
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.75 * len(x))
    return x[:split], y[:split], x[split:], y[split:], source


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.forward(x), axis=1) == y))


def digits(epochs: int = 30, batch: int = 64, seed: int = 0) -> Dict[str, object]:
    xtr, ytr, xte, yte, source = digits_data(seed)
    steps = epochs * (len(xtr) // batch)
    out: Dict[str, object] = {"source": source, "train": len(xtr), "test": len(xte)}
    for name, norm in (("LayerNorm", lambda n: nn.LayerNorm(n)),
                       ("BatchNorm", lambda n: nn.BatchNorm1d(n))):
        model = _mlp([64, 128, 10], nn.GELU, seed=seed, norm=norm)
        opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
        losses = _fit(model.train(), opt, xtr, ytr, "ce", steps, batch,
                      np.random.default_rng(seed))
        result = {"loss": losses[-1], "curve": losses,
                  "test_accuracy": _accuracy(model.eval(), xte, yte)}
        if name == "BatchNorm":
            # eval mode: normalized with the running statistics, independent of the batch;
            # train mode: with the statistics of whatever batch comes in (here: 8 test images)
            bn = next(layer for layer in model.layers if isinstance(layer, nn.BatchNorm1d))
            frozen = (bn.running_mean.copy(), bn.running_var.copy())
            small = xte[:8]
            model.eval()
            eval_pred = model.forward(small)
            model.train()
            train_pred = model.forward(small)
            model.eval()
            result["eval_vs_train_mode_max_logit_diff"] = float(np.abs(eval_pred - train_pred).max())
            result["running_stats_changed_by_train_forward"] = bool(
                not np.array_equal(frozen[0], bn.running_mean))
        out[name] = result
    return out


# ----------------------------------------------------------------- 6. speed vs reference

def speed(batch: int = 64, seed: int = 0, repeats: int = 3) -> Dict[str, float]:
    """One epoch of the digits MLP (LayerNorm variant), on mlkernels and on the NumPy
    reference kernels; the same model, data and order. Medians of ``repeats`` epochs."""
    xtr, ytr, _, _, _ = digits_data(seed)
    steps = len(xtr) // batch
    times = {}
    for backend_name, backend in (("mlkernels", None), ("numpy reference", nn.REFERENCE)):
        samples = []
        for r in range(repeats):
            model = _mlp([64, 128, 10], nn.GELU, seed=seed, norm=lambda n: nn.LayerNorm(n))
            if backend is not None:
                model.use_backend(backend)
            opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
            t0 = time.perf_counter()
            _fit(model, opt, xtr, ytr, "ce", steps, batch, np.random.default_rng(seed))
            samples.append(time.perf_counter() - t0)
        times[backend_name] = float(np.median(samples))
    times["speedup"] = times["numpy reference"] / times["mlkernels"]
    return times


# ----------------------------------------------------------------- the tour

def run(out=None, plot: Optional[str] = None) -> Dict[str, object]:
    t_start = time.perf_counter()
    results: Dict[str, object] = {}
    _say(out, f"mlkernels {mk.__version__} demo (ISA {mk.active_isa()}, "
              f"{mk.get_num_threads()} threads)\n")

    _say(out, "1. Linear regression by gradient descent: x = [1, 2, 3], y = [2, 3, 5], "
              "W = b = 0, MSE")
    good = linear_regression(0.1)
    bad = linear_regression(0.2, steps=60)
    results["linear_regression"] = {"lr=0.1": good, "lr=0.2": bad}
    f, last = good["first"], good["last"]
    _say(out, f"   lr = 0.1, step 1: W = {f['W']:.4f}, b = {f['b']:.4f}   "
              f"(W ≈ 1.5333, b ≈ 0.6667 by hand)")
    _say(out, f"   after {last['step']} steps: W = {last['W']:.6f}, b = {last['b']:.6f}, "
              f"loss {last['loss']:.6f}   (least squares: W = 1.5, b = 1/3)")
    ws = [h["W"] for h in bad["history"][:6]]
    _say(out, f"   lr = 0.2 (too large): W = {', '.join(f'{w:.2f}' for w in ws)}, ... "
              f"oscillates and diverges: loss {bad['history'][0]['loss']:.3g} -> "
              f"{bad['last']['loss']:.3g} after {bad['last']['step']} steps\n")

    _say(out, "2. XOR")
    r = xor()
    results["xor"] = r
    for name, v in r.items():
        _say(out, f"   {name:<18}: loss {v['loss']:.4f}, accuracy {v['accuracy']:.0%}")
    _say(out, "   a single linear layer cannot separate XOR; a hidden layer with a nonlinearity "
              "can\n")

    _say(out, "3. Universal approximation: sin(x) on [-pi, pi], one tanh hidden layer")
    r = sine()
    results["sine"] = r
    for h, v in r.items():
        _say(out, f"   {h:>2} hidden units: mean squared error {v['mse']:.2e}")
    _say(out)

    _say(out, "4. Optimizers on the same MLP (2-32-32-1, tanh), 300 full-batch steps")
    r = optimizers()
    results["optimizers"] = r
    for name, v in r.items():
        _say(out, f"   {name:<13}: loss {v['loss']:.2e}")
    _say(out)

    _say(out, "5. MLP classifier: Linear(64,128) -> norm -> GELU -> Linear(128,10), "
              "cross-entropy, AdamW")
    r = digits()
    results["digits"] = r
    _say(out, f"   data: {r['source']} ({r['train']} train / {r['test']} test images)")
    for name in ("LayerNorm", "BatchNorm"):
        _say(out, f"   with {name:<9}: final loss {r[name]['loss']:.4f}, test accuracy "
                  f"{r[name]['test_accuracy']:.2%}")
    bn = r["BatchNorm"]
    _say(out, f"   BatchNorm eval mode (running stats) vs train mode (batch stats) on 8 images: "
              f"logits differ by up to {bn['eval_vs_train_mode_max_logit_diff']:.3f}\n")

    _say(out, "6. One training epoch of that MLP: mlkernels vs the NumPy reference kernels")
    r = speed()
    results["speed"] = r
    _say(out, f"   mlkernels {r['mlkernels'] * 1e3:.1f} ms, NumPy reference "
              f"{r['numpy reference'] * 1e3:.1f} ms: {r['speedup']:.1f}x faster\n")

    results["seconds"] = time.perf_counter() - t_start
    _say(out, f"demo finished in {results['seconds']:.1f} s")
    if plot:
        _plot(results, plot)
        _say(out, f"loss curves saved to {plot}")
    return results


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a SystemExit saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise SystemExit("--plot needs matplotlib: pip install 'mlkernels[demo]'") from e
    return plt


def _plot(results: Dict[str, object], path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    fig.suptitle("python -m mlkernels demo: training loss, step by step")
    lr = results["linear_regression"]["lr=0.1"]["history"]
    axes[0, 0].semilogy([h["loss"] for h in lr])
    axes[0, 0].set_title("linear regression, gradient descent (lr = 0.1)")
    for h, v in results["sine"].items():
        axes[0, 1].semilogy(v["curve"], label=f"{h} hidden units")
    axes[0, 1].set_title("fitting sin(x): more hidden units, lower loss")
    for name, v in results["optimizers"].items():
        axes[1, 0].semilogy(v["curve"], label=name)
    axes[1, 0].set_title("one network, four optimizers")
    for name in ("LayerNorm", "BatchNorm"):
        axes[1, 1].plot(results["digits"][name]["curve"], label=name, alpha=0.8)
    axes[1, 1].set_title("digits MLP (cross-entropy)")
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
