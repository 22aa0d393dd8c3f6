"""The end-of-run report: tables with n and 95% intervals, ``report.txt`` and ``report.md``.

Shared by every mammo-demo command that tests a classifier. Input is the
dict of :func:`mammo_demo.evaluation.compute_metrics`; output is text:

* :func:`format_table` - the headline table printed at the end of a run:
  one row per figure with its value, 95% interval and n, the majority-class
  baseline, and (optional) a reference column (the paper's figures) and a
  mean +- std over folds column. A row whose n is below
  :data:`mammo_demo.evaluation.MIN_MEANINGFUL_N` is marked ``!`` and the
  footer says the figure is not meaningful and suggests ``--folds``; the
  specificity-at-90%-sensitivity row shows the sensitivity actually reached
  and is marked ``*`` when it falls short of 90%;
* :func:`format_per_class` - precision, recall, specificity (each with its
  interval), F1 and support per class;
* :func:`write_reports` - ``report.txt`` (both tables, the notes) and
  ``report.md`` (the same tables in Markdown with the run's PNG plots), both
  written atomically.

Nothing here is a medical device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nnlite.serialization import atomic_open

from .evaluation import MIN_MEANINGFUL_N

NOT_A_MEDICAL_DEVICE = ("NOT A MEDICAL DEVICE: a teaching and research demo; its outputs must "
                        "never be used to diagnose or treat anyone.")
REPORT_TXT, REPORT_MD = "report.txt", "report.md"

#: (key of headline(), label in the table, key in metrics["intervals"])
ROWS = (("accuracy", "accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy", "balanced_accuracy"),
        ("malignant_recall", "malignant recall (sensitivity)", "malignant_recall"),
        ("malignant_precision", "malignant precision", "malignant_precision"),
        ("malignant_f1", "malignant F1", None),
        ("malignant_specificity", "malignant specificity", "malignant_specificity"),
        ("malignant_auc", "malignant ROC AUC", "malignant_auc"),
        ("specificity_at_90_sensitivity", "specificity at 90% sensitivity", None))


def headline(metrics: dict) -> dict:
    """The flat figures of the table (floats or ``None``), from ``compute_metrics`` output."""
    m = metrics["malignant"]
    op = metrics.get("specificity_at_sensitivity") or {}
    return {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
            "majority_baseline_accuracy": metrics["baseline"]["accuracy"]["value"],
            "malignant_recall": m["recall"], "malignant_precision": m["precision"],
            "malignant_f1": m["f1"], "malignant_specificity": m["specificity"],
            "malignant_auc": m["auc"],
            "specificity_at_90_sensitivity": op.get("test_specificity"),
            "sensitivity_reached": op.get("test_sensitivity")}


def aggregate(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and standard deviation (population, ddof=0) of each key over folds.

    A key that is ``None`` in some fold is averaged over the folds that define it.
    """
    mean, std = {}, {}
    for key in rows[0]:
        values = [r[key] for r in rows if r.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
        std[key] = float(np.std(values)) if values else None
    return mean, std


def percent(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{100 * value:.{digits}f}%"


def interval(ci, as_percent: bool = True) -> str:
    if not ci:
        return "-"
    if as_percent:
        return f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


def _rows(metrics: dict, reference: dict | None, mean: dict | None, std: dict | None):
    """(label, value, CI, n, flag, reference, mean +- std) for every table row."""
    iv = metrics["intervals"]
    flat = headline(metrics)
    out = []
    for key, label, ikey in ROWS:
        value, ci, n, flag = flat.get(key), None, "", ""
        if key == "malignant_auc":
            rate = iv[ikey]
            ci = interval(rate.get("ci95"), as_percent=False)
            shown = "-" if value is None else f"{value:.3f}"
            n = f"{rate['n']} ({rate['n_positive']} malig., {rate['n_images']} img)"
            if rate["n_positive"] < MIN_MEANINGFUL_N:
                flag = "!"
        elif key == "specificity_at_90_sensitivity":
            op = metrics.get("specificity_at_sensitivity")
            shown = percent(value)
            if op:
                ci = interval(op["specificity"]["ci95"])
                n = f"{op['specificity']['n']}"
                flag = "" if op["reached_target"] else "*"
                if op["specificity"]["n"] < MIN_MEANINGFUL_N:
                    flag += "!"
        elif key == "malignant_f1":
            shown = percent(value)
            n = str(metrics["per_class"]["malignant"]["support"]) if "malignant" in \
                metrics["per_class"] else ""
        else:
            rate = iv[ikey]
            shown = percent(value)
            ci = interval(rate.get("ci95"))
            n = str(rate["n"])
            if ikey == "balanced_accuracy":
                n = f"{rate['n']} ({rate['n_images']} img)"
            elif rate["n"] < MIN_MEANINGFUL_N:
                flag = "!"
        ref = "-"
        if reference is not None:
            ref = percent(reference[key]) if reference.get(key) is not None else "-"
        spread = "-"
        if mean is not None and mean.get(key) is not None:
            spread = (f"{mean[key]:.3f}±{std[key]:.3f}" if key == "malignant_auc"
                      else f"{100 * mean[key]:.1f}±{100 * std[key]:.1f}%")
        out.append([label, shown, ci or "-", n, flag, ref, spread])
        if key == "balanced_accuracy":
            base = metrics["baseline"]
            out.append([f"majority-class baseline ('{base['class']}')",
                        percent(base["accuracy"]["value"]), interval(base["accuracy"]["ci95"]),
                        str(base["accuracy"]["n"]), "", "-", "-"])
        if key == "specificity_at_90_sensitivity":
            op = metrics.get("specificity_at_sensitivity")
            if op:
                sens = op["sensitivity"]
                out.append(["  sensitivity reached there", percent(sens["value"]),
                            interval(sens["ci95"]), str(sens["n"]),
                            ("" if op["reached_target"] else "*")
                            + ("!" if sens["n"] < MIN_MEANINGFUL_N else ""), "-", "-"])
    return out


def _grid(header: list, rows: list, right_from: int = 1) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def fmt(r):
        return "  ".join(str(c).ljust(w) if i < right_from else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    rule = "-" * max(len(fmt(header)), *(len(fmt(r)) for r in rows))
    return [rule, fmt(header), rule] + [fmt(r) for r in rows] + [rule]


def format_table(metrics: dict, data_line: str, *, title: str = "test set",
                 reference: dict | None = None, reference_note: str | None = None,
                 fold_mean: dict | None = None, fold_std: dict | None = None,
                 folds_hint: str = "--folds 5") -> str:
    """The headline table (see the module docstring) with its footnotes.

    Args:
        metrics: :func:`mammo_demo.evaluation.compute_metrics` output.
        data_line: what the figures were measured on (printed under the table).
        reference: figures to compare with, keyed like :func:`headline`
            (e.g. the source paper's), and ``reference_note`` saying what they are.
        fold_mean, fold_std: per-fold mean and std (:func:`aggregate` of
            :func:`headline`) for a cross-validated run.
        folds_hint: the option suggested when a figure has too small an n.
    """
    rows = _rows(metrics, reference, fold_mean, fold_std)
    header = [f"{title} (n = {metrics['n_test']} patches, {metrics['n_images']} images)",
              "value", "95% CI", "n", ""]
    keep = [0, 1, 2, 3, 4]
    if reference is not None:
        header.append("paper")
        keep.append(5)
    if fold_mean is not None:
        header.append("mean±std over folds")
        keep.append(6)
    rows = [[r[i] for i in keep] for r in rows]
    lines = _grid(header, rows)
    flags = "".join(r[4] for r in rows)
    lines.append(f"ours: {data_line}")
    if reference_note:
        lines.append(reference_note)
    lines.append("95% CI: Wilson interval for proportions, bootstrap over images for the AUC and "
                 "balanced accuracy; malignant = malignant vs rest")
    op = metrics.get("specificity_at_sensitivity")
    if op:
        chosen = ("threshold" if op.get("threshold") is None
                  else f"threshold {op['threshold']:.3f}")
        lines.append(f"specificity at 90% sensitivity: {chosen} chosen on "
                     f"{op['threshold_chosen_on']}, applied here")
    if "*" in flags:
        lines.append("* the threshold reaches less than the 90% sensitivity target on this set: "
                     "the specificity beside it is NOT specificity at 90% sensitivity")
    if "!" in flags:
        lines.append(f"! n < {MIN_MEANINGFUL_N}: the figure is not meaningful on so few "
                     f"samples (see its interval); run with {folds_hint} to test on every "
                     f"image, or use more data")
    for note in metrics.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(NOT_A_MEDICAL_DEVICE)
    return "\n".join(lines)


def _per_class_rows(metrics: dict) -> list:
    rows = []
    for name, c in metrics["per_class"].items():
        cells = [name]
        for key in ("precision", "recall", "specificity"):
            rate = c[key]
            cells.append(f"{percent(rate['value'])} ({interval(rate['ci95'])})"
                         + ("!" if rate["n"] < MIN_MEANINGFUL_N else ""))
        cells += [percent(c["f1"]), str(c["support"])]
        rows.append(cells)
    return rows


PER_CLASS_HEADER = ["class", "precision (95% CI)", "recall (95% CI)", "specificity (95% CI)",
                    "F1", "support"]


def format_per_class(metrics: dict) -> str:
    """Per class, one-vs-rest: precision, recall, specificity with intervals, F1, support."""
    return "\n".join(_grid(PER_CLASS_HEADER, _per_class_rows(metrics)))


def format_confusion(metrics: dict) -> str:
    names = list(metrics["per_class"])
    header = ["true \\ predicted"] + names
    rows = [[n] + [str(v) for v in row] for n, row in zip(names, metrics["confusion_matrix"])]
    return "\n".join(_grid(header, rows))


def _markdown_table(header, rows) -> list[str]:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in [header] + rows]
    return (["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def markdown_report(title: str, table_text: str, metrics: dict, plots=(), extra=None) -> str:
    """``report.md``: the headline table, per-class table, confusion matrix and the plots.

    ``table_text`` is :func:`format_table` output (kept verbatim in a code
    block: its footnotes belong to it); ``plots`` are PNG file names beside
    the report; ``extra`` a list of Markdown lines (run facts) placed first.
    """
    lines = [f"# {title}", "", f"**{NOT_A_MEDICAL_DEVICE}**", ""]
    if extra:
        lines += list(extra) + [""]
    lines += ["## Headline figures", "", "```", table_text, "```", "",
              "## Per class (one vs rest)", ""]
    lines += _markdown_table(PER_CLASS_HEADER, _per_class_rows(metrics)) + [""]
    names = list(metrics["per_class"])
    lines += ["## Confusion matrix (rows: true, columns: predicted)", ""]
    lines += _markdown_table(["true \\ predicted"] + names,
                             [[n] + [str(v) for v in row]
                              for n, row in zip(names, metrics["confusion_matrix"])]) + [""]
    if plots:
        lines += ["## Plots", ""]
        for name in plots:
            lines += [f"### {Path(name).stem.replace('_', ' ')}", "", f"![{name}]({name})", ""]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_reports(out_dir, title: str, table_text: str, metrics: dict, plots=(),
                  extra=None) -> tuple[Path, Path]:
    """Write ``report.txt`` (table, per-class table, confusion matrix) and ``report.md``.

    Only plots that exist in ``out_dir`` are linked from ``report.md``.
    Returns the two paths.
    """
    out_dir = Path(out_dir)
    txt = "\n\n".join([title, table_text, "per class (one vs rest):\n" + format_per_class(metrics),
                       "confusion matrix:\n" + format_confusion(metrics)])
    present = [p for p in plots if (out_dir / p).is_file()]
    return (_write_text(out_dir / REPORT_TXT, txt + "\n"),
            _write_text(out_dir / REPORT_MD, markdown_report(title, table_text, metrics,
                                                             present, extra)))


# ------------------------------------------------------------------ plots of an evaluated set
TEST_PLOTS = ("confusion_matrix.png", "roc.png", "test_patches.png", "gradcam.png")


def operating_point_label(op: dict) -> str:
    """The ROC legend entry of the operating point: what the threshold actually reaches."""
    short = "" if op["reached_target"] else f", short of the {op['target_sensitivity']:.0%} target"
    threshold = "threshold" if op.get("threshold") is None else f"threshold {op['threshold']:.3f}"
    return (f"{threshold} from {op['threshold_chosen_on']}:\nsensitivity "
            f"{op['test_sensitivity']:.1%}{short}, specificity {op['test_specificity']:.1%}")


def write_test_plots(out_dir, patchset, probabilities, metrics: dict, label: str, seed: int = 0,
                     split_name: str = "test", model=None, n_gradcam: int = 12) -> list[str]:
    """confusion_matrix.png, roc.png, test_patches.png and (with ``model``) gradcam.png.

    ``gradcam.png`` shows :func:`mammo_demo.gradcam.grad_cam` maps of the
    malignant class for up to ``n_gradcam`` patches of ``patchset``, drawn
    evenly from every true class, with the zero-padding ring marked.
    Returns the names of the files written.
    """
    from . import plots
    from .evaluation import malignant_index, roc_curves

    out_dir = Path(out_dir)
    classes = list(patchset.classes)
    p = np.asarray(probabilities)
    pred = p.argmax(axis=1)
    plots.plot_confusion_matrix(metrics["confusion_matrix"], classes,
                                out_dir / "confusion_matrix.png", data_label=label,
                                title=f"Confusion matrix ({split_name})")
    op = metrics.get("specificity_at_sensitivity")
    plots.plot_roc(roc_curves(patchset.y, p, classes), out_dir / "roc.png", data_label=label,
                   title=f"ROC ({split_name})",
                   operating_point=None if op is None else (
                       operating_point_label(op), op["test_sensitivity"], op["test_specificity"]))
    plots.plot_patch_grid(patchset.x, patchset.y, pred, p, classes, out_dir / "test_patches.png",
                          data_label=label, seed=seed,
                          title=f"{split_name.capitalize()} patches: true / predicted (probability)")
    written = ["confusion_matrix.png", "roc.png", "test_patches.png"]
    if model is not None and n_gradcam > 0 and len(patchset):
        from .gradcam import grad_cam, padding_margin
        mal = malignant_index(classes)
        chosen = plots.balanced_choice(np.asarray(patchset.y), n_gradcam, seed)
        heat, _ = grad_cam(model, patchset.x[chosen], class_index=mal)
        captions = [f"{classes[patchset.y[i]]} / {classes[pred[i]]}\np(malignant) {p[i, mal]:.2f}"
                    for i in chosen]
        plots.plot_gradcam(patchset.x[chosen], heat, captions, out_dir / "gradcam.png",
                           data_label=label, padding_margin=padding_margin(model),
                           title=f"Grad-CAM of the malignant class ({split_name} patches: "
                                 f"true / predicted)")
        written.append("gradcam.png")
    return written
