"""Optimizers and learning-rate schedules.

An optimizer holds the model's parameters (a list, in layer order) and moves
each trainable one against its gradient::

    opt = Adam(model.parameters(), lr=2e-3)
    ...                       # forward, loss, backward: fills p.grad
    opt.step()                # updates p.data of every trainable parameter
    opt.zero_grad()

Conventions shared by every optimizer here:

* ``g`` below is ``p.grad``; ``p.grad`` itself is never modified by ``step``.
* Only parameters with ``p.trainable`` are updated (frozen ones are skipped
  and get no state).
* Per-parameter state (momentum, moments) is created lazily at a
  parameter's first update, as zeros in the parameter's dtype and on its
  device, and kept in ``self.state[p]`` (a dict, keyed by the Parameter
  object itself, never by position in a set).
* Updates are in place, with Python ``float`` hyperparameters so that
  float32 parameters and state stay float32 (a NumPy float64 scalar would
  silently upcast under NumPy 2).
* ``weight_decay`` (``wd``) is, by default, *coupled* L2: ``g <- g + wd * p``
  before the update (what ``torch.optim`` does). With ``decoupled=True`` the
  parameter is shrunk directly, ``p <- p - lr * wd * p``, before the update
  (AdamW, Loshchilov & Hutter); for Adam and RMSProp the two differ because
  the coupled term is rescaled by the adaptive denominator.
* ``state_dict()`` returns plain NumPy arrays and Python scalars keyed by
  parameter *index* in the list; ``load_state_dict`` restores it exactly
  (state, step counts, learning rate and hyperparameters), so a resumed
  run takes the same steps as an uninterrupted one.
"""
from __future__ import annotations

from . import kernels
from .backend import get_array_module, to_numpy
from .functional import adam_update, rmsprop_update, sgd_update  # noqa: F401 (adam_update: the reference)
from .parameter import Parameter


class Optimizer:
    """Base class: parameter list, lr, step count, zero_grad, state_dict.

    Args:
        params: a list (or other ordered iterable) of
            :class:`~nnlite.parameter.Parameter`, e.g. ``model.parameters()``.
        lr: learning rate (step size), settable later (``opt.lr = 1e-4``).

    Attributes:
        params: the parameters, in the order given.
        t: number of ``step()`` calls so far.
        state: ``{Parameter: {name: array or int}}`` per-parameter state.
    """

    #: names of the hyperparameters saved in ``state_dict`` (besides lr).
    hyperparameters: tuple = ()

    def __init__(self, params, lr: float):
        if hasattr(params, "parameters") and not isinstance(params, (list, tuple)):
            raise ValueError(f"{type(self).__name__} expects a list of Parameters, got a "
                             f"{type(params).__name__}; pass model.parameters()")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise ValueError(f"{type(self).__name__}: item {i} of params is a "
                                 f"{type(p).__name__}, expected a Parameter")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter appears twice in params "
                             f"(it would be updated twice per step)")
        self.params = params
        self.lr = lr
        self.t = 0
        self.state: dict = {}

    # --------------------------------------------------------------- lr
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        value = float(value)  # a Python float keeps float32 updates float32
        if not value >= 0.0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {value}")
        self._lr = value

    # ------------------------------------------------------------- steps
    def step(self) -> None:
        """Update every trainable parameter once from its ``.grad``."""
        self.t += 1
        for p in self.params:
            if p.trainable:
                if p.grad.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: parameter {p.name!r} has shape "
                                     f"{tuple(p.shape)} but its grad has {tuple(p.grad.shape)}")
                self._update(p, self._state(p))

    def _update(self, p: Parameter, state: dict) -> None:
        raise NotImplementedError

    def _init_state(self, p: Parameter) -> dict:
        """Fresh state for ``p`` (zeros like ``p.data``); override in subclasses."""
        return {}

    def _state(self, p: Parameter) -> dict:
        """``p``'s state, created at its first update, following its dtype/device."""
        state = self.state.get(p)
        if state is None:
            state = self.state[p] = self._init_state(p)
        xp = get_array_module(p.data)
        for key, value in state.items():
            if hasattr(value, "dtype") and (value.dtype != p.data.dtype
                                            or get_array_module(value) is not xp):
                state[key] = xp.asarray(to_numpy(value), dtype=p.data.dtype)
        return state

    def _gradient(self, p: Parameter, weight_decay: float, decoupled: bool, lr: float):
        """``g`` with coupled L2 added, or ``p`` shrunk in place (decoupled)."""
        if not weight_decay:
            return p.grad
        if decoupled:
            p.data *= 1.0 - lr * weight_decay            # p <- p - lr * wd * p
            return p.grad
        g = p.data * weight_decay                        # g <- g + wd * p (new array:
        g += p.grad                                      #  p.grad stays untouched)
        return g

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (frozen ones too)."""
        for p in self.params:
            p.zero_grad()

    # ------------------------------------------------------- checkpoints
    def get_config(self) -> dict:
        return {"lr": self.lr, **{k: getattr(self, k) for k in self.hyperparameters}}

    def state_dict(self) -> dict:
        """Everything needed to resume: plain NumPy arrays and Python scalars.

        ``{"type": name, "lr": float, "t": int, "hyperparameters": {...},
        "state": {index: {"m": array, ..., "t": int}}}`` where ``index`` is the
        parameter's position in ``self.params``; parameters that were never
        updated have no entry.
        """
        state = {}
        for i, p in enumerate(self.params):
            if p in self.state:
                state[i] = {k: (to_numpy(v).copy() if hasattr(v, "dtype") else v)
                            for k, v in self.state[p].items()}
        return {"type": type(self).__name__, "lr": self.lr, "t": int(self.t),
                "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
                "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (arrays are copied).

        The parameter list must match the saved one (same count and shapes);
        a mismatch raises ``ValueError`` naming the parameter.
        """
        saved_type = state_dict.get("type", type(self).__name__)
        if saved_type != type(self).__name__:
            raise ValueError(f"cannot load {saved_type} state into {type(self).__name__}")
        previous = {k: getattr(self, k) for k in self.hyperparameters}
        for k, v in (state_dict.get("hyperparameters") or {}).items():
            if k in self.hyperparameters:   # first: they can decide the state's keys (amsgrad)
                setattr(self, k, type(getattr(self, k))(v))
        try:
            self.state = self._restore_state(state_dict)
        except Exception:
            for k, v in previous.items():
                setattr(self, k, v)
            raise
        self.lr = state_dict.get("lr", self.lr)
        self.t = int(state_dict.get("t", 0))

    def _restore_state(self, state_dict: dict) -> dict:
        """The per-parameter state of ``state_dict``, checked against the parameters."""
        new_state = {}
        for key, entry in (state_dict.get("state") or {}).items():
            i = int(key)
            if not 0 <= i < len(self.params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter "
                                 f"{i}, but the optimizer has {len(self.params)} parameters")
            p = self.params[i]
            xp = get_array_module(p.data)
            template = self._init_state(p)
            if set(entry) != set(template):
                raise ValueError(f"{type(self).__name__}.load_state_dict: parameter {i} has "
                                 f"state keys {sorted(entry)}, expected {sorted(template)}")
            restored = {}
            for k, v in entry.items():
                if hasattr(template[k], "dtype"):
                    a = to_numpy(v)
                    if a.size != p.size:
                        raise ValueError(
                            f"{type(self).__name__}.load_state_dict: parameter {i} "
                            f"({p.name!r}, shape {tuple(p.shape)}) gets state {k!r} with "
                            f"{a.size} values, shape {tuple(a.shape)}")
                    restored[k] = xp.array(a, dtype=p.data.dtype).reshape(p.shape)
                else:
                    restored[k] = type(template[k])(v)
            new_state[p] = restored
        return new_state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({len(self.params)} params, {args})"


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional (Nesterov) momentum, in PyTorch's form.

    Plain (``momentum = 0``)::

        p <- p - lr g

    Classical momentum (``torch.optim.SGD``; the buffer ``buf`` starts at 0)::

        buf <- mu buf + g
        p   <- p - lr buf

    Nesterov (``nesterov=True``): the step looks ahead along the buffer::

        buf <- mu buf + g
        p   <- p - lr (g + mu buf)

    **The velocity form** ``v <- mu v - lr g; p <- p + v`` (Sutskever et al. 2013,
    Keras, and nnlite before this version) gives the same iterates while ``lr`` is
    constant (``v = -lr buf``), but not under a schedule: ``v`` keeps every old
    learning rate inside it, while ``buf`` holds gradients only, so a new ``lr``
    (:class:`StepDecay`) scales the whole next step at once, exactly as PyTorch's
    ``StepLR`` with ``torch.optim.SGD``. Optimizer states saved in the velocity
    form (key ``"v"``) still load: they are converted with the saved learning
    rate, ``buf = -v / lr`` (exact for the next step; a saved ``lr`` of 0 gives a
    zero buffer).

    The exponential-moving-average form used in the mathematics report (and
    in Andrew Ng's course) is::

        u <- beta u + (1 - beta) g
        p <- p - lr' u

    With ``mu = beta`` it produces the same iterates when ``lr = (1 - beta) lr'``
    (``buf = u / (1 - beta)``): e.g. ``beta = 0.9, lr' = 0.1`` is
    ``SGD(momentum=0.9, lr=0.01)``.

    Args:
        lr: learning rate.
        momentum: ``mu`` in [0, 1); 0 disables momentum (no state kept).
        nesterov: use the Nesterov look-ahead (needs ``momentum > 0``).
        weight_decay: L2 coefficient ``wd``; coupled (``g + wd p``) unless
            ``decoupled=True`` (``p <- (1 - lr wd) p`` before the step).

    State per parameter: ``momentum_buffer`` (only with momentum; PyTorch's name).
    The update itself is :func:`nnlite.functional.sgd_update`.
    """

    hyperparameters = ("momentum", "nesterov", "weight_decay", "decoupled")

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("SGD nesterov=True needs momentum > 0")
        if not weight_decay >= 0:
            raise ValueError(f"SGD weight_decay must be >= 0, got {weight_decay}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)

    def _init_state(self, p):
        if not self.momentum:
            return {}
        return {"momentum_buffer": get_array_module(p.data).zeros_like(p.data)}

    def _update(self, p, state):
        g = self._gradient(p, self.weight_decay, self.decoupled, self.lr)
        sgd_update(p.data, g, state.get("momentum_buffer"), self.lr, self.momentum,
                   self.nesterov)

    def load_state_dict(self, state_dict: dict) -> None:
        """As :meth:`Optimizer.load_state_dict`; a velocity-form state (``"v"``) is converted."""
        entries = state_dict.get("state") or {}
        if any("v" in entry for entry in entries.values()):
            lr = float(state_dict.get("lr", self.lr))
            converted = {}
            for key, entry in entries.items():
                entry = dict(entry)
                if "v" in entry:          # v = -lr buf  ->  buf = -v / lr
                    v = to_numpy(entry.pop("v"))
                    entry["momentum_buffer"] = -v / lr if lr else v * 0.0
                converted[key] = entry
            state_dict = {**state_dict, "state": converted}
        super().load_state_dict(state_dict)


class RMSProp(Optimizer):
    r"""RMSProp: divide the step by a running root mean square of the gradient.

    ::

        s <- rho s + (1 - rho) g^2
        p <- p - lr g / (sqrt(s) + eps)

    ``eps`` is added *outside* the square root, as in Keras and PyTorch (some
    texts write ``sqrt(s + eps)``; with the default tiny eps the difference
    only matters where ``s`` is about zero). ``s`` starts at zero and is not
    bias-corrected, so the first step is about ``lr / sqrt(1 - rho)`` per
    coordinate (``3.16 lr`` for ``rho = 0.9``).

    Args:
        lr: learning rate.
        rho: decay of the running mean of ``g^2``, in [0, 1).
        eps: small constant keeping the denominator away from zero.
        weight_decay, decoupled: as in :class:`SGD`.

    State per parameter: ``s``. The update is :func:`nnlite.functional.rmsprop_update`.
    """

    hyperparameters = ("rho", "eps", "weight_decay", "decoupled")

    def __init__(self, params, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-7,
                 weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"RMSProp rho must be in [0, 1), got {rho}")
        if not eps > 0:
            raise ValueError(f"RMSProp eps must be > 0, got {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"RMSProp weight_decay must be >= 0, got {weight_decay}")
        self.rho = float(rho)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)

    def _init_state(self, p):
        return {"s": get_array_module(p.data).zeros_like(p.data)}

    def _update(self, p, state):
        g = self._gradient(p, self.weight_decay, self.decoupled, self.lr)
        rmsprop_update(p.data, g, state["s"], self.lr, self.rho, self.eps)


class Adam(Optimizer):
    r"""Adam: momentum on the gradient and RMSProp scaling, both bias-corrected.

    With ``t`` the number of updates this parameter has received::

        m     <- beta1 m + (1 - beta1) g        (first moment)
        v     <- beta2 v + (1 - beta2) g^2      (second moment)
        m_hat  = m / (1 - beta1^t)              (bias corrections: m, v start at 0)
        v_hat  = v / (1 - beta2^t)
        p     <- p - lr m_hat / (sqrt(v_hat) + eps)

    At ``t = 1``, ``m_hat = g`` and ``v_hat = g^2``, so the first step is
    ``lr`` per coordinate (times ``sign(g)``) whatever the gradient's scale.

    AMSGrad (``amsgrad=True``, Reddi et al. 2018, as PyTorch defines it): keep
    the largest *raw* second moment so far and bias-correct that one::

        v_max <- max(v_max, v)                  (element-wise; starts at 0)
        v_hat  = v_max / (1 - beta2^t)

    so the per-coordinate step size never grows back after a large gradient.

    Note: the CNN mathematics report divides the *second* moment by
    ``1 - beta1^t`` and then uses the uncorrected second moment in the
    update; both are slips. The correction of ``v`` uses ``beta2`` and the
    update uses the corrected ``v_hat`` (Kingma & Ba 2015, Algorithm 1).

    The update is :func:`nnlite.functional.adam_update` (the lines above, the
    readable reference), run through :mod:`nnlite.kernels`: a fused Numba loop on
    the CPU and a CUDA kernel on the GPU, held equal to it by the tests.

    Args:
        lr: learning rate (the largest step per coordinate, roughly).
        beta1, beta2: decay rates of the two moments, in [0, 1).
        eps: added to ``sqrt(v_hat)``, outside the square root.
        weight_decay: ``wd``. Coupled (default): ``g <- g + wd p`` (L2 in the
            loss, then rescaled by Adam like any gradient). ``decoupled=True``:
            AdamW, ``p <- p - lr wd p`` before the Adam step.
        amsgrad: use AMSGrad's running maximum of ``v`` (default False, as PyTorch).

    State per parameter: ``m``, ``v``, ``t`` (its own step count, so a
    parameter unfrozen late still gets the correct bias correction) and, with
    AMSGrad, ``v_max``.
    """

    hyperparameters = ("beta1", "beta2", "eps", "weight_decay", "decoupled", "amsgrad")

    def __init__(self, params, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False,
                 amsgrad: bool = False):
        super().__init__(params, lr)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam {name} must be in [0, 1), got {b}")
        if not eps > 0:
            raise ValueError(f"Adam eps must be > 0, got {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"Adam weight_decay must be >= 0, got {weight_decay}")
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decoupled = bool(decoupled)
        self.amsgrad = bool(amsgrad)

    def _init_state(self, p):
        xp = get_array_module(p.data)
        state = {"m": xp.zeros_like(p.data), "v": xp.zeros_like(p.data), "t": 0}
        if self.amsgrad:
            state["v_max"] = xp.zeros_like(p.data)
        return state

    def _update(self, p, state):
        g = self._gradient(p, self.weight_decay, self.decoupled, self.lr)
        state["t"] += 1
        kernels.adam_update(p.data, g, state["m"], state["v"], self.lr, self.beta1, self.beta2,
                            self.eps, state["t"], v_max=state.get("v_max"))


# ----------------------------------------------------------------- schedules
class LRSchedule:
    """Base class of learning-rate schedules, stepped once per epoch.

    At construction the optimizer's current ``lr`` is taken as ``base_lr``
    and ``epoch = 0``; each :meth:`step` (call it at the end of an epoch)
    increments ``epoch`` and sets ``optimizer.lr = lr_at(epoch)``.
    """

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one epoch, set and return the new learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict:
        """JSON-serialisable: ``{"base_lr": float, "epoch": int}``."""
        return {"base_lr": self.base_lr, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``base_lr`` and ``epoch`` and set the optimizer's lr to match."""
        self.base_lr = float(state["base_lr"])
        self.epoch = int(state["epoch"])
        self.optimizer.lr = self.lr_at(self.epoch)


class StepDecay(LRSchedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr(epoch) = base_lr * gamma ** (epoch // step_size)`` (PyTorch's StepLR). With
    :class:`SGD` momentum, the trajectory is PyTorch's too: the momentum buffer
    holds gradients, not old learning rates (see :class:`SGD`).

    Args:
        optimizer: the optimizer whose ``lr`` is set.
        step_size: epochs between decays (>= 1).
        gamma: decay factor.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if int(step_size) != step_size or step_size < 1:
            raise ValueError(f"StepDecay step_size must be an integer >= 1, got {step_size}")
        if not gamma > 0:
            raise ValueError(f"StepDecay gamma must be > 0, got {gamma}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(LRSchedule):
    """``lr(epoch) = base_lr * gamma ** epoch`` (PyTorch's ExponentialLR).

    Args:
        optimizer: the optimizer whose ``lr`` is set.
        gamma: decay factor per epoch (e.g. 0.95).
    """

    def __init__(self, optimizer: Optimizer, gamma: float):
        super().__init__(optimizer)
        if not gamma > 0:
            raise ValueError(f"ExponentialDecay gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** epoch
