"""The whole-mammogram report: the thesis' Tables 6.3 and 6.4 as text, Markdown and plots.

Every figure carries its n; proportions carry their Wilson 95 % interval, the
AUC a bootstrap interval over patients. Rates whose denominator is below
:data:`mammo_demo.evaluation.MIN_MEANINGFUL_N` are marked ``*``. The data
label (``PHANTOM data ...`` for synthetic films) heads every table and plot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nnlite.serialization import atomic_open

from ..evaluation import MIN_MEANINGFUL_N
from ..report import NOT_A_MEDICAL_DEVICE

REPORT_TXT, REPORT_MD = "report.txt", "report.md"
IMAGE_HEADER = ["model / unit", "n (malignant)", "AUC [95% CI]", "threshold (val)",
                "sensitivity", "specificity", "acc @0.5", "acc @threshold", "majority baseline"]


def rate(r) -> str:
    """``"92.5% (37/40) [80-97]"``; ``*`` when n < MIN_MEANINGFUL_N; ``-`` when undefined."""
    if not r or r.get("value") is None:
        return "-"
    lo, hi = r["ci95"]
    flag = "*" if r["n"] < MIN_MEANINGFUL_N else ""
    return f"{r['value']:.1%} ({r['k']}/{r['n']}) [{lo:.0%}-{hi:.0%}]{flag}"


def auc_text(a) -> str:
    if not a or a.get("value") is None:
        return "-"
    ci = a.get("ci95")
    return f"{a['value']:.3f} [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else f"{a['value']:.3f} [-]"


def grid(header, rows) -> str:
    """A plain-text table, columns padded to their widest cell."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)]
                     + [line(r) for r in cells[1:]])


def image_cells(name: str, row: dict) -> list:
    op = row.get("operating_point")
    reached = "" if op is None or op["reached_target"] else " (short of 90%)"
    return [name, f"{row['n']} ({row['n_malignant']})", auc_text(row["auc"]),
            "-" if op is None else f"{op['threshold']:.3f}",
            "-" if op is None else rate(op["sensitivity"]) + reached,
            "-" if op is None else rate(op["specificity"]),
            rate(row["accuracy_at_0.5"]), rate(row.get("accuracy_at_threshold")),
            rate(row["baseline"])]


def view_table(results: dict) -> str:
    rows = [[model, r["n"], rate(r["accuracy"]), rate(r["baseline"]),
             "yes" if (r["accuracy"]["value"] or 0) > 0.99 else "NO"]
            for model, r in results.items()]
    return grid(["model", "n test images", "accuracy (CC vs MLO)", "majority baseline", "> 99%"],
                rows)


def malignant_table(results: dict) -> str:
    return grid(IMAGE_HEADER, [image_cells(model, r["per image"]) for model, r in results.items()])


def breast_table(results: dict) -> str:
    rows = []
    for model, r in results.items():
        for unit in ("per image", "min", "max", "mean"):
            name = f"{model} / {'image' if unit == 'per image' else 'breast ' + unit}"
            rows.append(image_cells(name, r[unit]))
    return grid(IMAGE_HEADER, rows)


FOOTNOTES = ("Rates: value (k/n) [Wilson 95% interval]; * n < {n}, not meaningful. AUC: 95% "
             "interval from a bootstrap over test patients. The threshold is chosen on the "
             "validation split (largest reaching 90% sensitivity) and applied to test; "
             "'sensitivity' is what it reaches on test. Baseline: always the training split's "
             "majority class.")


def report_text(title: str, label: str, facts: list[str], sections: list[tuple[str, str]]) -> str:
    lines = [title, label, NOT_A_MEDICAL_DEVICE, ""] + list(facts) + [""]
    for heading, table in sections:
        lines += [heading, table, ""]
    lines.append(FOOTNOTES.format(n=MIN_MEANINGFUL_N))
    return "\n".join(lines) + "\n"


def report_markdown(title: str, label: str, facts: list[str], sections, plots=()) -> str:
    lines = [f"# {title}", "", f"**{label}**", "", f"**{NOT_A_MEDICAL_DEVICE}**", ""]
    lines += [f"- {f}" for f in facts] + [""]
    for heading, table in sections:
        lines += [f"## {heading}", "", "```", table, "```", ""]
    lines += [FOOTNOTES.format(n=MIN_MEANINGFUL_N), ""]
    if plots:
        lines += ["## Plots", ""]
        for name in plots:
            lines += [f"### {Path(name).stem.replace('_', ' ')}", "", f"![{name}]({name})", ""]
    return "\n".join(lines) + "\n"


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_reports(folder, title, label, facts, sections, plots=()) -> tuple[Path, Path]:
    """``report.txt`` and ``report.md`` (linking the plots that exist in ``folder``)."""
    folder = Path(folder)
    present = [p for p in plots if (folder / p).is_file()]
    return (write_text(folder / REPORT_TXT, report_text(title, label, facts, sections)),
            write_text(folder / REPORT_MD, report_markdown(title, label, facts, sections, present)))


# ------------------------------------------------------------------ plots
def plot_roc(path, curves, label: str, operating_point=None, title="ROC (test)") -> Path:
    """ROC curves ``(name, y, scores)``; the operating point of the first, if given."""
    from nnlite import metrics as nn_metrics

    from .. import plots
    from ..report import operating_point_label
    drawn = []
    for name, y, s in curves:
        y = np.asarray(y).astype(bool)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = nn_metrics.roc_curve(y, s)
            drawn.append((name, fpr, tpr, nn_metrics.roc_auc(y, s)))
    point = None
    if operating_point is not None:
        point = (operating_point_label(operating_point), operating_point["test_sensitivity"],
                 operating_point["test_specificity"])
    return plots.plot_roc(drawn, path, data_label=label, operating_point=point, title=title)


def plot_breast_table(path, results: dict, label: str) -> Path:
    """The per-view vs aggregated comparison: AUC and specificity at the threshold, with
    their 95 % intervals, per model and unit (image; breast min/max/mean)."""
    from .. import plots
    units = ("per image", "min", "max", "mean")
    names = ["image", "breast min", "breast max", "breast mean"]
    fig = plots._figure(9, 4.4)
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(results))
    for m, (model, r) in enumerate(results.items()):
        xs = np.arange(len(units)) + (m - (len(results) - 1) / 2) * width
        for ax, key in zip(axes, ("auc", "specificity")):
            vals, lo, hi = [], [], []
            for u in units:
                v = r[u]["auc"] if key == "auc" else (r[u]["operating_point"] or {}).get(
                    "specificity")
                value = (v or {}).get("value")
                ci = (v or {}).get("ci95") or [value, value]
                vals.append(np.nan if value is None else value)
                lo.append(0 if value is None or ci[0] is None else max(0.0, value - ci[0]))
                hi.append(0 if value is None or ci[1] is None else max(0.0, ci[1] - value))
            ax.bar(xs, vals, width, yerr=[lo, hi], capsize=3, label=model)
    for ax, name in zip(axes, ("ROC AUC (test)", "specificity at the validation threshold")):
        ax.set_xticks(np.arange(len(units)))
        ax.set_xticklabels([f"{n}\nn={results[next(iter(results))][u]['n']}"
                            for n, u in zip(names, units)], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    axes[0].axhline(0.5, color="0.6", linestyle=":", linewidth=1)
    fig.suptitle(f"Per image vs per breast (CC and MLO aggregated)\n{label}", fontsize=10)
    fig.tight_layout(rect=(0, plots._FOOTER_SPACE / fig.get_figheight(), 1, 1))
    return plots._save(fig, path, label)
