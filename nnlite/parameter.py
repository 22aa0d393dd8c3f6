"""A layer's arrays: trainable parameters (with a gradient) and buffers (saved, not trained)."""
from __future__ import annotations

import sys

from .backend import get_array_module, resolve_dtype, to_device


class _Held:
    """What parameters and buffers share: ``data``, its shape, dtype and size."""

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)


class Parameter(_Held):
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

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def reusable_grad(self, shape: tuple, dtype):
        """``grad`` itself, when ``backward`` may write the next gradient into it; else None.

        A large layer then writes its gradient into the same memory every step
        instead of a fresh array (Dense 6400 -> 4096 of the thesis AlexNet: 105 MB a
        step, which the operating system must map and zero each time). Only when
        that array has this ``shape`` and ``dtype``, owns its memory, and nothing but
        this Parameter refers to it (CPython's reference count): a gradient someone
        kept (``g = p.grad``) never changes under them; a new one is made instead.
        """
        g = self.grad
        if g is None or tuple(g.shape) != tuple(shape) or g.dtype != dtype \
                or g.base is not None or not g.flags.c_contiguous \
                or not getattr(g.flags, "writeable", True):          # (CuPy has no such flag)
            return None
        # References now: this Parameter's attribute, the name g, getrefcount's argument.
        return g if sys.getrefcount(g) <= 3 else None

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


class Buffer(_Held):
    """An array a layer keeps and saves but does not train (no gradient).

    BatchNorm's running mean and variance are buffers: they change in
    ``forward`` during training, are used in evaluation, and travel with the
    model in :func:`nnlite.save`, :func:`nnlite.load` and checkpoints, but no
    optimizer ever sees them.

    Attributes:
        data: the values (NumPy or CuPy array, any dtype; a step counter is an
            int64 array of shape ``()``).
        name: short name inside its layer (``"running_mean"``).
    """

    def __init__(self, data, name: str = ""):
        self.data = data
        self.name = name

    @property
    def is_statistic(self) -> bool:
        """True for floating-point buffers (the statistics ``summary`` counts), False for counters."""
        return get_array_module(self.data).issubdtype(self.data.dtype, get_array_module(self.data).floating)

    def astype(self, dtype) -> "Buffer":
        """Cast floating-point buffers to ``dtype``; integer counters stay integers."""
        if self.is_statistic:
            self.data = self.data.astype(resolve_dtype(dtype))
        return self

    def to_device(self, device: str) -> "Buffer":
        self.data = to_device(self.data, device)
        return self

    def __repr__(self) -> str:
        return f"Buffer({self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype})"
