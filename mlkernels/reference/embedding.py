"""Reference embedding (float64 NumPy): fancy indexing, and np.add.at for the scatter-add."""
import numpy as np

__all__ = ["embedding", "embedding_backward"]


def embedding(indices, weight, padding_idx=None):
    """weight[indices]: shape indices.shape + (embedding_dim,)."""
    return np.asarray(weight, np.float64)[np.asarray(indices)]


def embedding_backward(grad_out, indices, num_embeddings, padding_idx=None):
    """grad_weight[r] = Σ grad_out[i] over the i with indices[i] == r; the padding row 0."""
    g = np.asarray(grad_out, np.float64)
    idx = np.asarray(indices).reshape(-1)
    grad_weight = np.zeros((num_embeddings, g.shape[-1]))
    np.add.at(grad_weight, idx, g.reshape(idx.size, g.shape[-1]))
    if padding_idx is not None:
        grad_weight[padding_idx] = 0          # (a negative padding_idx counts from the end)
    return grad_weight
