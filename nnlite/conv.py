"""2-D convolution (cross-correlation) by im2col, in plain NumPy/CuPy.

:func:`~nnlite.functional.im2col` and :func:`~nnlite.functional.col2im` (defined
in :mod:`nnlite.functional`, importable from here too) unfold the receptive
fields into columns and add columns back; ``Conv2D.forward`` and ``backward``
are then a few matrix products that read as the math. The same products, a
block of samples at a time and with the Numba (CPU) or CUDA (GPU) im2col and
col2im, are the fast path (:mod:`nnlite.kernels.conv_blocked`), which the layer
takes unless the plain references are forced (:func:`nnlite.kernels.use_reference`);
``tests/test_kernels.py`` holds the two paths equal.

Shape notation: see :mod:`nnlite.layer` (N, C, H, W, F, KH, KW, SH, SW, OH, OW);
``DH, DW`` are the dilation. Here ``Hp = PT + H + PB`` and ``Wp = PL + W + PR`` are
the padded sizes (top, bottom, left, right padding) and ``L = N * OH * OW``.

The column layout used by both functions::

    cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]

    cols.shape == (C*KH*KW, N*OH*OW)
        row    (c, i, j)    = c*KH*KW + i*KW + j   channel slowest, then kernel row, column
        column (n, oh, ow)  = n*OH*OW + oh*OW + ow  batch slowest, then output row, column

Each column is one receptive field, flattened; the rows of one channel group
form one contiguous block, so a grouped convolution is one matrix product per
group: ``W_g (F/G, C/G*KH*KW) @ cols_g (C/G*KH*KW, N*OH*OW)``.
"""
from __future__ import annotations

from . import kernels, regularizers
from .backend import as_generator, get_array_module
from .functional import col2im, dilated_output_size, im2col
from .initializers import get_initializer, zeros
from .kernels import conv_blocked
from .layer import Layer, pair
from .padding import crop2d, zero_pad2d
from .parameter import Parameter


def same_padding(n: int, k: int, s: int, d: int = 1) -> tuple:
    """TF/Keras ``"same"`` padding along one axis: ``(before, after)``.

    The output has ``ceil(n / s)`` positions; with the kernel's span
    ``k' = d*(k-1) + 1`` (``k`` taps, dilation ``d``) the total padding
    ``max((ceil(n / s) - 1) * s + k' - n, 0)`` is split evenly and, when odd, the
    extra row/column goes after (bottom/right), as in TensorFlow and Keras.
    With ``s = 1`` the total is ``k' - 1``: ``(k'-1)//2`` before, the rest after.
    """
    span = d * (k - 1) + 1
    out = -(-n // s)
    total = max((out - 1) * s + span - n, 0)
    return total // 2, total - total // 2


class Conv2D(Layer):
    """2-D convolution layer (cross-correlation, as in every DL framework).

    Math, for output channel ``f`` in group ``g = f // (F/G)`` and its input
    channels ``c = g*C/G + c'`` (``c' = 0 .. C/G - 1``)::

        y[n, f, oh, ow] = b[f] + sum_{c', i, j} W[f, c', i, j] * x_pad[n, c, oh*SH + i*DH, ow*SW + j*DW]

    i.e. the kernel slides over the input *without* being flipped (true
    convolution would use ``W[f, c', KH-1-i, KW-1-j]``). Computed as one matrix
    product per group on the columns of :func:`~nnlite.functional.im2col`:
    ``y_g = W_g (F/G, C/G*KH*KW) @ cols_g (C/G*KH*KW, N*OH*OW)``.

    Backpropagation (``dy = dL/dy``)::

        db[f]           = sum_{n, oh, ow} dy[n, f, oh, ow]
        dW[f, c', i, j] = sum_{n, oh, ow} dy[n, f, oh, ow] * x_pad[n, c, oh*SH + i*DH, ow*SW + j*DW]
                        -> the (valid) correlation of the input with dy    (dW_g = dy_g @ cols_g.T)
        dx_pad[n, c, h, w] = sum_{f, i, j, oh, ow : oh*SH + i*DH = h, ow*SW + j*DW = w}
                                 W[f, c', i, j] * dy[n, f, oh, ow]
                        -> the transposed convolution of dy with W   (dcols_g = W_g.T @ dy_g,
                           then col2im adds every column back where im2col took it)

    For stride and dilation 1 the last line is ``dx_pad[n, c] = sum_f
    full_convolution(dy[n, f], W[f, c'])``, the full *convolution* of dy with the
    kernel itself, which is the same as the full *correlation* of dy with the
    180-degree rotated kernel ``W[f, c', ::-1, ::-1]``. With a stride, dy first
    gets ``SH - 1`` (``SW - 1``) zeros between its rows (columns); with a dilation,
    the kernel gets ``DH - 1`` (``DW - 1``) zeros between its taps. ``dx`` is
    ``dx_pad`` without its padding.

    Shapes (notation of :mod:`nnlite.layer`, G = groups):
        x: ``(N, C, H, W)``; y: ``(N, F, OH, OW)`` with
        ``OH = floor((H + PT + PB - DH*(KH - 1) - 1) / SH) + 1`` (``PT = PB = PH`` except
        for "same"; with ``DH = 1`` this is ``floor((H + 2*PH - KH) / SH) + 1``);
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
        dilation: ``d`` or ``(DH, DW)``, the step between kernel taps (PyTorch's
            ``dilation``; 1: adjacent pixels). A 3x3 kernel with dilation 2 spans 5x5.
        weight_init: initialiser name for W (see :mod:`nnlite.initializers`), with
            ``fan_in = C/G*KH*KW`` and ``fan_out = F/G*KH*KW``; b starts at zero.
        seed: int seed (or a :class:`~nnlite.backend.Generator`) for W.
        name: layer name.
        regularizer: optional regularizer attached to W (an :mod:`nnlite.regularizers`
            object, a name such as ``"l2"``, or the dict that ``get_config()`` holds).

    Memory and speed: the fast path (:mod:`nnlite.kernels.conv_blocked`) unfolds a
    large batch a block of samples at a time, so the column buffer is at most a few
    tens of MB whatever the batch size; it caches the padded input and rebuilds each
    block's columns in backward. The plain path (``use_reference(True)``) keeps the
    whole batch's columns from forward to backward. When W is frozen nothing is
    cached for dW (dx needs W only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 groups: int = 1, bias: bool = True, weight_init: str = "he_normal", seed=None,
                 name: str | None = None, regularizer=None, dilation=1):
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
        self.dilation = pair(dilation, "dilation", "Conv2D")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"Conv2D: kernel_size, stride and dilation must be >= 1, got "
                             f"{kernel_size!r}, {stride!r} and {dilation!r}")
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
        #: False: ``backward`` fills W.grad and b.grad only and returns None. For the first
        #: layer of a model, whose input gradient nobody uses (the dcols product and col2im
        #: are skipped: about 4 ms of the MIAS CNN's conv1 backward at batch 64). Set it on
        #: that layer only; every other layer must return dx.
        self.need_input_grad = True

    # ---------------------------------------------------------- geometry
    def _pads(self, H: int, W: int) -> tuple:
        """``(top, bottom, left, right)`` zero padding for an ``H x W`` input."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (KH, KW), (SH, SW), (DH, DW) = self.kernel_size, self.stride, self.dilation
            return same_padding(H, KH, SH, DH) + same_padding(W, KW, SW, DW)
        PH, PW = self.padding
        return (PH, PH, PW, PW)

    def _geometry(self, H: int, W: int) -> tuple:
        """Padding and output size ``(pads, OH, OW)``; ValueError if the kernel does not fit."""
        (KH, KW), (SH, SW), (DH, DW) = self.kernel_size, self.stride, self.dilation
        pads = self._pads(H, W)
        Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
        span_h, span_w = DH * (KH - 1) + 1, DW * (KW - 1) + 1     # what the kernel covers
        if span_h > Hp or span_w > Wp:
            spans = f" (dilation {DH}x{DW}: it spans {span_h}x{span_w})" if DH * DW > 1 else ""
            raise ValueError(f"{self.name}: kernel {KH}x{KW}{spans} is larger than the padded "
                             f"input {Hp}x{Wp} (input {H}x{W}, padding {self.padding!r})")
        return pads, dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        if C != self.in_channels:
            raise ValueError(f"{self.name} expected input (N, {self.in_channels}, H, W), "
                             f"got (N, {C}, {H}, {W})")
        _, OH, OW = self._geometry(H, W)
        return (self.out_channels, OH, OW)

    # ------------------------------------------------------------ passes
    # The cache: (for_dW, kept, pads, x_padded.shape, y.shape). for_dW is what dW needs
    # (the plain path's columns, the fast path's padded input; None when W is frozen);
    # kept is None on the plain path and the fast path's list of kept columns otherwise.
    def forward(self, x, training: bool = False):
        C, F, G = self.in_channels, self.out_channels, self.groups
        self._check_input(x, ndim=4, channels=C, what=f"(N, {C}, H, W)")
        self._cache = None
        pads, OH, OW = self._geometry(*x.shape[2:])
        x_padded = zero_pad2d(x, *pads)                               # (N, C, Hp, Wp)
        b = None if self.b is None else self.b.data
        if not kernels.reference_forced():      # the fast path: the same products, in blocks
            return self._forward_blocked(x_padded, b, pads, training)
        N = x.shape[0]
        cols = im2col(x_padded, *self.kernel_size, *self.stride, *self.dilation)  # (C*KH*KW, L)
        W_groups = self.W.data.reshape(G, F // G, -1)                 # (G, F/G, C/G*KH*KW)
        y_groups = W_groups @ cols.reshape(G, -1, N * OH * OW)        # (G, F/G, L): y_g = W_g @ cols_g
        xp = get_array_module(x)
        y = y_groups.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)      # (N, F, OH, OW) view
        y = xp.ascontiguousarray(y)
        if b is not None:
            y += b.reshape(1, F, 1, 1)
        self._cache = (cols if self.W.trainable else None, None, pads, x_padded.shape, y.shape)
        return y

    def backward(self, dy):
        for_dW, kept, pads, x_padded_shape, y_shape = self._saved()
        self._check_grad(dy, y_shape)
        if self.W.trainable and for_dW is None:
            raise RuntimeError(f"{self.name}: W was frozen during forward() and unfrozen "
                               f"before backward(); run forward(x) again")
        if kept is not None:                    # forward took the fast path
            return self._backward_blocked(dy)
        (N, F, OH, OW), G = y_shape, self.groups
        dy_groups = dy.transpose(1, 0, 2, 3).reshape(G, F // G, N * OH * OW)   # (G, F/G, L)
        W_groups = self.W.data.reshape(G, F // G, -1)                 # (G, F/G, C/G*KH*KW)
        if self.b is not None and self.b.trainable:
            self.b.grad = dy.sum(axis=(0, 2, 3))                      # db: (F,)
        if self.W.trainable:
            cols_groups = for_dW.reshape(G, -1, N * OH * OW)          # (G, C/G*KH*KW, L)
            dW_groups = dy_groups @ cols_groups.transpose(0, 2, 1)    # dW_g = dy_g @ cols_g.T
            self.W.grad = dW_groups.reshape(self.W.data.shape)        # (F, C/G, KH, KW)
        if not self.need_input_grad:
            return None
        dcols_groups = W_groups.transpose(0, 2, 1) @ dy_groups        # dcols_g = W_g.T @ dy_g
        dcols = dcols_groups.reshape(-1, N * OH * OW)                 # (C*KH*KW, L)
        dx_padded = col2im(dcols, x_padded_shape, *self.kernel_size, *self.stride, *self.dilation)
        return crop2d(dx_padded, *pads)                               # (N, C, H, W)

    def _forward_blocked(self, x_padded, b, pads, training: bool):
        """Forward on the fast path (:func:`nnlite.kernels.conv_blocked.conv2d_forward`)."""
        trainable = self.W.trainable
        y, kept = conv_blocked.conv2d_forward(x_padded, self.W.data, b, self.stride,
                                              self.dilation, self.groups,
                                              keep_cols=training and trainable)
        # x_padded is x itself when there is no padding: forward never writes to it.
        self._cache = (x_padded if trainable else None, kept, pads, x_padded.shape, y.shape)
        return y

    def _backward_blocked(self, dy):
        """Backward on the fast path (:func:`nnlite.kernels.conv_blocked.conv2d_backward`)."""
        x_padded, kept, pads, x_padded_shape, _ = self._cache
        dx, dW, db = conv_blocked.conv2d_backward(dy, x_padded, kept, self.W.data,
                                                  self.W.trainable, self.stride, self.dilation,
                                                  self.groups, pads, x_padded_shape,
                                                  need_dx=self.need_input_grad)
        if self.b is not None and self.b.trainable:
            self.b.grad = db
        if dW is not None:
            self.W.grad = dW
        return dx

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "groups": self.groups, "bias": self.b is not None, "dilation": self.dilation,
                "weight_init": self.weight_init, "seed": self.seed, "name": self.name,
                "regularizer": regularizers.to_config(self.W.regularizer, self.name)}


__all__ = ["im2col", "col2im", "same_padding", "Conv2D"]
