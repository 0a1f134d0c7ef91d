"""Whole training steps, as users run them: ``bench --family train`` and the parity tests.

One model family, an MLP ``Linear → LayerNorm → GELU → … → Linear`` trained with
cross-entropy and AdamW, built three ways from the same weights:

* ``mlkernels``: ``nn.Sequential`` on the compiled kernels, ``optim.AdamW``;
* ``numpy reference``: the same layers on ``nn.REFERENCE`` (the float64 NumPy oracles) and
  ``reference.adamw_step``;
* ``torch``: the same network in ``torch.nn`` with ``torch.optim.AdamW(fused=True)`` (when
  PyTorch is installed; it is a comparison peer only).

A step is forward, loss, backward (the input's gradient is not needed: PyTorch skips it too)
and the optimizer update, on one fixed batch. Each builder returns a zero-argument callable
that runs one step and returns its loss.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import nn, optim

#: (label, layer widths, batch) of the models the train benchmark times
MODELS: List[Tuple[str, Tuple[int, ...], int]] = [
    ("64-128-10", (64, 128, 10), 32),
    ("784-256-256-10", (784, 256, 256, 10), 64),
    ("784-1024-1024-10", (784, 1024, 1024, 10), 256),
    ("1024-4096-1024", (1024, 4096, 1024), 1024),
]
LR, WEIGHT_DECAY = 1e-3, 1e-2


def mlp(dims: Sequence[int], dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Linear(d0, d1) → LayerNorm(d1) → GELU → … → Linear(d_{k-1}, d_k)."""
    rng = np.random.default_rng(seed)
    layers: List[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype, rng=rng))
        if i < len(dims) - 2:
            layers += [nn.LayerNorm(b, dtype=dtype), nn.GELU()]
    return nn.Sequential(*layers)


def batch(dims: Sequence[int], n: int, dtype=np.float32, seed: int = 1
          ) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dims[0])).astype(dtype), rng.integers(0, dims[-1], n)


def mlkernels_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """One step on the compiled kernels; after the first it allocates no array."""
    import mlkernels as mk
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    grads = model.grads()
    one = np.ones((), x.dtype)
    dlogits = None

    def step() -> float:
        nonlocal dlogits
        logits = model.forward(x)
        if dlogits is None:
            dlogits = np.empty_like(logits)
        loss = mk.cross_entropy(logits, y)
        model.backward(mk.cross_entropy_backward(one, logits, y, out=dlogits),
                       need_input_grad=False)
        opt.step(grads)
        return float(loss)
    return step


def reference_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """The same step on the NumPy references (``model`` is switched to them)."""
    from . import reference as ref
    model.use_backend(nn.REFERENCE)
    params, grads = model.parameters(), model.grads()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    count = 0

    def step() -> float:
        nonlocal count
        count += 1
        logits = model.forward(x)
        loss = ref.cross_entropy(logits, y)
        model.backward(ref.cross_entropy_backward(1.0, logits, y).astype(x.dtype),
                       need_input_grad=False)
        new_p, new_m, new_v = ref.adamw_step(params, grads, m, v, step=count, lr=LR,
                                             weight_decay=WEIGHT_DECAY)
        for old, new in zip(params + m + v, new_p + new_m + new_v):
            old[...] = new
        return float(loss)
    return step


def torch_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray
               ) -> Optional[Callable[[], float]]:
    """The same network and step in PyTorch eager (fused AdamW); None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    modules = []
    for layer in model.layers:
        if isinstance(layer, nn.Linear):
            m = torch.nn.Linear(layer.weight.shape[1], layer.weight.shape[0], dtype=dtype)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.weight))
                m.bias.copy_(torch.from_numpy(layer.bias))
        elif isinstance(layer, nn.LayerNorm):
            m = torch.nn.LayerNorm(layer.normalized_shape, eps=layer.eps, dtype=dtype)
        elif isinstance(layer, nn.GELU):
            m = torch.nn.GELU()
        else:
            raise TypeError(f"torch_step: no PyTorch twin for {layer!r}")
        modules.append(m)
    net = torch.nn.Sequential(*modules)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(tx), ty)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def steps(dims: Sequence[int], n: int, dtype=np.float32, reference: bool = True
          ) -> dict:
    """{implementation: step} for one model and batch size, all from the same weights."""
    x, y = batch(dims, n, dtype)
    out = {"mlkernels": mlkernels_step(mlp(dims, dtype), x, y)}
    if reference:
        out["numpy reference"] = reference_step(mlp(dims, dtype), x, y)
    twin = torch_step(mlp(dims, dtype), x, y)
    if twin is not None:
        out["torch"] = twin
    return out
