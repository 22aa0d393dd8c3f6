"""Sequential: a container that chains layers, Keras style; itself a layer.

Because :class:`Sequential` is a :class:`~nnlite.layer.Layer`, a stack of
layers can sit inside another stack, inside a :class:`~nnlite.containers.Residual`
block, or inside a branch of :class:`~nnlite.containers.Concatenate`. A ResNet
is a Sequential of stages, each a Sequential of residual blocks.
"""
from __future__ import annotations

from .backend import device_of, require_gpu, resolve_dtype
from .layer import Layer, layer_spec

#: ``summary()`` lines are at most this wide (a terminal of 100 columns).
SUMMARY_WIDTH = 100


def child_key(layer: Layer, index: int) -> str:
    """A child's key inside a Sequential: its own name when it was given one, else its index."""
    return layer.name if layer.name != type(layer).__name__ else str(index)


def _parameter_gradients_only(layer: Layer, dy) -> None:
    """Run ``layer.backward(dy)`` for its parameter gradients; its input gradient is not needed."""
    if isinstance(layer, Sequential):
        layer.backward(dy, need_input_grad=False)
    elif hasattr(layer, "need_input_grad"):          # Conv2D can skip dx (see its docstring)
        old = layer.need_input_grad
        layer.need_input_grad = False
        try:
            layer.backward(dy)
        finally:
            layer.need_input_grad = old
    else:
        layer.backward(dy)


class Sequential(Layer):
    """A stack of layers applied in order.

    Math: ``y = f_L( ... f_2(f_1(x)))``. Backward applies the chain rule in
    reverse: each layer receives dL/d(its output) and returns dL/d(its input)::

        dy_L = dy;   dy_{l-1} = f_l.backward(dy_l);   dx = dy_0

    Children are keyed by their index (``"3"``) or, when a layer was given a
    name of its own (``Conv2D(..., name="conv1")``), by that name; the keys
    make the dotted parameter names (``"layer2.0.conv1.W"``) and
    ``model["conv1"]`` works as well as ``model[0]``. Names given to sibling
    layers must be unique.

    With ``record=True`` the model keeps every top-level layer's output in
    ``self.activations`` and, after ``backward``, the gradient of the loss
    with respect to each layer's output in ``self.gradients`` (what Grad-CAM
    needs: ``activations[i]`` and ``gradients[i]`` belong to ``layers[i]``).
    """

    def __init__(self, layers=(), name: str | None = None):
        super().__init__(name)
        self.layers = []
        self._record = False
        self.activations: list = []
        self.gradients: list = []
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> "Sequential":
        if not isinstance(layer, Layer):
            raise ValueError(f"{self.name}.add expects an nnlite Layer, got {type(layer).__name__}")
        key = child_key(layer, len(self.layers))
        if any(child_key(other, i) == key for i, other in enumerate(self.layers)):
            raise ValueError(f"{self.name}: two layers are named {key!r}; names of layers in one "
                             f"Sequential must be unique")
        self.layers.append(layer)
        return self

    def children(self) -> list:
        return [(child_key(layer, i), layer) for i, layer in enumerate(self.layers)]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        if isinstance(i, str):
            for key, layer in self.children():
                if key == i:
                    return layer
            raise KeyError(f"{self.name} has no layer named {i!r}; keys: "
                           + ", ".join(k for k, _ in self.children()))
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    # ----------------------------------------------------------- passes
    def forward(self, x, training: bool = False, record: bool = False):
        """Run every layer; ``record=True`` keeps each layer's output."""
        self._record = record
        self.activations = []
        self._cache = True                      # backward may run now
        for layer in self.layers:
            x = layer.forward(x, training=training)
            if record:
                self.activations.append(x)
        return x

    def backward(self, dy, need_input_grad: bool = True):
        """Backpropagate ``dy`` (dL/d output) through every layer; return dL/d input.

        With ``need_input_grad=False`` (what ``fit`` uses) the walk stops at the
        first layer that has trainable parameters: the layers before it have
        nothing to learn, so their backward passes would be wasted work (this
        is where freezing layers saves time), and that first layer is asked for
        its parameter gradients only (a ``Conv2D`` then skips its input
        gradient, a nested Sequential passes the request on). The return value
        is then None.
        """
        self._saved()
        skip = not need_input_grad and not self._record
        stop = 0
        if skip:
            trainable = [i for i, layer in enumerate(self.layers)
                         if any(p.trainable for p in layer.parameters())]
            stop = trainable[0] if trainable else len(self.layers)
        grads = []
        for i in range(len(self.layers) - 1, stop - 1, -1):
            if self._record:
                grads.append(dy)
            if skip and i == stop:
                _parameter_gradients_only(self.layers[i], dy)
                return None
            dy = self.layers[i].backward(dy)
        self.gradients = grads[::-1]
        return None if skip else dy

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    # -------------------------------------------------------- freezing
    def freeze(self, upto: int | str | None = None) -> "Sequential":
        """Freeze every parameter of the layers up to and including ``upto`` (all if None).

        ``upto`` is a top-level index (the transfer-learning paper's gamma - 1:
        layers ``0 .. upto`` keep their weights; a negative index counts from the
        end as in Python) or a layer's key or dotted path (``"layer2.0.conv1"``):
        then every layer met before it in depth-first order, it and everything
        inside it are frozen. A frozen BatchNorm also keeps its running statistics.
        Layers after ``upto`` are left as they are (call :meth:`unfreeze` first to
        start afresh). :meth:`frozen_layers` lists what is frozen.
        """
        n = len(self.layers)
        if upto is None:
            targets = self.named_layers()
        elif isinstance(upto, str):
            order = self.named_layers()
            paths = [p for p, _ in order]
            if upto not in paths:
                raise ValueError(f"{self.name}.freeze: no layer {upto!r}; top-level keys: "
                                 + ", ".join(k for k, _ in self.children()))
            end = paths.index(upto) + 1
            while end < len(paths) and paths[end].startswith(upto + "."):
                end += 1                                  # everything inside it
            for _, layer in order[:end]:        # a container above it keeps its other children
                for p in layer._own_parameters():
                    p.trainable = False
            return self
        else:
            if isinstance(upto, bool) or not isinstance(upto, int) or not -n <= upto < n:
                raise ValueError(f"{self.name}.freeze: upto must be a layer index in {-n}..{n - 1} "
                                 f"(the model has {n} layers) or a layer name, got {upto!r}")
            last = upto % n                                  # -1 -> n - 1
            targets = [(k, layer) for k, layer in self.children()[: last + 1]]
        for _, layer in targets:
            for p in layer.parameters():
                p.trainable = False
        return self

    def unfreeze(self) -> "Sequential":
        for p in self.parameters():
            p.trainable = True
        return self

    def frozen_layers(self) -> list:
        """Dotted paths of the layers (with parameters) whose parameters are all frozen."""
        return [p for p, layer in self.named_layers()
                if layer._own_parameters() and not any(q.trainable for q in layer._own_parameters())]

    # ------------------------------------------------- dtype and device
    def astype(self, dtype) -> "Sequential":
        resolve_dtype(dtype)
        super().astype(dtype)
        self.activations, self.gradients = [], []
        return self

    def to_device(self, device: str) -> "Sequential":
        """Move every parameter, buffer and gradient to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy).

        Arrays already on ``device`` are not copied, so ``to_cpu()`` on a CPU
        model changes nothing. Layer caches and the recorded activations and
        gradients are dropped (they belong to the old device). For ``"gpu"``
        a missing CuPy or CUDA device raises a clear ``RuntimeError`` before
        anything moves. Optimizer state follows its parameters at the next
        ``step()``; saved files are device-independent. Returns the model.
        """
        if device not in ("cpu", "gpu"):
            raise ValueError(f"Sequential.to_device: device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu":
            require_gpu()
        super().to_device(device)
        self.activations, self.gradients = [], []
        return self

    def to_gpu(self) -> "Sequential":
        """Move the model to the GPU (CuPy); see :meth:`to_device`."""
        return self.to_device("gpu")

    def to_cpu(self) -> "Sequential":
        """Move the model to the CPU (NumPy); see :meth:`to_device`."""
        return self.to_device("cpu")

    @property
    def device(self) -> str:
        """``"gpu"`` when the parameters are CuPy arrays, else ``"cpu"``."""
        ps = self.parameters()
        return device_of(ps[0].data) if ps else "cpu"

    # ------------------------------------------------ training (Keras style)
    def fit(self, x, y, **kwargs):
        """Train the model; see :func:`nnlite.training.fit` for the arguments."""
        from .training import fit
        return fit(self, x, y, **kwargs)

    def evaluate(self, x, y, **kwargs) -> dict:
        """Loss and accuracy; see :func:`nnlite.training.evaluate`."""
        from .training import evaluate
        return evaluate(self, x, y, **kwargs)

    def predict(self, x, **kwargs):
        """Logits as a NumPy array; see :func:`nnlite.training.predict`."""
        from .training import predict
        return predict(self, x, **kwargs)

    def predict_proba(self, x, **kwargs):
        """Class probabilities; see :func:`nnlite.training.predict_proba`."""
        from .training import predict_proba
        return predict_proba(self, x, **kwargs)

    def save(self, path, metadata: dict | None = None):
        """Save architecture and weights; see :func:`nnlite.serialization.save`."""
        from .serialization import save
        return save(self, path, metadata=metadata)

    # ---------------------------------------------------------- summary
    def output_shapes(self, input_shape) -> list:
        """Per-layer output shape (without the batch axis) for ``input_shape``."""
        shapes, shape = [], tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
            shapes.append(shape)
        return shapes

    def summary_rows(self, input_shape, key: str = "", depth: int = 0) -> list:
        rows = [] if depth == 0 and not key else [self.summary_row(key, input_shape, depth)]
        shape = tuple(input_shape)
        inner = depth + (0 if depth == 0 and not key else 1)
        for child_name, layer in self.children():
            rows += layer.summary_rows(shape, child_name, inner)
            shape = tuple(layer.output_shape(shape))
        return rows

    def summary(self, input_shape, print_fn=print, width: int = SUMMARY_WIDTH) -> str:
        """A Keras-style table of at most ``width`` columns; nested layers are indented.

        Each row: the layer's key and short description (``[frozen]`` when none
        of its parameters trains), its output shape for ``input_shape`` (one
        sample's shape, e.g. ``(1, 48, 48)``) and its parameter count (a
        container's row counts everything inside it). The totals split the
        parameters into trainable and frozen, and count the buffers (running
        statistics: Keras reports them as "non-trainable params").
        """
        rows = self.summary_rows(tuple(input_shape))
        w2 = max([len("Params")] + [len(r[2]) for r in rows])
        w1 = max([len("Output shape")] + [len(r[1]) for r in rows])
        w0 = max(20, width - w1 - w2 - 4)
        line = "-" * min(width, w0 + w1 + w2 + 4)

        def cut(text: str) -> str:
            if len(text) <= w0:
                return text
            mark = next((m for m in (" [frozen]", " [partly frozen]") if text.endswith(m)), "")
            return text[: w0 - 3 - len(mark)] + "..." + mark

        out = [cut(f"Model: {self.name}   input {(None,) + tuple(input_shape)}"), line,
               f"{'Layer':<{w0}}  {'Output shape':<{w1}}  {'Params':>{w2}}", line]
        out += [f"{cut(a):<{w0}}  {b:<{w1}}  {c:>{w2}}" for a, b, c in rows]
        total = self.count_params(trainable_only=False)
        trainable = self.count_params(trainable_only=True)
        out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Frozen params: {total - trainable:,}",
                f"Buffers (running statistics, Keras' non-trainable params): {self.count_buffers():,}"]
        text = "\n".join(line_.rstrip() for line_ in out)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict:
        return {"layers": [layer_spec(layer) for layer in self.layers]}

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer).replace("\n", "\n  ") for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
