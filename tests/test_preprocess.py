"""Otsu threshold, connected components, breast mask, marker removal, crops, resize."""

import numpy as np
import pytest

from mammo_demo import preprocess as pp
from conftest import flood_labels


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("density, shape", [(0.3, (17, 23)), (0.5, (20, 20)), (0.62, (9, 31)),
                                            (0.45, (1, 40)), (0.45, (40, 1))])
def test_label_components_matches_flood_fill(connectivity, density, shape):
    rng = np.random.default_rng(int(density * 100) + connectivity)
    for _ in range(5):
        mask = rng.random(shape) < density
        labels, n = pp.label_components(mask, connectivity)
        ref, n_ref = flood_labels(mask, connectivity)
        assert n == n_ref
        assert labels.dtype == np.int32
        assert np.array_equal(labels, ref)


def test_label_components_edge_cases():
    labels, n = pp.label_components(np.zeros((4, 5), bool))
    assert n == 0 and not labels.any()
    labels, n = pp.label_components(np.ones((3, 3), bool))
    assert n == 1 and (labels == 1).all()
    diag = np.eye(4, dtype=bool)
    assert pp.label_components(diag, 8)[1] == 1
    assert pp.label_components(diag, 4)[1] == 4
    with pytest.raises(ValueError, match="connectivity"):
        pp.label_components(diag, 6)
    with pytest.raises(ValueError, match="2-D"):
        pp.label_components(np.zeros((2, 2, 2)))


def test_otsu_separates_two_modes():
    rng = np.random.default_rng(0)
    img = np.concatenate([rng.normal(40, 5, 5000), rng.normal(170, 8, 3000)])
    img = np.clip(img, 0, 255).astype(np.uint8).reshape(80, 100)
    t = pp.otsu_threshold(img)
    assert 50 < t < 150                                   # anywhere in the empty gap
    assert abs((img > t).mean() - 0.375) < 0.01
    tf = pp.otsu_threshold(img.astype(np.float32))        # the binned float path agrees
    assert abs(tf - t) < 5
    assert pp.otsu_threshold(np.full((3, 3), 7, np.uint8)) == 7.0
    with pytest.raises(ValueError, match="empty"):
        pp.otsu_threshold(np.zeros((0,), np.uint8))


def synthetic_film(size=96, marker=True):
    """A bright half-disc breast on the left with a dark hole, plus a separate bright label."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size), 10, dtype=np.uint8)
    breast = (xx / (0.6 * size)) ** 2 + ((yy - size / 2) / (0.4 * size)) ** 2 < 1
    img[breast] = 150
    img[size // 2 - 3:size // 2 + 3, 10:16] = 12          # a dark fatty spot inside the breast
    if marker:
        img[4:10, size - 20:size - 6] = 250                # burned-in label, separate component
    return img, breast


def test_breast_mask_fills_holes_and_drops_marker():
    img, breast = synthetic_film()
    mask = pp.breast_mask(img)
    assert mask.dtype == bool
    assert np.array_equal(mask, breast)                   # hole filled, label excluded
    cleaned = pp.remove_markers(img)
    assert cleaned.dtype == np.uint8 and cleaned[4:10, -20:-6].max() == 0
    assert np.array_equal(cleaned[breast], img[breast])


def test_fill_holes_and_largest_component():
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False
    assert pp.fill_holes(m).sum() == 25
    m2 = np.zeros((6, 10), bool)
    m2[0:2, 0:2] = True
    m2[3:6, 4:9] = True
    big = pp.largest_component_mask(m2)
    assert big.sum() == 15 and big[4, 5] and not big[0, 0]
    assert not pp.largest_component_mask(np.zeros((3, 3))).any()


def test_crop_side_and_flip():
    img, breast = synthetic_film(marker=False)
    crop, (r0, r1, c0, c1) = pp.crop_to_breast(img, return_bbox=True)
    rows, cols = np.nonzero(breast)
    assert (r0, r1, c0, c1) == (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    assert crop.shape == (r1 - r0, c1 - c0)
    crop_m = pp.crop_to_breast(img, margin=3)
    assert crop_m.shape == (min(96, r1 + 3) - max(0, r0 - 3), min(96, c1 + 3) - max(0, c0 - 3))
    assert pp.breast_side(img) == "left"
    mirrored = img[:, ::-1]
    assert pp.breast_side(mirrored) == "right"
    assert np.array_equal(pp.flip_to_left(mirrored), img)
    assert np.array_equal(pp.flip_to_left(img), img)
    with pytest.raises(ValueError, match="empty"):
        pp.breast_bbox(np.zeros((4, 4), bool))


def test_resize_dtypes_and_errors():
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    r = pp.resize(a, 4)
    assert r.shape == (4, 4) and r.dtype == np.uint8
    f = pp.resize(a.astype(np.float64), (3, 5))
    assert f.shape == (3, 5) and f.dtype == np.float32
    const = pp.resize(np.full((10, 10), 0.25, np.float32), 7)
    assert np.allclose(const, 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="resample"):
        pp.resize(a, 4, resample="cubic-ish")
    with pytest.raises(ValueError, match="positive"):
        pp.resize(a, 0)
    with pytest.raises(ValueError, match="2-D"):
        pp.resize(np.zeros((2, 2, 2)), 4)
