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
import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

np.set_printoptions(precision=4, suppress=True, linewidth=100)
plt.rcParams.update({"figure.dpi": 72, "font.size": 9})

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
    ax.legend(fontsize=8)
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
ax.legend(fontsize=8)
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
    ax.legend(fontsize=8)
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
# The answers come filled in so the notebook runs; replace each with your own and run
# the cell.

# %%
def check(name, answer, expected, tol=1e-5):
    """Raise AssertionError unless `answer` equals `expected` to a relative `tol`."""
    if answer is None:
        raise AssertionError(f"{name}: no answer yet - replace None with your answer")
    answer = np.asarray(answer, dtype=float)
    expected = np.asarray(expected, dtype=float)
    if answer.shape != expected.shape:
        raise AssertionError(f"{name}: expected an answer of shape {expected.shape}, "
                             f"got {answer.shape}")
    if not np.allclose(answer, expected, rtol=tol, atol=1e-7):
        raise AssertionError(f"{name}: not quite - check your working and try again")
    print(f"{name}: correct")


def derivative(layer, at):
    """f'(at) from the layer's own backward pass."""
    z = np.array([[at]], dtype=np.float64)
    layer.forward(z)
    return layer.backward(np.ones_like(z))[0, 0]

# %% [markdown]
# **Exercise 1.** What is $\sigma'(0)$?

# %%
answer_1 = 0.5 * (1 - 0.5)
check("Exercise 1", answer_1, derivative(nn.Sigmoid(), 0.0))

# %% [markdown]
# **Exercise 2.** What is the derivative of `LeakyReLU(alpha=0.1)` at $x = -3$?

# %%
answer_2 = 0.1
check("Exercise 2", answer_2, derivative(nn.LeakyReLU(0.1), -3.0))

# %% [markdown]
# **Exercise 3.** Ignoring the weights, what is the largest factor by which 5 sigmoid
# layers can scale a gradient on its way back?

# %%
answer_3 = 0.25 ** 5
check("Exercise 3", answer_3, derivative(nn.Sigmoid(), 0.0) ** 5)

# %% [markdown]
# **Exercise 4.** Show that $\tanh x = 2\sigma(2x) - 1$: compute $\tanh(0.5)$ using only
# the sigmoid formula $1/(1 + e^{-z})$.

# %%
answer_4 = 2 / (1 + np.exp(-2 * 0.5)) - 1
check("Exercise 4", answer_4, nn.Tanh().forward(np.array([[0.5]]))[0, 0])
