"""``mammo-demo segment train`` and ``evaluate``: data, split, training, scores, run folder.

A training run folder holds::

    config.json      the settings (and the resume plan)
    data.json        provenance: PHANTOM or real, the folder, how masks were made,
                     patch counts, the images of each split
    history.json     per-epoch train loss, validation loss, mean IoU and Dice
    checkpoint.npz   resume point after every epoch (--resume)
    best_model.npz   the epoch with the best validation mean IoU, with metadata
                     (the config and the data's provenance; nnlite.read_metadata)
    metrics.json     test scores, each with its n and a 95% interval, per-patch scores
    report.txt       the end-of-run table
    curves.png, test_overlays.png, iou_histogram.png
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import nnlite as nn

from ..roi_data import resolve_data
from ..runfolder import CONFIG_FILE, DATA_FILE, METRICS_FILE, RunFolder, read_json, write_json
from . import data as segdata
from . import evaluate as segeval
from . import train as segtrain

REPORT = "report.txt"
TRAIN_OUTPUTS = {CONFIG_FILE, DATA_FILE, METRICS_FILE, REPORT, segtrain.BEST_MODEL, segtrain.CHECKPOINT,
                 segtrain.HISTORY_JSON, *segeval.PLOTS}
STARTED_BY = {METRICS_FILE, segtrain.BEST_MODEL, segtrain.CHECKPOINT, segtrain.HISTORY_JSON}
EVALUATE_OUTPUTS = {METRICS_FILE, REPORT, segeval.OVERLAYS, segeval.IOU_HISTOGRAM}
RESUME_KEYS = ("data_dir", "phantom_seed", "phantom_images", "model", "widths", "patch_size", "context",
               "lesions", "normal_fraction", "masks", "loss", "pos_weight", "batch_size", "lr", "seed",
               "augment")
COMMAND_TRAIN, COMMAND_EVALUATE = "mammo-demo segment train", "mammo-demo segment evaluate"

DEFAULTS = {"data_dir": None, "phantom_seed": 0, "phantom_images": 322, "model": "unet", "widths": None,
            "patch_size": segdata.DEFAULT_PATCH_SIZE, "context": segdata.DEFAULT_CONTEXT,
            "lesions": "all", "normal_fraction": segdata.DEFAULT_NORMAL_FRACTION, "masks": "auto",
            "loss": "bce+dice", "pos_weight": None, "epochs": 12, "batch_size": 16, "lr": 3e-3,
            "seed": 0, "augment": True}


def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


def load_data(config: dict, progress: bool = True):
    """``(maskset, splits, info)`` for a config: the data folder (or the PHANTOM set), masks, split."""
    dataset, info = resolve_data(config["data_dir"], config["phantom_seed"], progress=progress,
                                 phantom_images=config["phantom_images"])
    maskset = segdata.build_mask_set(dataset, config["patch_size"], config["context"],
                                     config["normal_fraction"], config["lesions"], config["masks"],
                                     config["seed"], progress=progress)
    splits = segdata.split_mask_set(maskset, config["seed"])
    return maskset, splits, info


def split_summary(maskset, splits) -> dict:
    out = {}
    for name, idx in splits.items():
        part = maskset.subset(idx)
        out[name] = {**part.counts(), "image_ids": sorted(set(part.image_ids.tolist()))}
    return out


def _score_and_write(folder: Path, model, part, label: str, title: str, seed: int, history=None,
                     best_epoch=None, extra_notes=()) -> tuple[dict, str]:
    pred = segtrain.predict_masks(model, part.x)
    metrics = segeval.score_masks(pred, part.masks, part.image_ids, part.kinds, seed=seed)
    table = segeval.format_table(metrics, title)
    ious = np.asarray(metrics["per_patch"]["iou"])
    segeval.plot_overlays(part.x, part.masks, pred, ious, folder / segeval.OVERLAYS, data_label=label,
                          captions=part.kinds, seed=seed)
    lesion = np.asarray(metrics["per_patch"]["true_pixels"]) > 0
    segeval.plot_iou_histogram(ious[lesion], folder / segeval.IOU_HISTOGRAM, data_label=label)
    if history is not None:
        segeval.plot_curves(history, folder / segeval.CURVES, data_label=label, best_epoch=best_epoch)
    return metrics, table


def train_run(out, config: dict, *, resume: bool = False, overwrite: bool = False,
              epochs_given: bool = True, progress: bool = True) -> dict:
    """Run ``segment train`` into the folder ``out``; returns the test metrics (with ``"table"``)."""
    config = {**DEFAULTS, **config}
    if config["model"] not in segtrain.MODELS:
        raise ValueError(f"model must be one of {segtrain.MODELS}, got {config['model']!r}")
    config["widths"] = [int(w) for w in (config["widths"] or segtrain.DEFAULT_WIDTHS[config["model"]])]
    if int(config["epochs"]) < 1:
        raise ValueError(f"--epochs must be at least 1, got {config['epochs']}")
    t_start = time.time()
    with RunFolder(out, outputs=TRAIN_OUTPUTS, started_by=STARTED_BY, command=COMMAND_TRAIN) as folder:
        config = folder.prepare(config, resume=resume, overwrite=overwrite, resume_keys=RESUME_KEYS,
                                epochs_given=epochs_given)
        write_json(folder.path / CONFIG_FILE, config)
        maskset, splits, info = load_data(config, progress)
        label = info["label"]
        provenance = {"data": info["data"], "kind": info["kind"], "label": label, "folder": info["folder"],
                      "phantom_seed": info["phantom_seed"], "image_size": info["image_size"],
                      "masks": maskset.info["masks"], "patches": {k: v for k, v in maskset.info.items()
                                                                  if k != "source"},
                      "source": maskset.info["source"], "split": "by image, before augmentation",
                      "splits": split_summary(maskset, splits)}
        write_json(folder.path / DATA_FILE, provenance)
        train, val, test = (maskset.subset(splits[k]) for k in ("train", "val", "test"))
        if not len(train) or not len(val) or not len(test):
            raise ValueError(f"too few images to split: {len(train)} train, {len(val)} validation, "
                             f"{len(test)} test patches; use more images")
        _log(progress, f"{label}: {len(train)} train / {len(val)} val / {len(test)} test patches "
                       f"({maskset.info['masks']})")
        folder.mark_started()
        model = segtrain.build_model(config["model"], config["patch_size"], config["widths"], config["seed"])
        loss = segtrain.make_loss(config["loss"], config["pos_weight"])
        metadata = {"command": COMMAND_TRAIN, "task": "lesion segmentation", "config": config,
                    "data": provenance["data"], "kind": info["kind"], "label": label,
                    "masks": maskset.info["masks"], "patch_size": config["patch_size"],
                    "context": config["context"]}
        result = segtrain.train_segmenter(model, train, val, folder.path, loss=loss,
                                          epochs=int(config["epochs"]), batch_size=int(config["batch_size"]),
                                          lr=float(config["lr"]), seed=int(config["seed"]), resume=resume,
                                          metadata=metadata, progress=progress,
                                          augment=bool(config["augment"]))
        best = nn.load(folder.path / segtrain.BEST_MODEL)
        title = (f"test set, {label}: {config['model']}, best epoch {result['best_epoch']} of "
                 f"{config['epochs']} (validation mean IoU {result['best_val_iou']:.3f})")
        metrics, table = _score_and_write(folder.path, best, test, label, title, int(config["seed"]),
                                          result["history"], result["best_epoch"])
        wall = time.time() - t_start
        metrics.update({"command": COMMAND_TRAIN, "data": provenance["data"], "label": label,
                        "split": "test", "model": config["model"], "best_epoch": result["best_epoch"],
                        "best_val_iou": result["best_val_iou"], "train_seconds": result["seconds"],
                        "wall_seconds": wall})
        write_json(folder.path / METRICS_FILE, metrics)
        notes = [f"data: {provenance['data']}", f"masks: {maskset.info['masks']}",
                 f"split by image before augmentation: {len(train)} train, {len(val)} validation, "
                 f"{len(test)} test patches; augmentation: "
                 f"{'one random rotation/mirror per patch per epoch (image and mask together)' if config['augment'] else 'none'}",
                 f"wall time {wall:.0f} s (training {result['seconds']:.0f} s)"]
        segeval.write_report(folder.path / REPORT, table, notes)
    return {**metrics, "table": table}


def evaluate_run(model_path, out, *, data_dir=None, split: str = "test", progress: bool = True) -> dict:
    """Score a saved ``best_model.npz`` on a split rebuilt from its training config."""
    model_path = Path(model_path)
    meta = nn.read_metadata(model_path)
    if meta.get("command") != COMMAND_TRAIN or "config" not in meta:
        raise ValueError(f"{model_path} is not a model saved by '{COMMAND_TRAIN}' (no segmentation "
                         f"config in its metadata)")
    if split not in ("test", "val", "train", "all"):
        raise ValueError(f"split must be test, val, train or all, got {split!r}")
    config = {**DEFAULTS, **meta["config"]}
    if data_dir is not None:
        config["data_dir"] = str(data_dir)
    model = nn.load(model_path)
    with RunFolder(out, outputs=EVALUATE_OUTPUTS, command=COMMAND_EVALUATE) as folder:
        folder.refuse_foreign(COMMAND_EVALUATE, same_as={"model_file": str(model_path.resolve())})
        maskset, splits, info = load_data(config, progress)
        part = maskset if split == "all" else maskset.subset(splits[split])
        label = info["label"]
        title = f"{split} set, {label}: {model_path}"
        metrics, table = _score_and_write(folder.path, model, part, label, title, int(config["seed"]))
        metrics.update({"command": COMMAND_EVALUATE, "model_file": str(model_path.resolve()),
                        "data": info["data"], "label": label, "split": split})
        write_json(folder.path / METRICS_FILE, metrics)
        segeval.write_report(folder.path / REPORT, table, [f"data: {info['data']}", f"model: {model_path}"])
        folder.mark_started()
    return {**metrics, "table": table}


def read_metrics(run_dir) -> dict:
    return read_json(Path(run_dir) / METRICS_FILE)
