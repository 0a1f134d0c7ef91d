"""Reference activations and their derivatives (float64 NumPy + scipy.special).

Written for accuracy as well as reading: where a textbook formula cancels (1 + tanh(u) for
u << 0), the same quantity is written in a form that does not (2σ(2u)).
"""
import numpy as np
from scipy.special import expit, ndtr

__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
           "selu", "selu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "swish",
           "swish_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "softplus",
           "softplus_backward", "hardswish", "hardswish_backward", "hardsigmoid",
           "hardsigmoid_backward", "mish", "mish_backward", "prelu", "prelu_backward"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _f(a):
    return np.asarray(a, np.float64)


def relu(x):
    x = _f(x)
    return np.where(x < 0, 0.0, x)                       # NaN and -0 pass through


def relu_backward(grad_out, x):
    g, x = _f(grad_out), _f(x)
    return np.where(x > 0, g, np.where(np.isnan(x), x, 0.0))   # 0 at the kink x = 0


def leaky_relu(x, negative_slope=0.01):
    x = _f(x)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    g, x = _f(grad_out), _f(x)
    return np.where(x > 0, g, negative_slope * g)


def elu(x, alpha=1.0):
    x = _f(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(grad_out, x, alpha=1.0):
    g, x = _f(grad_out), _f(x)
    return np.where(x > 0, g, g * alpha * np.exp(np.minimum(x, 0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def selu_backward(grad_out, x):
    return SELU_SCALE * elu_backward(grad_out, x, SELU_ALPHA)


def _gelu_tanh_u(x):
    return np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)


def gelu(x, approximate="none"):
    x = _f(x)
    if approximate == "tanh":
        with np.errstate(over="ignore"):
            return x * expit(2 * _gelu_tanh_u(x))        # = 0.5x(1 + tanh(u))
    return x * ndtr(x)                                   # x·Φ(x)


def gelu_backward(grad_out, x, approximate="none"):
    g, x = _f(grad_out), _f(x)
    if approximate == "tanh":
        with np.errstate(over="ignore", invalid="ignore"):
            s = expit(2 * _gelu_tanh_u(x))
            du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x ** 2)
            d = s + 2 * x * s * (1 - s) * du
            return g * np.where(s * (1 - s) == 0, s, d)   # far tails: the derivative is s
    return g * (ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


def silu(x):
    x = _f(x)
    return x * expit(x)


def silu_backward(grad_out, x):
    g, x = _f(grad_out), _f(x)
    s = expit(x)
    return g * s * (1 + x * (1 - s))


def swish(x, beta=1.0):
    x = _f(x)
    return x * expit(beta * x)


def swish_backward(grad_out, x, beta=1.0):
    g, x = _f(grad_out), _f(x)
    s = expit(beta * x)
    return g * s * (1 + beta * x * (1 - s))


def sigmoid(x):
    return expit(_f(x))


def sigmoid_backward(grad_out, x):
    s = expit(_f(x))
    return _f(grad_out) * s * (1 - s)


def tanh(x):
    return np.tanh(_f(x))


def tanh_backward(grad_out, x):
    return _f(grad_out) * (1 - np.tanh(_f(x)) ** 2)


def softplus(x, beta=1.0, threshold=20.0):
    x = _f(x)
    return np.where(beta * x > threshold, x, np.logaddexp(0.0, beta * x) / beta)


def softplus_backward(grad_out, x, beta=1.0, threshold=20.0):
    g, x = _f(grad_out), _f(x)
    return np.where(beta * x > threshold, g, g * expit(beta * x))


def hardswish(x):
    x = _f(x)
    return x * np.clip(x + 3, 0, 6) / 6                  # x·relu6(x + 3)/6; NaN passes


def hardswish_backward(grad_out, x):
    g, x = _f(grad_out), _f(x)
    # torch's derivative, kinks included: 0 for x ≤ −3, 1 for x ≥ 3; NaN x gives NaN
    return np.where(x <= -3, 0.0, np.where(x >= 3, g, g * (x / 3 + 0.5)))


def hardsigmoid(x):
    return np.clip(_f(x) + 3, 0, 6) / 6                  # relu6(x + 3)/6; NaN passes


def hardsigmoid_backward(grad_out, x):
    g, x = _f(grad_out), _f(x)
    # 1/6 strictly inside (−3, 3), 0 elsewhere and at the kinks (as torch); NaN x gives NaN
    return np.where((x > -3) & (x < 3), g / 6, np.where(np.isnan(x), x, 0.0))


def mish(x):
    x = _f(x)
    return x * np.tanh(np.logaddexp(0.0, x))             # x·tanh(softplus(x))


def mish_backward(grad_out, x):
    g, x = _f(grad_out), _f(x)
    t = np.tanh(np.logaddexp(0.0, x))
    return g * (t + x * expit(x) * (1 - t * t))


def _channel_weight(x, weight):
    w = _f(weight)
    if x.ndim >= 2 and w.size > 1:
        return w.reshape((1, -1) + (1,) * (x.ndim - 2))  # broadcast along axis 1
    return w.reshape(()) if w.size == 1 else w


def prelu(x, weight):
    x = _f(x)
    return np.where(x > 0, x, _channel_weight(x, weight) * x)


def prelu_backward(grad_out, x, weight):
    g, x = _f(grad_out), _f(x)
    grad_x = np.where(x > 0, g, _channel_weight(x, weight) * g)
    contrib = np.where(x > 0, 0.0, g * x)
    if np.size(weight) == 1:
        grad_w = np.array([contrib.sum()])
    else:
        grad_w = np.moveaxis(contrib, 1, 0).reshape(np.size(weight), -1).sum(axis=1)
    return grad_x, grad_w
