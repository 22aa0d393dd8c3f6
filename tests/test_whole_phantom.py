"""Phantom whole mammograms: CBIS-DDSM layout read back by the real readers, variants, labels,
determinism, and the ``mammo-demo whole`` commands."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mammo_demo.cbis import load_cbis
from mammo_demo.dicom import read_dicom, read_header, read_stored
from mammo_demo.whole import phantom, preprocess

SCALE = 0.08          # 320x200 films: enough for the layout tests, fast
PATIENTS = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return phantom.generate(tmp_path_factory.mktemp("phantom") / "set", seed=3,
                            patients=PATIENTS, scale=SCALE)


@pytest.fixture(scope="module")
def truth(folder):
    return phantom.read_truth(folder)


@pytest.fixture(scope="module")
def dataset(folder):
    return load_cbis(folder)


def test_layout_and_marker(folder, truth):
    assert (folder / "PHANTOM.txt").read_text().startswith("PHANTOM")
    for name in phantom.CSV_NAMES.values():
        assert (folder / name).is_file()
    assert truth["film_shape"] == [320, 200]
    assert len(truth["images"]) == 4 * PATIENTS
    full = sorted((folder / "CBIS-DDSM").glob("*/*/1.000000-full mammogram images-*/1-1.dcm"))
    assert len(full) == 4 * PATIENTS


def test_every_file_is_marked_phantom_inside(folder):
    for path in sorted((folder / "CBIS-DDSM").rglob("*.dcm")):
        header = read_header(path)
        assert header.ImageComments.startswith("PHANTOM") and \
            header.SeriesDescription.startswith("PHANTOM")


def test_csvs_use_the_real_column_names(folder):
    with open(folder / "mass_case_description_train_set.csv", newline="") as f:
        mass = next(csv.reader(f))
    with open(folder / "calc_case_description_train_set.csv", newline="") as f:
        calc = next(csv.reader(f))
    assert mass == phantom.MASS_COLUMNS and "breast_density" in mass
    assert calc == phantom.CALC_COLUMNS and "breast density" in calc
    assert "ROI mask file path" in mass and "cropped image file path" in calc


def test_real_readers_load_it_and_agree_with_the_truth(folder, truth, dataset):
    assert dataset.is_phantom and len(dataset) == 4 * PATIENTS
    assert dataset.summary()["missing_files"] == 0
    by_path = {str(image.path.relative_to(folder)): image for image in dataset.images}
    assert set(by_path) == set(truth["images"])
    for rel, info in truth["images"].items():
        image = by_path[rel]
        assert (image.patient_id, image.side, image.view, image.split) == \
            (info["patient_id"], info["side"], info["view"], info["split"])
        assert image.malignant == info["malignant"]
        assert len(image.abnormalities) == len(info["lesions"])
        # normal breasts have no CSV rows
        assert image.listed == (info["status"] != "normal")


def test_patients_have_both_views_of_both_breasts_and_split_by_patient(dataset):
    patients = {}
    for image in dataset.images:
        patients.setdefault(image.patient_id, set()).add((image.side, image.view, image.split))
    assert len(patients) == PATIENTS
    for views in patients.values():
        assert {(s, v) for s, v, _ in views} == {("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")}
        assert len({split for *_, split in views}) == 1
    assert {image.split for image in dataset.images} == {"train", "test"}


def test_label_is_malignant_if_any_abnormality_is(dataset):
    statuses = set()
    for image in dataset.images:
        pathologies = [a.pathology for a in image.abnormalities]
        assert image.malignant == ("MALIGNANT" in pathologies)
        statuses.add("normal" if not pathologies else ("malignant" if image.malignant else "benign"))
    assert statuses == {"normal", "benign", "malignant"}


def test_roi_masks_are_binary_inside_the_breast_and_crops_are_not(folder, truth, dataset):
    images = {str(i.path.relative_to(folder)): i for i in dataset.images}
    n = 0
    for rel, info in truth["images"].items():
        for abnormality, lesion in zip(images[rel].abnormalities, info["lesions"]):
            crop, mask = dataset.resolve_roi(abnormality)
            assert str(mask.relative_to(folder)) == lesion["mask_file"]
            assert str(crop.relative_to(folder)) == lesion["crop_file"]
            _, stored = read_stored(mask)
            assert set(np.unique(stored).tolist()) == {0, 255}
            assert stored.shape == tuple(info["shape"])
            t, b, l, r = info["breast_box"]
            rows, cols = np.nonzero(stored)
            assert t <= rows.min() and rows.max() < b and l <= cols.min() and cols.max() < r
            n += 1
    assert n > 0


def test_variants_are_present(truth):
    films = truth["images"].values()
    assert any(f["photometric"] == "MONOCHROME1" for f in films)
    assert any(f["rle"] for f in films) and any(not f["rle"] for f in films)
    assert any(f["tags"] == "none" for f in films)
    assert any(f["tags"] == "Laterality+ViewPosition" for f in films)
    assert any(f["borders"] for f in films) and any(f["label_box"] for f in films)
    assert any(f["marker_boxes"] for f in films)
    assert {f["bits"] for f in films} <= {12, 16}


def test_dicom_values_match_the_records(folder, truth):
    for rel, info in truth["images"].items():
        image = read_dicom(folder / rel)
        assert image.is_phantom and image.shape == tuple(info["shape"])
        assert image.photometric == info["photometric"] and image.bits == info["bits"]
        if info["tags"] == "none":
            assert image.laterality is None and image.view is None
        else:
            assert (image.laterality, image.view) == (info["side"], info["view"])
        # tissue is bright after MONOCHROME1 inversion: the breast is brighter than background
        t, b, l, r = info["breast_box"]
        chest = slice(l, l + 20) if info["side"] == "L" else slice(r - 20, r)
        assert image.pixels[(t + b) // 2, chest].mean() > 0.2
        assert np.median(image.pixels) < 0.15          # a dark background


def test_mlo_pectoral_in_the_upper_corner_on_the_breast_side(folder, truth):
    for rel, info in truth["images"].items():
        if info["view"] != "MLO" or info["borders"]:
            continue
        pixels = read_dicom(folder / rel).pixels
        h, w = pixels.shape
        corner = pixels[h // 40: h // 10, : w // 10]
        other = pixels[h // 40: h // 10, -w // 10:]
        if info["side"] == "R":
            corner, other = other, corner
        assert corner.mean() > other.mean() + 0.3


def test_crop_on_phantom_dicoms_keeps_the_breast_and_drops_the_label(folder, truth, dataset):
    for image in dataset.images[:12]:
        info = truth["images"][str(image.path.relative_to(folder))]
        _, record = preprocess(image.path, side=image.side)
        t, b, l, r = record.box
        bt, bb, bl, br = info["breast_box"]
        tol = 6
        assert t <= bt + tol and b >= bb - tol and l <= bl + tol and r >= br - tol, (record.box, info)
        if info["label_box"]:
            lt, lb, ll, lr = info["label_box"]
            assert not (t < lb and lt < b and l < lr and ll < r)


def _all_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "PHANTOM.txt"}     # PHANTOM.txt holds the wall time


def test_deterministic_for_a_seed(tmp_path):
    a = _all_bytes(phantom.generate(tmp_path / "a", seed=5, patients=2, scale=0.05))
    b = _all_bytes(phantom.generate(tmp_path / "b", seed=5, patients=2, scale=0.05))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)    # CSVs, DICOM bytes, truth
    c = _all_bytes(phantom.generate(tmp_path / "c", seed=6, patients=2, scale=0.05))
    assert a != c


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        phantom.generate(tmp_path / "x", patients=1, scale=0.05)
    with pytest.raises(ValueError, match="scale"):
        phantom.generate(tmp_path / "y", patients=1, scale=5)


def test_overwrite_replaces_an_older_phantom_set(tmp_path):
    out = phantom.generate(tmp_path / "z", seed=1, patients=2, scale=0.05)
    (out / "notes.txt").write_text("mine")
    phantom.generate(out, seed=1, patients=1, scale=0.05, overwrite=True)
    assert len(phantom.read_truth(out)["images"]) == 4
    assert len(list((out / "CBIS-DDSM").rglob("*full mammogram*/*.dcm"))) == 4   # none stale
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_synth_and_preview(tmp_path, capsys):
    from mammo_demo.cli import main
    out = tmp_path / "set"
    assert main(["whole", "synth", "--out", str(out), "--patients", "1", "--scale", "0.06",
                 "--seed", "2", "--quiet"]) == 0
    assert "PHANTOM" in capsys.readouterr().out
    assert main(["whole", "synth", "--out", str(out), "--patients", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    film = sorted((out / "CBIS-DDSM").glob("*/*/1.000000-full*/1-1.dcm"))[0]
    png = tmp_path / "stages.png"
    assert main(["whole", "preview", str(film), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PHANTOM" in capsys.readouterr().out
    assert main(["whole", "preview", str(out / "PHANTOM.txt"), "--out", str(png)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mammo-demo: error:") and "PHANTOM.txt" in err and err.count("\n") == 1


@pytest.mark.slow
def test_default_scale_generation(tmp_path):
    """The default film size (960x600), two patients; prints the time per film."""
    import time
    start = time.perf_counter()
    folder = phantom.generate(tmp_path / "d", seed=0, patients=2)
    per_film = (time.perf_counter() - start) / 8
    info = json.loads((folder / phantom.TRUTH_FILE).read_text())
    assert info["film_shape"] == [960, 600]
    print(f"{per_film:.2f} s per 960x600 film")
