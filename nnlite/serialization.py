"""Saving and loading models and training checkpoints.

One ``.npz`` file holds everything, with no pickled code:

* ``__config__``: JSON of the architecture: the model's spec
  ``{"type", "name", "config"}``, where a container's config holds its
  children's specs (files written before containers existed hold
  ``{"name", "layers": [...]}`` and still load);
* ``param/<k>``: the k-th parameter's values, in ``model.parameters()`` order;
* ``buffer/<k>``: the k-th buffer (running statistics), in ``model.buffers()`` order;
* ``__meta__``: JSON with the format and nnlite version, each parameter's
  dotted name, shape and trainable flag, each buffer's name and shape;
* ``__user__``: optional JSON metadata of the caller (``save(..., metadata=)``;
  the demo stores the data provenance there), read by :func:`read_metadata`;
* for checkpoints, ``state/...``: optimizer state, random-generator states
  and any JSON-able training state (epoch, history, callback state).

Files are written atomically: to a temporary file in the same folder, flushed
to disk, then renamed over the target. An interrupted save leaves the old
file intact (or none), never a half-written one; a truncated, corrupt or
hostile file is refused on load with one line naming it (a ``ValueError``):
only the entries named above are read, each within the size its header and
the metadata allow, and a model whose declared size exceeds ``max_params``
(:data:`MAX_PARAMS` by default) is refused before anything is allocated.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy

from .backend import device_of, get_array_module, to_device, to_numpy
from .layer import Layer, is_spec, layer_spec
from .version import __version__

FORMAT_VERSION = 2

#: ``load`` refuses a model declaring more parameter and buffer values than this
#: (the thesis' AlexNet has 58 M, ResNet50 23.6 M) unless ``max_params`` says otherwise.
MAX_PARAMS = 200_000_000

#: the largest JSON entry (config, metadata, state) a file may hold, in bytes.
MAX_JSON_BYTES = 64 * 2**20

#: the deepest nesting of containers a config may hold.
MAX_DEPTH = 64


# --------------------------------------------------------------- low level
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stale_temps(path: Path) -> list:
    """Temporary files of earlier writes to ``path`` whose writing process is gone."""
    out = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if parts and parts[0].isdigit():
            pid = int(parts[0])
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
                continue                                    # still running: its file
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        out.append(tmp)
    return out


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path``; on success flush, fsync and rename it to ``path``.

    A crash or an exception inside the ``with`` block leaves ``path`` as it was
    (the temporary file is removed), so a reader never sees a half-written file.
    A process killed mid-write cannot remove its temporary file: the next write
    to the same ``path`` removes the ones whose process is gone (their names carry
    the writer's pid). The file gets the mode the umask gives (like ``open``),
    not ``mkstemp``'s 0600. ``mode`` is ``"wb"`` or ``"w"``; ``kwargs`` go to
    :func:`open` (``encoding``, ``newline``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temps(path):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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


class NpzReader:
    """Careful reader of one .npz: lists entries, reads one only when asked, within bounds.

    Every failure is a ``ValueError`` that names the file: not a zip archive, a
    ``.npy`` instead of a ``.npz``, a truncated or corrupt member, an object
    (pickled) array, or a member larger than its caller allows.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such model file: {self.path}")
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder, not an nnlite model file")
        with open(self.path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise ValueError(f"{self.path} is a single .npy array, not an nnlite model file (.npz)")
        try:
            self._zip = zipfile.ZipFile(self.path)
            self.sizes = {info.filename[:-4]: info.file_size for info in self._zip.infolist()
                          if info.filename.endswith(".npy")}
        except Exception as e:       # BadZipFile, OSError, NotImplementedError, struct/zlib errors
            raise ValueError(f"{self.path} is not a readable nnlite file (not an .npz archive, "
                             f"truncated or corrupt?): {e}") from None

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __contains__(self, key) -> bool:
        return key in self.sizes

    def keys(self) -> list:
        return list(self.sizes)

    def array(self, key: str, max_bytes: int):
        """The entry ``key`` as a NumPy array, refused when its stored size exceeds ``max_bytes``."""
        if key not in self.sizes:
            raise ValueError(f"{self.path} has no entry {key!r} (not an nnlite file, or damaged)")
        if self.sizes[key] > max_bytes + 4096:                 # + the .npy header
            raise ValueError(f"{self.path}: entry {key!r} holds {self.sizes[key]:,} bytes, more than "
                             f"the {max_bytes:,} its metadata allows (damaged or hostile file)")
        try:
            with self._zip.open(key + ".npy") as f:
                return numpy.lib.format.read_array(f, allow_pickle=False)
        except MemoryError:
            raise
        except Exception as e:       # BadZipFile, CRC, truncation, bad header, zlib, pickle...
            reason = "it holds a pickled object array" if "pickle" in str(e) else str(e)
            raise ValueError(f"{self.path}: entry {key!r} is not readable ({reason}); "
                             f"truncated or corrupt file?") from None

    def json(self, key: str):
        """The JSON entry ``key`` (a 0-d string array), parsed; depth and size bounded."""
        a = self.array(key, MAX_JSON_BYTES)
        if a.ndim != 0 or a.dtype.kind != "U":
            raise ValueError(f"{self.path}: entry {key!r} is not JSON text")
        return parse_json(str(a), f"{self.path}: entry {key!r}")

    def all_arrays(self) -> dict:
        """Every entry (for checkpoints, whose state entries are listed in their JSON)."""
        return {k: self.array(k, MAX_PARAMS * 8) for k in self.sizes}


def parse_json(text: str, where: str):
    """``json.loads`` with its failures (bad syntax, absurd nesting) as one ValueError line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply (damaged or hostile file)") from None
    except ValueError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None


def read_npz(path) -> dict:
    """Read every array of an .npz; a corrupt or truncated file names itself."""
    with NpzReader(path) as reader:
        return reader.all_arrays()


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
def model_arrays(model: Layer, metadata: dict | None = None) -> dict:
    """The entries of a model file: config, meta, parameters, buffers, user metadata."""
    named_params, named_buffers = model.named_parameters(), model.named_buffers()
    meta = {"format": FORMAT_VERSION, "nnlite_version": _version(),
            "params": [{"name": n, "shape": list(p.shape), "trainable": p.trainable}
                       for n, p in named_params],
            "buffers": [{"name": n, "shape": list(b.shape), "dtype": str(b.dtype)}
                        for n, b in named_buffers]}
    arrays = {"__config__": _json_array(layer_spec(model)), "__meta__": _json_array(meta)}
    if metadata is not None:
        try:
            arrays["__user__"] = _json_array(metadata)
        except (TypeError, ValueError) as e:
            raise ValueError(f"nnlite.save: metadata must be JSON-able: {e}") from None
    for k, (_, p) in enumerate(named_params):
        arrays[f"param/{k}"] = to_numpy(p.data)
    for k, (_, b) in enumerate(named_buffers):
        arrays[f"buffer/{k}"] = to_numpy(b.data)
    return arrays


def save(model: Layer, path, metadata: dict | None = None) -> Path:
    """Save architecture, weights and buffers of ``model`` to ``path`` (.npz), atomically.

    ``metadata`` is any JSON-able dict kept beside the model (the demo stores
    where the training data came from); :func:`read_metadata` returns it.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"nnlite.save expects an nnlite model (a Layer such as Sequential), "
                        f"got {type(model).__name__}")
    return atomic_savez(path, model_arrays(model, metadata))


def read_metadata(path) -> dict:
    """The ``metadata`` dict saved with a model (``{}`` if none), without building the model."""
    with NpzReader(path) as reader:
        if "__user__" not in reader:
            return {}
        value = reader.json("__user__")
    if not isinstance(value, dict):
        raise ValueError(f"{path}: its metadata entry is not a JSON object")
    return value


# -------------------------------------------------------- building models
def _layer_class(type_name, where: str):
    cls = Layer.registry.get(type_name) if isinstance(type_name, str) else None
    if cls is None or type_name.startswith("_") or type_name.rsplit(".", 1)[-1].startswith("_"):
        raise ValueError(f"{where}: unknown layer type {type_name!r}")
    if cls.forward is Layer.forward or cls.backward is Layer.backward:
        raise ValueError(f"{where}: {type_name!r} is not a usable layer (no forward/backward)")
    return cls


def _declared_size(spec: dict, where: str, depth: int = 0) -> int:
    """Parameter and buffer values a spec will allocate, computed without allocating."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: containers nested more than {MAX_DEPTH} deep")
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the config of {spec.get('type')!r} is not a JSON object")
    total = 0
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if is_spec(v):
                total += _declared_size(v, f"{where}.{key}", depth + 1)
    ints = {k: v for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)}

    def size(v):
        return math.prod(v) if isinstance(v, list) else v if isinstance(v, int) else 1

    kind = spec.get("type")
    if kind == "Dense":
        total += ints.get("in_features", 0) * ints.get("out_features", 0) + ints.get("out_features", 0)
    elif kind in ("Conv2D", "ConvTranspose2D"):
        groups = max(1, ints.get("groups", 1))
        total += (ints.get("in_channels", 0) * ints.get("out_channels", 0) // groups
                  * size(config.get("kernel_size", 1)) + ints.get("out_channels", 0))
    elif isinstance(kind, str) and kind.startswith("BatchNorm"):
        total += 4 * ints.get("num_features", 0)
    return total


def _build(spec, where: str, depth: int = 0) -> Layer:
    """Rebuild one layer from its spec; children's specs are built first."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: containers nested more than {MAX_DEPTH} deep")
    if not is_spec(spec):
        raise ValueError(f"{where}: a layer entry needs 'type' and 'config', got {str(spec)[:80]}")
    cls = _layer_class(spec["type"], where)
    config = spec["config"]
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the config of {spec['type']} is not a JSON object")
    kwargs = {}
    for key, value in config.items():
        if is_spec(value):
            value = _build(value, f"{where}.{key}", depth + 1)
        elif isinstance(value, list) and value and all(is_spec(v) or v is None for v in value) \
                and any(is_spec(v) for v in value):
            value = [None if v is None else _build(v, f"{where}.{key}.{i}", depth + 1)
                     for i, v in enumerate(value)]
        kwargs[key] = value
    try:
        layer = cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {spec['type']} cannot be built from its config ({e})") from None
    except (ValueError, KeyError, IndexError) as e:
        raise ValueError(f"{where}: {spec['type']}: {e}") from None
    name = spec.get("name")
    if isinstance(name, str) and name:
        layer.name = name
    return layer


def _legacy_spec(config: dict) -> dict:
    """Files of format 1 hold ``{"name", "layers": [...]}`` for the top Sequential."""
    if "type" not in config and "layers" in config:
        return {"type": "Sequential", "name": config.get("name", "Sequential"),
                "config": {"layers": config["layers"]}}
    return config


def build_from_config(config: dict, where: str = "config", max_params: int | None = MAX_PARAMS) -> Layer:
    """Rebuild an (untrained) model from its spec (``layer_spec(model)``), links resolved."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the architecture is not a JSON object")
    spec = _legacy_spec(config)
    declared = _declared_size(spec, where)
    if max_params is not None and declared > max_params:
        raise ValueError(f"{where}: the architecture declares {declared:,} parameter values, more "
                         f"than the limit of {max_params:,} (pass max_params=None to load it anyway)")
    model = _build(spec, where)
    if spec is not config and model.name == "Sequential":
        model.name = "sequential"
    for _, layer in [("", model)] + model.named_layers():
        layer.resolve_links(model)
    return model


def _check_arrays(arrays: dict, meta: dict, model: Layer, where: str) -> list:
    """Problems between the model and the stored arrays (their real shapes, not the metadata's)."""
    problems = []
    owner = {id(p): type(layer).__name__ for _, layer in [("", model)] + model.named_layers()
             for p in layer._own_parameters()}
    named = [(f"{name} of {owner.get(id(p), '?')}", p) for name, p in model.named_parameters()]
    saved = meta.get("params", [])
    if len(saved) != len(named):
        problems.append(f"the file has {len(saved)} parameters, the model {len(named)}")
    for k, (name, p) in enumerate(named):
        stored = arrays.get(f"param/{k}")
        label = saved[k]["name"] if k < len(saved) and isinstance(saved[k], dict) else "?"
        if stored is None:
            problems.append(f"parameter {k} ({name}): missing from the file")
        elif tuple(stored.shape) != tuple(p.shape):
            problems.append(f"parameter {k} ({name}): model shape {tuple(p.shape)}, "
                            f"file has {label} with shape {tuple(stored.shape)}")
        elif stored.dtype.kind != "f":
            problems.append(f"parameter {k} ({name}): stored as {stored.dtype}, not floating point")
    buffers, saved_b = model.named_buffers(), meta.get("buffers")
    if saved_b is not None:            # format 1 files have no buffers (and no layers with any)
        if len(saved_b) != len(buffers):
            problems.append(f"the file has {len(saved_b)} buffers, the model {len(buffers)}")
        for k, (name, b) in enumerate(buffers):
            stored = arrays.get(f"buffer/{k}")
            if stored is None:
                problems.append(f"buffer {k} ({name}): missing from the file")
            elif tuple(stored.shape) != tuple(b.shape):
                problems.append(f"buffer {k} ({name}): model shape {tuple(b.shape)}, file has "
                                f"shape {tuple(stored.shape)}")
    elif buffers:
        problems.append(f"the file has no buffers, the model {len(buffers)} ({buffers[0][0]}, ...)")
    return problems


def _read_model_arrays(reader: NpzReader, model: Layer, meta: dict) -> dict:
    """Read exactly the parameter and buffer entries the model needs, each size-bounded."""
    arrays = {}
    for k, (_, p) in enumerate(model.named_parameters()):
        key = f"param/{k}"
        if key in reader:
            arrays[key] = reader.array(key, p.size * 8)
    for k, (_, b) in enumerate(model.named_buffers()):
        key = f"buffer/{k}"
        if key in reader:
            arrays[key] = reader.array(key, b.size * 8)
    return arrays


def _meta(reader: NpzReader) -> dict:
    meta = reader.json("__meta__")
    if not isinstance(meta, dict) or not isinstance(meta.get("params", []), list):
        raise ValueError(f"{reader.path}: its __meta__ entry is not an nnlite parameter list")
    return meta


def load_weights(model: Layer, path_or_arrays) -> Layer:
    """Copy saved weights (and buffers) into ``model``; mismatches are listed by name and shape.

    The shapes checked are those of the stored arrays themselves, so a file whose
    metadata and arrays disagree is refused rather than broadcast.
    """
    if isinstance(path_or_arrays, dict):
        arrays, where = path_or_arrays, "weights"
        meta = _from_json_array(arrays["__meta__"])
    else:
        where = str(path_or_arrays)
        with NpzReader(path_or_arrays) as reader:
            if "__meta__" not in reader:
                raise ValueError(f"{where} is not an nnlite model file (no __meta__ entry)")
            meta = _meta(reader)
            arrays = _read_model_arrays(reader, model, meta)
    problems = _check_arrays(arrays, meta, model, where)
    if problems:
        raise ValueError(f"weights in {where} do not fit this architecture:\n  " + "\n  ".join(problems))
    saved = meta["params"]
    for k, (_, p) in enumerate(model.named_parameters()):
        data = arrays[f"param/{k}"].astype(p.dtype, copy=False)
        p.data = to_device(data, "gpu") if _on_gpu(p.data) else data.copy()
        p.trainable = bool(saved[k].get("trainable", True)) if isinstance(saved[k], dict) else True
        p.grad = get_array_module(p.data).zeros_like(p.data)
    for k, (_, b) in enumerate(model.named_buffers()):
        data = arrays[f"buffer/{k}"].astype(b.dtype, copy=False)
        b.data = to_device(data, "gpu") if _on_gpu(b.data) else data.copy()
    model._drop_caches()
    return model


def load(path, device: str = "cpu", max_params: int | None = MAX_PARAMS) -> Layer:
    """Rebuild a model saved with :func:`save` (architecture, weights, buffers) on ``device``.

    Files hold NumPy arrays whatever device the model was saved from, so a
    model trained on the GPU loads on a CPU-only machine; ``device="gpu"``
    moves it to the GPU afterwards (a clear error when CuPy or a GPU is missing).
    A damaged or hostile file raises ``ValueError`` naming it; an architecture
    declaring more than ``max_params`` values is refused before it is built.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"nnlite.load: device must be 'cpu' or 'gpu', got {device!r}")
    with NpzReader(path) as reader:
        if "__config__" not in reader or "__meta__" not in reader:
            raise ValueError(f"{path} is not an nnlite model file (no __config__/__meta__ entries)")
        config = reader.json("__config__")
        meta = _meta(reader)
        model = build_from_config(config, where=str(path), max_params=max_params)
        arrays = _read_model_arrays(reader, model, meta)     # each entry read once
    first = arrays.get("param/0")
    if first is not None and first.dtype in (numpy.float32, numpy.float64) and first.dtype != model.dtype:
        model.astype(first.dtype)                             # a float64 file gives a float64 model
    problems = _check_arrays(arrays, meta, model, str(path))
    if problems:
        raise ValueError(f"{path}: its weights do not fit its own architecture (damaged file?): "
                         + "; ".join(problems[:3]))
    arrays["__meta__"] = _json_array(meta)
    return load_weights(model, arrays).to_device(device)


# ------------------------------------------------------------ checkpoints
def save_checkpoint(path, model: Layer, optimizer=None, state: dict | None = None,
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


def load_checkpoint(path, model: Layer | None = None, optimizer=None):
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
    return __version__
