"""The three whole-mammogram experiments of the thesis, on preprocessed films.

1. **Sanity task** (thesis section 6.2): CC vs MLO. The MLO view shows the
   pectoral muscle in the upper corner at the chest wall, so a working
   pipeline learns it to > 99 % in a few epochs; a lower figure means the
   preprocessing (side, flip, crop) is broken. Reported: test accuracy with its
   n and Wilson interval. (``reduced_resnet`` stays at 50 % validation accuracy
   for the first two or three epochs on the phantom while its training accuracy
   is already near 100 %: BatchNorm's running statistics, which evaluation
   uses, lag behind the batch statistics; by epoch 5 both agree. Hence 5
   epochs by default.)
2. **Malignant vs not, per image** (Table 6.3): for each model, the ROC AUC
   (95 % interval from a bootstrap over **patients**), the threshold for 90 %
   sensitivity chosen on the **validation** images and applied to the test
   images (the sensitivity it reaches there, the specificity), and the
   accuracy at 0.5 and at that threshold, each with its n, beside the
   majority-class baseline.
3. **Per breast** (Table 6.4): the malignant scores of a breast's CC and MLO
   images combined by minimum, maximum and mean; only breasts with both
   views, n stated; the threshold chosen the same way on validation breasts.

:func:`train_task` trains one network for one task; :func:`image_row` and
:func:`breast_rows` compute the table rows from scores.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import nnlite as nn
from nnlite import metrics as nn_metrics

from ..evaluation import TARGET_SENSITIVITY, bootstrap_auc, operating_point, proportion

MODELS = ("reduced_resnet", "reduced_alexnet", "alexnet", "resnet50")
FULL_MODELS = ("alexnet", "resnet50")
AGGREGATIONS = ("min", "max", "mean")
BEST_MODEL, CHECKPOINT = "best_model.npz", "checkpoint.npz"
HISTORY_CSV, HISTORY_JSON = "history.csv", "history.json"


# ------------------------------------------------------------------ models
def check_model(name: str, size: int) -> None:
    """``ValueError`` for an unknown model or an input size it cannot take."""
    if name not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}; got {name!r}")
    if name in FULL_MODELS and size != 224:
        raise ValueError(f"{name} is the thesis' full configuration for 224x224 input: pass "
                         f"--size 224 (got {size}); it takes hours on a CPU")


def build_model(name: str, size: int, seed: int = 0):
    """The named network for 1 x size x size input and 2 classes."""
    check_model(name, size)
    return getattr(nn.zoo, name)(input_shape=(1, size, size), num_classes=2, seed=seed)


def class_weights(y) -> np.ndarray:
    """Balanced class weights ``n / (2 n_c)`` (float64), 1 for a missing class."""
    counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (2 * np.maximum(counts, 1)), 1.0)
    return weights


def train_task(images, split: dict, task: str, model_name: str, folder, *, epochs: int,
               batch_size: int, lr: float, seed: int, resume: bool, progress: bool,
               provenance: dict, weighted: bool) -> dict:
    """Train ``model_name`` on ``task`` (``"view"`` or ``"malignant"``); keep the best model.

    The best model (lowest validation loss) goes to ``folder/best_model.npz``
    with the provenance, task and epoch in its metadata; the last epoch to
    ``folder/checkpoint.npz`` (``resume``). Returns the model, its history,
    the best epoch, the class weights used and the malignant/MLO probabilities
    (``p1``) of every image of ``images``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = images.labels(task)
    train, val = images.subset(split["train"]), images.subset(split["val"])
    y_train, y_val = y[split["train"]], y[split["val"]]
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"the training or validation split is empty ({len(images)} images): "
                         f"use more patients")
    weights = class_weights(y_train) if weighted else None
    model = build_model(model_name, images.x.shape[-1], seed=seed)
    opt = nn.Adam(model.parameters(), lr=lr)
    loss = nn.SoftmaxCrossEntropy(class_weights=weights)
    best_path = folder / BEST_MODEL
    callbacks = [nn.ModelCheckpoint(best_path, monitor="val_loss"),
                 nn.HistoryLogger(folder / HISTORY_CSV), nn.HistoryLogger(folder / HISTORY_JSON)]
    if progress:
        print(f"[{task}] {model_name} ({model.count_params():,} parameters): {len(train)} "
              f"training images {np.bincount(y_train, minlength=2).tolist()}, {len(val)} "
              f"validation, {epochs} epochs"
              + (f", class weights {np.round(weights, 3).tolist()}" if weights is not None else ""),
              flush=True)
    start = time.perf_counter()
    history = model.fit(train.x, y_train, loss=loss, optimizer=opt, epochs=epochs,
                        batch_size=batch_size, validation_data=(val.x, y_val), seed=seed,
                        callbacks=callbacks, verbose=1 if progress else 0,
                        checkpoint_path=folder / CHECKPOINT, resume=resume)
    seconds = time.perf_counter() - start
    val_losses = history.history.get("val_loss", [])
    best_epoch = int(np.argmin(val_losses)) + 1 if val_losses else 0
    best = nn.load(best_path) if best_path.exists() else model
    p1 = nn.predict_proba(best, images.x)[:, 1].astype(np.float64)
    return {"model": best, "history": history.history, "best_epoch": best_epoch,
            "epochs_run": history.epochs, "seconds": round(seconds, 2),
            "class_weights": None if weights is None else [float(w) for w in weights],
            "p1": p1, "path": best_path}


def save_model(model, path, provenance: dict, **facts) -> Path:
    """``nn.save`` with the provenance and ``facts`` in the file's metadata."""
    return nn.save(model, path, metadata={**provenance, **facts})


# ------------------------------------------------------------------ the rows of the tables
def accuracy_rate(y, scores, threshold: float) -> dict:
    """Accuracy (k, n, Wilson interval) of ``score >= threshold`` -> class 1."""
    y, scores = np.asarray(y).astype(bool), np.asarray(scores, np.float64)
    return proportion(int(np.sum((scores >= threshold) == y)), len(y))


def majority_rate(y_test, y_train) -> dict:
    """Accuracy of always answering the training split's majority class."""
    majority = int(np.bincount(np.asarray(y_train), minlength=2).argmax())
    y_test = np.asarray(y_test)
    return {**proportion(int(np.sum(y_test == majority)), len(y_test)), "class": majority}


def view_row(y_test, p_test, y_train) -> dict:
    """Experiment 1: accuracy at 0.5 of CC (0) vs MLO (1), with the majority baseline."""
    return {"accuracy": accuracy_rate(y_test, p_test, 0.5),
            "baseline": majority_rate(y_test, y_train), "n": int(len(y_test))}


def image_row(y_val, s_val, y_test, s_test, groups_test, y_train, *, seed: int = 0,
              target: float = TARGET_SENSITIVITY, bootstrap_samples: int = 1000) -> dict:
    """One row of Table 6.3 (or 6.4): AUC, operating point from validation, accuracies.

    ``groups_test`` are the bootstrap groups of the test samples (patients).
    """
    y_val, y_test = np.asarray(y_val).astype(bool), np.asarray(y_test).astype(bool)
    s_val, s_test = np.asarray(s_val, np.float64), np.asarray(s_test, np.float64)
    row = {"n": int(len(y_test)), "n_malignant": int(y_test.sum()),
           "n_val": int(len(y_val)), "n_val_malignant": int(y_val.sum()),
           "accuracy_at_0.5": accuracy_rate(y_test, s_test, 0.5),
           "baseline": majority_rate(y_test.astype(int), np.asarray(y_train).astype(int))}
    both = 0 < y_test.sum() < len(y_test)
    row["auc"] = {"value": float(nn_metrics.roc_auc(y_test, s_test)) if both else None,
                  **(bootstrap_auc(y_test, s_test, groups_test, bootstrap_samples, seed)
                     if both else {"ci95": None, "method": "undefined: one class only"})}
    if row["auc"]["method"].startswith("bootstrap over"):
        row["auc"]["method"] = row["auc"]["method"].replace("images", "patients")
    if both and 0 < y_val.sum():
        op = operating_point(y_val, s_val, y_test, s_test, target)
        row["operating_point"] = op
        row["accuracy_at_threshold"] = accuracy_rate(y_test, s_test, op["threshold"])
    else:
        row["operating_point"] = None
        row["accuracy_at_threshold"] = None
    return row


def aggregate_breasts(breast, view, scores, labels, how: str):
    """Per-breast scores: the CC and MLO scores of each breast combined by ``how``.

    Only breasts with both a CC and an MLO image count. A breast is malignant
    when any of its images is. Returns ``(breast_ids, scores, labels)``, sorted
    by breast id.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    combine = {"min": np.min, "max": np.max, "mean": np.mean}[how]
    breast, view = np.asarray(breast), np.asarray(view)
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(int)
    ids, out_scores, out_labels = [], [], []
    for b in sorted(set(breast.tolist())):
        idx = np.flatnonzero(breast == b)
        if not {"CC", "MLO"} <= set(view[idx].tolist()):
            continue
        cc = scores[idx[view[idx] == "CC"]]
        mlo = scores[idx[view[idx] == "MLO"]]
        ids.append(b)
        out_scores.append(float(combine(np.array([cc.mean(), mlo.mean()]))))
        out_labels.append(int(labels[idx].max()))
    return np.array(ids), np.array(out_scores, np.float64), np.array(out_labels, np.int64)


def breast_patient(breast_ids) -> np.ndarray:
    """The patient of each ``"<patient>_<side>"`` breast id (the bootstrap group)."""
    return np.array([str(b).rsplit("_", 1)[0] for b in np.asarray(breast_ids).tolist()])


def breast_rows(images, split: dict, p1, *, seed: int = 0, bootstrap_samples: int = 1000) -> dict:
    """Table 6.4: ``{"per image": row, "min": row, "max": row, "mean": row}`` for one model.

    The threshold of each aggregation is chosen on the validation breasts
    aggregated the same way, then applied to the test breasts.
    """
    y = images.y_malignant
    val, test, train = (np.asarray(split[k]) for k in ("val", "test", "train"))
    rows = {"per image": image_row(y[val], p1[val], y[test], p1[test], images.patient[test],
                                   y[train], seed=seed, bootstrap_samples=bootstrap_samples)}
    for how in AGGREGATIONS:
        parts = {}
        for name, idx in (("train", train), ("val", val), ("test", test)):
            parts[name] = aggregate_breasts(images.breast[idx], images.view[idx], p1[idx],
                                            y[idx], how)
        (_, s_val, y_val), (ids_test, s_test, y_test) = parts["val"], parts["test"]
        rows[how] = image_row(y_val, s_val, y_test, s_test, breast_patient(ids_test),
                              parts["train"][2], seed=seed, bootstrap_samples=bootstrap_samples)
        rows[how]["unit"] = "breast (CC and MLO)"
    rows["per image"]["unit"] = "image"
    return rows

