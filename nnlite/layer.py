"""The layer contract every nnlite layer follows.

A layer is a small class with an explicit forward and backward pass, so the
chain rule is visible where it is applied::

    y  = layer.forward(x, training=False)   # caches what backward needs
    dx = layer.backward(dy)                 # fills p.grad, returns dL/dx

Shape notation used by every conv and pool docstring in nnlite::

    N        batch size
    C, H, W  input channels, height, width          (layout NCHW)
    F        output channels (number of filters)
    KH, KW   kernel height and width
    SH, SW   stride along height and width
    PH, PW   zero padding added on each side (top/bottom, left/right)
    OH, OW   output height and width: OH = floor((H - KH + 2*PH) / SH) + 1

Rules:
* ``forward`` never mutates ``x``; ``backward`` never mutates ``dy``.
* Bad input raises ``ValueError`` naming the layer and the expected vs
  received shape; ``backward`` before ``forward`` raises ``RuntimeError``.
* Parameters are :class:`~nnlite.parameter.Parameter` attributes; their order
  in :meth:`Layer.parameters` is the order they were assigned in ``__init__``.
"""
from __future__ import annotations

from .backend import get_array_module, resolve_dtype
from .parameter import Parameter


class Layer:
    """Base class: parameter bookkeeping, config, dtype/device moves, checks."""

    #: every concrete subclass by class name (used by ``nnlite.load``).
    registry: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Layer.registry[cls.__name__] = cls

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__
        self._cache = None

    # ----------------------------------------------------------- contract
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training=training)

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of one output sample for one input sample (no batch axis).

        The default suits element-wise layers: the shape is unchanged.
        """
        return tuple(input_shape)

    def get_config(self) -> dict:
        """Constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    # -------------------------------------------------------- parameters
    def parameters(self) -> list:
        """Parameters in the order they were assigned in ``__init__``."""
        return [v for v in vars(self).values() if isinstance(v, Parameter)]

    def named_parameters(self) -> list:
        return [(p.name, p) for p in self.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def astype(self, dtype) -> "Layer":
        """Cast every parameter (and its gradient) to ``dtype``; drops caches."""
        resolve_dtype(dtype)
        for p in self.parameters():
            p.astype(dtype)
        self._cache = None
        return self

    def to_device(self, device: str) -> "Layer":
        for p in self.parameters():
            p.to_device(device)
        self._cache = None
        return self

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else None

    # ------------------------------------------------------------ helpers
    def _saved(self):
        """The forward cache, or a clear error if forward has not run."""
        if self._cache is None:
            raise RuntimeError(
                f"{self.name}: backward() called before forward(); run forward(x) first")
        return self._cache

    def _check_input(self, x, ndim: int | None = None, channels: int | None = None,
                     what: str = ""):
        """Validate rank, channel count and dtype of ``x``; raise ValueError if wrong.

        ``what`` describes the expected shape in words, e.g. ``"(N, 3, H, W)"``.
        """
        shape = tuple(getattr(x, "shape", ()))
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise ValueError(f"{self.name} expected an array, got {type(x).__name__}")
        if ndim is not None and x.ndim != ndim:
            raise ValueError(f"{self.name} expected input {what or f'of rank {ndim}'}, "
                             f"got shape {shape}")
        if channels is not None and shape[1] != channels:
            raise ValueError(f"{self.name} expected input {what}, got {shape}")
        xp = get_array_module(x)
        if not xp.issubdtype(x.dtype, xp.floating) or x.dtype.itemsize not in (4, 8):
            raise ValueError(f"{self.name} expected float32 or float64 input, got {x.dtype}")
        dt = self.dtype
        if dt is not None and x.dtype != dt:
            raise ValueError(
                f"{self.name} has {dt} parameters but got {x.dtype} input; cast the input "
                f"(x.astype('{dt}')) or the model (model.astype('{x.dtype}'))")

    def _check_grad(self, dy, y_shape):
        if tuple(dy.shape) != tuple(y_shape):
            raise ValueError(f"{self.name}.backward expected dy of shape {tuple(y_shape)} "
                             f"(the forward output), got {tuple(dy.shape)}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def describe(self) -> str:
        """A short one-line form for tables: hyperparameters only, no seed or name."""
        def short(v):
            if isinstance(v, (tuple, list)) and len(v) > 0 and all(u == v[0] for u in v):
                return short(v[0])
            return str(v) if not isinstance(v, str) else repr(v)
        skip = {"seed", "name", "weight_init"}
        args = ", ".join(f"{k}={short(v)}" for k, v in self.get_config().items() if k not in skip)
        frozen = any(not p.trainable for p in self.parameters())
        return f"{type(self).__name__}({args})" + (" [frozen]" if frozen else "")


def pair(value, what: str, layer: str) -> tuple:
    """Turn an int or a pair of ints into ``(h, w)``; clear error otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")


def conv_output_size(n: int, f: int, p: int, s: int) -> int:
    """Output length of a convolution or pool: ``floor((n - f + 2p) / s) + 1``."""
    return (n - f + 2 * p) // s + 1
