"""``mlkernels report FILE.json ...``: benchmark results as tables and plots.

The figures in the README and in ``docs/`` are rendered from the JSON files that
``mlkernels bench --json`` writes (and that ``benchmarks/results/`` keeps), never typed by
hand. ``report`` prints a markdown table per family; ``--plot DIR`` saves PNG plots (needs
matplotlib, the ``demo`` extra); ``--update FILE.md ...`` rewrites the generated blocks of
those files in place:

    <!-- report: headline -->            the README's headline table
    <!-- report: family=norm -->         every row of one family
    ... (anything here is replaced) ...
    <!-- report: end -->

The JSON layout is described in docs/benchmarks.md.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: (family, kernel, case) rows of the README's headline table, in order. A row that no
#: results file holds is left out.
HEADLINE: List[Tuple[str, str, str]] = [
    ("train", "MLP 784-256-256-10", "float32 batch 64"),
    ("train", "MLP 784-1024-1024-10", "float32 batch 256"),
    ("train", "MLP 1024-4096-1024", "float32 batch 1024"),
    ("train", "GPT 4x128, 4 heads, context 128", "float32 batch 16"),
    ("linear", "linear", "float32 4096x1024 -> 1024"),
    ("activations", "gelu", "float32 16M"),
    ("activations", "gelu_backward", "float32 16M"),
    ("norm", "layer_norm", "float32 16384x1024"),
    ("norm", "layer_norm_backward", "float32 16384x1024"),
    ("loss", "cross_entropy", "float32 4096x1000"),
    ("optim", "adamw_step", "float32 16M params"),
    ("attention", "scaled_dot_product_attention", "float32 B4 H8 T1024 d64 causal"),
    ("attention", "scaled_dot_product_attention_backward", "float32 B4 H8 T1024 d64 causal"),
]


def load(paths: Iterable[str]) -> List[dict]:
    """Every results file, with its rows; a later file's row replaces an earlier one's."""
    runs = []
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        if "rows" not in run or "info" not in run:
            raise SystemExit(f"mlkernels report: {path} is not a `mlkernels bench --json` file")
        run["path"] = path
        runs.append(run)
    return runs


def _time(sec: Optional[float]) -> str:
    if sec is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if sec >= scale:
            return f"{sec / scale:.3g} {unit}"
    return f"{sec / 1e-9:.3g} ns"


def _ratio(x: Optional[float]) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def _cases(runs: Sequence[dict]) -> Dict[Tuple[str, str, str], Dict[str, dict]]:
    """{(family, kernel, case): {impl: row}}, in the order first seen."""
    cases: Dict[Tuple[str, str, str], Dict[str, dict]] = {}
    for run in runs:
        for row in run["rows"]:
            if "seconds" in row:            # (rows of peak memory have no time)
                cases.setdefault((row["family"], row["kernel"], row["case"]), {})[row["impl"]] = row
    return cases


def _peer(impls: Dict[str, dict], prefix: str) -> Optional[dict]:
    return next((r for name, r in impls.items() if name.startswith(prefix)), None)


def _line(kernel: str, case: str, impls: Dict[str, dict]) -> str:
    ours = impls.get("mlkernels") or next(iter(impls.values()))
    numpy, torch = _peer(impls, "numpy"), _peer(impls, "torch")
    roof = ours.get("time_vs_copy")
    return (f"| {kernel} | {case} | {_time(ours['seconds'])} "
            f"| {_time(numpy['seconds']) if numpy else '-'} "
            f"| {_time(torch['seconds']) if torch else '-'} "
            f"| {_ratio(numpy['seconds'] / ours['seconds']) if numpy else '-'} "
            f"| {_ratio(torch['seconds'] / ours['seconds']) if torch else '-'} "
            f"| {_ratio(roof) if roof else '-'} |")


HEADER = ("| kernel | case | mlkernels | NumPy | PyTorch | vs NumPy | vs PyTorch | vs copy |\n"
          "|---|---|---|---|---|---|---|---|")


def machine(runs: Sequence[dict]) -> str:
    """One line naming the machine, versions and date of the runs."""
    info = runs[0]["info"]
    dates = sorted({r.get("started", "?")[:10] for r in runs})
    torch = runs[0].get("torch")
    return (f"{info.get('cpu', info.get('machine'))}, {info.get('cores', '?')} cores, ISA "
            f"{info['isa']}, {info['num_threads']} threads; mlkernels {info['version']}, NumPy "
            f"{info['numpy']}, SciPy {info['scipy']}" + (f", PyTorch {torch}" if torch else "")
            + f"; {', '.join(dates)}; " + "; ".join(
                f"medians of {r['samples']} samples (`{r.get('command', 'mlkernels bench')}`)"
                for r in runs))


def headline(runs: Sequence[dict]) -> str:
    cases = _cases(runs)
    shown = [key for key in HEADLINE if key in cases]
    lines = [HEADER] + [_line(k, c, cases[(f, k, c)]) for f, k, c in shown]
    # the footer names only the runs whose rows the table shows (a later run's row wins)
    source = {}
    for i, run in enumerate(runs):
        for row in run["rows"]:
            source[(row.get("family"), row.get("kernel"), row.get("case"))] = i
    used = sorted({source[key] for key in shown if key in source})
    note = ("vs NumPy / vs PyTorch: their time over ours (above 1: we are faster); vs copy: our "
            "time over a copy of the same bytes (1.00x: the memory's speed).")
    return "\n".join(lines) + "\n\n" + machine([runs[i] for i in used] or runs) + ". " + note


def family(runs: Sequence[dict], name: str) -> str:
    cases = _cases(runs)
    lines = [HEADER] + [_line(k, c, impls) for (f, k, c), impls in cases.items() if f == name]
    return "\n".join(lines) + "\n\n" + machine(runs) + "."


def markdown(runs: Sequence[dict]) -> str:
    families = []
    for run in runs:
        for row in run["rows"]:
            if row["family"] not in families:
                families.append(row["family"])
    return "\n\n".join(f"### {name}\n\n{family(runs, name)}" for name in families)


_BLOCK = re.compile(r"(<!-- report: (headline|family=[\w-]+) -->\n)(.*?)(<!-- report: end -->)",
                    re.S)


def update(path: str, runs: Sequence[dict]) -> int:
    """Rewrite the generated blocks of a markdown file; returns how many were rewritten."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    count = 0

    def render(m: re.Match) -> str:
        nonlocal count
        count += 1
        what = m.group(2)
        body = headline(runs) if what == "headline" else family(runs, what.split("=", 1)[1])
        return m.group(1) + body + "\n" + m.group(4)
    text = _BLOCK.sub(render, text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return count


def plot(runs: Sequence[dict], folder: str) -> List[str]:
    """Two PNG plots: each kernel's time against a copy of its bytes (the memory roofline),
    and its speed against NumPy and PyTorch."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise SystemExit("mlkernels report --plot needs matplotlib: "
                         "pip install 'mlkernels[demo]'") from e
    os.makedirs(folder, exist_ok=True)
    cases = _cases(runs)
    saved = []
    roof = [(f"{k} ({c})", impls["mlkernels"]["time_vs_copy"])
            for (f, k, c), impls in cases.items()
            if "mlkernels" in impls and impls["mlkernels"].get("time_vs_copy")]
    if roof:
        fig, ax = plt.subplots(figsize=(9, 0.28 * len(roof) + 1.5))
        ax.barh([n for n, _ in roof], [1 / v for _, v in roof], color="tab:blue")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel("fraction of the memory roofline (a copy of the same bytes = 1)")
        ax.invert_yaxis()
        ax.set_title("mlkernels: speed against the memory")
        fig.tight_layout()
        path = os.path.join(folder, "roofline.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        saved.append(path)
    speed = []
    for (f, k, c), impls in cases.items():
        ours = impls.get("mlkernels")
        numpy, torch = _peer(impls, "numpy"), _peer(impls, "torch")
        if ours and (numpy or torch):
            speed.append((f"{k} ({c})", numpy["seconds"] / ours["seconds"] if numpy else None,
                          torch["seconds"] / ours["seconds"] if torch else None))
    if speed:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(speed) + 1.5))
        ys = list(range(len(speed)))
        ax.barh([y - 0.2 for y in ys], [s[1] or 0 for s in speed], height=0.4,
                label="vs NumPy")
        ax.barh([y + 0.2 for y in ys], [s[2] or 0 for s in speed], height=0.4,
                label="vs PyTorch")
        ax.set_yticks(ys, [s[0] for s in speed])
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel("speedup (their time / ours; > 1: mlkernels is faster)")
        ax.invert_yaxis()
        ax.legend()
        ax.set_title("mlkernels against NumPy and PyTorch")
        fig.tight_layout()
        path = os.path.join(folder, "speedup.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        saved.append(path)
    return saved


def main(paths: Sequence[str], plot_folder: Optional[str] = None,
         update_paths: Sequence[str] = (), out=None) -> int:
    import sys
    out = out or sys.stdout
    runs = load(paths)
    if update_paths:
        for path in update_paths:
            n = update(path, runs)
            print(f"{path}: {n} generated block(s) rewritten", file=out)
    else:
        print(markdown(runs), file=out)
    if plot_folder:
        for path in plot(runs, plot_folder):
            print(f"saved {path}", file=out)
    return 0
