"""The ROI experiment's parts: metrics (evaluation), table (report), splits and training set
(roi_data), models and optimizers (models), run-folder guards (runfolder), Grad-CAM.

The end-to-end runs (through the CLI) are in tests/test_cli.py.
"""
import json

import numpy as np
import pytest

import nnlite as nn
from mammo_demo import evaluation, experiment, models, report, roi_data
from mammo_demo.patches import PatchSet
from mammo_demo.runfolder import RunFolder, RunFolderError

CLASSES = ["normal", "benign", "malignant"]


def _patchset(n_images=30, per_image=2, seed=0, size=8):
    """A fake PatchSet: images 0..n-1, image i has label i % 3 on all its patches."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"mdb{i:03d}" for i in range(n_images)], per_image)
    y = np.repeat(np.arange(n_images) % 3, per_image).astype(np.int64)
    x = rng.standard_normal((len(y), 1, size, size)).astype(np.float32)
    return PatchSet(x, y, ids, tuple(CLASSES))


# ------------------------------------------------------------------ metrics
def test_compute_metrics_known_values():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.full((10, 3), 0.1)
    pred = np.array([0, 0, 0, 2, 1, 0, 2, 2, 1, 2])
    p[np.arange(10), pred] = 0.8
    m = evaluation.compute_metrics(y, p, CLASSES, y_val=y, p_val=p)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["confusion_matrix"] == [[3, 0, 1], [1, 1, 0], [0, 1, 3]]
    mal = m["malignant"]
    assert mal["recall"] == pytest.approx(3 / 4)
    assert mal["precision"] == pytest.approx(3 / 4)
    assert mal["specificity"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 3 / 4) / 3)
    # malignant scores: 0.8 for the 4 predicted malignant (3 true), 0.1 for the other 6 (1 true)
    # AUC = P(score+ > score-) + 0.5 P(tie) = (3*5 + 0.5*(3*1 + 1*5)) / (4*6)
    assert mal["auc"] == pytest.approx((15 + 0.5 * 8) / 24)
    op = m["specificity_at_sensitivity"]
    assert op["threshold_chosen_on"] == "validation"
    assert op["threshold"] == pytest.approx(0.1)   # 90% sensitivity needs every malignant
    assert op["test_sensitivity"] == 1.0 and op["test_specificity"] == 0.0
    json.dumps(m)  # JSON-ready


def test_threshold_is_chosen_on_validation_not_test():
    y_val = np.array([0, 0, 2, 2])
    p_val = np.array([[0.9, 0, 0.1], [0.6, 0, 0.4], [0.3, 0, 0.7], [0.2, 0, 0.8]])
    y_test = np.array([0, 0, 2, 2])
    p_test = np.array([[0.5, 0, 0.5], [0.9, 0, 0.1], [0.4, 0, 0.6], [0.6, 0, 0.4]])
    op = evaluation.compute_metrics(y_test, p_test, CLASSES, y_val=y_val,
                                    p_val=p_val)["specificity_at_sensitivity"]
    assert op["threshold"] == pytest.approx(0.7)     # from validation
    assert op["test_sensitivity"] == 0.0             # the honest test result at that threshold
    assert op["test_specificity"] == 1.0


def test_compute_metrics_missing_class_gives_none_and_a_note():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = evaluation.compute_metrics(y, p, CLASSES)
    assert m["auc_one_vs_rest"]["malignant"] is None and m["malignant"]["auc"] is None
    assert m["auc_macro"] is None
    assert any("malignant-vs-rest undefined" in n for n in m["notes"])
    assert m["specificity_at_sensitivity"] is None


def test_malignant_index_requires_the_class():
    assert evaluation.malignant_index(("benign", "malignant")) == 1
    with pytest.raises(ValueError, match="no 'malignant'"):
        evaluation.malignant_index(("cat", "dog"))


def test_roc_curves_two_classes_draws_malignant_only():
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    curves = evaluation.roc_curves(y, p, ["benign", "malignant"])
    assert [c[0] for c in curves] == ["malignant vs rest"] and curves[0][3] == 1.0


def _metrics(n=40, seed=0, n_mal=7):
    """Metrics of a fake test set: n patches from n/2 images, n_mal malignant."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n - n_mal - 5, int), np.ones(5, int), np.full(n_mal, 2)]
    p = rng.dirichlet([1, 1, 1], size=n)
    p[y == 2, 2] += 0.6
    p /= p.sum(axis=1, keepdims=True)
    ids = np.repeat(np.arange(n // 2), 2)
    return evaluation.compute_metrics(y, p, CLASSES, image_ids=ids, y_val=y, p_val=p, seed=1)


def test_table_has_n_intervals_baseline_and_the_paper():
    m = _metrics()
    info = {"kind": "phantom", "phantom_seed": 3}
    text = report.format_table(m, experiment.our_data_line(info, folds=1),
                               reference=experiment.PAPER["all"],
                               reference_note=experiment.PAPER_DATA)
    assert "60.9%" in text and "59.6%" in text and "59.1%" in text      # the paper's figures
    assert "PHANTOM data (synthetic mini-MIAS, seed 3)" in text
    assert "paper: real mini-MIAS" in text and "leak" in text and "NOT A MEDICAL DEVICE" in text
    for words in ("95% CI", "balanced accuracy", "majority-class baseline ('normal')",
                  "test set (n = 40 patches, 20 images)", "sensitivity reached there"):
        assert words in text
    acc = m["intervals"]["accuracy"]
    row = next(line for line in text.splitlines() if line.startswith("accuracy"))
    lo, hi = acc["ci95"]
    assert f"{100 * lo:.1f}-{100 * hi:.1f}%" in row and " 40 " in row
    recall = next(line for line in text.splitlines() if line.startswith("malignant recall"))
    assert recall.rstrip().endswith("!") or "!" in recall.split()[-2:]    # n = 7 < 30
    assert "not meaningful" in text and "--folds" in text
    assert "real mini-MIAS;" in experiment.our_data_line({"kind": "real"}, folds=5)


def test_wilson_interval_known_values_and_edges():
    lo, hi = evaluation.wilson_interval(7, 7)          # 7/7: not "100%" but 64.6-100%
    assert lo == pytest.approx(0.6457, abs=1e-4) and hi == 1.0
    lo, hi = evaluation.wilson_interval(0, 2)
    assert lo == 0.0 and hi == pytest.approx(0.6576, abs=1e-4)
    lo, hi = evaluation.wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert evaluation.wilson_interval(0, 0) is None
    assert evaluation.proportion(3, 4) == {"value": 0.75, "k": 3, "n": 4,
                                           "ci95": pytest.approx(list(evaluation.wilson_interval(3, 4))),
                                           "method": "wilson"}


def test_auc_interval_is_a_bootstrap_over_images():
    y = np.array([0, 0, 2, 2] * 10)
    p = np.zeros((40, 3))
    p[:, 2] = np.linspace(0, 1, 40) + 0.3 * (y == 2)
    p[:, 0] = 1 - p[:, 2]
    ids = np.repeat(np.arange(10), 4)
    m = evaluation.compute_metrics(y, p / p.sum(1, keepdims=True), CLASSES, image_ids=ids)
    auc = m["intervals"]["malignant_auc"]
    assert auc["method"] == "bootstrap over 10 images" and auc["n_images"] == 10
    lo, hi = auc["ci95"]
    assert lo <= auc["value"] <= hi and hi - lo > 0
    again = evaluation.compute_metrics(y, p / p.sum(1, keepdims=True), CLASSES, image_ids=ids)
    assert again["intervals"]["malignant_auc"]["ci95"] == auc["ci95"]     # seeded
    json.dumps(m)


def test_operating_point_reports_the_sensitivity_reached_and_marks_a_shortfall():
    # validation: threshold 0.7 reaches 100% sensitivity there; on test it catches 2 of 3
    y_val = np.array([0, 0, 2, 2])
    p_val = np.array([[0.9, 0, 0.1], [0.6, 0, 0.4], [0.3, 0, 0.7], [0.2, 0, 0.8]])
    y_test = np.array([0, 0, 2, 2, 2])
    p_test = np.array([[0.9, 0, 0.1], [0.8, 0, 0.2], [0.2, 0, 0.8], [0.1, 0, 0.9], [0.5, 0, 0.5]])
    m = evaluation.compute_metrics(y_test, p_test, CLASSES, y_val=y_val, p_val=p_val)
    op = m["specificity_at_sensitivity"]
    assert op["test_specificity"] == 1.0 and op["test_sensitivity"] == pytest.approx(2 / 3)
    assert op["reached_target"] is False and op["sensitivity"]["n"] == 3
    assert any("short of the 90% target" in n for n in m["notes"])
    text = report.format_table(m, "data")
    row = next(line for line in text.splitlines() if line.startswith("specificity at 90%"))
    assert "*" in row and "NOT specificity at 90% sensitivity" in text
    reached = next(line for line in text.splitlines() if "sensitivity reached there" in line)
    assert "66.7%" in reached
    label = report.operating_point_label(op)
    assert "sensitivity 66.7%" in label and "short of the 90% target" in label
    assert "90% sensitivity" not in label.split("short")[0]


def test_per_class_table_and_majority_baseline():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 0, 2, 0])
    table = evaluation.per_class_table(y, pred, CLASSES)
    assert table["normal"]["precision"]["k"] == 5 and table["normal"]["precision"]["n"] == 7
    assert table["malignant"]["recall"]["value"] == 0.5 and table["malignant"]["support"] == 2
    assert table["benign"]["specificity"]["value"] == pytest.approx(7 / 8)
    assert table["malignant"]["f1"] == pytest.approx(2 / 3)
    base = evaluation.majority_baseline(y, CLASSES)
    assert base["class"] == "normal" and base["accuracy"]["value"] == 0.6
    assert base["balanced_accuracy"] == pytest.approx(1 / 3)
    text = report.format_per_class({"per_class": table})
    assert "precision (95% CI)" in text and "support" in text and "71.4%" in text


def test_report_md_holds_the_tables_and_the_plots(tmp_path):
    m = _metrics()
    (tmp_path / "roc.png").write_bytes(b"png")
    text = report.format_table(m, "PHANTOM data")
    txt, md = report.write_reports(tmp_path, "a run", text, m, plots=("roc.png", "missing.png"))
    body = md.read_text()
    assert "![roc.png](roc.png)" in body and "missing.png" not in body
    assert "| class | precision (95% CI) |" in body and "balanced accuracy" in body
    assert "## Confusion matrix" in body and "NOT A MEDICAL DEVICE" in body
    assert "per class (one vs rest)" in txt.read_text()


def test_aggregate_mean_and_std_skip_undefined():
    mean, std = report.aggregate([{"a": 0.5, "b": None}, {"a": 0.7, "b": 0.2}, {"a": 0.6, "b": None}])
    assert mean["a"] == pytest.approx(0.6) and std["a"] == pytest.approx(np.std([0.5, 0.7, 0.6]))
    assert mean["b"] == 0.2 and std["b"] == 0.0


def test_data_labels_say_phantom():
    assert roi_data.data_description(True, 0).startswith("phantom")
    assert "PHANTOM" in roi_data.data_description(True, 0) and "PHANTOM" in roi_data.data_label(True, 0)
    assert "phantom" not in roi_data.data_description(False).lower()


# ------------------------------------------------------------------ splits and training set
@pytest.mark.parametrize("folds", [1, 3])
def test_make_splits_no_image_on_two_sides(folds):
    ps = _patchset(n_images=36)
    splits = roi_data.make_splits(ps, seed=5, folds=folds)
    assert len(splits) == folds
    tests = []
    for sp in splits:
        sides = {k: set(ps.image_ids[v]) for k, v in sp.items()}
        assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"]
                    or sides["val"] & sides["test"])
        for part in sp.values():
            assert set(ps.y[part]) == {0, 1, 2}          # stratified: every class everywhere
        assert sorted(np.concatenate(list(sp.values()))) == list(range(len(ps)))
        tests.append(sp["test"])
    if folds > 1:  # the test folds partition the patches
        assert sorted(np.concatenate(tests)) == list(range(len(ps)))
    roi_data.check_disjoint(ps.image_ids, splits)
    bad = {"train": np.array([0]), "val": np.array([1]), "test": np.array([2])}  # 0 and 1: same image
    with pytest.raises(RuntimeError, match="both train and val"):
        roi_data.check_disjoint(ps.image_ids, [bad])


@pytest.mark.parametrize("balance", ["undersample", "weights", "none"])
def test_prepare_training_set_augments_then_balances(balance):
    ps = _patchset(n_images=9).subset(np.r_[0:18, 0, 1])   # 2 extra normal copies: 8 / 6 / 6
    counts_in = ps.counts()
    assert counts_in == {"normal": 8, "benign": 6, "malignant": 6}
    out, weights, counts = roi_data.prepare_training_set(ps, balance, seed=0)
    assert counts["after_augmentation"] == {k: 8 * v for k, v in counts_in.items()}
    if balance == "undersample":
        assert out.counts() == {"normal": 48, "benign": 48, "malignant": 48} and weights is None
    elif balance == "weights":
        assert len(out) == 8 * len(ps)
        assert weights == pytest.approx([160 / (3 * 64), 160 / (3 * 48), 160 / (3 * 48)])
        assert counts["class_weights"] == pytest.approx(list(weights))
    else:
        assert len(out) == 8 * len(ps) and weights is None
    # augmentation only rotates/mirrors: every training patch holds the pixels of an
    # original patch of the same image
    originals = {}
    for xi, ref in zip(ps.x, ps.image_ids):
        originals.setdefault(ref, []).append(np.sort(xi.ravel()))
    for xi, ref in zip(out.x[::7], out.image_ids[::7]):
        assert any(np.array_equal(np.sort(xi.ravel()), o) for o in originals[ref])


def test_build_optimizer_choices():
    params = nn.Dense(3, 2).parameters()
    assert isinstance(models.build_optimizer("adam", params, 0.002), nn.Adam)
    sgd = models.build_optimizer("sgd", params, 0.002)
    assert isinstance(sgd, nn.SGD) and sgd.momentum == 0.9
    assert isinstance(models.build_optimizer("rmsprop", params, 0.002), nn.RMSProp)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, rmsprop"):
        models.build_optimizer("adagrad", params, 0.1)


# ------------------------------------------------------------------ argument and run-folder checks
@pytest.mark.parametrize("kwargs, match", [
    ({"task": "density"}, "task must be one of"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"balance": "oversample"}, "balance must be one of"),
    ({"epochs": -1}, "epochs must be >= 0"),
    ({"batch_size": 0}, "batch size must be >= 1"),
    ({"lr": 0.0}, "learning rate must be > 0"),
    ({"folds": 0}, "folds must be >= 1"),
    ({"patch_size": 2}, "patch size must be"),
])
def test_run_experiment_rejects_bad_arguments_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiment.run_experiment(data_dir=tmp_path / "none", out_dir=tmp_path / "run", progress=False, **kwargs)
    assert not (tmp_path / "run").exists()


def _folder(path):
    return RunFolder(path, outputs=experiment.TRAIN_OUTPUTS, output_dirs=experiment.FOLD_DIRS,
                     started_by=experiment.STARTED_BY)


def test_run_folder_guards(tmp_path):
    config = {k: 1 for k in experiment.RESUME_KEYS} | {"epochs": 4}
    run = tmp_path / "run"
    with _folder(run) as f:
        f.prepare(config)                                              # new folder: fine
        (run / "config.json").write_text(json.dumps(config))
        (run / "checkpoint.npz").write_text("x")
        f.mark_started()
    assert not (run / ".lock").exists()
    with _folder(run) as f, pytest.raises(RunFolderError, match="--resume to continue"):
        f.prepare(config)
    assert (run / "checkpoint.npz").exists()                           # a refusal deletes nothing
    with _folder(run) as f:
        with pytest.raises(RunFolderError, match=r"different settings \(lr: 1 -> 0.5\)"):
            f.prepare({**config, "lr": 0.5}, resume=True, resume_keys=experiment.RESUME_KEYS)
    assert (run / "checkpoint.npz").exists() and (run / "config.json").exists()
    with _folder(run) as f:
        new = f.prepare({**config, "epochs": 8}, resume=True, epochs_given=False)
    assert new["epochs"] == 4 and "original plan of 4 epochs" in new["resume_plan"]
    with _folder(run) as f:
        new = f.prepare({**config, "epochs": 8}, resume=True, epochs_given=True)
    assert new["epochs"] == 8 and "8 epochs instead of the original 4" in new["resume_plan"]
    with _folder(run) as f:
        f.prepare(config, overwrite=True)
    assert not (run / "config.json").exists()                          # the old run is gone


def test_a_folder_that_never_started_training_is_reused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "data.json").write_text("{}")
    with _folder(run) as f:
        f.prepare({})
        assert f.contents() == []


def test_a_failure_before_training_leaves_nothing(tmp_path):
    run = tmp_path / "new"
    with pytest.raises(ValueError, match="truncated"):
        with _folder(run) as f:
            f.prepare({})
            (run / "config.json").write_text("{}")
            raise ValueError("truncated PGM")
    assert not run.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        with _folder(kept) as f:
            f.prepare({}, overwrite=True)
            (kept / "config.json").write_text("{}")
            raise ValueError("boom")
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_the_lock_refuses_a_second_holder(tmp_path):
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    with _folder(run):
        with pytest.raises(RunFolderError, match="in use by another mammo-demo run"):
            _folder(run).acquire()
    # another process holds it
    code = ("import sys, time; from mammo_demo.runfolder import RunFolder; "
            "f = RunFolder(sys.argv[1], outputs=()); f.acquire(); print('held', flush=True); "
            "time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=rf"pid {proc.pid}"):
            _folder(run).acquire()
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.05)
    with _folder(run):                         # a dead holder's lock is released by the OS
        pass


def test_evaluate_output_folder_refuses_a_training_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.json", "best_model.npz"):
        (run / name).write_text("{}")
    from mammo_demo.saved_model import EVALUATE_OUTPUTS
    folder = RunFolder(run, outputs=EVALUATE_OUTPUTS)
    with pytest.raises(RunFolderError, match="outputs of a training run"):
        folder.refuse_foreign("evaluate", same_as={"model": "m"})
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"command": "evaluate", "model": "m"}))
    RunFolder(ev, outputs=EVALUATE_OUTPUTS).refuse_foreign("evaluate", same_as={"model": "m"})
    (ev / "metrics.json").write_text(json.dumps({"command": "evaluate", "model": "other"}))
    with pytest.raises(RunFolderError, match="other files"):
        RunFolder(ev, outputs=EVALUATE_OUTPUTS).refuse_foreign("evaluate", same_as={"model": "m"})


# ------------------------------------------------------------------ Grad-CAM
def test_grad_cam_equals_cam_for_a_global_average_pooling_network():
    """With conv -> ReLU -> GAP -> Dense, Grad-CAM is the classic CAM: sum_k W[k, c] A^k."""
    from mammo_demo.gradcam import default_layer, grad_cam

    model = nn.Sequential([nn.Conv2D(1, 4, 3, padding="same", seed=1), nn.ReLU(),
                           nn.GlobalAvgPool2D(), nn.Dense(4, 3, seed=2)])
    x = np.random.default_rng(0).standard_normal((5, 1, 9, 9)).astype(np.float32)
    assert default_layer(model) == 1
    heat, classes = grad_cam(model, x, class_index=2)
    assert heat.shape == (5, 9, 9) and heat.dtype == np.float32 and classes.tolist() == [2] * 5
    A = model.layers[1].forward(model.layers[0].forward(x))                # (5, 4, 9, 9)
    W = model.layers[3].W.data                                             # (4, 3)
    cam = np.maximum(np.einsum("nkij,k->nij", A, W[:, 2]), 0)
    cam /= np.where(cam.max(axis=(1, 2)) > 0, cam.max(axis=(1, 2)), 1)[:, None, None]
    np.testing.assert_allclose(heat, cam, atol=1e-5)
    assert all(not p.grad.any() for p in model.parameters())              # grads left at zero
    assert model.activations == [] and model.gradients == []


def test_grad_cam_on_mias_cnn_defaults_to_the_last_conv_relu():
    from mammo_demo.gradcam import default_layer, grad_cam

    model = nn.zoo.mias_cnn(3, input_shape=(1, 16, 16), seed=0)
    assert default_layer(model) == 4                         # conv2 -> ReLU
    x = np.random.default_rng(1).standard_normal((3, 1, 16, 16)).astype(np.float32)
    heat, classes = grad_cam(model, x)
    assert heat.shape == (3, 16, 16) and 0.0 <= heat.min() and heat.max() <= 1.0
    np.testing.assert_array_equal(classes, nn.predict(model, x).argmax(axis=1))
    with pytest.raises(ValueError, match="class_index must lie in"):
        grad_cam(model, x, class_index=3)
    with pytest.raises(ValueError, match="feature maps"):
        grad_cam(model, x, layer=8)                          # a dense layer's output
    with pytest.raises(ValueError, match="needs a Conv2D"):
        default_layer(nn.Sequential([nn.Flatten(), nn.Dense(4, 2)]))


def test_overwrite_removes_only_the_earlier_runs_files(tmp_path):
    run = tmp_path / "run"
    (run / "fold1").mkdir(parents=True)
    for name in ("config.json", "best_model.npz", "roc.png", "notes.txt"):
        (run / name).write_text("x")
    (run / "fold1" / "metrics.json").write_text("{}")
    (run / "keep").mkdir()
    with _folder(run) as f:
        f.prepare({}, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["keep", "notes.txt"]


def test_the_border_bands_of_grad_cam_are_the_zero_padding():
    """On a flat patch (all zeros = the patch mean after normalisation) any structure in the map
    comes from the zero padding of the 'same' convolutions: it lies inside padding_margin."""
    from mammo_demo.gradcam import grad_cam, padding_margin

    model = nn.zoo.mias_cnn(3, input_shape=(1, 48, 48), seed=3)
    for p in model.parameters():          # a trained network's biases are not zero
        if p.data.ndim == 1:
            p.data[:] = np.random.default_rng(4).uniform(0.05, 0.2, p.data.shape)
    margin = padding_margin(model)
    assert margin == 6                                  # conv1: 2 px; conv2: 2 cells of 2 px
    flat = np.zeros((1, 1, 48, 48), np.float32)
    heat, _ = grad_cam(model, flat, class_index=2)
    inside = heat[0, margin:-margin, margin:-margin]
    ring = np.concatenate([heat[0, :margin].ravel(), heat[0, -margin:].ravel()])
    assert np.ptp(inside) < 1e-5                       # flat inside
    assert np.ptp(ring) > 1e-3                          # the bands: all in the padding ring
    assert padding_margin(nn.Sequential([nn.Conv2D(1, 2, 3), nn.ReLU()])) == 0
