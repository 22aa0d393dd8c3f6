"""Phantom whole mammograms: synthetic films written as DICOM in the CBIS-DDSM layout.

No patient data can be fetched on every machine, so ``mammo-demo whole`` ships
this generator. :func:`generate` writes a folder that the real readers
(:mod:`mammo_demo.cbis`, :mod:`mammo_demo.dicom`) load like a TCIA download
of CBIS-DDSM::

    OUT/
      PHANTOM.txt                              says in words: synthetic, not patients
      truth.json                               the phantom's ground truth (for tests)
      mass_case_description_train_set.csv      the four case-description CSVs,
      mass_case_description_test_set.csv       with CBIS-DDSM's real column names
      calc_case_description_train_set.csv      (and its quirks: "breast_density" vs
      calc_case_description_test_set.csv       "breast density", UID paths, stray newlines)
      CBIS-DDSM/
        Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-NNNNN/1.000000-full mammogram images-NNNNN/1-1.dcm
        Mass-Training_P_00001_LEFT_CC_1/.../1.000000-ROI mask images-NNNNN/1-1.dcm, 1-2.dcm
        Calc-Test_P_00007_RIGHT_MLO_1/.../1.000000-cropped images-NNNNN/1-1.dcm  (or both in one series)
        Normal-Training_P_00002_RIGHT_CC/...   normal breasts (no CSV rows; real CBIS-DDSM has none)

**These films are synthetic. Nothing measured on them says anything about
real mammograms or real patients.** Every DICOM file says so in
``ImageComments`` and ``SeriesDescription`` (``PHANTOM ...``), and the folder
holds ``PHANTOM.txt``.

Scale. Real CBIS-DDSM films are about 4000x2500 pixels (and up to about
6000x4000); the default here is ``scale=0.24`` of 4000x2500, i.e. **960x600**,
for 64 patients (256 films, about 300 MB), which a later training run reads and
preprocesses in about a minute on 2 cores; ``scale=1.0`` gives full-size
films. ``truth.json`` has the time it took.

What a phantom film holds
-------------------------
* Patients with CC and MLO views of both breasts; 20 % of the patients are
  in the test split (the CSVs' ``*_test_set``), by patient.
* A breast: a half-ellipse at the chest wall (left edge for a LEFT breast,
  right edge for a RIGHT one) with a wobbly outline; in the MLO view the
  pectoral muscle is a bright triangle in the upper corner on the chest-wall
  side. Intensity follows the compressed thickness, which falls to zero over
  the outer quarter of the radius: the **subcutaneous fat band and the skin
  line are only a little brighter than the dark background** (where plain
  Otsu cuts them off); inside, glandular tissue from 1/f^3 noise, denser
  towards the centre, more of it for higher ``breast_density``.
* 16-bit film-like values (some films 12-bit), dark background with grain.
* Film borders on about 40 % of the films: bright strips 1-3.5 % wide along
  some sides (often the chest-wall side and the top, so that they touch the
  breast); partial film or scanner edges (0.4-1.2 % wide, along 30-80 % of a
  side from a corner) on about 20 %; burned-in view labels (``LCC``, ``RMLO``, ...) in a top or bottom
  corner on the side opposite the chest wall; bright round markers in the
  background on some films.
* Abnormal breasts (60 %) have one or two lesions, seen on both views:
  masses (benign round or oval and circumscribed; malignant irregular and
  spiculated) or calcification clusters (benign: a few round specks;
  malignant: many small pleomorphic specks, often in a line). Each lesion has
  an ROI-mask DICOM (binary 0/255, film size) and a cropped-ROI DICOM. A
  breast is malignant when any of its lesions is.
* Variants: 20 % of the films ``MONOCHROME1``, 25 % RLE Lossless, 40 % lack
  the laterality and view tags (20 % use ``Laterality`` instead of
  ``ImageLaterality``), some carry a window.

``truth.json`` records, per film, the breast's true extent (``breast_box``,
``(top, bottom, left, right)``, bottom/right exclusive, without the border
strips), the label, marker, border and edge boxes and the lesions' boxes.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from ..dicom import PHANTOM_PREFIX, write_dicom

FULL_SHAPE = (4000, 2500)
DEFAULT_SCALE = 0.24
DEFAULT_PATIENTS = 64
TEST_FRACTION = 0.2
PHANTOM_MARKER = "PHANTOM.txt"
TRUTH_FILE = "truth.json"
TREE = "CBIS-DDSM"

MASS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view",
                "abnormality id", "abnormality type", "mass shape", "mass margins",
                "assessment", "pathology", "subtlety", "image file path",
                "cropped image file path", "ROI mask file path"]
CALC_COLUMNS = ["patient_id", "breast density", "left or right breast", "image view",
                "abnormality id", "abnormality type", "calc type", "calc distribution",
                "assessment", "pathology", "subtlety", "image file path",
                "cropped image file path", "ROI mask file path"]
CSV_NAMES = {("mass", "train"): "mass_case_description_train_set.csv",
             ("mass", "test"): "mass_case_description_test_set.csv",
             ("calc", "train"): "calc_case_description_train_set.csv",
             ("calc", "test"): "calc_case_description_test_set.csv"}

_FONT = {  # 5x7 glyphs for the view labels
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "C": ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
}
_UID_ROOT = "1.3.6.1.4.1.9590.100.1.2."


# ------------------------------------------------------------------ drawing helpers
def power_law_noise(rng, height: int, width: int, beta: float = 3.0) -> np.ndarray:
    """Zero-mean unit-std 1/f^beta Gaussian noise of shape (height, width), float32.

    White noise shaped in the Fourier domain by ``|f|^(-beta/2)`` (power
    spectrum ``~ f^-beta``, the usual model of mammographic texture), with a
    low-frequency floor of 2 cycles per image so the largest scales do not
    swamp the rest.
    """
    fy = np.fft.fftfreq(height)[:, None] * height
    fx = np.fft.rfftfreq(width)[None, :] * width
    radius2 = (fy ** 2 + fx ** 2 + 4.0).astype(np.float32)
    white = rng.standard_normal((height, width), dtype=np.float32)
    field = np.fft.irfft2(np.fft.rfft2(white) * radius2 ** (-beta / 4.0), s=(height, width))
    field = field.astype(np.float32)
    field -= field.mean()
    field /= field.std() + np.float32(1e-12)
    return field


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _box_of(mask: np.ndarray):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]


def _glyphs(text: str, scale: int) -> np.ndarray:
    """Boolean bitmap of ``text`` in the 5x7 font, each font pixel ``scale`` pixels."""
    cells = []
    for ch in text:
        g = np.array([[c == "1" for c in row] for row in _FONT[ch]], dtype=bool)
        cells.append(np.pad(g, ((0, 0), (0, 1))))
    bitmap = np.concatenate(cells, axis=1)[:, :-1]
    return np.kron(bitmap, np.ones((scale, scale), dtype=bool))


# ------------------------------------------------------------------ planning
def _plan_patient(rng, index: int, split: str) -> dict:
    pid = f"P_{index + 1:05d}"
    density = int(rng.integers(1, 5))
    breasts = {}
    for side in ("LEFT", "RIGHT"):
        status = rng.choice(["normal", "benign", "malignant"], p=[0.4, 0.3, 0.3])
        lesions = []
        if status != "normal":
            kind = "mass" if rng.random() < 0.5 else "calc"
            n = 1 if rng.random() < 0.8 else 2
            for k in range(n):
                malignant = status == "malignant" and k == 0
                if malignant:
                    pathology = "MALIGNANT"
                else:
                    pathology = "BENIGN" if rng.random() < 0.7 else "BENIGN_WITHOUT_CALLBACK"
                m = float(rng.beta(4, 2) if malignant else rng.beta(2, 4))
                lesions.append(dict(
                    id=k + 1, kind=kind, pathology=pathology, m=m,
                    u=float(rng.uniform(0.25, 0.65)), v=float(rng.uniform(-0.55, 0.55)),
                    size=float(rng.uniform(0.025, 0.05) if kind == "mass" else rng.uniform(0.02, 0.04)),
                    seed=int(rng.integers(2 ** 31)),
                    assessment=int(rng.choice([4, 5]) if malignant else rng.choice([2, 3, 4])),
                    subtlety=int(rng.integers(1, 6))))
        breasts[side] = dict(status=str(status), lesions=lesions)
    return dict(patient_id=pid, split=split, density=density, breasts=breasts)


def _describe(lesion: dict, rng) -> tuple[str, str]:
    """CBIS-DDSM's shape/margins (mass) or type/distribution (calc) words for a lesion."""
    m = lesion["m"]
    if lesion["kind"] == "mass":
        shape = "IRREGULAR" if m > 0.6 else ("LOBULATED" if m > 0.4 else rng.choice(["ROUND", "OVAL"]))
        margins = "SPICULATED" if m > 0.6 else ("ILL_DEFINED" if m > 0.4 else "CIRCUMSCRIBED")
        return str(shape), margins
    kind = "PLEOMORPHIC" if m > 0.6 else ("AMORPHOUS" if m > 0.4 else
                                          str(rng.choice(["ROUND_AND_REGULAR", "PUNCTATE"])))
    distribution = "LINEAR" if m > 0.7 else "CLUSTERED"
    return kind, distribution


# ------------------------------------------------------------------ rendering
def _breast(rng, shape, view: str, density: int):
    """Breast intensity (chest wall on the left), breast mask, geometry."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if view == "CC":
        centre = height * (0.5 + rng.normal(0, 0.025))
        half = height * rng.uniform(0.31, 0.40)
    else:
        centre = height * (0.48 + rng.normal(0, 0.02))
        half = height * rng.uniform(0.30, 0.36)
    depth = width * rng.uniform(0.55, 0.72)
    theta = np.arctan2((yy - centre) / half, xx / depth)
    wobble = 1.0
    for k in (2, 3, 5):
        wobble = wobble + rng.uniform(0.005, 0.02) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.sqrt((xx / depth) ** 2 + ((yy - centre) / half) ** 2) / wobble
    pect = np.zeros(shape, dtype=np.float32)
    if view == "MLO":
        pw, ph = width * rng.uniform(0.22, 0.36), height * rng.uniform(0.40, 0.55)
        pect_d = xx / pw + yy / ph
        pect = _smoothstep((1.0 - pect_d) / 0.04)
        # the breast runs up along the muscle to the axilla: a smooth minimum of the
        # ellipse and a triangle 1.5 times the muscle's, so the outline has no notch
        tail = pect_d / 1.5
        k = 14.0
        r = -np.log(np.exp(-k * r) + np.exp(-k * tail)) / k
    thick = np.sqrt(np.clip((1.0 - r) / 0.25, 0.0, 1.0)).astype(np.float32)
    background = np.float32(rng.uniform(0.04, 0.07))
    fat = np.float32(rng.uniform(0.20, 0.27))
    texture = power_law_noise(rng, height, width)
    dense_share = [0.25, 0.45, 0.6, 0.75][density - 1]
    level = np.quantile(texture, 1 - dense_share)
    gland = (1 / (1 + np.exp(-(texture - level) / 0.35))).astype(np.float32)
    envelope = _smoothstep((0.82 - r) / 0.25)          # no glands in the fat band
    gland_amp = np.float32(rng.uniform(0.30, 0.42))
    skin = 0.02 * np.exp(-((1.0 - r) / 0.008) ** 2) * (r <= 1.0)
    value = (background + (fat - background) * thick + gland_amp * gland * envelope * thick
             + skin).astype(np.float32)
    if view == "MLO":
        value = np.maximum(value, background + pect * rng.uniform(0.50, 0.60)
                           + 0.03 * texture * pect)
    breast = (r <= 1.0) | (pect > 0.5)
    geometry = dict(centre=float(centre), half=float(half), depth=float(depth))
    return value, breast, background, geometry, r


def _mass(rng, shape, cy, cx, radius, m):
    """Mass intensity bump (amplitude 1) and its mask."""
    height, width = shape
    pad = int(3 * radius) + 4
    top, left = max(0, int(cy) - pad), max(0, int(cx) - pad)
    bottom, right = min(height, int(cy) + pad), min(width, int(cx) + pad)
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    outline = 1.0
    n_harm = 2 + int(6 * m)
    for k in range(2, 2 + n_harm):
        outline = outline + (0.04 + 0.12 * m) / k ** 0.7 * np.sin(k * theta + rng.uniform(0, 6.3))
    rad = np.sqrt(dy ** 2 + dx ** 2) / (radius * outline)
    softness = 0.05 + 0.25 * m
    bump = _smoothstep((1.0 - rad) / softness + 0.5)
    mask = rad <= 1.0
    if m > 0.55:  # spicules
        for _ in range(int(4 + 14 * (m - 0.55) / 0.45)):
            angle = rng.uniform(0, 2 * np.pi)
            length = radius * rng.uniform(1.3, 2.4)
            along = dx * np.cos(angle) + dy * np.sin(angle)
            across = -dx * np.sin(angle) + dy * np.cos(angle)
            line = np.exp(-(across / max(1.0, radius * 0.05)) ** 2) * ((along > 0) & (along < length))
            bump = np.maximum(bump, 0.6 * line * (1 - np.clip(along / length, 0, 1)))
    full = np.zeros(shape, dtype=np.float32)
    full[top:bottom, left:right] = bump
    full_mask = np.zeros(shape, dtype=bool)
    full_mask[top:bottom, left:right] = mask
    return full, full_mask


def _calcs(rng, shape, cy, cx, radius, m):
    """Calcification cluster intensity (amplitude 1) and its ROI mask (a disc around it)."""
    height, width = shape
    n = int(3 + 5 * rng.random()) if m < 0.5 else int(10 + 20 * m)
    if m > 0.6:  # on a line
        angle = rng.uniform(0, np.pi)
        t = rng.uniform(-1, 1, n) * radius
        points = np.stack([cy + t * np.sin(angle), cx + t * np.cos(angle)], axis=1)
        points += rng.normal(0, radius * 0.12, points.shape)
    else:
        points = np.stack([cy, cx]) + rng.normal(0, radius * 0.45, (n, 2))
    full = np.zeros(shape, dtype=np.float32)
    for py, px in points:
        sigma = max(0.6, rng.uniform(0.6, 1.6) * (1.2 - 0.5 * m) * max(1.0, width / 600))
        s = int(4 * sigma) + 1
        r0, r1 = max(0, int(py) - s), min(height, int(py) + s + 1)
        c0, c1 = max(0, int(px) - s), min(width, int(px) + s + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        elong = 1.0 + 2.0 * m * rng.random()
        a = rng.uniform(0, np.pi)
        u = ((yy - py) * np.cos(a) + (xx - px) * np.sin(a)) / elong
        v = -(yy - py) * np.sin(a) + (xx - px) * np.cos(a)
        spot = np.exp(-(u ** 2 + v ** 2) / (2 * sigma ** 2)) * rng.uniform(0.7, 1.0)
        full[r0:r1, c0:c1] = np.maximum(full[r0:r1, c0:c1], spot)
    yy, xx = np.ogrid[0:height, 0:width]
    extent = max(radius * 1.1, float(np.max(np.hypot(points[:, 0] - cy, points[:, 1] - cx))) + 3)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= extent ** 2
    return full, mask


def render_film(rng, shape, side: str, view: str, density: int, lesions: list, traits: dict):
    """One film in ``[0, 1]`` display values (tissue bright), its lesion masks and truth.

    ``side`` is ``"L"`` (chest wall on the left edge) or ``"R"``; ``traits``
    says which borders, label and markers to draw.
    """
    height, width = shape
    value, breast, background, geo, r = _breast(rng, shape, view, density)
    masks = []
    for lesion in lesions:
        lrng = np.random.default_rng([lesion["seed"], 0 if view == "CC" else 1])
        cx = lesion["u"] * geo["depth"]
        local_half = geo["half"] * np.sqrt(max(0.05, 1 - lesion["u"] ** 2))
        cy = geo["centre"] + lesion["v"] * local_half
        if view == "MLO":
            cy += 0.05 * height
        radius = lesion["size"] * width
        if lesion["kind"] == "mass":
            bump, mask = _mass(lrng, shape, cy, cx, radius, lesion["m"])
            amp = 0.10 + 0.10 * lesion["m"]
            value = value + amp * bump * (r < 1.0)
        else:
            bump, mask = _calcs(lrng, shape, cy, cx, radius, lesion["m"])
            inside = r < 1.0           # bright specks, at most 0.9 (markers and labels are brighter)
            value = np.where(inside, np.maximum(value, np.minimum(0.9, value + 0.35 * bump)), value)
        masks.append(mask & breast)
    value = value + rng.normal(0, 0.006, shape).astype(np.float32)        # film grain
    if side == "R":
        value, breast = value[:, ::-1], breast[:, ::-1]
        masks = [mk[:, ::-1] for mk in masks]
    value = np.ascontiguousarray(value)
    chest = "left" if side == "L" else "right"
    far = "right" if side == "L" else "left"
    taken = np.zeros(shape, dtype=bool)
    near_breast = np.zeros(shape, dtype=bool)
    margin = int(0.03 * width) + 2
    box = _box_of(breast)
    near_breast[max(0, box[0] - margin):box[1] + margin, max(0, box[2] - margin):box[3] + margin] = True
    # the breast is not a box: allow labels beside its rounded corners
    ys, xs = np.nonzero(breast[::4, ::4])
    dilated = np.zeros(shape, dtype=bool)
    for dy in range(-margin, margin + 1, 4):
        for dx in range(-margin, margin + 1, 4):
            yy = np.clip(ys * 4 + dy, 0, height - 1)
            xx = np.clip(xs * 4 + dx, 0, width - 1)
            dilated[yy, xx] = True
    truth = dict(breast_box=None, borders={}, label_box=None, label_text=None, marker_boxes=[])
    # burned-in label in a top or bottom corner on the far side
    if traits.get("label"):
        text = side + view
        scale = max(1, int(round(0.0045 * height)))
        glyph = _glyphs(text, scale)
        gh, gw = glyph.shape
        inset = int(0.045 * width) + 2
        corners = ["top", "bottom"] if rng.random() < 0.5 else ["bottom", "top"]
        for corner in corners:
            row = int(0.05 * height) + 2 if corner == "top" else height - int(0.05 * height) - gh - 2
            col = width - inset - gw if far == "right" else inset
            region = np.zeros(shape, dtype=bool)
            region[row:row + gh, col:col + gw] = True
            if not (region & dilated).any():
                value[row:row + gh, col:col + gw][glyph] = rng.uniform(0.96, 1.0)
                taken |= region
                truth["label_box"] = [row, row + gh, col, col + gw]
                truth["label_text"] = text
                break
    for _ in range(traits.get("markers", 0)):
        rad = max(2, int(0.008 * width))
        for _attempt in range(20):
            cy, cx = rng.uniform(0.08, 0.92) * height, rng.uniform(0.08, 0.92) * width
            yy, xx = np.ogrid[0:height, 0:width]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad ** 2
            grown = (yy - cy) ** 2 + (xx - cx) ** 2 <= (rad + margin) ** 2
            if not (grown & (dilated | taken)).any():
                value[disc] = 1.0
                taken |= grown
                truth["marker_boxes"].append(_box_of(disc))
                break
    strips = np.zeros(shape, dtype=bool)
    for name in traits.get("borders", ()):
        where = {"chest": chest, "far": far}.get(name, name)
        n = int(round(rng.uniform(0.01, 0.035) * (height if where in ("top", "bottom") else width)))
        n = max(2, n)
        level = rng.uniform(0.85, 0.97)
        sl = {"top": np.s_[:n, :], "bottom": np.s_[height - n:, :],
              "left": np.s_[:, :n], "right": np.s_[:, width - n:]}[where]
        value[sl] = level + rng.normal(0, 0.01, value[sl].shape)
        strips[sl] = True
        truth["borders"][where] = n
    truth["edges"] = []
    for name, begin, end in traits.get("edges", ()):     # partial film / scanner edges
        where = {"chest": chest, "far": far}.get(name, name)
        along = width if where in ("top", "bottom") else height
        across = height if where in ("top", "bottom") else width
        n = max(2, int(round(rng.uniform(0.004, 0.012) * across)))
        a, b = int(begin * along), int(end * along)
        sl = {"top": np.s_[:n, a:b], "bottom": np.s_[height - n:, a:b],
              "left": np.s_[a:b, :n], "right": np.s_[a:b, width - n:]}[where]
        value[sl] = rng.uniform(0.9, 1.0)
        strips[sl] = True
        edge = np.zeros(shape, dtype=bool)
        edge[sl] = True
        truth["edges"].append(dict(side=where, box=_box_of(edge)))
    truth["breast_box"] = _box_of(breast & ~strips)
    lesion_masks = [mk & ~strips for mk in masks]
    return np.clip(value, 0.0, 1.0).astype(np.float32), lesion_masks, truth


# ------------------------------------------------------------------ writing
def _stored(value: np.ndarray, bits: int, monochrome1: bool) -> np.ndarray:
    top = (1 << bits) - 1
    stored = np.round(value * top).astype(np.uint16)
    return (top - stored).astype(np.uint16) if monochrome1 else stored


def _uid(rng) -> str:
    return _UID_ROOT + "".join(str(d) for d in rng.integers(0, 10, 38))


def _series_folder(rng, kind: str) -> str:
    return f"1.000000-{kind}-{int(rng.integers(10000, 99999))}"


def _study_folder(rng) -> str:
    return f"07-{int(rng.integers(20, 22))}-2016-DDSM-{int(rng.integers(10000, 99999))}"


def _film_traits(rng) -> dict:
    borders = ()
    if rng.random() < 0.4:
        borders = [("chest", "top", "bottom"), ("chest", "top", "bottom", "far"),
                   ("top", "far"), ("chest",), ("top", "bottom")][int(rng.integers(0, 5))]
    edges = []
    if rng.random() < 0.2:       # a partial edge from a corner along part of a side
        name = str(rng.choice(["top", "bottom", "far", "chest"]))
        length = rng.uniform(0.3, 0.8)
        edges.append((name, 0.0, length) if rng.random() < 0.5 else (name, 1.0 - length, 1.0))
    return dict(borders=borders, edges=edges, label=rng.random() < 0.85,
                markers=int(rng.choice([0, 0, 1, 2])))


def generate(out, seed: int = 0, patients: int = DEFAULT_PATIENTS, scale: float = DEFAULT_SCALE,
             progress: bool = False, overwrite: bool = False) -> Path:
    """Write a phantom CBIS-DDSM folder into ``out`` (see the module docstring); return it.

    Deterministic for ``seed``, ``patients`` and ``scale`` (same CSVs, same
    pixel data, same DICOM bytes). Refuses a non-empty ``out`` unless
    ``overwrite``; overwriting an older phantom set (it has ``PHANTOM.txt``)
    first removes that set's tree, CSVs and truth, and nothing else.
    """
    out = Path(out)
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if not 0.02 <= scale <= 1.5:
        raise ValueError(f"scale must be in [0.02, 1.5] (1.0 = 4000x2500 films), got {scale}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out} is not empty (pass overwrite=True / --overwrite)")
        if (out / PHANTOM_MARKER).is_file():      # an older phantom set: no stale films left
            import shutil
            shutil.rmtree(out / TREE, ignore_errors=True)
            for name in list(CSV_NAMES.values()) + [TRUTH_FILE, PHANTOM_MARKER]:
                (out / name).unlink(missing_ok=True)
    start = time.perf_counter()
    shape = (int(round(FULL_SHAPE[0] * scale)), int(round(FULL_SHAPE[1] * scale)))
    root = out / TREE
    root.mkdir(parents=True, exist_ok=True)
    top_rng = np.random.default_rng([seed, 12])
    n_test = int(round(TEST_FRACTION * patients)) if patients >= 5 else 0
    test_ids = set(top_rng.permutation(patients)[:n_test].tolist())
    rows = {key: [] for key in CSV_NAMES}
    truth_images = {}
    counts = {"films": 0, "normal_breasts": 0, "benign_breasts": 0, "malignant_breasts": 0,
              "abnormalities": 0}
    try:
        from tqdm.auto import tqdm
        bar = tqdm(range(patients), desc="phantom patients", unit="patient", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = range(patients)
    for index in bar:
        rng = np.random.default_rng([seed, index])
        split = "test" if index in test_ids else "train"
        plan = _plan_patient(rng, index, split)
        pid = plan["patient_id"]
        for side_word, breast in plan["breasts"].items():
            counts[f"{breast['status']}_breasts"] += 1
            side = side_word[0]
            lesions = breast["lesions"]
            kind = lesions[0]["kind"] if lesions else None
            prefix = {"mass": "Mass", "calc": "Calc", None: "Normal"}[kind]
            split_word = "Training" if split == "train" else "Test"
            for view in ("CC", "MLO"):
                frng = np.random.default_rng([seed, index, ord(side), len(view)])
                traits = _film_traits(frng)
                value, masks, truth = render_film(frng, shape, side, view, plan["density"],
                                                  lesions, traits)
                image_id = f"{prefix}-{split_word}_{pid}_{side_word}_{view}"
                bits = 12 if frng.random() < 0.1 else 16
                mono1 = bool(frng.random() < 0.2)
                rle = bool(frng.random() < 0.25)
                tag_mode = int(frng.choice([0, 0, 1, 2, 2]))     # 0 tags, 1 Laterality, 2 none
                window = ((1 << bits) / 2, float(1 << bits)) if frng.random() < 0.2 else None
                rel = (Path(TREE) / image_id / _study_folder(frng)
                       / _series_folder(frng, "full mammogram images") / "1-1.dcm")
                note = (f"{PHANTOM_PREFIX}: synthetic film from mammo_demo.whole.phantom, seed "
                        f"{seed}; not a patient")
                write_dicom(out / rel, _stored(value, bits, mono1), bits_stored=bits,
                            photometric="MONOCHROME1" if mono1 else "MONOCHROME2", rle=rle,
                            laterality=side if tag_mode < 2 else None,
                            laterality_keyword="ImageLaterality" if tag_mode == 0 else "Laterality",
                            view=view if tag_mode < 2 else None, patient_id=pid,
                            comments=note, series_description=f"{PHANTOM_PREFIX} full mammogram images",
                            window=window, uid_seed=(seed, str(rel)))
                counts["films"] += 1
                csv_image_path = f"{image_id}/{_uid(frng)}/{_uid(frng)}/000000.dcm"
                lesion_truth = []
                for lesion, mask in zip(lesions, masks):
                    roi_id = f"{image_id}_{lesion['id']}"
                    study = _study_folder(frng)
                    crop_box = _box_of(mask)
                    if crop_box is None:
                        crop_box = [0, 1, 0, 1]
                    t, b, l, r = crop_box
                    grow = max(4, int(0.3 * max(b - t, r - l)))
                    t, b = max(0, t - grow), min(shape[0], b + grow)
                    l, r = max(0, l - grow), min(shape[1], r + grow)
                    together = frng.random() < 0.5
                    mask_first = frng.random() < 0.5
                    if together:
                        series = _series_folder(frng, "ROI mask images")
                        names = ["1-1.dcm", "1-2.dcm"] if mask_first else ["1-2.dcm", "1-1.dcm"]
                        mask_rel = Path(TREE) / roi_id / study / series / names[0]
                        crop_rel = Path(TREE) / roi_id / study / series / names[1]
                    else:
                        mask_rel = (Path(TREE) / roi_id / study
                                    / _series_folder(frng, "ROI mask images") / "1-1.dcm")
                        crop_rel = (Path(TREE) / roi_id / study
                                    / _series_folder(frng, "cropped images") / "1-1.dcm")
                    write_dicom(out / mask_rel, mask.astype(np.uint8) * 255, bits_stored=8,
                                rle=True, patient_id=pid, comments=note,
                                series_description=f"{PHANTOM_PREFIX} ROI mask images",
                                uid_seed=(seed, str(mask_rel)))
                    write_dicom(out / crop_rel, _stored(value[t:b, l:r], bits, False),
                                bits_stored=bits, patient_id=pid, comments=note,
                                series_description=f"{PHANTOM_PREFIX} cropped images",
                                uid_seed=(seed, str(crop_rel)))
                    counts["abnormalities"] += 1
                    described = _describe(lesion, frng)
                    # the two path columns cannot be trusted to say which is which
                    first, second = f"{roi_id}/{_uid(frng)}/{_uid(frng)}/000000.dcm", \
                        f"{roi_id}/{_uid(frng)}/{_uid(frng)}/000001.dcm"
                    crop_csv, mask_csv = (first, second) if frng.random() < 0.7 else (second, first)
                    rows[(kind, split)].append(dict(
                        patient_id=pid, density=plan["density"], side=side_word, view=view,
                        id=lesion["id"], kind=kind, a=described[0], b=described[1],
                        assessment=lesion["assessment"], pathology=lesion["pathology"],
                        subtlety=lesion["subtlety"],
                        image=csv_image_path + (" " if frng.random() < 0.2 else ""),
                        crop=crop_csv, mask=mask_csv + "\n"))
                    lesion_truth.append(dict(abnormality_id=lesion["id"], type=kind,
                                             pathology=lesion["pathology"], box=_box_of(mask),
                                             mask_file=str(mask_rel), crop_file=str(crop_rel),
                                             crop_box=[t, b, l, r]))
                truth.update(
                    image_id=image_id, patient_id=pid, side=side, view=view, split=split,
                    status=breast["status"], malignant=breast["status"] == "malignant",
                    chest_wall="left" if side == "L" else "right", shape=list(shape),
                    bits=bits, photometric="MONOCHROME1" if mono1 else "MONOCHROME2", rle=rle,
                    tags=["ImageLaterality+ViewPosition", "Laterality+ViewPosition", "none"][tag_mode],
                    window=window is not None, lesions=lesion_truth)
                truth_images[str(rel)] = truth
    _write_csvs(out, rows)
    seconds = time.perf_counter() - start
    info = dict(phantom=True, seed=seed, patients=patients, scale=scale, film_shape=list(shape),
                test_patients=n_test, counts=counts, generation_seconds=round(seconds, 1))
    truth = dict(info, images=truth_images)
    del truth["generation_seconds"]          # truth.json stays byte-identical for a seed
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    (out / PHANTOM_MARKER).write_text(_marker_text(info))
    return out


def _write_csvs(out: Path, rows: dict) -> None:
    for (kind, split), name in CSV_NAMES.items():
        columns = MASS_COLUMNS if kind == "mass" else CALC_COLUMNS
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows[(kind, split)]:
            writer.writerow([row["patient_id"], row["density"], row["side"], row["view"],
                             row["id"], "mass" if kind == "mass" else "calcification",
                             row["a"], row["b"], row["assessment"], row["pathology"],
                             row["subtlety"], row["image"], row["crop"], row["mask"]])
        (out / name).write_text(buffer.getvalue())


def _marker_text(info: dict) -> str:
    lines = ["PHANTOM: synthetic whole mammograms written by mammo_demo.whole.phantom.",
             "These films are NOT patient data and NOT CBIS-DDSM; results on them say nothing",
             "about real mammograms. Layout and CSVs imitate a TCIA download of CBIS-DDSM.",
             ""]
    for key in ("seed", "patients", "scale", "film_shape", "test_patients", "counts",
                "generation_seconds"):
        lines.append(f"{key}: {json.dumps(info[key])}")
    return "\n".join(lines) + "\n"


def read_truth(folder) -> dict:
    """The phantom's ``truth.json`` (ValueError if the folder has none)."""
    path = Path(folder) / TRUTH_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {TRUTH_FILE} (not a phantom folder from mammo_demo.whole.phantom)")
    return json.loads(path.read_text())
