"""CBIS-DDSM reader: column names, grouping, labels, path mismatch, crop vs mask by content, errors."""
import csv
import io
from pathlib import Path

import numpy as np
import pytest

from mammo_demo.cbis import (CSV_FILES, clean_path, classify_roi_files, first_component,
                             load_cbis, normalise_column)
from mammo_demo.dicom import write_dicom

MASS_HEADER = ["patient_id", "breast_density", "left or right breast", "image view",
               "abnormality id", "abnormality type", "mass shape", "mass margins", "assessment",
               "pathology", "subtlety", "image file path", "cropped image file path",
               "ROI mask file path"]
CALC_HEADER = ["patient_id", "breast density", "left or right breast", "image view",
               "abnormality id", "abnormality type", "calc type", "calc distribution",
               "assessment", "pathology", "subtlety", "image file path",
               "cropped image file path", "ROI mask file path"]
UID = "1.3.6.1.4.1.9590.100.1.2."


def film(seed=0, shape=(32, 24)):
    return np.random.default_rng(seed).integers(100, 60000, shape).astype(np.uint16)


def tcia_image(tree, image_id, seed=0):
    """A full mammogram in a TCIA download's folder names (not the CSV's UIDs)."""
    return write_dicom(tree / image_id / "07-20-2016-DDSM-74994"
                       / "1.000000-full mammogram images-24515" / "1-1.dcm", film(seed))


def tcia_roi(tree, roi_id, together=True, mask_name="1-1.dcm"):
    """The cropped image and ROI mask of an abnormality; both in one series when ``together``."""
    mask = np.zeros((32, 24), np.uint8)
    mask[8:20, 6:14] = 255
    study = tree / roi_id / "07-21-2016-DDSM-18870"
    if together:
        crop_name = "1-2.dcm" if mask_name == "1-1.dcm" else "1-1.dcm"
        mask_path = study / "1.000000-ROI mask images-59637" / mask_name
        crop_path = study / "1.000000-ROI mask images-59637" / crop_name
    else:
        mask_path = study / "1.000000-ROI mask images-59637" / "1-1.dcm"
        crop_path = study / "1.000000-cropped images-11111" / "1-1.dcm"
    write_dicom(mask_path, mask, bits_stored=8)
    write_dicom(crop_path, film(7, (12, 8)))
    return crop_path, mask_path


def csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def row(header, pid, side, view, abn, kind, pathology, folder, density=3, swap=False):
    image = f"{folder}/{UID}1111/{UID}2222/000000.dcm"
    crop = f"{folder}_{abn}/{UID}3333/{UID}4444/000000.dcm"
    mask = f"{folder}_{abn}/{UID}5555/{UID}6666/000001.dcm\n"     # real CBIS: stray newline
    if swap:
        crop, mask = mask, crop
    a, b = ("IRREGULAR", "SPICULATED") if kind == "mass" else ("PLEOMORPHIC", "CLUSTERED")
    return [pid, density, side, view, abn, "mass" if kind == "mass" else "calcification", a, b,
            4, pathology, 3, " " + image + "  ", crop, mask]


@pytest.fixture
def cbis(tmp_path):
    """A tiny CBIS-DDSM download: 3 mass images (one with two abnormalities), 1 calc image."""
    tree = tmp_path / "CBIS-DDSM"
    tcia_image(tree, "Mass-Training_P_00001_LEFT_CC", 1)
    tcia_roi(tree, "Mass-Training_P_00001_LEFT_CC_1", together=True, mask_name="1-1.dcm")
    tcia_roi(tree, "Mass-Training_P_00001_LEFT_CC_2", together=True, mask_name="1-2.dcm")
    tcia_image(tree, "Mass-Training_P_00001_LEFT_MLO", 2)
    tcia_roi(tree, "Mass-Training_P_00001_LEFT_MLO_1", together=False)
    tcia_image(tree, "Mass-Test_P_00009_RIGHT_CC", 3)
    tcia_roi(tree, "Mass-Test_P_00009_RIGHT_CC_1")
    tcia_image(tree, "Calc-Training_P_00004_RIGHT_MLO", 4)
    tcia_roi(tree, "Calc-Training_P_00004_RIGHT_MLO_1", mask_name="1-2.dcm")
    tcia_image(tree, "Normal-Training_P_00005_LEFT_CC", 5)
    (tmp_path / CSV_FILES[0]).write_text(csv_text(MASS_HEADER, [
        row(MASS_HEADER, "P_00001", "LEFT", "CC", 1, "mass", "BENIGN",
            "Mass-Training_P_00001_LEFT_CC"),
        row(MASS_HEADER, "P_00001", "LEFT", "CC", 2, "mass", "MALIGNANT",
            "Mass-Training_P_00001_LEFT_CC", swap=True),
        row(MASS_HEADER, "P_00001", "LEFT", "MLO", 1, "mass", "BENIGN_WITHOUT_CALLBACK",
            "Mass-Training_P_00001_LEFT_MLO"),
    ]))
    (tmp_path / CSV_FILES[1]).write_text(csv_text(MASS_HEADER, [
        row(MASS_HEADER, "P_00009", "RIGHT", "CC", 1, "mass", "MALIGNANT",
            "Mass-Test_P_00009_RIGHT_CC"),
    ]))
    (tmp_path / CSV_FILES[2]).write_text(csv_text(CALC_HEADER, [
        row(CALC_HEADER, "P_00004", "RIGHT", "MLO", 1, "calc", "BENIGN",
            "Calc-Training_P_00004_RIGHT_MLO", density=2, swap=True),
    ]))
    return tmp_path


def by_id(dataset):
    return {image.image_id: image for image in dataset.images}


def test_column_names_and_paths_are_normalised():
    assert normalise_column("breast density") == normalise_column("breast_density") == "breast_density"
    assert normalise_column(" ROI mask file path ") == "roi_mask_file_path"
    assert clean_path("  Mass-Training_P_1_LEFT_CC/1.2/3.4/000001.dcm\n") == \
        "Mass-Training_P_1_LEFT_CC/1.2/3.4/000001.dcm"
    assert first_component("Calc-Test_P_00038_LEFT_CC_1/1.3.6/1.3.6/000000.dcm\n") == \
        "Calc-Test_P_00038_LEFT_CC_1"


def test_images_group_abnormality_rows_and_take_labels(cbis):
    dataset = load_cbis(cbis)
    images = by_id(dataset)
    cc = images["Mass-Training_P_00001_LEFT_CC"]
    assert [a.abnormality_id for a in cc.abnormalities] == [1, 2]       # several rows, one image
    assert (cc.patient_id, cc.side, cc.view, cc.split) == ("P_00001", "L", "CC", "train")
    assert cc.malignant and cc.label == 1                              # any MALIGNANT
    mlo = images["Mass-Training_P_00001_LEFT_MLO"]
    assert not mlo.malignant                                           # BENIGN_WITHOUT_CALLBACK
    assert images["Mass-Test_P_00009_RIGHT_CC"].split == "test"
    calc = images["Calc-Training_P_00004_RIGHT_MLO"]
    assert calc.breast_density == 2                                    # "breast density" column
    assert cc.breast_density == 3                                      # "breast_density" column
    assert calc.abnormalities[0].type == "calcification"
    assert dataset.summary()["abnormalities"] == 5


def test_files_found_by_first_path_component_despite_uid_folders(cbis):
    images = by_id(load_cbis(cbis))
    path = images["Mass-Training_P_00001_LEFT_CC"].path
    assert path is not None and path.name == "1-1.dcm"
    assert "full mammogram images" in str(path) and UID not in str(path)


def test_crop_and_mask_told_apart_by_content_not_column(cbis):
    dataset = load_cbis(cbis)
    for image in dataset.images:
        for abnormality in image.abnormalities:
            crop, mask = dataset.resolve_roi(abnormality)
            assert crop is not None and mask is not None, abnormality
            from mammo_demo.dicom import read_stored
            assert np.unique(read_stored(mask)[1]).size == 2
            assert np.unique(read_stored(crop)[1]).size > 2
    # the swapped row names the mask in the cropped-image column: the content decides
    swapped = by_id(dataset)["Mass-Training_P_00001_LEFT_CC"].abnormalities[1]
    assert swapped.csv_crop_path.endswith("000001.dcm")
    assert swapped.mask_file.parent.name.startswith("1.000000-ROI mask images")


def test_resolve_rois_fills_every_abnormality(cbis):
    dataset = load_cbis(cbis)
    dataset.resolve_rois()
    for image in dataset.images:
        for abnormality in image.abnormalities:
            assert abnormality.crop_file.is_file() and abnormality.mask_file.is_file()
            assert abnormality.crop_file.parts[-4] == abnormality.roi_folder


def test_classify_roi_files_ignores_names(tmp_path):
    crop, mask = tcia_roi(tmp_path, "x_1", together=True, mask_name="1-2.dcm")
    assert classify_roi_files([mask, crop]) == (crop, mask)


def test_tree_under_a_manifest_folder(cbis):
    (cbis / "manifest-1600000000").mkdir()
    (cbis / "CBIS-DDSM").rename(cbis / "manifest-1600000000" / "CBIS-DDSM")
    dataset = load_cbis(cbis)
    assert dataset.tree.parent.name == "manifest-1600000000"
    assert dataset.summary()["missing_files"] == 0


def test_unlisted_normal_folders(cbis):
    images = by_id(load_cbis(cbis))
    normal = images["Normal-Training_P_00005_LEFT_CC"]
    assert not normal.listed and not normal.abnormalities and normal.label == 0
    assert "Normal-Training_P_00005_LEFT_CC" not in by_id(load_cbis(cbis, include_unlisted=False))


def test_breasts_group_the_views(cbis):
    breasts = load_cbis(cbis).breasts()
    assert sorted(i.view for i in breasts[("train", "P_00001", "L")]) == ["CC", "MLO"]


def test_missing_image_file(cbis):
    import shutil
    shutil.rmtree(cbis / "CBIS-DDSM" / "Mass-Test_P_00009_RIGHT_CC")
    assert by_id(load_cbis(cbis))["Mass-Test_P_00009_RIGHT_CC"].path is None
    with pytest.raises(ValueError, match="no DICOM file for Mass-Test_P_00009_RIGHT_CC"):
        load_cbis(cbis, require_files=True)


@pytest.mark.parametrize("column, value, message", [
    (9, "PROBABLY_BENIGN", "bad pathology"),
    (2, "BOTH", "left or right breast"),
    (3, "ML", "image view"),
    (4, "one", "not an integer"),
    (11, "   ", "empty 'image file path'"),
    (11, "P_00002_LEFT_CC/1.2/000000.dcm", "image folder"),
])
def test_bad_row_names_file_and_line(tmp_path, column, value, message):
    good = row(MASS_HEADER, "P_00002", "LEFT", "CC", 1, "mass", "BENIGN",
               "Mass-Training_P_00002_LEFT_CC")
    bad = list(good)
    bad[column] = value
    # the first row's mask path has a newline inside its quotes: the bad row starts on line 4
    path = tmp_path / CSV_FILES[0]
    path.write_text(csv_text(MASS_HEADER, [good, bad]))
    with pytest.raises(ValueError) as info:
        load_cbis(tmp_path)
    assert str(info.value).startswith(f"{path}: line 4:") and message in str(info.value)


def test_wrong_field_count_and_missing_column(tmp_path):
    path = tmp_path / CSV_FILES[2]
    path.write_text(",".join(CALC_HEADER) + "\nP_00001,3,LEFT\n")
    with pytest.raises(ValueError, match=r"line 2: 3 fields"):
        load_cbis(tmp_path)
    path.write_text(",".join(h for h in CALC_HEADER if h != "pathology") + "\n")
    with pytest.raises(ValueError, match=r"line 1: missing column\(s\) pathology"):
        load_cbis(tmp_path)


def test_no_csv(tmp_path):
    with pytest.raises(ValueError, match="case-description CSVs"):
        load_cbis(tmp_path)


def test_fuzzed_csv_raises_only_value_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    good = csv_text(MASS_HEADER, [
        row(MASS_HEADER, "P_00001", "LEFT", "CC", 1, "mass", "BENIGN", "Mass-Training_P_00001_LEFT_CC"),
        row(MASS_HEADER, "P_00001", "LEFT", "CC", 2, "mass", "MALIGNANT", "Mass-Training_P_00001_LEFT_CC"),
    ])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                    st.sampled_from(['"', ",", "\n", "x", "", "\r", " ", "\x00"])),
                          min_size=1, max_size=6))
    def check(edits):
        text = good
        for where, char in edits:
            i = int(where * len(text))
            text = text[:i] + char + text[i + 1:]
        (tmp_path / CSV_FILES[0]).write_text(text)
        try:
            dataset = load_cbis(tmp_path)
        except ValueError as e:
            assert str(e).startswith(str(tmp_path)), e
        else:
            assert all(i.side in ("L", "R") and i.view in ("CC", "MLO") for i in dataset.images)

    check()


def test_not_utf8(tmp_path):
    (tmp_path / CSV_FILES[0]).write_bytes(b"patient_id,\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_cbis(tmp_path)
