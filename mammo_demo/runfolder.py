"""The run folder: one folder per run, locked while a command writes it.

Every mammo-demo command that writes results (``train``, ``evaluate`` and
the commands built the same way) goes through a :class:`RunFolder`::

    with RunFolder(out, outputs=TRAIN_OUTPUTS, started_by=STARTED_BY) as run:
        config = run.prepare(config, resume=..., overwrite=..., resume_keys=...)
        run.write_json("config.json", config)
        ...                                   # load data, write data.json
        run.mark_started()                    # from here on the folder is a run
        ...                                   # train, write the rest

What it guarantees:

* **a lock** (``.lock`` in the folder, an exclusive ``fcntl.flock`` held for
  the whole command and released by the operating system if the process
  dies): a second command on the same folder fails at once with
  :class:`RunFolderBusy` naming the process that holds it, instead of two
  runs mixing their files;
* **no clobbering**: a folder holding a run that started training is
  refused unless ``resume`` (same settings, checked key by key) or
  ``overwrite`` (which deletes only this command's own files);
* **no half-started leftovers**: when the command fails (or is interrupted)
  before :meth:`RunFolder.mark_started`, the files it wrote are removed (and
  the folder, if it created it); a folder that holds only what a run writes
  before training (``config.json``, ``data.json``) counts as never started
  and is reused;
* **no foreign folders** for outputs (:meth:`RunFolder.refuse_foreign`): an
  ``evaluate --out`` pointing at a training run's folder is refused instead
  of overwriting its ``metrics.json`` and plots;
* **the resume plan**: ``prepare(..., resume=True)`` keeps the original
  ``epochs`` unless the caller asks for another number, and says which in
  ``config["resume_plan"]``.

JSON files are written atomically (:func:`write_json`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from nnlite.serialization import atomic_open

LOCK_FILE = ".lock"
CONFIG_FILE, DATA_FILE, METRICS_FILE = "config.json", "data.json", "metrics.json"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (the message says why and what to do)."""


class RunFolderBusy(RunFolderError):
    """Another process holds the run folder's lock."""


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (:func:`nnlite.serialization.atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    return Path(path)


def read_json(path) -> dict:
    """A JSON file as a dict; ``ValueError`` naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return obj


class RunFolder:
    """A locked output folder (see the module docstring).

    Args:
        path: the folder (created when missing).
        outputs: names of the files this command writes (``overwrite`` and
            the early-failure cleanup remove these, nothing else).
        output_dirs: regular expression of sub-folders it writes (``fold\\d+``).
        started_by: names whose presence means the run started training
            (``checkpoint.npz``, ``best_model.npz``, ...): such a folder is
            kept on failure and refused without ``resume``/``overwrite``.
        command: the command writing it, recorded in the lock file.
    """

    def __init__(self, path, outputs, output_dirs: str | None = None, started_by=(),
                 command: str = "mammo-demo"):
        self.path = Path(path)
        self.outputs = set(outputs) | {CONFIG_FILE, DATA_FILE}
        self.output_dirs = re.compile(output_dirs) if output_dirs else None
        self.started_by = set(started_by)
        self.command = command
        self.started = False
        self._prepared = False          # the checks passed: from here on this command writes
        self._created = False
        self._lock_fd = None

    # ------------------------------------------------------------ lock
    def __enter__(self) -> "RunFolder":
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and self._prepared and not self.started:
                self.remove_unstarted()
        finally:
            self.release()

    def acquire(self) -> None:
        """Create the folder if needed and take its lock (:class:`RunFolderBusy` if held)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} exists and is not a folder")
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True
        lock = self.path / LOCK_FILE
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _lock_exclusive(fd)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise RunFolderBusy(f"{self.path} is in use by another mammo-demo run ({holder}); "
                                    f"wait for it to finish or choose another --out") from None
            # the holder may have removed the file between our open and our lock: retry
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.command}, pid {os.getpid()}".encode())
        self._lock_fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock (and the folder if it was created empty)."""
        if self._lock_fd is None:
            return
        try:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        finally:
            os.close(self._lock_fd)          # closing the descriptor releases the flock
            self._lock_fd = None
        if self._created and not self.started:
            try:
                self.path.rmdir()             # only when empty
            except OSError:
                pass

    # ------------------------------------------------------------ what is in it
    def contents(self) -> list[str]:
        """Names in the folder other than the lock file, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)

    def has_started(self) -> bool:
        """True when a run in this folder got as far as training (or wrote its results)."""
        names = set(self.contents())
        return bool(names & self.started_by) or any(
            self.output_dirs and self.output_dirs.fullmatch(n) and (self.path / n).is_dir()
            for n in names)

    def read_config(self) -> dict:
        path = self.path / CONFIG_FILE
        return read_json(path) if path.is_file() else {}

    def remove_outputs(self) -> None:
        """Delete this command's own files and sub-folders, nothing else."""
        for p in self.path.iterdir():
            if p.is_file() and p.name in self.outputs:
                p.unlink()
            elif p.is_dir() and self.output_dirs and self.output_dirs.fullmatch(p.name):
                shutil.rmtree(p)

    def remove_unstarted(self) -> None:
        """After a failure before training: remove what this command wrote.

        Does nothing when the checks of :meth:`prepare`/:meth:`refuse_foreign`
        did not pass (the folder is someone else's) or the run had started.
        """
        if self._prepared and not self.started and self.path.is_dir():
            self.remove_outputs()

    def mark_started(self) -> None:
        """From now on a failure keeps the folder (it holds a resumable run)."""
        self.started = True

    # ------------------------------------------------------------ checks
    def prepare(self, config: dict, *, resume: bool = False, overwrite: bool = False,
                resume_keys=(), epochs_given: bool = True) -> dict:
        """Check the folder against ``config``; return the config to run with.

        * new, empty, or holding only a run that never started training: the
          leftovers are removed and ``config`` is returned;
        * ``resume``: the old ``config.json`` must agree on every key of
          ``resume_keys``; without ``epochs_given`` the old plan's ``epochs``
          is kept. ``config["resume_plan"]`` says what happens;
        * a started run without ``resume``: refused unless ``overwrite``,
          which deletes this command's files (nothing else).
        """
        config = dict(config)
        names = self.contents()
        started = self.has_started()
        if resume:
            old = self.read_config()
            if not old or not started:
                if names and not set(names) <= self.outputs:
                    raise RunFolderError(f"--resume: {self.path} holds no run to resume "
                                         f"({', '.join(names[:5])}); choose another --out")
                self.remove_outputs()
                config["resume_plan"] = "nothing to resume in this folder: a new run"
                self._prepared = True
                return config
            diff = [f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in resume_keys
                    if old.get(k) != config.get(k)]
            if diff:
                raise RunFolderError(f"--resume: {self.path} was started with different "
                                     f"settings ({'; '.join(diff)}); use the same settings or "
                                     f"another --out")
            planned = old.get("epochs")
            if not epochs_given and planned is not None:
                config["epochs"] = planned
                config["resume_plan"] = f"resuming to the original plan of {planned} epochs"
            elif planned is not None and planned != config.get("epochs"):
                config["resume_plan"] = (f"resuming with a new plan: {config.get('epochs')} "
                                         f"epochs instead of the original {planned}")
            else:
                config["resume_plan"] = f"resuming to the planned {config.get('epochs')} epochs"
            self._prepared = self.started = True          # a resumed run is never removed
            return config
        if names and (started or not set(names) <= self.outputs) and not overwrite:
            raise RunFolderError(f"{self.path} already holds files: pass --resume to continue "
                                 f"that run, --overwrite to replace it, or choose another --out")
        if names:
            self.remove_outputs()       # overwrite, or a run that never started training
        self._prepared = True
        return config

    def refuse_foreign(self, command: str, same_as: dict | None = None) -> None:
        """Refuse a non-empty folder unless it holds an earlier output of ``command``.

        An earlier output is recognised by its ``metrics.json`` whose
        ``"command"`` is ``command`` and which agrees with ``same_as`` on
        each of its keys (e.g. the evaluated model); anything else (a
        training run's folder, someone's files) is refused.
        """
        names = self.contents()
        if not names:
            self._prepared = True
            return
        metrics = self.path / METRICS_FILE
        mine = False
        if metrics.is_file() and set(names) <= self.outputs - {CONFIG_FILE, DATA_FILE}:
            try:
                old = read_json(metrics)
            except ValueError:
                old = {}
            mine = old.get("command") == command and all(
                old.get(k) == v for k, v in (same_as or {}).items())
        if not mine:
            what = ("the outputs of a training run" if (self.path / CONFIG_FILE).exists()
                    else "other files")
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            raise RunFolderError(f"{self.path} holds {what} ({shown}); {command} would "
                                 f"overwrite them: choose an empty or new --out")
        self.remove_outputs()
        self._prepared = True


def _lock_exclusive(fd: int) -> None:
    """Take an exclusive, non-blocking lock on ``fd``; ``BlockingIOError`` when held."""
    try:
        import fcntl
    except ImportError:                                   # pragma: no cover (Windows)
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
