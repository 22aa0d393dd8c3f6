"""Callbacks for :func:`nnlite.training.fit`, Keras style.

A callback gets ``on_train_begin(model)``, ``on_epoch_end(epoch, logs)`` and
``on_train_end()``; ``logs`` holds the epoch's metrics (``loss``,
``accuracy``, ``val_loss``, ``val_accuracy``, ...). Setting
``self.stop_training = True`` ends training after the current epoch.
Callbacks with state (early stopping) expose ``state_dict()`` /
``load_state_dict()`` so that a resumed run continues exactly.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .backend import get_array_module, to_numpy
from .serialization import atomic_open

#: substrings of metric names for which bigger is better (``mode="auto"``).
MAX_METRICS = ("acc", "auc", "f1", "precision", "recall", "sensitivity", "specificity", "iou")


class Callback:
    """Base class: every hook does nothing."""

    stop_training = False

    def on_train_begin(self, model) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _Monitor(Callback):
    """Shared logic: which metric to watch and whether bigger is better.

    ``mode="auto"`` picks ``"max"`` when the metric's name contains one of
    :data:`MAX_METRICS` (accuracy, AUC, F1, ...) and ``"min"`` otherwise (losses).
    """

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if any(m in monitor.lower() for m in MAX_METRICS) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def _value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise KeyError(f"{type(self).__name__} monitors {self.monitor!r}, which is not in "
                           f"the epoch logs {sorted(logs)} (validation data missing?)")
        return float(logs[self.monitor])

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


def _buffers(model) -> list:
    """The model's buffers (running statistics), or none for a model without the method."""
    return model.buffers() if hasattr(model, "buffers") else []


class EarlyStopping(_Monitor):
    """Stop after ``patience`` epochs in a row without improvement, as Keras does.

    An epoch improves when its value beats the best so far by more than
    ``min_delta`` (lower for ``mode="min"``, higher for ``"max"``). ``wait``
    counts the epochs since the last improvement; training stops at the end of
    the epoch where it reaches ``patience`` (Keras' ``EarlyStopping(patience=p)``:
    the best epoch, then ``p`` epochs that do not beat it). ``patience=0`` and
    ``patience=1`` both stop at the first epoch that does not improve, as in
    Keras. (Earlier versions of nnlite ran one epoch more, ``patience + 1``;
    saved states, whose ``wait`` means the same, load unchanged.)

    With ``restore_best_weights=True`` the model's weights (and buffers, such as
    BatchNorm's running statistics) are set back to
    those of the best epoch when training stops (or ends). The best weights
    are part of :meth:`state_dict`, so a resumed run restores them too.
    ``on_train_begin`` resets everything: one callback can serve several runs.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 5,
                 min_delta: float = 0.0, restore_best_weights: bool = True):
        super().__init__(monitor, mode, min_delta)
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience, self.restore_best_weights = patience, restore_best_weights
        self.wait, self.best_epoch, self._best_weights = 0, -1, None
        self._best_buffers = None

    def on_train_begin(self, model) -> None:
        super().on_train_begin(model)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.best_epoch, self._best_weights = 0, -1, None
        self._best_buffers = None
        self.stop_training = False

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_weights = [p.data.copy() for p in self.model.parameters()]
                # BatchNorm's running statistics belong to those weights: keep them too
                self._best_buffers = [b.data.copy() for b in _buffers(self.model)]
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stop_training = True

    def on_train_end(self) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            for b, w in zip(_buffers(self.model), self._best_buffers or []):
                b.data[...] = get_array_module(b.data).asarray(w)
            for p, w in zip(self.model.parameters(), self._best_weights):
                p.data[...] = get_array_module(p.data).asarray(w)

    def state_dict(self) -> dict:
        """``best``, ``best_epoch``, ``wait`` and the best weights (NumPy copies, or None)."""
        weights = (None if self._best_weights is None
                   else [to_numpy(w).copy() for w in self._best_weights])
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": weights,
                "best_buffers": (None if self._best_buffers is None
                                 else [to_numpy(b).copy() for b in self._best_buffers])}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        weights = state.get("best_weights")
        self._best_weights = None if weights is None else [w.copy() for w in weights]
        buffers = state.get("best_buffers")          # absent in checkpoints of older versions
        self._best_buffers = None if buffers is None else [b.copy() for b in buffers]


class ModelCheckpoint(_Monitor):
    """Save the model (atomically) whenever ``monitor`` improves.

    With ``save_best_only=False`` it saves after every epoch. ``path`` may
    contain ``{epoch}``.
    """

    def __init__(self, path, monitor: str = "val_loss", mode: str = "auto",
                 save_best_only: bool = True):
        super().__init__(monitor, mode)
        self.path, self.save_best_only = str(path), save_best_only

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        from .serialization import save
        if not self.save_best_only:
            save(self.model, self.path.format(epoch=epoch + 1))
            return
        value = self._value(logs)
        if self._improved(value):
            self.best = value
            save(self.model, self.path.format(epoch=epoch + 1))

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class HistoryLogger(Callback):
    """Write the history after each epoch to ``path``: CSV (``.csv``) or JSON.

    The file is rewritten atomically every epoch, so it always holds every
    finished epoch and never a partial line.
    """

    def __init__(self, path):
        self.path = Path(path)
        if self.path.suffix not in (".csv", ".json"):
            raise ValueError(f"HistoryLogger writes .csv or .json, got {self.path}")
        self.rows: list = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        with atomic_open(self.path, "w", newline="") as f:
            if self.path.suffix == ".json":
                json.dump(self.rows, f, indent=1)
            else:
                keys = list(dict.fromkeys(k for row in self.rows for k in row))
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
