"""Source of lessons/07_overfitting.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 7 - Overfitting and its cures
#
# A network with enough weights can **memorise** its training set: the training loss
# goes to zero while the loss on new data goes *up*. That is overfitting, and with the
# small data sets of medical imaging it is the normal state of affairs. In this lesson we
# provoke it on purpose and then apply the standard cures:
#
# * **L2 and L1 regularisation**: penalise large weights;
# * **dropout**: randomly silence units during training;
# * **early stopping** with a **best-model checkpoint**: stop when validation stops
#   improving and keep the best weights;
# * **data augmentation**: make more (label-preserving) training images.
#
# We always watch two curves: the training loss and the **validation** loss, computed on
# data the optimizer never sees.
#
# **You need:** lessons 4 (losses) and 6 (optimizers); `model.fit` is used throughout.

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

lk.setup(precision=4)

# %% [markdown]
# ## 1. A small data set that invites overfitting
#
# Two interleaved half-moons in the plane, with noise: 30 points to train on and 400 to
# validate on. Inputs $x$ have shape $(N, 2)$, labels $y$ shape $(N,)$.

# %%
def make_moons(n, noise, seed):
    """Two noisy half-moons: x (n, 2) float32, y (n,) int64 in {0, 1}."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0, np.pi, n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + noise * rng.normal(size=(n, 2))
    return x.astype(np.float32), y.astype(np.int64)


x_train, y_train = make_moons(30, 0.25, seed=0)
x_val, y_val = make_moons(400, 0.25, seed=1)
print("train", x_train.shape, y_train.shape, "  validation", x_val.shape, y_val.shape)

fig, ax = plt.subplots(figsize=(4.5, 3.2))
ax.scatter(*x_val.T, c=y_val, cmap="coolwarm", s=6, alpha=0.3, label="validation")
ax.scatter(*x_train.T, c=y_train, cmap="coolwarm", s=40, edgecolors="k", label="train")
ax.set(title="two moons", xlabel="$x_1$", ylabel="$x_2$")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 2. Overfitting, watched
#
# A multi-layer perceptron with two hidden layers of 128 units (about 17 000 weights for
# 30 points) trained with Adam for 250 epochs. `fit` returns a `History` whose lists hold
# one value per epoch: `loss`, `accuracy`, `val_loss`, `val_accuracy`.

# %%
EPOCHS = 250


def mlp(regularizer=None, dropout=0.0):
    """2 -> 128 -> 128 -> 2 logits; optional weight regularizer and dropout after each ReLU."""
    layers = [nn.Dense(2, 128, seed=1, regularizer=regularizer), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout, seed=10))
    layers += [nn.Dense(128, 128, seed=2, regularizer=regularizer), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout, seed=11))
    layers.append(nn.Dense(128, 2, weight_init="glorot_uniform", seed=3, regularizer=regularizer))
    return nn.Sequential(layers)


def train(model, epochs=EPOCHS, callbacks=()):
    return model.fit(x_train, y_train, loss=nn.SoftmaxCrossEntropy(),
                     optimizer=nn.Adam(model.parameters(), lr=0.003), epochs=epochs,
                     batch_size=30, validation_data=(x_val, y_val), callbacks=callbacks,
                     verbose=0, seed=0)


def plot_curves(history, title, axes, best_epoch=None):
    """Loss and accuracy per epoch, train and validation."""
    epochs = np.arange(1, history.epochs + 1)
    for key in ("loss", "val_loss"):
        axes[0].plot(epochs, history[key], label=key)
    for key in ("accuracy", "val_accuracy"):
        axes[1].plot(epochs, history[key], label=key)
    axes[0].set(title=f"{title}: loss", xlabel="epoch", ylabel="cross-entropy")
    axes[1].set(title=f"{title}: accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0.4, 1.02))
    for ax in axes:
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="k", ls=":", label=f"best epoch {best_epoch + 1}")
        ax.grid(alpha=0.3)
        ax.legend()


plain = mlp()
print("trainable parameters:", plain.count_params())
h_plain = train(plain)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_curves(h_plain, "no regularisation", axes)
fig.tight_layout()

# %% [markdown]
# The training loss falls towards zero while the validation loss, after a few epochs,
# climbs: the network grows ever more confident about a boundary that threads between
# the 30 noisy training points. The transfer-learning paper measures the gap with the
# **overfitting ratio** $\beta = \text{train accuracy} / \text{validation accuracy}$
# (1 means no gap):

# %%
def summary_line(name, h):
    beta = nn.metrics.overfitting_ratio(h["accuracy"][-1], h["val_accuracy"][-1])
    return (f"{name:<18} train acc {h['accuracy'][-1]:.3f}  val acc {h['val_accuracy'][-1]:.3f}  "
            f"val loss {h['val_loss'][-1]:.3f}  beta = {beta:.2f}")


print(summary_line("no regularisation", h_plain))

# %% [markdown]
# ## 3. L2 and L1 regularisation
#
# Add a penalty on the weights to the loss:
#
# $$L_{\text{total}} = L_{\text{data}} + \lambda_2 \sum w^2 \quad (\text{L2}), \qquad
# L_{\text{total}} = L_{\text{data}} + \lambda_1 \sum |w| \quad (\text{L1}).$$
#
# The gradients add $2\lambda_2 w$ (a pull towards zero proportional to the weight:
# "weight decay") or $\lambda_1\,\mathrm{sign}(w)$ (a constant pull that drives small
# weights to exactly zero: sparse weights). Large weights are what a network needs to
# draw a wiggly boundary, so the penalty favours smoother functions. In nnlite a
# regularizer is attached to a layer's weights (`nn.Dense(..., regularizer=nn.L2(3e-3))`)
# and `fit` adds its penalty and gradient after each backward pass (Keras' convention:
# no factor $\frac12$).

# %%
l2_model = mlp(regularizer=nn.L2(3e-3))
h_l2 = train(l2_model)
l1_model = mlp(regularizer=nn.L1(3e-4))
h_l1 = train(l1_model)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_curves(h_l2, "L2(3e-3)", axes)
fig.tight_layout()
print(summary_line("L2(3e-3)", h_l2))
print(summary_line("L1(3e-4)", h_l1))

# %% [markdown]
# The reported training loss now includes the penalty, so it cannot reach zero. What the
# two penalties do to the weights of the middle layer (128 x 128):

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
bins = np.linspace(-0.5, 0.5, 81)
for name, model in (("none", plain), ("L2", l2_model), ("L1", l1_model)):
    W = model[2].W.data.ravel()
    small = np.mean(np.abs(W) < 1e-3)
    ax.hist(W, bins=bins, histtype="step", lw=1.5, label=f"{name}: {small:.0%} of |w| < 1e-3")
ax.set(title="weights of the hidden 128x128 layer", xlabel="weight value", ylabel="count")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 4. Dropout
#
# During training, each unit's output is zeroed with probability $r$ (a fresh random
# mask $m$ for every batch) and the survivors are scaled up so the expected value is
# unchanged ("inverted" dropout):
#
# $$y = \frac{x \odot m}{1 - r}, \quad m_i \sim \mathrm{Bernoulli}(1 - r); \qquad
# \text{at evaluation: } y = x.$$
#
# No unit can rely on one particular partner being present, so the network cannot build
# the fragile co-adaptations that memorising needs; it behaves like an average of many
# thinned networks. `fit` calls `forward(x, training=True)`; `evaluate` and `predict`
# use `training=False`, where dropout does nothing.

# %%
drop = nn.Dropout(0.5, seed=0)
a = np.ones((2, 8), dtype=np.float32)
print("training:  \n", drop.forward(a, training=True))
print("evaluation:\n", drop.forward(a, training=False))

dropout_model = mlp(dropout=0.5)
h_dropout = train(dropout_model)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_curves(h_dropout, "dropout 0.5", axes)
fig.tight_layout()
print(summary_line("dropout 0.5", h_dropout))

# %% [markdown]
# The training curves are noisy (each epoch sees a different thinned network) and lie
# *below* the validation curves: training accuracy is measured with dropout on.
#
# ## 5. Early stopping with a best-model checkpoint
#
# The simplest cure: watch the validation loss and stop when it has not improved for
# `patience` epochs. Two callbacks do it:
#
# * `nn.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)` stops
#   training and puts back the weights of the best epoch;
# * `nn.ModelCheckpoint(path, monitor="val_loss")` saves the model to disk each time the
#   validation loss improves, so the best model survives a crash and can be reloaded later
#   with `nn.load`.

# %%
workdir = tempfile.TemporaryDirectory()
best_path = Path(workdir.name) / "best.npz"
early = nn.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)
checkpoint = nn.ModelCheckpoint(best_path, monitor="val_loss")
es_model = mlp()
h_es = train(es_model, callbacks=[early, checkpoint])
print(f"stopped after {h_es.epochs} of {EPOCHS} epochs; best epoch {early.best_epoch + 1}, "
      f"val_loss {early.best:.4f}")

reloaded = nn.load(best_path)
val_restored = es_model.evaluate(x_val, y_val, loss=nn.SoftmaxCrossEntropy())
val_reloaded = reloaded.evaluate(x_val, y_val, loss=nn.SoftmaxCrossEntropy())
print("restored weights:", val_restored)
print("reloaded file:   ", val_reloaded)
assert np.isclose(val_reloaded["loss"], early.best, rtol=1e-5)
assert np.isclose(val_restored["loss"], early.best, rtol=1e-5)
workdir.cleanup()

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_curves(h_es, "early stopping", axes, best_epoch=early.best_epoch)
fig.tight_layout()

# %% [markdown]
# ## 6. What the boundaries look like
#
# The colour is the predicted probability of class 1 (`predict_proba`); the dots are the
# 30 training points.

# %%
grid_1, grid_2 = np.meshgrid(np.linspace(-1.6, 2.6, 120), np.linspace(-1.2, 1.7, 90))
grid = np.stack([grid_1.ravel(), grid_2.ravel()], axis=1).astype(np.float32)   # (10800, 2)
models = {"no regularisation": plain, "L2(3e-3)": l2_model, "dropout 0.5": dropout_model,
          "early stopping": es_model}
fig, axes = plt.subplots(1, 4, figsize=(14, 2.9))
for ax, (name, model) in zip(axes, models.items()):
    proba = model.predict_proba(grid)[:, 1].reshape(grid_1.shape)
    ax.contourf(grid_1, grid_2, proba, levels=np.linspace(0, 1, 11), cmap="coolwarm", alpha=0.8)
    ax.scatter(*x_train.T, c=y_train, cmap="coolwarm", s=18, edgecolors="k")
    acc = model.evaluate(x_val, y_val)["accuracy"]
    ax.set(title=f"{name}: val acc {acc:.2f}", xlabel="$x_1$", ylabel="$x_2$")
fig.tight_layout()

# %% [markdown]
# ## 7. Data augmentation
#
# For images there is a cure that adds information instead of restricting the model:
# transform each training image in ways that cannot change its label, and train on the
# transformed copies. The MIAS paper rotates by multiples of 90 degrees and mirrors (8
# versions of every patch); small shifts are another common choice.
#
# Our image task: 16x16 noisy images of a "+" (class 0) or an "x" (class 1) mark at a
# random place, with only **32** training images. Both marks look the same after any
# rotation by 90 degrees or mirroring, so these transforms keep the label.
#
# **Split first, augment second.** Augment only the training set, after the split, and
# split by image (by patient, for mammograms). If augmented copies of one image land on
# both sides of the split, validation measures memory, not generalisation, and every
# metric is inflated.

# %%
def make_marks(n, size=16, seed=0):
    """n images (n, 1, size, size) float32 of '+' (label 0) or 'x' (label 1) marks on noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    for i in range(n):
        arm = rng.integers(2, 4)
        r, c = rng.integers(arm, size - arm, size=2)
        k = np.arange(-arm, arm + 1)
        if y[i] == 0:
            x[i, 0, r, c + k] += 1.0
            x[i, 0, r + k, c] += 1.0
        else:
            x[i, 0, r + k, c + k] += 1.0
            x[i, 0, r + k, c - k] += 1.0
    return x, y.astype(np.int64)


def augment(x, rng, max_shift=3):
    """A random rotation by k*90 degrees, an optional mirror and a shift, per image."""
    out = np.empty_like(x)                                  # (N, 1, H, W)
    for i in range(len(x)):
        img = np.rot90(x[i, 0], k=rng.integers(4))
        if rng.integers(2):
            img = img[:, ::-1]
        out[i, 0] = np.roll(img, tuple(rng.integers(-max_shift, max_shift + 1, size=2)), axis=(0, 1))
    return out


x_img_train, y_img_train = make_marks(32, seed=0)           # split first ...
x_img_val, y_img_val = make_marks(200, seed=1)
aug_rng = np.random.default_rng(0)
examples = np.concatenate([x_img_train[:2]] + [augment(x_img_train[:2], aug_rng) for _ in range(5)])
fig, axes = plt.subplots(2, 6, figsize=(10, 3.6))
for j in range(6):
    for i in range(2):
        axes[i, j].imshow(examples[2 * j + i, 0], cmap="gray")
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[0, j].set_title("original" if j == 0 else f"augmented {j}")
axes[0, 0].set_ylabel("class 0: +")
axes[1, 0].set_ylabel("class 1: x")
fig.tight_layout()

# %% [markdown]
# A small CNN, trained twice for 60 epochs with the same number of steps: once on the 32
# original images every epoch, once on a freshly augmented copy of them every epoch
# (... augment second, on the fly). Calling `fit(..., epochs=1)` once per epoch with the
# same optimizer continues the same training run.

# %%
def small_cnn():
    return nn.Sequential([
        nn.Conv2D(1, 6, 3, padding="same", seed=1), nn.ReLU(), nn.MaxPool2D(2),     # (N, 6, 8, 8)
        nn.Conv2D(6, 12, 3, padding="same", seed=2), nn.ReLU(), nn.MaxPool2D(2),    # (N, 12, 4, 4)
        nn.Flatten(), nn.Dense(12 * 4 * 4, 2, weight_init="glorot_uniform", seed=3),
    ])


def train_images(augmented, epochs=60):
    model = small_cnn()
    opt, rng = nn.Adam(model.parameters(), lr=3e-3), np.random.default_rng(0)
    history = nn.History()
    for epoch in range(epochs):
        x_epoch = augment(x_img_train, rng) if augmented else x_img_train
        h = model.fit(x_epoch, y_img_train, loss=nn.SoftmaxCrossEntropy(), optimizer=opt,
                      epochs=1, batch_size=16, validation_data=(x_img_val, y_img_val),
                      verbose=0, seed=epoch)
        history.append({k: v[0] for k, v in h.history.items()})
    return history


h_img = {"original 32 images": train_images(False), "augmented on the fly": train_images(True)}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for k, (name, h) in enumerate(h_img.items()):
    epochs = np.arange(1, h.epochs + 1)
    axes[0].plot(epochs, h["loss"], color=f"C{k}", label=f"{name}: train")
    axes[0].plot(epochs, h["val_loss"], "--", color=f"C{k}", label=f"{name}: validation")
    axes[1].plot(epochs, h["val_accuracy"], color=f"C{k}", label=name)
    print(summary_line(name, h))
axes[0].set(title="loss", xlabel="epoch", ylabel="cross-entropy", yscale="log")
axes[1].set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()

# %% [markdown]
# Without augmentation the CNN memorises the 32 images (training loss near zero) and
# barely beats guessing on new ones: it has only seen each mark at 32 places. With
# augmentation it has seen marks everywhere and in every orientation, and generalises.
#
# ## Summary
#
# | cure | how | in nnlite |
# |---|---|---|
# | L2 / L1 | penalty $\lambda\sum w^2$ / $\lambda\sum\lvert w\rvert$ on the weights | `regularizer=nn.L2(...)`, `nn.L1`, `nn.L1L2` |
# | dropout | zero units at random while training | `nn.Dropout(rate)` |
# | early stopping | stop when `val_loss` stalls, keep the best weights | `nn.EarlyStopping`, `nn.ModelCheckpoint` |
# | augmentation | label-preserving transforms of the training images, after the split | your data pipeline |
#
# ## Exercises
#
# Each exercise cell is a stub that raises `NotImplementedError`: replace the `raise` line
# with your code, run the cell, then run the check below it, which says *not done yet*,
# *wrong* (and what differs) or *correct*.
#
# **Exercise 7.1.** Write early stopping's decision as a function. It gets the validation
# losses of epochs 1, 2, 3, ... and a `patience`, and returns `(stop_epoch, best_epoch)`,
# counting from 1: the best epoch is the one with the lowest loss so far (the first of
# equal ones); training stops at the end of the epoch that makes `patience` epochs in a
# row without a new best, as in Keras (`patience=0` and `patience=1` both stop at the
# first epoch that does not improve). If that never happens, training runs to the last
# epoch.

# %% [exercise 7.1]
def early_stopping_epochs(val_losses, patience):
    """(stop_epoch, best_epoch), both counted from 1, of nn.EarlyStopping(patience)."""
    # TODO (exercise 7.1): walk through the losses keeping the best value, its epoch and
    # the number of epochs since it; stop when that number reaches the patience
    raise NotImplementedError

# %% [check 7.1]
def library_early_stopping(val_losses, patience):
    stopper = nn.EarlyStopping(monitor="val_loss", patience=patience)
    stopper.on_train_begin(mlp())
    for epoch, value in enumerate(val_losses):
        stopper.on_epoch_end(epoch, {"val_loss": value})
        if stopper.stop_training:
            break
    return epoch + 1, stopper.best_epoch + 1


loss_sequences = [([1.0, 0.8, 0.7, 0.72, 0.71, 0.75, 0.9, 0.95], 2),
                  ([1.0, 0.8, 0.7, 0.72, 0.71, 0.75, 0.9, 0.95], 0),
                  ([1.0, 0.9, 0.8, 0.7, 0.6], 1),
                  ([0.5, 0.6, 0.5, 0.7, 0.4, 0.45, 0.46, 0.47, 0.48], 3),
                  ([0.3, 0.3, 0.3, 0.3], 2)]
lk.check_cases("7.1", [(f"early_stopping_epochs({losses}, patience={patience})",
                        lambda losses=losses, patience=patience:
                            early_stopping_epochs(losses, patience),
                        library_early_stopping(losses, patience))
                       for losses, patience in loss_sequences])

# %% [markdown]
# **Exercise 7.2.** A model reaches 99% training accuracy and 75% validation accuracy. What
# is its overfitting ratio $\beta$ (3 decimals)?

# %% [exercise 7.2]
def beta_99_75():
    """The overfitting ratio for 99% training and 75% validation accuracy."""
    # TODO (exercise 7.2): return the number
    raise NotImplementedError

# %% [check 7.2]
lk.check("7.2", beta_99_75, nn.metrics.overfitting_ratio(0.99, 0.75), rtol=1e-3)

# %% [markdown]
# **Exercise 7.3.** Write the gradient that an L2 penalty $\lambda \sum w^2$ adds to the
# weights `w` (an array of any shape).

# %% [exercise 7.3]
def l2_gradient(w, lam):
    """d(lam * sum(w ** 2)) / dw."""
    # TODO (exercise 7.3): return the array
    raise NotImplementedError

# %% [check 7.3]
w_check = np.random.default_rng(7).normal(size=(3, 4))
lk.check_cases("7.3", [("w = [0.5, -2], lambda 0.01", lambda: l2_gradient(np.array([0.5, -2.0]), 0.01),
                        nn.L2(0.01).grad(np.array([0.5, -2.0]))),
                       ("a random (3, 4) w, lambda 3e-3", lambda: l2_gradient(w_check, 3e-3),
                        nn.L2(3e-3).grad(w_check))])

# %% [markdown]
# **Exercise 7.4.** `nn.Dropout(0.5)` keeps a unit whose input is 3.0, during training. What
# does it output?

# %% [exercise 7.4]
def dropout_kept_output():
    """What Dropout(0.5) outputs, in training, for a kept unit whose input is 3.0."""
    # TODO (exercise 7.4): return the number
    raise NotImplementedError

# %% [check 7.4]
keep_all = nn.Dropout(0.5).fix_mask(np.ones((1, 1)))
lk.check("7.4", dropout_kept_output,
         keep_all.forward(np.array([[3.0]], dtype=np.float32), training=True)[0, 0])

# %% [markdown]
# **Exercise 7.5.** How many different images can rotations by multiples of 90 degrees
# combined with an optional mirror make from one (asymmetric) image?

# %% [exercise 7.5]
def dihedral_versions():
    """The number of distinct images from rotations by k * 90 degrees and a mirror."""
    # TODO (exercise 7.5): return the number
    raise NotImplementedError

# %% [check 7.5]
letter = np.zeros((5, 5))
letter[0, :3] = letter[:, 0] = letter[2, :2] = 1          # an "F": no symmetry at all
versions = {np.rot90(m, k).tobytes() for k in range(4) for m in (letter, letter[:, ::-1])}
lk.check("7.5", dihedral_versions, len(versions))
