"""The MIAS region-of-interest experiment, end to end, done without the split leak.

:func:`run_experiment` is what ``mammo-demo train`` runs::

    MIAS folder (real, or phantom generated once into a cache)      mias.load_mias,
                                                                     phantom.ensure_phantom
      -> 48x48 ROI patches (abnormal rows) + random breast patches    patches.extract_patches
      -> split BY IMAGE, stratified: train / validation / test       split.split_by_image
      -> augment the TRAINING set only: 4 rotations x mirror = 8     patches.augment_eight
      -> balance the training set: undersample (the paper) or
         class weights in the loss                                   patches.balance_undersample,
                                                                     patches.class_weights
      -> mias_cnn or reduced_alexnet (dropout 0.5), SGD momentum
         0.9, lr 0.002                                               mammo_demo.models
      -> fit with validation, best-model checkpoint (lowest
         validation loss), history CSV/JSON, resumable checkpoint
      -> the best model on the test set: metrics.json, report.txt,
         report.md + PNG plots (curves, confusion matrix, ROC, test
         patches, Grad-CAM of the malignant class)

The jobs live in their own modules, which the other commands share:
:mod:`mammo_demo.roi_data` (data, provenance, splits, training set),
:mod:`mammo_demo.models` (networks and optimizers by name),
:mod:`mammo_demo.roi_training` (one split: train, test, write its files),
:mod:`mammo_demo.evaluation` (metrics with n and intervals, thresholds,
baselines), :mod:`mammo_demo.report` (tables, report.txt/md, plots of a
tested set), :mod:`mammo_demo.runfolder` (the locked run folder) and
:mod:`mammo_demo.saved_model` (evaluate and predict with a saved model).
This module only strings them together.

Why the order matters. The source paper augmented its patches and then split
them, so rotated and mirrored copies of one lesion sat on both sides of the
split; a network that memorises a lesion then "recognises" its test copies,
which inflates every metric (the paper's 100% result is very likely that
leak). Here the split is by image (all patches of one mammogram on one side)
and comes before augmentation; only the training set is augmented and
balanced, and validation and test keep their natural class mix.

Metrics (all from :mod:`nnlite.metrics`, on the test set, with the model that
had the lowest validation loss):

Every rate carries its n and a 95% interval (Wilson for proportions,
bootstrap over images for the AUC and balanced accuracy); figures with
fewer than 30 samples are flagged as not meaningful.

* accuracy, balanced accuracy (mean per-class recall), the majority-class
  baseline, confusion matrix;
* per class (one-vs-rest): precision, recall (sensitivity), F1, specificity;
* ROC AUC one-vs-rest for each class and their mean; the headline AUC is
  malignant-vs-rest (for 2-class tasks simply benign vs malignant);
* specificity at 90% sensitivity for malignant-vs-rest: the threshold on the
  malignant probability is chosen on the *validation* set and applied to
  test, beside the sensitivity it actually reaches there (marked when it
  falls short of 90%);
* overfitting ratio ``beta = train_acc / val_acc`` of the best model, both
  measured on un-augmented patches with their natural class mix.

``folds=K > 1`` runs stratified K-fold cross-validation by image instead of
one split (each fold holds out 1/K of the images as its test set and carves a
validation set out of the rest, by image too) and reports the mean and
standard deviation over folds, beside the figures of all folds' test
predictions pooled (every patch tested once, by a model that never saw its
image), which carry the intervals.

Nothing here is a medical device; on phantom data every output says PHANTOM.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np

from . import models
from . import patches
from .evaluation import compute_metrics, counts, n_images, proportion
from .report import (NOT_A_MEDICAL_DEVICE, REPORT_MD, REPORT_TXT, TEST_PLOTS, aggregate,
                     format_table, headline, write_reports)
from .roi_data import (SPLIT_FRACTIONS, check_disjoint, make_splits, resolve_data,
                       split_summary)
from .roi_training import (BEST_MODEL, CHECKPOINT, CURVES, HISTORY_CSV, HISTORY_JSON,
                           train_and_evaluate)
from .runfolder import CONFIG_FILE, DATA_FILE, METRICS_FILE, RunFolder, write_json

#: the source paper's figures (real mini-MIAS, all-classes task).
PAPER = {
    "all": {"accuracy": 0.609, "malignant_recall": 0.596, "malignant_precision": 0.591},
}
PAPER_DATA = ("paper: real mini-MIAS; patches augmented before the train/test split, so rotated "
              "copies of one lesion likely sat on both sides (leak); figures quoted for the "
              "all-classes task only")

BALANCING = ("undersample", "weights", "none")
OPTIMIZERS = models.OPTIMIZERS

#: defaults of ``mammo-demo train`` (chosen so that the phantom run finishes in
#: under 5 minutes on 2 CPU cores, phantom generation included).
DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 0.002
#: SGD with momentum 0.9 at the paper's learning rate 0.002. Adam at 0.002 is too
#: aggressive for this 9.5 M-parameter network: on the phantom set the loss sat at
#: ln 3 (every prediction uniform, the ReLUs dead) from the second epoch on.
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_MODEL = "mias_cnn"

#: the files a training run writes, and those that mean it got as far as training
PLOT_FILES = (CURVES,) + TEST_PLOTS
TRAIN_OUTPUTS = {CONFIG_FILE, DATA_FILE, METRICS_FILE, REPORT_TXT, REPORT_MD, BEST_MODEL,
                 CHECKPOINT, HISTORY_CSV, HISTORY_JSON, *PLOT_FILES}
STARTED_BY = {METRICS_FILE, BEST_MODEL, CHECKPOINT, HISTORY_CSV, HISTORY_JSON}
FOLD_DIRS = r"fold\d+"

#: config keys that must agree between a run and its ``--resume``
RESUME_KEYS = ("data_dir", "phantom_seed", "phantom_images", "image_size", "task", "model",
               "batch_size", "lr", "optimizer", "seed", "balance", "folds", "patch_size",
               "normals_per_image", "context")


def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def default_run_dir(task: str, is_phantom_default: bool) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{task}{'-phantom' if is_phantom_default else ''}"


def our_data_line(info: dict, folds: int = 1, how: str | None = None) -> str:
    """What our figures were measured on, for the line under the table."""
    what = (f"PHANTOM data (synthetic mini-MIAS, seed {info.get('phantom_seed')}), not patients"
            if info["kind"] == "phantom" else "real mini-MIAS")
    if how is None:
        how = (f"the test sets of a stratified {folds}-fold cross-validation by image, pooled"
               if folds > 1 else "test set of one stratified 70/15/15 split by image")
    return f"{what}; {how}, split before augmentation (no image on two sides)"


def provenance(info: dict, config: dict, splits_summary: list, fold: int | None = None) -> dict:
    """What a model file records about its data (``nn.save(..., metadata=)``)."""
    parts = splits_summary[(fold or 1) - 1]
    return {"mammo_demo": "roi", "command": "train", "data": info["kind"],
            "data_description": info["data"], "source": info["folder"],
            "phantom_seed": info["phantom_seed"], "image_size": info["image_size"],
            "seed": config["seed"], "task": config["task"],
            "classes": list(patches.TASKS[config["task"]]), "model": config["model"],
            "patch_size": config["patch_size"], "context": config["context"],
            "normals_per_image": config["normals_per_image"],
            "folds": config["folds"], "fold": fold,
            "split_counts": {part: parts[part]["per_class"] for part in parts},
            "not_a_medical_device": NOT_A_MEDICAL_DEVICE}


def _pooled_operating_point(fold_metrics: list) -> dict | None:
    """Sensitivity and specificity of every fold's own threshold, counted over all folds."""
    ops = [m.get("specificity_at_sensitivity") for m in fold_metrics]
    if not ops or any(op is None for op in ops):
        return None
    sens = proportion(sum(op["sensitivity"]["k"] for op in ops),
                      sum(op["sensitivity"]["n"] for op in ops))
    spec = proportion(sum(op["specificity"]["k"] for op in ops),
                      sum(op["specificity"]["n"] for op in ops))
    target = ops[0]["target_sensitivity"]
    return {"target_sensitivity": target, "threshold": None,
            "thresholds": [op["threshold"] for op in ops],
            "threshold_chosen_on": "each fold's validation split",
            "test_sensitivity": sens["value"], "test_specificity": spec["value"],
            "sensitivity": sens, "specificity": spec,
            "reached_target": bool(sens["value"] is not None and sens["value"] >= target)}


def _report_extra(config: dict, info: dict, wall: float, fold_metrics: list) -> list[str]:
    lines = [f"- data: {info['data']} ({info['folder']})",
             f"- task {config['task']}, model {config['model']}, patch {config['patch_size']} px, "
             f"seed {config['seed']}, {config['epochs']} epochs planned, optimizer "
             f"{config['optimizer']} lr {config['lr']}, balance {config['balance']}",
             f"- wall time {wall:.0f} s"]
    for i, m in enumerate(fold_metrics, start=1):
        what = f"fold {i}: " if len(fold_metrics) > 1 else ""
        lines.append(f"- {what}best epoch {m.get('best_epoch')} of {m.get('epochs_run')}, "
                     f"overfitting ratio train/val accuracy {m.get('overfitting_ratio') or 0:.2f}, "
                     f"training {m.get('train_seconds')} s")
    return lines


def run_experiment(data_dir=None, task: str = "all", epochs: int | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                   optimizer: str = DEFAULT_OPTIMIZER, seed: int = 0, out_dir=None,
                   resume: bool = False, folds: int = 1, balance: str = "undersample",
                   image_size: int | None = None,
                   phantom_seed: int = 0, patch_size: int | None = None,
                   normals_per_image: int = 2,
                   context: float = 2.0, device: str = "cpu", overwrite: bool = False,
                   phantom_images: int = 322, model: str = DEFAULT_MODEL,
                   progress: bool = True) -> dict:
    """Run the MIAS ROI experiment and write everything to ``out_dir``.

    Args:
        data_dir: a mini-MIAS folder (real or phantom); ``None`` generates the
            phantom set once into a cache folder (seed ``phantom_seed``,
            ``phantom_images`` images) and reuses it.
        task: ``"all"`` (normal/benign/malignant), ``"calc"`` or ``"mass"``
            (benign vs malignant calcifications or masses).
        model: ``"mias_cnn"`` or ``"reduced_alexnet"`` (:mod:`mammo_demo.models`).
        epochs: training epochs; ``None``: :data:`DEFAULT_EPOCHS`, or with
            ``resume`` the number the run was started with.
        batch_size, lr, optimizer: training (``optimizer`` in
            ``sgd`` (momentum 0.9, the default), ``adam``, ``rmsprop``).
        seed: seeds patch sampling, the split, balancing, weights and shuffling.
        out_dir: the run folder (default ``runs/<time>-<task>[-phantom]``).
        resume: continue an interrupted run in ``out_dir`` from its checkpoint.
        folds: 1 for a 70/15/15 split by image, K > 1 for K-fold cross-validation by image.
        balance: ``undersample`` (the paper), ``weights`` (class-weighted loss) or ``none``.
        image_size: side of the phantom images to generate, or of the images of
            ``data_dir`` (``None``: 1024, or what the phantom marker says).
        patch_size: patch side (``None``: the model's, 48 or 64);
            normals_per_image, context: patch extraction (see
            :func:`mammo_demo.patches.extract_patches`).
        device: ``"cpu"`` or ``"gpu"`` (needs CuPy and a CUDA device).
        overwrite: allow replacing a started run in ``out_dir`` without ``resume``.
        progress: progress bars and log lines.

    The run folder is locked while the run writes it
    (:class:`mammo_demo.runfolder.RunFolder`); a failure before training
    leaves nothing behind.

    Returns: the result dict also written to ``out_dir/metrics.json``:
        ``data``, ``task``, ``classes``, ``test`` metrics (``folds == 1``) or
        ``pooled`` and ``folds`` (per fold) with ``mean``/``std``, ``table``
        (the text table), ``resume_plan``.
    """
    _check_choice("task", task, tuple(patches.TASKS))
    _check_choice("model", model, models.MODELS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("balance", balance, BALANCING)
    _check_choice("device", device, ("cpu", "gpu"))
    epochs_given = epochs is not None
    epochs = DEFAULT_EPOCHS if epochs is None else int(epochs)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not float(lr) > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if int(folds) < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    patch_size = models.DEFAULT_PATCH[model] if patch_size is None else int(patch_size)
    models.check_model(model, patch_size)
    if device == "gpu":
        from nnlite.backend import require_gpu
        require_gpu()
    t_start = time.perf_counter()

    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(task, data_dir is None)
    config = {"data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
              "phantom_seed": phantom_seed if data_dir is None else None,
              "phantom_images": int(phantom_images) if data_dir is None else None,
              "image_size": image_size, "task": task, "model": model, "epochs": epochs,
              "batch_size": int(batch_size), "lr": float(lr), "optimizer": optimizer,
              "seed": int(seed), "balance": balance, "folds": int(folds),
              "patch_size": patch_size, "normals_per_image": int(normals_per_image),
              "context": float(context), "device": device,
              "model_description": models.DESCRIPTION[model],
              "split_fractions": list(SPLIT_FRACTIONS) if folds == 1 else None,
              "best_model_monitor": "val_loss"}
    with RunFolder(run_dir, outputs=TRAIN_OUTPUTS, output_dirs=FOLD_DIRS, started_by=STARTED_BY,
                   command="mammo-demo train") as folder:
        config = folder.prepare(config, resume=resume, overwrite=overwrite,
                                resume_keys=RESUME_KEYS, epochs_given=epochs_given)
        epochs = int(config["epochs"])
        if resume:
            _log(progress, f"--resume: {config['resume_plan']}")
        result = _run(folder, config, data_dir, epochs, t_start, resume, progress)
    return result


def _run(folder: RunFolder, config: dict, data_dir, epochs: int, t_start: float, resume: bool,
         progress: bool) -> dict:
    run_dir = folder.path
    task, folds, seed = config["task"], config["folds"], config["seed"]
    dataset, info = resolve_data(data_dir, config["phantom_seed"] or 0, config["image_size"],
                                 progress, config["phantom_images"] or 322)
    config["data"] = info["data"]
    config["not_a_medical_device"] = NOT_A_MEDICAL_DEVICE
    banner = ("=" * 78 + "\n" + (f"PHANTOM DATA: synthetic mammograms from {info['folder']}\n"
                                 f"(not patient data; every output of this run says PHANTOM)"
                                 if info["kind"] == "phantom"
                                 else f"real mini-MIAS data from {info['folder']}")
              + "\n" + NOT_A_MEDICAL_DEVICE + "\n" + "=" * 78)
    _log(progress, banner)
    write_json(run_dir / CONFIG_FILE, config)

    patch_size = config["patch_size"]
    _log(progress, f"extracting {patch_size}x{patch_size} patches for task {task!r} "
                   f"{patches.TASKS[task]} from {len(dataset.refnums)} images")
    patchset = patches.extract_patches(dataset, task=task, patch_size=patch_size,
                                       normals_per_image=config["normals_per_image"],
                                       context=config["context"], seed=seed, progress=progress)
    classes = list(patchset.classes)
    if len(patchset) == 0:
        raise ValueError(f"no patches for task {task!r} in {dataset.folder}")
    splits = make_splits(patchset, seed=seed, folds=folds)
    check_disjoint(patchset.image_ids, splits)
    summary = split_summary(patchset, splits)
    data = {"data": info["data"], "kind": info["kind"], "folder": info["folder"],
            "phantom_seed": info["phantom_seed"], "image_size": info["image_size"],
            "seed": seed, "task": task, "classes": classes, "dataset": dataset.summary(),
            "patches": {"total": int(len(patchset)), "per_class": counts(patchset.y, classes),
                        "images": n_images(patchset.image_ids)},
            "splits": summary,
            "split_method": ("stratified by class, by image, before augmentation; "
                             + (f"fractions {SPLIT_FRACTIONS}" if folds == 1
                                else f"{folds}-fold test sets, 15% of the rest by image for "
                                     f"validation")),
            "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
    write_json(run_dir / DATA_FILE, data)

    common = dict(info=info, model_name=config["model"], epochs=epochs,
                  batch_size=config["batch_size"], lr=config["lr"],
                  optimizer=config["optimizer"], seed=seed, balance=config["balance"],
                  resume=resume, device=config["device"], progress=progress)
    folder.mark_started()                                  # from here on the folder is a run
    if folds == 1:
        out = train_and_evaluate(patchset, splits[0], run_dir,
                                 provenance=provenance(info, config, summary), **common)
        fold_metrics = [out["metrics"]]
        metrics, mean, std = out["metrics"], None, None
    else:
        outs = []
        for i, sp in enumerate(splits, start=1):
            _log(progress, f"--- fold {i}/{folds} ---")
            fold_dir = run_dir / f"fold{i}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            write_json(fold_dir / CONFIG_FILE, {**config, "fold": i})
            fold_out = train_and_evaluate(patchset, sp, fold_dir, title_suffix=f", fold {i}/{folds}",
                                          provenance=provenance(info, config, summary, i), **common)
            fold_table = format_table(fold_out["metrics"], our_data_line(
                info, how=f"test set of fold {i} of a {folds}-fold split by image"),
                title=f"fold {i}/{folds} test set")
            write_json(fold_dir / METRICS_FILE, {**fold_out["metrics"], "command": "train",
                                                 "fold": i, "task": task, "classes": classes,
                                                 "table": fold_table})
            write_reports(fold_dir, f"mammo-demo train, fold {i}/{folds}: {info['label']}",
                          fold_table, fold_out["metrics"], PLOT_FILES)
            outs.append(fold_out)
        fold_metrics = [o["metrics"] for o in outs]
        metrics = compute_metrics(np.concatenate([o["y_test"] for o in outs]),
                                  np.concatenate([o["p_test"] for o in outs]), classes,
                                  image_ids=np.concatenate([o["test_ids"] for o in outs]),
                                  seed=seed)
        metrics["specificity_at_sensitivity"] = _pooled_operating_point(fold_metrics)
        mean, std = aggregate([headline(m) for m in fold_metrics])

    reference = PAPER.get(task)
    table = format_table(metrics, our_data_line(info, folds),
                         title="test set" if folds == 1 else f"{folds} folds' test sets pooled",
                         reference=reference if reference else {},
                         reference_note=PAPER_DATA + ("" if reference else
                                                      f"; no figures for task {task!r}"),
                         fold_mean=mean, fold_std=std)
    wall = round(time.perf_counter() - t_start, 1)
    common_keys = {"command": "train", "data": info["data"], "provenance": data["dataset"],
                   "task": task, "classes": classes, "model": config["model"],
                   "table": table, "run_dir": str(run_dir), "wall_seconds": wall,
                   "resume_plan": config.get("resume_plan"),
                   "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
    if folds == 1:
        result = {**metrics, **common_keys, "headline": headline(metrics)}
    else:
        result = {**common_keys, "pooled": metrics, "headline": headline(metrics),
                  "folds": fold_metrics, "mean": mean, "std": std}
    write_json(run_dir / METRICS_FILE, result)
    title = f"mammo-demo train: {config['model']} on {info['label']}, task {task}"
    write_reports(run_dir, title, table, metrics, PLOT_FILES if folds == 1 else (),
                  extra=_report_extra(config, info, wall, fold_metrics))
    if folds == 1:
        result["test"] = metrics
    return result
