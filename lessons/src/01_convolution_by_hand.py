"""Source of lessons/01_convolution_by_hand.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 1 - Convolution by hand
#
# A convolutional layer slides a small grid of weights (a *kernel*, or *filter*) over an
# image and, at every position, takes the weighted sum of the pixels underneath. In this
# lesson you will
#
# 1. compute the lecture's 7x7 example with explicit Python loops,
# 2. get exactly the same numbers from `nnlite.Conv2D`,
# 3. add **stride** and **padding** and derive the output-size formula
#    $\lfloor (N - f + 2p)/s \rfloor + 1$,
# 4. see why the mathematics report's $N + f - 1$ is the size of a *different* operation,
# 5. extend the sum to several input channels and several filters.
#
# **You need:** Python and NumPy arrays (indexing, slicing, `shape`). Run the cells from
# top to bottom with Shift+Enter.
#
# **Exercises.** A cell marked `# TODO (exercise 1.k)` is yours to write: it starts as a
# stub that raises `NotImplementedError`. The cell after it checks your code and prints
# *not done yet*, *wrong* (with what differs) or *correct*; until you are done, the
# cells below carry on with nnlite's own version.

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
# ## 1. The operation
#
# For an image $x$ of size $N \times N$ and a kernel $w$ of size $f \times f$, the output
# at row $i$, column $j$ is the sum of the products of the kernel with the patch of the
# image it covers (plus a bias $b$, zero for now):
#
# $$y_{i,j} \;=\; b + \sum_{u=0}^{f-1} \sum_{v=0}^{f-1} w_{u,v}\; x_{i+u,\; j+v}.$$
#
# The kernel is placed only where it fits completely inside the image (a **valid**
# convolution), so $i$ and $j$ run from $0$ to $N - f$: the output is
# $(N - f + 1) \times (N - f + 1)$.
#
# *A word on names.* Strictly, the formula above is a **cross-correlation**: the
# convolution of signal processing flips the kernel, $\sum_{u,v} w_{u,v}\,x_{i-u,\,j-v}$.
# Every deep-learning framework, nnlite included, computes the unflipped sum and calls it
# convolution; since the kernel is learned, the flip changes nothing about what a network
# can learn. Section 3 shows the flip once, and lesson 5 needs it.
#
# The lecture's example: a 7x7 image holding a "T" (ones at $(1,2), (1,3), (1,4)$ and
# $(2,3), \dots, (5,3)$) and a 3x3 kernel whose every row is $[-1, 2, 0]$.

# %%
x = np.zeros((7, 7), dtype=np.float32)
x[1, 2:5] = 1          # the bar of the T: (1,2), (1,3), (1,4)
x[2:6, 3] = 1          # the stem: (2,3), (3,3), (4,3), (5,3)
w = np.array([[-1, 2, 0]] * 3, dtype=np.float32)   # every row is [-1, 2, 0]

print("image x", x.shape)
print(x.astype(int))
print("kernel w", w.shape)
print(w.astype(int))

# %% [markdown]
# ## 2. Loops first
#
# **Exercise 1.1.** Write the valid correlation with four nested loops: two over the
# output positions $(i, j)$, two over the kernel entries $(u, v)$. Nothing is hidden.
# (The image need not be square, nor the kernel.)

# %% [exercise 1.1]
def correlate2d_valid(x, w):
    """Valid 2-D cross-correlation with explicit loops.

    x: (H, W) image, w: (KH, KW) kernel  ->  y: (H - KH + 1, W - KW + 1), with
    y[i, j] = sum_u sum_v w[u, v] * x[i + u, j + v]
    """
    # TODO (exercise 1.1): allocate y (OH, OW) with np.zeros, then loop over i, j (the
    # output positions) and u, v (the kernel entries), and return y
    raise NotImplementedError

# %% [check 1.1]
check_rng = np.random.default_rng(1)
cases = [("the lecture's T image and kernel", lambda: correlate2d_valid(x, w),
          lk.correlate2d_nnlite(x, w))]
for image_shape, kernel_shape in [((5, 6), (2, 3)), ((4, 4), (4, 4)), ((6, 3), (3, 1))]:
    x_case = check_rng.normal(size=image_shape)
    w_case = check_rng.normal(size=kernel_shape)
    cases.append((f"a random {image_shape} image and {kernel_shape} kernel",
                  lambda x_case=x_case, w_case=w_case: correlate2d_valid(x_case, w_case),
                  lk.correlate2d_nnlite(x_case, w_case)))
done = lk.check_cases("1.1", cases)
correlate2d_valid = lk.fallback(done, correlate2d_valid, lk.correlate2d_nnlite,
                                "a version built on nn.Conv2D")

# %%
y = correlate2d_valid(x, w)
print("y = x * w, valid:", x.shape, "->", y.shape)
print(y)

# %% [markdown]
# The lecture's slide gives the result below; your loops must reproduce it exactly (until
# exercise 1.1 is correct, `correlate2d_valid` is nnlite's version, which does).

# %%
lecture_result = np.array([[0, 2, 3, 0, -1],
                           [0, 2, 5, -1, -1],
                           [0, 0, 6, -3, 0],
                           [0, 0, 6, -3, 0],
                           [0, 0, 4, -2, 0]], dtype=np.float32)
assert np.array_equal(y, lecture_result)
print("matches the lecture")

# %% [markdown]
# One output value in detail: $y_{2,2}$ sits on the window $x_{2:5,\,2:5}$ (rows and
# columns 2, 3, 4). Multiply element by element, then add up:

# %%
i, j = 2, 2
window = x[i:i + 3, j:j + 3]
print("window x[2:5, 2:5]:\n", window)
print("w * window:\n", w * window + 0.0)      # + 0.0 prints -0 (from -1 * 0) as 0
print("sum =", (w * window).sum(), "  y[2, 2] =", y[i, j])

# %% [markdown]
# Each row of the kernel computes $2\cdot(\text{centre}) - (\text{left})$, so the kernel
# answers strongly where a pixel is bright and its left neighbour dark: it is a detector
# for the *left edge of a vertical stroke*. The stem of the T gives $3 \times 2 = 6$; the
# right side of the stem gives negative values.
#
# A convolutional layer is followed by a non-linearity, usually the **ReLU**
# $\;\mathrm{relu}(z) = \max(z, 0)$, which keeps the positive evidence and zeroes the
# negative values:

# %%
relu_y = np.maximum(y, 0)
print(relu_y)

fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
lk.show(axes[0], x, "image x (7x7)")
lk.show(axes[1], w, "kernel w (3x3)", cmap="coolwarm")
lk.show(axes[2], y, "feature map y (5x5)", cmap="coolwarm")
lk.show(axes[3], relu_y, "ReLU(y): negatives zeroed")
fig.tight_layout()

# %% [markdown]
# ## 3. The same with `nnlite.Conv2D`
#
# nnlite works on **batches of multi-channel images** in the layout NCHW:
# $x$ has shape $(N, C, H, W)$ = (batch, channels, height, width). A
# `Conv2D(in_channels=C, out_channels=F, kernel_size=f)` holds
#
# * the weights `W` of shape $(F, C, f, f)$: one $C \times f \times f$ kernel per output channel,
# * the bias `b` of shape $(F,)$,
#
# both initialised randomly. We overwrite them with the lecture's kernel and a zero bias.

# %%
conv = nn.Conv2D(in_channels=1, out_channels=1, kernel_size=3, padding="valid")
print(conv)
print("W:", conv.W.shape, conv.W.dtype, "  b:", conv.b.shape)

conv.W.data[...] = w.reshape(1, 1, 3, 3)      # (F, C, KH, KW) = (1, 1, 3, 3)
conv.b.data[...] = 0.0

x4 = x.reshape(1, 1, 7, 7)                    # (N, C, H, W) = (1, 1, 7, 7)
y4 = conv.forward(x4)                         # (N, F, OH, OW) = (1, 1, 5, 5)
r4 = nn.ReLU().forward(y4)                    # same shape
print("x4", x4.shape, "-> conv ->", y4.shape, "-> ReLU ->", r4.shape)
print(y4[0, 0])
assert np.array_equal(y4[0, 0], lecture_result)
assert np.array_equal(r4[0, 0], np.maximum(lecture_result, 0))
print("Conv2D and ReLU agree with the loops")

# %% [markdown]
# **Correlation or convolution?** Flipping the kernel by 180 degrees (both axes) turns
# one into the other. NumPy's `np.convolve` is the flipped, signal-processing kind; in
# one dimension:

# %%
a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
k = np.array([1.0, 0.0, -1.0])
corr = np.array([np.sum(k * a[i:i + 3]) for i in range(3)])   # what Conv2D computes
print("correlation          :", corr)
print("np.convolve, 'valid' :", np.convolve(a, k, mode="valid"))
print("np.convolve, flipped :", np.convolve(a, k[::-1], mode="valid"))

y_flipped = correlate2d_valid(x, w[::-1, ::-1])
print("with the kernel rotated by 180 degrees the T gives a different map:\n", y_flipped)

# %% [markdown]
# ## 4. Stride and padding
#
# **Stride** $s$: the kernel jumps $s$ pixels between placements,
#
# $$y_{i,j} = b + \sum_{u,v} w_{u,v}\, x_{is+u,\; js+v}.$$
#
# The last placement must still fit: $is + f - 1 \le N - 1$, i.e.
# $i \le (N - f)/s$, so there are $\lfloor (N - f)/s \rfloor + 1$ placements per axis.
#
# **Padding** $p$: add $p$ rows and columns of zeros on every side first. The image
# becomes $N + 2p$ wide, and the output size along each axis is
#
# $$\boxed{\;O = \left\lfloor \frac{N - f + 2p}{s} \right\rfloor + 1\;}$$
#
# For $f$ odd and $s = 1$, $p = (f - 1)/2$ keeps the size ($O = N$): "same" padding.

# %%
def correlate2d(x, w, stride=1, padding=0):
    """2-D cross-correlation with stride and zero padding, explicit loops.

    x: (H, W), w: (KH, KW) -> y: (OH, OW) with OH = (H - KH + 2 padding) // stride + 1
    y[i, j] = sum_{u, v} w[u, v] * x_pad[i * stride + u, j * stride + v]
    """
    x_pad = np.pad(x, padding)                # (H + 2p, W + 2p), zeros around
    KH, KW = w.shape
    OH = (x.shape[0] - KH + 2 * padding) // stride + 1
    OW = (x.shape[1] - KW + 2 * padding) // stride + 1
    y = np.zeros((OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            window = x_pad[i * stride:i * stride + KH, j * stride:j * stride + KW]
            y[i, j] = np.sum(w * window)
    return y


print(f"{'N':>3} {'f':>3} {'s':>3} {'p':>3} | {'formula':>7} {'loops':>6} {'Conv2D':>7}")
for N, f, s, p in [(7, 3, 1, 0), (7, 3, 2, 0), (7, 3, 1, 1), (7, 3, 2, 1), (8, 3, 2, 0),
                   (7, 5, 1, 2), (7, 3, 3, 0), (32, 5, 1, 2), (227, 11, 4, 0)]:
    image = np.arange(N * N, dtype=np.float32).reshape(N, N) % 5
    kernel = np.ones((f, f), dtype=np.float32)
    formula = (N - f + 2 * p) // s + 1
    by_loops = correlate2d(image, kernel, stride=s, padding=p)
    layer = nn.Conv2D(1, 1, f, stride=s, padding=p, bias=False)
    layer.W.data[...] = 1.0
    by_layer = layer.forward(image.reshape(1, 1, N, N))[0, 0]
    assert by_loops.shape == by_layer.shape == (formula, formula)
    assert np.allclose(by_loops, by_layer)
    print(f"{N:>3} {f:>3} {s:>3} {p:>3} | {formula:>7} {by_loops.shape[0]:>6} {by_layer.shape[0]:>7}")

# %% [markdown]
# The last row is AlexNet's first layer: a 227x227 image, 11x11 kernels with stride 4,
# gives 55x55 feature maps. Note the floor in $(8 - 3)/2 = 2.5 \to 2$: when the stride
# does not divide $N - f + 2p$, the last rows and columns are never visited.
#
# The T image with stride 2, and with one pixel of padding ("same" size):

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
lk.show(axes[0], correlate2d(x, w), "valid, s=1: 5x5", cmap="coolwarm")
lk.show(axes[1], correlate2d(x, w, stride=2), "s=2: 3x3", cmap="coolwarm")
lk.show(axes[2], correlate2d(x, w, padding=1), "p=1 ('same'): 7x7", cmap="coolwarm")
fig.tight_layout()

# %% [markdown]
# ## 5. A slip in the mathematics report: $N + f - 1$
#
# The CNN mathematics report says that the valid convolution of an $N \times N$ image
# with an $f \times f$ kernel has size $(N + f - 1) \times (N + f - 1)$. For our example
# that is $7 + 3 - 1 = 9$, but we have just computed a **5x5** result:
# $\lfloor (7 - 3 + 0)/1 \rfloor + 1 = 5 = N - f + 1$.
#
# $N + f - 1$ is the size of the **full** convolution, where the kernel may hang over the
# edge as long as it overlaps the image in at least one pixel. That is padding
# $p = f - 1$ on every side, and the general formula agrees:
# $(N - f + 2(f - 1))/1 + 1 = N + f - 1$. The three classic modes, in one dimension:

# %%
for mode in ("valid", "same", "full"):
    n_out = len(np.convolve(np.ones(7), np.ones(3), mode=mode))
    print(f"np.convolve(7 samples, 3 taps, mode={mode!r:8}) has {n_out} outputs")

full = correlate2d(x, w, padding=2)                   # p = f - 1
layer = nn.Conv2D(1, 1, 3, padding=2, bias=False)
layer.W.data[...] = w.reshape(1, 1, 3, 3)
print("full: p = f - 1 = 2 ->", full.shape, "(N + f - 1 = 9);  Conv2D:",
      layer.forward(x4).shape)
print("valid: N - f + 1 =", y.shape[0], "- the size the report should have given")

# %% [markdown]
# The full convolution is not a curiosity: lesson 5 shows that the gradient of the loss
# with respect to a layer's input *is* a full convolution.
#
# ## 6. Several channels, several filters
#
# A colour image has $C = 3$ channels, and a layer learns $F$ filters. Each filter has one
# $f \times f$ slice per input channel, and the sum runs over the channels too:
#
# $$y_{n,k,i,j} = b_k + \sum_{c=0}^{C-1} \sum_{u=0}^{f-1} \sum_{v=0}^{f-1}
#   W_{k,c,u,v}\; x_{n,\,c,\; is+u,\; js+v}$$
#
# Shapes: $x: (N, C, H, W)$, $W: (F, C, f, f)$, $b: (F,)$, $y: (N, F, O_H, O_W)$. The layer
# has $F\,(C f^2 + 1)$ parameters.

# %%
rng = np.random.default_rng(0)
xb = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)        # (N, C, H, W)
conv3 = nn.Conv2D(3, 4, 3, stride=1, padding=1, seed=0)      # W (4, 3, 3, 3), b (4,)
conv3.b.data[...] = rng.normal(size=4).astype(np.float32)
yb = conv3.forward(xb)                                       # (2, 4, 8, 8)

reference = np.zeros_like(yb)
for n in range(2):                       # every image of the batch
    for k in range(4):                   # every filter
        reference[n, k] = conv3.b.data[k] + sum(
            correlate2d(xb[n, c], conv3.W.data[k, c], padding=1) for c in range(3))
print("x", xb.shape, "* W", conv3.W.shape, "->", yb.shape)
print("max |Conv2D - loops| =", np.abs(yb - reference).max())
assert np.allclose(yb, reference, atol=1e-5)
print("parameters:", conv3.W.size + conv3.b.size, "= F (C f^2 + 1) =", 4 * (3 * 9 + 1))

# %% [markdown]
# ## 7. Edge detectors on a picture
#
# Two filters in one layer: a vertical-edge kernel (the Sobel kernel) and its transpose,
# applied to a small synthetic picture. Each output channel is one feature map.

# %%
pic = np.zeros((24, 24), dtype=np.float32)
pic[4:20, 4:20] = 1.0            # a bright square ...
pic[9:15, 9:15] = 0.0            # ... with a hole
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
edges = nn.Conv2D(1, 2, 3, padding="same", bias=False)
edges.W.data[0, 0] = sobel        # responds to left/right (vertical) edges
edges.W.data[1, 0] = sobel.T      # responds to top/bottom (horizontal) edges
maps = edges.forward(pic.reshape(1, 1, 24, 24))
print("picture (1, 1, 24, 24) -> feature maps", maps.shape)

fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
lk.show(axes[0], pic, "input", annotate=False)
lk.show(axes[1], maps[0, 0], "filter 0: vertical edges", annotate=False, cmap="coolwarm")
lk.show(axes[2], maps[0, 1], "filter 1: horizontal edges", annotate=False, cmap="coolwarm")
fig.tight_layout()

# %% [markdown]
# ## Summary
#
# * A convolutional layer computes $y_{i,j} = b + \sum_{u,v} w_{u,v} x_{is+u,\,js+v}$
#   (a cross-correlation), summed over the input channels, once per filter.
# * Output size per axis: $\lfloor (N - f + 2p)/s \rfloor + 1$. Valid: $N - f + 1$;
#   same: $N$; full: $N + f - 1$ (not the valid size, as the report says).
# * `nn.Conv2D(C, F, f, stride, padding)` holds `W` $(F, C, f, f)$ and `b` $(F,)$ and maps
#   $(N, C, H, W)$ to $(N, F, O_H, O_W)$.
#
# ## Exercises
#
# As with exercise 1.1: replace each stub's `raise NotImplementedError` with your code,
# run the cell, then run the check below it.
#
# **Exercise 1.2.** Write the output size along one axis of a convolution (or pooling)
# with input size `N`, kernel size `f`, stride `s` and padding `p`. The check compares it
# with `nn.Conv2D(...).output_shape` on a dozen cases, AlexNet's first layer among them.

# %% [exercise 1.2]
def output_size(N, f, s, p):
    """The number of kernel placements along an axis of N pixels (an int)."""
    # TODO (exercise 1.2): return the output size (mind the floor when s does not divide)
    raise NotImplementedError

# %% [check 1.2]
size_cases = [(64, 5, 2, 1), (7, 3, 1, 0), (7, 3, 2, 0), (8, 3, 2, 0), (7, 3, 3, 0),
              (32, 5, 1, 2), (227, 11, 4, 0), (10, 4, 3, 1), (5, 5, 1, 0), (9, 2, 4, 3)]
lk.check_cases("1.2", [(f"output_size{case}", lambda case=case: output_size(*case),
                        nn.Conv2D(1, 1, case[1], stride=case[2], padding=case[3])
                        .output_shape((1, case[0], case[0]))[1])
                       for case in size_cases])

# %% [markdown]
# **Exercise 1.3.** For an odd kernel size `f` and stride 1, which padding keeps the size
# of the image ("same"), and which gives the *full* convolution, of size $N + f - 1$?
# Return the pair `(p_same, p_full)`.

# %% [exercise 1.3]
def same_and_full_padding(f):
    """(p_same, p_full) for an odd kernel size f and stride 1."""
    # TODO (exercise 1.3): return the two paddings, as a tuple of two ints
    raise NotImplementedError

# %% [check 1.3]
lk.check_cases("1.3", [(f"f = {f} on a 32x32 image: the output sizes with your paddings",
                        lambda f=f: [nn.Conv2D(1, 1, f, padding=p).output_shape((1, 32, 32))[1]
                                     for p in same_and_full_padding(f)],
                        [32, 32 + f - 1])
                       for f in (1, 3, 5, 7)])

# %% [markdown]
# **Exercise 1.4.** How many parameters (weights and biases) has a convolutional layer with
# `C` input channels and `F` filters of size `f` x `f`?

# %% [exercise 1.4]
def conv_params(C, F, f):
    """The number of weights and biases of nn.Conv2D(C, F, f)."""
    # TODO (exercise 1.4): return the count (section 6 has the formula's ingredients)
    raise NotImplementedError

# %% [check 1.4]
lk.check_cases("1.4", [(f"conv_params{case}", lambda case=case: conv_params(*case),
                        sum(p.size for p in nn.Conv2D(*case).parameters()))
                       for case in [(3, 16, 5), (1, 32, 5), (32, 64, 5), (3, 96, 11), (64, 1, 1)]])

# %% [markdown]
# **Exercise 1.5.** A number, by hand. Transpose the lecture's kernel, so that every
# *column* is $[-1, 2, 0]^T$, and correlate it with the T image (valid). What is the output
# at row 0, column 2? (Hint: the window is `x[0:3, 2:5]`; look at its row sums.)

# %% [exercise 1.5]
def transposed_kernel_output():
    """y[0, 2] for the T image and the transposed lecture kernel (a number)."""
    # TODO (exercise 1.5): return the number you worked out by hand
    raise NotImplementedError

# %% [check 1.5]
layer = nn.Conv2D(1, 1, 3, bias=False)
layer.W.data[...] = w.T.reshape(1, 1, 3, 3)
lk.check("1.5", transposed_kernel_output, layer.forward(x4)[0, 0, 0, 2])
