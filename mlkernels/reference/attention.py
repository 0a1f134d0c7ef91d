"""Reference scaled dot-product attention and its backward (float64 NumPy).

One head is q (Tq, d), k (Tk, d), v (Tk, dv); leading axes are heads and batches. Query i
attends to the keys j < n_i: n_i = min(i + 1, Tk) with ``is_causal`` (torch's mask, aligned at
the upper left also when Tq != Tk), n_i = Tk without. The sums below run over exactly those
pairs (a prefix of the keys for each query, a suffix of the queries for each key), so that a
NaN in a key or value that a query does not see cannot reach that query's results.
"""
import numpy as np

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


def _f(a):
    return np.asarray(a, np.float64)


def _default_scale(d, scale):
    """1/√d (for d = 0 the scores are empty sums, 0, and any scale gives the same result)."""
    if scale is not None:
        return float(scale)
    return 1.0 / np.sqrt(d) if d else 1.0


def _seen(i, Tk, is_causal):
    """How many keys query i sees."""
    return min(i + 1, Tk) if is_causal else Tk


def scaled_dot_product_attention(q, k, v, *, is_causal=False, scale=None, return_lse=False):
    """out_i = Σ_{j<n_i} p_ij v_j with p_ij = e^(s_ij − lse_i), s = (q·scale) kᵀ and
    lse_i = log Σ_{j<n_i} e^(s_ij): returns out (..., Tq, dv), and lse (..., Tq) with
    ``return_lse``. With no keys (Tk = 0), out is 0 and lse is −inf, as torch."""
    q, k, v = _f(q), _f(k), _f(v)
    Tq, Tk = q.shape[-2], k.shape[-2]
    scale = _default_scale(q.shape[-1], scale)
    s = (q * scale) @ np.swapaxes(k, -1, -2)                         # (..., Tq, Tk)
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    lse = np.full(q.shape[:-1], -np.inf)
    for i in range(Tq):
        n = _seen(i, Tk, is_causal)
        if n == 0:
            continue
        s_i = s[..., i, :n]
        m = s_i.max(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):                          # inf − inf: NaN, as wanted
            lse[..., i] = (m + np.log(np.exp(s_i - m).sum(axis=-1, keepdims=True)))[..., 0]
            p_i = np.exp(s_i - lse[..., i, None])
        out[..., i, :] = (p_i[..., None, :] @ v[..., :n, :])[..., 0, :]
    return (out, lse) if return_lse else out


def scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, *, is_causal=False,
                                          scale=None):
    """(dq, dk, dv) of ``scaled_dot_product_attention`` given grad_out = dL/dout and the
    forward's out and lse::

        p_ij  = e^(s_ij − lse_i)          dp_ij = dO_i · v_j        D_i = dO_i · out_i
        ds_ij = p_ij (dp_ij − D_i)
        dq_i  = scale Σ_{j<n_i} ds_ij k_j      dk_j = scale Σ_{i sees j} ds_ij q_i
        dv_j  = Σ_{i sees j} p_ij dO_i
    """
    g, q, k, v, out, lse = (_f(a) for a in (grad_out, q, k, v, out, lse))
    Tq, Tk = q.shape[-2], k.shape[-2]
    scale = _default_scale(q.shape[-1], scale)
    s = (q * scale) @ np.swapaxes(k, -1, -2)
    dp = g @ np.swapaxes(v, -1, -2)
    D = (g * out).sum(axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(s - lse[..., None])
    ds = p * (dp - D[..., None])
    dq, dk, dv = np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape)
    for i in range(Tq):                       # query i: the keys it sees, j < n
        n = _seen(i, Tk, is_causal)
        dq[..., i, :] = scale * (ds[..., i, None, :n] @ k[..., :n, :])[..., 0, :]
    for j in range(Tk):                       # key j: the queries that see it, i >= first
        first = j if is_causal else 0
        if first >= Tq:
            continue
        dk[..., j, :] = scale * (ds[..., None, first:, j] @ q[..., first:, :])[..., 0, :]
        dv[..., j, :] = (p[..., None, first:, j] @ g[..., first:, :])[..., 0, :]
    return dq, dk, dv
