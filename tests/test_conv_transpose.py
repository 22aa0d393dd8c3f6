"""Tests for nnlite.conv_transpose: ConvTranspose2D, the adjoint of Conv2D."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import assert_gradcheck, gradcheck


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def conv_transpose_loops(x, W, b, stride, padding, output_padding=(0, 0)):
    """Direct scatter loop from the docstring: every input pixel adds ``x * W[c, f]``;
    ``output_padding`` appends OPH/OPW zero rows/columns before the crop."""
    N, C, H, Wd = x.shape
    _, F, KH, KW = W.shape
    (SH, SW), (PH, PW), (OPH, OPW) = stride, padding, output_padding
    full = np.zeros((N, F, (H - 1) * SH + KH + OPH, (Wd - 1) * SW + KW + OPW))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(Wd):
                    full[n, :, h * SH:h * SH + KH, w * SW:w * SW + KW] += x[n, c, h, w] * W[c]
    y = full[:, :, PH:full.shape[2] - PH, PW:full.shape[3] - PW]
    return y + (0.0 if b is None else b.reshape(1, F, 1, 1))


CASES = [
    # (C, F, kernel, stride, padding, bias, input H x W, N)
    (2, 3, 3, 1, 0, True, (4, 5), 2),
    (3, 2, 2, 2, 0, True, (3, 3), 1),
    (2, 2, 3, 2, 1, False, (4, 3), 2),
    (1, 2, (3, 4), (2, 3), (1, 0), True, (3, 4), 1),
    (2, 1, 5, 4, 2, True, (3, 2), 1),
]


@pytest.mark.parametrize("C, F, k, s, p, bias, hw, N", CASES)
def test_forward_matches_scatter_loops(C, F, k, s, p, bias, hw, N):
    layer = nn.ConvTranspose2D(C, F, k, stride=s, padding=p, bias=bias, seed=1).astype("float64")
    if bias:
        layer.b.data[...] = _x((F,), seed=2)
    x = _x((N, C) + hw, seed=3)
    y = layer.forward(x)
    expected = conv_transpose_loops(x, layer.W.data, layer.b.data if bias else None,
                                    layer.stride, layer.padding)
    assert y.shape == expected.shape == (N,) + layer.output_shape((C,) + hw)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("C, F, k, s, p, bias, hw, N", CASES)
def test_adjoint_of_conv2d(C, F, k, s, p, bias, hw, N):
    """<conv(z), x> == <z, conv_transpose(x)> for a Conv2D from F to C channels with the same W."""
    tconv = nn.ConvTranspose2D(C, F, k, stride=s, padding=p, bias=False, seed=4).astype("float64")
    conv = nn.Conv2D(F, C, k, stride=s, padding=p, bias=False).astype("float64")
    conv.W.data[...] = tconv.W.data               # (C, F, KH, KW) in both layers
    x = _x((N, C) + hw, seed=5)
    up = tconv.forward(x)                          # (N, F, OH, OW)
    z = _x(up.shape, seed=6)
    down = conv.forward(z)                         # back to (N, C, H, W)
    assert down.shape == x.shape
    lhs, rhs = float((down * x).sum()), float((z * up).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    # and so the transposed conv's input gradient is the conv itself
    np.testing.assert_allclose(tconv.backward(z), down, rtol=1e-12, atol=1e-12)


GRAD_CASES = {
    "stride1": (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 3, 4)),
    "stride2_k2": (dict(in_channels=3, out_channels=2, kernel_size=2, stride=2), (2, 3, 3, 3)),
    "stride2_pad1": (dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, padding=1), (1, 2, 4, 3)),
    "pair_args_no_bias": (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 3),
                               padding=(1, 0), bias=False), (2, 2, 3, 3)),
    "stride4_k5": (dict(in_channels=1, out_channels=2, kernel_size=5, stride=4, padding=2), (1, 1, 3, 2)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradcheck_ConvTranspose2D(case):
    kwargs, shape = GRAD_CASES[case]
    layer = nn.ConvTranspose2D(**kwargs, seed=7)
    if layer.b is not None:
        layer.b.data[...] = _x(layer.b.shape, seed=8, dtype=np.float32)
    assert_gradcheck(layer, _x(shape, seed=9), tol=1e-6)


def test_gradcheck_ConvTranspose2D_frozen_W():
    layer = nn.ConvTranspose2D(2, 3, 3, stride=2, seed=1)
    layer.W.trainable = False
    result = gradcheck(layer, _x((1, 2, 3, 3)))
    assert result["input"] < 1e-6 and result["b"] < 1e-6
    assert layer._cache[0] is None


def test_output_size_and_upsampling():
    layer = nn.ConvTranspose2D(4, 2, 2, stride=2)
    assert layer.output_shape((4, 5, 7)) == (2, 10, 14)       # (H - 1) * S - 2P + K
    assert nn.ConvTranspose2D(1, 1, 3, stride=2, padding=1).output_shape((1, 4, 4)) == (1, 7, 7)
    y = layer.forward(_x((3, 4, 5, 7), dtype=np.float32))
    assert y.shape == (3, 2, 10, 14) and y.dtype == np.float32


def test_float32_matches_float64_and_keeps_dtype():
    layer = nn.ConvTranspose2D(3, 2, 3, stride=2, padding=1, seed=3)
    layer.b.data[...] = [0.5, -0.25]
    x = _x((2, 3, 4, 4), dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(_x(y.shape, seed=1, dtype=np.float32))
    assert y.dtype == dx.dtype == layer.W.grad.dtype == layer.b.grad.dtype == np.float32
    y64 = layer.astype("float64").forward(x.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5 * np.abs(y64).max())


def test_no_mutation_and_errors():
    layer = nn.ConvTranspose2D(2, 3, 3, stride=2, seed=0)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 3, 7, 7), np.float32))
    x = _x((1, 2, 3, 3), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    with pytest.raises(ValueError, match=r"ConvTranspose2D.backward expected dy of shape \(1, 3, 7, 7\)"):
        layer.backward(np.zeros((1, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"ConvTranspose2D expected input \(N, 2, H, W\), got \(1, 3, 3, 3\)"):
        layer.forward(np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"ConvTranspose2D expected input \(N, 2, H, W\), got shape \(2, 3, 3\)"):
        layer.forward(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="float32 or float64 input, got int32"):
        layer.forward(np.zeros((1, 2, 3, 3), np.int32))
    with pytest.raises(ValueError, match="crops away the whole output"):
        nn.ConvTranspose2D(1, 1, 2, padding=1).forward(np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError, match="need kernel_size >= 1"):
        nn.ConvTranspose2D(1, 1, 3, padding=-1)
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        nn.ConvTranspose2D(0, 1, 3)


def test_config_roundtrip():
    layer = nn.ConvTranspose2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), bias=False, seed=5,
                               name="up")
    clone = nn.ConvTranspose2D(**json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone.W.data, layer.W.data)
    x = _x((1, 2, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


# ------------------------------------------------------------ output_padding
OP_CASES = [
    # (C, F, kernel, stride, padding, output_padding, input H x W)
    (2, 3, 3, 2, 1, 1, (4, 3)),              # 4x3 -> 8x6 (a conv 3/2/1 maps 8x6 to 4x3)
    (1, 2, 3, 2, 0, 1, (3, 3)),              # extra row beyond the patches: zeros + bias
    (2, 2, (3, 2), (3, 2), (1, 0), (2, 1), (2, 3)),
    (2, 1, 5, 4, 2, (3, 0), (2, 2)),
]


@pytest.mark.parametrize("C, F, k, s, p, op, hw", OP_CASES)
def test_output_padding_matches_loops_and_conv_adjoint(C, F, k, s, p, op, hw):
    layer = nn.ConvTranspose2D(C, F, k, stride=s, padding=p, output_padding=op, seed=1).astype("float64")
    layer.b.data[...] = _x((F,), seed=2)
    x = _x((2, C) + hw, seed=3)
    y = layer.forward(x)
    expected = conv_transpose_loops(x, layer.W.data, layer.b.data, layer.stride, layer.padding,
                                       layer.output_padding)
    assert y.shape == expected.shape == (2,) + layer.output_shape((C,) + hw)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # the Conv2D with the same W maps the larger output size back to hw: the adjoint identity
    conv = nn.Conv2D(F, C, k, stride=s, padding=p, bias=False).astype("float64")
    conv.W.data[...] = layer.W.data
    z = _x(y.shape, seed=4)
    down = conv.forward(z)
    assert down.shape == x.shape
    up = layer.forward(x) - layer.b.data.reshape(1, F, 1, 1)
    assert abs(float((down * x).sum()) - float((z * up).sum())) <= 1e-11 * float(np.abs(down * x).sum())
    np.testing.assert_allclose(layer.backward(z), down, rtol=1e-12, atol=1e-12)


def test_output_padding_restores_odd_sizes():
    down = nn.Conv2D(1, 1, 3, stride=2, padding=1)
    for size in (7, 8):
        assert down.output_shape((1, size, size)) == (1, 4, 4)
    assert nn.ConvTranspose2D(1, 1, 3, stride=2, padding=1).output_shape((1, 4, 4)) == (1, 7, 7)
    assert nn.ConvTranspose2D(1, 1, 3, stride=2, padding=1, output_padding=1).output_shape(
        (1, 4, 4)) == (1, 8, 8)
    assert nn.ConvTranspose2D(1, 1, 2, stride=(2, 3), output_padding=(1, 2)).output_shape(
        (1, 5, 5)) == (1, 11, 16)                           # (5-1)*3 + 2 + 2 columns


@pytest.mark.parametrize("case", ["op1_stride2", "op_pair_stride2", "op_beyond_patches"])
def test_gradcheck_ConvTranspose2D_output_padding(case):
    kwargs, shape = {
        "op1_stride2": (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1,
                             output_padding=1), (2, 2, 3, 4)),
        "op_pair_stride2": (dict(in_channels=2, out_channels=2, kernel_size=(3, 2), stride=2,
                                 padding=(1, 0), output_padding=(1, 0)), (1, 2, 3, 3)),
        "op_beyond_patches": (dict(in_channels=1, out_channels=2, kernel_size=2, stride=2,
                                   output_padding=1), (2, 1, 2, 3)),
    }[case]
    layer = nn.ConvTranspose2D(**kwargs, seed=7)
    layer.b.data[...] = _x(layer.b.shape, seed=8, dtype=np.float32)
    assert_gradcheck(layer, _x(shape, seed=9), tol=1e-6)


def test_output_padding_errors_and_config():
    with pytest.raises(ValueError, match=r"output_padding must be >= 0 and smaller than the stride \(2, 2\)"):
        nn.ConvTranspose2D(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding must be >= 0 and smaller than the stride"):
        nn.ConvTranspose2D(1, 1, 3, output_padding=1)              # stride 1
    with pytest.raises(ValueError, match="output_padding must be >= 0"):
        nn.ConvTranspose2D(1, 1, 3, stride=2, output_padding=-1)
    with pytest.raises(ValueError, match="output_padding must be an int or a pair"):
        nn.ConvTranspose2D(1, 1, 3, stride=2, output_padding=0.5)
    layer = nn.ConvTranspose2D(2, 3, 3, stride=(2, 3), padding=1, output_padding=(1, 2), seed=5)
    config = json.loads(json.dumps(layer.get_config()))
    assert config["output_padding"] == [1, 2]
    clone = nn.ConvTranspose2D(**config)
    assert clone.get_config() == layer.get_config()
    x = _x((1, 2, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


@pytest.mark.parametrize("C, F, k, s, p, op, hw", OP_CASES)
def test_output_padding_matches_pytorch(C, F, k, s, p, op, hw):
    torch = pytest.importorskip("torch")
    layer = nn.ConvTranspose2D(C, F, k, stride=s, padding=p, output_padding=op, seed=1).astype("float64")
    layer.b.data[...] = _x((F,), seed=2)
    x = _x((2, C) + hw, seed=3)
    y = layer.forward(x)
    dy = _x(y.shape, seed=5)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    Wt = torch.from_numpy(layer.W.data.copy()).requires_grad_(True)
    bt = torch.from_numpy(layer.b.data.copy()).requires_grad_(True)
    yt = torch.nn.functional.conv_transpose2d(xt, Wt, bt, stride=layer.stride, padding=layer.padding,
                                              output_padding=layer.output_padding)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.W.grad, Wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.b.grad, bt.grad.numpy(), rtol=1e-12, atol=1e-12)
