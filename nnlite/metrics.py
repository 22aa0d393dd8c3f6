"""Evaluation metrics: classification, ROC, medical operating points, segmentation.

Everything here runs in NumPy on the CPU (inputs on the GPU are copied with
:func:`nnlite.backend.to_numpy`) and returns Python floats or NumPy arrays.

Label inputs (``y_true``, ``y_pred``) may be given as

* class indices, shape (N,), integers (or floats holding whole numbers);
* scores or one-hot rows, shape (N, K) with K > 1: the argmax is taken;
* probabilities of class 1, shape (N,) or (N, 1) floats that are not all
  whole numbers: thresholded at 0.5 (``p >= 0.5`` is class 1).

For a class ``c`` (one-vs-rest), with TP, FP, FN, TN counted from the
confusion matrix::

    precision   = TP / (TP + FP)        positive predictive value
    recall      = TP / (TP + FN)        sensitivity, true positive rate
    specificity = TN / (TN + FP)        true negative rate
    F1          = 2 TP / (2 TP + FP + FN) = harmonic mean of precision and recall

A ratio whose denominator is zero (a class that never occurs, or is never
predicted) is undefined; it is returned as ``zero_division`` (default 0.0,
like scikit-learn), never as a silent NaN. ROC quantities with only one
class present raise ``ValueError``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import to_numpy


# ------------------------------------------------------------------ helpers
def _labels(y, name: str) -> np.ndarray:
    """Class indices (N,) int64 from indices, scores/one-hot rows or probabilities."""
    y = np.asarray(to_numpy(y))
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), (N, 1) or (N, K), got {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise ValueError(f"{name} must be numeric, got dtype {y.dtype}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or inf")
    if np.all(y == np.round(y)):
        return y.astype(np.int64)
    if y.min() < 0 or y.max() > 1:
        raise ValueError(f"{name} holds non-integer values outside [0, 1]: not class indices "
                         f"and not probabilities (logits? apply a sigmoid or pass labels)")
    return (y >= 0.5).astype(np.int64)


def _pair(y_true, y_pred):
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} samples, y_pred {p.shape[0]}")
    if t.size == 0:
        raise ValueError("metrics need at least one sample, got 0")
    return t, p


def _divide(num, den, zero_division: float):
    """``num / den`` element-wise, ``zero_division`` where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


# ----------------------------------------------------------- classification
def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` = samples of true class ``i`` predicted as ``j``.

    Rows are true classes, columns predicted classes (scikit-learn's layout).
    ``num_classes`` defaults to ``1 + max(label)`` over both inputs.

    Returns: (K, K) int64 array.
    """
    t, p = _pair(y_true, y_pred)
    lo = min(int(t.min()), int(p.min()))
    if lo < 0:
        raise ValueError(f"labels must be >= 0, got {lo}")
    hi = max(int(t.max()), int(p.max()))
    k = hi + 1 if num_classes is None else int(num_classes)
    if hi >= k:
        raise ValueError(f"label {hi} out of range for num_classes={k} (labels 0..{k - 1})")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _counts(y_true, y_pred, num_classes):
    """One-vs-rest TP, FP, FN, TN per class, each (K,) int64."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp        # predicted c, truly something else
    fn = cm.sum(axis=1) - tp        # truly c, predicted something else
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn


def precision_recall_f1(y_true, y_pred, num_classes: int | None = None,
                        zero_division: float = 0.0):
    """Per-class precision, recall (sensitivity) and F1.

    Args:
        zero_division: value returned for a class whose denominator is 0
            (precision of a class never predicted, recall of a class with no
            samples, F1 of a class neither present nor predicted).

    Returns: ``(precision, recall, f1)``, three (K,) float64 arrays.
    """
    tp, fp, fn, _ = _counts(y_true, y_pred, num_classes)
    precision = _divide(tp, tp + fp, zero_division)
    recall = _divide(tp, tp + fn, zero_division)
    f1 = _divide(2 * tp, 2 * tp + fp + fn, zero_division)
    return precision, recall, f1


def specificity(y_true, y_pred, num_classes: int | None = None,
                zero_division: float = 0.0) -> np.ndarray:
    """Per-class specificity ``TN / (TN + FP)`` (one-vs-rest), (K,) float64.

    For two classes, the specificity of class 1 (e.g. malignant) is the recall
    of class 0. A class whose negatives are absent gets ``zero_division``.
    """
    _, fp, _, tn = _counts(y_true, y_pred, num_classes)
    return _divide(tn, tn + fp, zero_division)


def classification_report(y_true, y_pred, num_classes: int | None = None,
                          class_names=None, zero_division: float = 0.0) -> dict:
    """All per-class metrics in one JSON-serialisable dict.

    Returns::

        {"<class name>": {"precision", "recall", "f1", "specificity", "support"},
         ...,
         "accuracy": float,
         "macro avg": {...},          # unweighted mean over classes
         "weighted avg": {...},       # mean weighted by support
         "confusion_matrix": [[...], ...]}

    ``class_names`` defaults to ``"0", "1", ...``.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    k = cm.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names for {k} classes")
    precision, recall, f1 = precision_recall_f1(y_true, y_pred, k, zero_division)
    spec = specificity(y_true, y_pred, k, zero_division)
    support = cm.sum(axis=1)
    per_class = {"precision": precision, "recall": recall, "f1": f1, "specificity": spec}
    report = {}
    for i, name in enumerate(names):
        report[name] = {key: float(v[i]) for key, v in per_class.items()}
        report[name]["support"] = int(support[i])
    total = int(support.sum())
    report["accuracy"] = float(np.trace(cm) / total)
    report["macro avg"] = {key: float(v.mean()) for key, v in per_class.items()}
    report["macro avg"]["support"] = total
    report["weighted avg"] = {key: float((v * support).sum() / total) for key, v in per_class.items()}
    report["weighted avg"]["support"] = total
    report["confusion_matrix"] = cm.tolist()
    return report


# ----------------------------------------------------------------------- ROC
def _binary_scores(y_true, scores):
    y = np.asarray(to_numpy(y_true))
    s = np.asarray(to_numpy(scores), dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"expected y_true (N,) and scores (N,) of one length, got "
                         f"{y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be binary (0/1 or False/True); for a multi-class "
                         "problem pass (y_true == c) and the scores of class c")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(f"ROC needs both classes in y_true, got {n_pos} positives and "
                         f"{y.size - n_pos} negatives")
    return y, s


def roc_curve(y_true_binary, scores):
    """ROC curve: false and true positive rates at every distinct threshold.

    A sample is predicted positive when ``score >= threshold``. Thresholds are
    the distinct scores in decreasing order, preceded by ``+inf`` (nothing
    predicted positive), so the curve runs from (0, 0) to (1, 1). Tied scores
    share one threshold: they enter the positive set together and form one
    step (a diagonal segment when the tie mixes classes).

    Returns: ``(fpr, tpr, thresholds)``, float64 arrays of equal length.
    Raises ``ValueError`` unless both classes are present.
    """
    y, s = _binary_scores(y_true_binary, scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # end of each run of equal scores
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return fpr, tpr, thresholds


def roc_auc(y_true_binary, scores) -> float:
    """Area under the tie-aware ROC curve (trapezoids).

    Equals the Mann-Whitney probability that a random positive scores higher
    than a random negative, ties counted 1/2:
    ``AUC = (#{s+ > s-} + 0.5 #{s+ = s-}) / (P * N)``.
    Raises ``ValueError`` unless both classes are present.
    """
    fpr, tpr, _ = roc_curve(y_true_binary, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def threshold_at_sensitivity(y_true, scores, target: float = 0.9) -> float:
    """The largest threshold whose sensitivity on ``(y_true, scores)`` is >= target.

    Sensitivity at threshold ``th`` is ``#{positives with score >= th} / P``.
    The result is one of the observed scores (a finite float).
    """
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    _, tpr, thresholds = roc_curve(y_true, scores)
    i = int(np.argmax(tpr >= target))       # tpr is non-decreasing; tpr[-1] == 1
    return float(thresholds[i])


class OperatingPoint(NamedTuple):
    """A threshold and the sensitivity and specificity it gives."""
    threshold: float
    sensitivity: float
    specificity: float


def sensitivity_specificity(y_true, scores, threshold: float):
    """``(sensitivity, specificity)`` of the rule ``score >= threshold``."""
    y, s = _binary_scores(y_true, scores)
    pred = s >= threshold
    pos = y == 1
    return float(np.mean(pred[pos])), float(np.mean(~pred[~pos]))


def specificity_at_sensitivity(y_val, s_val, y_test, s_test, target: float = 0.9) -> OperatingPoint:
    """Specificity at a fixed sensitivity, the threshold chosen on validation.

    The thesis' metric: pick the threshold on the *validation* set with
    :func:`threshold_at_sensitivity` (the largest one reaching ``target``),
    then report the sensitivity and specificity that threshold gives on the
    *test* set (choosing it on the test set would be optimistic). The test
    sensitivity may fall below ``target``; that is the honest result.

    Returns: ``OperatingPoint(threshold, sensitivity, specificity)``.
    """
    threshold = threshold_at_sensitivity(y_val, s_val, target)
    sens, spec = sensitivity_specificity(y_test, s_test, threshold)
    return OperatingPoint(threshold, sens, spec)


# ------------------------------------------------------------- overfitting
def overfitting_ratio(train_acc: float, val_acc: float) -> float:
    """``beta = train_acc / val_acc`` (transfer-learning paper).

    About 1: train and validation agree; above 1: the model does better on
    what it has seen, i.e. overfits (e.g. 1.25 = 25 % better on training).
    """
    train_acc, val_acc = float(train_acc), float(val_acc)
    if not val_acc > 0:
        raise ValueError(f"overfitting_ratio needs val_acc > 0, got {val_acc}")
    if train_acc < 0:
        raise ValueError(f"overfitting_ratio needs train_acc >= 0, got {train_acc}")
    return train_acc / val_acc


# -------------------------------------------------------------- segmentation
def _masks(pred_mask, true_mask):
    a, b = np.asarray(to_numpy(pred_mask)), np.asarray(to_numpy(true_mask))
    if a.shape != b.shape:
        raise ValueError(f"pred_mask has shape {a.shape}, true_mask {b.shape}: they must match")
    if a.size == 0:
        raise ValueError("masks are empty")
    return a, b


def _binary_mask(m, name):
    if m.dtype == bool:
        return m
    if not np.isin(m, (0, 1)).all():
        raise ValueError(f"{name} must be binary (0/1 or bool); for label masks pass num_classes")
    return m.astype(bool)


def iou(pred_mask, true_mask, num_classes: int | None = None, empty: float = 1.0):
    """Intersection over union (Jaccard index) of segmentation masks.

    ``IoU = |A and B| / |A or B|`` counted in pixels, over the whole array
    (any shape, e.g. (H, W) or (N, H, W)).

    * ``num_classes=None``: binary masks (bool or 0/1); returns a float.
    * ``num_classes=K``: integer label masks; returns the (K,) IoU of each
      class (its mean is the "mean IoU").

    Args:
        empty: value when the union is empty (the class is absent from both
            masks: they agree perfectly), default 1.0.
    """
    a, b = _masks(pred_mask, true_mask)
    if num_classes is None:
        a, b = _binary_mask(a, "pred_mask"), _binary_mask(b, "true_mask")
        union = int(np.logical_or(a, b).sum())
        return float(np.logical_and(a, b).sum() / union) if union else float(empty)
    k = int(num_classes)
    if a.dtype.kind not in "iub" or b.dtype.kind not in "iub":
        raise ValueError(f"label masks must be integers, got {a.dtype} and {b.dtype}")
    lo, hi = min(int(a.min()), int(b.min())), max(int(a.max()), int(b.max()))
    if lo < 0 or hi >= k:
        raise ValueError(f"mask label {lo if lo < 0 else hi} out of range 0..{k - 1}")
    cm = np.bincount(b.reshape(-1).astype(np.int64) * k + a.reshape(-1), minlength=k * k).reshape(k, k)
    inter = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - inter
    return _divide(inter, union, empty)


def pixel_accuracy(pred_mask, true_mask) -> float:
    """Fraction of pixels whose predicted label equals the true label."""
    a, b = _masks(pred_mask, true_mask)
    return float(np.mean(a == b))


def dice(pred_mask, true_mask, empty: float = 1.0) -> float:
    """Dice coefficient (F1 of the lesion pixels) of two binary masks.

    ``Dice = 2 |A and B| / (|A| + |B|) = 2 IoU / (1 + IoU)``, over the whole
    array. When both masks are empty the ratio is 0/0: the masks agree
    perfectly and the result is ``empty`` (default 1.0, as for :func:`iou`).
    An empty prediction of a non-empty mask (or the reverse) gives 0.
    """
    a, b = _masks(pred_mask, true_mask)
    a, b = _binary_mask(a, "pred_mask"), _binary_mask(b, "true_mask")
    total = int(a.sum()) + int(b.sum())
    return float(2 * np.logical_and(a, b).sum() / total) if total else float(empty)


def segmentation_scores(pred_masks, true_masks, empty: float = 1.0) -> dict:
    """Per-image IoU, Dice and pixel accuracy of a batch of binary masks.

    Args:
        pred_masks, true_masks: (N, ...) binary masks (bool or 0/1), image i
            being ``[i]`` (e.g. (N, 1, H, W) or (N, H, W)).
        empty: score of an image whose true and predicted masks are both
            empty (IoU and Dice are 0/0 there; 1.0: they agree).

    Returns ``{"iou", "dice", "pixel_accuracy": (N,) float64,
    "true_pixels", "pred_pixels": (N,) int64}``. Edge cases, per image: both
    masks empty -> IoU = Dice = ``empty``; exactly one empty -> 0; pixel
    accuracy is always defined. Average these arrays for the mean over
    images ("mean IoU"), not the pixels of the whole batch.
    """
    a, b = _masks(pred_masks, true_masks)
    a, b = _binary_mask(a, "pred_masks"), _binary_mask(b, "true_masks")
    if a.ndim < 2:
        raise ValueError(f"segmentation_scores expects (N, ...) masks, got shape {a.shape}")
    n = a.shape[0]
    a, b = a.reshape(n, -1), b.reshape(n, -1)                   # (N, pixels)
    inter = np.logical_and(a, b).sum(axis=1)
    pred_px, true_px = a.sum(axis=1), b.sum(axis=1)
    union = pred_px + true_px - inter
    return {"iou": _divide(inter, union, empty), "dice": _divide(2 * inter, pred_px + true_px, empty),
            "pixel_accuracy": np.mean(a == b, axis=1).astype(np.float64),
            "true_pixels": true_px.astype(np.int64), "pred_pixels": pred_px.astype(np.int64)}


def lesions_found(ious, true_pixels, threshold: float = 0.5) -> tuple[int, int]:
    """How many images with a lesion have ``IoU > threshold``: ``(found, n)``.

    Only images whose true mask is non-empty count (``true_pixels > 0``); an
    image without a lesion has nothing to find. The usual detection rule is
    IoU above 0.5 (strictly). Returns integers so that the caller can attach
    an interval to the rate ``found / n``.
    """
    ious, true_pixels = np.asarray(ious, dtype=np.float64), np.asarray(true_pixels)
    if ious.shape != true_pixels.shape:
        raise ValueError(f"ious {ious.shape} and true_pixels {true_pixels.shape} must match")
    has = true_pixels > 0
    return int(np.sum(ious[has] > threshold)), int(has.sum())
