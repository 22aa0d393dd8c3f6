"""Fully connected (dense) layer and Flatten."""
from __future__ import annotations

import math

from . import regularizers
from .backend import as_generator, get_array_module
from .initializers import get_initializer, zeros
from .layer import Layer
from .parameter import Parameter


class Dense(Layer):
    """Fully connected layer: every output unit sees every input feature.

    Math::

        y = x @ W + b              y[n, o] = b[o] + sum_i x[n, i] * W[i, o]

    Backpropagation (``dy = dL/dy``)::

        dW = x.T @ dy              (in_features, out_features)
        db = sum_n dy[n, :]        (out_features,)
        dx = dy @ W.T              (N, in_features)

    Shapes:
        x: ``(N, in_features)``; y: ``(N, out_features)``;
        W: ``(in_features, out_features)``; b: ``(out_features,)``.
        Put a :class:`Flatten` before it to feed it feature maps ``(N, C, H, W)``.

    Memory: ``backward`` writes dW into the previous step's ``W.grad`` array when
    nothing else refers to it (:meth:`~nnlite.parameter.Parameter.reusable_grad`), so a
    large layer does not get a fresh gradient array, mapped and zeroed by the
    operating system, every step; a gradient you kept (``g = layer.W.grad``) is
    never overwritten.

    Args:
        in_features: number of input features per sample.
        out_features: number of output units.
        bias: learn the offset ``b``.
        weight_init: initialiser name for W (see :mod:`nnlite.initializers`), with
            ``fan_in = in_features`` and ``fan_out = out_features``: ``"he_normal"``
            (default, for ReLU nets) or ``"glorot_uniform"`` (tanh/sigmoid or a final
            linear layer), ...; b starts at zero.
        seed: int seed (or a :class:`~nnlite.backend.Generator`) for W.
        name: layer name.
        regularizer: optional regularizer attached to W (an :mod:`nnlite.regularizers`
            object, a name such as ``"l2"``, or the dict that ``get_config()`` holds).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_init: str = "he_normal", seed=None, name: str | None = None,
                 regularizer=None):
        super().__init__(name)
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"Dense: {what} must be a positive int, got {v!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight_init = weight_init
        self.seed = seed if isinstance(seed, int) else None
        W = get_initializer(weight_init)((in_features, out_features), in_features, out_features,
                                         as_generator(seed))
        self.W = Parameter(W, name="W", regularizer=regularizers.from_config(regularizer))
        self.b = Parameter(zeros((out_features,)), name="b") if bias else None

    def forward(self, x, training: bool = False):
        self._check_input(x, ndim=2, channels=self.in_features, what=f"(N, {self.in_features})")
        y = x @ self.W.data                      # (N, out_features)
        if self.b is not None:
            y += self.b.data
        self._cache = x                          # dW needs x; x is not copied or changed
        return y

    def backward(self, dy):
        x = self._saved()
        self._check_grad(dy, (x.shape[0], self.out_features))
        if self.W.trainable:                     # (in_features, out_features), into the old
            xp = get_array_module(x)             # gradient's memory when nobody else holds it
            out = self.W.reusable_grad((self.in_features, self.out_features),
                                       xp.result_type(x.dtype, dy.dtype))
            self.W.grad = xp.matmul(x.T, dy, out=out)       # dW = x.T @ dy
        if self.b is not None and self.b.trainable:
            self.b.grad = dy.sum(axis=0)         # (out_features,)
        return dy @ self.W.data.T                # (N, in_features)

    def output_shape(self, input_shape: tuple) -> tuple:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"{self.name} expected input (N, {self.in_features}), "
                             f"got (N, {', '.join(map(str, input_shape))})")
        return (self.out_features,)

    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.b is not None, "weight_init": self.weight_init,
                "seed": self.seed, "name": self.name,
                "regularizer": regularizers.to_config(self.W.regularizer, self.name)}


class Flatten(Layer):
    """Flatten every axis but the batch axis.

    Math: ``y[n, :] = x[n].ravel()`` (C order), so ``dx = dy.reshape(x.shape)``.

    Shapes: x ``(N, d1, d2, ...)`` of rank >= 2, e.g. ``(N, C, H, W)``;
    y ``(N, d1*d2*...)``, e.g. ``(N, C*H*W)``.
    """

    def __init__(self, name: str | None = None):
        super().__init__(name)

    def forward(self, x, training: bool = False):
        self._check_input(x, what="(N, ...) of rank >= 2")
        if x.ndim < 2:
            raise ValueError(f"{self.name} expected input (N, ...) of rank >= 2, "
                             f"got shape {tuple(x.shape)}")
        self._cache = tuple(x.shape)
        # (N, d1*d2*...). A copy, never a view of x: an output that aliased the input would
        # change when the caller later changes x (gradcheck perturbs x in place, for one).
        return x.reshape(x.shape[0], math.prod(x.shape[1:])).copy()

    def backward(self, dy):
        x_shape = self._saved()
        self._check_grad(dy, (x_shape[0], math.prod(x_shape[1:])))
        return dy.reshape(x_shape)               # (N, d1, d2, ...)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (math.prod(input_shape),)

    def get_config(self) -> dict:
        return {"name": self.name}
