import json

import numpy as np
import pytest

from nnlite.gradcheck import assert_gradcheck
from nnlite.padding import ZeroPad2D, crop2d, padding4, zero_pad2d


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("padding, pads", [
    (2, (2, 2, 2, 2)), ((1, 3), (1, 1, 3, 3)), ((0, 1, 2, 3), (0, 1, 2, 3)), ([1, 0], (1, 1, 0, 0)),
])
def test_padding_forms(padding, pads):
    layer = ZeroPad2D(padding)
    assert layer.padding == pads
    x = _x((2, 3, 4, 5), dtype=np.float32)
    y = layer.forward(x)
    top, bottom, left, right = pads
    assert y.shape == (2, 3, 4 + top + bottom, 5 + left + right) == (2,) + layer.output_shape((3, 4, 5))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(
        y, np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))))


def test_backward_is_crop():
    layer = ZeroPad2D((1, 2, 3, 0))
    x = _x((1, 2, 3, 3), dtype=np.float32)
    y = layer.forward(x)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dx = layer.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, dy[:, :, 1:4, 3:6])


def test_gradcheck_ZeroPad2D_int():
    assert_gradcheck(ZeroPad2D(1), _x((2, 2, 3, 4)), tol=1e-6)


def test_gradcheck_ZeroPad2D_asymmetric():
    assert_gradcheck(ZeroPad2D((0, 2, 1, 3)), _x((1, 3, 5, 2)), tol=1e-6)


def test_helpers_roundtrip_and_zero_padding():
    x = _x((2, 1, 3, 4))
    assert zero_pad2d(x, 0, 0, 0, 0) is x and crop2d(x, 0, 0, 0, 0) is x
    np.testing.assert_array_equal(crop2d(zero_pad2d(x, 1, 2, 3, 4), 1, 2, 3, 4), x)


def test_float32_matches_float64():
    x = _x((2, 2, 3, 3))
    y64 = ZeroPad2D(1).forward(x)
    y32 = ZeroPad2D(1).forward(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-7)


def test_bad_input_and_arguments():
    layer = ZeroPad2D(1)
    with pytest.raises(ValueError, match=r"ZeroPad2D expected input \(N, C, H, W\)"):
        layer.forward(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        layer.forward(np.zeros((1, 1, 2, 2), np.int64))
    for bad in (-1, (1, 2, 3), "same", 1.5, (1, -2)):
        with pytest.raises(ValueError, match="padding"):
            ZeroPad2D(bad)
    with pytest.raises(ValueError, match="padding"):
        padding4((True, 1))
    layer.forward(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.zeros((1, 1, 2, 2), np.float32))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        ZeroPad2D(1).backward(np.zeros((1, 1, 4, 4), np.float32))


def test_no_mutation():
    layer = ZeroPad2D(2)
    x = _x((1, 2, 3, 3), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x)
    dy = _x(y.shape, seed=3, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_config_roundtrip():
    layer = ZeroPad2D((1, 2, 3, 4), name="pad")
    cfg = json.loads(json.dumps(layer.get_config()))
    again = ZeroPad2D(**cfg)
    assert again.padding == layer.padding and again.name == "pad"


def test_gradcheck_ZeroPad2D_zero_padding_returns_new_array():
    x = _x((1, 2, 3, 3))
    assert ZeroPad2D(0).forward(x) is not x
    assert_gradcheck(ZeroPad2D(0), x, tol=1e-6)
