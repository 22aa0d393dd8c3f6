"""``mammo-demo segment train | evaluate | predict``: lesion masks with SegNet or U-Net.

Registered by :mod:`mammo_demo.cli` with ``add_parser(subparsers)``::

    mammo-demo segment train    [--data DIR] [--model segnet|unet] [--epochs E] [--out RUN_DIR]
                                [--resume | --overwrite] [--phantom-images N] ...
    mammo-demo segment evaluate --model RUN_DIR/best_model.npz --out DIR [--data DIR] [--split S]
    mammo-demo segment predict  --model M --image mdbNNN.pgm --x X --y Y --radius R [--out PNG]

Without ``--data`` the PHANTOM (synthetic) mini-MIAS set is used, and every
output says so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = "Not a medical device: for teaching and research only, never for diagnosis."


def _widths(text: str):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be integers separated by commas, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return values


def add_parser(subparsers, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
               epilog: str = EPILOG) -> argparse.ArgumentParser:
    """Add ``segment`` (with ``train``, ``evaluate``, ``predict``) to ``subparsers``; return it."""
    from . import data, run, train
    formatter = formatter_class
    seg = subparsers.add_parser(
        "segment", help="lesion segmentation (SegNet / U-Net masks)", epilog=epilog,
        formatter_class=formatter,
        description="Lesion masks from mammogram patches: SegNet-style (max-pool indices + "
                    "unpooling) or U-Net-style (transposed convolution + skips) networks, per-pixel "
                    "BCE + soft Dice, IoU / Dice / pixel accuracy / lesions found. PHANTOM data by "
                    "default. Start with: mammo-demo segment train --out runs/segment")
    sub = seg.add_subparsers(dest="segment_command", metavar="SEGMENT_COMMAND", required=True)
    d = run.DEFAULTS

    p = sub.add_parser("train", help="train and test a segmentation network", epilog=epilog,
                       formatter_class=formatter,
                       description="Cut lesion-centred and normal patches with their masks, split by "
                                   "image, train with rotations/mirrors applied to image and mask "
                                   "together, keep the best validation mean IoU, score the test set.")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="mini-MIAS folder (real or phantom); default: the cached PHANTOM set")
    p.add_argument("--phantom-seed", type=int, default=d["phantom_seed"], help="seed of the PHANTOM set")
    p.add_argument("--phantom-images", type=int, default=d["phantom_images"],
                   help="images in the PHANTOM set (fewer: a quick run)")
    p.add_argument("--model", choices=train.MODELS, default=d["model"], help="network")
    p.add_argument("--widths", type=_widths, default=None, metavar="W1,W2,...",
                   help="channels per level (default: segnet 16,32 / unet 8,16,32; the zoo's "
                        "unet is 16,32,64)")
    p.add_argument("--patch-size", type=int, default=d["patch_size"], help="patch side in pixels")
    p.add_argument("--context", type=float, default=d["context"],
                   help="crop side as a multiple of the lesion's radius")
    p.add_argument("--lesions", choices=sorted(data.LESION_SETS), default=d["lesions"],
                   help="which abnormality classes")
    p.add_argument("--normal-fraction", type=float, default=d["normal_fraction"],
                   help="normal patches per lesion patch")
    p.add_argument("--masks", choices=data.MASK_SOURCES, default=d["masks"],
                   help="exact phantom extents, Info.txt discs, or auto (exact for phantom data)")
    p.add_argument("--loss", choices=train.LOSSES, default=d["loss"], help="training loss")
    p.add_argument("--pos-weight", type=float, default=None,
                   help="weight of lesion pixels in the BCE (default: 1)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: {d['epochs']}; "
                   f"with --resume: the original plan)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="mini-batch size")
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate")
    p.add_argument("--no-augment", action="store_true", help="no rotations/mirrors")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed (patches, split, weights, shuffles)")
    p.add_argument("--out", type=Path, default=Path("runs/segment"), metavar="RUN_DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true", help="replace the run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a saved segmentation model", epilog=epilog,
                       formatter_class=formatter,
                       description="Rebuild the patches and split from the model's training config and "
                                   "score one split.")
    p.add_argument("--model", required=True, type=Path, metavar="MODEL", help="RUN_DIR/best_model.npz")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="mini-MIAS folder (default: the one the model was trained on)")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test", help="which patches")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for metrics and plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the lesion mask of one region", epilog=epilog,
                       formatter_class=formatter,
                       description="Cut the region (X, Y from the bottom-left corner, RADIUS, as in "
                                   "Info.txt) and predict its lesion mask.")
    p.add_argument("--model", required=True, type=Path, metavar="MODEL", help="best_model.npz")
    p.add_argument("--image", required=True, type=Path, metavar="PGM", help="8-bit binary PGM mammogram")
    p.add_argument("--x", required=True, type=int, help="centre column (pixels from the left)")
    p.add_argument("--y", required=True, type=int, help="centre height (pixels from the BOTTOM)")
    p.add_argument("--radius", required=True, type=int, help="radius of the region in pixels")
    p.add_argument("--out", type=Path, default=None, metavar="PNG", help="write an overlay PNG")
    p.set_defaults(func=cmd_predict)
    return seg


def cmd_train(args) -> int:
    from . import run
    config = {"data_dir": None if args.data is None else str(args.data), "phantom_seed": args.phantom_seed,
              "phantom_images": args.phantom_images, "model": args.model,
              "widths": None if args.widths is None else list(args.widths),
              "patch_size": args.patch_size, "context": args.context, "lesions": args.lesions,
              "normal_fraction": args.normal_fraction, "masks": args.masks, "loss": args.loss,
              "pos_weight": args.pos_weight,
              "epochs": run.DEFAULTS["epochs"] if args.epochs is None else args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
              "augment": not args.no_augment}
    result = run.train_run(args.out, config, resume=args.resume, overwrite=args.overwrite,
                           epochs_given=args.epochs is not None, progress=not args.quiet)
    print(result["table"])
    print(f"run folder: {args.out} (report.txt, metrics.json, best_model.npz, plots)")
    return 0


def cmd_evaluate(args) -> int:
    from . import run
    result = run.evaluate_run(args.model, args.out, data_dir=args.data, split=args.split,
                              progress=not args.quiet)
    print(result["table"])
    print(f"written to {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .predict import describe, predict_region
    result = predict_region(args.model, args.image, args.x, args.y, args.radius, args.out)
    print(describe(result))
    return 0
