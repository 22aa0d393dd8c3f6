"""The data of the whole-mammogram experiments: films -> preprocessed arrays -> a patient split.

* :func:`resolve_data` opens a CBIS-DDSM folder (real or phantom), or, without
  one, the **phantom** set of :mod:`mammo_demo.whole.phantom`, generated once
  into the cache folder (``$NNLITE_CACHE``, else ``~/.cache/nnlite``:
  ``whole-phantom-seed<S>-p<N>-s<scale>-<generator hash>``) and reused.
* :func:`load_images` preprocesses every full mammogram with
  :func:`mammo_demo.whole.preprocess` (``method`` ``"crop"`` or ``"naive"``)
  to the thesis' 224x224 input, then shrinks it with area averaging to the
  CPU-friendly ``size`` (64 by default, 112 possible). The arrays are cached in
  ``<cache>/whole-arrays/<key>.npz``, keyed by the folder, its CSVs, the
  method, the size and the preprocessing code, so that a second run skips
  the films.
* Labels (:class:`WholeImages`): ``y_view`` 0 CC / 1 MLO (the sanity task) and
  ``y_malignant``, 1 when **any** abnormality row of the image is
  ``MALIGNANT`` (benign, benign without callback and normal films are 0). Real
  CBIS-DDSM lists one film under a ``Mass-`` and a ``Calc-`` folder when it has
  both kinds of abnormality: such entries are merged into one image per
  (patient, side, view), malignant if any of them is.
* :func:`split_by_patient`: train/validation/test **by patient** (all four
  films of a patient on one side), stratified by whether the patient has a
  malignant image, before any augmentation (there is none: a whole film is
  not rotated; the malignant task weights its classes instead).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import split as splitting

VIEWS = ("CC", "MLO")
VIEW_CLASSES = ["CC", "MLO"]
MALIGNANT_CLASSES = ["not malignant", "malignant"]
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
DEFAULT_SIZE = 64
PREPROCESS_SIZE = 224
ARRAYS_FOLDER = "whole-arrays"


# ------------------------------------------------------------------ provenance
def data_label(is_phantom: bool, phantom_seed=None) -> str:
    """The short label of titles and tables: says PHANTOM for synthetic data."""
    if is_phantom:
        seed = f", seed {phantom_seed}" if phantom_seed is not None else ""
        return f"PHANTOM data (synthetic CBIS-DDSM{seed}, not patients)"
    return "real CBIS-DDSM data"


def _source_hash(*modules) -> str:
    digest = hashlib.sha1()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:10]


def phantom_cache_path(seed: int, patients: int, scale: float, cache_dir=None) -> Path:
    """The cached phantom folder of ``(seed, patients, scale)`` and this generator's code."""
    from ..phantom import default_cache_dir
    from . import phantom
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / (f"whole-phantom-seed{int(seed)}-p{int(patients)}-s{float(scale):g}-"
                   f"{_source_hash(phantom)}")


def ensure_phantom(seed: int = 0, patients: int | None = None, scale: float | None = None,
                   cache_dir=None, progress: bool = True) -> Path:
    """The phantom CBIS-DDSM set in the cache, generated on first use (into a temporary
    sibling folder, renamed into place when complete)."""
    from . import phantom
    patients = phantom.DEFAULT_PATIENTS if patients is None else int(patients)
    scale = phantom.DEFAULT_SCALE if scale is None else float(scale)
    target = phantom_cache_path(seed, patients, scale, cache_dir)
    if (target / phantom.TRUTH_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        if progress:
            print(f"generating the PHANTOM CBIS-DDSM set ({patients} patients, seed {seed}) "
                  f"once into {target}", flush=True)
        phantom.generate(tmp, seed=seed, patients=patients, scale=scale, progress=progress,
                         overwrite=True)
        if not (target / phantom.TRUTH_FILE).is_file():
            if target.exists():
                shutil.rmtree(target)             # an incomplete leftover
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_data(data_dir=None, *, phantom_seed: int = 0, patients: int | None = None,
                 scale: float | None = None, cache_dir=None, progress: bool = True):
    """``(CbisDataset, info)`` of ``data_dir``, or of the cached phantom set when it is None.

    ``info`` is the provenance dict that goes into ``data.json``, the model
    file and every report: ``kind`` (phantom/real), ``data``, ``label``,
    ``folder``, ``phantom_seed``.
    """
    from ..cbis import load_cbis
    if data_dir is None:
        folder = ensure_phantom(phantom_seed, patients, scale, cache_dir, progress)
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise ValueError(f"--data {folder}: no such folder")
    dataset = load_cbis(folder)
    seed = None
    if dataset.is_phantom:
        truth = folder / "truth.json"
        try:
            seed = json.loads(truth.read_text()).get("seed") if truth.is_file() else None
        except (OSError, json.JSONDecodeError):
            seed = None
    kind = "phantom" if dataset.is_phantom else "real"
    info = {"kind": kind, "label": data_label(dataset.is_phantom, seed),
            "data": (f"phantom: PHANTOM (synthetic) CBIS-DDSM films written by "
                     f"mammo_demo.whole.phantom (seed {seed}); NOT patient data"
                     if dataset.is_phantom else "real: CBIS-DDSM folder (patient mammograms)"),
            "folder": str(folder.resolve()), "phantom_seed": seed}
    return dataset, info


# ------------------------------------------------------------------ images
@dataclass
class WholeImages:
    """Preprocessed films, one row per (patient, side, view).

    Attributes:
        x: (N, 1, size, size) float32 in [0, 1], breast on the left.
        y_view: (N,) int64, 0 CC / 1 MLO.
        y_malignant: (N,) int64, 1 when any abnormality of the image is MALIGNANT.
        patient: (N,) patient ids; breast: (N,) ``"<patient>_<side>"``;
        view: (N,) ``"CC"``/``"MLO"``; image_id: (N,) the CBIS-DDSM folder name(s).
        is_phantom: the films are phantom films.
    """

    x: np.ndarray
    y_view: np.ndarray
    y_malignant: np.ndarray
    patient: np.ndarray
    breast: np.ndarray
    view: np.ndarray
    image_id: np.ndarray
    is_phantom: bool = False

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> "WholeImages":
        idx = np.asarray(idx, dtype=np.int64)
        return WholeImages(self.x[idx], self.y_view[idx], self.y_malignant[idx],
                           self.patient[idx], self.breast[idx], self.view[idx],
                           self.image_id[idx], self.is_phantom)

    def labels(self, task: str) -> np.ndarray:
        """``y_view`` for ``task="view"``, ``y_malignant`` for ``"malignant"``."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        return self.y_view if task == "view" else self.y_malignant


TASKS = ("view", "malignant")
CLASSES = {"view": VIEW_CLASSES, "malignant": MALIGNANT_CLASSES}


def image_table(dataset) -> list[dict]:
    """One entry per (patient, side, view) of a :class:`~mammo_demo.cbis.CbisDataset`.

    Entries of the same film under several folders (``Mass-...`` and
    ``Calc-...``) are merged: ``malignant`` if any of them is, the first file
    found is read. Images without a file are left out (counted in ``missing``).
    """
    merged: dict = {}
    for image in dataset.images:
        key = (image.patient_id, image.side, image.view)
        entry = merged.setdefault(key, {"patient": image.patient_id, "side": image.side,
                                        "view": image.view, "malignant": False, "ids": [],
                                        "path": None})
        entry["malignant"] = entry["malignant"] or image_is_malignant(image)
        entry["ids"].append(image.image_id)
        if entry["path"] is None and image.path is not None:
            entry["path"] = image.path
    return [merged[k] for k in sorted(merged)]


def image_is_malignant(image) -> bool:
    """The label rule: malignant when any abnormality row of the image says MALIGNANT."""
    return any(a.pathology == "MALIGNANT" for a in image.abnormalities)


def _arrays_key(dataset, method: str, size: int) -> str:
    import importlib
    preprocess_module = importlib.import_module("mammo_demo.whole.preprocess")
    dicom_module = importlib.import_module("mammo_demo.dicom")
    digest = hashlib.sha1()
    digest.update(str(Path(dataset.root).resolve()).encode())
    for csv_file in sorted(dataset.csv_files):
        digest.update(Path(csv_file).read_bytes())
    digest.update("|".join(i.image_id for i in dataset.images).encode())
    digest.update(_source_hash(preprocess_module, dicom_module).encode())
    return f"{method}-{int(size)}-{digest.hexdigest()[:12]}"


def load_images(dataset, method: str = "crop", size: int = DEFAULT_SIZE, cache_dir=None,
                progress: bool = True, use_cache: bool = True) -> tuple[WholeImages, dict]:
    """Preprocess every film of ``dataset`` (or read the cached arrays).

    Each film goes through ``preprocess(path, method, side=<the CSV's side>,
    size=224)`` and is shrunk to ``size`` with area averaging. Returns
    ``(images, facts)`` with facts ``cache`` (the .npz), ``from_cache``,
    ``missing`` (images without a file), ``seconds``.
    """
    import time

    from ..phantom import default_cache_dir
    from .preprocess import preprocess, resize_area
    if method not in ("crop", "naive"):
        raise ValueError(f"--method must be 'crop' or 'naive', got {method!r}")
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= PREPROCESS_SIZE:
        raise ValueError(f"--size must be an integer in 16..{PREPROCESS_SIZE}, got {size!r}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = root / ARRAYS_FOLDER / (_arrays_key(dataset, method, size) + ".npz")
    start = time.perf_counter()
    entries = image_table(dataset)
    missing = [e for e in entries if e["path"] is None]
    entries = [e for e in entries if e["path"] is not None]
    if not entries:
        raise ValueError(f"{dataset.root}: no full-mammogram DICOM file found for any CSV row")
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            x = z["x"]
        from_cache = len(x) == len(entries)
    else:
        from_cache = False
    if not from_cache:
        from tqdm import tqdm
        x = np.zeros((len(entries), 1, size, size), dtype=np.float32)
        for i, entry in enumerate(tqdm(entries, desc=f"preprocessing ({method})", unit="film",
                                       disable=not progress)):
            try:
                film, _ = preprocess(entry["path"], method=method, side=entry["side"],
                                     size=PREPROCESS_SIZE, keep_stages=False)
            except ValueError as e:
                raise ValueError(f"{entry['path']}: {e}") from None
            x[i, 0] = film[0] if size == PREPROCESS_SIZE else resize_area(film[0], size, size)
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
            np.savez(tmp, x=x)
            os.replace(tmp, cache)
    images = WholeImages(
        x=x.astype(np.float32, copy=False),
        y_view=np.array([VIEWS.index(e["view"]) for e in entries], dtype=np.int64),
        y_malignant=np.array([int(e["malignant"]) for e in entries], dtype=np.int64),
        patient=np.array([e["patient"] for e in entries]),
        breast=np.array([f"{e['patient']}_{e['side']}" for e in entries]),
        view=np.array([e["view"] for e in entries]),
        image_id=np.array(["+".join(e["ids"]) for e in entries]),
        is_phantom=bool(dataset.is_phantom))
    facts = {"cache": str(cache), "from_cache": bool(from_cache), "missing": len(missing),
             "method": method, "size": int(size), "preprocess_size": PREPROCESS_SIZE,
             "seconds": round(time.perf_counter() - start, 2)}
    return images, facts


# ------------------------------------------------------------------ the split
def patient_labels(patients, y_malignant) -> dict:
    """``{patient: 1 if any of the patient's images is malignant}`` (the stratum)."""
    out: dict = {}
    for p, y in zip(np.asarray(patients).tolist(), np.asarray(y_malignant).tolist()):
        out[p] = max(out.get(p, 0), int(y))
    return out


def split_by_patient(patients, y_malignant, fractions=SPLIT_FRACTIONS, seed: int = 0) -> dict:
    """``{"train", "val", "test"}`` image indices, by patient, stratified by malignancy.

    All images of a patient land in one part; within each stratum (patients
    with / without a malignant image) patients are dealt in proportion to
    ``fractions`` (:func:`mammo_demo.split.split_by_image` with patients as the groups).
    """
    patients = np.asarray(patients)
    split = splitting.split_by_image(patients, np.asarray(y_malignant), fractions=fractions,
                                     seed=seed, require_all_classes=False)
    check_disjoint(patients, split)
    return split


def check_disjoint(patients, split: dict) -> None:
    """RuntimeError when a patient has images on two sides of the split."""
    patients = np.asarray(patients)
    sides = {k: set(patients[v].tolist()) for k, v in split.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sides[a] & sides[b]
        if both:
            raise RuntimeError(f"patients {sorted(both)[:5]} are in both {a} and {b}")


def split_summary(images: WholeImages, split: dict) -> dict:
    """Images, patients, breasts and per-class counts of each part (for data.json)."""
    out = {}
    for part, idx in split.items():
        sub = images.subset(idx)
        out[part] = {"images": len(sub), "patients": int(len(set(sub.patient.tolist()))),
                     "breasts": int(len(set(sub.breast.tolist()))),
                     "CC": int(np.sum(sub.y_view == 0)), "MLO": int(np.sum(sub.y_view == 1)),
                     "malignant": int(np.sum(sub.y_malignant == 1)),
                     "not_malignant": int(np.sum(sub.y_malignant == 0))}
    return out
