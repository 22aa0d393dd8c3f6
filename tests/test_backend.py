import numpy as np
import pytest

from nnlite import backend
from nnlite.parameter import Parameter


def test_numpy_arrays_give_numpy():
    assert backend.get_array_module(np.zeros(3)) is np
    assert backend.get_array_module(np.zeros(3), 1.0) is np


def test_generator_same_seed_bit_identical():
    a = backend.Generator(7).normal((4, 5), std=0.1)
    b = backend.Generator(7).normal((4, 5), std=0.1)
    c = backend.Generator(8).normal((4, 5), std=0.1)
    assert a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_state_roundtrip():
    g = backend.Generator(3)
    g.random((10,))
    state = g.get_state()
    first = g.random((5,))
    g.set_state(state)
    assert np.array_equal(first, g.random((5,)))


def test_generator_float64_and_uniform_range():
    g = backend.Generator(0)
    assert g.random((3,), dtype=np.float64).dtype == np.float64
    u = g.uniform((1000,), -2.0, 3.0)
    assert u.dtype == np.float32 and u.min() >= -2.0 and u.max() < 3.0


def test_resolve_dtype_rejects_non_float():
    assert backend.resolve_dtype("float64") == np.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.resolve_dtype("int32")
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.resolve_dtype("float16")


def test_to_device_cpu_and_bad_name():
    a = np.arange(3.0)
    assert backend.to_device(a, "cpu") is a
    with pytest.raises(ValueError, match="'cpu' or 'gpu'"):
        backend.to_device(a, "tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a GPU")
def test_gpu_request_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="GPU requested"):
        backend.to_device(np.zeros(2), "gpu")


def test_parameter_astype_and_grad():
    p = Parameter(np.ones((2, 3), dtype=np.float32), name="W")
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float32
    p.astype("float64")
    assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    p.grad += 1
    p.zero_grad()
    assert not p.grad.any()
    assert "W" in repr(p)


def test_no_module_other_than_backend_imports_cupy():
    import pathlib
    import nnlite
    root = pathlib.Path(nnlite.__file__).parent
    offenders = [str(f.relative_to(root)) for f in root.rglob("*.py")
                 if f.name != "backend.py" and ("import cupy" in f.read_text() or "from cupy" in f.read_text())]
    assert offenders == []
