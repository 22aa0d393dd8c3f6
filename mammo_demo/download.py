"""Downloading the real mini-MIAS database.

The Mammographic Image Analysis Society's mini-MIAS database (322 films,
1024x1024 8-bit PGM, 200 micron pixels, with ``Info.txt``, ``README`` and
``Licence.txt``) is distributed as one archive by the University of Essex's
Pilot European Image Processing Archive (PEIPA):

    http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz

(the address used by the database's users for years; the folder
``http://peipa.essex.ac.uk/pix/mias/`` lists it). Read ``Licence.txt`` in the
archive before using the images. The server offers plain HTTP only, so the
archive's contents are checked after download (a SHA-256 when you give one,
else the structure: a readable tar with ``Info.txt`` and ``mdb*.pgm`` files).

:func:`download_mias`:

1. refuses a ``dest`` folder that holds anything other than its own partial
   download, unless ``force=True``;
2. downloads with :mod:`urllib` into ``dest/all-mias.tar.gz.partial``; when
   that file exists from an interrupted run it asks for the rest with an HTTP
   ``Range: bytes=N-`` header and appends (a server that answers ``200``
   instead of ``206`` sends the whole file, which then replaces the partial);
3. renames the finished file to ``dest/all-mias.tar.gz`` and verifies it;
4. unpacks it member by member, refusing absolute paths, ``..`` components,
   links and device files (no path traversal), then deletes the archive;
5. returns the folder that holds ``Info.txt``.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from .mias import INFO_FILENAME

MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
ARCHIVE_NAME = "all-mias.tar.gz"
_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """The archive could not be downloaded or is not a mini-MIAS archive."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, partial: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``partial``, resuming from its current size."""
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
        if have and status == 206:
            content_range = response.headers.get("Content-Range", "")
            start = content_range.split()[1].split("-")[0] if content_range.startswith("bytes ") else ""
            if start != str(have):
                raise DownloadError(f"{url}: asked to resume at byte {have}, server answered "
                                    f"Content-Range {content_range!r}; delete {partial} and retry")
            mode = "ab"
        else:                                # 200: the whole file (server ignores Range)
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        from tqdm.auto import tqdm
        with open(partial, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc="mini-MIAS", disable=not progress) as bar:
            got = 0
            while True:
                try:
                    block = response.read(_CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as e:   # reset, IncompleteRead, timeout
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


def _safe_members(tar: tarfile.TarFile, dest: Path):
    """The archive's regular files and folders, after checking that each stays inside ``dest``."""
    root = dest.resolve()
    for m in tar.getmembers():
        name = PurePosixPath(m.name)
        if name.is_absolute() or ".." in name.parts or m.name.startswith(("/", "\\")):
            raise DownloadError(f"unsafe path {m.name!r} in the archive (absolute or with '..')")
        if not (m.isfile() or m.isdir()):
            raise DownloadError(f"archive member {m.name!r} is a link or special file; refusing to unpack")
        target = (root / Path(*name.parts)).resolve()
        if target != root and root not in target.parents:
            raise DownloadError(f"archive member {m.name!r} would be written outside {dest}")
        yield m, target


def verify_archive(path, sha256: str | None = None) -> list[str]:
    """Check a downloaded archive; return its member names.

    With ``sha256`` the file's digest must match; in all cases the file must
    be a readable tar (gzip or not) containing ``Info.txt`` and at least one
    ``mdb*.pgm``. Raises :class:`DownloadError` naming the file otherwise.
    """
    path = Path(path)
    if sha256 is not None:
        got = _sha256(path)
        if got.lower() != sha256.lower():
            raise DownloadError(f"{path}: SHA-256 mismatch: expected {sha256.lower()}, got {got}")
    try:
        with tarfile.open(path, "r:*") as tar:
            names = tar.getnames()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DownloadError(f"{path} is not a readable tar archive: {e}") from None
    base = [PurePosixPath(n).name for n in names]
    if not any(b.lower() == INFO_FILENAME.lower() for b in base):
        raise DownloadError(f"{path} holds no {INFO_FILENAME}: not a mini-MIAS archive")
    if not any(b.lower().startswith("mdb") and b.lower().endswith(".pgm") for b in base):
        raise DownloadError(f"{path} holds no mdb*.pgm images: not a mini-MIAS archive")
    return names


def unpack_archive(path, dest) -> None:
    """Unpack a tar archive into ``dest`` with the checks of :func:`_safe_members`."""
    dest = Path(dest)
    with tarfile.open(path, "r:*") as tar:
        members = list(_safe_members(tar, dest))
        for m, target in members:
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            with src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def _info_folder(dest: Path) -> Path:
    hits = sorted((p for p in dest.rglob("*") if p.is_file() and p.name.lower() == INFO_FILENAME.lower()),
                  key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise DownloadError(f"no {INFO_FILENAME} found under {dest} after unpacking")
    return hits[0].parent


def download_mias(dest, url: str = MIAS_URL, sha256: str | None = None, progress: bool = True,
                  force: bool = False, timeout: float = 60.0, keep_archive: bool = False) -> Path:
    """Download, verify and unpack the mini-MIAS archive into ``dest``; return the folder with ``Info.txt``.

    Args:
        dest: target folder (created if missing).
        url: the archive's address (default :data:`MIAS_URL`).
        sha256: expected SHA-256 of the archive, if known.
        progress: show a progress bar.
        force: unpack into a non-empty ``dest`` (files of the same name are overwritten).
        timeout: seconds to wait for the server on connect and on each read.
        keep_archive: keep ``all-mias.tar.gz`` after unpacking.

    Raises:
        FileExistsError: ``dest`` is not empty (other than this function's own
            partial download) and ``force`` is false.
        DownloadError: network failure (the partial file stays, so calling
            again resumes), bad checksum (the file is deleted), or an archive
            that is not mini-MIAS or holds unsafe paths.
    """
    dest = Path(dest)
    archive = dest / ARCHIVE_NAME
    partial = dest / (ARCHIVE_NAME + ".partial")
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder")
    if dest.is_dir() and not force:
        others = [p.name for p in dest.iterdir() if p not in (partial, archive)]
        if others:
            shown = ", ".join(sorted(others)[:5]) + (" ..." if len(others) > 5 else "")
            raise FileExistsError(
                f"refusing to download mini-MIAS into {dest}: the folder is not empty ({shown}); "
                f"choose an empty folder or pass force=True (--force) to unpack over it")
    dest.mkdir(parents=True, exist_ok=True)
    if not archive.exists():
        _fetch(url, partial, progress, timeout)
        os.replace(partial, archive)
    try:
        verify_archive(archive, sha256)
    except DownloadError:
        archive.unlink(missing_ok=True)       # a wrong file: the next run starts afresh
        raise
    unpack_archive(archive, dest)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return _info_folder(dest)
