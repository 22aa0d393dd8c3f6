"""DICOM reader: pixel codings, bit depths, rescale, VOI, MONOCHROME1, tags, errors, fuzzing."""
import warnings

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mammo_demo.dicom import (DicomImage, apply_window, read_dicom, stored_range,
                              write_dicom)


def ramp(bits, shape=(64, 48)):
    """Stored values covering the whole range of ``bits`` bits."""
    top = (1 << bits) - 1
    return np.round(np.linspace(0, top, shape[0] * shape[1])).reshape(shape).astype(np.uint16)


def edit(path, **elements):
    """Rewrite ``path`` with some elements set (None deletes)."""
    ds = pydicom.dcmread(path)
    for keyword, value in elements.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("bits", [12, 14, 16])
@pytest.mark.parametrize("rle", [False, True])
def test_bit_depths_and_rle_read_the_full_range(tmp_path, bits, rle):
    stored = ramp(bits)
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=bits, rle=rle)
    image = read_dicom(path)
    assert isinstance(image, DicomImage)
    assert image.pixels.dtype == np.float32 and image.shape == (64, 48)
    assert image.bits == bits and image.voi == "bits"
    assert image.transfer_syntax == ("1.2.840.10008.1.2.5" if rle else "1.2.840.10008.1.2.1")
    np.testing.assert_allclose(image.pixels, stored / ((1 << bits) - 1), atol=1e-6)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0


def test_rle_and_uncompressed_decode_identically(tmp_path):
    stored = (np.random.default_rng(0).integers(0, 1 << 14, (64, 48))).astype(np.uint16)
    plain = read_dicom(write_dicom(tmp_path / "p.dcm", stored, bits_stored=14))
    packed = read_dicom(write_dicom(tmp_path / "r.dcm", stored, bits_stored=14, rle=True))
    np.testing.assert_array_equal(plain.pixels, packed.pixels)


def test_bits_above_bits_stored_are_ignored(tmp_path):
    stored = ramp(12)
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.PixelData = (stored | 0xF000).astype(np.uint16).tobytes()   # overlay bits set
    ds.save_as(path)
    np.testing.assert_allclose(read_dicom(path).pixels, stored / 4095.0, atol=1e-6)


def test_monochrome1_is_inverted_so_tissue_is_bright(tmp_path):
    stored = ramp(16)
    m2 = read_dicom(write_dicom(tmp_path / "m2.dcm", stored))
    m1 = read_dicom(write_dicom(tmp_path / "m1.dcm", 65535 - stored, photometric="MONOCHROME1"))
    assert m1.photometric == "MONOCHROME1"
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=1e-6)


def test_rescale_then_window(tmp_path):
    stored = np.full((16, 12), 2000, dtype=np.uint16)
    stored[0, 0], stored[0, 1] = 0, 4095
    # modality value 2 * 2000 + 100 = 4100 = the window centre -> about 0.5
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=12, rescale=(2, 100),
                       window=(4100, 2001))
    image = read_dicom(path)
    assert image.voi == "window"
    assert image.pixels[5, 5] == pytest.approx(0.5, abs=1e-3)
    assert image.pixels[0, 0] == 0.0 and image.pixels[0, 1] == 1.0


def test_rescale_without_window_uses_the_range_of_the_stored_bits(tmp_path):
    stored = ramp(12)
    image = read_dicom(write_dicom(tmp_path / "a.dcm", stored, bits_stored=12, rescale=(0.5, -7)))
    np.testing.assert_allclose(image.pixels, stored / 4095.0, atol=1e-6)
    # not the image's own min/max: a dim film stays dim
    dim = read_dicom(write_dicom(tmp_path / "d.dcm", stored // 4, bits_stored=12))
    assert dim.pixels.max() == pytest.approx(1023 / 4095, abs=1e-6)


def test_window_functions_follow_the_dicom_formulas():
    v = np.array([0.0, 99.5, 100.0, 150.0, 1000.0])
    linear = apply_window(v, 100, 101)                     # (v - 99.5) / 100 + 0.5
    np.testing.assert_allclose(linear, np.clip((v - 99.5) / 100 + 0.5, 0, 1))
    exact = apply_window(v, 100, 100, "LINEAR_EXACT")
    np.testing.assert_allclose(exact, np.clip((v - 100) / 100 + 0.5, 0, 1))
    sigmoid = apply_window(v, 100, 100, "SIGMOID")
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-4 * (v - 100) / 100)))
    with pytest.raises(ValueError):
        apply_window(v, 100, 0.5)


def test_sigmoid_window_from_the_file(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", ramp(12), bits_stored=12, window=(2048, 1000),
                       extra={"VOILUTFunction": "SIGMOID"})
    image = read_dicom(path)
    expected = 1 / (1 + np.exp(-4 * (ramp(12).astype(float) - 2048) / 1000))
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_voi_lut_sequence_wins_over_the_window(tmp_path):
    stored = ramp(12, (16, 16))
    path = write_dicom(tmp_path / "a.dcm", stored, bits_stored=12, window=(10, 10))
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.LUTDescriptor = [256, 1000, 8]          # 256 entries for values 1000..1255, 8-bit output
    item.LUTData = np.arange(255, -1, -1).astype("<u2").tobytes()   # a reversed ramp (OW)
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    image = read_dicom(path)
    assert image.voi == "lut"
    v = stored.astype(int)
    expected = (255 - np.clip(v - 1000, 0, 255)) / 255.0
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_signed_12_bit_data_use_the_signed_range(tmp_path):
    values = np.linspace(-2048, 2047, 64 * 48).round().astype(np.int16).reshape(64, 48)
    path = write_dicom(tmp_path / "a.dcm", np.zeros((64, 48), np.uint16), bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.PixelRepresentation = 1
    ds.PixelData = (values.astype(np.uint16) & 0x0FFF).tobytes()   # 12-bit two's complement
    ds.save_as(path)
    image = read_dicom(path)
    np.testing.assert_allclose(image.pixels, (values + 2048) / 4095.0, atol=1e-6)


def test_stored_range():
    assert stored_range(12, False) == (0, 4095)
    assert stored_range(16, True) == (-32768, 32767)


def test_laterality_and_view_tags(tmp_path):
    img = ramp(8, (16, 12)).astype(np.uint8)
    a = read_dicom(write_dicom(tmp_path / "a.dcm", img, bits_stored=8, laterality="L", view="CC"))
    assert (a.laterality, a.view) == ("L", "CC")
    with warnings.catch_warnings():              # pydicom warns about the lower-case CS value
        warnings.simplefilter("ignore", UserWarning)
        b = read_dicom(write_dicom(tmp_path / "b.dcm", img, bits_stored=8, laterality="R",
                                   laterality_keyword="Laterality", view="mlo"))
    assert (b.laterality, b.view) == ("R", "MLO")
    c = read_dicom(write_dicom(tmp_path / "c.dcm", img, bits_stored=8))
    assert (c.laterality, c.view) == (None, None)        # the caller falls back to its records
    d = read_dicom(edit(write_dicom(tmp_path / "d.dcm", img, bits_stored=8), ImageLaterality="B"))
    assert d.laterality is None


def test_phantom_marker_is_read_from_a_text_field(tmp_path):
    img = ramp(8, (16, 12)).astype(np.uint8)
    assert read_dicom(write_dicom(tmp_path / "p.dcm", img, bits_stored=8,
                                  comments="PHANTOM: synthetic")).is_phantom
    assert read_dicom(write_dicom(tmp_path / "s.dcm", img, bits_stored=8,
                                  series_description="PHANTOM full mammogram images")).is_phantom
    assert not read_dicom(write_dicom(tmp_path / "r.dcm", img, bits_stored=8,
                                      comments="a film")).is_phantom


def test_write_is_deterministic(tmp_path):
    img = ramp(16)
    a = write_dicom(tmp_path / "x" / "1-1.dcm", img, rle=True, uid_seed=(3, "a"))
    b = write_dicom(tmp_path / "y" / "1-1.dcm", img, rle=True, uid_seed=(3, "a"))
    assert a.read_bytes() == b.read_bytes()


def assert_one_line_error(path, match):
    with pytest.raises(ValueError, match=match) as info:
        read_dicom(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not a dicom file\nsecond line\n")
    assert_one_line_error(path, "not a DICOM file")
    assert_one_line_error(tmp_path / "missing.dcm", "not a DICOM file")


def test_no_pixel_data(tmp_path):
    path = edit(write_dicom(tmp_path / "a.dcm", ramp(12), bits_stored=12), PixelData=None)
    assert_one_line_error(path, "no pixel data")


def test_unsupported_transfer_syntax(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", ramp(12), bits_stored=12, rle=True)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"     # JPEG 2000 Lossless
    ds.save_as(path)
    try:
        read_dicom(path)
    except ValueError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    # an unknown one is refused whatever plugins are installed
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    ds.save_as(path)
    assert_one_line_error(path, "transfer syntax")


def test_colour_is_refused(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", ramp(8, (8, 8)).astype(np.uint8), bits_stored=8)
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = np.zeros((8, 8, 3), np.uint8).tobytes()
    ds.save_as(path)
    assert_one_line_error(path, "grey-scale")


def test_palette_colour_is_refused(tmp_path):
    path = edit(write_dicom(tmp_path / "a.dcm", ramp(8, (8, 8)).astype(np.uint8), bits_stored=8),
                PhotometricInterpretation="PALETTE COLOR")
    assert_one_line_error(path, "grey-scale")


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    img = ramp(12, (12, 10))
    return [write_dicom(folder / "plain.dcm", img, bits_stored=12, laterality="L", view="CC",
                        window=(2000, 3000)).read_bytes(),
            write_dicom(folder / "rle.dcm", img, bits_stored=12, rle=True,
                        photometric="MONOCHROME1").read_bytes()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_fuzzed_files_raise_only_the_documented_error(tmp_path, seed_files, which, edits, cut):
    data = bytearray(seed_files[which])
    for where, byte in edits:
        data[128 + int(where * (len(data) - 128))] = byte   # keep the preamble; mutate the rest
    if cut is not None:
        data = data[:int(cut * len(data))]
    path = tmp_path / "fuzzed.dcm"
    path.write_bytes(bytes(data))
    try:
        image = read_dicom(path)
    except ValueError as e:
        assert "\n" not in str(e) and str(path) in str(e)
    else:
        assert image.pixels.dtype == np.float32
        assert np.isfinite(image.pixels).all()
        assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
