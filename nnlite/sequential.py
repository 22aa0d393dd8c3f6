"""Sequential: a model that chains layers, Keras style."""
from __future__ import annotations

from .backend import device_of, require_gpu, resolve_dtype
from .layer import Layer


class Sequential:
    """A stack of layers applied in order.

    ``forward`` feeds each layer's output to the next; ``backward`` walks the
    list in reverse, handing each layer the gradient of the loss with respect
    to its output and receiving the gradient with respect to its input.

    With ``record=True`` the model keeps every layer's output in
    ``self.activations`` and, after ``backward``, the gradient of the loss
    with respect to each layer's output in ``self.gradients`` (what Grad-CAM
    needs: ``activations[i]`` and ``gradients[i]`` belong to ``layers[i]``).
    """

    def __init__(self, layers=(), name: str = "sequential"):
        self.layers = []
        self.name = name
        self.activations: list = []
        self.gradients: list = []
        self._record = False
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> "Sequential":
        if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise ValueError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        self.layers.append(layer)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    # ----------------------------------------------------------- passes
    def forward(self, x, training: bool = False, record: bool = False):
        """Run every layer; ``record=True`` keeps each layer's output."""
        self._record = record
        self.activations = []
        for layer in self.layers:
            x = layer.forward(x, training=training)
            if record:
                self.activations.append(x)
        return x

    __call__ = forward

    def backward(self, dy, need_input_grad: bool = True):
        """Backpropagate ``dy`` (dL/d output) through every layer; return dL/d input.

        With ``need_input_grad=False`` (what ``fit`` uses) the walk stops at the
        first layer that has trainable parameters: the layers before it have
        nothing to learn, so their backward passes would be wasted work (this
        is where freezing layers saves time). The return value is then None.
        """
        stop = 0
        if not need_input_grad and not self._record:
            trainable = [i for i, layer in enumerate(self.layers)
                         if any(p.trainable for p in layer.parameters())]
            stop = trainable[0] if trainable else len(self.layers)
        grads = []
        for i in range(len(self.layers) - 1, stop - 1, -1):
            if self._record:
                grads.append(dy)
            dy = self.layers[i].backward(dy)
        self.gradients = grads[::-1]
        return dy if stop == 0 else None

    # ------------------------------------------------------- parameters
    def parameters(self, trainable_only: bool = False) -> list:
        """All parameters in layer order (never a set: the order is stable)."""
        ps = [p for layer in self.layers for p in layer.parameters()]
        return [p for p in ps if p.trainable] if trainable_only else ps

    def named_parameters(self) -> list:
        """``("<index>.<LayerName>.<param>", Parameter)`` pairs, unique within the model."""
        return [(f"{i}.{layer.name}.{name}", p)
                for i, layer in enumerate(self.layers) for name, p in layer.named_parameters()]

    def count_params(self, trainable_only: bool = True) -> int:
        return sum(p.size for p in self.parameters(trainable_only=trainable_only))

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def freeze(self, upto: int | None = None) -> "Sequential":
        """Freeze the parameters of layers ``0 .. upto`` inclusive (all if None).

        This is the transfer-learning paper's gamma: layers up to index gamma
        keep their weights, the rest train. A negative ``upto`` counts from the
        end as in Python (``-1`` is the last layer, ``-2`` all but the last);
        an index outside the model raises ``ValueError``. Layers after ``upto``
        are left as they are (call :meth:`unfreeze` first to start afresh).
        """
        n = len(self.layers)
        if upto is None:
            if n == 0:
                return self
            upto = n - 1
        if isinstance(upto, bool) or not isinstance(upto, int) or not -n <= upto < n:
            raise ValueError(f"Sequential.freeze: upto must be a layer index in {-n}..{n - 1} "
                             f"(the model has {n} layers), got {upto!r}")
        last = upto % n                                  # -1 -> n - 1
        for layer in self.layers[: last + 1]:
            for p in layer.parameters():
                p.trainable = False
        return self

    def unfreeze(self) -> "Sequential":
        for p in self.parameters():
            p.trainable = True
        return self

    # ------------------------------------------------- dtype and device
    def astype(self, dtype) -> "Sequential":
        resolve_dtype(dtype)
        for layer in self.layers:
            layer.astype(dtype)
        return self

    @property
    def dtype(self):
        ps = self.parameters()
        return ps[0].dtype if ps else None

    def to_device(self, device: str) -> "Sequential":
        """Move every parameter and its gradient to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy).

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
        for layer in self.layers:
            layer.to_device(device)
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

    def save(self, path):
        """Save architecture and weights; see :func:`nnlite.serialization.save`."""
        from .serialization import save
        return save(self, path)

    # ---------------------------------------------------------- summary
    def output_shapes(self, input_shape) -> list:
        """Per-layer output shape (without the batch axis) for ``input_shape``."""
        shapes, shape = [], tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.output_shape(shape))
            shapes.append(shape)
        return shapes

    def summary(self, input_shape, print_fn=print) -> str:
        """A Keras-style table: layer, output shape, parameter count; totals.

        ``input_shape`` is one sample's shape, e.g. ``(1, 48, 48)``.
        """
        shapes = self.output_shapes(input_shape)
        rows = [(f"{i}: {layer.describe()}", str((None,) + s), f"{sum(p.size for p in layer.parameters()):,}")
                for i, (layer, s) in enumerate(zip(self.layers, shapes))]
        w0 = max([len("Layer")] + [len(r[0]) for r in rows])
        w1 = max([len("Output shape")] + [len(r[1]) for r in rows])
        w2 = max([len("Params")] + [len(r[2]) for r in rows])
        line = "-" * (w0 + w1 + w2 + 4)
        out = [f"Model: {self.name}   input {(None,) + tuple(input_shape)}", line,
               f"{'Layer':<{w0}}  {'Output shape':<{w1}}  {'Params':>{w2}}", line]
        out += [f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}" for a, b, c in rows]
        total = self.count_params(trainable_only=False)
        trainable = self.count_params(trainable_only=True)
        out += [line, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Frozen params: {total - trainable:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict:
        return {"name": self.name,
                "layers": [{"type": type(layer).__name__, "name": layer.name,
                            "config": layer.get_config()} for layer in self.layers]}

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
