"""``python -m mlkernels demo gpt``: a character-level GPT trained on Shakespeare, on mlkernels.

The model is the bench's (``_train.GPT_MODEL``): 4 layers, width 128, 4 heads, a context of
128 characters. The text ships in the package (``mlkernels/data/shakespeare.txt.gz``, origin in
``mlkernels/data/README.md``); its last 10% is held out for the validation loss. The run
prints a sample before training, the loss as it goes down (with a progress bar) and the
tokens per second, then a sample after. ``run()`` returns the figures (the tests assert them).
"""
from __future__ import annotations

import gzip
import math
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from . import nn, optim

DATA = os.path.join(os.path.dirname(__file__), "data", "shakespeare.txt.gz")


def load_text(path: str = DATA) -> str:
    """The text at path (gzip-compressed if its name ends in .gz: the shipped text is, a
    third of its size)."""
    if path.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


class Chars:
    """The vocabulary: every distinct character of the text, in sorted order."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def _batch(data: np.ndarray, batch: int, T: int, rng: np.random.Generator,
           idx: np.ndarray, targets: np.ndarray) -> None:
    """Fill idx and targets (batch, T) with random windows of the data (targets: one on)."""
    starts = rng.integers(0, len(data) - T - 1, batch)
    for row, s in enumerate(starts):
        idx[row] = data[s:s + T]
        targets[row] = data[s + 1:s + T + 1]


def _lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to lr/10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def evaluate(model: nn.GPT, data: np.ndarray, batch: int, batches: int, seed: int) -> float:
    """The mean loss (nats/char) over ``batches`` fixed random windows of ``data``, eval mode."""
    T = model.block_size
    rng = np.random.default_rng(seed)
    idx, targets = np.empty((batch, T), np.int64), np.empty((batch, T), np.int64)
    model.eval()
    total = 0.0
    for _ in range(batches):
        _batch(data, batch, T, rng, idx, targets)
        total += float(model.forward(idx, targets))
    model.train()
    return total / batches


def sample(model: nn.GPT, chars: Chars, n: int, seed: int, prompt: str = "\n") -> str:
    ids = model.generate(chars.encode(prompt)[None, :], n, temperature=0.8, seed=seed)
    return chars.decode(ids[0, len(prompt):])


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(1, total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def run(steps: int = 1000, batch: int = 16, lr: float = 5e-3, seed: int = 0,
        eval_every: int = 100, eval_batches: int = 8, sample_chars: int = 300,
        out=sys.stdout, plot: Optional[str] = None, text: Optional[str] = None,
        distributed: bool = False) -> Dict[str, object]:
    """Train the demo's GPT; returns the losses, the validation losses, tokens/s, samples.

    ``distributed``: data parallel over MPI (run under ``mpiexec -n P``): every rank draws
    the same batch and computes on its ``batch / P`` rows, one Allreduce averages the
    gradients (``mlkernels.distributed``), every rank takes the same step; rank 0 evaluates,
    samples and prints. The losses are those of one process on the whole batch, up to the
    order of the sums."""
    from ._train import GPT_MODEL
    comm, rows = None, slice(0, batch)
    if distributed:
        from . import distributed as dist
        comm = dist.world()
        if batch % comm.size:
            raise SystemExit(f"mlkernels demo gpt --distributed: --batch {batch} must be a "
                             f"multiple of the {comm.size} ranks")
        dist.set_threads_per_rank(comm)
        rows = dist.shard(batch, comm.rank, comm.size)
        if comm.rank != 0:
            out, plot = None, None
    text = load_text() if text is None else text
    chars = Chars(text)
    data = chars.encode(text)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    T = GPT_MODEL["block_size"]
    model = nn.GPT(len(chars.chars), T, GPT_MODEL["n_layer"], GPT_MODEL["n_head"],
                   GPT_MODEL["n_embd"], seed=seed)
    n_params = sum(p.size for p in model.parameters())
    # weight decay on the matrices only (as nanoGPT): not on biases and LayerNorm gains
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = optim.AdamW([{"params": decay, "weight_decay": 0.1},
                       {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))
    if comm is not None:                   # rank 0's weights; the gradients in one buffer
        dist.broadcast_parameters(model, comm=comm)
        flat = dist.flat_grads(model)
    grads = [g for p, g in zip(model.parameters(), model.grads()) if p.ndim == 2] + \
        [g for p, g in zip(model.parameters(), model.grads()) if p.ndim < 2]
    say = (lambda s="", end="\n": print(s, end=end, file=out, flush=True)) if out is not None \
        else (lambda s="", end="\n": None)
    tty = out is not None and hasattr(out, "isatty") and out.isatty()
    say(f"mlkernels demo gpt: a character-level GPT ({GPT_MODEL['n_layer']} layers, width "
        f"{GPT_MODEL['n_embd']}, {GPT_MODEL['n_head']} heads, context {T}; {n_params:,} "
        f"parameters) on {len(text):,} characters of Shakespeare ({len(chars.chars)} distinct; "
        f"the last 10% held out)")
    say(f"{steps} steps of {batch} x {T} characters, AdamW (lr {lr:g}, warm-up and cosine decay)"
        + (f"; {comm.size} ranks, {batch // comm.size} sequences each" if comm else ""))
    root = comm is None or comm.rank == 0
    before = sample(model, chars, sample_chars, seed) if root else ""
    say("\nSample before training:\n" + before.rstrip() + "\n")

    rng = np.random.default_rng(seed + 1)
    idx, targets = np.empty((batch, T), np.int64), np.empty((batch, T), np.int64)
    losses: List[float] = []
    vals: List[tuple] = [(0, evaluate(model, val, batch, eval_batches, seed + 2) if root
                          else float("nan"))]
    say(f"step {0:5d}: validation loss {vals[-1][1]:.3f} nats/char")
    warmup = max(1, min(100, steps // 10))
    train_seconds, every, width = 0.0, max(1, eval_every // 4), 0
    for step in range(steps):
        _batch(train, batch, T, rng, idx, targets)
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup)
        t0 = time.perf_counter()
        loss = model.forward(idx[rows], targets[rows])
        model.backward()
        if comm is not None:
            dist.allreduce_grads(flat, comm)        # the whole batch's gradient, everywhere
            loss = comm.allreduce(float(loss)) / comm.size
        opt.step(grads)
        train_seconds += time.perf_counter() - t0
        losses.append(float(loss))
        done = step + 1
        rate = batch * T * done / train_seconds
        recent = float(np.mean(losses[-20:]))
        if root and (done % eval_every == 0 or done == steps):
            vals.append((done, evaluate(model, val, batch, eval_batches, seed + 2)))
        line = (f"step {done:5d}/{steps} {_bar(done, steps)} loss {recent:.3f}  "
                f"val {vals[-1][1]:.3f}  {rate:,.0f} tokens/s")
        if tty:                       # (padded: a shorter line must cover the last one)
            say("\r" + line.ljust(width), end="")
            width = len(line)
        elif done % every == 0 or done == steps:
            say(line)
    if tty:
        say()
    after = sample(model, chars, sample_chars, seed) if root else ""
    tokens_per_s = batch * T * steps / train_seconds if steps else 0.0
    say(f"\nvalidation loss {vals[0][1]:.3f} -> {vals[-1][1]:.3f} nats/char; "
        f"{tokens_per_s:,.0f} tokens/s over {train_seconds:.1f} s of training")
    say("\nSample after training:\n" + after.rstrip())
    results = {"losses": losses, "val": vals, "tokens_per_s": tokens_per_s,
               "train_seconds": train_seconds, "before": before, "after": after,
               "vocab_size": len(chars.chars), "parameters": n_params}
    if plot:
        _plot(results, plot)
        say(f"\nloss curve saved to {plot}")
    return results


def _plot(results: Dict[str, object], path: str) -> None:
    from ._demo import pyplot
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(range(1, len(results["losses"]) + 1), results["losses"], alpha=0.6,
            label="training loss (one batch)")
    steps, vals = zip(*results["val"])
    ax.plot(steps, vals, "o-", label="validation loss (held-out 10%)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.set_title("mlkernels demo gpt: a character-level GPT on Shakespeare")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
