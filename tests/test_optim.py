"""Tests for nnlite.optim: SGD (momentum, Nesterov), RMSProp, Adam, weight decay, schedules.

The first two steps of every optimizer are compared with values worked out
by hand, coordinate by coordinate, in plain Python arithmetic below (the
update formulas of each class docstring), for a parameter p0 = [1, -2] and
the gradients g1 = [0.5, -1] (step 1) and g2 = [0.2, 0.4] (step 2).
"""
import json
import math

import numpy as np
import pytest

import nnlite as nn
from nnlite.parameter import Parameter

P0 = [1.0, -2.0]
G1 = [0.5, -1.0]
G2 = [0.2, 0.4]


def two_steps(opt_cls, **kwargs):
    """Run two steps with the gradients G1, G2; return p after each step."""
    p = Parameter(np.array(P0))
    opt = opt_cls([p], **kwargs)
    out = []
    for g in (G1, G2):
        p.grad = np.array(g)
        opt.step()
        out.append(p.data.copy())
    return out


def test_sgd_plain_two_steps():
    p1, p2 = two_steps(nn.SGD, lr=0.1)
    # p <- p - lr g
    np.testing.assert_allclose(p1, [1 - 0.1 * 0.5, -2 + 0.1 * 1.0], rtol=1e-15)   # [0.95, -1.9]
    np.testing.assert_allclose(p2, [0.95 - 0.1 * 0.2, -1.9 - 0.1 * 0.4], rtol=1e-15)  # [0.93, -1.94]


def test_sgd_momentum_two_steps():
    p1, p2 = two_steps(nn.SGD, lr=0.1, momentum=0.9)
    # buf1 = g1 = [0.5, -1];  p1 = p0 - lr buf1 = [0.95, -1.9]
    # buf2 = 0.9 buf1 + g2 = [0.65, -0.5];  p2 = p1 - lr buf2 = [0.885, -1.85]
    # (the velocity form v = -lr buf gives the same numbers while lr is constant)
    np.testing.assert_allclose(p1, [0.95, -1.9], rtol=1e-15)
    np.testing.assert_allclose(p2, [0.885, -1.85], rtol=1e-14)


def test_sgd_nesterov_two_steps():
    p1, p2 = two_steps(nn.SGD, lr=0.1, momentum=0.9, nesterov=True)
    # p1 = p0 + mu v1 - lr g1 = [1 - 0.045 - 0.05, -2 + 0.09 + 0.1] = [0.905, -1.81]
    # p2 = p1 + mu v2 - lr g2 = [0.905 - 0.0585 - 0.02, -1.81 + 0.045 - 0.04] = [0.8265, -1.805]
    np.testing.assert_allclose(p1, [0.905, -1.81], rtol=1e-14)
    np.testing.assert_allclose(p2, [0.8265, -1.805], rtol=1e-14)


def test_rmsprop_two_steps():
    lr, rho, eps = 0.01, 0.9, 1e-7
    p1, p2 = two_steps(nn.RMSProp, lr=lr, rho=rho, eps=eps)
    expected1, expected2 = [], []
    for i in range(2):
        s1 = (1 - rho) * G1[i] ** 2                       # [0.025, 0.1]
        q1 = P0[i] - lr * G1[i] / (math.sqrt(s1) + eps)   # eps outside the root
        s2 = rho * s1 + (1 - rho) * G2[i] ** 2            # [0.0265, 0.106]
        q2 = q1 - lr * G2[i] / (math.sqrt(s2) + eps)
        expected1.append(q1)
        expected2.append(q2)
    np.testing.assert_allclose(p1, expected1, rtol=1e-14)
    np.testing.assert_allclose(p2, expected2, rtol=1e-14)
    # no bias correction: the first step is lr / sqrt(1 - rho) = 3.16 lr per coordinate
    np.testing.assert_allclose(np.abs(p1 - P0), lr / math.sqrt(1 - rho), rtol=1e-5)


def test_adam_two_steps():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    p1, p2 = two_steps(nn.Adam, lr=lr, beta1=b1, beta2=b2, eps=eps)
    expected1, expected2 = [], []
    for i in range(2):
        m1 = (1 - b1) * G1[i]
        v1 = (1 - b2) * G1[i] ** 2
        q1 = P0[i] - lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + eps)
        m2 = b1 * m1 + (1 - b1) * G2[i]                  # [0.065, -0.05]
        v2 = b2 * v1 + (1 - b2) * G2[i] ** 2             # [0.00028975, 0.001159]
        m_hat, v_hat = m2 / (1 - b1 ** 2), v2 / (1 - b2 ** 2)   # both moments corrected
        q2 = q1 - lr * m_hat / (math.sqrt(v_hat) + eps)
        expected1.append(q1)
        expected2.append(q2)
    np.testing.assert_allclose(p1, expected1, rtol=1e-12)
    np.testing.assert_allclose(p2, expected2, rtol=1e-12)
    np.testing.assert_allclose(p2, [0.810142, -1.865440], atol=5e-7)   # the same, rounded


def test_adam_first_step_is_lr_per_coordinate():
    lr = 0.01
    g = np.array([1e-2, -3e-1, 7.0, -250.0, 1e3, 4e-2])
    p = Parameter(np.zeros_like(g))
    p.grad = g.copy()
    nn.Adam([p], lr=lr).step()
    np.testing.assert_allclose(p.data, -lr * np.sign(g), rtol=1e-6)   # whatever the gradient's scale


def test_momentum_buffer_form_equals_ema_form():
    """SGD(momentum=beta, lr=(1 - beta) lr') follows v <- beta v + (1 - beta) g, p <- p - lr' v."""
    beta, lr_ema = 0.9, 0.1
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((6, 3))
    p = Parameter(np.zeros(3))
    opt = nn.SGD([p], lr=(1 - beta) * lr_ema, momentum=beta)
    q, v = np.zeros(3), np.zeros(3)
    for g in grads:
        p.grad = g.copy()
        opt.step()
        v = beta * v + (1 - beta) * g
        q = q - lr_ema * v
        np.testing.assert_allclose(p.data, q, rtol=1e-12, atol=1e-15)


def _trajectory_under_step_decay(make_opt, epochs=4, steps_per_epoch=3, seed=1):
    """nnlite's iterates with StepDecay(step_size=2, gamma=0.1) stepped once per 'epoch'."""
    grads = np.random.default_rng(seed).standard_normal((epochs * steps_per_epoch, 3))
    p = Parameter(np.array([0.5, -1.0, 2.0]))
    opt = make_opt([p])
    schedule = nn.StepDecay(opt, step_size=2, gamma=0.1)
    out = []
    for i, g in enumerate(grads):
        p.grad = g.copy()
        opt.step()
        out.append(p.data.copy())
        if (i + 1) % steps_per_epoch == 0:
            schedule.step()
    return grads, np.array(out)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_under_step_decay_follows_pytorchs_form(nesterov):
    # PyTorch: buf <- mu buf + g; p <- p - lr buf (Nesterov: p <- p - lr (g + mu buf)), with
    # the lr of StepLR at each step. The velocity form v <- mu v - lr g keeps old lrs in v.
    mu, lr0 = 0.9, 0.5
    grads, got = _trajectory_under_step_decay(
        lambda ps: nn.SGD(ps, lr=lr0, momentum=mu, nesterov=nesterov))
    p, buf, v, q, want, velocity_form = (np.array([0.5, -1.0, 2.0]), np.zeros(3), np.zeros(3),
                                         np.array([0.5, -1.0, 2.0]), [], [])
    for i, g in enumerate(grads):
        lr = lr0 * 0.1 ** ((i // 3) // 2)          # StepDecay(step_size=2, gamma=0.1), 3 steps an epoch
        buf = mu * buf + g
        p = p - lr * (g + mu * buf if nesterov else buf)
        want.append(p)
        v = mu * v - lr * g
        q = q + (mu * v - lr * g if nesterov else v)
        velocity_form.append(q)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    assert np.abs(np.array(velocity_form) - want).max() > 1e-2        # the forms part after a decay


def test_sgd_momentum_under_step_decay_against_pytorch():
    torch = pytest.importorskip("torch")
    for nesterov in (False, True):
        grads, got = _trajectory_under_step_decay(
            lambda ps: nn.SGD(ps, lr=0.5, momentum=0.9, nesterov=nesterov, weight_decay=0.01))
        w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.5, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
        want = []
        for i, g in enumerate(grads):
            w.grad = torch.tensor(g)
            opt.step()
            want.append(w.detach().numpy().copy())
            if (i + 1) % 3 == 0:
                sched.step()
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_sgd_loads_a_velocity_form_state_and_takes_the_same_next_step():
    # State saved by the velocity form (v = mu v - lr g): converted to buf = -v / lr on load.
    mu, lr = 0.9, 0.1
    p = Parameter(np.array([1.0, -2.0]))
    v = np.array([-0.065, 0.05])                     # the velocity after two steps (see above)
    old = {"type": "SGD", "lr": lr, "t": 2, "state": {0: {"v": v.copy()}},
           "hyperparameters": {"momentum": mu, "nesterov": False, "weight_decay": 0.0,
                               "decoupled": False}}
    opt = nn.SGD([p], lr=0.3, momentum=mu)
    opt.load_state_dict(old)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], -v / lr, rtol=1e-15)
    assert opt.lr == lr and opt.t == 2
    p.grad = np.array([0.3, -0.1])
    opt.step()
    np.testing.assert_allclose(p.data, np.array([1.0, -2.0]) + mu * v - lr * p.grad, rtol=1e-14)
    assert set(opt.state_dict()["state"][0]) == {"momentum_buffer"}


def test_adam_amsgrad_by_hand():
    # PyTorch's AMSGrad: v_max <- max(v_max, v) of the raw second moment, then bias-corrected
    b1, b2, lr, eps = 0.9, 0.99, 0.1, 1e-8
    grads = [np.array([2.0, -1.0]), np.array([0.1, 0.1]), np.array([0.1, -3.0])]
    p = Parameter(np.array([1.0, 1.0]))
    opt = nn.Adam([p], lr=lr, beta1=b1, beta2=b2, eps=eps, amsgrad=True)
    q, m, v, v_max = np.array([1.0, 1.0]), np.zeros(2), np.zeros(2), np.zeros(2)
    for t, g in enumerate(grads, start=1):
        p.grad = g.copy()
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        v_max = np.maximum(v_max, v)
        q = q - lr * (m / (1 - b1 ** t)) / (np.sqrt(v_max / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(p.data, q, rtol=1e-14)
    np.testing.assert_array_equal(opt.state[p]["v_max"], v_max)
    assert (v_max > v).any()                         # here AMSGrad differs from Adam
    plain = nn.Adam([Parameter(np.array([1.0, 1.0]))], lr=lr, beta1=b1, beta2=b2, eps=eps)
    for g in grads:
        plain.params[0].grad = g.copy()
        plain.step()
    assert np.abs(plain.params[0].data - q).max() > 1e-4


def test_adam_amsgrad_state_round_trip_and_mismatch():
    p = Parameter(np.array([1.0, 2.0]))
    opt = nn.Adam([p], amsgrad=True)
    p.grad = np.array([0.5, -0.5])
    opt.step()
    state = opt.state_dict()
    assert state["hyperparameters"]["amsgrad"] is True and "v_max" in state["state"][0]
    again = nn.Adam([Parameter(np.array([1.0, 2.0]))])      # amsgrad comes from the state
    again.load_state_dict(state)
    assert again.amsgrad and set(again.state[again.params[0]]) == {"m", "v", "t", "v_max"}
    old = {k: v for k, v in state.items() if k != "hyperparameters"}
    old["hyperparameters"] = {"beta1": 0.9}
    with pytest.raises(ValueError, match="state keys"):
        nn.Adam([Parameter(np.array([1.0, 2.0]))]).load_state_dict(old)


def test_adam_and_amsgrad_against_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    grads = rng.standard_normal((6, 4)) * np.array([1.0, 10.0, 0.1, 1.0])
    for amsgrad in (False, True):
        p = Parameter(np.linspace(-1, 1, 4))
        opt = nn.Adam([p], lr=0.05, weight_decay=0.01, amsgrad=amsgrad)
        w = torch.tensor(np.linspace(-1, 1, 4), requires_grad=True)
        ref = torch.optim.Adam([w], lr=0.05, weight_decay=0.01, amsgrad=amsgrad)
        for g in grads:
            p.grad = g.copy()
            opt.step()
            w.grad = torch.tensor(g)
            ref.step()
        np.testing.assert_allclose(p.data, w.detach().numpy(), rtol=1e-14, atol=1e-15)


def test_rmsprop_against_pytorch():
    torch = pytest.importorskip("torch")
    grads = np.random.default_rng(4).standard_normal((5, 3))
    p = Parameter(np.array([0.5, -0.5, 1.0]))
    opt = nn.RMSProp([p], lr=0.01, rho=0.9, eps=1e-7, weight_decay=0.1)
    w = torch.tensor([0.5, -0.5, 1.0], requires_grad=True, dtype=torch.float64)
    ref = torch.optim.RMSprop([w], lr=0.01, alpha=0.9, eps=1e-7, weight_decay=0.1)
    for g in grads:
        p.grad = g.copy()
        opt.step()
        w.grad = torch.tensor(g)
        ref.step()
    np.testing.assert_allclose(p.data, w.detach().numpy(), rtol=1e-15, atol=1e-16)


# ------------------------------------------------------------ convergence
A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])   # symmetric positive definite
B = np.array([1.0, -2.0, 0.5])
QUAD_MIN = np.linalg.solve(A, B)


def quadratic_grad(p):
    """Gradient of f(p) = 1/2 p^T A p - b^T p, minimised at A^-1 b."""
    return A @ p - B


def rosenbrock_grad(p):
    """Gradient of f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimised at (1, 1)."""
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


@pytest.fixture
def reference_kernels():
    """Run on the plain NumPy update (``nnlite.kernels.use_reference``), restored afterwards.

    The convergence loops take thousands of steps on 2- and 3-element
    parameters, where the fixed cost of launching a parallel Numba kernel
    (not the arithmetic) would dominate; the kernels are held equal to the
    reference step by step in test_kernels.py, and the first two steps above
    run on the default path.
    """
    from nnlite import kernels
    previous = kernels.use_reference(True)
    yield
    kernels.use_reference(previous)


def minimise(make_opt, grad, start, steps, decay_every=None):
    p = Parameter(np.array(start, dtype=np.float64))
    opt = make_opt([p])
    schedule = nn.StepDecay(opt, step_size=1, gamma=0.5) if decay_every else None
    for i in range(steps):
        p.grad = grad(p.data)
        opt.step()
        if schedule is not None and (i + 1) % decay_every == 0:
            schedule.step()   # halve lr every ``decay_every`` steps
    return p.data


# (name, optimizer factory, steps, halve lr every n steps or None)
QUADRATIC = [
    ("SGD", lambda ps: nn.SGD(ps, lr=0.1), 500, None),
    ("SGD-momentum", lambda ps: nn.SGD(ps, lr=0.05, momentum=0.9), 500, None),
    ("SGD-nesterov", lambda ps: nn.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), 500, None),
    # RMSProp's step does not shrink near the minimum (g / sqrt(s) stays about 1): decay lr
    ("RMSProp", lambda ps: nn.RMSProp(ps, lr=1e-2), 2000, 200),
    ("Adam", lambda ps: nn.Adam(ps, lr=5e-2), 500, None),
]

ROSENBROCK = [
    ("SGD", lambda ps: nn.SGD(ps, lr=1e-3), 20000, None),
    ("SGD-momentum", lambda ps: nn.SGD(ps, lr=1e-3, momentum=0.9), 5000, None),
    ("SGD-nesterov", lambda ps: nn.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True), 5000, None),
    ("RMSProp", lambda ps: nn.RMSProp(ps, lr=3e-3), 10000, 2000),
    ("Adam", lambda ps: nn.Adam(ps, lr=5e-2), 2000, None),
]


@pytest.mark.parametrize("name, make_opt, steps, decay_every", QUADRATIC, ids=[c[0] for c in QUADRATIC])
def test_minimises_convex_quadratic(name, make_opt, steps, decay_every, reference_kernels):
    # from (3, -2, 1) to within 1e-4 (max norm) of the minimiser
    p = minimise(make_opt, quadratic_grad, [3.0, -2.0, 1.0], steps, decay_every)
    assert np.abs(p - QUAD_MIN).max() < 1e-4, (name, p, QUAD_MIN)


@pytest.mark.parametrize("name, make_opt, steps, decay_every", ROSENBROCK, ids=[c[0] for c in ROSENBROCK])
def test_minimises_rosenbrock(name, make_opt, steps, decay_every, reference_kernels):
    # from the classic start (-1.5, 2) to within 1e-3 (max norm) of (1, 1)
    p = minimise(make_opt, rosenbrock_grad, [-1.5, 2.0], steps, decay_every)
    assert np.abs(p - 1.0).max() < 1e-3, (name, p)


# ------------------------------------------------------- shared behaviour
ALL = [
    ("SGD", lambda ps, **kw: nn.SGD(ps, lr=0.1, **kw)),
    ("SGD-momentum", lambda ps, **kw: nn.SGD(ps, lr=0.1, momentum=0.9, **kw)),
    ("SGD-nesterov", lambda ps, **kw: nn.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, **kw)),
    ("RMSProp", lambda ps, **kw: nn.RMSProp(ps, lr=0.01, **kw)),
    ("Adam", lambda ps, **kw: nn.Adam(ps, lr=0.01, **kw)),
]
IDS = [name for name, _ in ALL]


@pytest.mark.parametrize("name, make", ALL, ids=IDS)
@pytest.mark.parametrize("decoupled", [False, True])
def test_frozen_parameters_never_change(name, make, decoupled):
    rng = np.random.default_rng(1)
    frozen = Parameter(rng.standard_normal((3, 2)), trainable=False)
    live = Parameter(rng.standard_normal(4))
    before, live_before = frozen.data.copy(), live.data.copy()
    opt = make([frozen, live], weight_decay=0.1, decoupled=decoupled)
    for _ in range(3):
        frozen.grad = rng.standard_normal(frozen.shape)
        live.grad = rng.standard_normal(live.shape)
        opt.step()
    np.testing.assert_array_equal(frozen.data, before)
    assert frozen not in opt.state                         # no state for a frozen parameter
    assert (live.data != live_before).all()           # while the trainable one moved
    # unfreezing later: it starts moving (Adam with its own step count t = 1)
    frozen.trainable = True
    frozen.grad = np.ones(frozen.shape)
    opt.step()
    assert not np.array_equal(frozen.data, before)
    if name == "Adam":
        assert opt.state[frozen]["t"] == 1 and opt.state[live]["t"] == 4


@pytest.mark.parametrize("name, make", ALL, ids=IDS)
def test_step_leaves_grad_untouched_and_keeps_float32(name, make):
    p = Parameter(np.array([[0.5, -1.5], [2.0, 0.25]], dtype=np.float32))
    g = np.array([[0.1, -0.2], [0.3, 0.05]], dtype=np.float32)
    p.grad = g.copy()
    opt = make([p], weight_decay=0.01)
    opt.step()
    opt.step()
    np.testing.assert_array_equal(p.grad, g)
    assert p.data.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state[p].values() if hasattr(v, "dtype"))
    opt.zero_grad()
    assert (p.grad == 0).all()


def test_coupled_and_decoupled_weight_decay():
    lr, wd = 0.1, 0.5
    p0, g = np.array([2.0, -1.0]), np.array([0.3, 0.3])
    # plain SGD: the two forms coincide: p - lr (g + wd p) == (1 - lr wd) p - lr g
    for decoupled in (False, True):
        p = Parameter(p0.copy())
        p.grad = g.copy()
        nn.SGD([p], lr=lr, weight_decay=wd, decoupled=decoupled).step()
        np.testing.assert_allclose(p.data, [2.0 - 0.1 * (0.3 + 1.0), -1.0 - 0.1 * (0.3 - 0.5)], rtol=1e-15)
    # Adam: coupled L2 is rescaled by the adaptive denominator (first step lr * sign(g + wd p)),
    # decoupled (AdamW) shrinks p by (1 - lr wd) and then takes the plain step lr * sign(g)
    p = Parameter(p0.copy())
    p.grad = g.copy()
    nn.Adam([p], lr=lr, weight_decay=wd).step()
    np.testing.assert_allclose(p.data, [2.0 - 0.1, -1.0 + 0.1], rtol=1e-7)   # sign(g + wd p) = [+, -]
    p = Parameter(p0.copy())
    p.grad = g.copy()
    nn.Adam([p], lr=lr, weight_decay=wd, decoupled=True).step()
    np.testing.assert_allclose(p.data, [2.0 * 0.95 - 0.1, -1.0 * 0.95 - 0.1], rtol=1e-7)
    # with a zero gradient AdamW only shrinks; RMSProp's coupled decay moves by lr/sqrt(1 - rho)
    p = Parameter(p0.copy())
    p.grad = np.zeros(2)
    nn.Adam([p], lr=lr, weight_decay=wd, decoupled=True).step()
    np.testing.assert_allclose(p.data, p0 * (1 - lr * wd), rtol=1e-15)
    p = Parameter(p0.copy())
    p.grad = np.zeros(2)
    nn.RMSProp([p], lr=lr, weight_decay=wd).step()
    np.testing.assert_allclose(p.data, p0 - np.sign(p0) * lr / math.sqrt(0.1), rtol=1e-6)


def test_l2_regularizer_equals_weight_decay_2l2_for_sgd():
    from nnlite.regularizers import regularization
    l2, lr = 0.05, 0.1
    g, p0 = np.array([0.3, -0.7, 0.1]), np.array([1.0, 2.0, -3.0])
    a = Parameter(p0.copy(), regularizer=nn.L2(l2))
    a.grad = g.copy()
    regularization([a])
    nn.SGD([a], lr=lr).step()
    b = Parameter(p0.copy())
    b.grad = g.copy()
    nn.SGD([b], lr=lr, weight_decay=2 * l2).step()
    np.testing.assert_allclose(a.data, b.data, rtol=1e-15)


# ----------------------------------------------------------- schedules
def test_step_decay():
    p = Parameter(np.zeros(2))
    opt = nn.SGD([p], lr=0.1)
    schedule = nn.StepDecay(opt, step_size=2, gamma=0.5)
    lrs = [schedule.step() for _ in range(5)]          # lr after epochs 1..5
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)
    assert opt.lr == lrs[-1]
    state = json.loads(json.dumps(schedule.state_dict()))
    opt2 = nn.SGD([Parameter(np.zeros(2))], lr=0.1)
    again = nn.StepDecay(opt2, step_size=2, gamma=0.5)
    again.load_state_dict(state)
    assert again.epoch == 5 and opt2.lr == pytest.approx(0.025)
    assert again.step() == pytest.approx(0.0125)
    for bad in (dict(step_size=0), dict(step_size=1.5), dict(step_size=2, gamma=0.0)):
        with pytest.raises(ValueError):
            nn.StepDecay(opt, **bad)


def test_exponential_decay():
    opt = nn.Adam([Parameter(np.zeros(1))], lr=1.0)
    schedule = nn.ExponentialDecay(opt, gamma=0.9)
    assert [round(schedule.step(), 12) for _ in range(3)] == [0.9, 0.81, 0.729]


def test_schedule_in_fit_changes_lr_per_epoch():
    from conftest import two_blob_images
    x, y = two_blob_images(16, size=8)
    model = nn.Sequential([nn.Flatten(), nn.Dense(64, 2, seed=0)])
    opt = nn.SGD(model.parameters(), lr=0.1)
    hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=4, batch_size=8,
                     schedule=nn.StepDecay(opt, step_size=1, gamma=0.5), verbose=0)
    np.testing.assert_allclose(hist["lr"], [0.1, 0.05, 0.025, 0.0125])


# ------------------------------------------------------------- state dict
@pytest.mark.parametrize("name, make", ALL, ids=IDS)
def test_state_dict_round_trip(name, make):
    rng = np.random.default_rng(2)
    grads = rng.standard_normal((5, 7))
    init = [rng.standard_normal((3, 2)), rng.standard_normal(4), rng.standard_normal(1)]

    def params():
        ps = [Parameter(a.copy()) for a in init]
        ps[2].trainable = False
        return ps

    def feed(ps, g):
        ps[0].grad, ps[1].grad, ps[2].grad = g[:6].reshape(3, 2), g[:4] * 2, g[6:]

    a = params()
    opt_a = make(a, weight_decay=0.01)
    for g in grads[:3]:
        feed(a, g)
        opt_a.step()
    saved = opt_a.state_dict()
    assert set(saved["state"]) == {0, 1}               # the frozen parameter has no state
    saved_json = json.loads(json.dumps({k: v for k, v in saved.items() if k != "state"}))
    assert saved_json["type"] == type(opt_a).__name__ and saved_json["t"] == 3

    b = params()
    for pa, pb in zip(a, b):
        pb.data[...] = pa.data
    opt_b = make(b, weight_decay=0.01)
    opt_b.lr = 123.0                                   # restored from the state dict
    opt_b.load_state_dict(saved)
    assert opt_b.lr == opt_a.lr and opt_b.t == 3
    for g in grads[3:]:
        feed(a, g)
        feed(b, g)
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)
    # the saved arrays are copies: stepping on did not change them
    first = opt_a.state_dict()["state"][0]
    for key, value in saved["state"][0].items():
        if hasattr(value, "dtype"):
            assert not np.array_equal(value, first[key])


def test_load_state_dict_errors():
    p = Parameter(np.zeros((2, 2)))
    adam = nn.Adam([p])
    p.grad = np.ones((2, 2))
    adam.step()
    state = adam.state_dict()
    with pytest.raises(ValueError, match="cannot load Adam state into SGD"):
        nn.SGD([p]).load_state_dict(state)
    with pytest.raises(ValueError, match=r"parameter 0 \('W', shape \(3,\)\) gets state"):
        nn.Adam([Parameter(np.zeros(3), name="W")]).load_state_dict(state)
    state["state"] = {5: state["state"][0]}
    with pytest.raises(ValueError, match="state for parameter 5, but the optimizer has 1"):
        nn.Adam([p]).load_state_dict(state)


@pytest.mark.parametrize("build, message", [
    (lambda: nn.SGD([]), "empty parameter list"),
    (lambda: nn.SGD([np.zeros(2)]), "expected a Parameter"),
    (lambda: nn.SGD(nn.Sequential([nn.Dense(2, 2)])), "pass model.parameters()"),
    (lambda: (lambda p: nn.SGD([p, p]))(Parameter(np.zeros(1))), "appears twice"),
    (lambda: nn.SGD([Parameter(np.zeros(1))], lr=-1.0), "lr must be >= 0"),
    (lambda: nn.SGD([Parameter(np.zeros(1))], momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: nn.SGD([Parameter(np.zeros(1))], nesterov=True), "nesterov=True needs momentum"),
    (lambda: nn.RMSProp([Parameter(np.zeros(1))], rho=1.0), r"rho must be in \[0, 1\)"),
    (lambda: nn.Adam([Parameter(np.zeros(1))], beta2=1.0), r"beta2 must be in \[0, 1\)"),
    (lambda: nn.Adam([Parameter(np.zeros(1))], eps=0.0), "eps must be > 0"),
    (lambda: nn.Adam([Parameter(np.zeros(1))], weight_decay=-1.0), "weight_decay must be >= 0"),
])
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_grad_shape_mismatch_is_an_error():
    p = Parameter(np.zeros((2, 3)), name="W")
    p.grad = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"parameter 'W' has shape \(2, 3\) but its grad has \(3, 2\)"):
        nn.SGD([p]).step()
