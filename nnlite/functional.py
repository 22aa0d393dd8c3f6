"""The plain reference functions: the readable definitions the layers and the kernels share.

Everything here is a small function on arrays (NumPy or CuPy, picked from the
arrays by :func:`nnlite.backend.get_array_module`), with no state and no
layer. The layers call these (directly, or through :mod:`nnlite.kernels`,
which may run a faster Numba or CUDA twin with the same signature and result);
the kernels import them as their references; this module imports neither, so
there is no import cycle between layers and kernels.

==============================  ===============================================
function                        used by
==============================  ===============================================
:func:`im2col`, :func:`col2im`  ``Conv2D``, ``ConvTranspose2D``
:func:`pad_hw`, :func:`window`  the pooling layers
``max_pool_*``, ``avg_pool_*``  ``MaxPool2D``, ``AvgPool2D``
``lrn_*``                       ``LocalResponseNorm``
``batch_norm_*``                ``BatchNorm1D``, ``BatchNorm2D`` (training)
``sgd_update``,                 ``SGD``, ``RMSProp``, ``Adam``
``rmsprop_update``,
``adam_update``
:func:`sigmoid`,                ``Sigmoid``, ``Softmax``, the losses,
:func:`softmax`,                ``predict_proba``
:func:`log_softmax`
==============================  ===============================================

Shape notation: see :mod:`nnlite.layer` (N, C, H, W, F, KH, KW, SH, SW, PH, PW,
OH, OW); ``DH, DW`` are the dilation (the step between kernel taps), ``Hp, Wp``
the padded input size.
"""
from __future__ import annotations

from .backend import get_array_module
from .layer import conv_output_size


# ===================================================================== convolution
def dilated_output_size(n_padded: int, k: int, s: int, d: int = 1) -> int:
    """Positions of a ``k``-tap kernel with dilation ``d`` and stride ``s`` on ``n_padded`` pixels.

    The kernel spans ``d*(k-1) + 1`` pixels, so the count is
    ``floor((n_padded - d*(k-1) - 1) / s) + 1`` (PyTorch's formula with the padding
    already added).
    """
    return conv_output_size(n_padded, d * (k - 1) + 1, 0, s)


def im2col(x_padded, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """Unfold every receptive field of ``x_padded`` into a column.

    The column layout (see :mod:`nnlite.conv`)::

        cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]

        row    (c, i, j)   = c*KH*KW + i*KW + j      channel slowest, then kernel row, column
        column (n, oh, ow) = n*OH*OW + oh*OW + ow    batch slowest, then output row, column

    Args:
        x_padded: ``(N, C, Hp, Wp)``, already padded; not written to.
        KH, KW: kernel size; SH, SW: stride; DH, DW: dilation (1: adjacent taps).

    Returns:
        cols: ``(C*KH*KW, N*OH*OW)``, a new C-contiguous array.
    """
    xp = get_array_module(x_padded)
    N, C, Hp, Wp = x_padded.shape
    OH, OW = dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)
    sN, sC, sH, sW = x_padded.strides
    # A read-only strided view, no copy:
    # view[c, i, j, n, oh, ow] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]
    view = xp.lib.stride_tricks.as_strided(
        x_padded, shape=(C, KH, KW, N, OH, OW),
        strides=(sC, sH * DH, sW * DW, sN, sH * SH, sW * SW))
    return xp.ascontiguousarray(view).reshape(C * KH * KW, N * OH * OW)   # the one copy


def check_cols_shape(dcols, x_padded_shape, KH, KW, OH, OW) -> None:
    """ValueError unless ``dcols`` is ``(C*KH*KW, N*OH*OW)`` for an image ``(N, C, Hp, Wp)``."""
    N, C = x_padded_shape[:2]
    if tuple(dcols.shape) != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected dcols of shape {(C * KH * KW, N * OH * OW)} for an "
                         f"image {tuple(x_padded_shape)}, got {tuple(dcols.shape)}")


def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """The adjoint of :func:`im2col`: add every column back onto the image it came from.

    ``dx_padded[n, c, oh*SH + i*DH, ow*SW + j*DW] += dcols[(c, i, j), (n, oh, ow)]``. A pixel
    that lies in several receptive fields (overlapping windows) receives the sum of all
    their entries; this is how the gradient flows back through :func:`im2col`.

    Args:
        dcols: ``(C*KH*KW, N*OH*OW)`` in the layout of :func:`im2col`.
        x_padded_shape: ``(N, C, Hp, Wp)``.

    Returns:
        dx_padded: ``(N, C, Hp, Wp)`` in ``dcols``' dtype.
    """
    xp = get_array_module(dcols)
    N, C, Hp, Wp = x_padded_shape
    OH, OW = dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)
    check_cols_shape(dcols, x_padded_shape, KH, KW, OH, OW)
    dcols_by_tap = dcols.reshape(C, KH, KW, N, OH, OW)            # (C, KH, KW, N, OH, OW) view
    dx_padded = xp.zeros((N, C, Hp, Wp), dtype=dcols.dtype)
    for i in range(KH):          # one strided add per kernel tap (i, j): output (oh, ow)
        for j in range(KW):      # read the pixel (oh*SH + i*DH, ow*SW + j*DW)
            rows = slice(i * DH, i * DH + SH * (OH - 1) + 1, SH)
            columns = slice(j * DW, j * DW + SW * (OW - 1) + 1, SW)
            dx_padded[:, :, rows, columns] += dcols_by_tap[:, i, j].transpose(1, 0, 2, 3)
    return dx_padded


# ========================================================================= pooling
def pad_hw(x, PH: int, PW: int, value: float):
    """Copy of ``x`` (N, C, H, W) with PH rows / PW columns of ``value`` on each side.

    Returns ``x`` itself (no copy) when there is no padding.
    """
    if PH == 0 and PW == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.full((N, C, H + 2 * PH, W + 2 * PW), value, dtype=x.dtype)
    out[:, :, PH:PH + H, PW:PW + W] = x
    return out


def window(a, i: int, j: int, SH: int, SW: int, OH: int, OW: int):
    """Strided view of ``a`` (N, C, Hp, Wp): element (i, j) of every window -> (N, C, OH, OW)."""
    return a[:, :, i:i + SH * (OH - 1) + 1:SH, j:j + SW * (OW - 1) + 1:SW]


def max_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """``y[n, c, oh, ow] = max_{i<KH, j<KW} xpad[n, c, oh*SH + i, ow*SW + j]``."""
    y = window(xpad, 0, 0, SH, SW, OH, OW).copy()               # (N, C, OH, OW)
    xp = get_array_module(xpad)
    for i in range(KH):
        for j in range(KW):
            if i or j:
                xp.maximum(y, window(xpad, i, j, SH, SW, OH, OW), out=y)
    return y


def max_pool_backward(dy, xpad, y, KH, KW, SH, SW):
    """Route each ``dy`` element to the first maximum (row-major) of its window.

    Walking the kernel offsets in row-major order (i, then j), ``hit`` marks
    the windows whose element (i, j) equals the maximum and that have not
    been served yet (``taken``); ``dy`` goes there and nowhere else, so a
    window with several equal maxima sends its whole gradient to the first
    one. Returns the gradient w.r.t. the padded input ``xpad``.
    """
    xp = get_array_module(dy)
    OH, OW = dy.shape[2:]
    dxp = xp.zeros(xpad.shape, dtype=dy.dtype)                   # (N, C, H + 2PH, W + 2PW)
    taken = xp.zeros(dy.shape, dtype=bool)                      # (N, C, OH, OW)
    for i in range(KH):
        for j in range(KW):
            hit = window(xpad, i, j, SH, SW, OH, OW) == y
            hit &= ~taken
            taken |= hit
            dxw = window(dxp, i, j, SH, SW, OH, OW)               # a view into dxp
            dxw += xp.where(hit, dy, 0)                          # overlapping windows add up
    return dxp


def avg_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """``y[n, c, oh, ow] = (1 / (KH*KW)) * sum_{i, j} xpad[n, c, oh*SH + i, ow*SW + j]``."""
    xp = get_array_module(xpad)
    N, C = xpad.shape[:2]
    y = xp.zeros((N, C, OH, OW), dtype=xpad.dtype)
    for i in range(KH):
        for j in range(KW):
            y += window(xpad, i, j, SH, SW, OH, OW)
    y /= KH * KW
    return y


def avg_pool_backward(dy, padded_shape, KH, KW, SH, SW):
    """Every element of a window receives ``dy / (KH*KW)``; overlaps add up."""
    xp = get_array_module(dy)
    OH, OW = dy.shape[2:]
    share = dy / (KH * KW)                                      # (N, C, OH, OW), dy's dtype
    dxp = xp.zeros(padded_shape, dtype=dy.dtype)                # (N, C, H + 2PH, W + 2PW)
    for i in range(KH):
        for j in range(KW):
            dxw = window(dxp, i, j, SH, SW, OH, OW)
            dxw += share
    return dxp


# ============================================================ local response norm
def channel_window_sum(a, before: int, after: int):
    """``out[:, c] = sum_{c' = c - before}^{c + after} a[:, c']``, clipped to [0, C-1].

    ``a`` is (N, C, H, W); the loop runs over the window offsets, not pixels.
    """
    out = a.copy()
    for d in range(1, before + 1):
        out[:, d:] += a[:, :-d]        # channel c gets a[c - d]
    for d in range(1, after + 1):
        out[:, :-d] += a[:, d:]        # channel c gets a[c + d]
    return out


def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """Return ``y``, the denominator base ``s`` and ``s**-beta`` (all (N, C, H, W))."""
    s = k + (alpha / size) * channel_window_sum(x * x, size // 2, (size - 1) // 2)
    p = s ** (-beta)
    return x * p, s, p


def lrn_backward(dy, x, s, p, size: int, alpha: float, beta: float):
    """``dx_j = dy_j s_j^-beta - (2 alpha beta / size) x_j sum_{c: j in win(c)} dy_c x_c s_c^(-beta-1)``."""
    t = dy * x * p / s                                  # dy_c * a_c * s_c^(-beta-1)
    # j lies in window(c) iff c is in [j - (size-1)//2, j + size//2]: the window flipped
    back = channel_window_sum(t, (size - 1) // 2, size // 2)
    return dy * p - (2.0 * alpha * beta / size) * x * back


# ============================================================== batch normalisation
# Training mode, on an (N, C, M) view of the input: M = H*W (BatchNorm2D), L or 1
# (BatchNorm1D on (N, C, L) or (N, C)); each channel c is normalised over its N*M values.
# The math and its derivation: nnlite.batchnorm._BatchNorm.
def batch_norm_forward(x3, gamma, beta, eps: float):
    """Normalise each channel of ``x3`` ``(N, C, M)`` with the statistics of this batch::

        mu[c]        = mean_{n,m} x3[n, c, m]                          (C,)
        var[c]       = mean_{n,m} (x3[n, c, m] - mu[c])**2             (C,), biased
        inv_sigma[c] = 1 / sqrt(var[c] + eps)                           (C,)
        x_hat3       = (x3 - mu) * inv_sigma                            (N, C, M)
        y3           = gamma * x_hat3 + beta       (y3 = a copy of x_hat3 when gamma is None)

    ``gamma`` and ``beta`` are ``(C,)`` or both None (``affine=False``). Returns
    ``(y3, x_hat3, mu, var, inv_sigma)``, all in ``x3``'s dtype.
    """
    mu = x3.mean(axis=(0, 2))                                # (C,)
    var = x3.var(axis=(0, 2))                                # (C,), divides by N*M
    inv_sigma = 1 / (var + eps) ** 0.5                       # (C,)
    x_hat3 = (x3 - mu[:, None]) * inv_sigma[:, None]         # (N, C, M)
    y3 = x_hat3.copy() if gamma is None else gamma[:, None] * x_hat3 + beta[:, None]
    return y3, x_hat3, mu, var, inv_sigma


def batch_norm_backward(dy3, x_hat3, gamma, inv_sigma):
    """Gradients of :func:`batch_norm_forward` from ``dy3 = dL/dy3`` ``(N, C, M)``::

        dbeta[c]  = sum_{n,m} dy3                                       (C,)
        dgamma[c] = sum_{n,m} dy3 * x_hat3                              (C,)
        dx3       = (gamma * inv_sigma) * (dy3 - mean(dy3) - x_hat3 * mean(dy3 * x_hat3))

    with ``mean`` over ``n, m`` per channel (``dbeta / (N*M)`` and ``dgamma / (N*M)``)
    and ``gamma = 1`` when it is None. ``dgamma`` and ``dbeta`` are what the layer
    needs anyway for ``dx3``; it keeps them for the parameters that train. Returns
    ``(dx3, dgamma, dbeta)``, in ``dy3``'s dtype.
    """
    m = dy3.shape[0] * dy3.shape[2]                          # values per channel
    dbeta = dy3.sum(axis=(0, 2))                             # (C,)
    dgamma = (dy3 * x_hat3).sum(axis=(0, 2))                 # (C,)
    scale = inv_sigma if gamma is None else gamma * inv_sigma             # (C,), gamma / sigma
    mean_dy, mean_dy_xhat = dbeta / m, dgamma / m                         # (C,)
    dx3 = scale[:, None] * (dy3 - mean_dy[:, None] - x_hat3 * mean_dy_xhat[:, None])
    return dx3, dgamma, dbeta


# ==================================================================== optimizers
# In place on the arrays (``p`` the parameter, ``g`` its gradient, only read, the rest
# the optimizer's state); the hyperparameters are Python floats, so float32 stays float32.
def sgd_update(p, g, buf, lr: float, momentum: float, nesterov: bool) -> None:
    """One SGD step, PyTorch's form (``buf`` is None without momentum)::

        buf <- momentum buf + g                 (the momentum buffer; starts at 0)
        p   <- p - lr buf                       (classical momentum)
        p   <- p - lr (g + momentum buf)        (nesterov=True)
        p   <- p - lr g                         (momentum = 0)
    """
    if buf is None:
        p -= lr * g
        return
    buf *= momentum
    buf += g
    p -= lr * (g + momentum * buf) if nesterov else lr * buf


def rmsprop_update(p, g, s, lr: float, rho: float, eps: float) -> None:
    """One RMSProp step: ``s <- rho s + (1 - rho) g^2``; ``p <- p - lr g / (sqrt(s) + eps)``."""
    xp = get_array_module(p)
    s *= rho
    s += (1.0 - rho) * (g * g)
    p -= lr * (g / (xp.sqrt(s) + eps))


def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, t: int,
                v_max=None) -> None:
    """One Adam step (Kingma & Ba 2015, Algorithm 1), ``t`` counting this step (1 first)::

        m     <- beta1 m + (1 - beta1) g
        v     <- beta2 v + (1 - beta2) g^2
        m_hat  = m / (1 - beta1^t)
        v_hat  = v / (1 - beta2^t)
        p     <- p - lr m_hat / (sqrt(v_hat) + eps)

    AMSGrad (``v_max`` given, PyTorch's ``amsgrad=True``): ``v_max`` keeps the largest
    *raw* second moment seen, ``v_max <- max(v_max, v)``, and ``v_hat = v_max / (1 -
    beta2^t)`` replaces the one above. The fused kernel (:mod:`nnlite.kernels.cpu`) does
    the same operations in the same order, bit for bit.
    """
    xp = get_array_module(p)
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    if v_max is not None:
        xp.maximum(v_max, v, out=v_max)
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = (v if v_max is None else v_max) / (1.0 - beta2 ** t)
    p -= lr * m_hat / (xp.sqrt(v_hat) + eps)


# ====================================================== sigmoid and softmax, stable
def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))``, without overflow.

    With ``e = exp(-|x|)``, always in (0, 1]::

        sigmoid(x) = 1 / (1 + e)   for x >= 0
        sigmoid(x) = e / (1 + e)   for x <  0

    For |x| beyond about 90 (float32) or 745 (float64) ``e`` underflows to 0 quietly
    and the result is exactly 1 or 0. Keeps ``x``'s dtype.
    """
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return (xp.where(x >= 0, 1, e) / (1 + e)).astype(x.dtype, copy=False)


def log_softmax(z, axis: int = -1):
    """``log softmax(z) = z - logsumexp(z)`` along ``axis``, with the max subtracted first.

    ``logsumexp(z) = m + log sum_k exp(z_k - m)`` with ``m = max_k z_k``: every exponent
    is <= 0, so logits of 1e4 neither overflow nor lose the answer.
    """
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(z, axis: int = -1):
    """``exp(z - m) / sum exp(z - m)`` along ``axis``, ``m`` the max: no overflow, sums to 1."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


__all__ = ["dilated_output_size", "im2col", "col2im", "check_cols_shape", "pad_hw", "window",
           "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
           "channel_window_sum", "lrn_forward", "lrn_backward", "batch_norm_forward",
           "batch_norm_backward", "sgd_update",
           "rmsprop_update", "adam_update", "sigmoid", "log_softmax", "softmax"]
