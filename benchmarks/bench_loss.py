"""Softmax and losses: mlkernels vs NumPy (and PyTorch when installed)."""
FAMILY = "loss"


def test_loss(run_bench, bench_case):
    run_bench(bench_case)
