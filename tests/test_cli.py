"""The ``mammo-demo`` command line, end to end, on a tiny phantom set.

The fast tests train for one epoch on 24 phantom films of 128x128 pixels with
16x16 patches (a couple of seconds); the full-size default run, which is the
README's command, is marked slow.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnlite as nn
from mammo_demo import cli, experiment
from mammo_demo import report
from mammo_demo.saved_model import predict_roi
from mammo_demo.mias import load_mias, write_pgm

RUN_FILES = {"config.json", "data.json", "history.csv", "history.json", "best_model.npz",
             "checkpoint.npz", "metrics.json", "report.txt", "curves.png",
             "confusion_matrix.png", "roc.png", "test_patches.png", "gradcam.png"}
QUICK = ["--epochs", "1", "--batch-size", "16", "--patch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mias") / "phantom"
    assert cli.main(["synth", "--out", str(folder), "--n-images", "24", "--image-size", "128",
                     "--seed", "1"]) == 0
    return folder


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), *QUICK]) == 0
    return run


def _error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------ train
def test_synth_writes_a_phantom_folder(tiny_data):
    ds = load_mias(tiny_data)
    assert ds.is_phantom and len(ds) == 24 and ds.image_size == 128


def test_train_fills_the_run_folder_and_says_phantom(tiny_run, tiny_data):
    assert RUN_FILES <= {p.name for p in tiny_run.iterdir()}
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["data"].startswith("phantom") and "PHANTOM" in metrics["data"]
    assert metrics["classes"] == ["normal", "benign", "malignant"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and len(metrics["confusion_matrix"]) == 3
    assert "NOT A MEDICAL DEVICE" in metrics["not_a_medical_device"]
    assert {k for k, _, _ in report.ROWS} <= set(metrics["headline"])
    data = json.loads((tiny_run / "data.json").read_text())
    assert data["kind"] == "phantom" and data["phantom_seed"] == 1 and data["seed"] == 0
    (split,) = data["splits"]
    assert sum(split[s]["patches"] for s in ("train", "val", "test")) == data["patches"]["total"]
    for part in ("train", "val", "test"):
        assert set(split[part]["per_class"]) == {"normal", "benign", "malignant"}
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["data_dir"] == str(tiny_data.resolve()) and config["optimizer"] == "sgd"
    assert config["lr"] == 0.002 and config["patch_size"] == 16
    rows = list(csv.DictReader((tiny_run / "history.csv").open()))
    assert len(rows) == 1 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert "PHANTOM" in (tiny_run / "report.txt").read_text()
    model = nn.load(tiny_run / "best_model.npz")
    assert model.output_shapes((1, 16, 16))[-1] == (3,)


def test_train_prints_the_table_next_to_the_paper(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), "--task", "all",
                     *QUICK, "--epochs", "0"]) == 0
    out = capsys.readouterr().out
    for text in ("60.9%", "59.6%", "59.1%", "paper", "95% CI", "balanced accuracy",
                 "majority-class baseline", "PHANTOM data", "split by image",
                 "NOT A MEDICAL DEVICE", str(run)):
        assert text in out
    assert (run / "best_model.npz").is_file()   # epochs 0: the initial model is evaluated


def test_resume_continues_the_same_run(tiny_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    assert cli.main(["train", "--data", str(json.loads((run / "config.json").read_text())["data_dir"]),
                     "--out", str(run), *QUICK, "--epochs", "2", "--resume"]) == 0
    rows = list(csv.DictReader((run / "history.csv").open()))
    before = list(csv.DictReader((tiny_run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0] == before[0]            # epoch 1 was restored, not trained again
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_resume_with_other_settings_and_reuse_without_resume_are_refused(tiny_run, tiny_data,
                                                                         capsys):
    base = ["train", "--data", str(tiny_data), "--out", str(tiny_run), *QUICK]
    assert cli.main(base + ["--resume", "--lr", "0.01"]) == 2
    assert "different settings (lr: 0.002 -> 0.01)" in _error(capsys)
    assert cli.main(base) == 2
    assert "already holds files: pass --resume" in _error(capsys)


def test_folds_report_mean_and_std(tiny_data, tmp_path, capsys):
    run = tmp_path / "cv"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), "--folds", "2",
                     "--balance", "weights", *QUICK]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert len(result["folds"]) == 2 and result["data"].startswith("phantom")
    accs = [f["accuracy"] for f in result["folds"]]
    assert result["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert result["std"]["accuracy"] == pytest.approx(np.std(accs))
    for i in (1, 2):
        assert RUN_FILES - {"data.json", "report.txt"} <= {p.name for p in (run / f"fold{i}").iterdir()}
        assert json.loads((run / f"fold{i}" / "config.json").read_text())["fold"] == i
    assert "±" in capsys.readouterr().out and "2-fold cross-validation by image" in \
        (run / "report.txt").read_text()
    tests = [json.loads((run / f"fold{i}" / "metrics.json").read_text())["n_test"] for i in (1, 2)]
    assert sum(tests) == json.loads((run / "data.json").read_text())["patches"]["total"]
    # the headline figures pool every fold's test predictions: each patch tested once, with n
    assert result["pooled"]["n_test"] == sum(tests)
    assert result["pooled"]["intervals"]["accuracy"]["n"] == sum(tests)
    assert "2 folds' test sets pooled" in (run / "report.txt").read_text()


def test_default_data_is_the_cached_phantom(tmp_path, monkeypatch):
    monkeypatch.setenv("NNLITE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--phantom-images", "24", "--image-size", "128",
                     *QUICK, "--epochs", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data_dir"] is None and config["phantom_seed"] == 0
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and "phantom" in cached[0].name
    assert json.loads((run / "data.json").read_text())["folder"] == str(cached[0])


# ------------------------------------------------------------------ evaluate and predict
def test_evaluate_reproduces_the_test_split(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--out", str(out),
                     "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "PHANTOM" in printed and "test split by image (seed 0)" in printed
    ev = json.loads((out / "metrics.json").read_text())
    trained = json.loads((tiny_run / "metrics.json").read_text())
    assert ev["split"] == "test" and ev["data"].startswith("phantom")
    assert ev["confusion_matrix"] == trained["confusion_matrix"]
    assert ev["accuracy"] == trained["accuracy"]
    assert {"confusion_matrix.png", "roc.png", "test_patches.png", "gradcam.png"} <= \
        {p.name for p in out.iterdir()}
    assert (out / "report.md").is_file() and (out / "report.txt").is_file()
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--out", str(out),
                     "--quiet"]) == 0                         # its own earlier output: rewritten
    capsys.readouterr()
    total = json.loads((tiny_run / "data.json").read_text())["patches"]["total"]
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--split", "all",
                     "--quiet"]) == 0
    assert f"all {total} patches" in capsys.readouterr().out


def test_evaluate_rejects_a_task_with_other_classes(tiny_run, capsys):
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--task", "calc",
                     "--quiet"]) == 2
    assert "has 3 outputs but task 'calc' has 2 classes" in _error(capsys)


def test_predict_prints_probabilities(tiny_run, tiny_data, capsys):
    ds = load_mias(tiny_data)
    row = next(r for r in ds.records if r.has_coordinates)
    image = tiny_data / f"{row.refnum}.pgm"
    args = ["predict", "--model", str(tiny_run / "best_model.npz"), "--image", str(image),
            "--x", str(row.x), "--y", str(row.y), "--radius", str(row.radius)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"array row {128 - row.y}, column {row.x}" in out
    for name in ("normal", "benign", "malignant", "predicted:", "PHANTOM", "NOT A MEDICAL DEVICE"):
        assert name in out
    result = predict_roi(tiny_run / "best_model.npz", image, row.x, row.y, row.radius)
    assert sum(result["probabilities"]) == pytest.approx(1.0)
    assert result["predicted"] == result["classes"][int(np.argmax(result["probabilities"]))]
    assert result["is_phantom"]


# ------------------------------------------------------------------ help and user errors
@pytest.mark.parametrize("command", [[], ["synth"], ["download-mias"], ["train"], ["evaluate"],
                                     ["predict"]])
def test_help_for_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(command + ["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())       # undo the line wrapping
    assert "usage: mammo-demo" in out and "not a medical device" in out.lower()
    if command == ["train"]:
        for text in ("default 8, or with --resume", "(default: 0.002)", "(default: sgd)", "(default: all)",
                     "(default: undersample)", "(default: 32)", "split by image"):
            assert text in out


def test_python_dash_m_works():
    proc = subprocess.run([sys.executable, "-m", "mammo_demo", "--help"], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert proc.returncode == 0 and "synth" in proc.stdout and "predict" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/no/such/mias", "--quiet"], "MIAS folder not found: /no/such/mias"),
    (["train", "--folds", "0", "--quiet"], "folds must be >= 1"),
    (["train", "--epochs", "-1", "--quiet"], "epochs must be >= 0"),
    (["evaluate", "--model", "/no/model.npz"], "model file not found: /no/model.npz"),
    (["predict", "--model", "/no/model.npz", "--image", "x.pgm", "--x", "1", "--y", "1",
      "--radius", "5"], "model file not found"),
    (["synth", "--out", "/tmp/x", "--n-images", "0"], "n_images must be an integer in [1, 999]"),
])
def test_user_errors_exit_2_without_traceback(args, message, capsys):
    assert cli.main(args) == 2
    err = _error(capsys)
    assert err.startswith("mammo-demo: error: ") and message in err


def test_predict_user_errors(tiny_run, tiny_data, tmp_path, capsys):
    image = next(tiny_data.glob("mdb*.pgm"))
    base = ["predict", "--model", str(tiny_run / "best_model.npz"), "--image"]
    assert cli.main(base + [str(image), "--x", "500", "--y", "10", "--radius", "5"]) == 2
    assert "lies outside the 128x128 image" in _error(capsys)
    assert cli.main(base + [str(image), "--x", "50", "--y", "10", "--radius", "0"]) == 2
    assert "radius must be positive" in _error(capsys)
    bad = tmp_path / "bad.pgm"
    bad.write_bytes(b"P2\n2 2\n255\n1 2 3 4\n")
    assert cli.main(base + [str(bad), "--x", "1", "--y", "1", "--radius", "1"]) == 2
    assert "not a binary PGM" in _error(capsys)


def test_bad_choice_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--task", "density"])
    assert exc.value.code == 2
    assert "invalid choice: 'density'" in capsys.readouterr().err


def test_gpu_request_without_gpu_is_a_clean_error(capsys):
    if nn.gpu_available():
        pytest.skip("a GPU is present")
    assert cli.main(["train", "--device", "gpu", "--quiet"]) == 2
    err = _error(capsys)
    assert "--device gpu" in err and ("CuPy" in err or "CUDA" in err)


# ------------------------------------------------------------------ the README command
@pytest.mark.slow
def test_default_train_run_is_well_above_chance(tmp_path, monkeypatch, capsys):
    """``mammo-demo train --out RUN`` with every default: phantom generation included."""
    monkeypatch.setenv("NNLITE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "demo"
    assert cli.main(["train", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"].startswith("phantom")
    assert metrics["accuracy"] > 0.6               # chance is 1/3 (3 classes)
    assert metrics["balanced_accuracy"] > 0.45
    assert metrics["auc_macro"] > 0.7
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    out = capsys.readouterr().out
    assert "PHANTOM" in out and "60.9%" in out


# ------------------------------------------------------------------ download-mias over loopback
@pytest.fixture
def loopback_archive(tiny_data, tmp_path):
    """Serve a .tar.gz of the tiny set (same layout as all-mias.tar.gz) on 127.0.0.1."""
    import functools
    import http.server
    import tarfile
    import threading

    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "all-mias.tar.gz", "w:gz") as tar:
        for p in sorted(tiny_data.iterdir()):
            tar.add(p, arcname=p.name)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/all-mias.tar.gz"
    server.shutdown()
    server.server_close()


def test_download_mias_over_loopback(loopback_archive, tmp_path, capsys):
    # the served set is a 24-image phantom, not mini-MIAS: every byte arrives, the set check refuses
    dest = tmp_path / "mias"
    assert cli.main(["download-mias", "--dest", str(dest), "--url", loopback_archive]) == 2
    err = _error(capsys)
    assert "lists 24 images, expected the 322 of mini-MIAS" in err
    assert [p.name for p in dest.iterdir()] == []             # nothing unpacked, archive deleted
    (dest / "mine.txt").write_text("x")
    assert cli.main(["download-mias", "--dest", str(dest), "--url", loopback_archive]) == 2
    assert "refusing to download mini-MIAS" in _error(capsys)
    other = tmp_path / "other"
    assert cli.main(["download-mias", "--dest", str(other), "--url", loopback_archive,
                     "--sha256", "0" * 64]) == 2
    assert "SHA-256 mismatch" in _error(capsys)
    assert cli.main(["download-mias", "--dest", str(tmp_path / "third"),
                     "--url", loopback_archive.replace("all-mias", "missing")]) == 2
    err = _error(capsys)
    assert err.startswith("mammo-demo: error: ") and "404" in err


# ================================================================== issue 18
# ------------------------------------------------------------------ honest numbers
def test_metrics_json_and_reports_carry_n_and_intervals(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    acc = m["intervals"]["accuracy"]
    assert acc["n"] == m["n_test"] and acc["method"] == "wilson" and len(acc["ci95"]) == 2
    assert m["intervals"]["malignant_auc"]["method"].startswith("bootstrap over")
    assert m["baseline"]["class"] == "normal" and "balanced_accuracy" in m
    for c in ("normal", "benign", "malignant"):
        row = m["per_class"][c]
        assert {"precision", "recall", "specificity", "f1", "support"} <= set(row)
        assert {"value", "k", "n", "ci95"} <= set(row["recall"])
    text = (tiny_run / "report.txt").read_text()
    for words in ("95% CI", "balanced accuracy", "majority-class baseline", "precision (95% CI)",
                  "support", "not meaningful", "--folds"):
        assert words in text
    md = (tiny_run / "report.md").read_text()
    assert "![roc.png](roc.png)" in md and "| class |" in md and "balanced accuracy" in md
    assert "best epoch" in md


def test_metrics_json_is_written_once(tiny_data, tmp_path, monkeypatch):
    writes = []
    real = experiment.write_json

    def counting(path, obj):
        writes.append(Path(path).name)
        return real(path, obj)

    monkeypatch.setattr(experiment, "write_json", counting)
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), *QUICK,
                     "--epochs", "0"]) == 0
    assert writes.count("metrics.json") == 1


def test_evaluate_split_all_and_val_do_not_choose_the_threshold_on_what_they_evaluate(tiny_run,
                                                                                     capsys):
    model = str(tiny_run / "best_model.npz")
    for split in ("all", "val"):
        assert cli.main(["evaluate", "--model", model, "--split", split, "--quiet"]) == 0
        out = capsys.readouterr().out
        assert "specificity at 90% sensitivity not reported" in out
    assert cli.main(["evaluate", "--model", model, "--quiet"]) == 0
    assert "chosen on the training run's validation split" in capsys.readouterr().out


# ------------------------------------------------------------------ provenance
def test_the_model_file_says_where_its_data_came_from(tiny_run, tiny_data):
    meta = nn.read_metadata(tiny_run / "best_model.npz")
    assert meta["data"] == "phantom" and meta["phantom_seed"] == 1 and meta["seed"] == 0
    assert meta["task"] == "all" and meta["classes"] == ["normal", "benign", "malignant"]
    assert meta["which"] == "best" and meta["epoch"] == 1
    assert meta["source"] == str(tiny_data) and meta["image_size"] == 128
    assert set(meta["split_counts"]) == {"train", "val", "test"}


def test_predict_and_evaluate_print_the_provenance_and_warn(tiny_run, tiny_data, tmp_path, capsys):
    ds = load_mias(tiny_data)
    row = next(r for r in ds.records if r.has_coordinates)
    # an image outside the phantom folder: the folder no longer says PHANTOM, the model does
    lone = tmp_path / "elsewhere" / f"{row.refnum}.pgm"
    lone.parent.mkdir()
    lone.write_bytes((tiny_data / f"{row.refnum}.pgm").read_bytes())
    args = ["--image", str(lone), "--x", str(row.x), "--y", str(row.y), "--radius", str(row.radius)]
    assert cli.main(["predict", "--model", str(tiny_run / "best_model.npz"), *args]) == 0
    out = capsys.readouterr().out
    assert "trained on PHANTOM (synthetic) data, phantom seed 1" in out
    assert "WARNING: this model was trained on PHANTOM" in out
    assert "the best model (lowest validation loss): epoch 1" in out
    assert cli.main(["predict", "--model", str(tiny_run / "checkpoint.npz"), *args]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.npz is the training checkpoint: the model after the LAST epoch" in out
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--quiet"]) == 0
    assert "WARNING: this model was trained on PHANTOM" in capsys.readouterr().out


def test_predict_rejects_an_image_train_rejects(tiny_run, tmp_path, capsys):
    small = write_pgm(tmp_path / "mdb001.pgm", np.zeros((64, 64), np.uint8))
    assert cli.main(["predict", "--model", str(tiny_run / "best_model.npz"), "--image", str(small),
                     "--x", "10", "--y", "10", "--radius", "5"]) == 2
    assert "was trained on 128x128 films; train refuses other sizes" in _error(capsys)


# ------------------------------------------------------------------ the CLI as a user expects
def test_train_reduced_alexnet(tiny_data, tmp_path, capsys):
    run = tmp_path / "alex"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), "--model",
                     "reduced_alexnet", "--epochs", "0", "--patch-size", "32", "--quiet"]) == 0
    model = nn.load(run / "best_model.npz")
    assert model.name == "reduced_alexnet"
    assert json.loads((run / "config.json").read_text())["model"] == "reduced_alexnet"
    assert nn.read_metadata(run / "best_model.npz")["model"] == "reduced_alexnet"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "x"), "--model",
                     "reduced_alexnet", "--patch-size", "16", "--quiet"]) == 2
    assert "at least 29 pixels for reduced_alexnet" in _error(capsys)


def test_evaluate_refuses_the_training_runs_folder(tiny_run, capsys):
    before = {p.name: p.read_bytes() for p in tiny_run.iterdir() if p.suffix in (".json", ".txt")}
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--out",
                     str(tiny_run), "--quiet"]) == 2
    assert "holds the outputs of a training run" in _error(capsys)
    assert {p.name: p.read_bytes() for p in tiny_run.iterdir()
            if p.suffix in (".json", ".txt")} == before


def test_a_run_that_fails_before_training_leaves_nothing(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), *QUICK,
                     "--folds", "1000"]) == 2
    _error(capsys)
    assert not run.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in tiny_data.iterdir():
        broken.joinpath(p.name).write_bytes(p.read_bytes())
    victim = sorted(broken.glob("mdb*.pgm"))[3]
    victim.write_bytes(victim.read_bytes()[:500])                     # a truncated PGM
    assert cli.main(["train", "--data", str(broken), "--out", str(run), *QUICK]) == 2
    assert "truncated PGM" in _error(capsys)
    assert not run.exists()
    victim.write_bytes((tiny_data / victim.name).read_bytes())        # fixed: the same command runs
    assert cli.main(["train", "--data", str(broken), "--out", str(run), *QUICK, "--epochs", "0"]) == 0


def test_resume_without_epochs_keeps_the_original_plan(tiny_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    data = json.loads((run / "config.json").read_text())["data_dir"]
    assert cli.main(["train", "--data", data, "--out", str(run), "--batch-size", "16",
                     "--patch-size", "16", "--quiet", "--resume"]) == 0
    assert "--resume: resuming to the original plan of 1 epochs" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    assert len(json.loads((run / "history.json").read_text())) == 1       # no epoch added


def test_ctrl_c_prints_the_exact_resume_command(tiny_data, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_and_evaluate", interrupted)
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--out", str(run), *QUICK]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    expected = cli.resume_command(argv, run)
    assert expected in err and expected.endswith(f"--out {run} --resume")
    assert expected.startswith(f"mammo-demo train --data {tiny_data} --epochs 1")


def test_two_trains_into_one_folder_the_second_fails(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    code = ("import sys, time; from mammo_demo.runfolder import RunFolder; "
            "f = RunFolder(sys.argv[1], outputs=()); f.acquire(); print('held', flush=True); "
            "time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), *QUICK]) == 2
        err = _error(capsys)
        assert f"{run} is in use by another mammo-demo run" in err and f"pid {holder.pid}" in err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]     # nothing of ours written
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    assert cli.main(["train", "--data", str(tiny_data), "--out", str(run), *QUICK,
                     "--epochs", "0"]) == 0


def test_damaged_or_hostile_model_files_are_one_line_errors(tiny_data, tmp_path, capsys):
    text = tmp_path / "model.npz"
    text.write_text("not a model")
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    image = next(tiny_data.glob("mdb*.pgm"))
    for model in (text, array):
        for args in (["evaluate", "--model", str(model), "--quiet"],
                     ["predict", "--model", str(model), "--image", str(image), "--x", "5",
                      "--y", "5", "--radius", "3"]):
            assert cli.main(args) == 2
            err = _error(capsys)
            assert err.startswith("mammo-demo: error: ") and str(model) in err
            assert len(err.strip().splitlines()) == 1


def test_the_task_is_never_guessed_from_the_number_of_outputs(tmp_path, tiny_data, capsys):
    lone = tmp_path / "model.npz"
    nn.save(nn.zoo.mias_cnn(2, input_shape=(1, 48, 48)), lone)     # no config, no provenance
    image = next(tiny_data.glob("mdb*.pgm"))
    assert cli.main(["predict", "--model", str(lone), "--image", str(image), "--x", "5",
                     "--y", "5", "--radius", "3"]) == 2
    assert "cannot tell which task" in _error(capsys)


def test_evaluate_split_all_on_another_folder_takes_the_training_validation_threshold(
        tiny_run, tmp_path, capsys):
    other = tmp_path / "other"
    assert cli.main(["synth", "--out", str(other), "--n-images", "8", "--image-size", "128",
                     "--seed", "7"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(tiny_run / "best_model.npz"), "--data", str(other),
                     "--split", "all", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "not reported" not in out
    assert "chosen on the training run's validation split" in out
