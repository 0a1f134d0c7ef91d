"""A thin layer API over the functional kernels: explicit, small, readable.

Each layer has ``forward(x)`` (which caches exactly what its backward needs),
``backward(grad_out)`` (which returns the gradient with respect to its input and stores the
gradients of its parameters), ``parameters()`` and ``grads()`` (lists, in the same order, that
plug straight into ``mlkernels.optim``), and ``train()`` / ``eval()``.

A training step allocates nothing once it has run once: in training mode every layer keeps
its outputs and gradients in arrays of its own, reused while the shapes stay the same, and the
kernels write into them (``out=``); parameter gradients are written straight into ``grads()``.
So in training mode the array ``forward`` (or ``backward``) returns belongs to the layer and
is overwritten by its next call: copy it to keep it. In eval mode (inference) every call
returns new arrays. ``model.backward(g, need_input_grad=False)`` skips the gradient with
respect to the network's input (a training step does not need it; PyTorch skips it too when
the input does not require a gradient), which saves a third of the first Linear's backward.

    model = Sequential(Linear(64, 128), LayerNorm(128), GELU(), Linear(128, 10))
    opt = mlkernels.optim.AdamW(model.parameters(), lr=1e-3)
    logits = model.forward(x)
    loss = mlkernels.cross_entropy(logits, y)
    model.backward(mlkernels.cross_entropy_backward(1.0, logits, y), need_input_grad=False)
    opt.step(model.grads())

Layers compute through a *backend*: ``mlkernels`` itself by default, or
``mlkernels.nn.REFERENCE`` (the float64 NumPy references, results cast back to the input's
dtype) -- the same network on the oracle kernels, to compare results and speed.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _validate as V

__all__ = ["Module", "Linear", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "LeakyReLU",
           "LayerNorm", "BatchNorm1d", "Sequential", "REFERENCE",
           "Embedding", "Dropout", "CausalSelfAttention", "MLP", "TransformerBlock", "GPT"]


class _Reference:
    """The backend of the NumPy references: each result cast back to the input dtype (and
    copied into ``out=`` when the layer passes its own arrays)."""

    def __getattr__(self, name: str):
        from . import reference
        fn = getattr(reference, name)

        def call(*args, out=None, **kwargs):
            dtype = next((a.dtype for a in args if isinstance(a, np.ndarray)
                          and a.dtype.kind == "f"), None)
            result = fn(*args, **kwargs)
            if not isinstance(result, tuple):
                result = np.asarray(result, dtype)
                if out is None:
                    return result
                np.copyto(out, result)
                return out
            result = tuple(None if r is None else np.asarray(r, dtype) for r in result)
            if out is None:
                return result
            for o, r in zip(out, result):
                if o is not None and r is not None:
                    np.copyto(o, r)
            return tuple(r if o is None else o for o, r in zip(out, result))
        return call

    def linear_cross_entropy_with_grad(self, x, weight, target, bias=None, *, grad_out=1.0,
                                       out=None, **kwargs):
        """The reference loss, then its reference gradients (the fused kernel's contract)."""
        loss = self.linear_cross_entropy(x, weight, target, bias, **kwargs)
        grads = self.linear_cross_entropy_backward(grad_out, x, weight, target, bias,
                                                   out=out, **kwargs)
        return (loss,) + tuple(grads)


REFERENCE = _Reference()


def _fast():
    import mlkernels
    return mlkernels


class Module:
    """Base class: a layer with parameters, their gradients and a train/eval mode.

    Parameters
    ----------
    backend : module-like, optional
        What computes: ``mlkernels`` (default) or ``nn.REFERENCE`` (the NumPy oracles).

    Raises
    ------
    RuntimeError
        ``backward`` before a training-mode ``forward`` (no saved input).

    Examples
    --------
    A layer of one's own: a forward that saves what its backward needs.

    >>> import numpy as np
    >>> from mlkernels import nn
    >>> class Scale(nn.Module):
    ...     param_names = ("weight",)
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.weight, self.grad_weight = np.ones(1), np.zeros(1)
    ...     def forward(self, x):
    ...         self._cache = (x,)
    ...         return x * self.weight
    ...     def backward(self, grad_out, *, need_input_grad=True):
    ...         (x,) = self._saved()
    ...         self.grad_weight[...] = (grad_out * x).sum()
    ...         return grad_out * self.weight
    >>> layer = Scale()
    >>> layer.forward(np.array([2.0, 3.0]))
    array([2., 3.])
    >>> layer.backward(np.ones(2)), layer.grads()
    (array([1., 1.]), [array([5.])])
    """

    training: bool = True

    def __init__(self, backend: Any = None) -> None:
        self.F = backend if backend is not None else _fast()
        self._cache: Optional[tuple] = None
        self._buffers: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray, *, need_input_grad: bool = True
                 ) -> Optional[np.ndarray]:
        """The gradient with respect to the input (None with ``need_input_grad=False``, where
        a layer can skip it); parameter gradients are written into ``grads()``."""
        raise NotImplementedError

    def _buffer(self, name: str, like: np.ndarray, shape: Optional[tuple] = None):
        """The layer's own array ``name`` (the shape of ``like``, or ``shape``, and its dtype),
        made on the first call and reused while shape and dtype stay the same. None in eval
        mode (the kernel returns a new array), and when ``like`` is not a float array (the
        kernel then reports the problem, or copies)."""
        if not self.training or not isinstance(like, np.ndarray) or like.dtype.kind != "f":
            return None
        shape = like.shape if shape is None else shape
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = self._buffers[name] = np.empty(shape, like.dtype)
        return buf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    #: names of the parameter attributes; the gradient of ``name`` is ``grad_<name>`` (an
    #: array the backward writes into). None entries (no bias, say) are skipped.
    param_names: Tuple[str, ...] = ()

    def children(self) -> List["Module"]:
        """The layers this one is made of (Sequential, a transformer block...), in order."""
        return []

    def named_parameters(self, prefix: str = "") -> List[Tuple[str, np.ndarray]]:
        """(dotted name, array) of every parameter, this layer's first, then its children's
        (``"0.weight"``, ``"blocks.1.attn.qkv.bias"``...): the keys of a state dict."""
        own = [(prefix + n, getattr(self, n)) for n in self.param_names
               if getattr(self, n) is not None]
        for i, child in enumerate(self.children()):
            own += child.named_parameters(f"{prefix}{self._child_name(i)}.")
        return own

    def _child_name(self, i: int) -> str:
        return str(i)

    def parameters(self) -> List[np.ndarray]:
        """Every parameter array, in a fixed order (the order of ``grads()``)."""
        return [p for _, p in self.named_parameters()]

    def grads(self) -> List[np.ndarray]:
        """The gradient arrays of ``parameters()``, in the same order: the backward writes
        into these very arrays (``mlkernels.distributed.flat_grads`` may move them into one
        buffer with ``set_grad_arrays``)."""
        out = [getattr(self, "grad_" + n) for n in self.param_names
               if getattr(self, n) is not None]
        for child in self.children():
            out += child.grads()
        return out

    def set_grad_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Make the gradients live in ``arrays`` (one per ``grads()`` entry, same shapes and
        dtypes: views into one flat buffer, say); the backward writes there from now on."""
        arrays = list(arrays)
        current = self.grads()
        if len(arrays) != len(current):
            raise ValueError(f"{type(self).__name__}.set_grad_arrays(): {len(arrays)} arrays "
                             f"for {len(current)} gradients; expected one per parameter")
        for a, g in zip(arrays, current):
            if not isinstance(a, np.ndarray) or a.shape != g.shape or a.dtype != g.dtype:
                raise ValueError(f"{type(self).__name__}.set_grad_arrays(): expected arrays "
                                 f"of shape {g.shape} and dtype {g.dtype}, got "
                                 f"{getattr(a, 'shape', type(a).__name__)}")
            if not a.flags.writeable or not a.flags.c_contiguous:
                raise ValueError(f"{type(self).__name__}.set_grad_arrays(): the arrays must be "
                                 f"writeable and C-contiguous")
        self._set_grads(arrays)

    def _set_grads(self, arrays: List[np.ndarray]) -> List[np.ndarray]:
        for n in self.param_names:
            if getattr(self, n) is not None:
                setattr(self, "grad_" + n, arrays.pop(0))
        for child in self.children():
            arrays = child._set_grads(arrays)
        return arrays

    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def use_backend(self, backend: Any) -> "Module":
        """Compute with ``backend`` (``mlkernels`` or ``mlkernels.nn.REFERENCE``) from now on."""
        self.F = backend
        return self

    def _saved(self) -> tuple:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward(): "
                               f"there is no saved input to differentiate at")
        return self._cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Module):
    """y = x·Wᵀ + b, W of shape (out_features, in_features); PyTorch's default init
    (uniform in ±1/√in_features for W and b).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : float32 (default) or float64
    rng : numpy.random.Generator, optional
        For the initial weights (reproducible runs).
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    TypeError
        in_features/out_features not ints, dtype not float32/float64, rng not a Generator.
    ValueError
        Negative sizes.
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
    >>> y = layer.forward(np.ones((4, 3), np.float32))
    >>> y.shape, layer.backward(np.ones_like(y)).shape, layer.grad_weight.shape
    ((4, 2), (4, 3), (2, 3))
    """

    param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype=np.float32, rng: Optional[np.random.Generator] = None,
                 backend: Any = None) -> None:
        where = "Linear()"
        in_features = V.integer(where, "in_features", in_features, low=0)
        out_features = V.integer(where, "out_features", out_features, low=0)
        dtype = V.float_type(where, dtype)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"{where}: rng must be a numpy.random.Generator, got "
                            f"{type(rng).__name__}")
        super().__init__(backend)
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.weight = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        self.bias = rng.uniform(-bound, bound, out_features).astype(dtype) if bias else None
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = None if self.bias is None else np.zeros_like(self.bias)

    def forward(self, x):
        self._cache = (x,)
        shape = None if not isinstance(x, np.ndarray) else x.shape[:-1] + self.weight.shape[:1]
        return self.F.linear(x, self.weight, self.bias, out=self._buffer("y", x, shape))

    def backward(self, grad_out, *, need_input_grad=True):
        (x,) = self._saved()
        gx = self._buffer("grad_x", x) if need_input_grad else None
        gx, _, _ = self.F.linear_backward(grad_out, x, self.weight, bias=self.bias is not None,
                                          out=(gx, self.grad_weight, self.grad_bias),
                                          compute_grad_x=need_input_grad)
        return gx


    def __repr__(self):
        out_f, in_f = self.weight.shape
        return f"Linear({in_f}, {out_f}, bias={self.bias is not None})"


class _Activation(Module):
    """y = f(x); backward uses the saved input x (f_backward(grad_out, x, ...)).

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> act = nn.ReLU()
    >>> act.forward(np.array([-1.0, 2.0]))
    array([0., 2.])
    >>> act.backward(np.array([5.0, 5.0]))
    array([0., 5.])
    """

    name = ""

    def __init__(self, backend: Any = None, **params) -> None:
        super().__init__(backend)
        self.params = params

    def forward(self, x):
        self._cache = (x,)
        return getattr(self.F, self.name)(x, **self.params, out=self._buffer("y", x))

    def backward(self, grad_out, *, need_input_grad=True):
        (x,) = self._saved()
        return getattr(self.F, self.name + "_backward")(grad_out, x, **self.params,
                                                        out=self._buffer("grad_x", x))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class ReLU(_Activation):
    """max(x, 0) as a layer (``mlkernels.relu``); no parameters. See ``_Activation``.

    Parameters
    ----------
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.ReLU()
    >>> y = layer.forward(np.zeros(3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "relu"


class GELU(_Activation):
    """x·Φ(x) as a layer (``mlkernels.gelu``).

    Parameters
    ----------
    approximate : {"none", "tanh"}, default "none"
    backend : optional

    Raises
    ------
    ValueError
        approximate not "none" or "tanh".
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.GELU()
    >>> y = layer.forward(np.linspace(-1, 1, 3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "gelu"

    def __init__(self, approximate: str = "none", backend: Any = None) -> None:
        V.choice("GELU()", "approximate", approximate, ("none", "tanh"))
        super().__init__(backend, approximate=approximate)


class SiLU(_Activation):
    """x·σ(x) as a layer (``mlkernels.silu``); no parameters.

    Parameters
    ----------
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.SiLU()
    >>> y = layer.forward(np.zeros(3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "silu"


class Tanh(_Activation):
    """tanh(x) as a layer (``mlkernels.tanh``); no parameters.

    Parameters
    ----------
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.Tanh()
    >>> y = layer.forward(np.zeros(3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "tanh"


class Sigmoid(_Activation):
    """σ(x) as a layer (``mlkernels.sigmoid``); no parameters.

    Parameters
    ----------
    backend : optional
        ``mlkernels`` (default) or ``nn.REFERENCE``.

    Raises
    ------
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.Sigmoid()
    >>> y = layer.forward(np.zeros(3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "sigmoid"


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope·x, as a layer (``mlkernels.leaky_relu``).

    Parameters
    ----------
    negative_slope : float, default 0.01
    backend : optional

    Raises
    ------
    TypeError, ValueError
        negative_slope not a finite real number.
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> layer = nn.LeakyReLU()
    >>> y = layer.forward(np.linspace(-1, 1, 3))
    >>> layer.backward(np.ones(3)).shape
    (3,)
    """
    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, backend: Any = None) -> None:
        V.number("LeakyReLU()", "negative_slope", negative_slope)
        super().__init__(backend, negative_slope=negative_slope)


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` (biased variance, eps inside the
    sqrt), then scale by ``weight`` and shift by ``bias`` (ones and zeros at first).

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The trailing dimensions to normalize over.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learn ``weight`` and ``bias``.
    dtype : float32 (default) or float64
    backend : optional

    Raises
    ------
    TypeError, ValueError
        normalized_shape not positive ints, eps negative, dtype not float32/float64.
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> ln = nn.LayerNorm(2)
    >>> ln.forward(np.array([[1.0, 3.0]], np.float32))
    array([[-0.999995,  0.999995]], dtype=float32)
    """

    param_names = ("weight", "bias")

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 *, dtype=np.float32, backend: Any = None) -> None:
        where = "LayerNorm()"
        dims = [normalized_shape] if not isinstance(normalized_shape, (tuple, list)) \
            else list(normalized_shape)
        shape = tuple(V.integer(where, "normalized_shape", d, low=1,
                                expected="positive ints (an int or a tuple of them)")
                      for d in dims)
        if not shape:
            raise ValueError(f"{where}: normalized_shape is empty; expected at least one size")
        V.number(where, "eps", eps, low=0.0)
        dtype = V.float_type(where, dtype)
        super().__init__(backend)
        self.normalized_shape, self.eps = shape, eps
        self.weight = np.ones(shape, dtype) if elementwise_affine else None
        self.bias = np.zeros(shape, dtype) if elementwise_affine else None
        self.grad_weight = None if self.weight is None else np.zeros_like(self.weight)
        self.grad_bias = None if self.bias is None else np.zeros_like(self.bias)

    def forward(self, x):
        lead = None if not isinstance(x, np.ndarray) else \
            x.shape[:x.ndim - len(self.normalized_shape)]
        out = (self._buffer("y", x), self._buffer("mean", x, lead),
               self._buffer("rstd", x, lead))
        y, mean, rstd = self.F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                                          self.eps, out=out if out[0] is not None else None)
        self._cache = (x, mean, rstd)
        return y

    def backward(self, grad_out, *, need_input_grad=True):
        x, mean, rstd = self._saved()
        gx, _, _ = self.F.layer_norm_backward(
            grad_out, x, self.normalized_shape, mean, rstd, self.weight,
            out=(self._buffer("grad_x", x), self.grad_weight, self.grad_bias))
        return gx


    def __repr__(self):
        return f"LayerNorm({self.normalized_shape}, eps={self.eps})"


class BatchNorm1d(Module):
    """Batch normalization over (N, C) or (N, C, L). In training mode it normalizes with the
    batch statistics and updates the running ones (momentum 0.1, unbiased variance); in eval
    mode it normalizes with the running statistics, which then stay frozen. ``momentum=None``
    makes the running statistics the plain average over all training batches (as PyTorch).

    Parameters
    ----------
    num_features : int
        C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
    affine : bool, default True
        Learn ``weight`` and ``bias``.
    track_running_stats : bool, default True
    dtype : float32 (default) or float64
    backend : optional

    Raises
    ------
    TypeError, ValueError
        num_features not a positive int, eps negative, momentum outside [0, 1], dtype
        not float32/float64.
    TypeError, ValueError
        From ``forward``/``backward``: the kernels' checks (dtype, shapes), before
        anything is written. RuntimeError: ``backward`` before a training-mode ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn
    >>> bn = nn.BatchNorm1d(1)
    >>> bn.forward(np.array([[1.0], [3.0]], np.float32)).ravel()
    array([-0.999995,  0.999995], dtype=float32)
    >>> bn.running_mean
    array([0.2], dtype=float32)
    """

    param_names = ("weight", "bias")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype=np.float32,
                 backend: Any = None) -> None:
        where = "BatchNorm1d()"
        num_features = V.integer(where, "num_features", num_features, low=1)
        V.number(where, "eps", eps, low=0.0)
        if momentum is not None:
            V.number(where, "momentum", momentum, low=0.0, high=1.0)
        dtype = V.float_type(where, dtype)
        super().__init__(backend)
        self.eps, self.momentum = eps, momentum
        self.weight = np.ones(num_features, dtype) if affine else None
        self.bias = np.zeros(num_features, dtype) if affine else None
        self.grad_weight = None if self.weight is None else np.zeros_like(self.weight)
        self.grad_bias = None if self.bias is None else np.zeros_like(self.bias)
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self.num_batches_tracked = 0       # training batches seen (momentum=None averages them)

    def forward(self, x):
        # Without running statistics, batch statistics are used in both modes (as PyTorch).
        use_batch_stats = self.training or self.running_mean is None
        updates = self.training and self.running_mean is not None
        count = self.num_batches_tracked + 1 if updates else None
        channels = None if not isinstance(x, np.ndarray) or x.ndim < 2 else x.shape[1:2]
        out = (self._buffer("y", x), self._buffer("mean", x, channels),
               self._buffer("rstd", x, channels))
        y, save_mean, save_rstd = self.F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            training=use_batch_stats, momentum=self.momentum, eps=self.eps,
            num_batches_tracked=count, out=None if any(o is None for o in out) else out)
        if updates:
            self.num_batches_tracked = count
        self._cache = (x, save_mean, save_rstd, use_batch_stats)
        return y

    def backward(self, grad_out, *, need_input_grad=True):
        x, save_mean, save_rstd, use_batch_stats = self._saved()
        gx, _, _ = self.F.batch_norm_backward(
            grad_out, x, save_mean, save_rstd, self.weight, training=use_batch_stats,
            out=(self._buffer("grad_x", x), self.grad_weight, self.grad_bias))
        return gx


    def __repr__(self):
        return f"BatchNorm1d({len(self.running_mean) if self.running_mean is not None else '?'})"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    Parameters
    ----------
    *layers : Module

    Raises
    ------
    TypeError
        A layer that is not an ``nn.Module``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import nn, optim
    >>> import mlkernels as mk
    >>> rng = np.random.default_rng(0)
    >>> model = nn.Sequential(nn.Linear(4, 8, rng=rng), nn.GELU(), nn.Linear(8, 3, rng=rng))
    >>> opt = optim.AdamW(model.parameters(), lr=1e-2)
    >>> x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    >>> first = float(mk.cross_entropy(model.forward(x), y))
    >>> for _ in range(50):
    ...     logits = model.forward(x)
    ...     g = mk.cross_entropy_backward(1.0, logits, y)
    ...     _ = model.backward(g, need_input_grad=False)
    ...     opt.step(model.grads())
    >>> float(mk.cross_entropy(model.forward(x), y)) < first
    True
    """

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential(): layer {i} is a {type(layer).__name__}; expected "
                                f"an mlkernels.nn.Module (Linear, GELU, LayerNorm, ...)")
        super().__init__(backend=None)
        self.layers: Sequence[Module] = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out, *, need_input_grad=True):
        """Backward through every layer, last first. ``need_input_grad=False``: the first
        layer may skip the gradient with respect to the input (then None is returned)."""
        for i in range(len(self.layers) - 1, -1, -1):
            grad_out = self.layers[i].backward(grad_out,
                                               need_input_grad=need_input_grad or i > 0)
        return grad_out

    def children(self):
        return list(self.layers)

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def use_backend(self, backend):
        for layer in self.layers:
            layer.use_backend(backend)
        return self

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


from ._gpt import (CausalSelfAttention, Dropout, Embedding, GPT, MLP,  # noqa: E402
                  TransformerBlock)
