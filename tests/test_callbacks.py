"""Tests for nnlite.callbacks: EarlyStopping, ModelCheckpoint, HistoryLogger.

Most tests drive a callback by hand (``on_train_begin``, ``on_epoch_end``,
``on_train_end``) with made-up metric values, so that every epoch's
outcome is known; a few run it inside ``fit``.
"""
import csv
import json
import math

import numpy as np
import pytest

import nnlite as nn
from conftest import two_blob_images


def tiny_model(seed=0):
    return nn.Sequential([nn.Flatten(), nn.Dense(64, 2, seed=seed)])


def drive(callback, model, values, key="val_loss"):
    """Feed ``values`` epoch by epoch; the weights are set to the epoch index first
    (a stand-in for training). Returns the index of the last epoch run."""
    callback.on_train_begin(model)
    for epoch, value in enumerate(values):
        for p in model.parameters():
            p.data[...] = epoch
        callback.on_epoch_end(epoch, {key: value})
        if callback.stop_training:
            break
    callback.on_train_end()
    return epoch


# ------------------------------------------------------------ EarlyStopping
@pytest.mark.parametrize("patience, last_epoch", [(0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (10, 6)])
def test_patience_counts_epochs_without_improvement_as_keras(patience, last_epoch):
    # best at epoch 1; epochs 2, 3, ... do not improve: stop at epoch 1 + patience (Keras),
    # and patience 0 stops at the first epoch that does not improve, as patience 1
    values = [1.0, 0.5, 0.6, 0.7, 0.55, 0.8, 0.9]
    stopper = nn.EarlyStopping(monitor="val_loss", patience=patience)
    assert drive(stopper, tiny_model(), values) == last_epoch
    assert stopper.stop_training == (last_epoch < len(values) - 1)
    assert stopper.best == 0.5 and stopper.best_epoch == 1


def test_improvement_resets_the_wait():
    stopper = nn.EarlyStopping(monitor="val_loss", patience=2)
    values = [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.86, 0.1]
    assert drive(stopper, tiny_model(), values) == 6
    assert stopper.best_epoch == 4 and stopper.wait == 2


def test_mode_max_auto_and_min_delta():
    assert nn.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert nn.EarlyStopping(monitor="val_auc").mode == "max"
    assert nn.EarlyStopping(monitor="val_f1").mode == "max"
    assert nn.EarlyStopping(monitor="val_loss").mode == "min"
    assert nn.EarlyStopping(monitor="val_loss", mode="max").mode == "max"
    stopper = nn.EarlyStopping(monitor="val_accuracy", patience=0)
    assert drive(stopper, tiny_model(), [0.6, 0.7, 0.65, 0.9], key="val_accuracy") == 2
    assert stopper.best == 0.7
    # an improvement must exceed min_delta: 0.705 after 0.7 does not count
    stopper = nn.EarlyStopping(monitor="val_accuracy", patience=0, min_delta=0.01)
    assert drive(stopper, tiny_model(), [0.6, 0.7, 0.705, 0.9], key="val_accuracy") == 2
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max'"):
        nn.EarlyStopping(mode="bigger")
    with pytest.raises(ValueError, match="patience must be >= 0"):
        nn.EarlyStopping(patience=-1)


@pytest.mark.parametrize("restore", [True, False])
def test_restore_best_weights(restore):
    model = tiny_model()
    stopper = nn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=restore)
    last = drive(stopper, model, [1.0, 0.4, 0.6, 0.7, 0.3])
    assert last == 3
    expected = 1 if restore else 3           # the weights of the best epoch, or of the last one
    assert all((p.data == expected).all() for p in model.parameters())


def test_a_state_saved_by_the_old_rule_loads_and_counts_on():
    # A state dict written before the Keras rule (same keys, wait = epochs since the best)
    model = tiny_model()
    old_state = {"best": 0.5, "best_epoch": 1, "wait": 1, "best_weights": None}
    stopper = nn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=False)
    stopper.on_train_begin(model)
    stopper.load_state_dict(old_state)
    stopper.on_epoch_end(3, {"val_loss": 0.7})
    assert stopper.wait == 2 and stopper.stop_training


def test_a_callback_can_serve_two_runs():
    stopper = nn.EarlyStopping(monitor="val_loss", patience=0)
    model = tiny_model()
    assert drive(stopper, model, [1.0, 2.0, 3.0]) == 1 and stopper.stop_training
    assert drive(stopper, model, [5.0, 4.0, 4.5]) == 2     # reset: 5.0 is a fresh best
    assert stopper.best == 4.0 and stopper.best_epoch == 1


def test_state_dict_round_trip_keeps_best_weights():
    model = tiny_model()
    stopper = nn.EarlyStopping(monitor="val_loss", patience=2)
    stopper.on_train_begin(model)
    for epoch, value in enumerate([1.0, 0.5, 0.7]):
        for p in model.parameters():
            p.data[...] = epoch
        stopper.on_epoch_end(epoch, {"val_loss": value})
    state = stopper.state_dict()
    assert (state["best"], state["best_epoch"], state["wait"]) == (0.5, 1, 1)
    again = nn.EarlyStopping(monitor="val_loss", patience=3)
    again.on_train_begin(model)
    again.load_state_dict(state)
    for p in model.parameters():
        p.data[...] = 9
    again.on_epoch_end(3, {"val_loss": 0.8})
    assert not again.stop_training and again.wait == 2
    again.on_epoch_end(4, {"val_loss": 0.9})
    assert again.stop_training and again.wait == 3
    again.on_train_end()
    assert all((p.data == 1).all() for p in model.parameters())


def test_resumed_early_stopping_restores_the_same_best_weights(tmp_path):
    """Best epoch before the interruption, stop after it: the resumed run must restore the same weights."""
    x, y = two_blob_images(32, size=8, seed=1)

    def run(epochs, resume, ckpt):
        model = tiny_model(seed=3)
        opt = nn.SGD(model.parameters(), lr=0.2)
        schedule = nn.StepDecay(opt, step_size=1, gamma=0.5)
        # the logged lr falls every epoch: with mode="max" epoch 0 stays the best
        stopper = nn.EarlyStopping(monitor="lr", mode="max", patience=2)
        hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=epochs, batch_size=8,
                         schedule=schedule, callbacks=[stopper], verbose=0, checkpoint_path=ckpt,
                         resume=resume)
        return model, hist, stopper

    straight, hist, stopper = run(10, False, None)
    assert hist.epochs == 3 and stopper.best_epoch == 0       # best, then patience=2 epochs
    ckpt = tmp_path / "run.npz"
    run(2, False, ckpt)                                   # "interrupted" after two epochs
    resumed, hist2, stopper2 = run(10, True, ckpt)
    assert hist2.history == hist.history and stopper2.best_epoch == 0
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


# ----------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_saves_only_improvements(tmp_path):
    model = tiny_model()
    ckpt = nn.ModelCheckpoint(tmp_path / "best_{epoch}.npz", monitor="val_loss")
    assert ckpt.mode == "min" and ckpt.save_best_only
    drive(ckpt, model, [0.5, 0.4, 0.6, 0.3, 0.35])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_1.npz", "best_2.npz", "best_4.npz"]
    loaded = nn.load(tmp_path / "best_4.npz")
    assert all((p.data == 3).all() for p in loaded.parameters())      # the weights of epoch index 3
    assert ckpt.best == 0.3 and ckpt.state_dict() == {"best": 0.3}


def test_model_checkpoint_single_file_holds_best_and_mode_max(tmp_path):
    model = tiny_model()
    path = tmp_path / "best.npz"
    ckpt = nn.ModelCheckpoint(path, monitor="val_accuracy")
    assert ckpt.mode == "max"
    drive(ckpt, model, [0.5, 0.8, 0.7, 0.75], key="val_accuracy")
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]        # no temporary files left
    assert all((p.data == 1).all() for p in nn.load(path).parameters())
    again = nn.ModelCheckpoint(path, monitor="val_accuracy")
    again.load_state_dict(json.loads(json.dumps(ckpt.state_dict())))
    assert again.best == 0.8


def test_model_checkpoint_every_epoch_and_missing_metric(tmp_path):
    model = tiny_model()
    drive(nn.ModelCheckpoint(tmp_path / "e{epoch}.npz", save_best_only=False), model, [3.0, 2.0, 4.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.npz", "e2.npz", "e3.npz"]
    assert all((p.data == 2).all() for p in nn.load(tmp_path / "e3.npz").parameters())
    ckpt = nn.ModelCheckpoint(tmp_path / "x.npz", monitor="val_auc")
    ckpt.on_train_begin(model)
    with pytest.raises(KeyError, match="ModelCheckpoint monitors 'val_auc'"):
        ckpt.on_epoch_end(0, {"val_loss": 1.0})


def test_model_checkpoint_in_fit_keeps_best_validation_model(tmp_path):
    x, y = two_blob_images(32, size=8, seed=2)
    xv, yv = two_blob_images(16, size=8, seed=3)
    model = tiny_model()
    path = tmp_path / "best.npz"
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.05),
                     epochs=3, batch_size=8, validation_data=(xv, yv), verbose=0,
                     callbacks=[nn.ModelCheckpoint(path, monitor="val_loss")])
    best = nn.load(path)
    ev = best.evaluate(xv, yv, loss=nn.SoftmaxCrossEntropy())
    assert ev["loss"] == pytest.approx(min(hist["val_loss"]), rel=1e-6)


# ------------------------------------------------------------ HistoryLogger
def test_history_logger_csv_and_json(tmp_path):
    csv_log = nn.HistoryLogger(tmp_path / "logs" / "h.csv")       # the folder is created
    json_log = nn.HistoryLogger(tmp_path / "logs" / "h.json")
    epochs = [{"loss": 0.9, "accuracy": 0.5}, {"loss": 0.7, "accuracy": 0.75},
              {"loss": 0.6, "accuracy": 0.8, "val_loss": 0.65}]   # a key that appears later
    for cb in (csv_log, json_log):
        cb.on_train_begin(None)
        for i, logs in enumerate(epochs):
            cb.on_epoch_end(i, logs)
    with open(tmp_path / "logs" / "h.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["loss"]) for r in rows] == [0.9, 0.7, 0.6]
    assert rows[0]["val_loss"] == "" and float(rows[2]["val_loss"]) == 0.65
    data = json.loads((tmp_path / "logs" / "h.json").read_text())
    assert data == [{"epoch": 1, "loss": 0.9, "accuracy": 0.5}, {"epoch": 2, "loss": 0.7, "accuracy": 0.75},
                    {"epoch": 3, "loss": 0.6, "accuracy": 0.8, "val_loss": 0.65}]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["h.csv", "h.json"]   # no temp files


def test_history_logger_state_and_fit(tmp_path):
    x, y = two_blob_images(16, size=8)
    model = tiny_model()
    logger = nn.HistoryLogger(tmp_path / "h.json")
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.01),
                     epochs=3, batch_size=8, verbose=0, callbacks=[logger])
    rows = json.loads((tmp_path / "h.json").read_text())
    assert [r["loss"] for r in rows] == hist["loss"] and [r["lr"] for r in rows] == [0.01] * 3
    again = nn.HistoryLogger(tmp_path / "h.json")
    again.load_state_dict(json.loads(json.dumps(logger.state_dict())))
    again.on_epoch_end(3, {"loss": 0.1})
    assert [r["epoch"] for r in json.loads((tmp_path / "h.json").read_text())] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="writes .csv or .json"):
        nn.HistoryLogger(tmp_path / "h.txt")


def test_infinite_best_survives_json():
    stopper = nn.EarlyStopping()
    stopper.on_train_begin(tiny_model())
    state = json.loads(json.dumps({k: v for k, v in stopper.state_dict().items()}))
    assert state["best"] == math.inf and state["best_weights"] is None
