"""``python -m mlkernels check``: a self-test an installation can run without pytest.

Every row of the spec table against its NumPy reference (both dtypes, a few shapes) and
every backward against finite differences, on every ISA variant this CPU runs.
"""
from __future__ import annotations

import sys
import traceback
from typing import Optional, Sequence

import numpy as np

from . import _dispatch
from .specs import by_family, families
from .testing import assert_close, copy_args


def check_spec(spec) -> None:
    for i, shape in enumerate(list(spec.shapes)[:4]):
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(i)
            args, kwargs = spec.make_args(rng, np.dtype(dtype), shape)
            copies = copy_args(args)
            got = spec.results(spec.fast(*args, **kwargs))
            want = spec.results(spec.reference(*copies, **kwargs))
            scales = spec.scale(args, kwargs) if spec.scale else [None] * len(want)
            for g, w, s in zip(got, want, scales):
                assert_close(g, w, dtype, scale=s, err_msg=f"shape {shape}")
    if spec.gradcheck is not None:
        spec.gradcheck(np.random.default_rng(0))


def run(selected: Optional[Sequence[str]] = None, out=sys.stdout) -> int:
    fams = list(selected) if selected else families()
    failures = 0
    total = 0
    for isa in _dispatch.available_isas:
        with _dispatch.isa(isa):
            for family in fams:
                for spec in by_family(family):
                    total += 1
                    try:
                        check_spec(spec)
                        status = "ok"
                    except Exception as e:  # report every failure, then exit non-zero
                        failures += 1
                        status = "FAIL: " + "".join(traceback.format_exception_only(e)).strip()
                    print(f"{isa:<9} {spec.name:<28} {status}", file=out, flush=True)
    print(f"{total - failures} passed, {failures} failed", file=out)
    return 1 if failures else 0
