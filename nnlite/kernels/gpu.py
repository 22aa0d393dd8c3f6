"""CuPy kernels for the GPU: the CUDA twins of nnlite's plain NumPy references.

Each public function here has exactly the signature and the result of a
plain reference function in :mod:`nnlite.functional`, which stays the readable
definition of what is computed; ``tests/test_gpu.py`` holds the two equal:

=====================  =====================================
kernel                 reference
=====================  =====================================
``col2im``             :func:`nnlite.functional.col2im`
``max_pool_forward``   :func:`nnlite.functional.max_pool_forward`
``max_pool_backward``  :func:`nnlite.functional.max_pool_backward`
``lrn_forward``        :func:`nnlite.functional.lrn_forward`
``lrn_backward``       :func:`nnlite.functional.lrn_backward`
``adam_update``        :func:`nnlite.functional.adam_update` (without AMSGrad; the bias
                       corrections folded into two scalars: equal to rounding)
=====================  =====================================

Do not call these directly: go through :mod:`nnlite.kernels`, which picks
this module for CuPy arrays. Everything else on the GPU is plain CuPy array
code (the same lines as on the CPU, with ``xp = cupy``); these are the places
where that code would launch one small kernel per kernel offset (KH*KW
strided adds for col2im and max pooling) or allocate many temporaries (LRN,
Adam).

How the kernels are written (shape notation of :mod:`nnlite.layer`):

* Each is a ``cupy.ElementwiseKernel`` with **one CUDA thread per output
  element** that *gathers* what it needs (no atomics, no scatter), so the
  result is deterministic and does not depend on the launch configuration.
  ``i`` in a kernel body is that element's flat (C-order) index; raw arrays
  are passed flattened to 1-D, so ``a[k]`` is the k-th element in C order.
* Sums are taken in the reference's order wherever the reference fixes one
  (kernel offsets row-major; LRN channels c, c-1, .., c+1, ..), so most
  results equal the reference's up to float rounding of fused
  multiply-adds and ``pow``.
* Scalars are cast by CuPy to the declared parameter type: ``T`` (the
  arrays' float32/float64) or ``int32``; no double literal appears in float
  arithmetic, so float32 stays float32.
* Index arithmetic is in 32-bit ``int`` (fast on the GPU) for positions
  inside the output; offsets into the larger input buffers use ``ptrdiff_t``.
  The wrappers refuse outputs of 2**31 elements or more with a clear error.
* The CUDA sources live in :data:`KERNELS` as plain strings. CuPy is imported
  (through :mod:`nnlite.backend`) only when a kernel is first launched, and
  each kernel is compiled once per dtype by NVRTC and cached by CuPy.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy

from .. import backend, functional
from ..backend import get_array_module
from ..layer import conv_output_size

_INT32_MAX = 2**31 - 1


class KernelSource(NamedTuple):
    """The three strings of a ``cupy.ElementwiseKernel``: inputs, outputs, loop body."""
    in_params: str
    out_params: str
    body: str


#: The CUDA sources, by kernel name. ``T`` is the float type of the arrays.
KERNELS: dict = {
    # dx[n, c, h, w] = sum over (ki, kj) with h = oh*SH + ki, w = ow*SW + kj of
    #                  dcols[(c, ki, kj), (n, oh, ow)]      (the adjoint of im2col)
    "col2im": KernelSource(
        "raw T dcols, int32 N, int32 C, int32 Hp, int32 Wp, int32 KH, int32 KW, "
        "int32 SH, int32 SW, int32 OH, int32 OW",
        "T dx",
        """
        const int idx = (int)i;                       // (n, c, h, w) in (N, C, Hp, Wp)
        const int w = idx % Wp;
        const int h = (idx / Wp) % Hp;
        const int c = (idx / (Wp * Hp)) % C;
        const int n = idx / (Wp * Hp * C);
        const ptrdiff_t L = (ptrdiff_t)N * OH * OW;   // columns of dcols
        T acc = 0;
        // Offsets in row-major order, as the reference adds them. Only ki = h (mod SH)
        // can reach row h: oh = (h - ki) / SH, exact; it falls as ki grows.
        for (int ki = h % SH; ki < KH; ki += SH) {
            const int oh = (h - ki) / SH;
            if (oh < 0) break;
            if (oh >= OH) continue;
            for (int kj = w % SW; kj < KW; kj += SW) {
                const int ow = (w - kj) / SW;
                if (ow < 0) break;
                if (ow >= OW) continue;
                const ptrdiff_t row = (ptrdiff_t)(c * KH + ki) * KW + kj;
                acc += dcols[row * L + ((ptrdiff_t)n * OH + oh) * OW + ow];
            }
        }
        dx = acc;
        """),

    # y[n, c, oh, ow] = max_{ki, kj} xpad[n, c, oh*SH + ki, ow*SW + kj]; NaN propagates
    "max_pool_forward": KernelSource(
        "raw T xpad, int32 Hp, int32 Wp, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 OH, int32 OW",
        "T y",
        """
        const int idx = (int)i;                       // (nc, oh, ow) in (N*C, OH, OW)
        const int ow = idx % OW;
        const int oh = (idx / OW) % OH;
        const int nc = idx / (OW * OH);
        const ptrdiff_t base = ((ptrdiff_t)nc * Hp + oh * SH) * Wp + ow * SW;
        T m = xpad[base];
        for (int ki = 0; ki < KH; ++ki) {
            for (int kj = 0; kj < KW; ++kj) {
                const T v = xpad[base + (ptrdiff_t)ki * Wp + kj];
                if (v > m || v != v) m = v;           // v != v: v is NaN, which wins
            }
        }
        y = m;
        """),

    # arg[n, c, oh, ow] = ki*KW + kj of the first (row-major) window element equal to y,
    # or -1 when none is (y is NaN)
    "max_pool_argmax": KernelSource(
        "raw T xpad, T y, int32 Hp, int32 Wp, int32 KH, int32 KW, int32 SH, int32 SW, "
        "int32 OH, int32 OW",
        "int32 arg",
        """
        const int idx = (int)i;
        const int ow = idx % OW;
        const int oh = (idx / OW) % OH;
        const int nc = idx / (OW * OH);
        const ptrdiff_t base = ((ptrdiff_t)nc * Hp + oh * SH) * Wp + ow * SW;
        int first = -1;
        for (int k = 0; k < KH * KW; ++k) {
            if (xpad[base + (ptrdiff_t)(k / KW) * Wp + k % KW] == y) {
                first = k;
                break;
            }
        }
        arg = first;
        """),

    # dxp[n, c, h, w] = sum of dy[n, c, oh, ow] over the windows (oh, ow) whose first
    # maximum sits at (h, w)
    "max_pool_backward": KernelSource(
        "raw T dy, raw int32 arg, int32 Hp, int32 Wp, int32 KH, int32 KW, int32 SH, "
        "int32 SW, int32 OH, int32 OW",
        "T dxp",
        """
        const int idx = (int)i;                       // (nc, h, w) in (N*C, Hp, Wp)
        const int w = idx % Wp;
        const int h = (idx / Wp) % Hp;
        const int nc = idx / (Wp * Hp);
        // Windows holding row h: oh*SH <= h <= oh*SH + KH - 1, within 0 .. OH-1.
        const int oh_lo = h >= KH ? (h - KH) / SH + 1 : 0;
        const int oh_hi = min(h / SH, OH - 1);
        const int ow_lo = w >= KW ? (w - KW) / SW + 1 : 0;
        const int ow_hi = min(w / SW, OW - 1);
        T acc = 0;
        // Descending (oh, ow) is ascending (ki, kj): the reference's order of adds.
        for (int oh = oh_hi; oh >= oh_lo; --oh) {
            const int ki = h - oh * SH;
            for (int ow = ow_hi; ow >= ow_lo; --ow) {
                const int kj = w - ow * SW;
                const ptrdiff_t o = ((ptrdiff_t)nc * OH + oh) * OW + ow;
                if (arg[o] == ki * KW + kj) acc += dy[o];
            }
        }
        dxp = acc;
        """),

    # s = k + (alpha/size) * sum_{c' = c-before .. c+after, clipped} x[c']**2;
    # p = s**-beta; y = x * p
    "lrn_forward": KernelSource(
        "raw T x, int32 C, int32 HW, int32 before, int32 after, T k, T scale, T neg_beta",
        "T y, T s, T p",
        """
        const int idx = (int)i;                       // (n, c, hw) in (N, C, H*W)
        const int c = (idx / HW) % C;
        const ptrdiff_t base = (ptrdiff_t)idx - (ptrdiff_t)c * HW;   // channel 0
        const T xc = x[idx];
        T acc = xc * xc;                              // the reference's order: c, c-1, .., c+1, ..
        for (int d = 1; d <= before && c - d >= 0; ++d) {
            const T a = x[base + (ptrdiff_t)(c - d) * HW];
            acc += a * a;
        }
        for (int d = 1; d <= after && c + d < C; ++d) {
            const T a = x[base + (ptrdiff_t)(c + d) * HW];
            acc += a * a;
        }
        const T sc = k + scale * acc;
        const T pc = pow(sc, neg_beta);
        s = sc;
        p = pc;
        y = xc * pc;
        """),

    # t = dy * x * p / s = dy_c * x_c * s_c**(-beta-1)
    "lrn_backward_t": KernelSource(
        "T dy, T x, T p, T s",
        "T t",
        "t = dy * x * p / s;"),

    # dx = dy * p - coef * x * sum_{c' = c-before .. c+after, clipped} t[c']
    "lrn_backward": KernelSource(
        "raw T t, T dy, T x, T p, int32 C, int32 HW, int32 before, int32 after, T coef",
        "T dx",
        """
        const int idx = (int)i;
        const int c = (idx / HW) % C;
        const ptrdiff_t base = (ptrdiff_t)idx - (ptrdiff_t)c * HW;
        T back = t[idx];
        for (int d = 1; d <= before && c - d >= 0; ++d) back += t[base + (ptrdiff_t)(c - d) * HW];
        for (int d = 1; d <= after && c + d < C; ++d) back += t[base + (ptrdiff_t)(c + d) * HW];
        dx = dy * p - coef * x * back;
        """),

    # m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    # p <- p - (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)     (in place)
    "adam_update": KernelSource(
        "T g, T b1, T one_minus_b1, T b2, T one_minus_b2, T inv_sqrt_bc2, T eps, T step",
        "T p, T m, T v",
        """
        const T mi = m * b1 + g * one_minus_b1;
        const T vi = v * b2 + (g * g) * one_minus_b2;
        m = mi;
        v = vi;
        p -= (mi / (sqrt(vi) * inv_sqrt_bc2 + eps)) * step;
        """),
}


@functools.lru_cache(maxsize=None)
def _elementwise_kernel(name: str):
    """The compiled-on-first-call ``cupy.ElementwiseKernel`` for ``KERNELS[name]``."""
    cupy = _cupy()
    src = KERNELS[name]
    return cupy.ElementwiseKernel(src.in_params, src.out_params, src.body, f"nnlite_{name}")


_checked_cupy = None   # the CuPy module that last passed backend.require_gpu()


def _cupy():
    """The CuPy module, or the backend's clear error when CuPy or a GPU is missing.

    The device check (a CUDA runtime call) runs once per CuPy module, not at
    every launch.
    """
    global _checked_cupy
    cupy = backend.cupy
    if cupy is None or cupy is not _checked_cupy:
        backend.require_gpu()
        _checked_cupy = cupy
    return cupy


def _launch(name: str, inputs: tuple, outputs: tuple) -> None:
    """Run kernel ``name`` on ``inputs`` (arrays and scalars), writing into ``outputs``.

    Every array must be a CuPy array on the current device; the kernel's
    loop runs over the elements of the (same-sized) non-raw arrays.
    """
    cupy = _cupy()
    for a in inputs + outputs:
        if not numpy.isscalar(a) and not isinstance(a, cupy.ndarray):
            raise ValueError(f"nnlite.kernels.gpu.{name} needs CuPy arrays, got "
                             f"{type(a).__module__}.{type(a).__name__}; NumPy arrays go "
                             f"through nnlite.kernels, which picks the CPU kernels")
    _elementwise_kernel(name)(*inputs, *outputs)


# ------------------------------------------------------------------ helpers
def _check_float(a, what: str):
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise ValueError(f"nnlite.kernels.gpu.{what}: expected float32 or float64 arrays, "
                         f"got {a.dtype}")


def _check_size(n: int, what: str) -> None:
    if n > _INT32_MAX:
        raise ValueError(f"nnlite.kernels.gpu.{what}: {n} output elements exceed the "
                         f"kernels' 32-bit indexing (2**31 - 1); use a smaller batch")


def _flat(a):
    """``a`` as a C-contiguous 1-D array (a view when it already is contiguous)."""
    return get_array_module(a).ascontiguousarray(a).reshape(-1)


# ------------------------------------------------------------------ col2im
def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """CUDA :func:`nnlite.functional.col2im`: add the columns back onto the image.

    The kernel has no dilation: with ``DH`` or ``DW`` > 1 this is the plain
    reference (strided CuPy adds).

    ``dx_padded[n, c, oh*SH + ki, ow*SW + kj] += dcols[(c, ki, kj), (n, oh, ow)]``
    for every column, computed as a gather: the thread of pixel ``(n, c, h, w)``
    sums the column entries of every window that contains it (offsets
    ``ki = h mod SH, h mod SH + SH, ...`` below KH, likewise kj), in the
    reference's row-major offset order.

    Args:
        dcols: ``(C*KH*KW, N*OH*OW)`` CuPy array, float32 or float64.
        x_padded_shape: ``(N, C, Hp, Wp)``.

    Returns:
        dx_padded: ``(N, C, Hp, Wp)`` in ``dcols``' dtype.
    """
    if DH != 1 or DW != 1:
        return functional.col2im(dcols, x_padded_shape, KH, KW, SH, SW, DH, DW)
    N, C, Hp, Wp = (int(v) for v in x_padded_shape)
    KH, KW, SH, SW = int(KH), int(KW), int(SH), int(SW)
    OH, OW = conv_output_size(Hp, KH, 0, SH), conv_output_size(Wp, KW, 0, SW)
    if tuple(dcols.shape) != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected dcols of shape {(C * KH * KW, N * OH * OW)} for an "
                         f"image {(N, C, Hp, Wp)}, got {tuple(dcols.shape)}")
    _check_float(dcols, "col2im")
    _check_size(N * C * Hp * Wp, "col2im")
    xp = get_array_module(dcols)
    dx = xp.empty((N, C, Hp, Wp), dtype=dcols.dtype)
    _launch("col2im", (_flat(dcols), N, C, Hp, Wp, KH, KW, SH, SW, OH, OW), (dx.reshape(-1),))
    return dx


# --------------------------------------------------------------- max pool
def max_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """CUDA :func:`nnlite.functional.max_pool_forward`: ``(N, C, Hp, Wp) -> (N, C, OH, OW)``.

    ``y[n, c, oh, ow] = max_{ki<KH, kj<KW} xpad[n, c, oh*SH + ki, ow*SW + kj]``,
    one thread per output; a NaN in the window makes the maximum NaN, as
    with ``numpy.maximum``.
    """
    N, C, Hp, Wp = (int(v) for v in xpad.shape)
    KH, KW, SH, SW, OH, OW = (int(v) for v in (KH, KW, SH, SW, OH, OW))
    if (OH - 1) * SH + KH > Hp or (OW - 1) * SW + KW > Wp:
        raise ValueError(f"max_pool_forward: a {OH}x{OW} output with kernel {KH}x{KW} and "
                         f"stride {SH}x{SW} does not fit the padded input {Hp}x{Wp}")
    _check_float(xpad, "max_pool_forward")
    _check_size(N * C * OH * OW, "max_pool_forward")
    xp = get_array_module(xpad)
    y = xp.empty((N, C, OH, OW), dtype=xpad.dtype)
    _launch("max_pool_forward", (_flat(xpad), Hp, Wp, KH, KW, SH, SW, OH, OW), (y.reshape(-1),))
    return y


def max_pool_backward(dy, xpad, y, KH, KW, SH, SW):
    """CUDA :func:`nnlite.functional.max_pool_backward`: the gradient w.r.t. ``xpad``.

    Two gathers instead of a scatter: first, one thread per window finds the
    first element (row-major) equal to the window's maximum ``y`` (int32
    ``ki*KW + kj``, or -1 when ``y`` is NaN and no element equals it); then
    one thread per input element adds the ``dy`` of every window that chose
    it. Ties thus send the whole gradient to the first maximum, and an element
    that is the maximum of several overlapping windows gets the sum of their
    ``dy``, added in the reference's order.

    Shapes: dy and y ``(N, C, OH, OW)``; xpad and the result ``(N, C, Hp, Wp)``.
    """
    N, C, Hp, Wp = (int(v) for v in xpad.shape)
    OH, OW = (int(v) for v in dy.shape[2:])
    KH, KW, SH, SW = int(KH), int(KW), int(SH), int(SW)
    if tuple(dy.shape) != (N, C, OH, OW) or tuple(y.shape) != tuple(dy.shape):
        raise ValueError(f"max_pool_backward: dy {tuple(dy.shape)} and y {tuple(y.shape)} must "
                         f"both be (N, C, OH, OW) with N, C = {N}, {C} from xpad "
                         f"{tuple(xpad.shape)}")
    for a, what in ((dy, "dy"), (xpad, "xpad"), (y, "y")):
        _check_float(a, f"max_pool_backward ({what})")
    _check_size(N * C * Hp * Wp, "max_pool_backward")
    xp = get_array_module(dy)
    arg = xp.empty((N * C * OH * OW,), dtype="int32")
    _launch("max_pool_argmax",
            (_flat(xpad), _flat(y).astype(xpad.dtype, copy=False), Hp, Wp, KH, KW, SH, SW, OH, OW),
            (arg,))
    dxp = xp.empty((N, C, Hp, Wp), dtype=dy.dtype)
    _launch("max_pool_backward", (_flat(dy), arg, Hp, Wp, KH, KW, SH, SW, OH, OW),
            (dxp.reshape(-1),))
    return dxp


# -------------------------------------------------------------------- LRN
def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """CUDA :func:`nnlite.functional.lrn_forward`: returns ``(y, s, p)``, each ``(N, C, H, W)``.

    ``s_c = k + (alpha/size) * sum_{c' = c - size//2}^{c + (size-1)//2} x_{c'}**2``
    (clipped to the channels that exist), ``p = s**-beta``, ``y = x * p``; one
    thread per element, reading its ``size`` channel neighbours.
    """
    if x.ndim != 4:
        raise ValueError(f"lrn_forward: expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    _check_float(x, "lrn_forward")
    _check_size(int(x.size), "lrn_forward")
    N, C, H, W = (int(v) for v in x.shape)
    size = int(size)
    xp = get_array_module(x)
    y, s, p = (xp.empty((N, C, H, W), dtype=x.dtype) for _ in range(3))
    t = x.dtype.type
    _launch("lrn_forward",
            (_flat(x), C, H * W, size // 2, (size - 1) // 2, t(k), t(alpha / size), t(-beta)),
            (y.reshape(-1), s.reshape(-1), p.reshape(-1)))
    return y, s, p


def lrn_backward(dy, x, s, p, size: int, alpha: float, beta: float):
    """CUDA :func:`nnlite.functional.lrn_backward`: ``dx`` of shape ``(N, C, H, W)``.

    ``t_c = dy_c x_c p_c / s_c`` (one elementwise pass), then
    ``dx_j = dy_j p_j - (2 alpha beta / size) x_j sum_{c = j-(size-1)//2}^{j+size//2} t_c``
    (the forward window flipped, clipped to the channels that exist).
    """
    if x.ndim != 4 or not (dy.shape == x.shape == s.shape == p.shape):
        raise ValueError(f"lrn_backward: dy, x, s and p must share one (N, C, H, W) shape, got "
                         f"{tuple(dy.shape)}, {tuple(x.shape)}, {tuple(s.shape)}, "
                         f"{tuple(p.shape)}")
    for a, what in ((dy, "dy"), (x, "x"), (s, "s"), (p, "p")):
        _check_float(a, f"lrn_backward ({what})")
    _check_size(int(x.size), "lrn_backward")
    N, C, H, W = (int(v) for v in x.shape)
    size = int(size)
    xp = get_array_module(dy)
    dt = dy.dtype
    dy1, x1, p1, s1 = (_flat(a).astype(dt, copy=False) for a in (dy, x, p, s))
    t = xp.empty((N * C * H * W,), dtype=dt)
    _launch("lrn_backward_t", (dy1, x1, p1, s1), (t,))
    dx = xp.empty((N, C, H, W), dtype=dt)
    _launch("lrn_backward",
            (t, dy1, x1, p1, C, H * W, (size - 1) // 2, size // 2,
             dt.type(2.0 * alpha * beta / size)),
            (dx.reshape(-1),))
    return dx


# ------------------------------------------------------------------- Adam
def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, t: int,
                v_max=None) -> None:
    """One in-place Adam step on ``p``, ``m`` and ``v`` (one kernel, no temporaries)::

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g**2
        p <- p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    which is :func:`nnlite.functional.adam_update` with ``m_hat = m / (1 - beta1**t)``
    and ``v_hat = v / (1 - beta2**t)``. ``p``, ``m``, ``v`` and ``g`` share one
    shape and dtype; ``g`` is only read. The bias corrections are computed
    once on the host in double precision and passed in the arrays' dtype.
    AMSGrad (``v_max`` given) has no kernel here: it runs the plain reference.
    """
    if v_max is not None:
        return functional.adam_update(p, g, m, v, lr, beta1, beta2, eps, t, v_max)
    if not (p.shape == g.shape == m.shape == v.shape):
        raise ValueError(f"adam_update: p, g, m and v must share one shape, got "
                         f"{tuple(p.shape)}, {tuple(g.shape)}, {tuple(m.shape)}, {tuple(v.shape)}")
    for a, what in ((p, "p"), (g, "g"), (m, "m"), (v, "v")):
        _check_float(a, f"adam_update ({what})")
    if not (p.dtype == g.dtype == m.dtype == v.dtype):
        raise ValueError(f"adam_update: p, g, m and v must share one dtype, got "
                         f"{p.dtype}, {g.dtype}, {m.dtype}, {v.dtype}")
    t = int(t)
    if t < 1:
        raise ValueError(f"adam_update: the step count t must be >= 1, got {t}")
    dt = p.dtype.type
    bc1, bc2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    _launch("adam_update",
            (g, dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(1.0 / bc2 ** 0.5),
             dt(eps), dt(lr / bc1)),
            (p, m, v))


__all__ = ["KERNELS", "KernelSource", "col2im", "max_pool_forward", "max_pool_backward",
           "lrn_forward", "lrn_backward", "adam_update"]
