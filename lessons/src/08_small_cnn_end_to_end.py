"""Source of lessons/08_small_cnn_end_to_end.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 8 - A small CNN, end to end
#
# Everything from lessons 1 to 7 in one workflow:
#
# 1. make a data set and split it into training, validation and test parts,
# 2. build a CNN with `nn.Sequential` and read its summary,
# 3. train it with `fit` (loss, optimizer, mini-batches, validation, early stopping),
# 4. plot the learning curves,
# 5. evaluate on the test set: accuracy, confusion matrix, per-class recall,
# 6. look at the mistakes, the filters and the feature maps,
# 7. save the model and load it back,
# 8. compare with the real MIAS network from the model zoo.
#
# The data is generated, so the notebook needs no download and runs in seconds: 16x16
# noisy images of a horizontal bar, a vertical bar, or a square outline.
#
# **You need:** lessons 1 to 7 (or the courage to look things up there).

# %%
# %matplotlib inline
import sys
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=3)
CLASSES = ["horizontal bar", "vertical bar", "square"]

# %% [markdown]
# ## 1. The data
#
# Each image holds one shape of random size and position on Gaussian noise. Images are
# stored as a float32 array of shape $(N, C, H, W) = (N, 1, 16, 16)$ (the NCHW layout of
# every nnlite layer) and labels as int64 class indices of shape $(N,)$, which
# `SoftmaxCrossEntropy` takes directly (sparse categorical cross-entropy).
#
# Every image is generated independently, so a plain split by index is a split by
# image: 900 for training, 300 for validation (model selection, early stopping) and 300
# for the final test, looked at once, at the end.

# %%
def make_shapes(n, size=16, noise=0.35, seed=0):
    """n images (n, 1, size, size) float32 and labels (n,) int64: 0 horizontal bar,
    1 vertical bar, 2 square outline; random size and place, Gaussian noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, noise, size=(n, 1, size, size)).astype(np.float32)
    y = rng.permutation(np.arange(n) % 3)
    for i in range(n):
        img = x[i, 0]
        if y[i] == 2:
            s = rng.integers(4, 9)                              # side of the square
            r, c = rng.integers(0, size - s + 1, size=2)
            img[r, c:c + s] += 1
            img[r + s - 1, c:c + s] += 1
            img[r + 1:r + s - 1, c] += 1
            img[r + 1:r + s - 1, c + s - 1] += 1
        else:
            length, width = rng.integers(5, 12), rng.integers(1, 3)
            r = rng.integers(0, size - width + 1)               # across the bar
            c = rng.integers(0, size - length + 1)              # along the bar
            if y[i] == 0:
                img[r:r + width, c:c + length] += 1
            else:
                img[c:c + length, r:r + width] += 1
    return x, y.astype(np.int64)


x_all, y_all = make_shapes(1500, seed=0)
x_train, y_train = x_all[:900], y_all[:900]
x_val, y_val = x_all[900:1200], y_all[900:1200]
x_test, y_test = x_all[1200:], y_all[1200:]
print("train", x_train.shape, x_train.dtype, " labels", y_train.shape, y_train.dtype)
print("validation", x_val.shape, " test", x_test.shape)
print("images per class (train):", np.bincount(y_train))

fig, axes = plt.subplots(3, 8, figsize=(11, 4.4))
for row in range(3):
    idx = np.flatnonzero(y_train == row)[:8]
    for ax, i in zip(axes[row], idx):
        ax.imshow(x_train[i, 0], cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(CLASSES[row], fontsize=lk.LABEL_SIZE)
fig.suptitle("training examples, one class per row")
fig.tight_layout()

# %% [markdown]
# ## 2. The model
#
# Two convolution + ReLU + max-pooling stages, then a small dense classifier with
# dropout. The last layer outputs 3 **logits**, no softmax: the loss applies it (lesson
# 4). `summary` lists each layer's output shape (without the batch axis) and its number
# of parameters:
#
# * `Conv2D(1, 8, 3, padding="same")`: $8\,(1 \cdot 3 \cdot 3 + 1) = 80$ parameters,
#   $16 \times 16$ kept by the "same" padding;
# * `MaxPool2D(2)`: halves the size, no parameters;
# * `Dense(256, 32)`: $256 \cdot 32 + 32$ parameters, on the flattened $16 \times 4 \times 4$ maps.

# %%
def build_model(seed=0):
    return nn.Sequential([
        nn.Conv2D(1, 8, 3, padding="same", seed=seed + 1), nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(8, 16, 3, padding="same", seed=seed + 2), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(16 * 4 * 4, 32, seed=seed + 3), nn.ReLU(),
        nn.Dropout(0.3, seed=seed + 4),
        nn.Dense(32, 3, weight_init="glorot_uniform", seed=seed + 5),
    ], name="shapes_cnn")


model = build_model()
model.summary(input_shape=(1, 16, 16));

# %% [markdown]
# ## 3. Training
#
# `fit` runs the loop of lesson 6 for us: each epoch it shuffles the training set
# (seeded), and for each mini-batch of 32 runs `forward(training=True)`, the loss,
# `backward` and `optimizer.step()`; after each epoch it evaluates on the validation set.
# `verbose=2` prints one line per epoch. Early stopping (lesson 7) watches the
# validation loss and restores the best weights at the end.

# %%
loss_fn = nn.SoftmaxCrossEntropy()
optimizer = nn.Adam(model.parameters(), lr=3e-3)
early = nn.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
history = model.fit(x_train, y_train, loss=loss_fn, optimizer=optimizer, epochs=20,
                    batch_size=32, validation_data=(x_val, y_val), callbacks=[early],
                    seed=0, verbose=2)
print(history, "- best epoch:", early.best_epoch + 1)

# %% [markdown]
# ## 4. Learning curves

# %%
epochs = np.arange(1, history.epochs + 1)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
axes[0].plot(epochs, history["loss"], "o-", ms=3, label="train")
axes[0].plot(epochs, history["val_loss"], "o-", ms=3, label="validation")
axes[1].plot(epochs, history["accuracy"], "o-", ms=3, label="train (dropout on)")
axes[1].plot(epochs, history["val_accuracy"], "o-", ms=3, label="validation")
axes[0].set(title="loss", xlabel="epoch", ylabel="cross-entropy")
axes[1].set(title="accuracy", xlabel="epoch", ylabel="accuracy")
for ax in axes:
    ax.axvline(early.best_epoch + 1, color="k", ls=":", lw=1)
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 5. Test-set evaluation
#
# Only now do we touch the test set. `predict_proba` gives the softmax probabilities
# $(N, 3)$; the predicted class is the largest. The **confusion matrix** counts test
# images by true class (rows) and predicted class (columns); recall (sensitivity) of a
# class is its diagonal entry divided by its row sum, precision the diagonal entry divided
# by the column sum.

# %%
test = model.evaluate(x_test, y_test, loss=loss_fn)
proba = model.predict_proba(x_test)                    # (N, 3)
y_pred = proba.argmax(axis=1)                          # (N,)
cm = nn.metrics.confusion_matrix(y_test, y_pred, num_classes=3)
precision, recall, f1 = nn.metrics.precision_recall_f1(y_test, y_pred, num_classes=3)
print(f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.3f}")
for k, name in enumerate(CLASSES):
    print(f"{name:<15} precision {precision[k]:.3f}  recall {recall[k]:.3f}  F1 {f1[k]:.3f}")

fig, ax = plt.subplots(figsize=(4.2, 3.6))
ax.imshow(cm, cmap="Blues")
for (i, j), v in np.ndenumerate(cm):
    ax.text(j, i, str(v), ha="center", va="center", color="k" if v < cm.max() / 2 else "w")
ax.set_xticks(range(3), CLASSES, rotation=20)
ax.set_yticks(range(3), CLASSES)
ax.set(title="confusion matrix (test)", xlabel="predicted class", ylabel="true class")
fig.tight_layout()

# %% [markdown]
# ## 6. The mistakes
#
# Looking at the misclassified images is the quickest way to understand a model: are the
# labels wrong, the shapes ambiguous, or the model weak?

# %%
wrong = np.flatnonzero(y_pred != y_test)
print(f"{len(wrong)} of {len(y_test)} test images misclassified")
n_show = min(len(wrong), 8)
if n_show:
    fig, axes = plt.subplots(1, n_show, figsize=(1.9 * n_show, 2.9), squeeze=False)
    for ax, i in zip(axes[0], wrong[:n_show]):
        ax.imshow(x_test[i, 0], cmap="gray")
        ax.set_title(f"true: {CLASSES[y_test[i]]}\npred: {CLASSES[y_pred[i]]}\n"
                     f"p = {proba[i, y_pred[i]]:.2f}", fontsize=lk.LABEL_SIZE)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()

# %% [markdown]
# Most mistakes involve squares: a small square's outline is only a few pixels brighter
# than the noise, and one bright side of it looks much like a short bar.
#
# ## 7. Inside the network: filters and feature maps
#
# The first layer's 8 filters have shape $(8, 1, 3, 3)$. With `forward(x, record=True)`
# a `Sequential` keeps every layer's output in `model.activations`, here the 8 feature
# maps $(1, 8, 16, 16)$ that the first ReLU produces for one image.

# %%
filters = model[0].W.data[:, 0]                        # (8, 3, 3)
example = x_test[np.flatnonzero(y_test == 2)[0]][None]  # one square, (1, 1, 16, 16)
model.forward(example, record=True)
maps = model.activations[1][0]                         # after the first ReLU: (8, 16, 16)

fig, axes = plt.subplots(2, 9, figsize=(13, 3.6))
axes[0, 0].imshow(example[0, 0], cmap="gray")
axes[0, 0].set_title("input", fontsize=lk.LABEL_SIZE)
axes[1, 0].axis("off")
for k in range(8):
    lim = np.abs(filters[k]).max()
    axes[0, k + 1].imshow(filters[k], cmap="coolwarm", vmin=-lim, vmax=lim)
    axes[0, k + 1].set_title(f"filter {k}", fontsize=lk.LABEL_SIZE)
    axes[1, k + 1].imshow(maps[k], cmap="viridis")
    axes[1, k + 1].set_title(f"map {k}", fontsize=lk.LABEL_SIZE)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %% [markdown]
# ## 8. Save, load, predict
#
# `nn.save` writes the architecture and the weights to one `.npz` file (atomically: a
# crash never leaves half a file); `nn.load` rebuilds the model from it.

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "shapes_cnn.npz"
    nn.save(model, path)
    print(f"saved {path.name}: {path.stat().st_size / 1024:.0f} KiB")
    restored = nn.load(path)
same = np.array_equal(restored.predict(x_test), model.predict(x_test))
print("the loaded model gives identical logits:", same)
assert same

# %% [markdown]
# ## 9. From toy to real: the MIAS network
#
# The mammography demo trains the network of the MIAS region-of-interest paper on 48x48
# patches with exactly these building blocks: two 5x5 convolutions with 32 and 64
# filters, max pooling, a 1024-unit dense layer with dropout 0.5. Its summary:

# %%
nn.zoo.mias_cnn(num_classes=3).summary(input_shape=(1, 48, 48));

# %% [markdown]
# Nearly all of its 9.5 million parameters sit in the first dense layer
# ($9216 \times 1024$): the reason why lesson 2's global average pooling is popular.
#
# ## Summary
#
# * Data: NCHW float32 images, int64 labels; split by image into train / validation /
#   test *before* anything else.
# * Model: `nn.Sequential([...])` ending in logits; `summary` checks shapes and sizes.
# * Training: `model.fit(x, y, loss=, optimizer=, epochs=, batch_size=,
#   validation_data=, callbacks=)` returns the history for the curves.
# * Evaluation: `evaluate`, `predict_proba`, `nn.metrics.confusion_matrix`,
#   `precision_recall_f1`; look at the mistakes.
# * Persistence: `nn.save` / `nn.load`.
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*.
#
# **Exercise 8.1.** Write the recall (sensitivity) of class `k` from a confusion matrix
# `cm` whose rows are the true classes and columns the predicted ones (section 5). The
# check tries it on this notebook's `cm` and on a few random ones, against
# `nn.metrics.precision_recall_f1`.

# %% [exercise 8.1]
def recall(cm, k):
    """The recall of class k: the share of the true members of k predicted as k."""
    # TODO (exercise 8.1): return the number, from the row of class k
    raise NotImplementedError

# %% [check 8.1]
check_rng = np.random.default_rng(8)
cases = [(f"the test set's cm, class {k} ({CLASSES[k]})", lambda k=k: recall(cm, k),
          nn.metrics.precision_recall_f1(y_test, y_pred, num_classes=3)[1][k]) for k in range(3)]
for trial in range(3):
    y_true_case = check_rng.integers(0, 4, size=60)
    y_pred_case = np.where(check_rng.random(60) < 0.6, y_true_case, check_rng.integers(0, 4, size=60))
    cm_case = nn.metrics.confusion_matrix(y_true_case, y_pred_case, num_classes=4)
    k = trial + 1
    cases.append((f"a random 4-class cm, class {k}", lambda cm_case=cm_case, k=k: recall(cm_case, k),
                  nn.metrics.precision_recall_f1(y_true_case, y_pred_case, num_classes=4)[1][k]))
lk.check_cases("8.1", cases)

# %% [markdown]
# **Exercise 8.2.** How many parameters does the second convolution, `Conv2D(8, 16, 3)`,
# have? (A number: return it.)

# %% [exercise 8.2]
def second_conv_params():
    """The number of weights and biases of Conv2D(8, 16, 3)."""
    # TODO (exercise 8.2): return the number
    raise NotImplementedError

# %% [check 8.2]
lk.check("8.2", second_conv_params, sum(p.size for p in model[3].parameters()))

# %% [markdown]
# **Exercise 8.3.** What is the shape of one image's output of the second `MaxPool2D`
# (layer 5), without the batch axis?

# %% [exercise 8.3]
def second_pool_shape():
    """(C, H, W) after the second MaxPool2D, for one 16x16 grey image."""
    # TODO (exercise 8.3): return the tuple
    raise NotImplementedError

# %% [check 8.3]
lk.check("8.3", second_pool_shape, model.output_shapes((1, 16, 16))[5])

# %% [markdown]
# **Exercise 8.4.** If the images were `size` x `size` instead of 16x16, how many features
# would `Flatten` produce (and so how many inputs would the first `Dense` need)? Write it
# for any `size`.

# %% [exercise 8.4]
def flatten_features(size):
    """The length of Flatten's output for size x size grey images."""
    # TODO (exercise 8.4): return the number (two "same" convolutions, two 2x2 poolings)
    raise NotImplementedError

# %% [check 8.4]
features = nn.Sequential(model.layers[:7])          # everything up to and including Flatten
lk.check_cases("8.4", [(f"flatten_features({size})", lambda size=size: flatten_features(size),
                        features.output_shapes((1, size, size))[-1][0])
                       for size in (16, 32, 48, 20, 18)])
