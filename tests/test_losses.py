"""Tests for nnlite.losses: softmax cross-entropy, binary cross-entropy on logits, MSE.

Every loss returns ``(value, dlogits)``; the gradient checks compare
``dlogits`` with central differences of the value (nn.gradcheck_loss).
"""
import math
import warnings

import numpy as np
import pytest

import nnlite as nn
from nnlite.gradcheck import gradcheck_loss

TOL = 1e-6


def _z(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def strict():
    """Context in which overflow, invalid operations and division by zero fail the test
    (underflow to 0, as in exp(-1000), is the intended behaviour)."""
    class _Strict:
        def __enter__(self):
            self._w = warnings.catch_warnings()
            self._w.__enter__()
            warnings.simplefilter("error")
            self._e = np.errstate(over="raise", invalid="raise", divide="raise", under="ignore")
            self._e.__enter__()

        def __exit__(self, *exc):
            self._e.__exit__(*exc)
            return self._w.__exit__(*exc)
    return _Strict()


# ------------------------------------------------- softmax cross-entropy
def test_softmax_cross_entropy_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    value, dz = nn.SoftmaxCrossEntropy()(z, y)
    l0 = -(3.0 - math.log(math.e ** 1 + math.e ** 2 + math.e ** 3))
    l1 = math.log(3.0)
    assert value == pytest.approx((l0 + l1) / 2, rel=1e-14)
    e = np.exp([1.0, 2.0, 3.0])
    p0 = e / e.sum()
    expected = np.array([p0 - [0, 0, 1], np.full(3, 1 / 3) - [1, 0, 0]]) / 2
    np.testing.assert_allclose(dz, expected, rtol=1e-13)


def test_sparse_and_one_hot_targets_agree():
    z = _z((5, 4), seed=1)
    y = np.array([0, 3, 1, 1, 2])
    onehot = np.eye(4)[y]
    for loss in (nn.SoftmaxCrossEntropy(), nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0, 0.5, 3.0])):
        v1, d1 = loss(z, y)
        v2, d2 = loss(z, onehot)
        assert v1 == pytest.approx(v2, rel=1e-14)
        np.testing.assert_allclose(d1, d2, rtol=1e-14)


def test_soft_targets_by_hand():
    z = np.array([[0.5, -1.0, 2.0]])
    t = np.array([[0.2, 0.3, 0.5]])
    value, dz = nn.SoftmaxCrossEntropy()(z, t)
    logp = z - np.log(np.exp(z).sum())
    assert value == pytest.approx(-(t * logp).sum(), rel=1e-14)
    np.testing.assert_allclose(dz, np.exp(logp) - t, rtol=1e-13)


def test_class_weights_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    w = [1.0, 2.0, 0.5]
    value, _ = nn.SoftmaxCrossEntropy(class_weights=w)(z, y)
    l0 = -(3.0 - math.log(math.e ** 1 + math.e ** 2 + math.e ** 3))
    l1 = math.log(3.0)
    assert value == pytest.approx((0.5 * l0 + 1.0 * l1) / (0.5 + 1.0), rel=1e-14)   # PyTorch's weighted mean
    # scaling every weight by a constant changes nothing
    v2, d2 = nn.SoftmaxCrossEntropy(class_weights=[10.0, 20.0, 5.0])(z, y)
    v1, d1 = nn.SoftmaxCrossEntropy(class_weights=w)(z, y)
    assert v1 == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(d1, d2, rtol=1e-13)


def test_label_smoothing_value():
    z = np.array([[1.0, 2.0, 3.0]])
    eps = 0.1
    value, _ = nn.SoftmaxCrossEntropy(label_smoothing=eps)(z, np.array([2]))
    logp = z - np.log(np.exp(z).sum())
    t = np.array([[eps / 3, eps / 3, 1 - eps + eps / 3]])
    assert value == pytest.approx(-(t * logp).sum(), rel=1e-14)


def test_gradcheck_SoftmaxCrossEntropy_sparse():
    assert gradcheck_loss(nn.SoftmaxCrossEntropy(), _z((6, 5), seed=2), np.array([0, 4, 2, 2, 1, 3])).max_error < TOL


def test_gradcheck_SoftmaxCrossEntropy_one_hot():
    t = np.eye(4)[[3, 0, 1]]
    assert gradcheck_loss(nn.SoftmaxCrossEntropy(), _z((3, 4), seed=3), t).max_error < TOL


def test_gradcheck_SoftmaxCrossEntropy_soft_targets():
    t = np.random.default_rng(4).dirichlet(np.ones(4), size=5)
    assert gradcheck_loss(nn.SoftmaxCrossEntropy(), _z((5, 4), seed=5), t).max_error < TOL
    # rows that do not sum to one still get the exact gradient
    assert gradcheck_loss(nn.SoftmaxCrossEntropy(), _z((5, 4), seed=5), 2.5 * t).max_error < TOL


def test_gradcheck_SoftmaxCrossEntropy_class_weights():
    loss = nn.SoftmaxCrossEntropy(class_weights=[0.2, 3.0, 1.0])
    assert gradcheck_loss(loss, _z((6, 3), seed=6), np.array([0, 1, 2, 1, 0, 0])).max_error < TOL
    t = np.random.default_rng(7).dirichlet(np.ones(3), size=4)
    assert gradcheck_loss(loss, _z((4, 3), seed=8), t).max_error < TOL


def test_gradcheck_SoftmaxCrossEntropy_label_smoothing():
    loss = nn.SoftmaxCrossEntropy(label_smoothing=0.2)
    assert gradcheck_loss(loss, _z((4, 3), seed=9), np.array([2, 0, 1, 1])).max_error < TOL


def _pytorch_weighted_smoothed_ce(z, y, w, eps):
    """PyTorch's CrossEntropyLoss(weight=w, label_smoothing=eps), written out (labels y)."""
    n, k = z.shape
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    denominator = w[y].sum()                                       # sum_i w[y_i]
    nll = (w[y] * -logp[np.arange(n), y]).sum() / denominator
    smooth = (w * -logp).sum() / denominator                       # sum_i sum_c w_c (-log p_ic)
    return (1 - eps) * nll + eps / k * smooth


def test_label_smoothing_with_class_weights_is_pytorchs_formula():
    rng = np.random.default_rng(20)
    z = rng.standard_normal((16, 5)) * 2
    y = rng.integers(0, 5, size=16)
    w = np.array([0.3, 2.0, 1.0, 4.0, 0.7])
    loss = nn.SoftmaxCrossEntropy(class_weights=w, label_smoothing=0.2)
    value, _ = loss(z, y)
    assert value == pytest.approx(_pytorch_weighted_smoothed_ce(z, y, w, 0.2), rel=1e-13)
    # the old denominator (the weights of the *smoothed* targets) gives another number
    t = (1 - 0.2) * np.eye(5)[y] + 0.2 / 5
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    assert abs(value - (-(t * w * logp).sum() / (t * w).sum())) > 1e-3
    # one-hot rows give the same value and gradient as labels
    v1, d1 = loss(z, np.eye(5)[y])
    _, d0 = loss(z, y)
    assert v1 == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(d1, d0, rtol=1e-13, atol=1e-16)


def test_label_smoothing_with_class_weights_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    z = rng.standard_normal((16, 5))
    y = rng.integers(0, 5, size=16)
    w = np.array([0.3, 2.0, 1.0, 4.0, 0.7])
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.2)(zt, torch.tensor(y))
    ref.backward()
    value, dz = nn.SoftmaxCrossEntropy(class_weights=w, label_smoothing=0.2)(z, y)
    assert value == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_gradcheck_SoftmaxCrossEntropy_label_smoothing_class_weights():
    loss = nn.SoftmaxCrossEntropy(class_weights=[0.2, 3.0, 1.0, 0.5], label_smoothing=0.3)
    z = _z((7, 4), seed=22)
    assert gradcheck_loss(loss, z, np.array([0, 1, 2, 3, 1, 0, 2])).max_error < TOL
    t = np.random.default_rng(23).dirichlet(np.ones(4), size=7)     # soft rows too
    assert gradcheck_loss(loss, z, t).max_error < TOL


def test_gradcheck_SoftmaxCrossEntropy_large_logits():
    z = _z((4, 5), seed=10) + np.array([[1000.0], [-1000.0], [500.0], [0.0]])
    assert gradcheck_loss(nn.SoftmaxCrossEntropy(), z, np.array([0, 3, 2, 4])).max_error < TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_large_logits_finite(dtype):
    z = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]], dtype=dtype)
    with strict():
        value, dz = nn.SoftmaxCrossEntropy()(z, np.array([0, 2]))
    assert math.isfinite(value) and np.isfinite(dz).all() and dz.dtype == dtype
    assert value == pytest.approx((0.0 + 1000.0) / 2, rel=1e-6)      # row 1: -log p = 1000
    np.testing.assert_allclose(dz, np.array([[0, 0, 0], [0, 1, -1]]) / 2, atol=1e-7)


def test_softmax_cross_entropy_keeps_float32():
    z = _z((4, 3), seed=11).astype(np.float32)
    for target in (np.array([0, 1, 2, 1], dtype=np.int64), np.eye(3)[[0, 1, 2, 1]]):
        for loss in (nn.SoftmaxCrossEntropy(), nn.SoftmaxCrossEntropy(class_weights=[1, 2, 3],
                                                                      label_smoothing=0.1)):
            value, dz = loss(z, target)
            assert isinstance(value, float) and dz.dtype == np.float32 and dz.shape == z.shape


@pytest.mark.parametrize("logits, target, message", [
    (np.zeros(3), np.array([0, 1, 2]), r"expected logits \(N, K\), got shape \(3,\)"),
    (np.zeros((3, 4)), np.array([0, 1]), "expected 3 labels"),
    (np.zeros((3, 4)), np.array([0, 1, 4]), "label 4 out of range: logits have K=4 classes"),
    (np.zeros((3, 4)), np.array([0, -1, 2]), "label -1 out of range"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "expected integer labels"),
    (np.zeros((3, 4)), np.zeros((3, 5)), r"targets \(3, 4\), got shape \(3, 5\)"),
    (np.zeros((3, 4)), -np.eye(4)[:3], "must be non-negative"),
    (np.zeros((3, 4), dtype=np.int64), np.array([0, 1, 2]), "float32 or float64 logits"),
    (np.array([[0.0, np.nan]]), np.array([0]), "non-finite"),
    ([[0.0, 1.0]], np.array([0]), "as an array"),
])
def test_softmax_cross_entropy_bad_input(logits, target, message):
    with pytest.raises(ValueError, match=message):
        nn.SoftmaxCrossEntropy()(logits, target)


def test_softmax_cross_entropy_bad_arguments():
    with pytest.raises(ValueError, match=r"class_weights of shape \(3,\)"):
        nn.SoftmaxCrossEntropy(class_weights=[1.0, 2.0])(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        nn.SoftmaxCrossEntropy(class_weights=[1.0, -2.0, 1.0])(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="sum to 0"):
        nn.SoftmaxCrossEntropy(class_weights=[0.0, 1.0, 1.0])(np.zeros((2, 3)), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        nn.SoftmaxCrossEntropy(label_smoothing=1.0)


# ------------------------------------------------- binary cross-entropy
def test_binary_cross_entropy_by_hand_and_finite_at_100():
    z = np.array([100.0, -100.0, 100.0, -100.0, 0.0, 2.0])
    t = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    with strict():
        value, dz = nn.BinaryCrossEntropy()(z, t)
    # -t log s(z) - (1 - t) log(1 - s(z)), by hand
    l = [100.0 + math.log1p(math.exp(-100.0)),       # z = 100, t = 0: -log(1 - s) = softplus(100)
         math.log1p(math.exp(-100.0)),               # z = -100, t = 0: -log(1 - s) = softplus(-100)
         math.log1p(math.exp(-100.0)),               # z = 100, t = 1: -log s = softplus(-100)
         100.0 + math.log1p(math.exp(-100.0)),       # z = -100, t = 1
         math.log(2.0),
         math.log1p(math.exp(-2.0))]
    assert value == pytest.approx(sum(l) / 6, rel=1e-14)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(dz, (s - t) / 6, rtol=1e-13, atol=1e-300)
    assert dz[1] > 0 and dz[1] < 1e-40                # sigmoid(-100) / 6, not rounded to a wrong sign


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_huge_logits_finite(dtype):
    z = np.array([[1e4], [-1e4], [100.0], [-100.0]], dtype=dtype)
    t = np.array([0, 1, 1, 0])
    with strict():
        value, dz = nn.BinaryCrossEntropy()(z, t)
    assert math.isfinite(value) and np.isfinite(dz).all() and dz.dtype == dtype and dz.shape == z.shape
    assert value == pytest.approx((1e4 + 1e4) / 4, rel=1e-6)
    np.testing.assert_allclose(dz.ravel(), [0.25, -0.25, 0.0, 0.0], atol=1e-7)


def test_gradcheck_BinaryCrossEntropy():
    t = (np.random.default_rng(12).random(8) > 0.5).astype(float)
    assert gradcheck_loss(nn.BinaryCrossEntropy(), _z((8,), seed=13, scale=3), t).max_error < TOL


def test_gradcheck_BinaryCrossEntropy_soft_multilabel():
    t = np.random.default_rng(14).random((4, 3))
    assert gradcheck_loss(nn.BinaryCrossEntropy(), _z((4, 3), seed=15, scale=2), t).max_error < TOL


def test_gradcheck_BinaryCrossEntropy_saturated_logits():
    z = np.array([100.0, -100.0, 100.0, -100.0, 3.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3])
    assert gradcheck_loss(nn.BinaryCrossEntropy(), z, t).max_error < TOL


def test_gradcheck_BinaryCrossEntropy_weights():
    z, t = _z((6, 1), seed=16, scale=2), np.array([1, 0, 0, 1, 1, 0])
    assert gradcheck_loss(nn.BinaryCrossEntropy(class_weights=(0.3, 2.0)), z, t).max_error < TOL
    assert gradcheck_loss(nn.BinaryCrossEntropy(pos_weight=3.0), z, t).max_error < TOL
    t2 = np.random.default_rng(17).random((3, 2))
    assert gradcheck_loss(nn.BinaryCrossEntropy(pos_weight=[2.0, 0.5]), _z((3, 2), seed=18), t2).max_error < TOL


def test_binary_cross_entropy_weights_by_hand():
    z, t = np.array([0.5, -1.0]), np.array([1.0, 0.0])
    l = np.logaddexp(0, -z) * t + np.logaddexp(0, z) * (1 - t)
    value, _ = nn.BinaryCrossEntropy(class_weights=(0.25, 2.0))(z, t)
    assert value == pytest.approx((2.0 * l[0] + 0.25 * l[1]) / 2.25, rel=1e-14)
    value, _ = nn.BinaryCrossEntropy(pos_weight=3.0)(z, t)
    assert value == pytest.approx((3.0 * l[0] + l[1]) / 2, rel=1e-14)


def test_binary_cross_entropy_label_vector_for_one_unit():
    z = _z((4, 1), seed=19)
    v1, d1 = nn.BinaryCrossEntropy()(z, np.array([1, 0, 1, 1]))
    v2, d2 = nn.BinaryCrossEntropy()(z, np.array([[1], [0], [1], [1]]))
    assert v1 == v2 and d1.shape == (4, 1)
    np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize("logits, target, message", [
    (np.zeros((2, 3)), np.zeros((2, 2)), r"expected targets of shape \(2, 3\)"),
    (np.zeros((2, 1)), np.array([0.5, 1.5]), r"must lie in \[0, 1\]"),
    (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), r"logits \(N,\) or \(N, M\), got shape \(2, 2, 2\)"),
    (np.zeros(2), np.array(["a", "b"]), "numeric targets"),
    (np.zeros(2), np.array([0.0, np.inf]), "non-finite"),
])
def test_binary_cross_entropy_bad_input(logits, target, message):
    with pytest.raises(ValueError, match=message):
        nn.BinaryCrossEntropy()(logits, target)


def test_binary_cross_entropy_bad_arguments():
    with pytest.raises(ValueError, match=r"pair \(w0, w1\)"):
        nn.BinaryCrossEntropy(class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="pos_weight must be a positive"):
        nn.BinaryCrossEntropy(pos_weight=0.0)
    with pytest.raises(ValueError, match="pos_weight has 2 values"):
        nn.BinaryCrossEntropy(pos_weight=[1.0, 2.0])(np.zeros((2, 3)), np.zeros((2, 3)))


# ----------------------------------------------------------------- MSE
def test_mse_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[0.0, 2.0], [5.0, 4.0]])
    value, d = nn.MSE()(pred, t)
    assert value == pytest.approx((1 + 0 + 4 + 0) / 4, rel=1e-15)
    np.testing.assert_allclose(d, 2 * (pred - t) / 4, rtol=1e-15)


def test_gradcheck_MSE():
    assert gradcheck_loss(nn.MSE(), _z((3, 4), seed=20), _z((3, 4), seed=21)).max_error < TOL
    assert gradcheck_loss(nn.MSE(), _z((2, 2, 3, 3), seed=22), _z((2, 2, 3, 3), seed=23)).max_error < TOL


def test_mse_shapes_and_dtype():
    pred = _z((5, 1), seed=24).astype(np.float32)
    value, d = nn.MSE()(pred, np.arange(5))
    assert d.dtype == np.float32 and d.shape == (5, 1) and isinstance(value, float)
    with pytest.raises(ValueError, match=r"MSE expected targets of shape \(5, 1\).*got \(4,\)"):
        nn.MSE()(pred, np.arange(4))
    with pytest.raises(ValueError, match=r"MSE expected targets of shape \(2, 3\)"):
        nn.MSE()(np.zeros((2, 3)), np.zeros((3, 2)))


# ------------------------------------------------------------- all losses
@pytest.mark.parametrize("loss, z, t", [
    (nn.SoftmaxCrossEntropy(class_weights=[1, 2, 3]), _z((4, 3), 25), np.eye(3)[[0, 1, 2, 0]]),
    (nn.BinaryCrossEntropy(pos_weight=2.0), _z((4, 2), 26), np.random.default_rng(0).random((4, 2))),
    (nn.MSE(), _z((4, 2), 27), _z((4, 2), 28)),
])
def test_losses_do_not_mutate_their_inputs(loss, z, t):
    z0, t0 = z.copy(), t.copy()
    _, d = loss(z, t)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(t, t0)
    assert not np.shares_memory(d, z)


def test_repr_and_config():
    assert nn.SoftmaxCrossEntropy(class_weights=[1, 2]).get_config() == {
        "class_weights": [1.0, 2.0], "label_smoothing": 0.0}
    assert nn.BinaryCrossEntropy(pos_weight=2).get_config() == {"class_weights": None, "pos_weight": 2.0}
    assert repr(nn.MSE()) == "MSE()"
