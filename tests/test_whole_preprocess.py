"""Whole-mammogram preprocessing: the building blocks, and both methods on phantom films
with the traits of scanned films (borders, burned-in labels, a dim skin line, markers)."""

import numpy as np
import pytest

from conftest import flood_labels
from mammo_demo.whole import preprocess
from mammo_demo.whole.phantom import render_film
from mammo_demo.whole.preprocess import (area_matrix, blank_markers, bounding_box, downscale,
                                         edge_strips, film_borders, gaussian_blur,
                                         label_components, otsu_threshold, pad_to_square,
                                         resize_area, resize_area_reference, side_from_image)

SHAPE = (480, 300)     # a reduced film (CBIS-DDSM films are about 4000x2500)
ALL_BORDERS = ("chest", "top", "bottom", "far")


def film(seed=0, side="L", view="CC", borders=ALL_BORDERS, label=True, markers=2, shape=SHAPE,
         edges=()):
    rng = np.random.default_rng(seed)
    traits = dict(borders=borders, label=label, markers=markers, edges=edges)
    value, _masks, truth = render_film(rng, shape, side, view, 2, [], traits)
    return value, truth


def contains(box, inner, tol):
    t, b, l, r = box
    it, ib, il, ir = inner
    return t <= it + tol and b >= ib - tol and l <= il + tol and r >= ir - tol


def grow(box, n):
    t, b, l, r = box
    return (t - n, b + n, l - n, r + n)


def overlaps(box, other):
    t, b, l, r = box
    ot, ob, ol, orr = other
    return t < ob and ot < b and l < orr and ol < r


def border_boxes(truth, shape):
    h, w = shape
    boxes = []
    for side, n in truth["borders"].items():
        boxes.append({"top": (0, n, 0, w), "bottom": (h - n, h, 0, w),
                      "left": (0, h, 0, n), "right": (0, h, w - n, w)}[side])
    return boxes


# ------------------------------------------------------------------ building blocks
@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_components_matches_flood_fill(connectivity):
    rng = np.random.default_rng(5)
    for _ in range(60):
        mask = rng.random((rng.integers(1, 14), rng.integers(1, 14))) < rng.uniform(0.2, 0.8)
        labels, count = label_components(mask, connectivity)
        expected, n = flood_labels(mask, connectivity)
        assert count == n
        np.testing.assert_array_equal(labels, expected)


def test_label_components_diagonal_and_u_shape():
    diagonal = np.eye(4, dtype=bool)
    assert label_components(diagonal, 8)[1] == 1 and label_components(diagonal, 4)[1] == 4
    u = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]], bool)       # joined only at the bottom
    labels, count = label_components(u, 4)
    assert count == 1 and (labels[u] == 1).all()


def test_otsu_separates_two_modes_and_maximises_between_class_variance():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.1, 0.02, 5000), rng.normal(0.6, 0.05, 2000)])
    t = otsu_threshold(values)
    # brute force over the same 256 bins
    counts, edges = np.histogram(values, bins=256)
    p = counts / counts.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    scores = {}
    for k in range(255):
        w0, w1 = p[:k + 1].sum(), p[k + 1:].sum()
        if w0 == 0 or w1 == 0:
            continue
        mu0 = (p[:k + 1] * centres[:k + 1]).sum() / w0
        mu1 = (p[k + 1:] * centres[k + 1:]).sum() / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
        scores[k] = between
    best = max(scores.values())
    k = int(np.searchsorted(edges, t)) - 1              # t is the upper edge of bin k
    assert scores[k] == pytest.approx(best, rel=1e-9)
    assert 0.2 < t < 0.45                               # in the middle of the gap between modes
    assert otsu_threshold(np.full(10, 0.3)) == 0.3


def test_area_resize():
    rows = area_matrix(10, 3)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)
    img = np.random.default_rng(0).random((8, 6)).astype(np.float32)
    np.testing.assert_allclose(downscale(img, 2), img.reshape(4, 2, 3, 2).mean(axis=(1, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(resize_area(np.full((7, 5), 0.4), 224, 224), 0.4, rtol=1e-5)
    assert resize_area(img, 3, 3).mean() == pytest.approx(img.mean(), rel=1e-5)
    for shape, out in [((8, 6), (3, 5)), ((5, 7), (224, 224)), ((97, 31), (10, 4))]:
        a = np.random.default_rng(1).random(shape).astype(np.float32)
        np.testing.assert_allclose(resize_area(a, *out), resize_area_reference(a, *out), atol=1e-5)


def test_gaussian_blur_keeps_constants_and_the_mean():
    const = np.full((20, 10), 0.7, np.float32)
    np.testing.assert_allclose(gaussian_blur(const, 1.5), 0.7, rtol=1e-5)
    spot = np.zeros((21, 21), np.float32)
    spot[10, 10] = 1
    out = gaussian_blur(spot, 1.0)
    assert out.sum() == pytest.approx(1.0, rel=1e-4) and out[10, 10] < 0.2


def test_pad_to_square_keeps_the_breast_on_the_left():
    tall = np.ones((10, 4), np.float32)
    out = pad_to_square(tall, 0.0)
    assert out.shape == (10, 10) and out[:, :4].all() and not out[:, 4:].any()
    wide = np.ones((4, 10), np.float32)
    out = pad_to_square(wide, 0.0)
    assert out.shape == (10, 10) and out[3:7].all() and not out[:3].any()


def test_film_borders_find_strips_but_not_tissue_at_the_chest_wall():
    mask = np.zeros((100, 60), bool)
    mask[20:80, :30] = True               # "breast" at the chest wall, 60 % of the height
    mask[:4, :] = mask[-3:, :] = True     # top and bottom strips
    mask[:, -2:] = True                   # far-side strip
    border, widths = film_borders(mask)
    assert widths == {"top": 4, "bottom": 3, "left": 0, "right": 2}
    full = np.zeros((100, 60), bool)
    full[:, :40] = True                   # tissue filling the whole height: not a border
    assert film_borders(full)[1]["left"] == 0


def test_edge_strips_remove_partial_edges_but_keep_tapering_tissue():
    h, w = 200, 120
    yy, xx = np.mgrid[0:h, 0:w]
    breast = (xx / 80.0) ** 2 + ((yy - 100) / 70.0) ** 2 <= 1      # tips taper at the left edge
    mask = breast.copy()
    mask[:3, :70] = True            # a partial top edge from the chest-wall corner
    mask[:, :4] = True              # a chest-wall strip running past the breast both ways
    mask[120:, -2:] = True          # a scanner edge along the lower far side
    remove = edge_strips(mask)
    assert not (remove & breast & (xx > 6)).any()                    # the breast stays
    assert remove[:3, 10:70].all() and remove[120:, -2:].all()
    assert remove[3:25, :4].all() and remove[-25:, :4].all()         # the strip's extensions
    clean = mask & ~remove
    from mammo_demo.whole.preprocess import largest_component
    t, b, l, r = bounding_box(largest_component(clean)[0])
    assert 30 <= t <= 32 and 169 <= b <= 171 and r == 81     # the breast (rows 30..170), no strips


def test_blank_markers_and_side_from_image():
    img = np.zeros((20, 30), np.float32)
    img[:, :10] = 0.5
    img[2, 25] = 1.0
    out = blank_markers(img)
    assert out[2, 25] == 0 and img[2, 25] == 1.0          # the caller's array is untouched
    assert side_from_image(out) == "L" and side_from_image(out[:, ::-1]) == "R"


def test_bounding_box_is_exclusive():
    mask = np.zeros((5, 5), bool)
    mask[1:3, 2] = True
    assert bounding_box(mask) == (1, 3, 2, 3)
    assert bounding_box(np.zeros((3, 3), bool)) is None


# ------------------------------------------------------------------ the crop on phantom films
@pytest.mark.parametrize("seed, side, view", [(0, "L", "CC"), (1, "R", "CC"), (2, "L", "MLO"),
                                              (3, "R", "MLO"), (4, "L", "MLO")])
def test_crop_excludes_borders_and_label_and_keeps_the_skin_line(seed, side, view):
    value, truth = film(seed, side, view)
    assert truth["label_box"] is not None and len(truth["borders"]) == 4
    x, record = preprocess(value, method="crop", side=side)
    tol = int(0.015 * SHAPE[0])
    # keeps the breast up to its skin line (the true extent without the strips), and no more
    assert contains(record.box, truth["breast_box"], tol), (record.box, truth["breast_box"])
    assert contains(grow(truth["breast_box"], tol), record.box, 0), (record.box, truth["breast_box"])
    # excludes the burned-in label and the strips on the three sides away from the chest wall
    assert not overlaps(record.box, truth["label_box"])
    h, w = SHAPE
    far = "right" if side == "L" else "left"
    for name in ("top", "bottom", far):
        n = truth["borders"][name]
        strip = {"top": (0, n, 0, w), "bottom": (h - n, h, 0, w),
                 "left": (0, h, 0, n), "right": (0, h, w - n, w)}[name]
        assert not overlaps(record.box, strip), (name, record.box, strip)
    component = record.stages["component"]           # markers are not part of the breast
    for top, bottom, left, right in truth["marker_boxes"]:
        centre = ((top + bottom) // 2 // record.scale, (left + right) // 2 // record.scale)
        assert not component[centre]
    assert x.shape == (1, 224, 224) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert record.flipped == (side == "R") and record.side == side


@pytest.mark.parametrize("seed, side, view, borders, edges", [
    (70, "L", "CC", ("chest",), (("top", 0.0, 0.7), ("far", 0.3, 1.0))),
    (71, "R", "MLO", (), (("chest", 0.0, 0.8), ("bottom", 0.5, 1.0))),
    (72, "L", "CC", ("top", "bottom"), (("chest", 0.2, 1.0),)),
])
def test_crop_with_partial_film_and_scanner_edges(seed, side, view, borders, edges):
    value, truth = film(seed, side, view, borders=borders, edges=edges)
    _, record = preprocess(value)
    tol = int(0.015 * SHAPE[0])
    assert contains(record.box, truth["breast_box"], tol), (record.box, truth["breast_box"])
    assert contains(grow(truth["breast_box"], tol), record.box, 0), (record.box, truth["breast_box"])


def test_wide_borders_do_not_pull_the_threshold_into_the_tissue():
    value, truth = film(73, "L", "CC")
    _, record = preprocess(value)
    assert record.otsu_threshold < otsu_threshold(gaussian_blur(downscale(value, 1), 1.0))
    assert contains(record.box, truth["breast_box"], int(0.015 * SHAPE[0]))


def test_crop_box_is_not_the_whole_film_with_borders():
    value, truth = film(7, "L", "CC")
    box = preprocess(value)[1].box
    h, w = SHAPE
    assert (box[1] - box[0]) * (box[3] - box[2]) < 0.8 * h * w


def test_plain_otsu_cuts_off_the_skin_line_and_the_fix_keeps_it():
    """The thesis' global Otsu threshold lands inside the tissue on these films."""
    cut = kept = 0
    for seed in range(4):
        value, truth = film(10 + seed, "L", "CC", borders=(), markers=0)
        plain = preprocess(value, threshold="otsu")[1]
        fixed = preprocess(value)[1]
        depth = truth["breast_box"][3]            # skin line at the nipple (chest wall on the left)
        cut += plain.box[3] < depth - 0.03 * SHAPE[1]
        kept += fixed.box[3] >= depth - 0.01 * SHAPE[1]
        assert plain.threshold > fixed.threshold
    assert cut == 4 and kept == 4


def test_without_the_border_fix_the_borders_take_the_whole_film():
    """Sanity check of the phantom: a plain threshold joins all four strips and the breast."""
    from mammo_demo.whole.preprocess import largest_component
    value, truth = film(5, "L", "CC")
    mask = gaussian_blur(value, 1.0) > 0.15
    component = largest_component(mask)[0]
    assert bounding_box(component) == (0, SHAPE[0], 0, SHAPE[1])


def test_side_from_the_image_when_untagged():
    for seed, side in [(20, "L"), (21, "R"), (22, "R")]:
        value, _ = film(seed, side, "MLO")
        _, record = preprocess(value)
        assert record.side == side and record.side_source == "image"
    _, record = preprocess(film(23, "R", "CC")[0], side="R")
    assert record.side_source == "argument"


def test_square_padding_keeps_the_aspect_ratio():
    value, truth = film(30, "L", "CC", borders=(), label=False, markers=0)
    x, record = preprocess(value, size=64)
    t, b, l, r = record.box
    assert b - t > r - l                                   # a tall crop
    cols = np.flatnonzero(x[0].max(axis=0) > record.background + 0.05)
    width_fraction = (cols[-1] + 1) / 64
    assert width_fraction == pytest.approx((r - l) / (b - t), abs=0.08)
    squashed, _ = preprocess(value, size=64, keep_aspect=False)
    assert (squashed[0].max(axis=0) > record.background + 0.05).mean() > 0.95


def test_right_breast_is_flipped_to_the_left():
    value, _ = film(31, "R", "CC", borders=(), label=False, markers=0)
    x, record = preprocess(value, size=64)
    assert record.flipped
    assert x[0, :, :16].mean() > x[0, :, -16:].mean()


def test_naive_method_blanks_markers_and_keeps_the_whole_film():
    value, truth = film(40, "R", "CC", borders=(), label=True, markers=2)
    x, record = preprocess(value, method="naive", size=64)
    assert record.box == (0, SHAPE[0], 0, SHAPE[1]) and record.method == "naive"
    assert record.flipped and x.shape == (1, 64, 64)
    assert x.max() < 0.95
    assert record.scale == 1                                  # 480 pixels: round(480 / 500)
    assert preprocess(np.zeros((4000, 2500), np.float32), method="naive")[1].scale == 8


def test_reads_dicom_paths_and_uses_their_tags(tmp_path):
    from mammo_demo.dicom import write_dicom
    value, truth = film(50, "R", "MLO")
    stored = np.round(value * 65535).astype(np.uint16)
    path = write_dicom(tmp_path / "f.dcm", 65535 - stored, photometric="MONOCHROME1", rle=True,
                       laterality="R", view="MLO", comments="PHANTOM test film")
    x, record = preprocess(path)
    assert record.side_source == "tags" and record.view == "MLO" and record.is_phantom
    assert contains(record.box, truth["breast_box"], 8)
    assert not overlaps(record.box, truth["label_box"])
    assert record.to_dict()["path"] == str(path)


def test_bad_arguments():
    value, _ = film(60)
    with pytest.raises(ValueError, match="method"):
        preprocess(value, method="otsu")
    with pytest.raises(ValueError, match="side"):
        preprocess(value, side="X")
    with pytest.raises(ValueError, match="2-D film"):
        preprocess(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        preprocess(np.full((20, 20), np.nan, np.float32))


def test_box_reaches_the_last_rows_that_the_block_means_drop():
    film_ = np.zeros((1030, 517), np.float32)          # 1030 = 3 * 343 + 1
    film_[100:, :300] = 0.5
    _, record = preprocess(film_)
    assert record.scale == 3 and record.box[1] == 1030 and record.box[0] <= 100


def test_integer_arrays_and_dicom_images_are_accepted(tmp_path):
    from mammo_demo.dicom import read_dicom, write_dicom
    value, truth = film(80, "L", "CC", borders=(), markers=0)
    stored = np.round(value * 65535).astype(np.uint16)
    from_int = preprocess(stored, side="L")[1].box
    image = read_dicom(write_dicom(tmp_path / "a.dcm", stored))
    assert preprocess(image, side="L")[1].box == from_int == preprocess(value, side="L")[1].box
