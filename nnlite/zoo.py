"""Ready-made models from the project's source papers.

* :func:`mias_cnn` - the MIAS region-of-interest CNN (48x48 patches).
* :func:`alexnet` - the whole-mammogram thesis' AlexNet (Appendix A), with
  local response normalisation and the grouped ("split") convolutions.
* :func:`reduced_alexnet` - the same structure shrunk to train on a 2-core CPU.

Every function takes a ``seed`` so that the same call builds the same
weights; dropout layers get their own seeded generators.
"""
from __future__ import annotations

from .backend import Generator
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .lrn import LocalResponseNorm
from .padding import ZeroPad2D
from .activations import ReLU
from .pooling import MaxPool2D
from .sequential import Sequential


def _seeds(seed, count: int) -> list:
    """``count`` independent integer seeds derived from ``seed``."""
    g = Generator(seed)
    return [int(s) for s in g.integers(0, 2**31 - 1, size=count)]


def mias_cnn(num_classes: int = 3, input_shape=(1, 48, 48), dropout: float = 0.5,
             seed: int | None = 0) -> Sequential:
    """The MIAS ROI paper's CNN for 1x48x48 patches.

    conv 32@5x5 ("same") + ReLU, max-pool 2x2, conv 64@5x5 ("same") + ReLU,
    max-pool 2x2, flatten, dense 1024 + ReLU, dropout 0.5, dense num_classes
    (logits: pair it with ``SoftmaxCrossEntropy``).

    For 1x48x48 input: 48 -> 24 -> 12 spatially, 64*12*12 = 9216 features,
    9,493,379 parameters for 3 classes; 81.6 MFLOP per image forward.
    """
    c, h, w = input_shape
    s = _seeds(seed, 5)
    return Sequential([
        Conv2D(c, 32, 5, padding="same", seed=s[0]), ReLU(), MaxPool2D(2),
        Conv2D(32, 64, 5, padding="same", seed=s[1]), ReLU(), MaxPool2D(2),
        Flatten(),
        Dense(64 * (h // 4) * (w // 4), 1024, seed=s[2]), ReLU(),
        Dropout(dropout, seed=s[3]),
        Dense(1024, num_classes, weight_init="glorot_uniform", seed=s[4]),
    ], name="mias_cnn")


def alexnet(input_shape=(1, 224, 224), num_classes: int = 2, dropout: float = 0.5,
            seed: int | None = 0) -> Sequential:
    """The whole-mammogram thesis' AlexNet (Appendix A).

    conv1 11x11/4 96, max-pool 3x3/2, LRN; zero-pad 2, conv2 5x5 2x128
    (groups=2), max-pool 3x3/2, LRN; zero-pad 1, conv3 3x3 384; zero-pad 1,
    conv4 3x3 2x192 (groups=2); zero-pad 2, conv5 5x5 2x128 (groups=2),
    max-pool 3x3/2; flatten; dense 4096, dropout; dense 4096, dropout;
    dense num_classes. ReLU after every conv and hidden dense layer.

    Trainable parameters: 46,105,282 for 1x224x224 with 2 classes and
    181,371,586 for 1x512x416, the thesis' figures. Those counts fix the
    spatial path: the last feature map must be 5x5 (224 input) and 14x11
    (512x416), which holds only when conv1 sees the image **unpadded**
    ((224 - 11) // 4 + 1 = 54). The listing we were given also puts a
    zero-pad of 2 before conv1; with it the map would be 6x6 and the model
    57,639,618 parameters, so we leave it out.
    """
    c, h, w = input_shape
    s = _seeds(seed, 10)
    model = Sequential([
        Conv2D(c, 96, 11, stride=4, seed=s[0]), ReLU(),
        MaxPool2D(3, stride=2), LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        ZeroPad2D(2), Conv2D(96, 256, 5, groups=2, seed=s[1]), ReLU(),
        MaxPool2D(3, stride=2), LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        ZeroPad2D(1), Conv2D(256, 384, 3, seed=s[2]), ReLU(),
        ZeroPad2D(1), Conv2D(384, 384, 3, groups=2, seed=s[3]), ReLU(),
        ZeroPad2D(2), Conv2D(384, 256, 5, groups=2, seed=s[4]), ReLU(),
        MaxPool2D(3, stride=2),
        Flatten(),
    ], name="alexnet")
    features = _flat_features(model, input_shape)
    for layer in [Dense(features, 4096, seed=s[5]), ReLU(), Dropout(dropout, seed=s[6]),
                  Dense(4096, 4096, seed=s[7]), ReLU(), Dropout(dropout, seed=s[8]),
                  Dense(4096, num_classes, weight_init="glorot_uniform", seed=s[9])]:
        model.add(layer)
    return model


def reduced_alexnet(input_shape=(1, 64, 64), num_classes: int = 2,
                    channels=(24, 64, 96, 96, 64), hidden: int = 256, dropout: float = 0.5,
                    seed: int | None = 0) -> Sequential:
    """AlexNet's structure shrunk to train on a 2-core CPU in minutes.

    Kept: five convolutions, overlapping 3x3/2 max-pooling after conv1, conv2
    and conv5, LRN after the first two pools, grouped (groups=2) conv2, conv4
    and conv5, two dropout-regularised hidden dense layers. Shrunk: a 64x64
    input (instead of 224), conv1 5x5 stride 2 (instead of 11x11 stride 4, so
    that a small image keeps enough resolution), 3x3 conv5, channel widths
    (24, 64, 96, 96, 64) instead of (96, 256, 384, 384, 256) and 256 hidden
    units instead of 4096.

    For 1x64x64 input: 64 -> 32 (conv1) -> 15 (pool) -> 15 -> 7 (pool) -> 7
    -> 7 -> 7 -> 3 (pool); 64*3*3 = 576 features; 358,578 trainable
    parameters for 2 classes (about 1/130 of the full AlexNet).
    """
    c, h, w = input_shape
    c1, c2, c3, c4, c5 = channels
    s = _seeds(seed, 10)
    model = Sequential([
        Conv2D(c, c1, 5, stride=2, padding=2, seed=s[0]), ReLU(),
        MaxPool2D(3, stride=2), LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        Conv2D(c1, c2, 5, padding=2, groups=2, seed=s[1]), ReLU(),
        MaxPool2D(3, stride=2), LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        Conv2D(c2, c3, 3, padding=1, seed=s[2]), ReLU(),
        Conv2D(c3, c4, 3, padding=1, groups=2, seed=s[3]), ReLU(),
        Conv2D(c4, c5, 3, padding=1, groups=2, seed=s[4]), ReLU(),
        MaxPool2D(3, stride=2),
        Flatten(),
    ], name="reduced_alexnet")
    features = _flat_features(model, input_shape)
    for layer in [Dense(features, hidden, seed=s[5]), ReLU(), Dropout(dropout, seed=s[6]),
                  Dense(hidden, hidden, seed=s[7]), ReLU(), Dropout(dropout, seed=s[8]),
                  Dense(hidden, num_classes, weight_init="glorot_uniform", seed=s[9])]:
        model.add(layer)
    return model


def _flat_features(model: Sequential, input_shape) -> int:
    """Length of the flattened feature vector, with a clear error if the input is too small."""
    try:
        (features,) = model.output_shapes(input_shape)[-1]
    except ValueError as e:
        raise ValueError(f"{model.name}: input shape {tuple(input_shape)} is too small "
                         f"for this network ({e})") from None
    return features
