"""mammo_demo.experiment: metrics, table, splits, training-set preparation, run-folder guards.

The end-to-end runs (through the CLI) are in tests/test_cli.py.
"""
import json

import numpy as np
import pytest

import nnlite as nn
from mammo_demo import experiment as E
from mammo_demo.patches import PatchSet

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
    m = E.compute_metrics(y, p, CLASSES, y_val=y, p_val=p)
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
    op = E.compute_metrics(y_test, p_test, CLASSES, y_val, p_val)["specificity_at_sensitivity"]
    assert op["threshold"] == pytest.approx(0.7)     # from validation
    assert op["test_sensitivity"] == 0.0             # the honest test result at that threshold
    assert op["test_specificity"] == 1.0


def test_compute_metrics_missing_class_gives_none_and_a_note():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = E.compute_metrics(y, p, CLASSES)
    assert m["auc_one_vs_rest"]["malignant"] is None and m["malignant"]["auc"] is None
    assert m["auc_macro"] is None
    assert any("malignant-vs-rest undefined" in n for n in m["notes"])
    assert m["specificity_at_sensitivity"] is None


def test_malignant_index_requires_the_class():
    assert E.malignant_index(("benign", "malignant")) == 1
    with pytest.raises(ValueError, match="no 'malignant'"):
        E.malignant_index(("cat", "dog"))


def test_roc_curves_two_classes_draws_malignant_only():
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    curves = E.roc_curves(y, p, ["benign", "malignant"])
    assert [c[0] for c in curves] == ["malignant vs rest"] and curves[0][3] == 1.0


def test_table_has_ours_and_the_paper_and_says_what_data():
    values = {"accuracy": 0.75, "malignant_recall": 0.5, "malignant_precision": 0.25,
              "malignant_f1": None, "malignant_specificity": 0.9, "malignant_auc": 0.8,
              "specificity_at_90_sensitivity": 0.4}
    info = {"kind": "phantom", "phantom_seed": 3}
    text = E.format_table([("all", values, None), ("calc", values, {"accuracy": 0.05})],
                          E.our_data_line(info, folds=1))
    assert "60.9%" in text and "59.6%" in text and "59.1%" in text      # the paper's figures
    assert "75.0%" in text and "75.0±5.0%" in text
    assert "PHANTOM data (synthetic mini-MIAS, seed 3)" in text
    assert "paper: real mini-MIAS" in text and "leak" in text
    assert "NOT A MEDICAL DEVICE" in text
    calc_paper = [line for line in text.splitlines() if line.startswith("paper  calc")]
    assert calc_paper and "n/a" in calc_paper[0]
    assert "real mini-MIAS;" in E.our_data_line({"kind": "real"}, folds=5)


def test_aggregate_mean_and_std_skip_undefined():
    mean, std = E.aggregate([{"a": 0.5, "b": None}, {"a": 0.7, "b": 0.2}, {"a": 0.6, "b": None}])
    assert mean["a"] == pytest.approx(0.6) and std["a"] == pytest.approx(np.std([0.5, 0.7, 0.6]))
    assert mean["b"] == 0.2 and std["b"] == 0.0


def test_data_labels_say_phantom():
    assert E.data_description(True, 0).startswith("phantom")
    assert "PHANTOM" in E.data_description(True, 0) and "PHANTOM" in E.data_label(True, 0)
    assert "phantom" not in E.data_description(False).lower()


# ------------------------------------------------------------------ splits and training set
@pytest.mark.parametrize("folds", [1, 3])
def test_make_splits_no_image_on_two_sides(folds):
    ps = _patchset(n_images=36)
    splits = E.make_splits(ps, seed=5, folds=folds)
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
    E._check_disjoint(ps.image_ids, splits)
    bad = {"train": np.array([0]), "val": np.array([1]), "test": np.array([2])}  # 0 and 1: same image
    with pytest.raises(RuntimeError, match="both train and val"):
        E._check_disjoint(ps.image_ids, [bad])


@pytest.mark.parametrize("balance", ["undersample", "weights", "none"])
def test_prepare_training_set_augments_then_balances(balance):
    ps = _patchset(n_images=9).subset(np.r_[0:18, 0, 1])   # 2 extra normal copies: 8 / 6 / 6
    counts_in = ps.counts()
    assert counts_in == {"normal": 8, "benign": 6, "malignant": 6}
    out, weights, counts = E.prepare_training_set(ps, balance, seed=0)
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
    assert isinstance(E.build_optimizer("adam", params, 0.002), nn.Adam)
    sgd = E.build_optimizer("sgd", params, 0.002)
    assert isinstance(sgd, nn.SGD) and sgd.momentum == 0.9
    assert isinstance(E.build_optimizer("rmsprop", params, 0.002), nn.RMSProp)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, rmsprop"):
        E.build_optimizer("adagrad", params, 0.1)


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
        E.run_experiment(data_dir=tmp_path / "none", out_dir=tmp_path / "run", progress=False, **kwargs)
    assert not (tmp_path / "run").exists()


def test_check_run_dir_guards(tmp_path):
    config = {k: 1 for k in E._RESUME_KEYS}
    run = tmp_path / "run"
    E._check_run_dir(run, config, resume=False, overwrite=False)      # new folder: fine
    run.mkdir()
    E._check_run_dir(run, config, resume=False, overwrite=False)      # empty folder: fine
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="--resume to continue"):
        E._check_run_dir(run, config, resume=False, overwrite=False)
    E._check_run_dir(run, config, resume=False, overwrite=True)
    assert not (run / "config.json").exists()                          # the old run is gone
    (run / "config.json").write_text(json.dumps(config))
    E._check_run_dir(run, {**config, "epochs": 99}, resume=True, overwrite=False)  # more epochs: fine
    with pytest.raises(ValueError, match=r"different settings \(lr: 1 -> 0.5\)"):
        E._check_run_dir(run, {**config, "lr": 0.5}, resume=True, overwrite=False)


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
    E._check_run_dir(run, {}, resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["keep", "notes.txt"]
