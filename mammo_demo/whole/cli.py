"""``mammo-demo whole ...``: the whole-mammogram commands.

::

    mammo-demo whole synth   --out DIR [--seed S] [--patients N] [--scale F] [--overwrite] [--quiet]
    mammo-demo whole preview FILE --out PNG [--side L|R] [--size N]
    mammo-demo whole train   --out DIR [--data DIR] [--model M ...] [--method crop|naive] [--size 64] [--epochs E] [--resume]
    mammo-demo whole evaluate --model RUN/best_model.npz [--data DIR] --out DIR

:func:`add_parser` registers them on the main parser's subcommands; the
handlers raise ``ValueError`` for user errors, which ``mammo-demo`` reports as
one ``mammo-demo: error: ...`` line with exit status 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import phantom


def add_parser(subparsers, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
               epilog: str | None = None):
    """Add ``whole`` with its subcommands to ``subparsers`` (from ``add_subparsers``); return it.

    ``formatter_class`` and ``epilog`` are passed to every parser it makes.
    """
    whole = subparsers.add_parser(
        "whole", help="whole mammograms (DICOM, CBIS-DDSM): phantom data, preprocessing preview",
        description="The whole-mammogram pipeline of the Deep Mammography thesis: DICOM films "
                    "in the CBIS-DDSM layout, preprocessing (naive or crop), and later training. "
                    "Not a medical device: for teaching and research only.",
        formatter_class=formatter_class, epilog=epilog)
    sub = whole.add_subparsers(dest="whole_command", metavar="WHOLE_COMMAND", required=True)

    p = sub.add_parser(
        "synth", help="write phantom whole mammograms in the CBIS-DDSM layout",
        description="Write PHANTOM (synthetic) whole mammograms as DICOM files in the layout of a "
                    "TCIA download of CBIS-DDSM, with its four case-description CSVs, PHANTOM.txt "
                    "and truth.json. Deterministic for a seed. Default scale 0.24 (960x600 films; "
                    "1.0 = 4000x2500).", formatter_class=formatter_class, epilog=epilog)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="phantom seed")
    p.add_argument("--patients", type=int, default=phantom.DEFAULT_PATIENTS, metavar="N",
                   help="patients (4 films each: CC and MLO of both breasts)")
    p.add_argument("--scale", type=float, default=phantom.DEFAULT_SCALE, metavar="F",
                   help="film size as a fraction of 4000x2500")
    p.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "preview", help="draw the preprocessing stages of one film (thesis Figure 5.2)",
        description="Preprocess one DICOM film with the crop method and draw the stages side by "
                    "side: original, threshold (film borders in red), components and the box, "
                    "crop, final input. Prints the crop box in the film's pixels.",
        formatter_class=formatter_class, epilog=epilog)
    p.add_argument("file", type=Path, metavar="FILE", help="DICOM file of a full mammogram")
    p.add_argument("--out", required=True, type=Path, metavar="PNG", help="image to write")
    p.add_argument("--side", choices=("L", "R"), default=None,
                   help="breast side if known (default: the file's tag, else from the image)")
    p.add_argument("--size", type=int, default=224, metavar="N", help="network input side")
    p.set_defaults(func=cmd_preview)
    add_train_parsers(sub, formatter_class, epilog)
    return whole


def cmd_synth(args) -> int:
    if args.patients < 1:
        raise ValueError(f"--patients must be >= 1, got {args.patients}")
    folder = phantom.generate(args.out, seed=args.seed, patients=args.patients, scale=args.scale,
                              progress=not args.quiet, overwrite=args.overwrite)
    info = phantom.read_truth(folder)
    counts = info["counts"]
    height, width = info["film_shape"]
    print(f"wrote {counts['films']} PHANTOM (synthetic) films of {height}x{width} pixels, "
          f"{args.patients} patients, seed {args.seed}, to {folder}")
    print(f"breasts: {counts['normal_breasts']} normal, {counts['benign_breasts']} benign, "
          f"{counts['malignant_breasts']} malignant; {counts['abnormalities']} abnormality files")
    return 0


def cmd_preview(args) -> int:
    from .preview import preview
    if not args.file.is_file():
        raise ValueError(f"{args.file}: no such file")
    out, record = preview(args.file, args.out, side=args.side, size=args.size)
    top, bottom, left, right = record.box
    note = " (PHANTOM film)" if record.is_phantom else ""
    print(f"{args.file}{note}: crop rows {top}:{bottom}, columns {left}:{right} of "
          f"{record.shape[0]}x{record.shape[1]}; side {record.side} ({record.side_source})"
          f"{', flipped' if record.flipped else ''}")
    print(f"stages written to {out}")
    return 0


# ------------------------------------------------------------------ whole train / whole evaluate
def add_train_parsers(sub, formatter_class, epilog) -> None:
    """Register ``whole train`` and ``whole evaluate`` (:mod:`mammo_demo.whole.train`, ``.evaluate``)."""
    from .experiments import MODELS

    p = sub.add_parser(
        "train", help="the thesis' three experiments: CC vs MLO, malignant per image, per breast",
        description="Preprocess the films of a CBIS-DDSM folder (default: a PHANTOM set generated "
                    "once into the cache) to 224x224 and shrink them to --size, split by patient "
                    "(60/20/20, stratified), then: 1. CC vs MLO (sanity task), 2. malignant vs "
                    "not per image with each --model (threshold for 90%% sensitivity chosen on "
                    "validation, applied to test), 3. per-breast aggregation of the CC and MLO "
                    "scores (min, max, mean).", formatter_class=formatter_class, epilog=epilog)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run folder")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="CBIS-DDSM folder (CSVs and DICOM tree); default: the cached phantom set")
    p.add_argument("--model", action="append", choices=MODELS, default=None, dest="models",
                   help="network for the malignant task, repeatable (default: reduced_resnet and "
                        "reduced_alexnet; the first also does CC vs MLO); alexnet and resnet50 "
                        "are the full configurations (--size 224, hours on a CPU)")
    p.add_argument("--method", choices=("crop", "naive"), default="crop",
                   help="preprocessing method")
    p.add_argument("--size", type=int, default=64, metavar="N",
                   help="network input side (the 224 crop shrunk by area averaging)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="epochs of the malignant task (default 12; on --resume: the original plan)")
    p.add_argument("--view-epochs", type=int, default=5, metavar="E",
                   help="epochs of the CC vs MLO task (0 skips it)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="mini-batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    p.add_argument("--phantom-seed", type=int, default=0, metavar="S",
                   help="seed of the cached phantom set (without --data)")
    p.add_argument("--patients", type=int, default=None, metavar="N",
                   help="patients of the cached phantom set (without --data; default 64)")
    p.add_argument("--no-class-weights", dest="class_weights", action="store_false",
                   help="train the malignant task without balanced class weights")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="evaluate a trained malignant-vs-not model per image and per breast",
        description="Evaluate RUN/best_model.npz (or RUN/malignant_<model>/best_model.npz) on its "
                    "training run's test patients (default) or on all images of --data, with the "
                    "thresholds its training run chose on validation.",
        formatter_class=formatter_class, epilog=epilog)
    p.add_argument("--model", required=True, type=Path, metavar="FILE", help="model file")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="CBIS-DDSM folder (default: the data the model was trained on)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)


def cmd_train(args) -> int:
    from .train import run_train
    if args.patients is not None and args.patients < 4:
        raise ValueError(f"--patients must be >= 4 (train, validation and test need patients), "
                         f"got {args.patients}")
    metrics = run_train(args.out, data=args.data, models=args.models, method=args.method,
                        size=args.size, epochs=12 if args.epochs is None else args.epochs,
                        epochs_given=args.epochs is not None, view_epochs=args.view_epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        phantom_seed=args.phantom_seed, patients=args.patients,
                        class_weights=args.class_weights, resume=args.resume,
                        overwrite=args.overwrite, progress=not args.quiet)
    print((args.out / "report.txt").read_text(encoding="utf-8"))
    print(f"run folder: {args.out} ({metrics['seconds']['total']:.0f} s)")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import run_evaluate
    run_evaluate(args.model, args.out, data=args.data, progress=not args.quiet)
    print((args.out / "report.txt").read_text(encoding="utf-8"))
    print(f"written to {args.out}")
    return 0
