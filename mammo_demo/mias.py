"""Reading the mini-MIAS database: ``Info.txt``, 8-bit binary PGM images, a dataset.

The mini-MIAS folder (real, or the phantom written by :mod:`mammo_demo.phantom`)
holds 1024x1024 8-bit binary PGM files ``mdbNNN.pgm`` and a text file
``Info.txt`` with one row per abnormality::

    REFNUM BG CLASS SEVERITY X Y RADIUS
    mdb001 G CIRC B 535 425 197
    mdb003 D NORM
    mdb005 F CIRC B 477 133 30
    mdb005 F CIRC B 500 168 26      <- several rows for one image
    mdb059 F CIRC B *NOTE 3*        <- coordinates replaced by a note
    mdbNNN D CALC M                 <- calcifications spread over the image: no X Y RADIUS

Columns:

* ``REFNUM``  ``mdb`` followed by digits; the image is ``REFNUM.pgm``.
* ``BG``      background tissue: ``F`` fatty, ``G`` fatty-glandular, ``D`` dense-glandular.
* ``CLASS``   ``CALC`` calcification, ``CIRC`` circumscribed mass, ``SPIC`` spiculated
  mass, ``MISC`` other ill-defined mass, ``ARCH`` architectural distortion,
  ``ASYM`` asymmetry, ``NORM`` normal.
* ``SEVERITY`` ``B`` benign or ``M`` malignant; absent for ``NORM``.
* ``X Y``     centre of the abnormality, **origin at the bottom-left corner**
  (x to the right, y upwards), as in the database's README.
* ``RADIUS``  radius in pixels of a circle enclosing the abnormality.

Coordinates. Each :class:`MiasRecord` keeps the raw ``x``, ``y`` of the file and
the converted array indices ``row = image_size - y`` and ``col = x`` (origin at
the top-left, the NumPy convention), so ``image[row, col]`` is the centre.
With ``y = 0`` the row is ``image_size``, one past the last row: code that
indexes a pixel clips it (crops are padded anyway).

What the parser accepts, and why:

* blank lines, trailing spaces, tabs and Windows line ends (the real file has
  trailing spaces on every ``NORM`` row), and a UTF-8 byte-order mark at the
  start of the file (an editor's "UTF-8 with BOM");
* a preamble before the first data row: the column header line
  (``REFNUM BG CLASS ...``) and any free text such as the README's
  description (the archive's README lists the films after such a text);
* ``#`` comment lines anywhere;
* abnormal rows without ``X Y RADIUS`` (the README's note 4: widely
  distributed calcifications) and rows whose coordinates are replaced by a
  note such as ``*NOTE 3*`` (the real ``mdb059`` row); the note is kept in
  :attr:`MiasRecord.note` and the coordinates are ``None``.

Anything else in a data row (a row starting with ``mdb``), or a non-comment
line that is not a data row after the first data row, raises
:class:`MiasFormatError` naming the file, the 1-based line number and the problem.
A line of the preamble that is shaped like a data row (its second and third
fields are a background code and a class, or its first field ends in three
digits, e.g. ``mbd001 G CIRC B ...``) is a data row with a typo in its
reference number, and an error too: it must not vanish as "preamble". A
``RADIUS`` larger than the image is an error naming the row (a circle that
big cannot be an abnormality of this film, and cropping it would allocate
gigabytes).

A folder written by the phantom generator carries a marker file
``PHANTOM.txt`` (:data:`PHANTOM_MARKER`); the real database has none, so
:attr:`MiasDataset.is_phantom` tells synthetic images from patient data.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIZE = 1024
INFO_FILENAME = "Info.txt"
PHANTOM_MARKER = "PHANTOM.txt"

BACKGROUND_TISSUES = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
ABNORMALITY_CLASSES = {
    "CALC": "calcification",
    "CIRC": "well-defined/circumscribed mass",
    "SPIC": "spiculated mass",
    "MISC": "other, ill-defined mass",
    "ARCH": "architectural distortion",
    "ASYM": "asymmetry",
    "NORM": "normal",
}
SEVERITIES = {"B": "benign", "M": "malignant"}
#: the classes counted as masses by the ``mass`` task.
MASS_CLASSES = ("CIRC", "SPIC", "MISC")

_REFNUM_RE = re.compile(r"^mdb\d+$")
_INT_RE = re.compile(r"^[+-]?\d+$")


class MiasFormatError(ValueError):
    """A malformed ``Info.txt`` (the message names the file and the line)."""


class PGMError(ValueError):
    """A PGM file that cannot be read (the message names the file)."""


@dataclass(frozen=True)
class MiasRecord:
    """One row of ``Info.txt``.

    Attributes:
        refnum: image reference, e.g. ``"mdb001"`` (the file is ``mdb001.pgm``).
        background: ``"F"``, ``"G"`` or ``"D"``.
        abnormality: ``"CALC"``, ``"CIRC"``, ``"SPIC"``, ``"MISC"``, ``"ARCH"``,
            ``"ASYM"`` or ``"NORM"``.
        severity: ``"B"``, ``"M"``, or ``None`` for ``NORM``.
        x, y: raw centre from the file, origin bottom-left; ``None`` when absent.
        radius: raw radius in pixels; ``None`` when absent.
        row, col: the centre as array indices (origin top-left):
            ``row = image_size - y``, ``col = x``; ``None`` when absent.
        note: a note that replaced the coordinates (e.g. ``"*NOTE 3*"``), else ``None``.
        line: 1-based line number in the source file.
    """

    refnum: str
    background: str
    abnormality: str
    severity: str | None = None
    x: int | None = None
    y: int | None = None
    radius: int | None = None
    row: int | None = None
    col: int | None = None
    note: str | None = None
    line: int = 0

    @property
    def is_normal(self) -> bool:
        return self.abnormality == "NORM"

    @property
    def has_coordinates(self) -> bool:
        return self.x is not None

    @property
    def label(self) -> str:
        """``"normal"``, ``"benign"`` or ``"malignant"``."""
        return "normal" if self.is_normal else SEVERITIES[self.severity]

    @property
    def is_mass(self) -> bool:
        return self.abnormality in MASS_CLASSES

    def to_line(self) -> str:
        """The row as written in ``Info.txt`` (raw coordinates)."""
        parts = [self.refnum, self.background, self.abnormality]
        if self.severity is not None:
            parts.append(self.severity)
        if self.has_coordinates:
            parts += [str(self.x), str(self.y), str(self.radius)]
        elif self.note:
            parts.append(self.note)
        return " ".join(parts)


def _parse_row(tokens: list[str], lineno: int, where: str, image_size: int) -> MiasRecord:
    def fail(msg):
        raise MiasFormatError(f"{where}, line {lineno}: {msg} (row: {' '.join(tokens)!r})")

    refnum = tokens[0]
    if not _REFNUM_RE.match(refnum):
        fail(f"reference number {refnum!r} is not 'mdb' followed by digits")
    if len(tokens) < 3:
        fail("expected at least REFNUM BG CLASS")
    background, abnormality = tokens[1], tokens[2]
    if background not in BACKGROUND_TISSUES:
        fail(f"background tissue {background!r} is not one of F, G, D")
    if abnormality not in ABNORMALITY_CLASSES:
        fail(f"class {abnormality!r} is not one of {', '.join(ABNORMALITY_CLASSES)}")
    if abnormality == "NORM":
        if len(tokens) > 3:
            fail("a NORM row has no severity or coordinates, found extra fields")
        return MiasRecord(refnum, background, abnormality, line=lineno)
    if len(tokens) < 4:
        fail(f"a {abnormality} row needs a severity B or M")
    severity = tokens[3]
    if severity not in SEVERITIES:
        fail(f"severity {severity!r} is not B or M")
    rest = tokens[4:]
    if not rest:
        return MiasRecord(refnum, background, abnormality, severity, line=lineno)
    if rest[0].startswith("*"):
        return MiasRecord(refnum, background, abnormality, severity,
                          note=" ".join(rest), line=lineno)
    if len(rest) != 3:
        fail(f"expected X Y RADIUS (3 integers) after the severity, found {len(rest)} field(s)")
    if not all(_INT_RE.match(t) for t in rest):
        fail(f"X Y RADIUS must be integers, found {' '.join(rest)!r}")
    x, y, radius = (int(t) for t in rest)
    if not (0 <= x <= image_size and 0 <= y <= image_size):
        fail(f"centre ({x}, {y}) lies outside the {image_size}x{image_size} image")
    if radius <= 0:
        fail(f"radius must be positive, found {radius}")
    if radius > image_size:
        fail(f"radius {radius} is larger than the {image_size}x{image_size} image")
    return MiasRecord(refnum, background, abnormality, severity, x, y, radius,
                      row=image_size - y, col=x, line=lineno)


_BOMS = ("\ufeff", "\xef\xbb\xbf")     # the UTF-8 byte-order mark, decoded as UTF-8 or Latin-1
_TYPO_REFNUM_RE = re.compile(r"^[A-Za-z]{2,4}\d{3}$")    # mbd001, ndb001, MDB001


def _looks_like_a_row(tokens: list[str]) -> bool:
    """A preamble line shaped like a data row whose reference number has a typo."""
    if _TYPO_REFNUM_RE.match(tokens[0]):
        return True
    return len(tokens) >= 3 and tokens[1] in BACKGROUND_TISSUES and tokens[2] in ABNORMALITY_CLASSES


def parse_info(text: str, source: str = "<string>", image_size: int = IMAGE_SIZE) -> list[MiasRecord]:
    """Parse the text of an ``Info.txt`` (see the module docstring for the rules)."""
    for bom in _BOMS:
        if text.startswith(bom):
            text = text[len(bom):]
    records: list[MiasRecord] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if tokens[0].lower().startswith("mdb") or (not records and _looks_like_a_row(tokens)):
            records.append(_parse_row(tokens, lineno, source, image_size))
        elif records:
            raise MiasFormatError(
                f"{source}, line {lineno}: expected a data row starting with 'mdb' "
                f"(REFNUM BG CLASS SEVERITY X Y RADIUS), found {raw.strip()!r}")
        # else: header or preamble text before the first data row
    if not records:
        raise MiasFormatError(f"{source}: no data rows (lines starting with 'mdb') found")
    return records


def read_info(path, image_size: int = IMAGE_SIZE) -> list[MiasRecord]:
    """Read ``Info.txt`` at ``path`` into a list of :class:`MiasRecord`, in file order.

    ``image_size`` is the side of the images (1024 for mini-MIAS), used for the
    bottom-left to top-left conversion ``row = image_size - y``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MIAS info file not found: {path}")
    text = path.read_bytes().decode("latin-1")
    return parse_info(text, source=str(path), image_size=image_size)


# ------------------------------------------------------------------ PGM files
def _pgm_header(data: bytes, path) -> tuple[int, int, int, int]:
    """Parse a P5 header; return (width, height, maxval, offset of the pixels)."""
    if data[:2] != b"P5":
        found = data[:2].decode("latin-1", "replace")
        raise PGMError(f"{path}: not a binary PGM file (magic number {found!r}, expected 'P5')")
    fields, i, n = [], 2, len(data)
    while len(fields) < 3:
        while i < n and data[i:i + 1].isspace():   # whitespace, then maybe a comment
            i += 1
        if i < n and data[i:i + 1] == b"#":
            while i < n and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        start = i
        while i < n and data[i:i + 1].isdigit():
            i += 1
        if start == i:
            what = ("width", "height", "maxval")[len(fields)]
            raise PGMError(f"{path}: truncated or malformed PGM header (expected the {what})")
        fields.append(int(data[start:i]))
    if i >= n or not data[i:i + 1].isspace():
        raise PGMError(f"{path}: truncated or malformed PGM header (no whitespace after maxval)")
    width, height, maxval = fields
    return width, height, maxval, i + 1


def read_pgm(path) -> np.ndarray:
    """Read an 8-bit binary (P5) PGM file into a ``(H, W)`` uint8 array.

    Header comments (``# ...``) are allowed. Pixel values are returned as
    stored (not rescaled when ``maxval < 255``). 16-bit files (``maxval > 255``),
    other magic numbers and truncated files raise :class:`PGMError`; a missing
    file raises :class:`FileNotFoundError`; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PGM image not found: {path}")
    data = path.read_bytes()
    width, height, maxval, offset = _pgm_header(data, path)
    if not 0 < maxval <= 255:
        raise PGMError(f"{path}: maxval {maxval} is not supported (only 8-bit PGM, maxval <= 255)")
    if width <= 0 or height <= 0:
        raise PGMError(f"{path}: invalid image size {width}x{height}")
    need = width * height
    if len(data) - offset < need:
        raise PGMError(f"{path}: truncated PGM: {len(data) - offset} pixel bytes, "
                       f"expected {need} for {width}x{height}")
    return np.frombuffer(data, dtype=np.uint8, count=need, offset=offset).reshape(height, width).copy()


def write_pgm(path, array, comment: str | None = None) -> Path:
    """Write a 2-D array of integers in ``[0, 255]`` as an 8-bit binary PGM (maxval 255).

    ``comment`` (one line of ASCII text) is written as a ``# ...`` header line,
    which every PGM reader skips; the phantom generator uses it to label each
    file as synthetic.
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"write_pgm expects a 2-D (H, W) array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"write_pgm expects uint8 (or integer) pixels, got {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError("write_pgm: pixel values must lie in [0, 255]")
        a = a.astype(np.uint8)
    path = Path(path)
    note = ""
    if comment is not None:
        if "\n" in comment or "\r" in comment or not comment.isascii():
            raise ValueError("write_pgm: the comment must be one line of ASCII text")
        note = f"# {comment}\n"
    header = f"P5\n{note}{a.shape[1]} {a.shape[0]}\n255\n".encode("ascii")
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(a).tobytes())
    return path


# ------------------------------------------------------------------ dataset
def read_phantom_marker(folder) -> dict | None:
    """The ``key: value`` pairs of a folder's ``PHANTOM.txt``, or ``None`` without one."""
    path = Path(folder) / PHANTOM_MARKER
    if not path.is_file():
        return None
    info = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith(" "):
            info[key.strip()] = value.strip()
    return info


def find_info_file(folder) -> Path:
    """``folder/Info.txt`` (the name is matched case-insensitively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MIAS folder not found: {folder}")
    exact = folder / INFO_FILENAME
    if exact.is_file():
        return exact
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower() == INFO_FILENAME.lower():
            return p
    raise FileNotFoundError(
        f"no {INFO_FILENAME} in {folder}: a mini-MIAS folder holds Info.txt and the mdbNNN.pgm "
        f"images (download it with 'mammo-demo download-mias' or write a phantom set with "
        f"'mammo-demo synth')")


class MiasDataset:
    """A mini-MIAS folder: the rows of ``Info.txt`` and lazily loaded images.

    On construction it reads ``Info.txt`` and checks that every referenced
    ``REFNUM.pgm`` exists (a missing image raises :class:`FileNotFoundError`
    naming the file); pixels are read on demand by :meth:`image` (nothing is
    cached: a 1024x1024 image is 1 MiB and reads in about a millisecond).

    Attributes:
        folder: the folder.
        records: all rows, in file order (:class:`MiasRecord`).
        refnums: image references in first-appearance order (one per image).
        is_phantom: True when the folder holds the phantom marker ``PHANTOM.txt``.
        phantom_info: the marker's ``key: value`` pairs, or ``None``.
        image_size: the side used for the coordinate conversion.
    """

    def __init__(self, folder, image_size: int | None = None):
        self.folder = Path(folder)
        self.info_path = find_info_file(self.folder)
        self.phantom_info = read_phantom_marker(self.folder)
        self.is_phantom = self.phantom_info is not None
        if image_size is None:
            image_size = IMAGE_SIZE
            if self.phantom_info and self.phantom_info.get("image_size", "").isdigit():
                image_size = int(self.phantom_info["image_size"])
        self.image_size = int(image_size)
        self.records = read_info(self.info_path, image_size=self.image_size)
        self.refnums = list(dict.fromkeys(r.refnum for r in self.records))
        self._by_ref: dict[str, list[MiasRecord]] = {}
        for r in self.records:
            self._by_ref.setdefault(r.refnum, []).append(r)
        missing = [ref for ref in self.refnums if not self.image_path(ref).is_file()]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise FileNotFoundError(
                f"image {self.image_path(missing[0])} listed in {self.info_path} "
                f"(line {self._by_ref[missing[0]][0].line}) is missing{more}")

    def __repr__(self):
        kind = "phantom" if self.is_phantom else "real"
        return f"MiasDataset({str(self.folder)!r}, {kind}, {len(self.refnums)} images, {len(self.records)} rows)"

    def __len__(self) -> int:
        return len(self.refnums)

    def image_path(self, refnum: str) -> Path:
        return self.folder / f"{refnum}.pgm"

    def rows(self, refnum: str) -> list[MiasRecord]:
        """The rows of one image (KeyError naming the reference if unknown)."""
        try:
            return list(self._by_ref[refnum])
        except KeyError:
            raise KeyError(f"{refnum!r} is not listed in {self.info_path}") from None

    def image(self, refnum: str) -> np.ndarray:
        """The pixels of ``refnum`` as a ``(H, W)`` uint8 array."""
        if refnum not in self._by_ref:
            raise KeyError(f"{refnum!r} is not listed in {self.info_path}")
        img = read_pgm(self.image_path(refnum))
        if img.shape != (self.image_size, self.image_size):
            raise PGMError(f"{self.image_path(refnum)}: image is {img.shape[1]}x{img.shape[0]}, "
                           f"expected {self.image_size}x{self.image_size}")
        return img

    def image_label(self, refnum: str) -> str:
        """``"normal"``, ``"benign"`` or ``"malignant"``: the most severe row of the image."""
        labels = {r.label for r in self.rows(refnum)}
        for name in ("malignant", "benign", "normal"):
            if name in labels:
                return name
        raise AssertionError("unreachable")  # pragma: no cover

    def class_counts(self) -> dict[str, int]:
        """Rows per class, e.g. ``{"NORM": 207, "CALC": 30, ...}``."""
        return dict(Counter(r.abnormality for r in self.records))

    def severity_counts(self) -> dict[str, int]:
        """Rows per label: ``{"normal": ..., "benign": ..., "malignant": ...}``."""
        return dict(Counter(r.label for r in self.records))

    def image_counts(self) -> dict[str, int]:
        """Images per image label (most severe row): normal / benign / malignant."""
        return dict(Counter(self.image_label(ref) for ref in self.refnums))

    def summary(self) -> dict:
        """JSON-friendly provenance: folder, phantom or real, counts."""
        return {
            "folder": str(self.folder),
            "kind": "phantom" if self.is_phantom else "real",
            "phantom_seed": (self.phantom_info or {}).get("seed"),
            "images": len(self.refnums),
            "rows": len(self.records),
            "rows_without_coordinates": sum(1 for r in self.records
                                            if not r.is_normal and not r.has_coordinates),
            "rows_per_class": self.class_counts(),
            "rows_per_label": self.severity_counts(),
            "images_per_label": self.image_counts(),
        }


def load_mias(folder, image_size: int | None = None) -> MiasDataset:
    """Open a mini-MIAS folder (real or phantom); see :class:`MiasDataset`."""
    return MiasDataset(folder, image_size=image_size)
