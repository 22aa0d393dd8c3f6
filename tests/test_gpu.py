"""nnlite on the GPU (CuPy): kernels, layers, training and files, held equal to NumPy.

Three parts:

1. **Always run (CPU only).** The clear errors when CuPy or a GPU is missing
   (``require_gpu``, ``Sequential.to_gpu``, ``nnlite.load(device="gpu")``, the
   GPU kernels themselves), device moves of a CPU model, the form of the CUDA
   sources, and the benchmark's no-GPU exit and table.
2. **The CUDA kernel sources, run on the CPU.** Each ``ElementwiseKernel`` body
   of :mod:`nnlite.kernels.gpu` is wrapped, as CuPy wraps it, in a plain C++
   loop (``i`` the element index, non-raw arguments bound to element ``i``,
   raw arrays as flat pointers), built with g++, and driven through the real
   Python wrappers with NumPy arrays in place of CuPy ones. The results are
   compared with the NumPy references, so the index arithmetic, the tie and
   NaN rules and the argument order are checked without a GPU. Where nvcc
   exists the same sources are also compiled for the GPU (to PTX).
3. **On a CUDA GPU** (marked ``gpu``; skipped without CuPy and a device, with
   the reason "CuPy with a CUDA GPU is required; none found"): every public
   layer's forward and backward on CuPy against NumPy (float32), gradient
   checks on CuPy in float64, each CUDA kernel against its reference and the
   dispatcher's choice, a short training run on GPU against CPU (same seed,
   same loss curve), optimizer state following its parameters, and files
   crossing devices.
"""
from __future__ import annotations

import ctypes
import importlib.util
import inspect
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

import nnlite as nn
from nnlite import backend, kernels
from nnlite.backend import to_numpy
from nnlite.kernels import gpu
from conftest import two_blob_images

GPU_REASON = "CuPy with a CUDA GPU is required; none found"
HAS_GPU = backend.gpu_available()
cp = backend.cupy if HAS_GPU else None
on_gpu = [pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason=GPU_REASON)]

ROOT = Path(__file__).resolve().parents[1]


def distinct(shape, seed=0, dtype=np.float32):
    """Values in (-1, 1), all different, about 1/size apart, never 0 (no kinks, no ties)."""
    n = int(np.prod(shape))
    perm = np.random.default_rng(seed).permutation(n)
    return ((perm + 0.5 - n / 2) / n).reshape(shape).astype(dtype)


def small_model(seed=0):
    return nn.Sequential([
        nn.Conv2D(1, 3, 3, padding=1, seed=seed), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dense(3 * 3 * 3, 2, seed=seed + 1),
    ])


# =========================================================================
# 1. Always run: errors without CuPy or a GPU, CPU device moves
# =========================================================================
def fake_cupy(device_count):
    """A stand-in module for CuPy that reports ``device_count`` devices (or raises)."""
    def count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count
    return types.SimpleNamespace(ndarray=type("FakeCupyArray", (), {}),
                                 cuda=types.SimpleNamespace(
                                     runtime=types.SimpleNamespace(getDeviceCount=count)))


def test_require_gpu_without_cupy_says_how_to_install(monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*pip install 'nnlite\[gpu\]'"):
        backend.require_gpu()


@pytest.mark.parametrize("count", [0, RuntimeError("cudaErrorNoDevice")])
def test_require_gpu_without_a_device(monkeypatch, count):
    monkeypatch.setattr(backend, "cupy", fake_cupy(count))
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        backend.require_gpu()


def test_to_cpu_is_a_no_op_on_the_cpu():
    model = small_model()
    before = [(p.data, p.grad) for p in model.parameters()]
    values = [p.data.copy() for p in model.parameters()]
    assert model.to_cpu() is model
    assert model.device == "cpu"
    for p, (data, grad), v in zip(model.parameters(), before, values):
        assert p.data is data and p.grad is grad        # not even copied
        np.testing.assert_array_equal(p.data, v)
    x = distinct((2, 1, 6, 6))
    np.testing.assert_array_equal(model.forward(x), small_model().forward(x))


def test_to_gpu_without_cupy_raises_before_moving_anything(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "cupy", None)
    model = small_model()
    before = [p.data for p in model.parameters()]
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        model.to_gpu()
    assert [p.data for p in model.parameters()] == before and model.device == "cpu"
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        nn.Sequential([nn.ReLU(), nn.Flatten()]).to_gpu()   # no parameters: still refused
    path = nn.save(model, tmp_path / "m.npz")
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        nn.load(path, device="gpu")
    assert nn.load(path).device == "cpu"


def test_unknown_device_names_are_refused(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="'cpu' or 'gpu', got 'cuda'"):
        model.to_device("cuda")
    with pytest.raises(ValueError, match="'cpu' or 'gpu', got 'tpu'"):
        nn.load(nn.save(model, tmp_path / "m.npz"), device="tpu")


def test_gpu_kernels_without_cupy_raise_the_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        gpu.max_pool_forward(np.zeros((1, 1, 2, 2), np.float32), 2, 2, 2, 2, 1, 1)


def test_gpu_kernels_refuse_numpy_arrays(monkeypatch):
    monkeypatch.setattr(backend, "cupy", fake_cupy(1))
    with pytest.raises(ValueError, match="needs CuPy arrays, got numpy.ndarray"):
        gpu.col2im(np.zeros((4, 1), np.float32), (1, 1, 2, 2), 2, 2, 1, 1)


def test_gpu_kernels_check_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"expected dcols of shape \(4, 2\)"):
        gpu.col2im(np.zeros((4, 1), np.float32), (2, 1, 2, 2), 2, 2, 1, 1)
    with pytest.raises(ValueError, match="float32 or float64"):
        gpu.lrn_forward(np.zeros((1, 2, 2, 2), np.int32), 5, 1e-4, 0.75, 2.0)
    with pytest.raises(ValueError, match="does not fit the padded input"):
        gpu.max_pool_forward(np.zeros((1, 1, 4, 4), np.float32), 2, 2, 2, 2, 3, 2)
    with pytest.raises(ValueError, match="step count t must be >= 1"):
        a = np.zeros(3, np.float32)
        gpu.adam_update(a, a, a, a, 1e-3, 0.9, 0.999, 1e-8, 0)


def parse_params(params: str) -> list:
    """``"raw T x, int32 n"`` -> ``[(True, "T", "x"), (False, "int32", "n")]`` (CuPy's syntax)."""
    out = []
    for item in params.split(","):
        words = item.split()
        if len(words) not in (2, 3) or (len(words) == 3 and words[0] != "raw"):
            raise ValueError(f"cannot parse kernel parameter {item!r}")
        out.append((len(words) == 3, words[-2], words[-1]))
    return out


def test_kernel_sources_are_well_formed():
    for name, src in gpu.KERNELS.items():
        assert name.isidentifier()
        params = parse_params(src.in_params) + parse_params(src.out_params)
        names = [p[2] for p in params]
        assert len(set(names)) == len(names), name
        assert "i" not in names, f"{name}: 'i' is CuPy's loop index"          # CuPy refuses it
        assert all(t in ("T", "int32") for _, t, _ in params), name
        assert any(not raw for raw, _, _ in parse_params(src.out_params)), \
            f"{name}: a non-raw output sets the loop size"


def test_gpu_functions_mirror_the_dispatcher():
    """Every dispatched kernel exists here with the reference's parameter names."""
    for name in ("col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
                 "lrn_backward", "adam_update"):
        mine, dispatched = getattr(gpu, name), getattr(kernels, name)
        assert list(inspect.signature(mine).parameters) == \
            list(inspect.signature(dispatched).parameters), name


# The public layers and the cases the GPU tests run them in.
class LayerCase:
    def __init__(self, make, shape, training=False, gc_shape=None, label=None):
        self.make, self.shape, self.training = make, shape, training
        self.gc_shape = gc_shape or shape
        self.label = label or type(make()).__name__

    def __repr__(self):
        return self.label


LAYER_CASES = [
    LayerCase(lambda: nn.Conv2D(3, 4, 3, seed=1), (2, 3, 7, 6), gc_shape=(1, 3, 4, 4),
              label="Conv2D"),
    LayerCase(lambda: nn.Conv2D(3, 4, (3, 2), stride=2, padding=1, seed=1), (2, 3, 7, 6),
              gc_shape=(1, 3, 5, 4), label="Conv2D-stride2-pad1"),
    LayerCase(lambda: nn.Conv2D(4, 6, 4, padding="same", groups=2, seed=1), (2, 4, 6, 5),
              gc_shape=(1, 4, 3, 3), label="Conv2D-same-groups2"),
    LayerCase(lambda: nn.ConvTranspose2D(3, 2, 3, stride=2, padding=1, seed=1), (2, 3, 4, 5),
              gc_shape=(1, 3, 2, 3)),
    LayerCase(lambda: nn.ZeroPad2D((1, 2, 0, 3)), (2, 3, 4, 5), gc_shape=(1, 2, 2, 3)),
    LayerCase(lambda: nn.Dense(12, 5, seed=1), (4, 12), gc_shape=(2, 12)),
    LayerCase(lambda: nn.Flatten(), (2, 3, 4, 5)),
    LayerCase(lambda: nn.MaxPool2D(2), (2, 3, 6, 7), gc_shape=(1, 2, 4, 5), label="MaxPool2D"),
    LayerCase(lambda: nn.MaxPool2D(3, stride=2, padding=1), (2, 3, 7, 9), gc_shape=(1, 2, 5, 5),
              label="MaxPool2D-3x3s2-pad1"),
    LayerCase(lambda: nn.AvgPool2D(3, stride=2, padding=1), (2, 3, 7, 9), gc_shape=(1, 2, 5, 5)),
    LayerCase(lambda: nn.GlobalAvgPool2D(), (2, 3, 4, 5), gc_shape=(2, 2, 3, 3)),
    LayerCase(lambda: nn.ReLU(), (2, 3, 4, 5), gc_shape=(2, 3, 4)),
    LayerCase(lambda: nn.LeakyReLU(0.1), (2, 3, 4, 5), gc_shape=(2, 3, 4)),
    LayerCase(lambda: nn.Tanh(), (2, 3, 4, 5), gc_shape=(2, 3, 4)),
    LayerCase(lambda: nn.Sigmoid(), (2, 3, 4, 5), gc_shape=(2, 3, 4)),
    LayerCase(lambda: nn.Softmax(axis=1), (4, 6), gc_shape=(3, 5)),
    LayerCase(lambda: nn.Dropout(0.3, seed=5), (4, 10), training=True, gc_shape=(3, 6)),
    LayerCase(lambda: nn.LocalResponseNorm(5, alpha=0.5, beta=0.75, k=2.0), (2, 7, 3, 4),
              gc_shape=(1, 6, 2, 2), label="LocalResponseNorm-5"),
    LayerCase(lambda: nn.LocalResponseNorm(4, alpha=0.3, beta=0.6, k=1.5), (2, 3, 2, 3),
              gc_shape=(1, 3, 2, 2), label="LocalResponseNorm-4-few-channels"),
    LayerCase(lambda: nn.BatchNorm2D(3), (4, 3, 3, 4), training=True, gc_shape=(2, 3, 2, 3),
              label="BatchNorm2D-train"),
    LayerCase(lambda: nn.BatchNorm2D(3), (4, 3, 3, 4), gc_shape=(2, 3, 2, 3), label="BatchNorm2D-eval"),
    LayerCase(lambda: nn.BatchNorm1D(4), (5, 4, 3), training=True, gc_shape=(3, 4, 2),
              label="BatchNorm1D-train"),
    LayerCase(lambda: nn.Upsample2D((2, 3)), (2, 3, 3, 4), gc_shape=(1, 2, 2, 3)),
    LayerCase(lambda: unpool_after_pool(nn.MaxPool2D(3, stride=2, padding=1), (2, 3, 7, 9)),
              (2, 3, 4, 5), label="MaxUnpool2D-3x3s2-pad1"),
    LayerCase(lambda: nn.Identity(), (2, 3, 4), gc_shape=(2, 3)),
    LayerCase(lambda: nn.Sequential([nn.Conv2D(2, 3, 3, padding=1, seed=1), nn.Tanh(),
                                     nn.Sequential([nn.Conv2D(3, 2, 1, seed=2)])]),
              (2, 2, 5, 4), gc_shape=(1, 2, 3, 3), label="Sequential-nested"),
    LayerCase(lambda: nn.Residual(nn.Sequential([
        nn.Conv2D(2, 4, 3, stride=2, padding=1, bias=False, seed=3), nn.BatchNorm2D(4)]),
        nn.Conv2D(2, 4, 1, stride=2, seed=4)), (3, 2, 5, 5), training=True, gc_shape=(2, 2, 3, 3),
        label="Residual-projection-BN"),
    LayerCase(lambda: nn.Add([nn.Dense(4, 4, seed=5), None, nn.Tanh()]), (3, 4), gc_shape=(2, 4)),
    LayerCase(lambda: nn.Concatenate([None, nn.Conv2D(2, 3, 3, padding=1, seed=6)]),
              (2, 2, 4, 3), gc_shape=(1, 2, 3, 3)),
]


def unpool_after_pool(pool, pool_input_shape):
    """A MaxUnpool2D whose pool has run (on the CPU: the unpool reads its indices on x's device)."""
    pool.forward(distinct(pool_input_shape, seed=12))
    return nn.MaxUnpool2D(pool)


def test_every_public_layer_has_a_gpu_case():
    public = {name for name in nn.__all__
              if isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Layer)
              and getattr(nn, name) is not nn.Layer}
    covered = {type(case.make()).__name__ for case in LAYER_CASES}
    assert public <= covered, f"no GPU test case for {sorted(public - covered)}"


# ----------------------------------------------------------- the benchmark
def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_without_a_gpu_exits_with_a_clear_message(monkeypatch, capsys):
    bench = load_benchmark()
    monkeypatch.setattr(backend, "cupy", None)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "reduced_alexnet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "needs CuPy with a CUDA GPU" in err and "CuPy is not installed" in err


def test_benchmark_arguments_table_and_targets():
    bench = load_benchmark()
    args = bench.parse_args(["--models", "mias_cnn", "--repeats", "3", "--no-torch"])
    assert args.models == ["mias_cnn"] and args.repeats == 3 and args.no_torch
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", "0"])
    results = [{"model": "reduced_alexnet", "batch": 128,
                "nnlite_gpu_train_ms": 10.0, "torch_gpu_train_ms": 4.0, "nnlite_cpu_train_ms": 200.0,
                "nnlite_gpu_infer_ms": 2.0, "torch_gpu_infer_ms": 1.0}]
    text = bench.table(results)
    assert "0.40" in text and "20.0x" in text and "train step" in text and "inference" in text
    lines = bench.targets(results)
    assert any("40% -> NOT met" in line for line in lines)
    assert any("20.0x -> met" in line for line in lines)


def test_benchmark_cpu_step_trains():
    """The nnlite step the benchmark times (here on the CPU) changes the weights."""
    bench = load_benchmark()
    model = small_model()
    before = [p.data.copy() for p in model.parameters()]
    x = distinct((4, 1, 6, 6))
    train, infer = bench.nnlite_steps(model, x, np.array([0, 1, 0, 1]))
    assert len(bench.time_cpu(train, repeats=2, warmup=1)) == 2
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))
    assert infer().shape == (4, 2)


@pytest.mark.slow
def test_benchmark_torch_twin_computes_the_same_network():
    """The PyTorch network the benchmark compares against is the nnlite one (CPU check)."""
    torch = pytest.importorskip("torch")
    bench = load_benchmark()
    for name, (kwargs, _) in bench.MODELS.items():
        model = getattr(nn.zoo, name)(seed=0, **kwargs)
        twin = bench.torch_twin(model, kwargs["input_shape"]).eval()
        x = distinct((2,) + kwargs["input_shape"], seed=3)
        with torch.no_grad():
            y_torch = twin(torch.from_numpy(x)).numpy()
        y = model.forward(x)
        np.testing.assert_allclose(y_torch, y, rtol=1e-4, atol=1e-4 * np.abs(y).max(), err_msg=name)


# =========================================================================
# 2. The CUDA kernel sources, built for the host and run against the references
# =========================================================================
_CTYPES = {"int32": "int", "float32": "float", "float64": "double"}
_HOST_PRELUDE = """
#include <cmath>
#include <cstddef>
#include <algorithm>
using std::min; using std::max; using std::pow; using std::sqrt;
"""


def kernel_source(name: str, kinds: tuple, ctype: str, device: bool) -> str:
    """Kernel ``name`` as CuPy generates it, for C++ (``device=False``) or CUDA.

    ``kinds`` says for each parameter whether the call passes an array or a
    scalar. Non-raw arrays are bound to element ``i`` (``const T &x =
    _raw_x[i]``, ``T &y = _raw_y[i]`` for outputs), raw arrays are flat
    pointers, scalars are values, as in CuPy's generated code.
    """
    src = gpu.KERNELS[name]
    ins, outs = parse_params(src.in_params), parse_params(src.out_params)
    sig, bind = ["ptrdiff_t _n"], []
    for k, ((raw, typ, pname), kind) in enumerate(zip(ins + outs, kinds)):
        const = "" if k >= len(ins) else "const "
        ct = "T" if typ == "T" else _CTYPES[typ]
        if kind == "scalar":
            sig.append(f"{ct} {pname}")
        elif raw:
            sig.append(f"{const}{ct}* {pname}")
        else:
            sig.append(f"{const}{ct}* _raw_{pname}")
            bind.append(f"{const}{ct} &{pname} = _raw_{pname}[i];")
    fname = f"{name}_{ctype}"
    if device:
        head = f'extern "C" __global__ void {fname}({", ".join(sig)})'
        loop = ("for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < _n; "
                "i += (ptrdiff_t)blockDim.x * gridDim.x)")
    else:
        head = f'extern "C" void {fname}({", ".join(sig)})'
        loop = "for (ptrdiff_t i = 0; i < _n; ++i)"
    body = "\n".join(bind) + "\n" + src.body
    return (f"namespace ns_{fname} {{\ntypedef {ctype} T;\n{head} {{\n  {loop} {{\n{body}\n  }}\n}}\n"
            f"}}  // namespace ns_{fname}\n")


def _kinds(args) -> tuple:
    return tuple("scalar" if np.isscalar(a) else "array" for a in args)


def _dry_calls():
    """Call every GPU wrapper once on tiny float32 and float64 NumPy arrays."""
    for dt in (np.float32, np.float64):
        z = np.zeros
        gpu.col2im(z((4, 1), dt), (1, 1, 2, 2), 2, 2, 1, 1)
        gpu.max_pool_forward(z((1, 1, 2, 2), dt), 2, 2, 1, 1, 1, 1)
        gpu.max_pool_backward(z((1, 1, 1, 1), dt), z((1, 1, 2, 2), dt), z((1, 1, 1, 1), dt), 2, 2, 1, 1)
        gpu.lrn_forward(z((1, 2, 1, 1), dt), 3, 1e-4, 0.75, 2.0)
        one = np.ones((1, 2, 1, 1), dt)
        gpu.lrn_backward(one, one, one, one, 3, 1e-4, 0.75)
        gpu.adam_update(z(2, dt), z(2, dt), z(2, dt), z(2, dt), 1e-3, 0.9, 0.999, 1e-8, 1)


@pytest.fixture(scope="module")
def kernel_kinds():
    """For each kernel, whether the Python wrapper passes an array or a scalar per parameter."""
    kinds: dict = {}

    def record(name, inputs, outputs):
        k = _kinds(tuple(inputs) + tuple(outputs))
        assert kinds.setdefault(name, k) == k, f"{name} is called with varying argument kinds"

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu, "_launch", record)
        _dry_calls()
    assert set(kinds) == set(gpu.KERNELS), f"kernels never launched: {set(gpu.KERNELS) - set(kinds)}"
    return kinds


@pytest.fixture(scope="module")
def host_kernels(kernel_kinds, tmp_path_factory):
    """A ``_launch`` replacement that runs the kernel sources, built with g++, on NumPy arrays."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the CUDA kernel sources for the host")
    work = tmp_path_factory.mktemp("host_kernels")
    source = _HOST_PRELUDE + "".join(kernel_source(name, kernel_kinds[name], ct, device=False)
                                     for name in gpu.KERNELS for ct in ("float", "double"))
    (work / "kernels.cpp").write_text(source)
    lib_path = work / "kernels.so"
    build = subprocess.run([cxx, "-O1", "-std=c++14", "-shared", "-fPIC", "-o", str(lib_path),
                            str(work / "kernels.cpp")], capture_output=True, text=True)
    assert build.returncode == 0, f"the kernel sources do not compile as C++:\n{build.stderr}"
    lib = ctypes.CDLL(str(lib_path))
    scalar_types = {"int32": ctypes.c_int, "float32": ctypes.c_float, "float64": ctypes.c_double}

    def launch(name, inputs, outputs):
        src = gpu.KERNELS[name]
        params = parse_params(src.in_params) + parse_params(src.out_params)
        args = tuple(inputs) + tuple(outputs)
        assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
        assert _kinds(args) == kernel_kinds[name]
        t_dtypes = {a.dtype for (_, typ, _), a in zip(params, args) if typ == "T" and not np.isscalar(a)}
        assert len(t_dtypes) == 1, f"{name}: arrays of type T have dtypes {t_dtypes}"  # CuPy: TypeError
        T = t_dtypes.pop()
        cargs, n = [], None
        for (raw, typ, pname), a in zip(params, args):
            want = T if typ == "T" else np.dtype(typ)
            if np.isscalar(a):
                if typ == "int32":
                    assert isinstance(a, (int, np.integer)) and -2**31 <= a < 2**31, (name, pname, a)
                cargs.append(scalar_types[want.name](a))
                continue
            assert isinstance(a, np.ndarray) and a.dtype == want, (name, pname, a.dtype, want)
            assert a.flags.c_contiguous, (name, pname)
            if not raw:
                assert n is None or a.size == n, f"{name}: non-raw arrays of different sizes"
                n = a.size
            cargs.append(ctypes.c_void_p(a.ctypes.data))
        fn = getattr(lib, f"{name}_{_CTYPES[T.name]}")
        fn.restype = None
        fn(ctypes.c_ssize_t(n), *cargs)

    return launch


@pytest.fixture
def on_host(host_kernels, monkeypatch):
    """Make the GPU wrappers in :mod:`nnlite.kernels.gpu` run the host-built kernels."""
    monkeypatch.setattr(gpu, "_launch", host_kernels)


COL2IM_CASES = [  # N, C, Hp, Wp, KH, KW, SH, SW
    (2, 3, 7, 6, 3, 3, 1, 1),
    (2, 2, 9, 8, 3, 2, 2, 3),
    (1, 2, 5, 7, 1, 1, 1, 1),
    (2, 1, 10, 9, 2, 3, 3, 2),       # stride > kernel: rows no window reaches
    (1, 3, 11, 11, 5, 5, 2, 2),
    (1, 1, 4, 4, 4, 4, 1, 1),        # one window
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", COL2IM_CASES)
def test_host_col2im_equals_reference(on_host, case, dtype):
    from nnlite.conv import col2im
    N, C, Hp, Wp, KH, KW, SH, SW = case
    OH, OW = (Hp - KH) // SH + 1, (Wp - KW) // SW + 1
    dcols = np.random.default_rng(0).standard_normal((C * KH * KW, N * OH * OW)).astype(dtype)
    got = gpu.col2im(dcols, (N, C, Hp, Wp), KH, KW, SH, SW)
    assert got.dtype == dtype and got.shape == (N, C, Hp, Wp)
    np.testing.assert_array_equal(got, col2im(dcols, (N, C, Hp, Wp), KH, KW, SH, SW))  # same adds, same order


POOL_CASES = [  # kernel, stride, padding, input shape
    ((2, 2), (2, 2), (0, 0), (2, 3, 6, 8)),
    ((3, 3), (2, 2), (0, 0), (2, 2, 7, 9)),     # overlapping, AlexNet style
    ((3, 3), (2, 2), (1, 1), (1, 2, 7, 9)),
    ((2, 3), (1, 2), (1, 1), (2, 1, 5, 6)),
    ((3, 3), (1, 1), (0, 0), (1, 1, 3, 3)),     # kernel == input
    ((1, 1), (2, 2), (0, 0), (1, 2, 5, 5)),     # stride > kernel
]


def _pool_inputs(shape, kind, dtype, seed=0):
    g = np.random.default_rng(seed)
    if kind == "distinct":
        return distinct(shape, seed, dtype)
    if kind == "ties":                           # few distinct values: many tied maxima
        return g.integers(0, 3, size=shape).astype(dtype)
    x = g.standard_normal(shape).astype(dtype)   # "nan": NaN and inf sprinkled in
    flat = x.reshape(-1)
    flat[g.choice(flat.size, size=max(1, flat.size // 10), replace=False)] = np.nan
    flat[g.integers(flat.size)] = np.inf
    return x


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p,shape", POOL_CASES)
def test_host_max_pool_equals_reference(on_host, k, s, p, shape, dtype, kind):
    from nnlite.pooling import max_pool_backward, max_pool_forward, pad_hw
    (KH, KW), (SH, SW), (PH, PW) = k, s, p
    N, C, H, W = shape
    OH, OW = (H - KH + 2 * PH) // SH + 1, (W - KW + 2 * PW) // SW + 1
    xpad = pad_hw(_pool_inputs(shape, kind, dtype), PH, PW, float("-inf"))
    y_ref = max_pool_forward(xpad, KH, KW, SH, SW, OH, OW)
    y = gpu.max_pool_forward(xpad, KH, KW, SH, SW, OH, OW)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)                        # NaN where the reference has NaN
    dy = np.random.default_rng(1).standard_normal(y_ref.shape).astype(dtype)
    dx = gpu.max_pool_backward(dy, xpad, y_ref, KH, KW, SH, SW)
    assert dx.dtype == dtype and dx.shape == xpad.shape
    np.testing.assert_array_equal(dx, max_pool_backward(dy, xpad, y_ref, KH, KW, SH, SW))


def test_host_max_pool_ties_go_to_the_first_maximum(on_host):
    xpad = np.array([[1, 5, 5],
                     [5, 0, 5],
                     [2, 5, 3]], dtype=np.float32)[None, None]
    y = gpu.max_pool_forward(xpad, 2, 2, 1, 1, 2, 2)               # every window's max is 5
    np.testing.assert_array_equal(y[0, 0], [[5, 5], [5, 5]])
    dy = np.array([[1, 2], [4, 8]], dtype=np.float32)[None, None]
    dx = gpu.max_pool_backward(dy, xpad, y, 2, 2, 1, 1)[0, 0]
    # windows (row-major first max): (0,0)->(0,1); (0,1)->(0,1); (1,0)->(1,0); (1,1)->(1,2)
    np.testing.assert_array_equal(dx, [[0, 3, 0], [4, 0, 8], [0, 0, 0]])


LRN_CASES = [(1, 4), (2, 3), (3, 5), (4, 3), (5, 8), (5, 2), (6, 7), (7, 3)]   # size, C


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size,C", LRN_CASES)
def test_host_lrn_equals_reference(on_host, size, C, dtype):
    from nnlite.lrn import lrn_backward, lrn_forward
    g = np.random.default_rng(size * 10 + C)
    x = g.standard_normal((2, C, 3, 4)).astype(dtype)
    alpha, beta, k = 0.7, 0.75, 1.5
    y, s, p = gpu.lrn_forward(x, size, alpha, beta, k)
    y_ref, s_ref, p_ref = lrn_forward(x, size, alpha, beta, k)
    rtol = 1e-6 if dtype == np.float32 else 1e-14               # pow() of two libraries
    assert y.dtype == s.dtype == p.dtype == dtype
    np.testing.assert_array_equal(s, s_ref)                       # same sum, same order
    np.testing.assert_allclose(p, p_ref, rtol=rtol)
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=rtol * np.abs(y_ref).max())
    dy = g.standard_normal(x.shape).astype(dtype)
    dx = gpu.lrn_backward(dy, x, s_ref, p_ref, size, alpha, beta)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, lrn_backward(dy, x, s_ref, p_ref, size, alpha, beta))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_adam_update_equals_the_optimizer(on_host, dtype):
    g = np.random.default_rng(0)
    W = g.standard_normal((3, 4)).astype(dtype)
    grads = [g.standard_normal(W.shape).astype(dtype) for _ in range(3)]
    param = nn.Parameter(W.copy())
    opt = nn.Adam([param], lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6)
    p, m, v = W.copy(), np.zeros_like(W), np.zeros_like(W)
    for t, grad in enumerate(grads, start=1):
        param.grad = grad
        opt.step()
        gpu.adam_update(p, grad, m, v, 0.01, 0.8, 0.95, 1e-6, t)
        assert p.dtype == m.dtype == v.dtype == dtype
        rtol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(p, param.data, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(m, opt.state[param]["m"], rtol=rtol, atol=rtol)
        np.testing.assert_allclose(v, opt.state[param]["v"], rtol=rtol, atol=rtol)


def test_kernel_sources_compile_with_nvcc(kernel_kinds, tmp_path):
    """The same sources as CUDA device code (what NVRTC compiles inside CuPy), to PTX."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA compile check needs the CUDA toolkit")
    source = "#include <cstddef>\n" + "".join(
        kernel_source(name, kernel_kinds[name], ct, device=True)
        for name in gpu.KERNELS for ct in ("float", "double"))
    (tmp_path / "kernels.cu").write_text(source)
    build = subprocess.run([nvcc, "--ptx", "-arch=compute_75", "-o", str(tmp_path / "kernels.ptx"),
                            str(tmp_path / "kernels.cu")], capture_output=True, text=True)
    assert build.returncode == 0, f"nvcc rejects the kernel sources:\n{build.stderr}"
    ptx = (tmp_path / "kernels.ptx").read_text()
    for name in gpu.KERNELS:
        assert f".entry {name}_float" in ptx and f".entry {name}_double" in ptx


# =========================================================================
# 3. On a CUDA GPU
# =========================================================================
def assert_close(gpu_value, cpu_value, rtol, what=""):
    """``gpu_value`` (CuPy) equals ``cpu_value`` (NumPy): same dtype, close values.

    The absolute tolerance is ``rtol`` times the largest magnitude, so that
    entries near zero (sums of cancelling terms) are compared on the scale of
    the whole tensor.
    """
    assert isinstance(gpu_value, cp.ndarray), f"{what}: expected a CuPy array, got {type(gpu_value)}"
    got = to_numpy(gpu_value)
    assert got.dtype == cpu_value.dtype, f"{what}: dtype {got.dtype}, expected {cpu_value.dtype}"
    scale = float(np.abs(cpu_value).max(initial=0.0))
    np.testing.assert_allclose(got, cpu_value, rtol=rtol, atol=rtol * scale + 1e-30, err_msg=what)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason=GPU_REASON)
class TestOnGPU:
    """Everything here runs on CuPy arrays on the first CUDA device."""

    def test_require_gpu_passes_and_models_round_trip(self):
        backend.require_gpu()
        model = small_model()
        values = [p.data.copy() for p in model.parameters()]
        assert model.to_gpu() is model and model.device == "gpu"
        assert all(isinstance(p.data, cp.ndarray) and isinstance(p.grad, cp.ndarray)
                   for p in model.parameters())
        model.to_cpu()
        for p, v in zip(model.parameters(), values):
            assert isinstance(p.data, np.ndarray)
            np.testing.assert_array_equal(p.data, v)                  # lossless both ways

    @pytest.mark.parametrize("case", LAYER_CASES, ids=repr)
    def test_layer_forward_backward_match_numpy(self, case):
        cpu_layer, gpu_layer = case.make(), case.make()
        assert gpu_layer.to_device("gpu") is gpu_layer
        x = distinct(case.shape, seed=7)
        y = cpu_layer.forward(x, training=case.training)
        y_gpu = gpu_layer.forward(cp.asarray(x), training=case.training)
        assert_close(y_gpu, y, 2e-5, f"{case} forward")
        dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
        dx = cpu_layer.backward(dy)
        dx_gpu = gpu_layer.backward(cp.asarray(dy))
        assert_close(dx_gpu, dx, 2e-5, f"{case} backward dx")
        for (name, p), (_, q) in zip(cpu_layer.named_parameters(), gpu_layer.named_parameters()):
            assert_close(q.grad, p.grad, 2e-5, f"{case} d{name}")

    @pytest.mark.parametrize("case", LAYER_CASES, ids=repr)
    def test_gradcheck_float64_on_gpu(self, case):
        layer = case.make().to_device("gpu")
        x = cp.asarray(distinct(case.gc_shape, seed=11, dtype=np.float64))
        if isinstance(layer, nn.Dropout):
            keep = np.random.default_rng(3).random(case.gc_shape) >= layer.rate
            layer.fix_mask(cp.asarray(keep))
        result = nn.gradcheck(layer, x, training=case.training)
        assert all(isinstance(p.data, cp.ndarray) and p.dtype == np.float64
                   for p in layer.parameters())
        assert result.max_error < 1e-6, f"{case}:\n{result}"

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("case", COL2IM_CASES)
    def test_col2im_kernel(self, case, dtype):
        from nnlite.conv import col2im
        N, C, Hp, Wp, KH, KW, SH, SW = case
        OH, OW = (Hp - KH) // SH + 1, (Wp - KW) // SW + 1
        dcols = np.random.default_rng(0).standard_normal((C * KH * KW, N * OH * OW)).astype(dtype)
        got = gpu.col2im(cp.asarray(dcols), (N, C, Hp, Wp), KH, KW, SH, SW)
        assert isinstance(got, cp.ndarray) and got.dtype == dtype
        np.testing.assert_array_equal(to_numpy(got), col2im(dcols, (N, C, Hp, Wp), KH, KW, SH, SW))
        # the plain reference also runs on CuPy arrays (ConvTranspose2D uses it directly)
        assert_close(col2im(cp.asarray(dcols), (N, C, Hp, Wp), KH, KW, SH, SW),
                     to_numpy(got), 1e-12)

    @pytest.mark.parametrize("kind", ["distinct", "ties", "nan"])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("k,s,p,shape", POOL_CASES)
    def test_max_pool_kernels(self, k, s, p, shape, dtype, kind):
        from nnlite.pooling import max_pool_backward, max_pool_forward, pad_hw
        (KH, KW), (SH, SW), (PH, PW) = k, s, p
        N, C, H, W = shape
        OH, OW = (H - KH + 2 * PH) // SH + 1, (W - KW + 2 * PW) // SW + 1
        xpad = pad_hw(_pool_inputs(shape, kind, dtype), PH, PW, float("-inf"))
        y_ref = max_pool_forward(xpad, KH, KW, SH, SW, OH, OW)
        y = gpu.max_pool_forward(cp.asarray(xpad), KH, KW, SH, SW, OH, OW)
        np.testing.assert_array_equal(to_numpy(y), y_ref)
        dy = np.random.default_rng(1).standard_normal(y_ref.shape).astype(dtype)
        dx = gpu.max_pool_backward(cp.asarray(dy), cp.asarray(xpad), y, KH, KW, SH, SW)
        assert isinstance(dx, cp.ndarray) and dx.dtype == dtype
        np.testing.assert_array_equal(to_numpy(dx), max_pool_backward(dy, xpad, y_ref, KH, KW, SH, SW))

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    @pytest.mark.parametrize("size,C", LRN_CASES)
    def test_lrn_kernels(self, size, C, dtype):
        from nnlite.lrn import lrn_backward, lrn_forward
        g = np.random.default_rng(size * 10 + C)
        x = g.standard_normal((2, C, 3, 4)).astype(dtype)
        dy = g.standard_normal(x.shape).astype(dtype)
        rtol = 2e-6 if dtype == np.float32 else 1e-13       # fused multiply-adds, powf
        ref = lrn_forward(x, size, 0.7, 0.75, 1.5)
        out = gpu.lrn_forward(cp.asarray(x), size, 0.7, 0.75, 1.5)
        for got, want, what in zip(out, ref, ("y", "s", "p")):
            assert_close(got, want, rtol, f"lrn_forward {what}")
        y, s, p = ref
        dx = gpu.lrn_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(s), cp.asarray(p),
                              size, 0.7, 0.75)
        assert_close(dx, lrn_backward(dy, x, s, p, size, 0.7, 0.75), 4 * rtol, "lrn_backward")

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_adam_kernel_matches_the_cpu_optimizer(self, dtype):
        g = np.random.default_rng(0)
        W = g.standard_normal((5, 7)).astype(dtype)
        grads = [g.standard_normal(W.shape).astype(dtype) for _ in range(4)]
        cpu_p, gpu_p = nn.Parameter(W.copy()), nn.Parameter(cp.asarray(W))
        cpu_opt, gpu_opt = nn.Adam([cpu_p], lr=0.01), nn.Adam([gpu_p], lr=0.01)
        for grad in grads:
            cpu_p.grad, gpu_p.grad = grad, cp.asarray(grad)
            cpu_opt.step()
            gpu_opt.step()
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        assert_close(gpu_p.data, cpu_p.data, rtol, "Adam p")
        assert_close(gpu_opt.state[gpu_p]["m"], cpu_opt.state[cpu_p]["m"], rtol, "Adam m")
        assert_close(gpu_opt.state[gpu_p]["v"], cpu_opt.state[cpu_p]["v"], rtol, "Adam v")

    def test_dispatcher_sends_cupy_arrays_to_the_cuda_kernels(self):
        a = cp.zeros((2, 2), dtype=cp.float32)
        for name in ("col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
                     "lrn_backward", "adam_update"):
            assert kernels.backend_for(name, a) == "gpu", name

    def test_layers_use_the_cuda_kernels(self, monkeypatch):
        calls = []
        for name in ("col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
                     "lrn_backward", "adam_update"):
            original = getattr(gpu, name)

            def spy(*args, _name=name, _f=original, **kwargs):
                calls.append(_name)
                return _f(*args, **kwargs)
            monkeypatch.setattr(gpu, name, spy)
        model = nn.zoo.reduced_alexnet(input_shape=(1, 32, 32), channels=(4, 8, 8, 8, 8),
                                       hidden=16, seed=0).to_gpu()
        opt = nn.Adam(model.parameters(), lr=1e-3)
        x = cp.asarray(distinct((2, 1, 32, 32)))
        _, dlogits = nn.SoftmaxCrossEntropy()(model.forward(x, training=True), cp.asarray([0, 1]))
        model.backward(dlogits)
        opt.step()
        assert set(calls) == {"col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
                              "lrn_backward", "adam_update"}

    @staticmethod
    def _fit(device, epochs=3, **fit_kwargs):
        x, y = two_blob_images(64, size=12, seed=0)
        xv, yv = two_blob_images(32, size=12, seed=1)
        model = nn.zoo.mias_cnn(num_classes=2, input_shape=(1, 12, 12), seed=0).to_device(device)
        opt = nn.Adam(model.parameters(), lr=2e-3)
        hist = model.fit(x, y, loss=nn.SoftmaxCrossEntropy(), optimizer=opt, epochs=epochs,
                         batch_size=16, validation_data=(xv, yv), seed=0, verbose=0, **fit_kwargs)
        return model, opt, hist

    def test_training_gives_the_cpu_loss_curve(self):
        cpu_model, _, cpu_hist = self._fit("cpu")
        gpu_model, gpu_opt, gpu_hist = self._fit("gpu")
        assert gpu_model.device == "gpu"
        assert all(isinstance(s["m"], cp.ndarray) for s in gpu_opt.state.values())
        for key in ("loss", "val_loss"):
            np.testing.assert_allclose(gpu_hist[key], cpu_hist[key], rtol=2e-3, atol=1e-4,
                                       err_msg=key)
        assert gpu_hist["loss"][-1] < gpu_hist["loss"][0]
        x, _ = two_blob_images(16, size=12, seed=2)
        np.testing.assert_allclose(gpu_model.predict(x), cpu_model.predict(x), rtol=1e-2, atol=1e-2)

    @pytest.mark.parametrize("make_opt", [
        lambda ps: nn.Adam(ps, lr=1e-2),
        lambda ps: nn.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
        lambda ps: nn.RMSProp(ps, lr=1e-3, weight_decay=1e-2),
    ], ids=["Adam", "SGD-nesterov", "RMSProp-wd"])
    def test_optimizer_state_follows_the_parameters(self, make_opt):
        x, y = distinct((8, 1, 6, 6), seed=4), np.arange(8) % 2
        loss = nn.SoftmaxCrossEntropy()

        def step(model, opt, xb, yb):
            _, d = loss(model.forward(xb, training=True), yb)
            model.backward(d)
            opt.step()

        moved, stayed = small_model(), small_model()
        opt_moved, opt_stayed = make_opt(moved.parameters()), make_opt(stayed.parameters())
        step(moved, opt_moved, x, y)
        step(stayed, opt_stayed, x, y)
        moved.to_gpu()                                       # state created on the CPU moves next step
        step(moved, opt_moved, cp.asarray(x), cp.asarray(y))
        step(stayed, opt_stayed, x, y)
        for state in opt_moved.state.values():
            assert all(isinstance(v, cp.ndarray) for v in state.values() if hasattr(v, "dtype"))
        for p, q in zip(moved.parameters(), stayed.parameters()):
            assert_close(p.data, q.data, 1e-5, "parameters after a CPU step and a GPU step")
        moved.to_cpu()
        step(moved, opt_moved, x, y)                         # and back
        assert all(isinstance(v, np.ndarray) for s in opt_moved.state.values()
                   for v in s.values() if hasattr(v, "dtype"))

    def test_save_on_gpu_load_on_cpu_and_back(self, tmp_path):
        model = nn.zoo.mias_cnn(num_classes=2, input_shape=(1, 12, 12), seed=1).to_gpu()
        path = nn.save(model, tmp_path / "gpu_model.npz")
        with np.load(path, allow_pickle=False) as z:               # plain NumPy inside
            assert all(isinstance(z[k], np.ndarray) for k in z.files)
        cpu_model = nn.load(path)
        assert cpu_model.device == "cpu"
        for p, q in zip(model.parameters(), cpu_model.parameters()):
            assert isinstance(q.data, np.ndarray)
            np.testing.assert_array_equal(q.data, to_numpy(p.data))
        x, _ = two_blob_images(8, size=12, seed=3)
        np.testing.assert_allclose(cpu_model.predict(x), model.predict(x), rtol=1e-4, atol=1e-5)
        gpu_again = nn.load(path, device="gpu")
        assert gpu_again.device == "gpu"
        np.testing.assert_allclose(gpu_again.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
        into_gpu = nn.zoo.mias_cnn(num_classes=2, input_shape=(1, 12, 12), seed=9).to_gpu()
        nn.load_weights(into_gpu, path)                           # loading keeps the model's device
        assert into_gpu.device == "gpu"
        np.testing.assert_allclose(into_gpu.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)

    def test_checkpoint_from_gpu_resumes_on_cpu(self, tmp_path):
        ckpt = tmp_path / "run.npz"
        self._fit("gpu", epochs=1, checkpoint_path=ckpt)
        shutil.copy(ckpt, tmp_path / "for_gpu.npz")
        shutil.copy(ckpt, tmp_path / "for_cpu.npz")
        _, cpu_opt, cpu_hist = self._fit("cpu", epochs=2, checkpoint_path=tmp_path / "for_cpu.npz",
                                         resume=True)
        _, _, gpu_hist = self._fit("gpu", epochs=2, checkpoint_path=tmp_path / "for_gpu.npz",
                                   resume=True)
        assert cpu_hist.epochs == gpu_hist.epochs == 2
        assert all(isinstance(s["m"], np.ndarray) for s in cpu_opt.state.values())
        np.testing.assert_allclose(cpu_hist["loss"], gpu_hist["loss"], rtol=2e-3, atol=1e-4)
