"""mammo-demo finetune: the target ROIs (split by patient, augmented after the split), the run
folder and the sweep table, on a tiny phantom CBIS-DDSM folder and a tiny source model."""
import json

import numpy as np
import pytest

import nnlite as nn
from mammo_demo.cli import main
from mammo_demo.finetune import data as target_data
from mammo_demo.finetune import run


@pytest.fixture(scope="module")
def cbis_folder(tmp_path_factory):
    """A phantom CBIS-DDSM folder: 20 patients, 240x150 films (about 30 mass ROIs)."""
    from mammo_demo.whole.phantom import generate
    return generate(tmp_path_factory.mktemp("cbis") / "phantom", seed=1, patients=20, scale=0.06)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An (untrained) MIAS-style source model for 16x16 inputs, with run-like metadata."""
    path = tmp_path_factory.mktemp("source") / "best_model.npz"
    model = nn.zoo.mias_cnn(num_classes=3, input_shape=(1, 16, 16), seed=0)
    return nn.save(model, path, metadata={"patch_size": 16, "data": "phantom",
                                          "source": "test fixture", "which": "best"})


@pytest.mark.slow
def test_load_mass_rois_and_split_by_patient(cbis_folder):
    rois = target_data.load_mass_rois(cbis_folder, size=16)
    assert rois.is_phantom and rois.x.shape[1:] == (1, 16, 16) and rois.x.dtype == np.float32
    assert set(np.unique(rois.y)) == {0, 1}
    np.testing.assert_allclose(rois.x.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)   # standardised
    parts = target_data.split_by_patient(rois, seed=0)
    sides = [set(rois.patient_ids[parts[s]]) for s in ("train", "val", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sorted(np.concatenate([parts[s] for s in ("train", "val", "test")]).tolist()) == \
        list(range(len(rois)))
    assert (rois.csv_split[parts["test"]] == "test").all()          # the CSVs' own test set
    assert "PHANTOM" in target_data.data_label(rois.is_phantom)


def test_augment_keeps_originals_and_is_seeded():
    g = np.random.default_rng(0)
    x = g.normal(size=(5, 1, 12, 12)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1])
    xa, ya = target_data.augment(x, y, copies=3, seed=2)
    assert xa.shape == (20, 1, 12, 12) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa[:5], x)
    np.testing.assert_array_equal(ya, np.tile(y, 4))
    assert not np.allclose(xa[5:10], x)
    np.testing.assert_array_equal(target_data.augment(x, y, copies=3, seed=2)[0], xa)
    # no rotation, zoom, flips or brightness: the copies are the originals
    same, _ = target_data.augment(x, y, copies=1, rotation=0, zoom=0, brightness=0, flips=False)
    np.testing.assert_allclose(same[5:], x, atol=1e-5)


def test_class_weights_balance_the_loss():
    w0, w1 = run.class_weights(np.array([0, 0, 0, 1]))
    assert 3 * w0 == pytest.approx(w1 * 1) and (3 * w0 + w1) == pytest.approx(4)
    with pytest.raises(ValueError, match="lacks a class"):
        run.class_weights(np.zeros(4))


def test_training_phases_share_one_budget():
    assert run.training_phases({"kind": "tl", "gamma": "head"}, epochs=6, warmup=2, lr_tl=1e-3,
                               lr_ft=1e-4) == [{"gamma": "head", "lr": 1e-3, "epochs": 6,
                                                "early_stopping": True}]
    ft = run.training_phases({"kind": "ft", "gamma": 3}, epochs=6, warmup=2, lr_tl=1e-3,
                             lr_ft=1e-4)
    assert [(p["gamma"], p["lr"], p["epochs"], p["early_stopping"]) for p in ft] == [
        ("head", 1e-3, 2, False), (3, 1e-4, 4, True)]
    assert sum(p["epochs"] for p in ft) == 6
    assert len(run.training_phases({"kind": "ft", "gamma": 0}, epochs=1, warmup=2, lr_tl=1e-3,
                                   lr_ft=1e-4)) == 1            # no room for a warm-up


def test_bad_gamma_and_missing_source_fail_before_writing(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["finetune", "--from", str(source), "--gamma", "9", "--out", str(out),
                 "--quiet"]) == 2
    assert "gamma" in capsys.readouterr().err and not out.exists()
    assert main(["finetune", "--from", str(source), "--gamma", "conv9", "--out", str(out),
                 "--quiet"]) == 2
    assert main(["finetune", "--from", str(tmp_path / "none.npz"), "--transfer", "--out",
                 str(out), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):                              # one mode only
        main(["finetune", "--from", str(source), "--transfer", "--gamma", "3", "--out", str(out)])


@pytest.mark.slow
def test_finetune_sweep_cli_end_to_end(cbis_folder, source, tmp_path, capsys):
    out = tmp_path / "ft"
    rc = main(["finetune", "--from", str(source), "--sweep-gamma", "0,conv_b,3", "--data",
               str(cbis_folder), "--out", str(out), "--epochs", "2", "--patience", "1",
               "--hidden", "8", "--augment", "1", "--quiet"])
    printed = capsys.readouterr()
    assert rc == 2 and "conv_b" in printed.err                    # a name the model lacks
    rc = main(["finetune", "--from", str(source), "--sweep-gamma", "0,3", "--data",
               str(cbis_folder), "--out", str(out), "--epochs", "2", "--patience", "1",
               "--hidden", "8", "--augment", "1", "--size", "16", "--warmup", "0", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    for name in ("config.json", "data.json", "metrics.json", "sweep_table.txt", "report.md",
                 "curves.png", "scratch/best_model.npz", "tl/best_model.npz",
                 "ft_gamma_0/best_model.npz", "ft_gamma_3/history.csv"):
        assert (out / name).is_file(), name
    table = (out / "sweep_table.txt").read_text()
    assert "PHANTOM" in table and "PHANTOM" in printed
    for row in ("scratch", "TL", "FT gamma=0", "FT gamma=3"):
        assert any(line.startswith(row) for line in table.splitlines()), row
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phantom"] is True
    by_name = {c["name"]: c for c in metrics["configurations"]}
    assert by_name["TL"]["frozen_layers"] == ["0", "3"] and by_name["FT gamma=3"]["frozen_layers"] == ["0"]
    for c in metrics["configurations"]:
        r = c["result"]
        assert r["beta"] == pytest.approx(r["train_accuracy"]["value"] / r["val_accuracy"]["value"])
        assert r["test_accuracy"]["n"] == r["auc"]["n"] > 0
    # the frozen layers of the saved best models are the source's weights, bit for bit
    src = nn.load(source)
    tl = nn.load(out / "tl" / "best_model.npz")
    ft3 = nn.load(out / "ft_gamma_3" / "best_model.npz")
    for model in (tl, ft3):
        assert model.layers[0].W.data.tobytes() == src.layers[0].W.data.tobytes()
    assert tl.layers[3].W.data.tobytes() == src.layers[3].W.data.tobytes()
    assert ft3.layers[3].W.data.tobytes() != src.layers[3].W.data.tobytes()
    meta = nn.read_metadata(out / "ft_gamma_3" / "best_model.npz")
    assert meta["data"] == "phantom" and meta["gamma"] == 3 and meta["frozen_layers"] == ["0"]
    assert meta["source_model"] == str(source) and meta["source_provenance"]["patch_size"] == 16
    # a second run into the same folder is refused without --overwrite
    assert main(["finetune", "--from", str(source), "--transfer", "--data", str(cbis_folder),
                 "--out", str(out), "--quiet"]) == 2
