"""Activation layers: ReLU, LeakyReLU, Tanh, Sigmoid and Softmax.

Each acts on an input of any rank and keeps its shape and dtype. Apart from
Softmax they are element-wise, so backward is ``dx = dy * f'(x)`` with the
derivative written in the class docstring; Softmax couples the entries along
one axis and its backward is a Jacobian-vector product.

The core computations are small functions (``relu_forward``,
``softmax_backward`` here; the numerically stable :func:`~nnlite.functional.sigmoid`
and :func:`~nnlite.functional.softmax` in :mod:`nnlite.functional`, the ones the
losses and ``predict_proba`` use too), so a faster kernel can be dropped in
beside the readable one.
"""
from __future__ import annotations

import math

from .backend import get_array_module
from .functional import sigmoid, softmax
from .layer import Layer


# --------------------------------------------------------------- kernels
def relu_forward(x):
    """``y = max(x, 0)`` and the mask ``x > 0`` (the derivative, 1 or 0)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0), x > 0


def leaky_relu_forward(x, alpha: float):
    """``y = x if x > 0 else alpha * x`` and the mask ``x > 0``."""
    xp = get_array_module(x)
    positive = x > 0
    return xp.where(positive, x, alpha * x), positive


def softmax_backward(dy, y, axis: int):
    """Jacobian-vector product ``dx = y * (dy - sum(dy * y, axis))``.

    From ``dy_i/dx_j = y_i * (delta_ij - y_j)``:
    ``dx_j = sum_i dy_i * y_i * (delta_ij - y_j) = y_j * (dy_j - sum_i dy_i * y_i)``.
    """
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


# ---------------------------------------------------------------- layers
class ReLU(Layer):
    """Rectified linear unit, element-wise.

    Forward::   y = max(x, 0)
    Backward::  dx = dy * [x > 0]      (f'(x) = 1 for x > 0, 0 for x <= 0)

    The derivative at exactly ``x = 0`` is taken as **0** (the kink has no
    derivative; 0 is a valid subgradient and the common convention).

    Shapes: x (any shape) -> y (same shape and dtype).
    """

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._check_input(x)
        y, positive = relu_forward(x)
        self._cache = positive
        return y

    def backward(self, dy):
        positive = self._saved()
        self._check_grad(dy, positive.shape)
        # dy * [x > 0], the formula itself: a bool mask times float32 stays float32, and a
        # product runs about 8x faster than where(mask, dy, 0), whose per-element branch on a
        # random mask the CPU mispredicts half of the time.
        return dy * positive


class LeakyReLU(Layer):
    """Leaky ReLU, element-wise: a small slope ``alpha`` for negative inputs.

    Forward::   y = x if x > 0 else alpha * x
    Backward::  dx = dy if x > 0 else alpha * dy   (f'(x) = 1 for x > 0, alpha for x <= 0)

    At exactly ``x = 0`` the derivative is taken as ``alpha``.

    Args:
        alpha: slope for x <= 0 (default 0.01; 0 gives ReLU).

    Shapes: x (any shape) -> y (same shape and dtype).
    """

    def __init__(self, alpha: float = 0.01, name=None):
        super().__init__(name)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                or not math.isfinite(alpha):
            raise ValueError(f"LeakyReLU: alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)  # a Python float keeps float32 arrays float32

    def forward(self, x, training: bool = False):
        self._check_input(x)
        y, positive = leaky_relu_forward(x, self.alpha)
        self._cache = positive
        return y

    def backward(self, dy):
        positive = self._saved()
        self._check_grad(dy, positive.shape)
        xp = get_array_module(dy)
        return xp.where(positive, dy, self.alpha * dy)

    def get_config(self) -> dict:
        return {"alpha": self.alpha}


class Tanh(Layer):
    """Hyperbolic tangent, element-wise.

    Forward::   y = tanh(x)
    Backward::  dx = dy * (1 - y**2)     (tanh'(x) = 1 - tanh(x)**2)

    Shapes: x (any shape) -> y (same shape and dtype).
    """

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._check_input(x)
        xp = get_array_module(x)
        y = xp.tanh(x)
        self._cache = y
        return y

    def backward(self, dy):
        y = self._saved()
        self._check_grad(dy, y.shape)
        return dy * (1 - y * y)


class Sigmoid(Layer):
    """Logistic sigmoid, element-wise, stable for large |x|.

    Forward::   y = 1 / (1 + exp(-x))    (:func:`nnlite.functional.sigmoid`, via exp(-|x|): no overflow)
    Backward::  dx = dy * y * (1 - y)    (sigma'(x) = sigma(x) * (1 - sigma(x)))

    For very large |x| the output is exactly 0 or 1 and the gradient 0.
    For a classifier, prefer raw logits with ``BinaryCrossEntropy`` (which
    fuses the sigmoid) over this layer followed by a log.

    Shapes: x (any shape) -> y (same shape and dtype).
    """

    def __init__(self, name=None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._check_input(x)
        y = sigmoid(x)
        self._cache = y
        return y

    def backward(self, dy):
        y = self._saved()
        self._check_grad(dy, y.shape)
        return dy * y * (1 - y)


class Softmax(Layer):
    """Softmax along one axis (default the channel/class axis 1).

    Forward::   y_i = exp(x_i - m) / sum_j exp(x_j - m),   m = max_j x_j  (along ``axis``)
    Backward::  dx = y * (dy - sum(dy * y, axis))          (Jacobian-vector product,
                from dy_i/dx_j = y_i * (delta_ij - y_j))

    The max subtraction makes it finite for any finite logits (e.g. offsets
    of +-500). For training a classifier use ``SoftmaxCrossEntropy`` on the
    logits instead, which is fused and more accurate.

    Args:
        axis: the axis that sums to 1 (negative values count from the end).

    Shapes: x (any shape with rank > axis) -> y (same shape and dtype).
    """

    def __init__(self, axis: int = 1, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Softmax: axis must be an int, got {axis!r}")
        self.axis = axis

    def forward(self, x, training: bool = False):
        self._check_input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"{self.name}: axis {self.axis} is out of range for input of "
                             f"shape {tuple(x.shape)} (rank {x.ndim})")
        y = softmax(x, self.axis)
        self._cache = y
        return y

    def backward(self, dy):
        y = self._saved()
        self._check_grad(dy, y.shape)
        return softmax_backward(dy, y, self.axis)

    def output_shape(self, input_shape: tuple) -> tuple:
        # The batch axis is not part of ``input_shape``; axis counts it.
        rank = len(input_shape) + 1
        if not -rank <= self.axis < rank:
            raise ValueError(f"{self.name}: axis {self.axis} cannot be used with per-sample "
                             f"shape {tuple(input_shape)}")
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {"axis": self.axis}
