"""Region-of-interest patches from a mini-MIAS folder, augmentation and class balance.

The MIAS ROI paper classifies 48x48 patches centred on the abnormalities:

* **abnormal rows** with coordinates: a square crop centred on ``(row, col)``
  of side ``max(min_side, round(context * radius))`` (``context=2``: the crop
  just holds the circle of the ``RADIUS`` column), padded by reflection where
  it leaves the image, resized (bilinear, antialiased) to ``patch_size``.
  Rows without coordinates (calcifications spread over the film) cannot be
  cropped: they are skipped and counted in ``PatchSet.info``.
* **normal films** (task ``all``): ``normals_per_image`` crops at random
  centres inside the breast (:func:`mammo_demo.preprocess.breast_mask`,
  computed on a 256x256 copy for speed). Their side is drawn from the sides of
  the task's abnormal crops, so the zoom level cannot tell normal patches
  from abnormal ones. A candidate whose crop is less than ``min_breast``
  (default 0.75) breast is "mostly background" and is rejected and redrawn
  (the rejections are counted).

``min_side`` defaults to ``patch_size * H / 1024`` (48 pixels on a 1024 film),
so that tiny calcification clusters are not blown up beyond the film's own
resolution.

Intensity normalisation (``normalize``):

* ``"patch"`` (default): pixels ``/ 255`` then, per patch, subtract the mean
  and divide by the standard deviation (``+ 1e-3``): ``x = (p - mean) /
  (std + eps)``. No statistics cross the train/test split, and the exposure
  and tissue-density differences between films are removed.
* ``"unit"``: pixels ``/ 255`` only, in ``[0, 1]``; standardise later with
  statistics of the *training* split if you want zero mean.

Tasks (:data:`TASKS`): ``all`` (normal / benign / malignant, every abnormal
class), ``calc`` (benign / malignant ``CALC`` rows), ``mass`` (benign /
malignant ``CIRC``, ``SPIC`` and ``MISC`` rows). Labels are indices into the
task's class tuple.

Augmentation (:func:`augment_eight`) and balancing (:func:`balance_undersample`,
:func:`class_weights`) belong **after** the split by image
(:mod:`mammo_demo.split`): eight transformed copies of one lesion on both sides
of a split would inflate every metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .mias import MASS_CLASSES, MiasDataset, load_mias
from .preprocess import breast_mask, resize

#: classes per task, in label order (label = index in the tuple).
TASKS = {"all": ("normal", "benign", "malignant"),
         "calc": ("benign", "malignant"),
         "mass": ("benign", "malignant")}
NORMALIZATIONS = ("patch", "unit")
_EPS = np.float32(1e-3)
_MASK_SIZE = 256


@dataclass
class PatchSet:
    """Patches and their labels.

    Attributes:
        x: ``(N, 1, S, S)`` float32 patches (NCHW, one channel).
        y: ``(N,)`` int64 labels, indices into ``classes``.
        image_ids: ``(N,)`` str array: the ``REFNUM`` of the film each patch
            comes from (the group for splitting by image).
        classes: class names in label order, e.g. ``("normal", "benign", "malignant")``.
        abnormality: ``(N,)`` str array: the MIAS class of the row (``"NORM"``
            for normal crops).
        centers: ``(N, 3)`` int64 array ``(row, col, side)`` of the crop in
            its film (array indices, top-left origin).
        info: provenance: task, parameters, counts, skipped rows, the source
            folder's summary (``info["source"]``, including phantom or real).
    """

    x: np.ndarray
    y: np.ndarray
    image_ids: np.ndarray
    classes: tuple
    abnormality: np.ndarray | None = None
    centers: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.y)
        if self.x.ndim != 4 or self.x.shape[0] != n or self.x.shape[1] != 1:
            raise ValueError(f"PatchSet expects x of shape (N, 1, S, S) with N = len(y) = {n}, "
                             f"got {self.x.shape}")
        if len(self.image_ids) != n:
            raise ValueError(f"PatchSet: {len(self.image_ids)} image ids for {n} patches")
        if n and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise ValueError(f"PatchSet: labels must lie in [0, {len(self.classes)}), "
                             f"got [{self.y.min()}, {self.y.max()}]")
        if self.abnormality is None:
            self.abnormality = np.array([""] * n, dtype=object).astype(str)
        if self.centers is None:
            self.centers = np.full((n, 3), -1, dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self.y))

    def __repr__(self) -> str:
        kind = (self.info.get("source") or {}).get("kind", "?")
        return (f"PatchSet({len(self)} patches {tuple(self.x.shape[2:])}, classes={self.classes}, "
                f"counts={self.counts()}, data={kind})")

    @property
    def source(self) -> dict:
        """The summary of the MIAS folder the patches came from (phantom or real)."""
        return self.info.get("source", {})

    def counts(self) -> dict:
        """Patches per class name."""
        bc = np.bincount(self.y, minlength=len(self.classes))
        return {name: int(k) for name, k in zip(self.classes, bc)}

    def subset(self, idx) -> "PatchSet":
        """The patches at ``idx`` (integer indices or a boolean mask), as a new PatchSet."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"subset: boolean mask of shape {idx.shape}, expected ({len(self)},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        info = dict(self.info)
        info["counts"] = None
        out = PatchSet(self.x[idx], self.y[idx], self.image_ids[idx], self.classes,
                       self.abnormality[idx], self.centers[idx], info)
        out.info["counts"] = out.counts()
        return out


# ------------------------------------------------------------------ one crop
def crop_side(radius: float, image_size: int, patch_size: int = 48, context: float = 2.0,
              min_side: int | None = None) -> int:
    """Side of the square crop for a circle of ``radius``: ``max(min_side, round(context * radius))``."""
    if min_side is None:
        min_side = max(8, int(round(patch_size * image_size / 1024)))
    return int(max(min_side, round(context * float(radius))))


def _normalize(p: np.ndarray, normalize: str) -> np.ndarray:
    p = p.astype(np.float32) * np.float32(1.0 / 255.0)
    if normalize == "patch":
        p = (p - p.mean(dtype=np.float32)) / (p.std(dtype=np.float32) + _EPS)
    return p.astype(np.float32, copy=False)


def _crop(image: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    """``side x side`` crop whose centre pixel is ``(row, col)``; reflection padding outside."""
    h, w = image.shape
    half = side // 2
    r0, c0 = int(row) - half, int(col) - half
    r1, c1 = r0 + side, c0 + side
    pad = (max(0, -r0), max(0, r1 - h)), (max(0, -c0), max(0, c1 - w))
    crop = image[max(0, r0):min(h, r1), max(0, c0):min(w, c1)]
    if crop.size == 0:
        raise ValueError(f"crop centre ({row}, {col}) with side {side} lies outside the {h}x{w} image")
    if any(p for pair in pad for p in pair):
        crop = np.pad(crop, pad, mode="reflect" if min(crop.shape) > 1 else "edge")
    return crop


def extract_roi(image, row, col, radius, patch_size: int = 48, context: float = 2.0,
                normalize: str = "patch", min_side: int | None = None) -> np.ndarray:
    """The normalised ``(patch_size, patch_size)`` float32 patch of one region of interest.

    Args:
        image: ``(H, W)`` film (uint8, or float in grey levels 0..255).
        row, col: centre as array indices (top-left origin; for an ``Info.txt``
            row use ``row = H - y``, ``col = x``); clipped into the image.
        radius: radius in pixels of the circle around the abnormality.
        patch_size, context, normalize, min_side: see the module docstring.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"extract_roi expects a 2-D (H, W) image, got shape {a.shape}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if radius is None or float(radius) <= 0:
        raise ValueError(f"extract_roi: radius must be positive, got {radius!r}")
    h, w = a.shape
    row = int(np.clip(int(row), 0, h - 1))
    col = int(np.clip(int(col), 0, w - 1))
    side = crop_side(radius, h, patch_size, context, min_side)
    crop = _crop(a.astype(np.float32, copy=False), row, col, side)
    return _normalize(resize(crop, patch_size, "bilinear"), normalize)


# ------------------------------------------------------------------ a whole folder
def _task_rows(dataset: MiasDataset, task: str):
    """Abnormal rows in the task, with and without coordinates."""
    def wanted(r):
        if r.is_normal:
            return False
        if task == "calc":
            return r.abnormality == "CALC"
        if task == "mass":
            return r.abnormality in MASS_CLASSES
        return True
    rows = [r for r in dataset.records if wanted(r)]
    return [r for r in rows if r.has_coordinates], [r for r in rows if not r.has_coordinates]


def _normal_centres(image, n, sides, rng, min_breast, max_tries=50):
    """Up to ``n`` (row, col, side) inside the breast; returns them and the rejection count."""
    h, w = image.shape
    small = resize(image, _MASK_SIZE) if image.dtype == np.uint8 else \
        resize(np.clip(image, 0, 255).astype(np.uint8), _MASK_SIZE)
    mask = breast_mask(small)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [], 0
    # integral image of the low-resolution mask: breast fraction of any crop in O(1)
    integ = np.zeros((_MASK_SIZE + 1, _MASK_SIZE + 1), dtype=np.int64)
    integ[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
    sy, sx = h / _MASK_SIZE, w / _MASK_SIZE
    out, rejected = [], 0
    for _ in range(n):
        for _try in range(max_tries):
            k = rng.integers(ys.size)
            row = int(min(h - 1, (ys[k] + rng.random()) * sy))
            col = int(min(w - 1, (xs[k] + rng.random()) * sx))
            side = int(sides[rng.integers(len(sides))])
            half = side / 2
            r0 = int(np.clip(np.floor((row - half) / sy), 0, _MASK_SIZE))
            r1 = int(np.clip(np.ceil((row + half) / sy), 0, _MASK_SIZE))
            c0 = int(np.clip(np.floor((col - half) / sx), 0, _MASK_SIZE))
            c1 = int(np.clip(np.ceil((col + half) / sx), 0, _MASK_SIZE))
            full_area = max(1.0, (side / sy) * (side / sx))
            inside = integ[r1, c1] - integ[r0, c1] - integ[r1, c0] + integ[r0, c0]
            if inside / full_area >= min_breast:
                out.append((row, col, side))
                break
            rejected += 1
    return out, rejected


def extract_patches(dataset, task: str = "all", patch_size: int = 48, normals_per_image: int = 2,
                    context: float = 2.0, seed: int = 0, progress: bool = True,
                    normalize: str = "patch", min_side: int | None = None,
                    min_breast: float = 0.75) -> PatchSet:
    """Patches of a mini-MIAS folder (real or phantom) for one task.

    Args:
        dataset: a :class:`mammo_demo.mias.MiasDataset` or a folder path.
        task: ``"all"``, ``"calc"`` or ``"mass"`` (:data:`TASKS`).
        patch_size: output side ``S`` (48 in the paper).
        normals_per_image: random breast crops per normal film (task ``all`` only).
        context: crop side as a multiple of the row's radius.
        seed: seeds the normal crop positions and sizes (``numpy.random.default_rng``).
        progress: show a progress bar over the films.
        normalize: ``"patch"`` or ``"unit"`` (module docstring).
        min_side: smallest crop side in pixels (default ``patch_size * H / 1024``).
        min_breast: smallest breast fraction of a normal crop.

    Returns:
        A :class:`PatchSet`, patches ordered film by film in ``Info.txt`` order.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if int(patch_size) < 4:
        raise ValueError(f"patch_size must be at least 4, got {patch_size}")
    if int(normals_per_image) < 0:
        raise ValueError(f"normals_per_image must be >= 0, got {normals_per_image}")
    if not 0 < float(min_breast) <= 1:
        raise ValueError(f"min_breast must lie in (0, 1], got {min_breast}")
    if not isinstance(dataset, MiasDataset):
        dataset = load_mias(Path(dataset))
    classes = TASKS[task]
    size = dataset.image_size
    with_xy, without_xy = _task_rows(dataset, task)
    sides = [crop_side(r.radius, size, patch_size, context, min_side) for r in with_xy]
    if not sides:   # no abnormal crops to copy the scale from: a typical lesion (radius 40 at 1024)
        sides = [crop_side(40 * size / 1024, size, patch_size, context, min_side)]
    use_normals = "normal" in classes and normals_per_image > 0
    normal_refs = [ref for ref in dataset.refnums
                   if all(r.is_normal for r in dataset.rows(ref))] if use_normals else []
    by_ref: dict[str, list] = {}
    for r in with_xy:
        by_ref.setdefault(r.refnum, []).append(r)
    normal_set = set(normal_refs)
    todo = [ref for ref in dataset.refnums if ref in by_ref or ref in normal_set]
    rng = np.random.default_rng(seed)
    xs, ys, ids, kinds, centres = [], [], [], [], []
    rejected = 0
    from tqdm.auto import tqdm
    kind = "phantom" if dataset.is_phantom else "real"
    for ref in tqdm(todo, desc=f"patches ({task}, {kind} data)", unit="image", disable=not progress):
        image = dataset.image(ref)
        if ref in normal_set:
            found, rej = _normal_centres(image, int(normals_per_image), sides, rng, float(min_breast))
            rejected += rej
            for row, col, side in found:
                crop = _crop(image.astype(np.float32), row, col, side)
                xs.append(_normalize(resize(crop, patch_size, "bilinear"), normalize))
                ys.append(classes.index("normal"))
                ids.append(ref)
                kinds.append("NORM")
                centres.append((row, col, side))
        for r in by_ref.get(ref, ()):
            row = min(max(r.row, 0), size - 1)
            col = min(max(r.col, 0), size - 1)
            xs.append(extract_roi(image, row, col, r.radius, patch_size, context, normalize, min_side))
            ys.append(classes.index(r.label))
            ids.append(ref)
            kinds.append(r.abnormality)
            centres.append((row, col, crop_side(r.radius, size, patch_size, context, min_side)))
    n = len(ys)
    x = (np.stack(xs)[:, None] if n else np.zeros((0, 1, patch_size, patch_size))).astype(np.float32)
    info = {
        "task": task, "classes": list(classes), "patch_size": int(patch_size),
        "context": float(context), "normalize": normalize, "normals_per_image": int(normals_per_image),
        "min_side": min_side, "min_breast": float(min_breast), "seed": seed,
        "skipped_without_coordinates": len(without_xy),
        "skipped_rows": [f"{r.refnum} {r.abnormality} {r.severity} (line {r.line})" for r in without_xy],
        "rejected_normal_positions": int(rejected),
        "images": len(set(ids)),
        "kind": kind,
        "source": dataset.summary(),
    }
    out = PatchSet(x, np.asarray(ys, dtype=np.int64), np.asarray(ids, dtype=str), classes,
                   np.asarray(kinds, dtype=str), np.asarray(centres, dtype=np.int64).reshape(-1, 3), info)
    out.info["counts"] = out.counts()
    return out


# ------------------------------------------------------------------ augmentation and balance
def eight_transforms(x: np.ndarray) -> list:
    """The dihedral group on the last two axes: rotations by 0/90/180/270 degrees, each also mirrored.

    Returns 8 arrays, in the order ``rot0, rot0+mirror, rot90, rot90+mirror, ...``
    (mirror = left-right flip applied after the rotation).
    """
    out = []
    for k in range(4):
        r = np.rot90(x, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(r))
        out.append(np.ascontiguousarray(r[..., ::-1]))
    return out


def augment_eight(patchset: PatchSet) -> PatchSet:
    """Eight copies of every patch (:func:`eight_transforms`): the paper's augmentation.

    The result holds the 8 transforms of the whole set one after the other
    (``N`` originals, then their ``rot0+mirror`` copies, ...); labels, image
    ids, classes and centres are repeated accordingly, and ``info["augmented"]``
    records the factor. Apply it to the training split only, after splitting.
    """
    x = np.concatenate(eight_transforms(patchset.x), axis=0)      # (8N, 1, S, S)
    info = dict(patchset.info)
    info["augmented"] = int(info.get("augmented", 1)) * 8
    out = PatchSet(x, np.tile(patchset.y, 8), np.tile(patchset.image_ids, 8), patchset.classes,
                   np.tile(patchset.abnormality, 8), np.tile(patchset.centers, (8, 1)), info)
    out.info["counts"] = out.counts()
    out.info["transform"] = "rot90^k then optional mirror, k = 0..3 (8 per patch)"
    return out


def balance_undersample(patchset: PatchSet, seed: int = 0) -> PatchSet:
    """Keep a random ``min_c n_c`` patches of every class present (the paper's class balancing).

    Classes with no patch are ignored. The kept patches stay in their original order.
    """
    rng = np.random.default_rng(seed)
    counts = np.bincount(patchset.y, minlength=len(patchset.classes))
    present = np.flatnonzero(counts)
    if present.size == 0:
        return patchset.subset(np.zeros(0, dtype=np.int64))
    n_min = int(counts[present].min())
    keep = [rng.choice(np.flatnonzero(patchset.y == c), size=n_min, replace=False) for c in present]
    out = patchset.subset(np.sort(np.concatenate(keep)))
    out.info["balanced"] = f"undersampled to {n_min} per class (seed {seed})"
    return out


def class_weights(y, num_classes: int) -> np.ndarray:
    """Inverse-frequency class weights ``w_c = N / (C * n_c)`` (float32, shape ``(C,)``).

    A balanced set gets all ones; when every class is present the mean of
    ``w_{y_i}`` over the samples is 1. A class with no sample gets weight 0.
    """
    y = np.asarray(y).astype(np.int64).ravel()
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"class_weights: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.zeros(num_classes, dtype=np.float64)
    nz = counts > 0
    w[nz] = y.size / (num_classes * counts[nz])
    return w.astype(np.float32)
