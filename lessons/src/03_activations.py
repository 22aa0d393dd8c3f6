"""Source of lessons/03_activations.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 3 - Activation functions and their derivatives
#
# Without a non-linearity between them, two linear layers are one linear layer:
# $W_2(W_1 x + b_1) + b_2 = (W_2 W_1)x + (W_2 b_1 + b_2)$. The activation function after
# each layer is what lets a network bend. During training its **derivative** multiplies
# every gradient that flows back through it, so the shape of that derivative decides how
# well a deep network learns.
#
# In this lesson: ReLU, leaky ReLU, sigmoid and tanh with their derivatives, plotted from
# nnlite's own `forward` and `backward`; gradient checks; the saturation of sigmoid and
# tanh and the vanishing gradient; dead ReLUs and the leaky fix.
#
# **You need:** derivatives and the chain rule; lesson 1 for the layer contract.

# %%
# %matplotlib inline
import sys
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)

# %% [markdown]
# ## 1. Four activations
#
# | name | $f(x)$ | $f'(x)$ | range of $f'$ |
# |---|---|---|---|
# | ReLU | $\max(x, 0)$ | $1$ if $x > 0$, else $0$ | $\{0, 1\}$ |
# | leaky ReLU | $x$ if $x > 0$, else $\alpha x$ | $1$ if $x > 0$, else $\alpha$ | $\{\alpha, 1\}$ |
# | sigmoid | $\sigma(x) = \dfrac{1}{1 + e^{-x}}$ | $\sigma(x)\,(1 - \sigma(x))$ | $(0, \tfrac14]$ |
# | tanh | $\tanh x = \dfrac{e^{x} - e^{-x}}{e^{x} + e^{-x}}$ | $1 - \tanh^2 x$ | $(0, 1]$ |
#
# The sigmoid's derivative follows from $\sigma'(x) = e^{-x}/(1+e^{-x})^2 =
# \sigma(x)\cdot\frac{e^{-x}}{1 + e^{-x}} = \sigma(x)(1 - \sigma(x))$. At the kink $x = 0$
# ReLU has no derivative; nnlite uses $0$ there (and $\alpha$ for the leaky one).
#
# Each nnlite activation is a layer. Its `backward(dy)` returns $dy \cdot f'(x)$ for the
# $x$ of the last `forward`, so feeding $dy = 1$ gives the derivative itself:

# %%
x = np.linspace(-5, 5, 401, dtype=np.float32).reshape(1, -1)   # (1, 401): one "batch" row
layers = {"ReLU": nn.ReLU(), "LeakyReLU(0.1)": nn.LeakyReLU(0.1),
          "Sigmoid": nn.Sigmoid(), "Tanh": nn.Tanh()}
values, slopes = {}, {}
for name, layer in layers.items():
    values[name] = layer.forward(x)[0]                  # f(x)
    slopes[name] = layer.backward(np.ones_like(x))[0]   # 1 * f'(x)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name in layers:
    axes[0].plot(x[0], values[name], label=name)
    axes[1].plot(x[0], slopes[name], label=name)
axes[0].set(title="activation f(x)", xlabel="x", ylabel="f(x)", ylim=(-1.5, 3))
axes[1].set(title="derivative f'(x) from backward(ones)", xlabel="x", ylabel="f'(x)")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 2. Are the derivatives right? A gradient check
#
# The central difference $\dfrac{f(x + \varepsilon) - f(x - \varepsilon)}{2\varepsilon}$
# approximates $f'(x)$ with an error of order $\varepsilon^2$. `nn.gradcheck` compares it
# with the layer's `backward` for every input element (in float64) and reports the
# largest relative error. We keep the inputs away from $0$, where ReLU has its kink.

# %%
rng = np.random.default_rng(0)
x_check = rng.uniform(0.1, 3.0, size=(4, 6)) * rng.choice([-1.0, 1.0], size=(4, 6))  # |x| >= 0.1
for name, make in [("ReLU", nn.ReLU), ("LeakyReLU", lambda: nn.LeakyReLU(0.1)),
                   ("Sigmoid", nn.Sigmoid), ("Tanh", nn.Tanh)]:
    result = nn.gradcheck(make(), x_check)
    print(f"{name:<10} max relative error {result.max_error:.1e}")
    assert result.max_error < 1e-6

# %% [markdown]
# ## 3. Saturation and the vanishing gradient
#
# For large $|x|$ the sigmoid and tanh are flat: they **saturate**, and their derivative
# is almost zero. Even at its best, $\sigma'(0) = 1/4$.

# %%
sigmoid, tanh = nn.Sigmoid(), nn.Tanh()
points = np.array([[0.0, 1.0, 2.0, 5.0, 10.0]], dtype=np.float32)
sigmoid.forward(points)
tanh.forward(points)
print("x         ", points[0])
print("sigmoid'(x)", sigmoid.backward(np.ones_like(points))[0])
print("tanh'(x)   ", tanh.backward(np.ones_like(points))[0])

# %% [markdown]
# Backpropagation multiplies one such derivative per layer (times the weights). Through
# $L$ sigmoid layers the factor from the activations alone is at most $(1/4)^L$: the
# gradient reaching the first layers **vanishes**, and they barely learn. Watch the
# gradient norm of each layer's weights in a 10-layer network, for each activation (same
# data, same loss; Glorot initialisation for sigmoid and tanh, He for the ReLUs):

# %%
def gradient_norms(make_activation, init, depth=10, width=32, seed=0):
    """||dL/dW|| of every Dense layer of a deep MLP, after one backward pass."""
    data_rng = np.random.default_rng(seed)
    layers = []
    for k in range(depth):
        layers += [nn.Dense(width, width, weight_init=init, seed=seed + k), make_activation()]
    model = nn.Sequential(layers + [nn.Dense(width, 1, weight_init="glorot_uniform", seed=99)])
    xb = data_rng.normal(size=(64, width)).astype(np.float32)   # (N, width)
    tb = data_rng.normal(size=(64, 1)).astype(np.float32)       # (N, 1)
    _, dout = nn.MSE()(model.forward(xb, training=True), tb)
    model.backward(dout)
    dense = [layer for layer in model.layers if isinstance(layer, nn.Dense)][:depth]
    return [float(np.linalg.norm(layer.W.grad)) for layer in dense]


fig, ax = plt.subplots(figsize=(6, 3.5))
for name, make, init in [("Sigmoid", nn.Sigmoid, "glorot_uniform"),
                         ("Tanh", nn.Tanh, "glorot_uniform"),
                         ("ReLU", nn.ReLU, "he_normal"),
                         ("LeakyReLU(0.1)", lambda: nn.LeakyReLU(0.1), "he_normal")]:
    norms = gradient_norms(make, init)
    ax.semilogy(range(1, len(norms) + 1), norms, "o-", label=name)
    print(f"{name:<15} ||dW|| first layer / last layer = {norms[0] / norms[-1]:.2e}")
ax.set(title="gradient reaching each layer (10 hidden layers)", xlabel="layer (1 = input side)",
       ylabel="||dL/dW|| (log scale)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# With sigmoids the first layer receives orders of magnitude less gradient than the last;
# tanh (derivative up to 1, centred on zero) fares much better, and the ReLUs pass the
# gradient through unchanged wherever they are active. This is why hidden layers use
# ReLUs, and sigmoid appears only at the output of a binary classifier (fused with its
# loss, lesson 4).
#
# ## 4. Dead ReLUs, and the leaky fix
#
# A ReLU unit whose input is negative for **every** example outputs $0$ and has
# derivative $0$: no gradient reaches its weights, so they never change again. The unit
# is *dead*. A too-large learning-rate step or a bad initialisation can push a unit's bias
# so far down that this happens.
#
# The leaky ReLU keeps a small slope $\alpha$ for $x < 0$, so a unit always receives
# $\alpha$ times its share of the gradient and can find its way back.
#
# An experiment: a network with one hidden layer of 8 units fits $t = x + \sin 3x$. We
# start every hidden unit dead on purpose: weights in $[-0.3, 0.3]$ and biases $-1$, so for
# $x \in [-2, 2]$ every pre-activation $w x + b$ is below $-0.4$.

# %%
x_fit = np.linspace(-2, 2, 128, dtype=np.float32).reshape(-1, 1)     # (N, 1)
t_fit = (x_fit + np.sin(3 * x_fit)).astype(np.float32)              # (N, 1)


def train_dead_start(activation, steps=1000):
    model = nn.Sequential([nn.Dense(1, 8, seed=1), activation,
                           nn.Dense(8, 1, weight_init="glorot_uniform", seed=2)])
    model[0].W.data[...] = [[0.3, -0.3, 0.2, -0.2, 0.25, -0.25, 0.1, -0.1]]
    model[0].b.data[...] = -1.0                          # every unit starts dead
    opt = nn.Adam(model.parameters(), lr=0.01)
    losses, alive = [], []
    for step in range(steps):
        out = model.forward(x_fit, training=True)         # (N, 1)
        loss, dout = nn.MSE()(out, t_fit)
        model.backward(dout)
        if step == 0:
            first_grad = np.abs(model[0].W.grad).max()
        opt.step()
        pre = model[0].forward(x_fit)                     # (N, 8) pre-activations
        losses.append(loss)
        alive.append(int((pre > 0).any(axis=0).sum()))    # units active for some x
    return model, losses, alive, first_grad


runs = {name: train_dead_start(act) for name, act in
        [("ReLU", nn.ReLU()), ("LeakyReLU(0.1)", nn.LeakyReLU(0.1))]}
for name, (_, losses, alive, first_grad) in runs.items():
    print(f"{name:<15} max |dL/dW1| at step 0: {first_grad:.2e}   loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}   units alive at the end: {alive[-1]} of 8")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
for name, (model, losses, alive, _) in runs.items():
    axes[0].plot(losses, label=name)
    axes[1].plot(alive, label=name)
    axes[2].plot(x_fit[:, 0], model.forward(x_fit)[:, 0], label=name)
axes[2].plot(x_fit[:, 0], t_fit[:, 0], "k--", label="target")
axes[0].set(title="training loss", xlabel="step", ylabel="MSE")
axes[1].set(title="hidden units alive", xlabel="step", ylabel="units with some x > 0")
axes[2].set(title="fit after training", xlabel="x", ylabel="network output")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# The dead ReLU network gets a gradient of exactly zero for its hidden layer and never
# moves. The leaky network receives a gradient scaled by $\alpha = 0.1$, grows some
# weights until their units cross zero for part of the inputs, and those units are alive
# again. (In practice He initialisation and a moderate learning rate keep most ReLUs
# alive; the leaky variant is the safety net.)
#
# ## Summary
#
# * $f'$ multiplies the gradient at every layer. ReLU: $0$ or $1$; leaky: $\alpha$ or $1$;
#   sigmoid: at most $1/4$; tanh: at most $1$.
# * Sigmoid and tanh saturate for large $|x|$, and in deep stacks the gradient vanishes.
# * A ReLU that is negative for every input is dead (zero gradient forever); a leaky ReLU
#   can recover.
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*. The checks read the true values off nnlite's
# own layers with this helper:

# %%
def derivative(layer, at):
    """f'(at) from the layer's own backward pass."""
    z = np.array([[at]], dtype=np.float64)
    layer.forward(z)
    return layer.backward(np.ones_like(z))[0, 0]

# %% [markdown]
# **Exercise 3.1.** What is $\sigma'(0)$? (A number: return it.)

# %% [exercise 3.1]
def sigmoid_slope_at_0():
    """sigma'(0)."""
    # TODO (exercise 3.1): return the number (use sigma' = sigma (1 - sigma))
    raise NotImplementedError

# %% [check 3.1]
lk.check("3.1", sigmoid_slope_at_0, derivative(nn.Sigmoid(), 0.0))

# %% [markdown]
# **Exercise 3.2.** What is the derivative of `LeakyReLU(alpha=0.1)` at $x = -3$?

# %% [exercise 3.2]
def leaky_slope_at_minus_3():
    """The derivative of LeakyReLU(0.1) at x = -3."""
    # TODO (exercise 3.2): return the number
    raise NotImplementedError

# %% [check 3.2]
lk.check("3.2", leaky_slope_at_minus_3, derivative(nn.LeakyReLU(0.1), -3.0))

# %% [markdown]
# **Exercise 3.3.** Ignoring the weights, what is the largest factor by which 5 sigmoid
# layers can scale a gradient on its way back?

# %% [exercise 3.3]
def five_sigmoids_factor():
    """The largest factor 5 sigmoid derivatives in a row can multiply a gradient by."""
    # TODO (exercise 3.3): return the number
    raise NotImplementedError

# %% [check 3.3]
lk.check("3.3", five_sigmoids_factor, derivative(nn.Sigmoid(), 0.0) ** 5)

# %% [markdown]
# **Exercise 3.4.** Show that $\tanh x = 2\sigma(2x) - 1$ by code: write `tanh` using
# only the sigmoid formula $1/(1 + e^{-z})$ (`np.exp` is allowed, `np.tanh` is not). It
# must work element-wise on arrays.

# %% [exercise 3.4]
def tanh_from_sigmoid(x):
    """tanh(x), element-wise, computed from the sigmoid formula only."""
    # TODO (exercise 3.4): return 2 sigma(2x) - 1, with sigma written out
    raise NotImplementedError

# %% [check 3.4]
x_grid = np.linspace(-6, 6, 25).reshape(5, 5)
lk.check("3.4", lambda: tanh_from_sigmoid(x_grid), nn.Tanh().forward(x_grid),
         what="tanh_from_sigmoid on a 5x5 grid of x in [-6, 6]")

# %% [markdown]
# **Exercise 3.5: a layer of your own.** The SiLU (or *swish*) activation,
# $f(x) = x\,\sigma(x)$, is used in EfficientNet and many recent networks. Write it as
# an nnlite layer: a subclass of `nn.Layer` whose `forward(x, training=False)` returns
# $y = x\,\sigma(x)$ and keeps on `self` what the backward pass needs, and whose
# `backward(dy)` returns $dx = dy \cdot f'(x)$. Derive $f'$ with the product rule and
# $\sigma' = \sigma(1 - \sigma)$. (Do not change `dy` in place.) The check compares your
# forward pass with the formula and proves your backward pass with `nn.gradcheck`, exactly
# as section 2 did for nnlite's layers.

# %% [exercise 3.5]
class SiLU(nn.Layer):
    """y = x * sigmoid(x), element-wise; dx = dy * f'(x)."""

    def forward(self, x, training=False):
        # TODO (exercise 3.5): compute and return y; store what backward needs on self
        raise NotImplementedError

    def backward(self, dy):
        # TODO (exercise 3.5): return dx = dy * f'(x), with f' from the product rule
        raise NotImplementedError

# %% [check 3.5]
def prove_silu():
    if not issubclass(SiLU, nn.Layer):
        raise lk.Wrong("SiLU must be a subclass of nn.Layer")
    x_test = np.random.default_rng(3).uniform(-4, 4, size=(4, 6))
    lk.compare(SiLU().forward(x_test), x_test / (1 + np.exp(-x_test)), "SiLU().forward(x)")
    result = nn.gradcheck(SiLU(), x_test)
    print(f"nn.gradcheck(SiLU(), x): max relative error {result.max_error:.1e}")
    if not result.max_error < 1e-6:
        worst = result.errors["input"]
        raise lk.Wrong(f"backward disagrees with the numerical gradient: relative error "
                       f"{result.max_error:.1e} (at index {worst.index}: yours "
                       f"{worst.analytic:.6g}, numerical {worst.numeric:.6g}); should be < 1e-6")


lk.run_check("3.5", prove_silu)
