"""Source of lessons/15_speed.ipynb (build with lessons/build_lessons.py)."""

# %% [markdown]
# # Lesson 15 - Speed: loops, im2col, Numba, GPU
#
# Lesson 1 computed a convolution with loops: clear, and far too slow to train on. The
# same arithmetic can run thousands of times faster, not by doing less of it but by
# doing it in the shape the hardware is good at. In this lesson: the convolution as
# loops, as **im2col** (every receptive field unrolled into a column) followed by **one
# matrix product**, with a **Numba** kernel for the unrolling, with nnlite's own
# `Conv2D`, and on the **GPU** when the machine has one (skipped otherwise). Each is
# timed, turned into floating-point operations per second, and compared with the
# machine's own matrix-product speed, the practical peak.
#
# The numbers you see depend on the machine (the stored notebook ran on a small shared
# CPU with one BLAS thread, as the lesson builder sets); the ratios between the methods
# are what to read.
#
# **You need:** lesson 1 (the correlation and its output size), lesson 5 (the layout
# of a convolution's weights), matrix products.

# %%
# %matplotlib inline
import sys
import time
import timeit
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt
import nnlite as nn
from nnlite import functional
from nnlite.kernels import dispatch

sys.path.insert(0, str(Path.cwd() if Path("lessonkit.py").exists() else Path.cwd() / "lessons"))
import lessonkit as lk          # what every lesson shares: lk.show, lk.check, ...

lk.setup(precision=4)

# %% [markdown]
# ## 1. Counting the work
#
# A convolution layer with $F$ filters of $C \times KH \times KW$ weights, on $N$ images,
# computes $N \cdot F \cdot OH \cdot OW$ output values, each a sum of $C \cdot KH \cdot KW$
# products. One product and one addition make one **multiply-accumulate** (MAC), counted
# as **2 floating-point operations** (FLOP), the convention of processor data sheets:
#
# $$\text{FLOP} = 2\, N F\, OH\, OW\, C\, KH\, KW .$$
#
# **Exercise 15.1.** Write it. The check counts the multiplications of the matrix product
# that nnlite's im2col sets up (section 3) for several layers.

# %% [exercise 15.1]
def conv_flops(N, C, F, OH, OW, KH, KW):
    """Floating-point operations of one convolution forward pass (2 per multiply-add)."""
    # TODO (exercise 15.1): return the count
    raise NotImplementedError

# %% [check 15.1]
def flops_of_the_product(N, C, F, H, KH, stride, padding):
    """2 * (rows of W) * (inner size) * (columns): the matrix product W_rows @ cols."""
    x = np.zeros((N, C, H + 2 * padding, H + 2 * padding), np.float32)
    cols = functional.im2col(x, KH, KH, stride, stride)        # (C*KH*KW, N*OH*OW)
    return 2 * F * cols.shape[0] * cols.shape[1]


def flops_cases():
    cases = []
    for N, C, F, H, K, s, p in ((8, 16, 32, 32, 3, 1, 1), (1, 1, 32, 48, 5, 1, 2),
                                (2, 3, 96, 67, 11, 4, 0), (4, 64, 64, 14, 1, 2, 0)):
        O = (H - K + 2 * p) // s + 1
        cases.append((f"conv_flops({N}, {C}, {F}, {O}, {O}, {K}, {K})",
                      lambda N=N, C=C, F=F, O=O, K=K: conv_flops(N, C, F, O, O, K, K),
                      flops_of_the_product(N, C, F, H, K, s, p)))
    return cases


lk.check_cases("15.1", flops_cases())

# %% [markdown]
# The layer this lesson times: 8 images of 16 channels, 32x32, a 3x3 convolution with
# "same" padding to 32 channels, about 75 million FLOP. (AlexNet's first layer on one
# 224x224 image is about 0.2 GFLOP, all of ResNet50 about 8: lesson 10.)

# %%
rng = np.random.default_rng(0)
N, C, F, H, K = 8, 16, 32, 32, 3
x = rng.normal(size=(N, C, H, H)).astype(np.float32)             # (N, C, H, W)
conv = nn.Conv2D(C, F, K, padding=1, seed=0)
W, b = conv.W.data, conv.b.data                                  # (F, C, KH, KW), (F,)
reference = conv.forward(x)                                      # (N, F, OH, OW)
FLOP = 2 * N * F * H * H * C * K * K
print(f"{FLOP / 1e6:.1f} MFLOP per forward pass")

# %% [markdown]
# ## 2. Timing honestly
#
# A single measurement lies: the first call of a function pays for compiling (Numba),
# allocating, filling caches; a background task may interrupt any call. The habit that
# works: call once to **warm up**, then time several calls and keep the **fastest** (the
# one the fewest interruptions hit; `timeit` does the same).
#
# **Exercise 15.2.** Write `best_time(fn, repeats)`: call `fn()` once without timing it,
# then `repeats` times timed with `time.perf_counter()`, and return the shortest time in
# seconds. The check times a function that is slow on its first call only.

# %% [exercise 15.2]
def best_time(fn, repeats=5):
    """Seconds of the fastest of `repeats` timed calls of fn(), after one warm-up call."""
    # TODO (exercise 15.2): warm up, then time each call, keep the minimum
    raise NotImplementedError

# %% [check 15.2]
def prove_best_time():
    calls = []

    def slow_then_fast():
        time.sleep(0.08 if not calls else 0.002)                 # the first call pays a "compile"
        calls.append(1)

    seconds = best_time(slow_then_fast, repeats=3)
    lk.compare(len(calls), 4, "the number of calls of fn for repeats=3")
    if seconds is None or not 0.0015 < seconds < 0.01:
        raise lk.Wrong(f"best_time returned {seconds!r} s; the fast calls take about 0.002 s "
                       f"(the warm-up call must not count)")


def best_time_timeit(fn, repeats=5):
    """The same with the standard library: one warm-up call, then timeit's best."""
    fn()
    return min(timeit.repeat(fn, number=1, repeat=repeats))


done = lk.run_check("15.2", prove_best_time)
best_time = lk.fallback(done, best_time, best_time_timeit, "a version built on timeit")

# %% [markdown]
# ## 3. Loops, then im2col and one matrix product
#
# The loops of lesson 1, written for a whole layer (only the pixel loops; the window
# sum and the channels are NumPy): one small NumPy call per output pixel and filter,
# $N \cdot F \cdot OH \cdot OW$ of them. That is too slow for the full layer, so it runs on
# one image and 8 filters, and the speed is compared in FLOP per second:

# %%
def conv_loops(x, W, b, padding):
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    N, _, Hp, Wp = x_pad.shape
    F, _, KH, KW = W.shape
    OH, OW = Hp - KH + 1, Wp - KW + 1
    y = np.empty((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    y[n, f, i, j] = np.sum(x_pad[n, :, i:i + KH, j:j + KW] * W[f]) + b[f]
    return y


small_x, small_W, small_b = x[:1], W[:8], b[:8]
lk.compare(conv_loops(small_x, small_W, small_b, 1), reference[:1, :8], "the loops' output",
           rtol=1e-4, atol=1e-4)
loops_flop = 2 * 1 * 8 * H * H * C * K * K
loops_seconds = best_time(lambda: conv_loops(small_x, small_W, small_b, 1), repeats=2)
print(f"loops: {loops_seconds * 1e3:.0f} ms for {loops_flop / 1e6:.1f} MFLOP = "
      f"{loops_flop / loops_seconds / 1e9:.3f} GFLOP/s")

# %% [markdown]
# **im2col** turns the convolution into one matrix product (lesson 5 used it). Unroll
# every receptive field of the padded input into a column,
#
# $$\text{cols}[(c, i, j),\ (n, oh, ow)] = x_{\text{pad}}[n, c, oh\,s + i, ow\,s + j],
#   \qquad \text{cols}: (C\,KH\,KW,\ N\,OH\,OW),$$
#
# (that is `nn.functional.im2col(x_padded, KH, KW, SH, SW)`), reshape the weights to
# rows, `W.reshape(F, C*KH*KW)`, and one product gives every output value at once:
# `W_rows @ cols` of shape $(F,\ N\,OH\,OW)$, plus the bias, rearranged to
# $(N, F, OH, OW)$. The matrix product is where the machine is fastest: a BLAS library
# runs it at close to the processor's peak.
#
# **Exercise 15.3.** Write the convolution this way, for stride `stride` and zero
# padding `padding`. Mind the last step: the columns are ordered $(n, oh, ow)$, the
# rows of the product are the filters. The check compares with `nn.Conv2D`.

# %% [exercise 15.3]
def conv2d_im2col(x, W, b, stride=1, padding=0):
    """y (N, F, OH, OW) = the correlation of x (N, C, H, W) with W (F, C, KH, KW), plus b."""
    # TODO (exercise 15.3): pad, im2col, one matrix product, add b, reshape and transpose
    raise NotImplementedError

# %% [check 15.3]
def conv_cases():
    check_rng = np.random.default_rng(153)
    cases = []
    for n, c, f, h, k, s, p in ((2, 3, 4, 7, 3, 1, 1), (3, 2, 5, 9, 3, 2, 0), (1, 4, 2, 8, 5, 1, 2),
                                (2, 1, 3, 6, 1, 1, 0)):
        layer = nn.Conv2D(c, f, k, stride=s, padding=p, seed=1).astype("float64")
        layer.b.data = check_rng.normal(size=f)
        xb = check_rng.normal(size=(n, c, h, h))
        cases.append((f"conv2d_im2col(x {xb.shape}, W {layer.W.shape}, stride={s}, padding={p})",
                      lambda xb=xb, layer=layer, s=s, p=p: conv2d_im2col(xb, layer.W.data,
                                                                         layer.b.data, s, p),
                      layer.forward(xb)))
    return cases


done = lk.check_cases("15.3", conv_cases())


def conv2d_im2col_nnlite(x, W, b, stride=1, padding=0):
    layer = nn.Conv2D(W.shape[1], W.shape[0], W.shape[2:], stride=stride, padding=padding)
    layer.W.data, layer.b.data = W, b
    return layer.forward(x)


conv2d_im2col = lk.fallback(done, conv2d_im2col, conv2d_im2col_nnlite, "nn.Conv2D")

# %% [markdown]
# How much memory does the unrolling cost? Every input value appears in up to
# $KH \cdot KW$ columns.
#
# **Exercise 15.4.** For one $H \times H$ channel, a $K \times K$ kernel, stride `stride`
# and padding `padding`, return `cols.size / x.size`: how many times larger the columns
# are than the input. The check measures it with `nn.functional.im2col`.

# %% [exercise 15.4]
def im2col_ratio(H, K, stride, padding):
    """cols.size / x.size for one H x H channel."""
    # TODO (exercise 15.4): columns hold K*K values per output pixel
    raise NotImplementedError

# %% [check 15.4]
def measured_ratio(H, K, stride, padding):
    x_one = np.zeros((1, 1, H, H), np.float32)
    x_pad = np.pad(x_one, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return functional.im2col(x_pad, K, K, stride, stride).size / x_one.size


lk.check_cases("15.4", [(f"im2col_ratio({H}, {K}, {s}, {p})",
                         lambda H=H, K=K, s=s, p=p: im2col_ratio(H, K, s, p),
                         measured_ratio(H, K, s, p))
                        for H, K, s, p in ((32, 3, 1, 1), (224, 11, 4, 0), (48, 5, 1, 2), (7, 3, 2, 0))])

# %% [markdown]
# A 3x3 "same" convolution makes its input nine times larger in memory: im2col trades
# memory for speed. (That is why nnlite's `Conv2D` processes large batches in blocks.)
#
# ## 4. The race
#
# Five ways to compute the same layer, each timed with `best_time`:
#
# * **loops** (section 3, on the smaller problem);
# * **im2col in NumPy + matrix product**: `nn.functional.im2col`, a strided view copied
#   once (`conv2d_im2col`, yours once exercise 15.3 is correct);
# * **im2col in Numba + matrix product**: the same unrolling as a compiled loop
#   (`nnlite.kernels.cpu`, picked by `nnlite.kernels.dispatch` when Numba is installed);
# * **nnlite's `Conv2D.forward`**: whatever its fast path does on this machine;
# * **the GPU** (CuPy), when one is present.
#
# And the yardstick: the speed of one large float32 matrix product on this machine, the
# practical peak that a convolution built on matrix products can approach.

# %%
a = rng.normal(size=(768, 768)).astype(np.float32)
peak = 2 * 768 ** 3 / best_time(lambda: a @ a, repeats=3) / 1e9        # GFLOP/s
x_padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
W_rows = W.reshape(F, -1)                                               # (F, C*KH*KW)


def im2col_product(unroll):
    cols = unroll(x_padded, K, K, 1, 1)                                 # (C*KH*KW, N*OH*OW)
    return (W_rows @ cols + b[:, None]).reshape(F, N, H, H).transpose(1, 0, 2, 3)


lk.compare(im2col_product(dispatch.im2col), reference, "the Numba im2col's output", rtol=1e-4,
           atol=1e-4)
speeds = {
    "loops": loops_flop / loops_seconds / 1e9,
    ("im2col (NumPy) + matmul" if conv2d_im2col is not conv2d_im2col_nnlite
     else "nn.Conv2D, until 15.3 is done"): FLOP / best_time(lambda: conv2d_im2col(x, W, b, 1, 1)) / 1e9,
    f"im2col ({dispatch.backend_for('im2col', x_padded)}) + matmul":
        FLOP / best_time(lambda: im2col_product(dispatch.im2col)) / 1e9,
    "nn.Conv2D": FLOP / best_time(lambda: conv.forward(x)) / 1e9,
}
print(f"dispatch.im2col runs on: {dispatch.backend_for('im2col', x_padded)}")

if nn.gpu_available():
    import cupy

    conv_gpu = nn.Conv2D(C, F, K, padding=1, seed=0).to_device("gpu")
    x_gpu = cupy.asarray(x)

    def forward_on_gpu():
        conv_gpu.forward(x_gpu)
        cupy.cuda.Device().synchronize()                                # wait for the kernels

    speeds["GPU nn.Conv2D"] = FLOP / best_time(forward_on_gpu) / 1e9
    a_gpu = cupy.asarray(a)
    gpu_peak = 2 * 768 ** 3 / best_time(lambda: (a_gpu @ a_gpu,
                                                 cupy.cuda.Device().synchronize())) / 1e9
    print(f"GPU matrix product: {gpu_peak:.0f} GFLOP/s")
else:
    print("no GPU here (nn.gpu_available() is False): the GPU row is skipped")

print(f"\nmatrix product (the peak): {peak:8.2f} GFLOP/s\n")
print(f"{'method':<26} {'GFLOP/s':>9} {'share of peak':>14} {'vs loops':>9}")
for method, speed in speeds.items():
    print(f"{method:<26} {speed:9.3f} {speed / peak:14.1%} {speed / speeds['loops']:8.0f}x")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.barh(list(speeds), list(speeds.values()), color="C0")
ax.axvline(peak, color="C3", ls="--", label="CPU matrix product (peak)")
ax.set_xscale("log")
ax.set(title="one 3x3 convolution layer, forward", xlabel="GFLOP/s (log scale)")
ax.invert_yaxis()
ax.legend(loc="lower right")
fig.tight_layout()

# %% [markdown]
# Read the last column first: the loops are about a thousand times slower than
# everything else, although every method does the same arithmetic. Python pays for each of the
# tens of thousands of small calls, while one matrix product hands the whole job to
# compiled, vectorised code. The share of peak says how close a method comes to the
# machine's limit: the im2col methods lose part of it to the unrolling (memory traffic,
# not arithmetic), which is why a compiled im2col helps; nnlite's `Conv2D`, which adds
# blocking and buffer reuse for large layers, lands in the same range on this one. A GPU adds another factor of ten to a hundred on large
# layers; on a layer this small, launching its kernels costs a good part of the time.
#
# ## Summary
#
# * Count the work: $2 N F\, OH\, OW\, C\, KH\, KW$ FLOP for a convolution; divide by the
#   best of several warmed-up timings.
# * im2col turns a convolution into one matrix product, at the price of a
#   $KH \cdot KW$-fold larger copy of the input.
# * Loops in Python run about a thousand times slower than the same arithmetic as a
#   matrix product; a compiled unrolling (Numba) and blocking bring a convolution closer to the
#   matrix product's peak.
# * Compare against the machine's own matrix-product speed, not against a data sheet:
#   "share of peak" is the honest measure of an implementation.
