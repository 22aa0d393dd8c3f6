"""Tests for nnlite.mask_losses: per-pixel BCE (with pos_weight), soft Dice, their sum.

Gradient checks: central differences in float64 on random logits and random
(binary and soft) masks, relative error below 1e-6.
"""
import math

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import gradcheck_loss

TOL = 1e-6


def _z(shape, seed=0, scale=2.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def _mask(shape, seed=0, soft=False):
    rng = np.random.default_rng(seed)
    return rng.random(shape) if soft else (rng.random(shape) < 0.3).astype(np.float64)


# ------------------------------------------------------------ gradient checks
def test_gradcheck_PixelBCE():
    assert gradcheck_loss(nn.PixelBCE(), _z((2, 1, 4, 5), 1), _mask((2, 1, 4, 5), 2)).max_error < TOL


def test_gradcheck_PixelBCE_pos_weight_soft_targets():
    loss = nn.PixelBCE(pos_weight=7.5)
    assert gradcheck_loss(loss, _z((3, 1, 3, 4), 3), _mask((3, 1, 3, 4), 4, soft=True)).max_error < TOL
    assert gradcheck_loss(loss, _z((2, 5, 3), 5), _mask((2, 5, 3), 6)).max_error < TOL   # (N, H, W)


def test_gradcheck_SoftDice():
    assert gradcheck_loss(nn.SoftDice(), _z((3, 1, 4, 4), 7), _mask((3, 1, 4, 4), 8)).max_error < TOL


def test_gradcheck_SoftDice_empty_mask_and_soft_targets():
    t = _mask((3, 1, 3, 5), 9, soft=True)
    t[1] = 0                                                     # an image without a lesion
    assert gradcheck_loss(nn.SoftDice(smooth=0.5), _z((3, 1, 3, 5), 10), t).max_error < TOL


def test_gradcheck_BCEDice():
    loss = nn.BCEDice(bce_weight=0.7, dice_weight=1.3, pos_weight=4.0)
    assert gradcheck_loss(loss, _z((2, 1, 4, 3), 11), _mask((2, 1, 4, 3), 12)).max_error < TOL


# ------------------------------------------------------------ values by hand
def test_pixel_bce_by_hand_and_pos_weight():
    z = np.array([[[[0.0, 2.0], [-1.0, 3.0]]]])
    t = np.array([[[[1.0, 0.0], [1.0, 1.0]]]])
    sp = lambda v: math.log1p(math.exp(v))                       # softplus
    plain = [sp(-0.0), sp(2.0), sp(1.0), sp(-3.0)]
    value, dz = nn.PixelBCE()(z, t)
    assert value == pytest.approx(sum(plain) / 4, rel=1e-13)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(dz, (sig - t) / 4, rtol=1e-13)
    weighted = [3 * sp(-0.0), sp(2.0), 3 * sp(1.0), 3 * sp(-3.0)]
    assert nn.PixelBCE(pos_weight=3)(z, t)[0] == pytest.approx(sum(weighted) / 4, rel=1e-13)


def test_pixel_bce_is_stable_for_huge_logits():
    z = np.array([[[1e4, -1e4]]], dtype=np.float32)
    value, dz = nn.PixelBCE()(z, np.array([[[0.0, 1.0]]]))
    assert value == pytest.approx(1e4)
    assert np.isfinite(dz).all() and dz.dtype == np.float32


def test_soft_dice_by_hand_and_limits():
    z = np.array([[[[0.0, 0.0]]]])                               # q = 0.5, 0.5
    t = np.array([[[[1.0, 0.0]]]])
    value, _ = nn.SoftDice(smooth=1.0)(z, t)
    assert value == pytest.approx(1 - (2 * 0.5 + 1) / (1.0 + 1.0 + 1.0), rel=1e-13)
    # confident and right: loss near 0; confident and wrong: near 1
    right = np.where(t > 0, 30.0, -30.0)
    assert nn.SoftDice(smooth=1e-6)(right, t)[0] == pytest.approx(0.0, abs=1e-6)
    assert nn.SoftDice(smooth=1e-6)(-right, t)[0] == pytest.approx(1.0, abs=1e-5)
    # an empty mask and an empty prediction: perfect
    assert nn.SoftDice()(np.full((1, 1, 2, 2), -40.0), np.zeros((1, 1, 2, 2)))[0] == pytest.approx(0.0, abs=1e-12)


def test_soft_dice_is_a_mean_of_per_image_losses():
    z, t = _z((3, 1, 4, 4), 13), _mask((3, 1, 4, 4), 14)
    whole = nn.SoftDice()(z, t)[0]
    parts = [nn.SoftDice()(z[i:i + 1], t[i:i + 1])[0] for i in range(3)]
    assert whole == pytest.approx(np.mean(parts), rel=1e-13)


def test_float32_stays_float32_and_inputs_are_not_mutated():
    z = _z((2, 1, 3, 3), 15).astype(np.float32)
    t = _mask((2, 1, 3, 3), 16)
    z0, t0 = z.copy(), t.copy()
    for loss in (nn.PixelBCE(pos_weight=2.0), nn.SoftDice(), nn.BCEDice()):
        value, dz = loss(z, t)
        assert isinstance(value, float) and dz.dtype == np.float32 and dz.shape == z.shape
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(t, t0)


@pytest.mark.parametrize("loss", [nn.PixelBCE(), nn.SoftDice(), nn.BCEDice()], ids=repr)
def test_bad_inputs_are_clear_errors(loss):
    z = np.zeros((2, 1, 3, 3))
    with pytest.raises(ValueError, match="shape"):
        loss(z, np.zeros((2, 1, 3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loss(z, np.full((2, 1, 3, 3), 2.0))
    with pytest.raises(ValueError, match="non-finite"):
        loss(np.full((2, 1, 3, 3), np.nan), np.zeros((2, 1, 3, 3)))


def test_constructor_checks_and_config():
    with pytest.raises(ValueError, match="pos_weight"):
        nn.PixelBCE(pos_weight=0)
    with pytest.raises(ValueError, match="smooth"):
        nn.SoftDice(smooth=0)
    assert nn.BCEDice(pos_weight=3).get_config() == {
        "bce_weight": 1.0, "dice_weight": 1.0, "pos_weight": 3.0, "smooth": 1.0}
    assert repr(nn.PixelBCE(2)) == "PixelBCE(pos_weight=2.0)"
