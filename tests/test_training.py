"""fit / evaluate / predict, callbacks, resume and fine-tuning."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.callbacks import EarlyStopping, HistoryLogger, ModelCheckpoint
from conftest import two_blob_images


def small_cnn(seed=0, dropout=0.25):
    return nn.Sequential([
        nn.Conv2D(1, 4, 3, padding="same", seed=seed), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dense(4 * 6 * 6, 16, seed=seed + 1), nn.ReLU(),
        nn.Dropout(dropout, seed=seed + 2), nn.Dense(16, 2, seed=seed + 3),
    ])


def test_fit_learns_two_blobs_and_history():
    x, y = two_blob_images(160, seed=0)
    xv, yv = two_blob_images(60, seed=1)
    model = small_cnn()
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.Adam(model.parameters(), lr=3e-3),
                     epochs=6, batch_size=16, validation_data=(xv, yv), verbose=0)
    assert hist.epochs == 6
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] >= 0.9
    ev = model.evaluate(xv, yv, loss=nn.SoftmaxCrossEntropy())
    assert abs(ev["accuracy"] - hist["val_accuracy"][-1]) < 1e-12


def test_verbose_zero_prints_nothing(capsys):
    x, y = two_blob_images(20)
    model = small_cnn()
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.01),
              epochs=1, batch_size=8, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_predict_is_batch_size_independent():
    x, _ = two_blob_images(37)
    model = small_cnn()
    a = model.predict(x, batch_size=5)
    b = model.predict(x, batch_size=100)
    assert a.shape == (37, 2) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    p = model.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_non_finite_loss_names_epoch_and_batch():
    x, y = two_blob_images(32)
    x[20] = np.nan  # lands in the third batch of 8 of the first epoch (no shuffle)
    model = small_cnn()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 3"):
        model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.01),
                  epochs=1, batch_size=8, shuffle=False, verbose=0)
    # the two good batches were applied, the bad one was not: weights stay finite
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))


def test_bad_data_is_rejected():
    model = small_cnn()
    with pytest.raises(ValueError, match="x has 3 samples but y has 2"):
        model.fit(np.zeros((3, 1, 12, 12), np.float32), np.zeros(2, np.int64),
                  loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters()), verbose=0)


def _train(tmp_path, epochs, resume, ckpt):
    x, y = two_blob_images(48, seed=3)
    xv, yv = two_blob_images(16, seed=4)
    model = small_cnn(dropout=0.5)
    opt = nn.Adam(model.parameters(), lr=2e-3)
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=epochs, batch_size=8,
                     validation_data=(xv, yv), verbose=0, checkpoint_path=ckpt, resume=resume,
                     callbacks=[HistoryLogger(tmp_path / f"hist_{epochs}.json")])
    return model, hist


def test_resume_equals_uninterrupted_run(tmp_path):
    straight, h1 = _train(tmp_path, 4, False, None)
    ckpt = tmp_path / "state.npz"
    _train(tmp_path, 2, False, ckpt)          # "interrupted" after two epochs
    resumed, h2 = _train(tmp_path, 4, True, ckpt)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert np.array_equal(a.data, b.data)
    assert h1.history == h2.history


def test_early_stopping_restores_best_weights():
    model = small_cnn()
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    stopper.on_train_begin(model)
    w = model.layers[0].W
    losses = [1.0, 0.5, 0.7, 0.6, 0.8]
    for epoch, value in enumerate(losses):
        w.data[...] = epoch  # stand-in for training: weights change every epoch
        stopper.on_epoch_end(epoch, {"val_loss": value})
        if stopper.stop_training:
            break
    assert epoch == 3 and stopper.best_epoch == 1 and stopper.best == 0.5   # Keras: best + patience
    stopper.on_train_end()
    assert np.all(w.data == 1)


def test_early_stopping_in_fit_stops_and_mode_max():
    x, y = two_blob_images(24, seed=5)
    model = small_cnn()
    # lr = 0 makes every epoch identical: no improvement after the first
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.mode == "max"
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.0),
                     epochs=10, batch_size=8, validation_data=(x, y), callbacks=[stopper], verbose=0)
    assert hist.epochs == 2          # the first epoch, then patience=1 without improvement


def test_early_stopping_needs_its_metric():
    x, y = two_blob_images(16)
    model = small_cnn()
    with pytest.raises(KeyError, match="val_loss"):
        model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters()),
                  epochs=1, callbacks=[EarlyStopping()], verbose=0)


def test_checkpoint_and_logger_files(tmp_path):
    x, y = two_blob_images(32)
    model = small_cnn()
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.Adam(model.parameters()),
              epochs=2, batch_size=16, validation_data=(x, y), verbose=0,
              callbacks=[ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy"),
                         HistoryLogger(tmp_path / "h.csv"), HistoryLogger(tmp_path / "h.json")])
    assert (tmp_path / "best.npz").exists()
    lines = (tmp_path / "h.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,loss,accuracy") and len(lines) == 3
    assert [r["epoch"] for r in json.loads((tmp_path / "h.json").read_text())] == [1, 2]
    with pytest.raises(ValueError, match=".csv or .json"):
        HistoryLogger(tmp_path / "h.txt")


def test_fine_tuning_keeps_frozen_weights():
    x, y = two_blob_images(32)
    model = small_cnn()
    gamma = 2  # freeze layers 0..2 (conv, relu, pool)
    model.freeze(upto=gamma)
    model.layers[-1] = nn.Dense(16, 2, seed=99)  # a new head
    frozen = [p.data.copy() for layer in model.layers[:gamma + 1] for p in layer.parameters()]
    head_before = model.layers[-1].W.data.copy()
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.Adam(model.parameters(), lr=1e-2),
              epochs=2, batch_size=8, verbose=0)
    after = [p.data for layer in model.layers[:gamma + 1] for p in layer.parameters()]
    assert all(np.array_equal(a, b) for a, b in zip(frozen, after))
    assert not np.array_equal(head_before, model.layers[-1].W.data)
    assert model.count_params(trainable_only=True) < model.count_params(trainable_only=False)
