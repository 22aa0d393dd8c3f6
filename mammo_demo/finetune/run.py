"""``mammo-demo finetune``: the transfer-learning paper's experiment on nnlite's own source models.

For one source model (any nnlite model file; typically ``best_model.npz`` of
a ``mammo-demo train`` run on MIAS patches, or of a whole-mammogram run) and
the target set of :mod:`mammo_demo.finetune.data`, each **configuration**
trains a copy of the source with the paper's head
(:func:`nnlite.transfer.replace_head`):

* ``scratch``: the same architecture freshly initialised (the source's
  untrained weights), every layer training, the fine-tuning head, the
  transfer-learning rate: what the same budget buys without transfer;
* ``TL``: transfer learning, the head with a dense layer of ``hidden`` units
  (the paper's 4096); only the head trains (:func:`nnlite.transfer.transfer`);
* ``FT gamma=g``: fine-tuning, the head without a dense layer; after a short
  warm-up of the new head alone (``warmup`` epochs at the TL rate: a random
  head would send noise into the pretrained body), layers ``g ..`` train with
  a small learning rate (:func:`nnlite.transfer.fine_tune`), within the same
  epoch budget.

Every configuration: binary cross-entropy on the logit, RMSProp, early
stopping on the validation loss with ``patience``, the best checkpoint kept
(``<config>/best_model.npz``) and tested. The table has the paper's columns
(Tables 7-10): train, validation and test accuracy, the overfitting ratio
beta = train_acc / val_acc, AUC and F1, each with its n; rates carry Wilson
95% intervals and the AUC a bootstrap-over-patients interval
(:mod:`mammo_demo.evaluation`). Train accuracy is measured on the
un-augmented training split with the best model (dropout off), like the
validation and test accuracy, so beta compares like with like.

Nothing here is a medical device; on phantom data nothing here says
anything about real patients.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import nnlite as nn
from nnlite import transfer as tl
from nnlite.layer import layer_spec
from nnlite.serialization import build_from_config

from ..evaluation import MIN_MEANINGFUL_N, compute_metrics, proportion
from ..report import NOT_A_MEDICAL_DEVICE, interval
from ..runfolder import CONFIG_FILE, DATA_FILE, METRICS_FILE, RunFolder, write_json
from . import data as target_data

DEFAULT_EPOCHS = 10
DEFAULT_PATIENCE = 3
DEFAULT_BATCH_SIZE = 16
DEFAULT_WARMUP = 2
#: ROI side of the default run: small enough for a sweep on 2 CPU cores (the body ends in
#: global average pooling, so any side works; --size 48 gives a MIAS source its own size)
DEFAULT_SIZE = 32
DEFAULT_LR_TL = 1e-3
DEFAULT_LR_FT = 1e-4
DEFAULT_HIDDEN = 4096
DEFAULT_DROPOUT = 0.2
DEFAULT_COPIES = 2
BEST_MODEL, HISTORY_CSV = "best_model.npz", "history.csv"
TABLE_TXT, REPORT_MD, CURVES = "sweep_table.txt", "report.md", "curves.png"
OUTPUTS = {METRICS_FILE, TABLE_TXT, REPORT_MD, CURVES, "report.txt"}
CONFIG_DIRS = r"(scratch|tl|ft_gamma_[A-Za-z0-9_.]+)"


def _log(progress: bool, *parts) -> None:
    if progress:
        print(*parts, flush=True)


# ------------------------------------------------------------------ the source model
def describe_source(path) -> dict:
    """The source model's provenance (``nn.read_metadata`` and the run folder beside it)."""
    from ..saved_model import describe_model
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--from: model file not found: {path}")
    about = describe_model(path)
    if about["checkpoint"]:
        raise ValueError(f"--from {path}: a training checkpoint (the last epoch); pass the run's "
                         f"best_model.npz")
    meta = about["metadata"]
    lines = list(about["lines"])
    if not meta:
        lines = [f"source model {path}: an nnlite model file without provenance metadata"]
    else:
        shown = ", ".join(f"{k}={v}" for k, v in meta.items()
                          if isinstance(v, (str, int, float, bool)) and k != "not_a_medical_device")
        lines.append(f"  metadata (nn.read_metadata): {shown[:300]}{' ...' if len(shown) > 300 else ''}")
    return {"path": str(path), "metadata": meta, "lines": lines, "warnings": about["warnings"],
            "config": about["config"], "kind": about["kind"]}


def source_input_size(model, about: dict, size: int | None) -> int:
    """Side of the source's square input: ``size``, else its run's patch size, else a guess."""
    if size is not None:
        return int(size)
    for where in (about["metadata"], about["config"]):
        for key in ("patch_size", "input_size", "size"):
            if isinstance(where.get(key), int):
                return int(where[key])
    for guess in (48, 64, 32, 96, 112, 128, 224):
        try:
            model.output_shape((1, guess, guess))
            return guess
        except (ValueError, IndexError):
            continue
    raise ValueError("cannot tell the source model's input size: pass --size")


def _input_channels(model) -> int:
    """Channels of the first layer that declares them (1 for a grey model)."""
    for _, layer in model.named_layers():
        if hasattr(layer, "in_channels"):
            return int(layer.in_channels)
    return 1


def configurations(transfer: bool, gammas) -> list[dict]:
    """The rows of the table: scratch, TL (when asked or sweeping), FT at each gamma."""
    rows = [{"name": "scratch", "kind": "scratch", "gamma": 0}]
    if transfer:
        rows.append({"name": "TL", "kind": "tl", "gamma": "head"})
    for g in gammas:
        rows.append({"name": f"FT gamma={g}", "kind": "ft", "gamma": g})
    return rows


def _folder_name(row: dict) -> str:
    if row["kind"] in ("scratch", "tl"):
        return row["kind"]
    return "ft_gamma_" + "".join(c if c.isalnum() or c in "._" else "_" for c in str(row["gamma"]))


def training_phases(row: dict, *, epochs: int, warmup: int, lr_tl: float, lr_ft: float) -> list:
    """The training phases of a configuration, all within the same budget of ``epochs``.

    scratch: every layer at ``lr_tl``; TL: the head at ``lr_tl``; FT: ``warmup``
    epochs of the head at ``lr_tl`` (without early stopping), then layers
    ``gamma ..`` at ``lr_ft`` for the remaining epochs.
    """
    if row["kind"] == "scratch":
        return [{"gamma": 0, "lr": lr_tl, "epochs": epochs, "early_stopping": True}]
    if row["kind"] == "tl":
        return [{"gamma": "head", "lr": lr_tl, "epochs": epochs, "early_stopping": True}]
    warmup = max(0, min(int(warmup), epochs - 1))
    out = [{"gamma": "head", "lr": lr_tl, "epochs": warmup, "early_stopping": False}] if warmup \
        else []
    return out + [{"gamma": row["gamma"], "lr": lr_ft, "epochs": epochs - warmup,
                   "early_stopping": True}]


def build_model(source_path, row: dict, input_shape, *, hidden, dropout, seed) -> tuple:
    """A fresh copy of the source with the paper's head; returns ``(model, frozen paths)``."""
    source = nn.load(source_path)
    if row["kind"] == "scratch":
        source = build_from_config(layer_spec(source))        # same architecture, untrained
    model = tl.replace_head(source, input_shape=input_shape,
                            hidden=hidden if row["kind"] == "tl" else None, dropout=dropout,
                            seed=seed, name=f"{source.name}_{row['kind']}")
    if row["kind"] == "tl":
        frozen = tl.transfer(model)
    else:
        frozen = tl.fine_tune(model, row["gamma"])
    return model, frozen


# ------------------------------------------------------------------ one configuration
def _accuracy(model, x, y) -> tuple[float, np.ndarray]:
    p = nn.predict_proba(model, x)
    return float(np.mean((p >= 0.5) == (y == 1))), p


def class_weights(y) -> tuple[float, float]:
    """``(w_benign, w_malignant) = N / (2 N_c)``: both classes weigh the same in the loss."""
    y = np.asarray(y)
    n = len(y)
    counts = [int(np.sum(y == c)) for c in (0, 1)]
    if min(counts) == 0:
        raise ValueError(f"the training split lacks a class ({counts[0]} benign, {counts[1]} "
                         f"malignant)")
    return (n / (2.0 * counts[0]), n / (2.0 * counts[1]))


def train_configuration(model, splits, run_dir: Path, *, phases, batch_size: int,
                        patience: int, seed: int, progress: bool) -> dict:
    """Fit with class-weighted BCE + RMSProp + early stopping, keep the best checkpoint, test it.

    ``phases`` is a list of ``{"gamma", "lr", "epochs", "early_stopping"}``:
    before each phase trainability is set from its gamma
    (:func:`nnlite.transfer.fine_tune`; ``"head"`` = only the head) and a fresh
    RMSProp is built. Fine-tuning uses two: a short warm-up of the new head
    (its random weights would otherwise send noise into the pretrained body),
    then layers ``gamma ..`` at the small learning rate. The checkpoint
    watches the last phase only: ``best_model.npz`` is the fine-tuned epoch
    with the lowest validation loss (the warm-up is preparation, and with it in
    the running every FT row could report the same warm-up epoch).

    The loss weighs each class by ``N / (2 N_c)`` (:func:`class_weights`): the
    target set has more benign than malignant masses, and without it every
    configuration can settle on "always benign".
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (x_aug, y_aug), val, test, train = splits["train_aug"], splits["val"], splits["test"], \
        splits["train"]
    best_path = run_dir / BEST_MODEL
    weights = class_weights(y_aug)
    loss = nn.BinaryCrossEntropy(class_weights=weights)
    t0 = time.perf_counter()
    combined: dict = {}
    boundaries = []
    for k, phase in enumerate(phases):
        if phase["epochs"] < 1:
            continue
        frozen = tl.transfer(model) if phase["gamma"] == "head" else tl.fine_tune(model,
                                                                                 phase["gamma"])
        if progress and len(phases) > 1:
            print(f"  phase {k + 1}/{len(phases)}: gamma {phase['gamma']}, lr {phase['lr']:g}, "
                  f"{phase['epochs']} epochs; frozen: {', '.join(frozen) or 'none'}", flush=True)
        last = k == len(phases) - 1
        callbacks = [nn.ModelCheckpoint(best_path, monitor="val_loss")] if last else []
        if phase["early_stopping"]:
            callbacks.insert(0, nn.EarlyStopping(monitor="val_loss", patience=patience,
                                                 restore_best_weights=True))
        opt = nn.RMSProp(model.parameters(), lr=phase["lr"])
        history = model.fit(x_aug, y_aug.astype(np.float32), loss=loss, optimizer=opt,
                            epochs=phase["epochs"], batch_size=batch_size,
                            validation_data=(val.x, val.y.astype(np.float32)), seed=seed + k,
                            callbacks=callbacks, verbose=2 if progress else 0)
        for key, values in history.history.items():
            combined.setdefault(key, []).extend(values)
        boundaries.append(len(combined.get("loss", [])))
    seconds = time.perf_counter() - t0
    epochs_run = len(combined.get("loss", []))
    with open(run_dir / HISTORY_CSV, "w") as f:
        keys = list(combined)
        f.write(",".join(["epoch", "phase"] + keys) + "\n")
        for e in range(epochs_run):
            phase = next(i for i, b in enumerate(boundaries) if e < b) + 1
            f.write(",".join([str(e + 1), str(phase)] + [f"{combined[k][e]:.6g}" for k in keys])
                    + "\n")
    best = nn.load(best_path) if best_path.exists() else model
    val_losses = combined.get("val_loss", [])
    start = boundaries[-2] if len(boundaries) > 1 else 0       # the checkpointed phase
    best_epoch = start + int(np.argmin(val_losses[start:])) + 1 if val_losses[start:] else None

    train_acc, _ = _accuracy(best, train.x, train.y)
    val_acc, p_val = _accuracy(best, val.x, val.y)
    test_acc, p_test = _accuracy(best, test.x, test.y)
    two = lambda p: np.stack([1.0 - p, p], axis=1)             # (N,) malignant -> (N, 2)
    m = compute_metrics(test.y, two(p_test), target_data.CLASSES, image_ids=test.patient_ids,
                        y_val=val.y, p_val=two(p_val), y_train=train.y, seed=seed)
    n_train, n_val, n_test = len(train.y), len(val.y), len(test.y)
    return {
        "train_accuracy": proportion(round(train_acc * n_train), n_train),
        "val_accuracy": proportion(round(val_acc * n_val), n_val),
        "test_accuracy": m["intervals"]["accuracy"],
        "beta": nn.metrics.overfitting_ratio(train_acc, val_acc) if val_acc > 0 else None,
        "auc": m["intervals"]["malignant_auc"],
        "f1": m["malignant"]["f1"], "f1_support": int(np.sum(test.y == 1)),
        "majority_test_accuracy": m["baseline"]["accuracy"]["value"],
        "class_weights": list(weights),
        "test_metrics": m, "best_epoch": best_epoch, "epochs_run": epochs_run,
        "history": combined, "phase_ends": boundaries[:-1], "train_seconds": round(seconds, 1),
        "trainable_params": model.count_params(trainable_only=True),
        "total_params": model.count_params(trainable_only=False),
        "phases": [dict(p) for p in phases],
    }


# ------------------------------------------------------------------ the table
def _rate(rate: dict) -> str:
    if rate["value"] is None:
        return "-"
    return f"{100 * rate['value']:.1f}% [{interval(rate['ci95'])}]"


def format_sweep_table(rows: list[dict], label: str, source_line: str) -> str:
    """One table, the shape of the paper's Tables 7-10: a row per configuration.

    Every configuration is tested on the same splits, so each column's n is in its header.
    """
    first = rows[0]["result"]
    auc0 = first["auc"]
    header = ["configuration", "trains", "epochs",
              f"train acc n={first['train_accuracy']['n']}",
              f"val acc n={first['val_accuracy']['n']}",
              f"test acc n={first['test_accuracy']['n']}", "beta",
              f"AUC n={auc0['n']} ({auc0['n_positive']} malig.)",
              f"F1 n={first['f1_support']} malig."]
    body = []
    for r in rows:
        res = r["result"]
        auc = res["auc"]
        auc_text = "-" if auc["value"] is None else (
            f"{auc['value']:.3f} [{interval(auc.get('ci95'), as_percent=False)}]")
        body.append([r["name"], f"{res['trainable_params']:,}",
                     f"{res['best_epoch']}/{res['epochs_run']}",
                     _rate(res["train_accuracy"]), _rate(res["val_accuracy"]),
                     _rate(res["test_accuracy"]),
                     "-" if res["beta"] is None else f"{res['beta']:.2f}", auc_text,
                     f"{res['f1']:.2f}"])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    rule = "-" * len(fmt(header))
    small = min(min(r["result"]["val_accuracy"]["n"], r["result"]["test_accuracy"]["n"])
                for r in rows)
    lines = [f"mammo-demo finetune: {label}", source_line, rule, fmt(header), rule]
    lines += [fmt(b) for b in body]
    lines += [rule,
              "trains = trainable parameters; epochs = best/run (early stopping on validation "
              "loss); accuracies at threshold 0.5 with Wilson 95% intervals; beta = train acc / "
              "val acc; AUC with a bootstrap-over-patients 95% interval; F1 of the malignant class.",
              "train acc is the best model on the un-augmented training split; test = "
              "the best checkpoint (lowest validation loss)."]
    base = rows[0]["result"].get("majority_test_accuracy")
    if base is not None:
        lines.append(f"majority-class baseline (always the training split's most frequent "
                     f"class): test acc {100 * base:.1f}%.")
    if small < MIN_MEANINGFUL_N:
        lines.append(f"! a split has fewer than {MIN_MEANINGFUL_N} ROIs: read the intervals, "
                     f"not the digits.")
    if "PHANTOM" in label:
        lines.append("PHANTOM data: synthetic ROIs; these numbers say nothing about real patients.")
    lines.append(NOT_A_MEDICAL_DEVICE)
    return "\n".join(lines)


def plot_curves(rows: list[dict], path, label: str) -> Path:
    """Train vs validation accuracy per epoch, one panel per configuration (the paper's plots)."""
    from ..plots import _FOOTER_SPACE, _figure, _save, _title
    n = len(rows)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig = _figure(4.0 * cols, 3.2 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax, r in zip(axes, rows):
        h = r["result"]["history"]
        for key, name, style in (("accuracy", "train (augmented)", "-o"),
                                 ("val_accuracy", "validation", "-s")):
            values = h.get(key) or []
            ax.plot(np.arange(1, len(values) + 1), values, style, markersize=3, label=name)
        for end in r["result"].get("phase_ends", []):
            ax.axvline(end + 0.5, color="tab:green", linestyle=":", linewidth=1,
                       label="end of head warm-up")
        if r["result"]["best_epoch"]:
            ax.axvline(r["result"]["best_epoch"], color="0.5", linestyle="--", linewidth=1,
                       label="best model")
        ax.set_title(r["name"], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(_title("Train vs validation accuracy per configuration", label), fontsize=10)
    fig.tight_layout(rect=(0, _FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return _save(fig, path, label)


# ------------------------------------------------------------------ the whole command
def run_finetune(source, *, transfer: bool = False, gammas=(), data_dir=None, out_dir,
                 epochs: int = DEFAULT_EPOCHS, patience: int = DEFAULT_PATIENCE,
                 batch_size: int = DEFAULT_BATCH_SIZE, lr_tl: float = DEFAULT_LR_TL,
                 lr_ft: float = DEFAULT_LR_FT, hidden: int | None = DEFAULT_HIDDEN,
                 dropout: float = DEFAULT_DROPOUT, copies: int = DEFAULT_COPIES,
                 warmup: int = DEFAULT_WARMUP, size: int | None = DEFAULT_SIZE, seed: int = 0, phantom_seed: int = 0,
                 phantom_patients: int = target_data.PHANTOM_PATIENTS,
                 phantom_scale: float = target_data.PHANTOM_SCALE, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Run every configuration on the target set; write the run folder; return the results.

    Writes into ``out_dir``: ``config.json``, ``data.json``, one folder per
    configuration (``scratch/``, ``tl/``, ``ft_gamma_<g>/`` with
    ``best_model.npz`` and ``history.csv``), ``metrics.json``,
    ``sweep_table.txt`` (also ``report.txt``), ``report.md`` and ``curves.png``.
    """
    t_start = time.perf_counter()
    if not transfer and not gammas:
        raise ValueError("choose --transfer, --gamma N or --sweep-gamma LIST")
    if epochs < 1 or patience < 0 or batch_size < 1 or copies < 0:
        raise ValueError("epochs and batch size must be >= 1, patience and copies >= 0")
    about = describe_source(source)
    for line in about["lines"]:
        _log(progress, line)
    for w in about["warnings"]:
        _log(progress, f"warning: {w}")
    source_model = nn.load(source)
    side = source_input_size(source_model, about, size)
    input_shape = (_input_channels(source_model), side, side)
    # check every gamma before anything is written
    rows = configurations(transfer, gammas)
    for row in rows:
        build_model(source, row, input_shape, hidden=hidden, dropout=dropout, seed=seed)

    config = {"command": "finetune", "source": str(source), "transfer": transfer,
              "gammas": [g for g in gammas], "data_dir": None if data_dir is None else str(data_dir),
              "epochs": epochs, "patience": patience, "batch_size": batch_size, "lr_tl": lr_tl,
              "lr_ft": lr_ft, "warmup": warmup, "hidden": hidden, "dropout": dropout, "augment_copies": copies,
              "input_shape": list(input_shape), "seed": seed, "phantom_seed": phantom_seed,
              "phantom_patients": phantom_patients, "phantom_scale": phantom_scale,
              "optimizer": "rmsprop", "loss": "binary cross-entropy on the logit",
              "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
    out_dir = Path(out_dir)
    with RunFolder(out_dir, outputs=OUTPUTS, output_dirs=CONFIG_DIRS,
                   started_by={METRICS_FILE}, command="mammo-demo finetune") as folder:
        config = folder.prepare(config, overwrite=overwrite)
        write_json(out_dir / CONFIG_FILE, config)

        rois = target_data.load_target(data_dir, size=side, phantom_seed=phantom_seed,
                                       phantom_patients=phantom_patients,
                                       phantom_scale=phantom_scale, progress=progress)
        label = target_data.data_label(rois.is_phantom)
        parts = target_data.split_by_patient(rois, seed=seed)
        train, val, test = (rois.subset(parts[s]) for s in ("train", "val", "test"))
        for name, part in (("training", train), ("validation", val), ("test", test)):
            if len(part) == 0 or len(np.unique(part.y)) < 2:
                raise ValueError(f"the {name} split has {len(part)} ROIs {part.counts()}: it "
                                 f"needs both classes (use more data)")
        x_aug, y_aug = target_data.augment(train.x, train.y, copies=copies, seed=seed)
        data = {"data": label, "phantom": rois.is_phantom, "source_folder": rois.info.get("folder"),
                "rois": {"total": len(rois), "per_class": rois.counts(),
                         "patients": rois.n_patients()},
                "split_method": parts["how"] + "; split before augmentation",
                "splits": {name: {"rois": len(p), "per_class": p.counts(),
                                  "patients": p.n_patients()}
                           for name, p in (("train", train), ("val", val), ("test", test))},
                "train_augmented": int(len(y_aug)),
                "augmentation": f"{copies} random copies per training ROI: rotation +-30 deg, "
                                f"zoom 0.85-1.15, horizontal/vertical flips, brightness offset "
                                f"+-0.2 std",
                "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
        write_json(out_dir / DATA_FILE, data)
        _log(progress, f"target [{label}]: {len(rois)} mass ROIs {rois.counts()} from "
                       f"{rois.n_patients()} patients; train {len(train)} {train.counts()} "
                       f"(x{copies + 1} augmented = {len(y_aug)}), val {len(val)} {val.counts()}, "
                       f"test {len(test)} {test.counts()}; {parts['how']}")
        splits = {"train_aug": (x_aug, y_aug), "train": train, "val": val, "test": test}
        folder.mark_started()

        done = []
        for row in rows:
            model, frozen = build_model(source, row, input_shape, hidden=hidden,
                                        dropout=dropout, seed=seed)
            phases = training_phases(row, epochs=epochs, warmup=warmup, lr_tl=lr_tl,
                                     lr_ft=lr_ft)
            plan = "; then ".join(f"{p['epochs']} epochs at lr {p['lr']:g} from gamma "
                                  f"{p['gamma']}" for p in phases)
            _log(progress, f"--- {row['name']} [{label}]: {plan}; "
                           f"{model.count_params(trainable_only=True):,} of "
                           f"{model.count_params(trainable_only=False):,} parameters train; "
                           f"frozen layers: {', '.join(frozen) if frozen else 'none'}")
            if progress:
                for line in tl.layer_table(model, input_shape):
                    print("   " + line)
            result = train_configuration(model, splits, out_dir / _folder_name(row),
                                         phases=phases, batch_size=batch_size,
                                         patience=patience, seed=seed, progress=progress)
            best_path = out_dir / _folder_name(row) / BEST_MODEL
            if best_path.is_file():          # the best model again, now with its provenance
                nn.save(nn.load(best_path), best_path, metadata={
                    "mammo_demo": "finetune", "command": "finetune",
                    "data": "phantom" if rois.is_phantom else "real", "data_description": label,
                    "source": data["source_folder"], "source_model": about["path"],
                    "source_provenance": about["metadata"], "configuration": row["name"],
                    "gamma": row["gamma"], "frozen_layers": frozen, "patch_size": side,
                    "classes": list(target_data.CLASSES), "which": "best",
                    "epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
                    "seed": seed, "not_a_medical_device": NOT_A_MEDICAL_DEVICE})
            done.append({**row, "frozen_layers": frozen, "folder": _folder_name(row),
                         "result": result})

        source_line = (f"source: {source} ({about['lines'][0].split(': ', 1)[-1]}); input "
                       f"{input_shape}; target split {parts['how']}")
        table = format_sweep_table(done, label, source_line)
        plot_curves(done, out_dir / CURVES, label)
        wall = round(time.perf_counter() - t_start, 1)
        (out_dir / TABLE_TXT).write_text(table + "\n")
        (out_dir / "report.txt").write_text(table + "\n")
        (out_dir / REPORT_MD).write_text(
            f"# mammo-demo finetune: {label}\n\n```\n{table}\n```\n\n![curves]({CURVES})\n\n"
            f"wall time {wall:.0f} s\n")
        results = {"command": "finetune", "data": label, "phantom": rois.is_phantom,
                   "source": about["path"], "source_provenance": about["metadata"],
                   "table": table, "wall_seconds": wall, "run_dir": str(out_dir),
                   "configurations": [
                       {k: v for k, v in r.items() if k != "result"}
                       | {"result": {k: v for k, v in r["result"].items()
                                     if k not in ("history",)},
                          "history": r["result"]["history"]} for r in done],
                   "not_a_medical_device": NOT_A_MEDICAL_DEVICE}
        write_json(out_dir / METRICS_FILE, results)
    return results
