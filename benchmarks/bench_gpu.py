"""GPU benchmark: nnlite on CuPy against PyTorch with cuDNN on the same GPU, and nnlite on the CPU.

Usage (on a machine with an NVIDIA GPU, CuPy and, for the comparison, PyTorch with CUDA)::

    python benchmarks/bench_gpu.py                    # both models, the full table
    python benchmarks/bench_gpu.py --models reduced_alexnet --repeats 50
    python benchmarks/bench_gpu.py --json results.json

For each model of :mod:`nnlite.zoo` (``mias_cnn`` on 1x48x48 patches, batch 64;
``reduced_alexnet`` on 1x64x64 images, batch 128) it times, in one run:

* **train step**: what one iteration of ``nn.fit`` does once the batch is on
  the device: ``forward(training=True)``, ``SoftmaxCrossEntropy``,
  ``backward``, ``Adam.step()`` (lr 2e-3);
* **inference**: ``forward(training=False)`` on the same batch;

for nnlite on the GPU, PyTorch on the same GPU (the same architecture built
layer by layer from the nnlite model, with its weights; cuDNN convolutions,
``cudnn.benchmark = True``, ``torch.optim.Adam``) and nnlite on the CPU.

Timing: every configuration first runs ``--warmup`` untimed steps (CuPy
compiles its kernels, cuDNN picks its algorithms, Numba compiles), then
``--repeats`` timed steps, each bracketed by CUDA events recorded on the
stream and waited for (``cupy.cuda.Event`` / ``torch.cuda.Event``); the CPU is
timed with ``time.perf_counter``. The table reports the median per step.
Both GPU frameworks compute in full float32: TF32 tensor-core math is off
unless ``--tf32`` is given (then it is enabled for both; CuPy reads
``CUPY_TF32=1`` from the environment at import, so this script sets it before
importing nnlite).

Targets (issue 5): on ``reduced_alexnet`` at batch 128, nnlite's training
throughput is at least 50% of PyTorch's, and the GPU is at least 10x nnlite
on the CPU. The last lines of the output say whether each was met.

Without CuPy or a CUDA GPU the script exits at once with a message saying so
(exit status 2).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy

MODELS = {  # name: (zoo function arguments, default batch size)
    "mias_cnn": ({"num_classes": 3, "input_shape": (1, 48, 48)}, 64),
    "reduced_alexnet": ({"num_classes": 2, "input_shape": (1, 64, 64)}, 128),
}
LR = 2e-3


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                    help="models to time (default: all)")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size for every model (default: mias_cnn 64, reduced_alexnet 128)")
    ap.add_argument("--repeats", type=int, default=20, help="timed GPU steps (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    ap.add_argument("--cpu-repeats", type=int, default=3, help="timed CPU steps")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--no-cpu", action="store_true", help="skip nnlite on the CPU")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 tensor-core math in both CuPy and PyTorch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.cpu_repeats < 1:
        ap.error("--repeats and --cpu-repeats must be >= 1 and --warmup >= 0")
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be >= 1")
    return args


def gpu_problem():
    """Why nnlite cannot run on a GPU here (a sentence), or None when it can."""
    from nnlite import backend
    try:
        backend.require_gpu()
    except RuntimeError as e:
        return str(e)
    return None


def torch_problem():
    """Why the PyTorch comparison cannot run here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device (a CPU-only build?)"
    return None


# ------------------------------------------------------------------ timers
def time_cupy(step, repeats: int, warmup: int) -> list:
    """Milliseconds per call of ``step`` on the GPU, measured with CUDA events."""
    import cupy
    for _ in range(warmup):
        step()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return times


def time_torch(step, repeats: int, warmup: int) -> list:
    import torch
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def time_cpu(step, repeats: int, warmup: int) -> list:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


# ------------------------------------------------------------------ nnlite
def nnlite_steps(model, x, y):
    """``(train_step, inference_step)`` closures for an nnlite model and a batch on its device."""
    import nnlite as nn
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = nn.Adam(model.parameters(), lr=LR)

    def train():
        logits = model.forward(x, training=True)
        _, dlogits = loss_fn(logits, y)
        model.backward(dlogits, need_input_grad=False)
        opt.step()

    def infer():
        return model.forward(x, training=False)

    return train, infer


# ------------------------------------------------------------------ PyTorch
def torch_twin(model, input_shape):
    """The same network in PyTorch, layer by layer, with the nnlite model's weights.

    Supports the layers the zoo models use: Conv2D (any padding, groups),
    Dense, Flatten, ReLU, MaxPool2D, LocalResponseNorm (PyTorch, like nnlite,
    divides alpha by size), Dropout and ZeroPad2D. ``input_shape`` (one
    sample, ``(C, H, W)``) resolves ``"same"`` padding; an asymmetric one
    becomes a ``ZeroPad2d`` before the convolution, a symmetric one the
    convolution's own ``padding``.
    """
    import torch
    import nnlite as nn
    from nnlite.backend import to_numpy
    from nnlite.conv import same_padding

    def tensor(a):
        return torch.from_numpy(numpy.ascontiguousarray(to_numpy(a)))

    mods, shape = [], tuple(input_shape)
    for layer in model.layers:
        if isinstance(layer, nn.Conv2D):
            (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
            if layer.padding == "same":
                pads = same_padding(shape[1], KH, SH) + same_padding(shape[2], KW, SW)
            elif layer.padding == "valid":
                pads = (0, 0, 0, 0)
            else:
                pads = (layer.padding[0], layer.padding[0], layer.padding[1], layer.padding[1])
            top, bottom, left, right = pads
            symmetric = top == bottom and left == right
            if not symmetric:
                mods.append(torch.nn.ZeroPad2d((left, right, top, bottom)))
            conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, (KH, KW),
                                   stride=(SH, SW), padding=(top, left) if symmetric else 0,
                                   groups=layer.groups, bias=layer.b is not None)
            with torch.no_grad():
                conv.weight.copy_(tensor(layer.W.data))
                if layer.b is not None:
                    conv.bias.copy_(tensor(layer.b.data))
            mods.append(conv)
        elif isinstance(layer, nn.Dense):
            lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.b is not None)
            with torch.no_grad():
                lin.weight.copy_(tensor(layer.W.data).T)          # nnlite W is (in, out)
                if layer.b is not None:
                    lin.bias.copy_(tensor(layer.b.data))
            mods.append(lin)
        elif isinstance(layer, nn.Flatten):
            mods.append(torch.nn.Flatten())
        elif isinstance(layer, nn.ReLU):
            mods.append(torch.nn.ReLU())
        elif isinstance(layer, nn.MaxPool2D):
            mods.append(torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, nn.LocalResponseNorm):
            mods.append(torch.nn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k))
        elif isinstance(layer, nn.Dropout):
            mods.append(torch.nn.Dropout(layer.rate))
        elif isinstance(layer, nn.ZeroPad2D):
            top, bottom, left, right = layer.padding
            mods.append(torch.nn.ZeroPad2d((left, right, top, bottom)))
        else:
            raise ValueError(f"torch_twin: no PyTorch counterpart for {layer!r}")
        shape = tuple(layer.output_shape(shape))
    return torch.nn.Sequential(*mods)


def torch_steps(net, x, y):
    import torch
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=LR)

    def train():
        net.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    def infer():
        net.eval()
        with torch.no_grad():
            return net(x)

    return train, infer


# ------------------------------------------------------------------ driver
def bench_model(name: str, args) -> dict:
    import nnlite as nn
    from nnlite.backend import to_numpy
    import cupy

    kwargs, default_batch = MODELS[name]
    batch = args.batch or default_batch
    input_shape = kwargs["input_shape"]
    rng = numpy.random.default_rng(args.seed)
    x_host = rng.standard_normal((batch,) + input_shape).astype(numpy.float32)
    y_host = rng.integers(0, kwargs["num_classes"], size=batch).astype(numpy.int64)
    result = {"model": name, "batch": batch}

    model = getattr(nn.zoo, name)(seed=args.seed, **kwargs)
    if not args.no_torch:          # the twin takes the weights before any training step
        torch_net_cpu = torch_twin(model, input_shape)
    model.to_gpu()
    x_gpu, y_gpu = cupy.asarray(x_host), cupy.asarray(y_host)
    train, infer = nnlite_steps(model, x_gpu, y_gpu)
    logits_nnlite = to_numpy(infer())
    result["nnlite_gpu_train_ms"] = statistics.median(time_cupy(train, args.repeats, args.warmup))
    result["nnlite_gpu_infer_ms"] = statistics.median(time_cupy(infer, args.repeats, args.warmup))
    del model, train, infer, x_gpu, y_gpu
    cupy.get_default_memory_pool().free_all_blocks()

    if not args.no_torch:
        import torch
        net = torch_net_cpu.cuda()
        x_t, y_t = torch.from_numpy(x_host).cuda(), torch.from_numpy(y_host).cuda()
        t_train, t_infer = torch_steps(net, x_t, y_t)
        logits_torch = t_infer().cpu().numpy()
        result["same_logits_max_abs_diff"] = float(numpy.abs(logits_torch - logits_nnlite).max())
        result["torch_gpu_train_ms"] = statistics.median(time_torch(t_train, args.repeats, args.warmup))
        result["torch_gpu_infer_ms"] = statistics.median(time_torch(t_infer, args.repeats, args.warmup))
        del net, x_t, y_t, t_train, t_infer
        torch.cuda.empty_cache()

    if not args.no_cpu:
        model_cpu = getattr(nn.zoo, name)(seed=args.seed, **kwargs)
        c_train, c_infer = nnlite_steps(model_cpu, x_host, y_host)
        warm = min(args.warmup, 1)
        result["nnlite_cpu_train_ms"] = statistics.median(time_cpu(c_train, args.cpu_repeats, warm))
        result["nnlite_cpu_infer_ms"] = statistics.median(time_cpu(c_infer, args.cpu_repeats, warm))
    return result


def table(results: list) -> str:
    """The results as a fixed-width text table, one row per model and phase."""
    head = ("model", "batch", "phase", "nnlite GPU ms", "PyTorch GPU ms", "nnlite CPU ms",
            "nnlite/PyTorch throughput", "GPU vs CPU speed-up")
    rows = []
    for r in results:
        for phase, key in (("train step", "train"), ("inference", "infer")):
            g = r.get(f"nnlite_gpu_{key}_ms")
            t = r.get(f"torch_gpu_{key}_ms")
            c = r.get(f"nnlite_cpu_{key}_ms")
            rows.append((r["model"], str(r["batch"]), phase, _ms(g), _ms(t), _ms(c),
                         f"{t / g:.2f}" if g and t else "-", f"{c / g:.1f}x" if g and c else "-"))
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*head), line] + [fmt.format(*row) for row in rows])


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def targets(results: list) -> list:
    """Lines saying whether the issue's two targets on reduced_alexnet were met."""
    lines = []
    for r in results:
        if r["model"] != "reduced_alexnet":
            continue
        g, t, c = (r.get(k) for k in ("nnlite_gpu_train_ms", "torch_gpu_train_ms",
                                        "nnlite_cpu_train_ms"))
        note = "" if r["batch"] == 128 else f" (measured at batch {r['batch']}, the target is for 128)"
        if g and t:
            ratio = t / g
            lines.append(f"target: nnlite >= 50% of PyTorch training throughput on reduced_alexnet: "
                         f"{ratio:.0%} -> {'met' if ratio >= 0.5 else 'NOT met'}{note}")
        if g and c:
            speedup = c / g
            lines.append(f"target: GPU >= 10x nnlite CPU on reduced_alexnet training: "
                         f"{speedup:.1f}x -> {'met' if speedup >= 10 else 'NOT met'}{note}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.tf32:
        os.environ["CUPY_TF32"] = "1"       # read by CuPy at import
    problem = gpu_problem()
    if problem is not None:
        print(f"bench_gpu: cannot run, nnlite needs CuPy with a CUDA GPU here: {problem}",
              file=sys.stderr)
        raise SystemExit(2)
    if not args.no_torch:
        tp = torch_problem()
        if tp is not None:
            print(f"bench_gpu: {tp}; the PyTorch column is skipped", file=sys.stderr)
            args.no_torch = True
        else:
            import torch
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = args.tf32
            torch.backends.cuda.matmul.allow_tf32 = args.tf32

    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"GPU: {gpu_name}; CuPy {cupy.__version__}; CPU threads: {os.cpu_count()}; "
          f"TF32 {'on' if args.tf32 else 'off'}; median of {args.repeats} GPU steps "
          f"({args.cpu_repeats} CPU steps) after {args.warmup} warm-up steps")
    if not args.no_torch:
        import torch
        print(f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")

    results = [bench_model(name, args) for name in args.models]
    print()
    print(table(results))
    for r in results:
        if "same_logits_max_abs_diff" in r:
            print(f"check: {r['model']} logits, nnlite GPU vs PyTorch GPU (same weights, "
                  f"inference): max abs difference {r['same_logits_max_abs_diff']:.2e}")
    for line in targets(results):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu_name, "tf32": args.tf32, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
