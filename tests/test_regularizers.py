"""Tests for nnlite.regularizers: L1, L2, L1L2 penalties, per-layer choice, regularization()."""
import json

import numpy as np
import pytest

import nnlite as nn
from nnlite import regularizers
from nnlite.parameter import Parameter
from nnlite.regularizers import regularization

W = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 3.0]])


def numeric_grad(reg, w, eps=1e-6):
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[i] += eps
        wm[i] -= eps
        g[i] = (reg.penalty(wp) - reg.penalty(wm)) / (2 * eps)
    return g


def test_l1_penalty_and_gradient_by_hand():
    reg = nn.L1(0.1)
    assert reg.penalty(W) == pytest.approx(0.1 * (0.5 + 2.0 + 0.0 + 1.5 + 0.25 + 3.0), rel=1e-15)
    assert reg(W) == reg.penalty(W)
    np.testing.assert_array_equal(reg.grad(W), 0.1 * np.array([[1, -1, 0], [1, -1, 1]]))  # 0 at W = 0


def test_l2_penalty_and_gradient_by_hand():
    reg = nn.L2(0.01)
    assert reg.penalty(W) == pytest.approx(0.01 * (0.25 + 4.0 + 0.0 + 2.25 + 0.0625 + 9.0), rel=1e-15)
    np.testing.assert_allclose(reg.grad(W), 2 * 0.01 * W, rtol=1e-15)   # Keras: no 1/2


def test_l1l2_is_the_sum():
    reg = nn.L1L2(l1=0.1, l2=0.01)
    assert reg.penalty(W) == pytest.approx(nn.L1(0.1).penalty(W) + nn.L2(0.01).penalty(W), rel=1e-15)
    np.testing.assert_allclose(reg.grad(W), nn.L1(0.1).grad(W) + nn.L2(0.01).grad(W), rtol=1e-15)
    assert nn.L1L2().penalty(W) == 0.0


@pytest.mark.parametrize("reg", [nn.L1(0.3), nn.L2(0.2), nn.L1L2(0.05, 0.4)], ids=repr)
def test_gradient_matches_central_differences(reg):
    w = np.random.default_rng(0).standard_normal((3, 4))
    w += np.where(w >= 0, 0.1, -0.1)        # away from the kink of |w| at 0
    np.testing.assert_allclose(reg.grad(w), numeric_grad(reg, w), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("reg", [nn.L1(0.3), nn.L2(0.2), nn.L1L2(0.05, 0.4)], ids=repr)
def test_float32_gradient_stays_float32(reg):
    w = W.astype(np.float32)
    assert reg.grad(w).dtype == np.float32
    assert isinstance(reg.penalty(w), float)


def test_per_layer_choice_and_regularization_sum():
    model = nn.Sequential([
        nn.Conv2D(1, 2, 3, seed=0, regularizer=nn.L1(1e-2)), nn.ReLU(), nn.Flatten(),
        nn.Dense(2 * 3 * 3, 4, seed=1, regularizer=nn.L2(1e-3)), nn.ReLU(),
        nn.Dense(4, 2, seed=2),                                 # no penalty on the head
    ])
    conv, dense, head = model[0], model[3], model[5]
    assert conv.W.regularizer.l1 == 1e-2 and dense.W.regularizer.l2 == 1e-3
    assert head.W.regularizer is None and all(l.b.regularizer is None for l in (conv, dense, head))
    rng = np.random.default_rng(1)
    grads = {id(p): rng.standard_normal(p.shape).astype(np.float32) for p in model.parameters()}
    for p in model.parameters():
        p.grad = grads[id(p)].copy()
    total = regularization(model)                               # a model or a list of parameters
    expected = 1e-2 * np.abs(conv.W.data).sum() + 1e-3 * (dense.W.data ** 2).sum()
    assert total == pytest.approx(float(expected), rel=1e-6)
    np.testing.assert_allclose(conv.W.grad, grads[id(conv.W)] + 1e-2 * np.sign(conv.W.data), rtol=1e-6)
    np.testing.assert_allclose(dense.W.grad, grads[id(dense.W)] + 2e-3 * dense.W.data, rtol=1e-6)
    for p in (conv.b, dense.b, head.W, head.b):                 # untouched
        np.testing.assert_array_equal(p.grad, grads[id(p)])
    assert conv.W.grad.dtype == dense.W.grad.dtype == np.float32


def test_frozen_parameter_counts_in_penalty_but_gets_no_gradient():
    p = Parameter(W.copy(), regularizer=nn.L2(0.5), trainable=False)
    q = Parameter(W.copy(), regularizer=nn.L1(0.5))
    p.grad, q.grad = np.zeros_like(W), np.zeros_like(W)
    total = regularization([p, q])
    assert total == pytest.approx(nn.L2(0.5).penalty(W) + nn.L1(0.5).penalty(W), rel=1e-15)
    np.testing.assert_array_equal(p.grad, 0.0)
    np.testing.assert_array_equal(q.grad, nn.L1(0.5).grad(W))
    assert regularization([Parameter(W.copy())]) == 0.0


def test_fit_adds_the_penalty_to_the_loss():
    from conftest import two_blob_images
    x, y = two_blob_images(16, size=8)

    def run(reg):
        model = nn.Sequential([nn.Flatten(), nn.Dense(64, 2, seed=0, regularizer=reg)])
        return model, model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.0),
                                epochs=1, batch_size=16, shuffle=False, verbose=0)
    model, plain = run(None)
    penalty = nn.L2(0.1).penalty(model[1].W.data)
    _, regularized = run(nn.L2(0.1))
    assert regularized["loss"][0] == pytest.approx(plain["loss"][0] + penalty, rel=1e-6)


def test_regularizer_travels_in_the_layer_config(tmp_path):
    for layer in (nn.Dense(3, 2, seed=0, regularizer=nn.L1L2(0.01, 0.02)),
                  nn.Conv2D(1, 2, 3, seed=0, regularizer=nn.L2(1e-4)),
                  nn.ConvTranspose2D(1, 2, 3, seed=0, regularizer=nn.L1(1e-3))):
        config = json.loads(json.dumps(layer.get_config()))
        clone = type(layer)(**config)
        assert type(clone.W.regularizer) is type(layer.W.regularizer)
        assert clone.W.regularizer.get_config() == layer.W.regularizer.get_config()
    model = nn.Sequential([nn.Flatten(), nn.Dense(4, 2, seed=0, regularizer=nn.L2(0.05))])
    loaded = nn.load(nn.save(model, tmp_path / "m.npz"))
    assert isinstance(loaded[1].W.regularizer, nn.L2) and loaded[1].W.regularizer.l2 == 0.05
    assert nn.Dense(2, 2, regularizer="l1").W.regularizer.get_config() == {"l1": 0.01}
    with pytest.raises(ValueError, match="is not an nnlite Regularizer"):
        nn.Dense(2, 2, regularizer=object()).get_config()


def test_get_and_serialize():
    assert regularizers.get(None) is None
    reg = nn.L2(0.3)
    assert regularizers.get(reg) is reg
    assert isinstance(regularizers.get("L1L2"), nn.L1L2)
    again = regularizers.get(json.loads(json.dumps(regularizers.serialize(nn.L1L2(0.1, 0.2)))))
    assert isinstance(again, nn.L1L2) and (again.l1, again.l2) == (0.1, 0.2)
    assert regularizers.serialize(None) is None
    assert repr(nn.L1(0.5)) == "L1(l1=0.5)"
    for bad, message in (("l3", "unknown regularizer 'l3'"), ({"type": "L9"}, "unknown regularizer type"),
                         (3.0, "cannot interpret")):
        with pytest.raises(ValueError, match=message):
            regularizers.get(bad)
    for make, message in ((lambda: nn.L1(-1.0), "L1: l1 must be >= 0"),
                          (lambda: nn.L2(float("nan")), "L2: l2 must be >= 0"),
                          (lambda: nn.L1L2(0.1, -0.1), "L1L2: l2 must be >= 0")):
        with pytest.raises(ValueError, match=message):
            make()
