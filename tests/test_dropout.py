"""Tests for nnlite.dropout: inverted dropout, evaluation identity, seeded masks."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite.backend import Generator
from nnlite.gradcheck import assert_gradcheck


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_inverted_scaling_keeps_the_mean():
    rate = 0.3
    layer = nn.Dropout(rate, seed=0)
    x = np.ones((400, 250), dtype=np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32 and y.shape == x.shape
    kept = layer.mask
    assert kept.dtype == bool and kept.shape == x.shape
    # kept elements are scaled by 1 / (1 - rate), dropped ones are exactly 0
    np.testing.assert_array_equal(y[kept], np.float32(1.0 / (1.0 - rate)))
    np.testing.assert_array_equal(y[~kept], 0.0)
    # 100,000 Bernoulli(0.7) draws: the kept fraction and E[y] = x within 5 standard errors
    se = np.sqrt(rate * (1 - rate) / x.size)
    assert abs(kept.mean() - (1 - rate)) < 5 * se
    assert abs(float(y.mean()) - 1.0) < 5 * se / (1 - rate)


def test_backward_uses_the_same_mask():
    layer = nn.Dropout(0.5, seed=1)
    x = _x((6, 7), dtype=np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, x * layer.mask * np.float32(2.0))
    dy = _x(y.shape, seed=2, dtype=np.float32)
    dx = layer.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, dy * layer.mask * np.float32(2.0))


def test_identity_in_evaluation():
    layer = nn.Dropout(0.5, seed=0)
    x = _x((3, 4, 5), dtype=np.float32)
    y = layer.forward(x)                       # training defaults to False
    np.testing.assert_array_equal(y, x)
    assert y is not x and not np.shares_memory(y, x)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy)
    assert not np.shares_memory(dx, dy)
    assert layer.mask is None                  # no mask is drawn in evaluation


def test_rate_zero_is_identity_in_training():
    x = _x((4, 5), dtype=np.float32)
    np.testing.assert_array_equal(nn.Dropout(0.0, seed=0).forward(x, training=True), x)


def test_seeded_masks_are_reproducible():
    a, b, c = nn.Dropout(0.5, seed=7), nn.Dropout(0.5, seed=7), nn.Dropout(0.5, seed=8)
    x = np.ones((8, 16), dtype=np.float32)
    masks_a, masks_b, masks_c = [], [], []
    for _ in range(3):
        a.forward(x, training=True); masks_a.append(a.mask.copy())
        b.forward(x, training=True); masks_b.append(b.mask.copy())
        c.forward(x, training=True); masks_c.append(c.mask.copy())
    for ma, mb in zip(masks_a, masks_b):
        np.testing.assert_array_equal(ma, mb)  # same seed: same sequence of masks
    assert not np.array_equal(masks_a[0], masks_a[1])   # a new mask every call
    assert not np.array_equal(masks_a[0], masks_c[0])   # another seed: other masks
    # a shared Generator: two layers drawing from one stream
    g1, g2 = Generator(3), Generator(3)
    d1, d2 = nn.Dropout(0.5, seed=g1), nn.Dropout(0.5, seed=g2)
    d1.forward(x, training=True)
    d2.forward(x, training=True)
    np.testing.assert_array_equal(d1.mask, d2.mask)


def test_gradcheck_Dropout_fixed_mask():
    shape = (3, 4, 5)
    keep = np.random.default_rng(99).random(shape) >= 0.4
    layer = nn.Dropout(0.4, seed=0).fix_mask(keep)
    result = assert_gradcheck(layer, _x(shape, seed=1), tol=1e-6, training=True)
    assert result.max_error < 1e-8
    np.testing.assert_array_equal(layer.mask, keep)
    # back to random masks
    layer.fix_mask(None)
    layer.forward(_x(shape, seed=1), training=True)
    assert not np.array_equal(layer.mask, keep)


def test_gradcheck_Dropout_evaluation():
    assert_gradcheck(nn.Dropout(0.5, seed=0), _x((2, 3, 4), seed=2), tol=1e-6, training=False)


def test_fixed_mask_must_match_the_input():
    layer = nn.Dropout(0.5).fix_mask(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"fixed mask has shape \(2, 3\), the input \(3, 2\)"):
        layer.forward(np.ones((3, 2), np.float32), training=True)


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.5", True, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        nn.Dropout(rate)


def test_errors_and_no_mutation():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dropout(0.5).backward(np.ones((2, 2), np.float32))
    layer = nn.Dropout(0.5, seed=0)
    with pytest.raises(ValueError, match="float32 or float64"):
        layer.forward(np.ones((2, 2), np.int64), training=True)
    x = _x((3, 4), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x, training=True)
    dy = _x(y.shape, seed=1, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.ones((4, 3), np.float32))


def test_config_roundtrip():
    layer = nn.Dropout(0.25, seed=5)
    clone = nn.Dropout(**json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == {"rate": 0.25, "seed": 5}
    x = np.ones((4, 6), np.float32)
    np.testing.assert_array_equal(clone.forward(x, training=True), layer.forward(x, training=True))
