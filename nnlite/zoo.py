"""Ready-made models from the project's source papers.

* :func:`mias_cnn` - the MIAS region-of-interest CNN (48x48 patches).
* :func:`alexnet` - the whole-mammogram thesis' AlexNet (Appendix A), with
  local response normalisation and the grouped ("split") convolutions.
* :func:`reduced_alexnet` - the same structure shrunk to train on a 2-core CPU.
* :func:`resnet50` - the thesis' ResNet50 (Keras' application network, one grey
  input channel): bottleneck residual blocks 3-4-6-3 with BatchNorm.
* :func:`reduced_resnet` - a small residual network with BatchNorm for 2 CPU cores.
* :func:`segnet` and :func:`unet` - small encoder-decoders for lesion masks:
  SegNet-style (max-pool indices + :class:`~nnlite.unpool.MaxUnpool2D`) and
  U-Net-style (:class:`~nnlite.conv_transpose.ConvTranspose2D` + skip
  connections with :class:`~nnlite.containers.Concatenate`).

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
from .batchnorm import BatchNorm2D
from .containers import Concatenate, Residual
from .conv_transpose import ConvTranspose2D
from .pooling import GlobalAvgPool2D, MaxPool2D
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


# ------------------------------------------------------------------ ResNet
#: Keras' BatchNormalization(momentum=0.99, epsilon=1.001e-5) in nnlite's (PyTorch's)
#: convention: nnlite's momentum weighs the new batch, so 1 - 0.99.
_KERAS_BN = dict(momentum=0.01, eps=1.001e-5)


def bottleneck_block(in_channels: int, filters: int, stride: int = 1, projection: bool = False,
                     bias: bool = True, seeds=(None, None, None, None), bn=None) -> Sequential:
    """ResNet's bottleneck block (Keras ``block1``): 1x1, 3x3, 1x1 convolutions, each with BatchNorm.

    ``body = conv1x1(filters, stride) BN ReLU, conv3x3(filters) BN ReLU,
    conv1x1(4*filters) BN``; ``shortcut = conv1x1(4*filters, stride) BN`` when
    ``projection`` (the first block of a stage), else the identity; then
    ``ReLU(body(x) + shortcut(x))``. As in Keras' ResNet50 (v1) the stride sits
    on the first 1x1 convolution and every convolution has a bias.

    Parameters (with bias): ``in*f + f + 9*f*f + f + 4*f*f + 4*f`` for the
    convolutions, ``2*f + 2*f + 8*f`` for the BatchNorms, ``+ in*4f + 4f + 8f``
    for a projection.
    """
    bn = bn or _KERAS_BN
    out = 4 * filters
    body = Sequential([
        Conv2D(in_channels, filters, 1, stride=stride, bias=bias, seed=seeds[0], name="conv1"),
        BatchNorm2D(filters, name="bn1", **bn), ReLU(),
        Conv2D(filters, filters, 3, padding=1, bias=bias, seed=seeds[1], name="conv2"),
        BatchNorm2D(filters, name="bn2", **bn), ReLU(),
        Conv2D(filters, out, 1, bias=bias, seed=seeds[2], name="conv3"),
        BatchNorm2D(out, name="bn3", **bn),
    ])
    shortcut = None
    if projection:
        shortcut = Sequential([Conv2D(in_channels, out, 1, stride=stride, bias=bias, seed=seeds[3],
                                      name="conv"), BatchNorm2D(out, name="bn", **bn)])
    return Sequential([Residual(body, shortcut, name="block"), ReLU()])


def basic_block(in_channels: int, channels: int, stride: int = 1, seeds=(None, None, None)) -> Sequential:
    """ResNet's basic block (two 3x3 convolutions): ``ReLU(body(x) + shortcut(x))``.

    ``body = conv3x3(channels, stride) BN ReLU, conv3x3(channels) BN``; the
    shortcut is a 1x1 convolution with stride and BatchNorm when the shape
    changes, else the identity. Convolutions before a BatchNorm have no bias
    (the BatchNorm's beta plays that role).
    """
    body = Sequential([
        Conv2D(in_channels, channels, 3, stride=stride, padding=1, bias=False, seed=seeds[0],
               name="conv1"),
        BatchNorm2D(channels, name="bn1"), ReLU(),
        Conv2D(channels, channels, 3, padding=1, bias=False, seed=seeds[1], name="conv2"),
        BatchNorm2D(channels, name="bn2"),
    ])
    shortcut = None
    if stride != 1 or in_channels != channels:
        shortcut = Sequential([Conv2D(in_channels, channels, 1, stride=stride, bias=False,
                                      seed=seeds[2], name="conv"), BatchNorm2D(channels, name="bn")])
    return Sequential([Residual(body, shortcut, name="block"), ReLU()])


def resnet50(input_shape=(1, 224, 224), num_classes: int = 2, seed: int | None = 0) -> Sequential:
    """The thesis' ResNet50: Keras' application network with one grey input channel.

    Stem: conv 7x7/2 64 (zero padding 3) + BN + ReLU, max-pool 3x3/2 (padding 1);
    four stages of bottleneck blocks (:func:`bottleneck_block`), 3, 4, 6 and 3
    blocks with 64, 128, 256 and 512 filters (outputs 256 ... 2048 channels),
    the first block of each stage with a projection shortcut and, from the
    second stage on, stride 2; global average pooling; dense ``num_classes``
    (logits). Every convolution has a bias, as in Keras, so the count differs
    from torchvision's ResNet50, which has none.

    For 2 classes: 23,532,418 trainable parameters at any input size (global
    average pooling makes the head independent of H and W: the same at
    1x224x224 and 1x512x416) and 53,120 BatchNorm running statistics
    (Keras' "non-trainable params"). BatchNorm uses Keras' momentum 0.99 and
    epsilon 1.001e-5 (nnlite ``momentum=0.01``: see :class:`~nnlite.batchnorm.BatchNorm2D`).
    About 4.1 GFLOP per 224x224 image forward: define and count it here; train
    :func:`reduced_resnet` on a CPU.
    """
    c = input_shape[0]
    s = iter(_seeds(seed, 2 + 4 * 16))
    model = Sequential([
        Conv2D(c, 64, 7, stride=2, padding=3, seed=next(s), name="conv1"),
        BatchNorm2D(64, name="bn_conv1", **_KERAS_BN), ReLU(),
        MaxPool2D(3, stride=2, padding=1, name="pool1"),
    ], name="resnet50")
    in_channels = 64
    for stage, (filters, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                      (512, 3, 2)), start=1):
        layers = []
        for b in range(blocks):
            layers.append(bottleneck_block(in_channels, filters, stride if b == 0 else 1,
                                           projection=(b == 0),
                                           seeds=[next(s) for _ in range(4)]))
            in_channels = 4 * filters
        model.add(Sequential(layers, name=f"layer{stage}"))
    model.add(GlobalAvgPool2D(name="avg_pool"))
    model.add(Dense(in_channels, num_classes, weight_init="glorot_uniform", seed=next(s), name="fc"))
    return model


def reduced_resnet(input_shape=(1, 64, 64), num_classes: int = 2, widths=(16, 32, 64),
                   blocks=(1, 1, 1), seed: int | None = 0) -> Sequential:
    """A small residual network with BatchNorm that trains on 2 CPU cores in minutes.

    Stem: conv 5x5/2 (padding 2, no bias) + BN + ReLU, max-pool 2x2; then one
    stage per entry of ``widths`` with ``blocks[i]`` basic blocks
    (:func:`basic_block`: two 3x3 convolutions with BatchNorm and a shortcut),
    stride 2 at the start of every stage but the first; global average
    pooling; dense ``num_classes``.

    For 1x64x64: 64 -> 32 (stem) -> 16 (pool) -> 16 -> 8 -> 4, then 64
    features; 77,490 trainable parameters for 2 classes with the defaults
    (the same at 1x112x112: global average pooling) and 672 running statistics.
    """
    c = input_shape[0]
    if len(widths) != len(blocks) or not widths:
        raise ValueError(f"reduced_resnet: widths {widths} and blocks {blocks} must have one entry "
                         f"per stage")
    s = iter(_seeds(seed, 2 + 3 * sum(blocks)))
    model = Sequential([
        Conv2D(c, widths[0], 5, stride=2, padding=2, bias=False, seed=next(s), name="conv1"),
        BatchNorm2D(widths[0], name="bn1"), ReLU(), MaxPool2D(2, name="pool1"),
    ], name="reduced_resnet")
    in_channels = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
        layers = []
        for b in range(count):
            stride = 2 if (b == 0 and stage > 1) else 1
            layers.append(basic_block(in_channels, width, stride, seeds=[next(s) for _ in range(3)]))
            in_channels = width
        model.add(Sequential(layers, name=f"layer{stage}"))
    model.add(GlobalAvgPool2D(name="avg_pool"))
    model.add(Dense(in_channels, num_classes, weight_init="glorot_uniform", seed=next(s), name="fc"))
    return model


# ------------------------------------------------------------ segmentation
def _conv_bn_relu(c_in: int, c_out: int, seed, name: str) -> list:
    return [Conv2D(c_in, c_out, 3, padding=1, bias=False, seed=seed, name=f"{name}_conv"),
            BatchNorm2D(c_out, name=f"{name}_bn"), ReLU(name=f"{name}_relu")]


def segnet(input_shape=(1, 64, 64), num_classes: int = 1, widths=(16, 32), seed: int | None = 0) -> Sequential:
    """A small SegNet-style encoder-decoder: max-pool indices carried to the decoder.

    Encoder level i: conv3x3 + BN + ReLU, then ``MaxPool2D(2)`` named ``pool<i>``
    (it records where each maximum was). Decoder level i, in reverse:
    ``MaxUnpool2D("pool<i>")`` puts every value back where its maximum came from
    (zeros elsewhere), then conv3x3 + BN + ReLU. A final 1x1 convolution gives
    ``num_classes`` logit maps of the input's size (one map for a lesion mask:
    pair it with a per-pixel binary cross-entropy). H and W must be divisible
    by ``2**len(widths)``.
    """
    from .unpool import MaxUnpool2D

    c, h, w = input_shape
    depth = len(widths)
    if h % 2**depth or w % 2**depth:
        raise ValueError(f"segnet: input {h}x{w} must be divisible by {2**depth} "
                         f"({depth} pooling levels)")
    s = iter(_seeds(seed, 2 * depth + 1))
    layers, channels = [], c
    for i, width in enumerate(widths, start=1):
        layers += _conv_bn_relu(channels, width, next(s), f"enc{i}")
        layers.append(MaxPool2D(2, name=f"pool{i}"))
        channels = width
    for i in range(depth, 0, -1):
        layers.append(MaxUnpool2D(f"pool{i}", name=f"unpool{i}"))
        out = widths[i - 2] if i > 1 else widths[0]
        layers += _conv_bn_relu(channels, out, next(s), f"dec{i}")
        channels = out
    layers.append(Conv2D(channels, num_classes, 1, seed=next(s), name="classifier"))
    model = Sequential(layers, name="segnet")
    for _, layer in model.named_layers():           # attach each unpool to its pool
        layer.resolve_links(model)
    return model


def unet(input_shape=(1, 64, 64), num_classes: int = 1, widths=(16, 32, 64), seed: int | None = 0) -> Sequential:
    """A small U-Net: encoder features skip across to the decoder by concatenation.

    Built from the inside out: the deepest level is conv-BN-ReLU twice at
    ``widths[-1]``; each level above it is::

        conv-BN-ReLU x2 (widths[i]),
        Concatenate([Identity(),                                   # the skip
                     Sequential([MaxPool2D(2), <deeper level>,
                                 ConvTranspose2D(widths[i+1], widths[i], 2, stride=2)])]),
        conv-BN-ReLU x2 (2*widths[i] -> widths[i])

    then a 1x1 convolution to ``num_classes`` logit maps of the input's size.
    H and W must be divisible by ``2**(len(widths) - 1)``.
    """
    c, h, w = input_shape
    depth = len(widths) - 1
    if depth < 1:
        raise ValueError("unet: widths needs at least two levels")
    if h % 2**depth or w % 2**depth:
        raise ValueError(f"unet: input {h}x{w} must be divisible by {2**depth} ({depth} levels)")
    s = iter(_seeds(seed, 5 * len(widths) + 1))

    def level(i: int, c_in: int) -> list:
        layers = (_conv_bn_relu(c_in, widths[i], next(s), f"l{i}a")
                  + _conv_bn_relu(widths[i], widths[i], next(s), f"l{i}b"))
        if i == depth:
            return layers
        deeper = Sequential([MaxPool2D(2, name=f"pool{i}")] + level(i + 1, widths[i]) + [
            ConvTranspose2D(widths[i + 1], widths[i], 2, stride=2, seed=next(s), name=f"up{i}")],
            name=f"down{i}")
        return layers + [Concatenate([None, deeper], axis=1, name=f"skip{i}")] + (
            _conv_bn_relu(2 * widths[i], widths[i], next(s), f"l{i}c")
            + _conv_bn_relu(widths[i], widths[i], next(s), f"l{i}d"))

    return Sequential(level(0, c) + [Conv2D(widths[0], num_classes, 1, seed=next(s),
                                            name="classifier")], name="unet")
