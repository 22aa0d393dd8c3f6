"""Zero padding of images, as a layer and as the helpers the conv layers share.

Padding amounts are written ``(top, bottom, left, right)`` throughout; see the
shape notation in :mod:`nnlite.layer`.
"""
from __future__ import annotations

from .backend import get_array_module
from .layer import Layer


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def padding4(padding, layer: str = "ZeroPad2D") -> tuple:
    """Normalise ``p``, ``(ph, pw)`` or ``(top, bottom, left, right)`` to four ints >= 0."""
    if _is_int(padding):
        pads = (padding,) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(map(_is_int, padding)):
        pads = (padding[0], padding[0], padding[1], padding[1])
    elif isinstance(padding, (tuple, list)) and len(padding) == 4 and all(map(_is_int, padding)):
        pads = tuple(padding)
    else:
        raise ValueError(f"{layer}: padding must be an int, a pair (ph, pw) or a 4-tuple "
                         f"(top, bottom, left, right), got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"{layer}: padding must be >= 0, got {padding!r}")
    return tuple(int(p) for p in pads)


def zero_pad2d(x, top: int, bottom: int, left: int, right: int):
    """Pad the last two axes of ``x`` with zeros; ``x`` itself when there is nothing to add.

    Shapes: ``(N, C, H, W) -> (N, C, top + H + bottom, left + W + right)``. ``x`` is never
    written to; the result is a new array in ``x``'s dtype when any pad is non-zero.
    """
    if top == bottom == left == right == 0:
        return x
    xp = get_array_module(x)
    H, W = x.shape[-2:]
    out = xp.zeros(x.shape[:-2] + (top + H + bottom, left + W + right), dtype=x.dtype)
    out[..., top:top + H, left:left + W] = x
    return out


def crop2d(x, top: int, bottom: int, left: int, right: int):
    """Undo :func:`zero_pad2d`: drop the border (the gradient of padding is a crop).

    Shapes: ``(N, C, Hp, Wp) -> (N, C, Hp - top - bottom, Wp - left - right)``, as a new
    contiguous array (``x`` itself when there is nothing to drop).
    """
    if top == bottom == left == right == 0:
        return x
    xp = get_array_module(x)
    Hp, Wp = x.shape[-2:]
    return xp.ascontiguousarray(x[..., top:Hp - bottom, left:Wp - right])


class ZeroPad2D(Layer):
    """Add a border of zeros around each feature map.

    Math: ``y[n, c, top + h, left + w] = x[n, c, h, w]`` and zero elsewhere, so
    the gradient is the crop ``dx = dy[:, :, top:top + H, left:left + W]``.

    Shapes (notation of :mod:`nnlite.layer`):
        x: ``(N, C, H, W)``; y: ``(N, C, top + H + bottom, left + W + right)``.

    Args:
        padding: ``p`` (all four sides), ``(ph, pw)`` (``ph`` rows above and below,
            ``pw`` columns left and right) or ``(top, bottom, left, right)``.
        name: layer name.
    """

    def __init__(self, padding, name: str | None = None):
        super().__init__(name)
        self.padding = padding4(padding, "ZeroPad2D")

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=4, what="(N, C, H, W)")
        top, bottom, left, right = self.padding
        y = zero_pad2d(x, top, bottom, left, right)
        if y is x:      # padding 0: still return a new array, never an alias of the input
            y = x.copy()
        self._cache = tuple(y.shape)
        return y

    def backward(self, dy):
        y_shape = self._saved()
        self._check_grad(dy, y_shape)
        return crop2d(dy, *self.padding)  # the zeros had no input: their gradient is dropped

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        top, bottom, left, right = self.padding
        return (C, top + H + bottom, left + W + right)

    def get_config(self) -> dict:
        return {"padding": list(self.padding), "name": self.name}
