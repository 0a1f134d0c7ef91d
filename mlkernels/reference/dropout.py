"""Reference dropout: Philox4x32-10 in NumPy, and the mask it gives each element.

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011): a 128-bit counter (x0, x1, x2, x3) and a 64-bit key (k0, k1), ten rounds of

    (hi0, lo0) = M0·x0 as a 64-bit product,  (hi1, lo1) = M1·x2
    (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)
    (k0, k1) = (k0 + W0, k1 + W1) mod 2^32           (between rounds)
"""
import numpy as np

__all__ = ["philox4x32_10", "dropout_uniforms", "dropout", "dropout_backward"]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32-10 of counters (..., 4) under key (k0, k1): returns (..., 4) uint32 words.
    Computed in uint64, where a 32x32-bit product is exact."""
    x = np.asarray(counter, np.uint64) & MASK32
    x0, x1, x2, x3 = (x[..., i] for i in range(4))
    k0, k1 = np.uint64(int(key[0]) & MASK32), np.uint64(int(key[1]) & MASK32)
    for _ in range(10):
        p0, p1 = x0 * np.uint64(M0), x2 * np.uint64(M1)
        x0, x1, x2, x3 = ((p1 >> np.uint64(32)) ^ x1 ^ k0, p1 & np.uint64(MASK32),
                          (p0 >> np.uint64(32)) ^ x3 ^ k1, p0 & np.uint64(MASK32))
        k0, k1 = (k0 + np.uint64(W0)) & np.uint64(MASK32), (k1 + np.uint64(W1)) & np.uint64(MASK32)
    return np.stack([x0, x1, x2, x3], axis=-1).astype(np.uint32)


def dropout_uniforms(n, seed, offset=0):
    """The 16-bit uniform of each element e = offset + i, i < n (as integers 0..65535).

    Element e takes tile t = e // 128, place s = e % 128: counter c = 16·t + s % 16 (as the
    128-bit counter (c mod 2^32, c // 2^32, 0, 0)), word (s % 64) // 16 of its output, and of
    that word the low 16 bits when s < 64, the high 16 bits otherwise. The key is
    (seed mod 2^32, seed // 2^32).
    """
    e = np.uint64(offset) + np.arange(n, dtype=np.uint64)
    t, s = e // np.uint64(128), e % np.uint64(128)
    c = np.uint64(16) * t + s % np.uint64(16)
    counters = np.stack([c & np.uint64(MASK32), c >> np.uint64(32),
                         np.zeros_like(c), np.zeros_like(c)], axis=-1)
    words = philox4x32_10(counters, (seed & MASK32, seed >> 32)).astype(np.uint64)
    word = np.take_along_axis(words, ((s % np.uint64(64)) // np.uint64(16)).astype(np.intp)[:, None],
                              axis=1)[:, 0]
    return np.where(s < 64, word & np.uint64(0xFFFF), word >> np.uint64(16)).astype(np.int64)


def _mask(shape, p, seed, offset):
    """1/(1 − p) where the element's uniform u/65536 >= p, else 0 (p = 1: all 0)."""
    n = int(np.prod(shape))
    u = dropout_uniforms(n, seed, offset) / 65536.0
    if p >= 1 or np.ceil(p * 65536) >= 65536:
        return np.zeros(shape)
    return np.where(u >= p, 1.0 / (1.0 - p), 0.0).reshape(shape)


def dropout(x, p, seed, offset=0, training=True):
    x = np.asarray(x, np.float64)
    if not training or p == 0:
        return x.copy()
    with np.errstate(invalid="ignore"):           # inf·0 = NaN, as x·mask in torch
        return x * _mask(x.shape, p, seed, offset)


def dropout_backward(grad_out, p, seed, offset=0):
    g = np.asarray(grad_out, np.float64)
    if p == 0:
        return g.copy()
    with np.errstate(invalid="ignore"):
        return g * _mask(g.shape, p, seed, offset)
