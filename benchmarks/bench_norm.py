"""Normalization: mlkernels vs the NumPy compositions (and PyTorch when installed)."""
FAMILY = "norm"


def test_norm(run_bench, bench_case):
    run_bench(bench_case)
