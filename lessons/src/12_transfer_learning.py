"""Source of lessons/12_transfer_learning.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 12 - Transfer learning and fine-tuning
#
# Medical data sets are small: a few hundred lesions, where an ImageNet network saw a
# million photographs. **Transfer learning** reuses a network trained on a large *source*
# task for a small *target* task: keep its body (the convolutions, which learnt to
# detect edges, blobs and textures), replace its classifier (the *head*) by a new one for
# the target classes, and train only what needs training. **Fine-tuning** lets some of
# the body train too, starting from the index $\gamma$ of the first layer that trains.
#
# In this lesson: cutting a trained network and giving it a new head
# (`nn.transfer.replace_head`); freezing up to $\gamma$ (`nn.transfer.fine_tune`,
# `nn.transfer.transfer`, `model.freeze`, `model.frozen_layers`); what stays fixed
# (frozen weights bit for bit, a frozen `BatchNorm2D`'s running statistics); the
# overfitting ratio $\beta$ = training accuracy / validation accuracy; and a measured
# example of when transfer helps and when it does not.
#
# **You need:** lesson 7 (overfitting, validation), lesson 8 (a CNN with `fit`), lesson 9
# (batch normalisation's running statistics).

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
# ## 1. A source task, and a network trained on it
#
# Sixteen-by-sixteen grey images of four shapes (a disc, a filled square, a cross and a
# square frame) at random places and sizes, in noise. The source task has plenty of
# data: 1024 labelled images.

# %%
SIZE = 16
SHAPES = ("disc", "square", "cross", "frame", "ring")


def shape_images(n, seed, classes, noise=0.4):
    """n noisy SIZE x SIZE images, each one shape of `classes`; labels index `classes`."""
    data_rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    labels = data_rng.integers(0, len(classes), n)
    images = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    for k in range(n):
        cy, cx = data_rng.uniform(5, SIZE - 5, 2)
        radius = data_rng.uniform(3, 4.5)
        dist = np.hypot(rows - cy, cols - cx)                         # round distance
        box = np.maximum(np.abs(rows - cy), np.abs(cols - cx))        # square distance
        shape = classes[labels[k]]
        if shape == "disc":
            images[k] = dist <= radius
        elif shape == "ring":
            images[k] = (dist <= radius) & (dist >= radius - 1.3)
        elif shape == "square":
            images[k] = box <= 0.85 * radius
        elif shape == "frame":
            images[k] = (box <= 0.85 * radius) & (box >= 0.85 * radius - 1.3)
        else:                                                         # a cross
            images[k] = (((np.abs(rows - cy) <= 0.8) | (np.abs(cols - cx) <= 0.8))
                         & (box <= radius))
    images += data_rng.normal(0.0, noise, images.shape)
    return images[:, None].astype(np.float32), labels                # (n, 1, SIZE, SIZE), (n,)


SOURCE_CLASSES = ("disc", "square", "cross", "frame")
x_source, y_source = shape_images(1024, seed=0, classes=SOURCE_CLASSES)
fig, axes = plt.subplots(1, len(SHAPES), figsize=(10, 2.4))
for ax, name in zip(axes, SHAPES):
    ax.imshow(shape_images(1, seed=3, classes=(name,))[0][0, 0], cmap="gray")
    ax.set_title(name + ("" if name in SOURCE_CLASSES else " (not in the source)"))
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# The source network: two convolution blocks with batch normalisation, global average
# pooling and a 4-way `Dense` head, trained for 10 epochs with Adam.

# %%
def small_cnn(num_classes, seed=0):
    return nn.Sequential([
        nn.Conv2D(1, 8, 3, padding=1, seed=seed, name="conv1"), nn.BatchNorm2D(8, name="bn1"),
        nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(8, 16, 3, padding=1, seed=seed + 1, name="conv2"), nn.BatchNorm2D(16, name="bn2"),
        nn.ReLU(), nn.MaxPool2D(2),
        nn.GlobalAvgPool2D(name="gap"), nn.Dense(16, num_classes, seed=seed + 2, name="fc"),
    ])


source = small_cnn(len(SOURCE_CLASSES))
start = time.process_time()
history = nn.fit(source, x_source, y_source, loss=nn.SoftmaxCrossEntropy(),
                 optimizer=nn.Adam(source.parameters(), lr=3e-3), epochs=10, batch_size=32,
                 verbose=0)
print(f"source network: training accuracy {history['accuracy'][-1]:.3f} "
      f"({time.process_time() - start:.1f} s CPU)")
x_check, y_check = shape_images(400, seed=1, classes=SOURCE_CLASSES)
print("confusion matrix on 400 new source images (rows: true", SOURCE_CLASSES, "):")
print(nn.metrics.confusion_matrix(y_check, nn.predict(source, x_check).argmax(axis=1)))
source_weights = {name: p.data.copy() for name, p in source.named_parameters()}
source_stats = {name: b.data.copy() for name, b in source.named_buffers()}

# %% [markdown]
# ## 2. A new head, and freezing up to $\gamma$
#
# `nn.transfer.replace_head(model, input_shape=..., hidden=...)` cuts the model at its
# first top-level `Flatten`, `GlobalAvgPool2D` or `Dense` (here `gap`, index 8), keeps
# the layers before it (the *same* layer objects, not copies), and appends the head of
# the transfer-learning paper for a binary target: global average pooling, an optional
# `Dense(hidden)` with a ReLU, `Dropout(0.2)` and `Dense(1)`, one logit (the sigmoid is
# in `nn.BinaryCrossEntropy`).
#
# Which layers train is the parameters' `trainable` flag. The paper's $\gamma$ is the
# **index of the first layer that trains**: layers $0 \ldots \gamma - 1$ are frozen,
# layers $\gamma \ldots$ train. `nn.transfer.fine_tune(model, gamma)` sets that (it is
# `model.freeze(upto=gamma - 1)` after an `unfreeze()`), `nn.transfer.transfer(model)` is
# the case $\gamma$ = the head's index, and both return `model.frozen_layers()`. The
# layer table shows what each $\gamma$ means:

# %%
def fresh_transfer_model(hidden=None):
    """A copy of the trained source body with a new binary head (weights restored, not shared)."""
    body = small_cnn(len(SOURCE_CLASSES))
    for name, p in body.named_parameters():
        p.data = source_weights[name].copy()
    for name, b in body.named_buffers():
        b.data = source_stats[name].copy()
    return nn.transfer.replace_head(body, input_shape=(1, SIZE, SIZE), hidden=hidden, seed=5)


model = fresh_transfer_model()
print("frozen:", nn.transfer.fine_tune(model, 4))
print("\n".join(nn.transfer.layer_table(model, input_shape=(1, SIZE, SIZE))))

# %% [markdown]
# **Exercise 12.1.** Set the trainability of a model's parameters from $\gamma$ by hand:
# every parameter of top-level layers $0 \ldots \gamma - 1$ frozen
# (`p.trainable = False`), every other one trainable, whatever it was before. The check
# compares the flags with what `nn.transfer.fine_tune` sets, for several $\gamma$.

# %% [exercise 12.1]
def freeze_from(model, gamma):
    """Freeze the top-level layers before index gamma; let every other layer train."""
    # TODO (exercise 12.1): loop over model.layers and their parameters()
    raise NotImplementedError

# %% [check 12.1]
def flags(m):
    return [p.trainable for p in m.parameters()]


def prove_freeze_from():
    mine, reference = fresh_transfer_model(hidden=4), fresh_transfer_model(hidden=4)
    for gamma in (0, 1, 4, 5, 8, 2):
        freeze_from(mine, gamma)
        nn.transfer.fine_tune(reference, gamma)
        if flags(mine) != flags(reference):
            wrong = [name for (name, p), q in zip(mine.named_parameters(), reference.parameters())
                     if p.trainable != q.trainable]
            raise lk.Wrong(f"for gamma = {gamma}, these parameters have the wrong flag: {wrong}")
        if mine.frozen_layers() != reference.frozen_layers():
            raise lk.Wrong(f"for gamma = {gamma}: frozen layers {mine.frozen_layers()}, expected "
                           f"{reference.frozen_layers()}")


lk.run_check("12.1", prove_freeze_from)

# %% [markdown]
# **Exercise 12.2.** How many parameters does the new head have, for a body that gives
# `features` channels and a hidden layer of `hidden` units (`None`: no hidden layer)?
# Global average pooling and dropout have none. The check builds the head with
# `nn.transfer.build_head`.

# %% [exercise 12.2]
def head_params(features, hidden):
    """Trainable parameters of nn.transfer.build_head((features, H, W), hidden=hidden)."""
    # TODO (exercise 12.2): the dense layers' weights and biases
    raise NotImplementedError

# %% [check 12.2]
lk.check_cases("12.2", [(f"head_params({f}, {h})", lambda f=f, h=h: head_params(f, h),
                         lambda f=f, h=h: nn.transfer.build_head((f, 4, 4), hidden=h).count_params())
                        for f, h in ((16, None), (16, 4096), (2048, 4096), (256, 8))])

# %% [markdown]
# The paper's transfer-learning head on ResNet50's 2048 features has over 8 million
# parameters, a third of the body's; on a few hundred images that head alone can
# memorise the training set. Which is why a fine-tuning head usually has no hidden layer.
#
# **Exercise 12.3.** How many parameters train when fine-tuning from $\gamma$, for the
# model of this section (the source body and a head without a hidden layer)? Read the
# layer table above, or count with code.

# %% [exercise 12.3]
def trainable_from(gamma):
    """Trainable parameters of fresh_transfer_model() after nn.transfer.fine_tune(model, gamma)."""
    # TODO (exercise 12.3): return a whole number
    raise NotImplementedError

# %% [check 12.3]
def counted(gamma):
    m = fresh_transfer_model()
    nn.transfer.fine_tune(m, gamma)
    return m.count_params(trainable_only=True)


lk.check_cases("12.3", [(f"trainable_from({g})", lambda g=g: trainable_from(g), lambda g=g: counted(g))
                        for g in (8, 4, 0, 5)])

# %% [markdown]
# ## 3. What stays fixed
#
# A frozen parameter gets no gradient and no optimizer state, so its bytes never change.
# A `BatchNorm2D` whose parameters are all frozen does more: it normalises with its
# **running** statistics and does not update them, even in training mode (lesson 9;
# Keras does the same for `trainable=False`, PyTorch needs `bn.eval()`). The frozen body
# therefore computes exactly what it computed at the end of the source training. To see
# it, snapshot every parameter and buffer, fine-tune from $\gamma = 4$ (`conv2` onwards)
# for a few epochs, and compare.
#
# **Exercise 12.4.** Given two snapshots (dicts from a name to an array), return the
# sorted list of the names whose arrays are **not bit-identical**. (A change of one unit
# in the last place counts: that is what "fixed" means.)

# %% [exercise 12.4]
def changed_names(before, after):
    """Sorted names whose arrays differ in any bit between the two snapshots."""
    # TODO (exercise 12.4): compare every entry exactly
    raise NotImplementedError

# %% [check 12.4]
def prove_changed_names():
    a = np.linspace(0, 1, 6, dtype=np.float32)
    nudged = a.copy()
    nudged[3] = np.nextafter(nudged[3], np.float32(2))               # one unit in the last place
    before = {"w": a, "b": np.zeros(3, np.float32), "v": np.ones(2), "u": a.copy()}
    after = {"w": nudged, "b": np.zeros(3, np.float32), "v": np.array([1.0, -1.0]), "u": a.copy()}
    lk.compare(len(changed_names(before, after)), 2, "the number of changed names in a test case")
    if changed_names(before, after) != ["v", "w"]:
        raise lk.Wrong(f"changed_names(...) is {changed_names(before, after)}, expected ['v', 'w']")
    if changed_names(before, before) != []:
        raise lk.Wrong("a snapshot compared with itself must give []")


ok = lk.run_check("12.4", prove_changed_names)
changed_names = lk.fallback(ok, changed_names,
                            lambda b, a: sorted(k for k in b if not np.array_equal(b[k], a[k])),
                            "a version with np.array_equal")

# %%
x_target, y_target = shape_images(8, seed=10, classes=("frame", "disc"))
model = fresh_transfer_model()
nn.transfer.fine_tune(model, 4)
snapshot = {f"parameter {n}": p.data.copy() for n, p in model.named_parameters()}
snapshot.update({f"buffer {n}": b.data.copy() for n, b in model.named_buffers()})
nn.fit(model, x_target, y_target.astype(np.float32), loss=nn.BinaryCrossEntropy(),
       optimizer=nn.Adam(model.parameters(), lr=1e-2), epochs=5, batch_size=8, verbose=0)
now = {f"parameter {n}": p.data for n, p in model.named_parameters()}
now.update({f"buffer {n}": b.data for n, b in model.named_buffers()})
moved = changed_names(snapshot, now)
print("frozen layers:", model.frozen_layers())
print("changed:      ", moved)
print("unchanged:    ", sorted(set(snapshot) - set(moved)))

# %% [markdown]
# `conv1` and `bn1` are bit-identical, `bn1`'s running statistics included, while
# `bn2`, which trains, has updated its statistics from the target batches.
#
# ## 4. When transfer helps, and when it does not
#
# Two target tasks, each with only **8** labelled training images (and 400 validation
# images to measure honestly):
#
# * **frame or disc?** Two of the source's own shapes: the source network has learnt the
#   features that tell them apart;
# * **ring or cross?** A ring is a shape the source never saw, and the source network
#   confuses rings with discs and frames alike.
#
# For each, three models: trained **from scratch** (the same architecture, random
# weights), **transfer** (the source body frozen, only the head trains: $\gamma$ = 8), and
# **fine-tuning** everything ($\gamma = 0$) from the source weights. Adam at lr 0.01, 40
# epochs of one batch of 8. The overfitting ratio of the transfer-learning paper,
#
# $$\beta = \frac{\text{training accuracy}}{\text{validation accuracy}},$$
#
# is about 1 when the model does as well on new images as on the ones it learnt from, and
# above 1 when it overfits (`nn.metrics.overfitting_ratio`).

# %%
def train_target(model, x_train, y_train, x_valid, y_valid):
    history = nn.fit(model, x_train, y_train.astype(np.float32), loss=nn.BinaryCrossEntropy(),
                     optimizer=nn.Adam(model.parameters(), lr=1e-2), epochs=40, batch_size=8,
                     validation_data=(x_valid, y_valid.astype(np.float32)), verbose=0)
    return history["accuracy"][-1], history["val_accuracy"][-1]


results = {}
for task, classes in (("frame or disc", ("frame", "disc")), ("ring or cross", ("ring", "cross"))):
    x_train, y_train = shape_images(8, seed=10, classes=classes)
    x_valid, y_valid = shape_images(400, seed=11, classes=classes)
    scratch = nn.transfer.replace_head(small_cnn(len(SOURCE_CLASSES), seed=7),
                                       input_shape=(1, SIZE, SIZE), hidden=None, seed=5)
    transferred, fine_tuned = fresh_transfer_model(), fresh_transfer_model()
    nn.transfer.transfer(transferred)
    nn.transfer.fine_tune(fine_tuned, 0)
    for how, m in (("from scratch", scratch), ("transfer (gamma 8)", transferred),
                   ("fine-tune (gamma 0)", fine_tuned)):
        results[task, how] = train_target(m, x_train, y_train, x_valid, y_valid)

print(f"{'task':<15} {'model':<20} {'train acc':>9} {'valid acc':>9} {'beta':>6}")
for (task, how), (train_acc, valid_acc) in results.items():
    print(f"{task:<15} {how:<20} {train_acc:9.3f} {valid_acc:9.3f} "
          f"{nn.metrics.overfitting_ratio(train_acc, valid_acc):6.2f}")

fig, ax = plt.subplots(figsize=(7, 3.5))
hows = ("from scratch", "transfer (gamma 8)", "fine-tune (gamma 0)")
for k, task in enumerate(("frame or disc", "ring or cross")):
    ax.bar(np.arange(3) + 0.4 * k, [results[task, h][1] for h in hows], width=0.4, label=task)
ax.axhline(0.5, color="gray", ls="--", label="guessing")
ax.set_xticks(np.arange(3) + 0.2)
ax.set_xticklabels(hows)
ax.set(title="validation accuracy, 8 training images", ylabel="accuracy", ylim=(0, 1.2))
ax.legend(loc="upper center", ncol=3)
fig.tight_layout()

# %% [markdown]
# Read the table. On **frame or disc**, the model trained from scratch fits its 8 images
# perfectly but generalises worst of the three, with the highest $\beta$: part of what it
# learnt is the noise of 8 images. The transferred and fine-tuned models, whose features
# were learnt from 1024 images, score clearly better on the 400 new ones. (A $\beta$ a
# little below 1 is possible: `fit` reports the training accuracy averaged over the
# epoch's batches in training mode, with dropout on, while validation runs without it.)
# On **ring or cross**, transfer buys nothing: the frozen features do not separate a ring
# from a cross, the head alone cannot fix that, and every model stays close to guessing,
# with a $\beta$ near 2 for all: 8 images are too few to learn these features from.
#
# When transfer helps, in short: the source task must have taught features the target
# needs, and the target must have too little data to learn them itself. With thousands
# of target images, or features from a far-away source (photographs for mammograms, in
# the worst case), training more of the body (a smaller $\gamma$) or from scratch catches
# up. `mammo-demo finetune` sweeps $\gamma$ on real mass ROIs and reports $\beta$, AUC and
# F1 for each.
#
# ## Summary
#
# * Transfer learning: keep a trained body, put a new head on it
#   (`nn.transfer.replace_head`), train only the head (`nn.transfer.transfer`).
# * Fine-tuning from $\gamma$: layers $0 \ldots \gamma - 1$ frozen, $\gamma \ldots$ train
#   (`nn.transfer.fine_tune(model, gamma)`, `model.frozen_layers()`).
# * Frozen means fixed: the weights stay bit-identical, and a frozen `BatchNorm2D` keeps
#   its running statistics even in training mode.
# * $\beta$ = training accuracy / validation accuracy measures overfitting; transfer lowers
#   it when the source's features fit the target and the target's data are few.
