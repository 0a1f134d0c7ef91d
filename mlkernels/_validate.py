"""The one place that checks arguments: dtypes, shapes, contiguity, ``out=`` and numbers.

Every public function validates all of its arguments here *before* any kernel runs, so a
bad call raises a clear ``TypeError``/``ValueError`` and writes nothing: no output, no
parameter, no optimizer state is touched. Messages follow one style::

    <function>(): <argument> <what is wrong>; expected <what is accepted>

Kernels run with bounds checks off, so every shape a kernel relies on is checked here.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SUPPORTED = "float32 or float64"


def _describe(a: object) -> str:
    return type(a).__name__ if not isinstance(a, np.ndarray) else f"array of dtype {a.dtype}"


def float_dtype(where: str, *, optional: Sequence[str] = (),
                **arrays: Optional[np.ndarray]) -> np.dtype:
    """The one floating dtype shared by the given arrays.

    An argument named in ``optional`` may be None (it is then skipped); any other None is a
    TypeError like any other non-array.

    Raises TypeError for a non-array, a dtype other than float32/float64 (integer, complex,
    float16, object, ...), or float32 mixed with float64 in one call. Byte-swapped float
    arrays are accepted (they are converted by ``c_array``).
    """
    dtype = None
    first = None
    for name, a in arrays.items():
        if a is None and name in optional:
            continue
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{where}: {name} must be a numpy.ndarray, got {_describe(a)}; "
                            f"expected an array of {_SUPPORTED}")
        dt = a.dtype
        if dt.kind != "f" or dt.itemsize not in (4, 8):
            raise TypeError(f"{where}: {name} has dtype {dt}; expected {_SUPPORTED}")
        dt = dt.newbyteorder("=") if not dt.isnative else dt
        if dtype is None:
            dtype, first = dt, name
        elif dt != dtype:
            raise TypeError(
                f"{where}: {name} has dtype {dt} but {first} has dtype {dtype}; expected one "
                f"dtype for all arrays (mlkernels never mixes float32 and float64: cast one "
                f"with .astype())")
    if dtype is None:
        raise TypeError(f"{where}: no array argument given; expected arrays of {_SUPPORTED}")
    return dtype


def c_array(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` itself when it is C-contiguous, aligned and native-endian; else one copy that is."""
    if a.flags.c_contiguous and a.flags.aligned and a.dtype == dtype:
        return a
    # one copy, C-ordered, aligned and native (np.ascontiguousarray would make 0-d arrays 1-d)
    return np.array(a, dtype=dtype, order="C", copy=True)


def output(where: str, out: Optional[np.ndarray], shape: tuple, dtype: np.dtype,
           inputs: Sequence[Optional[np.ndarray]] = (), name: str = "out",
           inplace_ok: Sequence[Optional[np.ndarray]] = ()) -> np.ndarray:
    """The array a kernel writes: ``out`` checked, or a fresh C-contiguous array.

    ``out`` must be a writeable, C-contiguous, aligned array of exactly ``shape`` and
    ``dtype`` that shares no memory with any of ``inputs``. Exception: it may *be* one of
    ``inplace_ok`` (same data pointer, shape and strides) for kernels that can run in place.
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy.ndarray or None, got {_describe(out)}")
    if out.dtype != dtype:
        raise ValueError(f"{where}: {name} has dtype {out.dtype}; expected {dtype} "
                         f"(the dtype of the result)")
    if out.shape != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {out.shape}; expected {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{where}: {name} is read-only; expected a writeable array")
    if not (out.flags.c_contiguous and out.flags.aligned):
        raise ValueError(f"{where}: {name} is not C-contiguous; expected a C-contiguous array "
                         f"(e.g. from np.empty)")
    for a in inplace_ok:
        if a is not None and same_memory(out, a):
            return out
    for a in inputs:
        if a is not None and out.size and np.may_share_memory(out, a):
            raise ValueError(f"{where}: {name} overlaps an input array; expected separate "
                             f"memory" + (" (or exactly the input, for in place)" if inplace_ok else ""))
    return out


def same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are views of exactly the same elements, in the same layout."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def shape_is(where: str, name: str, a: Optional[np.ndarray], shape: tuple,
             expected_text: str = "") -> None:
    """ValueError unless ``a`` (when given) has exactly ``shape``."""
    if a is not None and a.shape != tuple(shape):
        hint = f" ({expected_text})" if expected_text else ""
        raise ValueError(f"{where}: {name} has shape {a.shape}; expected {tuple(shape)}{hint}")


def ndim_at_least(where: str, name: str, a: np.ndarray, ndim: int, meaning: str = "") -> None:
    if a.ndim < ndim:
        hint = f" {meaning}" if meaning else ""
        raise ValueError(f"{where}: {name} has shape {a.shape} ({a.ndim}-d); expected at least "
                         f"{ndim}-d{hint}")


def number(where: str, name: str, value: object, *, low: Optional[float] = None,
           high: Optional[float] = None, low_open: bool = False, high_open: bool = False,
           finite: bool = True) -> float:
    """A real hyperparameter checked against [low, high] (or open ends): returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if v != v or (finite and v in (float("inf"), float("-inf"))):
        raise ValueError(f"{where}: {name} is {v}; expected a finite number")
    bad = ((low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + \
                   (")" if high_open or high is None else "]")
        raise ValueError(f"{where}: {name} is {value!r}; expected a value in {interval}")
    return v


def choice(where: str, name: str, value: object, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{where}: {name} is {value!r}; expected one of {tuple(options)}")
    return value


def blas_dim(where: str, name: str, n: int) -> int:
    """Dimensions passed to BLAS as 32-bit ints: refuse (never wrap) one of 2**31 or more."""
    if n >= 2**31:
        raise ValueError(f"{where}: {name} = {n} is too large for 32-bit BLAS; expected < 2**31")
    return n
