"""Reference solutions of lessons/10_residual_connections.ipynb (see lessons/build_lessons.py).

Each ``solution`` cell replaces the whole exercise cell of the same id; each ``wrong``
cell is a deliberately wrong answer that the test suite feeds to the check.
"""

# %% [solution 10.1]
class MyResidual(nn.Layer):
    """y = body(x) + x: a residual block with an identity shortcut."""

    def __init__(self, body):
        super().__init__()
        self.body = body                 # a Layer attribute: its parameters are the block's

    def forward(self, x, training=False):
        return self.body.forward(x, training=training) + x

    def backward(self, dy):
        return self.body.backward(dy) + dy     # the body's path plus the shortcut's

# %% [wrong 10.1]
class MyResidual(nn.Layer):
    """Forgets the shortcut's share of the gradient: only the body's path."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x, training=False):
        return self.body.forward(x, training=training) + x

    def backward(self, dy):
        return self.body.backward(dy)

# %% [solution 10.2]
def gradient_factor(a, depth, residual):
    """dx / dy through `depth` layers y = a x (plain) or blocks y = x + a x (residual)."""
    if residual:
        return (1 + a) ** depth
    return a ** depth

# %% [wrong 10.2]
def gradient_factor(a, depth, residual):
    """Adds the bodies' contributions instead of multiplying the factors."""
    if residual:
        return 1 + a * depth
    return a ** depth

# %% [solution 10.3]
def bottleneck_params(in_channels, filters, projection):
    """Trainable parameters of nn.zoo.bottleneck_block(in_channels, filters, projection=...)."""
    f, out = filters, 4 * filters

    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out              # weights + biases

    def bn(c):
        return 2 * c                                     # gamma, beta

    body = conv(1, in_channels, f) + bn(f) + conv(3, f, f) + bn(f) + conv(1, f, out) + bn(out)
    shortcut = conv(1, in_channels, out) + bn(out) if projection else 0
    return body + shortcut

# %% [wrong 10.3]
def bottleneck_params(in_channels, filters, projection):
    """torchvision's convention: no convolution biases."""
    f, out = filters, 4 * filters
    body = in_channels * f + 2 * f + 9 * f * f + 2 * f + f * out + 2 * out
    return body + (in_channels * out + 2 * out if projection else 0)

# %% [solution 10.4]
def resnet50_params(in_channels, num_classes):
    """Trainable parameters of nn.zoo.resnet50(input_shape=(in_channels, H, W), num_classes)."""
    total = 7 * 7 * in_channels * 64 + 64 + 2 * 64       # stem convolution and its batch norm
    channels = 64
    for filters, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += bottleneck_params(channels, filters, projection=(b == 0))
            channels = 4 * filters
    return total + channels * num_classes + num_classes  # the dense head

# %% [wrong 10.4]
def resnet50_params(in_channels, num_classes):
    """Gives the first stage no projection (its stride is 1, but 64 -> 256 channels)."""
    total = 7 * 7 * in_channels * 64 + 64 + 2 * 64
    channels = 64
    for filters, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            total += bottleneck_params(channels, filters, projection=(b == 0 and filters > 64))
            channels = 4 * filters
    return total + channels * num_classes + num_classes

# %% [solution 10.5]
def layer4_shape(H):
    """(C, H_out, W_out) of nn.zoo.resnet50's layer4 output for a (1, H, H) input."""
    def out(n, f, p, s):
        return (n - f + 2 * p) // s + 1

    size = out(H, 7, 3, 2)                 # stem convolution
    size = out(size, 3, 1, 2)              # max pooling
    for _ in range(3):                     # stages 2, 3, 4 open with a stride-2 1x1 conv
        size = out(size, 1, 0, 2)
    return (2048, size, size)

# %% [wrong 10.5]
def layer4_shape(H):
    """The total stride, 32, without the roundings."""
    return (2048, H // 32, H // 32)
