"""Downloading the real mini-MIAS database, and checking every byte of it.

The Mammographic Image Analysis Society's mini-MIAS database (322 films,
1024x1024 8-bit PGM, 200 micron pixels, with ``Info.txt``, ``README`` and
``Licence.txt``) is distributed as one archive by the University of Essex's
Pilot European Image Processing Archive (PEIPA):

    http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz

(the address used by the database's users for years; the folder
``http://peipa.essex.ac.uk/pix/mias/`` lists it). Read ``Licence.txt`` in the
archive before using the images. The server offers plain HTTP only, so the
archive is checked end to end after download.

:func:`download_mias`:

1. returns at once when ``dest`` already holds a verified set (its
   completion marker :data:`COMPLETE_MARKER`); refuses a ``dest`` that holds
   anything other than its own partial download or an unfinished unpack of
   it, unless ``force=True``;
2. downloads with :mod:`urllib` into ``dest/all-mias.tar.gz.partial``; when
   that file exists from an interrupted run it asks for the rest with an HTTP
   ``Range: bytes=N-`` header and appends. A server that answers ``200``, or
   ``206`` starting at byte 0 (the whole body despite the range), replaces
   the partial; ``206`` at any other offset is refused. ``timeout`` bounds
   the **whole** transfer (each read waits at most the time that is left);
3. verifies the archive (:func:`verify_archive`): the SHA-256 when given;
   the **whole** compressed stream read to its end (so the gzip CRC-32 and
   length of every member are checked, and nothing may follow); every tar
   header valid up to the end-of-archive blocks (a corrupt header does not
   pass for the end of the archive: only zero bytes may follow the last
   member); only regular files and folders, no absolute paths, ``..`` or
   links, no sparse members; each member no larger than its format allows
   (a PGM of the expected side plus a header, ``Info.txt`` and the text
   files :data:`MAX_TEXT_BYTES`), and the unpacked total bounded;
4. unpacks into a temporary folder inside ``dest`` and checks the set
   (:func:`check_mias_set`): ``Info.txt`` parses and lists exactly the
   expected images (all 322 ``mdbNNN.pgm`` for mini-MIAS), each present as
   a readable PGM of the expected size (1024x1024);
5. only then moves the files into place, writes the completion marker and
   deletes the archive. A failure at any step leaves no unpacked file; a
   wrong archive is deleted so that the next run downloads afresh.

Every failure raises :class:`DownloadError` naming the file and the problem.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import json
import lzma
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .mias import INFO_FILENAME, MiasFormatError, PGMError, read_info, read_pgm

MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
ARCHIVE_NAME = "all-mias.tar.gz"
#: written into the folder holding ``Info.txt`` once every check passed
COMPLETE_MARKER = "DOWNLOAD_COMPLETE.json"
#: the largest text member (Info.txt, README, Licence.txt) accepted; the real ones are a few KB
MAX_TEXT_BYTES = 1 << 20
#: room for a PGM header in front of the pixels
PGM_HEADER_BYTES = 512
_CHUNK = 1 << 16
_UNPACKING = ".unpacking"
_TAR_TEMP = ".all-mias.tar.tmp"


class DownloadError(RuntimeError):
    """The archive could not be downloaded or is not a mini-MIAS archive."""


@dataclass(frozen=True)
class ExpectedSet:
    """What a complete download holds: these ``REFNUM.pgm`` images of ``image_size`` pixels
    and an ``Info.txt`` listing exactly them."""

    refnums: tuple
    image_size: int = 1024
    max_other_files: int = 16

    @property
    def max_pgm_bytes(self) -> int:
        return self.image_size * self.image_size + PGM_HEADER_BYTES

    @property
    def max_total_bytes(self) -> int:
        """Bound on the unpacked archive (images, text files, tar headers and padding)."""
        return (len(self.refnums) * (self.max_pgm_bytes + 1024)
                + (self.max_other_files + 1) * (MAX_TEXT_BYTES + 1024) + 20 * 512)


#: the real mini-MIAS: mdb001 ... mdb322, 1024x1024
MINI_MIAS = ExpectedSet(tuple(f"mdb{i:03d}" for i in range(1, 323)), 1024)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ the transfer
def _set_read_timeout(response, seconds: float) -> None:
    """Make the next socket read wait at most ``seconds`` (the time left of the whole transfer)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.05))


def _fetch(url: str, partial: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``partial``, resuming from its current size, within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "nnlite-mammo-demo"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:           # nothing left to send: the partial file is complete
            return
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    with response:
        status = getattr(response, "status", 200)
        content_range = response.headers.get("Content-Range", "")
        start = (content_range.split()[1].split("-")[0]
                 if content_range.startswith("bytes ") and len(content_range.split()) > 1 else "")
        if status == 206 and have and start == str(have):
            mode = "ab"
        elif status == 206 and start not in ("0", ""):
            raise DownloadError(f"{url}: asked to resume at byte {have}, server answered "
                                f"Content-Range {content_range!r}; delete {partial} and retry")
        else:                    # 200, or 206 from byte 0: the whole file (the server ignored Range)
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        from tqdm.auto import tqdm
        with open(partial, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc="mini-MIAS", disable=not progress) as bar:
            got = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DownloadError(f"download of {url} took longer than {timeout:g} s "
                                        f"(got {have + got} bytes); run again to resume from "
                                        f"{partial}")
                _set_read_timeout(response, left)
                try:
                    block = response.read1(_CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:   # reset, timeout
                    raise DownloadError(f"download of {url} interrupted after {have + got} bytes "
                                        f"({e}); run again to resume from {partial}") from None
                if not block:
                    break
                out.write(block)
                got += len(block)
                bar.update(len(block))
        if length and length.isdigit() and got < int(length):
            raise DownloadError(f"download of {url} interrupted: got {have + got} of {total} bytes; "
                                f"run again to resume from {partial}")


# ------------------------------------------------------------------ the archive
def _open_stream(path: Path):
    """The decompressed stream of ``path`` (gzip, bzip2, xz or a plain tar)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _decompress(path: Path, out: Path, limit: int) -> int:
    """Write the whole decompressed stream of ``path`` to ``out``; return its length.

    Reading to the very end is what checks the gzip CRC-32 and length of
    every member (and refuses data after the last one).
    """
    size = 0
    try:
        with _open_stream(path) as src, open(out, "wb") as dst:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                size += len(block)
                if size > limit:
                    raise DownloadError(f"{path}: unpacks to more than {limit:,} bytes, more than "
                                        f"a mini-MIAS archive can hold (damaged or hostile file)")
                dst.write(block)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise DownloadError(f"{path} is damaged: its compressed stream does not check out "
                            f"({e})") from None
    return size


def _member_limit(name: str, expected: ExpectedSet) -> int:
    base = PurePosixPath(name).name
    if base.lower().endswith(".pgm"):
        return expected.max_pgm_bytes
    return MAX_TEXT_BYTES


def _check_members(tar: tarfile.TarFile, tar_path: Path, archive: Path,
                   expected: ExpectedSet) -> list:
    """Every member, checked (type, path, size), and only zeros after the last one."""
    members = []
    try:
        for m in tar:
            name = PurePosixPath(m.name)
            if name.is_absolute() or ".." in name.parts or m.name.startswith(("/", "\\")):
                raise DownloadError(f"unsafe path {m.name!r} in {archive} (absolute or with '..')")
            if not (m.isfile() or m.isdir()):
                raise DownloadError(f"archive member {m.name!r} of {archive} is a link or special "
                                    f"file; refusing to unpack")
            if m.issparse():
                raise DownloadError(f"archive member {m.name!r} of {archive} is a sparse file; "
                                    f"refusing to unpack")
            if m.isfile() and m.size > _member_limit(m.name, expected):
                raise DownloadError(f"archive member {m.name!r} of {archive} declares {m.size:,} "
                                    f"bytes, more than its format allows "
                                    f"({_member_limit(m.name, expected):,}); refusing to unpack")
            members.append(m)
            if len(members) > len(expected.refnums) + expected.max_other_files + 8:
                raise DownloadError(f"{archive} holds more members than a mini-MIAS archive")
    except tarfile.TarError as e:
        raise DownloadError(f"{archive} is not a readable tar archive: {e}") from None
    end = tar.offset
    with open(tar_path, "rb") as f:
        f.seek(end)
        while True:
            block = f.read(1 << 16)
            if not block:
                break
            if block.count(0) != len(block):
                raise DownloadError(f"{archive} is damaged: data after what reads as the end of "
                                    f"the archive (a corrupt member header?) at byte {end:,} of "
                                    f"the tar stream")
    return members


def verify_archive(path, sha256: str | None = None, expected: ExpectedSet = MINI_MIAS) -> list[str]:
    """Check a downloaded archive end to end (see the module docstring); return its member names.

    Raises :class:`DownloadError` naming the file otherwise.
    """
    path = Path(path)
    tar_path = path.parent / _TAR_TEMP
    try:
        members = _verified_members(path, tar_path, sha256, expected)
    finally:
        tar_path.unlink(missing_ok=True)
    return [m.name for m in members]


def _verified_members(path: Path, tar_path: Path, sha256, expected: ExpectedSet):
    if sha256 is not None:
        got = _sha256(path)
        if got.lower() != sha256.lower():
            raise DownloadError(f"{path}: SHA-256 mismatch: expected {sha256.lower()}, got {got}")
    _decompress(path, tar_path, expected.max_total_bytes)
    try:
        tar = tarfile.open(tar_path, "r:")
    except (tarfile.TarError, OSError) as e:
        raise DownloadError(f"{path} is not a readable tar archive: {e}") from None
    with tar:
        members = _check_members(tar, tar_path, path, expected)
    base = [PurePosixPath(m.name).name for m in members]
    if not any(b.lower() == INFO_FILENAME.lower() for b in base):
        raise DownloadError(f"{path} holds no {INFO_FILENAME}: not a mini-MIAS archive")
    if not any(b.lower().startswith("mdb") and b.lower().endswith(".pgm") for b in base):
        raise DownloadError(f"{path} holds no mdb*.pgm images: not a mini-MIAS archive")
    return members


def unpack_archive(path, dest, expected: ExpectedSet = MINI_MIAS) -> None:
    """Unpack a tar archive into ``dest`` after the checks of :func:`verify_archive`."""
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tar_path = dest / _TAR_TEMP
    try:
        _decompress(path, tar_path, expected.max_total_bytes)
        try:
            tar = tarfile.open(tar_path, "r:")
        except (tarfile.TarError, OSError) as e:
            raise DownloadError(f"{path} is not a readable tar archive: {e}") from None
        with tar:
            members = _check_members(tar, tar_path, path, expected)
            root = dest.resolve()
            for m in members:
                target = (root / Path(*PurePosixPath(m.name).parts)).resolve()
                if target != root and root not in target.parents:
                    raise DownloadError(f"archive member {m.name!r} would be written outside {dest}")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as out:
                    copied = 0
                    for block in iter(lambda: src.read(1 << 20), b""):
                        copied += len(block)
                        out.write(block)
                if copied != m.size:
                    raise DownloadError(f"archive member {m.name!r} of {path} is truncated")
    finally:
        tar_path.unlink(missing_ok=True)


def _info_folder(dest: Path) -> Path:
    hits = sorted((p for p in dest.rglob("*") if p.is_file() and p.name.lower() == INFO_FILENAME.lower()),
                  key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise DownloadError(f"no {INFO_FILENAME} found under {dest} after unpacking")
    return hits[0].parent


def check_mias_set(folder, expected: ExpectedSet = MINI_MIAS) -> dict:
    """Check an unpacked folder against ``expected``; return a summary for the marker.

    ``Info.txt`` must parse and list exactly the expected reference numbers,
    and each ``REFNUM.pgm`` must be a readable PGM of the expected side.
    """
    folder = Path(folder)
    info = next((p for p in folder.iterdir() if p.is_file()
                 and p.name.lower() == INFO_FILENAME.lower()), None)
    if info is None:
        raise DownloadError(f"no {INFO_FILENAME} in {folder}")
    try:
        records = read_info(info, image_size=expected.image_size)
    except MiasFormatError as e:
        raise DownloadError(f"the archive's {INFO_FILENAME} does not parse: {e}") from None
    listed = {r.refnum for r in records}
    want = set(expected.refnums)
    if listed != want:
        missing, extra = sorted(want - listed), sorted(listed - want)
        raise DownloadError(f"the archive's {info.name} lists {len(listed)} images, expected the {len(want)} of "
                            f"mini-MIAS" + (f"; missing {', '.join(missing[:5])}"
                                            f"{' ...' if len(missing) > 5 else ''}" if missing else "")
                            + (f"; unexpected {', '.join(extra[:5])}" if extra else ""))
    present = {p.stem for p in folder.glob("mdb*.pgm")}
    absent = sorted(want - present)
    if absent:
        raise DownloadError(f"the archive holds {len(want & present)} of the {len(want)} mini-MIAS "
                            f"images; missing {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")
    side = expected.image_size
    for ref in sorted(want):
        try:
            image = read_pgm(folder / f"{ref}.pgm")
        except PGMError as e:
            raise DownloadError(f"damaged image in the archive: {e}") from None
        if image.shape != (side, side):
            raise DownloadError(f"the archive's {ref}.pgm is {image.shape[1]}x{image.shape[0]}, "
                                f"expected {side}x{side}")
    return {"images": len(want), "image_size": side, "info_rows": len(records)}


def is_complete(folder) -> bool:
    """True when ``folder`` holds the completion marker of a verified download."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def _own_leftovers(dest: Path, names) -> bool:
    """Whether ``names`` in ``dest`` are all what an unfinished download of ours leaves."""
    ours = {ARCHIVE_NAME, ARCHIVE_NAME + ".partial", _UNPACKING, _TAR_TEMP}
    return all(n in ours for n in names)


def download_mias(dest, url: str = MIAS_URL, sha256: str | None = None, progress: bool = True,
                  force: bool = False, timeout: float = 1800.0, keep_archive: bool = False,
                  expected: ExpectedSet = MINI_MIAS) -> Path:
    """Download, verify and unpack the mini-MIAS archive into ``dest``; return the folder with ``Info.txt``.

    Args:
        dest: target folder (created if missing).
        url: the archive's address (default :data:`MIAS_URL`).
        sha256: expected SHA-256 of the archive, if known.
        progress: show a progress bar.
        force: unpack into a non-empty ``dest`` (files of the same name are overwritten).
        timeout: seconds the whole transfer may take (connecting and every read
            included); an interrupted transfer resumes on the next call.
        keep_archive: keep ``all-mias.tar.gz`` after unpacking.
        expected: the set the archive must hold (default: the 322 images of mini-MIAS).

    Raises:
        FileExistsError: ``dest`` is not empty (other than this function's own
            partial download) and ``force`` is false.
        DownloadError: network failure (the partial file stays, so calling
            again resumes), a damaged or wrong archive (the file is deleted),
            or a set that is not the expected one (nothing is unpacked).
    """
    dest = Path(dest)
    archive = dest / ARCHIVE_NAME
    partial = dest / (ARCHIVE_NAME + ".partial")
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.is_dir():
        done = [p.parent for p in dest.rglob(COMPLETE_MARKER)]
        if done and not force:
            return done[0]                       # verified earlier: nothing to do
        others = [p.name for p in dest.iterdir()]
        if not force and not _own_leftovers(dest, others):
            shown = ", ".join(sorted(others)[:5]) + (" ..." if len(others) > 5 else "")
            raise FileExistsError(
                f"refusing to download mini-MIAS into {dest}: the folder is not empty ({shown}) "
                f"and holds no verified download (no {COMPLETE_MARKER}); choose an empty folder "
                f"or pass force=True (--force) to unpack over it")
    dest.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        _fetch(url, partial, progress, timeout)
        os.replace(partial, archive)
    staging = dest / _UNPACKING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if sha256 is not None:
            got = _sha256(archive)
            if got.lower() != sha256.lower():
                raise DownloadError(f"{archive}: SHA-256 mismatch: expected {sha256.lower()}, "
                                    f"got {got}")
        unpack_archive(archive, staging, expected)         # checks the stream and every member
        info_dir = _info_folder(staging)
        summary = check_mias_set(info_dir, expected)
    except DownloadError:
        archive.unlink(missing_ok=True)          # a wrong file: the next run starts afresh
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for p in list(staging.iterdir()):            # the verified set moves into place
        target = dest / p.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(p, target)
    staging.rmdir()
    folder = dest / info_dir.relative_to(staging)
    marker = {"url": url, "archive_sha256": _sha256(archive), **summary,
              "verified": "gzip CRC of the whole stream, every tar header, member sizes, "
                          "Info.txt lists exactly the expected images, each a PGM of the "
                          "expected size"}
    with open(folder / COMPLETE_MARKER, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=2)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return folder
