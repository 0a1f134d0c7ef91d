"""``bench --family calls``: what one call costs on a small input, for every public function.

Each row calls one public function on (32, 64) float32 inputs (a batch of 32 rows of 64
features; 32 for the class dimension of the losses), with ``out=`` where the function has
it, against PyTorch's nearest equivalent on the same data when PyTorch is installed (the
functional op, or the ATen backward op for a backward). At this size the work is tiny: the
figure is the price of the Python API, the validation and the dispatch.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

ROWS, COLS = 32, 64


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def cases() -> List[Tuple[str, Dict[str, Callable[[], object]]]]:
    """[(function name, {"mlkernels": call, "torch": call})]: every public function."""
    import mlkernels as mk
    from . import optim
    torch = _torch()
    F = torch.nn.functional if torch is not None else None
    rng = np.random.default_rng(0)
    f32 = np.float32

    def arr(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(f32)

    x, g, y = arr(ROWS, COLS), arr(ROWS, COLS), np.empty((ROWS, COLS), f32)
    w, b = arr(COLS, COLS, scale=0.1), arr(COLS)
    gamma, beta = np.ones(COLS, f32), np.zeros(COLS, f32)
    target = rng.integers(0, COLS, ROWS)
    t = {}
    if torch is not None:
        t = {name: torch.from_numpy(a) for name, a in
             dict(x=x, g=g, w=w, b=b, gamma=gamma, beta=beta, target=target).items()}
    rows: List[Tuple[str, Dict[str, Callable[[], object]]]] = []

    def add(name: str, fast: Callable[[], object], peer: Optional[Callable[[], object]]):
        impls = {"mlkernels": fast}
        if torch is not None and peer is not None:
            impls["torch"] = peer
        rows.append((name, impls))

    # ---- linear
    gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    add("linear", lambda: mk.linear(x, w, b, out=y),
        lambda: F.linear(t["x"], t["w"], t["b"]))
    add("linear_backward", lambda: mk.linear_backward(g, x, w, out=(gx, gw, gb)),
        lambda: (t["g"] @ t["w"], t["g"].T @ t["x"], t["g"].sum(0)))

    # ---- activations, every one of the table (backwards: ATen's backward ops)
    from .specs.activations import FUNCTIONS, torch_peers
    t_y = torch.from_numpy(y) if torch is not None else None
    for name in FUNCTIONS:
        f, fb = getattr(mk, name), getattr(mk, name + "_backward")
        peers = torch_peers(name, torch, t["x"], t["g"], t_y) if torch is not None else {}
        add(name, lambda f=f: f(x, out=y), peers.get("forward"))
        add(name + "_backward", lambda fb=fb: fb(g, x, out=y), peers.get("backward"))
    alpha = np.full(1, 0.25, f32)
    galpha = np.empty_like(alpha)
    t_alpha = torch.from_numpy(alpha) if torch is not None else None
    add("prelu", lambda: mk.prelu(x, alpha, out=y),
        lambda: F.prelu(t["x"], t_alpha))
    add("prelu_backward", lambda: mk.prelu_backward(g, x, alpha, out=(y, galpha)),
        lambda: torch.ops.aten._prelu_kernel_backward(t["g"], t["x"], t_alpha))

    # ---- normalization
    stat, stat2 = np.empty(ROWS, f32), np.empty(ROWS, f32)
    mean, rstd = mk.layer_norm(x, COLS, gamma, beta)[1:]
    add("layer_norm", lambda: mk.layer_norm(x, COLS, gamma, beta, out=(y, stat, stat2)),
        lambda: torch.native_layer_norm(t["x"], [COLS], t["gamma"], t["beta"], 1e-5))
    tm, tr = (torch.from_numpy(mean.reshape(ROWS, 1)), torch.from_numpy(rstd.reshape(ROWS, 1))) \
        if torch is not None else (None, None)
    add("layer_norm_backward",
        lambda: mk.layer_norm_backward(g, x, COLS, mean, rstd, gamma, out=(y, gw[0], gb)),
        lambda: torch.ops.aten.native_layer_norm_backward(
            t["g"], t["x"], [COLS], tm, tr, t["gamma"], t["beta"], [True, True, True]))
    rstd_rms = mk.rms_norm(x, COLS, gamma)[1]
    add("rms_norm", lambda: mk.rms_norm(x, COLS, gamma, out=(y, stat)),
        lambda: F.rms_norm(t["x"], [COLS], t["gamma"]))
    add("rms_norm_backward",
        lambda: mk.rms_norm_backward(g, x, COLS, rstd_rms, gamma, out=(y, gw[0])), None)
    groups = 8
    gmean, grstd = mk.group_norm(x, groups, gamma, beta)[1:]
    gstat, gstat2 = np.empty_like(gmean), np.empty_like(grstd)
    add("group_norm", lambda: mk.group_norm(x, groups, gamma, beta, out=(y, gstat, gstat2)),
        lambda: torch.native_group_norm(t["x"], t["gamma"], t["beta"], ROWS, COLS, 1, groups,
                                        1e-5))
    tgm, tgr = (torch.from_numpy(gmean), torch.from_numpy(grstd)) if torch is not None \
        else (None, None)
    add("group_norm_backward",
        lambda: mk.group_norm_backward(g, x, groups, gmean, grstd, gamma, out=(y, gw[0], gb)),
        lambda: torch.ops.aten.native_group_norm_backward(
            t["g"], t["x"], tgm, tgr, t["gamma"], ROWS, COLS, 1, groups, [True, True, True]))
    rm, rv = np.zeros(COLS, f32), np.ones(COLS, f32)
    cm, cr = np.empty(COLS, f32), np.empty(COLS, f32)
    bmean, brstd = mk.batch_norm(x, None, None, gamma, beta, training=True)[1:]
    trm, trv = (torch.from_numpy(rm), torch.from_numpy(rv)) if torch is not None else (None, None)
    add("batch_norm", lambda: mk.batch_norm(x, rm, rv, gamma, beta, training=True,
                                            out=(y, cm, cr)),
        lambda: torch.native_batch_norm(t["x"], t["gamma"], t["beta"], trm, trv, True, 0.1,
                                        1e-5))
    tbm, tbr = (torch.from_numpy(bmean), torch.from_numpy(brstd)) if torch is not None \
        else (None, None)
    add("batch_norm_backward",
        lambda: mk.batch_norm_backward(g, x, bmean, brstd, gamma, out=(y, gw[0], gb)),
        lambda: torch.ops.aten.native_batch_norm_backward(
            t["g"], t["x"], t["gamma"], trm, trv, tbm, tbr, True, 1e-5, [True, True, True]))

    # ---- losses
    sm = mk.softmax(x)
    lsm = mk.log_softmax(x)
    tsm, tlsm = (torch.from_numpy(sm), torch.from_numpy(lsm)) if torch is not None \
        else (None, None)
    add("softmax", lambda: mk.softmax(x, out=y), lambda: torch.softmax(t["x"], -1))
    add("softmax_backward", lambda: mk.softmax_backward(g, sm, out=y),
        lambda: torch.ops.aten._softmax_backward_data(t["g"], tsm, -1, torch.float32))
    add("log_softmax", lambda: mk.log_softmax(x, out=y), lambda: torch.log_softmax(t["x"], -1))
    add("log_softmax_backward", lambda: mk.log_softmax_backward(g, lsm, out=y),
        lambda: torch.ops.aten._log_softmax_backward_data(t["g"], tlsm, -1, torch.float32))
    one = np.ones((), f32)
    t_one = torch.ones(()) if torch is not None else None
    add("cross_entropy", lambda: mk.cross_entropy(x, target),
        lambda: F.cross_entropy(t["x"], t["target"]))
    add("cross_entropy_backward", lambda: mk.cross_entropy_backward(one, x, target, out=y),
        lambda: torch.ops.aten._log_softmax_backward_data(
            torch.ops.aten.nll_loss_backward(t_one, tlsm, t["target"], None, 1, -100,
                                             torch.zeros(())), tlsm, -1, torch.float32))
    add("mse_loss", lambda: mk.mse_loss(x, g), lambda: F.mse_loss(t["x"], t["g"]))
    add("mse_loss_backward", lambda: mk.mse_loss_backward(one, x, g, out=y),
        lambda: torch.ops.aten.mse_loss_backward(t_one, t["x"], t["g"], 1))
    prob = (rng.random((ROWS, COLS)) > 0.5).astype(f32)
    t_prob = torch.from_numpy(prob) if torch is not None else None
    add("binary_cross_entropy_with_logits",
        lambda: mk.binary_cross_entropy_with_logits(x, prob),
        lambda: F.binary_cross_entropy_with_logits(t["x"], t_prob))
    add("binary_cross_entropy_with_logits_backward",
        lambda: mk.binary_cross_entropy_with_logits_backward(one, x, prob, out=y), None)

    # ---- optimizer steps: one (64, 64) parameter and its bias, in place
    p_list = [arr(COLS, COLS), arr(COLS)]
    g_list = [arr(COLS, COLS), arr(COLS)]
    m_list = [np.zeros_like(p) for p in p_list]
    v_list = [np.zeros_like(p) for p in p_list]
    if torch is not None:
        tp = [torch.from_numpy(p) for p in p_list]
        tg = [torch.from_numpy(a) for a in g_list]
        tmo = [torch.from_numpy(a) for a in m_list]
        tv = [torch.from_numpy(a) for a in v_list]
        tsteps = [torch.zeros(()) for _ in tp]

    def torch_adamw():
        torch._fused_adamw_(tp, tg, tmo, tv, [], tsteps, lr=1e-3, beta1=0.9, beta2=0.999,
                            weight_decay=1e-2, eps=1e-8, amsgrad=False, maximize=False)
    add("adamw_step", lambda: optim.adamw_step(p_list, g_list, m_list, v_list, step=1,
                                               lr=1e-3), torch_adamw)
    add("adam_step", lambda: optim.adam_step(p_list, g_list, m_list, v_list, step=1, lr=1e-3),
        None)
    add("sgd_step", lambda: optim.sgd_step(p_list, g_list, m_list, step=2, lr=1e-3,
                                           momentum=0.9),
        lambda: torch._fused_sgd_(tp, tg, tmo, weight_decay=0.0, momentum=0.9, lr=1e-3,
                                  dampening=0.0, nesterov=False, maximize=False,
                                  is_first_step=False))
    opt = optim.AdamW(p_list, lr=1e-3)
    topt = torch.optim.AdamW(tp, lr=1e-3, fused=True) if torch is not None else None
    if torch is not None:
        for p, a in zip(tp, tg):
            p.grad = a
    add("AdamW.step", lambda: opt.step(g_list), None if topt is None else topt.step)
    return rows
