"""Source of lessons/14_whole_mammogram.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 14 - The whole-mammogram pipeline
#
# The networks of the earlier lessons took small patches. A whole mammogram is a film
# of several thousand pixels a side, stored as a DICOM file, with the breast on one side,
# black background, and things that are not breast: bright film borders, burned-in
# labels (`RMLO`), lead markers. Before a network sees it, the film must be read
# correctly, cut to the breast, turned so that every breast faces the same way, and
# shrunk to the network's input size (224x224 for the thesis' AlexNet and ResNet).
#
# In this lesson: DICOM pixel data and the tags that matter (bits, photometric
# interpretation, laterality, view); Otsu's threshold derived and written by hand; why
# a single global threshold fails on a film with bright borders, and what
# `mammo_demo.whole.preprocess` does about it; the crop, flip and resize.
#
# **You need:** NumPy (histograms, boolean masks), lesson 13 for why a reliable input
# matters. The films here are synthetic phantoms (`mammo_demo`'s generator), a few
# hundred pixels a side so that everything runs in seconds.

# %%
# %matplotlib inline
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import pydicom
import nnlite as nn

from mammo_demo import dicom
from mammo_demo.whole import phantom

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)
whole = importlib.import_module("mammo_demo.whole.preprocess")   # the module (the package's
                                                                 # `preprocess` is its function)
work_dir = Path(tempfile.mkdtemp(prefix="lesson14_"))            # the lesson's DICOM files


def show_film(ax, img, title, factor=2):
    """Show a film at 1/factor resolution (keeps the stored notebook small), in film pixels."""
    height, width = img.shape
    ax.imshow(whole.downscale(img, factor), cmap="gray", interpolation="nearest",
              extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    ax.set_title(title)
    ax.axis("off")

# %% [markdown]
# ## 1. A film, and its DICOM file
#
# A phantom film: a right breast in the medio-lateral oblique (MLO) view, with bright
# film borders along the chest-wall side, the top and the bottom, a burned-in label and
# a lead marker, values in $[0, 1]$ with tissue bright.

# %%
film, _, truth = phantom.render_film(
    np.random.default_rng(4), (480, 384), "R", "MLO", 2, [],
    dict(borders=("chest", "top", "bottom"), edges=[], label=True, markers=1))
print("film", film.shape, film.dtype, " true breast box (top, bottom, left, right):",
      truth["breast_box"])

# %% [markdown]
# A DICOM file stores **integers** (`PixelData`) and the tags that say how to read
# them. The ones a mammography pipeline must look at:
#
# | tag | meaning |
# |---|---|
# | `Rows`, `Columns` | the image size |
# | `BitsStored` | how many bits the values use: 12 bits gives 0..4095, 16 bits 0..65535 |
# | `PhotometricInterpretation` | `MONOCHROME2`: 0 is black; `MONOCHROME1`: 0 is **white** (invert it) |
# | `RescaleSlope`, `RescaleIntercept` | stored value to physical value, when present |
# | `WindowCenter`, `WindowWidth` (or a VOI LUT) | the display range, when present |
# | `ImageLaterality` (or `Laterality`) | `L` or `R`: which breast |
# | `ViewPosition` | `CC` (from above) or `MLO` (oblique) |
#
# Write the film as a 12-bit `MONOCHROME1` file (tissue stored dark, as some scanners
# do) and read the tags back with pydicom:

# %%
stored = np.round((1.0 - film) * 4095).astype(np.uint16)           # MONOCHROME1: inverted
path = dicom.write_dicom(work_dir / "film.dcm", stored, bits_stored=12, photometric="MONOCHROME1",
                         laterality="R", view="MLO", patient_id="PHANTOM-0004")
ds = pydicom.dcmread(path)
for keyword in ("Rows", "Columns", "BitsStored", "BitsAllocated", "PhotometricInterpretation",
                "ImageLaterality", "ViewPosition", "PatientID"):
    print(f"{keyword:<26} {ds.get(keyword)}")
print("pixel_array:", ds.pixel_array.dtype, ds.pixel_array.shape, "values",
      ds.pixel_array.min(), "..", ds.pixel_array.max())

# %% [markdown]
# **Exercise 14.1.** Turn stored values into display values in $[0, 1]$ with tissue
# bright, for a file without rescale or window tags: divide by the largest value
# `BitsStored` bits can hold, and invert (`1 - v`) for `MONOCHROME1`. The check writes
# DICOM files and compares with `mammo_demo.dicom.read_dicom`, the pipeline's reader.

# %% [exercise 14.1]
def stored_to_display(stored, bits, photometric):
    """Stored integers -> float values in [0, 1], tissue bright."""
    # TODO (exercise 14.1): scale by the largest stored value; invert MONOCHROME1
    raise NotImplementedError

# %% [check 14.1]
def display_cases():
    check_rng = np.random.default_rng(141)
    cases = []
    for bits, photometric in ((12, "MONOCHROME1"), (16, "MONOCHROME2"), (10, "MONOCHROME2"),
                              (16, "MONOCHROME1")):
        values = check_rng.integers(0, 2 ** bits, size=(6, 5)).astype(np.uint16)
        file = dicom.write_dicom(work_dir / f"check_{bits}_{photometric}.dcm", values,
                                 bits_stored=bits, photometric=photometric)
        cases.append((f"stored_to_display({bits} bits, {photometric})",
                      lambda v=values, b=bits, p=photometric: stored_to_display(v, b, p),
                      dicom.read_dicom(file).pixels))
    return cases


lk.check_cases("14.1", display_cases(), rtol=1e-6, atol=1e-6)

# %%
image = dicom.read_dicom(path)
fig, axes = plt.subplots(1, 2, figsize=(6, 3.8))
show_film(axes[0], ds.pixel_array.astype(np.float32), "stored values (MONOCHROME1)")
show_film(axes[1], image.pixels, f"read_dicom: {image.laterality} {image.view}, tissue bright")
fig.tight_layout()

# %% [markdown]
# Forget the inversion and every film of that scanner comes out as a negative; forget
# `BitsStored` (divide a 12-bit image by 65535) and it comes out almost black. Both
# happen silently: the network then learns from broken inputs.
#
# ## 2. Otsu's threshold
#
# To find the breast, separate bright (tissue) from dark (background) pixels with a
# threshold $t$. Otsu's method chooses $t$ from the histogram alone. With bin
# probabilities $p_i$ and bin centres $v_i$, a threshold after bin $k$ makes two classes,
# of probabilities and means
#
# $$w_0 = \sum_{i \le k} p_i,\quad w_1 = 1 - w_0,\qquad
#   \mu_0 = \frac{1}{w_0}\sum_{i \le k} p_i v_i,\quad \mu_1 = \frac{1}{w_1}\sum_{i > k} p_i v_i .$$
#
# The total variance splits into the variance *within* the classes and the variance
# *between* them, $\sigma_T^2 = \sigma_W^2 + \sigma_B^2$, with
#
# $$\sigma_B^2(k) = w_0\,(\mu_0 - \mu_T)^2 + w_1\,(\mu_1 - \mu_T)^2 = w_0\, w_1\,(\mu_0 - \mu_1)^2$$
#
# ($\mu_T = w_0\mu_0 + w_1\mu_1$, the mean of all). $\sigma_T^2$ does not depend on $k$, so
# the $k$ that makes the classes tightest (smallest $\sigma_W^2$) is the one that
# maximises $\sigma_B^2$: Otsu's threshold. The threshold value is the upper edge of bin
# $k$: pixels above it are foreground.
#
# **Exercise 14.2.** Write Otsu's threshold with an explicit loop over $k$. Histogram the
# values with `np.histogram(values, bins=bins, range=(values.min(), values.max()))`;
# skip a $k$ whose class 0 or class 1 is empty; where several $k$ reach the maximum
# (within a relative $10^{-9}$: empty bins between two modes give a plateau) take the
# middle one, `best[len(best) // 2]`. Return `edges[k + 1]`. The check compares with
# `mammo_demo.whole.preprocess.otsu_threshold`, which does the same with cumulative sums.

# %% [exercise 14.2]
def otsu(values, bins=256):
    """Otsu's threshold of an array of values: the k maximising w0 w1 (mu0 - mu1)^2."""
    # TODO (exercise 14.2): histogram, loop over k, keep the best; return edges[k + 1]
    raise NotImplementedError

# %% [check 14.2]
def otsu_cases():
    check_rng = np.random.default_rng(142)
    mixture = np.r_[check_rng.normal(0.2, 0.05, 3000), check_rng.normal(0.6, 0.1, 1000)]
    return [(f"otsu({what})", lambda v=v, b=b: otsu(v, b), lambda v=v, b=b: whole.otsu_threshold(v, b))
            for what, v, b in (("two overlapping normal modes", mixture, 256),
                               ("the same, 32 bins", mixture, 32),
                               ("the blurred film", whole.gaussian_blur(image.pixels, 1.0), 256),
                               ("uniform noise", check_rng.random(500), 64))]


done = lk.check_cases("14.2", otsu_cases())
otsu = lk.fallback(done, otsu, whole.otsu_threshold, "mammo_demo's otsu_threshold")

# %% [markdown]
# ## 3. Why one global threshold fails on a real film
#
# The thesis' crop: blur, threshold with Otsu, keep the largest connected component, cut
# its bounding box. On this film the bright borders are above the threshold too, they
# touch the breast along the chest wall, and so the largest component is breast **plus
# borders**, and its box is the whole film.
#
# **Exercise 14.3.** The bounding box of a mask: `(top, bottom, left, right)` of its
# `True` pixels, with `bottom` and `right` **exclusive** (so that `image[top:bottom,
# left:right]` is the crop), or `None` for an empty mask. The check compares with
# `mammo_demo.whole.preprocess.bounding_box`.

# %% [exercise 14.3]
def bounding_box(mask):
    """(top, bottom, left, right) of the True pixels, bottom and right exclusive; None if empty."""
    # TODO (exercise 14.3): which rows and columns hold a True pixel?
    raise NotImplementedError

# %% [check 14.3]
def box_cases():
    check_rng = np.random.default_rng(143)
    masks = [check_rng.random((7, 9)) < 0.05, np.zeros((4, 4), bool), np.eye(5, dtype=bool)[::-1]]
    single = np.zeros((6, 8), bool)
    single[5, 7] = True                                   # the last pixel: exclusive ends
    masks.append(single)
    cases = []
    for k, mask in enumerate(masks):
        want = whole.bounding_box(mask)
        cases.append((f"bounding_box(mask {k + 1} of shape {mask.shape})",
                      lambda m=mask: (lambda b: np.nan if b is None else b)(bounding_box(m)),
                      np.nan if want is None else want))
    return cases


def prove_boxes():
    for description, attempt, expected in box_cases():
        got = attempt()
        if np.isscalar(expected) and np.isnan(expected):
            if not (np.isscalar(got) and np.isnan(got)):
                raise lk.Wrong(f"for {description}: an empty mask must give None, got {got!r}")
            continue
        lk.compare(got, expected, f"for {description}: your answer")


done = lk.run_check("14.3", prove_boxes)
bounding_box = lk.fallback(done, bounding_box, whole.bounding_box, "mammo_demo's bounding_box")

# %%
blurred = whole.gaussian_blur(image.pixels, 1.0)
t = otsu(blurred)
component, _, count = whole.largest_component(blurred > t)
plain_box = bounding_box(component)
print(f"Otsu threshold {t:.3f}: {count} components; box of the largest {plain_box} "
      f"(the film is {image.pixels.shape})")
x, record = whole.preprocess(path, method="crop", size=224)
print(f"mammo_demo.whole.preprocess: box {record.box}, side {record.side} (from the "
      f"{record.side_source}), borders found {record.borders}, flipped {record.flipped}")
print(f"true breast box                {tuple(truth['breast_box'])}")

fig, axes = plt.subplots(1, 3, figsize=(10, 4))
show_film(axes[0], (blurred > t).astype(np.float32), "global Otsu mask")
show_film(axes[1], image.pixels, "the two boxes")
for (top, bottom, left, right), colour, label in ((plain_box, "C1", "largest component"),
                                                  (record.box, "C2", "preprocess crop")):
    axes[1].add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                    fill=False, color=colour, lw=2, label=label))
axes[1].legend(loc="lower left")
show_film(axes[2], x[0], "network input: 224x224")
fig.tight_layout()

# %% [markdown]
# `preprocess` (read its module docstring) fixes what breaks: it finds **film borders**
# on the mask (bands along an edge in which almost every line is above threshold) and
# removes them before labelling, so the label and the markers become separate small
# components and only the breast is the largest; it lowers the threshold from Otsu's
# toward the background so that the faint **skin line** stays inside the crop; and it
# **pads** a tall crop to a square instead of squashing it. The plain rule
# (`threshold="otsu"`) loses tissue at the skin line even once the borders are gone:

# %%
_, plain_record = whole.preprocess(path, method="crop", size=224, threshold="otsu")
print(f"crop with the plain Otsu threshold: box {plain_record.box}, width "
      f"{plain_record.box[3] - plain_record.box[2]} px against the true "
      f"{truth['breast_box'][3] - truth['breast_box'][2]} px")

# %% [markdown]
# ## 4. Which side? Flip, then resize
#
# A network learns faster when every breast faces the same way: the pipeline mirrors
# right breasts so that the chest wall is on the left. The side comes from the
# `ImageLaterality` tag when the file has one. Many scanned films have none, and then
# the image decides: the chest wall is the heavy side, so the breast is on the side of
# the intensity-weighted centre of mass.
#
# **Exercise 14.4.** Return `"L"` when the intensity-weighted centre of mass of an image
# (weights: the pixel values; column $j$ at position $j + 0.5$) lies in the left half
# (at most $W/2$), else `"R"`. A black image is `"L"`. The check compares with
# `mammo_demo.whole.preprocess.side_from_image` on films of both sides.

# %% [exercise 14.4]
def breast_side(img):
    """'L' if the intensity-weighted centre of mass is in the left half, else 'R'."""
    # TODO (exercise 14.4): column sums, their weighted mean position
    raise NotImplementedError

# %% [check 14.4]
def side_cases():
    cases = []
    for k, (side, view) in enumerate((("L", "CC"), ("R", "CC"), ("R", "MLO"), ("L", "MLO"))):
        one, _, _ = phantom.render_film(np.random.default_rng(20 + k), (120, 96), side, view, 2, [],
                                        dict(borders=(), edges=[], label=True, markers=0))
        cases.append((f"a {side} {view} film", one))
    cases.append(("a black image", np.zeros((5, 6), np.float32)))
    bright_right = np.zeros((4, 10), np.float32)
    bright_right[:, 6:] = 1.0
    cases.append(("bright on the right", bright_right))
    return cases


def prove_side():
    for what, img in side_cases():
        got, want = breast_side(img), whole.side_from_image(img)
        if got != want:
            raise lk.Wrong(f"for {what}: your answer is {got!r}, expected {want!r}")


lk.run_check("14.4", prove_side)

# %% [markdown]
# The last step shrinks the padded square crop to the network's size by **area
# averaging** (each output pixel is the mean of the film pixels it covers; plain
# subsampling would alias the fine texture and the calcifications). Here is what the
# pipeline produces for the four combinations of side and view (smaller films here, and a
# 112x112 output to keep the notebook light; the networks take 224x224):

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for k, (side, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))):
    one, _, _ = phantom.render_film(np.random.default_rng(30 + k), (240, 192), side, view, 2, [],
                                    dict(borders=("top",), edges=[], label=True, markers=1))
    x_one, rec_one = whole.preprocess(one, method="crop", size=112)
    show_film(axes[0, k], one, f"{side} {view} film")
    show_film(axes[1, k], x_one[0], f"side {rec_one.side}, flipped {rec_one.flipped}", factor=1)
fig.tight_layout()
shutil.rmtree(work_dir)               # the lesson's DICOM files are no longer needed

# %% [markdown]
# ## Summary
#
# * Read a DICOM film with its tags: `BitsStored` sets the scale, `MONOCHROME1` must be
#   inverted, rescale and window tags apply when present; laterality and view say which
#   breast and how it was imaged.
# * Otsu's threshold maximises the between-class variance $w_0 w_1 (\mu_0 - \mu_1)^2$,
#   which is the same as minimising the within-class variance.
# * One global threshold is not enough on real films: bright borders join the breast,
#   labels and markers compete with it, and the skin line falls below the threshold;
#   remove the borders, keep the largest component, lower the threshold toward the
#   background.
# * Then flip every breast to the left (the tag, else the centre of mass), pad to a
#   square and resize by area averaging.
