"""Source of lessons/06_optimizers.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 6 - Optimizers: from gradient descent to Adam
#
# Backpropagation gives the gradient $g = \nabla_\theta L$; the **optimizer** decides how
# to move the parameters $\theta$ with it. In this lesson we watch the classic update
# rules walk across two-dimensional functions, where the whole path fits in one picture:
#
# * gradient descent (GD) and the learning rate,
# * mini-batch (stochastic) gradient descent,
# * momentum,
# * RMSProp,
# * Adam, with its bias correction, and a slip in the mathematics report's version of it.
#
# nnlite's optimizers update `Parameter` objects from their `.grad`, so we can hand them a
# single two-element parameter and fill in its gradient ourselves:
#
# ```python
# theta = nn.Parameter(np.array([-4.0, 1.0]))
# opt = nn.SGD([theta], lr=0.05)
# theta.grad[...] = gradient_of_f(theta.data)
# opt.step()                                  # theta.data moves
# ```
#
# **You need:** gradients, lesson 4 (losses).

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


def run(make_optimizer, grad, start, steps):
    """Minimise a 2-D function with an nnlite optimizer; return the path (steps + 1, 2)."""
    theta = nn.Parameter(np.array(start, dtype=np.float64), name="theta")
    opt = make_optimizer([theta])
    path = [theta.data.copy()]
    for _ in range(steps):
        theta.grad[...] = grad(theta.data)    # what backward() would fill in
        opt.step()
        path.append(theta.data.copy())
    return np.array(path)


def contours(ax, f, xlim, ylim, levels):
    """Draw the level sets of f(theta) over a rectangle."""
    a, b = np.meshgrid(np.linspace(*xlim, 200), np.linspace(*ylim, 200))
    ax.contour(a, b, f(np.stack([a, b])), levels=levels, colors="0.75", linewidths=0.8)
    ax.set(xlim=xlim, ylim=ylim, xlabel=r"$\theta_1$", ylabel=r"$\theta_2$")

# %% [markdown]
# ## 1. Gradient descent and the learning rate
#
# $$\theta \leftarrow \theta - \eta\, \nabla f(\theta)$$
#
# Our first landscape is an elongated bowl, $f(\theta) = \tfrac12\theta_1^2 +
# 10\,\theta_2^2$, with gradient $(\theta_1,\ 20\,\theta_2)$: gentle along $\theta_1$
# (curvature 1), steep along $\theta_2$ (curvature 20). Along a direction of curvature
# $\lambda$, one step multiplies the distance to the minimum by $1 - \eta\lambda$, so GD
# converges only if $|1 - \eta\lambda| < 1$, i.e. $\eta < 2/\lambda = 0.1$ here. Just
# below that limit the steep coordinate overshoots back and forth (the zigzag), while the
# gentle one crawls: the factor $1 - \eta \cdot 1$ is close to 1.

# %%
def bowl(t):
    return 0.5 * t[0] ** 2 + 10 * t[1] ** 2


def bowl_grad(t):
    return np.array([t[0], 20 * t[1]])


start = (-4.0, 1.0)
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
contours(axes[0], bowl, (-4.5, 1.0), (-1.6, 1.6), levels=[0.1, 0.5, 1, 2, 4, 8, 16])
for lr in (0.02, 0.09, 0.101):
    path = run(lambda ps: nn.SGD(ps, lr=lr), bowl_grad, start, 40)
    axes[0].plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=f"lr = {lr}")
    axes[1].semilogy([bowl(t) for t in path], label=f"lr = {lr}")
axes[0].set_title("gradient descent on the bowl")
axes[1].set(title="f along the path", xlabel="step", ylabel="f (log scale)")
for ax in axes:
    ax.legend()
axes[1].grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# ## 2. Momentum
#
# Momentum keeps a running **velocity**: consistent gradient components add up, and
# components that flip sign (the zigzag) cancel. The mathematics report (and Andrew Ng's
# course) writes it as an exponential moving average,
#
# $$v \leftarrow \beta v + (1 - \beta)\, g, \qquad \theta \leftarrow \theta - \eta' v,$$
#
# while nnlite's `SGD(momentum=mu)` uses the velocity form of Keras and Sutskever et al.,
#
# $$v \leftarrow \mu v - \eta\, g, \qquad \theta \leftarrow \theta + v.$$
#
# With $\mu = \beta$ and $\eta = (1 - \beta)\,\eta'$ they produce *identical* iterates
# (by induction, the velocity form's $v$ is always $-\eta'$ times the moving average).
# A quick check, with the EMA form coded by hand:

# %%
beta, lr_ema = 0.9, 0.05
theta, v = np.array(start), np.zeros(2)
ema_path = [theta.copy()]
for _ in range(60):
    v = beta * v + (1 - beta) * bowl_grad(theta)
    theta = theta - lr_ema * v
    ema_path.append(theta.copy())
nn_path = run(lambda ps: nn.SGD(ps, lr=(1 - beta) * lr_ema, momentum=beta), bowl_grad, start, 60)
print("max difference between the two forms:", np.abs(np.array(ema_path) - nn_path).max())
assert np.allclose(ema_path, nn_path)

# %% [markdown]
# Momentum lets a small learning rate travel fast along the gentle direction: with a
# constant gradient the velocity grows to $\eta g/(1 - \mu)$, ten times the plain step for
# $\mu = 0.9$.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
contours(axes[0], bowl, (-4.5, 1.0), (-1.6, 1.6), levels=[0.1, 0.5, 1, 2, 4, 8, 16])
runs = {"GD, lr 0.02": lambda ps: nn.SGD(ps, lr=0.02),
        "momentum 0.9, lr 0.02": lambda ps: nn.SGD(ps, lr=0.02, momentum=0.9),
        "Nesterov 0.9, lr 0.02": lambda ps: nn.SGD(ps, lr=0.02, momentum=0.9, nesterov=True)}
for name, make in runs.items():
    path = run(make, bowl_grad, start, 60)
    axes[0].plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=name)
    axes[1].semilogy([bowl(t) for t in path], label=name)
axes[0].set_title("momentum on the bowl")
axes[1].set(title="f along the path", xlabel="step", ylabel="f (log scale)")
for ax in axes:
    ax.legend()
axes[1].grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# ## 3. Mini-batch gradient descent
#
# In a network the loss is a mean over $N$ training examples,
# $L(\theta) = \frac1N\sum_i \ell_i(\theta)$. Full-batch GD computes the exact gradient
# from all $N$ examples per step; **mini-batch** GD estimates it from a random batch of
# $B$ examples, $g_B = \frac1B\sum_{i \in B} \nabla \ell_i$, and takes $N/B$ cheaper,
# noisier steps per pass over the data (an *epoch*). $B = 1$ is "stochastic" GD.
#
# A one-parameter-pair example: fit $y = w x + b$ to data from $y = 2x - 1$ plus noise,
# with `nn.Dense(1, 1)` (its `W` and `b` are our $\theta$), `nn.MSE` and `nn.SGD`:

# %%
data_rng = np.random.default_rng(0)
x_lin = data_rng.uniform(-1, 1, size=(128, 1)).astype(np.float32)          # (N, 1)
y_lin = (2 * x_lin - 1 + 0.3 * data_rng.normal(size=(128, 1))).astype(np.float32)


def train_linear(batch_size, epochs=20, lr=0.1, seed=0):
    """Mini-batch SGD on y = w x + b; returns the (w, b) path and the full loss per epoch."""
    model = nn.Dense(1, 1, seed=0)
    model.W.data[...] = -1.0
    model.b.data[...] = 1.0                        # start far from (2, -1)
    opt = nn.SGD(model.parameters(), lr=lr)
    order_rng = np.random.default_rng(seed)
    path, losses = [(-1.0, 1.0)], [nn.MSE()(model.forward(x_lin), y_lin)[0]]
    for epoch in range(epochs):
        order = order_rng.permutation(len(x_lin))
        for start_ in range(0, len(x_lin), batch_size):
            idx = order[start_:start_ + batch_size]
            loss, dout = nn.MSE()(model.forward(x_lin[idx]), y_lin[idx])
            model.backward(dout)                   # fills W.grad and b.grad
            opt.step()
            path.append((float(model.W.data[0, 0]), float(model.b.data[0])))
        losses.append(nn.MSE()(model.forward(x_lin), y_lin)[0])
    return np.array(path), losses


def full_loss(t):
    """Mean squared error of the whole data set for theta = (w, b), on a grid."""
    w_, b_ = t
    return ((w_[..., None] * x_lin[:, 0] + b_[..., None] - y_lin[:, 0]) ** 2).mean(axis=-1)


fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
contours(axes[0], full_loss, (-1.5, 3.0), (-1.8, 1.3), levels=[0.1, 0.2, 0.5, 1, 2, 4])
for bs, style in [(128, "o-"), (16, ".-"), (1, "-")]:
    path, losses = train_linear(bs)
    axes[0].plot(path[:, 0], path[:, 1], style, ms=3, lw=0.8, label=f"batch {bs}: {len(path) - 1} steps")
    axes[1].semilogy(losses, "o-", ms=3, label=f"batch {bs}")
axes[0].set(title="paths in the (w, b) plane, 20 epochs", xlabel="w", ylabel="b")
axes[1].set(title="loss on all data after each epoch", xlabel="epoch", ylabel="MSE (log scale)")
for ax in axes:
    ax.legend()
axes[1].grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# Per epoch the small batches get much further (more steps for the same amount of data),
# but their path jitters, and with a constant learning rate batch size 1 keeps jittering
# around the minimum instead of settling: that noise floor is why learning rates are
# decayed late in training (`nn.StepDecay`). In practice batches of 16 to 256 balance
# noise against the speed of vectorised arithmetic.
#
# ## 4. RMSProp: one learning rate per coordinate
#
# The bowl is hard for GD because one learning rate must suit both curvatures. RMSProp
# divides each coordinate's step by a running root-mean-square of its own gradient:
#
# $$s \leftarrow \rho\, s + (1 - \rho)\, g^2, \qquad
# \theta \leftarrow \theta - \eta\, \frac{g}{\sqrt{s} + \epsilon}
# \qquad (\text{element-wise}).$$
#
# Steep coordinates (large $|g|$) get small steps, flat ones large steps: every
# coordinate moves at roughly $\eta$ per step.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
contours(ax, bowl, (-4.5, 1.0), (-1.6, 1.6), levels=[0.1, 0.5, 1, 2, 4, 8, 16])
for name, make in {"GD, lr 0.09": lambda ps: nn.SGD(ps, lr=0.09),
                   "RMSProp, lr 0.1": lambda ps: nn.RMSProp(ps, lr=0.1)}.items():
    path = run(make, bowl_grad, start, 40)
    ax.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, label=f"{name}: f = {bowl(path[-1]):.1e} after 40")
ax.set_title("RMSProp on the bowl")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 5. Adam, and why it corrects its bias
#
# Adam combines momentum (a running mean $m$ of $g$) with RMSProp (a running mean $v$ of
# $g^2$):
#
# $$m \leftarrow \beta_1 m + (1 - \beta_1)\, g, \qquad v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2,$$
#
# $$\hat m = \frac{m}{1 - \beta_1^{\,t}}, \qquad \hat v = \frac{v}{1 - \beta_2^{\,t}}, \qquad
# \theta \leftarrow \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon},$$
#
# with $t$ the step number, $\beta_1 = 0.9$ and $\beta_2 = 0.999$ (Kingma & Ba 2015,
# Algorithm 1). **Why the hats?** $m$ and $v$ start at zero, so early on they are biased
# towards zero. For a constant gradient $g$,
# $m_t = (1 - \beta_1)\sum_{k=0}^{t-1}\beta_1^k\, g = (1 - \beta_1^{\,t})\, g$, and likewise
# $v_t = (1 - \beta_2^{\,t})\, g^2$: dividing by $1 - \beta^t$ removes exactly that factor.
# At $t = 1$, $\hat m = g$ and $\hat v = g^2$, so the first step is $\eta$ per coordinate,
# whatever the scale of the gradient.
#
# Adam written out by hand gives the same path as `nn.Adam`:

# %%
def adam_by_hand(grad, start, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8, variant="correct"):
    """Adam on a 2-D function. variant: "correct", or the report's "report" (see section 7)."""
    theta = np.array(start, dtype=np.float64)
    m, v = np.zeros(2), np.zeros(2)
    path = [theta.copy()]
    for t in range(1, steps + 1):
        g = grad(theta)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        if variant == "correct":
            v_used = v / (1 - beta2 ** t)         # v_hat, corrected with beta2
        else:
            v_hat = v / (1 - beta1 ** t)          # the report: corrected with beta1 ...
            v_used = v                            # ... and then v_hat is never used
        theta = theta - lr * m_hat / (np.sqrt(v_used) + eps)
        path.append(theta.copy())
    return np.array(path)


hand = adam_by_hand(bowl_grad, start, 100, lr=0.1)
library = run(lambda ps: nn.Adam(ps, lr=0.1), bowl_grad, start, 100)
print("max difference, hand-written Adam vs nn.Adam:", np.abs(hand - library).max())
print("first step:", hand[1] - hand[0], "(= -lr * sign(g) per coordinate)")
assert np.allclose(hand, library)

# %% [markdown]
# ## 6. All of them on the Rosenbrock valley
#
# $f(\theta) = (1 - \theta_1)^2 + 100\,(\theta_2 - \theta_1^2)^2$ has its minimum at $(1, 1)$
# at the end of a long, curved, flat-bottomed valley: easy to fall into, slow to follow.

# %%
def rosenbrock(t):
    return (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2


def rosenbrock_grad(t):
    return np.array([-2 * (1 - t[0]) - 400 * t[0] * (t[1] - t[0] ** 2), 200 * (t[1] - t[0] ** 2)])


r_start, r_steps = (-1.2, 1.0), 2000
optimizers = {"GD, lr 1e-3": lambda ps: nn.SGD(ps, lr=1e-3),
              "momentum 0.9, lr 1e-3": lambda ps: nn.SGD(ps, lr=1e-3, momentum=0.9),
              "RMSProp, lr 1e-2": lambda ps: nn.RMSProp(ps, lr=1e-2),
              "Adam, lr 2e-2": lambda ps: nn.Adam(ps, lr=2e-2)}
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3))
contours(axes[0], rosenbrock, (-1.6, 1.6), (-0.4, 1.8), levels=np.logspace(-1, 3, 9))
for name, make in optimizers.items():
    path = run(make, rosenbrock_grad, r_start, r_steps)
    axes[0].plot(path[:, 0], path[:, 1], "-", lw=1.2, label=name)
    axes[1].semilogy([rosenbrock(t) + 1e-12 for t in path], label=name)
    print(f"{name:<22} theta after {r_steps} steps = {path[-1]},  f = {rosenbrock(path[-1]):.2e}")
axes[0].plot(1, 1, "k*", ms=10)
axes[0].set_title("paths on the Rosenbrock function")
axes[1].set(title="f along the path", xlabel="step", ylabel="f (log scale)")
for ax in axes:
    ax.legend()
axes[1].grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# No optimizer wins everywhere; learning rates were picked by hand for each. What the
# adaptive methods buy is robustness: they work with the same learning rate on functions
# whose gradients differ by orders of magnitude, which is why Adam is the default choice
# for training networks.
#
# ## 7. A slip in the mathematics report's Adam
#
# The CNN mathematics report writes Adam's bias correction as
#
# $$\hat S = \frac{S}{1 - \beta_1^{\,t}} \quad\text{(should be } 1 - \beta_2^{\,t}\text{)},
# \qquad \theta \leftarrow \theta - \eta\,\frac{\hat V}{\sqrt{S} + \epsilon}
# \quad\text{(should use } \hat S\text{)},$$
#
# with $V$ its first moment and $S$ its second: the second moment is corrected with the
# wrong $\beta$, and then the *uncorrected* $S$ is used anyway. (`nn.Adam` follows Kingma &
# Ba; its docstring notes the slip.) What does the slip do? At $t = 1$,
# $S = (1 - \beta_2)\, g^2$, so $\sqrt{S} = \sqrt{0.001}\,|g|$ and the first step is
# $\eta/\sqrt{1 - \beta_2} \approx 31.6\,\eta$ instead of $\eta$. The factor
# $1/\sqrt{1 - \beta_2^{\,t}}$ then fades only slowly: it is still about 3 after 100
# steps and 1.3 after 1000.

# %%
correct = adam_by_hand(rosenbrock_grad, r_start, 1000, lr=2e-2)
report = adam_by_hand(rosenbrock_grad, r_start, 1000, lr=2e-2, variant="report")
step_correct = np.linalg.norm(np.diff(correct, axis=0), axis=1)
step_report = np.linalg.norm(np.diff(report, axis=0), axis=1)
print(f"first step length: correct {step_correct[0]:.4f}, report {step_report[0]:.4f} "
      f"(ratio {step_report[0] / step_correct[0]:.1f} = 1/sqrt(1 - beta2) = {1 / np.sqrt(0.001):.1f})")

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
contours(axes[0], rosenbrock, (-1.6, 1.6), (-0.4, 1.8), levels=np.logspace(-1, 3, 9))
axes[0].plot(correct[:, 0], correct[:, 1], ".-", ms=2, lw=1, label="Adam (Kingma & Ba)")
axes[0].plot(report[:, 0], report[:, 1], ".-", ms=2, lw=1, label="the report's Adam")
axes[0].set_title("first 1000 steps, lr = 0.02")
axes[1].semilogy(step_correct, label="Adam (Kingma & Ba)")
axes[1].semilogy(step_report, label="the report's Adam")
axes[1].set(title="length of each step", xlabel="step", ylabel=r"$\|\Delta\theta\|$ (log scale)")
for ax in axes:
    ax.legend()
axes[1].grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# In a network the oversized first steps show up as a burst in the loss. An optimizer is
# just a loop over parameters that reads `p.grad` and writes `p.data`, so the report's
# version is easy to write as a class of our own and to race against `nn.Adam` on a small
# classifier (same model, same batches, same learning rate):

# %%
class ReportAdam:
    """Adam as the mathematics report writes it (for comparison only: do not use)."""

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr = list(params), lr
        self.beta1, self.beta2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.s = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        self.t += 1
        for p, m, s in zip(self.params, self.m, self.s):
            m[...] = self.beta1 * m + (1 - self.beta1) * p.grad
            s[...] = self.beta2 * s + (1 - self.beta2) * p.grad ** 2
            m_hat = m / (1 - self.beta1 ** self.t)
            p.data -= (self.lr * m_hat / (np.sqrt(s) + self.eps)).astype(p.data.dtype)  # uses S


xy_rng = np.random.default_rng(1)
x_cls = xy_rng.uniform(-2, 2, size=(256, 2)).astype(np.float32)               # (N, 2)
y_cls = (np.sin(2 * x_cls[:, 0]) * np.cos(x_cls[:, 1]) > 0).astype(np.int64)  # (N,)


def batch_losses(make_optimizer, steps=120, batch_size=32, lr=0.03):
    model = nn.Sequential([nn.Dense(2, 64, seed=1), nn.ReLU(), nn.Dense(64, 64, seed=2), nn.ReLU(),
                           nn.Dense(64, 2, weight_init="glorot_uniform", seed=3)])
    opt = make_optimizer(model.parameters(), lr)
    loss_fn, losses = nn.SoftmaxCrossEntropy(), []
    for step in range(steps):
        idx = np.random.default_rng(step).choice(len(x_cls), batch_size, replace=False)
        value, dlogits = loss_fn(model.forward(x_cls[idx], training=True), y_cls[idx])
        model.backward(dlogits)
        opt.step()
        losses.append(value)
    return losses


fig, ax = plt.subplots(figsize=(6, 3.4))
ax.semilogy(batch_losses(lambda ps, lr: nn.Adam(ps, lr=lr)), label="nn.Adam")
ax.semilogy(batch_losses(lambda ps, lr: ReportAdam(ps, lr=lr)), label="the report's Adam")
ax.set(title="mini-batch loss, lr = 0.03", xlabel="step", ylabel="cross-entropy (log scale)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# The slipped version does not simply fail: it behaves like Adam with a learning rate
# that starts about 30 times too large and decays over thousands of steps. So the loss
# jumps at the start, and the learning rate you tune is not the one you get.
#
# ## Summary
#
# | method | update | state per parameter |
# |---|---|---|
# | GD / mini-batch SGD | $\theta \leftarrow \theta - \eta g$ | none |
# | momentum | $v \leftarrow \mu v - \eta g,\ \theta \leftarrow \theta + v$ | $v$ |
# | RMSProp | $s \leftarrow \rho s + (1-\rho) g^2,\ \theta \leftarrow \theta - \eta g/(\sqrt{s} + \epsilon)$ | $s$ |
# | Adam | moments $m, v$; $\hat m = m/(1-\beta_1^t)$, $\hat v = v/(1-\beta_2^t)$; $\theta \leftarrow \theta - \eta \hat m/(\sqrt{\hat v} + \epsilon)$ | $m, v, t$ |
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*. Two helpers for the checks:

# %%
def one_step(make_optimizer, g, steps=1):
    """How far `steps` steps with the constant gradient g move a parameter starting at 0."""
    p = nn.Parameter(np.zeros(len(g)))
    opt = make_optimizer([p])
    for _ in range(steps):
        p.grad[...] = g
        opt.step()
    return p.data.copy()


def distance_after(lr, steps=200):
    """|theta| after gradient descent on f = 25 theta^2 / 2 from theta = 1."""
    return abs(run(lambda ps: nn.SGD(ps, lr=lr), lambda t: 25 * t, [1.0], steps)[-1, 0])

# %% [markdown]
# **Exercise 6.1: an optimizer of your own.** Like `ReportAdam` above, write RMSProp (section
# 4) as a class: the constructor takes the parameters, `lr`, `rho` and `eps` and sets up
# one running mean $s$ per parameter; `step()` updates every parameter from its `.grad`,
# $s \leftarrow \rho s + (1 - \rho) g^2$, $\theta \leftarrow \theta - \eta\,g/(\sqrt{s} +
# \epsilon)$. The check races it against `nn.RMSProp` on the bowl and on the Rosenbrock
# valley: the paths must agree.

# %% [exercise 6.1]
class MyRMSProp:
    """RMSProp: s <- rho s + (1 - rho) g^2, p <- p - lr g / (sqrt(s) + eps)."""

    def __init__(self, params, lr=0.001, rho=0.9, eps=1e-7):
        # TODO (exercise 6.1): keep the parameters and hyperparameters, one zero s per parameter
        raise NotImplementedError

    def step(self):
        # TODO (exercise 6.1): update s and p.data for every parameter p, from p.grad
        raise NotImplementedError

# %% [check 6.1]
lk.check_cases("6.1", [
    ("40 steps on the bowl, lr 0.1: the path",
     lambda: run(lambda ps: MyRMSProp(ps, lr=0.1), bowl_grad, start, 40),
     run(lambda ps: nn.RMSProp(ps, lr=0.1), bowl_grad, start, 40)),
    ("300 steps on Rosenbrock, lr 0.01, rho 0.5: the path",
     lambda: run(lambda ps: MyRMSProp(ps, lr=0.01, rho=0.5), rosenbrock_grad, r_start, 300),
     run(lambda ps: nn.RMSProp(ps, lr=0.01, rho=0.5), rosenbrock_grad, r_start, 300)),
])

# %% [markdown]
# **Exercise 6.2.** Adam with $\eta = 0.1$ takes its first step with the gradient
# $g = (3, -0.01)$. What is the change $\Delta\theta$? (Two numbers.)

# %% [exercise 6.2]
def adam_first_step():
    """Delta theta of Adam's first step, lr 0.1, g = (3, -0.01)."""
    # TODO (exercise 6.2): return [..., ...]
    raise NotImplementedError

# %% [check 6.2]
lk.check("6.2", adam_first_step, one_step(lambda ps: nn.Adam(ps, lr=0.1), [3.0, -0.01]),
         rtol=1e-4)

# %% [markdown]
# **Exercise 6.3.** SGD with momentum $\mu = 0.9$ and $\eta = 0.01$ sees the same gradient
# $g = 1$ for many steps. How long does each step become?

# %% [exercise 6.3]
def momentum_terminal_step():
    """The length of a late step of SGD(lr=0.01, momentum=0.9) with g = 1 throughout."""
    # TODO (exercise 6.3): return the number
    raise NotImplementedError

# %% [check 6.3]
late = one_step(lambda ps: nn.SGD(ps, lr=0.01, momentum=0.9), [1.0], steps=300)
later = one_step(lambda ps: nn.SGD(ps, lr=0.01, momentum=0.9), [1.0], steps=301)
lk.check("6.3", momentum_terminal_step, abs(later - late)[0], rtol=1e-4)

# %% [markdown]
# **Exercise 6.4.** RMSProp ($\rho = 0.9$, no bias correction) with $\eta = 0.01$: how long
# is the first step, for any nonzero gradient of one coordinate?

# %% [exercise 6.4]
def rmsprop_first_step():
    """The length of RMSProp's first step, lr 0.01, rho 0.9."""
    # TODO (exercise 6.4): return the number
    raise NotImplementedError

# %% [check 6.4]
lk.check("6.4", rmsprop_first_step,
         abs(one_step(lambda ps: nn.RMSProp(ps, lr=0.01, rho=0.9), [5.0]))[0], rtol=1e-4)

# %% [markdown]
# **Exercise 6.5.** Gradient descent on $f(\theta) = \tfrac12 \cdot 25\,\theta^2$: above which
# learning rate does it diverge?

# %% [exercise 6.5]
def largest_stable_lr():
    """The learning rate above which GD on f = 25 theta^2 / 2 diverges."""
    # TODO (exercise 6.5): return the number
    raise NotImplementedError

# %% [check 6.5]
def bracket_the_limit():
    limit = float(largest_stable_lr())
    if not distance_after(0.98 * limit) < 1:
        raise lk.Wrong(f"GD already diverges at lr = {0.98 * limit:.4g}, 2% below your "
                       f"answer: the limit is lower")
    if not distance_after(1.02 * limit) > 1:
        raise lk.Wrong(f"GD still converges at lr = {1.02 * limit:.4g}, 2% above your "
                       f"answer: the limit is higher")


lk.run_check("6.5", bracket_the_limit)
