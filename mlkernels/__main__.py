"""Command line: ``mlkernels {bench,check,info,report,demo,vecreport}`` (or
``python -m mlkernels``).

    mlkernels bench                         quick side-by-side benchmark of every family
    mlkernels bench --family train --full --json results.json
    mlkernels check                         every kernel vs its reference, every ISA variant
    mlkernels info                          version, ISA variant, threads, BLAS
    mlkernels report results.json --plot figs   tables and plots of bench --json results
    mlkernels demo [--plot F.png]           a guided tour of training, each step measured
    mlkernels demo gpt [--steps N] [--plot F.png]   a character-level GPT on Shakespeare
    mpiexec -n 2 mlkernels demo gpt --distributed   the same, data parallel over MPI
    mlkernels vecreport [--check]           which marked loops GCC vectorized (GCC, Cython)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence


def _writable(path: str, what: str) -> str:
    """Refuse an output path whose folder does not exist or cannot be written, before any
    work is done (not after a long run)."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise SystemExit(f"mlkernels: {what} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise SystemExit(f"mlkernels: {what} {path!r}: cannot write there")
    return path


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .specs import families
    from ._bench import EXTRA_FAMILIES
    fams = families() + sorted(EXTRA_FAMILIES)
    parser = argparse.ArgumentParser(
        prog="mlkernels", description="mlkernels: fast training kernels for NumPy "
        "(also run as `python -m mlkernels`)")
    parser.add_argument("--version", action="version", version=f"mlkernels {__version__}")
    sub = parser.add_subparsers(dest="command",
                                metavar="{bench,check,info,report,demo,vecreport}")
    bench = sub.add_parser(
        "bench", help="side-by-side benchmark (mlkernels, NumPy, PyTorch)",
        description="Time every kernel family side by side with NumPy (and PyTorch when it is "
        "installed), samples interleaved, no pauses. Families: " + ", ".join(fams) +
        " (train: whole MLP training steps; calls: the cost of one small call; storage16:"
        " every bfloat16/float16 case against float32 and PyTorch).")
    bench.add_argument("--family", action="append", choices=fams, metavar="FAMILY",
                       help=f"only this family (repeatable): {', '.join(fams)}")
    speed = bench.add_mutually_exclusive_group()
    speed.add_argument("--quick", dest="quick", action="store_true", default=True,
                       help="small sizes and few samples, about a minute (default)")
    speed.add_argument("--full", dest="quick", action="store_false",
                       help="the sizes of the README's figures, more samples")
    bench.add_argument("--samples", type=int, default=None, help="samples per implementation")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON "
                       "(schema: docs/benchmarks.md)")
    check = sub.add_parser("check", help="every kernel vs its NumPy reference and gradients")
    check.add_argument("--family", action="append", choices=families(), metavar="FAMILY",
                       help=f"only this family (repeatable): {', '.join(families())}")
    sub.add_parser("info", help="version, ISA variant, threads, BLAS")
    report = sub.add_parser(
        "report", help="benchmark results (bench --json files) as tables and plots",
        description="Render `mlkernels bench --json` files as markdown tables (printed), PNG "
        "plots (--plot), or the generated blocks of markdown files (--update).")
    report.add_argument("files", nargs="+", metavar="FILE.json")
    report.add_argument("--plot", metavar="DIR", help="save roofline.png and speedup.png there")
    report.add_argument("--update", action="append", default=[], metavar="FILE.md",
                        help="rewrite the <!-- report: ... --> blocks of this file (repeatable)")
    demo = sub.add_parser("demo", help="the fundamentals of training, run and measured "
                                       "(tour), or a character-level GPT trained (gpt)")
    demo.add_argument("which", nargs="?", choices=("tour", "gpt"), default="tour",
                      help="tour (default): the fundamentals; gpt: a GPT on Shakespeare")
    demo.add_argument("--plot", metavar="FILE.png", help="save the loss curves (matplotlib)")
    demo.add_argument("--steps", type=int, default=1000, help="gpt: training steps (1000)")
    demo.add_argument("--batch", type=int, default=16, help="gpt: sequences per step (16)")
    demo.add_argument("--lr", type=float, default=5e-3, help="gpt: peak learning rate (5e-3)")
    demo.add_argument("--seed", type=int, default=0, help="gpt: weights, batches, samples")
    demo.add_argument("--distributed", action="store_true",
                      help="gpt: data parallel over MPI (mpiexec -n P mlkernels demo gpt "
                           "--distributed; pip install 'mlkernels[dist]')")
    from . import _vecreport
    vec = sub.add_parser("vecreport", help="did GCC vectorize every marked hot loop "
                         "(docs/vectorization.md)")
    _vecreport.add_arguments(vec)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from . import _bench
            if args.samples is not None and args.samples < 1:
                parser.error("--samples must be at least 1")
            json_path = _writable(args.json, "--json") if args.json else None
            _bench.run(args.family, quick=args.quick, json_path=json_path,
                       samples=args.samples)
            return 0
        if args.command == "check":
            from . import _check
            return _check.run(args.family)
        if args.command == "demo":
            from . import _demo
            plot = _writable(args.plot, "--plot") if args.plot else None
            if args.which == "gpt":
                from . import _demo_gpt
                if args.steps < 1 or args.batch < 1:
                    parser.error("--steps and --batch must be at least 1")
                _demo_gpt.run(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                              out=sys.stdout, plot=plot, distributed=args.distributed)
                return 0
            _demo.run(out=sys.stdout, plot=plot)
            return 0
        if args.command == "report":
            from . import _report
            for path in args.files:
                if not os.path.isfile(path):
                    raise SystemExit(f"mlkernels report: {path}: no such file")
            return _report.main(args.files, args.plot, args.update)
        if args.command == "vecreport":
            from . import _vecreport
            return _vecreport.run(args)
        if args.command == "info":
            from . import info
            print(json.dumps(info(), indent=2))
            return 0
    except BrokenPipeError:          # `mlkernels info | head`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    parser.print_help()
    return 0 if args.command is None and argv is not None else 2


if __name__ == "__main__":
    sys.exit(main())
