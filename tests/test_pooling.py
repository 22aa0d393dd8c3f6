"""Tests for nnlite.pooling: MaxPool2D, AvgPool2D, GlobalAvgPool2D."""
import json

import numpy as np
import pytest

from nnlite.gradcheck import assert_gradcheck
from nnlite.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D


def distinct(shape, seed=0):
    """Values in (-1, 1) that are all different and at least ~1/size apart (no near-ties)."""
    n = int(np.prod(shape))
    perm = np.random.default_rng(seed).permutation(n)
    return ((perm - n / 2) / n).reshape(shape)


def loop_pool(x, k, s, p, mode):
    """Direct reference: Python loops over every output pixel."""
    (KH, KW), (SH, SW), (PH, PW) = k, s, p
    N, C, H, W = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((N, C, H + 2 * PH, W + 2 * PW), fill)
    xp[:, :, PH:PH + H, PW:PW + W] = x
    OH, OW = (H - KH + 2 * PH) // SH + 1, (W - KW + 2 * PW) // SW + 1
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    win = xp[n, c, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]
                    y[n, c, oh, ow] = win.max() if mode == "max" else win.sum() / (KH * KW)
    return y


CASES = [  # kernel, stride, padding, input shape
    ((2, 2), (2, 2), (0, 0), (2, 3, 6, 8)),
    ((3, 3), (2, 2), (0, 0), (2, 2, 7, 9)),     # overlapping, AlexNet style
    ((3, 3), (2, 2), (1, 1), (1, 2, 7, 9)),
    ((2, 3), (1, 2), (1, 1), (2, 1, 5, 6)),
    ((3, 3), (1, 1), (0, 0), (1, 1, 3, 3)),     # kernel == input
]


@pytest.mark.parametrize("k,s,p,shape", CASES)
@pytest.mark.parametrize("cls,mode", [(MaxPool2D, "max"), (AvgPool2D, "avg")])
def test_forward_matches_loops(cls, mode, k, s, p, shape):
    x = distinct(shape)
    layer = cls(k, s, p)
    y = layer.forward(x)
    np.testing.assert_allclose(y, loop_pool(x, k, s, p, mode), rtol=1e-12, atol=1e-15)
    assert y.shape[1:] == layer.output_shape(shape[1:])


def test_output_size_formula():
    # floor((H - KH + 2PH) / SH) + 1 ; AlexNet: 55 -> 27 with 3x3 stride 2
    assert MaxPool2D(3, 2).output_shape((96, 55, 55)) == (96, 27, 27)
    assert MaxPool2D(2).output_shape((32, 48, 48)) == (32, 24, 24)
    assert AvgPool2D(3, 2, 1).output_shape((1, 7, 9)) == (1, 4, 5)
    assert MaxPool2D(2).output_shape((1, 7, 9)) == (1, 3, 4)  # floor: last row/col dropped
    assert GlobalAvgPool2D().output_shape((5, 7, 9)) == (5,)


def test_stride_defaults_to_kernel():
    assert MaxPool2D(3).stride == (3, 3)
    assert AvgPool2D((2, 3)).stride == (2, 3)
    assert MaxPool2D(3, stride=1).stride == (1, 1)


def test_max_pool_known_values():
    x = np.array([[1, 3, 2, 0],
                  [4, 2, 1, 5],
                  [0, 1, 7, 6],
                  [2, 8, 3, 3]], dtype=np.float32)[None, None]
    y = MaxPool2D(2).forward(x)
    np.testing.assert_array_equal(y[0, 0], [[4, 5], [8, 7]])
    ya = AvgPool2D(2).forward(x)
    np.testing.assert_allclose(ya[0, 0], [[2.5, 2.0], [2.75, 4.75]])


def test_max_pool_tie_goes_to_first_in_row_major_order():
    # all-equal window: the whole gradient goes to element (0, 0) of the window
    layer = MaxPool2D(2)
    x = np.full((1, 1, 2, 2), 3.0)
    layer.forward(x)
    dx = layer.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])
    # tie between (0, 1) and (1, 0): row-major first is (0, 1)
    x = np.array([[1.0, 7.0], [7.0, 2.0]])[None, None]
    layer.forward(x)
    dx = layer.backward(np.array([[[[2.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 2.0], [0.0, 0.0]])


def test_max_pool_tie_3x3_with_padding():
    # all-equal 3x3 input with -inf padding 1, kernel 3 stride 2 -> 2x2 output.
    # Each window's first real element (row-major) gets its dy; padding never does.
    layer = MaxPool2D(3, 2, 1)
    x = np.zeros((1, 1, 3, 3))
    layer.forward(x)
    dy = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]
    dx = layer.backward(dy)
    # window (0,0) covers input rows 0..1, cols 0..1 -> first real element (0,0)
    # window (0,1) covers rows 0..1, cols 1..2 -> (0,1); window (1,0) -> (1,0); (1,1) -> (1,1)
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])


def test_overlapping_windows_add_gradients():
    # 3x3 stride 2 on 5x5: the centre-ish element (2, 2) lies in all four windows;
    # make it the unique maximum so all four dy values land on it.
    x = distinct((1, 1, 5, 5)) * 0.1
    x[0, 0, 2, 2] = 10.0
    layer = MaxPool2D(3, 2)
    y = layer.forward(x)
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(y, 10.0)
    dy = np.array([[1.0, 2.0], [4.0, 8.0]])[None, None]
    dx = layer.backward(dy)
    expected = np.zeros((5, 5))
    expected[2, 2] = 15.0
    np.testing.assert_array_equal(dx[0, 0], expected)
    # average pooling: the shared element gets dy/9 from each of the four windows
    avg = AvgPool2D(3, 2)
    avg.forward(x)
    dxa = avg.backward(dy)
    assert dxa[0, 0, 2, 2] == pytest.approx(15.0 / 9)
    assert dxa[0, 0, 0, 0] == pytest.approx(1.0 / 9)
    assert dxa[0, 0, 0, 2] == pytest.approx(3.0 / 9)


def test_avg_pool_counts_padding_zeros():
    x = np.ones((1, 1, 2, 2))
    y = AvgPool2D(2, stride=2, padding=1).forward(x)
    # each 2x2 window holds one real 1 and three padded zeros
    np.testing.assert_allclose(y[0, 0], np.full((2, 2), 0.25))


def test_max_pool_padding_is_minus_inf():
    x = -np.ones((1, 1, 2, 2)) * 5.0
    y = MaxPool2D(2, stride=2, padding=1).forward(x)
    np.testing.assert_array_equal(y[0, 0], np.full((2, 2), -5.0))  # padding zeros would win


def test_global_avg_pool_values():
    x = distinct((2, 3, 4, 5))
    y = GlobalAvgPool2D().forward(x)
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)))


# --------------------------------------------------------- gradient checks
def test_gradcheck_MaxPool2D_2x2_stride2():
    assert_gradcheck(MaxPool2D(2), distinct((2, 3, 6, 8)), tol=1e-6)


def test_gradcheck_MaxPool2D_3x3_stride2_overlapping():
    assert_gradcheck(MaxPool2D(3, 2), distinct((2, 2, 7, 7), seed=1), tol=1e-6)


def test_gradcheck_MaxPool2D_padding1():
    assert_gradcheck(MaxPool2D(3, 2, padding=1), distinct((2, 2, 6, 6), seed=2), tol=1e-6)


def test_gradcheck_MaxPool2D_odd_7x9():
    assert_gradcheck(MaxPool2D(2), distinct((2, 2, 7, 9), seed=3), tol=1e-6)


def test_gradcheck_MaxPool2D_batch1_rect_kernel():
    assert_gradcheck(MaxPool2D((2, 3), stride=(1, 2), padding=1), distinct((1, 2, 5, 6), seed=4),
                     tol=1e-6)


def test_gradcheck_AvgPool2D_2x2():
    assert_gradcheck(AvgPool2D(2), distinct((2, 3, 6, 8)), tol=1e-6)


def test_gradcheck_AvgPool2D_3x3_stride2_padding1_odd():
    assert_gradcheck(AvgPool2D(3, 2, padding=1), distinct((1, 2, 7, 9), seed=5), tol=1e-6)


def test_gradcheck_AvgPool2D_overlapping_rect():
    assert_gradcheck(AvgPool2D((3, 2), stride=1), distinct((2, 2, 5, 4), seed=6), tol=1e-6)


def test_gradcheck_GlobalAvgPool2D():
    assert_gradcheck(GlobalAvgPool2D(), distinct((2, 3, 5, 4), seed=7), tol=1e-6)


# ------------------------------------------------------- dtype, contract
@pytest.mark.parametrize("layer", [MaxPool2D(3, 2, 1), AvgPool2D(3, 2, 1), GlobalAvgPool2D()])
def test_float32_stays_float32_and_matches_float64(layer):
    x64 = distinct((2, 3, 7, 9))
    x32 = x64.astype(np.float32)
    y32 = layer.forward(x32)
    dy32 = np.random.default_rng(0).standard_normal(y32.shape).astype(np.float32)
    dx32 = layer.backward(dy32)
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    y64 = layer.forward(x64)
    dx64 = layer.backward(dy32.astype(np.float64))
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [MaxPool2D(3, 2, 1), AvgPool2D(2), GlobalAvgPool2D()])
def test_no_mutation(layer):
    x = distinct((2, 2, 6, 6)).astype(np.float32)
    x_copy = x.copy()
    y = layer.forward(x)
    dy = np.ones_like(y)
    dy_copy = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


@pytest.mark.parametrize("layer", [MaxPool2D(2), AvgPool2D(2), GlobalAvgPool2D()])
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 1, 1, 1), dtype=np.float32))


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_bad_arguments_and_inputs(cls):
    with pytest.raises(ValueError, match="at most half"):
        cls(2, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        cls(3, padding=2)
    cls(3, padding=1)  # fine: PyTorch allows padding up to kernel // 2
    with pytest.raises(ValueError, match="kernel_size"):
        cls(0)
    with pytest.raises(ValueError, match="stride"):
        cls(2, stride=0)
    with pytest.raises(ValueError, match="padding"):
        cls(2, padding=-1)
    with pytest.raises(ValueError, match="int or a pair"):
        cls(2.5)
    layer = cls(3)
    with pytest.raises(ValueError, match=r"larger than the padded input 2x5"):
        layer.forward(np.zeros((1, 1, 2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(4, 4\)"):
        layer.forward(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        layer.forward(np.zeros((1, 1, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer.output_shape((1, 2, 2))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        layer.output_shape((4, 4))


def test_global_avg_pool_bad_rank():
    with pytest.raises(ValueError, match=r"GlobalAvgPool2D expected input \(N, C, H, W\)"):
        GlobalAvgPool2D().forward(np.zeros((2, 3), dtype=np.float32))


def test_backward_checks_dy_shape():
    layer = MaxPool2D(2)
    layer.forward(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.zeros((1, 1, 4, 4), dtype=np.float32))


@pytest.mark.parametrize("layer", [MaxPool2D((3, 2), stride=(2, 1), padding=(1, 0)),
                                   AvgPool2D(3, 2, 1), GlobalAvgPool2D(name="gap")])
def test_config_roundtrip(layer):
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer)(**config)
    assert clone.get_config() == layer.get_config()
    x = distinct((1, 2, 7, 6))
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


# ------------------------------------------------- MaxPool2D.indices
def loop_argmax(x, k, s, p):
    """Brute force: for each window, the flat h*W + w of its first maximum (row-major)."""
    (KH, KW), (SH, SW), (PH, PW) = k, s, p
    N, C, H, W = x.shape
    OH, OW = (H - KH + 2 * PH) // SH + 1, (W - KW + 2 * PW) // SW + 1
    idx = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, where = -np.inf, None
                    for i in range(KH):
                        for j in range(KW):
                            h, w = oh * SH - PH + i, ow * SW - PW + j
                            if 0 <= h < H and 0 <= w < W and x[n, c, h, w] > best:
                                best, where = x[n, c, h, w], h * W + w
                    idx[n, c, oh, ow] = where
    return idx


@pytest.mark.parametrize("k,s,p,shape", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_indices_match_brute_force(k, s, p, shape, ties):
    x = distinct(shape)
    if ties:
        x = np.round(x * 3) / 3                  # only a few distinct values: many ties
    layer = MaxPool2D(k, s, p)
    y = layer.forward(x)
    assert layer._indices is None                # lazy: nothing computed until asked for
    idx = layer.indices
    assert idx.dtype == np.int64 and idx.shape == y.shape
    np.testing.assert_array_equal(idx, loop_argmax(x, k, s, p))
    N, C, H, W = shape
    gathered = np.take_along_axis(x.reshape(N, C, H * W), idx.reshape(N, C, -1), axis=2)
    np.testing.assert_array_equal(gathered.reshape(y.shape), y)
    assert layer.indices is idx                  # computed once per forward


def test_max_pool_indices_agree_with_backward_routing_on_ties():
    layer = MaxPool2D(3, 2, 1)
    x = np.zeros((1, 2, 5, 5), dtype=np.float32)  # all ties
    y = layer.forward(x)
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    routed = np.zeros((1, 2, 25), dtype=np.float32)
    for c in range(2):
        np.add.at(routed[0, c], layer.indices[0, c].ravel(), dy[0, c].ravel())
    np.testing.assert_array_equal(dx.reshape(1, 2, 25), routed)


def test_max_pool_indices_follow_the_latest_forward_and_need_one():
    layer = MaxPool2D(2, name="pool1")
    with pytest.raises(RuntimeError, match="pool1: no indices yet; run forward"):
        layer.indices
    layer.forward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert layer.indices.ravel().tolist() == [3]
    layer.forward(np.array([[[[5.0, 2.0], [3.0, 4.0]]]]))
    assert layer.indices.ravel().tolist() == [0]


def test_max_pool_indices_match_pytorch():
    torch = pytest.importorskip("torch")
    x = distinct((2, 3, 7, 9), seed=3)
    for k, s, p in [(2, 2, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))]:
        layer = MaxPool2D(k, s, p)
        y = layer.forward(x)
        yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(layer.indices, it.numpy())


# -------------------------------------------- AvgPool2D(count_include_pad)
def loop_avg_exclude_pad(x, k, s, p):
    (KH, KW), (SH, SW), (PH, PW) = k, s, p
    N, C, H, W = x.shape
    OH, OW = (H - KH + 2 * PH) // SH + 1, (W - KW + 2 * PW) // SW + 1
    y = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * SH - PH, ow * SW - PW
            win = x[:, :, max(h0, 0):min(h0 + KH, H), max(w0, 0):min(w0 + KW, W)]
            y[:, :, oh, ow] = win.mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("k,s,p,shape", CASES)
def test_avg_pool_count_exclude_pad_matches_loops(k, s, p, shape):
    x = distinct(shape)
    layer = AvgPool2D(k, s, p, count_include_pad=False)
    np.testing.assert_allclose(layer.forward(x), loop_avg_exclude_pad(x, k, s, p), rtol=1e-12,
                               atol=1e-15)


def test_avg_pool_count_include_pad_is_the_default_and_pytorchs():
    x = np.ones((1, 1, 2, 2))
    assert AvgPool2D(2).count_include_pad is True
    np.testing.assert_allclose(AvgPool2D(2, 2, 1).forward(x)[0, 0], np.full((2, 2), 0.25))
    np.testing.assert_allclose(AvgPool2D(2, 2, 1, count_include_pad=False).forward(x)[0, 0],
                               np.ones((2, 2)))
    with pytest.raises(ValueError, match="count_include_pad must be True or False"):
        AvgPool2D(2, count_include_pad=1)


def test_gradcheck_AvgPool2D_padding_count_include_pad():
    assert_gradcheck(AvgPool2D(3, 2, 1, count_include_pad=True), distinct((2, 2, 6, 7), seed=8),
                     tol=1e-6)


def test_gradcheck_AvgPool2D_padding_count_exclude_pad():
    assert_gradcheck(AvgPool2D(3, 2, 1, count_include_pad=False), distinct((2, 2, 6, 7), seed=8),
                     tol=1e-6)
    assert_gradcheck(AvgPool2D((2, 3), (1, 2), 1, count_include_pad=False),
                     distinct((1, 2, 5, 6), seed=9), tol=1e-6)


def test_avg_pool_exclude_pad_float32_and_config():
    layer = AvgPool2D(3, 2, 1, count_include_pad=False)
    x = distinct((1, 2, 5, 5)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32
    config = json.loads(json.dumps(layer.get_config()))
    assert config["count_include_pad"] is False
    np.testing.assert_array_equal(AvgPool2D(**config).forward(x), y)


@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_pytorch(include):
    torch = pytest.importorskip("torch")
    x = distinct((2, 3, 7, 8), seed=4)
    dy = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    layer = AvgPool2D(3, 2, 1, count_include_pad=include)
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.avg_pool2d(xt, 3, 2, 1, count_include_pad=include)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_max_pool_indices_property_random_configs():
    """Hypothesis: any kernel, stride, padding and size, with ties, matches the brute force."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
                      s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
                      data=st.data())
    def check(k, s, data):
        p = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
        H = data.draw(st.integers(max(1, k[0] - 2 * p[0]), 7))
        W = data.draw(st.integers(max(1, k[1] - 2 * p[1]), 7))
        levels = data.draw(st.integers(1, 6))                    # few levels: many ties
        seed = data.draw(st.integers(0, 2**16))
        x = np.random.default_rng(seed).integers(0, levels, (2, 2, H, W)).astype(np.float32)
        layer = MaxPool2D(k, s, p)
        layer.forward(x)
        np.testing.assert_array_equal(layer.indices, loop_argmax(x, k, s, p))

    check()
