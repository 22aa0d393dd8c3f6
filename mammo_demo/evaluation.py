"""Test-set metrics with their sample sizes and 95% intervals, shared by every mammo-demo command.

A rate measured on 7 malignant patches cannot support a percentage to one
decimal, so every rate here travels with its ``n`` and a 95% interval:

* a **proportion** ``k / n`` (accuracy, recall, precision, specificity, the
  sensitivity and specificity at the chosen threshold) gets the **Wilson
  score interval**::

      centre = (k + z^2/2) / (n + z^2),   half = z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)

  with ``z = 1.96``; unlike ``p +- z sqrt(p (1 - p) / n)`` it stays inside
  [0, 1] and does not collapse to a zero width at 0% or 100%;
* the **ROC AUC** and the **balanced accuracy** are not proportions: their
  interval is the 2.5 and 97.5 percentiles of a **bootstrap over images**
  (patches of one mammogram are resampled together, since they are not
  independent); resamples that lack a class are skipped and counted.

A rate is a dict ``{"value", "k", "n", "ci95": [lo, hi], "method"}``
(:func:`proportion`); ``value`` is ``None`` when ``n == 0``. Below
:data:`MIN_MEANINGFUL_N` the report marks the figure as not meaningful.

The operating point "specificity at 90% sensitivity" takes its threshold
from data the evaluated set does not contain (the validation split), and
reports the sensitivity that threshold reaches on the evaluated set beside
the specificity; ``reached_target`` says whether it got to 90%.

Nothing here is a medical device.
"""
from __future__ import annotations

import math

import numpy as np

from nnlite import metrics

TARGET_SENSITIVITY = 0.9
#: below this many samples in its denominator a rate is flagged "not meaningful"
MIN_MEANINGFUL_N = 30
#: bootstrap resamples for the AUC and balanced-accuracy intervals
BOOTSTRAP_SAMPLES = 1000
_Z95 = 1.959963984540054


# ------------------------------------------------------------------ intervals
def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """The Wilson score interval of the proportion ``k / n`` (``None`` when ``n == 0``)."""
    k, n = int(k), int(n)
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z / (n + z2) * math.sqrt(k * (n - k) / n + z2 / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> dict:
    """A rate ``k / n`` with its Wilson 95% interval: ``{"value", "k", "n", "ci95", "method"}``."""
    ci = wilson_interval(k, n)
    return {"value": (int(k) / int(n)) if n else None, "k": int(k), "n": int(n),
            "ci95": None if ci is None else [float(ci[0]), float(ci[1])], "method": "wilson"}


def bootstrap_interval(statistic, groups, n_samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0) -> dict:
    """Percentile 95% interval of any ``statistic(index_array)`` over a bootstrap of ``groups``.

    The general (one call per resample) form; :func:`bootstrap_auc` and
    :func:`bootstrap_balanced_accuracy` are vectorised special cases.

    Args:
        statistic: called with an index array into the samples; returns a float,
            or raises ``ValueError`` when it is undefined on that resample
            (e.g. an AUC on a resample with one class only): such resamples are skipped.
        groups: (N,) group of each sample (the image it was cut from); whole
            groups are drawn with replacement.

    Returns ``{"ci95": [lo, hi] or None, "method", "resamples", "skipped"}``
    (``None`` when more than half the resamples were undefined).
    """
    groups = np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1 if len(inverse) else 0)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(n_samples)):
        drawn = rng.integers(0, len(members), size=len(members)) if members else []
        idx = np.concatenate([members[g] for g in drawn]) if len(drawn) else np.zeros(0, np.int64)
        try:
            values.append(float(statistic(idx)))
        except ValueError:
            values.append(np.nan)
    return _percentiles(np.asarray(values, dtype=np.float64), len(members), int(n_samples))


def bootstrap_weights(groups, n_samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> np.ndarray:
    """(n_samples, N) integer weights of a bootstrap over groups (images).

    Each resample draws the groups with replacement; a sample's weight is how
    often its group was drawn (its patches come along together).
    """
    groups = np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    n_samples = int(n_samples)
    drawn = rng.integers(0, max(n_groups, 1), size=(n_samples, n_groups))
    offset = (np.arange(n_samples) * n_groups)[:, None]                   # one bincount for all
    per_group = np.bincount((drawn + offset).ravel(),
                            minlength=n_samples * n_groups).reshape(n_samples, n_groups)
    return per_group[:, inverse]


def _percentiles(values: np.ndarray, n_groups: int, n_samples: int) -> dict:
    values = values[np.isfinite(values)]
    ci = ([float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
          if len(values) >= 0.5 * n_samples else None)
    return {"ci95": ci, "method": f"bootstrap over {n_groups} images", "resamples": int(len(values)),
            "skipped": int(n_samples - len(values))}


def bootstrap_auc(positive, scores, groups, n_samples: int = BOOTSTRAP_SAMPLES,
                  seed: int = 0) -> dict:
    """95% percentile interval of the ROC AUC over a bootstrap of images.

    ``AUC = sum_ij w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W+ W-)`` over
    positives ``i`` and negatives ``j`` with the resample weights ``w``
    (:func:`bootstrap_weights`); resamples without both classes are skipped.
    """
    positive, scores = np.asarray(positive, bool), np.asarray(scores, np.float64)
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])   # (P, Q)
    w = bootstrap_weights(groups, n_samples, seed).astype(np.float64)
    w_pos, w_neg = w[:, positive], w[:, ~positive]
    denominator = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((w_pos @ wins) * w_neg).sum(axis=1) / denominator
    auc[denominator == 0] = np.nan
    return _percentiles(auc, len(np.unique(np.asarray(groups))), n_samples)


def bootstrap_balanced_accuracy(y, pred, num_classes: int, groups,
                                n_samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """95% percentile interval of the balanced accuracy over a bootstrap of images
    (the mean recall of the classes present in each resample)."""
    y, pred = np.asarray(y), np.asarray(pred)
    w = bootstrap_weights(groups, n_samples, seed).astype(np.float64)
    onehot = (y[:, None] == np.arange(num_classes)[None, :]).astype(np.float64)       # (N, K)
    totals = w @ onehot                                                                 # (B, K)
    hits = w @ (onehot * (pred == y)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(totals > 0, hits / totals, np.nan)
        values = np.nanmean(recall, axis=1) if len(y) else np.full(len(w), np.nan)
    return _percentiles(values, len(np.unique(np.asarray(groups))), n_samples)


# ------------------------------------------------------------------ helpers
def malignant_index(classes) -> int:
    """Index of ``"malignant"`` in ``classes`` (``ValueError`` when there is none)."""
    classes = list(classes)
    if "malignant" not in classes:
        raise ValueError(f"the task's classes {classes} have no 'malignant' class")
    return classes.index("malignant")


def counts(y, classes) -> dict:
    """``{class name: number of samples}``."""
    y = np.asarray(y)
    return {name: int(np.sum(y == k)) for k, name in enumerate(classes)}


def n_images(ids) -> int:
    return int(len(np.unique(np.asarray(ids))))


def balanced_accuracy(y, pred, num_classes: int) -> float:
    """Mean recall over the classes present in ``y``."""
    y, pred = np.asarray(y), np.asarray(pred)
    recalls = [float(np.mean(pred[y == c] == c)) for c in range(num_classes) if np.any(y == c)]
    if not recalls:
        raise ValueError("balanced accuracy of an empty set")
    return float(np.mean(recalls))


def per_class_table(y, pred, classes) -> dict:
    """One-vs-rest precision, recall, specificity (rates with n and interval), F1 and support."""
    y, pred = np.asarray(y), np.asarray(pred)
    table = {}
    for c, name in enumerate(classes):
        tp = int(np.sum((pred == c) & (y == c)))
        fp = int(np.sum((pred == c) & (y != c)))
        fn = int(np.sum((pred != c) & (y == c)))
        tn = int(np.sum((pred != c) & (y != c)))
        precision, recall = proportion(tp, tp + fp), proportion(tp, tp + fn)
        p, r = precision["value"] or 0.0, recall["value"] or 0.0
        table[name] = {"precision": precision, "recall": recall,
                       "specificity": proportion(tn, tn + fp),
                       "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0, "support": tp + fn}
    return table


def majority_baseline(y_test, classes, y_train=None) -> dict:
    """Accuracy of always answering the most frequent class (of ``y_train``, else of ``y_test``).

    Its balanced accuracy is ``1 / K`` by construction; a model worth its
    training beats both numbers.
    """
    reference = np.asarray(y_test if y_train is None else y_train)
    if not len(reference):
        raise ValueError("majority baseline of an empty set")
    majority = int(np.bincount(reference, minlength=len(classes)).argmax())
    y_test = np.asarray(y_test)
    return {"class": list(classes)[majority],
            "chosen_on": "test" if y_train is None else "train",
            "accuracy": proportion(int(np.sum(y_test == majority)), len(y_test)),
            "balanced_accuracy": 1.0 / len(classes)}


def operating_point(y_val, s_val, y_test, s_test, target: float = TARGET_SENSITIVITY,
                    chosen_on: str = "validation") -> dict:
    """Specificity at ``target`` sensitivity: threshold from ``(y_val, s_val)``, rates on test.

    ``y_*`` are booleans (positive = malignant), ``s_*`` the malignant scores.
    Returns the threshold, ``test_sensitivity`` and ``test_specificity`` (as
    floats and as rates with n and interval) and ``reached_target``.
    """
    y_test, s_test = np.asarray(y_test, bool), np.asarray(s_test, np.float64)
    point = metrics.specificity_at_sensitivity(np.asarray(y_val, bool), s_val, y_test, s_test,
                                               target)
    hit = s_test >= point.threshold
    sens = proportion(int(np.sum(hit & y_test)), int(np.sum(y_test)))
    spec = proportion(int(np.sum(~hit & ~y_test)), int(np.sum(~y_test)))
    return {"target_sensitivity": float(target), "threshold": float(point.threshold),
            "threshold_chosen_on": chosen_on,
            "test_sensitivity": point.sensitivity, "test_specificity": point.specificity,
            "sensitivity": sens, "specificity": spec,
            "reached_target": bool(point.sensitivity >= target)}


# ------------------------------------------------------------------ all metrics
def compute_metrics(y_test, p_test, classes, *, image_ids=None, y_val=None, p_val=None,
                    threshold_from: str = "validation", no_threshold_reason: str | None = None,
                    y_train=None, target_sensitivity: float = TARGET_SENSITIVITY,
                    seed: int = 0, bootstrap_samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """Every metric of an evaluated set, JSON-ready, each rate with its n and 95% interval.

    Args:
        y_test: (N,) true class indices; p_test: (N, K) predicted probabilities.
        classes: the K class names (one of them ``"malignant"``).
        image_ids: (N,) image of each sample, for the bootstrap over images
            (default: every sample its own image).
        y_val, p_val: labels and probabilities of data **not** in the
            evaluated set (the validation split), used only to choose the
            threshold of the operating point; ``threshold_from`` names it.
        no_threshold_reason: why there is no such data (stored in ``notes``).
        y_train: training labels, for the majority-class baseline.

    Returns a dict with ``n_test``, ``n_images``, ``accuracy``,
    ``balanced_accuracy``, ``confusion_matrix``, ``per_class`` (from
    :func:`per_class_table`), ``malignant`` (recall, precision, f1,
    specificity, auc as floats), ``auc_one_vs_rest``, ``auc_macro``,
    ``baseline`` (:func:`majority_baseline`), ``intervals`` (each headline
    rate with n and interval), ``specificity_at_sensitivity``
    (:func:`operating_point` or ``None``) and ``notes``.
    """
    classes = list(classes)
    k = len(classes)
    y_test = np.asarray(y_test, dtype=np.int64)
    p_test = np.asarray(p_test, dtype=np.float64)
    if p_test.ndim != 2 or p_test.shape != (len(y_test), k):
        raise ValueError(f"compute_metrics: probabilities of shape {p_test.shape} for "
                         f"{len(y_test)} labels and {k} classes {classes}")
    ids = np.arange(len(y_test)) if image_ids is None else np.asarray(image_ids)
    pred = p_test.argmax(axis=1)
    mal = malignant_index(classes)
    notes: list[str] = []
    table = per_class_table(y_test, pred, classes)
    correct = int(np.sum(pred == y_test))
    out = {"n_test": int(len(y_test)), "n_images": n_images(ids),
           "accuracy": correct / len(y_test) if len(y_test) else None,
           "balanced_accuracy": balanced_accuracy(y_test, pred, k),
           "confusion_matrix": metrics.confusion_matrix(y_test, pred, k).tolist(),
           "per_class": table, "notes": notes}

    auc = {}
    for i, c in enumerate(classes):
        try:
            auc[c] = metrics.roc_auc(y_test == i, p_test[:, i])
        except ValueError as e:
            auc[c] = None
            notes.append(f"AUC {c}-vs-rest undefined: {e}")
    out["auc_one_vs_rest"] = auc
    out["auc_macro"] = float(np.mean(list(auc.values()))) if None not in auc.values() else None
    m = table[classes[mal]]
    out["malignant"] = {"recall": m["recall"]["value"], "precision": m["precision"]["value"],
                        "f1": m["f1"], "specificity": m["specificity"]["value"],
                        "auc": auc[classes[mal]]}

    is_mal = y_test == mal
    auc_rate = {"value": auc[classes[mal]], "n": int(len(y_test)),
                "n_positive": int(is_mal.sum()), "n_images": n_images(ids)}
    if auc_rate["value"] is not None:
        auc_rate.update(bootstrap_auc(is_mal, p_test[:, mal], ids, bootstrap_samples, seed))
    else:
        auc_rate.update({"ci95": None, "method": "undefined"})
    bal = {"value": out["balanced_accuracy"], "n": int(len(y_test)), "n_images": n_images(ids)}
    bal.update(bootstrap_balanced_accuracy(y_test, pred, k, ids, bootstrap_samples, seed))
    out["intervals"] = {
        "accuracy": proportion(correct, len(y_test)),
        "balanced_accuracy": bal,
        "malignant_recall": m["recall"], "malignant_precision": m["precision"],
        "malignant_specificity": m["specificity"], "malignant_auc": auc_rate,
    }
    out["baseline"] = majority_baseline(y_test, classes, y_train)

    op = None
    if y_val is not None and p_val is not None:
        try:
            op = operating_point(np.asarray(y_val) == mal, np.asarray(p_val)[:, mal],
                                 is_mal, p_test[:, mal], target_sensitivity, threshold_from)
        except ValueError as e:
            notes.append(f"specificity at {target_sensitivity:.0%} sensitivity undefined: {e}")
        else:
            if not op["reached_target"]:
                notes.append(f"the threshold chosen on {threshold_from} reaches only "
                             f"{op['test_sensitivity']:.1%} sensitivity on this set, short of "
                             f"the {target_sensitivity:.0%} target")
    elif no_threshold_reason:
        notes.append(f"specificity at {target_sensitivity:.0%} sensitivity not reported: "
                     f"{no_threshold_reason}")
    out["specificity_at_sensitivity"] = op
    return out


def roc_curves(y_test, p_test, classes) -> list:
    """``(name, fpr, tpr, auc)`` per class (one-vs-rest), skipping undefined ones.

    For two classes only the malignant curve is drawn (benign's is its mirror image).
    """
    classes = list(classes)
    which = range(len(classes)) if len(classes) > 2 else [malignant_index(classes)]
    curves = []
    for i in which:
        t = np.asarray(y_test) == i
        if t.all() or not t.any():
            continue
        fpr, tpr, _ = metrics.roc_curve(t, p_test[:, i])
        curves.append((f"{classes[i]} vs rest", fpr, tpr, metrics.roc_auc(t, p_test[:, i])))
    return curves
