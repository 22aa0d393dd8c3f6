"""Grad-CAM: which part of a patch made the network say "malignant"?

Gradient-weighted class activation mapping (Selvaraju et al., 2017) for an
nnlite :class:`~nnlite.Sequential`. For a chosen convolutional layer with
feature maps ``A`` of shape (N, K, h, w) and a class ``c`` with logit ``y^c``::

    alpha_k^c = 1/(h w) * sum_ij  d y^c / d A^k_ij        (N, K): global-average-pooled gradients
    L^c       = ReLU( sum_k alpha_k^c A^k )                (N, h, w): the class activation map

``L^c`` is then resized (bilinear) to the input's H x W and scaled to [0, 1]
per image (a map that is zero everywhere stays zero). The ReLU keeps only the
regions whose activation *raises* the class score.

It uses the model's recording mode: ``model.forward(x, record=True)`` keeps
every layer's output in ``model.activations`` and ``model.backward(dy)`` the
gradient with respect to every layer's output in ``model.gradients``; the
upstream gradient ``dy`` is one-hot in class ``c`` (so the backward pass
computes ``d y^c / d A``). Dropout is in evaluation mode (identity). The pass
also overwrites the parameters' ``.grad``; they are zeroed afterwards.

Bright bands along the patch borders. On normal patches the maps of
``mias_cnn`` often light up in a ring a few pixels wide along the border.
That ring is the zero padding of the "same" convolutions: conv2 sees the
ReLU output of conv1, which is non-negative with a positive mean, padded
with zeros, so every filter meets an artificial edge at the border; the
cells whose receptive field reaches the padding respond to it whatever the
patch shows. On a flat (all-zero, i.e. mean-grey) patch the map is constant
inside and varies only in that ring (``tests/test_experiment.py``
checks this). :func:`padding_margin` gives the ring's width in input pixels
(6 for ``mias_cnn``: 2 from conv1, 2 x 2 from conv2 after the first pool);
the Grad-CAM figure marks it with a dashed square and says that bands
outside the square are a padding artefact, not evidence.

A heat map shows where the evidence is, not why: on phantom data it shows
what the phantom generator drew, and it is no diagnostic tool.
"""
from __future__ import annotations

import numpy as np

from nnlite.backend import get_array_module, to_device, to_numpy
from nnlite.conv import Conv2D

from .preprocess import resize


def default_layer(model) -> int:
    """Index of the last convolution's output, after its activation when one follows.

    For ``mias_cnn`` that is the ReLU after the second convolution: 64 maps of
    24x24 for a 48x48 patch.
    """
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]
    if not convs:
        raise ValueError(f"Grad-CAM needs a Conv2D layer; {model.name} has none")
    i = convs[-1]
    nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
    if nxt is not None and not nxt.parameters() and type(nxt).__name__ in (
            "ReLU", "LeakyReLU", "Tanh", "Sigmoid"):
        return i + 1
    return i


def padding_margin(model, layer: int | None = None) -> int:
    """Width in input pixels of the border ring where ``layer``'s output depends on zero padding.

    Each padding layer (``Conv2D`` padding, ``ZeroPad2D``, pooling padding)
    before and at ``layer`` widens the ring by its padding times the
    cumulated stride of the layers before it (so a pad of 2 after one 2x2
    pool counts 4 input pixels).
    """
    layer = default_layer(model) if layer is None else int(layer)
    margin, jump = 0, 1
    for lay in model.layers[:layer + 1]:
        pad = getattr(lay, "padding", 0)
        kernel = getattr(lay, "kernel_size", None)
        if pad == "same" and kernel is not None:
            pad = max(kernel) - 1 - (max(kernel) - 1) // 2     # the larger side of "same"
        elif pad == "valid":
            pad = 0
        if isinstance(pad, (tuple, list)):
            pad = max(pad) if pad else 0
        margin += int(pad) * jump
        stride = getattr(lay, "stride", None)
        if stride is not None:
            jump *= max(stride) if isinstance(stride, (tuple, list)) else int(stride)
    return margin


def grad_cam(model, x, class_index=None, layer: int | None = None):
    """Grad-CAM heat maps of a batch.

    Args:
        model: a :class:`~nnlite.Sequential` whose output is (N, C) logits.
        x: (N, C_in, H, W) inputs (NumPy; moved to the model's device).
        class_index: the class to explain: an int for every image, an (N,)
            array (one class per image), or ``None`` for each image's predicted class.
        layer: index into ``model.layers`` whose output (N, K, h, w) is
            explained (default :func:`default_layer`).

    Returns:
        ``(heatmaps, classes)``: (N, H, W) float32 maps in [0, 1] and the (N,)
        int64 explained classes.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"grad_cam expects inputs (N, C, H, W), got shape {x.shape}")
    layer = default_layer(model) if layer is None else int(layer)
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"layer {layer} is out of range for a model of {len(model.layers)} layers")
    params = model.parameters()
    device = "gpu" if params and get_array_module(params[0].data) is not np else "cpu"
    xb = to_device(x.astype(model.dtype, copy=False), device)
    logits = model.forward(xb, training=False, record=True)
    xp = get_array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"grad_cam expects (N, C) logits, the model outputs {tuple(logits.shape)}")
    n, num_classes = logits.shape
    if class_index is None:
        classes = to_numpy(xp.argmax(logits, axis=1)).astype(np.int64)
    else:
        classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,)).copy()
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"class_index must lie in [0, {num_classes}), got {classes.tolist()}")
    dy = xp.zeros_like(logits)
    dy[xp.arange(n), to_device(classes, device)] = 1                  # d y^c / d logits
    try:
        model.backward(dy)
        A = model.activations[layer]                                  # (N, K, h, w)
        dA = model.gradients[layer]                                   # (N, K, h, w)
    finally:
        model.zero_grad()
        model.activations, model.gradients = [], []                 # drop the recorded arrays
    if A.ndim != 4:
        raise ValueError(f"layer {layer} ({model.layers[layer]!r}) outputs shape "
                         f"{tuple(A.shape)}; Grad-CAM needs feature maps (N, K, h, w)")
    alpha = dA.mean(axis=(2, 3), keepdims=True)                       # (N, K, 1, 1)
    cam = xp.maximum((alpha * A).sum(axis=1), 0)                      # (N, h, w)
    cam = to_numpy(cam).astype(np.float32)
    h, w = x.shape[2:]
    out = np.stack([resize(c, (h, w), "bilinear") for c in cam]) if n else \
        np.zeros((0, h, w), np.float32)
    out = np.maximum(out, 0)
    peak = out.reshape(n, -1).max(axis=1) if n else np.zeros(0, np.float32)
    out /= np.where(peak > 0, peak, 1)[:, None, None]
    return out.astype(np.float32), classes
