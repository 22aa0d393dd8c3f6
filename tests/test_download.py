"""The mini-MIAS downloader against a loopback HTTP server (with Range support)."""
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mammo_demo import download as dl
from mammo_demo.mias import load_mias, write_pgm

INFO = "REFNUM BG CLASS SEVERITY X Y RADIUS \nmdb001 G CIRC B 535 425 197\nmdb002 D NORM \n"


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
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
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


def test_download_verify_unpack(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    sha = hashlib.sha256(server.payload).hexdigest()
    out = dl.download_mias(dest, url=server.url, sha256=sha, progress=False)
    assert out == dest
    check_unpacked(out, files)
    assert not (dest / "all-mias.tar.gz").exists() and not (dest / "all-mias.tar.gz.partial").exists()
    assert server.requests == [None]
    ds = load_mias(out)
    assert len(ds) == 2 and not ds.is_phantom


def test_nested_layout_returns_the_info_folder(server, tmp_path):
    server.payload, files = make_archive(tmp_path, prefix="all-mias/")
    out = dl.download_mias(tmp_path / "d", url=server.url, progress=False, keep_archive=True)
    assert out == tmp_path / "d" / "all-mias"
    check_unpacked(out, files)
    assert (tmp_path / "d" / "all-mias.tar.gz").read_bytes() == server.payload


def test_interrupted_download_resumes(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    half = len(server.payload) // 2
    server.cut_after = half
    dest = tmp_path / "mias"
    with pytest.raises(dl.DownloadError, match="resume"):
        dl.download_mias(dest, url=server.url, progress=False, timeout=10)
    partial = dest / "all-mias.tar.gz.partial"
    assert partial.stat().st_size == half
    server.cut_after = None
    out = dl.download_mias(dest, url=server.url, progress=False)   # the partial file is allowed
    assert server.requests == [None, f"bytes={half}-"]
    check_unpacked(out, files)
    assert not partial.exists()


def test_truncated_partial_is_completed_with_a_range_request(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(server.payload[:100])
    out = dl.download_mias(dest, url=server.url, progress=False,
                           sha256=hashlib.sha256(server.payload).hexdigest())
    assert server.requests == ["bytes=100-"]
    check_unpacked(out, files)


def test_server_without_range_support_restarts(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    server.honour_range = False
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(b"garbage that is not the start of the file")
    out = dl.download_mias(dest, url=server.url, progress=False)
    check_unpacked(out, files)


def test_complete_partial_answered_416(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "all-mias.tar.gz.partial").write_bytes(server.payload)
    out = dl.download_mias(dest, url=server.url, progress=False)
    assert server.requests == [f"bytes={len(server.payload)}-"]
    check_unpacked(out, files)


def test_bad_checksum(server, tmp_path):
    server.payload, _ = make_archive(tmp_path)
    dest = tmp_path / "mias"
    with pytest.raises(dl.DownloadError, match="SHA-256 mismatch"):
        dl.download_mias(dest, url=server.url, sha256="0" * 64, progress=False)
    assert [p.name for p in dest.iterdir()] == []          # the wrong file is gone, nothing unpacked


def test_non_empty_dest_is_refused(server, tmp_path):
    server.payload, files = make_archive(tmp_path)
    dest = tmp_path / "mias"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty.*mine.txt"):
        dl.download_mias(dest, url=server.url, progress=False)
    assert server.requests == []                           # refused before any download
    out = dl.download_mias(dest, url=server.url, progress=False, force=True)
    check_unpacked(out, files)
    assert (dest / "mine.txt").read_text() == "keep me"


def test_archive_that_is_not_mias(server, tmp_path):
    server.payload, _ = make_archive(tmp_path, info=False)
    with pytest.raises(dl.DownloadError, match="no Info.txt"):
        dl.download_mias(tmp_path / "a", url=server.url, progress=False)
    server.payload = b"this is not a tar file at all"
    with pytest.raises(dl.DownloadError, match="not a readable tar"):
        dl.download_mias(tmp_path / "b", url=server.url, progress=False)


def test_path_traversal_is_refused(server, tmp_path):
    server.payload, _ = make_archive(tmp_path, extra={"../evil.txt": b"outside"})
    with pytest.raises(dl.DownloadError, match="unsafe path"):
        dl.download_mias(tmp_path / "c", url=server.url, progress=False)
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
        dl.unpack_archive(path, tmp_path / "out")


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="404"):
        dl.download_mias(tmp_path / "d", url=server.url.replace("all-mias", "missing"), progress=False)


def test_official_address():
    assert dl.MIAS_URL == "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
