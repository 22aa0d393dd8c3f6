"""``mammo-demo whole ...``: the whole-mammogram commands.

::

    mammo-demo whole synth   --out DIR [--seed S] [--patients N] [--scale F] [--overwrite] [--quiet]
    mammo-demo whole preview FILE --out PNG [--side L|R] [--size N]

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
