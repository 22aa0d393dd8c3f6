"""The mini-MIAS reader: Info.txt parsing, PGM files, the dataset, on small real-format fixtures."""
import numpy as np
import pytest

from mammo_demo import mias
from mammo_demo.mias import (MiasFormatError, PGMError, load_mias, parse_info, read_info,
                             read_pgm, read_phantom_marker, write_pgm)

# The real file's quirks: a header line with a trailing space, NORM rows with a
# trailing space, several rows for one image, a CALC row without coordinates,
# a row whose coordinates are a note, blank lines, tabs and a Windows line end.
INFO = (
    "REFNUM BG CLASS SEVERITY X Y RADIUS \n"
    "mdb001 G CIRC B 535 425 197\n"
    "mdb002 D NORM \n"
    "\n"
    "mdb003 F CIRC B 47 13 30\r\n"
    "mdb003 F CIRC B 50 16 26   \n"
    "mdb004 D CALC M\n"
    "mdb005\tF  SPIC M 60 0 12\t\n"
    "mdb006 F CIRC B *NOTE 3*\n"
    "   \n"
)


# The same rows with coordinates that fit a 64x64 image.
SMALL_INFO = (INFO.replace("535 425 197", "35 25 9").replace("60 0 12", "60 0 2")
              .replace("47 13 30", "47 13 3").replace("50 16 26", "50 16 6"))


def write_folder(folder, info=SMALL_INFO, size=64, refs=("mdb001", "mdb002", "mdb003", "mdb004",
                                                   "mdb005", "mdb006")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Info.txt").write_text(info)
    rng = np.random.default_rng(0)
    for ref in refs:
        write_pgm(folder / f"{ref}.pgm", rng.integers(0, 256, size=(size, size), dtype=np.uint8))
    return folder


def test_parse_rows_and_quirks():
    recs = parse_info(INFO, image_size=1024)
    assert [r.refnum for r in recs] == ["mdb001", "mdb002", "mdb003", "mdb003", "mdb004",
                                        "mdb005", "mdb006"]
    normal = recs[1]
    assert normal.is_normal and normal.severity is None and normal.label == "normal"
    assert not normal.has_coordinates
    first = recs[0]
    assert (first.x, first.y, first.radius) == (535, 425, 197)
    assert (first.row, first.col) == (1024 - 425, 535)        # bottom-left origin
    assert first.label == "benign" and first.is_mass
    assert recs[2].line == 5 and recs[3].line == 6            # 1-based line numbers, blank lines counted
    assert (recs[3].x, recs[3].y, recs[3].radius) == (50, 16, 26)   # trailing spaces ignored
    calc = recs[4]
    assert calc.abnormality == "CALC" and calc.severity == "M" and calc.label == "malignant"
    assert not calc.has_coordinates and calc.row is None and calc.radius is None
    spic = recs[5]
    assert (spic.row, spic.col) == (1024, 60)                 # y = 0 -> one past the last row
    note = recs[6]
    assert note.note == "*NOTE 3*" and not note.has_coordinates


def test_row_conversion_uses_image_size():
    rec = parse_info("mdb001 G CIRC B 10 20 5\n", image_size=64)[0]
    assert (rec.row, rec.col) == (44, 10)


def test_to_line_roundtrip():
    for rec in parse_info(INFO):
        again = parse_info(rec.to_line())[0]
        assert (again.refnum, again.abnormality, again.severity, again.x, again.y, again.radius,
                again.note) == (rec.refnum, rec.abnormality, rec.severity, rec.x, rec.y,
                                rec.radius, rec.note)


@pytest.mark.parametrize("bad, lineno, words", [
    ("mdb001 G CIRC B 535 425\n", 2, "X Y RADIUS"),
    ("mdb001 G CIRC X 535 425 10\n", 2, "severity"),
    ("mdb001 Q NORM\n", 2, "background"),
    ("mdb001 G BLOB B 1 2 3\n", 2, "class"),
    ("mdb001 G CIRC B 1 two 3\n", 2, "integers"),
    ("mdb001 G CIRC B 2000 2 3\n", 2, "outside"),
    ("mdb001 G CIRC B 1 2 0\n", 2, "radius"),
    ("mdb001 G NORM 1 2 3\n", 2, "NORM"),
    ("mdb001 G CIRC\n", 2, "severity"),
    ("mdbX01 G NORM\n", 2, "mdb"),
])
def test_malformed_row_names_file_and_line(tmp_path, bad, lineno, words):
    path = tmp_path / "Info.txt"
    path.write_text("mdb002 D NORM \n" + bad)
    with pytest.raises(MiasFormatError) as err:
        read_info(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {lineno}" in msg and words in msg


def test_stray_text_after_data_rows_is_an_error(tmp_path):
    path = tmp_path / "Info.txt"
    path.write_text("REFNUM BG CLASS\nmdb001 G NORM\n\nthis is not a row\n")
    with pytest.raises(MiasFormatError, match=r"line 4"):
        read_info(path)


def test_preamble_and_comments_are_skipped():
    recs = parse_info("Some README text: columns are\nREFNUM BG CLASS\n# comment\nmdb001 G NORM\n"
                      "# another\nmdb002 F NORM\n")
    assert [r.refnum for r in recs] == ["mdb001", "mdb002"]


def test_no_rows_and_missing_file(tmp_path):
    with pytest.raises(MiasFormatError, match="no data rows"):
        parse_info("REFNUM BG CLASS\n\n")
    with pytest.raises(FileNotFoundError, match="Info.txt"):
        read_info(tmp_path / "Info.txt")


def test_pgm_roundtrip_with_comment(tmp_path):
    a = np.arange(35, dtype=np.uint8).reshape(5, 7)
    path = write_pgm(tmp_path / "a.pgm", a, comment="phantom: not patient data")
    data = path.read_bytes()
    assert data.startswith(b"P5\n# phantom: not patient data\n7 5\n255\n")
    b = read_pgm(path)
    assert b.dtype == np.uint8 and np.array_equal(a, b)
    with pytest.raises(ValueError, match="one line"):
        write_pgm(tmp_path / "b.pgm", a, comment="two\nlines")
    with pytest.raises(ValueError, match="2-D"):
        write_pgm(tmp_path / "c.pgm", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        write_pgm(tmp_path / "d.pgm", np.full((2, 2), 300))


def test_pgm_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pgm"
    with pytest.raises(FileNotFoundError, match="nope.pgm"):
        read_pgm(missing)
    p2 = tmp_path / "p2.pgm"
    p2.write_bytes(b"P2\n2 2\n255\n0 0 0 0\n")
    with pytest.raises(PGMError, match=r"p2\.pgm.*P5"):
        read_pgm(p2)
    short = tmp_path / "short.pgm"
    short.write_bytes(b"P5\n4 4\n255\n" + bytes(10))
    with pytest.raises(PGMError, match=r"short\.pgm.*truncated"):
        read_pgm(short)
    wide = tmp_path / "wide.pgm"
    wide.write_bytes(b"P5\n2 2\n65535\n" + bytes(8))
    with pytest.raises(PGMError, match=r"wide\.pgm.*8-bit"):
        read_pgm(wide)
    header = tmp_path / "header.pgm"
    header.write_bytes(b"P5\n4")
    with pytest.raises(PGMError, match=r"header\.pgm.*header"):
        read_pgm(header)


def test_dataset_reads_folder(tmp_path):
    folder = write_folder(tmp_path / "mias", size=64)
    ds = load_mias(folder, image_size=64)
    assert len(ds) == 6 and ds.refnums[:3] == ["mdb001", "mdb002", "mdb003"]
    assert not ds.is_phantom and ds.phantom_info is None
    assert len(ds.rows("mdb003")) == 2
    img = ds.image("mdb001")
    assert img.shape == (64, 64) and img.dtype == np.uint8
    assert ds.image_label("mdb002") == "normal" and ds.image_label("mdb004") == "malignant"
    assert ds.class_counts()["CIRC"] == 4
    summary = ds.summary()
    assert summary["kind"] == "real" and summary["rows"] == 7 and summary["images"] == 6
    assert summary["rows_without_coordinates"] == 2
    with pytest.raises(KeyError, match="mdb999"):
        ds.rows("mdb999")


def test_dataset_missing_image_names_file(tmp_path):
    folder = write_folder(tmp_path / "mias", refs=("mdb001", "mdb002", "mdb003", "mdb005", "mdb006"))
    with pytest.raises(FileNotFoundError) as err:
        load_mias(folder, image_size=64)
    assert "mdb004.pgm" in str(err.value) and "line 7" in str(err.value)


def test_dataset_wrong_image_size_names_file(tmp_path):
    folder = write_folder(tmp_path / "mias", size=32)
    ds = load_mias(folder, image_size=64)
    with pytest.raises(PGMError, match=r"mdb001\.pgm.*32x32.*64x64"):
        ds.image("mdb001")


def test_unreadable_image_names_file(tmp_path):
    folder = write_folder(tmp_path / "mias", size=64)
    (folder / "mdb002.pgm").write_bytes(b"not an image")
    ds = load_mias(folder, image_size=64)
    with pytest.raises(PGMError, match=r"mdb002\.pgm"):
        ds.image("mdb002")


def test_missing_folder_and_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mias(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Info.txt"):
        load_mias(tmp_path / "empty")


def test_info_file_name_is_case_insensitive(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "info.TXT").write_text("mdb001 G NORM \n")
    write_pgm(folder / "mdb001.pgm", np.zeros((8, 8), np.uint8))
    assert len(load_mias(folder, image_size=8)) == 1


def test_phantom_marker_and_image_size(tmp_path):
    folder = write_folder(tmp_path / "ph", info="mdb001 G NORM \n", size=32, refs=("mdb001",))
    (folder / mias.PHANTOM_MARKER).write_text(
        "THESE ARE SYNTHETIC PHANTOM IMAGES, NOT PATIENT DATA.\n\nkind: phantom\nseed: 3\n"
        "image_size: 32\n")
    marker = read_phantom_marker(folder)
    assert marker == {"kind": "phantom", "seed": "3", "image_size": "32"}
    ds = load_mias(folder)                     # image size taken from the marker
    assert ds.is_phantom and ds.image_size == 32 and ds.summary()["phantom_seed"] == "3"
    assert "phantom" in repr(ds)


# ------------------------------------------------------------------ issue 18: rows must not vanish
def test_a_utf8_byte_order_mark_keeps_the_first_row(tmp_path):
    path = tmp_path / "Info.txt"
    path.write_bytes(b"\xef\xbb\xbfmdb001 G CIRC B 535 425 197\nmdb002 D NORM\n")
    assert [r.refnum for r in read_info(path)] == ["mdb001", "mdb002"]
    assert [r.refnum for r in parse_info("\ufeffmdb001 G NORM\n")] == ["mdb001"]


@pytest.mark.parametrize("first", ["mbd001 G CIRC B 535 425 197", "ndb001 G NORM",
                                   "xyz001 F CALC M", "mdv001 D NORM"])
def test_a_typo_in_the_first_data_row_is_an_error_not_preamble(tmp_path, first):
    path = tmp_path / "Info.txt"
    path.write_text(f"REFNUM BG CLASS SEVERITY X Y RADIUS\n{first}\nmdb002 D NORM\n")
    with pytest.raises(MiasFormatError) as err:
        read_info(path)
    assert str(path) in str(err.value) and "line 2" in str(err.value)
    assert "is not 'mdb' followed by digits" in str(err.value)


def test_rows_not_starting_with_mdb_after_the_first_row_are_errors(tmp_path):
    path = tmp_path / "Info.txt"
    path.write_text("mdb001 G NORM\nREFNUM BG CLASS\nmdb002 D NORM\n")
    with pytest.raises(MiasFormatError, match=r"Info.txt, line 2: expected a data row"):
        read_info(path)


def test_a_radius_beyond_the_image_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "Info.txt"
    path.write_text("mdb001 G NORM\nmdb002 G CIRC B 535 425 100000\n")
    with pytest.raises(MiasFormatError) as err:
        read_info(path)
    msg = str(err.value)
    assert "line 2" in msg and "radius 100000 is larger than the 1024x1024 image" in msg
    assert "mdb002 G CIRC B 535 425 100000" in msg
    assert parse_info("mdb001 G CIRC B 10 10 1024\n")[0].radius == 1024      # the limit itself


# ------------------------------------------------------------------ fuzzing the readers
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TOKENS = st.sampled_from(["mdb001", "mdb0", "MDB002", "mbd003", "G", "F", "D", "X", "CIRC", "CALC",
                           "NORM", "SPIC", "B", "M", "*NOTE", "3*", "535", "-1", "0", "1024",
                           "100000", "+7", "", "#", "\ufeff", "REFNUM", "\t", "١٢٣"])
_LINES = st.lists(_TOKENS, max_size=9).map(" ".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(_LINES, max_size=8).map("\n".join), st.text(max_size=200)),
       st.sampled_from([64, 1024]))
def test_fuzz_parse_info_raises_only_the_documented_error(text, size):
    try:
        records = parse_info(text, image_size=size)
    except MiasFormatError:
        return
    for r in records:
        assert r.refnum.startswith("mdb")
        if r.radius is not None:
            assert 0 < r.radius <= size and 0 <= r.x <= size and 0 <= r.y <= size


_PGM_PARTS = st.sampled_from([b"P5", b"P2", b"\n", b" ", b"#c\n", b"2", b"3", b"255", b"0",
                              b"65535", b"99999999", b"\x00\xff", b"\xef\xbb\xbf", b"-1"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(st.lists(_PGM_PARTS, max_size=12).map(b"".join), st.binary(max_size=64)))
def test_fuzz_read_pgm_raises_only_the_documented_error(tmp_path, data):
    path = tmp_path / "fuzz.pgm"
    path.write_bytes(data)
    try:
        image = read_pgm(path)
    except PGMError as e:
        assert str(path) in str(e)
        return
    assert image.dtype == np.uint8 and image.ndim == 2 and image.size > 0
