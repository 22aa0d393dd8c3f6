"""Saving, loading, atomic writes and checkpoint errors."""
import os

import numpy as np
import pytest

import nnlite as nn
from nnlite import serialization
from conftest import two_blob_images


def model_a(seed=0):
    return nn.Sequential([
        nn.Conv2D(1, 3, 3, stride=2, padding=1, groups=1, seed=seed), nn.ReLU(),
        nn.MaxPool2D(3, stride=2), nn.LocalResponseNorm(3), nn.Flatten(),
        nn.Dense(3 * 2 * 2, 2, seed=seed + 1),
    ])


def test_roundtrip_identical_predictions(tmp_path):
    x, _ = two_blob_images(10)
    model = model_a()
    model.layers[0].W.trainable = False
    path = nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(path)
    assert [type(layer) for layer in loaded] == [type(layer) for layer in model]
    assert np.array_equal(model.predict(x), loaded.predict(x))
    assert loaded.layers[0].W.trainable is False
    assert loaded.get_config() == model.get_config()


def test_no_pickle_in_file(tmp_path):
    path = nn.save(model_a(), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nn.save(model_a(seed=0), path)
    good = path.read_bytes()

    def boom(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(serialization.numpy, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        nn.save(model_a(seed=1), path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind


def test_truncated_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "m.npz"
    nn.save(model_a(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="m.npz is not a readable nnlite file"):
        nn.load(path)


def test_weights_into_other_architecture_list_mismatch(tmp_path):
    path = nn.save(model_a(), tmp_path / "m.npz")
    other = nn.Sequential([
        nn.Conv2D(1, 5, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2D(3, stride=2),
        nn.LocalResponseNorm(3), nn.Flatten(), nn.Dense(5 * 2 * 2, 2),
    ])
    with pytest.raises(ValueError, match=r"parameter 0 \(0\.W of Conv2D\): model shape \(5, 1, 3, 3\)"):
        serialization.load_weights(other, path)


def test_checkpoint_restores_optimizer(tmp_path):
    model = model_a()
    opt = nn.Adam(model.parameters(), lr=1e-3)
    x, y = two_blob_images(8)
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=1, batch_size=4, verbose=0)
    serialization.save_checkpoint(tmp_path / "c.npz", model, opt, state={"epoch": 1})
    model2 = model_a(seed=5)
    opt2 = nn.Adam(model2.parameters(), lr=1e-3)
    _, state, _ = serialization.load_checkpoint(tmp_path / "c.npz", model2, opt2)
    assert state == {"epoch": 1}
    for a, b in zip(model.parameters(), model2.parameters()):
        assert np.array_equal(a.data, b.data)
    # the next step is identical
    for m, o in ((model, opt), (model2, opt2)):
        m.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=o, epochs=1, batch_size=4, verbose=0)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert np.array_equal(a.data, b.data)
    with pytest.raises(ValueError, match="holds Adam state"):
        serialization.load_checkpoint(tmp_path / "c.npz", model_a(), nn.SGD(model_a().parameters()))


def test_model_file_is_not_a_checkpoint(tmp_path):
    path = nn.save(model_a(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        serialization.load_checkpoint(path)


def test_float64_model_roundtrip(tmp_path):
    model = model_a().astype("float64")
    loaded = nn.load(nn.save(model, tmp_path / "m.npz"))
    assert loaded.dtype == np.float64
