"""Command line: ``python -m mlkernels {bench,check,info,demo,vecreport}``.

    python -m mlkernels bench                 quick side-by-side benchmark of every family
    python -m mlkernels bench --family linear --full --json results.json
    python -m mlkernels check                 every kernel vs its reference, every ISA variant
    python -m mlkernels info                  version, ISA variant, threads, BLAS
    python -m mlkernels demo [--plot F.png]   a guided tour of training, each step measured
    python -m mlkernels vecreport [--check]   which marked loops GCC vectorized (needs GCC, Cython)
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlkernels",
                                     description="mlkernels: fast training kernels for NumPy")
    sub = parser.add_subparsers(dest="command")
    bench = sub.add_parser("bench", help="side-by-side benchmark (mlkernels, NumPy, PyTorch)")
    bench.add_argument("--family", action="append", help="only this family (repeatable)")
    speed = bench.add_mutually_exclusive_group()
    speed.add_argument("--quick", dest="quick", action="store_true", default=True,
                       help="small sizes and few samples, under a minute (default)")
    speed.add_argument("--full", dest="quick", action="store_false",
                       help="the sizes of the README's figures, more samples")
    bench.add_argument("--samples", type=int, default=None, help="samples per implementation")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    check = sub.add_parser("check", help="every kernel vs its NumPy reference and gradients")
    check.add_argument("--family", action="append", help="only this family (repeatable)")
    sub.add_parser("info", help="version, ISA variant, threads, BLAS")
    demo = sub.add_parser("demo", help="the fundamentals of training, run and measured")
    demo.add_argument("--plot", metavar="FILE.png", help="save the loss curves (matplotlib)")
    from . import _vecreport
    vec = sub.add_parser("vecreport", help="did GCC vectorize every marked hot loop "
                         "(docs/vectorization.md)")
    _vecreport.add_arguments(vec)
    args = parser.parse_args(argv)

    if args.command == "bench":
        from . import _bench
        _bench.run(args.family, quick=args.quick, json_path=args.json, samples=args.samples)
        return 0
    if args.command == "check":
        from . import _check
        return _check.run(args.family)
    if args.command == "demo":
        from . import _demo
        _demo.run(out=sys.stdout, plot=args.plot)
        return 0
    if args.command == "vecreport":
        return _vecreport.run(args)
    if args.command == "info":
        from . import info
        print(json.dumps(info(), indent=2))
        return 0
    parser.print_help()
    return 0 if args.command is None and argv is not None else 2


if __name__ == "__main__":
    sys.exit(main())
