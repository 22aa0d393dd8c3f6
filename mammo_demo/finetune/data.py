"""The target set of ``mammo-demo finetune``: benign vs malignant mass ROIs from a CBIS-DDSM folder.

Pipeline (each step in one function):

1. :func:`load_mass_rois` reads every **mass** abnormality of a CBIS-DDSM
   folder (real, or the phantom written by :mod:`mammo_demo.whole.phantom`)
   with the shared reader :mod:`mammo_demo.cbis` (which tells the cropped
   ROI from the ROI mask by content) and :func:`mammo_demo.dicom.read_dicom`
   (pixels in [0, 1], tissue bright); each cropped ROI is resized (area
   averaging, aspect not kept) to ``size x size`` and standardised per ROI
   (zero mean, unit standard deviation), as ``mammo-demo train`` does with
   its MIAS patches, so that a MIAS source model sees inputs on its own scale.
   Label 1 = ``MALIGNANT``, 0 = ``BENIGN`` or ``BENIGN_WITHOUT_CALLBACK``.
2. :func:`split_by_patient` splits **by patient**, before any augmentation:
   the CSVs' own test set (``*_test_set.csv``, disjoint patients) is the test
   split, and the training CSVs' patients are split 80/20 into train and
   validation, stratified by label. A patient's CC and MLO views of one lesion
   are never on two sides.
3. :func:`augment` enlarges the **training split only** with random copies,
   the kinds of transformation of the transfer-learning paper's Table 5:
   rotation (uniform in +-``rotation`` degrees), horizontal and vertical
   flips, zoom (uniform in ``1 +- zoom``) and brightness (an offset uniform in
   +-``brightness``, in units of the ROI's standard deviation: after the
   per-ROI standardisation a multiplicative brightness change would be undone).

Without ``--data`` the phantom CBIS-DDSM folder is generated once into the
cache (:func:`ensure_phantom_cbis`) and its ROIs are cached as ``.npz`` beside it.
**Phantom ROIs are synthetic: results on them say nothing about real patients.**
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import split as splitting

CLASSES = ("benign", "malignant")
DEFAULT_SIZE = 48
#: the phantom target generated without --data: patients and film scale (1.0 = 4000x2500)
PHANTOM_PATIENTS = 128
PHANTOM_SCALE = 0.12
VAL_FRACTION = 0.2
_EPS = np.float32(1e-3)


@dataclass
class RoiSet:
    """Mass ROIs: ``x`` (N, 1, S, S) float32, ``y`` (N,) int64 (1 = malignant), and per ROI
    the patient, the film and the CSV's split (``"train"``/``"test"``)."""

    x: np.ndarray
    y: np.ndarray
    patient_ids: np.ndarray
    image_ids: np.ndarray
    csv_split: np.ndarray
    is_phantom: bool
    info: dict = field(default_factory=dict)
    classes: tuple = CLASSES

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> "RoiSet":
        idx = np.asarray(idx, dtype=np.int64)
        return RoiSet(self.x[idx], self.y[idx], self.patient_ids[idx], self.image_ids[idx],
                      self.csv_split[idx], self.is_phantom, dict(self.info), self.classes)

    def counts(self) -> dict:
        return {name: int(np.sum(self.y == k)) for k, name in enumerate(self.classes)}

    def n_patients(self) -> int:
        return int(len(np.unique(self.patient_ids)))


def data_label(is_phantom: bool) -> str:
    """The label every output carries: says PHANTOM for synthetic data."""
    if is_phantom:
        return "PHANTOM data (synthetic CBIS-DDSM mass ROIs, not patients)"
    return "CBIS-DDSM mass ROIs (real patient data)"


# ------------------------------------------------------------------ reading
def standardise(roi: np.ndarray) -> np.ndarray:
    """``(roi - mean) / (std + 1e-3)`` in float32."""
    roi = roi.astype(np.float32, copy=False)
    return ((roi - roi.mean(dtype=np.float32)) / (roi.std(dtype=np.float32) + _EPS)).astype(
        np.float32, copy=False)


def load_mass_rois(root, size: int = DEFAULT_SIZE, progress: bool = False) -> RoiSet:
    """Every mass ROI of the CBIS-DDSM folder ``root``, resized and standardised (see module doc)."""
    from ..cbis import load_cbis
    from ..dicom import read_dicom
    from ..whole.preprocess import resize_area

    size = int(size)
    if size < 4:
        raise ValueError(f"ROI size must be at least 4 pixels, got {size}")
    dataset = load_cbis(root, include_unlisted=False)
    rows = [(image, a) for image in dataset.images for a in image.abnormalities
            if a.type == "mass"]
    if not rows:
        raise ValueError(f"{root}: no mass abnormalities in its CBIS-DDSM CSVs (the target set "
                         f"is benign vs malignant mass ROIs)")
    x = np.empty((len(rows), 1, size, size), np.float32)
    y, patients, images, splits, missing = [], [], [], [], 0
    t0 = time.perf_counter()
    keep = []
    for i, (image, abnormality) in enumerate(rows):
        crop, _mask = dataset.resolve_roi(abnormality)
        if crop is None:
            missing += 1
            continue
        pixels = read_dicom(crop).pixels
        x[len(keep), 0] = standardise(resize_area(pixels, size, size))
        keep.append(i)
        y.append(int(abnormality.malignant))
        patients.append(image.patient_id)
        images.append(image.image_id)
        splits.append(image.split)
        if progress and (i + 1) % 50 == 0:
            print(f"  read {i + 1}/{len(rows)} mass ROIs", flush=True)
    if not keep:
        raise ValueError(f"{root}: none of its {len(rows)} mass rows has a cropped-ROI DICOM file "
                         f"in the tree")
    info = {"folder": str(Path(root)), "size": size, "rows": len(rows),
            "missing_crop_files": missing, "read_seconds": round(time.perf_counter() - t0, 1)}
    return RoiSet(x[:len(keep)], np.asarray(y, np.int64), np.asarray(patients),
                  np.asarray(images), np.asarray(splits), bool(dataset.is_phantom), info)


# ------------------------------------------------------------------ the phantom default
def phantom_cache_path(seed: int = 0, patients: int = PHANTOM_PATIENTS,
                       scale: float = PHANTOM_SCALE, cache_dir=None) -> Path:
    """``<cache>/cbis-phantom-seed<S>-p<P>-s<scale>`` (cache as for ``mammo-demo train``)."""
    from ..phantom import default_cache_dir
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"cbis-phantom-seed{int(seed)}-p{int(patients)}-s{float(scale):g}"


def ensure_phantom_cbis(seed: int = 0, patients: int = PHANTOM_PATIENTS,
                        scale: float = PHANTOM_SCALE, cache_dir=None, progress: bool = True) -> Path:
    """The phantom CBIS-DDSM folder in the cache, generated on first use.

    Written by :func:`mammo_demo.whole.phantom.generate` into a temporary
    sibling and renamed into place when complete, so that an interrupted run
    never leaves half a folder behind.
    """
    from ..whole.phantom import PHANTOM_MARKER, generate
    target = phantom_cache_path(seed, patients, scale, cache_dir)
    if (target / PHANTOM_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"generating the PHANTOM CBIS-DDSM set ({patients} patients, scale {scale:g}) "
              f"once into {target}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        generate(tmp, seed=seed, patients=patients, scale=scale, progress=progress,
                 overwrite=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / PHANTOM_MARKER).is_file():   # another run finished first: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_target(data_dir=None, size: int = DEFAULT_SIZE, phantom_seed: int = 0,
                phantom_patients: int = PHANTOM_PATIENTS, phantom_scale: float = PHANTOM_SCALE,
                cache_dir=None, progress: bool = True) -> RoiSet:
    """The mass ROIs of ``data_dir``, or of the cached phantom set when it is ``None``.

    For the phantom the ROI arrays are cached too (``rois-<size>.npz`` in its folder).
    """
    if data_dir is not None:
        return load_mass_rois(data_dir, size, progress)
    folder = ensure_phantom_cbis(phantom_seed, phantom_patients, phantom_scale, cache_dir,
                                 progress)
    cached = folder / f"rois-{int(size)}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return RoiSet(z["x"], z["y"], z["patient_ids"], z["image_ids"], z["csv_split"], True,
                          {"folder": str(folder), "size": int(size), "cached": str(cached)})
    rois = load_mass_rois(folder, size, progress)
    tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}.npz")
    np.savez(tmp, x=rois.x, y=rois.y, patient_ids=rois.patient_ids, image_ids=rois.image_ids,
             csv_split=rois.csv_split)
    os.replace(tmp, cached)
    return rois


# ------------------------------------------------------------------ split by patient
def split_by_patient(rois: RoiSet, seed: int = 0, val_fraction: float = VAL_FRACTION) -> dict:
    """``{"train", "val", "test"}`` index arrays, split by patient (see the module docstring).

    The CSVs' test patients form the test split; when they lack a class (a
    tiny folder) every patient is split 70/15/15 instead, and ``"how"`` says so.
    """
    test_mask = rois.csv_split == "test"
    train_pool = np.flatnonzero(~test_mask)
    test = np.flatnonzero(test_mask)
    if len(np.unique(rois.y[test])) == 2 and len(np.unique(rois.y[train_pool])) == 2:
        inner = splitting.split_by_image(rois.patient_ids[train_pool], rois.y[train_pool],
                                         (1.0 - val_fraction, val_fraction, 0.0), seed=seed)
        out = {"train": train_pool[inner["train"]], "val": train_pool[inner["val"]],
               "test": test, "how": "test = the CSVs' test set; train/val by patient "
                                    f"{1 - val_fraction:.0%}/{val_fraction:.0%}"}
    else:
        parts = splitting.split_by_image(rois.patient_ids, rois.y, (0.7, 0.15, 0.15), seed=seed)
        out = dict(parts, how="by patient 70/15/15 (the CSVs' test set lacks a class)")
    sides = [set(rois.patient_ids[out[s]]) for s in ("train", "val", "test")]
    if sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]:
        raise ValueError("split_by_patient: a patient is on two sides of the split")  # pragma: no cover
    return out


# ------------------------------------------------------------------ augmentation
def augment(x: np.ndarray, y: np.ndarray, copies: int = 4, seed: int = 0, rotation: float = 30.0,
            zoom: float = 0.15, brightness: float = 0.2, flips: bool = True):
    """The originals plus ``copies`` random transformations of each (training split only).

    Each copy: rotation by an angle uniform in ``[-rotation, rotation]`` degrees
    and zoom by a factor uniform in ``[1 - zoom, 1 + zoom]`` about the centre
    (one bilinear resampling; outside the ROI the mean, 0, fills in), a
    horizontal and a vertical flip each with probability 1/2, and a brightness
    offset uniform in ``[-brightness, brightness]``.

    Args:
        x: (N, 1, S, S) standardised ROIs; y: (N,) labels.
    Returns ``(x_aug, y_aug)`` with ``N * (copies + 1)`` samples, float32 and y's dtype.
    """
    from PIL import Image

    if copies < 0:
        raise ValueError(f"augment: copies must be >= 0, got {copies}")
    rng = np.random.default_rng([seed, 5])
    n, c, h, w = x.shape
    out = [x.astype(np.float32, copy=False)]
    for _ in range(copies):
        batch = np.empty_like(out[0])
        angles = rng.uniform(-rotation, rotation, n)
        zooms = rng.uniform(1.0 - zoom, 1.0 + zoom, n)
        flip_h, flip_v = rng.random(n) < 0.5, rng.random(n) < 0.5
        offsets = rng.uniform(-brightness, brightness, n).astype(np.float32)
        for i in range(n):
            a = np.deg2rad(angles[i])
            # output pixel (u, v) about the centre samples input (R(-a) (u, v)) / zoom
            cos, sin = np.cos(a) / zooms[i], np.sin(a) / zooms[i]
            cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
            coeffs = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
            for ch in range(c):
                img = Image.fromarray(np.ascontiguousarray(x[i, ch], np.float32), mode="F")
                batch[i, ch] = np.asarray(img.transform((w, h), Image.AFFINE, coeffs,
                                                        resample=Image.BILINEAR, fillcolor=0.0))
            if flips and flip_h[i]:
                batch[i] = batch[i, :, :, ::-1]
            if flips and flip_v[i]:
                batch[i] = batch[i, :, ::-1, :]
            batch[i] += offsets[i]
        out.append(batch)
    return np.concatenate(out).astype(np.float32, copy=False), np.concatenate([y] * (copies + 1))
