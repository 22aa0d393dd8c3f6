"""Reading (and writing) grey-scale DICOM mammograms with pydicom.

:func:`read_dicom` turns a DICOM file into a :class:`DicomImage`: a float32
array in ``[0, 1]`` with **tissue bright** (0 = the darkest value the file can
display, 1 = the brightest), plus the few tags the whole-mammogram pipeline
needs. The steps are the DICOM grey-scale pipeline, in its order:

1. **Stored values** (pydicom decodes uncompressed and RLE Lossless pixel
   data natively). Only the low ``BitsStored`` bits carry the value (12-, 14-
   or 16-bit films in 16-bit words): higher bits are masked off, and signed
   data (``PixelRepresentation = 1``) are sign-extended from ``BitsStored``.
2. **Modality LUT**: ``Rescale Slope`` and ``Rescale Intercept``,
   ``v = slope * stored + intercept`` (1 and 0 when absent).
3. **VOI LUT or window**, when present (the first of several):

   * a ``VOILUTSequence`` table: ``LUTDescriptor = (entries, first, bits)``;
     ``v`` below ``first`` maps to the first entry, above the last to the last
     entry; the output is divided by ``2**bits - 1``;
   * else ``WindowCenter`` ``c`` and ``WindowWidth`` ``w`` with
     ``VOILUTFunction`` (DICOM PS3.3 C.11.2.1.2):

     - ``LINEAR`` (the default): ``y = ((v - (c - 0.5)) / (w - 1) + 0.5)``
       clipped to ``[0, 1]``;
     - ``LINEAR_EXACT``: ``y = (v - c) / w + 0.5`` clipped to ``[0, 1]``;
     - ``SIGMOID``: ``y = 1 / (1 + exp(-4 (v - c) / w))``.

   * else the **range of the stored bits** through the modality LUT: the
     values ``0 .. 2**BitsStored - 1`` (unsigned) or
     ``-2**(BitsStored-1) .. 2**(BitsStored-1) - 1`` (signed) map linearly
     onto ``[0, 1]``. (Not the image's own min and max: then a film's
     brightness would depend on what else is on it.)
4. **MONOCHROME1** (the minimum value is displayed white, as on film
   scanners that store optical density): ``y = 1 - y``, so that tissue is
   bright in every array this module returns.

Real scanned films (CBIS-DDSM) often lack the window, view and laterality
tags; then :attr:`DicomImage.laterality` and :attr:`DicomImage.view` are
``None`` and the caller takes them from the data set's records
(:mod:`mammo_demo.cbis`).

Every failure (not a DICOM file, no pixel data, a transfer syntax pydicom
cannot decode, colour or multi-frame data, damaged values) raises **one**
``ValueError`` whose one-line message names the file.

Phantom files (:mod:`mammo_demo.whole.phantom`) say so in a text field:
``ImageComments`` or ``SeriesDescription`` starting with ``PHANTOM``
(:data:`PHANTOM_PREFIX`); :attr:`DicomImage.is_phantom` reports it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PHANTOM_PREFIX = "PHANTOM"
"""Text that starts ``ImageComments`` or ``SeriesDescription`` of every phantom file."""

MAX_PIXELS = 200_000_000
"""Largest ``Rows * Columns`` accepted (a damaged header must not allocate gigabytes)."""

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
"""SOP class of CBIS-DDSM's files (Secondary Capture Image Storage)."""


@dataclass
class DicomImage:
    """A decoded grey-scale DICOM image.

    Attributes:
        pixels: float32 ``(rows, columns)`` in ``[0, 1]``, tissue bright.
        laterality: ``"L"``, ``"R"`` or ``None`` (from ``ImageLaterality``, else
            ``Laterality``; any other value counts as missing).
        view: ``ViewPosition`` upper-cased (``"CC"``, ``"MLO"``, ...) or ``None``.
        bits: ``BitsStored``.
        photometric: ``"MONOCHROME1"`` or ``"MONOCHROME2"`` (as stored; the
            pixels are already inverted for MONOCHROME1).
        path: the file read.
        is_phantom: the file is marked as synthetic phantom data.
        voi: what mapped values to ``[0, 1]``: ``"lut"``, ``"window"`` or ``"bits"``.
        transfer_syntax: the transfer syntax UID.
        comments: ``ImageComments`` (``""`` without).
        patient_id: ``PatientID`` (``""`` without).
    """

    pixels: np.ndarray
    laterality: str | None
    view: str | None
    bits: int
    photometric: str
    path: Path | None
    is_phantom: bool = False
    voi: str = "bits"
    transfer_syntax: str = ""
    comments: str = ""
    patient_id: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _fail(path, reason) -> ValueError:
    return ValueError(_one_line(f"{path}: cannot read as a DICOM image: {reason}"))


def _first(value):
    """The first of a multi-valued element (pydicom's MultiValue), else the value."""
    if value is None:
        return None
    try:
        if not isinstance(value, (str, bytes)) and len(value) > 0:
            return value[0]
    except TypeError:
        pass
    return value


def _text(ds, keyword) -> str:
    value = ds.get(keyword, "")
    value = _first(value) if not isinstance(value, str) else value
    return "" if value is None else str(value).strip()


def _laterality(ds) -> str | None:
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword).upper()
        if value in ("L", "R"):
            return value
    return None


def _view(ds) -> str | None:
    value = _text(ds, "ViewPosition").upper()
    return value or None


def stored_range(bits: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest value ``bits`` stored bits can hold."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def mask_stored_bits(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Keep the low ``bits`` bits of each value (sign-extending when ``signed``), as int64."""
    raw = arr.astype(np.int64) & ((1 << bits) - 1)
    if signed:
        raw = np.where(raw >= (1 << (bits - 1)), raw - (1 << bits), raw)
    return raw


def apply_window(values: np.ndarray, center: float, width: float,
                 function: str = "LINEAR") -> np.ndarray:
    """Map modality values to ``[0, 1]`` with a DICOM window (formulas in the module docstring)."""
    v = values.astype(np.float64)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be > 0 for SIGMOID, got {width}")
        y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (v - center) / width, -700, 700)))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be > 0 for LINEAR_EXACT, got {width}")
        y = (v - center) / width + 0.5
    elif function == "LINEAR":
        if width < 1:
            raise ValueError(f"window width must be >= 1 for LINEAR, got {width}")
        y = (v - (center - 0.5)) / max(width - 1.0, 1e-12) + 0.5
    else:
        raise ValueError(f"unsupported VOILUTFunction {function!r}")
    return np.clip(y, 0.0, 1.0)


def apply_lut(values: np.ndarray, descriptor, lut) -> np.ndarray:
    """Map modality values through a VOI LUT table to ``[0, 1]``.

    ``descriptor = (entries, first_mapped, bits)``; DICOM writes 0 entries for 65536.
    """
    entries, first, bits = (int(d) for d in descriptor)
    entries = entries or 65536
    table = np.asarray(lut, dtype=np.float64).ravel()
    if table.size < entries or entries < 1 or not 1 <= bits <= 16:
        raise ValueError(f"bad VOI LUT: descriptor {list(descriptor)}, {table.size} entries")
    index = np.clip(np.round(values).astype(np.int64) - first, 0, entries - 1)
    return np.clip(table[:entries][index] / ((1 << bits) - 1), 0.0, 1.0)


def _lut_data(item):
    """The VOI LUT table of a sequence item as integers (one 16-bit word per entry when
    pydicom hands over the raw OW bytes)."""
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        return np.frombuffer(bytes(data[:len(data) // 2 * 2]), dtype="<u2")
    return np.asarray(data)


def to_unit_range(ds, stored: np.ndarray) -> tuple[np.ndarray, str]:
    """Steps 2-4 of the module docstring: stored values -> float32 ``[0, 1]``, tissue bright."""
    bits = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    slope = float(_first(ds.get("RescaleSlope", 1.0)) or 1.0)
    intercept = float(_first(ds.get("RescaleIntercept", 0.0)) or 0.0)
    values = stored.astype(np.float64) * slope + intercept
    voi = "bits"
    seq = ds.get("VOILUTSequence")
    if seq is not None and len(seq) > 0 and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]:
        y = apply_lut(values, seq[0].LUTDescriptor, _lut_data(seq[0]))
        voi = "lut"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(_first(ds.WindowCenter))
        width = float(_first(ds.WindowWidth))
        y = apply_window(values, center, width, _text(ds, "VOILUTFunction") or "LINEAR")
        voi = "window"
    else:
        low, high = (slope * s + intercept for s in stored_range(bits, signed))
        low, high = min(low, high), max(low, high)
        y = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    if _text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1":
        y = 1.0 - y
    return y.astype(np.float32), voi


def is_phantom_dataset(ds) -> bool:
    """True when ``ImageComments`` or ``SeriesDescription`` starts with :data:`PHANTOM_PREFIX`."""
    return any(_text(ds, k).upper().startswith(PHANTOM_PREFIX)
               for k in ("ImageComments", "SeriesDescription"))


def _silenced(function):
    """Run ``function`` without pydicom's UserWarnings about damaged or non-standard values
    (pydicom converts values lazily, so they come at any access; the reader turns real
    problems into its ValueError, and a bulk read of a real data set would print thousands)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return function(*args, **kwargs)
    return wrapper


def _quiet_read(path, **kwargs):
    import pydicom
    return pydicom.dcmread(str(path), **kwargs)


@_silenced
def read_header(path):
    """The data set of ``path`` without its pixel data (fast), or one-line ValueError."""
    try:
        return _quiet_read(path, stop_before_pixels=True)
    except Exception as e:  # pydicom raises many types on damaged files
        raise _fail(path, f"not a DICOM file ({type(e).__name__}: {e})") from None


@_silenced
def read_stored(path):
    """``(dataset, stored values as int64 (rows, columns))`` of a grey-scale file.

    The stored bits only (step 1 of the module docstring); one-line ValueError
    naming the file on any problem.
    """
    try:
        ds = _quiet_read(path)
    except Exception as e:
        raise _fail(path, f"not a DICOM file ({type(e).__name__}: {e})") from None
    try:
        if "PixelData" not in ds:
            raise _fail(path, "no pixel data")
        syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(_first(ds.get("NumberOfFrames", 1)) or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsStored)
        allocated = int(ds.BitsAllocated)
        if samples != 1 or frames != 1:
            raise _fail(path, f"not a single grey-scale frame ({samples} samples, {frames} frames)")
        if not (rows > 0 and columns > 0 and rows * columns <= MAX_PIXELS):
            raise _fail(path, f"bad image size {rows}x{columns}")
        if allocated not in (8, 16, 32) or not 1 <= bits <= min(allocated, 16):
            raise _fail(path, f"unsupported BitsAllocated {allocated} / BitsStored {bits}")
        from pydicom.uid import UID
        if syntax and not UID(syntax).is_transfer_syntax:
            raise _fail(path, f"unknown transfer syntax {syntax}")
        photometric = _text(ds, "PhotometricInterpretation").upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise _fail(path, f"not a grey-scale image (PhotometricInterpretation {photometric!r})")
        try:
            arr = ds.pixel_array
        except (NotImplementedError, RuntimeError) as e:
            raise _fail(path, f"unsupported transfer syntax {syntax} ({e})") from None
        if arr.shape != (rows, columns):
            raise _fail(path, f"pixel data of shape {arr.shape}, expected {(rows, columns)}")
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        return ds, mask_stored_bits(arr, bits, signed)
    except ValueError as e:
        message = str(e)
        if message.startswith(str(path)):
            raise
        raise _fail(path, message) from None
    except Exception as e:
        raise _fail(path, f"{type(e).__name__}: {e}") from None


@_silenced
def read_dicom(path) -> DicomImage:
    """Read a grey-scale DICOM file into a :class:`DicomImage` (pixels float32 in ``[0, 1]``, tissue bright).

    Raises:
        ValueError: one line naming the file when it is not DICOM, has no pixel
            data, uses a transfer syntax pydicom cannot decode, is colour or
            multi-frame, or has damaged values.
    """
    path = Path(path)
    ds, stored = read_stored(path)
    try:
        pixels, voi = to_unit_range(ds, stored)
        if not np.isfinite(pixels).all():
            raise ValueError("non-finite values after rescale/window")
        return DicomImage(
            pixels=pixels, laterality=_laterality(ds), view=_view(ds),
            bits=int(ds.BitsStored), photometric=_text(ds, "PhotometricInterpretation").upper(),
            path=path, is_phantom=is_phantom_dataset(ds), voi=voi,
            transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
            comments=_text(ds, "ImageComments"), patient_id=_text(ds, "PatientID"))
    except Exception as e:
        raise _fail(path, f"{type(e).__name__}: {e}") from None


# ------------------------------------------------------------------ writing
def make_uid(*parts) -> str:
    """A deterministic DICOM UID derived from ``parts`` (same parts, same UID)."""
    from pydicom.uid import generate_uid
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_dicom(path, stored: np.ndarray, *, bits_stored: int = 16,
                photometric: str = "MONOCHROME2", rle: bool = False,
                laterality: str | None = None, laterality_keyword: str = "ImageLaterality",
                view: str | None = None, patient_id: str = "", comments: str = "",
                series_description: str = "", window: tuple[float, float] | None = None,
                rescale: tuple[float, float] | None = None, uid_seed=None,
                extra: dict | None = None) -> Path:
    """Write a grey-scale single-frame DICOM file (Secondary Capture, like CBIS-DDSM).

    Args:
        stored: the values to store, unsigned integers below ``2**bits_stored``
            (shape (rows, columns); uint8 for ``bits_stored <= 8``, else uint16).
        photometric: ``"MONOCHROME2"`` or ``"MONOCHROME1"`` (the caller inverts).
        rle: RLE Lossless instead of Explicit VR Little Endian.
        laterality: ``"L"``/``"R"`` written to ``laterality_keyword``
            (``ImageLaterality`` or ``Laterality``); ``None`` writes no tag.
        view: ``ViewPosition`` (``None``: no tag).
        window: ``(center, width)`` or ``None``.
        rescale: ``(slope, intercept)`` or ``None``.
        uid_seed: anything; the UIDs derive from it and ``path``'s name, so the
            same call writes the same bytes (no dates or random UIDs).
        extra: more ``keyword: value`` elements.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, RLELossless

    path = Path(path)
    stored = np.asarray(stored)
    allocated = 8 if bits_stored <= 8 else 16
    dtype = np.uint8 if allocated == 8 else np.uint16
    if stored.ndim != 2:
        raise ValueError(f"write_dicom expects a 2-D array, got shape {stored.shape}")
    if stored.size and (stored.min() < 0 or stored.max() >= (1 << bits_stored)):
        raise ValueError(f"stored values must lie in [0, {(1 << bits_stored) - 1}]")
    stored = stored.astype(dtype)
    seed = uid_seed if uid_seed is not None else path.name
    sop_uid = make_uid(seed, path.name, "sop")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = make_uid(seed, "study")
    ds.SeriesInstanceUID = make_uid(seed, path.name, "series")
    ds.Modality = "MG"
    ds.ConversionType = "DF"
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    if series_description:
        ds.SeriesDescription = series_description
    if comments:
        ds.ImageComments = comments
    if laterality is not None:
        setattr(ds, laterality_keyword, laterality)
    if view is not None:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = (f"{v:g}" for v in rescale)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (f"{v:g}" for v in window)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    if rle:
        ds.compress(RLELossless, stored, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path
