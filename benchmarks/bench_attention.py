"""Attention: mlkernels vs NumPy's dense version (and PyTorch when installed)."""
FAMILY = "attention"


def test_attention(run_bench, bench_case):
    run_bench(bench_case)
