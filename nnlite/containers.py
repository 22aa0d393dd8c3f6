"""Blocks that split and join paths: Identity, Add, Concatenate, Residual.

Backprop through a graph needs one rule beyond the chain rule:

* where a path **splits** (the same ``x`` feeds several branches), the
  gradients that come back from the branches are **summed** into ``dx``,
  because ``x`` influences the loss through every branch:
  ``dL/dx = sum_k dL/dx_k``;
* where paths **join**, ``dy`` is passed on: an addition ``y = a + b``
  hands the same ``dy`` to both (``dy/da = dy/db = 1``); a concatenation
  hands each branch its own slice of ``dy``.

Every container below feeds one input ``x`` to all its branches and joins
them, so a block is still a layer (one input, one output) and sits inside a
:class:`~nnlite.sequential.Sequential` like any other. That is enough for a
ResNet (``Residual``) and for a U-Net: each level of a U-Net is
``Concatenate([Identity(), Sequential([pool, <deeper levels>, up-conv])])``
followed by its decoder convolutions; the skip connection is the identity
branch, the deeper levels are the other branch.
"""
from __future__ import annotations

from .backend import get_array_module
from .layer import Layer, layer_spec


class Identity(Layer):
    """``y = x``; backward ``dx = dy``. The shortcut of a residual block, a skip branch."""

    def __init__(self, name: str | None = None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._cache = tuple(x.shape)
        return x.copy()

    def backward(self, dy):
        self._check_grad(dy, self._saved())
        return dy.copy()


def _as_branches(branches, where: str) -> list:
    if isinstance(branches, Layer) or not isinstance(branches, (list, tuple)) or not branches:
        raise ValueError(f"{where}: branches must be a non-empty list of layers (None for the "
                         f"identity), got {branches!r}")
    out = []
    for i, b in enumerate(branches):
        b = Identity() if b is None else b
        if not isinstance(b, Layer):
            raise ValueError(f"{where}: branch {i} is a {type(b).__name__}, not an nnlite Layer")
        out.append(b)
    return out


class _Branches(Layer):
    """Shared part of Add and Concatenate: every branch gets the same ``x``."""

    def __init__(self, branches, name: str | None = None):
        super().__init__(name)
        self.branches = _as_branches(branches, type(self).__name__)

    def _branch_shapes(self, input_shape) -> list:
        return [tuple(b.output_shape(tuple(input_shape))) for b in self.branches]

    def _backward_branches(self, grads):
        """dL/dx = sum over branches of each branch's input gradient (the split rule)."""
        dx = None
        for branch, dy_k in zip(self.branches, grads):
            dx_k = branch.backward(dy_k)
            dx = dx_k if dx is None else dx + dx_k
        return dx


class Add(_Branches):
    """Sum of branches applied to the same input: the join of a residual block.

    Math::

        y = sum_k f_k(x)                    (every f_k(x) has the same shape)

    Backward: the sum hands the same ``dy`` to every branch (the join), and
    ``x`` fed every branch, so their input gradients add up (the split)::

        dx = sum_k f_k.backward(dy)

    Args:
        branches: list of layers; ``None`` stands for the identity.
    """

    def forward(self, x, training: bool = False):
        outputs = [b.forward(x, training=training) for b in self.branches]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise ValueError(f"{self.name}: branches give different shapes "
                             f"{[tuple(o.shape) for o in outputs]}; Add needs one shape")
        y = outputs[0].copy() if len(outputs) == 1 else outputs[0] + outputs[1]
        for o in outputs[2:]:
            y += o
        self._cache = tuple(y.shape)
        return y

    def backward(self, dy):
        self._check_grad(dy, self._saved())
        return self._backward_branches([dy] * len(self.branches))

    def output_shape(self, input_shape: tuple) -> tuple:
        shapes = self._branch_shapes(input_shape)
        if len(set(shapes)) != 1:
            raise ValueError(f"{self.name}: branches give different shapes {shapes}")
        return shapes[0]

    def get_config(self) -> dict:
        return {"branches": [layer_spec(b) for b in self.branches]}


class Concatenate(_Branches):
    """Branches applied to the same input, stacked along ``axis`` (channels by default).

    Math (``axis=1``, branch k giving ``C_k`` channels)::

        y = [f_1(x), f_2(x), ...]  along axis 1: (N, C_1 + C_2 + ..., H, W)

    Backward: the join hands branch k its own slice of ``dy`` (channels
    ``C_1 + ... + C_{k-1}`` up to ``+ C_k``); the split sums the branches'
    input gradients::

        dx = sum_k f_k.backward(dy[:, offset_k : offset_k + C_k])

    A U-Net skip connection is ``Concatenate([Identity(), deeper])``: the
    decoder sees the encoder's features beside the upsampled deeper ones.

    Args:
        branches: list of layers; ``None`` stands for the identity.
        axis: the axis to join along (1: channels; negative counts from the end).
    """

    def __init__(self, branches, axis: int = 1, name: str | None = None):
        super().__init__(branches, name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (0 is the batch), got {axis!r}")
        self.axis = axis

    def forward(self, x, training: bool = False):
        outputs = [b.forward(x, training=training) for b in self.branches]
        axis = self.axis % outputs[0].ndim
        for k, o in enumerate(outputs[1:], 1):
            a, b = list(outputs[0].shape), list(o.shape)
            a[axis] = b[axis] = None
            if a != b:
                raise ValueError(f"{self.name}: branch {k} gives shape {tuple(o.shape)}, branch 0 "
                                 f"{tuple(outputs[0].shape)}; they must agree except on axis {self.axis}")
        xp = get_array_module(*outputs)
        y = xp.concatenate(outputs, axis=axis)
        self._cache = (tuple(y.shape), [o.shape[axis] for o in outputs], axis)
        return y

    def backward(self, dy):
        y_shape, sizes, axis = self._saved()
        self._check_grad(dy, y_shape)
        grads, start = [], 0
        for size in sizes:
            index = [slice(None)] * dy.ndim
            index[axis] = slice(start, start + size)
            grads.append(dy[tuple(index)])                  # this branch's slice of dy
            start += size
        return self._backward_branches(grads)

    def output_shape(self, input_shape: tuple) -> tuple:
        shapes = self._branch_shapes(input_shape)
        axis = (self.axis - 1) % len(shapes[0]) if self.axis > 0 else self.axis % len(shapes[0])
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def get_config(self) -> dict:
        return {"branches": [layer_spec(b) for b in self.branches], "axis": self.axis}


class Residual(Layer):
    """A residual block: ``y = body(x) + shortcut(x)`` (He et al., ResNet).

    The shortcut is the identity (``shortcut=None``) or a projection (a 1x1
    convolution with stride, usually followed by BatchNorm) when the body
    changes the shape. ResNet's ReLU after the sum is not part of the block:
    put it after, ``Sequential([Residual(body, proj), ReLU()])``.

    Backward: the sum passes ``dy`` to both paths; ``x`` fed both, so::

        dx = body.backward(dy) + shortcut.backward(dy)

    With an identity shortcut ``dx = body.backward(dy) + dy``: however small
    the body's gradient gets, ``dy`` itself reaches the layers below, which
    is why very deep residual networks still train.

    Args:
        body: the layer (usually a Sequential) on the main path.
        shortcut: the layer on the shortcut path; ``None`` for the identity.
    """

    def __init__(self, body: Layer, shortcut: Layer | None = None, name: str | None = None):
        super().__init__(name)
        for what, v in (("body", body), ("shortcut", shortcut)):
            if v is not None and not isinstance(v, Layer):
                raise ValueError(f"Residual: {what} must be an nnlite Layer, got {type(v).__name__}")
        if body is None:
            raise ValueError("Residual: body must be an nnlite Layer, got None")
        self.body = body
        self.shortcut = Identity() if shortcut is None else shortcut

    def forward(self, x, training: bool = False):
        main = self.body.forward(x, training=training)
        skip = self.shortcut.forward(x, training=training)
        if main.shape != skip.shape:
            raise ValueError(f"{self.name}: body gives {tuple(main.shape)} but the shortcut gives "
                             f"{tuple(skip.shape)}; give the block a projection shortcut")
        y = main + skip
        self._cache = tuple(y.shape)
        return y

    def backward(self, dy):
        self._check_grad(dy, self._saved())
        return self.body.backward(dy) + self.shortcut.backward(dy)

    def output_shape(self, input_shape: tuple) -> tuple:
        main = tuple(self.body.output_shape(tuple(input_shape)))
        skip = tuple(self.shortcut.output_shape(tuple(input_shape)))
        if main != skip:
            raise ValueError(f"{self.name}: body gives {main} but the shortcut gives {skip}")
        return main

    def get_config(self) -> dict:
        shortcut = None if type(self.shortcut) is Identity else layer_spec(self.shortcut)
        return {"body": layer_spec(self.body), "shortcut": shortcut}
