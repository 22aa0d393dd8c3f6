"""Tests for nnlite.conv: Conv2D (im2col, stride, padding, "same", groups) and its helpers.

The reference for every value test is :func:`conv_loops`, a direct
four-loop cross-correlation written from the Conv2D docstring's formula,
with no im2col and no matrix product.
"""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.conv import col2im, im2col, same_padding
from nnlite.gradcheck import assert_gradcheck, gradcheck


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def conv_loops(x, W, b, stride, pads, groups):
    """Direct loop implementation of the docstring's formula.

    ``y[n, f, oh, ow] = b[f] + sum_{c', i, j} W[f, c', i, j] *
    x_pad[n, g*C/G + c', oh*SH + i, ow*SW + j]`` with ``g = f // (F/G)``.
    ``pads`` is ``(top, bottom, left, right)``.
    """
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    SH, SW = stride
    top, bottom, left, right = pads
    xpad = np.zeros((N, C, H + top + bottom, Wd + left + right))
    xpad[:, :, top:top + H, left:left + Wd] = x
    OH = (xpad.shape[2] - KH) // SH + 1
    OW = (xpad.shape[3] - KW) // SW + 1
    Fg = F // groups
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for oh in range(OH):
                for ow in range(OW):
                    acc = 0.0 if b is None else float(b[f])
                    for c in range(Cg):
                        for i in range(KH):
                            for j in range(KW):
                                acc += W[f, c, i, j] * xpad[n, g * Cg + c, oh * SH + i, ow * SW + j]
                    y[n, f, oh, ow] = acc
    return y


# ------------------------------------------------------------ known values
def lecture_image():
    """The lecture's 7x7 image: ones at (1,2), (1,3), (1,4) and (2..5, 3)."""
    x = np.zeros((1, 1, 7, 7), dtype=np.float32)
    x[0, 0, 1, 2:5] = 1
    x[0, 0, 2:6, 3] = 1
    return x


LECTURE_RESULT = np.array([[0, 2, 3, 0, -1],
                           [0, 2, 5, -1, -1],
                           [0, 0, 6, -3, 0],
                           [0, 0, 6, -3, 0],
                           [0, 0, 4, -2, 0]], dtype=np.float32)


def test_lecture_example_and_relu():
    layer = nn.Conv2D(1, 1, 3, padding="valid", bias=False)
    layer.W.data[0, 0] = np.array([[-1, 2, 0]] * 3, dtype=np.float32)  # every row [-1, 2, 0]
    y = layer.forward(lecture_image())
    assert y.shape == (1, 1, 5, 5) and y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], LECTURE_RESULT)
    activated = nn.ReLU().forward(y)
    np.testing.assert_array_equal(activated[0, 0], np.maximum(LECTURE_RESULT, 0))
    assert activated.min() == 0 and (activated[y < 0] == 0).all()
    np.testing.assert_array_equal(activated[y > 0], y[y > 0])


def test_kernel_is_not_flipped():
    """Cross-correlation: a kernel with a single 1 at (0, 0) reads the top-left of each window."""
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    layer = nn.Conv2D(1, 1, 2, bias=False).astype("float64")
    layer.W.data[...] = [[[[1.0, 0.0], [0.0, 0.0]]]]
    np.testing.assert_array_equal(layer.forward(x)[0, 0], x[0, 0, :3, :3])


CONFIGS = [
    # (C, F, kernel, stride, padding, groups, bias, input H x W, N)
    (3, 4, 3, 1, 0, 1, True, (6, 7), 2),
    (3, 4, 3, 2, 1, 1, True, (7, 7), 2),
    (2, 3, 3, 4, 0, 1, False, (9, 10), 2),
    (2, 3, (3, 2), (1, 2), (2, 1), 1, True, (5, 6), 1),
    (2, 2, 3, 1, "same", 1, True, (5, 7), 2),
    (2, 2, 5, 2, "same", 1, True, (7, 6), 1),
    (2, 3, 4, 1, "same", 1, True, (5, 5), 1),   # even kernel: extra pad bottom/right
    (4, 6, 3, 1, 1, 2, True, (5, 5), 2),
    (6, 3, 3, 2, "same", 3, False, (5, 6), 1),
    (4, 4, 3, 1, 1, 4, True, (4, 5), 2),        # depthwise
    (2, 2, 11, 4, 0, 1, True, (23, 23), 1),
]


@pytest.mark.parametrize("C, F, k, s, p, g, bias, hw, N", CONFIGS)
def test_forward_matches_loops(C, F, k, s, p, g, bias, hw, N):
    layer = nn.Conv2D(C, F, k, stride=s, padding=p, groups=g, bias=bias, seed=3).astype("float64")
    if bias:
        layer.b.data[...] = _x((F,), seed=4)
    x = _x((N, C) + hw, seed=5)
    y = layer.forward(x)
    pads = layer._pads(*hw)
    expected = conv_loops(x, layer.W.data, layer.b.data if bias else None, layer.stride, pads, g)
    assert y.shape == expected.shape == (N,) + layer.output_shape((C,) + hw)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_grouped_conv_is_independent_convs():
    """groups=2 equals two separate convolutions on the two halves of the channels."""
    layer = nn.Conv2D(4, 6, 3, padding=1, groups=2, seed=7).astype("float64")
    layer.b.data[...] = _x((6,), seed=8)
    x = _x((2, 4, 5, 6), seed=9)
    y = layer.forward(x)
    for g in range(2):
        half = nn.Conv2D(2, 3, 3, padding=1, seed=0).astype("float64")
        half.W.data[...] = layer.W.data[3 * g:3 * g + 3]
        half.b.data[...] = layer.b.data[3 * g:3 * g + 3]
        np.testing.assert_allclose(y[:, 3 * g:3 * g + 3], half.forward(x[:, 2 * g:2 * g + 2]),
                                   rtol=1e-12, atol=1e-12)
    # an output channel of group 0 does not see the input channels of group 1
    x2 = x.copy()
    x2[:, 2:] += 10.0
    np.testing.assert_array_equal(layer.forward(x2)[:, :3], y[:, :3])


@pytest.mark.parametrize("n, k, s, expected", [
    (7, 3, 1, (1, 1)), (7, 5, 1, (2, 2)), (7, 3, 2, (1, 1)), (8, 3, 2, (0, 1)),
    (6, 5, 2, (1, 2)), (5, 4, 1, (1, 2)), (224, 11, 4, (3, 4)), (4, 1, 3, (0, 0)),
])
def test_same_padding_rule(n, k, s, expected):
    assert same_padding(n, k, s) == expected
    top, bottom = expected
    assert (n + top + bottom - k) // s + 1 == -(-n // s)   # output = ceil(n / s)


@pytest.mark.parametrize("hw, k, s", [((7, 7), 3, 1), ((6, 9), 5, 1), ((7, 8), 3, 2),
                                      ((9, 5), 5, 2), ((5, 5), 4, 1)])
def test_same_output_size(hw, k, s):
    layer = nn.Conv2D(1, 2, k, stride=s, padding="same")
    y = layer.forward(_x((1, 1) + hw, dtype=np.float32))
    assert y.shape[2:] == (-(-hw[0] // s), -(-hw[1] // s))
    assert layer.output_shape((1,) + hw) == y.shape[1:]


def test_output_size_formula():
    # floor((N - f + 2p) / s) + 1, not N + f - 1
    layer = nn.Conv2D(1, 1, 11, stride=4, padding=2)
    assert layer.output_shape((1, 224, 224)) == (1, 55, 55)
    assert nn.Conv2D(1, 1, 3).output_shape((1, 7, 7)) == (1, 5, 5)
    assert nn.Conv2D(1, 1, 3, stride=2).output_shape((1, 8, 8)) == (1, 3, 3)


# ------------------------------------------------------------- im2col
def test_im2col_layout_and_col2im_adjoint():
    x = _x((2, 3, 6, 5), seed=1)
    KH, KW, SH, SW = 3, 2, 2, 1
    cols = im2col(x, KH, KW, SH, SW)
    OH, OW = (6 - KH) // SH + 1, (5 - KW) // SW + 1
    assert cols.shape == (3 * KH * KW, 2 * OH * OW)
    # cols[(c, i, j), (n, oh, ow)] = x[n, c, oh*SH + i, ow*SW + j]
    n, c, i, j, oh, ow = 1, 2, 1, 1, 1, 2
    assert cols[c * KH * KW + i * KW + j, n * OH * OW + oh * OW + ow] == x[n, c, oh * SH + i, ow * SW + j]
    # col2im is the adjoint: <im2col(x), d> == <x, col2im(d)>
    d = _x(cols.shape, seed=2)
    lhs = float((cols * d).sum())
    rhs = float((x * col2im(d, x.shape, KH, KW, SH, SW)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    with pytest.raises(ValueError, match="col2im: expected dcols of shape"):
        col2im(d[:, :-1], x.shape, KH, KW, SH, SW)


# ----------------------------------------------------------- gradient checks
GRAD_CASES = {
    "stride2_pad1": (dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1), (2, 3, 7, 7)),
    "stride4": (dict(in_channels=2, out_channels=3, kernel_size=3, stride=4), (2, 2, 9, 10)),
    "int_padding2": (dict(in_channels=2, out_channels=3, kernel_size=3, padding=2), (2, 2, 5, 4)),
    "pair_padding_kernel_stride": (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 2),
                                        padding=(2, 1)), (2, 2, 5, 6)),
    "same_k3": (dict(in_channels=2, out_channels=3, kernel_size=3, padding="same"), (2, 2, 5, 6)),
    "same_k5": (dict(in_channels=2, out_channels=2, kernel_size=5, padding="same"), (1, 2, 5, 7)),
    "same_k3_stride2": (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding="same"),
                        (2, 2, 8, 7)),
    "same_k5_stride2": (dict(in_channels=2, out_channels=2, kernel_size=5, stride=2, padding="same"),
                        (1, 2, 7, 6)),
    "groups2": (dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2), (2, 4, 5, 5)),
    "11x11_stride4": (dict(in_channels=2, out_channels=2, kernel_size=11, stride=4), (1, 2, 23, 23)),
    "odd_spatial_valid": (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 7, 9)),
    "batch1": (dict(in_channels=3, out_channels=2, kernel_size=3, padding=1), (1, 3, 5, 5)),
    "no_bias": (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, bias=False), (2, 2, 7, 7)),
    "1x1": (dict(in_channels=3, out_channels=2, kernel_size=1), (2, 3, 3, 4)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradcheck_Conv2D(case):
    kwargs, shape = GRAD_CASES[case]
    layer = nn.Conv2D(**kwargs, seed=11)
    if layer.b is not None:
        layer.b.data[...] = _x(layer.b.shape, seed=12, dtype=np.float32)  # a non-zero bias
    result = assert_gradcheck(layer, _x(shape, seed=13), tol=1e-6)
    assert set(result.keys()) == ({"input", "W", "b"} if layer.b is not None else {"input", "W"})


DILATION_CASES = {
    "2": (dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2), (2, 2, 8, 7)),
    "pair_stride_padding": (dict(in_channels=2, out_channels=2, kernel_size=(2, 3), stride=2,
                                 padding=(1, 2), dilation=(3, 2)), (1, 2, 9, 10)),
    "same_groups": (dict(in_channels=4, out_channels=2, kernel_size=3, padding="same",
                         dilation=2, groups=2), (2, 4, 6, 5)),
}


@pytest.mark.parametrize("case", sorted(DILATION_CASES))
def test_gradcheck_Conv2D_dilation(case):
    # float64 central differences, random upstream gradient (assert_gradcheck), every
    # parameter; on both paths (fast and plain).
    from nnlite import kernels
    kwargs, shape = DILATION_CASES[case]
    for force in (False, True):
        old = kernels.use_reference(force)
        try:
            layer = nn.Conv2D(**kwargs, seed=11).astype("float64")
            layer.b.data[...] = _x(layer.b.shape, seed=12)
            assert_gradcheck(layer, _x(shape, seed=13), tol=1e-6)
        finally:
            kernels.use_reference(old)


@pytest.mark.parametrize("H, W, k, s, p, d", [(9, 8, 3, 1, 0, 2), (10, 11, 3, 2, 1, 3),
                                              (7, 7, 2, 3, 2, 4), (12, 5, (3, 1), (2, 1), 0, (2, 1))])
def test_dilation_output_size_is_pytorchs_formula_and_matches_loops(H, W, k, s, p, d):
    # OH = floor((H + 2P - D*(K-1) - 1) / S) + 1, and y = the sum written out
    layer = nn.Conv2D(2, 3, k, stride=s, padding=p, dilation=d, seed=5).astype("float64")
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    x = _x((2, 2, H, W), seed=6)
    y = layer.forward(x)
    OH, OW = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    assert y.shape == (2, 3, OH, OW) and layer.output_shape((2, H, W)) == (3, OH, OW)
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    want = np.zeros_like(y) + layer.b.data[None, :, None, None]
    for i in range(KH):
        for j in range(KW):
            patch = xp[:, :, i * DH:i * DH + SH * (OH - 1) + 1:SH, j * DW:j * DW + SW * (OW - 1) + 1:SW]
            want += np.einsum("nchw,fc->nfhw", patch, layer.W.data[:, :, i, j])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_dilation_same_padding_keeps_the_size_and_config_round_trips():
    layer = nn.Conv2D(1, 2, 3, padding="same", dilation=3, seed=0)
    assert layer.output_shape((1, 10, 9)) == (2, 10, 9)        # span 7: pads 3 and 3
    config = layer.get_config()
    assert config["dilation"] == (3, 3)
    assert nn.Conv2D(**json.loads(json.dumps(config))).dilation == (3, 3)
    old_config = {k: v for k, v in config.items() if k != "dilation"}   # saved before dilation
    assert nn.Conv2D(**old_config).dilation == (1, 1)
    with pytest.raises(ValueError, match=r"kernel 3x3 \(dilation 4x4: it spans 9x9\) is larger"):
        nn.Conv2D(1, 1, 3, dilation=4).forward(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        nn.Conv2D(1, 1, 3, dilation=0)


def test_gradcheck_Conv2D_frozen_W():
    layer = nn.Conv2D(2, 3, 3, stride=2, padding=1, seed=1)
    layer.W.trainable = False
    result = gradcheck(layer, _x((2, 2, 5, 5)))
    assert result["input"] < 1e-6 and result["b"] < 1e-6
    assert layer._cache[0] is None            # no columns are kept for a frozen W
    sentinel = np.full(layer.W.shape, 3.0)
    layer.W.grad = sentinel
    layer.backward(_x(layer._cache[4], seed=2))   # _cache[4]: the output shape
    assert layer.W.grad is sentinel and (sentinel == 3.0).all()
    layer.W.trainable = True                  # unfrozen between forward and backward
    with pytest.raises(RuntimeError, match="run forward"):
        layer.backward(_x(layer._cache[4], seed=2))   # _cache[4]: the output shape


# ------------------------------------------------------------ dtype, contract
def test_float32_in_float32_out_and_matches_float64():
    layer = nn.Conv2D(4, 6, 3, stride=2, padding="same", groups=2, seed=5)
    x = _x((2, 4, 9, 8), dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(_x(y.shape, seed=1, dtype=np.float32))
    assert y.dtype == dx.dtype == layer.W.grad.dtype == layer.b.grad.dtype == np.float32
    y64 = layer.astype("float64").forward(x.astype(np.float64))
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5 * np.abs(y64).max())


def test_no_mutation():
    layer = nn.Conv2D(2, 2, 3, padding=1, seed=0)
    x = _x((2, 2, 4, 4), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="Conv2D: backward\\(\\) called before forward"):
        nn.Conv2D(1, 1, 3).backward(np.zeros((1, 1, 3, 3), np.float32))


def test_bad_input_names_layer_and_shapes():
    layer = nn.Conv2D(3, 8, 5)
    with pytest.raises(ValueError, match=r"Conv2D expected input \(N, 3, H, W\), got shape \(3, 48, 48\)"):
        layer.forward(np.zeros((3, 48, 48), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D expected input \(N, 3, H, W\), got \(2, 1, 48, 48\)"):
        layer.forward(np.zeros((2, 1, 48, 48), np.float32))
    with pytest.raises(ValueError, match="Conv2D expected float32 or float64 input, got int64"):
        layer.forward(np.zeros((2, 3, 8, 8), np.int64))
    with pytest.raises(ValueError, match="Conv2D has float32 parameters but got float64 input"):
        layer.forward(np.zeros((2, 3, 8, 8), np.float64))
    with pytest.raises(ValueError, match=r"Conv2D: kernel 5x5 is larger than the padded input 4x6 "
                                         r"\(input 4x6"):
        layer.forward(np.zeros((1, 3, 4, 6), np.float32))
    # padding counts: a 5x5 kernel fits a 3x3 input padded by 1
    assert nn.Conv2D(1, 1, 5, padding=1).forward(np.zeros((1, 1, 3, 3), np.float32)).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"conv1 expected input \(N, 3, H, W\), got \(N, 1, 48, 48\)"):
        nn.Conv2D(3, 8, 5, name="conv1").output_shape((1, 48, 48))
    with pytest.raises(ValueError, match=r"conv1: kernel 5x5 is larger"):
        nn.Conv2D(3, 8, 5, name="conv1").output_shape((3, 4, 48))
    layer.forward(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D.backward expected dy of shape \(1, 8, 4, 4\)"):
        layer.backward(np.zeros((1, 8, 5, 5), np.float32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "divisible by groups"),
    (dict(in_channels=0, out_channels=4, kernel_size=3), "in_channels must be a positive int"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding="full"), "padding must be"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding=-1), "padding must be >= 0"),
    (dict(in_channels=2, out_channels=4, kernel_size=0), "kernel_size, stride and dilation must be >= 1"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, stride=(1, 2, 3)), "stride must be an int or a pair"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, weight_init="ones"), "unknown initializer"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2D(**kwargs)


def test_config_roundtrip_and_seed():
    layer = nn.Conv2D(4, 6, (3, 5), stride=(2, 1), padding="same", groups=2, bias=False,
                      weight_init="glorot_uniform", seed=21, name="c")
    config = json.loads(json.dumps(layer.get_config()))
    clone = nn.Conv2D(**config)
    assert clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone.W.data, layer.W.data)
    x = _x((1, 4, 6, 7), dtype=np.float32)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
    assert clone.name == "c" and clone.b is None and clone.W.shape == (6, 2, 3, 5)


def test_regularizer_attached_to_W_only():
    reg = nn.L2(1e-3)
    layer = nn.Conv2D(2, 3, 3, regularizer=reg)
    assert layer.W.regularizer is reg and layer.b.regularizer is None


def test_dilation_against_pytorch():
    torch = pytest.importorskip("torch")
    layer = nn.Conv2D(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3), groups=2,
                      seed=3).astype("float64")
    x = _x((2, 4, 11, 9), seed=4)
    y = layer.forward(x)
    dy = _x(y.shape, seed=5)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(layer.W.data, requires_grad=True)
    bt = torch.tensor(layer.b.data, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, Wt, bt, stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                                    groups=2)
    yt.backward(torch.tensor(dy))
    for mine, theirs in ((y, yt), (dx, xt.grad), (layer.W.grad, Wt.grad), (layer.b.grad, bt.grad)):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("frozen_W", [False, True])
def test_need_input_grad_false_skips_dx_and_keeps_parameter_gradients(dtype, reference,
                                                                      frozen_W):
    from nnlite import kernels
    old = kernels.use_reference(reference)
    try:
        x = _x((3, 2, 9, 7), seed=1, dtype=dtype)
        dy = _x((3, 4, 5, 4), seed=2, dtype=dtype)
        grads = []
        for need in (True, False):
            layer = nn.Conv2D(2, 4, 3, stride=(2, 2), padding=1, seed=0).astype(dtype)
            layer.W.trainable = not frozen_W
            layer.need_input_grad = need
            layer.forward(x, training=True)
            dx = layer.backward(dy)
            assert (dx is None) == (not need)
            grads.append((layer.W.grad, layer.b.grad))
        (dW, db), (dW_skip, db_skip) = grads
        np.testing.assert_array_equal(db, db_skip)
        assert db_skip.dtype == dtype
        if dW is None:                      # a frozen W keeps whatever grad it had
            assert dW_skip is None
        else:
            np.testing.assert_array_equal(dW, dW_skip)
    finally:
        kernels.use_reference(old)
