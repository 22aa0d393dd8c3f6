"""Fine-tuning: freeze layers 0..gamma (the transfer-learning paper's convention),
replace the head, train the rest; frozen weights stay bit-for-bit identical."""
import numpy as np
import pytest

import nnlite as nn
from conftest import two_blob_images


def base_cnn(seed=0):
    """conv-relu-pool-conv-relu-GAP-dense-dropout-dense: 9 layers, indices 0..8."""
    return nn.Sequential([
        nn.Conv2D(1, 4, 3, padding="same", seed=seed),     # 0
        nn.ReLU(),                                          # 1
        nn.MaxPool2D(2),                                    # 2
        nn.Conv2D(4, 8, 3, padding="same", seed=seed + 1),  # 3
        nn.ReLU(),                                          # 4
        nn.GlobalAvgPool2D(),                               # 5
        nn.Dense(8, 16, seed=seed + 2),                     # 6
        nn.Dropout(0.25, seed=seed + 3),                    # 7
        nn.Dense(16, 2, seed=seed + 4),                     # 8
    ])


def square_or_noise(n, size=12, seed=0):
    """Task B for the new head: a bright 3x3 square anywhere (label 1) or noise only (0).
    Position-free, so global average pooling keeps what it needs."""
    g = np.random.default_rng(seed)
    x = g.normal(0.0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.nonzero(y)[0]:
        r, c = g.integers(0, size - 3, size=2)
        x[i, 0, r:r + 3, c:c + 3] += 1.5
    return x, y.astype(np.float32)


def flags(model):
    return [[p.trainable for p in layer.parameters()] for layer in model.layers]


@pytest.mark.parametrize("gamma, frozen_layers", [(0, {0}), (3, {0, 3}), (6, {0, 3, 6}),
                                                  (-1, {0, 3, 6, 8}), (-3, {0, 3, 6}), (None, {0, 3, 6, 8})])
def test_freeze_upto_gamma_inclusive(gamma, frozen_layers):
    model = base_cnn()
    assert model.freeze(upto=gamma) is model
    for i, layer in enumerate(model.layers):
        for p in layer.parameters():
            assert p.trainable == (i not in frozen_layers), (i, p.name)
    model.unfreeze()
    assert all(p.trainable for p in model.parameters())


def test_freeze_index_out_of_range():
    model = base_cnn()
    for bad in (9, -10, 2.0, True):
        with pytest.raises(ValueError, match=r"upto must be a layer index in -9..8 \(the model has 9 layers\)"):
            model.freeze(upto=bad)
    assert all(p.trainable for p in model.parameters())
    assert nn.Sequential([]).freeze() is not None


def test_counts_and_summary_show_frozen_parameters():
    model = base_cnn().freeze(upto=3)
    frozen = sum(p.size for layer in model.layers[:4] for p in layer.parameters())
    total = model.count_params(trainable_only=False)
    assert frozen == (4 * 9 + 4) + (8 * 4 * 9 + 8)
    assert model.count_params(trainable_only=True) == total - frozen
    text = model.summary((1, 12, 12), print_fn=None)
    assert f"Frozen params: {frozen:,}" in text and f"Trainable params: {total - frozen:,}" in text


def test_finetune_replace_head_and_train(tmp_path):
    # 1. "pre-train" on task A (bright square top-left vs bottom-right), save
    x, y = two_blob_images(64, size=12, seed=0)
    base = base_cnn(seed=0)
    base.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.Adam(base.parameters(), lr=3e-3),
             epochs=2, batch_size=16, verbose=0)
    path = nn.save(base, tmp_path / "pretrained.npz")

    # 2. load, freeze layers 0..gamma, replace the head by a one-logit (sigmoid) output
    model = nn.load(path)
    gamma = 5
    model.freeze(upto=gamma)
    model.layers[-1] = nn.Dense(16, 1, weight_init="glorot_uniform", seed=42)
    frozen = [p for layer in model.layers[:gamma + 1] for p in layer.parameters()]
    trainable = model.parameters(trainable_only=True)
    assert len(frozen) == 4 and len(trainable) == 4 and all(not p.trainable for p in frozen)
    frozen_bytes = [p.data.tobytes() for p in frozen]
    trainable_before = [p.data.copy() for p in trainable]

    # 3. train on task B with the transfer-learning paper's recipe (BCE, RMSProp)
    xb, yb = square_or_noise(64, seed=5)
    opt = nn.RMSProp(model.parameters(), lr=1e-2)
    hist = model.fit(xb, yb, loss=nn.BinaryCrossEntropy(), optimizer=opt, epochs=4, batch_size=16,
                     validation_data=(xb, yb), verbose=0)

    # frozen: bit-for-bit unchanged, no gradient computed, no optimizer state
    assert [p.data.tobytes() for p in frozen] == frozen_bytes
    assert all((p.grad == 0).all() for p in frozen)
    assert all(p not in opt.state for p in frozen)
    for p, saved in zip(frozen, nn.load(path).parameters()):
        np.testing.assert_array_equal(p.data, saved.data)         # still the pre-trained weights
    # trainable: every one of them moved
    for p, before in zip(trainable, trainable_before):
        assert not np.array_equal(p.data, before), p
    assert hist["loss"][-1] < hist["loss"][0]
    assert max(hist["val_accuracy"]) >= 0.8         # the new head learns on frozen features
    assert model.predict(xb).shape == (64, 1)


def test_frozen_prefix_is_not_backpropagated():
    model = base_cnn().freeze(upto=2)
    x, y = two_blob_images(8, size=12)
    first = model.layers[0]
    sentinel = np.full(first.W.shape, 5.0, dtype=np.float32)
    first.W.grad = sentinel
    logits = model.forward(x, training=True)
    assert first._cache[0] is None                  # a frozen conv keeps no im2col columns
    _, dlogits = nn.SoftmaxCrossEntropy()(logits, y)
    assert model.backward(dlogits, need_input_grad=False) is None
    assert first.W.grad is sentinel and (sentinel == 5.0).all()   # its backward never ran
    assert (model.layers[3].W.grad != 0).any()      # the first trainable layer got its gradient


def test_trainable_flags_survive_save_and_load(tmp_path):
    model = base_cnn().freeze(upto=4)
    loaded = nn.load(nn.save(model, tmp_path / "m.npz"))
    assert flags(loaded) == flags(model)
