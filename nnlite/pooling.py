"""Pooling layers: max pooling, average pooling and global average pooling.

Shapes use the notation block of :mod:`nnlite.layer` (N, C, H, W, KH, KW,
SH, SW, PH, PW, OH, OW); the layout is NCHW and pooling acts on every channel
separately::

    OH = floor((H - KH + 2*PH) / SH) + 1        OW = floor((W - KW + 2*PW) / SW) + 1

How the code is organised (the same for max and average pooling): the padded
input ``xpad`` is read through one strided slice per kernel offset ``(i, j)``,

    window(i, j) = xpad[:, :, i : i + SH*(OH-1) + 1 : SH, j : j + SW*(OW-1) + 1 : SW]   # (N, C, OH, OW)

so ``window(i, j)[n, c, oh, ow] = xpad[n, c, oh*SH + i, ow*SW + j]``: element
``(i, j)`` of every pooling window at once. Forward combines the KH*KW slices
(maximum or sum); backward adds each slice's share of ``dy`` back into the
same strided slice of a zero gradient buffer. Where windows overlap (stride
smaller than the kernel, e.g. AlexNet's 3x3 pools with stride 2) an input
element lies in several windows and its gradient is the *sum* of the shares
it receives from each of them. There is no loop over the batch or over
pixels, only over the KH*KW kernel offsets.

The core computations are the small functions ``max_pool_forward``,
``max_pool_backward``, ``avg_pool_forward`` and ``avg_pool_backward`` of
:mod:`nnlite.functional` (imported here): the readable references. ``MaxPool2D`` calls the first two through
:mod:`nnlite.kernels`, which runs a Numba (CPU) or CUDA (GPU) kernel with
the same signature when it can; ``tests/test_kernels.py`` holds them equal.
"""
from __future__ import annotations

from . import kernels
from .backend import get_array_module
from .functional import (avg_pool_backward, avg_pool_forward, max_pool_backward,  # noqa: F401
                         max_pool_forward, pad_hw, window)
from .layer import Layer, conv_output_size, pair


def _as_config(value: tuple):
    """``(3, 3) -> 3``, ``(2, 3) -> [2, 3]``: JSON-friendly and accepted by ``pair``."""
    return value[0] if value[0] == value[1] else list(value)


# ------------------------------------------------------------------ layers
class _Pool2D(Layer):
    """Argument checks and shape arithmetic shared by MaxPool2D and AvgPool2D."""

    def __init__(self, kernel_size, stride=None, padding=0, name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", cls)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", cls)
        self.padding = pair(padding, "padding", cls)
        if min(self.kernel_size) < 1:
            raise ValueError(f"{cls}: kernel_size must be >= 1, got {kernel_size!r}")
        if min(self.stride) < 1:
            raise ValueError(f"{cls}: stride must be >= 1, got {stride!r}")
        if min(self.padding) < 0:
            raise ValueError(f"{cls}: padding must be >= 0, got {padding!r}")
        for p, k in zip(self.padding, self.kernel_size):
            if 2 * p > k:  # as PyTorch: otherwise a window could hold only padding
                raise ValueError(f"{cls}: padding must be at most half the kernel size, "
                                 f"got padding {padding!r} for kernel_size {kernel_size!r}")

    def _out_hw(self, H: int, W: int) -> tuple:
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if KH > H + 2 * PH or KW > W + 2 * PW:
            raise ValueError(
                f"{self.name}: kernel {KH}x{KW} is larger than the padded input "
                f"{H + 2 * PH}x{W + 2 * PW} (input {H}x{W}, padding {PH},{PW})")
        return conv_output_size(H, KH, PH, SH), conv_output_size(W, KW, PW, SW)

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expected a per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        C, H, W = input_shape
        return (C,) + self._out_hw(H, W)

    def get_config(self) -> dict:
        return {"kernel_size": _as_config(self.kernel_size), "stride": _as_config(self.stride),
                "padding": _as_config(self.padding)}


class MaxPool2D(_Pool2D):
    """2-D max pooling over each channel.

    Forward::

        y[n, c, oh, ow] = max_{0<=i<KH, 0<=j<KW} xpad[n, c, oh*SH + i, ow*SW + j]

    where ``xpad`` is the input padded with ``-inf`` (so padding never wins
    the maximum; every window holds at least one real element because
    ``padding <= kernel_size // 2``).

    Backward: the max is locally a selection, so ``dy[n, c, oh, ow]`` flows
    to the one input element that was selected, and every other element of
    the window gets 0. **Ties**: when several elements of a window equal the
    maximum, the gradient goes to the *first* of them in row-major order
    within the window (smallest ``i``, then smallest ``j``), like
    ``argmax`` of the flattened window. With overlapping windows (stride <
    kernel) one input element can be the maximum of several windows; its
    gradient is the sum of their ``dy``.

    **Indices** (for :class:`~nnlite.MaxUnpool2D`, SegNet's unpooling): after
    ``forward``, ``pool.indices`` is an int64 array ``(N, C, OH, OW)`` holding,
    for each output element, the flat index ``h*W + w`` into the (unpadded)
    ``H x W`` plane of its input channel of the element that was selected,
    PyTorch's ``return_indices=True`` convention; ties are broken as in
    backward (the first maximum in row-major window order), so
    ``x.reshape(N, C, H*W)`` gathered at ``indices`` equals ``y``. They are
    computed *lazily*, on the first access after each forward, from the
    cached input and output: the fast forward kernel does not produce them,
    and a plain training step that never asks for them does not pay for them.

    Args:
        kernel_size: KH, KW; an int or a pair ``(KH, KW)``.
        stride: SH, SW; an int, a pair, or None for ``stride = kernel_size``
            (non-overlapping windows).
        padding: PH, PW of ``-inf`` on each side; at most half the kernel.
        name: layer name (default the class name).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW), with
    ``OH = floor((H - KH + 2*PH) / SH) + 1`` and likewise OW; indices
    (N, C, OH, OW), int64.
    """

    def __init__(self, kernel_size, stride=None, padding=0, name=None):
        super().__init__(kernel_size, stride, padding, name)
        self._indices = None          # the last forward's indices, once asked for
        self._argmax = None           # the fast path's window argmax, kept for backward

    @property
    def indices(self):
        """Flat ``h*W + w`` index of each output's maximum in its input plane, (N, C, OH, OW) int64."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: no indices yet; run forward(x) first")
        if self._indices is None:
            self._indices = self._argmax_indices(*self._cache)
        return self._indices

    @property
    def input_shape(self) -> tuple:
        """Shape ``(N, C, H, W)`` of the last forward's input (the size MaxUnpool2D restores)."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: no input yet; run forward(x) first")
        return tuple(self._cache[2])

    def _argmax_indices(self, xpad, y, x_shape):
        """Walk the kernel offsets in row-major order; the first (i, j) equal to the max wins."""
        xp = get_array_module(y)
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        H, W = x_shape[2:]
        OH, OW = y.shape[2:]
        top = xp.arange(OH).reshape(OH, 1) * SH - PH            # (OH, 1) first row of each window in x
        left = xp.arange(OW).reshape(1, OW) * SW - PW           # (1, OW) first column
        idx = xp.full(y.shape, -1, dtype=xp.int64)              # (N, C, OH, OW), -1: not found yet
        for i in range(KH):
            for j in range(KW):
                row, col = top + i, left + j                     # (OH, 1), (1, OW)
                inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)    # (OH, OW) not padding
                hit = (window(xpad, i, j, SH, SW, OH, OW) == y) & inside & (idx < 0)
                idx = xp.where(hit, row * W + col, idx)
        return idx

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OH, OW = self._out_hw(*x.shape[2:])
        xpad = pad_hw(x, PH, PW, float("-inf"))                  # (N, C, H + 2PH, W + 2PW)
        self._argmax = None
        if training and kernels.max_pool_argmax_available(xpad, KH, KW, SH, SW):
            # The fast path keeps each window's argmax for backward (the same dx, no search).
            y, self._argmax = kernels.max_pool_forward_argmax(xpad, KH, KW, SH, SW, OH, OW)
        else:
            y = kernels.max_pool_forward(xpad, KH, KW, SH, SW, OH, OW)   # (N, C, OH, OW)
        self._cache = (xpad, y, x.shape)
        self._indices = None                                     # computed when asked for
        return y

    def backward(self, dy):
        xpad, y, x_shape = self._saved()
        self._check_grad(dy, y.shape)
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if self._argmax is not None and self._argmax.dtype == dy.dtype:
            dxp = kernels.max_pool_backward_argmax(dy, self._argmax, xpad.shape, KH, KW, SH, SW)
        else:
            dxp = kernels.max_pool_backward(dy, xpad, y, KH, KW, SH, SW)  # (N, C, H + 2PH, W + 2PW)
        H, W = x_shape[2:]
        return dxp[:, :, PH:PH + H, PW:PW + W].copy() if (PH or PW) else dxp


class AvgPool2D(_Pool2D):
    """2-D average pooling over each channel.

    Forward::

        y[n, c, oh, ow] = (1 / (KH*KW)) * sum_{0<=i<KH, 0<=j<KW} xpad[n, c, oh*SH + i, ow*SW + j]

    where ``xpad`` is the input padded with **zeros**. By default the padded
    zeros *count* in the average: the divisor is always KH*KW (PyTorch's
    default ``count_include_pad=True``), so a border window with padding
    averages to a smaller value than its real elements alone. With
    ``count_include_pad=False`` each window is divided by the number of
    *real* input elements it covers instead::

        count[oh, ow] = (rows of x in the window) * (columns of x in the window)
        y[n, c, oh, ow] = (1 / count[oh, ow]) * sum_{i, j} xpad[n, c, oh*SH + i, ow*SW + j]

    (as PyTorch's ``count_include_pad=False``; the two agree without padding).

    Backward: ``dL/dx`` at each element of a window receives
    ``dy[n, c, oh, ow] / (KH*KW)`` (or ``/ count[oh, ow]``); with overlapping
    windows the shares from every window containing the element add up.
    Shares that land on padding are dropped.

    Args:
        kernel_size: KH, KW; an int or a pair.
        stride: SH, SW; an int, a pair, or None for ``stride = kernel_size``.
        padding: PH, PW of zeros on each side; at most half the kernel.
        count_include_pad: divide by KH*KW (True, the default) or by the
            number of real elements in the window (False).
        name: layer name (default the class name).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW).
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True,
                 name=None):
        super().__init__(kernel_size, stride, padding, name)
        if not isinstance(count_include_pad, bool):
            raise ValueError(f"AvgPool2D: count_include_pad must be True or False, "
                             f"got {count_include_pad!r}")
        self.count_include_pad = count_include_pad

    def _rescale(self, H: int, W: int, OH: int, OW: int, xp, dtype):
        """``KH*KW / count`` per window (OH, OW), or None when the divisor is always KH*KW."""
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if self.count_include_pad or (PH == 0 and PW == 0):
            return None
        top, left = xp.arange(OH) * SH - PH, xp.arange(OW) * SW - PW         # window corners in x
        rows = xp.minimum(top + KH, H) - xp.maximum(top, 0)                  # (OH,) real rows
        cols = xp.minimum(left + KW, W) - xp.maximum(left, 0)                # (OW,) real columns
        count = rows.reshape(OH, 1) * cols.reshape(1, OW)                    # (OH, OW)
        return (KH * KW / count).astype(dtype)

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OH, OW = self._out_hw(*x.shape[2:])
        xpad = pad_hw(x, PH, PW, 0.0)                            # (N, C, H + 2PH, W + 2PW)
        y = avg_pool_forward(xpad, KH, KW, SH, SW, OH, OW)       # (N, C, OH, OW), sum / (KH*KW)
        rescale = self._rescale(*x.shape[2:], OH, OW, get_array_module(x), x.dtype)
        if rescale is not None:
            y *= rescale                                         # sum / count (real elements only)
        self._cache = (xpad.shape, x.shape, y.shape, rescale)
        return y

    def backward(self, dy):
        padded_shape, x_shape, y_shape, rescale = self._saved()
        self._check_grad(dy, y_shape)
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        if rescale is not None:
            dy = dy * rescale                                    # each share is dy / count
        dxp = avg_pool_backward(dy, padded_shape, KH, KW, SH, SW)
        H, W = x_shape[2:]
        return dxp[:, :, PH:PH + H, PW:PW + W].copy() if (PH or PW) else dxp

    def get_config(self) -> dict:
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


class GlobalAvgPool2D(Layer):
    """Global average pooling: the mean of each channel over all positions.

    Forward::  y[n, c] = (1 / (H*W)) * sum_{h, w} x[n, c, h, w]

    Backward:: dx[n, c, h, w] = dy[n, c] / (H*W)   (every position gets an equal share)

    Shapes: x (N, C, H, W) -> y (N, C). It replaces Flatten before the
    classifier head ("global-average flatten" in the lecture slides; the
    transfer-learning paper's new head) and makes the head independent of
    the image size.
    """

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        self._cache = x.shape
        return x.mean(axis=(2, 3))                              # (N, C), x's dtype

    def backward(self, dy):
        N, C, H, W = self._saved()
        self._check_grad(dy, (N, C))
        xp = get_array_module(dy)
        share = dy / (H * W)                                    # (N, C)
        return xp.broadcast_to(share[:, :, None, None], (N, C, H, W)).copy()

    def output_shape(self, input_shape: tuple) -> tuple:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name} expected a per-sample shape (C, H, W), "
                             f"got {tuple(input_shape)}")
        return (input_shape[0],)
