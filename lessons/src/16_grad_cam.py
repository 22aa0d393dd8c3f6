"""Source of lessons/16_grad_cam.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 16 - Grad-CAM: where did the network look?
#
# A classifier that says "malignant" should be able to say where. **Grad-CAM**
# (gradient-weighted class activation mapping, Selvaraju et al., 2017) answers with a
# heat map over the image, computed from one forward and one backward pass: the
# gradient of the class score with respect to a convolutional layer's feature maps says
# how much each map matters for that class; the maps, weighted by it, show where.
#
# In this lesson: that gradient computed with nnlite's own backward pass (the model's
# recording mode), the Grad-CAM formula written by hand and compared with
# `mammo_demo.gradcam.grad_cam`, the upsampling of the map to the image, and two checks
# that the maps mean something: do they point at the lesion, and do they still point
# there when the network's weights are random (they should not)?
#
# **You need:** lesson 5 (backpropagation through a convolution), lesson 8 (a small CNN
# with `fit`), lesson 11 (upsampling).

# %%
# %matplotlib inline
import sys
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

from mammo_demo.gradcam import grad_cam
from mammo_demo.preprocess import resize

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)

# %% [markdown]
# ## 1. A task with a place in it
#
# 24x24 noisy images. Every image holds a square outline somewhere (a *distractor*: it
# says nothing about the class); class 1 images also hold a small bright disc, the
# "lesion", away from the square. A network that learnt the task must look at the disc,
# not at the square, and Grad-CAM should show it.

# %%
SIZE = 24


def scenes(n, seed):
    """n images (n, 1, SIZE, SIZE), labels (n,) and lesion masks (n, SIZE, SIZE)."""
    data_rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    labels = data_rng.integers(0, 2, n)
    images = data_rng.normal(0, 0.3, (n, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for k in range(n):
        cy, cx = data_rng.integers(4, SIZE - 4, 2)                       # the distractor
        images[k][np.maximum(np.abs(rows - cy), np.abs(cols - cx)) == 3] += 0.8
        if labels[k]:
            for _ in range(50):                                          # a place away from it
                ly, lx = data_rng.uniform(3, SIZE - 3, 2)
                if np.hypot(ly - cy, lx - cx) > 7:
                    break
            masks[k] = np.hypot(rows - ly, cols - lx) <= 2.2
            images[k][masks[k]] += 0.8
    return images[:, None], labels, masks


x_train, y_train, _ = scenes(768, seed=0)
x_test, y_test, m_test = scenes(200, seed=1)


def small_cnn(seed):
    return nn.Sequential([
        nn.Conv2D(1, 8, 3, padding=1, seed=seed), nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(8, 16, 3, padding=1, seed=seed + 1), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dense(16 * 6 * 6, 2, seed=seed + 2)])


model = small_cnn(seed=0)
history = nn.fit(model, x_train, y_train, loss=nn.SoftmaxCrossEntropy(),
                 optimizer=nn.Adam(model.parameters(), lr=3e-3), epochs=8, batch_size=32,
                 validation_data=(x_test, y_test), verbose=0)
print(f"test accuracy {history['val_accuracy'][-1]:.3f}")
LAYER = 4                  # the ReLU after the second convolution: 16 maps of 12x12
print("explained layer:", model.layers[LAYER], "output", model.output_shapes((1, SIZE, SIZE))[LAYER])

# %% [markdown]
# ## 2. The gradient of a class score with respect to a feature map
#
# Let $y^c$ be the logit of class $c$ (before the softmax) and $A^k$ the $k$-th feature
# map of the chosen layer, $h \times w$ values. Backpropagation computes
# $\partial y^c / \partial A^k_{ij}$ for every $k, i, j$ if we start it with the upstream
# gradient $dy$ = **one-hot** in class $c$ (1 for $y^c$, 0 for the other logits): it is
# the chain rule for the scalar $y^c$ itself. nnlite's `Sequential` keeps what we need
# when asked: `model.forward(x, record=True)` stores each top-level layer's output in
# `model.activations`, and the following `model.backward(dy)` stores the gradient with
# respect to each layer's output in `model.gradients` (index $i$ for `model.layers[i]`).
#
# **Exercise 16.1.** Return `(A, dA)`: the output of `model.layers[layer]` for the batch
# `x` and the gradient of $y^c$ (for class `c`, every image) with respect to it, both of
# shape $(N, K, h, w)$. Use evaluation mode (`training=False`). The check verifies `dA`
# by finite differences: it nudges `A` in a random direction and runs the rest of the
# network.

# %% [exercise 16.1]
def score_gradient(model, x, c, layer):
    """(A, dA): layer `layer`'s output and d y^c / d A, each (N, K, h, w)."""
    # TODO (exercise 16.1): forward with record=True, a one-hot dy, backward; read the records
    raise NotImplementedError

# %% [check 16.1]
def prove_score_gradient():
    check_model = small_cnn(seed=30).astype("float64")
    xb = x_test[:3].astype(np.float64)
    for c in (1, 0):
        got = score_gradient(check_model, xb, c, LAYER)
        if not isinstance(got, tuple) or len(got) != 2:
            raise lk.Wrong(f"return the pair (A, dA), got {type(got).__name__}")
        A, dA = (np.asarray(a, dtype=np.float64) for a in got)
        lk.compare(A.shape, (3, *check_model.output_shapes((1, SIZE, SIZE))[LAYER]), "the shape of A")
        lk.compare(dA.shape, A.shape, "the shape of dA")
        tail = nn.Sequential(check_model.layers[LAYER + 1:])             # the rest of the network
        # a random direction, zero where A is 0 (ties of zeros in a max pool have no derivative)
        direction = np.random.default_rng(161 + c).normal(size=A.shape) * (A > 0)
        eps = 1e-6
        change = (tail.forward(A + eps * direction)[:, c] - tail.forward(A - eps * direction)[:, c]) / (2 * eps)
        lk.compare((dA * direction).sum(axis=(1, 2, 3)), change,
                   f"for class {c}: sum(dA * V) against the finite difference of y^c along V",
                   rtol=1e-5, atol=1e-7)


lk.run_check("16.1", prove_score_gradient)

# %% [markdown]
# ## 3. Grad-CAM
#
# Average each map's gradient over its positions: that is the **importance** of map $k$
# for class $c$ (a global average pooling of the gradient),
#
# $$\alpha_k^c = \frac{1}{h\,w} \sum_{i, j} \frac{\partial y^c}{\partial A^k_{ij}},$$
#
# then weight the maps by it, add them up, and keep only what **raises** the score:
#
# $$L^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big) \qquad (h \times w).$$
#
# (When the network is a global average pooling followed by one dense layer, $\alpha_k^c$
# is exactly that layer's weight, and Grad-CAM is the older CAM.)
#
# **Exercise 16.2.** Write $L^c$ for **one** image, from its `A` and `dA` of shape
# $(K, h, w)$. The check compares with `mammo_demo.gradcam.grad_cam` (which then
# resizes the map to the image and scales it to a maximum of 1; the check does the same
# with yours).

# %% [exercise 16.2]
def grad_cam_map(A, dA):
    """L^c (h, w) = ReLU(sum_k alpha_k A_k), alpha_k = mean over (i, j) of dA_k."""
    # TODO (exercise 16.2): alpha per map, weighted sum, ReLU
    raise NotImplementedError

# %% [check 16.2]
def as_heatmap(cam):
    """The library's last steps: bilinear resize to the image, scaled to a maximum of 1."""
    big = np.maximum(resize(np.asarray(cam, dtype=np.float32), (SIZE, SIZE), "bilinear"), 0)
    return big / big.max() if big.max() > 0 else big


def prove_grad_cam_map():
    xb = x_test[:6]
    maps, classes = grad_cam(model, xb, class_index=1, layer=LAYER)
    model.forward(xb, record=True)
    model.backward(np.eye(2, dtype=np.float32)[[1] * len(xb)])           # one-hot dy, class 1
    A, dA = model.activations[LAYER], model.gradients[LAYER]
    model.zero_grad()
    for k in range(len(xb)):
        lk.compare(as_heatmap(grad_cam_map(A[k], dA[k])), maps[k], f"the heat map of test image {k}",
                   rtol=1e-4, atol=1e-5)


lk.run_check("16.2", prove_grad_cam_map)

# %% [markdown]
# The map has the feature maps' resolution, 12x12 here, coarser than the image. To lay
# it over the image, upsample it. Bilinear interpolation (what `grad_cam` uses) gives a
# smooth map; the simplest upsampling repeats each cell.
#
# **Exercise 16.3.** Upsample a 2-D map by an integer `factor` with nearest neighbours
# (each cell becomes a `factor` x `factor` block). The check compares with
# `nn.Upsample2D` (lesson 11).

# %% [exercise 16.3]
def upsample_nearest(cam, factor):
    """(h, w) -> (h * factor, w * factor), each value repeated in a factor x factor block."""
    # TODO (exercise 16.3): repeat along both axes
    raise NotImplementedError

# %% [check 16.3]
check_rng = np.random.default_rng(163)
lk.check_cases("16.3", [(f"upsample_nearest(map {cam.shape}, {f})",
                         lambda cam=cam, f=f: upsample_nearest(cam, f),
                         nn.Upsample2D(f).forward(cam[None, None].astype(np.float32))[0, 0])
                        for cam, f in ((check_rng.random((12, 12)), 2), (check_rng.random((3, 5)), 4),
                                       (check_rng.random((7, 7)), 1))])

# %% [markdown]
# **Exercise 16.4.** Which resolution does Grad-CAM have at each layer? For this
# network (two "same" 3x3 convolutions, each followed by a 2x2 max pooling) and an
# $H \times H$ input, return the map side after the second convolution's ReLU (the layer
# explained here) and after the second pooling, as a pair. The check asks
# `output_shapes` of the convolutional part.

# %% [exercise 16.4]
def cam_sides(H):
    """(side of layer 4's maps, side of layer 5's maps) for an H x H input."""
    # TODO (exercise 16.4): a "same" convolution keeps the size, a 2x2 pooling halves it (floor)
    raise NotImplementedError

# %% [check 16.4]
convolutions = nn.Sequential(model.layers[:6])          # up to the second pooling (no Dense)
lk.check_cases("16.4", [(f"cam_sides({H})", lambda H=H: cam_sides(H),
                         lambda H=H: (convolutions.output_shapes((1, H, H))[4][1],
                                      convolutions.output_shapes((1, H, H))[5][1]))
                        for H in (24, 48, 23, 10)])

# %% [markdown]
# A later layer has more meaning per cell and fewer cells: Grad-CAM on the last
# convolutional layer (the usual choice) is coarse, 7x7 for ResNet50 on a 224x224 image
# (lesson 10, exercise 10.5).
#
# ## 4. Do the maps point at the lesion?
#
# For every test image of class 1, the heat map of class 1 (from `grad_cam`) over the
# image, with the lesion's outline:

# %%
lesion_images = x_test[y_test == 1]
lesion_masks = m_test[y_test == 1]
maps, _ = grad_cam(model, lesion_images, class_index=1, layer=LAYER)
fig, axes = plt.subplots(2, 5, figsize=(11, 4.8))
for k in range(5):
    axes[0, k].imshow(lesion_images[k, 0], cmap="gray")
    axes[0, k].contour(lesion_masks[k], levels=[0.5], colors="C3", linewidths=1)
    axes[0, k].set_title(f"test image {k}")
    axes[1, k].imshow(lesion_images[k, 0], cmap="gray")
    axes[1, k].imshow(maps[k], cmap="jet", alpha=0.45)
    axes[1, k].contour(lesion_masks[k], levels=[0.5], colors="white", linewidths=1)
    axes[1, k].set_title("Grad-CAM, class 1")
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# One number for many images is the **pointing game**: a map "hits" when its hottest
# pixel lies inside the lesion. By chance alone (a random pixel) the hit rate is the
# share of the image the lesion covers. And a sanity check that every saliency method
# should pass (Adebayo et al., "Sanity checks for saliency maps", 2018): the same
# architecture with **random** weights must not point at the lesion, or the map shows
# the image's structure, not what the network learnt.

# %%
def pointing_hit_rate(heatmaps, masks):
    hottest = [np.unravel_index(np.argmax(h), h.shape) for h in heatmaps]
    return float(np.mean([mask[spot] for mask, spot in zip(masks, hottest)]))


random_maps, _ = grad_cam(small_cnn(seed=50), lesion_images, class_index=1, layer=LAYER)
print(f"lesion images: {len(lesion_images)}; the lesion covers {lesion_masks.mean():.1%} of an image")
print(f"pointing game, trained network: {pointing_hit_rate(maps, lesion_masks):.2f}")
print(f"pointing game, random weights:  {pointing_hit_rate(random_maps, lesion_masks):.2f}")

# %% [markdown]
# The trained network's maps point at the lesion far more often than chance. The random
# network's point there much less often, but still more often than chance: even random
# filters respond to a bright blob, so part of any saliency map is the image's own
# structure, not what was learnt. That is why the comparison with random weights
# belongs beside every heat map. The trained maps are not perfect either (a hit
# needs the single hottest pixel inside a disc of a few pixels, and a 12x12 map
# upsampled twice often peaks a pixel or two beside the disc), and they never are: a heat map shows where the evidence for a class
# was found, not why, and not whether the network is right. On mammograms
# (`mammo-demo` draws Grad-CAM for its ROI classifier) that makes it a check on the
# model, never a diagnosis.
#
# ## Summary
#
# * The gradient of a class logit with respect to a layer's feature maps is one
#   backward pass with a one-hot $dy$ (`model.forward(x, record=True)`,
#   `model.gradients`).
# * Grad-CAM: $\alpha_k^c$ = the map-averaged gradient, $L^c = \mathrm{ReLU}(\sum_k
#   \alpha_k^c A^k)$, upsampled to the image.
# * Its resolution is the layer's: coarse for the last convolutional layer.
# * Test the maps: against where the lesion is (the pointing game) and against a network
#   with random weights (the sanity check: part of a map is the image's own structure).
