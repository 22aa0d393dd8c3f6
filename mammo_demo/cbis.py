"""CBIS-DDSM: the four case-description CSVs and the DICOM tree of a TCIA download.

CBIS-DDSM (Curated Breast Imaging Subset of DDSM, on The Cancer Imaging
Archive) ships four CSV files, one row per **abnormality**::

    mass_case_description_train_set.csv   mass_case_description_test_set.csv
    calc_case_description_train_set.csv   calc_case_description_test_set.csv

with the columns ``patient_id``, ``breast_density`` (mass CSVs) or
``breast density`` (calc CSVs), ``left or right breast`` (``LEFT``/``RIGHT``),
``image view`` (``CC``/``MLO``), ``abnormality id``, ``abnormality type``,
``mass shape`` and ``mass margins`` (mass) or ``calc type`` and
``calc distribution`` (calc), ``assessment`` (BI-RADS), ``pathology``
(``MALIGNANT``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK``), ``subtlety``,
``image file path``, ``cropped image file path``, ``ROI mask file path``.

What trips people up, and what this module does about it:

* Column names are normalised (lower case, spaces to underscores), so
  ``breast_density`` and ``breast density`` are the same column.
* An image has one row per abnormality: rows are grouped into one
  :class:`CbisImage` per full mammogram, keyed by the **first path
  component** of ``image file path`` (``Mass-Training_P_00001_LEFT_CC``);
  the image is malignant when any of its abnormalities is ``MALIGNANT``
  (``BENIGN_WITHOUT_CALLBACK`` is benign).
* The CSV's paths name DICOM UID folders
  (``Mass-Training_P_00001_LEFT_CC/1.3.6.1.4.1.9590.100.1.2.../000000.dcm``)
  that differ from the folders a TCIA download makes
  (``Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-74994/1.000000-full
  mammogram images-24515/1-1.dcm``). A file is found by the first path
  component only: the full mammogram is the DICOM file under the image's
  folder; the abnormality ``k``'s cropped image and ROI mask are the files
  under ``<image folder>_k``.
* The cropped-image and ROI-mask columns cannot be trusted to say which is
  which (nor can the file names ``1-1.dcm``/``1-2.dcm``): the **mask is the
  binary one** (at most two distinct stored values), decided by content in
  :func:`classify_roi_files`.
* Path fields carry stray whitespace and newlines (``...000001.dcm\\n``):
  stripped.
* A malformed row (a missing field, an unknown side, view or pathology, a
  non-integer id) raises ``ValueError`` naming the CSV file and its line.

Images under the tree that no CSV row names (the phantom's ``Normal-...``
folders: real CBIS-DDSM has only abnormal breasts) become images without
abnormalities when ``include_unlisted`` is set.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CSV_FILES = ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
             "calc_case_description_train_set.csv", "calc_case_description_test_set.csv")
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
REQUIRED = ("patient_id", "breast_density", "left_or_right_breast", "image_view",
            "abnormality_id", "abnormality_type", "pathology", "image_file_path",
            "cropped_image_file_path", "roi_mask_file_path")
IMAGE_FOLDER = re.compile(r"^(Mass|Calc|Normal)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)$")
ROI_FOLDER = re.compile(r"^((?:Mass|Calc|Normal)-(?:Training|Test)_P_\d+_(?:LEFT|RIGHT)_(?:CC|MLO))_(\d+)$")


def normalise_column(name: str) -> str:
    """``"breast density"`` and ``"breast_density"`` -> ``"breast_density"``; ``"ROI mask file path"``
    -> ``"roi_mask_file_path"``."""
    return "_".join(name.strip().lower().replace("_", " ").split())


def clean_path(text: str) -> str:
    """A CSV path field without surrounding whitespace and stray newlines, with ``/`` separators."""
    return "".join(text.split("\n")).strip().replace("\\", "/")


def first_component(path_text: str) -> str:
    """``"Mass-Training_P_00001_LEFT_CC/1.3.6.../000000.dcm"`` -> ``"Mass-Training_P_00001_LEFT_CC"``."""
    parts = [p for p in clean_path(path_text).split("/") if p]
    return parts[0] if parts else ""


@dataclass
class Abnormality:
    """One CSV row: an abnormality of an image.

    ``crop_file`` and ``mask_file`` are filled by :meth:`CbisDataset.resolve_roi`
    (by content); ``csv_crop_path``/``csv_mask_path`` are what the CSV said.
    """

    abnormality_id: int
    type: str                  # "mass" or "calcification"
    pathology: str
    assessment: int | None
    subtlety: int | None
    descriptors: dict
    csv_crop_path: str
    csv_mask_path: str
    csv_file: str
    line: int
    roi_folder: str
    crop_file: Path | None = None
    mask_file: Path | None = None

    @property
    def malignant(self) -> bool:
        return self.pathology == "MALIGNANT"


@dataclass
class CbisImage:
    """One full mammogram with its abnormalities.

    Attributes:
        image_id: the first path component (``Mass-Training_P_00001_LEFT_CC``).
        patient_id, side (``"L"``/``"R"``), view (``"CC"``/``"MLO"``), split
        (``"train"``/``"test"``), breast_density.
        abnormalities: the rows of this image, in ``abnormality id`` order.
        path: the full mammogram's DICOM file in the tree (None if not found).
        listed: named by a CSV row (False for unlisted, normal images).
    """

    image_id: str
    patient_id: str
    side: str
    view: str
    split: str
    breast_density: int | None
    abnormalities: list = field(default_factory=list)
    path: Path | None = None
    listed: bool = True

    @property
    def malignant(self) -> bool:
        """True when any abnormality is MALIGNANT."""
        return any(a.malignant for a in self.abnormalities)

    @property
    def label(self) -> int:
        """1 malignant, 0 not (benign or normal)."""
        return int(self.malignant)

    @property
    def breast_key(self) -> tuple[str, str, str]:
        """``(split, patient_id, side)``: the CC and MLO images of one breast share it."""
        return (self.split, self.patient_id, self.side)


def _int_or_none(text):
    text = (text or "").strip()
    if not text:
        return None
    return int(float(text))


def parse_csv(path) -> list[tuple[dict, int]]:
    """The rows of one case-description CSV as ``(normalised dict, line number)``.

    Raises ValueError naming the file (and line) for a missing required
    column or a row with the wrong number of fields.
    """
    path = Path(path)
    try:
        return _parse_csv(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _parse_csv(path: Path) -> list[tuple[dict, int]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a CBIS-DDSM header line") from None
        except csv.Error as e:
            raise ValueError(f"{path}: line 1: {e}") from None
        columns = [normalise_column(c) for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
        rows = []
        line = reader.line_num + 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise ValueError(f"{path}: line {line}: {e}") from None
            if fields and any(f.strip() for f in fields):
                if len(fields) != len(columns):
                    raise ValueError(f"{path}: line {line}: {len(fields)} fields, expected "
                                     f"{len(columns)}")
                rows.append((dict(zip(columns, fields)), line))
            line = reader.line_num + 1
    return rows


def parse_row(row: dict, csv_file, line: int) -> tuple[dict, Abnormality]:
    """One normalised CSV row -> (image fields, :class:`Abnormality`); ValueError naming file:line."""
    def fail(message):
        return ValueError(f"{csv_file}: line {line}: {message}")

    patient = row["patient_id"].strip()
    if not re.fullmatch(r"P_\d+", patient):
        raise fail(f"bad patient_id {patient!r} (expected P_00001 style)")
    side_word = row["left_or_right_breast"].strip().upper()
    if side_word not in ("LEFT", "RIGHT"):
        raise fail(f"bad 'left or right breast' {row['left_or_right_breast']!r}")
    view = row["image_view"].strip().upper()
    if view not in ("CC", "MLO"):
        raise fail(f"bad 'image view' {row['image_view']!r}")
    pathology = row["pathology"].strip().upper()
    if pathology not in PATHOLOGIES:
        raise fail(f"bad pathology {row['pathology']!r} (expected one of {', '.join(PATHOLOGIES)})")
    try:
        abnormality_id = int(row["abnormality_id"].strip())
        density = _int_or_none(row.get("breast_density"))
        assessment = _int_or_none(row.get("assessment"))
        subtlety = _int_or_none(row.get("subtlety"))
    except ValueError as e:
        raise fail(f"not an integer ({e})") from None
    kind = row["abnormality_type"].strip().lower()
    if kind not in ("mass", "calcification"):
        raise fail(f"bad 'abnormality type' {row['abnormality_type']!r}")
    image_path = clean_path(row["image_file_path"])
    image_id = first_component(image_path)
    if not image_id:
        raise fail("empty 'image file path'")
    match = IMAGE_FOLDER.match(image_id)
    if match is None:
        raise fail(f"'image file path' does not start with a CBIS-DDSM image folder: {image_id!r}")
    if match.group(3) != patient or match.group(4) != side_word or match.group(5) != view:
        raise fail(f"'image file path' folder {image_id!r} disagrees with patient/side/view "
                   f"{patient} {side_word} {view}")
    crop_path = clean_path(row["cropped_image_file_path"])
    mask_path = clean_path(row["roi_mask_file_path"])
    roi_folder = first_component(crop_path) or first_component(mask_path) \
        or f"{image_id}_{abnormality_id}"
    descriptors = {k: row[k].strip() for k in ("mass_shape", "mass_margins", "calc_type",
                                               "calc_distribution") if k in row}
    image = dict(image_id=image_id, patient_id=patient, side=side_word[0], view=view,
                 split="train" if match.group(2) == "Training" else "test",
                 breast_density=density)
    abnormality = Abnormality(
        abnormality_id=abnormality_id, type=kind, pathology=pathology, assessment=assessment,
        subtlety=subtlety, descriptors=descriptors, csv_crop_path=crop_path,
        csv_mask_path=mask_path, csv_file=str(csv_file), line=line, roi_folder=roi_folder)
    return image, abnormality


def index_tree(tree) -> dict[str, list[Path]]:
    """``{first-level folder name: sorted DICOM files under it}`` of a download tree."""
    tree = Path(tree)
    index = {}
    if not tree.is_dir():
        return index
    for entry in sorted(os.scandir(tree), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        files = []
        for folder, _dirs, names in os.walk(entry.path):
            files.extend(Path(folder) / n for n in names if n.lower().endswith(".dcm"))
        index[entry.name] = sorted(files)
    return index


def is_binary_mask(path) -> bool:
    """True when the DICOM file's stored values take at most two distinct values (a mask)."""
    from .dicom import read_stored
    _, stored = read_stored(path)
    return np.unique(stored).size <= 2


def classify_roi_files(files) -> tuple[Path | None, Path | None]:
    """``(cropped image, ROI mask)`` among an abnormality folder's files, by content.

    The mask is binary (:func:`is_binary_mask`); the crop is the other one.
    With several candidates of a kind, the first in path order is taken.
    """
    crop = mask = None
    for path in sorted(files):
        if is_binary_mask(path):
            mask = mask or Path(path)
        else:
            crop = crop or Path(path)
    return crop, mask


def _pick_full_image(files: list[Path]) -> Path | None:
    if not files:
        return None
    named = [f for f in files if "full mammogram" in str(f.parent).lower()]
    return (named or files)[0]


def find_tree(root) -> Path:
    """The folder holding the image folders: ``root/CBIS-DDSM``, else a ``CBIS-DDSM``
    one level further down (a TCIA download's ``manifest-.../CBIS-DDSM``), else ``root``."""
    root = Path(root)
    nested = root / "CBIS-DDSM"
    if nested.is_dir():
        return nested
    deeper = sorted(p for p in root.glob("*/CBIS-DDSM") if p.is_dir())
    return deeper[0] if deeper else root


def find_csvs(root) -> list[Path]:
    """The case-description CSVs in ``root`` (or one level below it), in the usual order."""
    root = Path(root)
    found = []
    for name in CSV_FILES:
        candidates = [root / name] + sorted(root.glob(f"*/{name}"))
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is not None:
            found.append(hit)
    return found


class CbisDataset:
    """CBIS-DDSM (real or phantom): images grouped from the CSV rows and found in the tree.

    Args:
        root: a folder with the CSVs (or a subfolder with them) and the DICOM
            tree (``root`` itself or ``root/CBIS-DDSM``).
        csv_files: the CSVs to read (default: those :func:`find_csvs` finds; at
            least one is required).
        include_unlisted: also list image folders no CSV names, as images
            without abnormalities (the phantom's normal breasts).
        require_files: raise ValueError when a listed image has no DICOM file.

    Attributes:
        images: list of :class:`CbisImage`, sorted by image id.
        is_phantom: the root holds ``PHANTOM.txt``.
    """

    def __init__(self, root, csv_files=None, include_unlisted: bool = True,
                 require_files: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a folder")
        self.csv_files = [Path(p) for p in csv_files] if csv_files else find_csvs(self.root)
        if not self.csv_files:
            raise ValueError(f"{self.root}: none of the CBIS-DDSM case-description CSVs "
                             f"({', '.join(CSV_FILES)})")
        self.tree = find_tree(self.root)
        self.index = index_tree(self.tree)
        self.is_phantom = (self.root / "PHANTOM.txt").is_file()
        images: dict[str, CbisImage] = {}
        for csv_file in self.csv_files:
            for row, line in parse_csv(csv_file):
                fields, abnormality = parse_row(row, csv_file, line)
                image = images.get(fields["image_id"])
                if image is None:
                    image = images[fields["image_id"]] = CbisImage(**fields)
                if any(a.abnormality_id == abnormality.abnormality_id for a in image.abnormalities):
                    raise ValueError(f"{csv_file}: line {line}: abnormality id "
                                     f"{abnormality.abnormality_id} repeated for {image.image_id}")
                image.abnormalities.append(abnormality)
        if include_unlisted:
            for name in self.index:
                match = IMAGE_FOLDER.match(name)
                if match and name not in images:
                    images[name] = CbisImage(
                        image_id=name, patient_id=match.group(3), side=match.group(4)[0],
                        view=match.group(5), split="train" if match.group(2) == "Training" else "test",
                        breast_density=None, listed=False)
        for image in images.values():
            image.abnormalities.sort(key=lambda a: a.abnormality_id)
            image.path = _pick_full_image(self.index.get(image.image_id, []))
            if image.path is None and require_files:
                raise ValueError(f"{self.tree}: no DICOM file for {image.image_id} "
                                 f"(folder {image.image_id}/ missing)")
        self.images = [images[k] for k in sorted(images)]

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        kind = "PHANTOM " if self.is_phantom else ""
        return (f"CbisDataset({kind}{self.root}: {len(self.images)} images, "
                f"{sum(i.malignant for i in self.images)} malignant)")

    def resolve_roi(self, abnormality: Abnormality) -> tuple[Path | None, Path | None]:
        """Fill and return ``(crop_file, mask_file)`` of an abnormality (by content; cached)."""
        if abnormality.crop_file is None and abnormality.mask_file is None:
            files = self.index.get(abnormality.roi_folder, [])
            abnormality.crop_file, abnormality.mask_file = classify_roi_files(files)
        return abnormality.crop_file, abnormality.mask_file

    def resolve_rois(self) -> None:
        """:meth:`resolve_roi` for every abnormality (reads each ROI file once)."""
        for image in self.images:
            for abnormality in image.abnormalities:
                self.resolve_roi(abnormality)

    def breasts(self) -> dict[tuple[str, str, str], list[CbisImage]]:
        """``{(split, patient, side): [images]}``: the views of each breast (for aggregation)."""
        out: dict = {}
        for image in self.images:
            out.setdefault(image.breast_key, []).append(image)
        return out

    def summary(self) -> dict:
        """Counts: images, malignant images, per split, per view, abnormalities, files found."""
        return dict(
            images=len(self.images), malignant=sum(i.malignant for i in self.images),
            train=sum(i.split == "train" for i in self.images),
            test=sum(i.split == "test" for i in self.images),
            cc=sum(i.view == "CC" for i in self.images),
            mlo=sum(i.view == "MLO" for i in self.images),
            abnormalities=sum(len(i.abnormalities) for i in self.images),
            unlisted=sum(not i.listed for i in self.images),
            missing_files=sum(i.path is None for i in self.images),
            patients=len({i.patient_id for i in self.images}), phantom=self.is_phantom)


def load_cbis(root, **kwargs) -> CbisDataset:
    """:class:`CbisDataset` of ``root`` (keyword arguments as there)."""
    return CbisDataset(root, **kwargs)
