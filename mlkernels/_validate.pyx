# cython: language_level=3
"""The one place that checks arguments: dtypes, shapes, contiguity, ``out=`` and numbers.

Every public function validates all of its arguments here *before* any kernel runs, so a
bad call raises a clear ``TypeError``/``ValueError`` and writes nothing: no output, no
parameter, no optimizer state is touched. Messages follow one style::

    <function>(): <argument> <what is wrong>; expected <what is accepted>

Kernels run with bounds checks off, so every shape a kernel relies on is checked here.

Compiled (Cython), though it reads as Python: a small call's price is mostly its checks, and
here each costs tens of nanoseconds instead of a microsecond (the overlap test of ``out``
against the inputs, for instance, is arithmetic on the arrays' extents in C rather than a
call of ``np.may_share_memory`` per pair). Built once, with the baseline flags.
"""
import numbers
import sys

import numpy as np
cimport numpy as cnp

cnp.import_array()

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SUPPORTED = "float32 or float64"


def _describe(a: object) -> str:
    return type(a).__name__ if not isinstance(a, np.ndarray) else f"array of dtype {a.dtype}"


def float_dtype(str where, *, optional=(), **arrays):
    """The one floating dtype shared by the given arrays.

    An argument named in ``optional`` may be None (it is then skipped); any other None is a
    TypeError like any other non-array.

    Raises TypeError for a non-array, a dtype other than float32/float64 (integer, complex,
    float16, object, ...), or float32 mixed with float64 in one call. Byte-swapped float
    arrays are accepted (they are converted by ``c_array``).
    """
    return _one_dtype(where, optional, arrays, False)


# ---------------------------------------------------------------- 16-bit storage dtypes
# ml_dtypes.bfloat16 and numpy.float16 arrays hold data only: the kernels that take them widen
# to float32, compute as float32 does and round each result once (_half.h). Rules for a call:
# * all its data arrays (inputs, parameters such as a norm's weight, out=) share one dtype:
#   a bfloat16 input with a float32 weight, or bfloat16 with float16, is a TypeError, as
#   float32 with float64 is; cast one with .astype();
# * what the kernel keeps in float32 stays float32 whatever the storage: saved statistics
#   (mean, rstd), losses, optimizer states unless asked otherwise, master weights.
# ml_dtypes is optional: it is never imported here. A bfloat16 array of ml_dtypes exists
# only once ml_dtypes is imported, so sys.modules tells whether a dtype is its bfloat16.
BF16_INSTALL = 'pip install "mlkernels[bf16]"'
STORAGE_KIND_NATIVE, STORAGE_KIND_BF16, STORAGE_KIND_F16 = 0, 1, 2   # _half.h's MLK_* kinds
FLOAT16 = np.dtype(np.float16)
_SUPPORTED_STORAGE = "float32, float64, bfloat16 (ml_dtypes) or float16"


def bfloat16():
    """np.dtype(ml_dtypes.bfloat16) when ml_dtypes is importable, else None (imports it)."""
    import importlib
    try:
        return np.dtype(importlib.import_module("ml_dtypes").bfloat16)
    except ImportError:
        return None


cdef inline bint _is_bf16(object dt):
    m = sys.modules.get("ml_dtypes")
    return m is not None and dt.type is m.bfloat16


cdef inline bint _bf16_like(object dt):
    return "bfloat16" in str(dt).lower() and not _is_bf16(dt)


def storage_kind(dtype) -> int:
    """_half.h's storage kind of a dtype accepted by ``storage_dtype``: 0 float32/float64,
    1 bfloat16, 2 float16."""
    if dtype == FLOAT16:
        return STORAGE_KIND_F16
    return STORAGE_KIND_BF16 if _is_bf16(dtype) else STORAGE_KIND_NATIVE


def compute_dtype(dtype):
    """The dtype a kernel computes and keeps its float results in: float32 for 16-bit storage."""
    return dtype if dtype.itemsize >= 4 else FLOAT_DTYPES[0]


def _foreign_bf16(str where, str name, dt):
    if sys.modules.get("ml_dtypes") is None:
        return TypeError(f"{where}: {name} has dtype {dt}, which needs ml_dtypes, not installed; "
                         f"expected an ml_dtypes.bfloat16 array: install it with {BF16_INSTALL}")
    return TypeError(f"{where}: {name} has dtype {dt}, a bfloat16 not from ml_dtypes; expected "
                     f"ml_dtypes.bfloat16 (convert with .astype(ml_dtypes.bfloat16))")


def storage_dtype(str where, *, optional=(), **arrays):
    """``float_dtype`` for the kernels that also take 16-bit storage: the one dtype shared by
    the arrays, float32, float64, ml_dtypes.bfloat16 or numpy.float16.

    Raises TypeError for a non-array, another dtype, arrays of different dtypes (16-bit storage
    included: bfloat16 with float32 is refused as float32 with float64 is), and for a bfloat16
    dtype that is not ml_dtypes' -- when ml_dtypes is not installed the message says to
    ``pip install "mlkernels[bf16]"``.
    """
    return _one_dtype(where, optional, arrays, True)


cdef object _one_dtype(str where, tuple optional, dict arrays, bint storage):
    """The loop of float_dtype (storage False: float32/float64 only) and storage_dtype
    (storage True: bfloat16 and float16 too)."""
    cdef object dtype = None, dt
    cdef str first = None, name
    cdef cnp.dtype d
    supported = _SUPPORTED_STORAGE if storage else _SUPPORTED
    for name, a in arrays.items():
        if a is None and name in optional:
            continue
        if not isinstance(a, np.ndarray):
            if storage and _bf16_like(getattr(a, "dtype", "")):
                raise _foreign_bf16(where, name, a.dtype)
            raise TypeError(f"{where}: {name} must be a numpy.ndarray, got {_describe(a)}; "
                            f"expected an array of {supported}")
        d = (<cnp.ndarray>a).descr
        if d.type_num == cnp.NPY_FLOAT32 or d.type_num == cnp.NPY_FLOAT64:
            dt = FLOAT_DTYPES[0] if d.type_num == cnp.NPY_FLOAT32 else FLOAT_DTYPES[1]
        else:
            dt = a.dtype
            if storage and (_is_bf16(dt) or (dt.kind == "f" and dt.itemsize == 2)):
                dt = dt.newbyteorder("=")
            elif storage and _bf16_like(dt):
                raise _foreign_bf16(where, name, dt)
            elif dt.kind != "f" or dt.itemsize not in (4, 8):
                hint = (" (this function does not take 16-bit storage dtypes)"
                        if not storage and dt.itemsize == 2
                        and (dt.kind == "f" or "bfloat16" in str(dt)) else "")
                raise TypeError(f"{where}: {name} has dtype {dt}; expected {supported}{hint}")
            else:
                dt = dt.newbyteorder("=")      # a byte-swapped float32/float64
        if dtype is None:
            dtype, first = dt, name
        elif dt is not dtype and dt != dtype:
            mixing = ("float dtypes in one call, 16-bit storage included" if storage
                      else "float32 and float64")
            raise TypeError(
                f"{where}: {name} has dtype {dt} but {first} has dtype {dtype}; expected one "
                f"dtype for all arrays (mlkernels never mixes {mixing}: cast one with "
                f".astype())")
    if dtype is None:
        raise TypeError(f"{where}: no array argument given; expected arrays of {supported}")
    return dtype


cdef inline bint _plain(cnp.ndarray a, object dtype):
    """C-contiguous, aligned, native, exactly of ``dtype``: usable by a kernel as it is."""
    return (cnp.PyArray_CHKFLAGS(a, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)
            and (<object>cnp.PyArray_DESCR(a) is dtype or a.dtype == dtype))


def c_array(a, dtype):
    """``a`` itself when it is C-contiguous, aligned and native-endian; else one copy that is."""
    if isinstance(a, np.ndarray) and _plain(<cnp.ndarray>a, dtype):
        return a
    # one copy, C-ordered, aligned and native (np.ascontiguousarray would make 0-d arrays 1-d)
    return np.array(a, dtype=dtype, order="C", copy=True)


cdef bint _same_shape(cnp.ndarray a, tuple shape):
    cdef int d, nd = cnp.PyArray_NDIM(a)
    if nd != len(shape):
        return False
    for d in range(nd):
        if cnp.PyArray_DIM(a, d) != shape[d]:
            return False
    return True


cdef void _extent(cnp.ndarray a, char** low, char** high):
    """The bytes [low, high) that an array's elements may occupy (any strides)."""
    cdef char* lo = <char*>cnp.PyArray_DATA(a)
    cdef char* hi = lo
    cdef int d
    cdef cnp.npy_intp step
    for d in range(cnp.PyArray_NDIM(a)):
        step = cnp.PyArray_STRIDE(a, d) * (cnp.PyArray_DIM(a, d) - 1)
        if step < 0:
            lo += step
        else:
            hi += step
    low[0] = lo
    high[0] = hi + cnp.PyArray_ITEMSIZE(a)


cdef bint _may_overlap(cnp.ndarray a, cnp.ndarray b):
    """np.may_share_memory(a, b): do the extents of two non-empty arrays intersect?"""
    cdef char *alo, *ahi, *blo, *bhi
    if cnp.PyArray_SIZE(a) == 0 or cnp.PyArray_SIZE(b) == 0:
        return False
    _extent(a, &alo, &ahi)
    _extent(b, &blo, &bhi)
    return alo < bhi and blo < ahi


def may_overlap(a, b) -> bool:
    """Whether two arrays may share memory (np.may_share_memory's bounds test)."""
    return _may_overlap(<cnp.ndarray?>a, <cnp.ndarray?>b)


def output(str where, out, shape, dtype, inputs=(), str name="out", inplace_ok=()):
    """The array a kernel writes: ``out`` checked, or a fresh C-contiguous array.

    ``out`` must be a writeable, C-contiguous, aligned array of exactly ``shape`` and
    ``dtype`` that shares no memory with any of ``inputs``. Exception: it may *be* one of
    ``inplace_ok`` (same data pointer, shape and strides) for kernels that can run in place.
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy.ndarray or None, got {_describe(out)}")
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not (<object>cnp.PyArray_DESCR(o) is dtype or o.dtype == dtype):
        raise ValueError(f"{where}: {name} has dtype {o.dtype}; expected {dtype} "
                         f"(the dtype of the result)")
    shape = tuple(shape)
    if not _same_shape(o, shape):
        raise ValueError(f"{where}: {name} has shape {out.shape}; expected {shape}")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{where}: {name} is read-only; expected a writeable array")
    if not cnp.PyArray_CHKFLAGS(o, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
        raise ValueError(f"{where}: {name} is not C-contiguous; expected a C-contiguous array "
                         f"(e.g. from np.empty)")
    for a in inplace_ok:
        if isinstance(a, np.ndarray) and _same_memory(o, <cnp.ndarray>a):
            return out
    for a in inputs:
        if a is not None and (_may_overlap(o, <cnp.ndarray>a) if isinstance(a, np.ndarray)
                              else cnp.PyArray_SIZE(o) and np.may_share_memory(o, a)):
            raise ValueError(f"{where}: {name} overlaps an input array; expected separate "
                             f"memory" + (" (or exactly the input, for in place)" if inplace_ok else ""))
    return out


cdef bint _usable_output(object out, tuple shape, object dtype, tuple inputs, list taken):
    """What ``output`` accepts, tested in C: an ndarray of ``dtype`` and ``shape``, writeable,
    C-contiguous and aligned, sharing no memory with the ndarrays of ``inputs`` and ``taken``
    (None entries skipped). False for anything else, including non-array inputs."""
    if not cnp.PyArray_Check(out):
        return False
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not ((<object>cnp.PyArray_DESCR(o) is dtype or o.dtype == dtype) and _same_shape(o, shape)
            and cnp.PyArray_ISWRITEABLE(o)
            and cnp.PyArray_CHKFLAGS(o, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)):
        return False
    for a in inputs:
        if a is not None and (not cnp.PyArray_Check(a) or _may_overlap(o, <cnp.ndarray>a)):
            return False
    for a in taken:
        if a is not None and _may_overlap(o, <cnp.ndarray>a):
            return False
    return True


def outputs(str where, out, tuple names, tuple shapes, dtype, tuple inputs=()):
    """The arrays a function with several results writes, every one checked before any is
    written: ``out`` is None, one array (the first result), or a tuple (or list) with one
    entry, an array or None, per name in ``names``.

    ``shapes[k]`` is the shape of result k, or None where this call has no such result (its
    entry must then be None). A given array must pass ``output`` (dtype, shape, writeable,
    C-contiguous, aligned) and share no memory with ``inputs`` nor with the outputs before it;
    a None entry becomes a fresh array. Returns a list, None for the results that do not exist.
    """
    cdef Py_ssize_t k, n = len(names)
    cdef list result = []
    cdef bint listed = isinstance(out, (tuple, list))
    if listed and len(out) != n or not (listed or out is None or cnp.PyArray_Check(out)):
        raise TypeError(f"{where}: out must be an array or a tuple ({', '.join(names)}) of "
                        f"arrays or None, got {type(out).__name__}")
    for k in range(n):
        shape = shapes[k]
        entry = out[k] if listed else out if k == 0 else None
        if shape is None:
            if entry is not None:
                raise ValueError(f"{where}: out for {names[k]} is given, but there is no "
                                 f"{names[k]}; expected None")
            result.append(None)
        elif entry is None:
            result.append(np.empty(shape, dtype))
        elif _usable_output(entry, shape, dtype, inputs, result):
            result.append(entry)
        else:       # the checks again, in Python, for the message
            result.append(output(where, entry, shape, dtype, inputs + tuple(result),
                                 name=f"out ({names[k]})"))
    return result


cdef bint _same_memory(cnp.ndarray a, cnp.ndarray b):
    cdef int d
    if (cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b)
            or not (a.dtype == b.dtype)):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d) or \
                cnp.PyArray_STRIDE(a, d) != cnp.PyArray_STRIDE(b, d):
            return False
    return True


def same_memory(a, b) -> bool:
    """True when ``a`` and ``b`` are views of exactly the same elements, in the same layout."""
    return _same_memory(<cnp.ndarray?>a, <cnp.ndarray?>b)


def shape_is(str where, str name, a, shape, str expected_text=""):
    """ValueError unless ``a`` (when given) has exactly ``shape``."""
    if a is None:
        return
    shape = tuple(shape)
    if isinstance(a, np.ndarray) and _same_shape(<cnp.ndarray>a, shape):
        return
    if a.shape != shape:
        hint = f" ({expected_text})" if expected_text else ""
        raise ValueError(f"{where}: {name} has shape {a.shape}; expected {shape}{hint}")


def ndim_at_least(str where, str name, a, int ndim, str meaning=""):
    if a.ndim < ndim:
        hint = f" {meaning}" if meaning else ""
        raise ValueError(f"{where}: {name} has shape {a.shape} ({a.ndim}-d); expected at least "
                         f"{ndim}-d{hint}")


def number(str where, str name, value, *, low=None, high=None, bint low_open=False,
           bint high_open=False, bint finite=True):
    """A real hyperparameter checked against [low, high] (or open ends): returns it as float."""
    cdef double v
    if type(value) is float:
        v = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {type(value).__name__}")
    else:
        v = float(value)
    if v != v or (finite and (v == float("inf") or v == float("-inf"))):
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


def integer(str where, str name, value, *, low=None, high=None, str expected=""):
    """An integer argument (a Python or NumPy int, never a bool or a float) in [low, high]:
    returns it as int. `expected` words the range in the message (default: the interval)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}"
                        + (f"; expected {expected}" if expected else ""))
    cdef object v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        interval = expected or (f"an int in [{'-inf' if low is None else low}, "
                                f"{'inf' if high is None else high}]")
        raise ValueError(f"{where}: {name} is {v}; expected {interval}")
    return v


def float_type(str where, dtype):
    """A dtype argument that must name float32 or float64: returns the numpy dtype."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.float32, np.float64):
        raise TypeError(f"{where}: dtype is {dtype!r}; expected numpy.float32 or numpy.float64")
    return dt


def choice(str where, str name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{where}: {name} is {value!r}; expected one of {tuple(options)}")
    return value


def blas_dim(str where, str name, n):
    """Dimensions passed to BLAS as 32-bit ints: refuse (never wrap) one of 2**31 or more."""
    if n >= 2**31:
        raise ValueError(f"{where}: {name} = {n} is too large for 32-bit BLAS; expected < 2**31")
    return n
