"""Numba kernels for the CPU: the fast twins of nnlite's plain NumPy references.

Each public function here has exactly the signature and the result of a
plain reference function in :mod:`nnlite.functional`, which stays the readable
definition of what is computed; ``tests/test_kernels.py`` holds the two
equal, bit for bit (the batch-norm kernels, whose sums run in another order,
to rounding):

=======================  =====================================
kernel                   reference
=======================  =====================================
``im2col``               :func:`nnlite.functional.im2col`
``col2im``               :func:`nnlite.functional.col2im`
``max_pool_forward``     :func:`nnlite.functional.max_pool_forward`
``max_pool_backward``    :func:`nnlite.functional.max_pool_backward`
``lrn_forward``          :func:`nnlite.functional.lrn_forward`
``lrn_backward``         :func:`nnlite.functional.lrn_backward`
``batch_norm_forward``   :func:`nnlite.functional.batch_norm_forward`
``batch_norm_backward``  :func:`nnlite.functional.batch_norm_backward`
``adam_update``          :func:`nnlite.functional.adam_update`
=======================  =====================================

Do not call these directly: go through :mod:`nnlite.kernels`, which picks
this module only for NumPy float32/float64 arrays and when Numba imports.
Shape notation: see :mod:`nnlite.layer` (N, C, H, W, KH, KW, SH, SW, OH, OW;
``Hp``, ``Wp`` are padded sizes, ``DH``, ``DW`` the dilation).

How the kernels are written, and why (measured on the 2-core benchmark
machine, see ``benchmarks/README.md``):

* **One thread.** The kernels are plain loops, not ``prange``. In a training
  step they alternate with OpenBLAS matrix products, whose worker threads
  keep spinning for a while after each product; a second (OpenMP) thread
  pool for Numba then fights them for the cores. Measured with ``prange``
  kernels: the reduced-AlexNet step took 104 ms against 42 ms with the same
  kernels on one thread, the MIAS CNN step 216 against 189 ms, and far worse
  again when other programs shared the machine. Threads paid only with
  ``OPENBLAS_THREAD_TIMEOUT=4 OMP_WAIT_POLICY=passive`` set before NumPy is
  imported (34 and 165 ms), which a library cannot do for its users. On one
  thread the kernels take about 10% of a step and the products keep both cores.
* **Flat arrays, unsigned offsets.** Arrays arrive flattened (1-D,
  C-contiguous) and elements are addressed as ``a[_u(offset)]``: an
  unsigned index skips Numba's negative-index wrap-around test, which
  otherwise blocks vectorisation (2-3x slower).
* **No branch on the data where the CPU would mispredict it** (max-pool
  backward scans a whole window instead of stopping at the first maximum).
* **float32 stays float32.** Every scalar is passed in the arrays' dtype
  (``dtype.type(value)``) and no float literal appears in arithmetic: Numba,
  like NumPy, would promote ``float32 * 0.5`` to float64.
* **Same order of operations as the reference**, so results are identical
  (except the batch-norm sums: see there).
* ``error_model="numpy"``: a division by zero gives inf/NaN as in NumPy
  instead of a Python exception, and leaves the loops free to vectorise.
* ``cache=True``: each kernel is compiled once per dtype on first use
  (about half a second) and then loaded from ``__pycache__``.
"""
from __future__ import annotations

import math

import numba
import numpy
from numba import uint64 as _u

from ..functional import check_cols_shape, dilated_output_size

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def _flat(a):
    """A 1-D C-contiguous view of ``a`` (a copy only when ``a`` is not contiguous)."""
    return numpy.ascontiguousarray(a).reshape(-1)


# ------------------------------------------------------------------ im2col
@numba.njit(**_JIT)
def _im2col_kernel(x, N, C, Hp, Wp, KH, KW, SH, SW, DH, DW, OH, OW, out):
    """``out[(c, i, j), (n, oh, ow)] = x[n, c, oh*SH + i*DH, ow*SW + j*DW]``, written row by row."""
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                ob = ((c * KH + i) * KW + j) * N * OH * OW     # row (c, i, j) of cols
                for n in range(N):
                    xb = (n * C + c) * Hp * Wp + i * DH * Wp + j * DW
                    for oh in range(OH):
                        orow = ob + (n * OH + oh) * OW
                        xrow = xb + oh * SH * Wp
                        for ow in range(OW):
                            out[_u(orow + ow)] = x[_u(xrow + ow * SW)]


def im2col(x_padded, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """Numba :func:`nnlite.functional.im2col`: the same gather as one compiled copy.

    ``cols[(c, i, j), (n, oh, ow)] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW]``,
    shape ``(C*KH*KW, N*OH*OW)``. The reference copies a strided view with
    NumPy, whose copy loop restarts every OW elements; this writes each row
    of ``cols`` front to back (about 2x faster for a 5x5 kernel).
    """
    N, C, Hp, Wp = x_padded.shape
    KH, KW, SH, SW, DH, DW = (int(v) for v in (KH, KW, SH, SW, DH, DW))
    OH, OW = dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)
    out = numpy.empty((C * KH * KW, N * OH * OW), dtype=x_padded.dtype)
    _im2col_kernel(_flat(x_padded), N, C, Hp, Wp, KH, KW, SH, SW, DH, DW, OH, OW,
                   out.reshape(-1))
    return out


# ------------------------------------------------------------------ col2im
@numba.njit(**_JIT)
def _col2im_kernel(d, N, C, KH, KW, OH, OW, Hp, Wp, SH, SW, DH, DW, out):
    """``out[n, c, oh*SH + i*DH, ow*SW + j*DW] += d[(c, i, j), (n, oh, ow)]``; out is zeroed here.

    ``d`` is read front to back; for a fixed (i, j) every pixel gets at most
    one term, and the (i, j) run in increasing order as in the reference.
    """
    for q in range(N * C * Hp * Wp):
        out[_u(q)] = 0
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                db = ((c * KH + i) * KW + j) * N * OH * OW     # row (c, i, j) of dcols
                for n in range(N):
                    ob = (n * C + c) * Hp * Wp + i * DH * Wp + j * DW
                    for oh in range(OH):
                        orow = ob + oh * SH * Wp
                        drow = db + (n * OH + oh) * OW
                        for ow in range(OW):
                            out[_u(orow + ow * SW)] += d[_u(drow + ow)]


def col2im(dcols, x_padded_shape, KH: int, KW: int, SH: int, SW: int, DH: int = 1, DW: int = 1):
    """Numba :func:`nnlite.functional.col2im`: add ``(C*KH*KW, N*OH*OW)`` columns onto ``(N, C, Hp, Wp)``.

    One pass over ``dcols`` in memory order (a non-contiguous ``dcols`` is
    copied first); the result is identical to the reference.
    """
    N, C, Hp, Wp = (int(v) for v in x_padded_shape)
    KH, KW, SH, SW, DH, DW = (int(v) for v in (KH, KW, SH, SW, DH, DW))
    OH, OW = dilated_output_size(Hp, KH, SH, DH), dilated_output_size(Wp, KW, SW, DW)
    check_cols_shape(dcols, (N, C, Hp, Wp), KH, KW, OH, OW)
    out = numpy.empty((N, C, Hp, Wp), dtype=dcols.dtype)
    _col2im_kernel(_flat(dcols), N, C, KH, KW, OH, OW, Hp, Wp, SH, SW, DH, DW, out.reshape(-1))
    return out


# --------------------------------------------------------------- max pool
@numba.njit(**_JIT)
def _max_pool_forward_kernel(x, NC, Hp, Wp, KH, KW, SH, SW, OH, OW, y):
    """``y[nc, oh, ow] = max_{i, j} x[nc, oh*SH + i, ow*SW + j]`` (NaN wins, like numpy.maximum).

    One output row at a time, kernel offset by kernel offset, as the reference
    does for the whole array: the row stays in L1 and the ow loop vectorises.
    """
    for nc in range(NC):
        for oh in range(OH):
            yr = (nc * OH + oh) * OW
            xr = nc * Hp * Wp + oh * SH * Wp
            for ow in range(OW):
                y[_u(yr + ow)] = x[_u(xr + ow * SW)]
            for i in range(KH):
                for j in range(KW):
                    b = xr + i * Wp + j
                    for ow in range(OW):
                        v = x[_u(b + ow * SW)]
                        m = y[_u(yr + ow)]
                        y[_u(yr + ow)] = v if (v > m or v != v) else m   # v != v: NaN


@numba.njit(**_JIT)
def _max_pool_2x2_forward_kernel(x, NC, Hp, Wp, OH, OW, y):
    """The 2x2, stride-2 case written out: no window loops, so the ow loop vectorises."""
    for nc in range(NC):
        for oh in range(OH):
            r0 = nc * Hp * Wp + 2 * oh * Wp
            r1 = r0 + Wp
            yr = (nc * OH + oh) * OW
            for ow in range(OW):
                m = x[_u(r0 + 2 * ow)]
                v = x[_u(r0 + 2 * ow + 1)]
                m = v if (v > m or v != v) else m
                v = x[_u(r1 + 2 * ow)]
                m = v if (v > m or v != v) else m
                v = x[_u(r1 + 2 * ow + 1)]
                m = v if (v > m or v != v) else m
                y[_u(yr + ow)] = m


def max_pool_forward(xpad, KH, KW, SH, SW, OH, OW):
    """Numba :func:`nnlite.functional.max_pool_forward`: ``(N, C, Hp, Wp) -> (N, C, OH, OW)``.

    ``MaxPool2D(2)`` (2x2 windows, stride 2) has its own kernel, about 3x faster.
    """
    N, C, Hp, Wp = xpad.shape
    KH, KW, SH, SW, OH, OW = (int(v) for v in (KH, KW, SH, SW, OH, OW))
    y = numpy.empty((N, C, OH, OW), dtype=xpad.dtype)
    if KH == KW == SH == SW == 2:
        _max_pool_2x2_forward_kernel(_flat(xpad), N * C, Hp, Wp, OH, OW, y.reshape(-1))
    else:
        _max_pool_forward_kernel(_flat(xpad), N * C, Hp, Wp, KH, KW, SH, SW, OH, OW,
                                 y.reshape(-1))
    return y


@numba.njit(**_JIT)
def _max_pool_backward_kernel(dy, x, y, NC, Hp, Wp, KH, KW, SH, SW, OH, OW, dx):
    """Each ``dy[nc, oh, ow]`` goes to the first (row-major) ``x`` in its window equal to ``y``."""
    for q in range(NC * Hp * Wp):
        dx[_u(q)] = 0
    for nc in range(NC):
        xb, yb = nc * Hp * Wp, nc * OH * OW
        # Windows last to first: a pixel shared by overlapping windows then receives their
        # shares in the reference's order (by its offset (i, j) inside each window).
        for oh in range(OH - 1, -1, -1):
            for ow in range(OW - 1, -1, -1):
                base = xb + oh * SH * Wp + ow * SW
                m = y[_u(yb + oh * OW + ow)]
                first = -1
                for i in range(KH):                  # the whole window, with a select instead
                    for j in range(KW):              # of an early exit the CPU would mispredict
                        hit = (x[_u(base + i * Wp + j)] == m) & (first < 0)
                        first = i * Wp + j if hit else first
                if first >= 0:                       # no match: a NaN window, as the reference
                    dx[_u(base + first)] += dy[_u(yb + oh * OW + ow)]


@numba.njit(**_JIT)
def _max_pool_2x2_backward_kernel(dy, x, y, NC, Hp, Wp, OH, OW, zero, dx):
    """The 2x2, stride-2 case: windows tile the plane, so every dx element is written once.

    Of the four elements (a, b, c, d) of a window in row-major order, the first
    equal to the maximum gets dy and the others 0; a last odd row or column,
    which no window covers, gets 0.
    """
    for nc in range(NC):
        pb = nc * Hp * Wp
        for oh in range(OH):
            r0 = pb + 2 * oh * Wp
            r1 = r0 + Wp
            yr = (nc * OH + oh) * OW
            for ow in range(OW):
                m = y[_u(yr + ow)]
                g = dy[_u(yr + ow)]
                a = x[_u(r0 + 2 * ow)] == m
                b = (x[_u(r0 + 2 * ow + 1)] == m) & ~a
                c = (x[_u(r1 + 2 * ow)] == m) & ~(a | b)
                d = (x[_u(r1 + 2 * ow + 1)] == m) & ~(a | b | c)
                dx[_u(r0 + 2 * ow)] = g if a else zero
                dx[_u(r0 + 2 * ow + 1)] = g if b else zero
                dx[_u(r1 + 2 * ow)] = g if c else zero
                dx[_u(r1 + 2 * ow + 1)] = g if d else zero
            for w in range(2 * OW, Wp):                # an odd last column
                dx[_u(r0 + w)] = zero
                dx[_u(r1 + w)] = zero
        for q in range(2 * OH * Wp, Hp * Wp):          # an odd last row
            dx[_u(pb + q)] = zero


def max_pool_backward(dy, xpad, y, KH, KW, SH, SW):
    """Numba :func:`nnlite.functional.max_pool_backward`; returns the gradient w.r.t. ``xpad``.

    Ties go to the first element of the window equal to ``y`` in row-major
    order, as in the reference, and a pixel shared by overlapping windows
    adds their shares in the reference's order, so the result is identical.
    ``MaxPool2D(2)`` has its own kernel, about 3x faster.
    """
    N, C, Hp, Wp = xpad.shape
    OH, OW = dy.shape[2:]
    KH, KW, SH, SW = (int(v) for v in (KH, KW, SH, SW))
    dxp = numpy.empty(xpad.shape, dtype=dy.dtype)
    if KH == KW == SH == SW == 2:
        _max_pool_2x2_backward_kernel(_flat(dy), _flat(xpad), _flat(y), N * C, Hp, Wp, OH, OW,
                                      dy.dtype.type(0), dxp.reshape(-1))
    else:
        _max_pool_backward_kernel(_flat(dy), _flat(xpad), _flat(y), N * C, Hp, Wp, KH, KW,
                                  SH, SW, OH, OW, dxp.reshape(-1))
    return dxp


# ------------------------------------------- max pool, argmax kept from forward
# In training, 2x2/2 and 3x3/2 (AlexNet) max-pools keep each window's argmax from forward,
# so that backward routes dy without searching the windows again. One thread, forward +
# backward: MIAS CNN pool1 (batch 64) 15.7 -> 4.9 ms; reduced AlexNet pool1 (batch 128)
# 19 -> 11 ms, pool2 12.3 -> 5.1 ms. Each written out with its window in registers: a
# generic loop recording the argmax (``v > m`` beside the running maximum, or a second walk
# over the offsets) did not vectorise (reduced AlexNet pool1 forward 6 -> 21 ms).

#: ``arg`` of a window whose maximum is NaN: it gets no gradient, as in the reference (no
#: element equals NaN). Other windows hold the offset ``i*KW + j`` of the maximum.
_NAN_WINDOW = 255


@numba.njit(**_JIT)
def _max_pool_2x2_argmax_forward_kernel(x, NC, Hp, Wp, OH, OW, offsets, nan_window, y, arg):
    """:func:`_max_pool_2x2_forward_kernel`, also writing the offset of each window's first maximum.

    The maximum as there; then the first of the four elements (row-major) equal to
    it, found by selects from the last to the first (a running ``v > m`` argmax
    beside the running maximum did not vectorise: 10x slower). A NaN window
    matches nothing and gets ``nan_window``. ``offsets`` (0, 1, 2, 3) and
    ``nan_window`` come in the data's dtype, so the selects stay in one lane width.
    """
    k0, k1, k2, k3 = offsets[0], offsets[1], offsets[2], offsets[3]   # scalars: loads that
    for nc in range(NC):                                              # cannot alias the stores
        for oh in range(OH):
            r0 = nc * Hp * Wp + 2 * oh * Wp
            r1 = r0 + Wp
            yr = (nc * OH + oh) * OW
            for ow in range(OW):
                x0, x1 = x[_u(r0 + 2 * ow)], x[_u(r0 + 2 * ow + 1)]
                x2, x3 = x[_u(r1 + 2 * ow)], x[_u(r1 + 2 * ow + 1)]
                m = x0
                m = x1 if (x1 > m or x1 != x1) else m
                m = x2 if (x2 > m or x2 != x2) else m
                m = x3 if (x3 > m or x3 != x3) else m
                y[_u(yr + ow)] = m
                k = k2 if x2 == m else k3              # the first element equal to the maximum
                k = k1 if x1 == m else k
                k = k0 if x0 == m else k
                arg[_u(yr + ow)] = nan_window if m != m else k


@numba.njit(**_JIT)
def _max_pool_3x3s2_argmax_forward_kernel(x, NC, Hp, Wp, OH, OW, offsets, nan_window, y, arg):
    """The 3x3, stride-2 (AlexNet) pool written out as :func:`_max_pool_2x2_argmax_forward_kernel`.

    The maximum in the reference's order (row-major, NaN wins), then the first
    element equal to it by selects from the last to the first.
    """
    k0, k1, k2, k3, k4 = offsets[0], offsets[1], offsets[2], offsets[3], offsets[4]
    k5, k6, k7, k8 = offsets[5], offsets[6], offsets[7], offsets[8]
    for nc in range(NC):
        for oh in range(OH):
            r0 = nc * Hp * Wp + 2 * oh * Wp
            r1, r2 = r0 + Wp, r0 + 2 * Wp
            yr = (nc * OH + oh) * OW
            for ow in range(OW):
                c = 2 * ow
                x0, x1, x2 = x[_u(r0 + c)], x[_u(r0 + c + 1)], x[_u(r0 + c + 2)]
                x3, x4, x5 = x[_u(r1 + c)], x[_u(r1 + c + 1)], x[_u(r1 + c + 2)]
                x6, x7, x8 = x[_u(r2 + c)], x[_u(r2 + c + 1)], x[_u(r2 + c + 2)]
                m = x0
                m = x1 if (x1 > m or x1 != x1) else m
                m = x2 if (x2 > m or x2 != x2) else m
                m = x3 if (x3 > m or x3 != x3) else m
                m = x4 if (x4 > m or x4 != x4) else m
                m = x5 if (x5 > m or x5 != x5) else m
                m = x6 if (x6 > m or x6 != x6) else m
                m = x7 if (x7 > m or x7 != x7) else m
                m = x8 if (x8 > m or x8 != x8) else m
                y[_u(yr + ow)] = m
                k = k7 if x7 == m else k8              # the first element equal to the maximum
                k = k6 if x6 == m else k
                k = k5 if x5 == m else k
                k = k4 if x4 == m else k
                k = k3 if x3 == m else k
                k = k2 if x2 == m else k
                k = k1 if x1 == m else k
                k = k0 if x0 == m else k
                arg[_u(yr + ow)] = nan_window if m != m else k


def max_pool_forward_argmax(xpad, KH, KW, SH, SW, OH, OW):
    """:func:`max_pool_forward` and each window's argmax, ``(y, arg)``: 2x2/2 and 3x3/2 pools only.

    ``arg`` ``(N, C, OH, OW)``, in xpad's dtype, holds the offset ``i*KW + j`` of
    the window's first maximum (the element the reference's backward would find)
    and 255 for a NaN window; :func:`max_pool_backward_argmax` routes ``dy`` by it.
    """
    N, C, Hp, Wp = xpad.shape
    KH, KW, SH, SW, OH, OW = (int(v) for v in (KH, KW, SH, SW, OH, OW))
    y = numpy.empty((N, C, OH, OW), dtype=xpad.dtype)
    arg = numpy.empty((N, C, OH, OW), dtype=xpad.dtype)
    offsets = numpy.arange(KH * KW, dtype=xpad.dtype)          # i*KW + j, in the data's type
    nan_window = xpad.dtype.type(_NAN_WINDOW)
    if KH == KW == SH == SW == 2:
        kernel = _max_pool_2x2_argmax_forward_kernel
    elif KH == KW == 3 and SH == SW == 2:
        kernel = _max_pool_3x3s2_argmax_forward_kernel
    else:
        raise ValueError(f"max_pool_forward_argmax: only 2x2/2 and 3x3/2 pools, got "
                         f"{KH}x{KW}/{SH}x{SW}")
    kernel(_flat(xpad), N * C, Hp, Wp, OH, OW, offsets, nan_window, y.reshape(-1),
           arg.reshape(-1))
    return y, arg


@numba.njit(**_JIT)
def _max_pool_argmax_backward_kernel(dy, arg, NC, Hp, Wp, KW, SH, SW, OH, OW, dx):
    """Each ``dy[nc, oh, ow]`` added at its window's recorded argmax, windows last to first.

    The same windows, elements and order of additions as :func:`_max_pool_backward_kernel`.
    """
    for q in range(NC * Hp * Wp):
        dx[_u(q)] = 0
    for nc in range(NC):
        xb, yb = nc * Hp * Wp, nc * OH * OW
        for oh in range(OH - 1, -1, -1):
            for ow in range(OW - 1, -1, -1):
                a = int(arg[_u(yb + oh * OW + ow)])
                if a != _NAN_WINDOW:
                    i = a // KW
                    dx[_u(xb + (oh * SH + i) * Wp + ow * SW + a - i * KW)] += \
                        dy[_u(yb + oh * OW + ow)]


@numba.njit(**_JIT)
def _max_pool_2x2_argmax_backward_kernel(dy, arg, NC, Hp, Wp, OH, OW, offsets, zero, dx):
    """The 2x2, stride-2 case: every dx element written once, ``dy`` where arg points, else 0."""
    for nc in range(NC):
        pb = nc * Hp * Wp
        for oh in range(OH):
            r0 = pb + 2 * oh * Wp
            r1 = r0 + Wp
            yr = (nc * OH + oh) * OW
            for ow in range(OW):
                a = arg[_u(yr + ow)]
                g = dy[_u(yr + ow)]
                dx[_u(r0 + 2 * ow)] = g if a == offsets[0] else zero
                dx[_u(r0 + 2 * ow + 1)] = g if a == offsets[1] else zero
                dx[_u(r1 + 2 * ow)] = g if a == offsets[2] else zero
                dx[_u(r1 + 2 * ow + 1)] = g if a == offsets[3] else zero
            for w in range(2 * OW, Wp):                # an odd last column
                dx[_u(r0 + w)] = zero
                dx[_u(r1 + w)] = zero
        for q in range(2 * OH * Wp, Hp * Wp):          # an odd last row
            dx[_u(pb + q)] = zero


def max_pool_backward_argmax(dy, arg, xpad_shape, KH, KW, SH, SW):
    """:func:`max_pool_backward` from :func:`max_pool_forward_argmax`'s ``arg``: the same result.

    From ``dy`` and ``arg`` alone: no window is searched again.
    """
    N, C, Hp, Wp = xpad_shape
    OH, OW = dy.shape[2:]
    KH, KW, SH, SW = (int(v) for v in (KH, KW, SH, SW))
    dxp = numpy.empty((N, C, Hp, Wp), dtype=dy.dtype)
    if KH == KW == SH == SW == 2:
        _max_pool_2x2_argmax_backward_kernel(_flat(dy), _flat(arg), N * C, Hp, Wp, OH, OW,
                                             numpy.arange(4, dtype=arg.dtype),
                                             dy.dtype.type(0), dxp.reshape(-1))
    else:
        _max_pool_argmax_backward_kernel(_flat(dy), _flat(arg), N * C, Hp, Wp, KW, SH, SW,
                                         OH, OW, dxp.reshape(-1))
    return dxp


# -------------------------------------------------------------------- LRN
@numba.njit(**_JIT)
def _lrn_base_kernel(x, N, C, HW, before, after, scale, k, s):
    """``s[n, c] = k + scale * (x[n, c]**2 + x[n, c-1]**2 + .. + x[n, c+1]**2 + ..)``.

    The channels c-before .. c+after, clipped to the channel axis, are summed
    in the reference's order; the inner loop runs along the H*W contiguous
    positions of a plane, so it vectorises.
    """
    for n in range(N):
        for c in range(C):
            cb = (n * C + c) * HW
            for q in range(HW):
                s[_u(cb + q)] = x[_u(cb + q)] * x[_u(cb + q)]
            for d in range(1, before + 1):
                if c - d >= 0:
                    ob = cb - d * HW
                    for q in range(HW):
                        s[_u(cb + q)] += x[_u(ob + q)] * x[_u(ob + q)]
            for d in range(1, after + 1):
                if c + d < C:
                    ob = cb + d * HW
                    for q in range(HW):
                        s[_u(cb + q)] += x[_u(ob + q)] * x[_u(ob + q)]
            for q in range(HW):
                s[_u(cb + q)] = k + scale * s[_u(cb + q)]


def lrn_forward(x, size: int, alpha: float, beta: float, k: float):
    """Numba :func:`nnlite.functional.lrn_forward`: returns ``(y, s, p)``, each ``(N, C, H, W)``.

    The windowed sum of squares is one compiled pass; ``s ** -beta`` stays
    with NumPy, whose ``power`` is vectorised (Numba's is one ``powf`` call per
    element, 5x slower). Identical to the reference.
    """
    N, C, H, W = x.shape
    t = x.dtype.type
    s = numpy.empty(x.shape, dtype=x.dtype)
    _lrn_base_kernel(_flat(x), N, C, H * W, size // 2, (size - 1) // 2, t(alpha / size), t(k),
                     s.reshape(-1))
    p = s ** t(-beta)
    return x * p, s, p


@numba.njit(**_JIT)
def _lrn_backward_kernel(dy, x, s, p, N, C, HW, before, after, coef, t, dx):
    """``t = dy x p / s``; ``dx[c] = dy[c] p[c] - coef x[c] (t[c] + t[c-1] + .. + t[c+1] + ..)``."""
    for i in range(N * C * HW):
        t[_u(i)] = dy[_u(i)] * x[_u(i)] * p[_u(i)] / s[_u(i)]
    for n in range(N):
        for c in range(C):
            cb = (n * C + c) * HW
            for q in range(HW):                     # dx holds the window sum until the end
                dx[_u(cb + q)] = t[_u(cb + q)]
            for d in range(1, before + 1):
                if c - d >= 0:
                    ob = cb - d * HW
                    for q in range(HW):
                        dx[_u(cb + q)] += t[_u(ob + q)]
            for d in range(1, after + 1):
                if c + d < C:
                    ob = cb + d * HW
                    for q in range(HW):
                        dx[_u(cb + q)] += t[_u(ob + q)]
            for q in range(HW):
                e = _u(cb + q)
                dx[e] = dy[e] * p[e] - coef * x[e] * dx[e]


def lrn_backward(dy, x, s, p, size: int, alpha: float, beta: float):
    """Numba :func:`nnlite.functional.lrn_backward`: ``dx`` of shape ``(N, C, H, W)``.

    The backward window is the forward one flipped: ``(size-1)//2`` channels
    before, ``size//2`` after (see :class:`nnlite.lrn.LocalResponseNorm`).
    Two compiled passes instead of the reference's ten; identical results.
    """
    N, C, H, W = x.shape
    dx = numpy.empty(x.shape, dtype=dy.dtype)
    t = numpy.empty(x.shape, dtype=dy.dtype)
    coef = dy.dtype.type(2.0 * alpha * beta / size)
    _lrn_backward_kernel(_flat(dy), _flat(x), _flat(s), _flat(p), N, C, H * W, (size - 1) // 2,
                         size // 2, coef, t.reshape(-1), dx.reshape(-1))
    return dx


# ------------------------------------------------------------- batch norm
# Training-mode batch norm on an (N, C, M) view, flat: element (n, c, m) at (n*C + c)*M + m.
# Every pass reads memory front to back (n, then c, then the M contiguous values of one
# plane) with one accumulator per channel.
#
# The per-channel sums are accumulated in float64, also for float32 data. On the stem
# BatchNorm of reduced_resnet, (32, 16, 32, 32) float32, that costs 0.05 ms in forward's two
# statistics passes (0.11 against 0.06 ms with float32 sums) and 0.04 ms in backward's sums
# (0.09 against 0.05 ms), of 0.58 ms forward + backward. In return the statistics are
# rounded once, at the end: for x = 1000 + noise(0.01) the variance is right to 3e-8
# (relative), where NumPy's float32 variance is off by 1e-4.
#
# The sums need ``reassoc`` (LLVM may spread the additions of one plane over SIMD lanes):
# without it they do not vectorise and are 9x slower. The order of the additions then differs
# from NumPy's pairwise sums, so these kernels equal the reference to rounding, not bit for bit.
_JIT_SUMS = dict(_JIT, fastmath={"reassoc"})


@numba.njit(**_JIT_SUMS)
def _batch_norm_stats_kernel(x, N, C, M, mean, var):
    """``mean[c]``, ``var[c]`` (float64) of channel c of ``x`` (N, C, M): two passes.

    The variance is the mean of the squared deviations from the mean (two passes),
    not ``E[x^2] - E[x]^2``, which loses every digit for ``x = 1000 + small noise``.
    """
    m = N * M
    sums = numpy.zeros(C, dtype=numpy.float64)
    for n in range(N):
        for c in range(C):
            b = (n * C + c) * M
            t = 0.0                                   # float64 on purpose: the accumulator
            for q in range(M):
                t += x[_u(b + q)]
            sums[c] += t
    for c in range(C):
        mean[c] = sums[c] / m
        sums[c] = 0.0
    for n in range(N):
        for c in range(C):
            b = (n * C + c) * M
            mu = mean[c]
            t = 0.0
            for q in range(M):
                d = x[_u(b + q)] - mu
                t += d * d
            sums[c] += t
    for c in range(C):
        var[c] = sums[c] / m


@numba.njit(**_JIT)
def _batch_norm_normalise_kernel(x, N, C, M, mu, inv_sigma, gamma, beta, affine, x_hat, y):
    """``x_hat = (x - mu) * inv_sigma``; ``y = gamma * x_hat + beta`` (or ``x_hat``, not affine)."""
    for n in range(N):
        for c in range(C):
            b = (n * C + c) * M
            mc, ic = mu[c], inv_sigma[c]
            if affine:
                g, bt = gamma[c], beta[c]
                for q in range(M):
                    h = (x[_u(b + q)] - mc) * ic
                    x_hat[_u(b + q)] = h
                    y[_u(b + q)] = g * h + bt
            else:
                for q in range(M):
                    h = (x[_u(b + q)] - mc) * ic
                    x_hat[_u(b + q)] = h
                    y[_u(b + q)] = h


def batch_norm_forward(x3, gamma, beta, eps: float):
    """Numba :func:`nnlite.functional.batch_norm_forward`: ``(y3, x_hat3, mu, var, inv_sigma)``.

    Three passes over ``x3`` (N, C, M): the sum (mean), the centred sum of squares
    (variance), and one writing ``x_hat3`` and ``y3``; the reference takes about eight.
    ``mu``, ``var`` and ``inv_sigma`` (C,) come out in ``x3``'s dtype, as there.
    """
    N, C, M = x3.shape
    dt = x3.dtype
    x = _flat(x3)
    mean64, var64 = numpy.empty(C, numpy.float64), numpy.empty(C, numpy.float64)
    _batch_norm_stats_kernel(x, N, C, M, mean64, var64)
    mu, var = mean64.astype(dt), var64.astype(dt)
    inv_sigma = 1 / (var + eps) ** 0.5                         # (C,), x3's dtype
    affine = gamma is not None
    if not affine:
        gamma = beta = numpy.empty(0, dtype=dt)                 # not read
    x_hat3 = numpy.empty((N, C, M), dtype=dt)
    y3 = numpy.empty((N, C, M), dtype=dt)
    _batch_norm_normalise_kernel(x, N, C, M, mu, inv_sigma, _flat(gamma), _flat(beta), affine,
                                 x_hat3.reshape(-1), y3.reshape(-1))
    return y3, x_hat3, mu, var, inv_sigma


@numba.njit(**_JIT_SUMS)
def _batch_norm_grad_sums_kernel(dy, x_hat, N, C, M, sum_dy, sum_dy_xhat):
    """``sum_dy[c] = sum dy``, ``sum_dy_xhat[c] = sum dy * x_hat`` (float64), in one pass."""
    for c in range(C):
        sum_dy[c] = 0.0
        sum_dy_xhat[c] = 0.0
    for n in range(N):
        for c in range(C):
            b = (n * C + c) * M
            t, u = 0.0, 0.0                           # float64 on purpose: the accumulators
            for q in range(M):
                g = dy[_u(b + q)]
                t += g
                u += g * x_hat[_u(b + q)]
            sum_dy[c] += t
            sum_dy_xhat[c] += u


@numba.njit(**_JIT)
def _batch_norm_dx_kernel(dy, x_hat, N, C, M, scale, mean_dy, mean_dy_xhat, dx):
    """``dx = scale * (dy - mean_dy - x_hat * mean_dy_xhat)`` per channel, the reference's order."""
    for n in range(N):
        for c in range(C):
            b = (n * C + c) * M
            s, md, mdx = scale[c], mean_dy[c], mean_dy_xhat[c]
            for q in range(M):
                e = _u(b + q)
                dx[e] = s * (dy[e] - md - x_hat[e] * mdx)


def batch_norm_backward(dy3, x_hat3, gamma, inv_sigma):
    """Numba :func:`nnlite.functional.batch_norm_backward`: ``(dx3, dgamma, dbeta)``.

    One pass for both per-channel sums, one writing ``dx3``; the reference takes
    about eight. The means are taken from the float64 sums, then rounded.
    """
    N, C, M = dy3.shape
    dt = dy3.dtype
    dy, x_hat = _flat(dy3), _flat(x_hat3)
    sum_dy, sum_dy_xhat = numpy.empty(C, numpy.float64), numpy.empty(C, numpy.float64)
    _batch_norm_grad_sums_kernel(dy, x_hat, N, C, M, sum_dy, sum_dy_xhat)
    m = N * M
    scale = inv_sigma if gamma is None else gamma * inv_sigma      # (C,), gamma / sigma
    dx3 = numpy.empty((N, C, M), dtype=dt)
    _batch_norm_dx_kernel(dy, x_hat, N, C, M, _flat(scale.astype(dt, copy=False)),
                          (sum_dy / m).astype(dt), (sum_dy_xhat / m).astype(dt), dx3.reshape(-1))
    return dx3, sum_dy_xhat.astype(dt), sum_dy.astype(dt)


# ------------------------------------------------------------------- Adam
@numba.njit(**_JIT)
def _adam_kernel(p, g, m, v, b1, one_minus_b1, b2, one_minus_b2, bc1, bc2, lr, eps):
    """In place, on flat arrays: the reference's operations in the reference's order."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + one_minus_b1 * gi
        vi = v[i] * b2 + one_minus_b2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        m_hat = mi / bc1
        v_hat = vi / bc2
        p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)


@numba.njit(**_JIT)
def _adam_amsgrad_kernel(p, g, m, v, v_max, b1, one_minus_b1, b2, one_minus_b2, bc1, bc2,
                         lr, eps):
    """AMSGrad: as :func:`_adam_kernel`, with ``v_hat`` from the running maximum of ``v``."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + one_minus_b1 * gi
        vi = v[i] * b2 + one_minus_b2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        largest = v_max[i]
        largest = vi if (vi > largest or vi != vi) else largest     # numpy.maximum: NaN wins
        v_max[i] = largest
        m_hat = mi / bc1
        v_hat = largest / bc2
        p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)


def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, t: int,
                v_max=None) -> None:
    """Numba :func:`nnlite.functional.adam_update`: one in-place Adam step on ``p``, ``m``, ``v``.

    ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)`` (or ``v_max``'s, for
    AMSGrad), ``p -= lr m_hat / (sqrt(v_hat) + eps)``. ``p``, ``m``, ``v`` (and ``v_max``)
    must be C-contiguous (the dispatcher checks); ``g`` is only read. One pass over
    memory instead of the reference's dozen, and no temporary, with bit-identical results.
    """
    dt = p.dtype.type
    scalars = (dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(1.0 - beta1 ** t),
               dt(1.0 - beta2 ** t), dt(lr), dt(eps))
    if v_max is None:
        _adam_kernel(p.reshape(-1), _flat(g), m.reshape(-1), v.reshape(-1), *scalars)
    else:
        _adam_amsgrad_kernel(p.reshape(-1), _flat(g), m.reshape(-1), v.reshape(-1),
                             v_max.reshape(-1), *scalars)


__all__ = ["im2col", "col2im", "max_pool_forward", "max_pool_backward", "lrn_forward",
           "lrn_backward", "batch_norm_forward", "batch_norm_backward", "adam_update"]
