"""The layers of a GPT (a decoder-only transformer, as GPT-2 and nanoGPT), on mlkernels.

(Import them from ``mlkernels.nn``: this module is imported by it, at its end.)

Re-exported by ``mlkernels.nn``: ``Embedding``, ``Dropout``, ``CausalSelfAttention``, ``MLP``,
``TransformerBlock`` and ``GPT``. They follow the conventions of the other layers (see
``mlkernels.nn``): ``forward`` caches what ``backward`` needs, parameters are named by
``param_names`` with their gradients in ``grad_<name>``, composite layers list their parts in
``children()``, and in training mode every output and gradient lives in an array of the layer's
own (``_buffer``) that the kernels write into (``out=``), so that a training step allocates
nothing once it has run once.

The model, read top to bottom (B sequences of T tokens, C = n_embd, H heads of size C/H)::

    x = wte[idx] + wpe[:T]                              (B, T, C)   token + position
    for each block:
        x = x + proj(attention(split_heads(qkv(ln_1(x)))))   causal self-attention
        x = x + fc2(gelu(fc1(ln_2(x))))                      MLP, 4C wide
    loss = cross_entropy(ln_f(x) · wteᵀ, targets)       the head is tied to wte

The loss and its gradient come from one fused call (``linear_cross_entropy_with_grad``): the
(B·T, vocab) logits are never kept.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Union

import numpy as np

from .nn import GELU, LayerNorm, Linear, Module

__all__ = ["Embedding", "Dropout", "CausalSelfAttention", "MLP", "TransformerBlock", "GPT"]


class _Composite(Module):
    """A layer made of layers: train/eval and the backend reach every child."""

    def train(self, mode: bool = True):
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def use_backend(self, backend):
        self.F = backend
        for child in self.children():
            child.use_backend(backend)
        return self


def _positive(where: str, **sizes: object) -> None:
    """Each size must be an int > 0 (a bool is not one)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{where}: {name} is {value!r}; expected a positive int")


def _normal(rng: np.random.Generator, shape: tuple, std: float, dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(dtype)


class Embedding(Module):
    """A lookup table: ``forward(idx)`` is ``weight[idx]`` (``mlkernels.embedding``); the
    backward scatter-adds the gradient into ``grad_weight`` (deterministic) and returns None
    (indices have no gradient).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        The table's shape.
    std : float, default 1.0
        The initial weights are normal(0, std) (PyTorch's default is 1; GPT-2 uses 0.02).
    dtype : float32 (default) or float64
    rng : numpy.random.Generator, optional
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    ValueError
        If a size is not a positive int. (``forward`` raises as ``mlkernels.embedding``: an
        index array that is not integer, or an index out of range.)

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> emb = nn.Embedding(5, 3, rng=np.random.default_rng(0))
    >>> y = emb.forward(np.array([[4, 0, 4]]))
    >>> y.shape, bool((y[0, 0] == emb.weight[4]).all())
    ((1, 3, 3), True)
    >>> _ = emb.backward(np.ones_like(y))
    >>> emb.grad_weight[:, 0]
    array([1., 0., 0., 0., 2.], dtype=float32)
    """

    param_names = ("weight",)

    def __init__(self, num_embeddings: int, embedding_dim: int, *, std: float = 1.0,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None,
                 backend: Any = None) -> None:
        super().__init__(backend)
        _positive("Embedding()", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = _normal(rng, (num_embeddings, embedding_dim), std, dtype)
        self.grad_weight = np.zeros_like(self.weight)

    def forward(self, idx):
        self._cache = (idx,)
        shape = None if not isinstance(idx, np.ndarray) else idx.shape + self.weight.shape[1:]
        return self.F.embedding(idx, self.weight, out=self._buffer("y", self.weight, shape))

    def backward(self, grad_out, *, need_input_grad=True):
        (idx,) = self._saved()
        self.F.embedding_backward(grad_out, idx, self.weight.shape[0], out=self.grad_weight)
        return None

    def __repr__(self):
        return f"Embedding({self.weight.shape[0]}, {self.weight.shape[1]})"


class Dropout(Module):
    """Zero each element with probability ``p`` and scale the rest by 1/(1 − p) in training
    mode; the identity in eval mode. The mask comes from a counter-based generator (Philox,
    ``mlkernels.dropout``) keyed by ``seed``: each forward draws at a fresh counter offset,
    and the backward regenerates the same mask instead of storing it.

    Parameters
    ----------
    p : float in [0, 1), default 0.0
    seed : int, default 0
        The generator's key (give each Dropout of a model its own).
    backend : optional

    Raises
    ------
    ValueError
        If p is not in [0, 1) or seed is not an int in [0, 2**64).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> drop = nn.Dropout(0.5, seed=1)
    >>> y = drop.forward(np.ones(8))
    >>> sorted(set(y.tolist())), bool((drop.backward(np.ones(8)) == y).all())
    ([0.0, 2.0], True)
    >>> drop.eval().forward(np.ones(2))
    array([1., 1.])
    """

    def __init__(self, p: float = 0.0, seed: int = 0, backend: Any = None) -> None:
        super().__init__(backend)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) \
                or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout(): p is {p!r}; expected a probability in [0, 1)")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
                or not 0 <= seed < 2**64:
            raise ValueError(f"Dropout(): seed is {seed!r}; expected an int in [0, 2**64)")
        self.p, self.seed = float(p), int(seed)
        self.offset = 0                 # the Philox counter of the next forward's first element

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._cache = (None,)
            return x
        offset = self.offset
        y = self.F.dropout(x, self.p, self.seed, offset=offset, out=self._buffer("y", x))
        self.offset += x.size
        self._cache = (offset,)
        return y

    def backward(self, grad_out, *, need_input_grad=True):
        (offset,) = self._saved()
        if offset is None:
            return grad_out
        return self.F.dropout_backward(grad_out, self.p, self.seed, offset=offset,
                                       out=self._buffer("grad_x", grad_out))

    def __repr__(self):
        return f"Dropout(p={self.p})"


class CausalSelfAttention(_Composite):
    """Multi-head causal self-attention: one fused Linear(C, 3C) makes q, k and v, each
    split into ``n_head`` heads of size C/n_head; ``scaled_dot_product_attention``
    (is_causal) runs on every head; the heads are merged and go through Linear(C, C)
    (``c_proj``) and a Dropout.

    The attention kernel reads the heads where the qkv product left them, as strided
    (B, H, T, d) views of the (B, T, 3C) array: the split costs no copy. The kernel writes
    (B, H, T, d); merging it to (B, T, C) is one copy into the layer's array (and the same
    two moves, reversed, in the backward).

    Parameters
    ----------
    n_embd : int
        C, the model width.
    n_head : int
        The number of heads (C must be a multiple of it).
    dropout : float, default 0.0
        The residual dropout after the projection.
    seed : int, default 0
        The dropout's key.
    dtype : float32 (default) or float64
    rng : numpy.random.Generator, optional
    backend : optional

    Raises
    ------
    ValueError
        If a size is not a positive int, n_embd is not a multiple of n_head, or dropout is
        not in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> attn = nn.CausalSelfAttention(8, 2, rng=np.random.default_rng(0))
    >>> x = np.ones((1, 3, 8), np.float32)
    >>> y = attn.forward(x)
    >>> y.shape, attn.backward(np.ones_like(y)).shape
    ((1, 3, 8), (1, 3, 8))
    """

    def __init__(self, n_embd: int, n_head: int, *, dropout: float = 0.0, seed: int = 0,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None,
                 backend: Any = None) -> None:
        super().__init__(backend)
        _positive("CausalSelfAttention()", n_embd=n_embd, n_head=n_head)
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention(): n_embd = {n_embd} is not a multiple of "
                             f"n_head = {n_head}; expected n_embd % n_head == 0")
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd, dtype=dtype, rng=rng, backend=backend)
        self.c_proj = Linear(n_embd, n_embd, dtype=dtype, rng=rng, backend=backend)
        self.resid_dropout = Dropout(dropout, seed, backend=backend)

    def children(self):
        return [self.c_attn, self.c_proj, self.resid_dropout]

    def _child_name(self, i):
        return ("c_attn", "c_proj", "resid_dropout")[i]

    def _heads(self, a):
        """(B, T, 3C) → the strided (B, H, T, d) views q, k, v (no copy)."""
        B, T, C3 = a.shape
        H = self.n_head
        split = a.reshape(B, T, 3, H, C3 // (3 * H)).transpose(2, 0, 3, 1, 4)
        return split[0], split[1], split[2]

    def forward(self, x):
        B, T, C = x.shape
        H, d = self.n_head, C // self.n_head
        qkv = self.c_attn.forward(x)
        q, k, v = self._heads(qkv)
        out = (self._buffer("o", x, (B, H, T, d)), self._buffer("lse", x, (B, H, T)))
        o, lse = self.F.scaled_dot_product_attention(
            q, k, v, is_causal=True, return_lse=True, out=out if out[0] is not None else None)
        y = self._buffer("y", x)                      # merge heads: (B, H, T, d) → (B, T, C)
        if y is None:
            y = np.empty(x.shape, x.dtype)
        np.copyto(y.reshape(B, T, H, d), o.transpose(0, 2, 1, 3))
        self._cache = (x, qkv, o, lse)
        return self.resid_dropout.forward(self.c_proj.forward(y))

    def backward(self, grad_out, *, need_input_grad=True):
        x, qkv, o, lse = self._saved()
        B, T, C = x.shape
        H, d = self.n_head, C // self.n_head
        g = self.c_proj.backward(self.resid_dropout.backward(grad_out))
        go = g.reshape(B, T, H, d).transpose(0, 2, 1, 3)    # dL/do as a strided view
        q, k, v = self._heads(qkv)
        shape = (B, H, T, d)
        bufs = tuple(self._buffer(n, x, shape) for n in ("dq", "dk", "dv"))
        dq, dk, dv = self.F.scaled_dot_product_attention_backward(
            go, q, k, v, o, lse, is_causal=True, out=bufs if bufs[0] is not None else None)
        dqkv = self._buffer("dqkv", qkv)              # merge dq, dk, dv back into (B, T, 3C)
        if dqkv is None:
            dqkv = np.empty(qkv.shape, qkv.dtype)
        dq_, dk_, dv_ = self._heads(dqkv)
        np.copyto(dq_, dq)
        np.copyto(dk_, dk)
        np.copyto(dv_, dv)
        return self.c_attn.backward(dqkv, need_input_grad=need_input_grad)

    def __repr__(self):
        return f"CausalSelfAttention({self.c_proj.weight.shape[0]}, n_head={self.n_head})"


class MLP(_Composite):
    """The transformer's feed-forward part: Linear(C, 4C) → GELU → Linear(4C, C) → Dropout.

    Parameters
    ----------
    n_embd : int
        C.
    dropout : float, default 0.0
    seed : int, default 0
        The dropout's key.
    dtype : float32 (default) or float64
    rng : numpy.random.Generator, optional
    backend : optional

    Raises
    ------
    ValueError
        If n_embd is not a positive int or dropout is not in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> mlp = nn.MLP(4, rng=np.random.default_rng(0))
    >>> y = mlp.forward(np.ones((2, 4), np.float32))
    >>> mlp.c_fc.weight.shape, mlp.backward(np.ones_like(y)).shape
    ((16, 4), (2, 4))
    """

    def __init__(self, n_embd: int, *, dropout: float = 0.0, seed: int = 0, dtype=np.float32,
                 rng: Optional[np.random.Generator] = None, backend: Any = None) -> None:
        super().__init__(backend)
        _positive("MLP()", n_embd=n_embd)
        self.c_fc = Linear(n_embd, 4 * n_embd, dtype=dtype, rng=rng, backend=backend)
        self.gelu = GELU(backend=backend)
        self.c_proj = Linear(4 * n_embd, n_embd, dtype=dtype, rng=rng, backend=backend)
        self.dropout = Dropout(dropout, seed, backend=backend)

    def children(self):
        return [self.c_fc, self.gelu, self.c_proj, self.dropout]

    def _child_name(self, i):
        return ("c_fc", "gelu", "c_proj", "dropout")[i]

    def forward(self, x):
        return self.dropout.forward(self.c_proj.forward(self.gelu.forward(self.c_fc.forward(x))))

    def backward(self, grad_out, *, need_input_grad=True):
        g = self.c_proj.backward(self.dropout.backward(grad_out))
        return self.c_fc.backward(self.gelu.backward(g), need_input_grad=need_input_grad)

    def __repr__(self):
        return f"MLP({self.c_fc.weight.shape[1]})"


class TransformerBlock(_Composite):
    """A pre-LayerNorm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    In the backward each residual's two gradients are summed in place, into the array the
    LayerNorm's backward just wrote: no extra copies.

    Parameters
    ----------
    n_embd, n_head : int
    dropout : float, default 0.0
    seed : int, default 0
        The key of the attention's dropout (the MLP's is ``seed + 1``).
    dtype : float32 (default) or float64
    rng : numpy.random.Generator, optional
    backend : optional

    Raises
    ------
    ValueError
        As ``CausalSelfAttention``: a size that is not a positive int, n_embd not a multiple of
        n_head, dropout not in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> block = nn.TransformerBlock(8, 2, rng=np.random.default_rng(0))
    >>> y = block.forward(np.ones((2, 3, 8), np.float32))
    >>> y.shape, len(block.parameters())
    ((2, 3, 8), 12)
    """

    def __init__(self, n_embd: int, n_head: int, *, dropout: float = 0.0, seed: int = 0,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None,
                 backend: Any = None) -> None:
        super().__init__(backend)
        self.ln_1 = LayerNorm(n_embd, dtype=dtype, backend=backend)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout=dropout, seed=seed, dtype=dtype,
                                        rng=rng, backend=backend)
        self.ln_2 = LayerNorm(n_embd, dtype=dtype, backend=backend)
        self.mlp = MLP(n_embd, dropout=dropout, seed=seed + 1, dtype=dtype, rng=rng,
                       backend=backend)

    def children(self):
        return [self.ln_1, self.attn, self.ln_2, self.mlp]

    def _child_name(self, i):
        return ("ln_1", "attn", "ln_2", "mlp")[i]

    def forward(self, x):
        h = self._buffer("h", x)              # the residual stream after the attention
        h = np.add(x, self.attn.forward(self.ln_1.forward(x)), out=h)
        y = self._buffer("y", x)
        return np.add(h, self.mlp.forward(self.ln_2.forward(h)), out=y)

    def backward(self, grad_out, *, need_input_grad=True):
        # dL/dh = grad_out (the residual) + the MLP branch's gradient, summed in place
        grad_h = self.ln_2.backward(self.mlp.backward(grad_out))
        np.add(grad_h, grad_out, out=grad_h)
        grad_x = self.ln_1.backward(self.attn.backward(grad_h))
        np.add(grad_x, grad_h, out=grad_x)
        return grad_x

    def __repr__(self):
        return f"TransformerBlock({self.ln_1.normalized_shape[0]}, n_head={self.attn.n_head})"


def _indices(where: str, name: str, a: object, vocab_size: int, block_size: int) -> np.ndarray:
    """Check a (B, T) array of token indices; raise before anything is touched."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{where}: {name} is {kind}; expected an integer ndarray of token "
                        f"indices, shape (batch, time)")
    if a.ndim != 2:
        raise ValueError(f"{where}: {name} has shape {a.shape}; expected 2-d (batch, time)")
    if a.shape[1] > block_size:
        raise ValueError(f"{where}: {name} has {a.shape[1]} positions but the model's context "
                         f"is block_size = {block_size}; expected at most {block_size} (crop "
                         f"it: {name}[:, -{block_size}:])")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        bad = a[(a < 0) | (a >= vocab_size)].flat[0]
        raise ValueError(f"{where}: {name} holds the index {bad}; expected indices in "
                         f"[0, vocab_size) = [0, {vocab_size})")
    return a


class GPT(_Composite):
    """A GPT language model (as GPT-2 / nanoGPT): token and position embeddings, ``n_layer``
    pre-LayerNorm transformer blocks, a final LayerNorm, and an LM head tied to the token
    embedding; the loss is the mean cross-entropy of the next token, computed with its
    gradient by ``linear_cross_entropy_with_grad`` (the logits are never stored).

    Initialization as GPT-2: every weight normal(0, 0.02), biases zero, LayerNorms one and
    zero, and the residual projections (``attn.c_proj``, ``mlp.c_proj``) normal(0,
    0.02/√(2·n_layer)). The tied weight ``wte.weight`` appears once in ``parameters()``; its
    gradient is the sum of the embedding's scatter-add and the head's.

    Parameters
    ----------
    vocab_size : int
    block_size : int
        The longest context (number of positions).
    n_layer, n_head, n_embd : int
        Blocks, heads per block, width.
    dropout : float, default 0.0
        After the embeddings and on each residual branch.
    seed : int, default 0
        The initial weights and the dropout keys.
    dtype : float32 (default) or float64
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    ValueError
        If a size is not a positive int, n_embd is not a multiple of n_head, or dropout is
        not in [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn, optim
    >>> model = nn.GPT(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8, seed=0)
    >>> opt = optim.AdamW(model.parameters(), lr=1e-2)
    >>> idx = np.random.default_rng(0).integers(0, 10, (4, 8))
    >>> first = model.forward(idx[:, :-1], idx[:, 1:])
    >>> for _ in range(20):
    ...     loss = model.forward(idx[:, :-1], idx[:, 1:])
    ...     model.backward()
    ...     _ = opt.step(model.grads())
    >>> bool(loss < first), model.generate(idx[:1, :3], 5, seed=0).shape
    (True, (1, 8))
    """

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int, dropout: float = 0.0, seed: int = 0, *, dtype=np.float32,
                 backend: Any = None) -> None:
        super().__init__(backend)
        _positive("GPT()", vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                  n_head=n_head, n_embd=n_embd)
        if n_embd % n_head:
            raise ValueError(f"GPT(): n_embd = {n_embd} is not a multiple of n_head = {n_head}; "
                             f"expected n_embd % n_head == 0")
        self.vocab_size, self.block_size = int(vocab_size), int(block_size)
        self.n_layer, self.n_head, self.n_embd = int(n_layer), int(n_head), int(n_embd)
        rng = np.random.default_rng(seed)
        # dropout keys: one per Dropout (a block's MLP takes its attention's key + 1)
        keys = np.random.SeedSequence(seed).generate_state(n_layer + 1, np.uint64) >> 1
        self.wte = Embedding(vocab_size, n_embd, std=0.02, dtype=dtype, rng=rng, backend=backend)
        self.wpe = Embedding(block_size, n_embd, std=0.02, dtype=dtype, rng=rng, backend=backend)
        self.drop = Dropout(dropout, int(keys[0]), backend=backend)
        self.blocks = [TransformerBlock(n_embd, n_head, dropout=dropout, seed=int(keys[1 + i]),
                                        dtype=dtype, rng=rng, backend=backend)
                       for i in range(n_layer)]
        self.ln_f = LayerNorm(n_embd, dtype=dtype, backend=backend)
        residual_std = 0.02 / math.sqrt(2 * n_layer)
        for block in self.blocks:
            for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                std = residual_std if lin in (block.attn.c_proj, block.mlp.c_proj) else 0.02
                lin.weight[...] = _normal(rng, lin.weight.shape, std, dtype)
                lin.bias[...] = 0
        self._head_grad: Optional[np.ndarray] = None  # the head's dL/dW (added to wte's)
        self._grad_h: Optional[np.ndarray] = None     # dL/d(ln_f's output), from the loss
        self._T = 0

    def children(self):
        return [self.wte, self.wpe, self.drop, *self.blocks, self.ln_f]

    def _child_name(self, i):
        names = ["wte", "wpe", "drop"] + [f"blocks.{j}" for j in range(self.n_layer)]
        return (names + ["ln_f"])[i]

    def _hidden(self, idx: np.ndarray) -> np.ndarray:
        """ln_f(blocks(drop(wte[idx] + wpe[:T]))): the (B, T, C) last hidden states."""
        T = idx.shape[1]
        tok = self.wte.forward(idx)
        x = np.add(tok, self.wpe.weight[:T], out=self._buffer("x", tok))
        x = self.drop.forward(x)
        for block in self.blocks:
            x = block.forward(x)
        return self.ln_f.forward(x)

    def forward(self, idx: np.ndarray, targets: Optional[np.ndarray] = None
                ) -> Union[np.floating, np.ndarray]:
        """The mean next-token loss (with ``targets``) or the logits (without).

        Parameters
        ----------
        idx : integer ndarray (B, T), T <= block_size
            Token indices in [0, vocab_size).
        targets : integer ndarray (B, T), optional
            The next tokens. In training mode the loss's gradient is computed in the same
            pass (``backward()`` then propagates it).

        Returns
        -------
        loss : NumPy scalar, or logits : ndarray (B, T, vocab_size) without targets

        Raises
        ------
        TypeError, ValueError
            idx or targets not integer arrays of shape (B, T), an index out of range, T over
            block_size. Nothing is changed then.

        Examples
        --------
        >>> import numpy as np
        >>> from mlkernels import nn
        >>> model = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4)
        >>> model.forward(np.zeros((1, 4), np.int64)).shape
        (1, 4, 5)
        """
        where = "GPT.forward()"
        idx = _indices(where, "idx", idx, self.vocab_size, self.block_size)
        if targets is not None:
            targets = _indices(where, "targets", targets, self.vocab_size, self.block_size)
            if targets.shape != idx.shape:
                raise ValueError(f"{where}: targets has shape {targets.shape}; expected the "
                                 f"shape of idx, {idx.shape}")
        self._grad_h = None
        h = self._hidden(idx)
        self._T = idx.shape[1]
        if targets is None:
            return self.F.linear(h, self.wte.weight)
        if not self.training:
            return self.F.linear_cross_entropy(h, self.wte.weight, targets)
        grad_h = self._buffer("grad_h", h)
        head_grad = self._buffer("head_grad", self.wte.weight)
        loss, self._grad_h, self._head_grad, _ = self.F.linear_cross_entropy_with_grad(
            h, self.wte.weight, targets, out=(grad_h, head_grad, None))
        return loss

    def backward(self, grad_out: Optional[float] = None, *,
                 need_input_grad: bool = False) -> None:
        """Propagate the gradient of the last ``forward(idx, targets)``'s loss into
        ``grads()`` (written, never accumulated into).

        Parameters
        ----------
        grad_out : None or 1.0
            dL/dloss; the loss's gradient was made with the forward, for 1.0.
        need_input_grad : bool
            Ignored: token indices have no gradient.

        Returns
        -------
        None

        Raises
        ------
        RuntimeError
            If the last forward was not a training-mode forward with targets.

        Examples
        --------
        >>> import numpy as np
        >>> from mlkernels import nn
        >>> model = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4)
        >>> _ = model.forward(np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
        >>> model.backward()
        >>> float(model.wte.grad_weight[1, 0]) != 0.0
        True
        """
        if grad_out is not None and grad_out != 1.0:
            raise ValueError(f"GPT.backward(): grad_out is {grad_out!r}; the loss's gradient "
                             f"is made by the forward for grad_out = 1.0 (None)")
        if self._grad_h is None:
            raise RuntimeError("GPT.backward() called without a training-mode "
                               "forward(idx, targets) before it: there is no loss to "
                               "differentiate")
        g = self.ln_f.backward(self._grad_h)
        for block in reversed(self.blocks):
            g = block.backward(g)
        g = self.drop.backward(g)
        T = self._T
        np.sum(g, axis=0, out=self.wpe.grad_weight[:T])       # the positions' gradient
        self.wpe.grad_weight[T:] = 0
        self.wte.backward(g)                                     # the lookup's scatter-add
        np.add(self.wte.grad_weight, self._head_grad, out=self.wte.grad_weight)  # + the head's
        self._grad_h = None
        return None

    def state_dict(self) -> Dict[str, np.ndarray]:
        """A copy of every parameter by dotted name (``np.savez(path, **model.state_dict())``).

        Returns
        -------
        dict of str to ndarray

        Examples
        --------
        >>> from mlkernels import nn
        >>> model = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4)
        >>> list(model.state_dict())[:3]
        ['wte.weight', 'wpe.weight', 'blocks.0.ln_1.weight']
        """
        return {name: p.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        """Copy the arrays of ``state`` (a ``state_dict()``, or ``np.load`` of its savez file)
        into the parameters, in place (an optimizer holding them sees the new values).

        Parameters
        ----------
        state : mapping of str to ndarray
            Exactly the keys of ``state_dict()``, with the same shapes and dtypes.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            On a missing or unexpected key, a wrong shape or dtype. Nothing is set then.

        Examples
        --------
        >>> from mlkernels import nn
        >>> a = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4, seed=0)
        >>> b = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4, seed=1)
        >>> b.load_state_dict(a.state_dict())
        >>> bool((a.wte.weight == b.wte.weight).all())
        True
        """
        where = "GPT.load_state_dict()"
        params = dict(self.named_parameters())
        keys = set(state.keys())
        missing, unexpected = sorted(set(params) - keys), sorted(keys - set(params))
        if missing or unexpected:
            raise ValueError(f"{where}: missing keys {missing}, unexpected keys {unexpected}; "
                             f"expected exactly the keys of state_dict()")
        for name, p in params.items():
            a = state[name]
            if not isinstance(a, np.ndarray) or a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(f"{where}: {name} is {getattr(a, 'dtype', type(a).__name__)} "
                                 f"of shape {getattr(a, 'shape', None)}; expected {p.dtype} "
                                 f"of shape {p.shape}")
        for name, p in params.items():
            np.copyto(p, state[name])

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        """Continue each row of ``idx`` by ``max_new_tokens`` sampled tokens (in eval mode;
        the model's mode is restored after). The context is cropped to the last block_size
        tokens.

        Parameters
        ----------
        idx : integer ndarray (B, T)
            The prompts (T >= 1; any length: cropped).
        max_new_tokens : int >= 0
        temperature : float > 0, default 1.0
            Divides the logits (below 1: more conservative samples).
        top_k : int, optional
            Sample only among the k most likely tokens.
        seed : int, optional
            The sampler's seed: the same seed gives the same text.

        Returns
        -------
        ndarray (B, T + max_new_tokens) of int64

        Raises
        ------
        TypeError, ValueError
            Bad idx (as ``forward``, but any length), max_new_tokens, temperature or top_k.

        Examples
        --------
        >>> import numpy as np
        >>> from mlkernels import nn
        >>> model = nn.GPT(5, 4, n_layer=1, n_head=1, n_embd=4)
        >>> out = model.generate(np.zeros((2, 1), np.int64), 6, top_k=2, seed=0)
        >>> out.shape, bool((out == model.generate(np.zeros((2, 1), np.int64), 6, top_k=2,
        ...                                         seed=0)).all())
        ((2, 7), True)
        """
        where = "GPT.generate()"
        if isinstance(idx, np.ndarray) and idx.ndim == 2 and idx.shape[1] == 0:
            raise ValueError(f"{where}: idx has no tokens; expected at least one per row")
        _indices(where, "idx", idx[:, -self.block_size:] if isinstance(idx, np.ndarray)
                 and idx.ndim == 2 else idx, self.vocab_size, self.block_size)
        if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ValueError(f"{where}: max_new_tokens is {max_new_tokens!r}; expected an "
                             f"int >= 0")
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"{where}: temperature is {temperature!r}; expected a finite "
                             f"number > 0")
        if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k <= 0):
            raise ValueError(f"{where}: top_k is {top_k!r}; expected None or an int > 0")
        rng = np.random.default_rng(seed)
        was_training = self.training
        self.eval()
        try:
            out = np.array(idx, np.int64)
            for _ in range(max_new_tokens):
                h = self._hidden(out[:, -self.block_size:])[:, -1]          # (B, C)
                logits = self.F.linear(np.ascontiguousarray(h), self.wte.weight)
                logits = logits.astype(np.float64) / temperature
                if top_k is not None and top_k < self.vocab_size:
                    kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]
                    logits[logits < kth] = -np.inf
                probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
                probs /= probs.sum(axis=-1, keepdims=True)
                u = rng.random((probs.shape[0], 1))
                nxt = (probs.cumsum(axis=-1) < u).sum(axis=-1)
                nxt = np.minimum(nxt, self.vocab_size - 1)
                out = np.concatenate([out, nxt[:, None]], axis=1)
        finally:
            self.train(was_training)
        return out

    def __repr__(self):
        return (f"GPT(vocab_size={self.vocab_size}, block_size={self.block_size}, "
                f"n_layer={self.n_layer}, n_head={self.n_head}, n_embd={self.n_embd})")
