"""PNG plots of a run: training curves, confusion matrix, ROC curves, a grid of test patches.

Every function draws on a fresh :class:`matplotlib.figure.Figure` attached to
the non-interactive Agg canvas (``FigureCanvasAgg``) and writes a PNG. Nothing
goes through ``pyplot``: no window opens, no global backend is switched and no
figure is left registered, so the functions are safe in scripts, tests,
notebooks and headless servers alike.

Each function takes a ``data_label`` such as ``"PHANTOM data (synthetic, not
patients)"`` that is printed in the title, and a footer repeating that the
demo is not a medical device, so that a PNG copied out of its run folder still
says what it was measured on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FOOTER = "nnlite mammo-demo - for teaching and research only, not a medical device"
_FOOTER_SPACE = 0.32  # inches kept free at the bottom for the two footer lines


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path, data_label: str) -> Path:
    """Add the footer, widen the figure until no title or footer is clipped, write the PNG.

    Small test sets give narrow grids (two patches: two columns) whose
    two-line title and footer are wider than the figure; the figure grows
    (both sides by the same factor) until the widest text fits with a margin.
    """
    footer = f"{data_label}\n{FOOTER}" if data_label else FOOTER
    fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=7, color="0.35")
    for _ in range(6):                   # widening moves the texts with the axes: check again
        fig.draw_without_rendering()     # places the axes (aspect, colour bars) and titles
        renderer = fig.canvas.get_renderer()
        width = fig.get_figwidth() * fig.dpi
        texts = [t for t in list(fig.texts) + [ax.title for ax in fig.axes] if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in texts]
        overflow = max([0.0] + [max(-b.x0, b.x1 - width) for b in boxes])
        widest = max([0.0] + [b.width for b in boxes])
        need = max(widest, width + 2 * overflow) / fig.dpi + (0.3 if overflow > 0 else 0.0)
        if overflow <= 0 and widest <= width:
            break
        # grow both sides by the same factor: the layout (in figure fractions) scales along and
        # equal-aspect images keep their proportions, while the text keeps its size
        scale = need / fig.get_figwidth()
        fig.set_size_inches(need, fig.get_figheight() * scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _title(title: str, data_label: str) -> str:
    return f"{title}\n{data_label}" if data_label else title


def plot_history(history: dict, path, *, data_label: str = "", best_epoch: int | None = None,
                 title: str = "Training curves") -> Path:
    """Loss and accuracy per epoch, training and validation, side by side.

    Args:
        history: ``{"loss": [...], "accuracy": [...], "val_loss": [...],
            "val_accuracy": [...]}`` (missing keys are skipped), one value per epoch.
        path: PNG file to write.
        best_epoch: 1-based epoch of the saved best model, marked by a dashed line.
    """
    fig = _figure(10, 4.2)
    axes = fig.subplots(1, 2)
    for ax, key, name in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for k, label, style in ((key, "train", "-o"), (f"val_{key}", "validation", "-s")):
            values = history.get(k)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.5", linestyle="--", linewidth=1,
                       label=f"best model (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no epoch trained", ha="center", va="center", transform=ax.transAxes)
    axes[1].set_ylim(0, 1.02)
    fig.suptitle(_title(title, data_label), fontsize=10)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)


def plot_confusion_matrix(cm, class_names, path, *, data_label: str = "",
                          title: str = "Confusion matrix (test)") -> Path:
    """Counts ``cm[i, j]`` (true ``i``, predicted ``j``), shaded by row fraction (recall)."""
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(class_names) != k:
        raise ValueError(f"plot_confusion_matrix: expected a square ({len(class_names)}, "
                         f"{len(class_names)}) matrix for classes {list(class_names)}, "
                         f"got shape {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    fig = _figure(1.6 * k + 2.6, 1.4 * k + 2.0)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center",
                    fontsize=9, color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels=list(class_names))
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title(_title(title, data_label), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)


def plot_roc(curves, path, *, data_label: str = "", operating_point=None,
             title: str = "ROC (test)") -> Path:
    """ROC curves, one per entry of ``curves``.

    Args:
        curves: list of ``(name, fpr, tpr, auc)``; ``fpr``/``tpr`` from
            :func:`nnlite.metrics.roc_curve`.
        operating_point: optional ``(name, sensitivity, specificity)`` drawn as
            a marker at ``(1 - specificity, sensitivity)`` (the threshold
            chosen on validation, applied to test).
    """
    fig = _figure(5.6, 5.4)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", label="chance (AUC 0.5)")
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, linewidth=1.6, label=f"{name} (AUC {auc:.3f})")
    if operating_point is not None:
        name, sens, spec = operating_point
        ax.plot([1 - spec], [sens], "k*", markersize=11, label=name)
    if not curves:
        ax.text(0.5, 0.5, "ROC undefined: a class is missing from the test set",
                ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(_title(title, data_label), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, data_label)


def plot_patch_grid(x, y_true, y_pred, probs, class_names, path, *, data_label: str = "",
                    max_patches: int = 36, seed: int = 0,
                    title: str = "Test patches: true / predicted (probability)") -> Path:
    """A grid of patches, each captioned ``true / predicted (p)``, green if right, red if wrong.

    Args:
        x: patches (N, 1, S, S) or (N, S, S).
        y_true, y_pred: (N,) class indices.
        probs: (N, K) class probabilities (``p`` is that of the predicted class).
        max_patches: at most this many patches, drawn as evenly as possible
            from every true class (a seeded choice, so reruns show the same ones).
    """
    x = np.asarray(x)
    if x.ndim == 4:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"plot_patch_grid expects patches (N, 1, S, S) or (N, S, S), "
                         f"got shape {np.asarray(x).shape}")
    y_true, y_pred, probs = np.asarray(y_true), np.asarray(y_pred), np.asarray(probs)
    if not (len(x) == len(y_true) == len(y_pred) == len(probs)):
        raise ValueError(f"plot_patch_grid: {len(x)} patches, {len(y_true)} true labels, "
                         f"{len(y_pred)} predictions, {len(probs)} probability rows")
    chosen = balanced_choice(y_true, max_patches, seed)
    n = max(len(chosen), 1)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = _figure(1.55 * cols + 0.4, 1.65 * rows + 1.0)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, chosen):
        ax.imshow(x[i], cmap="gray")
        t, p = int(y_true[i]), int(y_pred[i])
        ax.set_title(f"{class_names[t]} /\n{class_names[p]} ({probs[i, p]:.2f})", fontsize=7,
                     color="tab:green" if t == p else "tab:red")
    if not len(chosen):
        axes[0].text(0.5, 0.5, "no test patches", ha="center", va="center")
    fig.suptitle(_title(title, data_label), fontsize=9)
    # h_pad: tight_layout leaves too little room for the two-line captions of the next row
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1), h_pad=3)
    return _save(fig, path, data_label)


def balanced_choice(y, k: int, seed: int) -> np.ndarray:
    """Up to ``k`` indices, round-robin over the classes of ``y``, each class shuffled."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)]
    chosen = []
    while len(chosen) < k and any(pools):
        for pool in pools:
            if pool and len(chosen) < k:
                chosen.append(pool.pop())
    return np.array(sorted(chosen, key=lambda i: (y[i], i)), dtype=np.int64)


def plot_gradcam(x, heatmaps, captions, path, *, data_label: str = "",
                 title: str = "Grad-CAM: where the evidence for the explained class lies",
                 padding_margin: int = 0) -> Path:
    """Each patch in grey with its Grad-CAM map overlaid (jet colours, 45% opaque), a colour bar.

    Args:
        x: patches (N, 1, S, S) or (N, S, S).
        heatmaps: (N, S, S) maps in [0, 1] from :func:`mammo_demo.gradcam.grad_cam`.
        captions: N strings, e.g. ``"malignant / malignant (0.91)"``.
        padding_margin: width in pixels of the border ring whose map values
            are computed from zero padding (:func:`mammo_demo.gradcam.padding_margin`);
            when positive a dashed square marks the inside and the figure says
            that bands outside it are an artefact of the padding.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    x = np.asarray(x)
    if x.ndim == 4:
        x = x[:, 0]
    heatmaps = np.asarray(heatmaps)
    if x.ndim != 3 or heatmaps.shape != x.shape or len(captions) != len(x):
        raise ValueError(f"plot_gradcam: patches {x.shape}, heat maps {heatmaps.shape} and "
                         f"{len(captions)} captions must match (N, S, S)")
    n = max(len(x), 1)
    cols = min(n, 6)
    rows = int(np.ceil(n / cols))
    fig = _figure(1.7 * cols + 1.4, 2.1 * rows + 1.3)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, patch, heat, caption in zip(axes, x, heatmaps, captions):
        ax.imshow(patch, cmap="gray")
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        side = patch.shape[-1]
        if 0 < padding_margin < side / 2:
            ax.add_patch(Rectangle((padding_margin - 0.5, padding_margin - 0.5),
                                   side - 2 * padding_margin, side - 2 * padding_margin,
                                   fill=False, linestyle="--", linewidth=0.8, edgecolor="white"))
        ax.set_title(caption, fontsize=7)
    heading = _title(title, data_label)
    if padding_margin > 0:
        heading += (f"\noutside the dashed squares ({padding_margin} px) the maps see the zero "
                    f"padding of the 'same' convolutions: bands there are an artefact")
    fig.suptitle(heading, fontsize=8)
    fig.subplots_adjust(bottom=_FOOTER_SPACE / fig.get_figheight() + 0.02, top=0.78)
    # after the layout: the colour bar takes its room from the patch axes, beside them
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), ax=list(axes),
                       fraction=0.025, pad=0.02)
    bar.set_label("Grad-CAM (1 = the strongest evidence in that patch)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return _save(fig, path, data_label)
