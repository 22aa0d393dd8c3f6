"""Lesion masks: discs from mini-MIAS rows, exact phantom extents, CBIS-DDSM ROI masks, crops.

Where a mask comes from decides what a segmentation score means:

* **mini-MIAS rows** (:func:`disc_mask`, :func:`mias_image_mask`): the
  database gives only a centre ``(X, Y)`` and a ``RADIUS`` "enclosing the
  abnormality", so the mask is that disc, a coarse outline. ``Y`` counts
  from the **bottom** edge: the pixel row is ``image_size - Y`` (the column
  is ``X``). Rows without coordinates give no mask; several rows of one
  image unite.
* **phantom mini-MIAS** (:func:`phantom_image_masks`): the generator
  (:mod:`mammo_demo.phantom`) is re-run for an image with the same seed and
  every lesion's own contribution to the canvas is recorded while it is
  drawn, so the mask is the lesion's true extent, not a disc:

  - masses (``CIRC``, ``SPIC``, ``MISC``) and asymmetries (``ASYM``): the
    pixels the lesion brightened by at least :data:`EXTENT_FRACTION` of its
    own peak (the mass profile is about 35 % of its peak on its drawn
    outline, so 0.3 keeps the outline and the core of the spicules);
  - calcification clusters (``CALC``) and architectural distortions
    (``ARCH``) have no outline (specks; warped texture): the mask is the
    region the generator confines them to, the disc of the exact (float)
    centre and radius it drew, before rounding for ``Info.txt``.

  The re-run's pixels are compared with the stored file; a mismatch (a set
  from another generator version) raises instead of giving wrong masks.
* **CBIS-DDSM** (:func:`read_roi_mask`, :func:`cbis_image_mask`): the
  ROI-mask DICOM files of the data set (or of its phantom,
  :mod:`mammo_demo.whole.phantom`, which writes each lesion's exact mask in
  the same format), read with :func:`mammo_demo.dicom.read_dicom`;
  non-zero = lesion; an image's abnormalities unite.

:func:`crop_mask` cuts a mask with exactly the geometry of
:mod:`mammo_demo.patches` (the same crop centre and side, the same
reflection padding at the border, the same bilinear resize) and thresholds
the resized fraction at 0.5, so image patch and mask patch stay aligned.
"""
from __future__ import annotations

import math

import numpy as np

from .. import phantom
from ..mias import MiasDataset
from ..patches import _crop
from ..preprocess import resize

#: a mass's pixels are those it brightened by at least this fraction of its peak
EXTENT_FRACTION = 0.3
#: classes without an outline: the mask is the generator's disc
DISC_CLASSES = ("CALC", "ARCH")


# ------------------------------------------------------------------ discs (mini-MIAS rows)
def disc_mask(shape, row: float, col: float, radius: float) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centre lies within ``radius`` of ``(row, col)``.

    ``row, col`` are array indices (origin top-left, pixel centres at integers).
    """
    h, w = shape
    if radius is None or not float(radius) > 0:
        raise ValueError(f"disc_mask: radius must be positive, got {radius!r}")
    rr = (np.arange(h, dtype=np.float64) - float(row))[:, None]
    cc = (np.arange(w, dtype=np.float64) - float(col))[None, :]
    return rr * rr + cc * cc <= float(radius) ** 2


def mias_disc(x: int, y: int, radius: float, image_size: int) -> np.ndarray:
    """The disc of one ``Info.txt`` row: centre ``(X, Y)`` with **bottom-left** origin.

    The pixel row is ``image_size - Y`` and the column ``X`` (as
    :class:`mammo_demo.mias.MiasRecord` converts them).
    """
    return disc_mask((image_size, image_size), image_size - int(y), int(x), radius)


def mias_image_mask(records, image_size: int) -> np.ndarray:
    """Union of the discs of an image's rows; rows without coordinates (and NORM) add nothing.

    Returns a boolean (image_size, image_size) mask, all False when no row has coordinates.
    """
    mask = np.zeros((image_size, image_size), dtype=bool)
    for r in records:
        if not r.is_normal and r.has_coordinates and r.radius:
            mask |= mias_disc(r.x, r.y, r.radius, image_size)
    return mask


# ------------------------------------------------------------------ exact phantom extents
def _lesion_extent(cls: str, delta: np.ndarray, r: float, c: float, R: float) -> np.ndarray:
    """Mask of one drawn lesion from its own contribution ``delta`` to the canvas."""
    if cls in DISC_CLASSES:
        return disc_mask(delta.shape, r, c, R)
    peak = float(delta.max())
    if not peak > 0:
        return disc_mask(delta.shape, r, c, R)
    return delta >= np.float32(EXTENT_FRACTION * peak)


def render_with_masks(plan_item, image_size: int, image_seed, filt=None):
    """Render one phantom film and the mask of each of its lesions.

    Runs :func:`mammo_demo.phantom.render_image` with its lesion painter
    wrapped, so that the canvas just before and just after each lesion is
    drawn gives that lesion's contribution (the random draws are unchanged:
    the pixels are byte-identical to the generator's). Not thread-safe (the
    module's painter is swapped for the duration of the call).

    Returns ``(pixels (S, S) uint8, masks)``: ``masks`` has one boolean
    (S, S) array per lesion of the plan, in the orientation of the stored
    file (right breasts are mirrored at the end, as the generator does), and
    ``None`` for a row without coordinates (calcifications spread over the
    breast have no centre and no mask).
    """
    original = phantom._draw_lesion
    drawn = []

    def recording(canvas, rng, lesion, r, c, R, *args, **kwargs):
        before = canvas.copy()
        original(canvas, rng, lesion, r, c, R, *args, **kwargs)
        if lesion.with_coordinates:
            drawn.append(_lesion_extent(lesion.abnormality, canvas - before, r, c, R))
        else:
            drawn.append(None)

    phantom._draw_lesion = recording
    try:
        pixels, _rows = phantom.render_image(plan_item, image_size, image_seed, filt)
    finally:
        phantom._draw_lesion = original
    if plan_item.side == "right":
        drawn = [None if m is None else np.ascontiguousarray(m[:, ::-1]) for m in drawn]
    return pixels, drawn


def phantom_image_masks(dataset: MiasDataset, refnums=None, progress: bool = False) -> dict:
    """Exact lesion masks of a phantom mini-MIAS folder: ``{refnum: (S, S) bool}``.

    Only images with at least one lesion with coordinates are listed; their
    mask is the union of their lesions' extents (module docstring). Each
    re-rendered image is compared with its stored file.

    Raises:
        ValueError: the folder is not a phantom set, or a re-rendered image
            differs from the file (another generator version or seed).
    """
    info = dataset.phantom_info
    if not dataset.is_phantom or not info:
        raise ValueError(f"{dataset.folder} is not a phantom set: exact masks exist only for "
                         f"phantom images (use mias_image_mask for real mini-MIAS)")
    try:
        seed, size, n_images = int(info["seed"]), int(info["image_size"]), int(info["n_images"])
    except (KeyError, ValueError):
        raise ValueError(f"{dataset.folder}: PHANTOM.txt lacks seed, image_size or n_images") from None
    if info.get("version") != str(phantom.GENERATOR_VERSION):
        raise ValueError(f"{dataset.folder} was written by phantom generator version "
                         f"{info.get('version')}, this is version {phantom.GENERATOR_VERSION}: "
                         f"regenerate it to get exact masks")
    plan = phantom.plan_phantom(n_images, seed)
    image_seeds = np.random.SeedSequence(seed).spawn(2)[1].spawn(n_images)
    filt = phantom.power_law_filter(min(size, phantom._MAX_BASE))
    wanted = set(dataset.refnums if refnums is None else refnums)
    todo = [(p, s) for p, s in zip(plan, image_seeds)
            if p.refnum in wanted and any(les.with_coordinates for les in p.lesions)]
    from tqdm.auto import tqdm
    out = {}
    for item, ss in tqdm(todo, desc="exact PHANTOM lesion masks", unit="image", disable=not progress):
        pixels, masks = render_with_masks(item, size, ss, filt)
        if not np.array_equal(pixels, dataset.image(item.refnum)):
            raise ValueError(f"{dataset.image_path(item.refnum)} differs from the phantom generator's "
                             f"image for seed {seed}: cannot reconstruct exact masks")
        union = np.zeros((size, size), dtype=bool)
        for m in masks:
            if m is not None:
                union |= m
        out[item.refnum] = union
    return out


# ------------------------------------------------------------------ CBIS-DDSM ROI masks
def read_roi_mask(path) -> np.ndarray:
    """A CBIS-DDSM ROI-mask DICOM file as a boolean (H, W) mask (non-zero pixels = lesion).

    Read with :func:`mammo_demo.dicom.read_dicom` (values in [0, 1], tissue
    bright); the masks are stored 0 / 255 (or 0 / 65535), so anything above
    half of the range is lesion. Raises ``ValueError`` naming the file when
    it is not a readable DICOM image or holds no lesion pixel.
    """
    from ..dicom import read_dicom
    image = read_dicom(path)
    mask = np.asarray(image.pixels) > 0.5
    if not mask.any():
        raise ValueError(f"{path}: ROI mask holds no lesion pixel (is it the cropped image "
                         f"instead of the mask? CBIS-DDSM's columns can be swapped)")
    return mask


def cbis_image_mask(dataset, image) -> np.ndarray | None:
    """Union of the ROI masks of one :class:`mammo_demo.cbis.CbisImage`'s abnormalities.

    The ROI-mask file of each abnormality is found by content
    (:meth:`mammo_demo.cbis.CbisDataset.resolve_roi`: the binary file of its
    folder, whatever the CSV's columns claim). Returns a boolean mask of the
    film's shape, or ``None`` when the image has no abnormality with a mask
    file (a normal film, or missing files).
    """
    union = None
    for abnormality in image.abnormalities:
        _, mask_file = dataset.resolve_roi(abnormality)
        if mask_file is None:
            continue
        mask = read_roi_mask(mask_file)
        if union is None:
            union = mask
        elif union.shape != mask.shape:
            raise ValueError(f"{mask_file}: ROI mask is {mask.shape[1]}x{mask.shape[0]}, the other "
                             f"masks of {image.image_id} are {union.shape[1]}x{union.shape[0]}")
        else:
            union = union | mask
    return union


# ------------------------------------------------------------------ crops
def crop_mask(mask: np.ndarray, row: int, col: int, side: int, patch_size: int) -> np.ndarray:
    """The (patch_size, patch_size) boolean mask patch for the crop ``(row, col, side)``.

    The same geometry as :func:`mammo_demo.patches.extract_roi`: the
    ``side x side`` crop whose centre pixel is ``(row, col)`` (reflected where
    it leaves the image, as the image patch is), resized bilinearly; a pixel
    is lesion when at least half of it was.
    """
    crop = _crop(np.asarray(mask, dtype=np.float32), int(row), int(col), int(side))
    return resize(crop, patch_size, "bilinear") >= np.float32(0.5)


def lesion_fraction(mask_patch) -> float:
    """Fraction of a patch's pixels that are lesion."""
    return float(np.mean(mask_patch))


def radius_of(mask: np.ndarray) -> float:
    """Radius of the disc with the mask's area (pixels), 0 for an empty mask."""
    return math.sqrt(float(np.count_nonzero(mask)) / math.pi)
