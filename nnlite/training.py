"""The training loop: fit, evaluate, predict.

``fit`` runs mini-batch gradient descent::

    for each epoch:
        shuffle the training set (seeded: permutation from (seed, epoch))
        for each mini-batch:
            logits = model.forward(x, training=True)
            loss, dlogits = loss_fn(logits, y)
            model.backward(dlogits)              # fills p.grad
            loss += regularization(params)       # adds L1/L2 penalty and its gradient
            optimizer.step()
        validate, log, run callbacks, write the resume checkpoint

It shows a tqdm progress bar with the running loss and accuracy
(``verbose=0`` silences it), stops with an error naming the epoch and batch
when the loss is not finite (before the weights are touched), and can write a
checkpoint after every epoch from which ``resume=True`` continues exactly
where it stopped: same weights, optimizer state, dropout generators, history
and callback state, so the resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy

from .backend import Generator, device_of, get_array_module, to_device, to_numpy
from .functional import sigmoid, softmax
from .regularizers import regularization


class History:
    """Per-epoch metrics: ``history["loss"]``, ``history["val_accuracy"]``, ..."""

    def __init__(self, history: dict | None = None):
        self.history: dict = {k: list(v) for k, v in (history or {}).items()}

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    @property
    def epochs(self) -> int:
        return len(next(iter(self.history.values()), []))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self) -> str:
        return f"History({self.epochs} epochs, keys={list(self.history)})"


def predictions(logits):
    """Predicted class indices from logits: argmax, or ``logit > 0`` for one output."""
    xp = get_array_module(logits)
    if logits.ndim == 2 and logits.shape[1] > 1:
        return xp.argmax(logits, axis=1)
    return (logits.reshape(-1) > 0).astype(xp.int64)


def _true_classes(y):
    xp = get_array_module(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot or probability targets
        return xp.argmax(y, axis=1)
    if xp.issubdtype(y.dtype, xp.floating):  # binary targets in [0, 1]
        return (y.reshape(-1) > 0.5).astype(xp.int64)
    return y.reshape(-1)


def _correct(logits, y) -> int:
    xp = get_array_module(logits)
    return int(xp.sum(predictions(logits) == _true_classes(y)))


def _model_device(model) -> str:
    params = model.parameters()
    return device_of(params[0].data) if params else "cpu"


def _batch(a, idx, device, dtype=None):
    b = a[idx]
    if dtype is not None:
        b = b.astype(dtype, copy=False)
    return to_device(b, device)


def _check_data(x, y, what: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{what}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{what}: no samples")


def _layer_generators(model) -> dict:
    """Every Generator held by a layer at any depth (dropout masks), keyed ``"<path>.<attr>"``."""
    return {f"{path}.{k}": v for path, layer in [("", model)] + model.named_layers()
            for k, v in vars(layer).items() if isinstance(v, Generator)}


def _backward(model, dlogits) -> None:
    """Backpropagate; a Sequential may skip the layers before its first trainable one."""
    if hasattr(model, "layers"):
        model.backward(dlogits, need_input_grad=False)
    else:
        model.backward(dlogits)


def _non_finite_parameters(model) -> list:
    """Names of the parameters holding a NaN or an infinity."""
    out = []
    for name, p in model.named_parameters():
        if not bool(get_array_module(p.data).isfinite(p.data).all()):
            out.append(name)
    return out


def evaluate(model, x, y, *, loss=None, batch_size: int = 256) -> dict:
    """Loss (if ``loss`` is given) and accuracy over ``(x, y)``, in batches."""
    _check_data(x, y, "evaluate")
    device, dtype = _model_device(model), model.dtype
    total_loss, correct, n = 0.0, 0, len(x)
    for start in range(0, n, batch_size):
        idx = slice(start, start + batch_size)
        xb, yb = _batch(x, idx, device, dtype), _batch(y, idx, device)
        logits = model.forward(xb, training=False)
        if loss is not None:
            total_loss += float(loss(logits, yb)[0]) * len(xb)
        correct += _correct(logits, yb)
    out = {"accuracy": correct / n}
    if loss is not None:
        out = {"loss": total_loss / n, **out}
    return out


def predict(model, x, *, batch_size: int = 256):
    """Logits for ``x`` as a NumPy array, computed in batches (training=False)."""
    device, dtype = _model_device(model), model.dtype
    outs = [to_numpy(model.forward(_batch(x, slice(s, s + batch_size), device, dtype)))
            for s in range(0, len(x), batch_size)]
    return numpy.concatenate(outs, axis=0)


def predict_proba(model, x, *, batch_size: int = 256):
    """Class probabilities: softmax of the logits, or sigmoid for a single output."""
    z = predict(model, x, batch_size=batch_size).astype(numpy.float64)
    if z.ndim == 2 and z.shape[1] > 1:
        return softmax(z, axis=1)               # the stable ones of nnlite.functional
    return sigmoid(z.reshape(-1))


def fit(model, x, y, *, loss, optimizer, epochs: int = 10, batch_size: int = 32,
        validation_data=None, shuffle: bool = True, seed: int = 0, callbacks=(),
        schedule=None, verbose: int = 1, checkpoint_path=None, resume: bool = False) -> History:
    """Train ``model`` on ``(x, y)``; return the :class:`History`.

    Args:
        model: a :class:`~nnlite.Sequential` (or any nnlite layer used as a model).
        x, y: training inputs (N, ...) and targets (integer labels, one-hot,
            or binary targets), NumPy arrays; batches are moved to the model's
            device and cast to its dtype.
        loss: a loss object, ``loss(logits, y) -> (value, dlogits)``.
        optimizer: an optimizer built on ``model.parameters()``.
        epochs: total number of epochs (a resumed run counts the finished ones).
        batch_size: mini-batch size; the last batch may be smaller.
        validation_data: optional ``(x_val, y_val)``; adds ``val_loss`` and
            ``val_accuracy`` to the logs.
        shuffle, seed: each epoch uses the permutation seeded by ``(seed, epoch)``.
        callbacks: :mod:`nnlite.callbacks` objects.
        schedule: optional learning-rate schedule with ``step()`` per epoch.
        verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        checkpoint_path: write a full training checkpoint here after every epoch.
        resume: continue from ``checkpoint_path`` if it exists.
    """
    if verbose == 1:   # tqdm.auto warns in Jupyter without ipywidgets: import it only for a bar
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    from .serialization import load_checkpoint, save_checkpoint

    _check_data(x, y, "fit")
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size}, {epochs}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    device, dtype = _model_device(model), model.dtype
    params = model.parameters()
    history, start_epoch = History(), 0
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_train_begin(model)

    generators = _layer_generators(model)
    if resume and Path(checkpoint_path).exists():
        _, state, gen_states = load_checkpoint(checkpoint_path, model, optimizer)
        start_epoch = int(state["epoch"])
        history = History(state["history"])
        for cb, cb_state in zip(callbacks, state["callbacks"]):
            cb.load_state_dict(cb_state)
        if schedule is not None and state.get("schedule") is not None:
            schedule.load_state_dict(state["schedule"])
        for key, g in generators.items():
            g.set_state(gen_states[key])
        if verbose:
            print(f"resumed from {checkpoint_path} after epoch {start_epoch}")
        if state.get("stopped"):
            start_epoch = epochs  # early stopping had ended that run: nothing left to do

    n = len(x)
    n_batches = math.ceil(n / batch_size)
    for epoch in range(start_epoch, epochs):
        order = (numpy.random.default_rng([seed, epoch]).permutation(n) if shuffle
                 else numpy.arange(n))
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=verbose != 1, leave=True)
        for b in range(n_batches):
            idx = numpy.sort(order[b * batch_size:(b + 1) * batch_size])
            xb, yb = _batch(x, idx, device, dtype), _batch(y, idx, device)
            logits = model.forward(xb, training=True)
            finite = bool(get_array_module(logits).isfinite(logits).all())
            if finite:
                value, dlogits = loss(logits, yb)
                _backward(model, dlogits)
                value = float(value) + regularization(params)
            else:
                value = float("nan")
            if not math.isfinite(value):
                bar.close()
                raise FloatingPointError(
                    f"non-finite loss ({value}) at epoch {epoch + 1}, batch {b + 1}: training "
                    f"stopped before the weights were updated (lower the learning rate or "
                    f"check the inputs)")
            optimizer.step()
            total_loss += value * len(idx)
            correct += _correct(logits, yb)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
            bar.update()
        logs = {"loss": total_loss / seen, "accuracy": correct / seen}
        bad = _non_finite_parameters(model)
        if bad:
            bar.close()
            raise FloatingPointError(
                f"non-finite weights after epoch {epoch + 1}, batch {n_batches} (its update made "
                f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} NaN or infinite): training "
                f"stopped and this epoch was not checkpointed (lower the learning rate)")
        if validation_data is not None:
            val = evaluate(model, *validation_data, loss=loss, batch_size=max(batch_size, 256))
            if not math.isfinite(val.get("loss", 0.0)):
                bar.close()
                raise FloatingPointError(
                    f"non-finite validation loss ({val['loss']}) after epoch {epoch + 1}, batch "
                    f"{n_batches}: training stopped and this epoch was not checkpointed (check the "
                    f"validation inputs, or lower the learning rate)")
            logs.update({f"val_{k}": v for k, v in val.items()})
        logs["lr"] = float(optimizer.lr)
        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
        bar.close()
        if verbose == 2:
            print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
        history.append(logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if schedule is not None:
            schedule.step()
        stop = any(cb.stop_training for cb in callbacks)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer,
                            state={"epoch": epoch + 1, "history": history.history,
                                   "stopped": stop,
                                   "callbacks": [cb.state_dict() for cb in callbacks],
                                   "schedule": schedule.state_dict() if schedule else None},
                            generators={k: g.get_state() for k, g in generators.items()})
        if stop:
            if verbose:
                print(f"early stop after epoch {epoch + 1}")
            break
    for cb in callbacks:
        cb.on_train_end()
    return history
