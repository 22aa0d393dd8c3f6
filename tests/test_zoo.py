"""Model zoo: output shapes and the thesis' parameter counts."""
import numpy as np
import pytest

import nnlite as nn


def test_mias_cnn_shapes_and_count():
    model = nn.zoo.mias_cnn(num_classes=3)
    shapes = model.output_shapes((1, 48, 48))
    assert shapes[0] == (32, 48, 48) and shapes[2] == (32, 24, 24)
    assert shapes[5] == (64, 12, 12) and shapes[6] == (9216,) and shapes[-1] == (3,)
    # 832 + 51,264 + 9,438,208 + 3,075
    assert model.count_params() == 9_493_379
    y = model.forward(np.zeros((2, 1, 48, 48), np.float32))
    assert y.shape == (2, 3) and y.dtype == np.float32


def test_mias_cnn_is_seeded():
    a = nn.zoo.mias_cnn(seed=1).parameters()[0].data
    b = nn.zoo.mias_cnn(seed=1).parameters()[0].data
    c = nn.zoo.mias_cnn(seed=2).parameters()[0].data
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_alexnet_224_matches_thesis_count():
    model = nn.zoo.alexnet(input_shape=(1, 224, 224), num_classes=2)
    assert model.count_params(trainable_only=True) == 46_105_282
    shapes = model.output_shapes((1, 224, 224))
    assert shapes[0] == (96, 54, 54)
    assert (256, 5, 5) in shapes and shapes[-1] == (2,)
    text = model.summary((1, 224, 224), print_fn=None)
    assert "Trainable params: 46,105,282" in text
    y = model.forward(np.zeros((1, 1, 224, 224), np.float32))
    assert y.shape == (1, 2)


@pytest.mark.slow
def test_alexnet_512x416_matches_thesis_count():
    model = nn.zoo.alexnet(input_shape=(1, 512, 416), num_classes=2)
    assert model.count_params(trainable_only=True) == 181_371_586
    assert (256, 14, 11) in model.output_shapes((1, 512, 416))


def test_reduced_alexnet_shapes_and_training_step():
    model = nn.zoo.reduced_alexnet(input_shape=(1, 64, 64), num_classes=2)
    # conv 624 + 19,264 + 55,392 + 41,568 + 27,712; dense 147,712 + 65,792 + 514
    assert model.count_params() == 358_578
    groups = [layer.groups for layer in model if isinstance(layer, nn.Conv2D)]
    assert groups == [1, 2, 1, 2, 2]
    assert any(isinstance(layer, nn.LocalResponseNorm) for layer in model)
    x = np.random.default_rng(0).normal(size=(4, 1, 64, 64)).astype(np.float32)
    logits = model.forward(x, training=True)
    assert logits.shape == (4, 2)
    _, d = nn.SoftmaxCrossEntropy()(logits, np.array([0, 1, 0, 1]))
    model.backward(d)
    assert all(p.grad.shape == p.shape for p in model.parameters())


def test_zoo_input_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        nn.zoo.alexnet(input_shape=(1, 32, 32))


# ------------------------------------------------------ residual networks
def test_resnet50_has_the_thesis_parameter_count_at_both_input_sizes():
    for shape in [(1, 224, 224), (1, 512, 416)]:
        model = nn.zoo.resnet50(input_shape=shape, num_classes=2)
        assert model.count_params(trainable_only=True) == 23_532_418
        assert model.count_buffers() == 53_120                   # BatchNorm moving statistics
        text = model.summary(shape, print_fn=None)
        assert "Trainable params: 23,532,418" in text
        assert "Keras' non-trainable params): 53,120" in text
        assert max(len(line) for line in text.splitlines()) <= 100
    assert nn.zoo.resnet50().output_shape((1, 224, 224)) == (2,)
    stages = [nn.zoo.resnet50()[f"layer{i}"] for i in range(1, 5)]
    assert [len(stage) for stage in stages] == [3, 4, 6, 3]


def test_resnet50_stage_shapes():
    model = nn.zoo.resnet50()
    shape = (1, 224, 224)
    shapes = {}
    for key, layer in model.children():
        shape = layer.output_shape(shape)
        shapes[key] = shape
    assert shapes["pool1"] == (64, 56, 56)
    assert [shapes[f"layer{i}"] for i in range(1, 5)] == [(256, 56, 56), (512, 28, 28),
                                                          (1024, 14, 14), (2048, 7, 7)]


def test_reduced_resnet_counts_and_trains():
    model = nn.zoo.reduced_resnet(input_shape=(1, 64, 64), num_classes=2)
    assert model.count_params() == 77_490 and model.count_buffers() == 672
    assert nn.zoo.reduced_resnet(input_shape=(1, 112, 112)).count_params() == 77_490
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 64, 64)).astype(np.float32)
    y = np.arange(8) % 2
    x[y == 1, :, 16:48, 16:48] += 2.0
    history = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.Adam(model.parameters(), 1e-2),
                        epochs=6, batch_size=4, verbose=0)
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("factory", [nn.zoo.segnet, nn.zoo.unet])
def test_segmentation_networks_give_a_logit_map_of_the_input_size(factory, tmp_path):
    model = factory(input_shape=(1, 32, 32), num_classes=1)
    x = np.random.default_rng(1).standard_normal((2, 1, 32, 32)).astype(np.float32)
    y = model.forward(x, training=True)
    assert y.shape == (2, 1, 32, 32) and model.output_shape((1, 32, 32)) == (1, 32, 32)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
    loaded = nn.load(nn.save(model, tmp_path / "seg.npz"))        # unpool links survive a reload
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))
    with pytest.raises(ValueError, match="divisible"):
        factory(input_shape=(1, 30, 30))
