"""nnlite.transfer: the transfer-learning paper's head replacement and gamma (first layer that
trains); frozen weights bit-identical after training; frozen BatchNorm statistics unchanged."""
import numpy as np
import pytest

import nnlite as nn
from nnlite import transfer as tl


def square_or_noise(n, size=16, seed=0):
    """A bright 3x3 square anywhere (label 1) or noise only (0): position-free, GAP keeps it."""
    g = np.random.default_rng(seed)
    x = g.normal(0.0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.nonzero(y)[0]:
        r, c = g.integers(0, size - 3, size=2)
        x[i, 0, r:r + 3, c:c + 3] += 1.5
    return x, y.astype(np.float32)


def small_cnn(seed=0):
    return nn.zoo.mias_cnn(num_classes=3, input_shape=(1, 16, 16), seed=seed)


def test_replace_head_mias_cnn_keeps_body_and_adds_paper_head():
    source = small_cnn()
    model = tl.replace_head(source, input_shape=(1, 16, 16), hidden=32, dropout=0.2, seed=1)
    assert tl.find_head_start(source) == 6                 # Flatten: conv-relu-pool x 2 kept
    assert len(model.layers) == 7
    assert all(a is b for a, b in zip(model.layers[:6], source.layers[:6]))   # shared, trained
    head = model["head"]
    assert [type(layer).__name__ for layer in head.layers] == [
        "GlobalAvgPool2D", "Dense", "ReLU", "Dropout", "Dense"]
    assert head.layers[1].in_features == 64 and head.layers[1].out_features == 32
    assert head["dropout"].rate == pytest.approx(0.2)
    assert model.output_shape((1, 16, 16)) == (1,)
    assert all(p.trainable for p in model.parameters())
    x, _ = square_or_noise(4)
    assert model.predict(x).shape == (4, 1)
    p = model.predict_proba(x)
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()


def test_replace_head_without_hidden_and_on_flat_body():
    source = small_cnn()
    ft = tl.replace_head(source, input_shape=(1, 16, 16), hidden=None)
    assert [type(layer).__name__ for layer in ft["head"].layers] == [
        "GlobalAvgPool2D", "Dropout", "Dense"]
    flat = tl.replace_head(small_cnn(), head_start=8, input_shape=(1, 16, 16), hidden=None)
    # the body ends after Flatten, Dense(1024), ReLU: no pooling, straight to the logit
    assert [type(layer).__name__ for layer in flat["head"].layers] == ["Dropout", "Dense"]
    assert flat["head"].layers[-1].in_features == 1024
    with pytest.raises(ValueError, match="head_start 0"):
        tl.replace_head(small_cnn(), head_start=0, input_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="no top-level layer 'nope'"):
        tl.replace_head(small_cnn(), head_start="nope", input_shape=(1, 16, 16))


def test_replace_head_resnet_by_name():
    source = nn.zoo.reduced_resnet(input_shape=(1, 32, 32), widths=(4, 8), blocks=(1, 1))
    model = tl.replace_head(source, "avg_pool", input_shape=(1, 32, 32), hidden=16)
    assert [k for k, _ in model.children()] == ["conv1", "bn1", "2", "pool1", "layer1", "layer2",
                                                 "head"]
    assert model["head"].layers[1].in_features == 8


@pytest.mark.parametrize("gamma, frozen", [
    (0, []), (3, ["0"]), (4, ["0", "3"]), (6, ["0", "3"]), ("head", ["0", "3"]), ("3", ["0"])])
def test_gamma_is_the_first_layer_that_trains(gamma, frozen):
    model = tl.replace_head(small_cnn(), input_shape=(1, 16, 16), hidden=8)
    assert tl.fine_tune(model, gamma) == frozen
    assert model.frozen_layers() == frozen
    index = gamma if isinstance(gamma, int) else (6 if gamma == "head" else int(gamma))
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            assert p.trainable == (i >= index), (gamma, i, p.name)


def test_transfer_trains_only_the_head_and_fine_tune_undoes_it():
    model = tl.replace_head(small_cnn(), input_shape=(1, 16, 16), hidden=8)
    assert tl.transfer(model) == ["0", "3"]
    assert model.parameters(trainable_only=True) == model["head"].parameters()
    assert tl.fine_tune(model, 0) == []                    # earlier freezing is undone
    assert tl.transfer(model, gamma=3) == ["0"]


def test_gamma_by_dotted_path_in_resnet():
    source = nn.zoo.reduced_resnet(input_shape=(1, 32, 32), widths=(4, 8), blocks=(1, 1))
    model = tl.replace_head(source, input_shape=(1, 32, 32), hidden=None)
    frozen = tl.fine_tune(model, "layer2.0.block.body.conv2")
    assert frozen[:2] == ["conv1", "bn1"]
    assert "layer1.0.block.body.conv1" in frozen and "layer2.0.block.body.conv1" in frozen
    assert "layer2.0.block.body.bn1" in frozen
    assert "layer2.0.block.body.conv2" not in frozen and "layer2.0.block.shortcut.conv" not in frozen
    assert model.get_layer("layer2.0.block.body.conv2").W.trainable
    by_index = tl.fine_tune(model, 5)                      # 5 = "layer2": same as its key
    assert by_index == tl.fine_tune(model, "layer2") == ["conv1", "bn1"] + [
        p for p, _ in model.named_layers() if p.startswith("layer1.") and p in by_index]


@pytest.mark.parametrize("bad", [7, -1, 2.5, True, "layer9", "0.W"])
def test_bad_gamma_is_a_clear_error(bad):
    model = tl.replace_head(small_cnn(), input_shape=(1, 16, 16), hidden=8)
    with pytest.raises(ValueError, match="gamma|no layer"):
        tl.fine_tune(model, bad)


def _train(model, x, y, epochs=3, lr=1e-2):
    opt = nn.RMSProp(model.parameters(), lr=lr)
    return model.fit(x, y, loss=nn.BinaryCrossEntropy(), optimizer=opt, epochs=epochs,
                     batch_size=16, validation_data=(x, y), verbose=0), opt


def test_frozen_weights_bit_identical_after_training(tmp_path):
    path = nn.save(small_cnn(seed=3), tmp_path / "source.npz")
    model = tl.replace_head(nn.load(path), input_shape=(1, 16, 16), hidden=16, seed=2)
    tl.fine_tune(model, 3)                                  # conv 0 frozen, conv 3 + head train
    frozen = [p for layer in model.layers[:3] for p in layer.parameters()]
    moving = model.parameters(trainable_only=True)
    before = [p.data.tobytes() for p in frozen]
    start = [p.data.copy() for p in moving]
    x, y = square_or_noise(48, seed=1)
    hist, opt = _train(model, x, y)
    assert [p.data.tobytes() for p in frozen] == before
    assert all(p not in opt.state for p in frozen)
    for p, saved in zip(frozen, nn.load(path).parameters()):
        np.testing.assert_array_equal(p.data, saved.data)
    assert all(not np.array_equal(p.data, s) for p, s in zip(moving, start))
    assert np.isfinite(hist["loss"]).all()


def test_frozen_batchnorm_statistics_unchanged_in_reduced_resnet():
    source = nn.zoo.reduced_resnet(input_shape=(1, 16, 16), widths=(4, 8), blocks=(1, 1), seed=0)
    x, y = square_or_noise(32, seed=4)
    source.forward(x, training=True)                       # statistics that are not the initial ones
    model = tl.replace_head(source, input_shape=(1, 16, 16), hidden=None, seed=0)
    tl.fine_tune(model, "layer2")                           # stem and layer1 frozen, layer2 trains
    frozen_bufs = [(n, b.data.copy()) for n, b in model.named_buffers()
                   if not n.startswith("layer2")]
    trained_bufs = [(n, b.data.copy()) for n, b in model.named_buffers()
                    if n.startswith("layer2") and "running" in n]
    assert frozen_bufs and trained_bufs
    _train(model, x, y, epochs=2)
    after = dict(model.named_buffers())
    for n, before in frozen_bufs:
        np.testing.assert_array_equal(after[n].data, before, err_msg=n)
    assert any(not np.array_equal(after[n].data, b) for n, b in trained_bufs)
    # and in training mode the frozen BN normalises with its running statistics (Keras)
    bn = model["bn1"]
    assert bn.frozen
    stem = nn.Sequential([model["conv1"]]).forward(x, training=False)
    np.testing.assert_array_equal(bn.forward(stem, training=True), bn.forward(stem, training=False))


def test_beta_is_train_over_validation_accuracy():
    assert nn.metrics.overfitting_ratio(0.9, 0.75) == pytest.approx(1.2)
    assert nn.metrics.overfitting_ratio(0.6, 0.6) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        nn.metrics.overfitting_ratio(0.9, 0.0)


def test_layer_table_marks_frozen_layers():
    model = tl.replace_head(small_cnn(), input_shape=(1, 16, 16), hidden=8)
    tl.transfer(model)
    lines = tl.layer_table(model, (1, 16, 16))
    assert len(lines) == 7
    assert lines[0].split()[:3] == ["0", "0", "Conv2D"] and lines[0].rstrip().endswith(
        "frozen -> (32, 16, 16)")
    assert "trains" in lines[6] and "head" in lines[6]
