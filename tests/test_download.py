"""The mini-MIAS downloader against a loopback HTTP server (with Range support)."""
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mammo_demo import download as dl
from mammo_demo.mias import load_mias, write_pgm

INFO = "REFNUM BG CLASS SEVERITY X Y RADIUS \nmdb001 G CIRC B 35 25 19\nmdb002 D NORM \n"
#: the set the small test archives hold: two 64x64 images
SMALL = dl.ExpectedSet(("mdb001", "mdb002"), image_size=64)


def make_archive(tmp_path, prefix="", extra=None, info=True, noise=True):
    """A small tar.gz shaped like all-mias.tar.gz (Info.txt, README, mdbNNN.pgm)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    files = {"README": b"MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY (test copy)\n"}
    if info:
        files["Info.txt"] = INFO.encode()
    for ref in ("mdb001", "mdb002"):
        path = write_pgm(src / f"{ref}.pgm", rng.integers(0, 256, (64, 64), dtype=np.uint8)
                         if noise else np.zeros((64, 64), np.uint8))
        files[f"{ref}.pgm"] = path.read_bytes()
    files.update(extra or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(prefix + name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buf.getvalue(), files


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):          # keep the test output quiet
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if self.path != "/all-mias.tar.gz":
            self.send_error(404)
            return
        data, start = srv.payload, 0
        wanted = self.headers.get("Range")
        if wanted and srv.honour_range:
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if srv.whole_body_206:        # a broken server: 206, but the whole body from byte 0
                start = 0
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drip:                       # a server that never finishes: 16 bytes at a time
            import time
            try:
                for i in range(0, len(body), 16):
                    self.wfile.write(body[i:i + 16])
                    self.wfile.flush()
                    time.sleep(srv.drip)
            except OSError:
                pass
            return
        if srv.cut_after is not None:      # simulate a dropped connection
            self.wfile.write(body[:srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.payload, srv.requests, srv.honour_range, srv.cut_after = b"", [], True, None
    srv.whole_body_206, srv.drip = False, 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/all-mias.tar.gz"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def check_unpacked(folder, files):
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name
    assert dl.is_complete(folder)


def test_download_verify_unpack(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    sha = hashlib.sha256(server.payload).hexdigest()
    out = dl.download_mias(dest, url=server.url, sha256=sha, progress=False, expected=SMALL)
    assert out == dest
    check_unpacked(out, files)
    assert not (dest / "all-mias.tar.gz").exists() and not (dest / "all-mias.tar.gz.partial").exists()
    assert server.requests == [None]
    ds = load_mias(out)
    assert len(ds) == 2 and not ds.is_phantom


def test_nested_layout_returns_the_info_folder(server, tmp_path):
    server.payload, files = make_archive(tmp_path, prefix="all-mias/")
    out = dl.download_mias(tmp_path / "d", url=server.url, progress=False, expected=SMALL, keep_archive=True)
    assert out == tmp_path / "d" / "all-mias"
    check_unpacked(out, files)
    assert (tmp_path / "d" / "all-mias.tar.gz").read_bytes() == server.payload


def test_interrupted_download_resumes(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    half = len(server.payload) // 2
    server.cut_after = half
    dest = tmp_path / "mias"
    with pytest.raises(dl.DownloadError, match="resume"):
        dl.download_mias(dest, url=server.url, progress=False, expected=SMALL, timeout=10)
    partial = dest / "all-mias.tar.gz.partial"
    assert partial.stat().st_size == half
    server.cut_after = None
    out = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)   # the partial file is allowed
    assert server.requests == [None, f"bytes={half}-"]
    check_unpacked(out, files)
    assert not partial.exists()


def test_truncated_partial_is_completed_with_a_range_request(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(server.payload[:100])
    out = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL,
                           sha256=hashlib.sha256(server.payload).hexdigest())
    assert server.requests == ["bytes=100-"]
    check_unpacked(out, files)


def test_server_without_range_support_restarts(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    server.honour_range = False
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(b"garbage that is not the start of the file")
    out = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)
    check_unpacked(out, files)


def test_complete_partial_answered_416(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(server.payload)
    out = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)
    assert server.requests == [f"bytes={len(server.payload)}-"]
    check_unpacked(out, files)


def test_bad_checksum(server, tmp_path):
    server.payload, _ = make_archive(tmp_path)
    dest = tmp_path / "mias"
    with pytest.raises(dl.DownloadError, match="SHA-256 mismatch"):
        dl.download_mias(dest, url=server.url, sha256="0" * 64, progress=False, expected=SMALL)
    assert [p.name for p in dest.iterdir()] == []          # the wrong file is gone, nothing unpacked


def test_non_empty_dest_is_refused(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty.*mine.txt"):
        dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)
    assert server.requests == []                           # refused before any download
    out = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL, force=True)
    check_unpacked(out, files)
    assert (dest / "mine.txt").read_text() == "keep me"


def test_archive_that_is_not_mias(server, tmp_path):
    server.payload, _ = make_archive(tmp_path, info=False)
    with pytest.raises(dl.DownloadError, match="no Info.txt"):
        dl.download_mias(tmp_path / "a", url=server.url, progress=False, expected=SMALL)
    server.payload = b"this is not a tar file at all"
    with pytest.raises(dl.DownloadError, match="not a readable tar"):
        dl.download_mias(tmp_path / "b", url=server.url, progress=False, expected=SMALL)


def test_path_traversal_is_refused(server, tmp_path):
    server.payload, _ = make_archive(tmp_path, extra={"../evil.txt": b"outside"})
    with pytest.raises(dl.DownloadError, match="unsafe path"):
        dl.download_mias(tmp_path / "c", url=server.url, progress=False, expected=SMALL)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "c" / "Info.txt").exists()       # nothing unpacked at all


def test_links_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("Info.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    path = tmp_path / "a.tar"
    path.write_bytes(buf.getvalue())
    with pytest.raises(dl.DownloadError, match="link"):
        dl.unpack_archive(path, tmp_path / "out", SMALL)


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="404"):
        dl.download_mias(tmp_path / "d", url=server.url.replace("all-mias", "missing"), progress=False, expected=SMALL)


def test_official_address():
    assert dl.MIAS_URL == "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"


# ------------------------------------------------------------------ issue 18: every byte checked
def _offline(dest, data):
    """download_mias on an archive already in ``dest`` (no network: the URL is never asked)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "all-mias.tar.gz").write_bytes(data)
    return dl.download_mias(dest, url="http://127.0.0.1:9/unused", progress=False, expected=SMALL)


def _mutations(payload, rng):
    n = len(payload)
    for _ in range(120):                                   # bit flips
        b = bytearray(payload)
        for pos in rng.integers(0, n, size=int(rng.integers(1, 4))):
            b[pos] ^= 1 << int(rng.integers(0, 8))
        yield "bit flip", bytes(b)
    for cut in rng.integers(1, n, size=30):                # truncation
        yield "truncated", payload[:cut]
    for _ in range(30):                                    # zeroed runs
        b = bytearray(payload)
        start = int(rng.integers(0, n - 1))
        length = int(rng.integers(1, 200))
        b[start:start + length] = bytes(len(b[start:start + length]))
        yield "zeroed run", bytes(b)
    for cut in rng.integers(1, n, size=20):                # a bad resume: prefix + the whole body
        yield "bad resume", payload[:cut] + payload
    yield "trailing garbage", payload + b"garbage"


def test_mutated_archives_are_rejected_or_give_the_verified_set(tmp_path):
    payload, files = make_archive(tmp_path)
    rng = np.random.default_rng(18)
    outcomes = {"rejected": 0, "correct": 0}
    for i, (kind, data) in enumerate(_mutations(payload, rng)):
        dest = tmp_path / f"m{i}"
        try:
            folder = _offline(dest, data)
        except dl.DownloadError:
            outcomes["rejected"] += 1
            assert sorted(p.name for p in dest.iterdir()) == [], (kind, i)   # nothing unpacked
            continue
        outcomes["correct"] += 1
        check_unpacked(folder, files)                                      # byte for byte
    assert outcomes["rejected"] > 150, outcomes


def test_a_set_missing_an_image_or_of_another_size_is_refused(tmp_path):
    payload, _ = make_archive(tmp_path, extra={"Info.txt": (INFO + "mdb003 D NORM\n").encode()})
    with pytest.raises(dl.DownloadError, match="holds 2 of the 3 mini-MIAS images; missing mdb003"):
        dest = tmp_path / "a"
        dest.mkdir()
        (dest / "all-mias.tar.gz").write_bytes(payload)
        dl.download_mias(dest, url="http://127.0.0.1:9/", progress=False,
                         expected=dl.ExpectedSet(("mdb001", "mdb002", "mdb003"), 64))
    assert [p.name for p in (tmp_path / "a").iterdir()] == []
    payload, _ = make_archive(tmp_path)
    with pytest.raises(dl.DownloadError, match="mdb001.pgm is 64x64, expected 128x128"):
        dest = tmp_path / "b"
        dest.mkdir()
        (dest / "all-mias.tar.gz").write_bytes(payload)
        dl.download_mias(dest, url="http://127.0.0.1:9/", progress=False,
                         expected=dl.ExpectedSet(("mdb001", "mdb002"), 128))
    assert [p.name for p in (tmp_path / "b").iterdir()] == []


def test_info_must_list_exactly_the_expected_images(tmp_path):
    payload, _ = make_archive(tmp_path, extra={"Info.txt": b"mdb001 G NORM\n"})
    with pytest.raises(dl.DownloadError, match="lists 1 images, expected the 2 of mini-MIAS; "
                                               "missing mdb002"):
        _offline(tmp_path / "d", payload)


def test_member_sizes_are_bounded_by_the_format(tmp_path):
    payload, _ = make_archive(tmp_path, extra={"mdb002.pgm": b"P5\n64 64\n255\n" + bytes(1 << 21)})
    with pytest.raises(dl.DownloadError, match="declares 2,097,16.* bytes, more than its format"):
        _offline(tmp_path / "a", payload)
    # a header declaring a 1 GiB member followed by almost nothing: refused before any unpacking
    import gzip
    member = tarfile.TarInfo("mdb001.pgm")
    member.size = 1 << 30
    bomb = gzip.compress(member.tobuf() + bytes(4096))
    with pytest.raises(dl.DownloadError, match="declares 1,073,741,824 bytes"):
        _offline(tmp_path / "b", bomb)
    assert [p.name for p in (tmp_path / "b").iterdir()] == []


def test_the_completion_marker_is_written_last_and_trusted(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    folder = dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)
    marker = json.loads((folder / dl.COMPLETE_MARKER).read_text())
    assert marker["images"] == 2 and marker["archive_sha256"] == hashlib.sha256(server.payload).hexdigest()
    assert dl.download_mias(dest, url=server.url, progress=False, expected=SMALL) == folder
    assert server.requests == [None]                  # verified already: not downloaded again
    # an unpacked folder without the marker is an incomplete download, not a finished one
    (folder / dl.COMPLETE_MARKER).unlink()
    with pytest.raises(FileExistsError, match="holds no verified download"):
        dl.download_mias(dest, url=server.url, progress=False, expected=SMALL)


def test_a_206_answer_with_the_whole_body_restarts_the_file(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    server.whole_body_206 = True
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(server.payload[:100])
    check_unpacked(dl.download_mias(dest, url=server.url, progress=False, expected=SMALL), files)
    assert server.requests == ["bytes=100-"]


def test_the_timeout_bounds_the_whole_transfer(server, tmp_path):
    import time
    server.payload, _ = make_archive(tmp_path)
    server.drip = 0.05                                # one small block every 50 ms, for ever
    t0 = time.monotonic()
    with pytest.raises(dl.DownloadError, match="took longer than 0.5 s|interrupted"):
        dl.download_mias(tmp_path / "mias", url=server.url, progress=False, timeout=0.5,
                         expected=SMALL)
    assert time.monotonic() - t0 < 3
