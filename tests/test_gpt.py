"""The GPT layers (mlkernels/gpt.py, re-exported by mlkernels.nn): a twin run against PyTorch
and the NumPy-reference backend, gradients against finite differences, the state dict,
sampling, bad input and the allocation-free training step."""
import tracemalloc

import numpy as np
import pytest

import mlkernels as mk
from mlkernels import nn, optim
from mlkernels import reference as ref
from mlkernels.testing import gradcheck

VOCAB, BLOCK = 23, 16
LR, WD = 3e-3, 1e-2


def _tokens(shape, seed=0, vocab=VOCAB):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def _small(dtype=np.float64, backend=None, dropout=0.0, seed=0, n_layer=2, n_embd=64):
    return nn.GPT(VOCAB, BLOCK, n_layer=n_layer, n_head=4, n_embd=n_embd, dropout=dropout,
                  seed=seed, dtype=dtype, backend=backend)


def _mk_losses(model, idx, steps=10):
    opt = optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    losses = []
    for _ in range(steps):
        losses.append(float(model.forward(idx[:, :-1], idx[:, 1:])))
        model.backward()
        opt.step(model.grads())
    return losses


# ------------------------------------------------------------------ twins

def _torch_twin(model):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (a comparison peer)")
    F = torch.nn.functional

    class Attn(torch.nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.c_attn, self.c_proj, self.H = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C), H

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (a.view(B, T, self.H, C // self.H).transpose(1, 2) for a in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(torch.nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.ln_1, self.attn = torch.nn.LayerNorm(C), Attn(C, H)
            self.ln_2 = torch.nn.LayerNorm(C)
            self.mlp = torch.nn.Module()
            self.mlp.c_fc, self.mlp.c_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))

    class TorchGPT(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.wte = torch.nn.Embedding(m.vocab_size, m.n_embd)
            self.wpe = torch.nn.Embedding(m.block_size, m.n_embd)
            self.blocks = torch.nn.ModuleList(Block(m.n_embd, m.n_head) for _ in m.blocks)
            self.ln_f = torch.nn.LayerNorm(m.n_embd)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)         # tied head
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    twin = TorchGPT(model).double()
    named = dict(twin.named_parameters())
    assert sorted(named) == sorted(model.state_dict()), "the twin's names differ"
    with torch.no_grad():
        for name, p in model.named_parameters():
            named[name].copy_(torch.from_numpy(p))
    return torch, twin, [named[n] for n, _ in model.named_parameters()]


def test_twin_of_pytorch_ten_adamw_steps_float64():
    model = _small()
    torch, twin, params = _torch_twin(model)
    idx = _tokens((3, BLOCK + 1))
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    tidx = torch.from_numpy(idx)
    theirs = []
    for _ in range(10):
        opt.zero_grad()
        loss = twin(tidx[:, :-1], tidx[:, 1:])
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    ours = _mk_losses(model, idx)
    assert theirs[-1] < theirs[0] - 0.1                      # it learns (the test can fail)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_twin_of_the_numpy_reference_backend_float64():
    fast, slow = _small(), _small(backend=nn.REFERENCE)
    idx = _tokens((3, BLOCK + 1), seed=1)
    params, grads = slow.parameters(), slow.grads()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    theirs = []
    for step in range(1, 11):                  # reference.adamw_step: the oracle's update
        theirs.append(float(slow.forward(idx[:, :-1], idx[:, 1:])))
        slow.backward()
        new = ref.adamw_step(params, grads, m, v, step=step, lr=LR, weight_decay=WD)
        for old, n in zip(params + m + v, new[0] + new[1] + new[2]):
            old[...] = n
    ours = _mk_losses(fast, idx)
    assert theirs[-1] < theirs[0] - 0.1
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_dropout_runs_match_the_reference_backend():
    fast = _small(dropout=0.2, n_layer=1, n_embd=16)
    slow = _small(dropout=0.2, n_layer=1, n_embd=16, backend=nn.REFERENCE)
    idx = _tokens((2, BLOCK + 1), seed=2)
    for _ in range(2):                  # the second draws fresh masks (the counters advance)
        a = fast.forward(idx[:, :-1], idx[:, 1:])
        b = slow.forward(idx[:, :-1], idx[:, 1:])
        fast.backward()
        slow.backward()
        assert abs(a - b) <= 1e-12 * abs(b)
        for g, h in zip(fast.grads(), slow.grads()):
            np.testing.assert_allclose(g, h, rtol=1e-9, atol=1e-13)
    assert fast.drop.offset == 2 * 2 * BLOCK * 16


def test_float32_model_trains_close_to_float64():
    a, b = _small(np.float32, n_layer=1, n_embd=32), _small(np.float64, n_layer=1, n_embd=32)
    idx = _tokens((4, BLOCK + 1), seed=3)
    la, lb = _mk_losses(a, idx, 5), _mk_losses(b, idx, 5)
    np.testing.assert_allclose(la, lb, rtol=1e-4)


# ------------------------------------------------------------------ gradients

def _modules(layer):
    yield layer
    for child in layer.children():
        yield from _modules(child)


def _check_layer(layer, x, param=None):
    """gradcheck of the input's gradient and, with ``param`` ("c_attn.weight"...), of that
    parameter's gradient, through the layer's forward and backward."""
    owner = layer
    if param is not None:
        *path, name = param.split(".")
        for p in path:
            owner = getattr(owner, p)
        w0 = getattr(owner, name).copy()
    else:
        name, w0 = None, np.zeros(1)

    drops = [m for m in _modules(layer) if isinstance(m, nn.Dropout)]
    offsets = [d.offset for d in drops]

    def forward(x, w):
        for d, o in zip(drops, offsets):      # the same masks at every evaluation
            d.offset = o
        if name is not None:
            np.copyto(getattr(owner, name), w)
        return np.array(layer.forward(x), copy=True)

    def backward(r, x, w):
        forward(x, w)
        gx = layer.backward(r)
        gw = np.zeros(1) if name is None else getattr(owner, "grad_" + name).copy()
        return (None if gx is None else np.array(gx, copy=True)), gw

    wrt = [0] if x.dtype.kind == "f" else []
    if name is not None:
        wrt.append(1)
    assert gradcheck(forward, backward, [x, w0], wrt)


def test_gradcheck_layers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8))
    kw = dict(dtype=np.float64, rng=np.random.default_rng(1))
    _check_layer(nn.CausalSelfAttention(8, 2, **kw), x, "c_attn.weight")
    _check_layer(nn.CausalSelfAttention(8, 2, **kw), x, "c_proj.bias")
    _check_layer(nn.MLP(8, **kw), x, "c_fc.weight")
    _check_layer(nn.TransformerBlock(8, 2, **kw), x, "ln_1.weight")
    _check_layer(nn.TransformerBlock(8, 2, **kw), x, "attn.c_attn.bias")
    _check_layer(nn.TransformerBlock(8, 2, dropout=0.25, seed=3, **kw), x, "mlp.c_proj.weight")
    _check_layer(nn.Dropout(0.4, seed=5), x)
    _check_layer(nn.Embedding(7, 3, **kw), rng.integers(0, 7, (2, 4)), "weight")


@pytest.mark.parametrize("param", ["wte.weight", "wpe.weight", "blocks.1.attn.c_attn.weight",
                                   "blocks.0.mlp.c_fc.bias", "ln_f.weight"])
def test_gradcheck_gpt_loss(param):
    model = nn.GPT(11, 6, n_layer=2, n_head=2, n_embd=8, seed=0, dtype=np.float64)
    idx = _tokens((2, 6), seed=4, vocab=11)
    tgt = _tokens((2, 5), seed=5, vocab=11)
    p = dict(model.named_parameters())[param]
    g = model.grads()[[n for n, _ in model.named_parameters()].index(param)]

    def forward(w):
        np.copyto(p, w)
        return np.array([model.forward(idx[:, :5], tgt)])

    def backward(r, w):
        forward(w)
        model.backward()
        return (r[0] * g,)

    assert gradcheck(forward, backward, [p.copy()], [0])


# ------------------------------------------------------------------ structure, state, sampling

def test_parameters_named_once_and_flat_gradients():
    model = _small(np.float32, n_layer=2, n_embd=16)
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names)) == 2 + 12 * 2 + 2
    assert sum(p is model.wte.weight for p in model.parameters()) == 1      # tied: once
    assert all(p.shape == g.shape for p, g in zip(model.parameters(), model.grads()))
    flat = np.zeros(sum(g.size for g in model.grads()), np.float32)
    views, at = [], 0
    for g in model.grads():
        views.append(flat[at:at + g.size].reshape(g.shape))
        at += g.size
    model.set_grad_arrays(views)
    idx = _tokens((2, BLOCK + 1))
    model.forward(idx[:, :-1], idx[:, 1:])
    model.backward()
    assert all(a is b for a, b in zip(model.grads(), views))
    assert np.abs(views[0]).sum() > 0 and np.abs(views[-1]).sum() > 0


def test_initialization_as_gpt2():
    model = nn.GPT(100, 64, n_layer=4, n_head=4, n_embd=128, seed=0)
    assert abs(model.wte.weight.std() - 0.02) < 1e-3
    assert abs(model.blocks[0].mlp.c_fc.weight.std() - 0.02) < 1e-3
    assert abs(model.blocks[0].attn.c_proj.weight.std() - 0.02 / np.sqrt(8)) < 1e-3
    assert not model.blocks[0].attn.c_attn.bias.any()
    assert model.wte.weight.dtype == np.float32


def test_state_dict_round_trip_continues_bit_exactly(tmp_path):
    idx = _tokens((2, BLOCK + 1), seed=6)
    a = _small(np.float32, n_layer=1, n_embd=16)
    opt_a = optim.AdamW(a.parameters(), lr=LR)
    for _ in range(3):
        a.forward(idx[:, :-1], idx[:, 1:])
        a.backward()
        opt_a.step(a.grads())
    np.savez(tmp_path / "gpt.npz", **a.state_dict())
    b = _small(np.float32, n_layer=1, n_embd=16, seed=9)
    b.load_state_dict(dict(np.load(tmp_path / "gpt.npz")))
    opt_b = optim.AdamW(b.parameters(), lr=LR)
    opt_b.load_state_dict(opt_a.state_dict())
    for _ in range(3):
        la, lb = a.forward(idx[:, :-1], idx[:, 1:]), b.forward(idx[:, :-1], idx[:, 1:])
        assert la == lb
        a.backward()
        b.backward()
        opt_a.step(a.grads())
        opt_b.step(b.grads())
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert np.array_equal(p, q), n


def test_load_state_dict_refuses_bad_input_and_sets_nothing():
    model = _small(np.float32, n_layer=1, n_embd=16)
    before = model.state_dict()
    good = _small(np.float32, n_layer=1, n_embd=16, seed=3).state_dict()
    bad_key = dict(good, extra=np.zeros(1))
    missing = {k: v for k, v in good.items() if k != "ln_f.bias"}
    bad_shape = dict(good, **{"ln_f.bias": np.zeros(3, np.float32)})
    bad_dtype = dict(good, **{"ln_f.bias": good["ln_f.bias"].astype(np.float64)})
    for state, words in ((bad_key, "unexpected keys \\['extra'\\]"),
                         (missing, "missing keys \\['ln_f.bias'\\]"),
                         (bad_shape, "ln_f.bias"), (bad_dtype, "expected float32")):
        with pytest.raises(ValueError, match=words):
            model.load_state_dict(state)
        for k, v in model.state_dict().items():
            assert np.array_equal(v, before[k]), k


def test_generate_is_deterministic_for_a_seed_and_crops_the_context():
    model = _small(np.float32, n_layer=1, n_embd=16, dropout=0.1)
    prompt = _tokens((2, 3), seed=7)
    a = model.generate(prompt, 30, seed=1)
    b = model.generate(prompt, 30, seed=1, temperature=1.0)
    c = model.generate(prompt, 30, seed=2)
    assert a.shape == (2, 33) and a.dtype == np.int64
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[:, :3], prompt)
    assert model.training                                     # the mode is restored
    top1 = model.generate(prompt, 5, top_k=1, seed=3)         # greedy: any seed agrees
    assert np.array_equal(top1, model.generate(prompt, 5, top_k=1, seed=4))
    long = _tokens((1, 3 * BLOCK), seed=8)                    # longer than the context
    assert model.generate(long, 4, seed=0).shape == (1, 3 * BLOCK + 4)
    assert ((a >= 0) & (a < VOCAB)).all()


def test_bad_input_raises_before_any_state_changes():
    model = _small(np.float32, n_layer=1, n_embd=16, dropout=0.1)
    idx = _tokens((2, BLOCK + 1))
    model.forward(idx[:, :-1], idx[:, 1:])
    before, offset = model.state_dict(), model.drop.offset
    cases = [
        (TypeError, "integer ndarray", (idx[:, :-1].astype(np.float32), idx[:, 1:])),
        (TypeError, "integer ndarray", (idx[:, :-1].tolist(), None)),
        (ValueError, "expected indices in \\[0, vocab_size\\)", (idx[:, :-1] + VOCAB, None)),
        (ValueError, "expected indices", (idx[:, :-1], -idx[:, 1:] - 1)),
        (ValueError, "context is block_size", (_tokens((1, BLOCK + 1)), None)),
        (ValueError, "expected 2-d", (idx[0], None)),
        (ValueError, "targets has shape", (idx[:, :-1], idx[:, 1:5])),
    ]
    for error, words, args in cases:
        with pytest.raises(error, match=words):
            model.forward(*args)
    assert model.drop.offset == offset
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), k
    model.backward()                          # the last good forward's loss is still there
    with pytest.raises(RuntimeError, match="without a training-mode"):
        model.backward()
    for bad in (dict(max_new_tokens=-1), dict(max_new_tokens=1, temperature=0.0),
                dict(max_new_tokens=1, top_k=0)):
        with pytest.raises(ValueError):
            model.generate(idx[:, :2], **bad)
    with pytest.raises(ValueError, match="multiple of n_head"):
        nn.GPT(VOCAB, BLOCK, n_layer=1, n_head=3, n_embd=16)


def test_eval_mode_returns_logits_and_loss():
    model = _small(np.float64, n_layer=1, n_embd=16)
    idx = _tokens((2, BLOCK + 1))
    train_loss = float(model.forward(idx[:, :-1], idx[:, 1:]))
    model.eval()
    logits = model.forward(idx[:, :-1])
    assert logits.shape == (2, BLOCK, VOCAB)
    assert abs(float(mk.cross_entropy(logits.reshape(-1, VOCAB), idx[:, 1:].reshape(-1)))
               - train_loss) <= 1e-12 * train_loss
    assert abs(float(model.forward(idx[:, :-1], idx[:, 1:])) - train_loss) <= 1e-12


@pytest.mark.parametrize("dropout, B, T, n_layer, C", [(0.0, 4, 32, 2, 64),
                                                       (0.1, 16, 128, 4, 128)])  # the demo's
def test_a_gpt_training_step_allocates_nothing(dropout, B, T, n_layer, C):
    model = nn.GPT(65, T, n_layer=n_layer, n_head=4, n_embd=C, dropout=dropout, seed=0)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    idx = _tokens((B, T + 1), vocab=65)
    x, y = idx[:, :-1], idx[:, 1:]
    grads = model.grads()

    def step():
        model.forward(x, y)
        model.backward()
        opt.step(grads)

    step()
    step()                                    # warm-up: every layer has its arrays
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - start <= 64 * 1024, f"a step raised the tracemalloc peak by {peak - start} B"


def test_docstring_examples_run():
    """The Examples of the GPT layers and their methods, as doctests."""
    import doctest
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    finder = doctest.DocTestFinder()
    ran = 0
    for name in ("Embedding", "Dropout", "CausalSelfAttention", "MLP", "TransformerBlock", "GPT"):
        for test in finder.find(getattr(nn, name), name, globs={}):
            runner.run(test)
            ran += len(test.examples)
    assert ran >= 40 and runner.failures == 0


def test_kept_scratch_is_per_python_thread():
    """Attention and linear_cross_entropy keep their scratch for the calling thread's next
    call: Python threads calling them at once (different shapes) get the serial results."""
    import threading
    rng = np.random.default_rng(0)
    jobs = []
    for i, (n, t, d, v) in enumerate([(2, 33, 16, 11), (3, 70, 32, 40), (1, 9, 8, 300),
                                      (4, 128, 32, 65)]):
        q, k, w = (rng.standard_normal((n, t, d)).astype(np.float32) for _ in range(3))
        W = rng.standard_normal((v, d)).astype(np.float32)
        tgt = rng.integers(0, v, (n, t))

        def job(q=q, k=k, w=w, W=W, tgt=tgt):
            o, lse = mk.scaled_dot_product_attention(q, k, w, is_causal=True, return_lse=True)
            grads = mk.scaled_dot_product_attention_backward(o, q, k, w, o, lse, is_causal=True)
            loss, gx, gW, _ = mk.linear_cross_entropy_with_grad(o, W, tgt)
            return [o, lse, *grads, np.float32(loss), gx, gW]
        jobs.append(job)
    serial = [job() for job in jobs]
    results, errors = {}, []

    def worker(i):
        try:
            for _ in range(10):
                out = jobs[i]()
                assert all(np.array_equal(a, b) for a, b in zip(out, serial[i]))
            results[i] = True
        except BaseException as e:         # (reported below)
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == len(jobs)


def test_constructors_refuse_bad_sizes():
    for make, words in ((lambda: nn.Embedding(0, 3), "num_embeddings is 0"),
                        (lambda: nn.Embedding(4, 2.0), "embedding_dim is 2.0"),
                        (lambda: nn.Dropout(1.0), "p is 1.0"),
                        (lambda: nn.Dropout(0.1, seed=-1), "seed is -1"),
                        (lambda: nn.CausalSelfAttention(8, 0), "n_head is 0"),
                        (lambda: nn.MLP(True), "n_embd is True"),
                        (lambda: nn.TransformerBlock(6, 4), "multiple of n_head"),
                        (lambda: nn.GPT(10, 8, n_layer=0, n_head=1, n_embd=4), "n_layer is 0"),
                        (lambda: nn.GPT(10, 8, 1, 1, 4, dropout=-0.1), "p is -0.1")):
        with pytest.raises(ValueError, match=words):
            make()
