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
      -> mias_cnn (dropout 0.5), SGD momentum 0.9, lr 0.002          nnlite.zoo.mias_cnn
      -> fit with validation, best-model checkpoint (lowest
         validation loss), history CSV/JSON, resumable checkpoint
      -> the best model on the test set: metrics.json + PNG plots (curves,
         confusion matrix, ROC, test patches, Grad-CAM of the malignant class)

Why the order matters. The source paper augmented its patches and then split
them, so rotated and mirrored copies of one lesion sat on both sides of the
split; a network that memorises a lesion then "recognises" its test copies,
which inflates every metric (the paper's 100% result is very likely that
leak). Here the split is by image (all patches of one mammogram on one side)
and comes before augmentation; only the training set is augmented and
balanced, and validation and test keep their natural class mix.

Metrics (all from :mod:`nnlite.metrics`, on the test set, with the model that
had the lowest validation loss):

* accuracy, balanced accuracy (mean per-class recall), confusion matrix;
* per class (one-vs-rest): precision, recall (sensitivity), F1, specificity;
* ROC AUC one-vs-rest for each class and their mean; the headline AUC is
  malignant-vs-rest (for 2-class tasks simply benign vs malignant);
* specificity at 90% sensitivity for malignant-vs-rest: the threshold on the
  malignant probability is chosen on the *validation* set and applied to test;
* overfitting ratio ``beta = train_acc / val_acc`` of the best model, both
  measured on un-augmented patches with their natural class mix.

``folds=K > 1`` runs stratified K-fold cross-validation by image instead of
one split (each fold holds out 1/K of the images as its test set and carves a
validation set out of the rest, by image too) and reports the mean and
standard deviation over folds.

Nothing here is a medical device; on phantom data every output says PHANTOM.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import nnlite as nn
from nnlite import metrics as M
from nnlite.serialization import atomic_open

from . import patches as P
from . import split as S
from .mias import load_mias

#: one line, printed with every result and stored in every JSON file.
NOT_A_MEDICAL_DEVICE = ("NOT A MEDICAL DEVICE: a teaching and research demo; its outputs must "
                        "never be used to diagnose or treat anyone.")

#: the source paper's figures (real mini-MIAS, all-classes task).
PAPER = {
    "all": {"accuracy": 0.609, "malignant_recall": 0.596, "malignant_precision": 0.591},
}
PAPER_DATA = ("paper: real mini-MIAS; patches augmented before the train/test split, so rotated "
              "copies of one lesion likely sat on both sides (leak); figures quoted for the "
              "all-classes task only")

OPTIMIZERS = ("sgd", "adam", "rmsprop")
BALANCING = ("undersample", "weights", "none")

#: defaults of ``mammo-demo train`` (chosen so that the phantom run finishes in
#: under 5 minutes on 2 CPU cores, phantom generation included).
DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 0.002
#: SGD with momentum 0.9 at the paper's learning rate 0.002. Adam at 0.002 is too
#: aggressive for this 9.5 M-parameter network: on the phantom set the loss sat at
#: ln 3 (every prediction uniform, the ReLUs dead) from the second epoch on.
DEFAULT_OPTIMIZER = "sgd"
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
#: with ``folds > 1``: how the images outside a fold's test set are split into train and val
INNER_FRACTIONS = (0.85, 0.15, 0.0)
TARGET_SENSITIVITY = 0.9

#: the files of a finished run folder
CONFIG_FILE, DATA_FILE = "config.json", "data.json"
METRICS_FILE, REPORT_FILE = "metrics.json", "report.txt"
BEST_MODEL, CHECKPOINT = "best_model.npz", "checkpoint.npz"
HISTORY_CSV, HISTORY_JSON = "history.csv", "history.json"
PLOT_FILES = ("curves.png", "confusion_matrix.png", "roc.png", "test_patches.png", "gradcam.png")

#: config keys that must agree between a run and its ``--resume``
_RESUME_KEYS = ("data_dir", "phantom_seed", "phantom_images", "image_size", "task", "batch_size",
                "lr", "optimizer", "seed", "balance", "folds", "patch_size", "normals_per_image",
                "context")


# ------------------------------------------------------------------ helpers
def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (:func:`nnlite.serialization.atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    return Path(path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def data_label(is_phantom: bool, phantom_seed=None) -> str:
    """The short label printed in titles: says PHANTOM for synthetic data."""
    if is_phantom:
        seed = f", seed {phantom_seed}" if phantom_seed is not None else ""
        return f"PHANTOM data (synthetic mini-MIAS{seed}, not patients)"
    return "real mini-MIAS data"


def data_description(is_phantom: bool, phantom_seed=None) -> str:
    """The ``"data"`` string of the JSON files."""
    if is_phantom:
        return (f"phantom: PHANTOM (synthetic) mini-MIAS written by mammo_demo.phantom "
                f"(seed {phantom_seed}); NOT patient data")
    return "real: mini-MIAS database folder (patient mammograms)"


def _counts(y, classes) -> dict:
    y = np.asarray(y)
    return {name: int(np.sum(y == k)) for k, name in enumerate(classes)}


def _n_images(ids) -> int:
    return int(len(np.unique(np.asarray(ids))))


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


# ------------------------------------------------------------------ data
def resolve_data(data_dir=None, phantom_seed: int = 0, image_size: int | None = None,
                 progress: bool = True, phantom_images: int = 322):
    """Open the MIAS folder ``data_dir``, or the cached phantom set when it is ``None``.

    Without ``data_dir`` the phantom set of ``(phantom_seed, image_size or
    1024, phantom_images)`` is generated once into the cache folder
    (:func:`mammo_demo.phantom.ensure_phantom`, ``$NNLITE_CACHE`` or
    ``~/.cache/nnlite``) and reused afterwards.

    Returns ``(dataset, info)``: the :class:`~mammo_demo.mias.MiasDataset`
    and a provenance dict (``kind``, ``data``, ``label``, ``folder``, ``phantom_seed``).
    """
    if data_dir is None:
        from .phantom import ensure_phantom
        size = 1024 if image_size is None else int(image_size)
        folder = ensure_phantom(seed=phantom_seed, image_size=size, progress=progress,
                                n_images=phantom_images)
        dataset = load_mias(folder)
    else:
        dataset = load_mias(Path(data_dir), image_size)
    seed = dataset.summary().get("phantom_seed") if dataset.is_phantom else None
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    info = {"kind": "phantom" if dataset.is_phantom else "real",
            "data": data_description(dataset.is_phantom, seed),
            "label": data_label(dataset.is_phantom, seed),
            "folder": str(dataset.folder), "phantom_seed": seed}
    return dataset, info


def make_splits(patchset, seed: int = 0, folds: int = 1) -> list[dict]:
    """Index splits by image: ``[{"train", "val", "test"}]``, one dict per fold.

    ``folds == 1``: one stratified 70/15/15 split by image. ``folds == K``:
    stratified K-fold by image for the test sets; in each fold the remaining
    images are split again by image into training (85%) and validation (15%).
    Every index array points into ``patchset``.
    """
    ids, y = np.asarray(patchset.image_ids), np.asarray(patchset.y)
    if folds == 1:
        s = S.split_by_image(ids, y, fractions=SPLIT_FRACTIONS, seed=seed)
        return [{k: np.asarray(s[k], dtype=np.int64) for k in ("train", "val", "test")}]
    out = []
    for train_val, test in S.kfold_by_image(ids, y, folds, seed=seed):
        train_val = np.asarray(train_val, dtype=np.int64)
        inner = S.split_by_image(ids[train_val], y[train_val], fractions=INNER_FRACTIONS, seed=seed)
        out.append({"train": train_val[inner["train"]], "val": train_val[inner["val"]],
                    "test": np.asarray(test, dtype=np.int64)})
    return out


def prepare_training_set(train, balance: str, seed: int):
    """Augment (8 transforms) then balance the training :class:`PatchSet`.

    Returns ``(patchset, class_weights or None, counts)``; ``counts`` records
    the class counts after augmentation and after balancing.
    """
    augmented = P.augment_eight(train)
    counts = {"after_augmentation": _counts(augmented.y, augmented.classes)}
    weights = None
    if balance == "undersample":
        augmented = P.balance_undersample(augmented, seed=seed)
    elif balance == "weights":
        weights = np.asarray(P.class_weights(augmented.y, len(augmented.classes)), dtype=np.float64)
        counts["class_weights"] = [float(w) for w in weights]
    counts["after_balancing"] = _counts(augmented.y, augmented.classes)
    return augmented, weights, counts


# ------------------------------------------------------------------ metrics
def malignant_index(classes) -> int:
    classes = list(classes)
    if "malignant" not in classes:
        raise ValueError(f"the task's classes {classes} have no 'malignant' class")
    return classes.index("malignant")


def compute_metrics(y_test, p_test, classes, y_val=None, p_val=None,
                    target_sensitivity: float = TARGET_SENSITIVITY) -> dict:
    """Every test metric of a run, JSON-ready.

    Args:
        y_test: (N,) true class indices; p_test: (N, K) predicted probabilities.
        classes: the K class names (one of them ``"malignant"``).
        y_val, p_val: validation labels and probabilities, used only to choose
            the threshold for specificity at ``target_sensitivity``.

    ROC quantities need both a positive and a negative sample; when a class is
    missing from the test (or validation) set they are ``None`` and
    ``"notes"`` says why.
    """
    classes = list(classes)
    k = len(classes)
    y_test = np.asarray(y_test, dtype=np.int64)
    p_test = np.asarray(p_test, dtype=np.float64)
    pred = p_test.argmax(axis=1)
    mal = malignant_index(classes)
    report = M.classification_report(y_test, pred, num_classes=k, class_names=classes)
    out = {
        "n_test": int(len(y_test)),
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["macro avg"]["recall"],
        "confusion_matrix": report["confusion_matrix"],
        "per_class": {c: report[c] for c in classes},
        "macro_avg": report["macro avg"],
        "notes": [],
    }
    auc = {}
    for i, c in enumerate(classes):
        try:
            auc[c] = M.roc_auc(y_test == i, p_test[:, i])
        except ValueError as e:
            auc[c] = None
            out["notes"].append(f"AUC {c}-vs-rest undefined: {e}")
    out["auc_one_vs_rest"] = auc
    defined = [v for v in auc.values() if v is not None]
    out["auc_macro"] = float(np.mean(defined)) if len(defined) == k else None
    m = report[classes[mal]]
    out["malignant"] = {"recall": m["recall"], "precision": m["precision"], "f1": m["f1"],
                        "specificity": m["specificity"], "auc": auc[classes[mal]]}
    op = None
    if y_val is not None and p_val is not None:
        try:
            point = M.specificity_at_sensitivity(np.asarray(y_val) == mal, np.asarray(p_val)[:, mal],
                                                 y_test == mal, p_test[:, mal], target_sensitivity)
            op = {"target_sensitivity": target_sensitivity, "threshold": point.threshold,
                  "test_sensitivity": point.sensitivity, "test_specificity": point.specificity,
                  "threshold_chosen_on": "validation"}
        except ValueError as e:
            out["notes"].append(f"specificity at {target_sensitivity:.0%} sensitivity undefined: {e}")
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
        fpr, tpr, _ = M.roc_curve(t, p_test[:, i])
        curves.append((f"{classes[i]} vs rest", fpr, tpr, M.roc_auc(t, p_test[:, i])))
    return curves


def headline(metrics: dict) -> dict:
    """The numbers of the end-of-run table, from :func:`compute_metrics` output."""
    m = metrics["malignant"]
    op = metrics.get("specificity_at_sensitivity") or {}
    return {"accuracy": metrics["accuracy"], "malignant_recall": m["recall"],
            "malignant_precision": m["precision"], "malignant_f1": m["f1"],
            "malignant_specificity": m["specificity"], "malignant_auc": m["auc"],
            "specificity_at_90_sensitivity": op.get("test_specificity")}


TABLE_COLUMNS = (("accuracy", "accuracy"), ("malignant_recall", "mal.recall"),
                 ("malignant_precision", "mal.prec"), ("malignant_f1", "mal.F1"),
                 ("malignant_specificity", "mal.spec"), ("malignant_auc", "mal.AUC"),
                 ("specificity_at_90_sensitivity", "spec@90%sens"))


def _cell(value, spread=None, percent=True) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if spread is not None:
        return f"{100 * value:.1f}±{100 * spread:.1f}%"
    return f"{100 * value:.1f}%"


def format_table(rows, data_line: str) -> str:
    """The end-of-run table: our figures per task next to the paper's.

    Args:
        rows: list of ``(task, values, spreads)`` for our runs; ``values`` as
            from :func:`headline`, ``spreads`` (std over folds) or ``None``.
        data_line: what our figures were measured on.
    """
    header = ["", "task"] + [name for _, name in TABLE_COLUMNS]
    table = []
    for task, values, spreads in rows:
        table.append(["ours", task] + [_cell(values.get(k), (spreads or {}).get(k))
                                       for k, _ in TABLE_COLUMNS])
        paper = PAPER.get(task)
        table.append(["paper", task] + [_cell(paper.get(k)) if paper else "n/a"
                                        for k, _ in TABLE_COLUMNS])
    widths = [max(len(r[i]) for r in [header] + table) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    rule = "-" * len(fmt(header))
    lines = [rule, fmt(header), rule] + [fmt(r) for r in table] + [rule,
             f"ours:  {data_line}", PAPER_DATA,
             "mal.* = malignant vs rest; spec@90%sens: threshold chosen on validation, "
             "applied to test; '-' = undefined or not reported",
             NOT_A_MEDICAL_DEVICE]
    return "\n".join(lines)


def our_data_line(info: dict, folds: int = 1, how: str | None = None) -> str:
    """What our figures were measured on, for the line under the table."""
    what = (f"PHANTOM data (synthetic mini-MIAS, seed {info.get('phantom_seed')}), not patients"
            if info["kind"] == "phantom" else "real mini-MIAS")
    if how is None:
        how = (f"stratified {folds}-fold cross-validation by image, mean ± std over folds"
               if folds > 1 else "test set of one stratified 70/15/15 split by image")
    return f"{what}; {how}, split before augmentation (no image on two sides)"


# ------------------------------------------------------------------ model
def build_optimizer(name: str, params, lr: float):
    """``sgd``: SGD with momentum 0.9; ``adam``: Adam(beta1 0.9, beta2 0.999);
    ``rmsprop``: RMSProp(rho 0.9)."""
    _check_choice("optimizer", name, OPTIMIZERS)
    if name == "adam":
        return nn.Adam(params, lr=lr)
    if name == "sgd":
        return nn.SGD(params, lr=lr, momentum=0.9)
    return nn.RMSProp(params, lr=lr)


def _probabilities(model, x, batch_size: int = 256) -> np.ndarray:
    """(N, K) float64 class probabilities (softmax of the logits), in batches."""
    return nn.predict_proba(model, x, batch_size=batch_size)


# ------------------------------------------------------------------ one split
def train_and_evaluate(patchset, split: dict, run_dir, *, info: dict, epochs: int,
                       batch_size: int, lr: float, optimizer: str, seed: int, balance: str,
                       resume: bool, device: str, progress: bool, title_suffix: str = "") -> dict:
    """Train on ``split["train"]`` (augmented, balanced), validate, test; write the run files.

    Writes ``best_model.npz``, ``checkpoint.npz``, ``history.csv``/``.json``,
    ``metrics.json`` and the PNG plots to ``run_dir``; returns the metrics dict.
    """
    from . import plots

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    classes = list(patchset.classes)
    k = len(classes)
    train, val, test = (patchset.subset(split[s]) for s in ("train", "val", "test"))
    for name, part in (("training", train), ("validation", val), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} split is empty ({len(patchset)} patches from "
                             f"{_n_images(patchset.image_ids)} images): use more images")
    train_ready, weights, train_counts = prepare_training_set(train, balance, seed)
    if len(train_ready) == 0:
        raise ValueError("balancing left no training patches: a class is missing from the "
                         "training split (use more images or --balance weights)")

    model = nn.zoo.mias_cnn(num_classes=k, input_shape=tuple(patchset.x.shape[1:]), dropout=0.5,
                            seed=seed)
    if device == "gpu":
        from nnlite.backend import require_gpu
        require_gpu()
        model.to_gpu()
    opt = build_optimizer(optimizer, model.parameters(), lr)
    loss = nn.SoftmaxCrossEntropy(class_weights=weights)
    best_path = run_dir / BEST_MODEL
    callbacks = [nn.ModelCheckpoint(best_path, monitor="val_loss"),
                 nn.HistoryLogger(run_dir / HISTORY_CSV), nn.HistoryLogger(run_dir / HISTORY_JSON)]
    if progress:
        model.summary(tuple(patchset.x.shape[1:]))
    _log(progress, f"training mias_cnn ({model.count_params():,} parameters) on "
                   f"{len(train_ready)} patches {train_counts['after_balancing']}, "
                   f"validating on {len(val)}, testing on {len(test)} [{info['label']}]")
    t0 = time.perf_counter()
    history = model.fit(train_ready.x, train_ready.y, loss=loss, optimizer=opt, epochs=epochs,
                        batch_size=batch_size, validation_data=(val.x, val.y), seed=seed,
                        callbacks=callbacks, verbose=1 if progress else 0,
                        checkpoint_path=run_dir / CHECKPOINT, resume=resume)
    train_seconds = time.perf_counter() - t0

    if best_path.exists():
        best = nn.load(best_path)
    else:  # no epoch ran (epochs=0): the initial model is the only one there is
        model.to_cpu()
        nn.save(model, best_path)
        best = nn.load(best_path)
    val_losses = history.history.get("val_loss", [])
    best_epoch = int(np.argmin(val_losses)) + 1 if val_losses else None

    p_val, p_test = _probabilities(best, val.x), _probabilities(best, test.x)
    metrics = compute_metrics(test.y, p_test, classes, val.y, p_val)
    train_acc = M.accuracy(train.y, _probabilities(best, train.x))
    val_acc = M.accuracy(val.y, p_val)
    metrics.update({
        "data": info["data"], "task_classes": classes, "best_epoch": best_epoch,
        "epochs_run": history.epochs,
        "train_accuracy_unaugmented": train_acc, "val_accuracy": val_acc,
        "overfitting_ratio": M.overfitting_ratio(train_acc, val_acc) if val_acc > 0 else None,
        "train_seconds": round(train_seconds, 2),
        "counts": {"train": _counts(train.y, classes), "val": _counts(val.y, classes),
                   "test": _counts(test.y, classes), "train_prepared": train_counts},
        "images": {"train": _n_images(train.image_ids), "val": _n_images(val.image_ids),
                   "test": _n_images(test.image_ids)},
        "not_a_medical_device": NOT_A_MEDICAL_DEVICE,
    })
    write_json(run_dir / METRICS_FILE, metrics)

    label = info["label"] + title_suffix
    plots.plot_history(history.history, run_dir / "curves.png", data_label=label,
                       best_epoch=best_epoch)
    write_test_plots(run_dir, test, p_test, metrics, label, seed=seed, model=best)
    return metrics


def write_test_plots(out_dir, test, p_test, metrics: dict, label: str, seed: int = 0,
                     split_name: str = "test", model=None, n_gradcam: int = 12) -> None:
    """confusion_matrix.png, roc.png, test_patches.png and (with ``model``) gradcam.png.

    ``gradcam.png`` shows :func:`mammo_demo.gradcam.grad_cam` maps of the
    malignant class for up to ``n_gradcam`` patches of ``test`` (a PatchSet),
    drawn evenly from every true class.
    """
    from . import plots

    out_dir = Path(out_dir)
    classes = list(test.classes)
    pred = p_test.argmax(axis=1)
    plots.plot_confusion_matrix(metrics["confusion_matrix"], classes,
                                out_dir / "confusion_matrix.png", data_label=label,
                                title=f"Confusion matrix ({split_name})")
    op = metrics["specificity_at_sensitivity"]
    plots.plot_roc(roc_curves(test.y, p_test, classes), out_dir / "roc.png", data_label=label,
                   title=f"ROC ({split_name})",
                   operating_point=None if op is None else (
                       f"malignant at {op['target_sensitivity']:.0%} sensitivity "
                       f"(threshold {op['threshold']:.3f} from validation)",
                       op["test_sensitivity"], op["test_specificity"]))
    plots.plot_patch_grid(test.x, test.y, pred, p_test, classes, out_dir / "test_patches.png",
                          data_label=label, seed=seed,
                          title=f"{split_name.capitalize()} patches: true / predicted (probability)")
    if model is not None and n_gradcam > 0:
        from .gradcam import grad_cam
        mal = malignant_index(classes)
        chosen = plots._balanced_choice(np.asarray(test.y), n_gradcam, seed)
        heat, _ = grad_cam(model, test.x[chosen], class_index=mal)
        captions = [f"{classes[test.y[i]]} / {classes[pred[i]]}\np(malignant) {p_test[i, mal]:.2f}"
                    for i in chosen]
        plots.plot_gradcam(test.x[chosen], heat, captions, out_dir / "gradcam.png",
                           data_label=label,
                           title=f"Grad-CAM of the malignant class ({split_name} patches: "
                                 f"true / predicted)")


# ------------------------------------------------------------------ the experiment
def default_run_dir(task: str, is_phantom_default: bool) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{task}{'-phantom' if is_phantom_default else ''}"


def _check_run_dir(run_dir: Path, config: dict, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a finished or started run unless ``resume``/``overwrite`` says so."""
    existing = run_dir / CONFIG_FILE
    if resume:
        if existing.is_file():
            old = json.loads(existing.read_text(encoding="utf-8"))
            diff = [f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in _RESUME_KEYS
                    if old.get(k) != config.get(k)]
            if diff:
                raise ValueError(f"--resume: {run_dir} was started with different settings "
                                 f"({'; '.join(diff)}); use the same settings or another --out")
        return
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{run_dir} already holds files: pass --resume to continue that "
                             f"run, --overwrite to replace it, or choose another --out")
        _remove_run_files(run_dir)


def _remove_run_files(run_dir: Path) -> None:
    """Delete what an earlier run wrote (its files and fold folders), nothing else."""
    names = {CONFIG_FILE, DATA_FILE, METRICS_FILE, REPORT_FILE, BEST_MODEL, CHECKPOINT,
             HISTORY_CSV, HISTORY_JSON, *PLOT_FILES}
    for p in run_dir.iterdir():
        if p.is_file() and p.name in names:
            p.unlink()
        elif p.is_dir() and re.fullmatch(r"fold\d+", p.name):
            shutil.rmtree(p)


def run_experiment(data_dir=None, task: str = "all", epochs: int = DEFAULT_EPOCHS,
                   batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                   optimizer: str = DEFAULT_OPTIMIZER, seed: int = 0, out_dir=None,
                   resume: bool = False, folds: int = 1, balance: str = "undersample",
                   image_size: int | None = None,
                   phantom_seed: int = 0, patch_size: int = 48, normals_per_image: int = 2,
                   context: float = 2.0, device: str = "cpu", overwrite: bool = False,
                   phantom_images: int = 322, progress: bool = True) -> dict:
    """Run the MIAS ROI experiment and write everything to ``out_dir``.

    Args:
        data_dir: a mini-MIAS folder (real or phantom); ``None`` generates the
            phantom set once into a cache folder (seed ``phantom_seed``,
            ``phantom_images`` images) and reuses it.
        task: ``"all"`` (normal/benign/malignant), ``"calc"`` or ``"mass"``
            (benign vs malignant calcifications or masses).
        epochs, batch_size, lr, optimizer: training (``optimizer`` in
            ``sgd`` (momentum 0.9, the default), ``adam``, ``rmsprop``).
        seed: seeds patch sampling, the split, balancing, weights and shuffling.
        out_dir: the run folder (default ``runs/<time>-<task>[-phantom]``).
        resume: continue an interrupted run in ``out_dir`` from its checkpoint.
        folds: 1 for a 70/15/15 split by image, K > 1 for K-fold cross-validation by image.
        balance: ``undersample`` (the paper), ``weights`` (class-weighted loss) or ``none``.
        image_size: side of the phantom images to generate, or of the images of
            ``data_dir`` (``None``: 1024, or what the phantom marker says).
        patch_size, normals_per_image, context: patch extraction (see
            :func:`mammo_demo.patches.extract_patches`).
        device: ``"cpu"`` or ``"gpu"`` (needs CuPy and a CUDA device).
        overwrite: allow writing into a non-empty ``out_dir`` without ``resume``.
        progress: progress bars and log lines.

    Returns: the result dict also written to ``out_dir/metrics.json``:
        ``data``, ``task``, ``classes``, ``test`` metrics (``folds == 1``) or
        ``folds`` (per fold) with ``mean``/``std``, ``table`` (the text table).
    """
    _check_choice("task", task, tuple(P.TASKS))
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("balance", balance, BALANCING)
    _check_choice("device", device, ("cpu", "gpu"))
    if int(epochs) < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not float(lr) > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if int(folds) < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if int(patch_size) < 4:
        raise ValueError(f"patch size must be at least 4 pixels (mias_cnn pools twice), "
                         f"got {patch_size}")
    if device == "gpu":
        from nnlite.backend import require_gpu
        require_gpu()
    t_start = time.perf_counter()

    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(task, data_dir is None)
    config = {"data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
              "phantom_seed": phantom_seed if data_dir is None else None,
              "phantom_images": int(phantom_images) if data_dir is None else None,
              "image_size": image_size, "task": task, "epochs": int(epochs),
              "batch_size": int(batch_size), "lr": float(lr), "optimizer": optimizer,
              "seed": int(seed), "balance": balance, "folds": int(folds),
              "patch_size": int(patch_size), "normals_per_image": int(normals_per_image),
              "context": float(context), "device": device, "model": "mias_cnn (dropout 0.5)",
              "split_fractions": list(SPLIT_FRACTIONS) if folds == 1 else None,
              "best_model_monitor": "val_loss"}
    _check_run_dir(run_dir, config, resume, overwrite)

    dataset, info = resolve_data(data_dir, phantom_seed, image_size, progress, phantom_images)
    config["data"] = info["data"]
    config["not_a_medical_device"] = NOT_A_MEDICAL_DEVICE
    banner = ("=" * 78 + "\n" + (f"PHANTOM DATA: synthetic mammograms from {info['folder']}\n"
                                 f"(not patient data; every output of this run says PHANTOM)"
                                 if info["kind"] == "phantom"
                                 else f"real mini-MIAS data from {info['folder']}")
              + "\n" + NOT_A_MEDICAL_DEVICE + "\n" + "=" * 78)
    _log(progress, banner)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_FILE, config)

    _log(progress, f"extracting {patch_size}x{patch_size} patches for task {task!r} "
                   f"{P.TASKS[task]} from {len(dataset.refnums)} images")
    patchset = P.extract_patches(dataset, task=task, patch_size=patch_size,
                                 normals_per_image=normals_per_image, context=context,
                                 seed=seed, progress=progress)
    classes = list(patchset.classes)
    if len(patchset) == 0:
        raise ValueError(f"no patches for task {task!r} in {dataset.folder}")
    splits = make_splits(patchset, seed=seed, folds=int(folds))
    data = {"data": info["data"], "kind": info["kind"], "folder": info["folder"],
            "phantom_seed": info["phantom_seed"], "seed": int(seed), "task": task,
            "classes": classes, "dataset": dataset.summary(),
            "patches": {"total": int(len(patchset)), "per_class": _counts(patchset.y, classes),
                        "images": _n_images(patchset.image_ids)},
            "splits": [{part: {"patches": int(len(idx)), "images": _n_images(patchset.image_ids[idx]),
                               "per_class": _counts(patchset.y[idx], classes)}
                        for part, idx in sp.items()} for sp in splits],
            "split_method": ("stratified by class, by image, before augmentation; "
                             + (f"fractions {SPLIT_FRACTIONS}" if folds == 1
                                else f"{folds}-fold test sets, 15% of the rest by image for "
                                     f"validation")),
            "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
    _check_disjoint(patchset.image_ids, splits)
    write_json(run_dir / DATA_FILE, data)

    common = dict(info=info, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                  optimizer=optimizer, seed=int(seed), balance=balance, resume=resume,
                  device=device, progress=progress)
    if folds == 1:
        m = train_and_evaluate(patchset, splits[0], run_dir, **common)
        rows = [(task, headline(m), None)]
        result = {"data": info["data"], "task": task, "classes": classes, "test": m}
    else:
        fold_metrics = []
        for i, sp in enumerate(splits, start=1):
            _log(progress, f"--- fold {i}/{folds} ---")
            fold_dir = run_dir / f"fold{i}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            write_json(fold_dir / CONFIG_FILE, {**config, "fold": i})
            fold_metrics.append(train_and_evaluate(patchset, sp, fold_dir,
                                                   title_suffix=f", fold {i}/{folds}", **common))
        mean, std = aggregate([headline(m) for m in fold_metrics])
        rows = [(task, mean, std)]
        result = {"data": info["data"], "task": task, "classes": classes,
                  "folds": fold_metrics, "mean": mean, "std": std}
    table = format_table(rows, our_data_line(info, int(folds)))
    result.update({"table": table, "run_dir": str(run_dir),
                   "wall_seconds": round(time.perf_counter() - t_start, 1),
                   "not_a_medical_device": NOT_A_MEDICAL_DEVICE})
    if folds > 1:
        write_json(run_dir / METRICS_FILE, result)
    else:
        write_json(run_dir / METRICS_FILE, {**result["test"], "task": task, "classes": classes,
                                            "headline": rows[0][1], "table": table,
                                            "wall_seconds": result["wall_seconds"]})
    (run_dir / REPORT_FILE).write_text(table + "\n", encoding="utf-8")
    return result


def aggregate(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and standard deviation (population, ddof=0) of each key over folds.

    A key that is ``None`` in some fold is averaged over the folds that define it.
    """
    mean, std = {}, {}
    for key in rows[0]:
        values = [r[key] for r in rows if r.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
        std[key] = float(np.std(values)) if values else None
    return mean, std


def _check_disjoint(image_ids, splits) -> None:
    """Fail loudly if any image has patches on two sides of a split (the paper's leak)."""
    ids = np.asarray(image_ids)
    for i, sp in enumerate(splits, start=1):
        sides = {k: set(ids[v].tolist()) for k, v in sp.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = sides[a] & sides[b]
            if both:
                raise RuntimeError(f"split {i}: images {sorted(both)[:5]} are in both {a} and {b}")


# ------------------------------------------------------------------ saved models
def read_run_config(model_path) -> dict:
    """The ``config.json`` next to a model file (``{}`` when there is none)."""
    path = Path(model_path).parent / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _model_classes(model, patch_size: int, task: str | None, where) -> tuple:
    """The class names for a model's outputs: the task's, checked against the output count."""
    (n_out,) = model.output_shapes((1, patch_size, patch_size))[-1]
    if task is None:
        task = "all" if n_out == 3 else "calc"     # 2 outputs: benign / malignant
    classes = P.TASKS[task]
    if n_out != len(classes):
        raise ValueError(f"{where} has {n_out} outputs but task {task!r} has {len(classes)} "
                         f"classes {classes}")
    return classes


def evaluate_saved_model(model_path, data_dir=None, task: str | None = None,
                         seed: int | None = None, split: str = "test", out_dir=None,
                         progress: bool = True) -> dict:
    """Evaluate a saved model (``best_model.npz``) on a split of a MIAS folder.

    Task, seed, data folder and patch settings default to the ``config.json``
    next to the model, so the training run's split by image is reproduced
    exactly (same patches, same seed, same fold) and ``split="test"`` gives its
    test set. ``split="all"`` evaluates every patch (use it for a folder the
    model has never seen). The threshold for specificity at 90% sensitivity
    is always chosen on the validation split.

    Returns ``{"metrics", "table", "data", "task", "split"}``; with
    ``out_dir`` also writes ``metrics.json`` and the PNG plots there.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    _check_choice("split", split, ("test", "val", "train", "all"))
    cfg = read_run_config(model_path)
    task = task or cfg.get("task") or "all"
    _check_choice("task", task, tuple(P.TASKS))
    seed = int(cfg.get("seed", 0)) if seed is None else int(seed)
    patch_size = int(cfg.get("patch_size", 48))
    model = nn.load(model_path)
    classes = _model_classes(model, patch_size, task, model_path)
    if data_dir is None:
        data_dir = cfg.get("data_dir")
    dataset, info = resolve_data(data_dir, int(cfg.get("phantom_seed") or 0), cfg.get("image_size"),
                                 progress, int(cfg.get("phantom_images") or 322))
    _log(progress, f"evaluating {model_path} on the {split} split of {info['label']}")
    patchset = P.extract_patches(dataset, task=task, patch_size=patch_size,
                                 normals_per_image=int(cfg.get("normals_per_image", 2)),
                                 context=float(cfg.get("context", 2.0)), seed=seed,
                                 progress=progress)
    fold = cfg.get("fold")
    splits = make_splits(patchset, seed=seed, folds=int(cfg.get("folds", 1)) if fold else 1)
    sp = splits[int(fold) - 1 if fold else 0]
    idx = np.arange(len(patchset)) if split == "all" else sp[split]
    target, val = patchset.subset(idx), patchset.subset(sp["val"])
    p_val, p_target = _probabilities(model, val.x), _probabilities(model, target.x)
    metrics = compute_metrics(target.y, p_target, classes, val.y, p_val)
    how = (f"all {len(target)} patches" if split == "all"
           else f"{split} split by image (seed {seed}{f', fold {fold}' if fold else ''})")
    metrics.update({"data": info["data"], "model": str(model_path), "task": task,
                    "classes": list(classes), "split": split, "seed": seed,
                    "counts": _counts(target.y, classes),
                    "images": _n_images(target.image_ids),
                    "not_a_medical_device": NOT_A_MEDICAL_DEVICE})
    table = format_table([(task, headline(metrics), None)], our_data_line(info, how=how))
    metrics["table"] = table
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / METRICS_FILE, metrics)
        write_test_plots(out_dir, target, p_target, metrics, info["label"], seed=seed,
                         split_name=split, model=model)
        (out_dir / REPORT_FILE).write_text(table + "\n", encoding="utf-8")
    return {"metrics": metrics, "table": table, "data": info["data"], "task": task, "split": split}


def predict_roi(model_path, image_path, x: int, y: int, radius: int) -> dict:
    """Class probabilities of one region of interest of a PGM mammogram.

    ``x``, ``y`` are MIAS coordinates (origin at the bottom-left corner, as in
    ``Info.txt``): the centre is array row ``H - y``, column ``x``. The patch
    is cut and normalised exactly as in training
    (:func:`mammo_demo.patches.extract_roi` with the run's ``patch_size`` and
    ``context``).

    Returns ``{"classes", "probabilities", "predicted", "row", "col", "is_phantom"}``.
    """
    from .mias import read_phantom_marker, read_pgm

    model_path, image_path = Path(model_path), Path(image_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    cfg = read_run_config(model_path)
    patch_size = int(cfg.get("patch_size", 48))
    model = nn.load(model_path)
    classes = _model_classes(model, patch_size, cfg.get("task"), model_path)
    image = read_pgm(image_path)
    h, w = image.shape
    if not (0 <= x <= w and 0 <= y <= h):
        raise ValueError(f"centre (x={x}, y={y}) lies outside the {w}x{h} image {image_path} "
                         f"(MIAS coordinates: 0 <= x <= width, 0 <= y <= height, origin bottom-left)")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    row, col = h - int(y), int(x)
    patch = P.extract_roi(image, row, col, radius, patch_size=patch_size,
                          context=float(cfg.get("context", 2.0)))
    probs = _probabilities(model, patch[None, None].astype(np.float32))[0]
    return {"classes": list(classes), "probabilities": [float(p) for p in probs],
            "predicted": classes[int(np.argmax(probs))],
            "row": min(row, h - 1), "col": min(col, w - 1),
            "is_phantom": read_phantom_marker(image_path.parent) is not None}
