"""Q8_K: the activation type of ggml's K-quant dot products. Super-block of 256:
d f32 @0, qs int8[256] @4, bsums int16[16] @260 (sums of each 16 codes), 292 bytes.

quantize_q8_k_ggml is quantize_row_q8_K_ref: iscale = -127/max with max the
signed value of largest magnitude, q = min(127, nearest_int(iscale*x)),
d = 1/iscale. A block of zeros stores d = 0 and zero codes (ggml leaves its
bsums unwritten there; they are written as 0 here). There is no search, so
"ggml" is the only quantizer.
"""
import numpy as np

from .kq_search import nearest_int

F32 = np.float32
QK_K = 256
Q8_K_SIZE = 292


def quantize_q8_k_ggml(x, imatrix=None):
    xb = np.ascontiguousarray(x, dtype=F32).reshape(-1, QK_K)
    nb = xb.shape[0]
    amax = np.zeros(nb, F32)
    top = np.zeros(nb, F32)
    for j in range(QK_K):                       # first element of largest magnitude
        a = np.abs(xb[:, j])
        upd = a > amax
        amax = np.where(upd, a, amax)
        top = np.where(upd, xb[:, j], top)
    zero = amax == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(-127.0) / np.where(zero, F32(1), top)
        q = np.minimum(127, nearest_int(iscale[:, None] * xb))
        d = F32(1) / iscale
    q = np.where(zero[:, None], 0, q).astype(np.int8)
    d = np.where(zero, F32(0), d).astype(F32)
    out = np.empty((nb, Q8_K_SIZE), np.uint8)
    out[:, 0:4] = d.reshape(nb, 1).view(np.uint8)
    out[:, 4:260] = q.view(np.uint8)
    bsums = q.reshape(nb, 16, 16).astype(np.int32).sum(axis=2).astype(np.int16)
    out[:, 260:292] = bsums.view(np.uint8)
    return out.reshape(x.shape[0], -1)


def dequantize_q8_k(rows, n_per_row):
    b = rows.reshape(-1, Q8_K_SIZE)
    d = np.ascontiguousarray(b[:, 0:4]).view(F32)
    q = b[:, 4:260].view(np.int8).astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        y = d * q
    return y.reshape(rows.shape[0], n_per_row)
