"""mammo_demo.plots: every plot writes a readable PNG of the expected size and checks its inputs."""
import numpy as np
import pytest
from PIL import Image

from mammo_demo import plots

LABEL = "PHANTOM data (synthetic mini-MIAS, seed 0, not patients)"


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_history_plot(tmp_path):
    history = {"loss": [1.1, 0.9, 0.8], "accuracy": [0.3, 0.5, 0.6],
               "val_loss": [1.0, 0.95, 0.97], "val_accuracy": [0.4, 0.5, 0.45], "lr": [0.002] * 3}
    path = plots.plot_history(history, tmp_path / "sub" / "curves.png", data_label=LABEL,
                              best_epoch=2)
    assert path.is_file() and _png_size(path) == (1000, 420)


def test_confusion_matrix_plot_and_shape_check(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    path = plots.plot_confusion_matrix(cm, ["normal", "benign", "malignant"], tmp_path / "cm.png",
                                       data_label=LABEL)
    assert path.is_file()
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(cm[:2], ["normal", "benign", "malignant"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(cm, ["benign", "malignant"], tmp_path / "x.png")


def test_roc_plot_with_and_without_curves(tmp_path):
    fpr, tpr = np.array([0.0, 0.2, 1.0]), np.array([0.0, 0.7, 1.0])
    a = plots.plot_roc([("malignant vs rest", fpr, tpr, 0.75)], tmp_path / "roc.png",
                       data_label=LABEL, operating_point=("threshold 0.4", 0.9, 0.6))
    b = plots.plot_roc([], tmp_path / "roc_empty.png")
    assert a.is_file() and b.is_file()


def test_patch_grid_draws_every_class_and_checks_lengths(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((50, 1, 12, 12), dtype=np.float32)
    y = np.r_[np.zeros(40, int), np.ones(6, int), np.full(4, 2)]
    probs = rng.dirichlet(np.ones(3), size=50)
    path = plots.plot_patch_grid(x, y, probs.argmax(1), probs, ["normal", "benign", "malignant"],
                                 tmp_path / "grid.png", data_label=LABEL, max_patches=9)
    assert path.is_file()
    chosen = plots.balanced_choice(y, 9, seed=0)
    assert len(chosen) == 9 and len(set(chosen.tolist())) == 9
    assert np.bincount(y[chosen], minlength=3).tolist() == [3, 3, 3]  # round-robin over classes
    with pytest.raises(ValueError, match="49 true labels"):
        plots.plot_patch_grid(x, y[:49], y, probs, ["a", "b", "c"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(N, 1, S, S\)"):
        plots.plot_patch_grid(x[:, 0, 0], y, y, probs, ["a", "b", "c"], tmp_path / "bad.png")


def test_plots_leave_no_pyplot_figures_open(tmp_path):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    plots.plot_roc([], tmp_path / "r.png")
    assert plt.get_fignums() == before


def test_gradcam_plot_and_shape_check(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 10, 10), dtype=np.float32)
    heat = rng.random((4, 10, 10), dtype=np.float32)
    path = plots.plot_gradcam(x, heat, ["a", "b", "c", "d"], tmp_path / "gc.png", data_label=LABEL)
    assert path.is_file()
    with pytest.raises(ValueError, match="must match"):
        plots.plot_gradcam(x, heat[:3], ["a", "b", "c", "d"], tmp_path / "bad.png")


# ------------------------------------------------------------------ issue 18
@pytest.fixture
def saved_figures(monkeypatch):
    """The Figure objects the plot functions save, captured at savefig time."""
    from matplotlib.figure import Figure
    figures = []
    real = Figure.savefig

    def capture(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return figures


def _clipped_texts(fig):
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth() * fig.dpi
    out = []
    for t in list(fig.texts) + [ax.title for ax in fig.axes]:
        if t.get_text():
            box = t.get_window_extent(renderer)
            if box.x0 < -1 or box.x1 > width + 1:
                out.append(t.get_text())
    return out


def test_titles_and_the_phantom_footer_are_never_clipped_on_small_sets(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 16, 16), dtype=np.float32)            # --task calc: two test patches
    y = np.array([0, 1])
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    long_label = LABEL + ", fold 3/5, a long run name"
    plots.plot_patch_grid(x, y, y, probs, ["benign", "malignant"], tmp_path / "p.png",
                          data_label=long_label)
    plots.plot_gradcam(x, rng.random((2, 16, 16), dtype=np.float32), ["a", "b"],
                       tmp_path / "g.png", data_label=long_label, padding_margin=3)
    plots.plot_confusion_matrix([[1, 0], [0, 1]], ["benign", "malignant"], tmp_path / "c.png",
                                data_label=long_label)
    assert len(saved_figures) == 3
    for fig in saved_figures:
        assert _clipped_texts(fig) == []
        assert any("PHANTOM" in t.get_text() for t in fig.texts)


def test_gradcam_has_a_colour_bar_and_marks_the_padding_ring(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 16, 16), dtype=np.float32)
    plots.plot_gradcam(x, rng.random((3, 16, 16), dtype=np.float32), ["a", "b", "c"],
                       tmp_path / "g.png", data_label=LABEL, padding_margin=6)
    (fig,) = saved_figures
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("Grad-CAM" in label for label in labels)                 # the colour bar
    assert any("zero padding" in t.get_text() for t in fig.texts)


def test_roc_legend_names_the_sensitivity_actually_reached(tmp_path, saved_figures):
    from mammo_demo import report
    op = {"target_sensitivity": 0.9, "threshold": 0.31, "threshold_chosen_on": "validation",
          "test_sensitivity": 6 / 7, "test_specificity": 0.75, "reached_target": False}
    plots.plot_roc([("malignant vs rest", np.array([0, 0.5, 1]), np.array([0, 0.8, 1]), 0.8)],
                   tmp_path / "roc.png", operating_point=(report.operating_point_label(op),
                                                          6 / 7, 0.75))
    (fig,) = saved_figures
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("sensitivity 85.7%" in t and "short of the 90% target" in t for t in legend)
    assert not any("at 90% sensitivity" in t for t in legend)


def test_patch_captions_do_not_overlap_the_row_above(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 16, 16), dtype=np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = rng.dirichlet([1, 1, 1], size=6)
    plots.plot_patch_grid(x, y, probs.argmax(1), probs, ["normal", "benign", "malignant"],
                          tmp_path / "p.png", data_label=LABEL)
    (fig,) = saved_figures
    renderer = fig.canvas.get_renderer()
    images = [ax for ax in fig.axes if ax.get_images()]
    for upper in images:
        for lower in images:
            box, caption = upper.get_window_extent(renderer), lower.title.get_window_extent(renderer)
            if lower is not upper and box.y0 > caption.y0:        # lower sits below upper
                overlaps_x = caption.x1 > box.x0 and caption.x0 < box.x1
                assert not (overlaps_x and caption.y1 > box.y0), "a caption covers a patch"
