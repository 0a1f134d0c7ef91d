"""Optimizer steps: mlkernels vs the in-place NumPy composition (and torch's fused steps)."""
FAMILY = "optim"


def test_optim(run_bench, bench_case):
    run_bench(bench_case)
