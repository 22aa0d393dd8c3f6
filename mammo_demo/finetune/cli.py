"""``mammo-demo finetune``: its arguments and its command (registered by :func:`add_parser`).

Two commands make the documented demo::

    mammo-demo train --out runs/mias --epochs 4                      # the MIAS patch source
    mammo-demo finetune --from runs/mias/best_model.npz --sweep-gamma 0,3,6 --out runs/finetune
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import data as target_data
from . import run


def _gamma(text: str):
    """An index (``"3"``) stays an int; a layer name or dotted path stays a string."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("empty gamma")
    return int(text) if text.lstrip("-").isdigit() else text


def _gamma_list(text: str) -> list:
    values = [_gamma(t) for t in text.split(",") if t.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"--sweep-gamma needs a comma-separated list, got {text!r}")
    return values


def add_parser(subparsers, formatter_class=None, epilog: str | None = None):
    """Add ``finetune`` to ``subparsers`` (the ``mammo-demo`` sub-command list); return its parser."""
    kwargs = {"formatter_class": formatter_class} if formatter_class else {}
    p = subparsers.add_parser(
        "finetune", help="transfer learning / fine-tuning from a trained nnlite model",
        description="The transfer-learning paper's method on a model nnlite trained itself "
                    "(--from RUN_DIR/best_model.npz, e.g. from 'mammo-demo train'): replace its "
                    "classifier by global average pooling, [dense 4096 + ReLU,] dropout 0.2 and "
                    "one logit; train with binary cross-entropy, RMSProp, early stopping and the "
                    "best checkpoint kept. --transfer trains the head only (TL); --gamma N "
                    "fine-tunes layers N.. (FT; gamma = index or name of the first layer that "
                    "trains); --sweep-gamma 0,3,6 runs scratch, TL and FT at each gamma and "
                    "writes one table (train/val/test accuracy, beta = train/val accuracy, AUC, "
                    "F1, each with its n) and the accuracy curves. Target: benign vs malignant "
                    "mass ROIs of a CBIS-DDSM folder (--data), split by patient, augmented after "
                    "the split; without --data a PHANTOM CBIS-DDSM set generated once into the "
                    "cache.",
        epilog=epilog, **kwargs)
    p.add_argument("--from", dest="source", required=True, type=Path, metavar="MODEL",
                   help="source model file (any nnlite model, e.g. RUN_DIR/best_model.npz)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--transfer", action="store_true",
                      help="transfer learning: only the new head trains (plus the scratch row)")
    mode.add_argument("--gamma", type=_gamma, metavar="N",
                      help="fine-tune from layer N (index or name of the first layer that trains)")
    mode.add_argument("--sweep-gamma", type=_gamma_list, metavar="LIST",
                      help="comma-separated gammas: scratch, TL and FT at each gamma in one table")
    p.add_argument("--data", type=Path, metavar="DIR", default=None,
                   help="CBIS-DDSM folder (CSVs + DICOM tree); default: the cached PHANTOM set")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="run folder")
    p.add_argument("--epochs", type=int, metavar="E", default=run.DEFAULT_EPOCHS,
                   help="most epochs per configuration (early stopping may end sooner)")
    p.add_argument("--patience", type=int, metavar="P", default=run.DEFAULT_PATIENCE,
                   help="early stopping: stop after P epochs without a lower validation loss "
                        "(Keras' patience)")
    p.add_argument("--batch-size", type=int, metavar="B", default=run.DEFAULT_BATCH_SIZE,
                   help="mini-batch size")
    p.add_argument("--lr", type=float, metavar="LR", default=run.DEFAULT_LR_TL,
                   help="RMSProp learning rate of TL and scratch")
    p.add_argument("--lr-ft", type=float, metavar="LR", default=run.DEFAULT_LR_FT,
                   help="RMSProp learning rate of fine-tuning (small)")
    p.add_argument("--hidden", type=int, metavar="UNITS", default=run.DEFAULT_HIDDEN,
                   help="units of the TL head's dense layer (0: none)")
    p.add_argument("--augment", type=int, metavar="K", default=run.DEFAULT_COPIES,
                   help="random augmented copies per training ROI")
    p.add_argument("--size", type=int, metavar="PX", default=run.DEFAULT_SIZE,
                   help="ROI side in pixels (the kept body ends in global average pooling, so "
                        "any side works; 48 = a MIAS source's own patch size, slower)")
    p.add_argument("--warmup", type=int, metavar="E", default=run.DEFAULT_WARMUP,
                   help="fine-tuning: epochs of the new head alone (at --lr) before layers "
                        "gamma.. train at --lr-ft, within the same --epochs budget")
    p.add_argument("--seed", type=int, metavar="S", default=0, help="split, head and shuffle seed")
    p.add_argument("--phantom-patients", type=int, metavar="N",
                   default=target_data.PHANTOM_PATIENTS,
                   help="patients of the phantom CBIS-DDSM set (without --data)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier finetune in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=cmd_finetune)
    return p


def cmd_finetune(args) -> int:
    gammas = args.sweep_gamma or ([args.gamma] if args.gamma is not None else [])
    transfer = bool(args.transfer or args.sweep_gamma)
    result = run.run_finetune(
        args.source, transfer=transfer, gammas=gammas, data_dir=args.data, out_dir=args.out,
        epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr_tl=args.lr,
        lr_ft=args.lr_ft, hidden=args.hidden or None, copies=args.augment, size=args.size,
        warmup=args.warmup,
        seed=args.seed, phantom_patients=args.phantom_patients, overwrite=args.overwrite,
        progress=not args.quiet)
    print()
    print(result["table"])
    print(f"run folder: {result['run_dir']}  (wall time {result['wall_seconds']:.0f} s)")
    return 0
