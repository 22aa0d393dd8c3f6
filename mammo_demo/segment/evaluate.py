"""Scoring a segmentation model on mask patches: metrics with their n, the report, the plots.

Scores are per patch (:func:`nnlite.metrics.segmentation_scores`, the
prediction being ``logit > 0``) and then summarised:

* over the **lesion patches** (non-empty true mask): mean IoU, mean Dice and
  mean pixel accuracy, each with a 95% bootstrap interval over *images*
  (patches of one film are resampled together), and the fraction of
  lesions **found** (IoU > 0.5) with its Wilson interval;
* over the **normal patches** (empty true mask): the fraction predicted
  empty ("no false lesion", strict: one pixel is a false lesion), Wilson
  interval, and the mean fraction of their pixels predicted as lesion; IoU
  there is 1 or 0 by the documented empty-mask rule, so it is not mixed
  into the lesion figures;
* over **all patches**: pixel accuracy (dominated by background: a model
  that predicts nothing scores high, which is why IoU and Dice lead).

Every rate is printed with its n; fewer than 30 is flagged (``!``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nnlite.metrics import lesions_found, segmentation_scores
from nnlite.serialization import atomic_open

from ..evaluation import MIN_MEANINGFUL_N, bootstrap_interval, proportion
from ..report import NOT_A_MEDICAL_DEVICE

OVERLAYS, IOU_HISTOGRAM, CURVES = "test_overlays.png", "iou_histogram.png", "curves.png"
PLOTS = (CURVES, OVERLAYS, IOU_HISTOGRAM)


def _mean_with_interval(values, groups, seed: int) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"value": None, "n": 0, "ci95": None, "method": None}
    boot = bootstrap_interval(lambda idx: float(values[idx].mean()), groups, seed=seed)
    return {"value": float(values.mean()), "n": int(values.size), "ci95": boot["ci95"],
            "method": boot["method"]}


def score_masks(pred_masks, true_masks, image_ids, kinds=None, seed: int = 0) -> dict:
    """Summary metrics (module docstring) and the per-patch scores, JSON-serialisable."""
    pred, true = np.asarray(pred_masks).astype(bool), np.asarray(true_masks).astype(bool)
    ids = np.asarray(image_ids)
    s = segmentation_scores(pred, true)
    lesion = s["true_pixels"] > 0
    found, n_lesion = lesions_found(s["iou"], s["true_pixels"])
    normal = ~lesion
    clean = int(np.sum(s["pred_pixels"][normal] == 0))
    out = {
        "lesion_patches": int(lesion.sum()), "normal_patches": int(normal.sum()),
        "images": int(len(set(ids.tolist()))), "lesion_images": int(len(set(ids[lesion].tolist()))),
        "mean_iou": _mean_with_interval(s["iou"][lesion], ids[lesion], seed),
        "mean_dice": _mean_with_interval(s["dice"][lesion], ids[lesion], seed),
        "pixel_accuracy_lesion_patches": _mean_with_interval(s["pixel_accuracy"][lesion], ids[lesion], seed),
        "pixel_accuracy_all_patches": _mean_with_interval(s["pixel_accuracy"], ids, seed),
        "lesions_found": {**proportion(found, n_lesion), "rule": "IoU > 0.5"},
        "normal_patches_clean": {**proportion(clean, int(normal.sum())),
                                 "rule": "no pixel predicted as lesion"},
        "normal_patches_predicted_fraction": _mean_with_interval(
            s["pred_pixels"][normal] / max(1, pred[0].size), ids[normal], seed),
        "empty_mask_rule": "IoU = Dice = 1 when true and predicted masks are both empty, "
                           "0 when exactly one is empty",
        "per_patch": {"image_id": ids.tolist(),
                      "kind": None if kinds is None else np.asarray(kinds).tolist(),
                      "iou": s["iou"].tolist(), "dice": s["dice"].tolist(),
                      "pixel_accuracy": s["pixel_accuracy"].tolist(),
                      "true_pixels": s["true_pixels"].tolist(), "pred_pixels": s["pred_pixels"].tolist()},
    }
    if kinds is not None:
        kinds = np.asarray(kinds)
        out["mean_iou_by_class"] = {
            str(k): {"value": float(s["iou"][lesion & (kinds == k)].mean()),
                     "n": int(np.sum(lesion & (kinds == k)))}
            for k in sorted(set(kinds[lesion].tolist()))}
    return out


ROWS = (("mean_iou", "mean IoU (lesion patches)"),
        ("mean_dice", "mean Dice (lesion patches)"),
        ("pixel_accuracy_lesion_patches", "pixel accuracy (lesion patches)"),
        ("pixel_accuracy_all_patches", "pixel accuracy (all patches)"),
        ("lesions_found", "lesions found (IoU > 0.5)"),
        ("normal_patches_clean", "normal patches without a false lesion"),
        ("normal_patches_predicted_fraction", "lesion fraction predicted on normal patches"))


def _fmt(v):
    return "-" if v is None else f"{v:.3f}"


def format_table(metrics: dict, title: str) -> str:
    """The end-of-run table: value, 95% interval and n of every figure."""
    lines = [title, f"{'metric':<44} {'value':>7}  {'95% CI':<15} {'n':>5}"]
    flagged = False
    for key, label in ROWS:
        m = metrics[key]
        ci = m.get("ci95")
        ci_text = "-" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        n = m["n"]
        flag = "!" if n < MIN_MEANINGFUL_N else " "
        flagged |= flag == "!"
        count = f" ({m['k']}/{n})" if "k" in m else ""
        lines.append(f"{label:<44} {_fmt(m['value']):>7}  {ci_text:<15} {n:>5}{flag}{count}")
    lines.append(f"patches: {metrics['lesion_patches']} with a lesion, {metrics['normal_patches']} "
                 f"normal, from {metrics['images']} images; intervals: bootstrap over images "
                 f"(means), Wilson (rates)")
    if flagged:
        lines.append(f"! n < {MIN_MEANINGFUL_N}: the figure is not meaningful on its own")
    if "mean_iou_by_class" in metrics:
        lines.append("mean IoU by class: " + ", ".join(
            f"{k} {v['value']:.2f} (n={v['n']})" for k, v in metrics["mean_iou_by_class"].items()))
    lines.append(metrics["empty_mask_rule"])
    return "\n".join(lines)


def write_report(path, table: str, notes=()) -> Path:
    """``report.txt``: the table, the notes, the not-a-medical-device line (atomic)."""
    text = "\n\n".join([table, *notes, NOT_A_MEDICAL_DEVICE]) + "\n"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


# ------------------------------------------------------------------ plots
def _contour(mask):
    """Boolean edge of a mask: lesion pixels with a background 4-neighbour."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    edge = inner & ~(m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:])
    return edge


def plot_overlays(x, true_masks, pred_masks, ious, path, *, data_label: str, captions=None,
                  max_patches: int = 24, seed: int = 0) -> Path:
    """Test patches with the true (green) and predicted (red) mask outlines and each IoU."""
    from ..plots import _FOOTER_SPACE, _figure, _save, _title
    x = np.asarray(x)[:, 0]
    t, p = np.asarray(true_masks)[:, 0].astype(bool), np.asarray(pred_masks)[:, 0].astype(bool)
    rng = np.random.default_rng(seed)
    lesion = np.flatnonzero(t.reshape(len(t), -1).any(axis=1))
    normal = np.flatnonzero(~t.reshape(len(t), -1).any(axis=1))
    k_norm = min(len(normal), max(1, max_patches // 6)) if len(normal) else 0
    k_les = min(len(lesion), max_patches - k_norm)
    chosen = np.concatenate([np.sort(rng.choice(lesion, k_les, replace=False)) if k_les else [],
                             np.sort(rng.choice(normal, k_norm, replace=False)) if k_norm else []]
                            ).astype(int)
    n = max(len(chosen), 1)
    cols = int(np.ceil(np.sqrt(n * 1.5)))
    rows = int(np.ceil(n / cols))
    fig = _figure(1.6 * cols + 0.4, 1.7 * rows + 1.1)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, chosen):
        rgb = np.repeat(((x[i] - x[i].min()) / (np.ptp(x[i]) + 1e-6))[..., None], 3, axis=2)
        rgb[_contour(t[i])] = (0.1, 0.9, 0.1)
        rgb[_contour(p[i])] = (1.0, 0.15, 0.15)
        both = _contour(t[i]) & _contour(p[i])
        rgb[both] = (1.0, 0.9, 0.1)
        ax.imshow(rgb, interpolation="nearest")
        name = "" if captions is None else f"{captions[i]} "
        ax.set_title(f"{name}IoU {ious[i]:.2f}", fontsize=7)
    if not len(chosen):
        axes[0].text(0.5, 0.5, "no test patches", ha="center", va="center")
    fig.suptitle(_title("Test patches: true mask (green), predicted (red)", data_label), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)


def plot_iou_histogram(ious, path, *, data_label: str) -> Path:
    """Distribution of the per-patch IoU over the test lesion patches (0.5 marked)."""
    from ..plots import _FOOTER_SPACE, _figure, _save, _title
    ious = np.asarray(ious, dtype=np.float64)
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    ax.hist(ious, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    ax.axvline(0.5, color="tab:red", linestyle="--", label="IoU 0.5 (found)")
    if ious.size:
        ax.axvline(float(ious.mean()), color="black", label=f"mean {ious.mean():.2f}")
    ax.set_xlabel("IoU per test lesion patch")
    ax.set_ylabel("patches")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"n = {ious.size} lesion patches", fontsize=8)
    fig.suptitle(_title("IoU over the test set", data_label), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)


def plot_curves(history: dict, path, *, data_label: str, best_epoch: int | None = None) -> Path:
    """Training and validation loss, validation IoU and Dice per epoch."""
    from ..plots import _FOOTER_SPACE, _figure, _save, _title
    fig = _figure(9.0, 3.8)
    ax_loss, ax_iou = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="validation")
    ax_loss.set_xlabel("epoch"); ax_loss.set_ylabel("loss"); ax_loss.legend(fontsize=8)
    ax_iou.plot(epochs, history["val_iou"], label="val mean IoU")
    ax_iou.plot(epochs, history["val_dice"], label="val mean Dice")
    ax_iou.set_xlabel("epoch"); ax_iou.set_ylim(0, 1); ax_iou.legend(fontsize=8)
    if best_epoch:
        for ax in (ax_loss, ax_iou):
            ax.axvline(best_epoch, color="0.5", linestyle=":")
    fig.suptitle(_title("Segmentation training (validation: all val patches)", data_label), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)
