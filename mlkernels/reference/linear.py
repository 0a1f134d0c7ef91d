"""Reference linear layer (float64 NumPy)."""
import numpy as np

__all__ = ["linear", "linear_backward"]


def linear(x, weight, bias=None):
    """y = x·Wᵀ + b, for x of shape (..., in_features) and W of shape (out, in)."""
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    y = x @ weight.T
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y


def linear_backward(grad_out, x, weight, bias=True, compute_grad_x=True):
    """dL/dx = g·W,  dL/dW = Σ_rows gᵀx,  dL/db = Σ_rows g   (g = dL/dy); dL/dx is None
    when not wanted (``compute_grad_x=False``)."""
    g = np.asarray(grad_out, np.float64)
    x, weight = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    rows = int(np.prod(x.shape[:-1]))
    g2, x2 = g.reshape(rows, weight.shape[0]), x.reshape(rows, weight.shape[1])
    grad_x = g @ weight if compute_grad_x else None
    grad_weight = g2.T @ x2
    grad_bias = g2.sum(axis=0) if bias else None
    return grad_x, grad_weight, grad_bias
