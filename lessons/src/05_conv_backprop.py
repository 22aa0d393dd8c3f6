"""Source of lessons/05_conv_backprop.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 5 - Backpropagation through a convolution
#
# A convolutional layer learns by gradient descent, so its `backward` must compute two
# things from the gradient $\delta = \partial L/\partial y$ that arrives from the layers
# above:
#
# * $\partial L/\partial w$ (and $\partial L/\partial b$) to update its own kernel, and
# * $\partial L/\partial x$ to pass on to the layer below.
#
# Both turn out to be convolutions again: **the filter gradient is the correlation of the
# input with $\delta$**, and **the input gradient is the full convolution of $\delta$ with
# the kernel** (equivalently, the full *correlation* of $\delta$ with the kernel rotated by
# 180 degrees). We derive both,
# code them with loops, and check them against `nn.Conv2D.backward` and the numerical
# gradient checker.
#
# **You need:** lesson 1 (valid and full convolution, stride, padding), the chain rule.

# %%
# %matplotlib inline
import sys
from functools import partial
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn
from nnlite.functional import col2im, im2col

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)
correlate2d = lk.correlate2d    # lesson 1's loops: correlate2d(x, w, stride=1, padding=0)
show = partial(lk.show, cmap="coolwarm", fmt=".2g", xlabel="column", ylabel="row")


def rot180(w):
    """The kernel rotated by 180 degrees: flipped top-bottom and left-right."""
    return w[::-1, ::-1]

# %% [markdown]
# ## 1. One channel, stride 1: the derivation
#
# Forward (lesson 1), for an $N \times N$ input and an $f \times f$ kernel, with
# $O = N - f + 1$:
#
# $$y_{i,j} = b + \sum_{u=0}^{f-1}\sum_{v=0}^{f-1} w_{u,v}\, x_{i+u,\; j+v},
# \qquad 0 \le i, j < O.$$
#
# Let $\delta_{i,j} = \partial L / \partial y_{i,j}$ (shape $O \times O$). Every $y_{i,j}$
# depends on $w_{u,v}$ with coefficient $x_{i+u,\,j+v}$, so by the chain rule
#
# $$\boxed{\frac{\partial L}{\partial w_{u,v}} = \sum_{i,j} \delta_{i,j}\; x_{i+u,\; j+v}}
# \qquad\qquad \frac{\partial L}{\partial b} = \sum_{i,j} \delta_{i,j}.$$
#
# The left formula is the valid **correlation of the input $x$ with $\delta$**: slide
# $\delta$ (size $O$) over $x$ (size $N$); there are $N - O + 1 = f$ positions per axis,
# exactly the kernel's size.
#
# For the input: $x_{m,n}$ appears in $y_{i,j}$ when $i + u = m$ and $j + v = n$, with
# coefficient $w_{m-i,\; n-j}$. Hence
#
# $$\boxed{\frac{\partial L}{\partial x_{m,n}} = \sum_{u,v} \delta_{m-u,\; n-v}\; w_{u,v}}
# \qquad (\delta \text{ taken as } 0 \text{ outside } 0 \le i, j < O).$$
#
# The indices run in *opposite* directions ($m - u$): this is a true convolution, and
# since $\delta$ may stick out past the edges it is the **full** convolution of $\delta$
# with $w$, of size $O + f - 1 = N$. Substituting $u' = f - 1 - u$ writes it as a
# correlation, which is how it is computed: pad $\delta$ with $f - 1$ zeros on every side
# and correlate with the **rotated kernel** $\mathrm{rot}_{180}(w)_{u',v'} =
# w_{f-1-u',\; f-1-v'}$.

# %%
rng = np.random.default_rng(0)
N, f = 6, 3
O = N - f + 1
x = rng.normal(size=(N, N))          # float64 input: exact comparisons below
w = rng.normal(size=(f, f))
delta = rng.normal(size=(O, O))      # dL/dy as it would arrive from the layers above

dW_loops = correlate2d(x, delta)                         # (f, f): x correlated with delta
db_loops = delta.sum()
dx_loops = correlate2d(delta, rot180(w), padding=f - 1)  # (N, N): full convolution
print("x", x.shape, " w", w.shape, " delta", delta.shape)
print("dW", dW_loops.shape, " dx", dx_loops.shape)

# %% [markdown]
# ## 2. The same numbers from `nn.Conv2D.backward`
#
# Set the layer's kernel to $w$, run `forward`, then `backward(delta)`: it returns
# $\partial L/\partial x$ and stores $\partial L/\partial w$ and $\partial L/\partial b$ in
# `W.grad` and `b.grad`. We cast the layer to float64 so that the comparison is exact up to
# rounding.

# %%
conv = nn.Conv2D(1, 1, f).astype("float64")
conv.W.data[...] = w.reshape(1, 1, f, f)                   # (F, C, KH, KW)
conv.forward(x.reshape(1, 1, N, N))                         # (1, 1, O, O)
dx_layer = conv.backward(delta.reshape(1, 1, O, O))         # (1, 1, N, N)

print("max |dW loops - W.grad| =", np.abs(dW_loops - conv.W.grad[0, 0]).max())
print("    |db loops - b.grad| =", abs(db_loops - conv.b.grad[0]))
print("max |dx loops - dx|     =", np.abs(dx_loops - dx_layer[0, 0]).max())
assert np.allclose(dW_loops, conv.W.grad[0, 0]) and np.isclose(db_loops, conv.b.grad[0])
assert np.allclose(dx_loops, dx_layer[0, 0])

fig, axes = plt.subplots(1, 4, figsize=(15, 4))
show(axes[0], w, "kernel w")
show(axes[1], delta, "delta = dL/dy")
show(axes[2], dW_loops, "dL/dw = x corr delta")
show(axes[3], dx_loops, "dL/dx = full conv(delta, w)")
fig.tight_layout()

# %% [markdown]
# **Seeing the rotation.** Send back a $\delta$ that is $1$ at a single output position
# and $0$ elsewhere. That output used one $3 \times 3$ window of the input, weighted by
# $w$; so the gradient reaching the input is $w$ itself, pasted onto that window. Written
# as a correlation (a kernel *sliding* over padded $\delta$), the kernel must be rotated
# for the pasted copy to come out upright.

# %%
w_demo = np.arange(1.0, 10.0).reshape(3, 3)                # easy to recognise: 1 ... 9
conv_demo = nn.Conv2D(1, 1, 3, bias=False).astype("float64")
conv_demo.W.data[...] = w_demo.reshape(1, 1, 3, 3)
conv_demo.forward(np.zeros((1, 1, 6, 6)))
spike = np.zeros((1, 1, 4, 4))
spike[0, 0, 1, 2] = 1.0                                     # one output, row 1, column 2
dx_spike = conv_demo.backward(spike)[0, 0]

fig, axes = plt.subplots(1, 3, figsize=(12, 4))
show(axes[0], w_demo, "w")
show(axes[1], rot180(w_demo), "rot180(w): what slides")
show(axes[2], dx_spike, "dx for a spike at y[1, 2]")
fig.tight_layout()
assert np.array_equal(dx_spike[1:4, 2:5], w_demo)

# %% [markdown]
# ## 3. The gradient checker agrees
#
# `nn.gradcheck(layer, x)` perturbs every input element and every weight by
# $\pm\varepsilon$, recomputes the forward pass, and compares
# $\big(L(\theta + \varepsilon) - L(\theta - \varepsilon)\big)/2\varepsilon$ with the
# analytic gradient, where $L = \sum y \cdot dy$ for a random $dy$ (a random $dy$
# catches transposed or permuted gradients that an all-ones $dy$ would hide).
#
# First one weight by hand, then everything:

# %%
L = lambda: float(np.sum(conv.forward(x.reshape(1, 1, N, N)) * delta))
eps = 1e-6
old = conv.W.data[0, 0, 1, 2]
conv.W.data[0, 0, 1, 2] = old + eps
L_plus = L()
conv.W.data[0, 0, 1, 2] = old - eps
L_minus = L()
conv.W.data[0, 0, 1, 2] = old
print(f"dL/dw[1,2]: numeric {(L_plus - L_minus) / (2 * eps):.8f}   analytic {dW_loops[1, 2]:.8f}")

result = nn.gradcheck(nn.Conv2D(1, 1, 3, seed=0), x.reshape(1, 1, N, N))
print(result)
assert result.max_error < 1e-6

# %% [markdown]
# ## 4. Channels, filters and a batch
#
# With input channels $c$, filters $k$ and examples $n$ (lesson 1, section 6), each
# weight $W_{k,c,u,v}$ is used by every example and every output position of filter $k$,
# and each input $x_{n,c}$ feeds every filter:
#
# $$\frac{\partial L}{\partial W_{k,c}} = \sum_{n} x_{n,c} \star \delta_{n,k},
# \qquad
# \frac{\partial L}{\partial b_k} = \sum_{n,i,j} \delta_{n,k,i,j},
# \qquad
# \frac{\partial L}{\partial x_{n,c}} = \sum_{k} \mathrm{full}\big(\delta_{n,k},\, W_{k,c}\big),$$
#
# where $\star$ is the valid correlation. Shapes: $x: (N, C, H, W)$, $\delta: (N, F, O_H,
# O_W)$, $\partial L/\partial W: (F, C, f, f)$ like $W$, $\partial L/\partial x$ like $x$.

# %%
xb = rng.normal(size=(2, 3, 7, 7))                  # (N, C, H, W)
layer = nn.Conv2D(3, 4, 3, seed=1).astype("float64")
yb = layer.forward(xb)                              # (2, 4, 5, 5)
dyb = rng.normal(size=yb.shape)                     # (N, F, OH, OW)
dxb = layer.backward(dyb)                           # (2, 3, 7, 7)

Wk = layer.W.data
dW_ref = np.zeros_like(Wk)                          # (F, C, f, f)
dx_ref = np.zeros_like(xb)                          # (N, C, H, W)
for n in range(2):
    for k in range(4):
        for c in range(3):
            dW_ref[k, c] += correlate2d(xb[n, c], dyb[n, k])
            dx_ref[n, c] += correlate2d(dyb[n, k], rot180(Wk[k, c]), padding=2)
db_ref = dyb.sum(axis=(0, 2, 3))                    # (F,)
print("x", xb.shape, "-> y", yb.shape, "| dW", layer.W.grad.shape, " db", layer.b.grad.shape,
      " dx", dxb.shape)
print("max differences:", np.abs(dW_ref - layer.W.grad).max(), np.abs(db_ref - layer.b.grad).max(),
      np.abs(dx_ref - dxb).max())
assert np.allclose(dW_ref, layer.W.grad) and np.allclose(db_ref, layer.b.grad)
assert np.allclose(dx_ref, dxb)

# %% [markdown]
# ## 5. Stride and padding
#
# With stride $s$, $y_{i,j} = b + \sum_{u,v} w_{u,v}\, x_{is+u,\; js+v}$, and the same
# argument gives
#
# $$\frac{\partial L}{\partial w_{u,v}} = \sum_{i,j} \delta_{i,j}\, x_{is+u,\; js+v}.$$
#
# This is again a correlation if we **dilate** $\delta$: insert $s - 1$ zeros between its
# entries, $\tilde\delta_{is,\,js} = \delta_{i,j}$ (size $(O-1)s + 1$). Then
# $\partial L/\partial w = x \star \tilde\delta$ and $\partial L/\partial x =
# \mathrm{full}(\tilde\delta, w)$, exactly as for stride 1. When the stride skipped the
# last rows of $x$ (the floor in the size formula), those rows get zero gradient. With
# padding $p$, work on the padded input and crop $p$ rows and columns off $\partial
# L/\partial x$ at the end.

# %%
def dilate(d, s):
    """Insert s - 1 zeros between the entries of d (O, O) -> ((O - 1) s + 1, (O - 1) s + 1)."""
    out = np.zeros(((d.shape[0] - 1) * s + 1, (d.shape[1] - 1) * s + 1), dtype=d.dtype)
    out[::s, ::s] = d
    return out


def conv_backward_loops(x, w, delta, stride=1, padding=0):
    """dL/dw and dL/dx of y = correlate(x_pad, w, stride) for a single channel, via loops."""
    f = w.shape[0]
    x_pad = np.pad(x, padding)                                   # (H + 2p, W + 2p)
    d = dilate(delta, stride)                                    # ((O-1)s + 1, ...)
    used = d.shape[0] + f - 1                                    # rows the windows touched
    dw = correlate2d(x_pad[:used, :used], d)                     # (f, f)
    dx_pad = np.zeros_like(x_pad)
    dx_pad[:used, :used] = correlate2d(d, rot180(w), padding=f - 1)
    H = x.shape[0]
    return dw, dx_pad[padding:padding + H, padding:padding + H]  # crop the padding off


print(f"{'N':>3} {'f':>2} {'s':>2} {'p':>2} | {'O':>2} | max |dw - W.grad|  max |dx - dx_layer|")
for N_, f_, s_, p_ in [(7, 3, 1, 0), (7, 3, 2, 0), (8, 3, 2, 0), (7, 3, 2, 1), (9, 5, 3, 2), (6, 2, 2, 0)]:
    x_ = rng.normal(size=(N_, N_))
    lay = nn.Conv2D(1, 1, f_, stride=s_, padding=p_, seed=2).astype("float64")
    y_ = lay.forward(x_.reshape(1, 1, N_, N_))
    d_ = rng.normal(size=y_.shape)
    dx_layer_ = lay.backward(d_)
    dw_, dx_ = conv_backward_loops(x_, lay.W.data[0, 0], d_[0, 0], stride=s_, padding=p_)
    e_w, e_x = np.abs(dw_ - lay.W.grad[0, 0]).max(), np.abs(dx_ - dx_layer_[0, 0]).max()
    print(f"{N_:>3} {f_:>2} {s_:>2} {p_:>2} | {y_.shape[2]:>2} | {e_w:17.1e}  {e_x:19.1e}")
    assert e_w < 1e-10 and e_x < 1e-10

# %% [markdown]
# For $N = 8,\ f = 3,\ s = 2$ the windows cover rows $0$ to $6$ only; row 7 never reaches
# the output and its gradient is zero. The gradient checker confirms the strided, padded
# layer too:

# %%
strided = nn.Conv2D(2, 3, 3, stride=2, padding=1, seed=3)
result = nn.gradcheck(strided, rng.normal(size=(2, 2, 7, 7)))
print(result)
assert result.max_error < 1e-6

# %% [markdown]
# ## 6. How nnlite computes it: matrices instead of loops
#
# Loops over pixels are slow in Python. `Conv2D` unfolds every receptive field into a
# column (`im2col`): `cols` has shape $(C f^2,\ N O_H O_W)$, and the whole layer is one
# matrix product, $Y = W_2\,\mathrm{cols}$ with $W_2 = W$ reshaped to $(F, C f^2)$. Its
# backward pass is two more matrix products and the adjoint of `im2col`:
#
# $$dW_2 = \delta_2\, \mathrm{cols}^{T}, \qquad d\mathrm{cols} = W_2^{T}\, \delta_2, \qquad
# dx = \texttt{col2im}(d\mathrm{cols}),$$
#
# where $\delta_2$ is $\delta$ reshaped to $(F,\ N O_H O_W)$. `col2im` adds every column
# back onto the pixels it came from, so a pixel shared by several windows collects the sum
# of their contributions: the same sum as the full convolution above.

# %%
cols = im2col(xb, 3, 3, 1, 1)                                  # (C*f*f, N*OH*OW) = (27, 50)
W2 = layer.W.data.reshape(4, 27)                               # (F, C*f*f)
d2 = dyb.transpose(1, 0, 2, 3).reshape(4, -1)                  # (F, N*OH*OW)
dW_matrix = (d2 @ cols.T).reshape(layer.W.shape)               # (F, C, f, f)
dx_matrix = col2im(W2.T @ d2, xb.shape, 3, 3, 1, 1)            # (N, C, H, W)
print("cols", cols.shape, " W2", W2.shape, " delta2", d2.shape)
print("max differences:", np.abs(dW_matrix - layer.W.grad).max(), np.abs(dx_matrix - dxb).max())
assert np.allclose(dW_matrix, layer.W.grad) and np.allclose(dx_matrix, dxb)

# %% [markdown]
# ## Summary
#
# | gradient | formula | operation | shape |
# |---|---|---|---|
# | $\partial L/\partial W_{k,c}$ | $\sum_n x_{n,c} \star \delta_{n,k}$ | valid correlation of input and $\delta$ | like $W$: $(F, C, f, f)$ |
# | $\partial L/\partial b_k$ | $\sum_{n,i,j} \delta_{n,k,i,j}$ | sum | $(F,)$ |
# | $\partial L/\partial x_{n,c}$ | $\sum_k \mathrm{full}(\delta_{n,k}, W_{k,c})$ | full convolution with $W$ = full correlation with $\mathrm{rot}_{180}(W)$ | like $x$: $(N, C, H, W)$ |
#
# With stride $s$, dilate $\delta$ first; with padding, crop $\partial L/\partial x$.
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*.
#
# **Exercise 5.1.** Write the input gradient of a one-channel, stride-1, valid convolution
# straight from the boxed formula of section 1, with loops (no `correlate2d`, no
# `rot180`): $\partial L/\partial x_{m,n} = \sum_{u,v} \delta_{m-u,\; n-v}\, w_{u,v}$,
# where the terms with $m - u$ or $n - v$ outside $\delta$ are zero. `delta` has shape
# $(O_H, O_W)$, `w` $(K_H, K_W)$; the result has the input's shape
# $(O_H + K_H - 1,\ O_W + K_W - 1)$ (not necessarily square).

# %% [exercise 5.1]
def input_gradient(delta, w):
    """dL/dx = the full convolution of delta (OH, OW) with w (KH, KW), by loops."""
    # TODO (exercise 5.1): allocate dx (OH + KH - 1, OW + KW - 1); for every (m, n) and
    # (u, v), add delta[m - u, n - v] * w[u, v] when (m - u, n - v) lies inside delta
    raise NotImplementedError

# %% [check 5.1]
def library_input_gradient(delta, w):
    layer = nn.Conv2D(1, 1, w.shape, bias=False).astype("float64")
    layer.W.data[...] = w.reshape(1, 1, *w.shape)
    H, W = delta.shape[0] + w.shape[0] - 1, delta.shape[1] + w.shape[1] - 1
    layer.forward(np.zeros((1, 1, H, W)))
    return layer.backward(delta.reshape(1, 1, *delta.shape))[0, 0]


check_rng = np.random.default_rng(5)
cases = []
for delta_shape, w_shape in [((4, 4), (3, 3)), ((3, 5), (2, 3)), ((1, 1), (3, 3)), ((5, 2), (1, 4))]:
    d_case, w_case = check_rng.normal(size=delta_shape), check_rng.normal(size=w_shape)
    cases.append((f"delta {delta_shape} and w {w_shape}",
                  lambda d_case=d_case, w_case=w_case: input_gradient(d_case, w_case),
                  library_input_gradient(d_case, w_case)))
lk.check_cases("5.1", cases)

# %% [markdown]
# **Exercise 5.2.** `nn.Conv2D(3, 8, 5)` gets a batch of shape $(2, 3, 12, 12)$. What are the
# shapes of $\delta = \partial L/\partial y$ and of `W.grad`? Return one tuple of 8
# numbers, $\delta$'s shape followed by `W.grad`'s.

# %% [exercise 5.2]
def gradient_shapes():
    """delta's shape followed by W.grad's, as one tuple of 8 ints."""
    # TODO (exercise 5.2): return the tuple
    raise NotImplementedError

# %% [check 5.2]
ex = nn.Conv2D(3, 8, 5, seed=0)
y_ex = ex.forward(np.zeros((2, 3, 12, 12), dtype=np.float32))
ex.backward(np.ones_like(y_ex))
lk.check("5.2", gradient_shapes, y_ex.shape + ex.W.grad.shape)

# %% [markdown]
# **Exercise 5.3.** In one dimension: $x = [1, 2, 3, 4]$, $w = [1, -1]$ (valid, stride 1,
# so $y$ has 3 entries) and $\delta = [1, 0, 2]$. By hand, what is
# $\partial L/\partial w = [\sum_i \delta_i x_i,\ \sum_i \delta_i x_{i+1}]$?

# %% [exercise 5.3]
def filter_gradient_1d():
    """dL/dw for x = [1, 2, 3, 4], w = [1, -1], delta = [1, 0, 2]: two numbers."""
    # TODO (exercise 5.3): return [..., ...]
    raise NotImplementedError

# %% [check 5.3]
x1d, w1d, d1d = np.array([1.0, 2, 3, 4]), np.array([1.0, -1]), np.array([1.0, 0, 2])
one_d = nn.Conv2D(1, 1, (1, 2), bias=False).astype("float64")   # a 1 x 2 kernel on a 1 x 4 image
one_d.W.data[...] = w1d.reshape(1, 1, 1, 2)
one_d.forward(x1d.reshape(1, 1, 1, 4))
dx1d = one_d.backward(d1d.reshape(1, 1, 1, 3))
lk.check("5.3", filter_gradient_1d, one_d.W.grad.reshape(2))

# %% [markdown]
# **Exercise 5.4.** Same example: what is $\partial L/\partial x$? (Full convolution:
# $\partial L/\partial x_m = \sum_u \delta_{m-u}\, w_u$.)

# %% [exercise 5.4]
def input_gradient_1d():
    """dL/dx for the example of exercise 5.3: four numbers."""
    # TODO (exercise 5.4): return [..., ..., ..., ...]
    raise NotImplementedError

# %% [check 5.4]
lk.check("5.4", input_gradient_1d, dx1d.reshape(4))

# %% [markdown]
# **Exercise 5.5.** A 5x5 input, a 3x3 kernel, stride 2: the output is 2x2. How large is the
# dilated $\tilde\delta$, per side? (It must satisfy $5 - \text{size} + 1 = 3$, the
# kernel size, for $x \star \tilde\delta$ to give $\partial L/\partial w$.)

# %% [exercise 5.5]
def dilated_size():
    """The side of the dilated delta for a 2x2 output and stride 2."""
    # TODO (exercise 5.5): return the number
    raise NotImplementedError

# %% [check 5.5]
ex5 = nn.Conv2D(1, 1, 3, stride=2, seed=0)
y5 = ex5.forward(np.zeros((1, 1, 5, 5), dtype=np.float32))
ex5.backward(np.ones_like(y5))
lk.check("5.5", lambda: 5 - dilated_size() + 1, ex5.W.grad.shape[-1],
         what="5 - (your size) + 1")
