"""2-D convolution (cross-correlation) by im2col, in plain NumPy/CuPy.

:func:`im2col` and :func:`col2im` are the readable reference path. They are
separate functions so that a faster kernel can stand beside them: ``Conv2D``
calls them through :mod:`nnlite.kernels` (Numba on the CPU, CUDA on the GPU,
these plain versions otherwise), and ``tests/test_kernels.py`` holds the
kernels equal to them.

Shape notation: see :mod:`nnlite.layer` (N, C, H, W, F, KH, KW, SH, SW, OH, OW).
Here ``Hp = PT + H + PB`` and ``Wp = PL + W + PR`` are the padded sizes
(top, bottom, left, right padding) and ``L = OH * OW``.

The column layout used by both functions::

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i, ow*SW + j]

    cols.shape == (C*KH*KW, N*OH*OW)
        row    (c, i, j)    = c*KH*KW + i*KW + j   channel slowest, then kernel row, column
        column (n, oh, ow)  = n*OH*OW + oh*OW + ow  batch slowest, then output row, column

Each column is one receptive field, flattened; the rows of one channel group
form one contiguous block, so a grouped convolution is one matrix product per
group: ``W_g (F/G, C/G*KH*KW) @ cols_g (C/G*KH*KW, N*OH*OW)``.
"""
from __future__ import annotations

from . import kernels, regularizers
from .backend import as_generator, device_of, get_array_module
from .initializers import get_initializer, zeros
from .layer import Layer, conv_output_size, pair
from .padding import zero_pad2d
from .parameter import Parameter


#: Bytes of work buffers per block of samples in Conv2D. The batch is processed in
#: blocks whose columns plus output rows (``(C*KH*KW + F) * OH*OW`` values a sample)
#: take about this much: on the CPU they then stay in the cache between im2col, the
#: matrix products and col2im, and no buffer grows with the batch. Measured on the MIAS
#: CNN at batch 64 (2 cores), against one column matrix for the whole batch kept from
#: forward to backward: conv2 forward 43 -> 27 ms and backward (rebuilding the columns)
#: 60 -> 51 ms, conv1 forward + backward 24 -> 15 ms, and 118 MB less memory.
COLUMN_BLOCK_BYTES = {"cpu": 8 << 20, "gpu": 256 << 20}

#: A batch whose columns and output rows fit in this many bytes (about the CPU's
#: last-level cache) is not split: one block makes fewer, larger matrix products and
#: keeps its columns from forward to backward (reduced AlexNet's grouped conv2 at
#: batch 32, 19 MB: about 12 ms for forward + backward in one block, 18 ms in three).
SINGLE_BLOCK_BYTES = {"cpu": 24 << 20, "gpu": 1 << 30}


def im2col(x_padded, KH: int, KW: int, SH: int, SW: int):
    """Unfold every KH x KW receptive field of ``x_padded`` into a column.

    Args:
        x_padded: ``(N, C, Hp, Wp)``, already padded.
        KH, KW: kernel size; SH, SW: stride.

    Returns:
        cols: ``(C*KH*KW, N*OH*OW)`` with ``cols[(c,i,j), (n,oh,ow)] =
        x_padded[n, c, oh*SH + i, ow*SW + j]`` (see the module docstring), a
        new array; ``x_padded`` is not written to.
    """
    xp = get_array_module(x_padded)
    N, C, Hp, Wp = x_padded.shape
    OH, OW = conv_output_size(Hp, KH, 0, SH), conv_output_size(Wp, KW, 0, SW)
    sN, sC, sH, sW = x_padded.strides
    # A read-only strided view, no copy: view[c, i, j, n, oh, ow] = x_padded[n, c, oh*SH+i, ow*SW+j]
    view = xp.lib.stride_tricks.as_strided(
        x_padded, shape=(C, KH, KW, N, OH, OW), strides=(sC, sH, sW, sN, sH * SH, sW * SW))
    return xp.ascontiguousarray(view).reshape(C * KH * KW, N * OH * OW)  # the one copy


def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int):
    """The adjoint of :func:`im2col`: add every column back onto the image it came from.

    A pixel that lies in several receptive fields (overlapping windows) receives
    the sum of all their entries; this is how the gradient of ``im2col`` flows.

    Args:
        dcols: ``(C*KH*KW, N*OH*OW)`` in the layout of :func:`im2col`.
        x_padded_shape: ``(N, C, Hp, Wp)``.

    Returns:
        dx_padded: ``(N, C, Hp, Wp)`` in ``dcols``' dtype.
    """
    xp = get_array_module(dcols)
    N, C, Hp, Wp = x_padded_shape
    OH, OW = conv_output_size(Hp, KH, 0, SH), conv_output_size(Wp, KW, 0, SW)
    if tuple(dcols.shape) != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected dcols of shape {(C * KH * KW, N * OH * OW)} for an "
                         f"image {tuple(x_padded_shape)}, got {tuple(dcols.shape)}")
    dcols6 = dcols.reshape(C, KH, KW, N, OH, OW)
    dx_padded = xp.zeros((N, C, Hp, Wp), dtype=dcols.dtype)
    for i in range(KH):          # one strided add per kernel offset (i, j):
        for j in range(KW):      # output (oh, ow) read the pixel (oh*SH + i, ow*SW + j)
            dx_padded[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] += dcols6[:, i, j].transpose(1, 0, 2, 3)
    return dx_padded


def same_padding(n: int, k: int, s: int) -> tuple:
    """TF/Keras ``"same"`` padding along one axis: ``(before, after)``.

    The output has ``ceil(n / s)`` positions; the total padding
    ``max((ceil(n / s) - 1) * s + k - n, 0)`` is split evenly and, when odd, the
    extra row/column goes after (bottom/right), as in TensorFlow and Keras.
    With ``s = 1`` the total is ``k - 1``: ``(k-1)//2`` before, the rest after.
    """
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class Conv2D(Layer):
    """2-D convolution layer (cross-correlation, as in every DL framework).

    Math, for output channel ``f`` in group ``g = f // (F/G)`` and its input
    channels ``c = g*C/G + c'`` (``c' = 0 .. C/G - 1``)::

        y[n, f, oh, ow] = b[f] + sum_{c', i, j} W[f, c', i, j] * x_pad[n, g*C/G + c', oh*SH + i, ow*SW + j]

    i.e. the kernel slides over the input *without* being flipped (true
    convolution would use ``W[f, c', KH-1-i, KW-1-j]``). Computed as one matrix
    product per group on the columns of :func:`im2col`:
    ``y_g = W_g (F/G, C/G*KH*KW) @ cols_g (C/G*KH*KW, N*OH*OW)``.

    Backpropagation (``dy = dL/dy``), as correlations::

        db[f]          = sum_{n, oh, ow} dy[n, f, oh, ow]
        dW[f, c', i, j] = sum_{n, oh, ow} dy[n, f, oh, ow] * x_pad[n, c, oh*SH + i, ow*SW + j]
                       -> the (valid) correlation of the input with dy   (dW_g = dy_g @ cols_g.T)
        dx_pad[n, c]   = sum_f  full_correlation(dy_up[n, f], rot180(W[f, c']))
                       =  sum_f  full_convolution(dy_up[n, f], W[f, c'])
                       -> the full convolution of dy with the 180-degree rotated kernel
                          (dcols_g = W_g.T @ dy_g, then col2im adds the columns back)

    where ``dy_up`` is ``dy`` with ``SH - 1`` (``SW - 1``) zeros inserted between
    rows (columns) when the stride is larger than 1; ``dx`` is ``dx_pad``
    without its padding.

    Shapes (notation of :mod:`nnlite.layer`, G = groups):
        x: ``(N, C, H, W)``; y: ``(N, F, OH, OW)`` with
        ``OH = floor((H + PT + PB - KH) / SH) + 1`` (``PT = PB = PH`` except for "same");
        W: ``(F, C/G, KH, KW)``; b: ``(F,)``.

    Args:
        in_channels: C.
        out_channels: F, the number of filters.
        kernel_size: ``k`` or ``(KH, KW)``.
        stride: ``s`` or ``(SH, SW)``, the step between receptive fields.
        padding: zeros added around the input: ``p``, ``(PH, PW)``, ``"valid"``
            (no padding) or ``"same"`` (TensorFlow/Keras rule: output
            ``ceil(H / SH)`` by ``ceil(W / SW)``; for stride 1 the output has the
            input's size, and an even kernel gets the extra row/column of padding
            at the bottom/right; see :func:`same_padding`).
        groups: G. The C input channels and F output channels are split into G
            groups; output group ``g`` sees only input group ``g`` (AlexNet's
            two-GPU "split" is ``groups=2``). C and F must be divisible by G.
        bias: learn a per-filter offset ``b``.
        weight_init: initialiser name for W (see :mod:`nnlite.initializers`), with
            ``fan_in = C/G*KH*KW`` and ``fan_out = F/G*KH*KW``; b starts at zero.
        seed: int seed (or a :class:`~nnlite.backend.Generator`) for W.
        name: layer name.
        regularizer: optional regularizer attached to W (an :mod:`nnlite.regularizers`
            object, a name such as ``"l2"``, or the dict that ``get_config()`` holds).

    Memory and speed: a large batch is unfolded a block of samples at a time (see
    :data:`COLUMN_BLOCK_BYTES` and :data:`SINGLE_BLOCK_BYTES`), so the column buffer
    is at most a few tens of MB whatever the batch size. Forward caches the padded
    input (``C*Hp*Wp`` per sample, ``KH*KW`` times less than the columns) and
    backward rebuilds each block's columns from it: on the CPU that is faster than
    keeping them, because every block stays in the cache. When the whole batch is one
    block, a training forward keeps its columns for backward, which then reuses their
    buffer for dcols. When W is frozen nothing is cached for dW (dx needs W only).
    im2col and col2im run through :mod:`nnlite.kernels` (Numba on the CPU), which the
    tests hold equal to the functions above.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, bias: bool = True, weight_init: str = "he_normal", seed=None,
                 name: str | None = None, regularizer=None):
        super().__init__(name)
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"Conv2D: {what} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2D: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = pair(stride, "stride", "Conv2D")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"Conv2D: kernel_size and stride must be >= 1, got "
                             f"{kernel_size!r} and {stride!r}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2D: padding must be an int, a pair, 'same' or 'valid', "
                                 f"got {padding!r}")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding (an int, a pair, 'same' or 'valid')", "Conv2D")
            if min(self.padding) < 0:
                raise ValueError(f"Conv2D: padding must be >= 0, got {padding!r}")
        self.weight_init = weight_init
        self.seed = seed if isinstance(seed, int) else None

        KH, KW = self.kernel_size
        init, rng = get_initializer(weight_init), as_generator(seed)
        fan_in = in_channels // groups * KH * KW
        fan_out = out_channels // groups * KH * KW
        W = init((out_channels, in_channels // groups, KH, KW), fan_in, fan_out, rng)
        self.W = Parameter(W, name="W", regularizer=regularizers.from_config(regularizer))
        self.b = Parameter(zeros((out_channels,)), name="b") if bias else None

    # ---------------------------------------------------------- geometry
    def _pads(self, H: int, W: int) -> tuple:
        """``(top, bottom, left, right)`` zero padding for an ``H x W`` input."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            return same_padding(H, self.kernel_size[0], self.stride[0]) + \
                same_padding(W, self.kernel_size[1], self.stride[1])
        PH, PW = self.padding
        return (PH, PH, PW, PW)

    def _geometry(self, H: int, W: int) -> tuple:
        """Padding and output size ``(pads, OH, OW)``; ValueError if the kernel does not fit."""
        (KH, KW), (SH, SW) = self.kernel_size, self.stride
        pads = self._pads(H, W)
        Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
        if KH > Hp or KW > Wp:
            raise ValueError(f"{self.name}: kernel {KH}x{KW} is larger than the padded input "
                             f"{Hp}x{Wp} (input {H}x{W}, padding {self.padding!r})")
        return pads, conv_output_size(Hp, KH, 0, SH), conv_output_size(Wp, KW, 0, SW)

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        if C != self.in_channels:
            raise ValueError(f"{self.name} expected input (N, {self.in_channels}, H, W), "
                             f"got (N, {C}, {H}, {W})")
        _, OH, OW = self._geometry(H, W)
        return (self.out_channels, OH, OW)

    # ------------------------------------------------------------ passes
    def _blocks(self, a, N: int, OH: int, OW: int) -> list:
        """``(start, stop)`` ranges of samples processed together, of (nearly) equal sizes.

        A block's columns and output rows take about :data:`COLUMN_BLOCK_BYTES`,
        or the whole batch is one block if it fits in :data:`SINGLE_BLOCK_BYTES`;
        ``a`` is any array of the batch (its device and dtype set the sizes).
        """
        (KH, KW), C, F = self.kernel_size, self.in_channels, self.out_channels
        per_sample = (C * KH * KW + F) * OH * OW * a.dtype.itemsize
        device = device_of(a)
        if N * per_sample <= SINGLE_BLOCK_BYTES[device]:
            return [(0, N)] if N else []
        step = max(1, COLUMN_BLOCK_BYTES[device] // per_sample)
        count = -(-N // step)                                    # ceil(N / step) blocks
        return [(N * i // count, N * (i + 1) // count) for i in range(count)]

    def forward(self, x, training: bool = False):
        C, F, G = self.in_channels, self.out_channels, self.groups
        self._check_input(x, ndim=4, channels=C, what=f"(N, {C}, H, W)")
        self._cache = None
        xp = get_array_module(x)
        N, _, H, W = x.shape
        (KH, KW), (SH, SW) = self.kernel_size, self.stride
        pads, OH, OW = self._geometry(H, W)

        x_padded = zero_pad2d(x, *pads)                    # (N, C, Hp, Wp)
        K, Fg = C // G * KH * KW, F // G                   # rows of cols / filters per group
        W2 = self.W.data.reshape(F, K)                     # (F, C/G*KH*KW)
        y = xp.empty((N, F, OH, OW), dtype=x.dtype)
        blocks = self._blocks(x, N, OH, OW)                # blocks of samples (one if small)
        # Columns that fit in one block are kept for backward, which comes next in training.
        keep_cols = training and self.W.trainable and len(blocks) == 1
        for s, e in blocks:
            n = e - s
            cols = kernels.im2col(x_padded[s:e], KH, KW, SH, SW)   # (C*KH*KW, n*OH*OW)
            y2 = xp.empty((F, n * OH * OW), dtype=x.dtype)         # (F, n*OH*OW)
            for g in range(G):                             # one matrix product per group
                xp.matmul(W2[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K], out=y2[g * Fg:(g + 1) * Fg])
            y4 = y2.reshape(F, n, OH, OW).transpose(1, 0, 2, 3)   # (n, F, OH, OW) view
            if self.b is not None:                         # transpose and bias in one pass
                xp.add(y4, self.b.data.reshape(1, F, 1, 1), out=y[s:e])
            else:
                y[s:e] = y4
            del y2, y4

        # dW needs the columns, which backward rebuilds from x_padded unless they were
        # kept (one block); dx needs only W. (x_padded is x itself when there is no
        # padding: forward never writes to it.)
        self._cache = (x_padded if self.W.trainable else None, tuple(x_padded.shape), pads,
                       tuple(y.shape), cols if keep_cols else None)
        return y

    def backward(self, dy):
        x_padded, x_padded_shape, pads, y_shape, kept_cols = self._saved()
        self._check_grad(dy, y_shape)
        if kept_cols is not None:         # used once: its buffer becomes dcols below
            self._cache = (x_padded, x_padded_shape, pads, y_shape, None)
        xp = get_array_module(dy)
        N, F, OH, OW = y_shape
        C, G = self.in_channels, self.groups
        (KH, KW), (SH, SW) = self.kernel_size, self.stride
        K, Fg = C // G * KH * KW, F // G
        top, bottom, left, right = pads
        Hp, Wp = x_padded_shape[2:]
        if self.W.trainable and x_padded is None:
            raise RuntimeError(f"{self.name}: W was frozen during forward() and unfrozen "
                               f"before backward(); run forward(x) again")

        W2 = self.W.data.reshape(F, K)                          # (F, C/G*KH*KW)
        dW2 = xp.zeros_like(W2) if self.W.trainable else None   # (F, C/G*KH*KW), summed over blocks
        db = xp.zeros((F,), dtype=dy.dtype)
        dx = xp.empty((N, C, Hp - top - bottom, Wp - left - right), dtype=dy.dtype)
        for s, e in self._blocks(dy, N, OH, OW):
            n = e - s
            dy2 = xp.ascontiguousarray(dy[s:e].transpose(1, 0, 2, 3)).reshape(F, n * OH * OW)
            db += dy2.sum(axis=1)                               # (F,); dy is not written to
            if dW2 is not None:
                cols = kept_cols if kept_cols is not None else \
                    kernels.im2col(x_padded[s:e], KH, KW, SH, SW)      # (C*KH*KW, n*OH*OW)
                for g in range(G):                              # (cols_g @ dy_g.T).T: the faster order
                    dW2[g * Fg:(g + 1) * Fg] += (cols[g * K:(g + 1) * K] @ dy2[g * Fg:(g + 1) * Fg].T).T
                dcols = cols                                    # dW is done with it: reuse the buffer
            else:
                dcols = xp.empty((C * KH * KW, n * OH * OW), dtype=dy.dtype)
            for g in range(G):                                  # dcols (C*KH*KW, n*OH*OW)
                xp.matmul(W2[g * Fg:(g + 1) * Fg].T, dy2[g * Fg:(g + 1) * Fg], out=dcols[g * K:(g + 1) * K])
            dx_padded = kernels.col2im(dcols, (n, C, Hp, Wp), KH, KW, SH, SW)   # (n, C, Hp, Wp)
            dx[s:e] = dx_padded[:, :, top:Hp - bottom, left:Wp - right]     # crop the padding
            del dy2, dcols, dx_padded
        del kept_cols
        if self.b is not None and self.b.trainable:
            self.b.grad = db
        if dW2 is not None:
            self.W.grad = dW2.reshape(self.W.data.shape)        # (F, C/G, KH, KW)
        return dx                                               # (N, C, H, W)

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "groups": self.groups, "bias": self.b is not None,
                "weight_init": self.weight_init, "seed": self.seed, "name": self.name,
                "regularizer": regularizers.to_config(self.W.regularizer, self.name)}


__all__ = ["im2col", "col2im", "same_padding", "Conv2D"]
