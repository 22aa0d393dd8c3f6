"""Source of lessons/10_residual_connections.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 10 - Residual connections
#
# Stacking more layers should never make a network worse: the extra layers could learn
# the identity. Yet in 2015 He et al. found that a plain 56-layer network trained *worse*
# than a 20-layer one, on the training set itself. Their fix, the **residual block**,
# adds the block's input to its output,
#
# $$y = x + F(x),$$
#
# so the layers $F$ (the *body*) only learn the change to $x$, and the identity is free:
# $F = 0$. Residual networks (ResNets) of 50, 101 and 152 layers followed, and the
# shortcut is now in almost every deep network.
#
# In this lesson: the backward pass of a residual block and why the gradient survives
# depth (measured); a deep plain network against the same network with shortcuts
# (trained, measured); ResNet's bottleneck block and the parameters of ResNet50.
#
# **You need:** lesson 3 (vanishing gradients), lesson 9 (batch normalisation) and
# lesson 1 (output sizes, a convolution's parameter count).

# %%
# %matplotlib inline
import sys
import time
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)

# %% [markdown]
# ## 1. The backward pass: where a path splits, gradients add
#
# In $y = x + F(x)$ the input $x$ goes two ways: through the body $F$ and along the
# shortcut. By the chain rule, the loss depends on $x$ through both paths, and the two
# contributions **add**:
#
# $$\frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,\frac{\partial F}{\partial x}
#   + \frac{\partial L}{\partial y}
#   \qquad\text{in code:}\qquad
#   dx = \text{body.backward}(dy) + dy .$$
#
# That one rule (a split in the forward pass is a sum in the backward pass) is all of
# backpropagation through a graph; nnlite's `nn.Residual(body, shortcut=None)` is
# exactly this, with `shortcut.backward(dy)` in place of `dy` when the shortcut is a
# layer (a projection, section 3).
#
# **Exercise 10.1: a residual block of your own.** Write `forward` ($y = F(x) + x$, with
# the body's `forward` given the same `training` flag) and `backward` for a block with an
# identity shortcut. The body is any nnlite layer, so `self.body.backward(dy)` gives its
# input gradient and fills its parameters' gradients. (Do not change `dy` in place: the
# body may keep it.) The check compares your block with `nn.Residual` and proves it with
# `nn.gradcheck`.

# %% [exercise 10.1]
class MyResidual(nn.Layer):
    """y = body(x) + x: a residual block with an identity shortcut."""

    def __init__(self, body):
        super().__init__()
        self.body = body                 # a Layer attribute: its parameters are the block's

    def forward(self, x, training=False):
        # TODO (exercise 10.1): return body(x) + x
        raise NotImplementedError

    def backward(self, dy):
        # TODO (exercise 10.1): return dx; the shortcut's share and the body's add up
        raise NotImplementedError

# %% [check 10.1]
def small_body(seed):
    return nn.Sequential([nn.Dense(5, 5, seed=seed), nn.Tanh(), nn.Dense(5, 5, seed=seed + 1)])


def prove_residual():
    if not issubclass(MyResidual, nn.Layer):
        raise lk.Wrong("MyResidual must be a subclass of nn.Layer")
    check_rng = np.random.default_rng(101)
    xb, dy = check_rng.normal(size=(4, 5)), check_rng.normal(size=(4, 5))
    mine = MyResidual(small_body(7)).astype("float64")
    ref = nn.Residual(small_body(7)).astype("float64")
    lk.compare(mine.forward(xb.copy(), training=True), ref.forward(xb.copy(), training=True),
               "forward(x)")
    dy_before = dy.copy()
    lk.compare(mine.backward(dy), ref.backward(dy.copy()), "backward(dy)")
    if not np.array_equal(dy, dy_before):
        raise lk.Wrong("backward changed dy in place")
    for (name, p), (_, q) in zip(mine.named_parameters(), ref.named_parameters()):
        lk.compare(p.grad, q.grad, f"the gradient of the body's {name}")
    result = nn.gradcheck(MyResidual(small_body(3)), check_rng.normal(size=(3, 5)))
    print(f"nn.gradcheck(MyResidual(body), x): max relative error {result.max_error:.1e}")
    if not result.max_error < 1e-6:
        name = max(result.keys(), key=lambda k: result[k])
        raise lk.Wrong(f"the gradient of {name} disagrees with the numerical one: "
                       f"{result.errors[name]}")


lk.run_check("10.1", prove_residual)

# %% [markdown]
# ## 2. Why the gradient survives depth
#
# Through a plain stack of $L$ layers the gradient is multiplied by $L$ Jacobians,
# $\frac{\partial L}{\partial x} = J_1^T J_2^T \cdots J_L^T\,dy$: if they shrink it (a
# sigmoid's slope is at most 1/4, lesson 3), it shrinks geometrically. Through $L$
# residual blocks each factor is $I + J_k$: the product expands into $dy$ itself plus
# every path that skips some of the bodies. Even if every $J_k$ were zero, $dy$ would
# reach the bottom unchanged.
#
# **Exercise 10.2.** Make it exact with a toy: every body is the linear map $F(x) = a\,x$
# (a `Dense` layer with weights $a I$, no bias, no activation). By what factor is the
# gradient multiplied on its way through `depth` such layers, plain or as residual
# blocks? The check builds both stacks with nnlite and measures $dx / dy$.

# %% [exercise 10.2]
def gradient_factor(a, depth, residual):
    """dx / dy through `depth` layers y = a x (plain) or blocks y = x + a x (residual)."""
    # TODO (exercise 10.2): return the factor
    raise NotImplementedError

# %% [check 10.2]
def measured_factor(a, depth, residual):
    layers = []
    for _ in range(depth):
        dense = nn.Dense(3, 3, bias=False).astype("float64")
        dense.W.data = a * np.eye(3)
        layers.append(nn.Residual(dense) if residual else dense)
    stack = nn.Sequential(layers)
    stack.forward(np.ones((1, 3)), training=True)
    return float(stack.backward(np.ones((1, 3)))[0, 0])


lk.check_cases("10.2", [(f"gradient_factor({a}, {L}, residual={r})",
                         lambda a=a, L=L, r=r: gradient_factor(a, L, r),
                         lambda a=a, L=L, r=r: measured_factor(a, L, r))
                        for a, L in ((0.25, 10), (0.1, 20), (-0.5, 3)) for r in (False, True)],
                rtol=1e-9)

# %% [markdown]
# With $a = 1/4$ (a sigmoid's best slope) ten plain layers leave $10^{-6}$ of the
# gradient; ten residual blocks multiply it by $1.25^{10} \approx 9$: it survives, and
# may even grow, which is one reason real ResNets put batch normalisation inside each
# body. Now measure it in real networks at initialisation: a stack of `depth` sigmoid
# layers of 32 units (`Dense` + `Sigmoid`), plain or each wrapped in a `Residual`, one
# backward pass of a cross-entropy loss on a random batch, and the norm of the gradient
# of the **first** layer's weights:

# %%
def sigmoid_stack(depth, residual, width=32):
    layers = [nn.Dense(16, width, weight_init="glorot_uniform", seed=0), nn.Sigmoid()]
    for k in range(depth):
        body = nn.Sequential([nn.Dense(width, width, weight_init="glorot_uniform", seed=k + 1),
                              nn.Sigmoid()])
        layers.append(nn.Residual(body) if residual else body)
    return nn.Sequential(layers + [nn.Dense(width, 2, weight_init="glorot_uniform", seed=999)])


def first_layer_gradient(model, seed=0):
    data_rng = np.random.default_rng(seed)
    xb = data_rng.normal(size=(64, 16)).astype(np.float32)     # (N, 16)
    labels = data_rng.integers(0, 2, size=64)
    _, dlogits = nn.SoftmaxCrossEntropy()(model.forward(xb, training=True), labels)
    model.backward(dlogits)
    return float(np.linalg.norm(model.layers[0].W.grad))


depths = [2, 5, 10, 20, 40]
norms = {name: [first_layer_gradient(sigmoid_stack(d, residual)) for d in depths]
         for name, residual in (("plain", False), ("residual", True))}
for name, values in norms.items():
    print(f"{name:<9}", "  ".join(f"depth {d}: {v:.1e}" for d, v in zip(depths, values)))

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, values in norms.items():
    ax.semilogy(depths, np.maximum(values, 1e-30), "o-", label=name)
ax.set(title="gradient reaching the first layer (sigmoid stack)", xlabel="depth (hidden layers)",
       ylabel="||dL/dW1|| (log scale, floor 1e-30)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# In the plain stack the first layer's gradient falls by orders of magnitude with every
# few layers (at depth 40 it may even underflow to exactly zero in float32): that layer
# cannot learn. With the shortcuts it stays of the same order at every depth.
#
# ### Does it train? A plain network against the same network with shortcuts
#
# The fair comparison of the ResNet paper: the **same** layers, batch normalisation
# included, with and without the shortcut. Each block's body is
# `Dense - BatchNorm1D - ReLU - Dense - BatchNorm1D`, followed by a ReLU; the plain
# network simply leaves out the `+ x`. The problem is lesson 9's (a circle in 16
# dimensions), SGD with momentum at lr 0.01, 15 epochs; a shallow pair (4 blocks, 8 hidden
# layers) and a deep pair (15 blocks, 30 hidden layers).

# %%
def circle_data(n, seed):
    data_rng = np.random.default_rng(seed)
    points = data_rng.normal(size=(n, 16)).astype(np.float32)            # (n, 16)
    labels = ((points[:, :2] ** 2).sum(axis=1) > 1.4).astype(np.int64)   # about half each
    return points, labels


x_train, y_train = circle_data(512, seed=0)
x_valid, y_valid = circle_data(256, seed=1)


def block_network(blocks, residual, width=32):
    layers = [nn.Dense(16, width, seed=0), nn.ReLU()]
    for k in range(blocks):
        body = nn.Sequential([nn.Dense(width, width, bias=False, seed=2 * k + 1),
                              nn.BatchNorm1D(width), nn.ReLU(),
                              nn.Dense(width, width, bias=False, seed=2 * k + 2),
                              nn.BatchNorm1D(width)])
        layers += [nn.Residual(body) if residual else body, nn.ReLU()]
    return nn.Sequential(layers + [nn.Dense(width, 2, weight_init="glorot_uniform", seed=999)])


runs = {}
for blocks in (4, 15):
    for residual in (False, True):
        name = f"{2 * blocks} layers, {'residual' if residual else 'plain'}"
        model = block_network(blocks, residual)
        start = time.process_time()
        runs[name] = nn.fit(model, x_train, y_train, loss=nn.SoftmaxCrossEntropy(),
                            optimizer=nn.SGD(model.parameters(), lr=0.01, momentum=0.9),
                            epochs=15, batch_size=32, validation_data=(x_valid, y_valid),
                            verbose=0)
        print(f"{name:<22} train loss {runs[name]['loss'][-1]:.3f}  validation accuracy "
              f"{runs[name]['val_accuracy'][-1]:.3f}  ({time.process_time() - start:.1f} s CPU)")

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, history in runs.items():
    ax.plot(range(1, 16), history["loss"], "-" if "residual" in name else "--", label=name)
ax.set(title="training loss: plain against residual", xlabel="epoch", ylabel="cross-entropy")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# Read the printed losses. The deep plain network, batch normalisation and all, stays
# near the loss of guessing ($\ln 2 \approx 0.69$) on its own training set, and does worse
# than the shallow plain one: the *degradation* the ResNet paper reported. The same deep
# network with shortcuts trains: more slowly than the shallow pair in 15 epochs, but its
# loss falls where the plain one's does not move. (Its validation accuracy is modest
# because 512 points in 16 dimensions are few for 30 layers; this comparison is about
# optimisation, and the training loss is what it measures.)
#
# ## 3. ResNet's bottleneck block
#
# In ResNet50 and deeper, a block is a **bottleneck**: a 1x1 convolution squeezes the
# channels to `filters`, a 3x3 convolution works at that width, and a 1x1 convolution
# widens back to `4 * filters`, each followed by batch normalisation (and a ReLU, except
# the last, whose ReLU comes after the sum):
#
# $$\underbrace{1{\times}1,\ f}_{\text{squeeze}} \to \underbrace{3{\times}3,\ f}_{\text{work}}
#   \to \underbrace{1{\times}1,\ 4f}_{\text{expand}}, \qquad y = \mathrm{ReLU}(F(x) + s(x)).$$
#
# When the block changes the shape (the first block of every stage: more channels, and
# from the second stage on stride 2), the shortcut $s$ is a **projection**, a 1x1
# convolution with that stride plus batch normalisation; otherwise it is the identity.
# `nn.zoo.bottleneck_block(in_channels, filters, stride, projection)` builds Keras'
# version, where every convolution has a bias:

# %%
block = nn.zoo.bottleneck_block(64, 64, projection=True)
block.summary((64, 56, 56))

# %% [markdown]
# The whole block, batch normalisation and shortcut included, passes the gradient check
# (a tiny one: 8 channels in, 2 filters, 4x4 maps; in evaluation mode, where batch
# normalisation is an affine map, lesson 9):

# %%
tiny_block = nn.zoo.bottleneck_block(8, 2, stride=2, projection=True, seeds=(1, 2, 3, 4))
x_tiny = np.random.default_rng(5).normal(size=(2, 8, 4, 4))        # (N, C, H, W), float64
result = nn.gradcheck(tiny_block, x_tiny)
print(f"nn.gradcheck(bottleneck_block(8, 2, stride=2, projection=True)): max relative error "
      f"{result.max_error:.1e} over {len(result.keys())} tensors")

# %% [markdown]
# **Exercise 10.3.** Count the trainable parameters of a bottleneck block, in Keras'
# convention: every convolution has a bias ($k \cdot k \cdot C_{in} \cdot C_{out} + C_{out}$,
# lesson 1), every batch normalisation has $\gamma$ and $\beta$ (lesson 9, exercise 9.5),
# and a block with `projection=True` adds its 1x1 shortcut convolution and its batch
# normalisation. (The stride changes no parameter count.) The check compares with
# `nn.zoo.bottleneck_block(...).count_params()`.

# %% [exercise 10.3]
def bottleneck_params(in_channels, filters, projection):
    """Trainable parameters of nn.zoo.bottleneck_block(in_channels, filters, projection=...)."""
    # TODO (exercise 10.3): three convolutions and three batch norms, plus the projection
    raise NotImplementedError

# %% [check 10.3]
lk.check_cases("10.3", [
    (f"bottleneck_params({c}, {f}, projection={p})",
     lambda c=c, f=f, p=p: bottleneck_params(c, f, p),
     lambda c=c, f=f, p=p: nn.zoo.bottleneck_block(c, f, projection=p).count_params())
    for c, f, p in ((64, 64, True), (256, 64, False), (256, 128, True), (1024, 256, False),
                    (1024, 512, True), (3, 5, False))])

# %% [markdown]
# **Exercise 10.4.** Now all of ResNet50 (`nn.zoo.resnet50`): a stem (7x7 convolution
# with 64 filters and bias, stride 2, then batch normalisation, ReLU and a 3x3 max
# pooling), four stages of 3, 4, 6 and 3 bottleneck blocks with 64, 128, 256 and 512
# filters (the first block of each stage with a projection; its input has the previous
# stage's $4f$ channels, or the stem's 64), global average pooling, and a `Dense` layer to
# `num_classes` logits. Use your `bottleneck_params`. For the thesis' network (one grey
# channel, 2 classes) the answer is 23,532,418, the same at every input size thanks to
# global average pooling.

# %% [exercise 10.4]
def resnet50_params(in_channels, num_classes):
    """Trainable parameters of nn.zoo.resnet50(input_shape=(in_channels, H, W), num_classes)."""
    # TODO (exercise 10.4): stem + the four stages + the dense head
    raise NotImplementedError

# %% [check 10.4]
resnet_grey = nn.zoo.resnet50(input_shape=(1, 224, 224), num_classes=2)
resnet_imagenet = nn.zoo.resnet50(input_shape=(3, 224, 224), num_classes=1000)
lk.check_cases("10.4", [("resnet50_params(1, 2)", lambda: resnet50_params(1, 2),
                         resnet_grey.count_params()),
                        ("resnet50_params(3, 1000)", lambda: resnet50_params(3, 1000),
                         resnet_imagenet.count_params())])

# %% [markdown]
# Compare with what Keras prints for its ImageNet ResNet50: "Total params: 25,636,712",
# of which 53,120 are "non-trainable", the running means and variances of the batch
# normalisations (lesson 9), which nnlite counts as buffers:

# %%
print(f"ResNet50, 3 channels, 1000 classes: {resnet_imagenet.count_params():,} trainable + "
      f"{resnet_imagenet.count_buffers():,} running statistics = "
      f"{resnet_imagenet.count_params() + resnet_imagenet.count_buffers():,}")
print(f"ResNet50, 1 channel, 2 classes (the thesis): {resnet_grey.count_params():,} trainable")

# %% [markdown]
# torchvision's ResNet50 has no convolution biases (each convolution is followed by batch
# normalisation, whose $\beta$ does a bias's job: lesson 9, exercise 9.4), so it counts
# 25,557,032 for ImageNet: the difference is exactly the biases.
#
# **Exercise 10.5.** Global average pooling hides the image size from the head, but not
# from the feature maps. For a grey $H \times H$ input, what is the shape `(C, H_out,
# W_out)` of the output of ResNet50's last stage (`layer4`), before the pooling? Use the
# output-size formula of lesson 1, $\lfloor (N - f + 2p)/s \rfloor + 1$, through the stem
# convolution (7x7, stride 2, padding 3), the max pooling (3x3, stride 2, padding 1) and
# the stride-2 1x1 convolutions (padding 0) that open stages 2, 3 and 4.

# %% [exercise 10.5]
def layer4_shape(H):
    """(C, H_out, W_out) of nn.zoo.resnet50's layer4 output for a (1, H, H) input."""
    # TODO (exercise 10.5): return a tuple of three whole numbers
    raise NotImplementedError

# %% [check 10.5]
layer4_index = [name for name, _ in resnet_grey.children()].index("layer4")
lk.check_cases("10.5", [(f"layer4_shape({H})", lambda H=H: layer4_shape(H),
                         lambda H=H: resnet_grey.output_shapes((1, H, H))[layer4_index])
                        for H in (224, 512, 100, 33)])

# %% [markdown]
# For 224x224 the last stage sees a 7x7 map, 32 times smaller; but it is not always
# $H / 32$: the roundings of every stride-2 step add up (try 100). Grad-CAM (a later
# lesson) draws its heat maps on this 7x7 grid.
#
# ## Summary
#
# * A residual block computes $y = F(x) + x$; in the backward pass the two paths' gradients
#   add: $dx = \text{body.backward}(dy) + dy$.
# * Through $L$ blocks the gradient is multiplied by $\prod_k (I + J_k)$ instead of
#   $\prod_k J_k$: it cannot vanish just because each body's Jacobian is small (measured:
#   a 40-layer sigmoid stack passes gradient to its first layer only with shortcuts).
# * The same deep network with batch normalisation trains with shortcuts and stalls
#   without them: depth needs both.
# * ResNet50 stacks 16 bottleneck blocks (1x1 squeeze, 3x3, 1x1 expand, projection
#   shortcuts where the shape changes); in Keras' convention, with convolution biases,
#   23,532,418 trainable parameters for one grey channel and 2 classes.
