"""``mlkernels demo gpt``: the shipped text, a short run's figures and output, the CLI."""
import io
import os
import subprocess
import sys
import tempfile

import numpy as np

import mlkernels
from mlkernels import _demo_gpt


def test_the_text_ships_with_its_origin():
    text = _demo_gpt.load_text()
    assert 350_000 <= len(text) <= 420_000 and text.startswith("First Citizen:")
    assert text.endswith("\n") and not text.endswith("\n\n")
    here = os.path.join(os.path.dirname(mlkernels.__file__), "data")
    readme = open(os.path.join(here, "README.md")).read()
    assert "public domain" in readme and "char-rnn" in readme
    root = os.path.dirname(os.path.dirname(mlkernels.__file__))
    pyproject = os.path.join(root, "pyproject.toml")
    if os.path.exists(pyproject):               # (from a source tree)
        assert '"data/*.txt.gz"' in open(pyproject).read()
        assert "mlkernels/data/shakespeare.txt.gz" in open(os.path.join(root, "MANIFEST.in")).read()


def test_chars_round_trip():
    chars = _demo_gpt.Chars("hello, world\n")
    ids = chars.encode("low\n")
    assert ids.dtype == np.int64 and chars.decode(ids) == "low\n"


def test_a_short_run_learns_and_prints_its_progress():
    buf = io.StringIO()
    r = _demo_gpt.run(steps=40, batch=4, eval_every=20, eval_batches=2, sample_chars=40,
                      out=buf)
    text = buf.getvalue()
    first, last = np.mean(r["losses"][:5]), np.mean(r["losses"][-5:])
    assert last < first - 0.5, (first, last)
    assert r["val"][-1][1] < r["val"][0][1] - 0.5 and r["val"][0][0] == 0
    assert [s for s, _ in r["val"]] == [0, 20, 40]
    assert r["tokens_per_s"] > 0 and len(r["after"]) == 40 and r["vocab_size"] == 63
    for words in ("Sample before training", "Sample after training", "tokens/s",
                  "step    40/40 [########################]", "validation loss"):
        assert words in text
    assert "\r" not in text                      # not a terminal: one line per 5 steps
    assert text.count("/40 [") == 8


def test_cli_demo_gpt(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlkernels", "demo", "gpt", "--steps", "2",
                        "--batch", "2"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Sample after training" in r.stdout and "step     2/2" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "mlkernels", "demo", "gpt", "--steps", "0"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "--steps" in bad.stderr


def test_plot_saves_the_loss_curve(tmp_path):
    import pytest
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the demo extra)")
    path = tmp_path / "loss.png"
    _demo_gpt.run(steps=2, batch=2, eval_every=2, eval_batches=1, sample_chars=5, out=None,
                  plot=str(path))
    assert path.stat().st_size > 10_000
