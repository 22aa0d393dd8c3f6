"""Tests for nnlite.activations: ReLU, LeakyReLU, Tanh, Sigmoid, Softmax."""
import json
import warnings

import numpy as np
import pytest

import nnlite as nn
from nnlite.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from nnlite.gradcheck import assert_gradcheck


def away_from_zero(shape, seed=0, margin=0.1):
    """Normal values pushed at least ``margin`` away from the kink at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return x + np.where(x >= 0, margin, -margin)


# ----------------------------------------------------------- known values
def test_relu_zeroes_negatives():
    # the lecture example: negatives become 0, positives pass unchanged
    x = np.array([[-3.0, -0.5, 0.0, 0.5, 2.0]], dtype=np.float32)
    y = ReLU().forward(x)
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.0, 0.5, 2.0]])


def test_relu_derivative_at_zero_is_zero():
    layer = ReLU()
    layer.forward(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(layer.backward(np.array([5.0, 5.0, 5.0])), [0.0, 0.0, 5.0])


def test_leaky_relu_values_and_slope():
    layer = LeakyReLU(alpha=0.1)
    y = layer.forward(np.array([-2.0, 0.0, 3.0]))
    np.testing.assert_allclose(y, [-0.2, 0.0, 3.0])
    np.testing.assert_allclose(layer.backward(np.array([1.0, 1.0, 1.0])), [0.1, 0.1, 1.0])
    assert LeakyReLU().alpha == 0.01


def test_tanh_and_sigmoid_values():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(Tanh().forward(x), np.tanh(x))
    np.testing.assert_allclose(Sigmoid().forward(x), 1 / (1 + np.exp(-x)), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_large_inputs(dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=dtype)
    layer = Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow / invalid RuntimeWarning fails the test
        with np.errstate(over="warn", invalid="warn", divide="warn"):
            y = layer.forward(x)
            dx = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    assert 0 < y[2] < 1e-12
    np.testing.assert_allclose(y[2], np.exp(-30.0), rtol=1e-6)   # small values keep relative accuracy


def test_softmax_sums_to_one_along_axis():
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    for axis in (1, -1, 0):
        y = Softmax(axis=axis).forward(x)
        np.testing.assert_allclose(y.sum(axis=axis), 1.0)
        e = np.exp(x)
        np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True))


def test_softmax_large_logits_are_finite():
    x = np.array([[500.0, 0.0, -500.0], [1000.0, 1000.0, -1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):
            y = Softmax().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], atol=1e-30)


# --------------------------------------------------------- gradient checks
def test_gradcheck_ReLU():
    assert_gradcheck(ReLU(), away_from_zero((3, 4, 5)), tol=1e-6)


def test_gradcheck_LeakyReLU():
    assert_gradcheck(LeakyReLU(0.2), away_from_zero((3, 4, 5), seed=1), tol=1e-6)


def test_gradcheck_LeakyReLU_default_alpha_rank2():
    assert_gradcheck(LeakyReLU(), away_from_zero((6, 7), seed=2), tol=1e-6)


def test_gradcheck_Tanh():
    assert_gradcheck(Tanh(), np.random.default_rng(3).standard_normal((2, 3, 4, 5)), tol=1e-6)


def test_gradcheck_Sigmoid():
    x = np.random.default_rng(4).standard_normal((2, 3, 4)) * 3
    assert_gradcheck(Sigmoid(), x, tol=1e-6)


def test_gradcheck_Softmax():
    assert_gradcheck(Softmax(), np.random.default_rng(5).standard_normal((4, 6)), tol=1e-6)


def test_gradcheck_Softmax_axis_last_rank4():
    x = np.random.default_rng(6).standard_normal((2, 3, 2, 5))
    assert_gradcheck(Softmax(axis=-1), x, tol=1e-6)


def test_gradcheck_Softmax_large_logits():
    rng = np.random.default_rng(7)
    # +-500 offsets per row: exp(x) alone would overflow; logits kept close enough
    # within a row that every probability (and so every gradient) is non-trivial
    x = rng.standard_normal((4, 5)) + np.array([[500.0], [-500.0], [250.0], [-250.0]])
    assert_gradcheck(Softmax(), x, tol=1e-6)
    y = Softmax().forward(x)
    assert np.all(np.isfinite(y))


# ------------------------------------------------------- dtype, contract
ALL = [ReLU, LeakyReLU, Tanh, Sigmoid, Softmax]


@pytest.mark.parametrize("cls", ALL)
def test_float32_stays_float32_and_matches_float64(cls):
    layer = cls()
    x64 = away_from_zero((3, 5, 2), seed=8)
    x32 = x64.astype(np.float32)
    y32 = layer.forward(x32)
    dy32 = np.random.default_rng(9).standard_normal(y32.shape).astype(np.float32)
    dx32 = layer.backward(dy32)
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    y64 = layer.forward(x32.astype(np.float64))
    dx64 = layer.backward(dy32.astype(np.float64))
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4, 5)])
def test_any_rank_keeps_shape(cls, shape):
    layer = cls(axis=0) if cls is Softmax and len(shape) == 1 else cls()
    x = away_from_zero(shape, seed=10)
    y = layer.forward(x)
    assert y.shape == x.shape
    assert layer.backward(np.ones_like(y)).shape == x.shape
    assert layer.output_shape(shape[1:] if len(shape) > 1 else (5,)) == (
        shape[1:] if len(shape) > 1 else (5,))


@pytest.mark.parametrize("cls", ALL)
def test_no_mutation(cls):
    layer = cls()
    x = away_from_zero((4, 3), seed=11).astype(np.float32)
    x_copy = x.copy()
    y = layer.forward(x)
    dy = np.random.default_rng(12).standard_normal(y.shape).astype(np.float32)
    dy_copy = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


@pytest.mark.parametrize("cls", ALL)
def test_backward_before_forward(cls):
    with pytest.raises(RuntimeError, match="before forward"):
        cls().backward(np.ones((2, 3), dtype=np.float32))


@pytest.mark.parametrize("cls", ALL)
def test_bad_input(cls):
    with pytest.raises(ValueError, match="float32 or float64"):
        cls().forward(np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="expected an array"):
        cls().forward([[1.0, 2.0]])
    layer = cls()
    layer.forward(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.ones((3, 2), dtype=np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError, match="axis 1 is out of range"):
        Softmax().forward(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="axis must be an int"):
        Softmax(axis=1.0)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        LeakyReLU(alpha=float("nan"))
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        LeakyReLU(alpha="0.1")
    with pytest.raises(ValueError, match="cannot be used"):
        Softmax(axis=3).output_shape((4, 5))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.3), Tanh(), Sigmoid(), Softmax(axis=-1)])
def test_config_roundtrip(layer):
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer)(**config)
    assert clone.get_config() == layer.get_config()
    x = away_from_zero((3, 4), seed=13)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


def test_one_stable_sigmoid_and_softmax_for_layers_losses_and_predict_proba():
    # One definition each (nnlite.functional), used by Sigmoid/Softmax, the losses and
    # predict_proba; finite and exact at +-1000 in float32 and float64.
    from nnlite import activations, functional, losses, training
    assert activations.sigmoid is losses.sigmoid is training.sigmoid is functional.sigmoid
    assert activations.softmax is training.softmax is functional.softmax
    for dtype in (np.float32, np.float64):
        z = np.array([-1000.0, -30.0, -1.0, 0.0, 2.0, 40.0, 1000.0], dtype=dtype)
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            s = functional.sigmoid(z)
            _, grad = nn.BinaryCrossEntropy()(z, np.zeros(z.shape))
        assert s.dtype == dtype and s[0] == 0 and s[-1] == 1 and s[3] == 0.5
        np.testing.assert_array_equal(nn.Sigmoid().forward(z), s)
        np.testing.assert_array_equal(grad * z.size, s)           # dL/dz = (sigmoid(z) - t) / n
        logits = np.stack([z, -z], axis=1)                        # (7, 2)
        p = functional.softmax(logits, axis=1)
        np.testing.assert_array_equal(nn.Softmax(axis=1).forward(logits), p)
        np.testing.assert_allclose(np.exp(functional.log_softmax(logits, axis=1)), p,
                                   rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_predict_proba_uses_the_shared_sigmoid_and_softmax():
    model = nn.Sequential([nn.Dense(3, 1, seed=0)])
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32) * 100
    from nnlite import functional
    z = model.forward(x).astype(np.float64).reshape(-1)
    np.testing.assert_array_equal(nn.predict_proba(model, x), functional.sigmoid(z))
    model = nn.Sequential([nn.Dense(3, 4, seed=1)])
    z = model.forward(x).astype(np.float64)
    np.testing.assert_array_equal(nn.predict_proba(model, x), functional.softmax(z, axis=1))
