"""Splitting patches by image (patient film), stratified by class.

Every patch of one film goes to the same side of a split, so that no lesion
(and none of its augmented copies) is seen in training and again in testing.
Split **before** augmenting: eight rotated/mirrored copies of one lesion on
both sides of a split inflate every metric, which is the likely source of the
MIAS ROI paper's 100 % figure.

Stratification uses one label per film: the largest label among its patches
(with the task orderings of :data:`mammo_demo.patches.TASKS` that is the most
severe: malignant over benign over normal).

Both functions return **patch indices** (sorted int64 arrays) into the arrays
they were given.
"""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def _image_groups(image_ids, labels):
    """Unique films, the patch indices of each, and each film's (maximum) label."""
    ids = np.asarray(image_ids)
    y = np.asarray(labels).astype(np.int64).ravel()
    if ids.ndim != 1 or ids.shape[0] != y.shape[0]:
        raise ValueError(f"image_ids and labels must be 1-D of the same length, "
                         f"got shapes {ids.shape} and {y.shape}")
    if y.size == 0:
        raise ValueError("cannot split an empty set of patches")
    films, inverse = np.unique(ids, return_inverse=True)
    film_label = np.full(films.size, -1, dtype=np.int64)
    np.maximum.at(film_label, inverse, y)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=films.size))[:-1]
    members = np.split(order, bounds)                    # patch indices per film
    return films, members, film_label


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` items into parts proportional to ``fractions`` (largest remainder),
    then move items so that every part with a positive fraction gets at least one."""
    exact = fractions * n
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    for s in np.flatnonzero((counts == 0) & (fractions > 0)):
        donor = int(np.argmax(counts))
        if counts[donor] <= 1:
            break
        counts[donor] -= 1
        counts[s] += 1
    return counts


def split_by_image(image_ids, labels, fractions=(0.7, 0.15, 0.15), seed: int = 0,
                   require_all_classes: bool = True) -> dict:
    """Stratified split of patches by film into ``"train"``, ``"val"`` and ``"test"``.

    For each class (film label), its films are shuffled (``default_rng(seed)``)
    and dealt to the three splits in proportion to ``fractions`` (largest
    remainder, each split with a positive fraction getting at least one film
    of the class when the class has enough films).

    Args:
        image_ids: ``(N,)`` film id of each patch.
        labels: ``(N,)`` integer label of each patch.
        fractions: ``(train, val, test)``, non-negative, summing to 1; a zero
            fraction gives an empty split.
        seed: shuffling seed.
        require_all_classes: raise when some class has fewer films than there
            are non-empty splits (it cannot appear in every split).

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, sorted int64 patch indices.

    Raises:
        ValueError: bad fractions, mismatched inputs, or (with
            ``require_all_classes``) a class with too few films.
    """
    f = np.asarray(fractions, dtype=np.float64).ravel()
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) summing "
                         f"to 1, got {tuple(fractions)}")
    films, members, film_label = _image_groups(image_ids, labels)
    active = int(np.count_nonzero(f > 0))
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in SPLITS}
    for c in np.unique(film_label):
        idx = np.flatnonzero(film_label == c)
        if require_all_classes and idx.size < active:
            raise ValueError(
                f"cannot put class {int(c)} in all {active} splits: it occurs in only "
                f"{idx.size} image(s) ({', '.join(map(str, films[idx]))}); use fewer splits, "
                f"more data, or require_all_classes=False")
        idx = idx[rng.permutation(idx.size)]
        counts = _allocate(idx.size, f)
        start = 0
        for name, k in zip(SPLITS, counts):
            parts[name].extend(idx[start:start + k].tolist())
            start += k
    out = {}
    for name in SPLITS:
        chosen = [members[i] for i in parts[name]]
        out[name] = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    return out


def kfold_by_image(image_ids, labels, k: int, seed: int = 0,
                   require_all_classes: bool = True) -> list:
    """Stratified group k-fold: ``k`` pairs ``(train_idx, test_idx)`` of patch indices.

    Films of each class are shuffled and dealt round-robin over the folds,
    continuing from the fold where the previous class stopped, so folds have
    nearly equal numbers of films and of each class. Every film is in exactly
    one test fold; the test folds partition the patches.

    Raises:
        ValueError: ``k < 2``, more folds than films, or (with
            ``require_all_classes``) a class with fewer than ``k`` films.
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    films, members, film_label = _image_groups(image_ids, labels)
    if films.size < k:
        raise ValueError(f"cannot make {k} folds from {films.size} image(s)")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(films.size, dtype=np.int64)
    nxt = 0
    for c in np.unique(film_label):
        idx = np.flatnonzero(film_label == c)
        if require_all_classes and idx.size < k:
            raise ValueError(f"cannot put class {int(c)} in all {k} test folds: it occurs in only "
                             f"{idx.size} image(s); use fewer folds or require_all_classes=False")
        idx = idx[rng.permutation(idx.size)]
        fold_of[idx] = (nxt + np.arange(idx.size)) % k
        nxt = (nxt + idx.size) % k
    n = sum(len(m) for m in members)
    folds = []
    for j in range(k):
        test_films = np.flatnonzero(fold_of == j)
        test = np.sort(np.concatenate([members[i] for i in test_films])).astype(np.int64)
        mask = np.ones(n, dtype=bool)
        mask[test] = False
        folds.append((np.flatnonzero(mask).astype(np.int64), test))
    return folds
