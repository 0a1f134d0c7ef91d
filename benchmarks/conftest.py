"""pytest-benchmark suites: ``pytest benchmarks`` (``-k linear`` for one family).

Every case comes from the kernel spec table (``mlkernels/specs``): the same cases
``python -m mlkernels bench`` runs, each implementation (mlkernels, NumPy, PyTorch when
importable) on the same inputs, grouped so that pytest-benchmark prints them side by side.
A bench module sets ``FAMILY = "<family>"`` and defines a test taking ``bench_case``.
"""
import pytest

from mlkernels.specs import by_family


def pytest_generate_tests(metafunc):
    if "bench_case" not in metafunc.fixturenames:
        return
    params = []
    for spec in by_family(metafunc.module.FAMILY):
        for case in spec.bench(False) if spec.bench else []:
            for impl in case.impls:
                params.append(pytest.param((spec.name, case, impl),
                                           id=f"{spec.name}[{case.label}]-{impl}"))
    metafunc.parametrize("bench_case", params)


@pytest.fixture
def run_bench(benchmark):
    """run_bench(bench_case): time one implementation of one case."""
    def run(bench_case):
        name, case, impl = bench_case
        benchmark.group = f"{name} {case.label}"
        benchmark.extra_info.update(nbytes=case.nbytes, flops=case.flops)
        benchmark(case.impls[impl])
    return run
