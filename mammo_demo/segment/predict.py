"""``mammo-demo segment predict``: the lesion mask of one region of a mammogram.

The region is given like an ``Info.txt`` row (centre ``X``, ``Y`` from the
**bottom-left** corner, ``RADIUS``); it is cut with the crop geometry the
model was trained with (its metadata: patch size and context), the network
predicts the mask (``logit > 0``), and the result is written as an overlay
PNG of the crop with the predicted outline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import nnlite as nn

from ..mias import read_pgm
from ..patches import _crop, _normalize, crop_side
from ..preprocess import resize
from ..report import NOT_A_MEDICAL_DEVICE
from .evaluate import _contour


def predict_region(model_path, image_path, x: int, y: int, radius: int, out_png=None) -> dict:
    """Predict the lesion mask of the region ``(x, y, radius)`` of a PGM image.

    Returns ``{"lesion_fraction", "lesion_pixels_in_image", "crop": (row, col, side),
    "label", "overlay"}``; ``lesion_pixels_in_image`` is the predicted area
    in the film's own pixels (the patch fraction times the crop's area).
    """
    model_path, image_path = Path(model_path), Path(image_path)
    meta = nn.read_metadata(model_path)
    if "patch_size" not in meta or "context" not in meta:
        raise ValueError(f"{model_path} is not a segmentation model saved by 'mammo-demo segment train'")
    image = read_pgm(image_path)
    h, w = image.shape
    if not (0 <= int(x) < w and 0 < int(y) <= h):
        raise ValueError(f"centre ({x}, {y}) lies outside the {w}x{h} image (Y counts from the bottom)")
    if not int(radius) > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    patch_size, context = int(meta["patch_size"]), float(meta["context"])
    row, col = min(h - 1, h - int(y)), int(x)
    side = crop_side(radius, h, patch_size, context)
    crop = _crop(image.astype(np.float32), row, col, side)
    patch = _normalize(resize(crop, patch_size, "bilinear"), "patch")
    model = nn.load(model_path)
    logits = nn.predict(model, patch[None, None])
    mask = logits[0, 0] > 0
    fraction = float(mask.mean())
    result = {"lesion_fraction": fraction, "lesion_pixels_in_image": int(round(fraction * side * side)),
              "crop": (row, col, side), "label": meta.get("label", "unknown data"), "overlay": None}
    if out_png is not None:
        result["overlay"] = str(_overlay(crop, mask, out_png, result["label"], image_path))
    return result


def _overlay(crop, mask, path, label: str, image_path) -> Path:
    from ..plots import _FOOTER_SPACE, _figure, _save, _title
    big = resize(mask.astype(np.float32), crop.shape, "bilinear") >= 0.5
    rgb = np.repeat(((crop - crop.min()) / (np.ptp(crop) + 1e-6))[..., None], 3, axis=2)
    edge = _contour(big)
    edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)          # visible on a large crop
    rgb[edge] = (1.0, 0.15, 0.15)
    fig = _figure(5.0, 5.6)
    ax = fig.subplots()
    ax.imshow(rgb, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(_title(f"Predicted lesion outline (red): {Path(image_path).name}",
                        f"model trained on {label}"), fontsize=9)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, f"model trained on {label}")


def describe(result: dict) -> str:
    row, col, side = result["crop"]
    return "\n".join([
        f"region: crop of {side}x{side} pixels centred at row {row}, column {col}",
        f"predicted lesion: {result['lesion_fraction']:.1%} of the crop, about "
        f"{result['lesion_pixels_in_image']} pixels of the film",
        f"model trained on: {result['label']}",
        *([f"overlay: {result['overlay']}"] if result["overlay"] else []),
        NOT_A_MEDICAL_DEVICE])
