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
from .parameter import Buffer, Parameter


class Layer:
    """Base class: parameter and buffer bookkeeping, sub-layers, config, dtype/device moves.

    A layer may hold other layers (it is then a *container*: ``Sequential``,
    ``Residual``, ``Add``, ``Concatenate``, or a block of your own). Its
    sub-layers are its attributes that are layers, or lists of layers, in the
    order they were assigned; an attribute whose name starts with ``_`` is a
    reference, not a child (``MaxUnpool2D`` keeps the pool it reads the
    indices of that way). ``parameters()`` and ``buffers()`` recurse into the
    children in that stable order, with dotted names such as
    ``"layer2.0.conv1.W"``.
    """

    #: every concrete subclass by class name (used by ``nnlite.load``).
    registry: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        old = Layer.registry.get(name)
        ours = cls.__module__.split(".")[0] == "nnlite"
        if old is not None and old is not cls and old.__module__.split(".")[0] == "nnlite" and not ours:
            # A user's own ``class Dense(Layer)`` must not replace nnlite's Dense for
            # every later ``nn.load``: it is registered under its qualified name instead.
            Layer.registry[f"{cls.__module__}.{cls.__qualname__}"] = cls
        else:
            Layer.registry[name] = cls

    @classmethod
    def type_name(cls) -> str:
        """The name ``nnlite.load`` finds this class by (see :attr:`registry`)."""
        if Layer.registry.get(cls.__name__) is cls:
            return cls.__name__
        return f"{cls.__module__}.{cls.__qualname__}"

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
        """Constructor arguments that rebuild this layer (JSON-serialisable).

        A container puts its children in as :func:`layer_spec` dicts;
        ``nnlite.load`` builds those back into layers before calling the
        constructor.
        """
        return {}

    def resolve_links(self, root: "Layer") -> None:
        """Re-attach references to layers elsewhere in ``root`` after loading (default: none)."""

    # ---------------------------------------------------------- children
    def children(self) -> list:
        """Direct sub-layers as ``(key, layer)`` pairs, in assignment order."""
        out = []
        for key, value in vars(self).items():
            if key.startswith("_"):
                continue
            if isinstance(value, Layer):
                out.append((key, value))
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
                out += [(f"{key}.{i}", v) for i, v in enumerate(value)]
        return out

    def named_layers(self, prefix: str = "") -> list:
        """Every sub-layer at any depth, depth first, as ``(dotted path, layer)``."""
        out = []
        for key, child in self.children():
            path = f"{prefix}{key}"
            out.append((path, child))
            out += child.named_layers(path + ".")
        return out

    def get_layer(self, path: str) -> "Layer":
        """The sub-layer at dotted ``path`` (``"layer2.0.conv1"``); ``KeyError`` lists the choices."""
        for p, layer in self.named_layers():
            if p == path:
                return layer
        choices = ", ".join(p for p, _ in self.named_layers()[:40])
        raise KeyError(f"{self.name} has no sub-layer {path!r}; it has: {choices}")

    # -------------------------------------------------- parameters, buffers
    def _own(self, kind) -> list:
        return [(v.name or k, v) for k, v in vars(self).items() if isinstance(v, kind)]

    def _named(self, kind, prefix: str = "") -> list:
        out = [(f"{prefix}{name}", v) for name, v in self._own(kind)]
        for key, child in self.children():
            out += child._named(kind, f"{prefix}{key}.")
        seen, unique = set(), []
        for name, v in out:                      # a layer used twice counts once
            if id(v) not in seen:
                seen.add(id(v))
                unique.append((name, v))
        return unique

    def parameters(self, trainable_only: bool = False) -> list:
        """Own parameters in assignment order, then each child's, depth first."""
        ps = [p for _, p in self._named(Parameter)]
        return [p for p in ps if p.trainable] if trainable_only else ps

    def named_parameters(self) -> list:
        """``(dotted name, Parameter)`` pairs, e.g. ``("layer2.0.conv1.W", p)``."""
        return self._named(Parameter)

    def buffers(self) -> list:
        """Own buffers (running statistics, counters), then each child's, depth first."""
        return [b for _, b in self._named(Buffer)]

    def named_buffers(self) -> list:
        """``(dotted name, Buffer)`` pairs, e.g. ``("bn1.running_mean", b)``."""
        return self._named(Buffer)

    def _own_parameters(self) -> list:
        """This layer's own parameters (not its children's)."""
        return [v for _, v in self._own(Parameter)]

    def count_params(self, trainable_only: bool = True) -> int:
        """Number of parameter values (only the trainable ones by default)."""
        return sum(p.size for p in self.parameters(trainable_only=trainable_only))

    def count_buffers(self) -> int:
        """Number of floating-point buffer values (statistics; step counters excluded)."""
        return sum(b.size for b in self.buffers() if b.is_statistic)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def _drop_caches(self) -> None:
        self._cache = None
        for _, child in self.children():
            child._drop_caches()

    def astype(self, dtype) -> "Layer":
        """Cast every parameter (and gradient) and float buffer to ``dtype``; drops caches."""
        resolve_dtype(dtype)
        for p in self.parameters():
            p.astype(dtype)
        for b in self.buffers():
            b.astype(dtype)
        self._drop_caches()
        return self

    def to_device(self, device: str) -> "Layer":
        for p in self.parameters():
            p.to_device(device)
        for b in self.buffers():
            b.to_device(device)
        self._drop_caches()
        return self

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else None

    @property
    def frozen(self) -> bool:
        """True when the layer has parameters and none of them trains."""
        params = self.parameters()
        return bool(params) and not any(p.trainable for p in params)

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

    def summary_row(self, key: str, input_shape, depth: int) -> tuple:
        """``(indented "key: description", output shape, parameter count)`` for ``summary()``."""
        label = f"{'  ' * depth}{key + ': ' if key else ''}{self.describe()}"
        return (label, format_shape(self.output_shape(tuple(input_shape))),
                f"{self.count_params(trainable_only=False):,}")

    def summary_rows(self, input_shape, key: str = "", depth: int = 0) -> list:
        """This layer's row, then (for a container) its children's rows, indented one level."""
        rows = [self.summary_row(key, input_shape, depth)]
        for child_key, child in self.children():
            rows += child.summary_rows(self.child_input_shape(child_key, input_shape), child_key,
                                       depth + 1)
        return rows

    def child_input_shape(self, key: str, input_shape) -> tuple:
        """The input shape a child sees (for ``summary``); branches see the block's input."""
        return tuple(input_shape)

    def describe(self) -> str:
        """A short one-line form for tables: ``Conv2D(1, 32, 5, padding='same')``.

        Required arguments are shown by value, others only where they differ
        from their default; seeds, names and children are left out.
        """
        import inspect

        def short(v):
            if isinstance(v, (tuple, list)) and len(v) > 0 and all(u == v[0] for u in v):
                return short(v[0])
            return str(v) if not isinstance(v, str) else repr(v)
        try:
            signature = inspect.signature(type(self).__init__).parameters
        except (TypeError, ValueError):
            signature = {}
        skip = {"seed", "name", "weight_init"}
        args = []
        for k, v in self.get_config().items():
            if k in skip or _holds_specs(v):
                continue
            default = signature[k].default if k in signature else inspect.Parameter.empty
            if default is inspect.Parameter.empty:
                args.append(short(v))
            elif short(v) != short(default):
                args.append(f"{k}={short(v)}")
        flags = [p.trainable for p in self.parameters()]
        mark = " [frozen]" if flags and not any(flags) else " [partly frozen]" if not all(flags) else ""
        return f"{type(self).__name__}({', '.join(args)})" + mark


def format_shape(shape) -> str:
    """``(None, 64, 12, 12)`` for one sample's shape ``(64, 12, 12)``."""
    return str((None,) + tuple(shape))


def layer_spec(layer: Layer) -> dict:
    """``{"type", "name", "config"}``: what ``nnlite.load`` rebuilds ``layer`` from."""
    return {"type": type(layer).type_name(), "name": layer.name, "config": layer.get_config()}


def is_spec(value) -> bool:
    """True for a layer's spec (what :func:`layer_spec` writes): exactly type, name and config."""
    return isinstance(value, dict) and set(value) == {"type", "name", "config"}


def _holds_specs(value) -> bool:
    """True for a child's spec or a list of them (containers leave those out of ``describe``)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_specs(v) for v in value)
    return is_spec(value)


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
