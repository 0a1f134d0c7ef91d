"""Fuzzing every public kernel from the spec table.

Each example takes a valid call from a spec row (``make_args``) and breaks or bends one
thing: the dtype of one array (every NumPy dtype, byte-swapped floats, the other float), its
shape (one more or one fewer dimension, a size off by one), its layout (non-contiguous,
Fortran order, negative strides, read-only, misaligned), or replaces it with a Python
scalar, a list or None. The property:

* the call either returns what the NumPy reference returns on the same arguments (within
  tolerance), or raises TypeError/ValueError with a message;
* after an error, no array argument has changed (outputs, parameters, running statistics
  and optimizer state included) -- nothing half-written.

Run more examples with ``pytest tests/test_fuzz.py --hypothesis-profile=long`` (50x).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

# 50x the examples under `pytest --hypothesis-profile=long` (registered in tests/conftest.py)
LONG = 50 if settings.default.max_examples >= 5000 else 1

from mlkernels.specs import SPECS
from mlkernels.testing import assert_close, copy_args

NAMES = sorted(SPECS)
ALL_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64,
              np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
              object, ">f4", ">f8", "<f4", "<f8"]
try:    # the 16-bit storage dtypes (kernels that take them must match the reference too)
    import ml_dtypes
    ALL_DTYPES.append(ml_dtypes.bfloat16)
except ImportError:
    pass


def snapshot(args, kwargs):
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    arrays += [x for a in list(args) + list(kwargs.values()) if isinstance(a, (list, tuple))
               for x in a if isinstance(x, np.ndarray)]
    return [(a, a.copy()) for a in arrays]


def misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def reversed_strides(a):
    if a.ndim == 0:
        return a
    b = np.empty_like(a)[..., ::-1] if a.shape[-1] else a.copy()
    b[...] = a
    return b


def gapped(a):
    if a.ndim == 0:
        return a
    # the gaps hold a value a kernel must never read: NaN, or an integer's largest value
    gap = np.iinfo(a.dtype).max if a.dtype.kind in "iu" else np.nan if a.dtype.kind in "fcV" \
        else 0
    big = np.full(a.shape[:-1] + (2 * a.shape[-1] + 1,), gap, a.dtype)
    b = big[..., 1::2]
    b[...] = a
    return b


LAYOUTS = {"noncontiguous": gapped, "fortran": np.asfortranarray, "reversed": reversed_strides,
           "readonly": readonly, "misaligned": misaligned}


def mutate(data, args, kwargs):
    """Bend one argument; returns (args, kwargs, description)."""
    slots = [("arg", i) for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    slots += [("kw", k) for k, v in kwargs.items() if isinstance(v, np.ndarray)]
    if not slots:
        return args, kwargs, "unchanged"
    where, key = data.draw(st.sampled_from(slots))
    args = list(args)
    current = args[key] if where == "arg" else kwargs[key]
    kind = data.draw(st.sampled_from(["dtype", "shape", "layout", "python"]))
    if kind == "dtype":
        dtype = data.draw(st.sampled_from(ALL_DTYPES))
        with np.errstate(all="ignore"):
            new = current.astype(dtype)
        what = f"dtype {np.dtype(dtype)}"
    elif kind == "shape":
        change = data.draw(st.sampled_from(["add_dim", "drop_dim", "grow", "shrink"]))
        if change == "add_dim":
            new = current[None]
        elif change == "drop_dim" and current.ndim:
            new = current.reshape(current.shape[1:]) if current.shape[0] == 1 else \
                np.zeros(current.shape[1:], current.dtype)
        elif change == "grow" and current.ndim:
            new = np.concatenate([current, current[..., :1] if current.shape[-1] else
                                  np.zeros(current.shape[:-1] + (1,), current.dtype)], axis=-1)
        elif change == "shrink" and current.ndim and current.shape[-1]:
            new = current[..., :-1].copy()
        else:
            new = current[None]
        what = f"shape {current.shape} -> {new.shape}"
    elif kind == "layout":
        name = data.draw(st.sampled_from(sorted(LAYOUTS)))
        new = LAYOUTS[name](current)
        what = f"layout {name}"
    else:
        new = data.draw(st.sampled_from([1.0, 0, None, "x", [1.0, 2.0],
                                         current.tolist() if current.size < 50 else [1.0]]))
        what = f"python {type(new).__name__}"
    if where == "arg":
        args[key] = new
    else:
        kwargs = dict(kwargs, **{key: new})
    return tuple(args), kwargs, f"{where} {key}: {what}"


@settings(max_examples=300 * LONG, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_every_kernel(data):
    spec = SPECS[data.draw(st.sampled_from(NAMES), label="kernel")]
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64])))
    shape = data.draw(st.sampled_from(list(spec.shapes)))
    args, kwargs = spec.make_args(np.random.default_rng(0), dtype, shape)
    args, kwargs, what = mutate(data, args, kwargs)
    before = snapshot(args, kwargs)
    ref_args, ref_kwargs = copy_args(args), dict(kwargs)
    try:
        with np.errstate(all="ignore"):
            result = spec.fast(*args, **kwargs)
    except (TypeError, ValueError) as e:
        assert str(e), f"{spec.name} ({what}): an error without a message"
        for a, saved in before:
            assert np.array_equal(a, saved, equal_nan=a.dtype.kind in "fc"), \
                f"{spec.name} ({what}) raised {e!r} but modified an argument"
        return
    # accepted: it must be what the reference computes on the same arguments
    try:
        with np.errstate(all="ignore"):
            expected = spec.reference(*ref_args, **ref_kwargs)
    except Exception as e:  # the reference cannot make sense of it: neither should we
        pytest.fail(f"{spec.name} ({what}) accepted arguments its reference rejects: {e!r}")
    got, want = spec.results(result), spec.results(expected)
    assert len(got) == len(want)
    # the precision the kernel worked in: its first array or NumPy-scalar result (a scalar loss
    # of float32 logits is a float32 scalar, whatever dtype the other arguments were drawn in)
    out_dtype = next((g.dtype for g in got if isinstance(g, (np.ndarray, np.generic))), dtype)
    scales = spec.scale(ref_args, ref_kwargs) if spec.scale else [None] * len(want)
    for g, w, s in zip(got, want, scales):
        assert_close(g, w, out_dtype if out_dtype.kind == "f" or out_dtype.name == "bfloat16"
                     else dtype, scale=s,
                     err_msg=f"{spec.name} ({what})")
