import json

import numpy as np
import pytest

from nnlite.dense import Dense, Flatten
from nnlite.gradcheck import assert_gradcheck, gradcheck
from nnlite.parameter import Parameter


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------- Dense
def test_forward_is_affine_map():
    layer = Dense(4, 3, seed=0).astype("float64")
    layer.b.data[...] = [0.5, -1.0, 2.0]
    x = _x((5, 4))
    y = layer.forward(x)
    assert y.shape == (5, 3) and layer.output_shape((4,)) == (3,)
    expected = np.array([[sum(x[n, i] * layer.W.data[i, o] for i in range(4)) + layer.b.data[o]
                          for o in range(3)] for n in range(5)])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_parameters_and_regularizer():
    reg = object()
    layer = Dense(6, 2, regularizer=reg)
    assert [p.name for p in layer.parameters()] == ["W", "b"]
    assert layer.W.shape == (6, 2) and layer.b.shape == (2,)
    assert layer.W.regularizer is reg and layer.b.regularizer is None
    assert [p.name for p in Dense(6, 2, bias=False).parameters()] == ["W"]


def test_gradcheck_Dense():
    assert_gradcheck(Dense(7, 5, seed=1), _x((4, 7)), tol=1e-6)


def test_gradcheck_Dense_glorot_no_bias_batch1():
    assert_gradcheck(Dense(9, 3, bias=False, weight_init="glorot_uniform", seed=2), _x((1, 9)),
                     tol=1e-6)


def test_gradcheck_Dense_frozen_W():
    layer = Dense(5, 4, seed=3)
    layer.W.trainable = False
    result = gradcheck(layer, _x((3, 5)))
    assert result["input"] < 1e-6 and result["b"] < 1e-6
    sentinel = np.full(layer.W.shape, 7.0)
    layer.W.grad = sentinel
    layer.forward(_x((3, 5)))
    layer.backward(_x((3, 4), seed=1))
    assert layer.W.grad is sentinel and (sentinel == 7.0).all()


def test_dense_float32_dtypes_and_match_float64():
    layer = Dense(8, 6, seed=4)
    x = _x((3, 8), dtype=np.float32)
    y32 = layer.forward(x)
    dx = layer.backward(_x(y32.shape, seed=1, dtype=np.float32))
    assert y32.dtype == dx.dtype == layer.W.grad.dtype == layer.b.grad.dtype == np.float32
    y64 = layer.astype("float64").forward(x.astype(np.float64))
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)


def test_dense_bad_input():
    layer = Dense(128, 3)
    with pytest.raises(ValueError, match=r"Dense expected input \(N, 128\), got shape \(2, 3, 4\)"):
        layer.forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"Dense expected input \(N, 128\), got \(2, 100\)"):
        layer.forward(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="cast the input"):
        layer.forward(np.zeros((2, 128), np.float64))
    with pytest.raises(ValueError, match=r"expected input \(N, 128\)"):
        layer.output_shape((64,))
    with pytest.raises(ValueError, match="positive int"):
        Dense(0, 3)
    layer.forward(np.zeros((2, 128), np.float32))
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.zeros((2, 4), np.float32))


def test_dense_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        Dense(2, 2).backward(np.zeros((1, 2), np.float32))


def test_dense_no_mutation():
    layer = Dense(4, 3, seed=0)
    x, dy = _x((2, 4), dtype=np.float32), _x((2, 3), seed=1, dtype=np.float32)
    x0, dy0 = x.copy(), dy.copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_dense_config_roundtrip_rebuilds_same_weights():
    layer = Dense(5, 3, bias=False, weight_init="glorot_normal", seed=11, name="head")
    cfg = json.loads(json.dumps(layer.get_config()))
    again = Dense(**cfg)
    assert again.name == "head" and again.b is None
    np.testing.assert_array_equal(again.W.data, layer.W.data)


# --------------------------------------------------------------- Flatten
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 7), (2, 3, 4)])
def test_flatten_shapes(shape):
    layer = Flatten()
    x = _x(shape, dtype=np.float32)
    y = layer.forward(x)
    assert y.shape == (shape[0], int(np.prod(shape[1:]))) == (shape[0],) + layer.output_shape(shape[1:])
    np.testing.assert_array_equal(y[1], x[1].ravel())
    dx = layer.backward(y * 2)
    assert dx.shape == shape and dx.dtype == np.float32
    np.testing.assert_array_equal(dx, 2 * x)


def test_gradcheck_Flatten():
    assert_gradcheck(Flatten(), _x((2, 3, 2, 3)), tol=1e-6)


def test_flatten_noncontiguous_input():
    x = _x((3, 4, 2, 5), dtype=np.float32).transpose(0, 3, 1, 2)  # a non-contiguous view
    layer = Flatten()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, np.ascontiguousarray(x).reshape(3, -1))
    dy = _x(y.shape, seed=2, dtype=np.float32)
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(x.shape))


def test_flatten_errors_and_no_mutation():
    layer = Flatten()
    with pytest.raises(ValueError, match=r"rank >= 2, got shape \(5,\)"):
        layer.forward(np.zeros(5, np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        Flatten().backward(np.zeros((1, 4), np.float32))
    x = _x((2, 2, 2), dtype=np.float32)
    x0 = x.copy()
    y = layer.forward(x)
    dy = _x(y.shape, seed=5, dtype=np.float32)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    with pytest.raises(ValueError, match="expected dy of shape"):
        layer.backward(np.zeros((2, 3), np.float32))
    assert Flatten(**json.loads(json.dumps(Flatten(name="f").get_config()))).name == "f"


def test_dense_writes_dW_into_its_old_gradient_only_when_nobody_holds_it():
    # Dense.backward reuses W.grad's memory (Parameter.reusable_grad) when nothing else refers
    # to that array; a gradient the caller kept must never change under them.
    rng = np.random.default_rng(4)
    layer = Dense(6, 3, seed=0).astype("float32")
    x = rng.standard_normal((5, 6)).astype(np.float32)
    dy1, dy2 = (rng.standard_normal((5, 3)).astype(np.float32) for _ in range(2))
    layer.forward(x, training=True)
    layer.backward(dy1)
    kept = layer.W.grad
    kept_values = kept.copy()
    layer.forward(x, training=True)
    layer.backward(dy2)
    assert layer.W.grad is not kept                      # held by the caller: a new array
    np.testing.assert_array_equal(kept, kept_values)
    np.testing.assert_allclose(layer.W.grad, x.T @ dy2, rtol=1e-6)
    del kept
    address = layer.W.grad.__array_interface__["data"][0]
    layer.forward(x, training=True)
    layer.backward(dy1)
    assert layer.W.grad.__array_interface__["data"][0] == address   # nobody held it: reused
    np.testing.assert_allclose(layer.W.grad, x.T @ dy1, rtol=1e-6)
    view = layer.W.grad[:2]                              # a view keeps the array referenced
    layer.forward(x, training=True)
    layer.backward(dy2)
    np.testing.assert_allclose(view, (x.T @ dy1)[:2], rtol=1e-6)


def test_reusable_grad_refuses_a_wrong_shape_dtype_or_a_view():
    p = Parameter(np.zeros((3, 4), np.float32))
    assert p.reusable_grad((3, 4), np.dtype(np.float32)) is p.grad
    assert p.reusable_grad((4, 3), np.dtype(np.float32)) is None
    assert p.reusable_grad((3, 4), np.dtype(np.float64)) is None
    p.grad = np.zeros((6, 4), np.float32)[:3]            # a view of another array
    assert p.reusable_grad((3, 4), np.dtype(np.float32)) is None
    p.grad = None
    assert p.reusable_grad((3, 4), np.dtype(np.float32)) is None
