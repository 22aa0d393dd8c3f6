"""Whole-mammogram preprocessing: the thesis' two methods, made to work on scanned films.

:func:`preprocess` turns one film (a DICOM path, a :class:`~mammo_demo.dicom.DicomImage`
or an array) into the network's input ``x``, float32 ``(1, size, size)`` in
``[0, 1]`` (tissue bright, breast on the left), and a :class:`PreprocessRecord`
saying what it did.

Method ``"naive"`` (thesis): blank the brightest marker pixels (values at or
above ``marker_level``, default 0.95 of the display range, become 0), downscale
by 8 with area averaging (the thesis' factor for 4000-pixel films; by default
the factor follows the film, ``round(long side / 500)``, so 8 for a real film
and 2 for a 960-pixel phantom film), flip the breast to the left, pad to a
square and resize to ``size``. The box is the whole film.

Method ``"crop"`` (thesis: blur, Otsu, largest component, bounding box, resize),
with four fixes for what breaks it on real scanned films (CBIS-DDSM):

1. **Film borders and scanner edges.** Bright strips along the film's sides
   join the breast into one component under a global threshold, and the crop
   becomes the whole film. Two rules find them on the threshold mask
   (:func:`find_borders`), and what they find is removed before labelling:

   * :func:`film_borders`, full borders: a band of at most ``max_border``
     (10 %) of the lines (rows or columns) at an image edge in which every
     line is at least 95 % above threshold, followed inwards by a line that
     is not (removed with one more line). Tissue at the chest wall never
     fills 95 % of a column once the top and bottom strips are discounted,
     and where it does (a film filled top to bottom) it continues past 10 %
     of the width, so it is not taken for a border.
   * :func:`edge_strips`, partial film edges and scanner edges along part of
     a side: in each line running inwards from a side, the run of mask pixels
     that touches the edge is *short* when it ends within 10 % of the
     dimension; at least 2 % of the side's length of consecutive lines whose
     short runs have about the same length (a strip has a width) is a strip.
     The tips of the breast outline at the chest wall give short runs too,
     but their length tapers line by line, so they stay. Where a strip runs
     along the breast only its stretches above and below the breast are
     found: those are what would stretch the box.
2. **Burned-in labels and markers** (``LCC``, ``RMLO``, lead markers) sit
   apart from the breast on the side opposite the chest wall. Once the borders
   that connected them to the breast are gone they are separate components,
   and only the **largest** component (the breast) makes the box.
3. **The skin line.** On 16-bit film data Otsu's threshold lands inside the
   tissue (the background is one dark peak, the tissue a wide spread, and
   the bright borders and labels pull the threshold up) and cuts off the
   skin line and the subcutaneous fat band, which are only a little brighter
   than the background. The mask threshold is therefore lowered from Otsu's
   ``t_otsu`` toward the background: with ``b`` the median and ``s`` the
   robust spread (1.4826 x median absolute deviation) of the pixels below
   ``t_otsu``, ``t = b + max(skin_fraction * (t_otsu - b), 4 s)`` (at most
   ``t_otsu``; ``skin_fraction`` 0.15). Wide bright borders would still pull
   ``t_otsu`` up, so the threshold is computed twice: once to find the
   borders, then again from the histogram without them. The box is grown by
   one work pixel on each side. ``threshold="otsu"`` gives the thesis' plain
   rule for comparison.
4. **Tall, narrow crops** (say 3900x1250) are not squashed: the crop, with the
   breast on the left, is **padded to a square** with the background level on
   the side away from the chest wall (on the right; a wide crop is padded
   equally above and below), then resized to ``size x size`` with area
   averaging. ``keep_aspect=False`` squashes, as the thesis did.

The work is done on a copy downscaled (area averaging) so that its long side
is at most ``work_size`` (512) pixels, blurred with a Gaussian of
``sigma`` (1) work pixel; the box is reported in the **original** film's
pixels as ``(top, bottom, left, right)``, ``bottom`` and ``right`` exclusive,
so that ``film[top:bottom, left:right]`` is the crop.

Breast side: the ``side`` argument, else the file's laterality tag, else the
image (the side of the film that holds more of the breast component's tissue,
i.e. its intensity-weighted centre of mass; the chest wall is the heavy side).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WORK_SIZE = 512
MARKER_LEVEL = 0.95
SIDES = ("L", "R")


# ------------------------------------------------------------------ image helpers
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of area averaging (each row sums to 1).

    Output pixel ``i`` covers the input interval ``[i s, (i + 1) s)`` with
    ``s = n_in / n_out``; its weight on input pixel ``j`` is the length of
    ``[j, j + 1)`` inside that interval, divided by ``s``. Works for
    shrinking and enlarging.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    low, high = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(high, j + 1) - np.maximum(low, j), 0.0, None)
    return (overlap / (high - low)).astype(np.float32)


def resize_area_reference(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaging resize as two matrix products, ``R @ img @ C.T`` (the readable reference)."""
    img = np.asarray(img, dtype=np.float32)
    rows = area_matrix(img.shape[0], height)   # (height, H)
    cols = area_matrix(img.shape[1], width)    # (width, W)
    return (rows @ img @ cols.T).astype(np.float32)


def _area_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area averaging along one axis through the running integral (O(n), same as the matrix).

    With ``S(x)`` the integral of the piecewise-constant signal from 0 to ``x``
    (a cumulative sum plus a fraction of the next pixel), output ``i`` is
    ``(S((i + 1) s) - S(i s)) / s`` with ``s = n_in / n_out``.
    """
    a = np.moveaxis(a, axis, 0)
    n_in = a.shape[0]
    cum = np.zeros((n_in + 1,) + a.shape[1:], dtype=np.float64)
    np.cumsum(a, axis=0, out=cum[1:])
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    whole = np.minimum(np.floor(edges).astype(np.int64), n_in)
    frac = (edges - whole).reshape((-1,) + (1,) * (a.ndim - 1))
    integral = cum[whole] + frac * a[np.minimum(whole, n_in - 1)]
    out = (integral[1:] - integral[:-1]) / (n_in / n_out)
    return np.moveaxis(out, 0, axis)


def resize_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a 2-D image to ``(height, width)`` by area averaging (equal to
    :func:`resize_area_reference`, in linear time)."""
    img = np.asarray(img, dtype=np.float32)
    if height < 1 or width < 1:
        raise ValueError(f"resize_area: bad output size {height}x{width}")
    out = _area_axis(_area_axis(img, height, 0), width, 1)
    return out.astype(np.float32)


def downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Area averaging by an integer ``factor``: the mean of each ``factor x factor`` block.

    Work pixel ``(i, j)`` covers original rows ``i f .. (i + 1) f - 1`` and columns
    ``j f .. (j + 1) f - 1``; the last rows and columns that do not fill a
    block (fewer than ``factor``) are dropped.
    """
    img = np.asarray(img, dtype=np.float32)
    if factor <= 1:
        return img.copy()
    height, width = img.shape[0] // factor, img.shape[1] // factor
    if height == 0 or width == 0:
        return resize_area(img, max(1, height), max(1, width))
    blocks = img[:height * factor, :width * factor].reshape(height, factor, width, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def shrink_to(img: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Area-average a square image to ``size x size``: block means first (fast on a
    4000-pixel crop), then :func:`resize_area` on what is left (less than twice
    ``size``). To fill whole blocks the image is first padded with ``fill`` on
    the right and at the bottom (fewer pixels than the block side)."""
    side = img.shape[0]
    factor = side // size
    if factor >= 2:
        extra = -side % factor
        if extra:
            img = np.pad(img, ((0, extra), (0, extra)), constant_values=fill)
        img = downscale(img, factor)
    return resize_area(img, size, size)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (kernel radius ``ceil(3 sigma)``, edges reflected)."""
    img = np.asarray(img, dtype=np.float32)
    if sigma <= 0:
        return img.copy()
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for k, weight in zip(range(2 * radius + 1), kernel):
            acc += weight * (padded[k:k + n, :] if axis == 0 else padded[:, k:k + n])
        out = acc
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256, value_range=None) -> float:
    """Otsu's threshold of a set of values (hand-written: a lesson subject).

    Histogram the values into ``bins`` bins with probabilities ``p_i`` and
    centres ``v_i``. A threshold after bin ``k`` splits them into class 0
    (bins ``0..k``) and class 1 (the rest), with

    * class probabilities ``w0(k) = sum_{i<=k} p_i`` and ``w1(k) = 1 - w0(k)``,
    * class means ``mu0(k) = sum_{i<=k} p_i v_i / w0(k)``, ``mu1(k)`` likewise,
    * the **between-class variance**
      ``sigma_B^2(k) = w0(k) w1(k) (mu0(k) - mu1(k))^2
      = (mu_T w0(k) - mu(k))^2 / (w0(k) w1(k))``,
      where ``mu(k) = sum_{i<=k} p_i v_i`` and ``mu_T = mu(last)`` is the mean of all.

    Otsu picks the ``k`` that maximises ``sigma_B^2``; since the total variance
    ``sigma_T^2 = sigma_W^2 + sigma_B^2`` does not depend on ``k``, that is the
    same as minimising the within-class variance ``sigma_W^2``. The second form
    needs only the cumulative sums ``w0`` and ``mu``: one pass, no loop.

    Returns the upper edge of bin ``k`` as a value: pixels ``> threshold`` are
    class 1 (the foreground). Where several ``k`` tie (empty bins between two
    modes give a plateau) the middle one is taken. A constant input returns
    that constant.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("otsu_threshold: no values")
    low, high = value_range if value_range is not None else (values.min(), values.max())
    if not high > low:
        return float(low)
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    p = counts / counts.sum()
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    mu_total = mu[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    between[-1] = -1.0                    # class 1 must not be empty
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    k = int(best[len(best) // 2])         # a plateau (empty bins between the modes): its middle
    return float(edges[k + 1])


def label_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected components of a boolean mask (hand-written; no SciPy).

    A two-pass labelling on **runs**: (1) each row's runs of True pixels are
    found with one ``diff`` (vectorised); (2) runs in neighbouring rows that
    touch (overlap, or touch diagonally when ``connectivity=8``) are merged in
    a union-find forest, walking both rows' runs with two pointers; (3) each
    run takes its tree's label, numbered 1, 2, ... in the order of the first
    pixel (row by row), and the labels are painted back with a cumulative sum.
    The Python loop runs over runs, not pixels, so a 500x300 mask takes
    milliseconds.

    Returns ``(labels, count)``: int32 labels of ``mask``'s shape, 0 = background.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"label_components expects a 2-D mask, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)                     # (H, W + 1): +1 at a run start, -1 after its end
    run_row, run_start = np.nonzero(step == 1)
    _, run_end = np.nonzero(step == -1)                # exclusive ends, same order as the starts
    n_runs = run_row.size
    if n_runs == 0:
        return np.zeros(mask.shape, dtype=np.int32), 0
    parent = list(range(n_runs))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]              # path halving
            i = parent[i]
        return i

    reach = 1 if connectivity == 8 else 0
    row_first = np.searchsorted(run_row, np.arange(height + 1))
    starts, ends = run_start.tolist(), run_end.tolist()
    for r in range(1, height):
        i, i_stop = int(row_first[r - 1]), int(row_first[r])
        j, j_stop = i_stop, int(row_first[r + 1])
        while i < i_stop and j < j_stop:
            if starts[i] < ends[j] + reach and starts[j] < ends[i] + reach:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)      # the earlier run is the root
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n_runs)])
    unique_roots, run_label = np.unique(roots, return_inverse=True)  # roots ascend = first-pixel order
    run_label = (run_label + 1).astype(np.int32)
    paint = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(paint, (run_row, run_start), run_label)
    np.add.at(paint, (run_row, run_end), -run_label)
    labels = np.cumsum(paint, axis=1)[:, :width].astype(np.int32)
    return labels, int(unique_roots.size)


def largest_component(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray, int]:
    """``(component mask, labels, count)``: the largest connected component of ``mask``."""
    labels, count = label_components(mask, connectivity)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool), labels, 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes)), labels, count


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of the True pixels, bottom/right exclusive; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def film_borders(mask: np.ndarray, line_fraction: float = 0.95, max_border: float = 0.10,
                 passes: int = 3) -> tuple[np.ndarray, dict]:
    """Find bright film borders in a threshold mask (fix 1 of the module docstring).

    For each side, the lines (rows for top/bottom, columns for left/right) are
    read from the edge inwards; a border is a run of lines from the edge, each
    at least ``line_fraction`` True over the span not already taken by the
    perpendicular borders, that ends before ``max_border`` of the image
    dimension. Repeated ``passes`` times, since a top strip found in one pass
    lowers the fill of the side columns in the next.

    Returns ``(border mask, widths)`` with ``widths = {"top": n, "bottom": n,
    "left": n, "right": n}`` in lines.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    widths = {"top": 0, "bottom": 0, "left": 0, "right": 0}

    def band(lines: np.ndarray, limit: int) -> int:
        # lines: (n_lines_from_edge, span) booleans; count the full lines from the edge
        fill = lines.mean(axis=1) >= line_fraction
        n = 0
        while n < len(fill) and fill[n]:
            n += 1
        return n if n <= limit else 0

    for _ in range(passes):
        r0, r1 = widths["top"], height - widths["bottom"]
        c0, c1 = widths["left"], width - widths["right"]
        if r1 - r0 < 4 or c1 - c0 < 4:
            break
        limit_rows = max(1, int(max_border * height))
        limit_cols = max(1, int(max_border * width))
        depth_r = min(height, limit_rows + 2)
        depth_c = min(width, limit_cols + 2)
        new = {
            "top": band(mask[:depth_r, c0:c1], limit_rows),
            "bottom": band(mask[::-1][:depth_r, c0:c1], limit_rows),
            "left": band(mask[r0:r1, :depth_c].T, limit_cols),
            "right": band(mask[r0:r1, ::-1][:, :depth_c].T, limit_cols),
        }
        if new == widths:
            break
        widths = new
    border = np.zeros(mask.shape, dtype=bool)
    border[:widths["top"], :] = True
    border[height - widths["bottom"]:, :] = True
    border[:, :widths["left"]] = True
    border[:, width - widths["right"]:] = True
    return border, widths


def edge_strips(mask: np.ndarray, max_border: float = 0.10, min_length: float = 0.02,
                gap: int = 1) -> np.ndarray:
    """Find partial film edges and scanner edges: thin bright strips along part of a side.

    In each line running inwards from a side (rows for left and right,
    columns for top and bottom), the run of True pixels that starts at the
    image edge is *short* when it ends within ``max_border`` of the
    dimension. A strip is a stretch of at least ``min_length`` of the side's
    length of consecutive lines whose short runs have about the **same
    length** (within 20 % or one pixel of the stretch's median): a strip has
    a width. The tips of the breast outline at the chest wall also give
    short runs, but their length changes line by line (the outline tapers),
    so they are kept. Where a strip lies along the breast, only the lines
    above and below the breast have short runs: those extensions are what
    would stretch the box, and they are what is removed. Returns the mask of
    the pixels to remove (each strip line's run and ``gap`` more pixels).
    """
    mask = np.asarray(mask, dtype=bool)
    remove = np.zeros(mask.shape, dtype=bool)
    views = ((mask, remove), (mask[:, ::-1], remove[:, ::-1]),
             (mask.T, remove.T), (mask[::-1].T, remove[::-1].T))
    for m, r in views:                      # the rows of m run inwards from one edge
        n_lines, depth = m.shape
        run = np.where(m.all(axis=1), depth, np.argmin(m, axis=1))   # length of the edge run
        short = (run > 0) & (run <= max(1, int(max_border * depth)))
        need = max(3, int(np.ceil(min_length * n_lines)))
        edges = np.diff(np.concatenate([[0], short.astype(np.int8), [0]]))
        for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if stop - first < need:
                continue
            width = np.median(run[first:stop])
            steady = np.abs(run[first:stop] - width) <= max(1.0, 0.2 * width)
            steps = np.diff(np.concatenate([[0], steady.astype(np.int8), [0]]))
            for a, b in zip(np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)):
                if b - a >= need:
                    for line in range(first + a, first + b):
                        r[line, :min(depth, run[line] + gap)] = True
    return remove


def blank_markers(img: np.ndarray, level: float = MARKER_LEVEL) -> np.ndarray:
    """A copy of ``img`` with the marker pixels (``>= level``) set to 0 (the thesis' naive step)."""
    out = np.array(img, dtype=np.float32, copy=True)
    out[out >= level] = 0.0
    return out


def pad_to_square(img: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Pad a breast-on-the-left image to a square: columns on the right, or rows above and below."""
    height, width = img.shape
    if height > width:
        return np.pad(img, ((0, 0), (0, height - width)), constant_values=fill)
    if width > height:
        top = (width - height) // 2
        return np.pad(img, ((top, width - height - top), (0, 0)), constant_values=fill)
    return img


def side_from_image(img: np.ndarray, weight_mask: np.ndarray | None = None,
                    background: float = 0.0) -> str:
    """``"L"`` if the intensity-weighted centre of mass (above ``background``) is in the left half."""
    weight = np.clip(np.asarray(img, dtype=np.float64) - background, 0.0, None)
    if weight_mask is not None:
        weight = weight * weight_mask
    column_mass = weight.sum(axis=0)
    total = column_mass.sum()
    if total <= 0:
        return "L"
    centre = (column_mass * (np.arange(img.shape[1]) + 0.5)).sum() / total
    return "L" if centre <= img.shape[1] / 2 else "R"


def find_borders(mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """Everything to remove from a threshold mask before labelling (fix 1): the full
    borders of :func:`film_borders` with one more line inside each, and the partial
    edges of :func:`edge_strips`. Returns ``(mask to remove, full-border widths)``."""
    _, widths = film_borders(mask)
    remove = np.zeros(mask.shape, dtype=bool)
    for name, n in widths.items():
        if n:
            remove[{"top": np.s_[:n + 1, :], "bottom": np.s_[-(n + 1):, :],
                    "left": np.s_[:, :n + 1], "right": np.s_[:, -(n + 1):]}[name]] = True
    remove |= edge_strips(mask & ~remove)
    return remove, widths


def _mask_threshold(blurred, exclude, rule: str, skin_fraction: float):
    """``(threshold, Otsu's threshold, background level)`` of the pixels not in ``exclude``
    (fix 3 of the module docstring)."""
    values = blurred if exclude is None else blurred[~exclude]
    if values.size < 16:
        values = blurred
    t_otsu = otsu_threshold(values)
    below = values[values <= t_otsu]
    background = float(np.median(below)) if below.size else float(values.min())
    spread = float(1.4826 * np.median(np.abs(below - background))) if below.size else 0.0
    if rule == "otsu":
        return t_otsu, t_otsu, background
    t = min(t_otsu, background + max(skin_fraction * (t_otsu - background), 4.0 * spread))
    return t, t_otsu, background


# ------------------------------------------------------------------ the record
@dataclass
class PreprocessRecord:
    """What :func:`preprocess` did to one film.

    Attributes:
        method: ``"crop"`` or ``"naive"``.
        box: ``(top, bottom, left, right)`` in the original film's pixels,
            bottom/right exclusive (the whole film for ``"naive"``).
        side: ``"L"`` or ``"R"``, the breast's chest-wall side on the original film.
        side_source: ``"argument"``, ``"tags"`` or ``"image"``.
        flipped: the crop was mirrored so that the breast is on the left.
        size: the side of the output.
        shape: the original film's ``(rows, columns)``.
        scale: the work copy's downscale factor.
        threshold, otsu_threshold, background: the mask threshold used, Otsu's,
            and the background level (``[0, 1]`` display scale; crop only).
        borders: border widths in original pixels per side (crop only).
        n_components: components in the mask after border removal.
        path, view, laterality, is_phantom: from the file, when read from one.
        stages: the preview's work-scale images (``original``, ``blurred``,
            ``threshold``, ``borders``, ``components``, ``component``,
            ``crop``, ``final``) and ``work_box``.
    """

    method: str
    box: tuple[int, int, int, int]
    side: str
    side_source: str
    flipped: bool
    size: int
    shape: tuple[int, int]
    scale: int = 1
    threshold: float | None = None
    otsu_threshold: float | None = None
    background: float | None = None
    borders: dict = field(default_factory=dict)
    n_components: int = 0
    path: Path | None = None
    view: str | None = None
    laterality: str | None = None
    is_phantom: bool = False
    stages: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """The record without the stage images (JSON-ready)."""
        out = {k: v for k, v in self.__dict__.items() if k != "stages"}
        out["path"] = None if self.path is None else str(self.path)
        out["box"] = list(self.box)
        out["shape"] = list(self.shape)
        return out


# ------------------------------------------------------------------ the pipeline
def load_film(path_or_array):
    """``(float32 film in [0, 1], info dict)`` from a path, a DicomImage or an array.

    Float arrays are taken as they are (expected in ``[0, 1]``, tissue bright);
    integer arrays are divided by their dtype's maximum.
    """
    from ..dicom import DicomImage, read_dicom
    if isinstance(path_or_array, (str, Path)):
        path_or_array = read_dicom(path_or_array)
    if isinstance(path_or_array, DicomImage):
        image = path_or_array
        info = dict(path=image.path, view=image.view, laterality=image.laterality,
                    is_phantom=image.is_phantom)
        return image.pixels, info
    arr = np.asarray(path_or_array)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ValueError(f"preprocess expects a 2-D film of at least 8x8 pixels, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("preprocess: the film has NaN or infinite values")
    return arr, dict(path=None, view=None, laterality=None, is_phantom=False)


def _resolve_side(side, info):
    if side is not None:
        side = str(side).upper()[:1]
        if side not in SIDES:
            raise ValueError(f"side must be 'L' or 'R' (or None), got {side!r}")
        return side, "argument"
    if info.get("laterality") in SIDES:
        return info["laterality"], "tags"
    return None, "image"


def _finish(crop: np.ndarray, flip: bool, size: int, keep_aspect: bool, fill: float) -> np.ndarray:
    if flip:
        crop = crop[:, ::-1]
    if keep_aspect:
        return shrink_to(pad_to_square(crop, fill), size, fill)
    return resize_area(crop, size, size)


def preprocess(path_or_array, method: str = "crop", side: str | None = None, size: int = 224,
               *, keep_aspect: bool = True, threshold: str = "skin", work_size: int = WORK_SIZE,
               sigma: float = 1.0, skin_fraction: float = 0.15, marker_level: float = MARKER_LEVEL,
               naive_factor: int | None = None, keep_stages: bool = True):
    """One film -> ``(x, record)``: x float32 ``(1, size, size)`` in ``[0, 1]``, breast on the left.

    Args:
        path_or_array: a DICOM path, a :class:`~mammo_demo.dicom.DicomImage`, or
            an array (see :func:`load_film`).
        method: ``"crop"`` (blur, Otsu, borders removed, largest component, box)
            or ``"naive"`` (markers blanked, downscaled by ``naive_factor``;
            None: ``round(long side / 500)``, the thesis' 8 on a 4000-pixel film).
        side: ``"L"``/``"R"`` if known (from the data set's records); None
            takes the file's laterality tag, else decides from the image.
        size: the output side (224 for the thesis' networks).
        keep_aspect: pad the crop to a square before resizing (True) or squash it.
        threshold: ``"skin"`` (Otsu lowered toward the background, keeps the
            skin line) or ``"otsu"`` (the thesis' plain Otsu).
        work_size, sigma, skin_fraction, marker_level: see the module docstring.
        keep_stages: keep the preview images in ``record.stages``.

    Returns:
        ``(x, record)`` with ``record`` a :class:`PreprocessRecord`.
    """
    if method not in ("crop", "naive"):
        raise ValueError(f"method must be 'crop' or 'naive', got {method!r}")
    if threshold not in ("skin", "otsu"):
        raise ValueError(f"threshold must be 'skin' or 'otsu', got {threshold!r}")
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    film, info = load_film(path_or_array)
    height, width = film.shape
    side, side_source = _resolve_side(side, info)
    common = dict(path=info["path"], view=info["view"], laterality=info["laterality"],
                  is_phantom=info["is_phantom"], size=int(size), shape=(height, width))

    if method == "naive":
        if naive_factor is None:
            naive_factor = max(1, int(round(max(height, width) / 500)))
        small = downscale(blank_markers(film, marker_level), naive_factor)
        if side is None:
            side = side_from_image(small)
        flip = side == "R"
        x = _finish(small, flip, size, keep_aspect, 0.0)
        stages = dict(original=small, final=x) if keep_stages else {}
        record = PreprocessRecord(method="naive", box=(0, height, 0, width), side=side,
                                  side_source=side_source, flipped=flip, scale=naive_factor,
                                  stages=stages, **common)
        return x[None].astype(np.float32), record

    factor = max(1, int(np.ceil(max(height, width) / work_size)))
    small = downscale(film, factor)
    blurred = gaussian_blur(small, sigma)
    # pass 1 finds the borders; pass 2 thresholds again without them in the histogram
    t, t_otsu, background = _mask_threshold(blurred, None, threshold, skin_fraction)
    border, border_lines = find_borders(blurred > t)
    if border.any():
        t, t_otsu, background = _mask_threshold(blurred, border, threshold, skin_fraction)
    mask = blurred > t
    border, border_lines = find_borders(mask)
    cleaned = mask & ~border
    component, labels, count = largest_component(cleaned)
    work_box = bounding_box(component)
    if work_box is None:      # nothing above threshold: keep the whole film
        work_box = (0, small.shape[0], 0, small.shape[1])
        component = np.ones_like(component)
    top, bottom, left, right = work_box
    # back to original pixels, grown by one work pixel on each side; a box touching the
    # last work row or column takes the few film pixels the block means dropped
    box = (max(0, (top - 1) * factor),
           height if bottom >= small.shape[0] else min(height, (bottom + 1) * factor),
           max(0, (left - 1) * factor),
           width if right >= small.shape[1] else min(width, (right + 1) * factor))
    if side is None:
        side = side_from_image(blurred, component, background)
    flip = side == "R"
    crop = film[box[0]:box[1], box[2]:box[3]]
    x = _finish(crop, flip, size, keep_aspect, background)
    stages = {}
    if keep_stages:
        crop_small = downscale(crop, factor)
        stages = dict(original=small, blurred=blurred, threshold=mask, borders=border,
                      components=labels, component=component,
                      crop=crop_small[:, ::-1] if flip else crop_small, final=x,
                      work_box=work_box)
    record = PreprocessRecord(
        method="crop", box=tuple(int(v) for v in box), side=side, side_source=side_source,
        flipped=flip, scale=factor, threshold=float(t), otsu_threshold=float(t_otsu),
        background=background, borders={k: v * factor for k, v in border_lines.items()},
        n_components=count, stages=stages, **common)
    return x[None].astype(np.float32), record
