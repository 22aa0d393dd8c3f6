"""``mammo-demo whole train``: the three experiments of the thesis in one run folder.

::

    OUT/
      config.json, data.json          settings; data provenance, split by patient, counts
      view_<model>/                   experiment 1 (CC vs MLO): best_model.npz, checkpoint.npz,
                                      history.csv/.json
      malignant_<model>/              experiment 2, one folder per model (same files)
      best_model.npz                  the first model's malignant network, with the threshold
                                      chosen on validation and the split in its metadata
                                      (what ``whole evaluate --model`` takes)
      metrics.json, report.txt, report.md
      curves_<task>_<model>.png, roc.png, breast_table.png

The folder is a :class:`~mammo_demo.runfolder.RunFolder` (lock, ``--resume``
of the same settings, ``--overwrite``, no half-started leftovers).
"""
from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

from ..runfolder import RunFolder, write_json
from . import data as whole_data
from . import experiments, tables

STARTED_BY = ("best_model.npz",)
OUTPUT_DIRS = r"(view|malignant)_[a-z0-9_]+"
OUTPUTS = ("metrics.json", "report.txt", "report.md", "best_model.npz", "roc.png",
           "breast_table.png") + tuple(f"curves_{t}_{m}.png" for t in ("view", "malignant")
                                        for m in experiments.MODELS)
RESUME_KEYS = ("data", "phantom_seed", "patients", "scale", "method", "size", "models",
               "view_model", "view_epochs", "batch_size", "lr", "seed", "split_fractions",
               "class_weights")
DEFAULTS = dict(models=["reduced_resnet", "reduced_alexnet"], method="crop",
                size=whole_data.DEFAULT_SIZE, epochs=12, view_epochs=5, batch_size=16, lr=1e-3,
                seed=0, phantom_seed=0, patients=None, scale=None, class_weights=True)


def _log(progress, *parts):
    if progress:
        print(*parts, flush=True)


def run_train(out, *, data=None, models=None, method="crop", size=whole_data.DEFAULT_SIZE,
              epochs=12, view_epochs=5, batch_size=16, lr=1e-3, seed=0, phantom_seed=0,
              patients=None, scale=None, class_weights=True, resume=False, overwrite=False,
              epochs_given=True, progress=True, cache_dir=None, bootstrap_samples=1000) -> dict:
    """Run the three experiments into ``out``; return ``metrics.json``'s dict."""
    models = list(models or DEFAULTS["models"])
    if len(set(models)) != len(models):
        raise ValueError(f"--model names a network twice: {models}")
    for name in models:
        experiments.check_model(name, size)
    if epochs < 1 or view_epochs < 0:
        raise ValueError(f"--epochs must be >= 1 and --view-epochs >= 0, got {epochs}, "
                         f"{view_epochs}")
    for name in models:
        if name in experiments.FULL_MODELS:
            warnings.warn(f"{name} is the thesis' full configuration: on a CPU one epoch of a "
                          f"few hundred 224x224 films takes far longer than the reduced "
                          f"networks (hours for a run)", stacklevel=2)
    config = dict(command="mammo-demo whole train",
                  data=None if data is None else str(Path(data).resolve()),
                  phantom_seed=phantom_seed if data is None else None,
                  patients=patients if data is None else None,
                  scale=scale if data is None else None, method=method, size=int(size),
                  models=models, view_model=models[0], epochs=int(epochs),
                  view_epochs=int(view_epochs), batch_size=int(batch_size), lr=float(lr),
                  seed=int(seed), split_fractions=list(whole_data.SPLIT_FRACTIONS),
                  class_weights=bool(class_weights), preprocess_size=whole_data.PREPROCESS_SIZE,
                  optimizer="adam", best_model_monitor="val_loss")
    t_start = time.perf_counter()
    with RunFolder(out, outputs=OUTPUTS, output_dirs=OUTPUT_DIRS, started_by=STARTED_BY,
                   command="mammo-demo whole train") as run:
        config = run.prepare(config, resume=resume, overwrite=overwrite, resume_keys=RESUME_KEYS,
                             epochs_given=epochs_given)
        resuming = resume and "new run" not in config.get("resume_plan", "new run")
        folder = run.path

        def run_json(name, obj):
            write_json(folder / name, obj)

        run_json("config.json", config)
        if config.get("resume_plan"):
            _log(progress, config["resume_plan"])

        t0 = time.perf_counter()
        dataset, info = whole_data.resolve_data(data, phantom_seed=phantom_seed,
                                                patients=patients, scale=scale,
                                                cache_dir=cache_dir, progress=progress)
        data_seconds = time.perf_counter() - t0
        images, facts = whole_data.load_images(dataset, method, size, cache_dir=cache_dir,
                                               progress=progress)
        split = whole_data.split_by_patient(images.patient, images.y_malignant, seed=seed)
        summary = whole_data.split_summary(images, split)
        for part in ("train", "val", "test"):
            if summary[part]["images"] == 0 or summary[part]["malignant"] == 0:
                raise ValueError(f"the {part} split has {summary[part]['images']} images, "
                                 f"{summary[part]['malignant']} malignant ({len(images)} images of "
                                 f"{len(set(images.patient.tolist()))} patients): use more patients")
        label = info["label"]
        provenance = {"data": info["data"], "data_kind": info["kind"], "data_label": label,
                      "data_folder": info["folder"], "phantom_seed": info["phantom_seed"],
                      "method": method, "size": int(size), "split_seed": int(seed),
                      "split_fractions": list(whole_data.SPLIT_FRACTIONS)}
        patients_of = {k: sorted(set(images.patient[v].tolist())) for k, v in split.items()}
        run_json("data.json", {**info, "preprocessing": facts,
                               "dataset_seconds": round(data_seconds, 2),
                               "images": len(images), "split_by": "patient",
                               "split": summary, "patients": patients_of,
                               "label_rule": "malignant when any abnormality row of the image "
                                             "is MALIGNANT (benign, benign without callback "
                                             "and normal: not malignant)"})
        _log(progress, f"{len(images)} images of {len(set(images.patient.tolist()))} patients "
                       f"[{label}]; preprocessed{' (from the cache)' if facts['from_cache'] else ''}"
                       f" in {facts['seconds']:.0f} s; split by patient: "
                       + ", ".join(f"{k} {v['patients']} patients / {v['images']} images "
                                   f"({v['malignant']} malignant)" for k, v in summary.items()))
        run.mark_started()

        common = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, resume=resuming,
                      progress=progress, provenance=provenance)
        metrics = {"command": "mammo-demo whole train", "data": info["data"],
                   "data_label": label, "data_kind": info["kind"], "config": config,
                   "split": summary, "experiments": {}, "seconds": {}}
        plots_written = []
        # experiment 1: CC vs MLO with the first model
        view_results = {}
        if view_epochs > 0:
            name = models[0]
            res = experiments.train_task(images, split, "view", name, folder / f"view_{name}",
                                         **{**common, "epochs": view_epochs}, weighted=False)
            experiments.save_model(res["model"], res["path"], provenance, task="view",
                                   classes=whole_data.VIEW_CLASSES, model_name=name,
                                   epoch=res["best_epoch"], which="best")
            test = split["test"]
            view_results[name] = {**experiments.view_row(
                images.y_view[test], res["p1"][test], images.y_view[split["train"]]),
                "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
                "train_seconds": res["seconds"]}
            plots_written.append(_curves(folder, "view", name, res, label))
            metrics["seconds"][f"view_{name}"] = res["seconds"]
        metrics["experiments"]["view"] = view_results

        # experiments 2 and 3: malignant vs not, per image and per breast
        malignant_results, rocs, first_op = {}, [], None
        for i, name in enumerate(models):
            res = experiments.train_task(images, split, "malignant", name,
                                         folder / f"malignant_{name}", **common,
                                         weighted=class_weights)
            rows = experiments.breast_rows(images, split, res["p1"], seed=seed,
                                           bootstrap_samples=bootstrap_samples)
            op = rows["per image"]["operating_point"]
            facts_model = dict(task="malignant", classes=whole_data.MALIGNANT_CLASSES,
                               model_name=name, epoch=res["best_epoch"], which="best",
                               class_weights=res["class_weights"],
                               threshold=None if op is None else op["threshold"],
                               threshold_chosen_on="validation",
                               breast_thresholds={h: (rows[h]["operating_point"] or {}).get(
                                   "threshold") for h in experiments.AGGREGATIONS},
                               test_patients=patients_of["test"], val_patients=patients_of["val"])
            experiments.save_model(res["model"], res["path"], provenance, **facts_model)
            if i == 0:
                shutil.copyfile(res["path"], folder / "best_model.npz")
                first_op = op
            malignant_results[name] = {**rows, "best_epoch": res["best_epoch"],
                                       "epochs_run": res["epochs_run"],
                                       "train_seconds": res["seconds"],
                                       "class_weights": res["class_weights"]}
            test = split["test"]
            rocs.append((f"{name} per image", images.y_malignant[test], res["p1"][test]))
            plots_written.append(_curves(folder, "malignant", name, res, label))
            metrics["seconds"][f"malignant_{name}"] = res["seconds"]
        metrics["experiments"]["malignant"] = malignant_results
        tables.plot_roc(folder / "roc.png", rocs, label, first_op,
                        title="ROC, malignant vs not per image (test); * threshold from validation"
                              f" ({models[0]})")
        tables.plot_breast_table(folder / "breast_table.png", malignant_results, label)
        plots_written += ["roc.png", "breast_table.png"]
        metrics["plots"] = plots_written
        metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
        metrics["seconds"]["data_and_preprocessing"] = round(data_seconds + facts["seconds"], 2)
        run_json("metrics.json", metrics)
        title = "mammo-demo whole train: the thesis' three whole-mammogram experiments"
        run_facts = _facts(config, summary, facts, metrics, label)
        sections = sections_of(metrics)
        tables.write_reports(folder, title, label, run_facts, sections, plots_written)
    return metrics


def _curves(folder: Path, task: str, name: str, res: dict, label: str) -> str:
    from .. import plots
    file = f"curves_{task}_{name}.png"
    what = "CC vs MLO" if task == "view" else "malignant vs not"
    plots.plot_history(res["history"], folder / file, data_label=label,
                       best_epoch=res["best_epoch"] or None,
                       title=f"Training curves: {what}, {name}")
    return file


def sections_of(metrics: dict) -> list:
    """The three experiments' tables, as ``(heading, text)``."""
    out = []
    if metrics["experiments"].get("view"):
        out.append(("Experiment 1, pipeline sanity task: CC vs MLO per image (test split)",
                    tables.view_table(metrics["experiments"]["view"])))
    mal = metrics["experiments"]["malignant"]
    out.append(("Experiment 2 (Table 6.3): malignant vs not, per image (test split)",
                tables.malignant_table(mal)))
    out.append(("Experiment 3 (Table 6.4): per breast, CC and MLO scores aggregated "
                "(breasts with both views only)", tables.breast_table(mal)))
    return out


def _facts(config, summary, facts, metrics, label) -> list[str]:
    parts = ", ".join(f"{k}: {v['patients']} patients, {v['images']} images "
                      f"({v['malignant']} malignant), {v['breasts']} breasts"
                      for k, v in summary.items())
    return [f"data: {label}",
            f"preprocessing: method {config['method']}, 224x224 input shrunk to "
            f"{config['size']}x{config['size']} (area averaging)"
            + (" (arrays from the cache)" if facts["from_cache"] else ""),
            f"split by patient (stratified by malignancy, "
            f"{'/'.join(f'{f:.0%}' for f in config['split_fractions'])}): {parts}",
            f"training: Adam lr {config['lr']}, batch {config['batch_size']}, "
            f"{config['view_epochs']} epochs for CC vs MLO ({config['view_model']}), "
            f"{config['epochs']} for malignant vs not"
            + (" with balanced class weights" if config["class_weights"] else "")
            + "; best model = lowest validation loss; no augmentation",
            f"time: {metrics['seconds']['total']:.0f} s in all, of which "
            f"{metrics['seconds']['data_and_preprocessing']:.0f} s data and preprocessing"]
