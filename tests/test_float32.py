"""Training stays float32 end to end: no silent float64 from labels, scalars or means.

One training step (forward with ``record=True``, loss, backward, Adam) of each
model of the zoo, then a check of the dtype of every activation, every
gradient that flowed between layers, every parameter gradient and every
piece of optimizer state. Integer (int64) labels, Python-float
hyperparameters, dropout masks and batch means are all places where NumPy 2
would quietly promote to float64; a float64 intermediate doubles memory and
halves the speed of everything after it.
"""
import numpy as np
import pytest

import nnlite as nn

F32 = np.dtype("float32")

MODELS = {  # name: (builder, one sample's shape, number of classes)
    "mias_cnn": (lambda: nn.zoo.mias_cnn(num_classes=3), (1, 48, 48), 3),
    "reduced_alexnet": (lambda: nn.zoo.reduced_alexnet(num_classes=2), (1, 64, 64), 2),
}


def _batch(shape, num_classes, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = np.arange(n) % num_classes                   # int64 labels, as a user would pass
    return x, y


def _not_float32(named_arrays):
    """The names of the arrays (or scalars) whose dtype is not float32."""
    return [f"{name}: {getattr(a, 'dtype', type(a).__name__)}" for name, a in named_arrays
            if getattr(a, "dtype", None) != F32]


def _train_steps_and_check(model, shape, num_classes, optimizer, steps=2):
    x, y = _batch(shape, num_classes)
    loss_fn = nn.SoftmaxCrossEntropy()
    for step in range(steps):                        # step 2 reads state written by step 1
        logits = model.forward(x, training=True, record=True)
        loss, dlogits = loss_fn(logits, y)
        dx = model.backward(dlogits)
        optimizer.step()
        assert isinstance(loss, float) and np.isfinite(loss)
        names = [f"{i}.{layer.name}" for i, layer in enumerate(model.layers)]
        bad = _not_float32(
            [(f"step {step} activation of {n}", a) for n, a in zip(names, model.activations)]
            + [(f"step {step} gradient into {n}", g) for n, g in zip(names, model.gradients)]
            + [(f"step {step} dlogits", dlogits), (f"step {step} dx", dx)]
            + [(f"step {step} {n}.data", p.data) for n, p in model.named_parameters()]
            + [(f"step {step} {n}.grad", p.grad) for n, p in model.named_parameters()]
            + [(f"step {step} {n} state {k}", v)
               for n, p in model.named_parameters()
               for k, v in optimizer.state[p].items() if hasattr(v, "dtype")])
        assert not bad, "float64 (or other) arrays in a float32 training step:\n" + "\n".join(bad)
        assert len(model.activations) == len(model.gradients) == len(model.layers)
        model.zero_grad()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_step_is_float32_throughout(name):
    build, shape, num_classes = MODELS[name]
    model = build()
    assert model.dtype == F32
    _train_steps_and_check(model, shape, num_classes, nn.Adam(model.parameters(), lr=1e-3))


@pytest.mark.parametrize("optimizer", ["sgd_nesterov", "rmsprop", "adamw"])
def test_other_optimizers_keep_float32_state(optimizer):
    build, shape, num_classes = MODELS["reduced_alexnet"]
    model = build()
    params = model.parameters()
    opt = {"sgd_nesterov": lambda: nn.SGD(params, lr=1e-2, momentum=0.9, nesterov=True,
                                          weight_decay=1e-4),
           "rmsprop": lambda: nn.RMSProp(params, lr=1e-3, weight_decay=1e-4),
           "adamw": lambda: nn.Adam(params, lr=1e-3, weight_decay=1e-2, decoupled=True)}[optimizer]()
    _train_steps_and_check(model, shape, num_classes, opt)


def test_fit_with_regularizer_and_validation_keeps_float32():
    build, shape, num_classes = MODELS["reduced_alexnet"]
    model = build()
    for layer in model.layers:
        if isinstance(layer, (nn.Conv2D, nn.Dense)):
            layer.W.regularizer = nn.L2(1e-4)
    x, y = _batch(shape, num_classes, n=8, seed=1)
    opt = nn.Adam(model.parameters(), lr=1e-3)
    history = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=1,
                        batch_size=4, validation_data=(x[:4], y[:4]), verbose=0, seed=0)
    assert np.isfinite(history["loss"][0])
    bad = _not_float32([(f"{n}.data", p.data) for n, p in model.named_parameters()]
                       + [(f"{n}.grad", p.grad) for n, p in model.named_parameters()]
                       + [(f"{n} state {k}", v) for n, p in model.named_parameters()
                          for k, v in opt.state[p].items() if hasattr(v, "dtype")])
    assert not bad, "\n".join(bad)
    assert model.predict(x[:2]).dtype == F32


@pytest.mark.slow
def test_alexnet_training_step_is_float32_throughout():
    # The smallest input the full AlexNet accepts keeps the step short; the dense layers
    # (4096 x 4096) are full size, so Adam's state is as large as in real training.
    model = nn.zoo.alexnet(input_shape=(1, 67, 67), num_classes=2)
    _train_steps_and_check(model, (1, 67, 67), 2, nn.Adam(model.parameters(), lr=1e-4), steps=1)
