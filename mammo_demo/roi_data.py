"""The data of the region-of-interest experiment: which folder, which patches, which split.

* :func:`resolve_data` opens a MIAS folder, or the cached phantom set, and
  returns its **provenance** (phantom or real, folder, seed, image size),
  the dict that travels with the model file and into every report;
* :func:`make_splits` splits the patches **by image** (one 70/15/15 split, or
  K folds), before any augmentation, so that no mammogram has patches on
  two sides;
* :func:`prepare_training_set` augments the training split only (4
  rotations x mirror) and balances it;
* :func:`check_disjoint` fails loudly if an image sits on two sides.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import patches
from . import split as splitting
from .evaluation import counts
from .mias import load_mias

SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
#: with ``folds > 1``: how the images outside a fold's test set are split into train and val
INNER_FRACTIONS = (0.85, 0.15, 0.0)


def data_label(is_phantom: bool, phantom_seed=None) -> str:
    """The short label printed in titles: says PHANTOM for synthetic data."""
    if is_phantom:
        seed = f", seed {phantom_seed}" if phantom_seed is not None else ""
        return f"PHANTOM data (synthetic mini-MIAS{seed}, not patients)"
    return "real mini-MIAS data"


def data_description(is_phantom: bool, phantom_seed=None) -> str:
    """The ``"data"`` string of the JSON files."""
    if is_phantom:
        return (f"phantom: PHANTOM (synthetic) mini-MIAS written by mammo_demo.phantom "
                f"(seed {phantom_seed}); NOT patient data")
    return "real: mini-MIAS database folder (patient mammograms)"


def resolve_data(data_dir=None, phantom_seed: int = 0, image_size: int | None = None,
                 progress: bool = True, phantom_images: int = 322):
    """Open the MIAS folder ``data_dir``, or the cached phantom set when it is ``None``.

    Without ``data_dir`` the phantom set of ``(phantom_seed, image_size or
    1024, phantom_images)`` is generated once into the cache folder
    (:func:`mammo_demo.phantom.ensure_phantom`, ``$NNLITE_CACHE`` or
    ``~/.cache/nnlite``) and reused afterwards.

    Returns ``(dataset, info)``: the :class:`~mammo_demo.mias.MiasDataset`
    and a provenance dict (``kind``, ``data``, ``label``, ``folder``,
    ``phantom_seed``, ``image_size``).
    """
    if data_dir is None:
        from .phantom import ensure_phantom
        size = 1024 if image_size is None else int(image_size)
        folder = ensure_phantom(seed=phantom_seed, image_size=size, progress=progress,
                                n_images=phantom_images)
        dataset = load_mias(folder)
    else:
        dataset = load_mias(Path(data_dir), image_size)
    seed = dataset.summary().get("phantom_seed") if dataset.is_phantom else None
    if isinstance(seed, str) and seed.isdigit():
        seed = int(seed)
    info = {"kind": "phantom" if dataset.is_phantom else "real",
            "data": data_description(dataset.is_phantom, seed),
            "label": data_label(dataset.is_phantom, seed),
            "folder": str(dataset.folder), "phantom_seed": seed,
            "image_size": int(dataset.image_size)}
    return dataset, info


def make_splits(patchset, seed: int = 0, folds: int = 1) -> list[dict]:
    """Index splits by image: ``[{"train", "val", "test"}]``, one dict per fold.

    ``folds == 1``: one stratified 70/15/15 split by image. ``folds == K``:
    stratified K-fold by image for the test sets; in each fold the remaining
    images are split again by image into training (85%) and validation (15%).
    Every index array points into ``patchset``.
    """
    ids, y = np.asarray(patchset.image_ids), np.asarray(patchset.y)
    if folds == 1:
        s = splitting.split_by_image(ids, y, fractions=SPLIT_FRACTIONS, seed=seed)
        return [{k: np.asarray(s[k], dtype=np.int64) for k in ("train", "val", "test")}]
    out = []
    for train_val, test in splitting.kfold_by_image(ids, y, folds, seed=seed):
        train_val = np.asarray(train_val, dtype=np.int64)
        inner = splitting.split_by_image(ids[train_val], y[train_val], fractions=INNER_FRACTIONS,
                                         seed=seed)
        out.append({"train": train_val[inner["train"]], "val": train_val[inner["val"]],
                    "test": np.asarray(test, dtype=np.int64)})
    return out


def check_disjoint(image_ids, splits) -> None:
    """Fail loudly if any image has patches on two sides of a split (the paper's leak)."""
    ids = np.asarray(image_ids)
    for i, sp in enumerate(splits, start=1):
        sides = {k: set(ids[v].tolist()) for k, v in sp.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = sides[a] & sides[b]
            if both:
                raise RuntimeError(f"split {i}: images {sorted(both)[:5]} are in both {a} and {b}")


def split_summary(patchset, splits) -> list[dict]:
    """Patches, images and per-class counts of every part of every split (for data.json)."""
    classes = list(patchset.classes)
    ids = np.asarray(patchset.image_ids)
    return [{part: {"patches": int(len(idx)), "images": int(len(np.unique(ids[idx]))),
                    "per_class": counts(patchset.y[idx], classes)}
             for part, idx in sp.items()} for sp in splits]


def prepare_training_set(train, balance: str, seed: int):
    """Augment (8 transforms) then balance the training :class:`PatchSet`.

    Returns ``(patchset, class_weights or None, counts)``; ``counts`` records
    the class counts after augmentation and after balancing.
    """
    augmented = patches.augment_eight(train)
    record = {"after_augmentation": counts(augmented.y, augmented.classes)}
    weights = None
    if balance == "undersample":
        augmented = patches.balance_undersample(augmented, seed=seed)
    elif balance == "weights":
        weights = np.asarray(patches.class_weights(augmented.y, len(augmented.classes)),
                             dtype=np.float64)
        record["class_weights"] = [float(w) for w in weights]
    record["after_balancing"] = counts(augmented.y, augmented.classes)
    return augmented, weights, record
