"""``mammo-demo``: the command-line front end of the MIAS region-of-interest demo.

Subcommands::

    mammo-demo synth          --out DIR [--seed S] [--n-images N] [--image-size PX]
    mammo-demo download-mias  --dest DIR [--url URL] [--sha256 HEX] [--force]
    mammo-demo train          [--data DIR] [--task all|calc|mass] [--model mias_cnn|reduced_alexnet]
                              [--epochs E] [--batch-size B]
                              [--lr LR] [--optimizer sgd|adam|rmsprop] [--seed S] [--out RUN_DIR]
                              [--resume] [--folds K] [--balance undersample|weights|none]
                              [--device cpu|gpu]
    mammo-demo evaluate       --model RUN_DIR/best_model.npz [--data DIR] [--task T] [--seed S]
                              [--split test|val|train|all] [--out DIR]
    mammo-demo predict        --model M --image mdbNNN.pgm --x X --y Y --radius R

``main(argv)`` returns the exit status: 0 on success, 2 for a user error
(bad option, missing file, malformed data, failed download, no GPU, a
learning rate so high that the loss overflows: one ``mammo-demo: error: ...``
line, no traceback), 130 when interrupted (``train`` then prints the exact
command that resumes the run).

Not a medical device: the demo is for teaching and research only.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import experiment
from . import models
from .patches import TASKS


class _Formatter(argparse.HelpFormatter):
    """Append ``(default: X)`` to the help of options that have a default.

    Flags (default False) and options whose default is ``None`` (their help
    says in words what happens without them) get no suffix.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings
                or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


class UserError(Exception):
    """A problem the user can fix (no GPU for ``--device gpu``, a failed download):
    reported as one ``mammo-demo: error:`` line, exit status 2."""


EPILOG = "Not a medical device: for teaching and research only, never for diagnosis."


def _add(sub, name: str, help_: str, description: str):
    return sub.add_parser(name, help=help_, description=description, epilog=EPILOG,
                          formatter_class=_Formatter)


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo-demo`` argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="mammo-demo", formatter_class=_Formatter, epilog=EPILOG,
        description="The MIAS region-of-interest CNN on nnlite: phantom or real mini-MIAS "
                    "mammograms, 48x48 patches split by image before augmentation, "
                    "training, evaluation and prediction. "
                    "Start with: mammo-demo train --out runs/demo")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "synth", "write a phantom (synthetic) mini-MIAS folder",
             "Write phantom mammograms in the mini-MIAS format (mdbNNN.pgm + Info.txt + "
             "PHANTOM.txt). The folder can be passed to 'train --data'. Deterministic for a "
             "seed.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder to write (created)")
    p.add_argument("--seed", type=int, metavar="S", default=0, help="phantom seed")
    p.add_argument("--n-images", type=int, metavar="N", default=322,
                   help="number of images (mini-MIAS has 322)")
    p.add_argument("--image-size", type=int, metavar="PX", default=1024,
                   help="image side in pixels (mini-MIAS: 1024)")
    p.set_defaults(func=cmd_synth)

    p = _add(sub, "download-mias", "download and unpack the real mini-MIAS database",
             "Download the official mini-MIAS archive, resume an interrupted download, verify "
             "it (the whole gzip stream, every tar member, Info.txt and all 322 1024x1024 "
             "images), unpack it into --dest and mark it complete. Refuses to write into a "
             "non-empty folder unless --force.")
    p.add_argument("--dest", required=True, type=Path, metavar="DIR",
                   help="folder to unpack into")
    p.add_argument("--url", metavar="URL", default=None,
                   help="archive address (default: the official mini-MIAS archive, "
                        "mammo_demo.download.MIAS_URL)")
    p.add_argument("--sha256", metavar="HEX", default=None,
                   help="expected SHA-256 of the archive (hex)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --dest")
    p.add_argument("--timeout", type=float, metavar="S", default=1800.0,
                   help="seconds the whole transfer may take (an interrupted download resumes "
                        "when run again)")
    p.set_defaults(func=cmd_download)

    p = _add(sub, "train", "train and test the MIAS ROI CNN (the main demo)",
             "Train mias_cnn (conv 32@5x5, pool, conv 64@5x5, pool, dense 1024, dropout 0.5) on "
             "48x48 ROI patches, or the reduced AlexNet on 64x64 patches. Pipeline: load the MIAS folder (without --data: a phantom set "
             "generated once into a cache folder) -> extract patches -> split by image, "
             "stratified, 70/15/15 -> augment the training set (4 rotations x mirror) -> balance "
             "-> fit (best model on validation loss) -> evaluate on test (every rate with its n "
             "and 95% interval). Writes config.json, data.json, history.csv/json, "
             "best_model.npz (with the data provenance), checkpoint.npz, metrics.json, "
             "report.txt, report.md and PNG plots into --out, which is locked while the run "
             "writes it.")
    p.add_argument("--data", type=Path, metavar="DIR", default=None,
                   help="mini-MIAS folder (real or phantom); default: the cached phantom set")
    p.add_argument("--task", choices=tuple(TASKS), default="all",
                   help="all = normal/benign/malignant; calc, mass = benign vs malignant")
    p.add_argument("--model", choices=models.MODELS, default=experiment.DEFAULT_MODEL,
                   help="mias_cnn: the paper's CNN, at 48x48 patches; reduced_alexnet: "
                        "nnlite.zoo.reduced_alexnet (AlexNet with LRN and grouped convs, shrunk "
                        "for a CPU), at the 64x64 input it is defined for (it needs patches of "
                        "at least 29 px)")
    p.add_argument("--epochs", type=int, metavar="N", default=None,
                   help=f"training epochs (the model with the lowest validation loss is kept); "
                        f"default {experiment.DEFAULT_EPOCHS}, or with --resume the number the "
                        f"run was started with")
    p.add_argument("--batch-size", type=int, metavar="N", default=experiment.DEFAULT_BATCH_SIZE,
                   help="mini-batch size")
    p.add_argument("--lr", type=float, metavar="LR", default=experiment.DEFAULT_LR,
                   help="learning rate (the paper's 0.002)")
    p.add_argument("--optimizer", choices=experiment.OPTIMIZERS, default=experiment.DEFAULT_OPTIMIZER,
                   help="sgd (momentum 0.9), adam (beta 0.9/0.999) or rmsprop (rho 0.9); with "
                        "adam or rmsprop use a smaller --lr such as 0.0001")
    p.add_argument("--seed", type=int, metavar="S", default=0,
                   help="seed of patch sampling, split, balancing, initial weights, shuffling")
    p.add_argument("--out", type=Path, metavar="RUN_DIR", default=None,
                   help="run folder (default: runs/<date-time>-<task>[-phantom])")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoint.npz, to the "
                        "epochs it was planned for unless --epochs says otherwise")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (deletes only the files a run writes)")
    p.add_argument("--folds", type=int, metavar="K", default=1,
                   help="1: one split by image; K > 1: stratified K-fold cross-validation by "
                        "image, reporting mean and std")
    p.add_argument("--balance", choices=experiment.BALANCING, default="undersample",
                   help="training-set class balancing: undersample (the paper), class weights "
                        "in the loss, or none")
    p.add_argument("--patch-size", type=int, metavar="PX", default=None,
                   help="side of the ROI patches in pixels; default 48 for mias_cnn (the "
                        "paper's; smaller is faster), 64 for reduced_alexnet")
    p.add_argument("--phantom-seed", type=int, metavar="S", default=0,
                   help="seed of the cached phantom set (without --data)")
    p.add_argument("--image-size", type=int, metavar="PX", default=None,
                   help="side of the phantom images to generate (without --data; default 1024)")
    p.add_argument("--phantom-images", type=int, metavar="N", default=322,
                   help="number of phantom images to generate (without --data); fewer for a "
                        "quick try")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu needs CuPy and a CUDA device (pip install 'nnlite[gpu]')")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=cmd_train)

    p = _add(sub, "evaluate", "evaluate a saved model on a MIAS folder",
             "Evaluate a saved model (e.g. RUN_DIR/best_model.npz). Task, seed, data and "
             "patch settings default to those in the config.json next to the model, so the "
             "test split of the training run is reproduced (split by image with the same seed). "
             "Prints where the model's training data came from.")
    p.add_argument("--model", required=True, type=Path, metavar="FILE", help="model file (.npz)")
    p.add_argument("--data", type=Path, metavar="DIR", default=None,
                   help="mini-MIAS folder; default: the training run's data")
    p.add_argument("--task", choices=tuple(TASKS), default=None,
                   help="default: the training run's task")
    p.add_argument("--seed", type=int, metavar="S", default=None,
                   help="split seed; default: the training run's seed")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test",
                   help="which part of the split by image to evaluate (the 90%%-sensitivity "
                        "threshold is never chosen on data it evaluates: none for val, and "
                        "for all only on another folder than the training data)")
    p.add_argument("--out", type=Path, metavar="DIR", default=None,
                   help="write metrics.json, report.txt, report.md and PNG plots here (a new or "
                        "empty folder, or an earlier evaluation of the same model; default: "
                        "print only)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=cmd_evaluate)

    p = _add(sub, "predict", "classify one region of interest of a PGM mammogram",
             "Classify the region of interest centred at (--x, --y) with radius --radius of a "
             "mammogram (MIAS coordinates: origin at the BOTTOM-LEFT corner, as in Info.txt). "
             "Prints the class probabilities. Not a medical device.")
    p.add_argument("--model", required=True, type=Path, metavar="FILE",
                   help="model file (.npz); the config.json beside it gives the task and patch size")
    p.add_argument("--image", required=True, type=Path, metavar="PGM",
                   help="8-bit binary PGM mammogram")
    p.add_argument("--x", required=True, type=int, metavar="X",
                   help="centre column (pixels from the left)")
    p.add_argument("--y", required=True, type=int, metavar="Y",
                   help="centre height (pixels from the BOTTOM)")
    p.add_argument("--radius", required=True, type=int, metavar="R",
                   help="radius of the region in pixels")
    p.set_defaults(func=cmd_predict)

    # Commands defined in their own modules register here, one line each:
    # ``module.add_parser(sub)`` adds a subparser and sets its ``func``.
    from .whole import cli as whole_cli
    whole_cli.add_parser(sub, formatter_class=_Formatter, epilog=EPILOG)
    from .finetune import cli as finetune_cli
    finetune_cli.add_parser(sub, formatter_class=_Formatter, epilog=EPILOG)
    from .segment import cli as segment_cli
    segment_cli.add_parser(sub, formatter_class=_Formatter, epilog=EPILOG)
    return parser


# ------------------------------------------------------------------ commands
def cmd_synth(args) -> int:
    from .phantom import generate_phantom
    folder = generate_phantom(args.out, seed=args.seed, n_images=args.n_images,
                              image_size=args.image_size, progress=True)
    print(f"wrote {args.n_images} PHANTOM (synthetic) mammograms, seed {args.seed}, to {folder}")
    print("train on them with: mammo-demo train --data " + str(folder))
    return 0


def cmd_download(args) -> int:
    from . import download
    from .mias import read_phantom_marker
    url = args.url or download.MIAS_URL
    try:
        folder = download.download_mias(args.dest, url=url, sha256=args.sha256, progress=True,
                                        force=args.force, timeout=args.timeout)
    except download.DownloadError as e:
        raise UserError(e) from None
    what = ("a PHANTOM (synthetic) set" if read_phantom_marker(folder) is not None
            else "mini-MIAS (real patient mammograms; read its Licence.txt)")
    print(f"{what} unpacked in {folder}")
    print("train on it with: mammo-demo train --data " + str(folder))
    return 0


def _device(name: str) -> str:
    if name == "gpu":
        from nnlite.backend import require_gpu
        try:
            require_gpu()
        except RuntimeError as e:
            raise UserError(f"--device gpu: {e}") from None
    return name


def resume_command(argv, run_dir) -> str:
    """The ``mammo-demo train`` command line that resumes the run of ``argv`` in ``run_dir``."""
    words, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in ("--overwrite", "--resume"):
            continue
        if word == "--out":
            skip = True
            continue
        if word.startswith("--out="):
            continue
        words.append(word)
    return shlex.join(["mammo-demo", *words, "--out", str(run_dir), "--resume"])


def cmd_train(args) -> int:
    device = _device(args.device)
    run_dir = args.out if args.out is not None else \
        experiment.default_run_dir(args.task, args.data is None)
    try:
        result = experiment.run_experiment(
            data_dir=args.data, task=args.task, model=args.model, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, seed=args.seed,
            out_dir=run_dir, resume=args.resume, folds=args.folds, balance=args.balance,
            image_size=args.image_size, phantom_seed=args.phantom_seed,
            phantom_images=args.phantom_images, patch_size=args.patch_size, device=device,
            overwrite=args.overwrite, progress=not args.quiet)
    except KeyboardInterrupt:
        argv = getattr(args, "argv", None) or sys.argv[1:]
        print(f"\nmammo-demo: interrupted. Resume the run with:\n  "
              f"{resume_command(argv, run_dir)}", file=sys.stderr)
        return 130
    print()
    if result.get("resume_plan") and args.resume:
        print(f"--resume: {result['resume_plan']}")
    print(result["table"])
    print(f"run folder: {result['run_dir']}  (wall time {result['wall_seconds']:.0f} s; "
          f"report.md shows the tables with the plots)")
    return 0


def _print_about(result) -> None:
    for line in result.get("provenance", []):
        print(line)
    for line in result.get("warnings", []):
        print(f"WARNING: {line}")


def cmd_evaluate(args) -> int:
    from .saved_model import evaluate_saved_model
    result = evaluate_saved_model(args.model, data_dir=args.data, task=args.task,
                                  seed=args.seed, split=args.split, out_dir=args.out,
                                  progress=not args.quiet)
    print()
    _print_about(result)
    print(result["table"])
    if args.out is not None:
        print(f"metrics, report.txt, report.md and plots written to {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .saved_model import predict_roi
    result = predict_roi(args.model, args.image, args.x, args.y, args.radius)
    _print_about(result)
    print(f"region of interest: centre x={args.x}, y={args.y} (origin bottom-left; "
          f"array row {result['row']}, column {result['col']}), radius {args.radius} px")
    if result.get("is_phantom"):
        print("image folder is marked PHANTOM: synthetic data, not a patient")
    width = max(len(c) for c in result["classes"])
    for name, prob in zip(result["classes"], result["probabilities"]):
        print(f"  {name:<{width}}  {prob:6.1%}  {'#' * int(round(40 * prob))}")
    print(f"predicted: {result['predicted']}")
    print(experiment.NOT_A_MEDICAL_DEVICE)
    return 0


# ------------------------------------------------------------------ entry point
def main(argv=None) -> int:
    """Run ``mammo-demo`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # argparse itself exits with status 2 on a bad option
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError, FloatingPointError, UserError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mammo-demo: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nmammo-demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
