"""Transposed convolution ("deconvolution"): the adjoint of :class:`~nnlite.conv.Conv2D`.

Shape notation: see :mod:`nnlite.layer`. Here the *input* ``x`` has C channels
and size ``H x W``; the output has F channels and size ``OH x OW``.
"""
from __future__ import annotations

from . import regularizers
from .backend import as_generator, get_array_module
from .functional import col2im, im2col
from .initializers import get_initializer, zeros
from .layer import Layer, pair
from .padding import crop2d, zero_pad2d
from .parameter import Parameter


class ConvTranspose2D(Layer):
    """Transposed 2-D convolution: upsampling by spreading each input pixel over a kernel.

    Each input pixel ``x[n, c, h, w]`` adds ``x[n, c, h, w] * W[c, f]`` (a KH x KW
    patch) onto the output, at rows ``h*SH .. h*SH + KH - 1`` and columns
    ``w*SW .. w*SW + KW - 1`` of the uncropped output; overlapping patches add
    up; ``output_padding`` (OPH, OPW) zero rows (columns) are appended at the
    bottom (right); then PH rows (PW columns) are cropped from each side::

        y_full[n, f, h*SH + i, w*SW + j] += sum_c x[n, c, h, w] * W[c, f, i, j]
                                            (y_full: (H-1)*SH + KH + OPH rows)
        y = y_full[:, :, PH:PH + OH, PW:PW + OW] + b[f]

        OH = (H - 1) * SH - 2 * PH + KH + OPH      OW = (W - 1) * SW - 2 * PW + KW + OPW

    Why ``output_padding``: a strided Conv2D maps several input sizes to one
    output size (with stride 2, kernel 3, padding 1, both 7x7 and 8x8 give
    4x4), so its transpose has to be told which one to restore. With
    ``output_padding=0`` it gives the smallest (7x7 here); ``output_padding=1``
    gives 8x8. This is PyTorch's ``output_padding``: the extra rows hold what
    the uncropped output has there (the patches of the last input row that
    reach that far), or zeros (plus the bias) beyond it, and the layer stays
    the exact adjoint of the Conv2D that maps the larger size back. It must be
    smaller than the stride (a full stride more would be another input row).

    This is exactly the adjoint (the transpose) of a :class:`~nnlite.conv.Conv2D`
    from F channels to C channels with the same W, stride and padding: for all
    x and z, ``<conv(z), x> == <z, conv_transpose(x)>``, which is also how it
    maps back the shape that the conv reduced. It is implemented that way:
    ``cols = W_rows.T @ x_rows`` (the columns a conv would have produced), then
    :func:`~nnlite.conv.col2im` adds them onto the image.

    Backpropagation (``dy = dL/dy``) is therefore a plain convolution::

        dcols = im2col(pad(dy))                      (F*KH*KW, N*H*W): still H x W windows,
                                                     as OPH < SH is less than a stride
        dx    = W_rows @ dcols        -> the (strided) correlation of dy with W = Conv2D(dy)
        dW    = x_rows @ dcols.T      -> the correlation of dy with the input
        db[f] = sum_{n, oh, ow} dy[n, f, oh, ow]

    with ``W_rows = W.reshape(C, F*KH*KW)`` and ``x_rows = x`` as ``(C, N*H*W)``.

    Shapes:
        x: ``(N, C, H, W)``; y: ``(N, F, OH, OW)``;
        W: ``(C, F, KH, KW)`` (PyTorch's layout; the same array as the W of the
        Conv2D from F to C channels that it is the adjoint of); b: ``(F,)``.

    Args:
        in_channels: C.
        out_channels: F.
        kernel_size: ``k`` or ``(KH, KW)``.
        stride: ``s`` or ``(SH, SW)``: the upsampling factor.
        padding: ``p`` or ``(PH, PW)``: rows/columns cropped from each side of
            the output (the padding of the matching Conv2D).
        output_padding: ``op`` or ``(OPH, OPW)``, each in ``[0, stride)``: rows
            (columns) added at the bottom (right) of the output, to restore an
            input size the matching Conv2D had rounded down.
        bias: learn a per-channel offset ``b``.
        weight_init: initialiser name for W, with ``fan_in = C*KH*KW / (SH*SW)``
            (the average number of inputs summed into one output) and
            ``fan_out = F*KH*KW``; b starts at zero.
        seed: int seed (or a :class:`~nnlite.backend.Generator`) for W.
        name: layer name.
        regularizer: optional regularizer attached to W (an :mod:`nnlite.regularizers`
            object, a name such as ``"l2"``, or the dict that ``get_config()`` holds).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, weight_init: str = "he_normal", seed=None,
                 name: str | None = None, regularizer=None):
        super().__init__(name)
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"ConvTranspose2D: {what} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "ConvTranspose2D")
        self.stride = pair(stride, "stride", "ConvTranspose2D")
        self.padding = pair(padding, "padding", "ConvTranspose2D")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"ConvTranspose2D: need kernel_size >= 1, stride >= 1, padding >= 0, "
                             f"got {kernel_size!r}, {stride!r}, {padding!r}")
        self.output_padding = pair(output_padding, "output_padding", "ConvTranspose2D")
        if any(not 0 <= op < s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2D: output_padding must be >= 0 and smaller than the "
                             f"stride {self.stride}, got {output_padding!r}")
        self.weight_init = weight_init
        self.seed = seed if isinstance(seed, int) else None

        (KH, KW), (SH, SW) = self.kernel_size, self.stride
        fan_in = in_channels * KH * KW / (SH * SW)
        fan_out = out_channels * KH * KW
        W = get_initializer(weight_init)((in_channels, out_channels, KH, KW), fan_in, fan_out,
                                         as_generator(seed))
        self.W = Parameter(W, name="W", regularizer=regularizers.from_config(regularizer))
        self.b = Parameter(zeros((out_channels,)), name="b") if bias else None

    def _out_hw(self, H: int, W: int) -> tuple:
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OPH, OPW = self.output_padding
        OH, OW = (H - 1) * SH - 2 * PH + KH + OPH, (W - 1) * SW - 2 * PW + KW + OPW
        if OH < 1 or OW < 1:
            raise ValueError(f"{self.name}: padding {self.padding} crops away the whole output "
                             f"for an input {H}x{W} (output would be {OH}x{OW})")
        return OH, OW

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        if C != self.in_channels:
            raise ValueError(f"{self.name} expected input (N, {self.in_channels}, H, W), "
                             f"got (N, {C}, {H}, {W})")
        return (self.out_channels,) + self._out_hw(H, W)

    def forward(self, x, training: bool = False):
        C, F = self.in_channels, self.out_channels
        self._check_input(x, ndim=4, channels=C, what=f"(N, {C}, H, W)")
        self._cache = None
        xp = get_array_module(x)
        N, _, H, W = x.shape
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding
        OH, OW = self._out_hw(H, W)

        x_rows = x.transpose(1, 0, 2, 3).reshape(C, N * H * W)         # (C, N*H*W)
        W_rows = self.W.data.reshape(C, F * KH * KW)                    # (C, F*KH*KW)
        cols = W_rows.T @ x_rows                                            # (F*KH*KW, N*H*W)
        y_full_shape = (N, F, OH + 2 * PH, OW + 2 * PW)             # (N, F, (H-1)*SH+KH+OPH, ...)
        y = crop2d(col2im(cols, y_full_shape, KH, KW, SH, SW), PH, PH, PW, PW)  # (N, F, OH, OW)
        if self.b is not None:
            y += self.b.data.reshape(1, F, 1, 1)  # y is our own buffer (col2im allocates it)
        self._cache = (x_rows if self.W.trainable else None, tuple(x.shape), tuple(y.shape))
        return y

    def backward(self, dy):
        x_rows, x_shape, y_shape = self._saved()
        self._check_grad(dy, y_shape)
        N, C, H, W = x_shape
        F = self.out_channels
        (KH, KW), (SH, SW), (PH, PW) = self.kernel_size, self.stride, self.padding

        dcols = im2col(zero_pad2d(dy, PH, PH, PW, PW), KH, KW, SH, SW)  # (F*KH*KW, N*H*W)
        W_rows = self.W.data.reshape(C, F * KH * KW)                         # (C, F*KH*KW)
        if self.b is not None and self.b.trainable:
            self.b.grad = dy.sum(axis=(0, 2, 3))                          # (F,)
        if self.W.trainable:
            if x_rows is None:
                raise RuntimeError(f"{self.name}: W was frozen during forward() and unfrozen "
                                   f"before backward(); run forward(x) again")
            self.W.grad = (x_rows @ dcols.T).reshape(self.W.data.shape)       # (C, F, KH, KW)
        dx_rows = W_rows @ dcols                                                  # (C, N*H*W)
        xp = get_array_module(dy)
        return xp.ascontiguousarray(dx_rows.reshape(C, N, H, W).transpose(1, 0, 2, 3))  # (N, C, H, W)

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "bias": self.b is not None,
                "weight_init": self.weight_init, "seed": self.seed, "name": self.name,
                "regularizer": regularizers.to_config(self.W.regularizer, self.name)}

