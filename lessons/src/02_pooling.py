"""Source of lessons/02_pooling.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 2 - Pooling, flattening and global average pooling
#
# After a convolution and its ReLU, a CNN usually **pools**: it summarises each small
# neighbourhood of a feature map by one number, which shrinks the map, makes the
# features less sensitive to small shifts, and cuts the cost of the layers that follow.
# At the end of the network the feature maps are turned into one vector per image,
# either by **flattening** or by **global average pooling**, and handed to dense layers.
#
# In this lesson: max and average pooling by hand and with nnlite, their gradients,
# overlapping pooling (AlexNet's 3x3 windows with stride 2), the shapes through a small
# CNN, `Flatten`, and `GlobalAvgPool2D`.
#
# **You need:** lesson 1 (the output-size formula).

# %%
# %matplotlib inline
import sys
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show (draw an array), lk.check, ...

lk.setup(precision=3)

# %% [markdown]
# ## 1. Max and average pooling
#
# A pooling window of size $f \times f$ moves over each channel with stride $s$ (usually
# $f = s = 2$, so the windows tile the map). There are no weights:
#
# $$\text{max pooling:}\quad y_{i,j} = \max_{0 \le u, v < f} x_{is+u,\; js+v}
# \qquad\qquad
# \text{average pooling:}\quad y_{i,j} = \frac{1}{f^2} \sum_{u=0}^{f-1}\sum_{v=0}^{f-1} x_{is+u,\; js+v}$$
#
# The output size is the convolution's: $O = \lfloor (N - f + 2p)/s \rfloor + 1$, and each
# channel is pooled on its own, so $(N, C, H, W) \to (N, C, O_H, O_W)$.

# %%
x = np.array([[1, 1, 2, 4],
              [5, 6, 7, 8],
              [3, 2, 1, 0],
              [1, 2, 3, 4]], dtype=np.float32)


def pool2d(x, f, s, reduce):
    """Pool a (H, W) array with an f x f window and stride s; `reduce` is np.max or np.mean."""
    OH, OW = (x.shape[0] - f) // s + 1, (x.shape[1] - f) // s + 1
    y = np.zeros((OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[i, j] = reduce(x[i * s:i * s + f, j * s:j * s + f])
    return y


x4 = x.reshape(1, 1, 4, 4)                       # (N, C, H, W)
max_pool, avg_pool = nn.MaxPool2D(2), nn.AvgPool2D(2)   # stride defaults to the kernel size
y_max = max_pool.forward(x4)                     # (1, 1, 2, 2)
y_avg = avg_pool.forward(x4)
print("x", x4.shape, "-> pooled", y_max.shape)
print("max pooling:\n", y_max[0, 0])
print("average pooling:\n", y_avg[0, 0])
assert np.array_equal(y_max[0, 0], pool2d(x, 2, 2, np.max))
assert np.allclose(y_avg[0, 0], pool2d(x, 2, 2, np.mean))

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
lk.show(axes[0], x, "x (4x4)", cmap="viridis")
lk.show(axes[1], y_max[0, 0], "MaxPool2D(2)", cmap="viridis")
lk.show(axes[2], y_avg[0, 0], "AvgPool2D(2)", cmap="viridis")
fig.tight_layout()

# %% [markdown]
# ## 2. Gradients through pooling
#
# Backpropagation asks: if the loss changes by $\delta_{i,j} = \partial L/\partial y_{i,j}$
# per output, how does it change per input?
#
# * **Max:** locally, $y_{i,j}$ *is* one input (the largest in its window), so
#   $\delta_{i,j}$ goes to that input and every other input of the window gets $0$.
#   (With ties, nnlite sends it to the first maximum in row-major order.)
# * **Average:** $\partial y_{i,j}/\partial x = 1/f^2$ for each of the window's inputs, so
#   each gets $\delta_{i,j}/f^2$.

# %%
dy = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(1, 1, 2, 2)
dx_max = max_pool.backward(dy)                  # (1, 1, 4, 4), same shape as x
dx_avg = avg_pool.backward(dy)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
lk.show(axes[0], dy[0, 0], "upstream gradient dy", cmap="viridis")
lk.show(axes[1], dx_max[0, 0], "dx, max pooling", cmap="viridis")
lk.show(axes[2], dx_avg[0, 0], "dx, average pooling", cmap="viridis")
fig.tight_layout()

# %% [markdown]
# ## 3. Overlapping pooling: 3x3 windows, stride 2
#
# AlexNet pools with $f = 3,\ s = 2$: neighbouring windows share a row or a column, which
# its authors found to overfit slightly less. The size formula still holds:
# $55 \to \lfloor (55 - 3)/2 \rfloor + 1 = 27$, $27 \to 13$, $13 \to 6$.
#
# Which inputs are shared? Push a gradient of ones back through an average pool: each
# input receives $1/f^2$ from every window that contains it, so $f^2\,dx$ counts the
# windows.

# %%
pool = nn.AvgPool2D(3, stride=2)
for n in (55, 27, 13, 9):
    print(f"{n}x{n} -> {pool.output_shape((1, n, n))[1:]}")

ones = np.ones((1, 1, 9, 9), dtype=np.float32)
out = pool.forward(ones)                                  # (1, 1, 4, 4)
windows_per_pixel = 9 * pool.backward(np.ones_like(out))  # (1, 1, 9, 9)
fig, ax = plt.subplots(figsize=(4.8, 4.4))
lk.show(ax, windows_per_pixel[0, 0], "3x3/2 windows per pixel (9x9 input)", cmap="viridis")
fig.tight_layout()

# %% [markdown]
# Pixels on the inner even rows and columns (2, 4, 6) belong to 2 or 4 windows: with max
# pooling one strong pixel can be the maximum of several windows, and its gradient is then
# the *sum* over those windows. Here every pixel is in some window because $(9 - 3)/2$ is
# a whole number; a 10x10 input gives the same 4x4 output, and its last row and column
# would be in no window at all (the floor in the size formula drops them).
#
# ## 4. Why pool? A little shift invariance
#
# A single bright pixel at column 4 or column 5 lands in the same 2x2 window, so the
# max-pooled map does not change when it moves by one pixel. The convolution's own output
# moves with the input.

# %%
def dot_image(col):
    img = np.zeros((1, 1, 8, 8), dtype=np.float32)
    img[0, 0, 3, col] = 1.0
    return img


pool2 = nn.MaxPool2D(2)
a, b = dot_image(4), dot_image(5)
print("inputs equal?      ", np.array_equal(a, b))
print("max-pooled equal?  ", np.array_equal(pool2.forward(a), pool2.forward(b)))
print("pooled map:\n", pool2.forward(a)[0, 0])

# %% [markdown]
# ## 5. Shapes through a small CNN
#
# Convolution and pooling alternate; each pooling halves height and width while the
# number of channels grows. Here are the shapes for a batch of eight 28x28 grey images
# (a LeNet-like stack):

# %%
rng = np.random.default_rng(0)
batch = rng.normal(size=(8, 1, 28, 28)).astype(np.float32)     # (N, C, H, W)
features = nn.Sequential([
    nn.Conv2D(1, 6, 5, seed=1), nn.ReLU(), nn.MaxPool2D(2),
    nn.Conv2D(6, 16, 5, seed=2), nn.ReLU(), nn.MaxPool2D(2),
])
h = batch
print(f"{'input':<12} {str(h.shape):>18}")
for layer in features:
    h = layer.forward(h)
    print(f"{layer.name:<12} {str(h.shape):>18}")

# %% [markdown]
# ## 6. Flatten
#
# Dense layers take one vector per sample. `Flatten` reshapes $(N, C, H, W)$ into
# $(N, C \cdot H \cdot W)$ in C order: channel slowest, then row, then column, so element
# $(c, h, w)$ lands at position $c\,HW + h\,W + w$. Its backward pass is just the reverse
# reshape.

# %%
flatten = nn.Flatten()
t = np.arange(2 * 2 * 3, dtype=np.float32).reshape(1, 2, 2, 3)   # (N, C, H, W) = (1, 2, 2, 3)
flat = flatten.forward(t)                                        # (1, 12)
print("t", t.shape, "-> flat", flat.shape)
print(flat)
c, hh, ww = 1, 0, 2
print(f"t[0, {c}, {hh}, {ww}] = {t[0, c, hh, ww]:g} is at position c*H*W + h*W + w = "
      f"{c * 2 * 3 + hh * 3 + ww}: {flat[0, c * 2 * 3 + hh * 3 + ww]:g}")
print("backward restores the shape:", flatten.backward(np.ones_like(flat)).shape)

# %% [markdown]
# ## 7. Global average pooling
#
# Global average pooling (GAP) averages each channel over *all* positions:
#
# $$y_{n,c} = \frac{1}{HW} \sum_{h=0}^{H-1} \sum_{w=0}^{W-1} x_{n,c,h,w},
# \qquad (N, C, H, W) \to (N, C), \qquad
# \frac{\partial L}{\partial x_{n,c,h,w}} = \frac{1}{HW}\,\frac{\partial L}{\partial y_{n,c}}.$$
#
# Used instead of `Flatten` before the classifier, it (1) needs far fewer weights in the
# next dense layer and (2) works for any image size. Take the MIAS CNN's last feature maps,
# $64 \times 12 \times 12$, and three classes:

# %%
gap = nn.GlobalAvgPool2D()
maps = rng.normal(size=(4, 64, 12, 12)).astype(np.float32)   # (N, C, H, W)
pooled = gap.forward(maps)                                    # (N, C) = (4, 64)
print("GAP:", maps.shape, "->", pooled.shape)
assert np.allclose(pooled, maps.mean(axis=(2, 3)))

head_flatten = nn.Dense(64 * 12 * 12, 3)
head_gap = nn.Dense(64, 3)
print("Flatten + Dense(9216, 3):", sum(p.size for p in head_flatten.parameters()), "parameters")
print("GAP     + Dense(64, 3):  ", sum(p.size for p in head_gap.parameters()), "parameters")

# %% [markdown]
# The same network, with a GAP head, accepts 28x28 and 40x40 images alike; with a
# Flatten head the dense layer's input size is fixed, and nnlite says so:

# %%
def small_cnn(head):
    body = [nn.Conv2D(1, 8, 3, padding="same", seed=3), nn.ReLU(), nn.MaxPool2D(2)]
    return nn.Sequential(body + head)


gap_model = small_cnn([nn.GlobalAvgPool2D(), nn.Dense(8, 3, seed=4)])
flat_model = small_cnn([nn.Flatten(), nn.Dense(8 * 14 * 14, 3, seed=4)])
for size in (28, 40):
    images = rng.normal(size=(2, 1, size, size)).astype(np.float32)
    print(f"{size}x{size}: GAP model ->", gap_model.forward(images).shape)
    try:
        print(f"{size}x{size}: Flatten model ->", flat_model.forward(images).shape)
    except ValueError as err:
        print(f"{size}x{size}: Flatten model fails: {err}")

# %% [markdown]
# ## 8. What pooling does to a picture

# %%
pic = np.zeros((24, 24), dtype=np.float32)
pic[4:20, 4:20] = 1.0
pic[9:15, 9:15] = 0.0
pic += 0.3 * rng.normal(size=pic.shape).astype(np.float32)
p4 = pic.reshape(1, 1, 24, 24)
panels = [(pic, "input 24x24"),
          (nn.MaxPool2D(2).forward(p4)[0, 0], "max 2x2 -> 12x12"),
          (nn.AvgPool2D(2).forward(p4)[0, 0], "average 2x2 -> 12x12"),
          (nn.MaxPool2D(3, stride=2).forward(p4)[0, 0], "max 3x3/2 -> 11x11")]
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (a, title) in zip(axes, panels):
    lk.show(ax, a, title, annotate=False, cmap="gray")
fig.tight_layout()

# %% [markdown]
# Average pooling smooths the noise away; max pooling keeps the strongest response in
# each window (and so also the largest noise values).
#
# ## Summary
#
# * Pooling has no weights; it maps $(N, C, H, W) \to (N, C, O_H, O_W)$ with the
#   convolution's size formula. Max pooling routes the gradient to the maximum, average
#   pooling spreads it evenly; overlapping windows add up their shares.
# * `Flatten` makes $(N, C H W)$ vectors in C order; `GlobalAvgPool2D` makes $(N, C)$,
#   with far fewer weights after it and no fixed input size.
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*.
#
# **Exercise 2.1.** Write the backward pass of max pooling with $f \times f$ windows and
# stride $f$, for one channel: given the input `x` $(H, W)$ and the upstream gradient `dy`
# $(O_H, O_W)$, return `dx` $(H, W)$, which holds each `dy[i, j]` at the position of the
# maximum of window $(i, j)$ and zeros elsewhere. (`np.argmax` and `np.unravel_index` help;
# when $f$ does not divide $H$, the last rows are in no window.)

# %% [exercise 2.1]
def max_pool_backward(x, dy, f):
    """dL/dx of non-overlapping f x f max pooling (stride f) of x (H, W), for dL/dy = dy."""
    # TODO (exercise 2.1): start from dx = np.zeros_like(x); for each window (i, j),
    # find the position of its maximum and put dy[i, j] there
    raise NotImplementedError

# %% [check 2.1]
def library_max_pool_backward(x, dy, f):
    pool = nn.MaxPool2D(f).astype("float64")
    pool.forward(x.reshape(1, 1, *x.shape))
    return pool.backward(dy.reshape(1, 1, *dy.shape))[0, 0]


check_rng = np.random.default_rng(2)
cases = []
for shape, f in [((4, 4), 2), ((6, 9), 3), ((5, 6), 2), ((8, 8), 4)]:
    x_case = check_rng.permutation(np.prod(shape)).reshape(shape).astype(float)   # no ties
    dy_case = check_rng.normal(size=(shape[0] // f, shape[1] // f))
    cases.append((f"a {shape} input with {f}x{f} windows",
                  lambda x_case=x_case, dy_case=dy_case, f=f: max_pool_backward(x_case, dy_case, f),
                  library_max_pool_backward(x_case, dy_case, f)))
lk.check_cases("2.1", cases)

# %% [markdown]
# **Exercise 2.2.** AlexNet's last pooling layer, 3x3 with stride 2, gets 13x13 maps. What
# is the output height? (A number: return it.)

# %% [exercise 2.2]
def alexnet_last_pool_size():
    """The output height of 3x3/2 pooling of a 13x13 map."""
    # TODO (exercise 2.2): return the number
    raise NotImplementedError

# %% [check 2.2]
lk.check("2.2", alexnet_last_pool_size,
         nn.MaxPool2D(3, stride=2).output_shape((256, 13, 13))[1])

# %% [markdown]
# **Exercise 2.3.** Max-pool this 4x4 map with 2x2 windows, by hand (no code): return the
# 2x2 result as a nested list.

# %% [exercise 2.3]
m = np.array([[0, 3, 1, 1],
              [2, 1, 0, 5],
              [4, 4, 2, 2],
              [1, 0, 6, 1]], dtype=np.float32)


def pooled_by_hand():
    """The 2x2 max pooling of m, worked out by hand: [[a, b], [c, d]]."""
    # TODO (exercise 2.3): return [[..., ...], [..., ...]]
    raise NotImplementedError

# %% [check 2.3]
lk.check("2.3", pooled_by_hand, nn.MaxPool2D(2).forward(m.reshape(1, 1, 4, 4))[0, 0])

# %% [markdown]
# **Exercise 2.4.** With 3x3 windows and stride 2 on a 7x7 map, how many windows contain the
# pixel at row 2, column 2?

# %% [exercise 2.4]
def windows_containing_2_2():
    """How many 3x3/2 windows of a 7x7 map contain pixel (2, 2)."""
    # TODO (exercise 2.4): return the number
    raise NotImplementedError

# %% [check 2.4]
pool = nn.AvgPool2D(3, stride=2)
y_ones = pool.forward(np.ones((1, 1, 7, 7), dtype=np.float32))
lk.check("2.4", windows_containing_2_2, 9 * pool.backward(np.ones_like(y_ones))[0, 0, 2, 2])

# %% [markdown]
# **Exercise 2.5.** A network ends with `C` feature maps, then `GlobalAvgPool2D` and a
# dense layer to `K` classes. Write the number of parameters of that dense layer.

# %% [exercise 2.5]
def gap_head_params(C, K):
    """Weights and biases of the Dense layer after global average pooling of C maps."""
    # TODO (exercise 2.5): return the count
    raise NotImplementedError

# %% [check 2.5]
lk.check_cases("2.5", [(f"gap_head_params({C}, {K})", lambda C=C, K=K: gap_head_params(C, K),
                        sum(p.size for p in nn.Dense(C, K).parameters()))
                       for C, K in [(128, 10), (64, 3), (2048, 2), (1, 1)]])
