"""``mammo-demo whole evaluate``: a trained malignant-vs-not model on a CBIS-DDSM folder.

The model file (``RUN/best_model.npz`` or ``RUN/malignant_<model>/best_model.npz``)
carries in its metadata the preprocessing (method, size), the data it was
trained on, its test patients and the thresholds chosen on its validation
split. On that same data (the default: the folder or cached phantom set it was
trained on) the evaluated images are its test patients; on any other folder
all images are evaluated. The thresholds are never chosen on the evaluated
images: they come from the training run's validation split.

Writes ``metrics.json``, ``report.txt``/``report.md``, ``roc.png`` and
``breast_table.png`` to ``--out`` (a new or empty folder, or an earlier output
of this command for the same model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import nnlite as nn

from ..evaluation import proportion
from ..runfolder import RunFolder, write_json
from . import data as whole_data
from . import experiments, tables

OUTPUTS = ("metrics.json", "report.txt", "report.md", "roc.png", "breast_table.png")
COMMAND = "mammo-demo whole evaluate"


def fixed_threshold_row(y, s, groups, threshold, *, seed=0, bootstrap_samples=1000) -> dict:
    """A Table 6.3 row at a threshold chosen elsewhere (the training run's validation split)."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, np.float64)
    row = experiments.image_row(np.zeros(0, bool), np.zeros(0), y, s, groups, y.astype(int),
                                seed=seed, bootstrap_samples=bootstrap_samples)
    row["baseline"] = {**proportion(int(np.sum(~y)), len(y)), "class": 0,
                       "chosen_on": "evaluated set (the not-malignant class)"}
    if threshold is not None and 0 < y.sum() < len(y):
        hit = s >= threshold
        sens = proportion(int(np.sum(hit & y)), int(y.sum()))
        spec = proportion(int(np.sum(~hit & ~y)), int(np.sum(~y)))
        row["operating_point"] = {
            "target_sensitivity": 0.9, "threshold": float(threshold),
            "threshold_chosen_on": "the training run's validation split",
            "test_sensitivity": sens["value"], "test_specificity": spec["value"],
            "sensitivity": sens, "specificity": spec, "reached_target": sens["value"] >= 0.9}
        row["accuracy_at_threshold"] = experiments.accuracy_rate(y, s, threshold)
    return row


def run_evaluate(model_path, out, *, data=None, cache_dir=None, progress=True,
                 bootstrap_samples=1000, seed=0) -> dict:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ValueError(f"--model {model_path}: no such file")
    meta = nn.read_metadata(model_path)
    if meta.get("task") != "malignant" or "size" not in meta or "method" not in meta:
        raise ValueError(f"--model {model_path}: not a malignant-vs-not model written by "
                         f"'mammo-demo whole train' (its metadata has no task 'malignant', size "
                         f"and method); pass RUN/best_model.npz or RUN/malignant_<model>/"
                         f"best_model.npz")
    model = nn.load(model_path)
    with RunFolder(out, outputs=OUTPUTS, command=COMMAND) as run:
        run.refuse_foreign(COMMAND, same_as={"model": str(model_path.resolve())})
        trained_on = meta.get("data_folder")
        if data is None:
            if meta.get("data_kind") == "phantom" and trained_on and not Path(trained_on).is_dir():
                raise ValueError(f"the phantom set the model was trained on ({trained_on}) is "
                                 f"gone: run 'mammo-demo whole train' again or pass --data")
            data = trained_on
        dataset, info = whole_data.resolve_data(data, cache_dir=cache_dir, progress=progress)
        images, facts = whole_data.load_images(dataset, meta["method"], int(meta["size"]),
                                               cache_dir=cache_dir, progress=progress)
        same_data = trained_on is not None and Path(info["folder"]) == Path(trained_on)
        if same_data:
            wanted = set(meta.get("test_patients") or [])
            idx = np.flatnonzero([p in wanted for p in images.patient.tolist()])
            which = f"the training run's {len(wanted)} test patients"
        else:
            idx = np.arange(len(images))
            which = "all images of the folder"
        if len(idx) == 0:
            raise ValueError(f"no images to evaluate in {info['folder']}")
        sub = images.subset(idx)
        p1 = nn.predict_proba(model, sub.x)[:, 1].astype(np.float64)
        label = info["label"]
        rows = {"per image": fixed_threshold_row(sub.y_malignant, p1, sub.patient,
                                                 meta.get("threshold"), seed=seed,
                                                 bootstrap_samples=bootstrap_samples)}
        rows["per image"]["unit"] = "image"
        for how in experiments.AGGREGATIONS:
            ids, s, y = experiments.aggregate_breasts(sub.breast, sub.view, p1, sub.y_malignant,
                                                      how)
            rows[how] = fixed_threshold_row(y, s, experiments.breast_patient(ids),
                                            (meta.get("breast_thresholds") or {}).get(how),
                                            seed=seed, bootstrap_samples=bootstrap_samples)
            rows[how]["unit"] = "breast (CC and MLO)"
        name = meta.get("model_name", model_path.stem)
        results = {name: rows}
        metrics = {"command": COMMAND, "model": str(model_path.resolve()),
                   "model_metadata": meta, "data": info["data"], "data_label": label,
                   "data_kind": info["kind"], "evaluated": which, "images": int(len(sub)),
                   "preprocessing": facts, "experiments": {"malignant": results}}
        tables.plot_roc(run.path / "roc.png", [(f"{name} per image", sub.y_malignant, p1)],
                        label, rows["per image"]["operating_point"],
                        title="ROC, malignant vs not per image; * threshold from the training "
                              "run's validation split")
        tables.plot_breast_table(run.path / "breast_table.png", results, label)
        plots = ["roc.png", "breast_table.png"]
        metrics["plots"] = plots
        if len(np.unique(sub.y_malignant)) < 2:
            metrics["note"] = "one class only in the evaluated images: AUC undefined"
        write_json(run.path / "metrics.json", metrics)
        trained_label = meta.get("data_label", "unknown data")
        facts_lines = [f"model: {model_path} ({name}, trained on {trained_label})",
                       f"data: {label}; evaluated: {which} ({len(sub)} images)",
                       f"preprocessing: method {meta['method']}, {meta['size']}x{meta['size']}",
                       "thresholds: chosen on the training run's validation split, never on the "
                       "evaluated images" + ("" if same_data else
                                             "; baseline: always 'not malignant'")]
        sections = [("Malignant vs not, per image (Table 6.3)", tables.malignant_table(results)),
                    ("Per breast, CC and MLO aggregated (Table 6.4; breasts with both views)",
                     tables.breast_table(results))]
        tables.write_reports(run.path, f"{COMMAND}: {name}", label, facts_lines, sections, plots)
    return metrics
