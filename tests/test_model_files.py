"""Model files: nested models with buffers, old files, metadata, and damaged or hostile files.

Every damaged or hostile file must give one ``ValueError`` line naming the file,
never a traceback from deep inside NumPy, JSON or a layer's constructor.
"""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import nnlite as nn
from nnlite import serialization
from test_containers import tiny_resnet, tiny_unet


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)).astype(np.float32), np.arange(n) % 3


# ------------------------------------------------ nested models and buffers
def test_resnet_with_batchnorm_roundtrip_is_bit_identical_in_both_modes(tmp_path):
    model = tiny_resnet()
    x, y = _data()
    model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=nn.SGD(model.parameters(), lr=0.05),
              epochs=1, batch_size=4, verbose=0)
    assert int(model["stem_bn"].num_batches_tracked.data) == 3
    loaded = nn.load(nn.save(model, tmp_path / "r.npz"))
    assert loaded.get_config() == model.get_config()
    for (n1, b1), (n2, b2) in zip(model.named_buffers(), loaded.named_buffers()):
        assert n1 == n2 and b1.dtype == b2.dtype
        np.testing.assert_array_equal(b1.data, b2.data, err_msg=n1)
    np.testing.assert_array_equal(model.forward(x, training=False), loaded.forward(x, training=False))
    np.testing.assert_array_equal(model.forward(x, training=True), loaded.forward(x, training=True))
    np.testing.assert_array_equal(model["stem_bn"].running_mean.data, loaded["stem_bn"].running_mean.data)


def test_resnet_resume_is_bit_identical(tmp_path):
    x, y = _data(16)
    kwargs = dict(loss=nn.SoftmaxCrossEntropy(), epochs=4, batch_size=4, verbose=0, seed=3)
    whole = tiny_resnet()
    whole.fit(x, y, optimizer=nn.Adam(whole.parameters(), lr=1e-2), **kwargs)

    part = tiny_resnet()
    ckpt = tmp_path / "ckpt.npz"
    part.fit(x, y, optimizer=nn.Adam(part.parameters(), lr=1e-2), checkpoint_path=ckpt,
             **{**kwargs, "epochs": 2})
    resumed = tiny_resnet(seed=9)                       # other weights: all must come from the file
    resumed.fit(x, y, optimizer=nn.Adam(resumed.parameters(), lr=1e-2), checkpoint_path=ckpt,
                resume=True, **kwargs)
    for (n, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)
    for (n, a), (_, b) in zip(whole.named_buffers(), resumed.named_buffers()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=n)


def test_unet_with_concatenate_roundtrip(tmp_path):
    model = tiny_unet()
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    loaded = nn.load(nn.save(model, tmp_path / "u.npz"))
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))
    assert isinstance(loaded[2], nn.Concatenate) and isinstance(loaded[2].branches[0], nn.Identity)


def test_metadata_travels_with_the_model(tmp_path):
    meta = {"data": "PHANTOM", "seed": 3, "split": {"train": 10, "test": 4}}
    path = nn.save(nn.zoo.mias_cnn(3), tmp_path / "m.npz", metadata=meta)
    assert nn.read_metadata(path) == meta
    assert nn.read_metadata(nn.save(nn.zoo.mias_cnn(3), tmp_path / "n.npz")) == {}
    with pytest.raises(ValueError, match="metadata must be JSON-able"):
        nn.save(nn.zoo.mias_cnn(3), tmp_path / "o.npz", metadata={"x": object()})


def _format1_file(path, model):
    """A file as the code before containers wrote it: flat config, no buffers."""
    config = {"name": "old", "layers": [{"type": type(layer).__name__, "name": layer.name,
                                         "config": layer.get_config()} for layer in model.layers]}
    meta = {"format": 1, "nnlite_version": "0.1.0",
            "params": [{"name": f"{i}.{type(layer).__name__}.{p.name}", "shape": list(p.shape),
                        "trainable": True}
                       for i, layer in enumerate(model.layers) for p in layer.parameters()]}
    arrays = {"__config__": np.array(json.dumps(config)), "__meta__": np.array(json.dumps(meta))}
    for k, p in enumerate(model.parameters()):
        arrays[f"param/{k}"] = p.data
    np.savez(path, **arrays)


def test_files_written_before_containers_still_load(tmp_path):
    model = nn.zoo.mias_cnn(3)
    _format1_file(tmp_path / "old.npz", model)
    loaded = nn.load(tmp_path / "old.npz")
    assert loaded.name == "old" and len(loaded) == len(model)
    x = np.random.default_rng(0).standard_normal((2, 1, 48, 48)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))


# ------------------------------------------------------ atomic writes
def test_file_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = nn.save(nn.Sequential([nn.Dense(2, 2)]), tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    code = ("import os, nnlite as nn\n"
            "from nnlite.serialization import atomic_open\n"
            f"with atomic_open({str(tmp_path / 'm.npz')!r}) as f:\n"
            "    f.write(b'partial'); f.flush(); os._exit(9)\n")   # killed mid-write
    subprocess.run([sys.executable, "-c", code], check=False)
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")
    nn.save(nn.Sequential([nn.Dense(2, 2)]), tmp_path / "m.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_weights_are_never_checkpointed(tmp_path):
    model = nn.Sequential([nn.Flatten(), nn.Dense(36, 3, seed=0)])
    x, y = _data(8)
    ckpt = tmp_path / "c.npz"
    opt = nn.SGD(model.parameters(), lr=1e38)                 # the first update overflows
    with pytest.raises(FloatingPointError, match=r"non-finite weights after epoch 1, batch 1"):
        model.fit(x * 1e5, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=2,
                  batch_size=8, verbose=0, checkpoint_path=ckpt)   # one batch: its update is the last
    assert not ckpt.exists()


# ------------------------------------------------------- hostile files
@pytest.fixture
def good(tmp_path):
    return nn.save(nn.Sequential([nn.Conv2D(1, 2, 3, seed=0), nn.Flatten(), nn.Dense(8, 2, seed=1)]),
                   tmp_path / "good.npz")


def _rewrite(src, dst, **changes):
    """Copy the .npz ``src`` to ``dst`` with entries replaced (None deletes)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        key = k.replace("__slash__", "/")
        if v is None:
            arrays.pop(key, None)
        else:
            arrays[key] = v
    np.savez(dst, **arrays)
    return dst


def _config(path):
    with np.load(path) as z:
        return json.loads(str(z["__config__"]))


def test_npy_passed_as_a_model(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"w.npy is a single .npy array, not an nnlite model file"):
        nn.load(tmp_path / "w.npy")


def test_text_file_named_npz(tmp_path):
    (tmp_path / "t.npz").write_text("hello, I am not a model\n")
    with pytest.raises(ValueError, match=r"t.npz is not a readable nnlite file") as e:
        nn.load(tmp_path / "t.npz")
    assert "allow_pickle" not in str(e.value)


def test_unknown_config_keys(good, tmp_path):
    config = _config(good)
    config["config"]["layers"][2]["config"]["colour"] = "blue"
    bad = _rewrite(good, tmp_path / "b.npz", __config__=np.array(json.dumps(config)))
    with pytest.raises(ValueError, match=r"b.npz.layers.2: Dense cannot be built from its config "
                                         r"\(.*colour"):
        nn.load(bad)


def test_private_or_abstract_class_in_the_config(good, tmp_path):
    for type_name in ("_Pool2D", "Layer", "os.system"):
        config = _config(good)
        config["config"]["layers"][1]["type"] = type_name
        bad = _rewrite(good, tmp_path / "b.npz", __config__=np.array(json.dumps(config)))
        with pytest.raises(ValueError, match=r"b.npz.layers.1: .*(unknown layer type|not a usable layer)"):
            nn.load(bad)


def test_deeply_nested_json(good, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    bad = _rewrite(good, tmp_path / "b.npz", __config__=np.array(deep))
    with pytest.raises(ValueError, match=r"b.npz: entry '__config__': JSON nested too deeply"):
        nn.load(bad)


def test_deeply_nested_containers(good, tmp_path):
    spec = {"type": "Identity", "name": "Identity", "config": {}}
    for _ in range(100):
        spec = {"type": "Sequential", "name": "Sequential", "config": {"layers": [spec]}}
    bad = _rewrite(good, tmp_path / "b.npz", __config__=np.array(json.dumps(spec)))
    with pytest.raises(ValueError, match=r"b.npz.*nested more than 64 deep"):
        nn.load(bad)


def test_missing_entries_and_keys(good, tmp_path):
    bad = _rewrite(good, tmp_path / "b.npz", __meta__=None)
    with pytest.raises(ValueError, match=r"b.npz is not an nnlite model file"):
        nn.load(bad)
    bad = _rewrite(good, tmp_path / "c.npz", __config__=np.array(json.dumps({"name": "x"})))
    with pytest.raises(ValueError, match=r"c.npz: a layer entry needs 'type' and 'config'"):
        nn.load(bad)
    bad = _rewrite(good, tmp_path / "d.npz", param__slash__2=None)
    with pytest.raises(ValueError, match=r"d.npz: .*parameter 2 \(2.W of Dense\): missing"):
        nn.load(bad)


def test_a_bias_replaced_by_one_element_is_refused_not_broadcast(good, tmp_path):
    bad = _rewrite(good, tmp_path / "b.npz", param__slash__3=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"parameter 3 \(2.b of Dense\): model shape \(2,\), file "
                                         r"has 2.b with shape \(1,\)"):
        nn.load(bad)
    model = nn.Sequential([nn.Conv2D(1, 2, 3), nn.Flatten(), nn.Dense(8, 2)])
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        nn.load_weights(model, bad)


def test_huge_declared_architecture_is_refused_before_allocating(good, tmp_path):
    config = _config(good)
    config["config"]["layers"][2]["config"].update(in_features=20000, out_features=20000)
    bad = _rewrite(good, tmp_path / "b.npz", __config__=np.array(json.dumps(config)))
    with pytest.raises(ValueError, match=r"declares 400,020,020 parameter values, more than the "
                                         r"limit of 200,000,000"):
        nn.load(bad)


def test_unknown_large_members_are_never_read(good, tmp_path):
    bad = tmp_path / "b.npz"
    bad.write_bytes(good.read_bytes())
    with zipfile.ZipFile(bad, "a") as z:            # 64 MB of zeros, deflated to almost nothing
        with z.open("junk.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.zeros(8 * 2**20))
    loaded = nn.load(bad)                            # loads: the junk member is ignored
    assert len(loaded) == 3
    member = tmp_path / "c.npz"
    member.write_bytes(good.read_bytes())
    with zipfile.ZipFile(member, "w") as z:          # a parameter entry far larger than declared
        with np.load(good) as src:
            for k in src.files:
                with z.open(k + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.zeros(4 * 2**20) if k == "param/2" else src[k])
    with pytest.raises(ValueError, match=r"c.npz: entry 'param/2' holds .* bytes, more than the"):
        nn.load(member)


def test_a_users_class_named_like_nnlites_does_not_replace_it(good):
    class Dense(nn.Layer):                           # noqa: F811 - shadows nnlite's on purpose
        def forward(self, x, training=False):
            return x

        def backward(self, dy):
            return dy

    assert nn.Layer.registry["Dense"] is nn.Dense
    assert type(nn.load(good)[2]) is nn.Dense
    assert Dense.type_name().endswith(".Dense") and Dense.type_name() != "Dense"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 10**6))
def test_fuzz_mutated_model_files_give_only_documented_errors(tmp_path_factory, edits, cut):
    folder = tmp_path_factory.mktemp("fuzz")
    src = nn.save(nn.Sequential([nn.Conv2D(1, 2, 3, seed=0), nn.BatchNorm2D(2), nn.Flatten(),
                                 nn.Dense(8, 2, seed=1)]), folder / "m.npz")
    data = bytearray(src.read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut % 3 == 0:
        data = data[: cut % len(data)]
    path = folder / "mutated.npz"
    path.write_bytes(bytes(data))
    try:
        model = nn.load(path)
    except ValueError as e:
        assert "mutated.npz" in str(e)
        return
    assert isinstance(model, nn.Sequential)          # a harmless mutation: still a working model
    model.forward(np.zeros((1, 1, 4, 4), np.float32))
