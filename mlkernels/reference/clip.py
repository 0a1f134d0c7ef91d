"""Reference gradient clipping (float64 NumPy), torch.nn.utils.clip_grad_norm_'s formulas."""
import numpy as np

__all__ = ["get_total_norm", "clip_grad_norm_"]


def _vector_norm(v, p):
    """torch.linalg.vector_norm of a flat vector."""
    a = np.abs(np.asarray(v, np.float64).reshape(-1))
    if p == np.inf:
        return a.max() if a.size else 0.0
    if p == -np.inf:
        return a.min() if a.size else np.inf
    if p == 0:
        return float(np.count_nonzero(a))
    with np.errstate(divide="ignore", over="ignore"):
        return np.sum(a ** p) ** (1.0 / p)


def get_total_norm(grads, norm_type=2.0):
    """The norm of the per-array norms (as if they were concatenated into one vector)."""
    grads = [g for g in ([grads] if isinstance(grads, np.ndarray) else grads) if g is not None]
    p = float(norm_type)
    if not grads:
        return 0.0
    return _vector_norm([_vector_norm(g, p) for g in grads], p)


def clip_grad_norm_(grads, max_norm, norm_type=2.0):
    """Returns (total_norm, [each gradient scaled by min(max_norm/(total_norm + 1e-6), 1)])."""
    arrays = [np.asarray(g, np.float64) for g in
              ([grads] if isinstance(grads, np.ndarray) else grads) if g is not None]
    total = get_total_norm(arrays, norm_type)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef = max_norm / (total + 1e-6)
        coef = coef if not coef >= 1.0 else 1.0              # clamp, NaN stays NaN (torch)
        return total, [g * coef for g in arrays]
