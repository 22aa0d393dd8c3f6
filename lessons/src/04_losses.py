"""Source of lessons/04_losses.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 4 - Loss functions
#
# Training minimises one number, the **loss**, which says how wrong the network's outputs
# are on a batch. Backpropagation starts from its gradient with respect to the outputs.
# In nnlite a loss is called on the outputs and the targets and returns both:
#
# ```python
# value, dlogits = loss(logits, targets)     # value: float, dlogits: like logits
# model.backward(dlogits)
# ```
#
# The value is a **mean over the batch**, so `dlogits` already carries the factor $1/N$.
#
# In this lesson: mean squared error, categorical and sparse categorical cross-entropy,
# binary cross-entropy, each by hand and with nnlite, checked numerically; and why the
# softmax (or sigmoid) is computed *inside* the loss rather than as the network's last
# layer.
#
# **You need:** lesson 3 (sigmoid), logarithms and the chain rule.

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
# ## 1. Mean squared error (regression)
#
# For predictions $y$ and targets $t$ of shape $(N, D)$:
#
# $$L = \frac{1}{ND} \sum_{i=1}^{N}\sum_{j=1}^{D} (y_{ij} - t_{ij})^2, \qquad
# \frac{\partial L}{\partial y_{ij}} = \frac{2\,(y_{ij} - t_{ij})}{ND}.$$
#
# (nnlite, like PyTorch and Keras, takes the plain mean; some textbooks put a factor
# $\tfrac12$ in front to cancel the 2.)

# %%
y = np.array([[0.5, 2.0], [1.0, -1.0], [3.0, 0.0]], dtype=np.float32)   # (N, D) = (3, 2)
t = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]], dtype=np.float32)
by_hand = np.mean((y - t) ** 2)
value, dy = nn.MSE()(y, t)
print("by hand:", by_hand, "  nn.MSE:", value)
print("dL/dy:\n", dy, "\n2 (y - t) / (N D):\n", 2 * (y - t) / y.size)
assert np.isclose(value, by_hand) and np.allclose(dy, 2 * (y - t) / y.size)

# %% [markdown]
# ## 2. Softmax and cross-entropy (classification into $K$ classes)
#
# The network outputs $K$ raw scores per example, the **logits** $z$. The softmax turns
# them into probabilities, and the cross-entropy compares those with the target
# distribution $t$ (one-hot: 1 for the true class, 0 elsewhere):
#
# $$p_k = \frac{e^{z_k}}{\sum_{j=1}^{K} e^{z_j}}, \qquad
# L = -\frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K} t_{ik} \log p_{ik}.$$
#
# With one-hot targets only the true class $y_i$ survives: $L = -\frac1N\sum_i \log
# p_{i, y_i}$. **Categorical** cross-entropy takes one-hot rows $t$ of shape $(N, K)$;
# **sparse** categorical cross-entropy takes the integer labels $y$ of shape $(N,)$. They
# are the same number; nnlite's `SoftmaxCrossEntropy` accepts both forms.
#
# The gradient is famously simple. With $\log p_k = z_k - \log\sum_j e^{z_j}$ we get
# $\partial \log p_k / \partial z_j = \delta_{kj} - p_j$, so for one example
#
# $$\frac{\partial L}{\partial z_j} = -\sum_k t_k (\delta_{kj} - p_j)
# = p_j \sum_k t_k - t_j = p_j - t_j \quad\text{(the rows of } t \text{ sum to 1)}.$$

# %%
logits = np.array([[2.0, 1.0, 0.1],
                   [0.5, 2.5, 0.3]], dtype=np.float32)      # (N, K) = (2, 3)
labels = np.array([0, 2])                                    # (N,) sparse targets
one_hot = np.eye(3, dtype=np.float32)[labels]                # (N, K) categorical targets

p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
by_hand = -np.mean(np.log(p[np.arange(2), labels]))
loss = nn.SoftmaxCrossEntropy()
value_sparse, d_sparse = loss(logits, labels)
value_onehot, d_onehot = loss(logits, one_hot)
print("p =\n", p)
print(f"by hand {by_hand:.6f}   sparse {value_sparse:.6f}   one-hot {value_onehot:.6f}")
print("dL/dz =\n", d_sparse, "\n(p - t) / N =\n", (p - one_hot) / 2)
assert np.isclose(value_sparse, by_hand, rtol=1e-5) and np.isclose(value_onehot, by_hand, rtol=1e-5)
assert np.allclose(d_sparse, (p - one_hot) / 2, atol=1e-6) and np.allclose(d_sparse, d_onehot)

# %% [markdown]
# ## 3. Binary cross-entropy (two classes, one output)
#
# With a single logit $z$ per example, $\sigma(z)$ is the probability of class 1, and
#
# $$\ell = -t \log\sigma(z) - (1 - t)\log\big(1 - \sigma(z)\big), \qquad
# \frac{\partial \ell}{\partial z} = \sigma(z) - t.$$
#
# The same loss works element-wise for $M$ independent yes/no outputs (multi-label).

# %%
z = np.array([[2.0], [-1.0], [0.0], [3.0]], dtype=np.float32)   # (N, 1) logits
tb = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)    # (N, 1) targets
s = 1 / (1 + np.exp(-z))
by_hand = np.mean(-tb * np.log(s) - (1 - tb) * np.log(1 - s))
value, dz = nn.BinaryCrossEntropy()(z, tb)
print(f"by hand {by_hand:.6f}   nn.BinaryCrossEntropy {value:.6f}")
print("dL/dz:", dz[:, 0], "  (sigma(z) - t) / N:", ((s - tb) / 4)[:, 0])
assert np.isclose(value, by_hand, rtol=1e-5) and np.allclose(dz, (s - tb) / 4, atol=1e-6)

# %% [markdown]
# ## 4. Checking every gradient numerically
#
# `nn.gradcheck_loss` perturbs each logit by $\pm\varepsilon$ and compares the central
# difference of the loss value with the returned gradient.

# %%
rng = np.random.default_rng(0)
z5 = rng.normal(size=(5, 4))
checks = {
    "MSE": (nn.MSE(), rng.normal(size=(5, 4))),
    "SoftmaxCrossEntropy (sparse)": (nn.SoftmaxCrossEntropy(), rng.integers(0, 4, size=5)),
    "SoftmaxCrossEntropy (one-hot)": (nn.SoftmaxCrossEntropy(), np.eye(4)[rng.integers(0, 4, size=5)]),
    "BinaryCrossEntropy": (nn.BinaryCrossEntropy(), rng.integers(0, 2, size=(5, 4)).astype(float)),
}
for name, (loss_fn, target) in checks.items():
    result = nn.gradcheck_loss(loss_fn, z5, target)
    print(f"{name:<30} max relative error {result.max_error:.1e}")
    assert result.max_error < 1e-6

# %% [markdown]
# ## 5. Why the softmax lives inside the loss
#
# Computed naively, $e^{z}$ overflows: in float32 already for $z > 88.7$, in float64 for
# $z > 709.8$. Logits that large are rare but happen (a diverging run, an unscaled input),
# and one `inf` turns the whole batch into `nan`.

# %%
big = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):          # we want to see the results
    print("float32: exp(88) =", np.exp(np.float32(88.0)), "  exp(89) =", np.exp(np.float32(89.0)))
    naive = np.exp(big) / np.exp(big).sum(axis=1, keepdims=True)   # inf / inf = nan
print("naive softmax of [1000, 0, -1000]:", naive[0])

# %% [markdown]
# **Fix 1: shift.** $\mathrm{softmax}(z) = \mathrm{softmax}(z - m)$ for any constant $m$
# (it cancels in the ratio). With $m = \max_k z_k$ every exponent is $\le 0$: nothing
# overflows and the denominator is at least 1. That is what `nn.Softmax` does.
#
# **Fix 2: take the log analytically.** Even the shifted softmax can *underflow*: for
# $z = [0, -200]$ in float32, $p_2 = e^{-200} = 0$, so $-\log p_2 = \infty$. But the log
# of a softmax has a closed form,
#
# $$\log p_k = z_k - \underbrace{\Big(m + \log \sum_j e^{z_j - m}\Big)}_{\mathrm{logsumexp}(z)},$$
#
# which is $-200 - \log(1 + e^{-200}) \approx -200$: finite and exact. This is why the
# loss takes **logits** and fuses softmax with the cross-entropy; the network ends with a
# plain `Dense` layer, no `Softmax`.

# %%
z2 = np.array([[0.0, -200.0]], dtype=np.float32)
label = np.array([1])
p_shifted = nn.Softmax().forward(z2)                       # finite, but p[1] underflows
with np.errstate(divide="ignore"):
    separate = -np.log(p_shifted[0, label[0]])
fused, dfused = nn.SoftmaxCrossEntropy()(z2, label)
print("Softmax layer output:", p_shifted[0])
print("softmax, then -log p :", separate)
print("fused (logsumexp)    :", fused, "  gradient p - t:", dfused[0])
fused_big, _ = nn.SoftmaxCrossEntropy()(big, np.array([2]))
print("fused loss for [1000, 0, -1000], true class 2:", fused_big, "(exactly 2000)")

# %% [markdown]
# **The gradient, too.** Backpropagating through a separate softmax means first forming
# $\partial L/\partial p_k = -t_k/(N p_k)$, which divides by zero when $p_k$ underflows,
# and then multiplying by the softmax Jacobian. On harmless logits both routes give the
# same $p - t$; the fused one never divides:

# %%
softmax = nn.Softmax()
p2 = softmax.forward(logits)
dp = -one_hot / (2 * p2)                       # dL/dp for L = -(1/N) sum t log p, N = 2
two_step = softmax.backward(dp)                # Jacobian-vector product
_, fused_grad = nn.SoftmaxCrossEntropy()(logits, labels)
print("two steps:\n", two_step, "\nfused:\n", fused_grad)
assert np.allclose(two_step, fused_grad, atol=1e-6)

p_under = softmax.forward(z2)
with np.errstate(divide="ignore", invalid="ignore"):
    bad = softmax.backward(-np.array([[0.0, 1.0]], dtype=np.float32) / p_under)
print("two steps with an underflowed p:", bad[0], "  fused:", dfused[0])

# %% [markdown]
# The sigmoid has the same problem: in float32 $\sigma(40)$ rounds to exactly $1$, so for
# $t = 0$ the term $\log(1 - \sigma(z))$ is $\log 0$. The stable form
# $\ell = \max(z, 0) - zt + \log(1 + e^{-|z|})$ never exponentiates a positive number:

# %%
z40 = np.array([[40.0]], dtype=np.float32)
s40 = nn.Sigmoid().forward(z40)
with np.errstate(divide="ignore"):
    separate = -np.log(1 - s40[0, 0])
print("sigmoid(40) in float32 =", s40[0, 0], " -> -log(1 - sigmoid) =", separate)
print("BinaryCrossEntropy on the logit:", nn.BinaryCrossEntropy()(z40, np.array([[0.0]]))[0])

# %% [markdown]
# ## 6. Why cross-entropy and not MSE for classification?
#
# Take one example of class 1 with logit $z$ and compare two losses on $\sigma(z)$:
# binary cross-entropy, and the squared error $(\sigma(z) - 1)^2$. When the network is
# *confidently wrong* ($z \ll 0$), the cross-entropy's gradient tends to $-1$, a strong
# push; the squared error's gradient $2(\sigma - 1)\,\sigma(1 - \sigma)$ tends to $0$ and
# learning stalls.

# %%
zs = np.linspace(-8, 8, 161).reshape(-1, 1)                 # (161, 1) logits, float64
ones = np.ones_like(zs)
bce = nn.BinaryCrossEntropy()
bce_values = np.array([bce(zi.reshape(1, 1), ones[:1])[0] for zi in zs])
bce_grads = np.array([bce(zi.reshape(1, 1), ones[:1])[1][0, 0] for zi in zs])
sig = nn.Sigmoid()
sz = sig.forward(zs)
mse_values = ((sz - 1) ** 2)[:, 0]
mse_grads = sig.backward(2 * (sz - 1))[:, 0]                # chain rule through the sigmoid

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(zs[:, 0], bce_values, label="binary cross-entropy")
axes[0].plot(zs[:, 0], mse_values, label="squared error on sigmoid")
axes[1].plot(zs[:, 0], bce_grads, label="binary cross-entropy")
axes[1].plot(zs[:, 0], mse_grads, label="squared error on sigmoid")
axes[0].set(title="loss for a class-1 example", xlabel="logit z", ylabel="loss")
axes[1].set(title="gradient with respect to the logit", xlabel="logit z", ylabel="dL/dz")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 7. Class weights, in one line
#
# With imbalanced classes (few malignant cases among many benign ones) each class $k$ can
# be given a weight $w_k$; the loss becomes the weighted mean
# $\sum_i w_{y_i} \ell_i / \sum_i w_{y_i}$, so mistakes on the rare class cost more:

# %%
weighted = nn.SoftmaxCrossEntropy(class_weights=[1.0, 1.0, 5.0])
print("unweighted:", nn.SoftmaxCrossEntropy()(logits, labels)[0], "  weighted:", weighted(logits, labels)[0])

# %% [markdown]
# ## Summary
#
# | loss | output layer | targets | $\partial L / \partial(\text{output})$ per example |
# |---|---|---|---|
# | `MSE` | linear | real values $(N, D)$ | $2(y - t)/D$ |
# | `SoftmaxCrossEntropy` | $K$ logits | labels $(N,)$ or one-hot $(N, K)$ | $p - t$ |
# | `BinaryCrossEntropy` | 1 (or $M$) logits | 0/1 values | $\sigma(z) - t$ |
#
# (nnlite's losses average over the batch, so the returned gradients carry an extra
# $1/N$.) Softmax and sigmoid are fused with their cross-entropies: the log is taken
# analytically, nothing overflows or divides by zero.
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*.
#
# **Exercise 4.1.** Write the sparse categorical cross-entropy *and its gradient* the way
# nnlite does: `softmax_cross_entropy(logits, labels)` takes logits $(N, K)$ and integer
# labels $(N,)$ and returns `(loss, dlogits)`, the mean loss over the batch and
# $\partial L/\partial z$ $(N, K)$. Make it stable: use the log-sum-exp form of section
# 5, so that the logits $[1000, 0, -1000]$ give a finite loss.

# %% [exercise 4.1]
def softmax_cross_entropy(logits, labels):
    """(mean cross-entropy of softmax(logits) against integer labels, dL/dlogits)."""
    # TODO (exercise 4.1): shift by the row maximum, take log p = z - logsumexp(z), pick
    # the true classes' log p for the loss; the gradient is (p - one_hot) / N
    raise NotImplementedError

# %% [check 4.1]
def prove_cross_entropy():
    check_rng = np.random.default_rng(4)
    for z, t, name in [(check_rng.normal(size=(6, 4)), check_rng.integers(0, 4, size=6),
                        "random logits (6, 4)"),
                       (logits.astype(np.float64), labels, "the logits of section 2"),
                       (np.array([[1000.0, 0.0, -1000.0]]), np.array([2]), "logits [1000, 0, -1000]")]:
        value, grad = softmax_cross_entropy(z, t)
        want_value, want_grad = nn.SoftmaxCrossEntropy()(z, t)
        lk.compare(value, want_value, f"the loss for {name}")
        lk.compare(grad, want_grad, f"dlogits for {name}")


lk.run_check("4.1", prove_cross_entropy)

# %% [markdown]
# **Exercise 4.2.** A network predicts the probabilities $[0.7, 0.2, 0.1]$ for an example of
# class 0. What is its cross-entropy loss? (A number: return it.)

# %% [exercise 4.2]
def cross_entropy_07():
    """The cross-entropy of the prediction [0.7, 0.2, 0.1] for class 0."""
    # TODO (exercise 4.2): return the number
    raise NotImplementedError

# %% [check 4.2]
lk.check("4.2", cross_entropy_07,
         nn.SoftmaxCrossEntropy()(np.log([[0.7, 0.2, 0.1]]), np.array([0]))[0])

# %% [markdown]
# **Exercise 4.3.** What is the binary cross-entropy of a logit $z = 0$ for target $t = 1$?

# %% [exercise 4.3]
def bce_at_zero():
    """The binary cross-entropy of the logit 0 for the target 1."""
    # TODO (exercise 4.3): return the number
    raise NotImplementedError

# %% [check 4.3]
lk.check("4.3", bce_at_zero, nn.BinaryCrossEntropy()(np.array([[0.0]]), np.array([[1.0]]))[0])

# %% [markdown]
# **Exercise 4.4.** One example with logits $[0, 0, 0, 0]$ and label 2. What is
# $\partial L / \partial z$? (Four numbers, as a list.)

# %% [exercise 4.4]
def gradient_uniform_logits():
    """dL/dz for the logits [0, 0, 0, 0] and label 2 (one example)."""
    # TODO (exercise 4.4): return [..., ..., ..., ...]
    raise NotImplementedError

# %% [check 4.4]
lk.check("4.4", gradient_uniform_logits,
         nn.SoftmaxCrossEntropy()(np.zeros((1, 4)), np.array([2]))[1][0])

# %% [markdown]
# **Exercise 4.5.** Predictions $[1, 2, 3]$ against targets $[1, 1, 1]$ (one sample, three
# outputs): what is nnlite's MSE?

# %% [exercise 4.5]
def mse_123():
    """nnlite's MSE of the prediction [1, 2, 3] against the targets [1, 1, 1]."""
    # TODO (exercise 4.5): return the number
    raise NotImplementedError

# %% [check 4.5]
lk.check("4.5", mse_123, nn.MSE()(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 1.0, 1.0]]))[0])

# %% [markdown]
# **Exercise 4.6.** Above which $z$ does `np.exp(z)` overflow in float32? (The largest
# float32 is `np.finfo(np.float32).max`, about $3.4 \times 10^{38}$.) Give it to 3
# decimals, or as an expression that computes it.

# %% [exercise 4.6]
def float32_exp_limit():
    """The z above which np.exp(np.float32(z)) is inf."""
    # TODO (exercise 4.6): return the number
    raise NotImplementedError

# %% [check 4.6]
def exp_limit_brackets():
    limit = float(float32_exp_limit())
    with np.errstate(over="ignore"):
        below = bool(np.isfinite(np.exp(np.float32(limit - 1e-3))))
        above = not np.isfinite(np.exp(np.float32(limit + 1e-3)))
    if not (below and above):
        raise lk.Wrong(f"np.exp(np.float32(z)) is {'inf' if not below else 'finite'} "
                       f"at z = {limit - 1e-3 if not below else limit + 1e-3:.4f}: the limit "
                       f"is {'lower' if not below else 'higher'} than {limit:.4f}")


lk.run_check("4.6", exp_limit_brackets)
