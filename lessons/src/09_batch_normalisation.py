"""Source of lessons/09_batch_normalisation.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 9 - Batch normalisation
#
# A deep network is a long chain of layers, and each layer's input keeps changing while
# the layers below it learn. **Batch normalisation** (Ioffe and Szegedy, 2015) rescales
# every channel of a layer's output to mean 0 and variance 1 over the mini-batch, then
# lets the network pick the scale and shift it wants with two learnt parameters,
# $\gamma$ and $\beta$. It makes deep networks much less sensitive to the learning rate
# and to the initialisation, and every ResNet (lesson 10) uses it.
#
# In this lesson: the forward pass in training and in evaluation (the running
# statistics, and the two conventions for their momentum, PyTorch's and Keras'); the
# backward pass derived and gradient-checked; what batch normalisation does to the
# training of a deep plain network, measured.
#
# **You need:** lesson 3 (activations, vanishing gradients, `nn.gradcheck`), lesson 6
# (SGD with momentum) and lesson 8 (`nn.Sequential`, `fit`).

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
# ## 1. The forward pass in training
#
# For an input of shape $(N, C)$ (after a `Dense` layer) the statistics of channel $c$
# are taken over the $m = N$ examples of the batch; for feature maps $(N, C, H, W)$
# (after a `Conv2D`) over the $m = N H W$ values of the batch and of every position:
#
# $$\mu_c = \frac1m \sum_i x_{ic}, \qquad
#   \sigma^2_c = \frac1m \sum_i (x_{ic} - \mu_c)^2, \qquad
#   \hat x_{ic} = \frac{x_{ic} - \mu_c}{\sqrt{\sigma^2_c + \varepsilon}}, \qquad
#   y_{ic} = \gamma_c \hat x_{ic} + \beta_c .$$
#
# The variance divides by $m$ (the *biased* variance): it is the variance of this very
# batch, not an estimate of anything. $\varepsilon$ ($10^{-5}$ in nnlite and PyTorch)
# keeps the division safe for a constant channel. $\gamma$ starts at 1 and $\beta$ at 0,
# so a fresh layer outputs exactly the normalised $\hat x$.

# %%
rng = np.random.default_rng(0)
x = rng.normal(loc=[3.0, -2.0, 0.5], scale=[2.0, 0.1, 5.0], size=(8, 3)).astype(np.float32)
bn = nn.BatchNorm1D(3)
y = bn.forward(x, training=True)
print("input  mean per channel", x.mean(axis=0), " std", x.std(axis=0))
print("output mean per channel", np.round(y.mean(axis=0), 4) + 0.0, " std", y.std(axis=0))
print("parameters:", [(p.name, p.shape) for p in bn.parameters()],
      " buffers:", [(b.name, b.shape) for b in bn.buffers()])

# %% [markdown]
# The output's standard deviation is not exactly 1 because of $\varepsilon$; with a
# channel of standard deviation 0.1 (the second one) the difference shows in the third
# decimal.
#
# ## 2. Evaluation: the running statistics
#
# In training, one example's output depends on the **other examples in its batch**
# (through $\mu$ and $\sigma$). That is acceptable while learning, but a model that
# diagnoses one image must give that image the same answer whatever else is in the
# batch, and it must work on a batch of one. So during training each layer also keeps
# **running** estimates of the mean and variance (buffers, not parameters: no gradient,
# no optimizer, but saved with the model), and in evaluation (`training=False`) it uses
# them in place of the batch's:
#
# $$y = \gamma\,\frac{x - \text{running\_mean}}{\sqrt{\text{running\_var} + \varepsilon}} + \beta .$$
#
# Watch the same first example in two different batches:

# %%
first = x[:1]                                        # (1, 3): one example
other_batch = np.concatenate([first, 10 + x[1:]])    # the same first row, other companions
bn_train = nn.BatchNorm1D(3)
print("training mode, batch x          :", bn_train.forward(x, training=True)[0])
print("training mode, other batch      :", bn_train.forward(other_batch, training=True)[0])
print("evaluation mode, alone          :", bn_train.forward(first, training=False)[0])
print("evaluation mode, in other batch :", bn_train.forward(other_batch, training=False)[0])
try:
    bn_train.forward(first, training=True)
except ValueError as err:
    print("training mode, alone            : ValueError:", err)

# %% [markdown]
# ### The momentum, and two conventions
#
# After every training batch the running statistics move a step towards the batch's.
# nnlite follows **PyTorch**, whose `momentum` is the weight of the **new** batch
# (default $0.1$), and stores the *unbiased* variance $\sigma^2 \cdot m/(m-1)$ (the
# running variance estimates the variance of the whole population, and an estimate from
# $m$ values divides by $m - 1$):
#
# $$\text{running\_mean} \leftarrow (1 - \text{momentum})\,\text{running\_mean}
#   + \text{momentum}\cdot\mu, \qquad
#   \text{running\_var} \leftarrow (1 - \text{momentum})\,\text{running\_var}
#   + \text{momentum}\cdot\sigma^2\,\frac{m}{m-1}.$$
#
# **Keras** writes the same average the other way round: its `momentum` is the weight of
# the **old** value (default $0.99$), `moving = momentum * moving + (1 - momentum) * batch`.
# So Keras' 0.99 is nnlite's and PyTorch's 0.01, a running average a hundred batches
# long, where PyTorch's default remembers about ten. (Keras also updates with the biased
# variance, and its default $\varepsilon$ is $10^{-3}$.) `nn.zoo.resnet50` uses the Keras
# values, `momentum=0.01`, because the thesis' network is the Keras one. Reading a
# paper's "momentum 0.9" for batch normalisation, always ask which convention it means.
#
# **Exercise 9.1.** Write the update of the running statistics for an input `x` of
# shape $(N, C)$ in nnlite's (PyTorch's) convention: return the new `(running_mean,
# running_var)`, each of shape $(C,)$. The check sets the buffers of an
# `nn.BatchNorm1D`, runs one training batch through it, and compares.

# %% [exercise 9.1]
def running_update(running_mean, running_var, x, momentum):
    """The running statistics after one training batch x (N, C), PyTorch's convention."""
    # TODO (exercise 9.1): return (new_running_mean, new_running_var), both (C,)
    raise NotImplementedError

# %% [check 9.1]
def running_after_one_batch(running_mean, running_var, x, momentum):
    """What nn.BatchNorm1D's buffers hold after one training forward pass of x."""
    layer = nn.BatchNorm1D(x.shape[1], momentum=momentum).astype("float64")
    layer.running_mean.data = np.array(running_mean, dtype=np.float64)
    layer.running_var.data = np.array(running_var, dtype=np.float64)
    layer.forward(x, training=True)
    return layer.running_mean.data, layer.running_var.data


def prove_running_update():
    check_rng = np.random.default_rng(91)
    for momentum, N in ((0.1, 8), (0.5, 3), (0.01, 16)):
        xb = check_rng.normal(2.0, 3.0, size=(N, 4))              # (N, 4), float64
        start_mean, start_var = check_rng.normal(size=4), check_rng.uniform(0.5, 2.0, size=4)
        want_mean, want_var = running_after_one_batch(start_mean, start_var, xb, momentum)
        got = running_update(start_mean.copy(), start_var.copy(), xb, momentum)
        if not isinstance(got, tuple) or len(got) != 2:
            raise lk.Wrong(f"return a pair (running_mean, running_var), got {type(got).__name__}")
        lk.compare(got[0], want_mean, f"for momentum {momentum}, N = {N}: your running_mean")
        lk.compare(got[1], want_var, f"for momentum {momentum}, N = {N}: your running_var")


lk.run_check("9.1", prove_running_update)

# %% [markdown]
# How fast does the running mean follow? Feed the same batch, of mean $\mu$, again and
# again to a fresh layer (running mean 0): after $k$ batches the running mean is
# $\mu\,(1 - (1 - \text{momentum})^k)$, a geometric approach, not a straight line:

# %%
steady = rng.normal(5.0, 1.0, size=(16, 1)).astype(np.float32)   # (16, 1): mean near 5
fig, ax = plt.subplots(figsize=(6, 3.5))
for label, momentum in (("PyTorch / nnlite default, momentum 0.1", 0.1),
                        ("Keras default 0.99 = nnlite momentum 0.01", 0.01)):
    layer = nn.BatchNorm1D(1, momentum=momentum)
    trace = []
    for _ in range(300):
        layer.forward(steady, training=True)
        trace.append(float(layer.running_mean.data[0]))
    ax.plot(np.arange(1, 301), trace, label=label)
ax.axhline(steady.mean(), color="gray", ls="--", label="batch mean")
ax.set(title="running mean, the same batch fed again and again", xlabel="batches seen",
       ylabel="running_mean")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# A model trained for only a few dozen batches with Keras' momentum is evaluated with
# running statistics still close to their starting values (mean 0, variance 1): its
# evaluation accuracy can be far below its training accuracy for no other reason. With
# momentum `None` nnlite (like PyTorch) keeps the plain cumulative average instead.
#
# **Exercise 9.2.** Starting from 0 and fed the same batch again and again, after how
# many batches does the running mean first reach 90% of the batch mean? Write it for any
# momentum in nnlite's convention (a whole number of batches: the smallest $k$ with
# $1 - (1 - \text{momentum})^k \ge 0.9$). The check counts with `nn.BatchNorm1D`.

# %% [exercise 9.2]
def batches_to_90_percent(momentum):
    """The smallest number of identical batches after which running_mean >= 0.9 * mu."""
    # TODO (exercise 9.2): return an int (logarithms, or a loop over k)
    raise NotImplementedError

# %% [check 9.2]
def counted_with_nnlite(momentum):
    layer = nn.BatchNorm1D(1, momentum=momentum).astype("float64")
    batch = np.array([[4.0], [6.0]])                                # mean 5
    for k in range(1, 100_000):
        layer.forward(batch, training=True)
        if layer.running_mean.data[0] >= 0.9 * 5.0 - 1e-12:
            return k


lk.check_cases("9.2", [(f"batches_to_90_percent({m})", lambda m=m: batches_to_90_percent(m),
                        lambda m=m: counted_with_nnlite(m)) for m in (0.1, 0.01, 0.5, 0.3)])

# %% [markdown]
# ## 3. The backward pass
#
# In evaluation the statistics are constants and the layer is the affine map
# $y = \frac{\gamma}{\sigma} x + \text{const}$ with $\sigma = \sqrt{\text{running\_var} +
# \varepsilon}$, so $dx = \frac{\gamma}{\sigma}\,dy$. In training, every $\hat x_i$ depends
# on **every** $x_j$ of the batch through $\mu$ and $\sigma$, and the chain rule has to
# follow both paths. Per channel, with $g_i = \partial L / \partial \hat x_i = \gamma\,dy_i$
# and $\sigma = \sqrt{\sigma^2 + \varepsilon}$ of the batch:
#
# $$\frac{\partial \mu}{\partial x_j} = \frac1m, \qquad
#   \frac{\partial \sigma}{\partial x_j} = \frac{x_j - \mu}{m\,\sigma} = \frac{\hat x_j}{m},
#   \qquad
#   \frac{\partial \hat x_i}{\partial x_j} = \frac{\delta_{ij} - \frac1m}{\sigma}
#   - \frac{\hat x_i\,\hat x_j}{m\,\sigma},$$
#
# $$\frac{\partial L}{\partial x_j} = \sum_i g_i \frac{\partial \hat x_i}{\partial x_j}
#   = \frac{1}{\sigma}\Big(g_j - \overline{g} - \hat x_j\,\overline{g\,\hat x}\Big)
#   = \frac{\gamma}{\sigma}\Big(dy_j - \overline{dy} - \hat x_j\,\overline{dy\,\hat x}\Big),$$
#
# where the bar is the mean over the batch (for each channel). Read it as: the plain
# affine gradient $\frac{\gamma}{\sigma} dy$, with two directions removed, its mean and
# its component along $\hat x$, because adding a constant to a channel or scaling it
# cannot change the normalised output. The parameter gradients are those of any affine
# layer: $d\beta = \sum_i dy_i$ and $d\gamma = \sum_i dy_i\,\hat x_i$.
#
# nnlite's layer passes the gradient check in both modes:

# %%
x64 = rng.normal(1.0, 2.0, size=(6, 4))                          # (N, C), float64
for training in (True, False):
    layer = nn.BatchNorm1D(4)
    layer.forward(rng.normal(size=(6, 4)).astype(np.float32), training=True)   # some statistics
    layer.gamma.data = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    layer.beta.data = rng.normal(size=4).astype(np.float32)
    result = nn.gradcheck(layer, x64, training=training)
    print(f"training={training!s:<5}  " + "  ".join(f"{k}: {v:.1e}" for k, v in
                                                   ((k, result[k]) for k in result.keys())))

# %% [markdown]
# **Exercise 9.3: batch normalisation of your own.** Write the forward and backward
# passes of a batch-normalisation layer for $(N, C)$ input. `__init__` is given: the
# parameters $\gamma$ and $\beta$ (`nn.Parameter`, so `nn.gradcheck` finds them) and the
# running statistics (`nn.Buffer`). In `forward`:
#
# * with `training=True`: use the batch's mean and biased variance, update the running
#   statistics as in exercise 9.1 (you may call your `running_update`, or write it
#   again), and keep what `backward` needs on `self`;
# * with `training=False`: use the running statistics and update nothing.
#
# In `backward(dy)` set `self.gamma.grad` and `self.beta.grad` and return `dx`, with the
# formula above in training and the affine one in evaluation. The check compares your
# layer with `nn.BatchNorm1D` in both modes, and proves your gradients with
# `nn.gradcheck` in both modes.

# %% [exercise 9.3]
class MyBatchNorm(nn.Layer):
    """Batch normalisation of (N, C) input; PyTorch's momentum convention."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        C = num_features
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(np.ones(C, dtype=np.float32), name="gamma")
        self.beta = nn.Parameter(np.zeros(C, dtype=np.float32), name="beta")
        self.running_mean = nn.Buffer(np.zeros(C, dtype=np.float32), name="running_mean")
        self.running_var = nn.Buffer(np.ones(C, dtype=np.float32), name="running_var")

    def forward(self, x, training=False):
        # TODO (exercise 9.3): normalise with the batch's or the running statistics
        raise NotImplementedError

    def backward(self, dy):
        # TODO (exercise 9.3): set self.gamma.grad, self.beta.grad; return dx
        raise NotImplementedError

# %% [check 9.3]
def prove_batch_norm():
    if not issubclass(MyBatchNorm, nn.Layer):
        raise lk.Wrong("MyBatchNorm must be a subclass of nn.Layer")
    check_rng = np.random.default_rng(93)
    gamma, beta = check_rng.uniform(0.5, 2.0, size=5), check_rng.normal(size=5)
    mine, ref = MyBatchNorm(5).astype("float64"), nn.BatchNorm1D(5).astype("float64")
    for layer in (mine, ref):
        layer.gamma.data, layer.beta.data = gamma.copy(), beta.copy()
    for step in range(3):                                    # three training batches
        xb = check_rng.normal(1.0, 3.0, size=(7, 5))
        dy = check_rng.normal(size=(7, 5))
        lk.compare(mine.forward(xb, training=True), ref.forward(xb, training=True),
                   f"forward(x, training=True), batch {step + 1}")
        lk.compare(mine.backward(dy), ref.backward(dy), f"backward(dy) in training, batch {step + 1}")
        lk.compare(mine.gamma.grad, ref.gamma.grad, "gamma.grad in training")
        lk.compare(mine.beta.grad, ref.beta.grad, "beta.grad in training")
    lk.compare(mine.running_mean.data, ref.running_mean.data, "running_mean after 3 batches")
    lk.compare(mine.running_var.data, ref.running_var.data, "running_var after 3 batches")
    xb, dy = check_rng.normal(size=(2, 5)), check_rng.normal(size=(2, 5))
    lk.compare(mine.forward(xb, training=False), ref.forward(xb, training=False),
               "forward(x, training=False)")
    lk.compare(mine.running_mean.data, ref.running_mean.data,
               "running_mean after an evaluation pass (it must not move)")
    lk.compare(mine.backward(dy), ref.backward(dy), "backward(dy) in evaluation")
    for training in (True, False):
        layer = MyBatchNorm(3)
        layer.running_mean.data = np.array([0.5, -1.0, 2.0], dtype=np.float32)
        layer.running_var.data = np.array([2.0, 0.5, 4.0], dtype=np.float32)
        layer.gamma.data = np.array([1.5, 0.7, 2.0], dtype=np.float32)
        result = nn.gradcheck(layer, check_rng.normal(size=(6, 3)), training=training)
        print(f"nn.gradcheck(MyBatchNorm(3), x, training={training}): max relative error "
              f"{result.max_error:.1e}")
        if not result.max_error < 1e-6:
            name = max(result.keys(), key=lambda k: result[k])
            raise lk.Wrong(f"with training={training}, the gradient of {name} disagrees with "
                           f"the numerical one: {result.errors[name]}")


lk.run_check("9.3", prove_batch_norm)

# %% [markdown]
# Two consequences of the backward formula are worth seeing with numbers. In training,
# per channel, $\sum_j dx_j = \frac{\gamma}{\sigma}(m\overline{dy} - m\overline{dy} -
# m\,\overline{\hat x}\,\overline{dy\,\hat x}) = 0$ because $\overline{\hat x} = 0$: the
# gradient reaching the layer below never shifts a whole channel. And the bias of the
# layer before batch normalisation receives that sum as its gradient.
#
# **Exercise 9.4.** A `Dense` layer **with** bias is followed by a `BatchNorm1D` in
# training mode. What is the gradient of the loss with respect to the Dense layer's bias
# $b$ (any loss, any batch)? And how many parameters does that bias waste? Return both,
# for a layer with `units` outputs.

# %% [exercise 9.4]
def bias_before_batch_norm(units):
    """(gradient of the loss w.r.t. each entry of b, the number of wasted parameters)."""
    # TODO (exercise 9.4): return a pair of numbers
    raise NotImplementedError

# %% [check 9.4]
def measured_bias_gradient(units):
    """The largest |dL/db| of a Dense(3, units) before a BatchNorm1D, and b's size."""
    check_rng = np.random.default_rng(94)
    dense = nn.Dense(3, units, seed=1)
    model = nn.Sequential([dense, nn.BatchNorm1D(units), nn.Tanh(),
                           nn.Dense(units, 2, seed=2)]).astype("float64")
    logits = model.forward(check_rng.normal(size=(16, 3)), training=True)
    _, dlogits = nn.SoftmaxCrossEntropy()(logits, check_rng.integers(0, 2, size=16))
    model.backward(dlogits)
    return float(np.abs(dense.b.grad).max()), dense.b.size


lk.check_cases("9.4", [(f"bias_before_batch_norm({u})", lambda u=u: bias_before_batch_norm(u),
                        lambda u=u: measured_bias_gradient(u)) for u in (4, 10)], atol=1e-12)

# %% [markdown]
# This is why a convolution followed by batch normalisation usually has no bias
# (`Conv2D(..., bias=False)` in `nn.zoo.reduced_resnet`): $\beta$ plays its role. Keras'
# ResNet50 keeps the biases anyway, which is one reason its parameter count differs
# from torchvision's (lesson 10).
#
# **Exercise 9.5.** `nn.BatchNorm2D(C)` normalises feature maps $(N, C, H, W)$, one
# mean and variance per channel over $N$, $H$ and $W$. How many **trainable** parameters
# does it have, and how many **running statistics** (floats in its buffers, what Keras'
# summary calls "non-trainable params")? Return both for any `C`.

# %% [exercise 9.5]
def batch_norm_2d_counts(C):
    """(trainable parameters, running statistics) of nn.BatchNorm2D(C)."""
    # TODO (exercise 9.5): return a pair of whole numbers
    raise NotImplementedError

# %% [check 9.5]
lk.check_cases("9.5", [(f"batch_norm_2d_counts({C})", lambda C=C: batch_norm_2d_counts(C),
                        lambda C=C: (nn.BatchNorm2D(C).count_params(),
                                     nn.BatchNorm2D(C).count_buffers()))
                       for C in (1, 64, 2048)])

# %% [markdown]
# ## 4. What it does to a deep plain network
#
# Ten hidden layers of 32 units, on a small two-class problem in 16 dimensions (is a
# point inside a circle in its first two coordinates?), trained by SGD with momentum 0.9
# at a **large** learning rate, 0.2, for 20 epochs. Four networks: sigmoid or ReLU
# activations, each without and with a `BatchNorm1D` after every hidden `Dense` (whose
# bias is then dropped, exercise 9.4). Same data, same seeds, same optimizer. The
# validation accuracy uses evaluation mode, so the running statistics are what it
# measures with.

# %%
def circle_data(n, seed):
    data_rng = np.random.default_rng(seed)
    points = data_rng.normal(size=(n, 16)).astype(np.float32)            # (n, 16)
    labels = ((points[:, :2] ** 2).sum(axis=1) > 1.4).astype(np.int64)   # about half each
    return points, labels


x_train, y_train = circle_data(512, seed=0)
x_valid, y_valid = circle_data(256, seed=1)


def deep_mlp(activation, batch_norm, depth=10, width=32):
    init = "glorot_uniform" if activation is nn.Sigmoid else "he_normal"
    layers, fan_in = [], 16
    for k in range(depth):
        layers.append(nn.Dense(fan_in, width, bias=not batch_norm, weight_init=init, seed=k))
        if batch_norm:
            layers.append(nn.BatchNorm1D(width))
        layers.append(activation())
        fan_in = width
    return nn.Sequential(layers + [nn.Dense(width, 2, weight_init="glorot_uniform", seed=99)])


runs = {}
for activation in (nn.Sigmoid, nn.ReLU):
    for batch_norm in (False, True):
        name = f"{activation.__name__}{' + BatchNorm' if batch_norm else ''}"
        model = deep_mlp(activation, batch_norm)
        start = time.process_time()
        history = nn.fit(model, x_train, y_train, loss=nn.SoftmaxCrossEntropy(),
                         optimizer=nn.SGD(model.parameters(), lr=0.2, momentum=0.9),
                         epochs=20, batch_size=32, validation_data=(x_valid, y_valid),
                         verbose=0)
        runs[name] = history
        print(f"{name:<20} train loss {history['loss'][-1]:.3f}  validation accuracy "
              f"{history['val_accuracy'][-1]:.3f}  ({time.process_time() - start:.1f} s CPU)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, history in runs.items():
    style = "-" if "BatchNorm" in name else "--"
    axes[0].plot(range(1, 21), history["loss"], style, label=name)
    axes[1].plot(range(1, 21), history["val_accuracy"], style, label=name)
axes[0].set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
axes[1].set(title="validation accuracy (evaluation mode)", xlabel="epoch", ylabel="accuracy")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# Is the plain ReLU network simply unable to learn this problem? Train it again at a
# learning rate four times smaller:

# %%
model = deep_mlp(nn.ReLU, batch_norm=False)
history = nn.fit(model, x_train, y_train, loss=nn.SoftmaxCrossEntropy(),
                 optimizer=nn.SGD(model.parameters(), lr=0.05, momentum=0.9),
                 epochs=20, batch_size=32, validation_data=(x_valid, y_valid), verbose=0)
print(f"ReLU at lr 0.05       train loss {history['loss'][-1]:.3f}  validation accuracy "
      f"{history['val_accuracy'][-1]:.3f}")

# %% [markdown]
# Read the curves with the printed numbers. Without batch normalisation neither network
# gets far at lr 0.2 (validation accuracy near the 50% of guessing): the sigmoid
# network's gradient vanishes on its way down (lesson 3), and the ReLU network, which
# does train at lr 0.05, is thrown about by steps too large for it. With batch normalisation the
# ReLU network trains at the same learning rate, and even the ten sigmoid layers start
# to learn, because every layer's input is brought back to mean 0 and variance 1, the
# sigmoid's steepest part, whatever the layers below did. This is the practical gift of
# batch normalisation: a wider range of learning rates and initialisations that work.
#
# The price: each step costs more (two to three times the CPU time here), the model behaves
# differently in training and evaluation (section 2: always pass the right `training`
# flag), small batches give noisy statistics, and a fine-tuned model must decide whether
# its batch-normalisation layers keep their statistics (lesson 12: a frozen
# `BatchNorm2D` does).
#
# ## Summary
#
# * Batch normalisation standardises every channel over the batch, then applies a learnt
#   scale $\gamma$ and shift $\beta$; the statistics are per channel, over $N$ (dense) or
#   over $N$, $H$, $W$ (convolutional).
# * Training uses the batch's statistics and updates running ones; evaluation uses the
#   running ones, so one example's output no longer depends on its companions.
# * PyTorch's (and nnlite's) `momentum` weighs the new batch (0.1); Keras' weighs the old
#   value (0.99 = nnlite's 0.01). The running variance is unbiased, the one used to
#   normalise in training is not.
# * Backward in training: $dx = \frac{\gamma}{\sigma}(dy - \overline{dy} - \hat x\,
#   \overline{dy\,\hat x})$; a bias just before batch normalisation gets no gradient.
# * In a deep plain network it turns "does not learn" into "learns" at a learning rate
#   where the plain network fails. Lesson 10 adds the other ingredient of deep networks:
#   the shortcut connection.
