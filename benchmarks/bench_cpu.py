"""nnlite against PyTorch on the CPU, side by side, in one run.

    pip install -e . torch==2.13.0      # PyTorch is for this benchmark only
    python benchmarks/bench_cpu.py      # about 10 minutes on 2 cores (with Keras)
    python benchmarks/bench_cpu.py --quick --markdown

What it measures, for the same architecture, batch size, dtype (float32) and
thread count in both frameworks:

* training step: forward (training mode), softmax cross-entropy, backward,
  Adam update (PyTorch three times: its default Adam, ``Adam(fused=True)``, and at
  its best, ``Adam(fused=True)`` with channels-last model and input); Keras 3 on
  TensorFlow-CPU too (``train_on_batch``, NHWC) when an interpreter that has them
  is found (``--keras-python``; skipped with a note otherwise);
* inference: forward in evaluation mode, as images per second;
* a per-layer forward/backward breakdown of nnlite's training step, with
  each conv and dense layer's achieved GFLOP/s;
* achieved GFLOP/s of the whole step against the machine's float32
  matrix-product peak (NumPy's BLAS and PyTorch, measured here);
* peak resident memory (``ru_maxrss``) of a process running training steps.

Each (framework, model, batch) runs in its own fresh subprocess, with
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` set to ``--threads`` before NumPy is imported and
``torch.set_num_threads(--threads)``, so that peak memory is the process's
own and no framework warms the other's caches. Times are the median of
``--repeats`` runs after ``--warmup`` runs; nnlite and PyTorch alternate, and
``--rounds`` repeats the whole alternation (the median over rounds is
reported), which evens out a machine whose load changes. The load average
is printed before and after: other processes on the machine make every
number worse, the ratios less so.

The PyTorch model is translated layer by layer from the nnlite zoo model
(and the parameter counts are checked equal), so the two are the same
network by construction. FLOPs count multiply-adds as two; a training step
is counted as three forward passes (forward, input gradient, weight
gradient) of the conv and dense layers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CONFIGS = {  # name: (zoo builder name, kwargs, one sample's shape, classes)
    "mias_cnn": ("mias_cnn", {"num_classes": 3}, (1, 48, 48), 3),
    "reduced_alexnet": ("reduced_alexnet", {"num_classes": 2}, (1, 64, 64), 2),
    "reduced_resnet": ("reduced_resnet", {"num_classes": 2}, (1, 64, 64), 2),
    "alexnet": ("alexnet", {"num_classes": 2}, (1, 224, 224), 2),     # the thesis' AlexNet
}
DEFAULT_RUNS = [("mias_cnn", 64), ("reduced_alexnet", 32), ("reduced_alexnet", 128),
                ("reduced_resnet", 32), ("alexnet", 8)]
QUICK_RUNS = [("mias_cnn", 64), ("reduced_alexnet", 32), ("reduced_resnet", 32)]


# =================================================================== worker side
def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes vs KiB


def _run_times(fn, warmup: int, repeats: int) -> tuple:
    """``(median, fastest)`` seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def _median_time(fn, warmup: int, repeats: int) -> float:
    return _run_times(fn, warmup, repeats)[0]


def _flops(layer, shape, batch: int) -> int:
    """Forward FLOPs (2 per multiply-add) of the conv and dense layers in ``layer``, at any depth."""
    import nnlite as nn
    out = tuple(layer.output_shape(shape))
    if isinstance(layer, nn.Conv2D):
        KH, KW = layer.kernel_size
        return 2 * batch * out[0] * out[1] * out[2] * (layer.in_channels // layer.groups) * KH * KW
    if isinstance(layer, nn.Dense):
        return 2 * batch * layer.in_features * layer.out_features
    if isinstance(layer, nn.Sequential):
        total = 0
        for child in layer.layers:
            total += _flops(child, shape, batch)
            shape = tuple(child.output_shape(shape))
        return total
    return sum(_flops(child, shape, batch) for _, child in layer.children())   # branches: same input


def _layer_flops(model, input_shape, batch: int) -> list:
    """Forward FLOPs of each top-level layer of an nnlite model (its whole subtree); 0 for the rest."""
    flops, shape = [], tuple(input_shape)
    for layer in model.layers:
        flops.append(_flops(layer, shape, batch))
        shape = tuple(layer.output_shape(shape))
    return flops


def _build_nnlite(cfg_name: str):
    import nnlite as nn
    builder, kwargs, shape, classes = CONFIGS[cfg_name]
    return getattr(nn.zoo, builder)(input_shape=shape, **kwargs), shape, classes


def _data(shape, classes, batch, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)
    y = rng.integers(0, classes, size=batch)                 # int64 labels
    return x, y


def worker_nnlite(cfg_name: str, batch: int, warmup: int, repeats: int, layers: bool) -> dict:
    import numpy as np
    rss_start = _rss_mb()
    import nnlite as nn
    from nnlite import kernels
    from nnlite.regularizers import regularization
    kernels._cpu()                                 # import Numba now, not inside the timing
    rss_import = _rss_mb()
    model, shape, classes = _build_nnlite(cfg_name)
    x, y = _data(shape, classes, batch)
    loss_fn = nn.SoftmaxCrossEntropy()
    opt = nn.Adam(model.parameters(), lr=1e-4)
    params = model.parameters()
    if isinstance(model.layers[0], nn.Conv2D):     # nobody uses the input's gradient: the first
        model.layers[0].need_input_grad = False    # what Sequential.backward(need_input_grad=False) asks of it

    def train_step():                              # what nnlite.fit does per batch
        logits = model.forward(x, training=True)
        value, dlogits = loss_fn(logits, y)
        model.backward(dlogits, need_input_grad=False)
        regularization(params)
        opt.step()

    train, train_min = _run_times(train_step, warmup, repeats)
    peak_train = _peak_rss_mb()
    infer = _median_time(lambda: model.forward(x, training=False), warmup, repeats)
    result = {"framework": "nnlite", "model": cfg_name, "batch": batch,
              "train_s": train, "train_min_s": train_min, "infer_s": infer,
              "rss_start_mb": rss_start,
              "rss_import_mb": rss_import, "peak_train_mb": peak_train,
              "flops_forward": sum(_layer_flops(model, shape, batch)),
              "params": model.count_params(),
              "kernels": kernels.backend_for("col2im", x)}
    if layers:
        result["layers"] = _nnlite_layer_times(model, x, y, loss_fn, opt, shape, batch,
                                               warmup, repeats)
    return result


def _nnlite_layer_times(model, x, y, loss_fn, opt, shape, batch, warmup, repeats) -> list:
    """Median forward and backward time of every layer inside real training steps."""
    flops = _layer_flops(model, shape, batch)
    n = len(model.layers)
    fwd, bwd, rest = [[] for _ in range(n)], [[] for _ in range(n)], {"loss": [], "adam": []}
    for step in range(warmup + repeats):
        keep = step >= warmup
        h = x
        for i, layer in enumerate(model.layers):
            t = time.perf_counter()
            h = layer.forward(h, training=True)
            if keep:
                fwd[i].append(time.perf_counter() - t)
        t = time.perf_counter()
        _, d = loss_fn(h, y)
        if keep:
            rest["loss"].append(time.perf_counter() - t)
        for i in range(n - 1, -1, -1):             # like backward(need_input_grad=False) but
            t = time.perf_counter()                # timing each layer, the first one included
            d = model.layers[i].backward(d)
            if keep:
                bwd[i].append(time.perf_counter() - t)
        t = time.perf_counter()
        opt.step()
        if keep:
            rest["adam"].append(time.perf_counter() - t)
    rows = []
    for i, layer in enumerate(model.layers):
        rows.append({"layer": f"{i} {_short(layer)}", "forward_s": statistics.median(fwd[i]),
                     "backward_s": statistics.median(bwd[i]), "flops_forward": flops[i]})
    rows.append({"layer": "loss (softmax cross-entropy)",
                 "forward_s": statistics.median(rest["loss"]), "backward_s": 0.0,
                 "flops_forward": 0})
    rows.append({"layer": "Adam step", "forward_s": 0.0,
                 "backward_s": statistics.median(rest["adam"]), "flops_forward": 0})
    return rows


def _short(layer) -> str:
    """``Conv2D 32->64 5x5/1 same g2``-style one-line description of a layer."""
    import nnlite as nn
    name = type(layer).__name__
    if isinstance(layer, nn.Conv2D):
        (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
        pad = layer.padding if isinstance(layer.padding, str) else "p{}".format(
            layer.padding[0] if layer.padding[0] == layer.padding[1] else layer.padding)
        groups = f" g{layer.groups}" if layer.groups > 1 else ""
        stride = SH if SH == SW else f"{SH}x{SW}"
        return f"{name} {layer.in_channels}->{layer.out_channels} {KH}x{KW}/{stride} {pad}{groups}"
    if isinstance(layer, nn.Dense):
        return f"{name} {layer.in_features}->{layer.out_features}"
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D)):
        (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
        return f"{name} {KH}x{KW}/{SH if SH == SW else (SH, SW)}"
    return name


def _torch_model(nn_model, torch):
    """The nnlite model translated to torch.nn, layer by layer (containers included)."""
    model = _torch_layer(nn_model, torch)
    n_torch = sum(p.numel() for p in model.parameters())
    if n_torch != nn_model.count_params():
        raise ValueError(f"bench_cpu: the PyTorch model has {n_torch} parameters, nnlite's "
                         f"{nn_model.count_params()}: the translation is wrong")
    return model


def _torch_layer(layer, torch):
    """One nnlite layer (or container) as a torch.nn module."""
    import nnlite as nn
    tn = torch.nn
    if isinstance(layer, nn.Sequential):
        return tn.Sequential(*[_torch_layer(child, torch) for child in layer.layers])
    if isinstance(layer, nn.Residual):
        class TorchResidual(tn.Module):
            def __init__(self, body, shortcut):
                super().__init__()
                self.body, self.shortcut = body, shortcut

            def forward(self, x):
                return self.body(x) + self.shortcut(x)
        return TorchResidual(_torch_layer(layer.body, torch), _torch_layer(layer.shortcut, torch))
    if isinstance(layer, nn.Identity):
        return tn.Identity()
    if isinstance(layer, nn.BatchNorm2D):
        return tn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              affine=layer.affine)
    if isinstance(layer, nn.GlobalAvgPool2D):
        return tn.Sequential(tn.AdaptiveAvgPool2d(1), tn.Flatten())
    out = []
    for layer in [layer]:
        if isinstance(layer, nn.Conv2D):
            (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
            if layer.padding == "same" and SH == SW == 1 and KH % 2 and KW % 2:
                padding = ((KH - 1) // 2, (KW - 1) // 2)      # symmetric for odd kernels
            elif layer.padding == "valid":
                padding = 0
            elif layer.padding == "same":
                raise ValueError(f"bench_cpu: cannot translate padding {layer.padding!r} "
                                 f"with kernel {layer.kernel_size} stride {layer.stride}")
            else:
                padding = layer.padding
            out.append(tn.Conv2d(layer.in_channels, layer.out_channels, (KH, KW), (SH, SW),
                                 padding, groups=layer.groups, bias=layer.b is not None))
        elif isinstance(layer, nn.Dense):
            out.append(tn.Linear(layer.in_features, layer.out_features, bias=layer.b is not None))
        elif isinstance(layer, nn.MaxPool2D):
            out.append(tn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, nn.LocalResponseNorm):
            out.append(tn.LocalResponseNorm(layer.size, layer.alpha, layer.beta, layer.k))
        elif isinstance(layer, nn.ZeroPad2D):
            top, bottom, left, right = layer.padding
            out.append(tn.ZeroPad2d((left, right, top, bottom)))
        elif isinstance(layer, nn.ReLU):
            out.append(tn.ReLU())
        elif isinstance(layer, nn.Dropout):
            out.append(tn.Dropout(layer.rate))
        elif isinstance(layer, nn.Flatten):
            out.append(tn.Flatten())
        else:
            raise ValueError(f"bench_cpu: no PyTorch translation for {layer!r}")
    return out[0]


def worker_torch(cfg_name: str, batch: int, warmup: int, repeats: int, threads: int) -> dict:
    rss_start = _rss_mb()
    import torch
    torch.set_num_threads(threads)
    rss_import = _rss_mb()
    nn_model, shape, classes = _build_nnlite(cfg_name)
    model = _torch_model(nn_model, torch)
    del nn_model
    import gc
    gc.collect()
    x_np, y_np = _data(shape, classes, batch)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    loss_fn = torch.nn.CrossEntropyLoss()

    def make_step(opt):
        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        return step

    model.train()
    train = _median_time(make_step(torch.optim.Adam(model.parameters(), lr=1e-4)),
                         warmup, repeats)
    peak_train = _peak_rss_mb()
    train_fused = _median_time(make_step(torch.optim.Adam(model.parameters(), lr=1e-4,
                                                          fused=True)), warmup, repeats)
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)
    infer_s = _median_time(infer, warmup, repeats)
    # PyTorch at its best: channels-last activations and weights (oneDNN's preferred layout
    # on the CPU) and the fused Adam. Peak memory above is the default step's.
    model.train()
    model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    train_best, train_best_min = _run_times(make_step(torch.optim.Adam(
        model.parameters(), lr=1e-4, fused=True)), warmup, repeats)
    return {"framework": "torch", "model": cfg_name, "batch": batch, "train_s": train,
            "train_fused_s": train_fused, "train_best_s": train_best,
            "train_best_min_s": train_best_min, "infer_s": infer_s,
            "rss_start_mb": rss_start, "rss_import_mb": rss_import, "peak_train_mb": peak_train,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def _keras_apply(layer, h, keras, tf):
    """Apply one nnlite layer (or container), translated to Keras, to the NHWC tensor ``h``."""
    import nnlite as nn
    kl = keras.layers
    if isinstance(layer, nn.Sequential):
        for child in layer.layers:
            h = _keras_apply(child, h, keras, tf)
        return h
    if isinstance(layer, nn.Residual):
        return kl.Add()([_keras_apply(layer.body, h, keras, tf),
                         _keras_apply(layer.shortcut, h, keras, tf)])
    if isinstance(layer, nn.Identity):
        return h
    if isinstance(layer, nn.BatchNorm2D):
        return kl.BatchNormalization(axis=-1, epsilon=layer.eps, momentum=1 - layer.momentum,
                                     center=layer.affine, scale=layer.affine)(h)
    if isinstance(layer, nn.GlobalAvgPool2D):
        return kl.GlobalAveragePooling2D()(h)
    if isinstance(layer, nn.Conv2D):
        (KH, KW), (SH, SW) = layer.kernel_size, layer.stride
        if layer.padding == "same":
            padding = "same"
        else:
            PH, PW = (0, 0) if layer.padding == "valid" else layer.padding
            if PH or PW:
                h = kl.ZeroPadding2D(((PH, PH), (PW, PW)))(h)
            padding = "valid"
        return kl.Conv2D(layer.out_channels, (KH, KW), (SH, SW), padding, groups=layer.groups,
                         use_bias=layer.b is not None)(h)
    if isinstance(layer, nn.Dense):
        return kl.Dense(layer.out_features, use_bias=layer.b is not None)(h)
    if isinstance(layer, nn.MaxPool2D):
        (PH, PW) = layer.padding if isinstance(layer.padding, tuple) else (layer.padding,) * 2
        if PH or PW:     # Keras pads max-pooling with -inf only through "same"; not in the zoo
            raise ValueError("bench_cpu: no Keras translation for a padded MaxPool2D")
        return kl.MaxPooling2D(layer.kernel_size, layer.stride)(h)
    if isinstance(layer, nn.LocalResponseNorm):
        size, alpha, beta, k = layer.size, layer.alpha, layer.beta, layer.k
        return kl.Lambda(lambda t: tf.nn.local_response_normalization(
            t, depth_radius=size // 2, bias=k, alpha=alpha / size, beta=beta))(h)
    if isinstance(layer, nn.ZeroPad2D):
        top, bottom, left, right = layer.padding
        return kl.ZeroPadding2D(((top, bottom), (left, right)))(h)
    if isinstance(layer, nn.ReLU):
        return kl.ReLU()(h)
    if isinstance(layer, nn.Dropout):
        return kl.Dropout(layer.rate)(h)
    if isinstance(layer, nn.Flatten):
        return kl.Flatten()(h)
    raise ValueError(f"bench_cpu: no Keras translation for {layer!r}")


def worker_keras(cfg_name: str, batch: int, warmup: int, repeats: int, threads: int) -> dict:
    """Keras 3 on TensorFlow-CPU: ``train_on_batch`` (as ``fit`` runs it), NHWC, default compile."""
    rss_start = _rss_mb()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    rss_import = _rss_mb()
    nn_model, shape, classes = _build_nnlite(cfg_name)
    c, h, w = shape
    inputs = keras.Input((h, w, c), batch_size=batch)
    model = keras.Model(inputs, _keras_apply(nn_model, inputs, keras, tf))
    n_keras = sum(int(v.numpy().size) for v in model.trainable_weights)
    if n_keras != nn_model.count_params(trainable_only=True):
        raise ValueError(f"bench_cpu: the Keras model has {n_keras} trainable parameters, "
                         f"nnlite's {nn_model.count_params(trainable_only=True)}")
    del nn_model
    x_np, y_np = _data(shape, classes, batch)
    x = x_np.transpose(0, 2, 3, 1).copy()                       # NHWC
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train, train_min = _run_times(lambda: model.train_on_batch(x, y_np), warmup, repeats)
    peak_train = _peak_rss_mb()
    infer_s = _median_time(lambda: model.predict_on_batch(x), warmup, repeats)
    return {"framework": "keras", "model": cfg_name, "batch": batch, "train_s": train,
            "train_min_s": train_min,
            "infer_s": infer_s, "rss_start_mb": rss_start, "rss_import_mb": rss_import,
            "peak_train_mb": peak_train, "keras": keras.__version__, "tensorflow": tf.__version__}


def worker_peak(threads: int) -> dict:
    """float32 matrix-product peak: NumPy's BLAS and PyTorch, 2048 and 4096 squares."""
    import numpy as np
    out = {}
    for n in (2048, 4096):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        t = _median_time(lambda: a @ a, 1, 3)
        out[f"numpy_{n}"] = 2 * n ** 3 / t / 1e9
    try:
        import torch
    except ImportError:
        return out
    torch.set_num_threads(threads)
    for n in (2048, 4096):
        a = torch.randn(n, n)
        t = _median_time(lambda: a @ a, 1, 3)
        out[f"torch_{n}"] = 2 * n ** 3 / t / 1e9
    return out


def run_worker(spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "nnlite":
        return worker_nnlite(spec["model"], spec["batch"], spec["warmup"], spec["repeats"],
                             spec["layers"])
    if kind == "torch":
        return worker_torch(spec["model"], spec["batch"], spec["warmup"], spec["repeats"],
                            spec["threads"])
    if kind == "keras":
        return worker_keras(spec["model"], spec["batch"], spec["warmup"], spec["repeats"],
                            spec["threads"])
    if kind == "peak":
        return worker_peak(spec["threads"])
    raise ValueError(f"unknown worker kind {kind!r}")


# ============================================================= orchestrator side
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(spec: dict, threads: int, python: str | None = None) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    if python:                 # another interpreter (Keras's venv): it imports nnlite from here
        env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([python or sys.executable, os.path.abspath(__file__), "--worker",
                           json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_description(threads: int) -> dict:
    import numpy
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    blas = "?"
    try:
        deps = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{deps.get('name', '?')} {deps.get('version', '')}".strip()
    except Exception:  # the layout of show_config changes between NumPy versions
        pass
    try:
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
    try:
        import importlib.metadata as md
        torch_version = md.version("torch")
    except Exception:
        torch_version = "not installed"
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_gb": round(mem_gb, 1),
            "threads": threads, "python": platform.python_version(),
            "numpy": numpy.__version__, "blas": blas, "numba": numba_version,
            "torch": torch_version, "os": platform.platform()}


def _keras_python(path: str | None) -> tuple:
    """``(python, note)``: an interpreter that imports Keras 3 and TensorFlow, or None and why not.

    ``path`` (``--keras-python``) names one; without it this interpreter is tried.
    TensorFlow is an optional peer: keep it out of nnlite's environment (a separate
    venv: ``python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu keras``).
    """
    python = path or sys.executable
    probe = subprocess.run([python, "-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='2'; "
                            "import tensorflow, keras; print(keras.__version__, "
                            "tensorflow.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, (f"Keras/TensorFlow skipped: {python} cannot import them (install "
                      f"tensorflow-cpu and keras in a separate venv and pass --keras-python)")
    keras_version, tf_version = probe.stdout.split()[-2:]
    return python, f"Keras {keras_version} on TensorFlow {tf_version} ({python})"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _fmt_ms(s):
    return f"{s * 1e3:8.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="mias_cnn@64, reduced_alexnet@32 and reduced_resnet@32 only, fewer "
                         "repeats, one round")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for both frameworks (default: all logical CPUs)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    ap.add_argument("--rounds", type=int, default=None,
                    help="repeat the nnlite/PyTorch alternation; report the median")
    ap.add_argument("--run", action="append", metavar="MODEL:BATCH",
                    help="what to run, e.g. --run mias_cnn:64 (repeatable)")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer breakdown")
    ap.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    ap.add_argument("--json", metavar="PATH", help="write all raw results to PATH")
    ap.add_argument("--keras-python", metavar="PYTHON",
                    help="interpreter with Keras 3 + TensorFlow-CPU (an optional peer; "
                         "default: this one if it has them, else skipped)")
    ap.add_argument("--no-keras", action="store_true", help="skip the Keras/TensorFlow peer")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    repeats = args.repeats or (4 if args.quick else 10)
    warmup = args.warmup or (2 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 3)
    runs = ([(r.split(":")[0], int(r.split(":")[1])) for r in args.run] if args.run
            else QUICK_RUNS if args.quick else DEFAULT_RUNS)
    for model, _ in runs:
        if model not in CONFIGS:
            ap.error(f"unknown model {model!r}; choose from {sorted(CONFIGS)}")
    threads = args.threads
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        print("bench_cpu: PyTorch is not installed; it is the yardstick of this benchmark "
              "(and only of it): pip install torch==2.13.0", file=sys.stderr)
        return 2

    machine = machine_description(threads)
    load_before = _load()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    print(f"load average before: {load_before}   (repeats={repeats}, warmup={warmup}, "
          f"rounds={rounds})", flush=True)

    keras_python, keras_note = (None, "Keras/TensorFlow skipped (--no-keras)") if args.no_keras \
        else _keras_python(args.keras_python)
    print(keras_note, flush=True)
    peak = _spawn({"kind": "peak", "threads": threads}, threads)
    peak_f32 = max(peak.values())
    print("float32 matmul peak (GFLOP/s): " +
          ", ".join(f"{k} {v:.0f}" for k, v in peak.items()), flush=True)

    results = {}
    for model, batch in runs:
        kinds = ("nnlite", "torch") + (("keras",) if keras_python else ())
        per_round = {kind: [] for kind in kinds}
        for r in range(rounds):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                spec = {"kind": kind, "model": model, "batch": batch, "warmup": warmup,
                        "repeats": repeats, "threads": threads,
                        "layers": kind == "nnlite" and r == 0 and not args.no_layers}
                try:
                    per_round[kind].append(_spawn(spec, threads,
                                                  keras_python if kind == "keras" else None))
                except RuntimeError as e:
                    if kind != "keras":
                        raise
                    print(f"  {model}@{batch} keras failed: {str(e)[-300:]}", flush=True)
                    continue
                print(f"  {model}@{batch} {kind} round {r + 1}: train "
                      f"{per_round[kind][-1]['train_s'] * 1e3:.1f} ms", flush=True)
        results[(model, batch)] = per_round

    load_after = _load()
    table = _summarise(results, peak_f32)
    first = next(iter(results.values()))["nnlite"][0]
    print(f"\nnnlite kernels used: {first['kernels']} (NNLITE_KERNELS=reference forces the "
          f"plain NumPy path)")
    busy = [v for v in (load_before, load_after) if v != "?" and float(v.split()[0]) > 0.5]
    if busy:
        print(f"\nWARNING: the 1-minute load average was above 0.5 ({load_before} before, "
              f"{load_after} after): other programs took CPU time; rerun on a quiet machine.")
    _print_tables(table, results, peak, machine, load_before, load_after, markdown=args.markdown)
    print(f"\n{keras_note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "peak": peak, "load_before": load_before,
                       "keras": keras_note,
                       "load_after": load_after,
                       "results": {f"{m}@{b}": v for (m, b), v in results.items()},
                       "summary": table}, f, indent=1)
    return 0


def _summarise(results, peak_f32) -> list:
    rows = []
    med = lambda runs, key: statistics.median(r[key] for r in runs)   # noqa: E731
    fastest = lambda runs, key: min(r[key] for r in runs)             # noqa: E731
    for (model, batch), per in results.items():
        nl, tr = per["nnlite"], per["torch"]
        flops_train = 3 * nl[0]["flops_forward"]
        row = {"model": model, "batch": batch,
               "nnlite_train_ms": med(nl, "train_s") * 1e3,
               "torch_train_ms": med(tr, "train_s") * 1e3,
               "torch_fused_train_ms": med(tr, "train_fused_s") * 1e3,
               "nnlite_infer_img_s": batch / med(nl, "infer_s"),
               "torch_infer_img_s": batch / med(tr, "infer_s"),
               "nnlite_peak_mb": max(r["peak_train_mb"] for r in nl),
               "torch_peak_mb": max(r["peak_train_mb"] for r in tr),
               "nnlite_import_mb": nl[0]["rss_import_mb"],
               "torch_import_mb": tr[0]["rss_import_mb"]}
        row["torch_best_train_ms"] = med(tr, "train_best_s") * 1e3
        row["train_ratio_best"] = row["nnlite_train_ms"] / row["torch_best_train_ms"]
        # The fastest run of all rounds: outside load only ever slows a run down.
        row["nnlite_train_min_ms"] = fastest(nl, "train_min_s") * 1e3
        row["torch_best_train_min_ms"] = fastest(tr, "train_best_min_s") * 1e3
        row["train_min_ratio_best"] = row["nnlite_train_min_ms"] / row["torch_best_train_min_ms"]
        ke = per.get("keras") or []
        row["keras_train_min_ms"] = fastest(ke, "train_min_s") * 1e3 if ke else None
        row["train_min_ratio_keras"] = (row["nnlite_train_min_ms"] / row["keras_train_min_ms"]
                                        if ke else None)
        row["keras_train_ms"] = med(ke, "train_s") * 1e3 if ke else None
        row["train_ratio_keras"] = (row["nnlite_train_ms"] / row["keras_train_ms"]) if ke else None
        row["keras_infer_img_s"] = batch / med(ke, "infer_s") if ke else None
        row["keras_peak_mb"] = max(r["peak_train_mb"] for r in ke) if ke else None
        row["train_ratio"] = row["nnlite_train_ms"] / row["torch_train_ms"]
        row["train_ratio_fused"] = row["nnlite_train_ms"] / row["torch_fused_train_ms"]
        row["infer_ratio"] = row["torch_infer_img_s"] / row["nnlite_infer_img_s"]   # time ratio
        row["memory_ratio"] = row["nnlite_peak_mb"] / row["torch_peak_mb"]
        row["nnlite_gflops"] = flops_train / (row["nnlite_train_ms"] / 1e3) / 1e9
        row["torch_gflops"] = flops_train / (row["torch_train_ms"] / 1e3) / 1e9
        row["peak_gflops"] = peak_f32
        rows.append(row)
    return rows


def _print_tables(table, results, peak, machine, load_before, load_after, markdown):
    print()
    print(f"load average after: {load_after}")
    opt = lambda v, fmt: format(v, fmt) if v is not None else "-".rjust(len(format(1.0, fmt)))  # noqa: E731
    print("\nTraining step (forward, loss, backward, Adam), median ms; ratio = nnlite / peer")
    print(f"{'model':<16}{'batch':>6}{'nnlite':>9}{'torch':>9}{'ratio':>7}{'fused':>9}{'ratio':>7}"
          f"{'best':>9}{'ratio':>7}{'keras':>9}{'ratio':>7}{'nnlite GF/s':>14}{'torch GF/s':>12}")
    for r in table:
        print(f"{r['model']:<16}{r['batch']:>6}{r['nnlite_train_ms']:9.1f}{r['torch_train_ms']:9.1f}"
              f"{r['train_ratio']:7.2f}{r['torch_fused_train_ms']:9.1f}{r['train_ratio_fused']:7.2f}"
              f"{r['torch_best_train_ms']:9.1f}{r['train_ratio_best']:7.2f}"
              f"{opt(r['keras_train_ms'], '9.1f')}{opt(r['train_ratio_keras'], '7.2f')}"
              f"{r['nnlite_gflops']:7.1f} ({r['nnlite_gflops'] / r['peak_gflops']:3.0%})"
              f"{r['torch_gflops']:6.1f} ({r['torch_gflops'] / r['peak_gflops']:3.0%})")
    print(f"(torch: default Adam, NCHW; fused: Adam(fused=True); best: Adam(fused=True) and "
          f"channels-last; keras: Keras 3 on TensorFlow-CPU, train_on_batch, NHWC. GF/s: 3 x "
          f"forward conv+dense FLOPs per step / step time, in brackets the share of the float32 "
          f"matmul peak, {max(peak.values()):.0f} GFLOP/s)")
    print("\nTraining step, fastest run of all rounds, ms (outside load only slows runs down)")
    print(f"{'model':<16}{'batch':>6}{'nnlite':>9}{'best':>9}{'ratio':>7}{'keras':>9}{'ratio':>7}")
    for r in table:
        print(f"{r['model']:<16}{r['batch']:>6}{r['nnlite_train_min_ms']:9.1f}"
              f"{r['torch_best_train_min_ms']:9.1f}{r['train_min_ratio_best']:7.2f}"
              f"{opt(r['keras_train_min_ms'], '9.1f')}{opt(r['train_min_ratio_keras'], '7.2f')}")
    print("\nInference (forward, eval mode), images/s; time ratio = nnlite / PyTorch")
    print(f"{'model':<16}{'batch':>6}{'nnlite':>10}{'torch':>10}{'ratio':>7}")
    for r in table:
        print(f"{r['model']:<16}{r['batch']:>6}{r['nnlite_infer_img_s']:10.0f}"
              f"{r['torch_infer_img_s']:10.0f}{r['infer_ratio']:7.2f}")
    print("\nPeak resident memory of a training-step process (ru_maxrss), MB; "
          "after import in brackets")
    print(f"{'model':<16}{'batch':>6}{'nnlite':>16}{'torch':>16}{'ratio':>7}{'keras':>8}")
    for r in table:
        print(f"{r['model']:<16}{r['batch']:>6}"
              f"{r['nnlite_peak_mb']:8.0f} ({r['nnlite_import_mb']:4.0f})"
              f"{r['torch_peak_mb']:8.0f} ({r['torch_import_mb']:4.0f}){r['memory_ratio']:7.2f}"
              f"{opt(r['keras_peak_mb'], '8.0f')}")
    for (model, batch), per in results.items():
        layers = per["nnlite"][0].get("layers")
        if not layers:
            continue
        total = sum(l["forward_s"] + l["backward_s"] for l in layers)
        print(f"\nnnlite per layer, {model} batch {batch} (training step, median ms; "
              f"GF/s for conv and dense; sum {total * 1e3:.1f} ms)")
        print(f"{'layer':<36}{'fwd':>8}{'bwd':>8}{'fwd GF/s':>10}{'bwd GF/s':>10}")
        for l in layers:
            f, b, fl = l["forward_s"], l["backward_s"], l["flops_forward"]
            gf = f"{fl / f / 1e9:10.1f}" if fl and f else " " * 10
            gb = f"{2 * fl / b / 1e9:10.1f}" if fl and b else " " * 10
            print(f"{l['layer']:<36}{_fmt_ms(f)}{_fmt_ms(b)}{gf}{gb}")
    if markdown:
        _print_markdown(table, results, peak, machine, load_before, load_after)


def _print_markdown(table, results, peak, machine, load_before, load_after):
    print("\n---- Markdown ----\n")
    cell = lambda v, fmt: format(v, fmt) if v is not None else "-"   # noqa: E731
    print("| model | batch | nnlite train ms | PyTorch ms | ratio | PyTorch fused-Adam ms | ratio "
          "| PyTorch best ms | ratio | Keras/TF ms | ratio | nnlite inf img/s "
          "| PyTorch inf img/s | inf time ratio | nnlite peak MB | PyTorch peak MB "
          "| memory ratio | Keras peak MB | nnlite GFLOP/s (% peak) | PyTorch GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          "---:|---:|---:|")
    for r in table:
        print(f"| {r['model']} | {r['batch']} | {r['nnlite_train_ms']:.1f} | "
              f"{r['torch_train_ms']:.1f} | {r['train_ratio']:.2f} | "
              f"{r['torch_fused_train_ms']:.1f} | {r['train_ratio_fused']:.2f} | "
              f"{r['torch_best_train_ms']:.1f} | **{r['train_ratio_best']:.2f}** | "
              f"{cell(r['keras_train_ms'], '.1f')} | {cell(r['train_ratio_keras'], '.2f')} | "
              f"{r['nnlite_infer_img_s']:.0f} | {r['torch_infer_img_s']:.0f} | "
              f"{r['infer_ratio']:.2f} | {r['nnlite_peak_mb']:.0f} | {r['torch_peak_mb']:.0f} | "
              f"**{r['memory_ratio']:.2f}** | {cell(r['keras_peak_mb'], '.0f')} | "
              f"{r['nnlite_gflops']:.0f} ({r['nnlite_gflops'] / r['peak_gflops']:.0%}) | "
              f"{r['torch_gflops']:.0f} |")
    print(f"\nfloat32 matmul peak: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
          + " GFLOP/s")
    print("\nTraining step, fastest run of all rounds (ms):\n")
    print("| model | batch | nnlite | PyTorch best | ratio | Keras/TF | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['model']} | {r['batch']} | {r['nnlite_train_min_ms']:.1f} | "
              f"{r['torch_best_train_min_ms']:.1f} | **{r['train_min_ratio_best']:.2f}** | "
              f"{cell(r['keras_train_min_ms'], '.1f')} | {cell(r['train_min_ratio_keras'], '.2f')} |")
    for (model, batch), per in results.items():
        layers = per["nnlite"][0].get("layers")
        if not layers:
            continue
        print(f"\nnnlite per layer, {model} batch {batch}:\n")
        print("| layer | forward ms | backward ms | forward GFLOP/s | backward GFLOP/s |")
        print("|---|---:|---:|---:|---:|")
        for l in layers:
            f, b, fl = l["forward_s"], l["backward_s"], l["flops_forward"]
            gf = f"{fl / f / 1e9:.0f}" if fl and f else ""
            gb = f"{2 * fl / b / 1e9:.0f}" if fl and b else ""
            print(f"| {l['layer'].replace('|', '/')} | {f * 1e3:.1f} | {b * 1e3:.1f} | {gf} | {gb} |")


if __name__ == "__main__":
    sys.exit(main())
