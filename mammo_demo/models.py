"""The networks and optimizers ``mammo-demo train`` can use, by name.

* ``mias_cnn``: the MIAS ROI paper's CNN (:func:`nnlite.zoo.mias_cnn`), at
  the paper's 48x48 patches (any side of at least 4 pixels works);
* ``reduced_alexnet``: the thesis' AlexNet shrunk for a CPU
  (:func:`nnlite.zoo.reduced_alexnet`), at the 64x64 input its definition is
  documented for (any side of at least :data:`MIN_PATCH` ``["reduced_alexnet"]``
  = 29 pixels: conv1 5x5/2 and three 3x3/2 max-pools must leave a 1x1 map).
"""
from __future__ import annotations

import nnlite as nn

MODELS = ("mias_cnn", "reduced_alexnet")
#: the patch side each model is trained on unless ``--patch-size`` says otherwise
DEFAULT_PATCH = {"mias_cnn": 48, "reduced_alexnet": 64}
#: the smallest patch side each model accepts
MIN_PATCH = {"mias_cnn": 4, "reduced_alexnet": 29}
DESCRIPTION = {
    "mias_cnn": "mias_cnn (conv 32@5x5, pool, conv 64@5x5, pool, dense 1024, dropout 0.5)",
    "reduced_alexnet": "reduced_alexnet (5 convs with LRN and grouped convs, 2 dense 256, "
                       "dropout 0.5)",
}
OPTIMIZERS = ("sgd", "adam", "rmsprop")


def check_model(name: str, patch_size: int) -> None:
    """``ValueError`` for an unknown model or a patch it cannot take."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    if int(patch_size) < MIN_PATCH[name]:
        raise ValueError(f"patch size must be at least {MIN_PATCH[name]} pixels for {name}, "
                         f"got {patch_size}")


def build_model(name: str, num_classes: int, patch_size: int, seed: int = 0):
    """The named network for 1 x ``patch_size`` x ``patch_size`` patches (dropout 0.5)."""
    check_model(name, patch_size)
    shape = (1, int(patch_size), int(patch_size))
    if name == "mias_cnn":
        return nn.zoo.mias_cnn(num_classes=num_classes, input_shape=shape, dropout=0.5, seed=seed)
    return nn.zoo.reduced_alexnet(input_shape=shape, num_classes=num_classes, dropout=0.5,
                                  seed=seed)


def build_optimizer(name: str, params, lr: float):
    """``sgd``: SGD with momentum 0.9; ``adam``: Adam(beta1 0.9, beta2 0.999);
    ``rmsprop``: RMSProp(rho 0.9)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if name == "adam":
        return nn.Adam(params, lr=lr)
    if name == "sgd":
        return nn.SGD(params, lr=lr, momentum=0.9)
    return nn.RMSProp(params, lr=lr)
