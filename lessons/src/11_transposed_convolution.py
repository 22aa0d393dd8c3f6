"""Source of lessons/11_transposed_convolution.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 11 - Transposed convolution, unpooling, and a first segmentation
#
# A classifier shrinks an image to a few numbers. A **segmentation** network must give
# an answer for every pixel (lesion or not), so after shrinking it has to grow the maps
# back to the image size. Two layers do the growing: the **transposed convolution**
# (sometimes called "deconvolution", although it does not undo a convolution), which
# learns how to upsample, and **max unpooling** (SegNet), which puts each value back
# where a max pooling found it.
#
# In this lesson: a convolution written as a matrix, and the transposed convolution as
# that matrix's transpose (checked against `nn.ConvTranspose2D`); its output size;
# unpooling with a `MaxPool2D`'s indices (`nn.MaxUnpool2D`); the checkerboard artefact
# of overlapping kernels; a small encoder-decoder trained to segment discs in noise,
# scored with IoU, Dice and pixel accuracy (`nn.metrics`).
#
# **You need:** lessons 1 and 2 (correlation, stride, padding, max pooling), lesson 5
# (the input gradient of a convolution is a "full" convolution), a little linear algebra
# (a matrix and its transpose).

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
# ## 1. A convolution is a matrix
#
# A convolution layer is linear in its input: for a fixed kernel, every output pixel is
# a weighted sum of input pixels. Flatten the $H \times W$ input into a vector
# $\mathbf{x}$ of length $HW$ and the $OH \times OW$ output into $\mathbf{y}$; then
# $\mathbf{y} = M\mathbf{x}$ for a matrix $M$ of shape $(OH \cdot OW,\ H W)$. Row $r$ of
# $M$ holds the kernel, laid out where output pixel $r$'s window lies on the input, and
# zeros elsewhere:
#
# $$M[\,i \cdot OW + j,\ (i s + u - p) \cdot W + (j s + v - p)\,] = w[u, v]$$
#
# for every kernel position $(u, v)$ whose input pixel lies inside the image (the zero
# padding contributes nothing).
#
# **Exercise 11.1.** Build $M$ for a single-channel correlation (nnlite's `Conv2D`, lesson
# 1) with kernel `w` of shape $(KH, KW)$, stride `stride` and zero padding `padding`, on an
# $H \times W$ input. The check compares it with the matrix nnlite's `Conv2D` applies
# (found by feeding it each basis image, one pixel set to 1).

# %% [exercise 11.1]
def conv_matrix(w, H, W, stride=1, padding=0):
    """The (OH*OW, H*W) matrix M with conv(x).reshape(-1) == M @ x.reshape(-1)."""
    # TODO (exercise 11.1): allocate zeros, then place w[u, v] for every output pixel
    raise NotImplementedError

# %% [check 11.1]
def conv_layer(w, stride, padding):
    """A one-channel nn.Conv2D without bias, in float64, holding the kernel w."""
    layer = nn.Conv2D(1, 1, w.shape, stride=stride, padding=padding, bias=False).astype("float64")
    layer.W.data = np.asarray(w, dtype=np.float64).reshape(1, 1, *w.shape)
    return layer


def matrix_of_nnlite_conv(w, H, W, stride=1, padding=0):
    """Column k of M is the (flattened) output for the basis image with pixel k set to 1."""
    basis = np.eye(H * W).reshape(H * W, 1, H, W)                  # (H*W, 1, H, W): N = H*W images
    outputs = conv_layer(w, stride, padding).forward(basis)        # (H*W, 1, OH, OW)
    return outputs.reshape(H * W, -1).T                            # (OH*OW, H*W)


kernel = np.arange(1.0, 10.0).reshape(3, 3)                        # 1..9: every entry differs
done = lk.check_cases("11.1", [
    (f"conv_matrix(kernel {k.shape}, {H}, {W}, stride={s}, padding={p})",
     lambda k=k, H=H, W=W, s=s, p=p: conv_matrix(k, H, W, s, p),
     lambda k=k, H=H, W=W, s=s, p=p: matrix_of_nnlite_conv(k, H, W, s, p))
    for k, H, W, s, p in ((kernel, 4, 4, 1, 0), (kernel, 5, 5, 2, 1), (kernel[:2], 4, 5, 1, 1),
                          (kernel, 6, 4, 2, 0))])
conv_matrix = lk.fallback(done, conv_matrix, matrix_of_nnlite_conv, "nnlite's Conv2D, probed "
                          "with basis images")

# %% [markdown]
# Here is $M$ for the 3x3 kernel 1..9 on a 4x4 input (stride 1, no padding): 4 outputs,
# 16 inputs. Each row is the kernel, unrolled and shifted:

# %%
M = conv_matrix(kernel, 4, 4)
fig, ax = plt.subplots(figsize=(10, 3))
lk.show(ax, M, "M: valid 3x3 correlation of a 4x4 input (rows: outputs, columns: inputs)",
        cmap="Blues", xlabel="input pixel (row-major)", ylabel="output pixel")
fig.tight_layout()

# %% [markdown]
# ## 2. The transposed convolution applies $M^T$
#
# $M$ maps $HW$ inputs to $OH \cdot OW$ outputs; its transpose $M^T$ maps back the other
# way, from the small grid to the large one. That is the **transposed convolution**:
# `nn.ConvTranspose2D` with the same kernel, stride and padding computes $M^T \mathbf{z}$.
# It is *not* the inverse ($M^T M \ne I$): it restores the shape, not the values. And it
# is exactly what the backward pass of a convolution does to $dy$ (lesson 5):
# $dx = M^T dy$. Check it on the strided, padded case (5x5 input, stride 2, padding 1,
# so a 3x3 output):

# %%
M = conv_matrix(kernel, 5, 5, stride=2, padding=1)                 # (9, 25)
z = np.random.default_rng(0).normal(size=(3, 3))                   # a small 3x3 map
transpose = nn.ConvTranspose2D(1, 1, 3, stride=2, padding=1, bias=False).astype("float64")
transpose.W.data = kernel.reshape(1, 1, 3, 3).copy()               # the same W array layout
up = transpose.forward(z.reshape(1, 1, 3, 3))[0, 0]                # (5, 5)
print("ConvTranspose2D output shape:", up.shape)
print("largest |ConvTranspose2D(z) - M^T z| =", np.abs(up.reshape(-1) - M.T @ z.reshape(-1)).max())
conv = conv_layer(kernel, 2, 1)
conv.forward(np.zeros((1, 1, 5, 5)))
dx = conv.backward(z.reshape(1, 1, 3, 3))[0, 0]
print("largest |Conv2D.backward(z) - ConvTranspose2D(z)| =", np.abs(dx - up).max())

# %% [markdown]
# Read the transposed convolution as a **scatter**: each input pixel $z[h, w]$ stamps a
# copy of the kernel, scaled by $z[h, w]$, onto the output at rows $hs \ldots hs + KH - 1$
# and columns $ws \ldots ws + KW - 1$; where stamps overlap they add up; finally $p$ rows
# and columns are cropped from each side:
#
# $$y_{\text{full}}[h s + u,\ w s + v] \mathrel{+}= z[h, w]\; w[u, v], \qquad
#   y = y_{\text{full}}[p : p + OH,\ p : p + OW].$$
#
# (The convolution *gathers* a window into one output; its transpose *scatters* one
# input into a window.)
#
# **Exercise 11.2.** Write the transposed convolution of a single-channel map `x` $(H,
# W)$ with kernel `w` $(KH, KW)$ and stride `stride`, without padding, as loops over the
# input pixels: return $y_{\text{full}}$ of shape $((H - 1)s + KH,\ (W - 1)s + KW)$. The
# check compares with `nn.ConvTranspose2D`.

# %% [exercise 11.2]
def conv_transpose_loops(x, w, stride=1):
    """y_full[h*s + u, w*s + v] += x[h, w] * w[u, v]: the scatter, no padding."""
    # TODO (exercise 11.2): allocate the output, then loop over x's pixels
    raise NotImplementedError

# %% [check 11.2]
def nnlite_conv_transpose(x, w, stride):
    layer = nn.ConvTranspose2D(1, 1, w.shape, stride=stride, bias=False).astype("float64")
    layer.W.data = np.asarray(w, dtype=np.float64).reshape(1, 1, *w.shape)
    return layer.forward(np.asarray(x, dtype=np.float64).reshape(1, 1, *x.shape))[0, 0]


check_rng = np.random.default_rng(112)
lk.check_cases("11.2", [
    (f"conv_transpose_loops(x {x.shape}, w {w.shape}, stride={s})",
     lambda x=x, w=w, s=s: conv_transpose_loops(x, w, s), lambda x=x, w=w, s=s: nnlite_conv_transpose(x, w, s))
    for x, w, s in ((check_rng.normal(size=(2, 2)), kernel, 1),
                    (check_rng.normal(size=(3, 2)), kernel, 2),
                    (check_rng.normal(size=(2, 3)), kernel[:, :2], 3),
                    (check_rng.normal(size=(3, 3)), check_rng.normal(size=(2, 2)), 2))])

# %% [markdown]
# ### Its output size
#
# Invert the convolution's $O = \lfloor (N - f + 2p)/s \rfloor + 1$ for $N$: the
# transposed convolution gives $O_T = (H - 1)s - 2p + f$. Because of the floor, a strided
# convolution sends several input sizes to one output size (stride 2, kernel 3, padding
# 1: both 7x7 and 8x8 give 4x4); `output_padding` $\in [0, s)$ adds rows at the bottom and
# columns at the right to say which one to restore:
#
# $$O_T = (H - 1)\,s - 2p + f + \text{output\_padding}.$$
#
# **Exercise 11.3.** Write it. The check asks `nn.ConvTranspose2D(...).output_shape`.

# %% [exercise 11.3]
def transpose_output_size(H, f, s, p, output_padding=0):
    """The output size of a transposed convolution along one axis."""
    # TODO (exercise 11.3): return the formula
    raise NotImplementedError

# %% [check 11.3]
lk.check_cases("11.3", [
    (f"transpose_output_size{case}", lambda case=case: transpose_output_size(*case),
     lambda case=case: nn.ConvTranspose2D(1, 1, case[1], stride=case[2], padding=case[3],
                                          output_padding=case[4]).output_shape((1, case[0], case[0]))[1])
    for case in ((4, 3, 2, 1, 0), (4, 3, 2, 1, 1), (8, 2, 2, 0, 0), (5, 4, 2, 1, 0), (7, 5, 3, 2, 2),
                 (3, 3, 1, 0, 0))])

# %% [markdown]
# ## 3. Unpooling with the pool's indices
#
# A transposed convolution learns where to put things. **Max unpooling** knows: the
# encoder's `MaxPool2D` remembers which pixel of each window was the maximum
# (`pool.indices`: the flat index $h \cdot W + w$ in the input plane, PyTorch's
# convention), and `nn.MaxUnpool2D(pool)` writes each value of its (small) input back at
# that position of a zero map. Boundaries found by the encoder come back at the right
# pixel, which is why SegNet uses it.

# %%
image = np.random.default_rng(3).integers(0, 10, size=(1, 1, 4, 4)).astype(np.float32)
pool = nn.MaxPool2D(2, name="pool")
pooled = pool.forward(image)
unpool = nn.MaxUnpool2D(pool)
restored = unpool.forward(pooled)
print("indices:\n", pool.indices[0, 0])
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
lk.show(axes[0], image[0, 0], "input 4x4")
lk.show(axes[1], pooled[0, 0], "MaxPool2D(2): 2x2")
lk.show(axes[2], restored[0, 0], "MaxUnpool2D: each max back in place")
fig.tight_layout()

# %% [markdown]
# **Exercise 11.4.** Write max unpooling for one plane: `x` of shape $(OH, OW)$, the
# pool's `indices` of the same shape (flat indices into the $H \times W$ input plane),
# and the plane's size. Return the $(H, W)$ map with `x[i, j]` at flat position
# `indices[i, j]` and zeros everywhere else. The check compares with `nn.MaxUnpool2D`.

# %% [exercise 11.4]
def max_unpool(x, indices, H, W):
    """Scatter x (OH, OW) to the flat positions `indices` of a zero (H, W) map."""
    # TODO (exercise 11.4): return the (H, W) map
    raise NotImplementedError

# %% [check 11.4]
def unpool_cases():
    check_rng = np.random.default_rng(114)
    cases = []
    for H, W, k in ((4, 4, 2), (6, 8, 2), (6, 6, 3)):
        pool_k = nn.MaxPool2D(k).astype("float64")
        plane = check_rng.permutation(H * W).reshape(1, 1, H, W).astype(np.float64)   # no ties
        small = pool_k.forward(plane) * 10 + 1                     # other values than the maxima
        expected = nn.MaxUnpool2D(pool_k).forward(small)[0, 0]
        cases.append((f"max_unpool on a {H}x{W} plane pooled {k}x{k}",
                      lambda s=small[0, 0], i=pool_k.indices[0, 0].copy(), H=H, W=W:
                      max_unpool(s, i, H, W), expected))
    return cases


lk.check_cases("11.4", unpool_cases())

# %% [markdown]
# ## 4. The checkerboard artefact
#
# When the kernel size is not a multiple of the stride, neighbouring stamps of a
# transposed convolution overlap unevenly: some output pixels receive two or four
# stamps, others one (Odena et al., "Deconvolution and checkerboard artifacts", 2016).
# Even a **constant** input then gives a patterned output. Here is kernel 3 against
# kernel 2, both with stride 2 and every weight 1, on a constant 4x4 input:

# %%
def upsample_constant(kernel_size, stride=2, size=4):
    layer = nn.ConvTranspose2D(1, 1, kernel_size, stride=stride, bias=False).astype("float64")
    layer.W.data = np.ones((1, 1, kernel_size, kernel_size))
    return layer.forward(np.ones((1, 1, size, size)))[0, 0]


fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
lk.show(axes[0], upsample_constant(3), "kernel 3, stride 2: a checkerboard", cmap="viridis")
lk.show(axes[1], upsample_constant(2), "kernel 2, stride 2: even", cmap="viridis")
fig.tight_layout()

# %% [markdown]
# A trained network can learn weights that hide the pattern, but it tends to come back in
# its outputs as a faint grid. The usual cures: a kernel size divisible by the stride
# (2/2, 4/2), or a fixed upsampling (`nn.Upsample2D`, or unpooling) followed by an
# ordinary convolution.
#
# **Exercise 11.5.** Away from the border (rows and columns 1 to $OH - 2$), which distinct
# values does the kernel-3 output above take? Work them out by counting how many stamps
# cover a pixel along one axis, then in two dimensions. Return them sorted, as a tuple.

# %% [exercise 11.5]
def checkerboard_levels():
    """The sorted distinct values inside the kernel-3, stride-2 output of a constant input."""
    # TODO (exercise 11.5): return a tuple of numbers, smallest first
    raise NotImplementedError

# %% [check 11.5]
lk.check("11.5", lambda: np.asarray(checkerboard_levels(), dtype=float),
         lambda: np.unique(upsample_constant(3)[1:-1, 1:-1]))

# %% [markdown]
# ## 5. A first segmentation: discs in noise
#
# Sixteen-by-sixteen images, each with one bright disc (radius 2 to 4 pixels) in Gaussian
# noise; the target is the disc's mask. About one pixel in nine belongs to a disc. The
# network is the smallest encoder-decoder: two 3x3 convolutions with a 2x2 max pooling
# between them (16x16 to 8x8), an upsampling back to 16x16, and a 3x3 convolution to one
# logit per pixel. Two versions differ only in the upsampling: a learnt
# `ConvTranspose2D(8, 8, 2, stride=2)` (kernel divisible by the stride), or
# `MaxUnpool2D` with the encoder's pool. The loss is `nn.BCEDice` (per-pixel binary
# cross-entropy plus soft Dice, on logits; `nn.mask_losses`), the optimizer Adam.

# %%
def disc_images(n, seed, size=16):
    data_rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    cy, cx = data_rng.uniform(4, size - 4, n), data_rng.uniform(4, size - 4, n)
    radius = data_rng.uniform(2, 4, n)
    masks = ((rows - cy[:, None, None]) ** 2 + (cols - cx[:, None, None]) ** 2
             <= radius[:, None, None] ** 2)                                     # (n, H, W) bool
    images = 0.6 * masks + data_rng.normal(0.0, 0.3, size=masks.shape)
    return images[:, None].astype(np.float32), masks[:, None].astype(np.float32)  # (n, 1, H, W)


x_train, m_train = disc_images(256, seed=0)
x_test, m_test = disc_images(64, seed=1)
print(f"disc pixels: {m_train.mean():.1%} of the training pixels")


def encoder_decoder(upsampling):
    pool = nn.MaxPool2D(2, name="pool")
    if upsampling == "ConvTranspose2D":
        up = [nn.ConvTranspose2D(8, 8, 2, stride=2, seed=3), nn.ReLU()]
    else:
        up = [nn.MaxUnpool2D(pool)]
    return nn.Sequential([nn.Conv2D(1, 8, 3, padding=1, seed=1), nn.ReLU(), pool,
                          nn.Conv2D(8, 8, 3, padding=1, seed=2), nn.ReLU(), *up,
                          nn.Conv2D(8, 1, 3, padding=1, seed=4)])


predictions = {}
for upsampling in ("ConvTranspose2D", "MaxUnpool2D"):
    model = encoder_decoder(upsampling)
    start = time.process_time()
    nn.fit(model, x_train, m_train, loss=nn.BCEDice(), optimizer=nn.Adam(model.parameters(), lr=1e-2),
           epochs=15, batch_size=16, verbose=0)
    predictions[upsampling] = model.forward(x_test) > 0                         # logit > 0: p > 0.5
    print(f"{upsampling:<16} trained in {time.process_time() - start:.1f} s CPU")

# %% [markdown]
# ### Scoring a segmentation
#
# With $A$ the predicted pixels and $B$ the true ones:
#
# * **IoU** (intersection over union, Jaccard): $|A \cap B| / |A \cup B|$;
# * **Dice** (the F1 score of the disc pixels): $2|A \cap B| / (|A| + |B|) =
#   2\,\mathrm{IoU}/(1 + \mathrm{IoU})$;
# * **pixel accuracy**: the fraction of pixels labelled right, background included.
#
# When both masks are empty, IoU and Dice are $0/0$; nnlite (and this exercise) scores
# that as 1.0: the prediction agrees perfectly.
#
# **Exercise 11.6.** Write all three for two binary masks of any (equal) shape. The check
# compares with `nn.metrics.iou`, `nn.metrics.dice` and `nn.metrics.pixel_accuracy`.

# %% [exercise 11.6]
def segmentation_metrics(pred, true):
    """(IoU, Dice, pixel accuracy) of two boolean masks of the same shape."""
    # TODO (exercise 11.6): count the intersection, the union and the sizes
    raise NotImplementedError

# %% [check 11.6]
def metric_cases():
    check_rng = np.random.default_rng(116)
    pairs = [(check_rng.random((8, 8)) < 0.3, check_rng.random((8, 8)) < 0.3),
             (predictions["MaxUnpool2D"], m_test > 0.5),
             (np.zeros((4, 4), bool), np.eye(4, dtype=bool)),
             (np.zeros((3, 5), bool), np.zeros((3, 5), bool))]
    return [(f"segmentation_metrics on masks of shape {a.shape} (case {k + 1})",
             lambda a=a, b=b: segmentation_metrics(a, b),
             (nn.metrics.iou(a, b), nn.metrics.dice(a, b), nn.metrics.pixel_accuracy(a, b)))
            for k, (a, b) in enumerate(pairs)]


lk.check_cases("11.6", metric_cases())

# %% [markdown]
# The test scores of both networks, beside the **trivial** segmentation that says
# "background" everywhere:

# %%
truth = m_test > 0.5
rows = dict(predictions, **{"all background": np.zeros_like(truth)})
print(f"{'':<16} {'IoU':>6} {'Dice':>6} {'pixel accuracy':>15}")
for name, pred in rows.items():
    print(f"{name:<16} {nn.metrics.iou(pred, truth):6.3f} {nn.metrics.dice(pred, truth):6.3f} "
          f"{nn.metrics.pixel_accuracy(pred, truth):15.3f}")

fig, axes = plt.subplots(3, 4, figsize=(9, 7))
for col in range(4):
    for row, (title, a) in enumerate((("image", x_test[col, 0]), ("true mask", m_test[col, 0]),
                                      ("MaxUnpool2D net", predictions["MaxUnpool2D"][col, 0]))):
        axes[row, col].imshow(a, cmap="gray")
        axes[row, col].set_title(title)
        axes[row, col].axis("off")
fig.tight_layout()

# %% [markdown]
# The trivial answer scores a pixel accuracy of about 0.88, because nine pixels in ten are
# background, and an IoU and Dice of 0. Pixel accuracy rewards the majority class;
# IoU and Dice look only at the object. That is why lesion segmentation (`mammo-demo
# segment`, where a lesion is a few per cent of a patch) reports IoU and Dice first.
#
# ## Summary
#
# * A convolution is a matrix $M$ (sparse, the kernel repeated along its rows); the
#   transposed convolution multiplies by $M^T$: it maps the small grid back to the large
#   one, and it is also the convolution's backward pass.
# * As a loop, the transposed convolution scatters a scaled kernel per input pixel;
#   output size $(H - 1)s - 2p + f + \text{output\_padding}$.
# * Max unpooling writes each value back where the encoder's pool found the maximum.
# * A kernel size not divisible by the stride overlaps unevenly: a checkerboard, even on
#   a constant input.
# * Segmentation is scored by IoU and Dice (the object) more than by pixel accuracy (the
#   majority class).
