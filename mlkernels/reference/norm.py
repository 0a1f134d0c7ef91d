"""Reference normalization (float64 NumPy), forward and backward, textbook formulas."""
import numpy as np

__all__ = ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
           "group_norm", "group_norm_backward", "batch_norm", "batch_norm_backward"]


def _f(a):
    return None if a is None else np.asarray(a, np.float64)


def _axes(x, normalized_shape):
    k = 1 if np.ndim(normalized_shape) == 0 else len(normalized_shape)
    return tuple(range(x.ndim - k, x.ndim))


def _mean(a, axes, empty=0.0):
    """Mean over ``axes`` (kept as size-1 dims). An empty group has mean 0 and variance NaN,
    hence rstd NaN, as torch reports for it."""
    n = int(np.prod([a.shape[i] for i in axes]))
    total = a.sum(axis=axes, keepdims=True)
    return total / n if n else np.full_like(total, empty)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    x, weight, bias = _f(x), _f(weight), _f(bias)
    axes = _axes(x, normalized_shape)
    mean = _mean(x, axes)
    var = _mean((x - mean) ** 2, axes, empty=np.nan)             # biased variance
    rstd = 1 / np.sqrt(var + eps)                                # eps inside the sqrt
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean.reshape(x.shape[:x.ndim - len(axes)]), rstd.reshape(x.shape[:x.ndim - len(axes)])


def _row_grads(g, x, mean, rstd, weight, axes, center):
    """dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = g·w, x̂ = (x − mean)·rstd."""
    expand = (...,) + (None,) * len(axes)
    mean, rstd = mean[expand], rstd[expand]
    xhat = (x - mean) * rstd
    gh = g * weight if weight is not None else g
    term = gh - xhat * (gh * xhat).mean(axis=axes, keepdims=True)
    if center:
        term = term - gh.mean(axis=axes, keepdims=True)
    return rstd * term, xhat


def layer_norm_backward(grad_out, x, normalized_shape, mean, rstd, weight=None, has_bias=None):
    g, x, mean, rstd, weight = _f(grad_out), _f(x), _f(mean), _f(rstd), _f(weight)
    axes = _axes(x, normalized_shape)
    gx, xhat = _row_grads(g, x, mean, rstd, weight, axes, True)
    lead = tuple(range(x.ndim - len(axes)))
    has_bias = weight is not None if has_bias is None else has_bias
    gw = (g * xhat).sum(axis=lead) if weight is not None else None
    gb = g.sum(axis=lead) if has_bias else None
    return gx, gw, gb


def rms_norm(x, normalized_shape, weight=None, eps=None):
    if eps is None:
        dtype = np.asarray(x).dtype      # of the input's dtype, as torch; of float32, the
        eps = float(np.finfo(np.float32 if dtype.itemsize == 2 else dtype).eps)  # 16-bit's math
    x, weight = _f(x), _f(weight)
    axes = _axes(x, normalized_shape)
    rstd = 1 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    y = x * rstd * (weight if weight is not None else 1)
    return y, rstd.reshape(x.shape[:x.ndim - len(axes)])


def rms_norm_backward(grad_out, x, normalized_shape, rstd, weight=None):
    g, x, rstd, weight = _f(grad_out), _f(x), _f(rstd), _f(weight)
    axes = _axes(x, normalized_shape)
    gx, xhat = _row_grads(g, x, np.zeros(rstd.shape), rstd, weight, axes, False)
    lead = tuple(range(x.ndim - len(axes)))
    return gx, ((g * xhat).sum(axis=lead) if weight is not None else None)


def _grouped(x, num_groups):
    n, c = x.shape[:2]
    return x.reshape(n, num_groups, (c // num_groups) * int(np.prod(x.shape[2:])))


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    x, weight, bias = _f(x), _f(weight), _f(bias)
    xg = _grouped(x, num_groups)
    mean = _mean(xg, (2,))
    rstd = 1 / np.sqrt(_mean((xg - mean) ** 2, (2,), empty=np.nan) + eps)
    y = ((xg - mean) * rstd).reshape(x.shape)
    channel = (slice(None),) + (None,) * (x.ndim - 2)          # broadcast along axis 1
    if weight is not None:
        y = y * weight[channel]
    if bias is not None:
        y = y + bias[channel]
    return y, mean[..., 0], rstd[..., 0]


def group_norm_backward(grad_out, x, num_groups, mean, rstd, weight=None, has_bias=None):
    g, x, mean, rstd, weight = _f(grad_out), _f(x), _f(mean), _f(rstd), _f(weight)
    channel = (slice(None),) + (None,) * (x.ndim - 2)
    gh = g * weight[channel] if weight is not None else g
    xg, ghg = _grouped(x, num_groups), _grouped(gh, num_groups)
    xhat = (xg - mean[..., None]) * rstd[..., None]
    gx = rstd[..., None] * (ghg - ghg.mean(axis=2, keepdims=True)
                            - xhat * (ghg * xhat).mean(axis=2, keepdims=True))
    xhat_full = xhat.reshape(x.shape)
    sum_axes = (0,) + tuple(range(2, x.ndim))
    has_bias = weight is not None if has_bias is None else has_bias
    gw = (g * xhat_full).sum(axis=sum_axes) if weight is not None else None
    gb = g.sum(axis=sum_axes) if has_bias else None
    return gx.reshape(x.shape), gw, gb


def _per_channel(x):
    """(N, C, *) -> (C, N·S): each row holds one channel's values."""
    n, c, s = x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))
    return np.moveaxis(x.reshape(n, c, s), 1, 0).reshape(c, n * s)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, num_batches_tracked=None):
    """Also updates running_mean/running_var in place in training, as the fast kernel."""
    x64 = _f(x)
    xc = _per_channel(x64)
    if training:
        mean, var = xc.mean(axis=1), xc.var(axis=1)              # biased, to normalize
        if running_mean is not None:
            n = xc.shape[1]
            f = 1 / num_batches_tracked if momentum is None else momentum
            running_mean[...] = (1 - f) * running_mean + f * mean
            running_var[...] = (1 - f) * running_var + f * var * n / (n - 1)   # unbiased
    else:
        mean, var = _f(running_mean), _f(running_var)
    rstd = 1 / np.sqrt(var + eps)
    shape = (1, -1) + (1,) * (x64.ndim - 2)
    y = (x64 - mean.reshape(shape)) * rstd.reshape(shape)
    if weight is not None:
        y = y * _f(weight).reshape(shape)
    if bias is not None:
        y = y + _f(bias).reshape(shape)
    return y, mean, rstd


def batch_norm_backward(grad_out, x, save_mean, save_rstd, weight=None, training=True,
                        has_bias=None):
    g, x = _f(grad_out), _f(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, rstd = _f(save_mean).reshape(shape), _f(save_rstd).reshape(shape)
    gamma = _f(weight).reshape(shape) if weight is not None else 1.0
    xhat = (x - mean) * rstd
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        gx = gamma * rstd * (g - g.mean(axis=axes, keepdims=True)
                             - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    else:
        gx = gamma * rstd * g
    has_bias = weight is not None if has_bias is None else has_bias
    gw = (g * xhat).sum(axis=axes) if weight is not None else None
    gb = g.sum(axis=axes) if has_bias else None
    return gx, gw, gb
