"""Using a saved model: what it is, evaluating it on a split, classifying one region.

* :func:`describe_model` reads what a model file says about itself: the data
  provenance stored in its metadata by ``train`` (phantom or real, folder,
  seed, task, classes, split counts, epoch, best or last), completed from the
  ``config.json``/``data.json`` beside it; and warnings: trained on PHANTOM
  data, or a ``checkpoint.npz`` (the **last** epoch, not the best model);
* :func:`evaluate_saved_model` (``mammo-demo evaluate``) rebuilds the
  training run's split by image and tests the model on one part; the
  threshold of the operating point is never chosen on data it evaluates;
* :func:`predict_roi` (``mammo-demo predict``) classifies one region of
  interest of a PGM film, refusing the images ``train`` would refuse.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

import nnlite as nn

from . import patches
from .evaluation import compute_metrics, counts, n_images
from .report import (NOT_A_MEDICAL_DEVICE, REPORT_MD, REPORT_TXT, TEST_PLOTS, format_table,
                     headline, write_reports, write_test_plots)
from .roi_data import make_splits, resolve_data
from .runfolder import CONFIG_FILE, DATA_FILE, METRICS_FILE, RunFolder, read_json, write_json

SPLITS = ("test", "val", "train", "all")
EVALUATE_OUTPUTS = {METRICS_FILE, REPORT_TXT, REPORT_MD, *TEST_PLOTS}


def read_run_config(model_path) -> dict:
    """The ``config.json`` next to a model file (``{}`` when there is none)."""
    path = Path(model_path).parent / CONFIG_FILE
    return read_json(path) if path.is_file() else {}


def _is_checkpoint(path: Path) -> bool:
    """A training checkpoint (``nn.save_checkpoint``: it holds the ``__state__`` entry)."""
    try:
        with zipfile.ZipFile(path) as z:
            return "__state__.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def describe_model(model_path) -> dict:
    """What is known about a model file, without building it.

    Returns ``{"which": "best" | "last" | "unknown", "epoch", "metadata",
    "config", "data", "kind": "phantom" | "real" | None, "task",
    "image_size", "lines", "warnings"}``; ``lines`` are the provenance lines
    ``predict`` and ``evaluate`` print, ``warnings`` the ones they print
    as warnings.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    checkpoint = _is_checkpoint(path)
    meta = {} if checkpoint else nn.read_metadata(path)
    cfg = read_run_config(path)
    data_path = path.parent / DATA_FILE
    data = read_json(data_path) if data_path.is_file() else {}
    kind = meta.get("data") or data.get("kind") or (
        "phantom" if cfg and cfg.get("data_dir") is None and "task" in cfg else None)
    which = "last" if checkpoint else meta.get("which", "unknown")
    lines, warnings = [], []
    source = meta.get("source") or data.get("folder") or cfg.get("data_dir")
    if kind:
        seed = meta.get("phantom_seed", data.get("phantom_seed"))
        what = (f"PHANTOM (synthetic) data, phantom seed {seed}" if kind == "phantom"
                else "real mini-MIAS data")
        lines.append(f"model {path}: trained on {what} from {source}")
    else:
        lines.append(f"model {path}: no data provenance recorded (not written by mammo-demo "
                     f"train, or by an older version)")
    task = meta.get("task") or cfg.get("task")
    if task:
        split_counts = meta.get("split_counts")
        lines.append(f"  task {task}, classes {meta.get('classes') or list(patches.TASKS[task])}, "
                     f"model {meta.get('model') or cfg.get('model', '?')}, split seed "
                     f"{meta.get('seed', cfg.get('seed'))}"
                     + (f", fold {meta['fold']}" if meta.get("fold") else "")
                     + (f"; split counts {split_counts}" if split_counts else ""))
    epoch = meta.get("epoch")
    if which == "best":
        lines.append(f"  the best model (lowest validation loss): epoch {epoch} of "
                     f"{meta.get('epochs_run')}")
    if kind == "phantom":
        warnings.append("this model was trained on PHANTOM (synthetic) data, not on patient "
                        "mammograms: its outputs say nothing about real films")
    if checkpoint:
        best = path.parent / "best_model.npz"
        warnings.append(f"{path.name} is the training checkpoint: the model after the LAST "
                        f"epoch trained, not the best one"
                        + (f" (that is {best})" if best.is_file() else ""))
    image_size = meta.get("image_size") or data.get("image_size") or \
        (data.get("dataset") or {}).get("image_size") or cfg.get("image_size")
    return {"which": which, "epoch": epoch, "metadata": meta, "config": cfg, "data": data,
            "kind": kind, "task": task, "image_size": image_size, "checkpoint": checkpoint,
            "lines": lines, "warnings": warnings}


def load_model(model_path, description: dict | None = None):
    """The model of a model file or of a training checkpoint."""
    description = description or describe_model(model_path)
    if description["checkpoint"]:
        model, _, _ = nn.load_checkpoint(model_path)
        return model
    return nn.load(model_path)


def model_classes(model, patch_size: int, task: str | None, where) -> tuple:
    """The class names of the task, checked against the model's number of outputs."""
    if task is None:
        raise ValueError(f"cannot tell which task {where} was trained for (no config.json "
                         f"beside it and no provenance in the file): pass --task")
    (n_out,) = model.output_shapes((1, patch_size, patch_size))[-1]
    classes = patches.TASKS[task]
    if n_out != len(classes):
        raise ValueError(f"{where} has {n_out} outputs but task {task!r} has {len(classes)} "
                         f"classes {classes}")
    return classes


def _same_folder(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def evaluate_saved_model(model_path, data_dir=None, task: str | None = None,
                         seed: int | None = None, split: str = "test", out_dir=None,
                         progress: bool = True) -> dict:
    """Evaluate a saved model (``best_model.npz``) on a split of a MIAS folder.

    Task, seed, data folder and patch settings default to the run's
    (``config.json`` beside the model, else the file's provenance), so the
    training run's split by image is reproduced exactly and ``split="test"``
    gives its test set. ``split="all"`` evaluates every patch of the folder.

    The operating point's threshold comes from the training run's
    validation split, and only when that split is not part of what is
    evaluated: ``split="val"`` gets none, and ``split="all"`` gets none on the
    training folder (it would include the validation images) but the
    training run's validation threshold on another folder.

    With ``out_dir`` writes ``metrics.json``, ``report.txt``, ``report.md``
    and the plots there; a folder holding another run's outputs is refused.

    Returns ``{"metrics", "table", "data", "task", "split", "provenance", "warnings"}``.
    """
    model_path = Path(model_path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    about = describe_model(model_path)
    cfg, meta = about["config"], about["metadata"]
    task = task or about["task"]
    if task is not None and task not in patches.TASKS:
        raise ValueError(f"task must be one of {', '.join(patches.TASKS)}; got {task!r}")
    seed = int(cfg.get("seed", meta.get("seed", 0))) if seed is None else int(seed)
    patch_size = int(cfg.get("patch_size", meta.get("patch_size", 48)))
    context = float(cfg.get("context", meta.get("context", 2.0)))
    normals = int(cfg.get("normals_per_image", meta.get("normals_per_image", 2)))
    model = load_model(model_path, about)
    classes = model_classes(model, patch_size, task, model_path)

    folder = None
    if out_dir is not None:
        folder = RunFolder(out_dir, outputs=EVALUATE_OUTPUTS, command="mammo-demo evaluate")
        folder.acquire()
    try:
        if folder is not None:
            folder.refuse_foreign("evaluate", same_as={"model": str(model_path.resolve())})
        result = _evaluate(model, model_path, about, cfg, data_dir, task, classes, seed,
                           patch_size, context, normals, split, progress, out_dir)
        if folder is not None:
            folder.mark_started()
    except BaseException:
        if folder is not None:
            folder.remove_unstarted()
        raise
    finally:
        if folder is not None:
            folder.release()
    return result


def _evaluate(model, model_path, about, cfg, data_dir, task, classes, seed, patch_size, context,
              normals, split, progress, out_dir) -> dict:
    trained_on = cfg.get("data_dir")
    train_phantom = cfg.get("phantom_seed"), cfg.get("image_size"), cfg.get("phantom_images")
    same_data = data_dir is None or (trained_on is not None and _same_folder(data_dir, trained_on))
    if data_dir is None:
        data_dir = trained_on
    dataset, info = resolve_data(data_dir, int(train_phantom[0] or 0), train_phantom[1],
                                 progress, int(train_phantom[2] or 322))
    _log(progress, f"evaluating {model_path} on the {split} split of {info['label']}")

    def patches_of(ds):
        return patches.extract_patches(ds, task=task, patch_size=patch_size,
                                       normals_per_image=normals, context=context, seed=seed,
                                       progress=progress)

    patchset = patches_of(dataset)
    fold = cfg.get("fold")
    folds = int(cfg.get("folds", 1)) if fold else 1
    sp = None
    if split != "all":        # the training run's split by image (no split needed for "all")
        sp = make_splits(patchset, seed=seed, folds=folds)[int(fold) - 1 if fold else 0]
    target = patchset.subset(np.arange(len(patchset)) if split == "all" else sp[split])
    p_target = nn.predict_proba(model, target.x)
    y_val = p_val = None
    reason = None
    if split == "val":
        reason = "the threshold is chosen on the validation split, the very data evaluated here"
    elif split == "all" and same_data:
        reason = ("--split all includes the validation images the threshold is chosen on; "
                  "evaluate --split test for that figure")
    elif split == "all":
        if cfg:   # another folder: the training run's validation split gives the threshold
            train_set, _ = resolve_data(trained_on, int(train_phantom[0] or 0), train_phantom[1],
                                        progress, int(train_phantom[2] or 322))
            train_patches = patches_of(train_set)
            train_sp = make_splits(train_patches, seed=seed, folds=folds)
            val = train_patches.subset(train_sp[int(fold) - 1 if fold else 0]["val"])
            y_val, p_val = val.y, nn.predict_proba(model, val.x)
        else:
            reason = "no training run beside the model to take a validation split from"
    else:
        val = patchset.subset(sp["val"])
        y_val, p_val = val.y, nn.predict_proba(model, val.x)
    metrics = compute_metrics(target.y, p_target, classes, image_ids=target.image_ids,
                              y_val=y_val, p_val=p_val,
                              threshold_from="the training run's validation split",
                              no_threshold_reason=reason, seed=seed)
    how = (f"all {len(target)} patches" if split == "all"
           else f"{split} split by image (seed {seed}{f', fold {fold}' if fold else ''})")
    metrics.update({"command": "evaluate", "data": info["data"],
                    "model": str(Path(model_path).resolve()), "model_is": about["which"],
                    "model_provenance": about["metadata"], "task": task,
                    "classes": list(classes), "split": split, "seed": seed,
                    "counts": counts(target.y, classes), "images": n_images(target.image_ids),
                    "not_a_medical_device": NOT_A_MEDICAL_DEVICE})
    data_line = (f"PHANTOM data (synthetic mini-MIAS, seed {info.get('phantom_seed')}), not "
                 f"patients" if info["kind"] == "phantom" else "real mini-MIAS") + f"; {how}"
    table = format_table(metrics, data_line, title=f"{split} set")
    metrics["table"] = table
    metrics["headline"] = headline(metrics)
    if out_dir is not None:
        out_dir = Path(out_dir)
        written = write_test_plots(out_dir, target, p_target, metrics, info["label"], seed=seed,
                                   split_name=split, model=model)
        metrics["plots"] = written
        write_json(out_dir / METRICS_FILE, metrics)
        write_reports(out_dir, f"mammo-demo evaluate {model_path} ({split}): {info['label']}",
                      table, metrics, written, extra=[f"- {line.strip()}" for line in
                                                      about["lines"] + about["warnings"]])
    return {"metrics": metrics, "table": table, "data": info["data"], "task": task,
            "split": split, "provenance": about["lines"], "warnings": about["warnings"]}


def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


def predict_roi(model_path, image_path, x: int, y: int, radius: int) -> dict:
    """Class probabilities of one region of interest of a PGM mammogram.

    ``x``, ``y`` are MIAS coordinates (origin at the bottom-left corner, as in
    ``Info.txt``): the centre is array row ``H - y``, column ``x``. The patch
    is cut and normalised exactly as in training
    (:func:`mammo_demo.patches.extract_roi` with the run's ``patch_size`` and
    ``context``). An image of another size than the training films (which
    ``train`` would refuse) is refused.

    Returns ``{"classes", "probabilities", "predicted", "row", "col",
    "is_phantom", "provenance", "warnings"}``.
    """
    from .mias import read_phantom_marker, read_pgm

    model_path, image_path = Path(model_path), Path(image_path)
    about = describe_model(model_path)
    cfg, meta = about["config"], about["metadata"]
    patch_size = int(cfg.get("patch_size", meta.get("patch_size", 48)))
    context = float(cfg.get("context", meta.get("context", 2.0)))
    model = load_model(model_path, about)
    classes = model_classes(model, patch_size, about["task"], model_path)
    image = read_pgm(image_path)
    h, w = image.shape
    size = int(about["image_size"] or 1024)
    if (h, w) != (size, size):
        raise ValueError(f"{image_path} is {w}x{h} but {model_path} was trained on {size}x{size} "
                         f"films; train refuses other sizes, and so does predict")
    if not (0 <= x <= w and 0 <= y <= h):
        raise ValueError(f"centre (x={x}, y={y}) lies outside the {w}x{h} image {image_path} "
                         f"(MIAS coordinates: 0 <= x <= width, 0 <= y <= height, origin bottom-left)")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if radius > size:
        raise ValueError(f"radius {radius} is larger than the {w}x{h} image {image_path}")
    row, col = h - int(y), int(x)
    patch = patches.extract_roi(image, row, col, radius, patch_size=patch_size, context=context)
    probs = nn.predict_proba(model, patch[None, None].astype(np.float32))[0]
    return {"classes": list(classes), "probabilities": [float(p) for p in probs],
            "predicted": classes[int(np.argmax(probs))],
            "row": min(row, h - 1), "col": min(col, w - 1),
            "is_phantom": read_phantom_marker(image_path.parent) is not None,
            "provenance": about["lines"], "warnings": about["warnings"]}
