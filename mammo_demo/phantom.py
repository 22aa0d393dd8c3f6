"""Phantom mini-MIAS: synthetic mammograms written in the real database's format.

No patient data can be fetched on every machine, so the demo ships this
generator. It writes a folder that the real reader (:mod:`mammo_demo.mias`)
loads like the real mini-MIAS: ``mdbNNN.pgm`` files (8-bit binary PGM, square,
1024x1024 by default), an ``Info.txt`` in the real format (``REFNUM BG CLASS
SEVERITY X Y RADIUS``, origin at the bottom-left corner) and a marker file
``PHANTOM.txt`` saying, in words, that these are synthetic phantom images and
not patient data (every PGM header carries the same note as a comment).

**These images are synthetic. Nothing measured on them says anything about
real mammograms or real patients.**

What a phantom image holds
--------------------------
* **Breast**: a half-ellipse attached to the chest wall, with a wobbly skin
  line, a thickness fall-off towards the skin, and the pectoral muscle as a
  bright triangle in the upper corner at the chest wall (mediolateral oblique
  view), on a dark, slightly noisy background. As in mini-MIAS, the list runs
  in pairs (``mdb001``/``mdb002`` = one patient): odd numbers are right
  breasts, drawn with the chest wall on the right edge; even numbers are left
  breasts, chest wall on the left edge. Both films of a pair share the
  background tissue class.
* **Parenchymal texture**: power-law ("1/f^beta") Gaussian noise with
  ``beta = 3``, the standard statistical model of mammographic texture: the
  power spectrum of the field is ``P(f) ~ (f^2 + f0^2)^(-beta/2)`` (``f0``, a
  few cycles per image, stops the lowest frequencies from swamping the rest);
  it is drawn in the Fourier domain (:func:`power_law_texture`). The fibro-
  glandular tissue is a soft threshold of that field, denser towards the
  centre of the breast; the threshold depends on the background tissue class
  ``F`` (fatty), ``G`` (fatty-glandular) or ``D`` (dense-glandular), and in
  dense breasts the lesions are fainter (lower contrast), as in real films.
* **Burned-in labels**: about a third of the films carry a bright label block
  with dark "glyphs" in a corner outside the breast (a separate bright
  component, the kind :func:`mammo_demo.preprocess.remove_markers` removes).
* **Quantum mottle**: white noise of a couple of grey levels.

Lesions (severity-dependent morphology)
---------------------------------------
Each lesion draws a latent *malignancy score* ``m`` in ``[0, 1]``: benign
``m ~ Beta(2, 4)`` (mean 0.33), malignant ``m ~ Beta(4, 2)`` (mean 0.67).
Every morphological feature below moves with ``m`` (plus its own noise), so
benign and malignant lesions overlap: a classifier that read ``m`` perfectly
would still be right only about 81 % of the time on a balanced set
(``P(m < 0.5 | benign) = I_0.5(2, 4) = 0.8125``). The task is learnable but not
trivial. Sizes (the ``RADIUS`` column) are drawn from the same log-uniform
range for benign and malignant lesions of a class, so size gives nothing away.

* ``CALC`` calcification cluster: bright specks. Low ``m`` (benign): few
  (about 4), larger, round, uniform, loosely scattered. High ``m`` (malignant):
  many (up to about 30), small, pleomorphic (varied size, brightness and
  elongation), most of them on one to three linear or branching tracks.
* ``CIRC`` circumscribed mass: a dome with a sharp, smooth margin and gentle
  lobulation; higher ``m`` gives micro-lobulation and a softer margin. Mostly
  benign (18 benign, 4 malignant images).
* ``SPIC`` spiculated mass: a dense core with thin straight or slightly
  curved spicules radiating from it. Higher ``m``: more spicules, a denser
  core; low ``m`` looks like a radial scar (faint core, long thin spicules).
  Mostly malignant (8 benign, 11 malignant images).
* ``MISC`` ill-defined mass: irregular outline (several random harmonics),
  wide soft margin, heterogeneous inside; irregularity grows with ``m``.
* ``ARCH`` architectural distortion: no mass; the surrounding tissue is pulled
  towards a point (the texture is resampled on a contracting grid) and faint
  straight lines converge on it; stronger and more lines with ``m``.
* ``ASYM`` asymmetry: a broad, soft region of extra glandular density without
  a margin; more focal with ``m``.

Class counts (the full 322-image set)
-------------------------------------
Modelled on the real mini-MIAS (322 films, 161 pairs, 207 normal films,
115 films with abnormalities; background tissue 106 F, 104 G, 112 D films),
with images per class and severity as below. The real database lists 330 rows
(CALC 30, CIRC 25, SPIC 19, MISC 15, ARCH 19, ASYM 15, NORM 207); the phantom
has the same row totals per class, some images with two or three rows, and
four calcification rows without coordinates (calcifications spread over the
breast, the README's note 4). Our per-severity split is an approximation of
the published tables (which do not all agree), not a copy of the real file::

    class   benign images/rows   malignant images/rows   rows
    CALC    12 / 14 (2 w/o)      13 / 16 (2 w/o)         30
    CIRC    18 / 21               4 /  4                 25
    SPIC     8 /  8              11 / 11                 19
    MISC     8 /  8               7 /  7                 15
    ARCH     9 /  9              10 / 10                 19
    ASYM     9 /  9               6 /  6                 15
    NORM    207 normal images, one row each             207

("w/o": rows without coordinates.) Multi-row images: two benign CALC images
with 2 rows, one malignant CALC image with 3 rows and one with 2, three
benign CIRC images with 2 rows; all rows of one image share class and severity.

In images: 207 normal, 64 benign, 51 malignant (322). In rows: 207 normal,
69 benign, 54 malignant (330); 4 rows have no coordinates.

With fewer images (``n_images < 322``, for tests and quick runs) the number
of abnormal images scales with ``n_images`` (``round(n * 115 / 322)``) and
they are taken round-robin over the class/severity pairs (calcifications and
masses first, benign and malignant alternating), so that even a dozen images
cover both severities.

Determinism and speed
---------------------
Everything is drawn from ``numpy.random.SeedSequence(seed)``: the plan from
one child, each image from its own grandchild, so a seed gives byte-identical
files. The smooth part of an image (shape, texture, tissue) is computed at
512x512 at most and resized (bilinear) to the final size; lesions, noise and
labels are drawn at full resolution in small boxes. The full set (322 images,
1024x1024, 324 MB) takes about 16-18 s on one core of a 2-core laptop-class
machine (measured while writing this module).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .mias import INFO_FILENAME, PHANTOM_MARKER, read_phantom_marker, write_pgm

#: The word every phantom output carries (folder names, reports, plots).
PHANTOM_LABEL = "phantom"
#: Bump when the generator changes what a seed produces (cached sets are then regenerated).
GENERATOR_VERSION = 1
GENERATOR_NAME = "mammo_demo.phantom"
#: One-line statement written into PHANTOM.txt and every PGM header.
PHANTOM_NOTICE = "synthetic phantom images, not patient data"
FULL_SIZE = 322

#: images per (class, severity) in the full 322-image set.
PHANTOM_IMAGES = {
    ("CALC", "B"): 12, ("CALC", "M"): 13,
    ("CIRC", "B"): 18, ("CIRC", "M"): 4,
    ("SPIC", "B"): 8, ("SPIC", "M"): 11,
    ("MISC", "B"): 8, ("MISC", "M"): 7,
    ("ARCH", "B"): 9, ("ARCH", "M"): 10,
    ("ASYM", "B"): 9, ("ASYM", "M"): 6,
}
#: images with several rows: rows per such image, per (class, severity).
PHANTOM_MULTI_ROW = {("CALC", "B"): (2, 2), ("CALC", "M"): (3, 2), ("CIRC", "B"): (2, 2, 2)}
#: single-row images whose row has no coordinates (spread calcifications).
PHANTOM_NO_COORDINATES = {("CALC", "B"): 2, ("CALC", "M"): 2}
PHANTOM_NORMAL_IMAGES = 207
#: background tissue per film in the full set (pairs share it).
PHANTOM_BACKGROUND = {"F": 106, "G": 104, "D": 112}
#: order in which small sets take abnormal images (round-robin over these pairs).
_ROUND_ROBIN = (("CALC", "B"), ("CALC", "M"), ("CIRC", "B"), ("SPIC", "M"), ("MISC", "B"),
                ("MISC", "M"), ("ARCH", "B"), ("ARCH", "M"), ("ASYM", "B"), ("ASYM", "M"),
                ("SPIC", "B"), ("CIRC", "M"))
#: lesion radius range in pixels of a 1024 image (log-uniform), per class.
_RADIUS_RANGE = {"CALC": (16, 90), "CIRC": (18, 120), "SPIC": (25, 100), "MISC": (30, 120),
                 "ARCH": (35, 100), "ASYM": (45, 130)}
#: per tissue class: (glandular threshold bias, glandular grey levels, lesion contrast)
_TISSUE = {"F": (-1.4, 55.0, 58.0), "G": (-0.5, 65.0, 50.0), "D": (0.4, 75.0, 42.0)}
_BETA = 3.0
_MAX_BASE = 512


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class LesionPlan:
    abnormality: str        # CALC, CIRC, SPIC, MISC, ARCH, ASYM
    severity: str           # B or M
    with_coordinates: bool = True


@dataclass(frozen=True)
class ImagePlan:
    """What one phantom film shows (drawn before any pixel)."""

    index: int              # 0-based; the file is mdb{index+1:03d}.pgm
    background: str         # F, G, D
    lesions: tuple          # LesionPlan per Info.txt row; empty for a normal film

    @property
    def refnum(self) -> str:
        return f"mdb{self.index + 1:03d}"

    @property
    def side(self) -> str:
        """``"right"`` for odd reference numbers (chest wall on the right edge), else ``"left"``."""
        return "right" if (self.index + 1) % 2 == 1 else "left"


def _largest_remainder(weights, total: int) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (Hamilton's method)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = w / w.sum() * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist()


def _abnormal_specs() -> dict:
    """Per (class, severity): the list of image specs, each a tuple of LesionPlan rows."""
    specs = {}
    for key, n_img in PHANTOM_IMAGES.items():
        cls, sev = key
        multi = PHANTOM_MULTI_ROW.get(key, ())
        no_coord = PHANTOM_NO_COORDINATES.get(key, 0)
        items = [tuple(LesionPlan(cls, sev) for _ in range(k)) for k in multi]
        n_single = n_img - len(multi) - no_coord
        items += [(LesionPlan(cls, sev),) for _ in range(n_single)]
        items += [(LesionPlan(cls, sev, with_coordinates=False),) for _ in range(no_coord)]
        specs[key] = items
    return specs


def plan_phantom(n_images: int = FULL_SIZE, seed: int = 0) -> list[ImagePlan]:
    """Decide, for each film, its background tissue and its lesions (no pixels yet).

    The full set (``n_images=322``) has exactly the counts of the module
    docstring; smaller sets scale the number of abnormal films and take them
    round-robin over the class/severity pairs.
    """
    if not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    n_images = int(n_images)
    plan_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    specs = _abnormal_specs()
    n_abnormal = min(n_images, int(round(n_images * (FULL_SIZE - PHANTOM_NORMAL_IMAGES) / FULL_SIZE)))
    if n_images == FULL_SIZE:
        chosen = [s for key in _ROUND_ROBIN for s in specs[key]]
    else:
        chosen, queues = [], {k: list(v) for k, v in specs.items()}
        while len(chosen) < n_abnormal:
            for key in _ROUND_ROBIN:
                if queues[key] and len(chosen) < n_abnormal:
                    chosen.append(queues[key].pop(0))
    # which films are abnormal, and their tissue (pairs share it)
    films = plan_rng.permutation(n_images)[:n_abnormal]
    lesions_of = {int(i): spec for i, spec in zip(films, chosen)}
    n_pairs = (n_images + 1) // 2
    counts = _largest_remainder([PHANTOM_BACKGROUND[t] for t in "FGD"], n_pairs)
    pair_tissue = plan_rng.permutation(np.repeat(np.array(list("FGD")), counts))
    return [ImagePlan(i, str(pair_tissue[i // 2]), lesions_of.get(i, ())) for i in range(n_images)]


# ------------------------------------------------------------------ texture
def power_law_filter(size: int, beta: float = _BETA, f_low: float | None = None) -> np.ndarray:
    """Fourier amplitude ``A(f) = (f^2 + f0^2)^(-beta/4)`` on a ``(size, size)`` grid (float32).

    ``f`` in cycles per pixel from :func:`numpy.fft.fftfreq`; ``f0`` defaults
    to 3 cycles per image. The power spectrum of the filtered white noise is
    ``A^2 = (f^2 + f0^2)^(-beta/2)``, i.e. ``1/f^beta`` above ``f0``. DC is 0.
    """
    if f_low is None:
        f_low = 3.0 / size
    f = np.fft.fftfreq(size)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    amp = (f2 + f_low ** 2) ** (-beta / 4.0)
    amp[0, 0] = 0.0
    return amp.astype(np.float32)


def power_law_texture(rng, size: int, beta: float = _BETA, filt=None) -> np.ndarray:
    """Two independent ``(size, size)`` fields of 1/f^beta Gaussian noise, each zero-mean, unit-std.

    A complex white spectrum ``Z = X + iY`` (X, Y i.i.d. standard normal) is
    shaped by :func:`power_law_filter` and inverse transformed; since Z is not
    Hermitian the result is complex, and its real and imaginary parts are two
    independent real fields with the same power spectrum (one FFT, two
    textures). Returns float32 of shape ``(2, size, size)``.
    """
    if filt is None:
        filt = power_law_filter(size, beta)
    spec = (rng.standard_normal((size, size), dtype=np.float32)
            + 1j * rng.standard_normal((size, size), dtype=np.float32)).astype(np.complex64)
    field = np.fft.ifft2(spec * filt)
    out = np.stack([field.real, field.imag]).astype(np.float32)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + np.float32(1e-12)
    return out


def _resize_float(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape == (size, size):
        return a
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _smooth_noise(rng, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth unit-ish Gaussian noise on an ``(h, w)`` box: a coarse grid, resized bilinearly."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _sigmoid(x):
    """The logistic function, written with tanh so that it never overflows."""
    return np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x))


# ------------------------------------------------------------------ breast
def _blur121(a: np.ndarray, passes: int = 2) -> np.ndarray:
    """Separable [1, 2, 1] / 4 smoothing, ``passes`` times (edges repeat)."""
    for _ in range(passes):
        p = np.pad(a, 1, mode="edge")
        a = (p[:-2] + 2 * p[1:-1] + p[2:]) * np.float32(0.25)
        a = (a[:, :-2] + 2 * a[:, 1:-1] + a[:, 2:]) * np.float32(0.25)
    return a


def _tissue_lines(rng, L: int, nipple_u: float, nipple_v: float, depth: float) -> np.ndarray:
    """Faint ducts and ligaments: curved streaks running from the nipple towards the chest wall.

    Drawn by splatting points along each curve into an ``(L, L)`` grid and
    smoothing; each streak fades along its length. Normal tissue thereby has
    linear structure too, so that lines alone do not give lesions away.
    """
    layer = np.zeros((L, L), dtype=np.float32)
    for _ in range(int(rng.integers(10, 21))):
        length = rng.uniform(0.35, 0.9) * depth * L
        n = max(2, int(length / 0.5))
        heading = np.pi + rng.uniform(-1.0, 1.0) + np.cumsum(rng.normal(0, 0.02, size=n))
        step = length / n
        x = nipple_u * L * rng.uniform(0.85, 1.0) + np.cumsum(step * np.cos(heading))
        y = nipple_v * L + rng.normal(0, 0.03) * L + np.cumsum(step * np.sin(heading))
        ok = (x >= 0) & (x < L) & (y >= 0) & (y < L)
        weight = (rng.uniform(6, 14) * (1 - np.arange(n) / n)).astype(np.float32)
        np.add.at(layer, (y[ok].astype(np.int64), x[ok].astype(np.int64)), weight[ok] * np.float32(0.5))
    return _blur121(layer)


@dataclass
class _Breast:
    image: np.ndarray        # (S, S) float32 grey levels, breast on the left
    inner: np.ndarray        # (L, L) bool: where lesion centres may go
    base: int                # L
    background: float        # grey level outside the breast


def _draw_breast(rng, size: int, tissue: str, filt) -> _Breast:
    """The lesion-free film (chest wall on the left), as float32 grey levels."""
    L = filt.shape[0]
    t1, t2 = power_law_texture(rng, L, filt=filt)
    g = (np.arange(L, dtype=np.float32) + np.float32(0.5)) / np.float32(L)
    u, v = g[None, :], g[:, None]                                # u: across (0 = chest wall), v: down
    a = np.float32(rng.uniform(0.52, 0.74))                      # depth of the breast
    b = np.float32(rng.uniform(0.36, 0.46))                      # half height
    vc = np.float32(np.clip(0.5 + rng.normal(0, 0.03), 0.42, 0.58))
    droop = np.float32(rng.uniform(0.0, 0.08))
    du = u / a
    dv = (v - vc - droop * du * du) / b
    rho = np.sqrt(du * du + dv * dv)                             # (L, L) elliptical radius
    theta = np.arctan2(dv, du)
    ph = rng.uniform(0, 2 * np.pi, size=2).astype(np.float32)
    rho = rho / (1 + np.float32(0.04) * np.sin(2 * theta + ph[0])
                 + np.float32(0.025) * np.sin(3 * theta + ph[1]))
    edge = np.float32(rng.uniform(0.10, 0.18))
    thick = np.clip((1 - rho) / edge, 0, 1) ** np.float32(0.6)  # 0 outside, 1 inside
    pu = np.float32(rng.uniform(0.18, 0.32))
    pv = np.float32(rng.uniform(0.30, 0.50))
    pec_d = 1 - (u / pu) ** np.float32(0.9) - v / pv              # > 0 inside the pectoral triangle
    pec = _sigmoid(pec_d / np.float32(0.015))
    bias, gland_amp, _ = _TISSUE[tissue]
    prior = np.exp(-((du - np.float32(0.35)) / np.float32(0.4)) ** 2 - (dv / np.float32(0.75)) ** 2)
    gland = _sigmoid((t1 + 2.0 * (prior - 0.5) + bias) / np.float32(0.45))
    fat = np.float32(rng.uniform(62, 85))
    lines = _tissue_lines(rng, L, float(a), float(vc + droop), float(a))
    breast = thick * (fat + np.float32(gland_amp) * gland + np.float32(7.0) * t2 + lines)
    muscle = pec * (np.float32(rng.uniform(150, 185)) + np.float32(10.0) * t2 - np.float32(40.0) * u / pu)
    background = np.float32(rng.uniform(3, 12))
    img = np.maximum(breast, muscle) + background
    inner = (rho < 0.78) & (pec_d < -0.08) & (u > 0.04)
    image = np.array(_resize_float(img.astype(np.float32), size), dtype=np.float32)  # writable copy
    return _Breast(image, inner, L, float(background))


# ------------------------------------------------------------------ lesion helpers
def _box(size, r: float, c: float, half: float):
    """Integer box around (r, c) clipped to an image of side ``size`` (or shape
    ``(H, W)``), and the pixel offsets ``dy (h, 1)``, ``dx (1, w)`` inside it."""
    h, w = (size, size) if np.isscalar(size) else size
    r0, r1 = max(0, int(r - half)), min(h, int(r + half) + 2)
    c0, c1 = max(0, int(c - half)), min(w, int(c + half) + 2)
    dy = (np.arange(r0, r1, dtype=np.float32) - np.float32(r))[:, None]
    dx = (np.arange(c0, c1, dtype=np.float32) - np.float32(c))[None, :]
    return (slice(r0, r1), slice(c0, c1)), dy, dx


def _lobed_radius(rng, theta, base: float, harmonics, amplitude: float):
    """``base * (1 + sum_k a_k cos(k theta + phi_k))`` with random phases and amplitudes."""
    out = np.ones_like(theta)
    for k in harmonics:
        a = np.float32(amplitude * rng.uniform(0.3, 1.0) / math.sqrt(len(harmonics)))
        out += a * np.cos(np.float32(k) * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    return np.float32(base) * np.maximum(out, np.float32(0.4))


def _mass(canvas, rng, r, c, R, m, amp, *, margin, lobes, lobe_amp, micro_amp, hetero, size):
    """A dome-shaped mass with a (lobulated) outline and a logistic margin of relative width ``margin``."""
    sl, dy, dx = _box(size, r, c, 1.3 * R)
    d = np.sqrt(dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    rad = _lobed_radius(rng, theta, 0.8 * R, lobes, lobe_amp)
    if micro_amp > 0:
        rad = rad * _lobed_radius(rng, theta, 1.0, (9, 12, 15), micro_amp)
    x = d / rad                                                  # 1 on the outline
    prof = _sigmoid((1 - x) / np.float32(margin)) * (1 - np.float32(0.3) * np.minimum(x, 1) ** 2)
    if hetero > 0:
        h, w = prof.shape
        prof = prof * (1 + np.float32(hetero) * _smooth_noise(rng, h, w, max(3.0, R / 4)))
    canvas[sl] += np.float32(amp) * prof


def _spot(layer, r, c, sigma_long, sigma_short, angle, peak):
    """One anisotropic Gaussian speck (a calcification), composited into ``layer`` by maximum.

    Maximum, not sum: specks that touch stay specks instead of merging into
    a saturated worm.
    """
    half = 4 * sigma_long + 1
    sl, dy, dx = _box(layer.shape, r, c, half)
    ca, sa = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    t = dx * ca + dy * sa
    n = -dx * sa + dy * ca
    spot = np.float32(peak) * np.exp(-0.5 * ((t / np.float32(sigma_long)) ** 2
                                              + (n / np.float32(sigma_short)) ** 2))
    np.maximum(layer[sl], spot, out=layer[sl])


def _speck_sigma(m: float, s: float) -> float:
    """Typical speck width (Gaussian sigma, pixels): about 3 px benign, 1.1 px malignant at 1024."""
    return (3.0 - 1.9 * m) * s


def _calcs(canvas, rng, points, angles, m, s, amp_scale=1.0):
    """Draw specks at ``points`` (k, 2) (row, col) with benign-to-malignant looks set by ``m``.

    Low ``m``: round (elongation 1), uniform size and brightness. High ``m``:
    small, elongated along ``angles``, with varied size and brightness.
    """
    k = len(points)
    if k == 0:
        return
    cv = 0.1 + 0.4 * m                                            # pleomorphism
    sig = np.maximum(_speck_sigma(m, s) * np.exp(rng.normal(0, cv, size=k)), 0.6)
    elong = 1 + rng.uniform(0, 1, size=k) * (1.6 * m)
    peak = np.maximum((70 + 25 * rng.normal(0, cv, size=k)) * amp_scale, 25.0)
    pts = np.asarray(points, dtype=np.float64)
    half = 4 * float((sig * elong).max()) + 2
    r0 = max(0, int(pts[:, 0].min() - half))
    c0 = max(0, int(pts[:, 1].min() - half))
    r1 = min(canvas.shape[0], int(pts[:, 0].max() + half) + 1)
    c1 = min(canvas.shape[1], int(pts[:, 1].max() + half) + 1)
    if r1 <= r0 or c1 <= c0:
        return
    layer = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    for (pr, pc), sg, el, ang, pk in zip(pts, sig, elong, angles, peak):
        _spot(layer, pr - r0, pc - c0, float(sg * el), float(sg), float(ang), float(pk))
    canvas[r0:r1, c0:c1] += layer


def _calc_cluster(canvas, rng, r, c, R, m, s):
    """A cluster of ``n`` specks inside radius ``R``; a fraction on linear/branching tracks."""
    n = max(3, int(round((4 + 26 * m) * math.exp(rng.normal(0, 0.25)))))
    frac_linear = float(np.clip(1.3 * m - 0.3 + rng.normal(0, 0.1), 0, 0.95))
    n_lin = int(round(frac_linear * n))
    n_branch = 1 + int(round(2 * m * rng.random()))
    min_step = 3.5 * _speck_sigma(m, s)
    pts, angs = [], []
    pos, direction = np.zeros(2), 0.0
    for j in range(n_lin):                                        # linear / branching tracks
        if j % max(1, n_lin // n_branch) == 0:
            pos = rng.normal(0, 0.2 * R, size=2)
            direction = rng.uniform(0, 2 * np.pi)
        direction += rng.normal(0, 0.25)
        step = max(rng.uniform(0.08, 0.2) * R, min_step)
        pos = pos + step * np.array([math.sin(direction), math.cos(direction)])
        pts.append(pos.copy())
        angs.append(direction)
    for _ in range(n - n_lin):                                    # scattered over the cluster disc
        rr, aa = 0.8 * R * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        pts.append(np.array([rr * math.sin(aa), rr * math.cos(aa)]))
        angs.append(rng.uniform(0, np.pi))
    pts = np.array(pts)
    norm = np.linalg.norm(pts, axis=1, keepdims=True)
    pts = np.where(norm > 0.95 * R, pts * (0.95 * R / np.maximum(norm, 1e-6)), pts)
    _calcs(canvas, rng, pts + np.array([r, c]), angs, m, s)


def _spiculated(canvas, rng, r, c, R, m, amp, s, size):
    """A core mass (radius ``core``) and thin spicules radiating from its edge out to about ``R``."""
    core = rng.uniform(0.35, 0.5) * R
    _mass(canvas, rng, r, c, core / 0.8, m, amp * (0.5 + 0.5 * m), margin=0.1 + 0.1 * m,
          lobes=(2, 3, 5), lobe_amp=0.15 + 0.2 * m, micro_amp=0.0, hetero=0.15, size=size)
    n_spic = max(4, int(round(6 + 16 * m + rng.normal(0, 2))))
    sl, dy, dx = _box(size, r, c, 1.05 * R)
    patch = np.zeros(np.broadcast_shapes(dy.shape, dx.shape), dtype=np.float32)
    for _ in range(n_spic):
        phi = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.7, 1.0) * R
        width = max(0.7, rng.uniform(1.0, 2.2) * s)
        bend = rng.normal(0, 0.08)
        ca, sa = np.float32(math.cos(phi)), np.float32(math.sin(phi))
        t = dx * ca + dy * sa
        n = -dx * sa + dy * ca - np.float32(bend) * t * t / np.float32(length)
        env = np.clip((t - np.float32(0.5 * core)) / np.float32(0.3 * core), 0, 1) \
            * np.clip(1 - t / np.float32(length), 0, 1)            # starts at the core's edge
        strength = amp * rng.uniform(0.35, 0.7)
        patch += np.float32(strength) * env * np.exp(-0.5 * (n / np.float32(width)) ** 2)
    canvas[sl] += patch


def _bilinear(a: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Sample ``a`` at float coordinates (clipped to the array)."""
    h, w = a.shape
    yy = np.clip(yy, 0, h - 1.001)
    xx = np.clip(xx, 0, w - 1.001)
    y0, x0 = yy.astype(np.int64), xx.astype(np.int64)
    fy, fx = (yy - y0).astype(np.float32), (xx - x0).astype(np.float32)
    top = a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx
    bottom = a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _distortion(canvas, rng, r, c, R, m, amp, s, size):
    """Architectural distortion: contract the tissue towards (r, c) and add converging lines."""
    alpha = np.float32(0.25 + 0.45 * m)
    sl, dy, dx = _box(size, r, c, 1.5 * R)
    src, _, _ = _box(size, r, c, 1.5 * R * (1 + float(alpha)) + 2)   # what the warp may read
    region = canvas[src].copy()
    d2 = dy * dy + dx * dx
    pull = 1 + alpha * np.exp(-d2 / np.float32(R * R))           # sample further out: contraction
    yy = (np.float32(r) - src[0].start) + dy * pull
    xx = (np.float32(c) - src[1].start) + dx * pull
    canvas[sl] = _bilinear(region, yy, xx)
    n_lines = max(3, int(round(5 + 12 * m + rng.normal(0, 1.5))))
    line = np.zeros(canvas[sl].shape, dtype=np.float32)
    for _ in range(n_lines):
        phi = rng.uniform(0, 2 * np.pi)
        ca, sa = np.float32(math.cos(phi)), np.float32(math.sin(phi))
        t = dx * ca + dy * sa
        n = -dx * sa + dy * ca
        length = np.float32(rng.uniform(0.8, 1.2) * R)
        env = np.clip(t / (np.float32(0.15) * length), 0, 1) * np.clip(1 - t / length, 0, 1)
        width = np.float32(max(0.7, rng.uniform(0.8, 1.8) * s))
        line += np.float32(amp * rng.uniform(0.25, 0.5)) * env * np.exp(-0.5 * (n / width) ** 2)
    canvas[sl] += line


def _asymmetry(canvas, rng, r, c, R, m, amp, size):
    _mass(canvas, rng, r, c, R / 0.8 * 0.9, m, amp * 0.55 * (0.7 + 0.6 * rng.random()),
          margin=0.35, lobes=(2, 3, 4), lobe_amp=0.3, micro_amp=0.0, hetero=0.6, size=size)
    if m > 0.3:                                                   # a focal denser centre
        _mass(canvas, rng, r, c, R * 0.35, m, amp * 0.5 * (m - 0.3), margin=0.25,
              lobes=(2, 3), lobe_amp=0.2, micro_amp=0.0, hetero=0.3, size=size)


def _draw_lesion(canvas, rng, lesion: LesionPlan, r, c, R, m, amp, s, size, inner_points=None):
    cls = lesion.abnormality
    if cls == "CALC":
        if lesion.with_coordinates:
            _calc_cluster(canvas, rng, r, c, R, m, s)
        else:                                                     # spread over the breast
            k = int(rng.integers(20, 50))
            pick = inner_points[rng.integers(0, len(inner_points), size=k)]
            _calcs(canvas, rng, pick, rng.uniform(0, np.pi, size=k), m, s, amp_scale=0.9)
    elif cls == "CIRC":
        _mass(canvas, rng, r, c, R, m, amp, margin=0.03 + 0.08 * m, lobes=(2, 3),
              lobe_amp=0.06 + 0.12 * m, micro_amp=0.05 * m, hetero=0.05 + 0.1 * m, size=size)
    elif cls == "SPIC":
        _spiculated(canvas, rng, r, c, R, m, amp, s, size)
    elif cls == "MISC":
        _mass(canvas, rng, r, c, R, m, amp, margin=0.12 + 0.15 * m,
              lobes=(2, 3, 4, 5, 7), lobe_amp=0.15 + 0.25 * m, micro_amp=0.04 + 0.06 * m,
              hetero=0.25, size=size)
    elif cls == "ARCH":
        _distortion(canvas, rng, r, c, R, m, amp, s, size)
    elif cls == "ASYM":
        _asymmetry(canvas, rng, r, c, R, m, amp, size)
    else:  # pragma: no cover - the plan only holds the classes above
        raise ValueError(f"unknown abnormality class {cls!r}")


def _label_marker(canvas, rng, taken: np.ndarray, size: int) -> None:
    """A bright label with dark glyphs in a corner on the far side, if it misses the breast."""
    h, w = max(4, int(0.05 * size)), max(8, int(rng.uniform(0.10, 0.16) * size))
    gap = max(2, size // 64)
    for top in (int(0.03 * size), size - int(0.03 * size) - h):
        left = size - int(0.04 * size) - w
        r0, r1, c0, c1 = top - gap, top + h + gap, left - gap, left + w + gap
        if r0 < 0 or c0 < 0 or taken[r0:r1, c0:c1].any():
            continue
        block = np.full((h, w), np.float32(rng.uniform(225, 250)))
        n_glyph = max(1, w // max(3, h // 2 + 1) - 1)
        gw = max(1, w // (n_glyph * 2 + 1))
        for k in range(n_glyph):
            g0 = gw + 2 * k * gw
            gh0, gh1 = h // 5, h - h // 5
            block[gh0:gh1, g0:g0 + gw] = np.float32(rng.uniform(20, 60))
        canvas[top:top + h, left:left + w] = block
        return


def render_image(plan: ImagePlan, image_size: int, image_seed, filt=None):
    """Draw one film. Returns ``(pixels uint8 (S, S), rows)``, rows as ``Info.txt`` tuples.

    Each row is ``(refnum, background, class, severity, x, y, radius)`` with
    ``x, y, radius = None`` for a row without coordinates and ``(refnum, bg,
    "NORM", None, None, None, None)`` for a normal film; ``x, y`` use the
    database's bottom-left origin (``y = S - row``).
    """
    size = int(image_size)
    rng = np.random.default_rng(image_seed)
    if filt is None:
        filt = power_law_filter(min(size, _MAX_BASE))
    s = size / 1024.0
    breast = _draw_breast(rng, size, plan.background, filt)
    canvas = breast.image
    inner_rc = np.argwhere(breast.inner).astype(np.float64)
    inner_rc = (inner_rc + rng.uniform(0, 1, size=inner_rc.shape)) * (size / breast.base)
    contrast = _TISSUE[plan.background][2]
    rows, placed = [], []
    for lesion in plan.lesions:
        cls, sev = lesion.abnormality, lesion.severity
        m = float(rng.beta(2, 4) if sev == "B" else rng.beta(4, 2))
        lo, hi = _RADIUS_RANGE[cls]
        R = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) * s
        R = max(R, 2.0)
        r = c = None
        for _ in range(50):                                       # keep several lesions apart
            r, c = inner_rc[rng.integers(len(inner_rc))]
            if all((r - pr) ** 2 + (c - pc) ** 2 > (R + pR) ** 2 for pr, pc, pR in placed):
                break
        placed.append((r, c, R))
        amp = contrast * rng.uniform(0.75, 1.25)
        _draw_lesion(canvas, rng, lesion, r, c, R, m, amp, s, size, inner_points=inner_rc)
        if lesion.with_coordinates:
            row, col = int(round(r)), int(round(c))
            col_out = size - 1 - col if plan.side == "right" else col
            rows.append((plan.refnum, plan.background, cls, sev,
                         col_out, size - row, max(1, int(round(R)))))
        else:
            rows.append((plan.refnum, plan.background, cls, sev, None, None, None))
    tissue = canvas > np.float32(breast.background + 2)        # breast (and lesions) before the noise
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(1.8)
    if rng.random() < 0.33:
        _label_marker(canvas, rng, tissue, size)
    if plan.side == "right":
        canvas = canvas[:, ::-1]
    pixels = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if not plan.lesions:
        rows.append((plan.refnum, plan.background, "NORM", None, None, None, None))
    return np.ascontiguousarray(pixels), rows


def _info_line(row) -> str:
    refnum, bg, cls, sev, x, y, radius = row
    if cls == "NORM":
        return f"{refnum} {bg} NORM "          # the real file has a trailing space here
    if x is None:
        return f"{refnum} {bg} {cls} {sev}"
    return f"{refnum} {bg} {cls} {sev} {x} {y} {radius}"


# ------------------------------------------------------------------ writing a set
def _marker_text(seed: int, image_size: int, n_images: int, status: str, counts=None) -> str:
    lines = [
        "THESE ARE SYNTHETIC PHANTOM IMAGES, NOT PATIENT DATA.",
        "",
        f"kind: {PHANTOM_LABEL}",
        f"note: {PHANTOM_NOTICE}; generated by {GENERATOR_NAME}, not a medical database",
        f"generator: {GENERATOR_NAME}",
        f"version: {GENERATOR_VERSION}",
        f"seed: {seed}",
        f"image_size: {image_size}",
        f"n_images: {n_images}",
        f"texture: power-law 1/f^beta noise, beta = {_BETA:g}",
    ]
    if counts:
        lines += [f"{k}: {v}" for k, v in counts.items()]
    lines.append(f"status: {status}")
    return "\n".join(lines) + "\n"


def _is_same_phantom(marker: dict | None, seed, image_size, n_images) -> bool:
    return bool(marker) and marker.get("generator") == GENERATOR_NAME and \
        marker.get("seed") == str(seed) and marker.get("image_size") == str(image_size) and \
        marker.get("n_images") == str(n_images)


def _check_args(seed, n_images, image_size):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n_images, (int, np.integer)) or not 1 <= n_images <= 999:
        raise ValueError(f"n_images must be an integer in [1, 999] (names are mdbNNN), got {n_images!r}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")


def generate_phantom(out_dir, seed: int = 0, n_images: int = FULL_SIZE, image_size: int = 1024,
                     progress: bool = True) -> Path:
    """Write a phantom mini-MIAS set into ``out_dir`` and return the folder.

    Writes ``mdb001.pgm`` ... (8-bit binary PGM, ``image_size`` square),
    ``Info.txt`` (real format, bottom-left origin) and ``PHANTOM.txt``
    (``key: value`` lines: ``kind: phantom``, ``seed``, ``image_size``,
    ``n_images``, ``version``, the counts, and the statement that these are
    synthetic phantom images, not patient data). The marker is written first
    with ``status: incomplete`` and rewritten with ``status: complete`` last,
    so an interrupted run is recognisable.

    The same ``(seed, n_images, image_size)`` gives byte-identical files.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty, and is not already
            a phantom set with the same seed, size and number of images (it is
            never overwritten: choose another folder or delete it).
    """
    _check_args(seed, n_images, image_size)
    seed, n_images, image_size = int(seed), int(n_images), int(image_size)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"phantom output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        marker = read_phantom_marker(out)
        if not _is_same_phantom(marker, seed, image_size, n_images):
            what = (f"a phantom set with seed {marker.get('seed')}, image_size {marker.get('image_size')}, "
                    f"n_images {marker.get('n_images')}" if marker else "files that are not a phantom set")
            raise FileExistsError(
                f"refusing to write a phantom set into {out}: the folder is not empty and holds {what}; "
                f"choose an empty or new folder, or delete this one")
    out.mkdir(parents=True, exist_ok=True)
    (out / PHANTOM_MARKER).write_text(_marker_text(seed, image_size, n_images, "incomplete"),
                                      encoding="utf-8")
    plan = plan_phantom(n_images, seed)
    image_seeds = np.random.SeedSequence(seed).spawn(2)[1].spawn(n_images)
    filt = power_law_filter(min(image_size, _MAX_BASE))
    comment = f"{PHANTOM_LABEL}: {PHANTOM_NOTICE} (mammo_demo.phantom seed {seed})"
    from tqdm.auto import tqdm
    lines = ["REFNUM BG CLASS SEVERITY X Y RADIUS "]
    n_rows = 0
    with tqdm(total=n_images, desc=f"{PHANTOM_LABEL} mini-MIAS (seed {seed})", unit="image",
              disable=not progress) as bar:
        for item, ss in zip(plan, image_seeds):
            pixels, rows = render_image(item, image_size, ss, filt)
            write_pgm(out / f"{item.refnum}.pgm", pixels, comment=comment)
            lines += [_info_line(r) for r in rows]
            n_rows += len(rows)
            bar.update(1)
    (out / INFO_FILENAME).write_text("\n".join(lines) + "\n", encoding="ascii")
    counts = phantom_counts(plan)
    (out / PHANTOM_MARKER).write_text(
        _marker_text(seed, image_size, n_images, "complete", counts), encoding="utf-8")
    return out


def phantom_counts(plan) -> dict:
    """Rows and images per class/label of a plan (what PHANTOM.txt lists)."""
    rows = [les for p in plan for les in p.lesions]
    out = {"images": len(plan), "rows": len(rows) + sum(1 for p in plan if not p.lesions),
           "normal_images": sum(1 for p in plan if not p.lesions)}
    for key in ("B", "M"):
        name = "benign" if key == "B" else "malignant"
        out[f"{name}_images"] = sum(1 for p in plan if p.lesions and p.lesions[0].severity == key)
        out[f"{name}_rows"] = sum(1 for les in rows if les.severity == key)
    for cls in ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM"):
        out[f"{cls}_rows"] = sum(1 for les in rows if les.abnormality == cls)
    out["rows_without_coordinates"] = sum(1 for les in rows if not les.with_coordinates)
    return out


# ------------------------------------------------------------------ the cache
def default_cache_dir() -> Path:
    """Root of nnlite's cache: ``$NNLITE_CACHE``, else ``$XDG_CACHE_HOME/nnlite``, else ``~/.cache/nnlite``."""
    env = os.environ.get("NNLITE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nnlite"


def phantom_cache_path(seed: int = 0, image_size: int = 1024, cache_dir=None,
                       n_images: int = FULL_SIZE) -> Path:
    """``<cache>/mias-phantom-seed<seed>-<size>`` (``-n<N>`` appended when ``n_images != 322``)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = f"mias-{PHANTOM_LABEL}-seed{int(seed)}-{int(image_size)}"
    if int(n_images) != FULL_SIZE:
        name += f"-n{int(n_images)}"
    return root / name


def is_complete_phantom(folder, seed: int, image_size: int, n_images: int = FULL_SIZE) -> bool:
    """True when ``folder`` holds a finished phantom set of this seed, size, count and generator version."""
    folder = Path(folder)
    marker = read_phantom_marker(folder)
    if not _is_same_phantom(marker, seed, image_size, n_images):
        return False
    if marker.get("status") != "complete" or marker.get("version") != str(GENERATOR_VERSION):
        return False
    if not (folder / INFO_FILENAME).is_file():
        return False
    return all((folder / f"mdb{i + 1:03d}.pgm").is_file() for i in range(int(n_images)))


def ensure_phantom(seed: int = 0, image_size: int = 1024, cache_dir=None, progress: bool = True,
                   n_images: int = FULL_SIZE) -> Path:
    """The cached phantom set for ``(seed, image_size, n_images)``, generated on first use.

    The set lives in :func:`phantom_cache_path` under ``cache_dir`` (default
    :func:`default_cache_dir`). It is generated into a temporary sibling
    folder and renamed into place when complete, so an interrupted run or two
    runs at once never leave a half-written set behind; an incomplete set or
    one from an older generator version is replaced.
    """
    _check_args(seed, n_images, image_size)
    target = phantom_cache_path(seed, image_size, cache_dir, n_images)
    if is_complete_phantom(target, seed, image_size, n_images):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        generate_phantom(tmp, seed=seed, n_images=n_images, image_size=image_size, progress=progress)
        if target.exists():
            if is_complete_phantom(target, seed, image_size, n_images):
                return target                       # another run finished first
            marker = read_phantom_marker(target)
            if marker is None or marker.get("generator") != GENERATOR_NAME:
                raise FileExistsError(f"cache folder {target} exists and is not a phantom set; "
                                      f"remove it or pass another cache_dir")
            shutil.rmtree(target)                   # stale: incomplete or older generator
        try:
            os.replace(tmp, target)
        except OSError:
            if not is_complete_phantom(target, seed, image_size, n_images):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
