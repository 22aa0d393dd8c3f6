"""The array backend: the one module that knows NumPy from CuPy.

Every other file in nnlite asks this module for the array module ``xp`` that
matches the arrays it was given (``xp = get_array_module(x)``), so layer code
reads the same on the CPU and on the GPU. Nothing else imports CuPy.

It also holds the dtype policy (float32 by default, float64 for gradient
checks) and the explicit, seedable random generator used for initialisation
and dropout: there is no global random state anywhere in nnlite.
"""
from __future__ import annotations

import numpy

try:  # CuPy is optional (the ``gpu`` extra); a missing or broken install means CPU only.
    import cupy  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    cupy = None

DEFAULT_DTYPE = numpy.dtype("float32")
FLOAT_DTYPES = (numpy.dtype("float32"), numpy.dtype("float64"))


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover - depends on the machine
        return False


def require_gpu() -> None:
    """Raise a clear error when the GPU path is asked for but cannot run."""
    if cupy is None:
        raise RuntimeError(
            "GPU requested but CuPy is not installed: install nnlite with the "
            "'gpu' extra (pip install 'nnlite[gpu]') on a machine with CUDA")
    if not gpu_available():
        raise RuntimeError("GPU requested but CuPy sees no CUDA device on this machine")


def device_of(a) -> str:
    """``"gpu"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "gpu" if get_array_module(a) is not numpy else "cpu"


def to_device(a, device: str):
    """Move an array to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); no copy if already there."""
    if device == "cpu":
        return to_numpy(a)
    if device == "gpu":
        require_gpu()
        return cupy.asarray(a)
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_numpy(a):
    """Return ``a`` as a NumPy array (copying from the GPU if needed)."""
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy.asnumpy(a)
    return numpy.asarray(a)


def resolve_dtype(dtype) -> numpy.dtype:
    """Normalise ``"float32"``/``"float64"``/NumPy dtypes; reject anything else."""
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


class Generator:
    """An explicit, seedable random generator (no global state).

    Wraps :class:`numpy.random.Generator` (PCG64). Draws happen on the CPU and
    are moved to the device of ``like`` when one is given, so a seed gives
    the same numbers on CPU and GPU, and bit-identical results on the CPU.

    >>> rng = Generator(0)
    >>> rng.normal((2, 3), std=0.1).dtype
    dtype('float32')
    """

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = numpy.random.default_rng(seed)

    def _place(self, a, like):
        if like is not None and device_of(like) == "gpu":
            return cupy.asarray(a)
        return a

    def normal(self, shape, std=1.0, dtype=DEFAULT_DTYPE, like=None):
        """Gaussian samples with mean 0 and standard deviation ``std``."""
        a = self._rng.standard_normal(shape).astype(dtype) * numpy.asarray(std, dtype=dtype)
        return self._place(a.astype(dtype, copy=False), like)

    def uniform(self, shape, low=0.0, high=1.0, dtype=DEFAULT_DTYPE, like=None):
        """Uniform samples in ``[low, high)``."""
        a = self._rng.uniform(low, high, size=shape).astype(dtype)
        return self._place(a, like)

    def random(self, shape, dtype=DEFAULT_DTYPE, like=None):
        """Uniform samples in ``[0, 1)`` (used by dropout masks)."""
        a = self._rng.random(shape, dtype=numpy.float32 if dtype == numpy.float32 else numpy.float64)
        return self._place(a.astype(dtype, copy=False), like)

    def permutation(self, n):
        """A random permutation of ``range(n)`` as a NumPy int64 array."""
        return self._rng.permutation(n)

    def integers(self, low, high=None, size=None):
        return self._rng.integers(low, high, size=size)

    def spawn(self):
        """A child generator with its own independent stream."""
        child = Generator.__new__(Generator)
        child.seed = None
        child._rng = self._rng.spawn(1)[0]
        return child

    def get_state(self) -> dict:
        """The bit-generator state (JSON-friendly dict) for checkpoints."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state


def as_generator(seed_or_rng) -> Generator:
    """Accept ``None``, an int seed, or a :class:`Generator`."""
    if isinstance(seed_or_rng, Generator):
        return seed_or_rng
    return Generator(seed_or_rng)
