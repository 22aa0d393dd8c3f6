"""The preprocessing stages side by side (the thesis' Figure 5.2).

:func:`preview` draws, for one film: the original (work copy), the threshold
mask with the detected film borders, the connected components with the
largest one's box, the crop (breast on the left) and the final network input.
Phantom films say ``PHANTOM`` in the title.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .preprocess import preprocess


def stage_figure(record, x, title: str | None = None):
    """A matplotlib figure of a crop-method record's stages (five panels)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    stages = record.stages
    if record.method != "crop" or "threshold" not in stages:
        raise ValueError("preview needs a crop-method record with its stages (keep_stages=True)")
    fig, axes = plt.subplots(1, 5, figsize=(15, 4.6))
    axes[0].imshow(stages["original"], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("original")
    threshold = np.where(stages["threshold"], 1.0, 0.0)
    shown = np.dstack([threshold] * 3)
    shown[stages["borders"]] = (1.0, 0.2, 0.2)
    axes[1].imshow(shown)
    axes[1].set_title(f"threshold {record.threshold:.3f}\n(Otsu {record.otsu_threshold:.3f}; "
                      "borders red)", fontsize=9)
    labels = stages["components"]
    palette = np.random.default_rng(0).uniform(0.25, 1.0, (int(labels.max()) + 1, 3))
    palette[0] = 0.0
    axes[2].imshow(palette[labels])
    top, bottom, left, right = stages["work_box"]
    axes[2].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                fill=False, edgecolor="yellow", linewidth=1.5))
    axes[2].set_title(f"{record.n_components} components, largest boxed", fontsize=9)
    axes[3].imshow(stages["crop"], cmap="gray", vmin=0, vmax=1)
    t, b, l, r = record.box
    axes[3].set_title(f"crop rows {t}:{b}, cols {l}:{r}\nside {record.side} "
                      f"({record.side_source}){', flipped' if record.flipped else ''}", fontsize=9)
    axes[4].imshow(x[0], cmap="gray", vmin=0, vmax=1)
    axes[4].set_title(f"input {record.size}x{record.size}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    name = title or (Path(record.path).name if record.path is not None else "film")
    if record.is_phantom:
        name = "PHANTOM (synthetic film) - " + name
    fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    return fig


def preview(path, out, side: str | None = None, size: int = 224):
    """Preprocess ``path`` with the crop method and write the stage figure to ``out`` (PNG).

    Returns ``(out, record)`` with the :class:`~mammo_demo.whole.preprocess.PreprocessRecord`.
    """
    import matplotlib.pyplot as plt
    x, record = preprocess(path, method="crop", side=side, size=size)
    label = Path(path).parent.parent.parent.name if Path(path).suffix == ".dcm" else Path(path).name
    fig = stage_figure(record, x, title=f"{label} / {Path(path).name}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out, record
