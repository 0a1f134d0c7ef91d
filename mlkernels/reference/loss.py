"""Reference softmax and losses (float64 NumPy + scipy.special), textbook formulas written
stably (log-sum-exp)."""
import numpy as np
from scipy.special import expit, logsumexp

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
           "cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
           "linear_cross_entropy", "linear_cross_entropy_backward"]


def _f(a):
    return np.asarray(a, np.float64)


def log_softmax(x, axis=-1):
    x = _f(x)
    with np.errstate(invalid="ignore"):
        return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    return np.exp(log_softmax(x, axis))


def softmax_backward(grad_out, y, axis=-1):
    g, y = _f(grad_out), _f(y)
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


def log_softmax_backward(grad_out, y, axis=-1):
    g, y = _f(grad_out), _f(y)
    return g - np.exp(y) * g.sum(axis=axis, keepdims=True)


def _class_last(logits):
    return np.moveaxis(_f(logits), 0 if np.ndim(logits) == 1 else 1, -1)


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    x = _class_last(logits)                                 # (..., C)
    t = np.asarray(target)
    logp = log_softmax(x)
    keep = t != ignore_index
    C = x.shape[-1]
    if C == 0:          # no classes: every row is ignored (any other target is refused)
        nll = smooth = np.zeros(t.shape)
    else:
        nll = -np.take_along_axis(logp, np.where(keep, t, 0)[..., None], axis=-1)[..., 0]
        smooth = -logp.mean(axis=-1)
    loss = np.where(keep, (1 - label_smoothing) * nll + label_smoothing * smooth, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore"):
        return loss.sum() / keep.sum()


def cross_entropy_backward(grad_out, logits, target, reduction="mean", label_smoothing=0.0,
                           ignore_index=-100):
    x = _class_last(logits)
    t = np.asarray(target)
    C = x.shape[-1]
    keep = t != ignore_index
    onehot = np.eye(C)[np.where(keep, t, 0)] if C else np.zeros(t.shape + (0,))
    grad = softmax(x) - (1 - label_smoothing) * onehot - (label_smoothing / C if C else 0.0)
    g = _f(grad_out)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):   # all ignored: rows are 0 anyway
            g = g / keep.sum()
    grad = grad * np.where(keep, g, 0.0)[..., None]
    return np.moveaxis(grad, -1, 0 if np.ndim(logits) == 1 else 1)


def _reduce(per, reduction):
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean() if per.size else np.nan


def mse_loss(input, target, reduction="mean"):
    return _reduce((_f(input) - _f(target)) ** 2, reduction)


def mse_loss_backward(grad_out, input, target, reduction="mean"):
    d = 2 * (_f(input) - _f(target)) * _f(grad_out)
    return d / d.size if reduction == "mean" and d.size else d


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    x, t = _f(input), _f(target)
    return _reduce((1 - t) * x + np.logaddexp(0, -x), reduction)      # log(1 + e^−x), stable


def binary_cross_entropy_with_logits_backward(grad_out, input, target, reduction="mean"):
    x, t = _f(input), _f(target)
    d = (expit(x) - t) * _f(grad_out)
    return d / d.size if reduction == "mean" and d.size else d


def _lce_rows(x, weight, target, bias):
    """The logits (N, C) of the flattened rows of x, and the flat targets."""
    x, weight = _f(x), _f(weight)
    rows = x.reshape(int(np.prod(x.shape[:-1])), weight.shape[1])
    logits = rows @ weight.T + (0.0 if bias is None else _f(bias))
    return rows, logits, np.asarray(target).reshape(-1)


def linear_cross_entropy(x, weight, target, bias=None, reduction="mean", ignore_index=-100,
                         label_smoothing=0.0, chunk_rows=None):
    """cross_entropy(x·Wᵀ + b, target) over the rows of x (chunk_rows is the fast kernel's
    and changes nothing here)."""
    _, logits, t = _lce_rows(x, weight, target, bias)
    loss = cross_entropy(logits, t, reduction, label_smoothing, ignore_index)
    return loss.reshape(np.shape(target)) if reduction == "none" else loss


def linear_cross_entropy_backward(grad_out, x, weight, target, bias=None, reduction="mean",
                                  ignore_index=-100, label_smoothing=0.0, chunk_rows=None):
    """dz = cross_entropy_backward(logits); grad_x = dz·W, grad_W = dzᵀ·x, grad_b = Σ dz."""
    rows, logits, t = _lce_rows(x, weight, target, bias)
    g = _f(grad_out).reshape(-1) if reduction == "none" else _f(grad_out)
    dz = cross_entropy_backward(g, logits, t, reduction, label_smoothing, ignore_index)
    grad_x = (dz @ _f(weight)).reshape(np.shape(x))
    return grad_x, dz.T @ rows, None if bias is None else dz.sum(axis=0)
