"""Transfer learning and fine-tuning: a trained body, a new head, layers frozen up to gamma.

The transfer-learning paper's method, in nnlite's terms:

1. **Head replacement** (:func:`replace_head`). A trained model is cut at the
   first layer of its classifier (``head_start``: by default the first
   top-level ``Flatten``, ``GlobalAvgPool2D`` or ``Dense``); the body keeps its
   trained weights (the *same* layer objects, not copies) and gets the
   paper's head, one top-level layer named ``"head"``::

       GlobalAvgPool2D            only if the body ends in feature maps (C, H, W)
       Dense(hidden) + ReLU       transfer learning: hidden=4096; fine-tuning: none
       Dropout(0.2)
       Dense(1)                   one logit; the sigmoid lives in the loss
                                  (nn.BinaryCrossEntropy on logits) and in
                                  nn.predict_proba

2. **Trainability from gamma** (:func:`fine_tune`). ``gamma`` is, as in the
   paper, the index of the **first layer that trains**: layers ``0 .. gamma-1``
   are frozen, ``gamma ..`` train (``gamma = 0``: nothing frozen, the whole
   network is fine-tuned). In nnlite that is ``model.freeze(upto=gamma - 1)``.
   ``gamma`` may also be a layer's key or dotted path (``"conv1"``,
   ``"layer2.0.block.body.conv1"``): every layer met before it in depth-first
   order is frozen, it and everything after it train.

3. **Transfer learning** (:func:`transfer`) is the special case where only
   the new head trains: ``gamma`` = the index of ``"head"``.

A frozen parameter gets no gradient and no optimizer state, so its bytes do
not change during training; a BatchNorm whose parameters are all frozen
normalises with its running statistics and does not update them, even in
training mode (Keras' behaviour for ``trainable=False``), so the frozen part
of a network behaves exactly as it did when it was trained.

Both functions return the dotted paths of the frozen layers, the list to
print so that a reader sees which layers are fixed.

    >>> import nnlite as nn
    >>> source = nn.zoo.mias_cnn(num_classes=3)            # trained elsewhere
    >>> model = nn.transfer.replace_head(source, input_shape=(1, 48, 48), hidden=4096)
    >>> nn.transfer.transfer(model)                          # doctest: +SKIP
    ['0', '3']
"""
from __future__ import annotations

from .dense import Dense, Flatten
from .dropout import Dropout
from .activations import ReLU
from .layer import Layer
from .pooling import GlobalAvgPool2D
from .sequential import Sequential, child_key

#: top-level layer types that start a classifier (where :func:`find_head_start` cuts)
HEAD_TYPES = (Flatten, GlobalAvgPool2D, Dense)
HEAD_NAME = "head"


def _check_sequential(model, where: str) -> None:
    if not isinstance(model, Sequential):
        raise ValueError(f"{where} needs an nnlite Sequential model, got {type(model).__name__}")


def layer_index(model: Sequential, layer: int | str) -> int:
    """Top-level index of ``layer``: an int (negative counts from the end) or a top-level key."""
    _check_sequential(model, "layer_index")
    n = len(model.layers)
    if isinstance(layer, str):
        keys = [k for k, _ in model.children()]
        if layer.lstrip("-").isdigit():
            layer = int(layer)
        elif layer in keys:
            return keys.index(layer)
        else:
            raise ValueError(f"{model.name} has no top-level layer {layer!r}; keys: "
                             + ", ".join(keys))
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise ValueError(f"{model.name}: layer index must be in {-n}..{n - 1} (the model has "
                         f"{n} top-level layers), got {layer!r}")
    return layer % n


def find_head_start(model: Sequential) -> int:
    """Index of the first top-level ``Flatten``, ``GlobalAvgPool2D`` or ``Dense``: the old head.

    For ``zoo.mias_cnn`` that is 6 (``Flatten``: the body is conv-relu-pool x 2);
    for ``zoo.reduced_resnet`` and ``zoo.resnet50`` it is ``avg_pool``.
    """
    _check_sequential(model, "find_head_start")
    for i, layer in enumerate(model.layers):
        if isinstance(layer, HEAD_TYPES):
            return i
    raise ValueError(f"{model.name}: no top-level Flatten, GlobalAvgPool2D or Dense layer to cut "
                     f"the head at; pass head_start= (the index or key of the first layer to drop)")


def build_head(feature_shape: tuple, hidden: int | None = 4096, dropout: float = 0.2,
               seed: int = 0) -> Sequential:
    """The paper's head for body outputs of ``feature_shape`` (one sample, no batch axis).

    ``(C, H, W)`` feature maps get a global average pooling first (C features);
    a flat ``(F,)`` output goes straight to the dense layers. Then an optional
    ``Dense(hidden) + ReLU``, ``Dropout(dropout)`` and ``Dense(1)`` (a logit).
    """
    feature_shape = tuple(int(d) for d in feature_shape)
    layers: list[Layer] = []
    if len(feature_shape) == 3:
        layers.append(GlobalAvgPool2D(name="gap"))
        features = feature_shape[0]
    elif len(feature_shape) == 1:
        features = feature_shape[0]
    else:
        raise ValueError(f"build_head: the body's output per sample must be (C, H, W) feature "
                         f"maps or (F,) features, got {feature_shape}")
    if hidden is not None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"build_head: hidden must be a positive int or None, got {hidden!r}")
        layers += [Dense(features, hidden, seed=seed, name="dense"), ReLU(name="relu")]
        features = hidden
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"build_head: dropout must be in [0, 1), got {dropout}")
    layers += [Dropout(dropout, seed=seed + 1, name="dropout"),
               Dense(features, 1, weight_init="glorot_uniform", seed=seed + 2, name="logit")]
    return Sequential(layers, name=HEAD_NAME)


def replace_head(model: Sequential, head_start: int | str | None = None, *, input_shape,
                 hidden: int | None = 4096, dropout: float = 0.2, seed: int = 0,
                 name: str | None = None) -> Sequential:
    """Keep ``model``'s layers before ``head_start`` and append the paper's head.

    Args:
        model: a trained :class:`~nnlite.Sequential` (e.g. ``nn.load(".../best_model.npz")``).
            Its body layers are **shared**, not copied: load the file again for
            a second, independent configuration.
        head_start: index or top-level key of the first layer to drop (the
            start of the old classifier); ``None``: :func:`find_head_start`.
        input_shape: one input sample's shape, e.g. ``(1, 48, 48)``, to size the head.
        hidden: units of the head's dense layer (the paper: 4096 for transfer
            learning, ``None`` = no dense layer for fine-tuning).
        dropout: rate of the head's dropout (the paper's 0.2).
        seed: seed of the head's initial weights and dropout masks.
        name: name of the new model (default ``"<model.name>_transfer"``).

    Returns a new Sequential ``[body layers..., head]`` whose top-level indices
    of the body are those of the source model, so gamma means the same layer
    in both; every parameter trains until :func:`transfer` or :func:`fine_tune`.
    """
    _check_sequential(model, "replace_head")
    start = find_head_start(model) if head_start is None else layer_index(model, head_start)
    if start == 0:
        raise ValueError(f"{model.name}: head_start 0 would keep no body at all")
    body = list(model.layers[:start])
    keys = [child_key(layer, i) for i, layer in enumerate(body)]
    if HEAD_NAME in keys:
        raise ValueError(f"{model.name}: a body layer is already named {HEAD_NAME!r}")
    features = Sequential(body).output_shape(tuple(input_shape))
    head = build_head(features, hidden=hidden, dropout=dropout, seed=seed)
    new = Sequential(body + [head], name=name or f"{model.name}_transfer")
    new.unfreeze()
    return new


def _freeze_before_path(model: Sequential, path: str) -> None:
    """Freeze the own parameters of every layer met before ``path`` in depth-first order.

    The containers above ``path`` (its ancestors) are met first but are not
    "before" it: their own parameters, if any, stay trainable.
    """
    order = model.named_layers()
    paths = [p for p, _ in order]
    if path not in paths:
        shown = ", ".join(paths[:30]) + (" ..." if len(paths) > 30 else "")
        raise ValueError(f"{model.name}: no layer {path!r} to start training at; layers: {shown}")
    for p, layer in order[:paths.index(path)]:
        if path.startswith(p + "."):
            continue                                  # an ancestor of the first trained layer
        for param in layer._own_parameters():
            param.trainable = False


def fine_tune(model: Sequential, gamma: int | str) -> list:
    """Set trainability from ``gamma``, the index (or name) of the first layer that trains.

    The transfer-learning paper's fine-tuning: layers ``0 .. gamma-1`` keep
    their weights (``model.freeze(upto=gamma - 1)``), layers ``gamma ..``
    train; ``gamma = 0`` trains everything. A string is a top-level key
    (``"head"``, ``"layer2"``) or a dotted path (``"layer2.0.block.body.conv1"``):
    everything before it in depth-first order is frozen. Earlier freezing is
    undone first. Returns ``model.frozen_layers()`` (dotted paths, to print).
    """
    _check_sequential(model, "fine_tune")
    n = len(model.layers)
    model.unfreeze()
    if isinstance(gamma, str) and not gamma.lstrip("-").isdigit():
        keys = [k for k, _ in model.children()]
        if gamma in keys:
            gamma = keys.index(gamma)
        else:
            _freeze_before_path(model, gamma)
            return model.frozen_layers()
    if isinstance(gamma, str):
        gamma = int(gamma)
    if isinstance(gamma, bool) or not isinstance(gamma, int) or not 0 <= gamma < n:
        raise ValueError(f"{model.name}: gamma (the index of the first layer that trains) must be "
                         f"in 0..{n - 1} (the model has {n} top-level layers), got {gamma!r}")
    if gamma > 0:
        model.freeze(upto=gamma - 1)
    return model.frozen_layers()


def transfer(model: Sequential, gamma: int | str | None = None) -> list:
    """Transfer learning: only the new head trains (``gamma`` defaults to the head's index).

    With a ``gamma`` this is :func:`fine_tune`. Returns the frozen layer paths.
    """
    _check_sequential(model, "transfer")
    if gamma is None:
        keys = [k for k, _ in model.children()]
        gamma = keys.index(HEAD_NAME) if HEAD_NAME in keys else len(model.layers) - 1
    return fine_tune(model, gamma)


def layer_table(model: Sequential, input_shape=None) -> list[str]:
    """One line per top-level layer: its gamma index, key, description, [frozen] mark.

    What to read before choosing ``--gamma``: gamma = the index of the first
    line that trains.
    """
    _check_sequential(model, "layer_table")
    lines, shape = [], tuple(input_shape) if input_shape is not None else None
    for i, (key, layer) in enumerate(model.children()):
        if shape is not None:
            shape = tuple(layer.output_shape(shape))
        params = layer.parameters()
        state = ("frozen" if params and not any(p.trainable for p in params)
                 else "partly frozen" if any(not p.trainable for p in params)
                 else "trains" if params else "-")
        out = f" -> {shape}" if shape is not None else ""
        lines.append(f"{i:>3}  {key:<12} {type(layer).__name__:<16} "
                     f"{sum(p.size for p in params):>10,} params  {state}{out}")
    return lines
