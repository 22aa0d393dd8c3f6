"""ROI patch extraction, normalisation, the eight transforms, class balance."""
import numpy as np
import pytest

from mammo_demo import patches as pt
from mammo_demo.mias import load_mias
from mammo_demo.phantom import generate_phantom
from mammo_demo.preprocess import breast_mask

SIZE = 128
# Rows written over a small phantom set (its images are real breast-shaped films).
ROWS = """REFNUM BG CLASS SEVERITY X Y RADIUS 
mdb001 G CIRC B 40 60 10
mdb001 G CIRC B 60 70 6
mdb002 G NORM 
mdb003 F CALC M
mdb004 F CALC B 50 50 4
mdb005 D SPIC M 70 40 12
mdb006 D NORM 
mdb007 D MISC M 0 0 5
mdb008 D ARCH B 64 64 9
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = generate_phantom(tmp_path_factory.mktemp("ph") / "set", seed=11, n_images=8,
                           image_size=SIZE, progress=False)
    (out / "Info.txt").write_text(ROWS)
    return out


@pytest.fixture(scope="module")
def dataset(folder):
    return load_mias(folder)


def test_all_task_shapes_labels_and_info(dataset):
    ps = pt.extract_patches(dataset, task="all", patch_size=24, normals_per_image=3, progress=False)
    assert ps.classes == ("normal", "benign", "malignant")
    assert ps.x.shape == (len(ps), 1, 24, 24) and ps.x.dtype == np.float32
    assert ps.y.dtype == np.int64 and ps.image_ids.dtype.kind == "U"
    abnormal = [(i, k) for i, k in zip(ps.image_ids, ps.abnormality) if k != "NORM"]
    assert abnormal == [("mdb001", "CIRC"), ("mdb001", "CIRC"), ("mdb004", "CALC"),
                        ("mdb005", "SPIC"), ("mdb007", "MISC"), ("mdb008", "ARCH")]
    labels = {k: ps.classes[y] for y, k, i in zip(ps.y, ps.abnormality, ps.image_ids) if k != "NORM"}
    assert labels == {"CIRC": "benign", "CALC": "benign", "SPIC": "malignant", "MISC": "malignant",
                      "ARCH": "benign"}
    assert ps.counts() == {"normal": 6, "benign": 4, "malignant": 2}
    assert set(ps.image_ids[ps.y == 0]) == {"mdb002", "mdb006"}
    assert ps.info["skipped_without_coordinates"] == 1
    assert ps.info["skipped_rows"][0].startswith("mdb003 CALC M")
    assert ps.info["kind"] == "phantom" and ps.source["kind"] == "phantom"
    assert ps.info["counts"] == ps.counts()
    # the centre of the row at (x=0, y=0) is clipped into the image: row = 128 - 0 -> 127
    misc = np.flatnonzero(ps.abnormality == "MISC")[0]
    assert tuple(ps.centers[misc][:2]) == (SIZE - 1, 0)
    # per-patch standardisation: mean 0, std = s / (s + 1e-3) (just below 1; flat patches less)
    assert np.allclose(ps.x.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    stds = ps.x.std(axis=(1, 2, 3))
    assert np.all(stds < 1.0 + 1e-4) and np.median(stds) > 0.95


def test_calc_and_mass_tasks(dataset):
    calc = pt.extract_patches(dataset, task="calc", patch_size=16, progress=False)
    assert calc.classes == ("benign", "malignant")
    assert list(calc.abnormality) == ["CALC"] and list(calc.y) == [0]
    assert calc.info["skipped_without_coordinates"] == 1
    mass = pt.extract_patches(dataset, task="mass", patch_size=16, progress=False)
    assert list(mass.abnormality) == ["CIRC", "CIRC", "SPIC", "MISC"]
    assert list(mass.y) == [0, 0, 1, 1]
    assert "NORM" not in set(mass.abnormality)
    with pytest.raises(ValueError, match="task"):
        pt.extract_patches(dataset, task="masses", progress=False)
    with pytest.raises(ValueError, match="normalize"):
        pt.extract_patches(dataset, normalize="zscore", progress=False)


def test_normal_patches_lie_in_the_breast_and_copy_lesion_sizes(dataset):
    ps = pt.extract_patches(dataset, task="all", patch_size=16, normals_per_image=20, seed=4,
                            progress=False)
    again = pt.extract_patches(dataset, task="all", patch_size=16, normals_per_image=20, seed=4,
                               progress=False)
    assert np.array_equal(ps.x, again.x) and np.array_equal(ps.centers, again.centers)
    lesion_sides = set(ps.centers[ps.abnormality != "NORM", 2])
    for (row, col, side), ref in zip(ps.centers[ps.y == 0], ps.image_ids[ps.y == 0]):
        assert side in lesion_sides
        mask = breast_mask(dataset.image(ref))
        half = side // 2
        window = mask[max(0, row - half):row - half + side, max(0, col - half):col - half + side]
        assert window.size and window.mean() > 0.6, (ref, row, col, side)


def test_unit_normalisation_matches_the_crop(folder, dataset):
    ps = pt.extract_patches(folder, task="mass", patch_size=24, normalize="unit", progress=False)
    assert ps.x.min() >= 0 and ps.x.max() <= 1
    image = dataset.image("mdb005").astype(np.float32)
    row, col, radius = SIZE - 40, 70, 12                  # the SPIC row: x=70, y=40, radius 12
    side = pt.crop_side(radius, SIZE, 24)
    assert side == 24
    crop = image[row - 12:row + 12, col - 12:col + 12] / 255
    assert np.allclose(ps.x[2, 0], crop, atol=1e-5)       # 24 -> 24: the crop itself


def test_extract_roi_centres_and_pads():
    img = np.zeros((100, 100), np.uint8)
    img[45:56, 45:56] = 200                                # a bright square centred on (50, 50)
    p = pt.extract_roi(img, 50, 50, 10, patch_size=20, normalize="unit")
    assert p.shape == (20, 20) and p.dtype == np.float32
    assert p[10, 10] > 0.7 and p[0, 0] < 0.05 and p[19, 19] < 0.05
    corner = pt.extract_roi(img, 0, 99, 30, patch_size=12)  # crop reaches outside: reflected
    assert corner.shape == (12, 12) and np.isfinite(corner).all()
    small = pt.extract_roi(img, 50, 50, 1, patch_size=12)   # min side: 12 * 100 / 1024 -> 8 pixels
    assert small.shape == (12, 12)
    assert pt.crop_side(1, 1024, 48) == 48 and pt.crop_side(100, 1024, 48, context=2.0) == 200
    assert pt.crop_side(5, 1024, 48, min_side=4) == 10
    with pytest.raises(ValueError, match="radius"):
        pt.extract_roi(img, 5, 5, 0)
    with pytest.raises(ValueError, match="2-D"):
        pt.extract_roi(np.zeros((2, 3, 4)), 1, 1, 1)


def test_eight_transforms_are_the_dihedral_group():
    a = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    outs = pt.eight_transforms(a)
    assert len(outs) == 8
    flat = {o.tobytes() for o in outs}
    assert len(flat) == 8                                   # all distinct for an asymmetric patch
    assert np.array_equal(outs[2][0, 0], np.rot90(a[0, 0]))
    assert np.array_equal(outs[1][0, 0], a[0, 0, :, ::-1])
    for o in outs:                                          # closed: transforming again stays inside
        assert {t.tobytes() for t in pt.eight_transforms(o)} == flat


def make_set(n=10, classes=("normal", "benign", "malignant"), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32)
    y = np.arange(n, dtype=np.int64) % len(classes)
    ids = np.array([f"mdb{i // 2 + 1:03d}" for i in range(n)])
    return pt.PatchSet(x, y, ids, classes, info={"task": "all"})


def test_augment_eight_keeps_labels_and_ids():
    ps = make_set(6)
    aug = pt.augment_eight(ps)
    assert len(aug) == 48 and aug.x.shape == (48, 1, 4, 4) and aug.x.dtype == np.float32
    assert np.array_equal(aug.y, np.tile(ps.y, 8))
    assert np.array_equal(aug.image_ids, np.tile(ps.image_ids, 8))
    assert np.array_equal(aug.x[:6], ps.x)
    assert np.array_equal(aug.x[12:18], np.rot90(ps.x, 1, axes=(2, 3)))
    assert aug.info["augmented"] == 8 and aug.counts() == {k: 8 * v for k, v in ps.counts().items()}
    assert ps.info.get("augmented") is None                 # the input is untouched


def test_subset_and_errors():
    ps = make_set(10)
    sub = ps.subset(np.array([True, False] * 5))
    assert len(sub) == 5 and np.array_equal(sub.y, ps.y[::2])
    assert sub.info["counts"] == sub.counts()
    assert len(ps.subset([3, 1])) == 2 and list(ps.subset([3, 1]).image_ids) == ["mdb002", "mdb001"]
    with pytest.raises(ValueError, match="boolean mask"):
        ps.subset(np.array([True, False]))
    with pytest.raises(ValueError, match=r"\(N, 1, S, S\)"):
        pt.PatchSet(np.zeros((3, 4, 4), np.float32), np.zeros(3, np.int64), np.array(["a"] * 3), ("a",))
    with pytest.raises(ValueError, match="labels"):
        pt.PatchSet(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 2]), np.array(["a", "b"]), ("a", "b"))


def test_balance_undersample():
    ps = make_set(11)                                       # 4 normal, 4 benign, 3 malignant
    bal = pt.balance_undersample(ps, seed=1)
    assert bal.counts() == {"normal": 3, "benign": 3, "malignant": 3}
    assert set(map(bytes, bal.x.reshape(len(bal), -1))) <= set(map(bytes, ps.x.reshape(len(ps), -1)))
    again = pt.balance_undersample(ps, seed=1)
    assert np.array_equal(bal.x, again.x)
    assert np.array_equal(bal.y[bal.y == 2], [2, 2, 2])


def test_class_weights():
    w = pt.class_weights(np.array([0, 0, 0, 1]), 2)
    assert w.dtype == np.float32
    assert np.allclose(w, [4 / 6, 4 / 2])
    assert np.isclose(w[np.array([0, 0, 0, 1])].mean(), 1.0)
    assert np.allclose(pt.class_weights([0, 1, 2], 3), 1.0)
    assert np.allclose(pt.class_weights([0, 0], 3), [2 / 6, 0, 0])      # N / (C n_c); absent: 0
    with pytest.raises(ValueError, match="labels"):
        pt.class_weights([0, 3], 3)
