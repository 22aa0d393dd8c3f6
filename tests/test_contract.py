"""The contract every public layer and loss of nnlite keeps.

(a) Every public Layer subclass (in ``nnlite.__all__``) and every Loss
    subclass has a gradient check: a test function named
    ``test_gradcheck_<ClassName>`` or ``test_gradcheck_<ClassName>_<case>``
    somewhere in ``tests/`` whose body calls a gradient checker. A new layer
    therefore cannot be added without one.
(b) A generic contract run on every public layer from a small constructor
    table: the input and ``dy`` are not mutated (and the output is not a
    view of the input), float32 stays float32 in forward and backward,
    ``backward`` before ``forward`` is a clear ``RuntimeError``,
    ``get_config()`` rebuilds an equal layer, ``output_shape`` agrees with
    ``forward``, and the float32 forward (and backward) agree with float64
    within 1e-5 relative to the largest output.
"""
import ast
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

import nnlite as nn
from nnlite.layer import layer_spec
from nnlite.serialization import build_from_config

TESTS = Path(__file__).resolve().parent


def public_classes(base):
    """Classes exported in ``nnlite.__all__`` that subclass ``base`` (``base`` itself excluded)."""
    out = []
    for name in nn.__all__:
        obj = getattr(nn, name)
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
            out.append(obj)
    return out


PUBLIC_LAYERS = public_classes(nn.Layer)
PUBLIC_LOSSES = public_classes(nn.Loss)


# ------------------------------------------------------- (a) naming rule
def gradcheck_test_names(sources: dict) -> dict:
    """``{function name: file}`` for every test function whose body calls a gradient checker.

    ``sources`` maps a file name to its Python source. A function counts when
    its name starts with ``test_gradcheck_`` and its body mentions
    ``gradcheck`` (``nn.gradcheck``, ``assert_gradcheck``, ``gradcheck_loss``).
    """
    found = {}
    for filename, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_gradcheck_"):
                body = "\n".join(ast.unparse(stmt) for stmt in node.body)
                if "gradcheck" in body:
                    found[node.name] = filename
    return found


def missing_gradchecks(classes, names) -> list:
    """Class names with no ``test_gradcheck_<Name>`` or ``test_gradcheck_<Name>_...`` in ``names``."""
    missing = []
    for cls in classes:
        pattern = re.compile(rf"^test_gradcheck_{re.escape(cls.__name__)}(_\w*)?$")
        if not any(pattern.match(name) for name in names):
            missing.append(cls.__name__)
    return missing


def test_public_classes_are_found():
    names = {c.__name__ for c in PUBLIC_LAYERS}
    assert {"Conv2D", "ConvTranspose2D", "Dense", "Flatten", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
            "ZeroPad2D", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Dropout",
            "LocalResponseNorm", "BatchNorm1D", "BatchNorm2D",
            "MaxUnpool2D", "Upsample2D"} <= names
    assert {c.__name__ for c in PUBLIC_LOSSES} >= {"SoftmaxCrossEntropy", "BinaryCrossEntropy", "MSE"}
    assert {"Sequential", "Residual", "Add", "Concatenate", "Identity"} <= names   # containers are layers
    assert "Layer" not in names


def test_every_public_layer_and_loss_has_a_gradient_check():
    sources = {p.name: p.read_text() for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name}
    names = gradcheck_test_names(sources)
    missing = missing_gradchecks(PUBLIC_LAYERS + PUBLIC_LOSSES, names)
    assert not missing, ("these public layers/losses have no gradient-check test named "
                         "test_gradcheck_<ClassName>[_case] in tests/*.py: " + ", ".join(missing))


def test_naming_rule_catches_a_missing_or_fake_check():
    sources = {
        "test_a.py": "def test_gradcheck_Tanh():\n    assert_gradcheck(Tanh(), x)\n"
                     "def test_gradcheck_Sigmoid_named_only():\n    assert True\n"
                     "def test_gradcheck_SoftmaxCrossEntropy_x():\n    gradcheck_loss(l, z, t)\n",
    }
    names = gradcheck_test_names(sources)
    assert set(names) == {"test_gradcheck_Tanh", "test_gradcheck_SoftmaxCrossEntropy_x"}
    # a check of SoftmaxCrossEntropy does not count for Softmax, a name alone does not count
    assert missing_gradchecks([nn.Tanh, nn.Sigmoid, nn.Softmax, nn.SoftmaxCrossEntropy], names) == [
        "Sigmoid", "Softmax"]


# ---------------------------------------------- (b) the generic contract
def _keep_mask(shape):
    return np.random.default_rng(99).random(shape) >= 0.5


def _frozen(layer):
    for p in layer.parameters():
        p.trainable = False
    return layer


def _unpool_after_pool(shape, pool, **kwargs):
    """A MaxUnpool2D reads the indices its pool recorded: run the pool first, on an input
    whose pooled shape is ``shape`` (with SH - 1 rows more, which a strided pool drops)."""
    N, C, OH, OW = shape
    (KH, KW), (SH, SW) = pool.kernel_size, pool.stride
    x = _x((N, C, (OH - 1) * SH + KH + SH - 1, (OW - 1) * SW + KW)).astype(np.float32)
    assert pool.forward(x).shape == tuple(shape)
    return nn.MaxUnpool2D(pool, **kwargs)


def _links(layer) -> list:
    """Layers that ``layer`` reads but does not own (attributes named ``_...``: MaxUnpool2D's pool)."""
    return [v for k, v in vars(layer).items() if k.startswith("_") and isinstance(v, nn.Layer)]


# (id, factory(input_shape) -> layer, input shape, training flag for forward)
TABLE = [
    ("Conv2D", lambda s: nn.Conv2D(3, 4, 3, stride=2, padding="same", seed=0), (2, 3, 7, 6), False),
    ("Conv2D-groups2", lambda s: nn.Conv2D(4, 6, (3, 2), padding=1, groups=2, seed=1), (2, 4, 5, 5), False),
    ("Conv2D-11x11-stride4", lambda s: nn.Conv2D(2, 3, 11, stride=4, bias=False, seed=2), (1, 2, 23, 19), False),
    ("Conv2D-dilation", lambda s: nn.Conv2D(2, 4, 3, stride=(1, 2), padding="same", dilation=(2, 3), groups=2, seed=2), (2, 2, 7, 8), False),
    ("ConvTranspose2D", lambda s: nn.ConvTranspose2D(3, 2, 3, stride=2, padding=1, seed=3), (2, 3, 4, 5), False),
    ("ConvTranspose2D-output_padding", lambda s: nn.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=(1, 0), seed=3), (2, 2, 3, 4), False),
    ("ZeroPad2D", lambda s: nn.ZeroPad2D((1, 2, 0, 3)), (2, 3, 4, 5), False),
    ("Dense", lambda s: nn.Dense(12, 5, seed=4), (3, 12), False),
    ("Flatten", lambda s: nn.Flatten(), (2, 3, 4, 5), False),
    ("MaxPool2D", lambda s: nn.MaxPool2D(3, stride=2, padding=1), (2, 3, 7, 7), False),
    ("AvgPool2D", lambda s: nn.AvgPool2D(2), (2, 3, 6, 7), False),
    ("GlobalAvgPool2D", lambda s: nn.GlobalAvgPool2D(), (2, 3, 4, 5), False),
    ("ReLU", lambda s: nn.ReLU(), (2, 3, 4, 5), False),
    ("LeakyReLU", lambda s: nn.LeakyReLU(0.1), (3, 7), False),
    ("Tanh", lambda s: nn.Tanh(), (2, 3, 4), False),
    ("Sigmoid", lambda s: nn.Sigmoid(), (3, 7), False),
    ("Softmax", lambda s: nn.Softmax(axis=1), (2, 5, 3, 3), False),
    ("Dropout-train", lambda s: nn.Dropout(0.5, seed=5).fix_mask(_keep_mask(s)), (4, 6), True),
    ("Dropout-eval", lambda s: nn.Dropout(0.5, seed=5), (4, 6), False),
    ("LocalResponseNorm", lambda s: nn.LocalResponseNorm(size=3, alpha=0.5, beta=0.75, k=1.0), (2, 5, 3, 3), False),
    ("LocalResponseNorm-alexnet", lambda s: nn.LocalResponseNorm(), (1, 7, 2, 2), False),
    ("BatchNorm2D-train", lambda s: nn.BatchNorm2D(3), (2, 3, 4, 5), True),
    ("BatchNorm2D-eval", lambda s: nn.BatchNorm2D(3, momentum=0.2, eps=1e-3), (2, 3, 4, 5), False),
    ("BatchNorm2D-frozen-train", lambda s: _frozen(nn.BatchNorm2D(3)), (2, 3, 3, 3), True),
    ("BatchNorm1D-train", lambda s: nn.BatchNorm1D(4), (5, 4), True),
    ("BatchNorm1D-NCL-train", lambda s: nn.BatchNorm1D(3, affine=False), (2, 3, 6), True),
    ("BatchNorm1D-eval", lambda s: nn.BatchNorm1D(4, momentum=None), (5, 4), False),
    ("MaxUnpool2D", lambda s: _unpool_after_pool(s, nn.MaxPool2D(2, name="pool")), (2, 3, 3, 4), False),
    ("MaxUnpool2D-overlap-output_size", lambda s: _unpool_after_pool(
        s, nn.MaxPool2D(3, stride=1, name="pool"), output_size=(6, 7)), (2, 2, 3, 5), False),
    ("Upsample2D", lambda s: nn.Upsample2D((2, 3)), (2, 3, 3, 4), False),
]
TABLE += [
    ("Identity", lambda s: nn.Identity(), (2, 3, 4), False),
    ("Sequential-nested", lambda s: nn.Sequential([
        nn.Conv2D(2, 3, 3, padding=1, seed=20, name="conv"), nn.Tanh(),
        nn.Sequential([nn.Conv2D(3, 2, 1, seed=21), nn.Sigmoid()], name="inner")]), (2, 2, 5, 4), False),
    ("Residual-identity", lambda s: nn.Residual(nn.Sequential([
        nn.Conv2D(3, 3, 3, padding=1, seed=22), nn.Tanh()])), (2, 3, 4, 4), False),
    ("Residual-projection", lambda s: nn.Residual(
        nn.Sequential([nn.Conv2D(2, 4, 3, stride=2, padding=1, bias=False, seed=23), nn.BatchNorm2D(4)]),
        nn.Conv2D(2, 4, 1, stride=2, seed=24)), (3, 2, 5, 5), True),
    ("Add", lambda s: nn.Add([nn.Dense(4, 4, seed=25), None, nn.Tanh()]), (3, 4), False),
    ("Concatenate", lambda s: nn.Concatenate([None, nn.Conv2D(2, 3, 3, padding=1, seed=27)]),
     (2, 2, 4, 3), False),
]
IDS = [row[0] for row in TABLE]


def _x(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return x + np.where(x >= 0, 0.05, -0.05)     # away from ReLU's kink and exact ties


def _rel(a, b) -> float:
    """max |a - b| relative to the largest |b| (1 for an all-zero b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def test_table_covers_every_public_layer():
    covered = {type(factory(shape)).__name__ for _, factory, shape, _ in TABLE}
    missing = sorted(c.__name__ for c in PUBLIC_LAYERS if c.__name__ not in covered)
    assert not missing, f"add these layers to the contract TABLE in {Path(__file__).name}: {missing}"


@pytest.mark.parametrize("name, factory, shape, training", TABLE, ids=IDS)
def test_float32_in_float32_out_and_no_mutation(name, factory, shape, training):
    layer = factory(shape)
    assert all(p.dtype == np.float32 for p in layer.parameters())      # float32 by default
    x = _x(shape).astype(np.float32)
    x0 = x.copy()
    y = layer.forward(x, training=training)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(x, x0)
    assert not np.shares_memory(y, x), "the output must not be a view of the input"
    dy = _x(y.shape, seed=1).astype(np.float32)
    dy0 = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy0)
    np.testing.assert_array_equal(x, x0)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for p in layer.parameters():
        assert p.grad.dtype == np.float32 and p.grad.shape == p.shape, p


@pytest.mark.parametrize("name, factory, shape, training", TABLE, ids=IDS)
def test_backward_before_forward_is_a_clear_error(name, factory, shape, training):
    layer = factory(shape)
    with pytest.raises(RuntimeError, match=rf"{layer.name}: backward\(\) called before forward\(\)"):
        layer.backward(np.ones(shape, dtype=np.float32))


@pytest.mark.parametrize("name, factory, shape, training", TABLE, ids=IDS)
def test_get_config_rebuilds_an_equal_layer(name, factory, shape, training):
    layer = factory(shape)
    spec = json.loads(json.dumps(layer_spec(layer)))         # JSON-serialisable
    if _links(layer):    # linked to layers it does not own, as nnlite.load links it in its model
        clone = type(layer)(**spec["config"])
        clone.resolve_links(nn.Sequential(_links(layer)))
    else:
        clone = build_from_config(spec)                       # children's specs built too
    assert clone.get_config() == layer.get_config()
    assert repr(clone) == repr(layer)
    assert [(p.name, p.shape, p.dtype) for p in clone.parameters()] == \
           [(p.name, p.shape, p.dtype) for p in layer.parameters()]
    for a, b in zip(clone.parameters(), layer.parameters()):
        np.testing.assert_array_equal(a.data, b.data)        # seeded: the same initial weights
    x = _x(shape).astype(np.float32)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


@pytest.mark.parametrize("name, factory, shape, training", TABLE, ids=IDS)
def test_output_shape_matches_forward(name, factory, shape, training):
    layer = factory(shape)
    y = layer.forward(_x(shape).astype(np.float32), training=training)
    assert tuple(layer.output_shape(shape[1:])) == y.shape[1:]


@pytest.mark.parametrize("name, factory, shape, training", TABLE, ids=IDS)
def test_float32_matches_float64(name, factory, shape, training):
    layer = factory(shape)
    rng = np.random.default_rng(7)
    for p in layer.parameters():                              # non-zero biases too
        if p.name == "b":
            p.data[...] = rng.standard_normal(p.shape).astype(np.float32)
    x32 = _x(shape).astype(np.float32)
    y32 = layer.forward(x32, training=training)
    dy32 = _x(y32.shape, seed=2).astype(np.float32)
    dx32 = layer.backward(dy32)
    grads32 = [p.grad.copy() for p in layer.parameters()]

    layer.astype("float64")                                   # exact cast of the same weights
    y64 = layer.forward(x32.astype(np.float64), training=training)
    dx64 = layer.backward(dy32.astype(np.float64))
    assert y64.dtype == dx64.dtype == np.float64
    errors = [_rel(y32, y64), _rel(dx32, dx64)] + [_rel(g, p.grad) for g, p in zip(grads32, layer.parameters())]
    print(f"{name}: float32 vs float64 forward {errors[0]:.2e}, backward {max(errors[1:]):.2e}")
    assert errors[0] <= 1e-5, f"forward differs by {errors[0]:.3g} (relative to max |y|)"
    assert max(errors[1:]) <= 1e-5, f"backward differs by {max(errors[1:]):.3g}"
