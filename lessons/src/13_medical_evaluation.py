"""Source of lessons/13_medical_evaluation.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 13 - Evaluating a medical classifier
#
# "98% accuracy" says little about a screening model. If one image in ten shows a
# malignant lesion, the model that always answers "benign" is 90% accurate and finds no
# cancer at all. A medical classifier is judged by what it does to each class: how many
# cancers it finds (**sensitivity**), how many healthy patients it sends home in peace
# (**specificity**), at a threshold chosen **before** looking at the test set, with an
# honest statement of how uncertain those rates are on a small test set, and on a test
# set that shares nothing with the training data.
#
# In this lesson: the confusion matrix, sensitivity, specificity and precision; the ROC
# curve and its area; the threshold for 90% sensitivity chosen on validation and applied
# to test; Wilson confidence intervals; the majority-class baseline; and the data leak of
# augmenting before splitting, measured.
#
# **You need:** lesson 4 (binary cross-entropy, the sigmoid), lesson 7 (train,
# validation and test sets), lesson 8 (`fit`, the confusion matrix).

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
# ## 1. A small, imbalanced problem
#
# Each "lesion" is described by 4 measured features (think size, contrast, margin
# sharpness, texture); malignant lesions have larger values on average, with much
# overlap. About one lesion in eight is malignant (class 1). Training, validation and
# test sets are drawn separately; the test set has 150 lesions, so only about 20 of them
# are malignant, a realistic size for a medical test set. The classifier is a logistic
# regression, one `Dense(4, 1)` layer trained with `nn.BinaryCrossEntropy`; its score is
# the predicted probability of malignancy (`nn.predict_proba`).

# %%
def lesions(n, seed, malignant_fraction=0.125):
    data_rng = np.random.default_rng(seed)
    labels = (data_rng.random(n) < malignant_fraction).astype(np.int64)
    features = data_rng.normal(size=(n, 4)) + 0.9 * labels[:, None]       # shifted if malignant
    return features.astype(np.float32), labels


x_train, y_train = lesions(400, seed=0)
x_valid, y_valid = lesions(200, seed=1)
x_test, y_test = lesions(150, seed=2)
model = nn.Sequential([nn.Dense(4, 1, weight_init="glorot_uniform", seed=0)])
nn.fit(model, x_train, y_train.astype(np.float32), loss=nn.BinaryCrossEntropy(),
       optimizer=nn.Adam(model.parameters(), lr=0.05), epochs=30, batch_size=50, verbose=0)
s_valid = nn.predict_proba(model, x_valid)                                 # (200,) in (0, 1)
s_test = nn.predict_proba(model, x_test)                                   # (150,)
print(f"malignant: {y_train.sum()} of {y_train.size} training, {y_valid.sum()} of "
      f"{y_valid.size} validation, {y_test.sum()} of {y_test.size} test lesions")

# %% [markdown]
# ## 2. The confusion matrix, sensitivity and specificity
#
# At the default threshold 0.5 (malignant when the score is at least 0.5), count the four
# outcomes. nnlite's `confusion_matrix` puts the true class on the rows and the predicted
# class on the columns:
#
# | | predicted benign | predicted malignant |
# |---|---|---|
# | **truly benign** | TN (true negative) | FP (false positive: a needless recall) |
# | **truly malignant** | FN (false negative: a missed cancer) | TP (true positive) |
#
# * **sensitivity** (recall of the malignant class) $= TP / (TP + FN)$: the share of
#   cancers found;
# * **specificity** $= TN / (TN + FP)$: the share of benign lesions correctly cleared;
# * **precision** (positive predictive value) $= TP / (TP + FP)$: how often a "malignant"
#   answer is right.

# %%
predicted = (s_test >= 0.5).astype(np.int64)
cm = nn.metrics.confusion_matrix(y_test, predicted, num_classes=2)
print("confusion matrix (rows: true benign, malignant; columns: predicted):\n", cm)
print(f"accuracy at 0.5: {nn.metrics.accuracy(y_test, predicted):.3f}")

# %% [markdown]
# **Exercise 13.1.** From a 2x2 confusion matrix in this layout, return
# `(sensitivity, specificity, precision)` of the malignant class. The check compares with
# `nn.metrics.precision_recall_f1` and `nn.metrics.specificity`.

# %% [exercise 13.1]
def rates(cm):
    """(sensitivity, specificity, precision) of class 1 from cm[true, predicted]."""
    # TODO (exercise 13.1): read TN, FP, FN, TP from the matrix
    raise NotImplementedError

# %% [check 13.1]
def rates_cases():
    check_rng = np.random.default_rng(131)
    cases = [("the test set at 0.5", y_test, predicted)]
    for k in range(3):
        y = check_rng.integers(0, 2, 60)
        cases.append((f"random labels {k + 1}", y, np.where(check_rng.random(60) < 0.7, y, 1 - y)))
    out = []
    for what, y, p in cases:
        precision, recall, _ = nn.metrics.precision_recall_f1(y, p, num_classes=2)
        spec = nn.metrics.specificity(y, p, num_classes=2)
        out.append((f"rates(cm) for {what}",
                    lambda y=y, p=p: rates(nn.metrics.confusion_matrix(y, p, num_classes=2)),
                    (recall[1], spec[1], precision[1])))
    return out


lk.check_cases("13.1", rates_cases())

# %% [markdown]
# ### The baseline to beat
#
# Accuracy rewards the majority class. Always answering "benign" scores:

# %%
always_benign = np.zeros_like(y_test)
print(f"always benign: accuracy {nn.metrics.accuracy(y_test, always_benign):.3f}, "
      f"sensitivity 0 (finds no cancer)")

# %% [markdown]
# Compare the model's accuracy above with this number before being impressed by it. A
# report should print the majority baseline beside the accuracy, and judge the model on
# sensitivity and specificity, or on the ROC curve.
#
# ## 3. The ROC curve and its area
#
# The threshold is a choice. Lowering it finds more cancers (sensitivity up) and recalls
# more healthy patients (specificity down). The **ROC curve** draws, for every threshold,
# the true-positive rate (sensitivity) against the false-positive rate
# ($1 -$ specificity). Its area, the **AUC**, has a plain meaning: the probability that a
# randomly chosen malignant lesion scores higher than a randomly chosen benign one (a tie
# counts one half). 0.5 is guessing, 1 is a perfect ranking. It does not depend on any
# threshold, nor on how many of each class there are.
#
# **Exercise 13.2.** Compute the AUC from its meaning: compare every (malignant, benign)
# pair of scores, count 1 when the malignant one is higher and 1/2 for a tie, and divide
# by the number of pairs. (Broadcasting compares all pairs at once.) The check compares
# with `nn.metrics.roc_auc`, which integrates the ROC curve.

# %% [exercise 13.2]
def auc_by_pairs(y, scores):
    """P(score of a random positive > score of a random negative), ties counted 1/2."""
    # TODO (exercise 13.2): split the scores by class, compare all pairs
    raise NotImplementedError

# %% [check 13.2]
tied = np.round(s_test, 1)                                  # many ties
lk.check_cases("13.2", [
    ("auc_by_pairs(y_test, s_test)", lambda: auc_by_pairs(y_test, s_test),
     lambda: nn.metrics.roc_auc(y_test, s_test)),
    ("auc_by_pairs(y_test, rounded scores with ties)", lambda: auc_by_pairs(y_test, tied),
     lambda: nn.metrics.roc_auc(y_test, tied)),
    ("auc_by_pairs([0, 1, 0, 1], [0.2, 0.2, 0.7, 0.9])",
     lambda: auc_by_pairs(np.array([0, 1, 0, 1]), np.array([0.2, 0.2, 0.7, 0.9])),
     lambda: nn.metrics.roc_auc(np.array([0, 1, 0, 1]), np.array([0.2, 0.2, 0.7, 0.9])))])

# %% [markdown]
# ## 4. A threshold for 90% sensitivity, chosen on validation
#
# A screening programme fixes the sensitivity it needs (the thesis: 90%) and asks what
# specificity that costs. The threshold must be chosen on the **validation** set: the
# largest threshold at which at least 90% of the validation cancers score at or above it.
# Then it is applied, unchanged, to the test set, and the report gives the test
# specificity **and** the test sensitivity it actually reached, which may be below 90%:
# that is the honest result. Choosing the threshold on the test set would tune it to the
# very cancers it is judged on.
#
# **Exercise 13.3.** Return the largest threshold `t` (one of the observed scores) such
# that the share of positives with `score >= t` is at least `target`. The check compares
# with `nn.metrics.threshold_at_sensitivity`.

# %% [exercise 13.3]
def threshold_for_sensitivity(y, scores, target=0.9):
    """The largest observed score t with mean(scores[y == 1] >= t) >= target."""
    # TODO (exercise 13.3): sort the positives' scores; which one must stay above t?
    raise NotImplementedError

# %% [check 13.3]
lk.check_cases("13.3", [
    (f"threshold_for_sensitivity({what}, target={target})",
     lambda y=y, s=s, target=target: threshold_for_sensitivity(y, s, target),
     lambda y=y, s=s, target=target: nn.metrics.threshold_at_sensitivity(y, s, target))
    for what, y, s in (("y_valid, s_valid", y_valid, s_valid), ("y_test, s_test", y_test, s_test))
    for target in (0.9, 0.5, 1.0, 0.8)])

# %%
point = nn.metrics.specificity_at_sensitivity(y_valid, s_valid, y_test, s_test, target=0.9)
print(f"threshold chosen on validation: {point.threshold:.3f}")
print(f"on test: sensitivity {point.sensitivity:.3f}, specificity {point.specificity:.3f}")
cheat = nn.metrics.threshold_at_sensitivity(y_test, s_test, 0.9)
print(f"(the threshold a test-set choice would give: {cheat:.3f})")

fpr, tpr, _ = nn.metrics.roc_curve(y_test, s_test)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot(fpr, tpr, label=f"model (test AUC {nn.metrics.roc_auc(y_test, s_test):.3f})")
ax.plot([0, 1], [0, 1], "--", color="gray", label="guessing (AUC 0.5)")
ax.plot(1 - point.specificity, point.sensitivity, "o", color="C3",
        label="validation threshold\nfor 90% sensitivity")
ax.set(title="ROC curve, test set", xlabel="false-positive rate (1 - specificity)",
       ylabel="true-positive rate (sensitivity)")
ax.grid(alpha=0.3)
ax.legend(loc="lower right")
fig.tight_layout()

# %% [markdown]
# ## 5. How sure are these numbers?
#
# The test sensitivity above is a proportion $k/n$ of about 20 cancers. One more or one
# fewer cancer found moves it by 4 or 5 percentage points. A rate without its $n$ and an
# interval cannot be judged. The **Wilson score interval** is the 95% interval to use
# for a proportion on small $n$: it is the set of true rates $p$ for which the observed
# $\hat p = k/n$ is not surprising,
#
# $$(\hat p - p)^2 \le z^2\,\frac{p(1 - p)}{n}, \qquad z = 1.96,$$
#
# a quadratic inequality in $p$ whose two roots are the interval:
#
# $$p_\pm = \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n}
#   + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}} .$$
#
# The textbook "Wald" interval $\hat p \pm z\sqrt{\hat p(1 - \hat p)/n}$ is wrong
# precisely where medicine needs it: for $k = n$ (every cancer found) it has width zero,
# and near 0 or 1 it leaves $[0, 1]$.
#
# **Exercise 13.4.** Write the Wilson interval. Return `(low, high)`. The check solves the
# quadratic inequality above numerically (`np.roots`) and compares.

# %% [exercise 13.4]
def wilson(k, n, z=1.96):
    """The Wilson score interval (low, high) of the proportion k / n."""
    # TODO (exercise 13.4): the formula above
    raise NotImplementedError

# %% [check 13.4]
def wilson_by_roots(k, n, z=1.96):
    """Roots of (1 + z^2/n) p^2 - (2 p_hat + z^2/n) p + p_hat^2 = 0, smallest first."""
    p_hat = k / n
    low, high = sorted(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat ** 2]).real)
    return low, high


lk.check_cases("13.4", [(f"wilson({k}, {n})", lambda k=k, n=n: wilson(k, n),
                         lambda k=k, n=n: wilson_by_roots(k, n))
                        for k, n in ((18, 20), (20, 20), (0, 12), (5, 7), (130, 150), (1, 3))],
               rtol=1e-7, atol=1e-9)

# %% [markdown]
# The test results with their $n$ and intervals (computed with nnlite's counts and the
# check's version of the interval, so this cell runs before your exercise does):

# %%
predicted = (s_test >= point.threshold).astype(np.int64)
tn, fp, fn, tp = nn.metrics.confusion_matrix(y_test, predicted, num_classes=2).ravel()
for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp)):
    low, high = wilson_by_roots(int(k), int(n))
    print(f"test {name}: {k}/{n} = {k / n:.2f}, 95% interval {low:.2f} to {high:.2f}")

# %% [markdown]
# ## 6. The leak: augmenting before splitting
#
# Augmentation (rotations, mirrors, small shifts) multiplies a small data set. Done
# **before** the split into training and test, it puts copies of one lesion on both
# sides: the model is then tested on images it has, in effect, already seen, and every
# metric rises. The cure is the order: split **by patient** first, then augment the
# training set only.
#
# To measure the leak, take data with **nothing to learn**: 40 patients, one random
# 12x12 image each (smooth, like tissue: 3x3 blocks) and a random label (coin flip). Any honest method scores about 50%. Each
# image is augmented into 8 near-copies (a shift of up to one pixel and a little noise).
# The classifier is the nearest neighbour: the label of the closest training image.

# %%
def augment(images, copies, seed):
    """copies near-duplicates of each image: shifted by -1..1 pixel, plus a little noise."""
    aug_rng = np.random.default_rng(seed)
    out = []
    for image in images:
        for _ in range(copies):
            shifted = np.roll(image, tuple(aug_rng.integers(-1, 2, size=2)), axis=(0, 1))
            out.append(shifted + aug_rng.normal(0, 0.1, image.shape))
    return np.array(out)


def nearest_neighbour_accuracy(x_tr, y_tr, x_te, y_te):
    distances = ((x_te.reshape(len(x_te), 1, -1) - x_tr.reshape(1, len(x_tr), -1)) ** 2).sum(axis=2)
    return float(np.mean(y_tr[distances.argmin(axis=1)] == y_te))


leak_rng = np.random.default_rng(6)
coarse = leak_rng.normal(size=(40, 4, 4))                    # one smooth image per patient:
patients = coarse.repeat(3, axis=1).repeat(3, axis=2)        # (40, 12, 12), 3x3 blocks
labels = leak_rng.integers(0, 2, 40)                         # coin flips: nothing to learn
copies = 8
x_aug = augment(patients, copies, seed=7)                    # (320, 12, 12), patient-major
y_aug = np.repeat(labels, copies)
patient_of = np.repeat(np.arange(40), copies)

leaky_test = leak_rng.permutation(len(x_aug))[:len(x_aug) // 4]   # 25% of the copies
is_test = np.zeros(len(x_aug), bool)
is_test[leaky_test] = True
print(f"augment, then split the copies: test accuracy "
      f"{nearest_neighbour_accuracy(x_aug[~is_test], y_aug[~is_test], x_aug[is_test], y_aug[is_test]):.2f}"
      f"  ({len(set(patient_of[is_test]) & set(patient_of[~is_test]))} patients on both sides)")

# %% [markdown]
# **Exercise 13.5.** Split by patient: given the patient id of every image, return a
# boolean array `is_test` that puts the images of `round(test_fraction * number of
# patients)` randomly chosen patients (drawn with `np.random.default_rng(seed)`) in the
# test set and all the others in training. No patient may be on both sides. The check
# tests exactly that, on the data above and on uneven patients.

# %% [exercise 13.5]
def split_by_patient(patient_ids, test_fraction, seed):
    """is_test, a boolean array with one entry per image; whole patients on each side."""
    # TODO (exercise 13.5): choose test patients, then mark their images
    raise NotImplementedError

# %% [check 13.5]
def prove_split():
    uneven = np.repeat(np.arange(10), [1, 5, 2, 8, 3, 3, 1, 7, 2, 4])
    for ids, fraction in ((patient_of, 0.25), (uneven, 0.3), (uneven, 0.5)):
        is_test_ = np.asarray(split_by_patient(ids, fraction, seed=3))
        if is_test_.shape != ids.shape or is_test_.dtype != bool:
            raise lk.Wrong(f"return a boolean array of shape {ids.shape}, got "
                           f"{is_test_.dtype} of shape {is_test_.shape}")
        both = set(ids[is_test_]) & set(ids[~is_test_])
        if both:
            raise lk.Wrong(f"patients {sorted(int(b) for b in both)[:5]} have images on both sides")
        want = round(fraction * len(set(ids)))
        lk.compare(len(set(ids[is_test_])), want, f"the number of test patients for "
                                                  f"test_fraction {fraction}")
    if not np.array_equal(split_by_patient(uneven, 0.3, seed=3), split_by_patient(uneven, 0.3, seed=3)):
        raise lk.Wrong("the same seed must give the same split")
    if np.array_equal(split_by_patient(patient_of, 0.25, seed=3), split_by_patient(patient_of, 0.25, seed=4)):
        raise lk.Wrong("different seeds give the same split: use np.random.default_rng(seed)")


ok = lk.run_check("13.5", prove_split)
split_by_patient = lk.fallback(ok, split_by_patient, lambda ids, fraction, seed: np.isin(
    ids, np.random.default_rng(seed).permutation(np.unique(ids))[:round(fraction * len(np.unique(ids)))]),
    "a version with np.isin")

# %%
is_test = split_by_patient(patient_of, 0.25, seed=3)
print(f"split by patient, then augment: test accuracy "
      f"{nearest_neighbour_accuracy(x_aug[~is_test], y_aug[~is_test], x_aug[is_test], y_aug[is_test]):.2f}"
      f"  ({len(set(patient_of[is_test]) & set(patient_of[~is_test]))} patients on both sides)")
honest = [nearest_neighbour_accuracy(*(lambda t: (x_aug[~t], y_aug[~t], x_aug[t], y_aug[t]))(
    split_by_patient(patient_of, 0.25, seed=s))) for s in range(20)]
print(f"over 20 patient splits: mean {np.mean(honest):.2f}, from {min(honest):.2f} to "
      f"{max(honest):.2f} (10 test patients each: the spread of a coin)")

# %% [markdown]
# On data with nothing to learn, the leaky split reports a near-perfect classifier; the
# patient split reports the truth, about a coin's 50%, with a wide spread because 10 test
# patients are few. A published 100% on augmented patches from a few dozen patients is
# most likely this leak: ask how the split was made.
#
# ## Summary
#
# * Report sensitivity (cancers found) and specificity (benign cleared), with the
#   confusion matrix; beside accuracy, always the majority baseline.
# * The AUC is the probability that a malignant case outranks a benign one: threshold-
#   free, and blind to the class balance.
# * Choose the threshold on validation (e.g. for 90% sensitivity), apply it to test, and
#   report the sensitivity it really reaches there.
# * Every rate carries its $n$ and a Wilson 95% interval; two dozen cancers give an
#   interval about 20 points wide.
# * Split by patient, then augment: the other order leaks, and on data with nothing to
#   learn it still reports near-perfect accuracy.
