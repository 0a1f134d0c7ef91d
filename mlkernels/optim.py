"""Fused optimizer steps and optimizer classes, with torch.optim's semantics.

Two layers:

* **Functional steps** -- ``sgd_step``, ``adam_step``, ``adamw_step``, ``rmsprop_step``,
  ``adagrad_step`` -- take one array or lists of arrays (parameters, gradients, state) and
  update parameters and state in place, in one pass over memory, for the whole list in one
  call into the kernels (``mlkernels/_optim.pyx``).
* **Optimizer classes** -- ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad`` -- hold the
  state, accept param groups, and save/restore it with ``state_dict``/``load_state_dict``
  (flat NumPy arrays: ``np.savez(f, **opt.state_dict())`` then
  ``opt.load_state_dict(np.load(f))`` resumes a run bit for bit).

Names, defaults, formulas and order of operations are torch.optim's (PyTorch 2.x, the
single-tensor path), so a training loop gives the same numbers to rounding. Everything is
validated before anything is written: a bad call changes no parameter and no state.

Every step and every class (SGD, Adam, AdamW, RMSprop, Adagrad) also takes bfloat16
(``ml_dtypes``) and float16 parameters: the float32 arithmetic of the same optimizer, the
result stored rounded to nearest (the default), from float32 master copies
(``master_params=`` / ``master_weights=True``) or, bfloat16 only, stochastically rounded
(``stochastic_rounding=True, seed=``); states float32, or the params' 16-bit dtype on
request. See ``Optimizer`` and docs/kernels/bf16.md.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _validate as V
from ._dispatch import K
from ._threads import get_num_threads

__all__ = ["sgd_step", "adam_step", "adamw_step", "rmsprop_step", "adagrad_step",
           "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]

Arrays = Union[np.ndarray, Sequence[np.ndarray]]
_SGD, _ADAM, _RMSPROP, _ADAGRAD = 0, 1, 2, 3


# ============================================================================ validation

def _as_list(where: str, name: str, arrays: Optional[Arrays]) -> Optional[list]:
    if arrays is None:
        return None
    if isinstance(arrays, np.ndarray):
        return [arrays]
    if isinstance(arrays, (list, tuple)):
        return list(arrays)
    raise TypeError(f"{where}: {name} must be an array or a list of arrays, got "
                    f"{type(arrays).__name__}")


def _in_place(where: str, name: str, a: object, dtype: np.dtype, shape: tuple) -> None:
    """An array the step writes into: exactly the param's dtype and shape, C-contiguous,
    aligned, writeable (we update it in place, so we cannot copy it)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{where}: {name} has dtype {a.dtype}; expected {dtype} (the dtype of "
                        f"its parameter)")
    if a.shape != shape:
        raise ValueError(f"{where}: {name} has shape {a.shape}; expected {shape} (the shape of "
                         f"its parameter)")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError(f"{where}: {name} is not C-contiguous; expected a C-contiguous array "
                         f"(it is updated in place, so it cannot be copied)")
    if not a.flags.writeable:
        raise ValueError(f"{where}: {name} is read-only; expected a writeable array (it is "
                         f"updated in place)")


def _columns(where: str, params: Arrays, grads: Arrays,
             states: Sequence[Tuple[str, Optional[Arrays], bool]]) -> Tuple[list, np.dtype]:
    """Validate params, grads and state lists; return the kernel's columns and the dtype.

    ``states`` lists (name, arrays or None, required). Grads may have any layout (they are
    copied once if needed); params and state must be writeable and C-contiguous.
    """
    params = _as_list(where, "params", params)
    grads = _as_list(where, "grads", grads)
    if len(grads) != len(params):
        raise ValueError(f"{where}: {len(grads)} grads for {len(params)} params; expected one "
                         f"gradient per parameter")
    if not params:
        return [[], []], np.dtype(np.float64)
    state_lists = []
    for name, arrays, required in states:
        arrays = _as_list(where, name, arrays)
        if arrays is None:
            if required:
                raise TypeError(f"{where}: {name} is required here; expected a list of arrays")
            state_lists.append([None] * len(params))
            continue
        if len(arrays) != len(params):
            raise ValueError(f"{where}: {len(arrays)} {name} for {len(params)} params; expected "
                             f"one per parameter")
        state_lists.append(arrays)
    if K._optim.all_usable_as_is(params, grads, state_lists):
        # (every check below, done in C: one float dtype, shapes, layouts, no overlaps)
        return [params, grads] + state_lists, params[0].dtype
    if _is_half(params[0]):
        return _columns_half(where, params, grads, states, state_lists)
    dtype = V.float_dtype(where, **{f"params[{i}]": p for i, p in enumerate(params)})
    out_grads = []
    for i, (p, g) in enumerate(zip(params, grads)):
        _in_place(where, f"params[{i}]", p, dtype, p.shape)
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{where}: grads[{i}] must be a numpy.ndarray, got "
                            f"{type(g).__name__}")
        gdt = V.float_dtype(where, **{f"params[{i}]": p, f"grads[{i}]": g})
        if g.shape != p.shape:
            raise ValueError(f"{where}: grads[{i}] has shape {g.shape}; expected {p.shape} (the "
                             f"shape of params[{i}])")
        out_grads.append(V.c_array(g, gdt))
        mine = [p]
        for (name, _, _), arrays in zip(states, state_lists):
            s = arrays[i]
            if s is None:
                continue
            _in_place(where, f"{name}[{i}]", s, dtype, p.shape)
            for other in mine:
                if s.size and np.may_share_memory(s, other):
                    raise ValueError(f"{where}: {name}[{i}] shares memory with params[{i}] or "
                                     f"another of its state arrays; expected separate arrays")
            mine.append(s)
    return [params, out_grads] + state_lists, dtype


def _hyper(where: str, **values: float) -> Dict[str, float]:
    """Non-negative, finite hyperparameters (lr, eps, weight_decay, momentum, ...)."""
    return {k: V.number(where, k, v, low=0.0) for k, v in values.items()}


def _betas(where: str, betas: Any) -> Tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{where}: betas is {betas!r}; expected a pair (beta1, beta2)")
    return tuple(V.number(where, f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
                 for i, b in enumerate(betas))


def _step_count(where: str, step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"{where}: step is {step!r}; expected the 1-based number of this step "
                         f"(an int >= 1)")
    return int(step)


def _run(kind: int, columns: list, dtype: np.dtype, hyper: dict) -> None:
    if columns[0]:
        K._optim.fused_step(kind, dtype == np.float64, columns, hyper, get_num_threads())


# ============================================================================ 16-bit parameters
# bfloat16 (ml_dtypes) or float16 params and grads. The update is computed in float32 -- the
# float32 optimizer's own arithmetic, weight decay included (in bf16, lr·wd·p is below half a
# unit in the last place of p and would be lost) -- and p is stored in one of three ways:
# * round to nearest even (the default): updates smaller than half a unit of p are lost;
# * master_params (float32 copies of the params, one per param): the update goes into the
#   master, p is the master rounded -- p equals float32's result, rounded;
# * stochastic_rounding=True (bfloat16): p is rounded up with probability equal to the
#   dropped fraction, so small updates survive on average; the random bits are Philox4x32-10
#   of (seed, counter), the counter (step − 1)·(elements per step) + the element's number
#   among all the params: a run is reproducible from the seed and the step numbers.
# States are float32 (12 bytes per param with Adam's two moments and the 16-bit param,
# in place of 16 = 4 + 4 + 4 + 4 ... per float32 param) or, on request, the params' 16-bit
# dtype (arrays of that dtype passed as states): 6 bytes of state per param.

_F32 = np.dtype(np.float32)


def _is_half(a: object) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.itemsize == 2 and \
        V.storage_kind(a.dtype) != 0


#: the steps that take 16-bit params: every one (the list names them in the message of the
#: check below, kept for a step added later without a 16-bit path)
_HALF_STEPS = ("sgd_step()", "adam_step()", "adamw_step()", "rmsprop_step()", "adagrad_step()")


def _columns_half(where, params, grads, states, state_lists):
    dtype = V.storage_dtype(where, **{f"params[{i}]": p for i, p in enumerate(params)})
    if where not in _HALF_STEPS:
        raise TypeError(f"{where}: params[0] has dtype {dtype}; expected float32 or float64 "
                        f"(16-bit params are taken by {', '.join(_HALF_STEPS)})")
    state_dtype = None
    out_grads = []
    for i, (p, g) in enumerate(zip(params, grads)):
        _in_place(where, f"params[{i}]", p, dtype, p.shape)
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{where}: grads[{i}] must be a numpy.ndarray, got "
                            f"{type(g).__name__}")
        V.storage_dtype(where, **{f"params[{i}]": p, f"grads[{i}]": g})
        if g.shape != p.shape:
            raise ValueError(f"{where}: grads[{i}] has shape {g.shape}; expected {p.shape} (the "
                             f"shape of params[{i}])")
        out_grads.append(V.c_array(g, dtype))
        mine = [p]
        for (name, _, _), arrays in zip(states, state_lists):
            st = arrays[i]
            if st is None:
                continue
            if not isinstance(st, np.ndarray):
                raise TypeError(f"{where}: {name}[{i}] must be a numpy.ndarray, got "
                                f"{type(st).__name__}")
            if state_dtype is None:
                if st.dtype not in (_F32, dtype):
                    raise TypeError(f"{where}: {name}[{i}] has dtype {st.dtype}; expected "
                                    f"float32 (the default for {dtype} params) or {dtype}")
                state_dtype = st.dtype
            _in_place(where, f"{name}[{i}]", st, state_dtype, p.shape)
            for other in mine:
                if st.size and np.may_share_memory(st, other):
                    raise ValueError(f"{where}: {name}[{i}] shares memory with params[{i}] or "
                                     f"another of its state arrays; expected separate arrays")
            mine.append(st)
    return [params, out_grads] + state_lists, dtype


def _mode_call(where, prepared, master_params, stochastic_rounding, seed, step,
               rounding_offset=None):
    """Validate a prepared step's 16-bit storage mode; return the kernel call, not run yet:
    ``(fused_step, args)``, or ``(fused_step_half, args)`` with its rounding mode."""
    kind, columns, dtype, h = prepared
    if dtype.itemsize != 2:
        if master_params is not None or stochastic_rounding:
            raise ValueError(f"{where}: master_params and stochastic_rounding are for "
                             f"bfloat16/float16 params; got {dtype} params")
        return None, prepared
    params = columns[0]
    masters = [None] * len(params)
    if master_params is not None:
        if stochastic_rounding:
            raise ValueError(f"{where}: master_params and stochastic_rounding=True are "
                             f"different modes; expected one of them")
        masters = _as_list(where, "master_params", master_params)
        if len(masters) != len(params):
            raise ValueError(f"{where}: {len(masters)} master_params for {len(params)} params; "
                             f"expected one per parameter")
        for i, (m, p) in enumerate(zip(masters, params)):
            _in_place(where, f"master_params[{i}]", m, _F32, p.shape)
            for other in [p] + [c[i] for c in columns[2:] if c[i] is not None]:
                if m.size and np.may_share_memory(m, other):
                    raise ValueError(f"{where}: master_params[{i}] shares memory with params[{i}]"
                                     f" or its state; expected separate arrays")
    if stochastic_rounding and V.storage_kind(dtype) != V.STORAGE_KIND_BF16:
        raise ValueError(f"{where}: stochastic_rounding=True is for bfloat16 params; got "
                         f"{dtype} (use master_params)")
    seed = _uint64(where, "seed", seed)
    total = sum(p.size for p in params)
    counter = ((step - 1) * total) % 2**64 if rounding_offset is None else \
        _uint64(where, "rounding_offset", rounding_offset)
    state_kind = 0
    for c in columns[2:]:
        if any(a is not None for a in c):
            state_kind = V.storage_kind(next(a for a in c if a is not None).dtype)
            break
    return V.storage_kind(dtype), (kind, V.storage_kind(dtype), state_kind,
                                   int(bool(stochastic_rounding)), columns, masters, h, seed,
                                   counter)


def _uint64(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}; expected "
                        f"an int in [0, 2**64)")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{where}: {name} is {value}; expected an int in [0, 2**64)")
    return int(value)


def _execute(call) -> None:
    """Run a call of ``_mode_call``."""
    storage, args = call
    if storage is None:
        _run(*args)
    elif args[4][0]:
        K._optim.fused_step_half(*args, get_num_threads())


def _run_step(where, prepared, master_params, stochastic_rounding, seed, step,
              rounding_offset=None):
    """Run a prepared step: the float kernels, or the 16-bit one with its rounding mode."""
    _execute(_mode_call(where, prepared, master_params, stochastic_rounding, seed, step,
                        rounding_offset))


# ============================================================================ functional steps
# Each ``_prepare_*`` validates everything and returns the kernel call (kind, columns, dtype,
# scalars) without writing anything; the public step runs it. The optimizer classes prepare
# every group before running any, so a bad group leaves every parameter untouched.

def _prepare_sgd(params, grads, momentum_buffers, step, lr, momentum, dampening, weight_decay,
                 nesterov, maximize):
    where = "sgd_step()"
    h = _hyper(where, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    step = _step_count(where, step)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{where}: nesterov=True needs momentum > 0 and dampening == 0; got "
                         f"momentum={momentum}, dampening={dampening}")
    columns, dtype = _columns(where, params, grads,
                              [("momentum_buffers", momentum_buffers, momentum != 0)])
    h.update(maximize=bool(maximize), nesterov=bool(nesterov), first_step=step == 1)
    return _SGD, columns, dtype, h


def sgd_step(params: Arrays, grads: Arrays, momentum_buffers: Optional[Arrays] = None, *,
             step: int = 1, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
             weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
             master_params: Optional[Arrays] = None, stochastic_rounding: bool = False,
             seed: int = 0, rounding_offset: Optional[int] = None) -> None:
    """One SGD step, in place (torch.optim.SGD)::

        d = ±g + wd·p
        buf = d                                    on the first step (step == 1)
        buf = momentum·buf + (1 − dampening)·d     afterwards
        d = d + momentum·buf  (nesterov)  or  d = buf
        p = p − lr·d

    ``momentum_buffers`` (arrays like the params) is required when momentum != 0.

    Parameters
    ----------
    params : numpy.ndarray or list of numpy.ndarray
        Updated in place: writeable, C-contiguous, float32, float64, bfloat16 (ml_dtypes) or
        float16 (one dtype for all).
    grads : numpy.ndarray or list of numpy.ndarray
        One per parameter, its shape and dtype (any layout: copied once when strided).
    momentum_buffers : list of numpy.ndarray, optional
        One per parameter, updated in place; required when ``momentum != 0``.
    step : int, default 1
        This step's 1-based number (step 1 starts the momentum buffers).
    lr, momentum, dampening, weight_decay : float
        Non-negative.
    nesterov, maximize : bool
    master_params : list of numpy.ndarray, optional
        For bfloat16/float16 params: float32 copies of them, one per param, updated in place;
        p becomes its master rounded to nearest even.
    stochastic_rounding : bool, default False
        For bfloat16 params: round the updated p up with probability equal to the dropped
        fraction (unbiased), from Philox4x32-10 of (seed, (step − 1)·elements + element).
    seed : int, default 0
        The stochastic rounding's key, in [0, 2**64).
    rounding_offset : int, optional
        The stochastic rounding's counter of this call's first element, in [0, 2**64);
        default (step − 1)·(the call's elements). The optimizer classes pass a running count.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If an array is not a float32/float64/bfloat16/float16 ndarray, dtypes are mixed (16-bit
        params: states all float32 or all the params' dtype, master copies float32), or a
        required state list is missing.
    ValueError
        If the lists differ in length, a shape differs from its parameter's, a parameter or
        state array is read-only, not C-contiguous or shares memory with another, a
        hyperparameter is out of range, or a storage option does not fit the params
        (master_params or stochastic_rounding with float32/float64 params, both at once,
        stochastic_rounding with float16). Nothing is written then.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> p, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    >>> optim.sgd_step([p], [g], lr=0.1)
    >>> p
    array([0.95, 2.05])
    """
    _run_step("sgd_step()", _prepare_sgd(params, grads, momentum_buffers, step, lr, momentum,
                                         dampening, weight_decay, nesterov, maximize),
              master_params, stochastic_rounding, seed, step, rounding_offset)


def _prepare_adam(where, decoupled, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                  step, lr, betas, eps, weight_decay, amsgrad, maximize):
    h = _hyper(where, lr=lr, eps=eps, weight_decay=weight_decay)
    beta1, beta2 = _betas(where, betas)
    step = _step_count(where, step)
    columns, dtype = _columns(where, params, grads, [
        ("exp_avgs", exp_avgs, True), ("exp_avg_sqs", exp_avg_sqs, True),
        ("max_exp_avg_sqs", max_exp_avg_sqs if amsgrad else None, bool(amsgrad))])
    # per-step scalars, once, in double (as torch): step_size = lr / (1 − β1ᵗ)
    h.update(beta1=beta1, beta2=beta2, step_size=h["lr"] / (1.0 - beta1 ** step),
             bias_correction2_sqrt=math.sqrt(1.0 - beta2 ** step), amsgrad=bool(amsgrad),
             maximize=bool(maximize))
    if decoupled:   # AdamW: p ← p·(1 − lr·wd), and no L2 term in the gradient
        h.update(decay=1.0 - h["lr"] * h["weight_decay"], weight_decay=0.0)
    return _ADAM, columns, dtype, h


def adam_step(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays,
              max_exp_avg_sqs: Optional[Arrays] = None, *, step: int, lr: float = 1e-3,
              betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
              master_params: Optional[Arrays] = None, stochastic_rounding: bool = False,
              seed: int = 0, rounding_offset: Optional[int] = None) -> None:
    """One Adam step, in place (torch.optim.Adam; weight_decay is L2, added to g)::

        g = ±g + wd·p
        m = β1·m + (1 − β1)·g ;  v = β2·v + (1 − β2)·g²
        v_max = max(v_max, v)                               (amsgrad; v_max used below)
        p = p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)

    ``step`` is this step's 1-based number t (the bias corrections depend on it).

    Parameters
    ----------
    params : numpy.ndarray or list of numpy.ndarray
        Updated in place: writeable, C-contiguous, float32, float64, bfloat16 (ml_dtypes) or
        float16 (one dtype for all).
    grads : numpy.ndarray or list of numpy.ndarray
        One per parameter, its shape and dtype (any layout: copied once when strided).
    exp_avgs, exp_avg_sqs : list of numpy.ndarray
        The moments m and v, one per parameter (zeros before the first step), in place.
    max_exp_avg_sqs : list of numpy.ndarray, optional
        The running max of v (with ``amsgrad=True``), in place.
    step : int
        This step's 1-based number t.
    lr, eps, weight_decay : float
        Non-negative.
    betas : (float, float)
        In [0, 1).
    amsgrad, maximize : bool
    master_params : list of numpy.ndarray, optional
        For bfloat16/float16 params: float32 copies of them, one per param, updated in place;
        p becomes its master rounded to nearest even.
    stochastic_rounding : bool, default False
        For bfloat16 params: round the updated p up with probability equal to the dropped
        fraction (unbiased), from Philox4x32-10 of (seed, (step − 1)·elements + element).
    seed : int, default 0
        The stochastic rounding's key, in [0, 2**64).
    rounding_offset : int, optional
        The stochastic rounding's counter of this call's first element, in [0, 2**64);
        default (step − 1)·(the call's elements). The optimizer classes pass a running count.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If an array is not a float32/float64/bfloat16/float16 ndarray, dtypes are mixed (16-bit
        params: states all float32 or all the params' dtype, master copies float32), or a
        required state list is missing.
    ValueError
        If the lists differ in length, a shape differs from its parameter's, a parameter or
        state array is read-only, not C-contiguous or shares memory with another, a
        hyperparameter is out of range, or a storage option does not fit the params
        (master_params or stochastic_rounding with float32/float64 params, both at once,
        stochastic_rounding with float16). Nothing is written then.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> p, g = np.array([1.0]), np.array([3.0])
    >>> m, v = np.zeros(1), np.zeros(1)
    >>> optim.adam_step([p], [g], [m], [v], step=1, lr=0.1)   # the first step moves by lr
    >>> p
    array([0.9])
    """
    _run_step("adam_step()", _prepare_adam("adam_step()", False, params, grads, exp_avgs,
                                           exp_avg_sqs, max_exp_avg_sqs, step, lr, betas, eps,
                                           weight_decay, amsgrad, maximize),
              master_params, stochastic_rounding, seed, step, rounding_offset)


def adamw_step(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays,
               max_exp_avg_sqs: Optional[Arrays] = None, *, step: int, lr: float = 1e-3,
               betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False,
               master_params: Optional[Arrays] = None, stochastic_rounding: bool = False,
               seed: int = 0, rounding_offset: Optional[int] = None) -> None:
    """One AdamW step, in place (torch.optim.AdamW): decoupled weight decay
    p = p·(1 − lr·wd) first, then the Adam update of ``adam_step`` without the L2 term.

    Parameters
    ----------
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, betas, eps, amsgrad, maximize
        As for ``adam_step``.
    weight_decay : float, default 1e-2
        The decoupled decay (non-negative).
    master_params : list of numpy.ndarray, optional
        For bfloat16/float16 params: float32 copies of them, one per param, updated in place;
        p becomes its master rounded to nearest even.
    stochastic_rounding : bool, default False
        For bfloat16 params: round the updated p up with probability equal to the dropped
        fraction (unbiased), from Philox4x32-10 of (seed, (step − 1)·elements + element).
    seed : int, default 0
        The stochastic rounding's key, in [0, 2**64).
    rounding_offset : int, optional
        The stochastic rounding's counter of this call's first element, in [0, 2**64);
        default (step − 1)·(the call's elements). The optimizer classes pass a running count.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If an array is not a float32/float64/bfloat16/float16 ndarray, dtypes are mixed (16-bit
        params: states all float32 or all the params' dtype, master copies float32), or a
        required state list is missing.
    ValueError
        If the lists differ in length, a shape differs from its parameter's, a parameter or
        state array is read-only, not C-contiguous or shares memory with another, a
        hyperparameter is out of range, or a storage option does not fit the params
        (master_params or stochastic_rounding with float32/float64 params, both at once,
        stochastic_rounding with float16). Nothing is written then.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> p, g = np.array([1.0]), np.array([0.0])
    >>> optim.adamw_step([p], [g], [np.zeros(1)], [np.zeros(1)], step=1, lr=0.1,
    ...                  weight_decay=0.5)                  # a zero gradient: decay only
    >>> p
    array([0.95])
    """
    _run_step("adamw_step()", _prepare_adam("adamw_step()", True, params, grads, exp_avgs,
                                            exp_avg_sqs, max_exp_avg_sqs, step, lr, betas, eps,
                                            weight_decay, amsgrad, maximize),
              master_params, stochastic_rounding, seed, step, rounding_offset)


def _prepare_rmsprop(params, grads, square_avgs, momentum_buffers, grad_avgs, step, lr, alpha,
                     eps, weight_decay, momentum, centered, maximize):
    where = "rmsprop_step()"
    h = _hyper(where, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
    _step_count(where, step)          # (only the stochastic rounding's counter depends on it)
    columns, dtype = _columns(where, params, grads, [
        ("square_avgs", square_avgs, True),
        ("momentum_buffers", momentum_buffers if momentum != 0 else None, momentum != 0),
        ("grad_avgs", grad_avgs if centered else None, bool(centered))])
    h.update(centered=bool(centered), maximize=bool(maximize))
    return _RMSPROP, columns, dtype, h


def rmsprop_step(params: Arrays, grads: Arrays, square_avgs: Arrays,
                 momentum_buffers: Optional[Arrays] = None, grad_avgs: Optional[Arrays] = None,
                 *, step: int = 1, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False, master_params: Optional[Arrays] = None,
                 stochastic_rounding: bool = False, seed: int = 0,
                 rounding_offset: Optional[int] = None) -> None:
    """One RMSprop step, in place (torch.optim.RMSprop)::

        g = ±g + wd·p ;  s = α·s + (1 − α)·g²
        centered:  ḡ = α·ḡ + (1 − α)·g ,  a = √(s − ḡ²) + eps    else  a = √s + eps
        momentum:  buf = μ·buf + g/a ,  p = p − lr·buf          else  p = p − lr·g/a

    Parameters
    ----------
    params, grads : list of numpy.ndarray
        As for ``sgd_step``.
    square_avgs : list of numpy.ndarray
        s, one per parameter (zeros at first), in place.
    momentum_buffers : list of numpy.ndarray, optional
        Required when ``momentum != 0``.
    grad_avgs : list of numpy.ndarray, optional
        ḡ, required when ``centered=True``.
    step : int, default 1
        This step's 1-based number: RMSprop's formulas do not use it; it places the
        stochastic rounding's counter (see ``rounding_offset``).
    lr, alpha, eps, weight_decay, momentum : float
        Non-negative.
    centered, maximize : bool
    master_params, stochastic_rounding, seed, rounding_offset
        How 16-bit params are stored, as for ``sgd_step``: float32 master copies, or
        (bfloat16) stochastic rounding, else round to nearest.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If an array is not a float32/float64/bfloat16/float16 ndarray, dtypes are mixed (16-bit
        params: states all float32 or all the params' dtype, master copies float32), or a
        required state list is missing.
    ValueError
        If the lists differ in length, a shape differs from its parameter's, a parameter or
        state array is read-only, not C-contiguous or shares memory with another, a
        hyperparameter is out of range, or a storage option does not fit the params
        (master_params or stochastic_rounding with float32/float64 params, both at once,
        stochastic_rounding with float16). Nothing is written then.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> p, g, s = np.array([1.0]), np.array([2.0]), np.zeros(1)
    >>> optim.rmsprop_step([p], [g], [s], lr=0.01, alpha=0.75, eps=0.0)   # √s = |g|/2
    >>> p
    array([0.98])
    """
    _run_step("rmsprop_step()", _prepare_rmsprop(params, grads, square_avgs, momentum_buffers,
                                                 grad_avgs, step, lr, alpha, eps, weight_decay,
                                                 momentum, centered, maximize),
              master_params, stochastic_rounding, seed, step, rounding_offset)


def _prepare_adagrad(params, grads, state_sums, step, lr, lr_decay, weight_decay, eps,
                     maximize):
    where = "adagrad_step()"
    h = _hyper(where, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps)
    step = _step_count(where, step)
    columns, dtype = _columns(where, params, grads, [("state_sums", state_sums, True)])
    h.update(step_size=h["lr"] / (1.0 + (step - 1) * h["lr_decay"]), maximize=bool(maximize))
    return _ADAGRAD, columns, dtype, h


def adagrad_step(params: Arrays, grads: Arrays, state_sums: Arrays, *, step: int,
                 lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False,
                 master_params: Optional[Arrays] = None, stochastic_rounding: bool = False,
                 seed: int = 0, rounding_offset: Optional[int] = None) -> None:
    """One Adagrad step, in place (torch.optim.Adagrad)::

        g = ±g + wd·p ;  clr = lr / (1 + (t − 1)·lr_decay)
        S = S + g² ;  p = p − clr·g / (√S + eps)

    Parameters
    ----------
    params, grads : list of numpy.ndarray
        As for ``sgd_step``.
    state_sums : list of numpy.ndarray
        S, one per parameter (``initial_accumulator_value`` at first), in place.
    step : int
        This step's 1-based number t.
    lr, lr_decay, weight_decay, eps : float
        Non-negative.
    maximize : bool
    master_params, stochastic_rounding, seed, rounding_offset
        How 16-bit params are stored, as for ``sgd_step``: float32 master copies, or
        (bfloat16) stochastic rounding, else round to nearest.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If an array is not a float32/float64/bfloat16/float16 ndarray, dtypes are mixed (16-bit
        params: states all float32 or all the params' dtype, master copies float32), or a
        required state list is missing.
    ValueError
        If the lists differ in length, a shape differs from its parameter's, a parameter or
        state array is read-only, not C-contiguous or shares memory with another, a
        hyperparameter is out of range, or a storage option does not fit the params
        (master_params or stochastic_rounding with float32/float64 params, both at once,
        stochastic_rounding with float16). Nothing is written then.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> p, g, S = np.array([1.0]), np.array([2.0]), np.zeros(1)
    >>> optim.adagrad_step([p], [g], [S], step=1, lr=0.1, eps=0.0)   # moves by lr
    >>> p
    array([0.9])
    """
    _run_step("adagrad_step()", _prepare_adagrad(params, grads, state_sums, step, lr, lr_decay,
                                                 weight_decay, eps, maximize),
              master_params, stochastic_rounding, seed, step, rounding_offset)


# ============================================================================ classes

class _named:
    """Errors raised while a class prepares a step name the class (``AdamW()``,
    ``AdamW.step()``), not the functional step it calls (``adamw_step()``)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, tb) -> bool:
        if error is not None and kind in (TypeError, ValueError):
            head, sep, rest = str(error).partition("(): ")
            if sep and head.endswith("_step"):
                raise kind(f"{self.where}: {rest}") from None
        return False


class Optimizer:
    """Base of the optimizer classes: param groups, per-parameter state, state_dict.

    ``params`` is a list of arrays, or of param groups (dicts with a ``"params"`` list and any
    hyperparameters to override for that group). Hyperparameters can be changed between
    steps: ``opt.param_groups[0]["lr"] = 1e-4``. ``step(grads)`` takes the gradients in the
    order of the parameters (all groups, in order); a None gradient skips its parameter.

    ``max_grad_norm`` (every class takes it): clip the gradients inside ``step`` as
    ``mlkernels.clip_grad_norm_(grads, max_grad_norm)`` would (2-norm over all the gradients
    of the step), without writing them: the fused step multiplies each gradient by the
    clipping coefficient as it reads it, so clipping costs one reading pass. ``step`` then
    returns the total norm (else None). An attribute: it can be changed between steps.

    Unlike torch.optim, ``step`` takes the gradients as its argument: NumPy arrays carry no
    ``.grad``. Pass them in the order of the parameters, e.g. ``opt.step(model.grads())``.

    16-bit parameters (every class: SGD, Adam, AdamW, RMSprop, Adagrad): bfloat16 (ml_dtypes)
    and float16 params, with
    gradients of their dtype, are updated by the functional steps' float32 arithmetic and
    stored in the mode chosen at construction, for every 16-bit param of the optimizer:
    rounded to nearest (the default), from float32 master copies (``master_weights=True``),
    or, bfloat16 only, stochastically rounded (``stochastic_rounding=True``, ``seed=``).
    Their states are float32, or ``state_dtype`` = their own dtype. Params of several dtypes
    (bfloat16 matrices with float32 norms), in one group or across groups, are stepped in one
    fused call per dtype; the modes leave float32/float64 params as a float32 optimizer
    steps them (as torchao's ``bf16_stochastic_round`` does), and an option that would apply
    to no param at all is refused (it would silently do nothing).

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        The parameters (updated in place: writeable, C-contiguous float32, float64,
        bfloat16 or float16 arrays), or param groups: dicts with a ``"params"`` list and any
        hyperparameters for that group.
    defaults : dict
        The class's hyperparameters (the subclasses fill it from their arguments).
    max_grad_norm : float, optional
        Clip the step's gradients to this 2-norm (see above).
    master_weights : bool, default False
        For bfloat16/float16 params: keep a float32 copy of each (made from the params at
        construction, kept in the state as "master_param"); the update goes into the copy and the param
        becomes the copy rounded to nearest even -- float32's result, rounded.
    stochastic_rounding : bool, default False
        For bfloat16 params: round each updated param up with probability equal to the
        dropped fraction (unbiased), so that updates below half a unit in the last place
        survive on average. Reproducible from ``seed``: Philox4x32-10 at a counter that runs
        on across steps (``rounding_offset``, saved by ``state_dict``).
    seed : int, default 0
        The stochastic rounding's key, in [0, 2**64).
    state_dtype : dtype, optional
        The state arrays' dtype for 16-bit params: float32 (the default) or the params' own
        16-bit dtype (half the state's bytes; the state itself is then rounded each step).
        float32/float64 params keep states of their own dtype.

    Raises
    ------
    TypeError
        If a parameter is not a float32/float64/bfloat16/float16 ndarray, or a storage
        option has the wrong type.
    ValueError
        If ``params`` is empty, a parameter appears twice or is not writeable/C-contiguous,
        a group has no ``"params"`` or unknown options, a hyperparameter is out of range, or
        the storage options do not fit the params (see the classes). Raised before anything
        is created.

    Examples
    --------
    Param groups, a schedule, and a resumable state:

    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w, b = np.ones((2, 2)), np.zeros(2)
    >>> opt = optim.AdamW([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=1e-3)
    >>> opt.step([np.ones((2, 2)), np.ones(2)])
    >>> for group in opt.param_groups:
    ...     group["lr"] *= 0.5
    >>> sorted(opt.state_dict())[:3]
    ['group0.amsgrad', 'group0.betas', 'group0.eps']
    """

    #: the state arrays a parameter carries, given its group's hyperparameters
    def _state_names(self, group: dict) -> List[str]:
        raise NotImplementedError

    def _prepare(self, group: dict, params, grads, states: Dict[str, list], step: int):
        raise NotImplementedError

    def _initial_state(self, group: dict, name: str, p: np.ndarray) -> np.ndarray:
        return np.zeros(p.shape, self._state_dtype_of(p))

    #: whether the class takes bfloat16/float16 params: every class of this module does (its
    #: steps have the 16-bit path); a subclass defined elsewhere says so itself
    _takes_half = False

    def _state_dtype_of(self, p: np.ndarray) -> np.dtype:
        """The dtype of p's state arrays: p's own for float32/float64 params; for 16-bit ones
        ``state_dtype`` (float32 unless asked otherwise)."""
        return self.state_dtype if p.dtype.itemsize == 2 else p.dtype

    def _check_options(self, group: dict) -> None:
        """Validate a group's hyperparameters (a step over no arrays checks only those)."""
        with _named(f"{type(self).__name__}()"):
            self._prepare(group, [], [], {n: [] for n in self._state_names(group)}, 1)

    def __init__(self, params: Iterable, defaults: Dict[str, Any],
                 max_grad_norm: Optional[float] = None, *, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0,
                 state_dtype: Any = None) -> None:
        where = f"{type(self).__name__}()"
        self.max_grad_norm = max_grad_norm
        self._check_max_grad_norm(where)
        params = list(params) if not isinstance(params, np.ndarray) else [params]
        if not params:
            raise ValueError(f"{where}: params is empty; expected a list of arrays or of param "
                             f"groups")
        raw_groups = params if all(isinstance(g, dict) for g in params) else [{"params": params}]
        self.defaults = dict(defaults)
        groups = []
        for i, g in enumerate(raw_groups):
            if "params" not in g:
                raise ValueError(f"{where}: param group {i} has no 'params'")
            unknown = set(g) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{where}: param group {i} has unknown options "
                                 f"{sorted(unknown)}; expected some of {sorted(defaults)}")
            ps = g["params"]
            ps = [ps] if isinstance(ps, np.ndarray) else list(ps)
            group = {**defaults, **{k: v for k, v in g.items() if k != "params"}, "params": ps}
            for j, p in enumerate(ps):
                if not isinstance(p, np.ndarray):
                    raise TypeError(f"{where}: param {j} of group {i} must be a numpy.ndarray, "
                                    f"got {type(p).__name__}")
                if self._takes_half:
                    V.storage_dtype(where, **{f"params[{j}]": p})
                else:
                    V.float_dtype(where, **{f"params[{j}]": p})
                _in_place(where, f"params[{j}] of group {i}", p, p.dtype, p.shape)
            self._check_options(group)
            groups.append(group)
        seen = set()
        for p in (p for g in groups for p in g["params"]):
            if id(p) in seen:
                raise ValueError(f"{where}: a parameter appears twice; expected each once")
            seen.add(id(p))
        modes = self._storage_modes(where, [p for g in groups for p in g["params"]],
                                    master_weights, stochastic_rounding, seed, state_dtype)
        # everything checked: nothing is created before this line
        self.param_groups: List[dict] = groups
        (self.master_weights, self.stochastic_rounding, self.seed,
         self.state_dtype) = modes
        #: the stochastic rounding's counter: elements rounded so far (Philox's counter of the
        #: next one); saved by state_dict, so that a resumed run draws the same bits
        self.rounding_offset = 0
        #: per parameter (flat index over all groups): {"step": int, name: array, ...};
        #: with master_weights, each 16-bit parameter's float32 copy, "master_param", made now
        self.state: Dict[int, Dict[str, Any]] = {}
        if self.master_weights:
            for i, _, p in self._flat():
                if p.dtype.itemsize == 2:
                    self.state[i] = {"step": 0, "master_param": p.astype(np.float32)}

    def _storage_modes(self, where: str, params: List[np.ndarray], master_weights: Any,
                       stochastic_rounding: Any, seed: Any, state_dtype: Any):
        """Validate the 16-bit storage options against the params; return them normalized:
        (master_weights, stochastic_rounding, seed, state_dtype)."""
        for name, flag in (("master_weights", master_weights),
                           ("stochastic_rounding", stochastic_rounding)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{where}: {name} must be a bool, got {type(flag).__name__}")
        seed = _uint64(where, "seed", seed)
        half = [p for p in params if p.dtype.itemsize == 2]
        kinds = sorted({str(p.dtype) for p in half})
        if not self._takes_half and (master_weights or stochastic_rounding or
                                     state_dtype is not None):
            raise TypeError(f"{where}: master_weights, stochastic_rounding and state_dtype are "
                            f"options for 16-bit params, which {type(self).__name__} does not "
                            f"take")
        if master_weights and stochastic_rounding:
            raise ValueError(f"{where}: master_weights=True and stochastic_rounding=True are "
                             f"different modes; expected one of them (or neither: round to "
                             f"nearest)")
        if master_weights and not half:
            raise ValueError(f"{where}: master_weights=True is for bfloat16/float16 params, "
                             f"and every param here is float32/float64 (updated in its own "
                             f"precision already); expected 16-bit params, or "
                             f"master_weights=False")
        if stochastic_rounding:
            if not any(V.storage_kind(p.dtype) == V.STORAGE_KIND_BF16 for p in half):
                raise ValueError(f"{where}: stochastic_rounding=True is for bfloat16 params, "
                                 f"and there is none (params: "
                                 f"{', '.join(sorted({str(p.dtype) for p in params}))}); "
                                 f"expected bfloat16 params")
            if any(p.dtype == V.FLOAT16 for p in half):
                raise ValueError(f"{where}: stochastic_rounding=True is for bfloat16 params; "
                                 f"some params are float16 (use master_weights=True for them, "
                                 f"in an optimizer of their own)")
        if state_dtype is None:
            state_dtype = _F32
        else:
            try:
                state_dtype = np.dtype(state_dtype)
            except TypeError:
                raise TypeError(f"{where}: state_dtype is {state_dtype!r}; expected a dtype: "
                                f"float32 or the params' 16-bit dtype") from None
            if state_dtype != _F32:
                if state_dtype.itemsize != 2 or V.storage_kind(state_dtype) == 0:
                    raise TypeError(f"{where}: state_dtype is {state_dtype}; expected float32 "
                                    f"or the params' 16-bit dtype (bfloat16 or float16)")
                if kinds != [str(state_dtype)]:
                    raise ValueError(f"{where}: state_dtype is {state_dtype} but the 16-bit "
                                     f"params are {kinds or 'none'}; expected float32, or the "
                                     f"dtype of every 16-bit param")
        return bool(master_weights), bool(stochastic_rounding), seed, state_dtype

    def _flat(self) -> List[Tuple[int, dict, np.ndarray]]:
        out, i = [], 0
        for group in self.param_groups:
            for p in group["params"]:
                out.append((i, group, p))
                i += 1
        return out

    def _check_max_grad_norm(self, where: str) -> None:
        if self.max_grad_norm is not None:
            V.number(where, "max_grad_norm", self.max_grad_norm, low=0.0, finite=False)

    def step(self, grads: Optional[Sequence[Optional[np.ndarray]]] = None
             ) -> Optional[np.floating]:
        """Update every parameter that has a gradient, in place, one fused pass each group.

        Parameters
        ----------
        grads : list of numpy.ndarray or None
            One gradient per parameter, in the order of the parameters (all groups, in
            order); None skips its parameter. (torch's ``step()`` reads ``p.grad``; NumPy
            arrays have none, so the gradients are the argument: ``opt.step(model.grads())``.)

        Returns
        -------
        numpy.floating or None
            With ``max_grad_norm`` set, the total 2-norm of the gradients before clipping.

        Raises
        ------
        TypeError
            If ``grads`` is missing or a gradient is not a float array of its parameter's
            dtype.
        ValueError
            If the number of gradients or a shape is wrong. Nothing is updated then.

        Examples
        --------
        >>> import numpy as np
        >>> from mlkernels import optim
        >>> w = np.array([1.0, 2.0])
        >>> opt = optim.SGD([w], lr=0.5)
        >>> opt.step([np.array([1.0, 1.0])])
        >>> w
        array([0.5, 1.5])
        """
        where = f"{type(self).__name__}.step()"
        if grads is None:
            raise TypeError(f"{where}: grads is missing; expected the gradients, one per "
                            f"parameter in the order of the parameters (None to skip one): "
                            f"NumPy arrays carry no .grad as torch tensors do, so pass them, "
                            f"e.g. opt.step(model.grads())")
        self._check_max_grad_norm(where)
        flat = self._flat()
        grads = _as_list(where, "grads", grads)
        if len(grads) != len(flat):
            raise ValueError(f"{where}: {len(grads)} grads for {len(flat)} params; expected one "
                             f"per parameter (None to skip one)")
        calls, new_state, offset = [], {}, 0
        for gi, group in enumerate(self.param_groups):
            names = self._state_names(group)
            buckets: Dict[int, List[int]] = {}
            for i, g_, p in flat:
                if g_ is group and grads[i] is not None:
                    st = self.state.get(i)
                    if st is None or any(n not in st for n in names):
                        st = dict(st or {"step": 0})
                        for n in names:
                            if n not in st:
                                st[n] = self._initial_state(group, n, p)
                        new_state[i] = st
                    # one fused call per (step count, dtype): params of several dtypes in a
                    # group (16-bit matrices, float32 norms) are stepped by dtype, as torch's
                    # foreach groups its tensors
                    buckets.setdefault((st["step"] + 1, p.dtype), []).append(i)
            for (step, _), idx in buckets.items():
                states = {n: [(new_state.get(i) or self.state[i])[n] for i in idx] for n in names}
                with _named(where):
                    prepared = self._prepare(group, [flat[i][2] for i in idx],
                                             [grads[i] for i in idx], states, step)
                    masters = ([(new_state.get(i) or self.state[i])["master_param"]
                                for i in idx]
                               if self.master_weights and prepared[2].itemsize == 2 else None)
                    rounding = self.stochastic_rounding and prepared[2].itemsize == 2
                    call = _mode_call(where, prepared, masters, rounding, self.seed, step,
                                      (self.rounding_offset + offset) % 2**64)
                if rounding:
                    offset += sum(flat[i][2].size for i in idx)
                calls.append(((prepared, call), idx))
        total_norm = None
        if self.max_grad_norm is not None:   # the norm over every gradient of this step
            from . import clip
            used = [g for ((_, columns, _, _), _), _ in calls for g in columns[1]]
            total = clip._total_norm(used, 2.0)
            coef = clip._clip_coefficient(total, float(self.max_grad_norm))
            for ((_, _, _, hyper), _), _ in calls:
                hyper["grad_scale"] = 1.0 if coef is None else coef
            total_norm = (V.compute_dtype(used[0].dtype) if used
                          else np.dtype(np.float64)).type(total)
        # everything validated: commit the new state, count the step, run the kernels
        self.state.update(new_state)
        self.rounding_offset = (self.rounding_offset + offset) % 2**64
        for (_, call), idx in calls:
            for i in idx:
                self.state[i]["step"] += 1
            _execute(call)
        return total_norm

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> Dict[str, np.ndarray]:
        """The whole optimizer as a flat dict of NumPy arrays (``np.savez`` it)::

            "optimizer"            the class name
            "groups"               the number of param groups
            "group{g}.params"      flat indices of the group's parameters
            "group{g}.{option}"    each hyperparameter of the group
            "state{i}.step"        the step count of parameter i
            "state{i}.{name}"      each state array of parameter i (copies), with
                                   master_weights its float32 copy "master_param"

        and the 16-bit storage options: "master_weights", "stochastic_rounding",
        "state_dtype" (its name), "seed" and "rounding_offset" (the stochastic rounding's
        counter, uint64). A 16-bit state array saved with ``np.savez`` loads back as 2-byte
        void (``np.load`` does not know ml_dtypes' bfloat16): ``load_state_dict`` takes it as
        the state's dtype.
        """
        sd: Dict[str, np.ndarray] = {"optimizer": np.array(type(self).__name__),
                                     "groups": np.array(len(self.param_groups))}
        if self._takes_half:
            sd.update(master_weights=np.array(self.master_weights),
                      stochastic_rounding=np.array(self.stochastic_rounding),
                      state_dtype=np.array(str(self.state_dtype)),
                      seed=np.array(self.seed, np.uint64),
                      rounding_offset=np.array(self.rounding_offset, np.uint64))
        flat = self._flat()
        for g, group in enumerate(self.param_groups):
            sd[f"group{g}.params"] = np.array([i for i, gg, _ in flat if gg is group], np.int64)
            for k, v in group.items():
                if k != "params":
                    sd[f"group{g}.{k}"] = np.array(v)
        for i, st in self.state.items():
            for k, v in st.items():
                sd[f"state{i}.{k}"] = np.array(v, copy=True)
        return sd

    def load_state_dict(self, state_dict) -> None:
        """Restore a ``state_dict()`` (or ``np.load`` of its ``np.savez``) of the same
        optimizer class over the same parameters. Checked whole before anything is set."""
        where = f"{type(self).__name__}.load_state_dict()"
        sd = {k: np.asarray(state_dict[k]) for k in state_dict.keys()}
        name = str(sd.get("optimizer", np.array("?")))
        if name != type(self).__name__:
            raise ValueError(f"{where}: the state dict is of optimizer {name!r}; expected "
                             f"{type(self).__name__!r}")
        if int(sd.get("groups", -1)) != len(self.param_groups):
            raise ValueError(f"{where}: the state dict has {sd.get('groups')} param groups; "
                             f"expected {len(self.param_groups)}")
        seed, rounding_offset = self._load_modes(where, sd)
        flat = self._flat()
        new_groups = []
        for g, group in enumerate(self.param_groups):
            mine = np.array([i for i, gg, _ in flat if gg is group], np.int64)
            theirs = sd.get(f"group{g}.params")
            if theirs is None or not np.array_equal(theirs, mine):
                raise ValueError(f"{where}: param group {g} holds other parameters than this "
                                 f"optimizer's group {g}")
            new = {"params": group["params"]}
            for k, default in self.defaults.items():
                if f"group{g}.{k}" not in sd:
                    raise ValueError(f"{where}: option {k!r} of group {g} is missing")
                v = sd[f"group{g}.{k}"]
                new[k] = (tuple(float(x) for x in v) if isinstance(default, tuple)
                          else bool(v) if isinstance(default, bool) else float(v))
            new_groups.append(new)
        for new in new_groups:
            self._check_options(new)
        group_of = {i: new_groups[[id(g) for g in self.param_groups].index(id(gg))]
                    for i, gg, _ in flat}
        new_state: Dict[int, Dict[str, Any]] = {}
        for key, v in sd.items():
            if not key.startswith("state") or key == "state_dtype":
                continue
            head, _, field = key.partition(".")
            i = int(head[5:]) if head[5:].isdigit() else -1
            if not 0 <= i < len(flat):
                raise ValueError(f"{where}: {key!r} names no parameter of this optimizer")
            p = flat[i][2]
            if field == "step":
                new_state.setdefault(i, {})["step"] = int(v)
                continue
            is_master = field == "master_param" and self.master_weights and p.dtype.itemsize == 2
            if field not in self._state_names(group_of[i]) and not is_master:
                raise ValueError(f"{where}: {key!r} is no state of {type(self).__name__} with "
                                 f"these options")
            expected = _F32 if is_master else self._state_dtype_of(p)
            if expected.itemsize == 2 and v.dtype.kind == "V" and v.dtype.itemsize == 2:
                v = v.view(expected)          # a 16-bit array through np.savez / np.load
            if v.shape != p.shape or v.dtype != expected:
                whose = ("a float32 copy of its parameter" if is_master else
                         "its parameter's" if expected == p.dtype else
                         f"state_dtype, for {p.dtype} params")
                raise ValueError(f"{where}: {key!r} has shape {v.shape} and dtype {v.dtype}; "
                                 f"expected {p.shape} and {expected} ({whose})")
            new_state.setdefault(i, {})[field] = np.array(v, copy=True, order="C")
        for i, st in new_state.items():
            if "step" not in st:
                raise ValueError(f"{where}: the state of parameter {i} has no step count")
        if self.master_weights:
            for i, _, p in flat:
                if p.dtype.itemsize == 2 and "master_param" not in new_state.get(i, {}):
                    raise ValueError(f"{where}: the state of parameter {i} has no "
                                     f"'master_param'; expected the float32 master copy of "
                                     f"each 16-bit parameter (master_weights=True)")
        for group, new in zip(self.param_groups, new_groups):
            group.update(new)
        self.state = new_state
        if self._takes_half:
            self.seed, self.rounding_offset = seed, rounding_offset

    def _load_modes(self, where: str, sd: Dict[str, np.ndarray]) -> Tuple[int, int]:
        """Check that a state dict's 16-bit storage options are this optimizer's (a state
        dict without them is one of float32/float64 params: the defaults); return its seed
        and rounding_offset."""
        if not self._takes_half:
            return 0, 0
        saved = {"master_weights": bool(sd.get("master_weights", False)),
                 "stochastic_rounding": bool(sd.get("stochastic_rounding", False)),
                 "state_dtype": str(sd.get("state_dtype", "float32"))}
        mine = {"master_weights": self.master_weights,
                "stochastic_rounding": self.stochastic_rounding,
                "state_dtype": str(self.state_dtype)}
        for k in saved:
            if saved[k] != mine[k]:
                raise ValueError(f"{where}: the state dict was saved with {k}={saved[k]!r}; "
                                 f"this optimizer has {k}={mine[k]!r}: construct it with the "
                                 f"same options")
        return (_uint64(where, "seed", int(sd.get("seed", 0))),
                _uint64(where, "rounding_offset", int(sd.get("rounding_offset", 0))))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({sum(len(g['params']) for g in self.param_groups)} " \
               f"params, {opts})"


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum, dampening, Nesterov, weight decay
    (torch.optim.SGD); see ``sgd_step`` for the formulas.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Parameters or param groups (see ``Optimizer``).
    lr, momentum, dampening, weight_decay : float
        Non-negative.
    nesterov, maximize : bool
    max_grad_norm : float, optional
        Clip the gradients inside ``step`` (see ``Optimizer``).
    master_weights, stochastic_rounding, seed, state_dtype
        How 16-bit params are stored and their state kept (see ``Optimizer``): float32
        master copies, or (bfloat16) stochastic rounding from ``seed``, else round to
        nearest; states float32 or the params' 16-bit dtype.

    Raises
    ------
    TypeError
        params not a list of float32/float64/bfloat16/float16 arrays (or of param-group
        dicts); a hyperparameter that is not a number; master_weights or
        stochastic_rounding not a bool; seed not an int; state_dtype not float32 or a
        16-bit dtype.
    ValueError
        A hyperparameter out of its range (the message names it and the range), an
        unknown group key, an empty list; master_weights=True with stochastic_rounding=True;
        master_weights=True with no 16-bit param; stochastic_rounding=True with no bfloat16
        param or with a float16 one; a 16-bit state_dtype other than the 16-bit params'.
        All raised before anything is created. ``step`` raises the same for its gradients
        before any parameter or state is written.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w = np.zeros(2)
    >>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.step([np.ones(2)])
    >>> w                                   # 0.1, then 0.1·(0.9 + 1)
    array([-0.29, -0.29])
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
                 *, max_grad_norm: Optional[float] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize), max_grad_norm,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding,
                         seed=seed, state_dtype=state_dtype)

    _takes_half = True

    def _state_names(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _prepare(self, group, params, grads, states, step):
        return _prepare_sgd(params, grads, states.get("momentum_buffer"), step, group["lr"],
                            group["momentum"], group["dampening"], group["weight_decay"],
                            group["nesterov"], group["maximize"])


class Adam(Optimizer):
    """Adam (torch.optim.Adam): weight_decay is an L2 term added to the gradient; see
    ``adam_step`` for the formulas.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Parameters or param groups (see ``Optimizer``).
    lr, eps, weight_decay : float
        Non-negative.
    betas : (float, float)
        In [0, 1).
    amsgrad, maximize : bool
    max_grad_norm : float, optional
        Clip the gradients inside ``step`` (see ``Optimizer``).
    master_weights, stochastic_rounding, seed, state_dtype
        How 16-bit params are stored and their state kept (see ``Optimizer``): float32
        master copies, or (bfloat16) stochastic rounding from ``seed``, else round to
        nearest; states float32 or the params' 16-bit dtype.

    Raises
    ------
    TypeError
        params not a list of float32/float64/bfloat16/float16 arrays (or of param-group
        dicts); a hyperparameter that is not a number; master_weights or
        stochastic_rounding not a bool; seed not an int; state_dtype not float32 or a
        16-bit dtype.
    ValueError
        A hyperparameter out of its range (the message names it and the range), an
        unknown group key, an empty list; master_weights=True with stochastic_rounding=True;
        master_weights=True with no 16-bit param; stochastic_rounding=True with no bfloat16
        param or with a float16 one; a 16-bit state_dtype other than the 16-bit params'.
        All raised before anything is created. ``step`` raises the same for its gradients
        before any parameter or state is written.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w = np.array([1.0])
    >>> opt = optim.Adam([w], lr=0.1)
    >>> opt.step([np.array([5.0])])         # the first step moves by lr
    >>> w
    array([0.9])
    """

    _decoupled = False
    _takes_half = True

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 maximize: bool = False, *, max_grad_norm: Optional[float] = None,
                 master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0,
                 state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list)
                                      else betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize), max_grad_norm,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding,
                         seed=seed, state_dtype=state_dtype)

    def _state_names(self, group):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])

    def _prepare(self, group, params, grads, states, step):
        where = "adamw_step()" if self._decoupled else "adam_step()"
        return _prepare_adam(where, self._decoupled, params, grads, states["exp_avg"],
                             states["exp_avg_sq"], states.get("max_exp_avg_sq"), step,
                             group["lr"], group["betas"], group["eps"], group["weight_decay"],
                             group["amsgrad"], group["maximize"])


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay p ← p·(1 − lr·wd) before the Adam
    update (Loshchilov & Hutter); see ``adamw_step``.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Parameters or param groups (see ``Optimizer``).
    lr, eps : float
        Non-negative.
    betas : (float, float)
        In [0, 1).
    weight_decay : float, default 1e-2
    amsgrad, maximize : bool
    max_grad_norm : float, optional
        Clip the gradients inside ``step`` (see ``Optimizer``).
    master_weights, stochastic_rounding, seed, state_dtype
        How 16-bit params are stored and their state kept (see ``Optimizer``): float32
        master copies, or (bfloat16) stochastic rounding from ``seed``, else round to
        nearest; states float32 or the params' 16-bit dtype.

    Raises
    ------
    TypeError
        params not a list of float32/float64/bfloat16/float16 arrays (or of param-group
        dicts); a hyperparameter that is not a number; master_weights or
        stochastic_rounding not a bool; seed not an int; state_dtype not float32 or a
        16-bit dtype.
    ValueError
        A hyperparameter out of its range (the message names it and the range), an
        unknown group key, an empty list; master_weights=True with stochastic_rounding=True;
        master_weights=True with no 16-bit param; stochastic_rounding=True with no bfloat16
        param or with a float16 one; a 16-bit state_dtype other than the 16-bit params'.
        All raised before anything is created. ``step`` raises the same for its gradients
        before any parameter or state is written.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w = np.array([1.0])
    >>> opt = optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> opt.step([np.array([0.0])])         # a zero gradient: the decay alone
    >>> w
    array([0.95])
    >>> state = opt.state_dict()            # flat NumPy arrays: np.savez(f, **state)
    >>> AdamW = optim.AdamW
    >>> resumed = AdamW([w.copy()], lr=0.1, weight_decay=0.5)
    >>> resumed.load_state_dict(state)

    bfloat16 params (``pip install "mlkernels[bf16]"``) with float32 master weights: the
    decay lr·wd = 1e-5 per step is below bfloat16's resolution at 1 (2^-8 = 0.0039),
    so rounding to nearest alone would lose every step of it; the master copy keeps it:

    >>> import ml_dtypes
    >>> p = np.ones(3, ml_dtypes.bfloat16)
    >>> opt = optim.AdamW([p], lr=1e-3, weight_decay=1e-2, master_weights=True)
    >>> for _ in range(1000):
    ...     opt.step([np.zeros(3, ml_dtypes.bfloat16)])
    >>> opt.state[0]["master_param"]          # (1 − 1e-5)^1000 ≈ 0.99005, in float32 steps
    array([0.99003446, 0.99003446, 0.99003446], dtype=float32)
    >>> p                                           # the master, rounded
    array([0.988281, 0.988281, 0.988281], dtype=bfloat16)
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 maximize: bool = False, *, max_grad_norm: Optional[float] = None,
                 master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0,
                 state_dtype: Any = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize,
                         max_grad_norm=max_grad_norm, master_weights=master_weights,
                         stochastic_rounding=stochastic_rounding, seed=seed,
                         state_dtype=state_dtype)


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop), optionally centered and with momentum; see
    ``rmsprop_step`` for the formulas.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Parameters or param groups (see ``Optimizer``).
    lr, alpha, eps, weight_decay, momentum : float
        Non-negative.
    centered, maximize : bool
    max_grad_norm : float, optional
        Clip the gradients inside ``step`` (see ``Optimizer``).
    master_weights, stochastic_rounding, seed, state_dtype
        How 16-bit params are stored and their state kept (see ``Optimizer``): float32
        master copies, or (bfloat16) stochastic rounding from ``seed``, else round to
        nearest; states float32 or the params' 16-bit dtype.

    Raises
    ------
    TypeError
        params not a list of float32/float64/bfloat16/float16 arrays (or of param-group
        dicts); a hyperparameter that is not a number; master_weights or
        stochastic_rounding not a bool; seed not an int; state_dtype not float32 or a
        16-bit dtype.
    ValueError
        A hyperparameter out of its range (the message names it and the range), an
        unknown group key, an empty list; master_weights=True with stochastic_rounding=True;
        master_weights=True with no 16-bit param; stochastic_rounding=True with no bfloat16
        param or with a float16 one; a 16-bit state_dtype other than the 16-bit params'.
        All raised before anything is created. ``step`` raises the same for its gradients
        before any parameter or state is written.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w = np.array([1.0])
    >>> optim.RMSprop([w], lr=0.01, alpha=0.75, eps=0.0).step([np.array([2.0])])
    >>> w
    array([0.98])
    """

    _takes_half = True

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False, *, max_grad_norm: Optional[float] = None,
                 master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0,
                 state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize),
                         max_grad_norm, master_weights=master_weights,
                         stochastic_rounding=stochastic_rounding, seed=seed,
                         state_dtype=state_dtype)

    def _state_names(self, group):
        return (["square_avg"] + (["momentum_buffer"] if group["momentum"] != 0 else [])
                + (["grad_avg"] if group["centered"] else []))

    def _prepare(self, group, params, grads, states, step):
        return _prepare_rmsprop(params, grads, states["square_avg"],
                                states.get("momentum_buffer"), states.get("grad_avg"), step,
                                group["lr"], group["alpha"], group["eps"],
                                group["weight_decay"], group["momentum"], group["centered"],
                                group["maximize"])


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad); see ``adagrad_step`` for the formulas.

    Parameters
    ----------
    params : list of numpy.ndarray, or list of dict
        Parameters or param groups (see ``Optimizer``).
    lr, lr_decay, weight_decay, initial_accumulator_value, eps : float
        Non-negative. (With ``state_dtype`` 16-bit, the sums start at
        ``initial_accumulator_value`` rounded to that dtype.)
    maximize : bool
    max_grad_norm : float, optional
        Clip the gradients inside ``step`` (see ``Optimizer``).
    master_weights, stochastic_rounding, seed, state_dtype
        How 16-bit params are stored and their state kept (see ``Optimizer``): float32
        master copies, or (bfloat16) stochastic rounding from ``seed``, else round to
        nearest; states float32 or the params' 16-bit dtype.

    Raises
    ------
    TypeError
        params not a list of float32/float64/bfloat16/float16 arrays (or of param-group
        dicts); a hyperparameter that is not a number; master_weights or
        stochastic_rounding not a bool; seed not an int; state_dtype not float32 or a
        16-bit dtype.
    ValueError
        A hyperparameter out of its range (the message names it and the range), an
        unknown group key, an empty list; master_weights=True with stochastic_rounding=True;
        master_weights=True with no 16-bit param; stochastic_rounding=True with no bfloat16
        param or with a float16 one; a 16-bit state_dtype other than the 16-bit params'.
        All raised before anything is created. ``step`` raises the same for its gradients
        before any parameter or state is written.

    Examples
    --------
    >>> import numpy as np
    >>> from mlkernels import optim
    >>> w = np.array([1.0])
    >>> optim.Adagrad([w], lr=0.1, eps=0.0).step([np.array([2.0])])
    >>> w
    array([0.9])
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False, *,
                 max_grad_norm: Optional[float] = None, master_weights: bool = False,
                 stochastic_rounding: bool = False, seed: int = 0, state_dtype: Any = None):
        V.number("Adagrad()", "initial_accumulator_value", initial_accumulator_value, low=0.0)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize), max_grad_norm,
                         master_weights=master_weights, stochastic_rounding=stochastic_rounding,
                         seed=seed, state_dtype=state_dtype)

    _takes_half = True

    def _state_names(self, group):
        return ["sum"]

    def _initial_state(self, group, name, p):
        return np.full(p.shape, group["initial_accumulator_value"], self._state_dtype_of(p))

    def _prepare(self, group, params, grads, states, step):
        return _prepare_adagrad(params, grads, states["sum"], step, group["lr"],
                                group["lr_decay"], group["weight_decay"], group["eps"],
                                group["maximize"])
