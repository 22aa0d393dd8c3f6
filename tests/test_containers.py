"""Containers: Sequential as a layer, Residual, Add, Concatenate, Identity.

Gradient checks of each container as a whole (float64, random upstream
gradient), dotted names, buffers, freezing nested models, summary().
"""
import numpy as np
import pytest

import nnlite as nn


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return x + np.where(x >= 0, 0.05, -0.05)


def small_block(c_in, c_out, stride, seed):
    """conv-BN-ReLU-conv-BN + projection when the shape changes, then ReLU (a basic ResNet block)."""
    body = nn.Sequential([
        nn.Conv2D(c_in, c_out, 3, stride=stride, padding=1, bias=False, seed=seed, name="conv1"),
        nn.BatchNorm2D(c_out, name="bn1"), nn.ReLU(),
        nn.Conv2D(c_out, c_out, 3, padding=1, bias=False, seed=seed + 1, name="conv2"),
        nn.BatchNorm2D(c_out, name="bn2"),
    ])
    shortcut = None if (c_in == c_out and stride == 1) else nn.Sequential([
        nn.Conv2D(c_in, c_out, 1, stride=stride, bias=False, seed=seed + 2, name="conv"),
        nn.BatchNorm2D(c_out, name="bn")])
    return nn.Sequential([nn.Residual(body, shortcut, name="residual"), nn.ReLU()])


def tiny_resnet(seed=0):
    return nn.Sequential([
        nn.Conv2D(1, 4, 3, padding=1, seed=seed, name="stem"), nn.BatchNorm2D(4, name="stem_bn"),
        nn.ReLU(),
        nn.Sequential([small_block(4, 4, 1, seed + 10), small_block(4, 6, 2, seed + 20)], name="layer1"),
        nn.GlobalAvgPool2D(), nn.Dense(6, 3, seed=seed + 30, name="fc"),
    ], name="tiny_resnet")


def tiny_unet(seed=0):
    """Two-level U-Net: the skip is the identity branch of a Concatenate."""
    deeper = nn.Sequential([
        nn.MaxPool2D(2), nn.Conv2D(2, 3, 3, padding=1, seed=seed + 1), nn.Tanh(),
        nn.ConvTranspose2D(3, 2, 2, stride=2, seed=seed + 2),
    ])
    return nn.Sequential([
        nn.Conv2D(1, 2, 3, padding=1, seed=seed), nn.Tanh(),
        nn.Concatenate([None, deeper], axis=1),                 # (N, 2 + 2, H, W)
        nn.Conv2D(4, 1, 1, seed=seed + 3),
    ])


# ------------------------------------------------------ gradient checks
def test_gradcheck_Identity():
    nn.assert_gradcheck(nn.Identity(), _x((2, 3, 4)))


def test_gradcheck_Sequential_nested():
    model = nn.Sequential([nn.Conv2D(2, 3, 3, stride=2, padding=1, seed=1), nn.Tanh(),
                           nn.Sequential([nn.Conv2D(3, 2, 1, seed=2), nn.Sigmoid()]),
                           nn.Flatten(), nn.Dense(2 * 3 * 3, 3, seed=3)])
    result = nn.assert_gradcheck(model, _x((2, 2, 5, 5)))
    assert set(result.errors) == {"input", "0.W", "0.b", "2.0.W", "2.0.b", "4.W", "4.b"}


def test_gradcheck_Residual_identity_shortcut():
    block = nn.Residual(nn.Sequential([nn.Conv2D(3, 3, 3, padding=1, seed=4), nn.Tanh(),
                                       nn.Conv2D(3, 3, 3, padding=1, seed=5)]))
    nn.assert_gradcheck(block, _x((2, 3, 5, 4)))


def test_gradcheck_Residual_projection_with_batchnorm_in_training():
    block = small_block(2, 4, 2, seed=6)
    nn.assert_gradcheck(block, _x((3, 2, 6, 5)), training=True)


def test_gradcheck_Residual_in_evaluation_mode():
    block = small_block(3, 3, 1, seed=7)
    block.forward(_x((4, 3, 5, 5), seed=3).astype(np.float32), training=True)   # running stats move
    nn.assert_gradcheck(block, _x((2, 3, 5, 5)), training=False)


def test_gradcheck_Add_three_branches():
    layer = nn.Add([nn.Dense(4, 4, seed=8), None, nn.Sequential([nn.Dense(4, 4, seed=9), nn.Tanh()])])
    nn.assert_gradcheck(layer, _x((3, 4)))


def test_gradcheck_Concatenate_channels():
    layer = nn.Concatenate([None, nn.Conv2D(2, 3, 3, padding=1, seed=10),
                            nn.Conv2D(2, 1, 1, seed=11)], axis=1)
    nn.assert_gradcheck(layer, _x((2, 2, 4, 3)))


def test_gradcheck_Concatenate_last_axis():
    layer = nn.Concatenate([nn.Dense(3, 2, seed=12), nn.Dense(3, 5, seed=13)], axis=-1)
    nn.assert_gradcheck(layer, _x((4, 3)))


def test_gradcheck_Sequential_tiny_resnet_whole():
    nn.assert_gradcheck(tiny_resnet(), _x((3, 1, 6, 6)), training=True)


def test_gradcheck_Sequential_tiny_unet_whole():
    model = tiny_unet()
    x = _x((2, 1, 6, 6))
    assert model.forward(x.astype(np.float32)).shape == (2, 1, 6, 6)
    nn.assert_gradcheck(model, x)


def test_split_sums_gradients_and_join_passes_dy():
    """dx of an Add of two identities is 2 dy; a Concatenate of two identities gives dy_a + dy_b."""
    dy = _x((2, 3))
    add = nn.Add([None, None])
    add.forward(_x((2, 3)))
    np.testing.assert_allclose(add.backward(dy), 2 * dy)
    cat = nn.Concatenate([None, None], axis=1)
    cat.forward(_x((2, 3)))
    dy2 = _x((2, 6), seed=5)
    np.testing.assert_allclose(cat.backward(dy2), dy2[:, :3] + dy2[:, 3:])


# --------------------------------------------------------- names, buffers
def test_dotted_names_and_buffers_recurse_in_a_stable_order():
    model = tiny_resnet()
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["stem.W", "stem.b", "stem_bn.gamma", "stem_bn.beta"]
    # layer1 -> block 1 -> its Residual (named "residual") -> body -> conv1
    assert "layer1.1.residual.body.conv1.W" in names
    assert "layer1.1.residual.shortcut.conv.W" in names
    assert "layer1.0.residual.shortcut.conv.W" not in names           # identity shortcut
    buffers = [n for n, _ in model.named_buffers()]
    assert buffers[:3] == ["stem_bn.running_mean", "stem_bn.running_var", "stem_bn.num_batches_tracked"]
    assert "layer1.1.residual.shortcut.bn.running_var" in buffers
    assert names == [n for n, _ in tiny_resnet(seed=5).named_parameters()]       # stable
    assert len(model.parameters()) == len(set(map(id, model.parameters())))
    assert model.get_layer("layer1.1.residual.body.conv1") is model["layer1"][1][0].body["conv1"]


def test_duplicate_sibling_names_are_refused():
    with pytest.raises(ValueError, match="two layers are named 'conv'"):
        nn.Sequential([nn.Conv2D(1, 1, 1, name="conv"), nn.Conv2D(1, 1, 1, name="conv")])


def test_residual_shape_mismatch_is_a_clear_error():
    block = nn.Residual(nn.Conv2D(2, 3, 1, seed=0))
    with pytest.raises(ValueError, match=r"body gives \(2, 3, 4, 4\) but the shortcut gives \(2, 2, 4, 4\)"):
        block.forward(np.zeros((2, 2, 4, 4), np.float32))


def test_astype_and_caches_reach_nested_layers():
    model = tiny_resnet().astype("float64")
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(b.dtype == np.float64 for b in model.buffers() if b.is_statistic)
    assert all(b.dtype == np.int64 for b in model.buffers() if not b.is_statistic)


# --------------------------------------------------------------- freezing
def test_freeze_by_index_and_by_name_on_a_nested_model():
    model = tiny_resnet()
    model.freeze(upto=2)                       # stem, stem_bn, ReLU
    assert model.frozen_layers() == ["stem", "stem_bn"]
    model.unfreeze().freeze("layer1.0")       # everything up to and inside the first block
    frozen = model.frozen_layers()
    assert "layer1.0.residual.body.conv2" in frozen and "layer1.1.residual.body.conv1" not in frozen
    model.unfreeze().freeze("layer1.1.residual.body.bn1")
    frozen = model.frozen_layers()
    assert "layer1.1.residual.body.conv1" in frozen and "layer1.1.residual.body.bn1" in frozen
    assert "layer1.1.residual.body.conv2" not in frozen and "fc" not in frozen
    with pytest.raises(ValueError, match="no layer 'nope'"):
        model.freeze("nope")


def test_frozen_part_is_bit_identical_after_training():
    model = tiny_resnet()
    model.freeze("layer1")
    frozen = {n: p.data.copy() for n, p in model.named_parameters() if not p.trainable}
    stats = {n: b.data.copy() for n, b in model.named_buffers()}
    x = _x((8, 1, 6, 6)).astype(np.float32)
    y = np.arange(8) % 3
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.1),
              epochs=2, batch_size=4, verbose=0)
    for n, p in model.named_parameters():
        if n in frozen:
            np.testing.assert_array_equal(p.data, frozen[n], err_msg=n)
    for n, b in model.named_buffers():        # frozen BatchNorms keep their running statistics
        np.testing.assert_array_equal(b.data, stats[n], err_msg=n)
    assert not np.array_equal(model["fc"].W.data, tiny_resnet()["fc"].W.data)


# ----------------------------------------------------------------- summary
def test_summary_shows_nesting_within_100_columns_and_counts_buffers():
    text = tiny_resnet().summary((1, 8, 8), print_fn=None)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert any(line.startswith("layer1: Sequential") for line in lines)
    assert any(line.startswith("    residual: Residual") for line in lines)   # two levels deep
    assert any(line.startswith("      body: Sequential") for line in lines)
    assert any("(None, 6, 4, 4)" in line for line in lines)
    model = tiny_resnet()
    assert f"Buffers (running statistics, Keras' non-trainable params): {model.count_buffers():,}" in text
    assert model.count_buffers() == 2 * (4 + 4 + 4 + 6 + 6 + 6)
    model.freeze(1)
    text = model.summary((1, 8, 8), print_fn=None)
    assert "[frozen]" in text and "Frozen params: " in text


def test_summary_of_mias_cnn_fits_100_columns():
    text = nn.zoo.mias_cnn(3).summary((1, 48, 48), print_fn=None)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Trainable params: 9,493,379" in text


def test_early_stopping_restores_the_best_epochs_batchnorm_statistics_and_resumes():
    x = _x((8, 1, 6, 6)).astype(np.float32)
    y = np.arange(8) % 3
    model = tiny_resnet()
    stop = nn.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    snapshots = []

    class Snapshot(nn.Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots.append([b.data.copy() for b in model.buffers()])

    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=5.0),
              epochs=6, batch_size=4, verbose=0, callbacks=[stop, Snapshot()])
    best = snapshots[stop.best_epoch]
    assert stop.best_epoch < len(snapshots) - 1          # the statistics moved after the best epoch
    assert not all(np.array_equal(a, b) for a, b in zip(best, snapshots[-1]))
    for b, saved in zip(model.buffers(), best):
        np.testing.assert_array_equal(b.data, saved)
    state = stop.state_dict()
    assert len(state["best_buffers"]) == len(model.buffers())
    other = nn.EarlyStopping(monitor="loss")
    other.load_state_dict({k: v for k, v in state.items() if k != "best_buffers"})   # older checkpoints
    assert other._best_buffers is None


def test_backward_without_input_grad_asks_the_first_conv_for_parameter_gradients_only():
    x = _x((4, 1, 6, 6)).astype(np.float32)
    model = tiny_resnet()
    logits = model.forward(x, training=True)
    dlogits = _x(logits.shape, seed=3).astype(np.float32)
    model.backward(dlogits)                                   # the full pass, for reference
    expected = {n: p.grad.copy() for n, p in model.named_parameters()}
    stem = model["stem"]
    calls = []
    original = type(stem).backward

    def spy(self, dy):
        calls.append(self.need_input_grad)
        return original(self, dy)

    stem.backward = spy.__get__(stem)
    model.forward(x, training=True)
    assert model.backward(dlogits, need_input_grad=False) is None
    assert calls == [False] and stem.need_input_grad is True  # asked without dx, flag restored
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, expected[n], rtol=1e-5, atol=1e-6, err_msg=n)
    nested = nn.Sequential([nn.Sequential([nn.Conv2D(1, 2, 3, seed=0, name="c")], name="inner"),
                            nn.Flatten(), nn.Dense(32, 2, seed=1)])
    y = nested.forward(x, training=True)
    assert nested.backward(np.ones_like(y), need_input_grad=False) is None
    assert (nested["inner"]["c"].W.grad != 0).any()
