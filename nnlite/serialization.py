"""Saving and loading models and training checkpoints.

One ``.npz`` file holds everything, with no pickled code:

* ``__config__``: JSON of the architecture (layer type names and their
  constructor arguments, from ``Sequential.get_config()``);
* ``param/<k>``: the k-th parameter's values, in ``model.parameters()`` order;
* ``__meta__``: JSON with the nnlite version, each parameter's name, shape
  and trainable flag;
* for checkpoints, ``state/...``: optimizer state, random-generator states
  and any JSON-able training state (epoch, history, callback state).

Files are written atomically: to a temporary file in the same folder, flushed
to disk, then renamed over the target. An interrupted save leaves the old
file intact (or none), never a half-written one; a truncated or corrupt file
is refused on load with an error naming it.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy

from .backend import device_of, get_array_module, to_device, to_numpy
from .layer import Layer
from .sequential import Sequential

FORMAT_VERSION = 1


# --------------------------------------------------------------- low level
@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path``; on success flush, fsync and rename it to ``path``.

    A crash or an exception inside the ``with`` block leaves ``path`` as it was
    (the temporary file is removed), so a reader never sees a half-written file.
    ``mode`` is ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`open` (``encoding``, ``newline``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_savez(path, arrays: dict) -> Path:
    """Write ``arrays`` to ``path`` as .npz via a temporary file and rename."""
    with atomic_open(path, "wb") as f:
        numpy.savez(f, **arrays)
    return Path(path)


def read_npz(path) -> dict:
    """Read every array of an .npz; a corrupt or truncated file names itself."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    try:
        with numpy.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a readable nnlite file (truncated or corrupt?): {e}") from None


def _json_array(obj) -> numpy.ndarray:
    return numpy.array(json.dumps(obj))


def _from_json_array(a) -> object:
    return json.loads(str(a))


def flatten_state(state, prefix: str, out: dict, scalars: dict) -> None:
    """Split a nested dict of arrays/scalars into npz arrays and a JSON dict."""
    for key, value in state.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flatten_state(value, name, out, scalars)
        elif hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0:
            out[name] = to_numpy(value)
        else:
            scalars[name] = value.item() if hasattr(value, "item") else value


def unflatten_state(arrays: dict, scalars: dict, prefix: str) -> dict:
    """Inverse of :func:`flatten_state` for the entries under ``prefix``."""
    root: dict = {}
    items = [(k, v) for k, v in arrays.items() if k.startswith(prefix + "/")]
    items += [(k, v) for k, v in scalars.items() if k.startswith(prefix + "/")]
    for key, value in items:
        parts = key[len(prefix) + 1:].split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _int_keys(root)


def _int_keys(d):
    """JSON turns int keys into strings; turn digit keys back into ints."""
    if not isinstance(d, dict):
        return d
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): _int_keys(v) for k, v in d.items()}


# ------------------------------------------------------------ model files
def model_arrays(model: Sequential) -> dict:
    params = model.parameters()
    meta = {"format": FORMAT_VERSION, "nnlite_version": _version(),
            "params": [{"name": n, "shape": list(p.shape), "trainable": p.trainable}
                       for n, p in model.named_parameters()]}
    arrays = {"__config__": _json_array(model.get_config()), "__meta__": _json_array(meta)}
    for k, p in enumerate(params):
        arrays[f"param/{k}"] = to_numpy(p.data)
    return arrays


def save(model: Sequential, path) -> Path:
    """Save architecture and weights of ``model`` to ``path`` (.npz), atomically."""
    if not isinstance(model, Sequential):
        raise TypeError(f"nnlite.save expects a Sequential model, got {type(model).__name__}")
    return atomic_savez(path, model_arrays(model))


def build_from_config(config: dict) -> Sequential:
    """Rebuild an (untrained) model from ``Sequential.get_config()`` output."""
    layers = []
    for i, spec in enumerate(config["layers"]):
        cls = Layer.registry.get(spec["type"])
        if cls is None:
            raise ValueError(f"layer {i}: unknown layer type {spec['type']!r}")
        layer = cls(**spec.get("config", {}))
        layer.name = spec.get("name", layer.name)
        layers.append(layer)
    return Sequential(layers, name=config.get("name", "sequential"))


def load_weights(model: Sequential, path_or_arrays) -> Sequential:
    """Copy saved weights into ``model``; mismatches are listed by layer and shape."""
    arrays = read_npz(path_or_arrays) if not isinstance(path_or_arrays, dict) else path_or_arrays
    meta = _from_json_array(arrays["__meta__"])
    saved = meta["params"]
    named = model.named_parameters()
    problems = []
    if len(saved) != len(named):
        problems.append(f"the file has {len(saved)} parameters, the model {len(named)}")
    for k, ((name, p), s) in enumerate(zip(named, saved)):
        if tuple(p.shape) != tuple(s["shape"]):
            problems.append(f"parameter {k} ({name}): model shape {tuple(p.shape)}, "
                            f"file has {s['name']} with shape {tuple(s['shape'])}")
    if problems:
        raise ValueError("weights do not fit this architecture:\n  " + "\n  ".join(problems))
    for k, (_, p) in enumerate(named):
        data = arrays[f"param/{k}"].astype(p.dtype, copy=False)
        p.data = to_device(data, "gpu") if _on_gpu(p.data) else data.copy()
        p.trainable = bool(saved[k]["trainable"])
        p.grad = get_array_module(p.data).zeros_like(p.data)
    return model


def load(path, device: str = "cpu") -> Sequential:
    """Rebuild a model saved with :func:`save` (architecture and weights) on ``device``.

    Files hold NumPy arrays whatever device the model was saved from, so a
    model trained on the GPU loads on a CPU-only machine; ``device="gpu"``
    moves it to the GPU afterwards (a clear error when CuPy or a GPU is missing).
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"nnlite.load: device must be 'cpu' or 'gpu', got {device!r}")
    arrays = read_npz(path)
    if "__config__" not in arrays or "__meta__" not in arrays:
        raise ValueError(f"{path} is not an nnlite model file (no __config__/__meta__ entries)")
    model = build_from_config(_from_json_array(arrays["__config__"]))
    dtype = arrays["param/0"].dtype if "param/0" in arrays else None
    if dtype is not None and dtype != model.dtype:
        model.astype(dtype)
    return load_weights(model, arrays).to_device(device)


# ------------------------------------------------------------ checkpoints
def save_checkpoint(path, model: Sequential, optimizer=None, state: dict | None = None,
                    generators: dict | None = None) -> Path:
    """Save model, optimizer state, generator states and training state, atomically.

    ``state`` is JSON-like (dicts, lists, numbers, strings) and may hold
    arrays anywhere inside (e.g. the best weights an early-stopping callback
    keeps): each array is stored as its own npz entry and put back in its
    place by :func:`load_checkpoint`.
    """
    arrays = model_arrays(model)
    scalars: dict = {}
    if optimizer is not None:
        arrays["__optimizer__"] = _json_array(type(optimizer).__name__)
        flatten_state(optimizer.state_dict(), "state/optimizer", arrays, scalars)
    arrays["__state__"] = _json_array({"scalars": scalars,
                                       "state": _arrays_out(state or {}, arrays),
                                       "generators": generators or {}})
    return atomic_savez(path, arrays)


def _arrays_out(obj, arrays: dict):
    """A JSON-able copy of ``obj``: every array moves to a new entry ``arrays[key]``
    (``key = "state/arrays/<n>"``) and is replaced by ``{"__array__": key}``."""
    if isinstance(obj, dict):
        return {k: _arrays_out(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_arrays_out(v, arrays) for v in obj]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        key = f"state/arrays/{len(arrays)}"      # len(arrays) grows: keys are unique
        arrays[key] = to_numpy(obj)
        return {"__array__": key}
    return obj


def _arrays_in(obj, arrays: dict):
    """Inverse of :func:`_arrays_out`: put the NumPy arrays back in place."""
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _arrays_in(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays_in(v, arrays) for v in obj]
    return obj


def load_checkpoint(path, model: Sequential | None = None, optimizer=None):
    """Load a checkpoint; returns ``(model, state, generators)``.

    When ``model`` is given, weights are loaded into it (shapes checked);
    otherwise the model is rebuilt from the file. When ``optimizer`` is
    given, its state is restored (it must be of the type that was saved).
    """
    arrays = read_npz(path)
    if "__state__" not in arrays:
        raise ValueError(f"{path} is a model file, not a training checkpoint")
    model = load_weights(model, arrays) if model is not None else load(path)
    extra = _from_json_array(arrays["__state__"])
    if optimizer is not None:
        saved_type = _from_json_array(arrays.get("__optimizer__", _json_array(None)))
        if saved_type != type(optimizer).__name__:
            raise ValueError(f"{path} holds {saved_type} state, cannot restore into "
                             f"{type(optimizer).__name__}")
        optimizer.load_state_dict(unflatten_state(arrays, extra["scalars"], "state/optimizer"))
    return model, _arrays_in(extra["state"], arrays), extra["generators"]


def _on_gpu(a) -> bool:
    return device_of(a) == "gpu"


def _version() -> str:
    from . import __version__
    return __version__
