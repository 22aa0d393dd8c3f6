"""Training one split of the ROI experiment and testing its best model.

:func:`train_and_evaluate` takes the patches and one split by image, trains
the named network on the augmented, balanced training part with the
validation part watching (best model = lowest validation loss), tests the
best model, and writes to its folder ``best_model.npz`` (with the data
provenance and the best epoch in its metadata), ``checkpoint.npz`` (the last
epoch, for ``--resume``), ``history.csv``/``.json``, ``curves.png`` and the
test plots. It returns the metrics; the caller writes ``metrics.json`` and
the reports once.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import nnlite as nn
from nnlite import metrics as nn_metrics

from . import models
from .evaluation import compute_metrics, counts, n_images
from .report import write_test_plots
from .roi_data import prepare_training_set

BEST_MODEL, CHECKPOINT = "best_model.npz", "checkpoint.npz"
HISTORY_CSV, HISTORY_JSON = "history.csv", "history.json"
CURVES = "curves.png"


def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


def save_model(model, path, provenance: dict, **facts) -> Path:
    """``nn.save`` with the provenance and ``facts`` (epoch, which) in the file's metadata."""
    return nn.save(model, path, metadata={**provenance, **facts})


def train_and_evaluate(patchset, split: dict, run_dir, *, info: dict, provenance: dict,
                       model_name: str, epochs: int, batch_size: int, lr: float, optimizer: str,
                       seed: int, balance: str, resume: bool, device: str, progress: bool,
                       title_suffix: str = "") -> dict:
    """Train on ``split["train"]`` (augmented, balanced), validate, test; write the run files.

    Returns ``{"metrics", "y_test", "p_test", "test_ids"}``: the test metrics
    (:func:`mammo_demo.evaluation.compute_metrics` plus training facts) and
    the test labels, probabilities and image ids (for pooling folds).
    """
    from . import plots

    run_dir = Path(run_dir)
    classes = list(patchset.classes)
    train, val, test = (patchset.subset(split[s]) for s in ("train", "val", "test"))
    for name, part in (("training", train), ("validation", val), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} split is empty ({len(patchset)} patches from "
                             f"{n_images(patchset.image_ids)} images): use more images")
    train_ready, weights, train_counts = prepare_training_set(train, balance, seed)
    if len(train_ready) == 0:
        raise ValueError("balancing left no training patches: a class is missing from the "
                         "training split (use more images or --balance weights)")

    model = models.build_model(model_name, len(classes), patchset.x.shape[-1], seed=seed)
    if device == "gpu":
        from nnlite.backend import require_gpu
        require_gpu()
        model.to_gpu()
    opt = models.build_optimizer(optimizer, model.parameters(), lr)
    loss = nn.SoftmaxCrossEntropy(class_weights=weights)
    best_path = run_dir / BEST_MODEL
    callbacks = [nn.ModelCheckpoint(best_path, monitor="val_loss"),
                 nn.HistoryLogger(run_dir / HISTORY_CSV), nn.HistoryLogger(run_dir / HISTORY_JSON)]
    if progress:
        model.summary(tuple(patchset.x.shape[1:]))
    _log(progress, f"training {model_name} ({model.count_params():,} parameters) on "
                   f"{len(train_ready)} patches {train_counts['after_balancing']}, "
                   f"validating on {len(val)}, testing on {len(test)} [{info['label']}]")
    t0 = time.perf_counter()
    history = model.fit(train_ready.x, train_ready.y, loss=loss, optimizer=opt, epochs=epochs,
                        batch_size=batch_size, validation_data=(val.x, val.y), seed=seed,
                        callbacks=callbacks, verbose=1 if progress else 0,
                        checkpoint_path=run_dir / CHECKPOINT, resume=resume)
    train_seconds = time.perf_counter() - t0

    val_losses = history.history.get("val_loss", [])
    best_epoch = int(np.argmin(val_losses)) + 1 if val_losses else 0
    if best_path.exists():
        best = nn.load(best_path)
    else:  # no epoch ran (epochs=0): the initial model is the only one there is
        model.to_cpu()
        best = model
    # the best model again, now with where its data came from and which epoch it is
    save_model(best, best_path, provenance, epoch=best_epoch, which="best",
               monitor="val_loss", epochs_run=history.epochs)

    p_val, p_test = nn.predict_proba(best, val.x), nn.predict_proba(best, test.x)
    metrics = compute_metrics(test.y, p_test, classes, image_ids=test.image_ids,
                              y_val=val.y, p_val=p_val, threshold_from="validation",
                              y_train=train.y, seed=seed)
    train_acc = nn_metrics.accuracy(train.y, nn.predict_proba(best, train.x))
    val_acc = nn_metrics.accuracy(val.y, p_val)
    metrics.update({
        "data": info["data"], "task_classes": classes, "model": model_name,
        "best_epoch": best_epoch or None, "epochs_run": history.epochs,
        "train_accuracy_unaugmented": train_acc, "val_accuracy": val_acc,
        "overfitting_ratio": nn_metrics.overfitting_ratio(train_acc, val_acc) if val_acc > 0
        else None,
        "train_seconds": round(train_seconds, 2),
        "counts": {"train": counts(train.y, classes), "val": counts(val.y, classes),
                   "test": counts(test.y, classes), "train_prepared": train_counts},
        "images": {"train": n_images(train.image_ids), "val": n_images(val.image_ids),
                   "test": n_images(test.image_ids)},
    })
    label = info["label"] + title_suffix
    plots.plot_history(history.history, run_dir / CURVES, data_label=label,
                       best_epoch=best_epoch or None)
    metrics["plots"] = [CURVES] + write_test_plots(run_dir, test, p_test, metrics, label,
                                                   seed=seed, model=best)
    return {"metrics": metrics, "y_test": test.y, "p_test": p_test, "test_ids": test.image_ids}
