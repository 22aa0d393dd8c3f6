"""Image and mask patches for lesion segmentation, split by image, augmented together.

:func:`build_mask_set` cuts, from a mini-MIAS folder (real or phantom):

* one **lesion-centred patch** per ``Info.txt`` row with coordinates: the
  square crop of side ``max(min_side, round(context * RADIUS))`` around the
  row's centre (``context = 3``: the lesion's disc fills the middle third
  and its surroundings are in view), resized to ``patch_size`` (64) with the
  geometry of :mod:`mammo_demo.patches`, and the same crop of the image's
  lesion mask (:mod:`mammo_demo.segment.masks`: exact extents for phantom
  data, the rows' discs for real mini-MIAS). The mask holds every lesion of
  the image that falls in the crop, not only the row's own;
* **normal patches** (empty masks) from normal films, about
  ``normal_fraction`` times as many as lesion patches, at random breast
  positions with the lesion patches' crop sides, so that the network also
  learns to say "no lesion here".

Patches are standardised per patch (``(p/255 - mean) / (std + 1e-3)``).
Masks are (N, 1, S, S) uint8 0/1.

:func:`split_mask_set` splits **by image** (a film's patches all go to one
side) before any augmentation; :func:`dihedral` and :func:`random_dihedral`
apply one of the 8 rotations/mirrors to an image and its mask together
(training only).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import split as splitting
from ..mias import MiasDataset
from ..patches import _crop, _normal_centres, _normalize, crop_side
from ..preprocess import resize
from . import masks as masklib

DEFAULT_PATCH_SIZE = 64
DEFAULT_CONTEXT = 3.0
DEFAULT_NORMAL_FRACTION = 0.3
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
MASK_SOURCES = ("auto", "exact", "disc")
LESION_SETS = {"all": ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM"),
               "mass": ("CIRC", "SPIC", "MISC"),
               "calc": ("CALC",)}


@dataclass
class MaskSet:
    """Image patches and their lesion masks.

    Attributes:
        x: (N, 1, S, S) float32 standardised patches.
        masks: (N, 1, S, S) uint8, 1 = lesion pixel.
        image_ids: (N,) str: the film of each patch (the group for splitting).
        kinds: (N,) str: the row's class (``CIRC``, ...) or ``NORM``.
        centres: (N, 3) int64 ``(row, col, side)`` of the crop in its film.
        info: provenance (source folder summary, parameters, counts).
    """

    x: np.ndarray
    masks: np.ndarray
    image_ids: np.ndarray
    kinds: np.ndarray
    centres: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.image_ids)
        if self.x.ndim != 4 or self.x.shape[0] != n or self.x.shape[1] != 1:
            raise ValueError(f"MaskSet expects x of shape (N, 1, S, S) with N = {n}, got {self.x.shape}")
        if self.masks.shape != self.x.shape:
            raise ValueError(f"MaskSet: masks {self.masks.shape} must match patches {self.x.shape}")

    def __len__(self) -> int:
        return int(len(self.image_ids))

    def subset(self, idx) -> "MaskSet":
        idx = np.asarray(idx, dtype=np.int64)
        return MaskSet(self.x[idx], self.masks[idx], self.image_ids[idx], self.kinds[idx],
                       self.centres[idx], dict(self.info))

    @property
    def has_lesion(self) -> np.ndarray:
        """(N,) bool: the patch's mask is not empty."""
        return self.masks.reshape(len(self), -1).any(axis=1)

    def counts(self) -> dict:
        """Patches, images, lesion patches, normal patches and the lesion pixel fraction."""
        return {"patches": len(self), "images": int(len(set(self.image_ids.tolist()))),
                "lesion_patches": int(np.sum(self.kinds != "NORM")),
                "normal_patches": int(np.sum(self.kinds == "NORM")),
                "lesion_pixel_fraction": float(self.masks.mean()) if len(self) else 0.0}


def image_masks(dataset: MiasDataset, refnums, source: str = "auto", progress: bool = False):
    """``({refnum: (S, S) bool}, what)``: the lesion mask of each listed image, and how it was made.

    ``source``: ``"exact"`` (phantom sets only), ``"disc"`` (the rows' discs)
    or ``"auto"`` (exact for phantom data, discs for real data).
    """
    if source not in MASK_SOURCES:
        raise ValueError(f"mask source must be one of {MASK_SOURCES}, got {source!r}")
    if source == "exact" or (source == "auto" and dataset.is_phantom):
        return (masklib.phantom_image_masks(dataset, refnums, progress=progress),
                "exact: the phantom generator's own lesion extents")
    size = dataset.image_size
    return ({ref: masklib.mias_image_mask(dataset.rows(ref), size) for ref in refnums},
            "disc: the Info.txt rows' centre and RADIUS (bottom-left origin)")


def build_mask_set(dataset: MiasDataset, patch_size: int = DEFAULT_PATCH_SIZE,
                   context: float = DEFAULT_CONTEXT, normal_fraction: float = DEFAULT_NORMAL_FRACTION,
                   lesions: str = "all", mask_source: str = "auto", seed: int = 0,
                   min_side: int | None = None, progress: bool = True) -> MaskSet:
    """Lesion-centred and normal patches with their masks (module docstring)."""
    if lesions not in LESION_SETS:
        raise ValueError(f"lesions must be one of {sorted(LESION_SETS)}, got {lesions!r}")
    if int(patch_size) < 8:
        raise ValueError(f"patch_size must be at least 8, got {patch_size}")
    if not float(context) > 0 or float(normal_fraction) < 0:
        raise ValueError(f"context must be > 0 and normal_fraction >= 0, got {context}, {normal_fraction}")
    size = dataset.image_size
    wanted = LESION_SETS[lesions]
    rows = [r for r in dataset.records if r.abnormality in wanted and r.has_coordinates and r.radius]
    skipped = [r for r in dataset.records if r.abnormality in wanted and not r.has_coordinates]
    by_ref: dict = {}
    for r in rows:
        by_ref.setdefault(r.refnum, []).append(r)
    if not rows:
        raise ValueError(f"{dataset.folder} has no {lesions} rows with coordinates: nothing to segment")
    masks_of, how = image_masks(dataset, list(by_ref), mask_source, progress)
    from tqdm.auto import tqdm
    xs, ms, ids, kinds, centres = [], [], [], [], []
    kind = "PHANTOM" if dataset.is_phantom else "real"

    def add(image, mask, row, col, side, ref, what):
        crop = _crop(image.astype(np.float32), row, col, side)
        xs.append(_normalize(resize(crop, patch_size, "bilinear"), "patch"))
        ms.append(np.zeros((patch_size, patch_size), bool) if mask is None
                  else masklib.crop_mask(mask, row, col, side, patch_size))
        ids.append(ref)
        kinds.append(what)
        centres.append((row, col, side))

    sides = []
    for ref in tqdm(list(by_ref), desc=f"lesion patches ({kind} data)", unit="image", disable=not progress):
        image = dataset.image(ref)
        for r in by_ref[ref]:
            row, col = min(max(r.row, 0), size - 1), min(max(r.col, 0), size - 1)
            side = crop_side(r.radius, size, patch_size, context, min_side)
            sides.append(side)
            add(image, masks_of[ref], row, col, side, ref, r.abnormality)
    n_lesion = len(xs)
    normal_refs = [ref for ref in dataset.refnums if all(r.is_normal for r in dataset.rows(ref))]
    rng = np.random.default_rng(seed)
    n_normal = min(len(normal_refs), int(round(float(normal_fraction) * n_lesion)))
    chosen = sorted(rng.choice(len(normal_refs), size=n_normal, replace=False).tolist()) if n_normal else []
    for i in tqdm(chosen, desc=f"normal patches ({kind} data)", unit="image", disable=not progress):
        ref = normal_refs[i]
        image = dataset.image(ref)
        found, _ = _normal_centres(image, 1, sides, rng, 0.75)
        for row, col, side in found:
            add(image, None, row, col, side, ref, "NORM")
    x = np.stack(xs)[:, None].astype(np.float32)
    m = np.stack(ms)[:, None].astype(np.uint8)
    out = MaskSet(x, m, np.asarray(ids, dtype=str), np.asarray(kinds, dtype=str),
                  np.asarray(centres, dtype=np.int64).reshape(-1, 3))
    out.info = {"kind": "phantom" if dataset.is_phantom else "real", "masks": how,
                "patch_size": int(patch_size), "context": float(context), "lesions": lesions,
                "normal_fraction": float(normal_fraction), "seed": int(seed), "min_side": min_side,
                "normalize": "per patch: (p/255 - mean) / (std + 1e-3)",
                "skipped_without_coordinates": len(skipped), "counts": out.counts(),
                "source": dataset.summary()}
    return out


def split_mask_set(maskset: MaskSet, seed: int = 0, fractions=SPLIT_FRACTIONS) -> dict:
    """``{"train", "val", "test": index array}`` by image, stratified by "has a lesion"."""
    labels = (maskset.kinds != "NORM").astype(np.int64)
    parts = splitting.split_by_image(maskset.image_ids, labels, fractions, seed,
                                     require_all_classes=False)
    for a in splitting.SPLITS:
        for b in splitting.SPLITS:
            if a < b and set(maskset.image_ids[parts[a]]) & set(maskset.image_ids[parts[b]]):
                raise AssertionError(f"an image is in both {a} and {b}")  # pragma: no cover
    return parts


# ------------------------------------------------------------------ augmentation
def dihedral(a: np.ndarray, k: int, mirror: bool) -> np.ndarray:
    """Rotate the last two axes by ``k`` quarter turns, then mirror left-right if ``mirror``.

    The 8 combinations are the transforms of :func:`mammo_demo.patches.eight_transforms`
    (``index = 2 k + mirror``).
    """
    r = np.rot90(a, int(k), axes=(-2, -1))
    return np.ascontiguousarray(r[..., ::-1] if mirror else r)


def augment_pair(x: np.ndarray, masks: np.ndarray, transforms) -> tuple:
    """Apply transform ``transforms[i]`` (``0..7``) to patch ``i`` **and** its mask."""
    transforms = np.asarray(transforms, dtype=np.int64)
    if x.shape[0] != masks.shape[0] or transforms.shape != (x.shape[0],):
        raise ValueError(f"augment_pair: {x.shape[0]} patches, {masks.shape[0]} masks, "
                         f"{transforms.shape} transforms must agree")
    if x.shape[-1] != x.shape[-2] or masks.shape != x.shape:
        raise ValueError(f"augment_pair needs square patches and masks of one shape (a quarter turn "
                         f"of a non-square patch changes its shape), got {x.shape} and {masks.shape}")
    xo, mo = np.empty_like(x), np.empty_like(masks)
    for t in range(8):
        idx = np.flatnonzero(transforms == t)
        if idx.size:
            xo[idx] = dihedral(x[idx], t // 2, bool(t % 2))
            mo[idx] = dihedral(masks[idx], t // 2, bool(t % 2))
    return xo, mo


def random_dihedral(x: np.ndarray, masks: np.ndarray, rng) -> tuple:
    """One random transform of the 8 per patch, the same for the patch and its mask."""
    return augment_pair(x, masks, rng.integers(0, 8, size=x.shape[0]))
