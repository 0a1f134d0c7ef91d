"""Whole training steps, as users run them: ``bench --family train`` and the parity tests.

Two model families, each built three ways from the same weights: an MLP ``Linear → LayerNorm
→ GELU → … → Linear`` trained with cross-entropy and AdamW, and the character-level GPT of
``mlkernels demo gpt`` (``GPT_MODEL``: 4 layers, width 128, 4 heads, context 128):

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


def reference_adamw(model: nn.Module) -> Callable[[], None]:
    """An AdamW update of ``model``'s parameters by ``reference.adamw_step`` (its moments kept
    here), in place: what ``optim.AdamW(...).step(model.grads())`` does, on the oracle."""
    from . import reference as ref
    params, grads = model.parameters(), model.grads()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    count = 0

    def update() -> None:
        nonlocal count
        count += 1
        new_p, new_m, new_v = ref.adamw_step(params, grads, m, v, step=count, lr=LR,
                                             weight_decay=WEIGHT_DECAY)
        for old, new in zip(params + m + v, new_p + new_m + new_v):
            old[...] = new
    return update


def reference_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], float]:
    """The same step on the NumPy references (``model`` is switched to them)."""
    from . import reference as ref
    model.use_backend(nn.REFERENCE)
    update = reference_adamw(model)

    def step() -> float:
        logits = model.forward(x)
        loss = ref.cross_entropy(logits, y)
        model.backward(ref.cross_entropy_backward(1.0, logits, y).astype(x.dtype),
                       need_input_grad=False)
        update()
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


# ------------------------------------------------------------------ the GPT of the demo

#: (label, GPT arguments, batch) of the GPT step the train benchmark times: the demo's model
GPT_LABEL = "GPT 4x128, 4 heads, context 128"
GPT_MODEL = dict(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 16


def gpt(dtype=np.float32, seed: int = 0, **kwargs) -> nn.GPT:
    """The demo's GPT (dropout 0: the three implementations then compute the same thing)."""
    return nn.GPT(**dict(GPT_MODEL, **kwargs), seed=seed, dtype=dtype)


def gpt_batch(batch: int = GPT_BATCH, model: Optional[dict] = None, seed: int = 1
              ) -> Tuple[np.ndarray, np.ndarray]:
    """(idx, targets): random tokens, (batch, block_size) each, targets shifted by one."""
    m = dict(GPT_MODEL, **(model or {}))
    tokens = np.random.default_rng(seed).integers(0, m["vocab_size"], (batch, m["block_size"] + 1))
    return np.ascontiguousarray(tokens[:, :-1]), np.ascontiguousarray(tokens[:, 1:])


def gpt_mlkernels_step(model: nn.GPT, idx: np.ndarray, targets: np.ndarray
                       ) -> Callable[[], float]:
    """One GPT step on the compiled kernels (fused AdamW); after the first it allocates
    nothing."""
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    grads = model.grads()

    def step() -> float:
        loss = model.forward(idx, targets)
        model.backward()
        opt.step(grads)
        return float(loss)
    return step


def gpt_reference_step(model: nn.GPT, idx: np.ndarray, targets: np.ndarray
                       ) -> Callable[[], float]:
    """The same step on the NumPy references (``model`` is switched to them)."""
    model.use_backend(nn.REFERENCE)
    update = reference_adamw(model)

    def step() -> float:
        loss = model.forward(idx, targets)
        model.backward()
        update()
        return float(loss)
    return step


def torch_gpt(model: nn.GPT):
    """The same GPT in ``torch.nn`` (the parameters named as ours), from ``model``'s weights;
    None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    F = torch.nn.functional
    dtype = torch.float64 if model.wte.weight.dtype == np.float64 else torch.float32

    class Attention(torch.nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.c_attn, self.c_proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
            self.n_head = H

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                       for a in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(torch.nn.Module):
        def __init__(self, C):
            super().__init__()
            self.c_fc, self.c_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x)))

    class Block(torch.nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.ln_1, self.attn = torch.nn.LayerNorm(C), Attention(C, H)
            self.ln_2, self.mlp = torch.nn.LayerNorm(C), MLP(C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = torch.nn.Embedding(model.vocab_size, model.n_embd)
            self.wpe = torch.nn.Embedding(model.block_size, model.n_embd)
            self.blocks = torch.nn.ModuleList(Block(model.n_embd, model.n_head)
                                              for _ in model.blocks)
            self.ln_f = torch.nn.LayerNorm(model.n_embd)
            self.register_buffer("pos", torch.arange(model.block_size), persistent=False)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(self.pos[:idx.shape[1]])
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)           # tied to wte
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    twin = GPT().to(dtype)
    named = dict(twin.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            named[name].copy_(torch.from_numpy(p))
    return twin


def gpt_torch_step(model: nn.GPT, idx: np.ndarray, targets: np.ndarray
                   ) -> Optional[Callable[[], float]]:
    """The same GPT step in PyTorch eager with ``AdamW(fused=True)``; None without PyTorch."""
    twin = torch_gpt(model)
    if twin is None:
        return None
    import torch
    opt = torch.optim.AdamW(twin.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
    tidx, ttgt = torch.from_numpy(idx), torch.from_numpy(targets)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = twin(tidx, ttgt)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def gpt_steps(dtype=np.float32, batch: int = GPT_BATCH, reference: bool = True) -> dict:
    """{implementation: step} for the demo's GPT, all from the same weights and batch."""
    idx, targets = gpt_batch(batch)
    out = {"mlkernels": gpt_mlkernels_step(gpt(dtype), idx, targets)}
    if reference:
        out["numpy reference"] = gpt_reference_step(gpt(dtype), idx, targets)
    twin = gpt_torch_step(gpt(dtype), idx, targets)
    if twin is not None:
        out["torch"] = twin
    return out
