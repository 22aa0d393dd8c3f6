"""The phantom mini-MIAS generator: plan counts, determinism, format, marker, cache."""
import os
from collections import Counter

import numpy as np
import pytest

from mammo_demo import phantom as ph
from mammo_demo.mias import load_mias, read_phantom_marker, read_pgm
from mammo_demo.preprocess import breast_mask, breast_side


def test_full_plan_has_the_documented_counts():
    plan = ph.plan_phantom(322, seed=0)
    assert len(plan) == 322
    counts = ph.phantom_counts(plan)
    assert counts["rows"] == 330 and counts["normal_images"] == 207
    assert counts["benign_images"] == 64 and counts["malignant_images"] == 51
    assert counts["benign_rows"] == 69 and counts["malignant_rows"] == 54
    assert {c: counts[f"{c}_rows"] for c in ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")} == \
        {"CALC": 30, "CIRC": 25, "SPIC": 19, "MISC": 15, "ARCH": 19, "ASYM": 15}
    assert counts["rows_without_coordinates"] == 4
    per_image = Counter((p.lesions[0].abnormality, p.lesions[0].severity) for p in plan if p.lesions)
    assert dict(per_image) == ph.PHANTOM_IMAGES
    assert sorted(len(p.lesions) for p in plan if len(p.lesions) > 1) == [2, 2, 2, 2, 2, 2, 3]
    for p in plan:                                   # one class and severity per film
        assert len({(les.abnormality, les.severity) for les in p.lesions}) <= 1
    assert Counter(p.background for p in plan) == Counter(ph.PHANTOM_BACKGROUND)
    for i in range(0, 322, 2):                       # the two films of a pair share the tissue
        assert plan[i].background == plan[i + 1].background
    assert [p.side for p in plan[:4]] == ["right", "left", "right", "left"]
    assert [p.refnum for p in plan[:2]] == ["mdb001", "mdb002"]


def test_small_plan_covers_both_severities():
    plan = ph.plan_phantom(12, seed=5)
    abnormal = [p.lesions[0] for p in plan if p.lesions]
    assert len(abnormal) == 4
    assert {(les.abnormality, les.severity) for les in abnormal} == \
        {("CALC", "B"), ("CALC", "M"), ("CIRC", "B"), ("SPIC", "M")}
    assert ph.plan_phantom(12, seed=5) == plan
    with pytest.raises(ValueError, match="n_images"):
        ph.plan_phantom(0)


def test_power_law_texture_has_the_stated_spectrum():
    rng = np.random.default_rng(0)
    size = 128
    fields = ph.power_law_texture(rng, size, beta=3.0, filt=ph.power_law_filter(size, 3.0, f_low=1e-6))
    assert fields.shape == (2, size, size) and fields.dtype == np.float32
    assert np.allclose(fields.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(fields.std(axis=(1, 2)), 1, atol=1e-4)
    assert abs(np.corrcoef(fields[0].ravel(), fields[1].ravel())[0, 1]) < 0.2
    power = np.abs(np.fft.fft2(fields[0])) ** 2
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    edges = np.geomspace(4 / size, 0.4, 12)
    centre, mean_power = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        ring = (radius >= lo) & (radius < hi)
        centre.append(np.sqrt(lo * hi))
        mean_power.append(power[ring].mean())
    slope = np.polyfit(np.log(centre), np.log(mean_power), 1)[0]
    assert -3.3 < slope < -2.7                        # P(f) ~ 1/f^3


def test_generate_is_deterministic_and_readable(tmp_path):
    a = ph.generate_phantom(tmp_path / "a", seed=3, n_images=6, image_size=128, progress=False)
    b = ph.generate_phantom(tmp_path / "b", seed=3, n_images=6, image_size=128, progress=False)
    c = ph.generate_phantom(tmp_path / "c", seed=4, n_images=6, image_size=128, progress=False)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert names == ["Info.txt", "PHANTOM.txt"] + [f"mdb{i:03d}.pgm" for i in range(1, 7)]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "mdb001.pgm").read_bytes() != (c / "mdb001.pgm").read_bytes()

    ds = load_mias(a)                                 # the real reader is the code path
    assert ds.is_phantom and ds.image_size == 128 and len(ds) == 6
    assert ds.summary()["kind"] == "phantom" and ds.summary()["phantom_seed"] == "3"
    info = (a / "Info.txt").read_text()
    assert info.startswith("REFNUM BG CLASS SEVERITY X Y RADIUS")
    assert any(line.endswith("NORM ") for line in info.splitlines())
    marker = read_phantom_marker(a)
    assert marker["kind"] == ph.PHANTOM_LABEL == "phantom"
    assert marker["seed"] == "3" and marker["image_size"] == "128" and marker["n_images"] == "6"
    assert marker["status"] == "complete"
    assert "not patient data" in (a / "PHANTOM.txt").read_text()
    assert b"phantom" in (a / "mdb001.pgm").read_bytes()[:200]      # the PGM header says so too
    for ref in ds.refnums:
        img = ds.image(ref)
        assert img.shape == (128, 128) and img.dtype == np.uint8
        mask = breast_mask(img)
        assert 0.15 < mask.mean() < 0.7
        number = int(ref[3:])
        assert breast_side(img, mask) == ("right" if number % 2 else "left")
        for r in ds.rows(ref):
            if r.has_coordinates:                     # bottom-left origin: row = size - y
                assert 0 <= r.row < 128 and 0 <= r.col < 128 and r.radius >= 1
                assert mask[r.row, r.col], f"{ref}: lesion centre outside the breast"


def test_lesions_are_brighter_than_their_surroundings():
    filt = ph.power_law_filter(256)
    contrasts = []
    for k in range(6):
        for cls in ("CIRC", "CALC"):
            plan = ph.ImagePlan(k, "G", (ph.LesionPlan(cls, "BM"[k % 2]),))
            img, rows = ph.render_image(plan, 256, k, filt)
            _, _, _, _, x, y, radius = rows[0]
            r, c = 256 - y, x                              # Info.txt x is the output column
            yy, xx = np.mgrid[0:256, 0:256]
            d = np.hypot(yy - r, xx - c)
            inside = img[d < 0.5 * radius].astype(float)
            ring = img[(d > 1.6 * radius) & (d < 2.4 * radius) & (img > 30)].astype(float)
            score = inside.max() if cls == "CALC" else inside.mean()
            contrasts.append(score - ring.mean())
    assert np.mean(contrasts) > 20
    assert np.mean(np.array(contrasts) > 0) >= 0.75


def test_refuses_foreign_or_different_folders(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        ph.generate_phantom(other, n_images=2, image_size=64, progress=False)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    out = ph.generate_phantom(tmp_path / "p", seed=1, n_images=2, image_size=64, progress=False)
    with pytest.raises(FileExistsError, match="seed 1"):
        ph.generate_phantom(out, seed=2, n_images=2, image_size=64, progress=False)
    before = (out / "mdb001.pgm").read_bytes()
    ph.generate_phantom(out, seed=1, n_images=2, image_size=64, progress=False)   # same set: allowed
    assert (out / "mdb001.pgm").read_bytes() == before
    with pytest.raises(ValueError, match="image_size"):
        ph.generate_phantom(tmp_path / "q", image_size=8, progress=False)
    with pytest.raises(ValueError, match="seed"):
        ph.generate_phantom(tmp_path / "q", seed=-1, progress=False)


def test_ensure_phantom_generates_once(tmp_path, monkeypatch):
    monkeypatch.setenv("NNLITE_CACHE", str(tmp_path / "cache"))
    assert ph.default_cache_dir() == tmp_path / "cache"
    path = ph.ensure_phantom(seed=2, image_size=64, n_images=3, progress=False)
    assert path == tmp_path / "cache" / "mias-phantom-seed2-64-n3"
    assert ph.is_complete_phantom(path, 2, 64, 3)
    stamp = (path / "mdb001.pgm").stat().st_mtime_ns
    os.utime(path / "mdb001.pgm", ns=(stamp - 10**9, stamp - 10**9))
    again = ph.ensure_phantom(seed=2, image_size=64, n_images=3, progress=False)
    assert again == path
    assert (path / "mdb001.pgm").stat().st_mtime_ns == stamp - 10**9      # reused, not rewritten
    assert [p.name for p in path.parent.iterdir()] == [path.name]         # no temporary folders left
    # an interrupted set is regenerated
    marker = path / "PHANTOM.txt"
    marker.write_text(marker.read_text().replace("status: complete", "status: incomplete"))
    (path / "mdb003.pgm").unlink()
    assert not ph.is_complete_phantom(path, 2, 64, 3)
    ph.ensure_phantom(seed=2, image_size=64, n_images=3, cache_dir=tmp_path / "cache", progress=False)
    assert ph.is_complete_phantom(path, 2, 64, 3)
    assert read_pgm(path / "mdb003.pgm").shape == (64, 64)


def test_default_cache_dir_without_env(monkeypatch, tmp_path):
    monkeypatch.delenv("NNLITE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ph.default_cache_dir() == tmp_path / "nnlite"
    assert ph.phantom_cache_path(0, 1024, cache_dir=tmp_path).name == "mias-phantom-seed0-1024"


@pytest.mark.slow
def test_full_set(tmp_path):
    out = ph.generate_phantom(tmp_path / "full", seed=0, progress=False)
    ds = load_mias(out)
    assert len(ds) == 322 and len(ds.records) == 330 and ds.image_size == 1024
    assert ds.image_counts() == {"normal": 207, "benign": 64, "malignant": 51}
    assert ds.class_counts() == {"NORM": 207, "CALC": 30, "CIRC": 25, "SPIC": 19, "MISC": 15,
                                 "ARCH": 19, "ASYM": 15}
    assert ds.summary()["rows_without_coordinates"] == 4
    assert ds.image("mdb322").shape == (1024, 1024)
