"""Tests for nnlite.batchnorm: BatchNorm1D and BatchNorm2D."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import assert_gradcheck, gradcheck


def _x(shape, seed=0, dtype=np.float64, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(dtype)


def _with_stats(layer, seed=3):
    """Non-trivial gamma, beta and running statistics, in the layer's dtype."""
    rng = np.random.default_rng(seed)
    C = layer.num_features
    dt = layer.running_mean.dtype
    if layer.affine:
        layer.gamma.data[...] = rng.uniform(0.5, 2.0, C).astype(dt)
        layer.beta.data[...] = rng.standard_normal(C).astype(dt)
    layer.running_mean.data = rng.standard_normal(C).astype(dt)
    layer.running_var.data = rng.uniform(0.5, 3.0, C).astype(dt)
    return layer


def _freeze(layer):
    for p in layer.parameters():
        p.trainable = False
    return layer


# ------------------------------------------------------------ forward math
def test_training_normalises_each_channel_over_n_h_w():
    bn = nn.BatchNorm2D(3)
    x = _x((4, 3, 5, 6), dtype=np.float32, scale=3.0, shift=2.0)
    y = bn.forward(x, training=True)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)   # biased var, eps 1e-5


def test_forward_matches_the_formula_with_gamma_beta():
    bn = _with_stats(nn.BatchNorm2D(2).astype("float64"))
    x = _x((3, 2, 4, 4), seed=1)
    mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    g, b = bn.gamma.data.reshape(1, 2, 1, 1), bn.beta.data.reshape(1, 2, 1, 1)
    rm, rv = bn.running_mean.data.reshape(1, 2, 1, 1), bn.running_var.data.reshape(1, 2, 1, 1)
    np.testing.assert_allclose(bn.forward(x), g * (x - rm) / np.sqrt(rv + 1e-5) + b, rtol=1e-12)
    np.testing.assert_allclose(bn.forward(x, training=True), g * (x - mu) / np.sqrt(var + 1e-5) + b,
                               rtol=1e-12)


@pytest.mark.parametrize("shape, axes", [((5, 3), (0,)), ((4, 3, 6), (0, 2))])
def test_batchnorm1d_reduces_over_n_and_l(shape, axes):
    bn = nn.BatchNorm1D(3)
    x = _x(shape, dtype=np.float32, scale=2.0, shift=-1.0)
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-5)
    m = x.size // 3
    np.testing.assert_allclose(bn.running_var.data,
                               0.9 + 0.1 * x.var(axis=axes) * m / (m - 1), rtol=1e-5)


def test_running_statistics_over_three_steps_by_hand():
    """PyTorch's momentum (weight of the new batch) and unbiased running variance."""
    bn = nn.BatchNorm1D(2, momentum=0.1)
    batches = [[[1, 2], [3, 6], [5, 10]],      # means 3, 6;  unbiased vars 4, 16
               [[0, 0], [2, 4], [4, 8]],       # means 2, 4;  unbiased vars 4, 16
               [[1, 1], [1, 1], [1, 1]]]       # means 1, 1;  vars 0, 0
    expected = [([0.3, 0.6], [1.3, 2.5]),      # 0.9 * 0 + 0.1 * 3 ; 0.9 * 1 + 0.1 * 4 ...
                ([0.47, 0.94], [1.57, 3.85]),
                ([0.523, 0.946], [1.413, 3.465])]
    for step, (batch, (mean, var)) in enumerate(zip(batches, expected), start=1):
        bn.forward(np.array(batch, dtype=np.float32), training=True)
        np.testing.assert_allclose(bn.running_mean.data, mean, rtol=1e-6)
        np.testing.assert_allclose(bn.running_var.data, var, rtol=1e-6)
        assert bn.running_mean.dtype == bn.running_var.dtype == np.float32
        assert bn.num_batches_tracked.data.dtype == np.int64
        assert bn.num_batches_tracked.data.shape == () and int(bn.num_batches_tracked.data) == step
    # evaluation uses them, and changes nothing
    x = np.array([[2.0, 3.0]], dtype=np.float32)
    y = bn.forward(x)
    np.testing.assert_allclose(y, (x - [0.523, 0.946]) / np.sqrt(np.array([1.413, 3.465]) + 1e-5),
                               rtol=1e-5)
    assert int(bn.num_batches_tracked.data) == 3


def test_keras_momentum_is_one_minus_pytorch_momentum():
    """Keras: moving = 0.99 * moving + 0.01 * batch  ==  nnlite momentum=0.01 (the mean)."""
    bn = nn.BatchNorm1D(1, momentum=1 - 0.99)
    x = np.array([[2.0], [4.0]], dtype=np.float32)
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.running_mean.data, [0.99 * 0 + 0.01 * 3.0], rtol=1e-6)
    # the variance differs from Keras by m / (m - 1): Keras would store 0.99 + 0.01 * 1
    np.testing.assert_allclose(bn.running_var.data, [0.99 + 0.01 * 2.0], rtol=1e-6)


def test_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm1D(1, momentum=None)
    means = []
    for seed in range(4):
        x = _x((6, 1), seed=seed, dtype=np.float32, shift=seed)
        means.append(x.mean())
        bn.forward(x, training=True)
    np.testing.assert_allclose(bn.running_mean.data, [np.mean(means)], rtol=1e-5)


def test_frozen_batchnorm_uses_and_keeps_running_statistics_in_training():
    bn = _freeze(_with_stats(nn.BatchNorm2D(3)))
    assert bn.frozen
    rm, rv = bn.running_mean.data.copy(), bn.running_var.data.copy()
    x = _x((2, 3, 4, 4), dtype=np.float32)
    y_train = bn.forward(x, training=True)
    np.testing.assert_array_equal(y_train, bn.forward(x, training=False))
    np.testing.assert_array_equal(bn.running_mean.data, rm)
    np.testing.assert_array_equal(bn.running_var.data, rv)
    assert int(bn.num_batches_tracked.data) == 0
    # its backward is the affine map's: dx = gamma * dy / sqrt(running_var + eps)
    dy = _x(x.shape, seed=1, dtype=np.float32)
    dx = bn.backward(dy)
    scale = (bn.gamma.data / np.sqrt(rv + 1e-5)).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(dx, scale * dy, rtol=1e-6)
    assert not bn.gamma.grad.any() and not bn.beta.grad.any()    # frozen: not computed


def test_training_output_does_not_depend_on_running_statistics():
    bn = nn.BatchNorm2D(2)
    x = _x((3, 2, 3, 3), dtype=np.float32)
    y1 = bn.forward(x, training=True)
    for _ in range(5):
        bn.forward(x * 3 + 1, training=True)
    np.testing.assert_array_equal(bn.forward(x, training=True), y1)


def test_affine_false_has_no_parameters_and_is_never_frozen():
    bn = nn.BatchNorm2D(2, affine=False)
    assert bn.parameters() == [] and not bn.frozen
    x = _x((2, 2, 3, 3), dtype=np.float32)
    y = bn.forward(x, training=True)
    assert not np.shares_memory(y, x)
    assert int(bn.num_batches_tracked.data) == 1


# --------------------------------------------------------- gradient checks
SHAPES_2D = [(3, 2, 4, 5), (2, 3, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_gradcheck_BatchNorm2D_training(shape):
    # eps=1e-5: with 1e-6 the rounding of y(x + eps) - y(x - eps) alone gives input errors up
    # to 1.2e-6 for some seeds (on both kernel paths); 1e-5 brings them below 1.1e-7.
    bn = _with_stats(nn.BatchNorm2D(shape[1]))
    result = assert_gradcheck(bn, _x(shape, seed=4, scale=2.0, shift=1.0), training=True, tol=1e-6,
                              eps=1e-5)
    assert set(result.keys()) == {"input", "gamma", "beta"}


def test_gradcheck_BatchNorm2D_evaluation():
    bn = _with_stats(nn.BatchNorm2D(3))
    assert_gradcheck(bn, _x((2, 3, 4, 3), seed=5), training=False, tol=1e-6)


def test_gradcheck_BatchNorm2D_frozen_in_training_mode():
    bn = _freeze(_with_stats(nn.BatchNorm2D(3)))
    result = gradcheck(bn, _x((2, 3, 3, 4), seed=6), training=True)
    assert result["input"] < 1e-6
    assert int(bn.num_batches_tracked.data) == 0      # the statistics were kept throughout


def test_gradcheck_BatchNorm2D_affine_false_training():
    assert_gradcheck(nn.BatchNorm2D(2, affine=False), _x((2, 2, 3, 3), seed=7), training=True,
                     tol=1e-6)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)])
def test_gradcheck_BatchNorm1D_training(shape):
    bn = _with_stats(nn.BatchNorm1D(shape[1]))
    assert_gradcheck(bn, _x(shape, seed=8, scale=1.5), training=True, tol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
def test_gradcheck_BatchNorm1D_evaluation(shape):
    bn = _with_stats(nn.BatchNorm1D(3))
    assert_gradcheck(bn, _x(shape, seed=9), training=False, tol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
def test_gradcheck_BatchNorm1D_frozen_in_training_mode(shape):
    bn = _freeze(_with_stats(nn.BatchNorm1D(3)))
    result = gradcheck(bn, _x(shape, seed=10), training=True)
    assert result["input"] < 1e-6


def test_gradcheck_BatchNorm1D_only_gamma_trains():
    """Partly frozen is not frozen: batch statistics, and only gamma gets a gradient."""
    bn = _with_stats(nn.BatchNorm1D(3))
    bn.beta.trainable = False
    result = gradcheck(bn, _x((4, 3), seed=11), training=True)
    assert result["input"] < 1e-6 and result["gamma"] < 1e-6
    assert int(bn.num_batches_tracked.data) > 0


# ------------------------------------------------------ state, dtype, config
def test_buffers_and_parameters_in_order():
    bn = nn.BatchNorm2D(4)
    assert [n for n, _ in bn.named_parameters()] == ["gamma", "beta"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert bn.count_params() == 8 and bn.count_buffers() == 8       # the counter is not counted
    np.testing.assert_array_equal(bn.gamma.data, 1)
    np.testing.assert_array_equal(bn.beta.data, 0)
    np.testing.assert_array_equal(bn.running_mean.data, 0)
    np.testing.assert_array_equal(bn.running_var.data, 1)


def test_astype_casts_float_buffers_and_keeps_the_counter_an_integer():
    bn = nn.BatchNorm2D(3)
    bn.forward(_x((2, 3, 2, 2), dtype=np.float32), training=True)
    bn.astype("float64")
    assert bn.gamma.dtype == bn.beta.dtype == np.float64
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    y = bn.forward(_x((2, 3, 2, 2)), training=True)
    assert y.dtype == np.float64 and bn.running_mean.dtype == np.float64
    assert int(bn.num_batches_tracked.data) == 2
    bn.astype("float32")
    assert bn.running_var.dtype == np.float32 and bn.num_batches_tracked.dtype == np.int64


def test_affine_false_keeps_float32_with_float64_buffers():
    bn = nn.BatchNorm1D(2, affine=False).astype("float64")
    x = _x((4, 2), dtype=np.float32)
    assert bn.forward(x, training=True).dtype == np.float32
    assert bn.forward(x).dtype == np.float32
    assert bn.backward(np.ones_like(x)).dtype == np.float32


def test_config_roundtrip():
    bn = nn.BatchNorm1D(5, momentum=0.05, eps=1e-3, affine=False, name="bn_head")
    clone = nn.BatchNorm1D(**json.loads(json.dumps(bn.get_config())))
    assert clone.get_config() == bn.get_config() == {
        "num_features": 5, "momentum": 0.05, "eps": 1e-3, "affine": False, "name": "bn_head"}
    assert nn.BatchNorm2D(**nn.BatchNorm2D(3, momentum=None).get_config()).momentum is None


def test_errors_name_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"BatchNorm2D expected input \(N, 3, H, W\), got \(2, 4, 5, 5\)"):
        nn.BatchNorm2D(3).forward(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2D expected input \(N, 3, H, W\), got shape \(2, 3\)"):
        nn.BatchNorm2D(3).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"bn1 expected input \(N, 3\) or \(N, 3, L\), got shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1D(3, name="bn1").forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm1D(3).forward(np.zeros((1, 3), np.float32), training=True)
    nn.BatchNorm1D(3).forward(np.zeros((1, 3), np.float32))              # fine in evaluation
    with pytest.raises(ValueError, match="float32 or float64"):
        nn.BatchNorm1D(3).forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="has float32 parameters but got float64"):
        nn.BatchNorm1D(3).forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\].*Keras"):
        nn.BatchNorm2D(3, momentum=0.99 + 1)
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        nn.BatchNorm2D(0)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        nn.BatchNorm2D(2, eps=0)
    with pytest.raises(ValueError, match=r"per-sample shape \(3, H, W\), got \(4, 5, 5\)"):
        nn.BatchNorm2D(3).output_shape((4, 5, 5))
    assert nn.BatchNorm1D(3).output_shape((3,)) == (3,)
    assert nn.BatchNorm1D(3).output_shape((3, 7)) == (3, 7)
    bn = nn.BatchNorm2D(2)
    bn.forward(np.zeros((2, 2, 3, 3), np.float32), training=True)
    with pytest.raises(ValueError, match=r"BatchNorm2D.backward expected dy of shape \(2, 2, 3, 3\)"):
        bn.backward(np.zeros((2, 2, 3, 2), np.float32))


# -------------------------------------------------- optional: against PyTorch
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3), (3, 3, 7)])
def test_matches_pytorch_train_and_eval(shape):
    torch = pytest.importorskip("torch")
    C = shape[1]
    ours = (nn.BatchNorm2D if len(shape) == 4 else nn.BatchNorm1D)(C, momentum=0.2).astype("float64")
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        C, momentum=0.2).double()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, C)))
        theirs.bias.copy_(torch.from_numpy(rng.standard_normal(C)))
    ours.gamma.data[...] = theirs.weight.detach().numpy()
    ours.beta.data[...] = theirs.bias.detach().numpy()
    theirs.train()
    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1) + step
        dy = rng.standard_normal(shape)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = theirs(xt)
        yt.backward(torch.from_numpy(dy))
        y = ours.forward(x, training=True)
        dx = ours.backward(dy)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.gamma.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.beta.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
        theirs.weight.grad = theirs.bias.grad = None
        np.testing.assert_allclose(ours.running_mean.data, theirs.running_mean.numpy(), rtol=1e-13)
        np.testing.assert_allclose(ours.running_var.data, theirs.running_var.numpy(), rtol=1e-13)
        assert int(ours.num_batches_tracked.data) == int(theirs.num_batches_tracked) == step + 1
    theirs.eval()
    x = rng.standard_normal(shape)
    with torch.no_grad():
        np.testing.assert_allclose(ours.forward(x), theirs(torch.from_numpy(x)).numpy(), rtol=1e-12,
                                   atol=1e-12)
