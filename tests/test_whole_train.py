"""mammo-demo whole train / evaluate: patient split, label rule, per-breast aggregation,
threshold procedure, and a tiny end-to-end CLI run on a few phantom patients."""
import json
from pathlib import Path

import numpy as np
import pytest

from mammo_demo.cbis import Abnormality, CbisImage
from mammo_demo.whole import data as whole_data
from mammo_demo.whole import experiments


# ------------------------------------------------------------------ the patient split
def test_split_by_patient_keeps_each_patient_on_one_side_and_stratifies():
    rng = np.random.default_rng(3)
    patients = np.repeat([f"P_{i:05d}" for i in range(40)], 4)          # 4 films each
    malignant_patient = rng.random(40) < 0.3
    y = np.zeros(len(patients), np.int64)
    for i in np.flatnonzero(malignant_patient):
        y[4 * i + rng.integers(0, 4)] = 1                               # one malignant film
    split = whole_data.split_by_patient(patients, y, seed=1)
    parts = {k: set(patients[v].tolist()) for k, v in split.items()}
    assert not parts["train"] & parts["val"]
    assert not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(len(patients)))
    for part in parts.values():                     # every part has malignant patients
        assert any(malignant_patient[int(p[2:])] for p in part)
    # the same seed gives the same split; whole patients move together under another seed
    again = whole_data.split_by_patient(patients, y, seed=1)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_check_disjoint_fails_loudly():
    patients = np.array(["A", "A", "B", "C"])
    with pytest.raises(RuntimeError, match="both train and test"):
        whole_data.check_disjoint(patients, {"train": np.array([0, 2]), "val": np.array([], int),
                                             "test": np.array([1, 3])})


# ------------------------------------------------------------------ the label rule
def _abnormality(k, pathology):
    return Abnormality(abnormality_id=k, type="mass", pathology=pathology, assessment=3,
                       subtlety=3, descriptors={}, csv_crop_path="", csv_mask_path="",
                       csv_file="x.csv", line=k + 1, roi_folder="")


def _image(image_id, patient, side, view, pathologies, path="film.dcm"):
    return CbisImage(image_id=image_id, patient_id=patient, side=side, view=view, split="train",
                     breast_density=2,
                     abnormalities=[_abnormality(k + 1, p) for k, p in enumerate(pathologies)],
                     path=Path(path))


class _Dataset:
    def __init__(self, images):
        self.images = images


def test_label_rule_malignant_if_any_abnormality_is_and_views_merge():
    images = [
        _image("Mass-Training_P_00001_LEFT_CC", "P_00001", "L", "CC", ["BENIGN", "MALIGNANT"]),
        _image("Mass-Training_P_00001_LEFT_MLO", "P_00001", "L", "MLO",
               ["BENIGN_WITHOUT_CALLBACK"]),
        # the same film listed under Mass- and Calc- (real CBIS-DDSM): one image, malignant
        _image("Mass-Training_P_00002_RIGHT_CC", "P_00002", "R", "CC", ["BENIGN"]),
        _image("Calc-Training_P_00002_RIGHT_CC", "P_00002", "R", "CC", ["MALIGNANT"]),
        _image("Normal-Training_P_00003_LEFT_CC", "P_00003", "L", "CC", []),
    ]
    assert [whole_data.image_is_malignant(i) for i in images] == [True, False, False, True, False]
    table = whole_data.image_table(_Dataset(images))
    got = {(e["patient"], e["side"], e["view"]): e["malignant"] for e in table}
    assert got == {("P_00001", "L", "CC"): True, ("P_00001", "L", "MLO"): False,
                   ("P_00002", "R", "CC"): True, ("P_00003", "L", "CC"): False}
    merged = [e for e in table if e["patient"] == "P_00002"][0]
    assert len(merged["ids"]) == 2


# ------------------------------------------------------------------ per-breast aggregation
def test_aggregate_breasts_min_max_mean_on_a_hand_made_example():
    breast = np.array(["P1_L", "P1_L", "P1_R", "P1_R", "P2_L"])        # P2_L has no MLO
    view = np.array(["CC", "MLO", "CC", "MLO", "CC"])
    scores = np.array([0.2, 0.8, 0.4, 0.1, 0.9])
    labels = np.array([0, 1, 0, 0, 1])
    expected = {"min": [0.2, 0.1], "max": [0.8, 0.4], "mean": [0.5, 0.25]}
    for how, want in expected.items():
        ids, s, y = experiments.aggregate_breasts(breast, view, scores, labels, how)
        assert ids.tolist() == ["P1_L", "P1_R"]                          # both views only
        np.testing.assert_allclose(s, want)
        assert y.tolist() == [1, 0]                                      # malignant if any view is
    assert experiments.breast_patient(["P_00001_L", "P_00002_R"]).tolist() == ["P_00001",
                                                                              "P_00002"]
    with pytest.raises(ValueError, match="aggregation"):
        experiments.aggregate_breasts(breast, view, scores, labels, "median")


# ------------------------------------------------------------------ the threshold procedure
def test_threshold_is_chosen_on_validation_only():
    y_val = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    s_val = np.array([.9, .85, .8, .75, .7, .65, .6, .55, .5, .2, .4, .3, .1, .05])
    y_test = np.array([1, 1, 1, 0, 0, 0, 0])
    s_test = np.array([.95, .6, .3, .52, .45, .2, .1])
    groups = np.arange(len(y_test))
    row = experiments.image_row(y_val, s_val, y_test, s_test, groups, y_val, bootstrap_samples=50)
    op = row["operating_point"]
    # 9 of the 10 validation positives score >= 0.5: the largest threshold reaching 90%
    assert op["threshold"] == pytest.approx(0.5)
    assert op["threshold_chosen_on"] == "validation"
    assert op["sensitivity"]["k"] == 2 and op["sensitivity"]["n"] == 3     # on test: 0.95, 0.6
    assert op["specificity"]["k"] == 3 and op["specificity"]["n"] == 4     # 0.52 is above
    assert not op["reached_target"]
    assert row["accuracy_at_threshold"]["k"] == 5 and row["accuracy_at_threshold"]["n"] == 7
    assert row["accuracy_at_0.5"]["k"] == 5
    # changing the test scores never moves the threshold; changing validation does
    moved = experiments.image_row(y_val, s_val, y_test, s_test[::-1], groups, y_val,
                                  bootstrap_samples=50)
    assert moved["operating_point"]["threshold"] == op["threshold"]
    other = experiments.image_row(y_val, s_val * 0.5, y_test, s_test, groups, y_val,
                                  bootstrap_samples=50)
    assert other["operating_point"]["threshold"] == pytest.approx(0.25)
    assert row["auc"]["method"].startswith("bootstrap over") and "patients" in row["auc"]["method"]
    assert row["baseline"]["class"] == 1 and row["baseline"]["k"] == 3     # majority of y_train


def test_class_weights_balance_the_classes():
    w = experiments.class_weights(np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(w, [4 / 6, 2.0])


def test_full_models_need_224():
    with pytest.raises(ValueError, match="--size 224"):
        experiments.check_model("resnet50", 64)
    with pytest.raises(ValueError, match="--model must be one of"):
        experiments.check_model("vgg16", 64)


# ------------------------------------------------------------------ a tiny CLI run
# 8 phantom patients at 240x150 pixels, 32x32 inputs, 1 epoch: about 15 s on 2 cores, so slow
# (run with: pytest -m slow tests/test_whole_train.py)
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mammo_demo.cli import main
    from mammo_demo.whole import phantom
    root = tmp_path_factory.mktemp("whole_train")
    data = phantom.generate(root / "data", seed=0, patients=8, scale=0.06)
    cache = root / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("NNLITE_CACHE", str(cache))
    out = root / "run"
    args = ["whole", "train", "--data", str(data), "--out", str(out), "--model", "reduced_alexnet",
            "--size", "32", "--epochs", "1", "--view-epochs", "1", "--quiet"]
    code = main(args)
    yield {"root": root, "data": data, "out": out, "code": code, "args": args, "main": main,
           "cache": cache}
    mp.undo()


@pytest.mark.slow
def test_tiny_cli_run_writes_the_run_folder(tiny_run):
    assert tiny_run["code"] == 0
    out = tiny_run["out"]
    for name in ("config.json", "data.json", "metrics.json", "report.txt", "report.md",
                 "best_model.npz", "roc.png", "breast_table.png",
                 "curves_view_reduced_alexnet.png", "curves_malignant_reduced_alexnet.png",
                 "malignant_reduced_alexnet/checkpoint.npz", "view_reduced_alexnet/history.csv"):
        assert (out / name).is_file(), name
    report = (out / "report.txt").read_text()
    assert "PHANTOM" in report
    for heading in ("Experiment 1", "Experiment 2 (Table 6.3)", "Experiment 3 (Table 6.4)"):
        assert heading in report
    data = json.loads((out / "data.json").read_text())
    parts = {k: set(v) for k, v in data["patients"].items()}
    assert not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_kind"] == "phantom"
    import nnlite as nn
    meta = nn.read_metadata(out / "best_model.npz")
    assert meta["task"] == "malignant" and meta["threshold_chosen_on"] == "validation"
    assert meta["data_kind"] == "phantom" and sorted(meta["test_patients"]) == sorted(parts["test"])
    assert list((tiny_run["cache"] / whole_data.ARRAYS_FOLDER).glob("crop-32-*.npz"))
    dataset, _ = whole_data.resolve_data(tiny_run["data"], progress=False)
    images, facts = whole_data.load_images(dataset, "crop", 32, cache_dir=tiny_run["cache"],
                                           progress=False)
    assert facts["from_cache"] and images.x.shape == (32, 1, 32, 32)
    assert images.is_phantom and set(images.view.tolist()) == {"CC", "MLO"}


@pytest.mark.slow
def test_tiny_cli_refuses_then_resumes(tiny_run, capsys):
    main, args = tiny_run["main"], tiny_run["args"]
    assert main(args) == 2                                  # a started run: refused
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0                   # nothing left to train: quick


@pytest.mark.slow
def test_tiny_cli_evaluate(tiny_run, capsys):
    main, out = tiny_run["main"], tiny_run["out"]
    ev = tiny_run["root"] / "eval"
    assert main(["whole", "evaluate", "--model", str(out / "best_model.npz"), "--out", str(ev),
                 "--quiet"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    test_patients = json.loads((out / "data.json").read_text())["patients"]["test"]
    assert metrics["evaluated"] == f"the training run's {len(test_patients)} test patients"
    assert "PHANTOM" in (ev / "report.txt").read_text()
    # the training folder is not an evaluate output: refused
    assert main(["whole", "evaluate", "--model", str(out / "best_model.npz"), "--out", str(out),
                 "--quiet"]) == 2
    # a view model is not a malignant model: a one-line error
    assert main(["whole", "evaluate", "--model", str(out / "view_reduced_alexnet/best_model.npz"),
                 "--out", str(tiny_run["root"] / "eval2"), "--quiet"]) == 2
    assert "not a malignant-vs-not model" in capsys.readouterr().err
