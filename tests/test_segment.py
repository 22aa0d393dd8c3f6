"""Tests for mammo_demo.segment: masks (origin, union, crops, exact phantom extents, ROI files),
patches and split, image and mask augmented together, and a tiny CLI run."""
import json

import numpy as np
import pytest

import nnlite as nn
from mammo_demo import phantom
from mammo_demo.cli import main
from mammo_demo.mias import load_mias, parse_info, write_pgm
from mammo_demo.patches import eight_transforms, extract_roi
from mammo_demo.segment import data as segdata
from mammo_demo.segment import masks


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory):
    """A 16-image phantom mini-MIAS set of 256x256 films (about a second)."""
    folder = tmp_path_factory.mktemp("phantom") / "set"
    phantom.generate_phantom(folder, seed=3, n_images=16, image_size=256, progress=False)
    return folder


# ------------------------------------------------------------------ discs and the origin
def test_mias_disc_uses_the_bottom_left_origin():
    m = masks.mias_disc(x=10, y=90, radius=3, image_size=100)     # row = 100 - 90 = 10
    assert m.shape == (100, 100) and m.dtype == bool
    assert m[10, 10] and not m[90, 10]
    assert m[7, 10] and m[13, 10] and m[10, 13] and not m[6, 10] and not m[10, 14]   # radius 3
    assert m.sum() == 29                                           # lattice points in a disc of r=3
    rows, cols = np.nonzero(m)
    assert (rows.mean(), cols.mean()) == (10.0, 10.0)


def test_image_mask_unites_rows_and_ignores_rows_without_coordinates():
    text = ("mdb001 G CIRC B 20 80 5\n"          # row 20, col 20
            "mdb001 G CIRC B 70 30 4\n"          # row 70, col 70
            "mdb001 G CALC M\n"                  # no coordinates: no mask
            "mdb002 F NORM\n")
    records = parse_info(text, image_size=100)
    m = masks.mias_image_mask([r for r in records if r.refnum == "mdb001"], 100)
    expected = masks.disc_mask((100, 100), 20, 20, 5) | masks.disc_mask((100, 100), 70, 70, 4)
    np.testing.assert_array_equal(m, expected)
    assert not masks.mias_image_mask([r for r in records if r.refnum == "mdb002"], 100).any()
    with pytest.raises(ValueError, match="radius"):
        masks.disc_mask((4, 4), 1, 1, 0)


def test_mask_crop_has_the_image_crop_geometry_also_at_the_border():
    mask = masks.disc_mask((120, 120), 15, 100, 10)             # near the top and right edges
    image = mask.astype(np.float32) * 255
    for row, col, radius in ((15, 100, 10), (3, 117, 12), (60, 60, 20)):
        side = 3 * radius
        cut = masks.crop_mask(mask, row, col, side, 32)
        img = extract_roi(image, row, col, radius, 32, context=3.0, normalize="unit", min_side=8)
        np.testing.assert_array_equal(cut, img >= 0.5)           # same crop, reflection, resize
    centred = masks.crop_mask(mask, 15, 100, 30, 30)
    assert centred[15, 15] and masks.lesion_fraction(centred) > 0.2


# ------------------------------------------------------------------ exact phantom masks
def test_phantom_masks_are_exact_and_follow_the_mirrored_films(tiny_phantom):
    ds = load_mias(tiny_phantom)
    exact = masks.phantom_image_masks(ds)
    assert exact, "the tiny phantom set has lesions"
    sides = set()
    for ref, m in exact.items():
        rows = [r for r in ds.rows(ref) if r.has_coordinates]
        assert rows and m.shape == (256, 256)
        plan_side = "right" if int(ref[3:]) % 2 == 1 else "left"
        sides.add(plan_side)
        for r in rows:                    # Info.txt centre (bottom-left origin) lies in the mask
            assert m[r.row, r.col], (ref, r)
        disc = masks.mias_image_mask(rows, 256)
        assert (m & disc).sum() > 0.3 * min(m.sum(), disc.sum())
    assert sides == {"left", "right"}


def test_masses_are_their_drawn_extent_not_a_disc(tiny_phantom):
    ds = load_mias(tiny_phantom)
    plan = phantom.plan_phantom(16, 3)
    seeds = np.random.SeedSequence(3).spawn(2)[1].spawn(16)
    item = next(p for p in plan if p.lesions and p.lesions[0].abnormality in ("CIRC", "MISC"))
    pixels, per_lesion = masks.render_with_masks(item, 256, seeds[item.index])
    np.testing.assert_array_equal(pixels, ds.image(item.refnum))  # the same draws as the file
    row = next(r for r in ds.rows(item.refnum))
    m = per_lesion[0]
    disc = masks.mias_disc(row.x, row.y, row.radius, 256)
    assert m[row.row, row.col] and 0.2 * disc.sum() < m.sum() < disc.sum()   # outline ~ 0.8 R


def test_phantom_masks_refuse_a_changed_file_and_real_data(tiny_phantom, tmp_path):
    ds = load_mias(tiny_phantom)
    ref = next(iter(masks.phantom_image_masks(ds)))
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_phantom.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    img = ds.image(ref).copy()
    img[0, 0] ^= 1
    write_pgm(copy / f"{ref}.pgm", img)
    with pytest.raises(ValueError, match="differs"):
        masks.phantom_image_masks(load_mias(copy))
    (copy / "PHANTOM.txt").unlink()
    with pytest.raises(ValueError, match="not a phantom"):
        masks.phantom_image_masks(load_mias(copy, image_size=256))


def test_cbis_roi_mask_file_is_read_with_the_dicom_reader(tmp_path):
    from mammo_demo.dicom import write_dicom
    stored = np.zeros((40, 30), dtype=np.uint8)
    stored[10:20, 5:12] = 255
    path = write_dicom(tmp_path / "roi.dcm", stored, bits_stored=8)
    np.testing.assert_array_equal(masks.read_roi_mask(path), stored > 0)
    empty = write_dicom(tmp_path / "empty.dcm", np.zeros((8, 8), np.uint8), bits_stored=8)
    with pytest.raises(ValueError, match="no lesion pixel"):
        masks.read_roi_mask(empty)


def test_cbis_phantom_roi_masks_unite_per_image(tmp_path):
    from mammo_demo.cbis import load_cbis
    from mammo_demo.whole import phantom as whole_phantom
    root = whole_phantom.generate(tmp_path / "cbis", seed=0, patients=2, scale=0.05)
    truth = whole_phantom.read_truth(root)["images"]
    ds = load_cbis(root)
    checked = 0
    for image in ds.images:
        union = masks.cbis_image_mask(ds, image)
        record = next(v for v in truth.values() if v["image_id"] == image.image_id)
        if not record["lesions"]:
            assert union is None
            continue
        expected = np.zeros_like(union)
        for lesion in record["lesions"]:      # the generator's own box of each lesion's mask
            one = masks.read_roi_mask(root / lesion["mask_file"])
            rows, cols = np.flatnonzero(one.any(axis=1)), np.flatnonzero(one.any(axis=0))
            assert [rows[0], rows[-1] + 1, cols[0], cols[-1] + 1] == lesion["box"]
            expected |= one
        np.testing.assert_array_equal(union, expected)
        checked += 1
    assert checked


# ------------------------------------------------------------------ patches, split, augmentation
def test_mask_set_patches_split_by_image(tiny_phantom):
    ds = load_mias(tiny_phantom)
    ms = segdata.build_mask_set(ds, patch_size=32, normal_fraction=0.5, progress=False)
    n = len(ms)
    assert ms.x.shape == ms.masks.shape == (n, 1, 32, 32) and ms.x.dtype == np.float32
    lesion = ms.kinds != "NORM"
    assert ms.has_lesion[lesion].all() and not ms.has_lesion[~lesion].any()
    assert ms.info["kind"] == "phantom" and ms.info["masks"].startswith("exact")
    assert ms.counts()["normal_patches"] == round(0.5 * lesion.sum())
    parts = segdata.split_mask_set(ms, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(n))
    ids = {k: set(ms.image_ids[v]) for k, v in parts.items()}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    discs = segdata.build_mask_set(ds, patch_size=32, normal_fraction=0.0, mask_source="disc",
                                   progress=False)
    assert discs.info["masks"].startswith("disc") and len(discs) == lesion.sum()


def test_image_and_mask_are_augmented_together():
    rng = np.random.default_rng(0)
    masks_ = (rng.random((8, 1, 6, 6)) < 0.3).astype(np.uint8)
    x = masks_.astype(np.float32) * 10 + rng.random((8, 1, 6, 6)).astype(np.float32)
    xa, ma = segdata.augment_pair(x, masks_, np.arange(8))
    for t in range(8):
        np.testing.assert_array_equal(xa[t] >= 10, ma[t].astype(bool))    # still aligned
        np.testing.assert_array_equal(xa[t], eight_transforms(x[t])[t])   # the paper's 8 transforms
    sq = (rng.random((20, 1, 7, 7)) < 0.3).astype(np.uint8)
    xs = sq * 10 + rng.random(sq.shape).astype(np.float32)
    xr, mr = segdata.random_dihedral(xs, sq, np.random.default_rng(1))
    np.testing.assert_array_equal(xr >= 10, mr.astype(bool))
    assert not np.array_equal(mr, sq)                             # something was transformed
    with pytest.raises(ValueError, match="agree"):
        segdata.augment_pair(x, masks_[:3], np.arange(8))
    with pytest.raises(ValueError, match="square"):
        segdata.augment_pair(x[..., :5], masks_[..., :5], np.arange(8))


# ------------------------------------------------------------------ the command line
def test_segment_cli_train_writes_the_run_folder(tiny_phantom, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["segment", "train", "--data", str(tiny_phantom), "--model", "segnet", "--widths", "4,8",
            "--patch-size", "32", "--batch-size", "8", "--out", str(out), "--quiet"]
    args = base + ["--epochs", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "PHANTOM" in text and "mean IoU" in text and "lesions found" in text
    for name in ("config.json", "data.json", "history.json", "best_model.npz", "checkpoint.npz",
                 "metrics.json", "report.txt", "curves.png", "test_overlays.png", "iou_histogram.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mean_iou"]["n"] == metrics["lesion_patches"] > 0
    assert "PHANTOM" in metrics["label"] and "PHANTOM" in (out / "report.txt").read_text()
    assert json.loads((out / "data.json").read_text())["split"] == "by image, before augmentation"
    meta = nn.read_metadata(out / "best_model.npz")
    assert meta["patch_size"] == 32 and meta["best_epoch"] == 1 and "PHANTOM" in meta["label"]



@pytest.mark.slow
def test_segment_cli_resume_evaluate_predict(tiny_phantom, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["segment", "train", "--data", str(tiny_phantom), "--model", "unet", "--widths", "4,8",
            "--patch-size", "32", "--batch-size", "8", "--out", str(out), "--quiet"]
    args = base + ["--epochs", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2                                        # a started run is not clobbered
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())["history"]
    assert len(history["loss"]) == 2

    ev = tmp_path / "eval"
    assert main(["segment", "evaluate", "--model", str(out / "best_model.npz"), "--out", str(ev),
                 "--split", "val", "--quiet"]) == 0
    assert json.loads((ev / "metrics.json").read_text())["split"] == "val"
    assert main(["segment", "evaluate", "--model", str(out / "best_model.npz"), "--out", str(out)]) == 2

    ds = load_mias(tiny_phantom)
    row = next(r for r in ds.records if r.has_coordinates)
    png = tmp_path / "overlay.png"
    capsys.readouterr()
    assert main(["segment", "predict", "--model", str(out / "best_model.npz"),
                 "--image", str(ds.image_path(row.refnum)), "--x", str(row.x), "--y", str(row.y),
                 "--radius", str(row.radius), "--out", str(png)]) == 0
    assert png.is_file() and "PHANTOM" in capsys.readouterr().out
    assert main(["segment", "predict", "--model", str(out / "best_model.npz"),
                 "--image", str(ds.image_path(row.refnum)), "--x", "5000", "--y", "1", "--radius", "5"]) == 2


def test_scores_keep_lesion_and_normal_patches_apart_with_their_n():
    from mammo_demo.segment import evaluate
    true = np.zeros((3, 1, 4, 4), bool)
    true[0, 0, 1:3, 1:3] = True
    pred = true.copy()
    pred[1, 0, 0, 0] = True                                       # one false pixel on a normal patch
    m = evaluate.score_masks(pred, true, np.array(["a", "b", "c"]), np.array(["CIRC", "NORM", "NORM"]))
    assert m["mean_iou"] == {"value": 1.0, "n": 1, "ci95": [1.0, 1.0], "method": "bootstrap over 1 images"}
    assert (m["lesions_found"]["k"], m["lesions_found"]["n"]) == (1, 1)
    assert (m["normal_patches_clean"]["k"], m["normal_patches_clean"]["n"]) == (1, 2)
    assert m["normal_patches_predicted_fraction"]["value"] == pytest.approx(1 / 32)
    assert m["pixel_accuracy_all_patches"]["value"] == pytest.approx((1 + 15 / 16 + 1) / 3)
    table = evaluate.format_table(m, "title")
    assert "(1/2)" in table and "n < 30" in table and "both empty" in table
