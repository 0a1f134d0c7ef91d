"""The kernel spec table: one row per public kernel, driving tests, benchmarks and the CLI.

A row (``KernelSpec``) ties together the fast function, its NumPy reference, an input
generator, how its gradient is checked and how it is benchmarked. ``tests/test_specs.py``
runs every row against its reference on both dtypes and every ISA variant and runs its
gradient check; ``python -m mlkernels bench`` and ``check`` walk the same rows. So adding a
kernel means: one Cython function, one thin-API function, one reference function, one row
here (in ``mlkernels/specs/<family>.py``, which this package discovers by itself).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

Args = Tuple[tuple, dict]


@dataclass(frozen=True)
class BenchCase:
    """One benchmark: several implementations of the same computation on the same inputs.

    ``impls`` maps an implementation name ("mlkernels", "numpy", "torch", or a variant such
    as "mlkernels (no out=)") to a zero-argument callable. ``nbytes`` is the memory traffic
    one call cannot avoid (for GB/s), ``flops`` its arithmetic (for GFLOP/s); ``copy_nbytes``
    is the size of the array whose copy, timed in the same run, is the memory roofline
    (``copy_factor`` copies of it: e.g. 1.5 for a backward that reads two arrays and writes one).
    ``measure_memory``: also measure each implementation's peak memory in one extra, untimed
    call (``_memory.peak_memory``: NumPy's allocations by tracemalloc, and the growth of the
    resident set's high-water mark where Linux lets us reset it).
    ``roofline`` replaces that copy by another reference operation (e.g. an in-place scale for
    the optimizers), still measured in the same run and weighted by ``copy_factor``.
    ``dtype`` and ``shape`` describe the main input (for the JSON results; ``label`` says the
    same for people).
    ``memory``, when given, measures the peak memory of one call of each implementation and
    returns ``{implementation: {"text": one line for the table, **figures for the JSON}}``.
    Samples are taken back to back, round-robin over the implementations, with no pause
    between them: that is how users run kernels (a pause would let every library's idle
    threads go to sleep and hide how thread pools disturb each other).
    """
    label: str
    impls: Mapping[str, Callable[[], object]]
    dtype: str = "float32"
    shape: Tuple[int, ...] = ()
    nbytes: float = 0.0
    flops: float = 0.0
    measure_memory: bool = False
    copy_nbytes: int = 0
    copy_factor: float = 1.0
    roofline: Optional[Callable[[], object]] = None
    memory: Optional[Callable[[], Mapping[str, Mapping[str, object]]]] = None
    #: tokens one call processes (a language model's training step): reported as tokens/s
    tokens: int = 0


@dataclass(frozen=True)
class KernelSpec:
    """One public kernel.

    name       : the public function's name (``mlkernels.<name>``)
    family     : "linear", "activations", "norm", "optim", "loss"
    fast       : the mlkernels function
    reference  : the float64 NumPy oracle, same arguments (``mlkernels.reference.<name>``)
    make_args  : (rng, dtype, shape) -> (args, kwargs): inputs for the given size
    shapes     : sizes the correctness tests run (interpreted by make_args)
    outputs    : picks the arrays to compare from a result (default: the result, or the
                 non-None items of a tuple)
    scale      : optional (args, kwargs) -> list of per-output error scales (reductions)
    gradcheck  : optional (rng) -> None: runs ``testing.gradcheck`` for this backward
    bench      : optional (quick: bool) -> list of BenchCase
    backward_of: for a backward, the name of its forward
    """
    name: str
    family: str
    fast: Callable
    reference: Callable
    make_args: Callable[[np.random.Generator, np.dtype, tuple], Args]
    shapes: Sequence[tuple] = ()
    outputs: Optional[Callable[[object], List[object]]] = None
    scale: Optional[Callable[[tuple, dict], List[object]]] = None
    gradcheck: Optional[Callable[[np.random.Generator], None]] = None
    bench: Optional[Callable[[bool], List[BenchCase]]] = None
    backward_of: Optional[str] = None
    tags: frozenset = field(default_factory=frozenset)

    def results(self, result) -> List[object]:
        if self.outputs is not None:
            return list(self.outputs(result))
        if isinstance(result, tuple):
            return [r for r in result if r is not None]
        return [result]


def torch_or_none():
    """PyTorch when it is importable (a benchmark peer only, never a dependency)."""
    try:
        import torch
    except Exception:
        return None
    return torch


def _load() -> Dict[str, KernelSpec]:
    table: Dict[str, KernelSpec] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        for spec in importlib.import_module(f"{__name__}.{module}").SPECS:
            if spec.name in table:
                raise RuntimeError(f"kernel spec {spec.name!r} is defined twice")
            table[spec.name] = spec
    return table


SPECS: Dict[str, KernelSpec] = _load()


def families() -> List[str]:
    return sorted({s.family for s in SPECS.values()})


def by_family(family: Optional[str] = None) -> List[KernelSpec]:
    return [s for s in SPECS.values() if family is None or s.family == family]
