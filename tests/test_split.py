"""Splitting by image, stratified; split before augmenting; stratified group k-fold."""
import numpy as np
import pytest

from mammo_demo.patches import augment_eight, extract_patches
from mammo_demo.phantom import generate_phantom
from mammo_demo.split import kfold_by_image, split_by_image


def grouped(n_images=40, seed=0):
    """Patch-level ids and labels: 1-3 patches per image, image labels 0/1/2 in about 5:3:2."""
    rng = np.random.default_rng(seed)
    image_label = rng.choice(3, size=n_images, p=[0.5, 0.3, 0.2])
    image_label[:3] = [0, 1, 2]
    ids, labels = [], []
    for i, lab in enumerate(image_label):
        for _ in range(rng.integers(1, 4)):
            ids.append(f"mdb{i + 1:03d}")
            labels.append(lab)
    return np.array(ids), np.array(labels), image_label


def test_split_by_image_is_grouped_stratified_and_complete():
    ids, labels, image_label = grouped()
    parts = split_by_image(ids, labels, seed=3)
    assert set(parts) == {"train", "val", "test"}
    allidx = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(allidx), np.arange(len(ids)))          # a partition of the patches
    sides = {name: set(ids[idx]) for name, idx in parts.items()}
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]                              # no image on two sides
    for name, idx in parts.items():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
        assert set(labels[idx]) == {0, 1, 2}, name                        # every class everywhere
    for c in range(3):                                                   # stratified by image label
        n_c = np.sum(image_label == c)
        n_train = sum(1 for i in sides["train"] if image_label[int(i[3:]) - 1] == c)
        assert abs(n_train - 0.7 * n_c) <= 1.5
    again = split_by_image(ids, labels, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_by_image(ids, labels, seed=4)
    assert any(not np.array_equal(parts[k], other[k]) for k in parts)


def test_image_label_is_the_most_severe_patch():
    ids = np.array(["a", "a", "b", "c", "d", "e", "f"])
    labels = np.array([0, 1, 0, 1, 0, 1, 0])
    parts = split_by_image(ids, labels, fractions=(0.5, 0.0, 0.5), seed=0)
    assert len(parts["val"]) == 0
    for name in ("train", "test"):
        assert set(ids[parts[name]]) & {"a", "c", "e"}                   # "a" counts as class 1
        assert set(ids[parts[name]]) & {"b", "d", "f"}
    assert set(ids[parts["train"]]).isdisjoint(ids[parts["test"]])


def test_split_errors():
    ids, labels, _ = grouped()
    with pytest.raises(ValueError, match="fractions"):
        split_by_image(ids, labels, fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="fractions"):
        split_by_image(ids, labels, fractions=(1.2, -0.1, -0.1))
    with pytest.raises(ValueError, match="same length"):
        split_by_image(ids, labels[:-1])
    with pytest.raises(ValueError, match="empty"):
        split_by_image(np.array([]), np.array([]))
    few_ids = np.array(["x", "y", "z", "w", "v"])
    few_labels = np.array([0, 0, 0, 1, 1])                                # class 1 in only 2 images
    with pytest.raises(ValueError, match=r"class 1 .* 3 splits.* 2 image.*v, w"):
        split_by_image(few_ids, few_labels)
    parts = split_by_image(few_ids, few_labels, require_all_classes=False)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == [0, 1, 2, 3, 4]


def test_kfold_partitions_by_image():
    ids, labels, image_label = grouped(n_images=37, seed=1)
    folds = kfold_by_image(ids, labels, k=5, seed=2)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(ids)))           # test folds partition
    images_per_fold = []
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert np.array_equal(np.union1d(train, test), np.arange(len(ids)))
        assert set(ids[train]).isdisjoint(ids[test])                       # grouped by image
        assert set(labels[test]) == {0, 1, 2}                              # stratified
        images_per_fold.append(len(set(ids[test])))
    assert max(images_per_fold) - min(images_per_fold) <= 1
    for c in range(3):
        per_fold = [len({i for i in set(ids[te]) if image_label[int(i[3:]) - 1] == c})
                    for _, te in folds]
        assert max(per_fold) - min(per_fold) <= 1
    again = kfold_by_image(ids, labels, k=5, seed=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_errors():
    ids, labels, _ = grouped(n_images=12)
    with pytest.raises(ValueError, match="k must"):
        kfold_by_image(ids, labels, k=1)
    with pytest.raises(ValueError, match="13 folds from 12"):
        kfold_by_image(ids, labels, k=13)
    with pytest.raises(ValueError, match="class"):
        kfold_by_image(ids, labels, k=10)
    folds = kfold_by_image(ids, labels, k=10, require_all_classes=False)
    assert sum(len(te) for _, te in folds) == len(ids)


def test_split_before_augment_on_phantom_patches(tmp_path):
    folder = generate_phantom(tmp_path / "ph", seed=2, n_images=40, image_size=128, progress=False)
    ps = extract_patches(folder, task="all", patch_size=16, normals_per_image=2, progress=False)
    parts = split_by_image(ps.image_ids, ps.y, seed=0)
    train = augment_eight(ps.subset(parts["train"]))                   # augment the training side only
    test = ps.subset(parts["test"])
    val = ps.subset(parts["val"])
    assert len(train) == 8 * len(parts["train"])
    assert set(train.image_ids).isdisjoint(test.image_ids)
    assert set(train.image_ids).isdisjoint(val.image_ids)
    assert set(train.image_ids) == set(ps.image_ids[parts["train"]])
    # no test patch (in any of its eight orientations) appears in the training set
    train_bytes = {p.tobytes() for p in train.x}
    for p in augment_eight(test).x:
        assert p.tobytes() not in train_bytes
    # for contrast: augmenting first and splitting patches at random leaks images across the split
    aug_all = augment_eight(ps)
    perm = np.random.default_rng(0).permutation(len(aug_all))
    cut = int(0.7 * len(aug_all))
    leaked = set(aug_all.image_ids[perm[:cut]]) & set(aug_all.image_ids[perm[cut:]])
    assert leaked
