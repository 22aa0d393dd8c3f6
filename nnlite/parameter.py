"""Trainable parameters: an array, its gradient, and a trainable switch."""
from __future__ import annotations

from .backend import get_array_module, resolve_dtype, to_device


class Parameter:
    """A learnable array with its gradient.

    Attributes:
        data: the values (NumPy or CuPy array).
        grad: the gradient of the loss with respect to ``data``, same shape and
            dtype; layers *add nothing* to it implicitly: ``backward`` writes it.
        trainable: when False, optimizers leave ``data`` unchanged and layers
            may skip computing ``grad`` (freezing for fine-tuning is one switch).
        name: short name inside its layer (``"W"``, ``"b"``).
        regularizer: optional :class:`nnlite.regularizers.Regularizer` whose
            penalty is added to the loss during training.
    """

    def __init__(self, data, name: str = "", trainable: bool = True, regularizer=None):
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)
        self.trainable = bool(trainable)
        self.name = name
        self.regularizer = regularizer

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def astype(self, dtype) -> "Parameter":
        dt = resolve_dtype(dtype)
        self.data = self.data.astype(dt)
        self.grad = self.grad.astype(dt)
        return self

    def to_device(self, device: str) -> "Parameter":
        self.data = to_device(self.data, device)
        self.grad = to_device(self.grad, device)
        return self

    def __repr__(self) -> str:
        flag = "" if self.trainable else ", frozen"
        return f"Parameter({self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype}{flag})"
