"""Weight regularizers: L1, L2 and both, attached to parameters.

A regularizer adds a penalty ``R(W)`` to the loss, which pulls weights toward
zero and so limits overfitting. It is attached to one parameter
(``Dense(..., regularizer=L2(1e-4))`` sets ``W.regularizer``), and after
``backward`` the training loop calls :func:`regularization`, which adds every
penalty's gradient into ``p.grad`` and returns the total penalty to add to
the reported loss::

    value, dlogits = loss(logits, y)
    model.backward(dlogits)
    value += regularization(model.parameters())
    optimizer.step()

Conventions (those of Keras, ``tf.keras.regularizers``)::

    L1(l1):      R = l1 * sum |W|          dR/dW = l1 * sign(W)   (0 at W = 0)
    L2(l2):      R = l2 * sum W^2          dR/dW = 2 * l2 * W
    L1L2(l1, l2) R = l1 * sum |W| + l2 * sum W^2

Note that Keras' ``l2`` is *not* the ``weight_decay`` of PyTorch's optimizers:
``L2(l2)`` adds ``2 * l2 * W`` to the gradient, ``weight_decay=wd`` adds
``wd * W``, so ``L2(l2)`` equals ``weight_decay = 2 * l2`` for plain SGD.
The penalty is added once per batch, whatever the batch size (the data loss
is already a mean over the batch).
"""
from __future__ import annotations

from .backend import get_array_module


class Regularizer:
    """Base class: ``penalty(W) -> float`` and ``grad(W) -> array like W``."""

    def penalty(self, W) -> float:
        raise NotImplementedError

    def grad(self, W):
        raise NotImplementedError

    def __call__(self, W) -> float:
        return self.penalty(W)

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _coefficient(value, what: str, cls: str) -> float:
    value = float(value)
    if not value >= 0.0:
        raise ValueError(f"{cls}: {what} must be >= 0, got {value}")
    return value


class L1(Regularizer):
    """``R(W) = l1 * sum |W|``; gradient ``l1 * sign(W)`` (subgradient 0 at 0).

    Pushes weights to exactly zero (sparse weights).

    Args:
        l1: coefficient, >= 0 (Keras default 0.01).
    """

    def __init__(self, l1: float = 0.01):
        self.l1 = _coefficient(l1, "l1", "L1")

    def penalty(self, W) -> float:
        xp = get_array_module(W)
        return self.l1 * float(xp.abs(W).sum())

    def grad(self, W):
        xp = get_array_module(W)
        return xp.sign(W) * self.l1       # Python float: W's dtype kept

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``R(W) = l2 * sum W^2``; gradient ``2 * l2 * W`` (Keras convention, no 1/2).

    Shrinks all weights in proportion to their size ("weight decay").

    Args:
        l2: coefficient, >= 0 (Keras default 0.01).
    """

    def __init__(self, l2: float = 0.01):
        self.l2 = _coefficient(l2, "l2", "L2")

    def penalty(self, W) -> float:
        return self.l2 * float((W * W).sum())

    def grad(self, W):
        return W * (2.0 * self.l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``R(W) = l1 * sum |W| + l2 * sum W^2``; gradient ``l1 sign(W) + 2 l2 W``.

    Args:
        l1, l2: coefficients, >= 0 (Keras defaults 0.0 and 0.0).
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _coefficient(l1, "l1", "L1L2")
        self.l2 = _coefficient(l2, "l2", "L1L2")

    def penalty(self, W) -> float:
        xp = get_array_module(W)
        return self.l1 * float(xp.abs(W).sum()) + self.l2 * float((W * W).sum())

    def grad(self, W):
        xp = get_array_module(W)
        g = xp.sign(W) * self.l1
        g += W * (2.0 * self.l2)
        return g

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


_BY_NAME = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2}


def get(identifier):
    """A regularizer from ``None``, an instance, a name or a serialized dict.

    ``get("l2")`` is ``L2()``; ``get({"type": "L2", "config": {"l2": 1e-4}})``
    rebuilds what :func:`serialize` wrote; ``None`` stays ``None``.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown regularizer {identifier!r}; expected one of "
                             f"'l1', 'l2', 'l1l2'")
        return cls()
    if isinstance(identifier, dict) and "type" in identifier:
        cls = {c.__name__: c for c in (L1, L2, L1L2)}.get(identifier["type"])
        if cls is None:
            raise ValueError(f"unknown regularizer type {identifier['type']!r}")
        return cls(**identifier.get("config", {}))
    raise ValueError(f"cannot interpret {identifier!r} as a regularizer")


def serialize(regularizer) -> dict | None:
    """``{"type": "L2", "config": {"l2": ...}}`` (JSON-serialisable), or None."""
    if regularizer is None:
        return None
    return {"type": type(regularizer).__name__, "config": regularizer.get_config()}


def from_config(value):
    """What a layer makes of its ``regularizer`` argument.

    A name (``"l2"``) or a dict written by :func:`serialize` (what a layer's
    ``get_config()`` holds, so that ``nnlite.load`` rebuilds the penalty) goes
    through :func:`get`; ``None``, a :class:`Regularizer`, or any other object
    with ``penalty(W)`` and ``grad(W)`` is kept as it is.
    """
    if isinstance(value, (str, dict)):
        return get(value)
    return value


def to_config(value, layer: str):
    """The JSON form of a layer's regularizer for ``get_config()``: None or :func:`serialize`.

    Raises ``ValueError`` naming ``layer`` for an object that is not a
    :class:`Regularizer` (it could not be rebuilt from the config).
    """
    if value is None or isinstance(value, Regularizer):
        return serialize(value)
    raise ValueError(f"{layer}: regularizer {value!r} is not an nnlite Regularizer, so it "
                     f"cannot be written into the layer config (subclass nnlite.Regularizer)")


def regularization(params) -> float:
    """Add each regularizer's gradient into ``p.grad``; return the total penalty.

    Call it after ``backward`` (which *assigns* ``p.grad``) and before the
    optimizer's ``step``. For every parameter ``p`` with ``p.regularizer``
    set: if ``p.trainable``, ``p.grad += p.regularizer.grad(p.data)``. The
    returned float is ``sum_p R_p(p.data)`` over all parameters with a
    regularizer, frozen ones included (so the reported loss does not jump
    when layers are frozen; a frozen parameter's penalty is a constant and
    does not change training). Parameters without a regularizer are untouched.

    Args:
        params: a list of Parameters (e.g. ``model.parameters()``) or a model.

    Returns:
        The total penalty as a Python float (0.0 when no parameter has one).
    """
    if hasattr(params, "parameters"):
        params = params.parameters()
    total = 0.0
    for p in params:
        reg = getattr(p, "regularizer", None)
        if reg is None:
            continue
        total += reg.penalty(p.data)
        if p.trainable:
            p.grad += reg.grad(p.data)
    return total
