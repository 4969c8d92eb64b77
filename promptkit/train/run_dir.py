"""A training run's directory: its identity (``run.json``), the refusal of another run, and a lock.

``run.json`` holds a hash of everything that identifies the run except the settings a resumed run
may change (:data:`RESUMABLE`); a directory that holds another run's checkpoints or results is
refused. The identity includes the code that trains (:func:`code_identity`): the promptkit version,
a digest of the promptkit and backbones sources and of a user factory's module, so a stage trained
by other code is not resumed (``overwrite`` retrains it).

While :func:`fit <promptkit.train.engine.fit>` runs it holds an exclusive lock on the
directory (``.lock``, with the holder's pid), so two runs started into one directory cannot mix
their files; the second is refused with the holder's pid. Temporary files a crashed writer left
behind (``.<name>.<random>.tmp``) are removed when the lock is taken, in every folder of the
directory (``prompt/adapter/`` of a run too), except below a folder another live process holds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from .._atomic import atomic_write_bytes, remove_stray_temps
from ..recipes import config_hash

try:
    import fcntl
except ImportError:  # not on POSIX: runs are not locked
    fcntl = None

LAST, BEST, RUN, RESULTS = "last.safetensors", "best.safetensors", "run.json", "results"
LOCK = ".lock"
RESUMABLE = ("epochs", "early_stop_patience", "compile", "log_with")  # may change when a run is resumed
_HINTS = {  # what a differing identity key means, for the refusal's message
    "run.backbone_weights": ": the pre-trained backbone changed since this stage ran (e.g. the pretrain stage "
    "was resumed with another budget), so its adapter belongs to another backbone and the stage must rerun",
}


SOURCE_PACKAGES = ("promptkit", "backbones")
"""The packages whose ``.py`` sources :func:`source_digest` covers."""


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of every ``.py`` file of the imported :data:`SOURCE_PACKAGES` (path relative to the
    package and bytes, sorted by path); computed once per process."""
    h = hashlib.sha256()
    for name in SOURCE_PACKAGES:
        root = Path(importlib.import_module(name).__file__).parent
        for f in sorted(root.rglob("*.py"), key=lambda q: q.relative_to(root).as_posix()):
            h.update(f"{name}/{f.relative_to(root).as_posix()}".encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def factory_source_digest(factory: str) -> str | None:
    """sha256 of the source file of a factory's module (``"package.module:function"``), read from
    the module as imported in this process; None when it is not imported or has no source file."""
    module = sys.modules.get(factory.partition(":")[0]) if isinstance(factory, str) else None
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return None
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def code_identity(factory: str | None = None) -> dict[str, Any]:
    """What code trains a stage, for its identity: ``{"promptkit": version, "source": digest}``,
    plus ``"factory_source"`` (:func:`factory_source_digest`) when a user factory built the backbone."""
    code: dict[str, Any] = {"promptkit": __version__, "source": source_digest()}
    if factory is not None:
        code["factory_source"] = factory_source_digest(factory)
    return code


def code_change(recorded: Mapping[str, Any] | None, now: Mapping[str, Any], where: str) -> str | None:
    """How the ``code`` record of a finished result (``recorded``, read from the file ``where``;
    None for a file that kept none) differs from :func:`code_identity` ``now``:
    ``"code.source: 'ab..' in protocol.json, 'cd..' now"``, or None when it is the same code."""
    recorded = recorded if isinstance(recorded, Mapping) else {}
    changed = [k for k in sorted(set(now) | set(recorded)) if now.get(k) != recorded.get(k)]
    if not changed:
        return None
    return "; ".join(f"code.{k}: {recorded.get(k)!r} in {where}, {now.get(k)!r} now" for k in changed)


class RunDirError(RuntimeError):
    """``out_dir`` holds another run (or this one) and neither resume nor overwrite was asked, or
    another process is writing into it."""


class RunDirLock:
    """An exclusive ``flock`` on ``out_dir/.lock``; :meth:`release` (or the context exit) frees it."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by another run (pid {holder}); wait for it to finish or use another "
                "output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_dir(out_dir: Path) -> RunDirLock:
    """Take the run directory's lock, then remove stray temporary files of a crashed writer from
    every folder below it (:func:`promptkit._atomic.remove_stray_temps`). Hidden folders (``.git``,
    a virtual environment) are not entered, nor a folder whose own lock names a live process.

    Raises:
        RunDirError: another process holds the lock (the message names its pid).
    """
    lock = RunDirLock(out_dir).acquire()
    remove_stray_temps(out_dir, skip_dir=lambda d: d.name.startswith(".") or _held_by_a_live_process(d))
    return lock


def _held_by_a_live_process(folder: Path) -> bool:
    """Does ``folder/.lock`` name a process that is still running (a run writing there now)?

    A lock that is released is empty; one a crashed run left names a process that is gone.
    """
    lock = folder / LOCK
    try:
        if not stat.S_ISREG(os.lstat(lock).st_mode):
            return False
        with open(lock, "rb") as f:
            pid = int(f.read(32).decode(errors="replace").strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _code_changed(diff: list[str], before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The refusal's reason when the code identity differs: each changed key, as recorded and now."""
    changed = [k for k in diff if k.startswith("code.")]
    if not changed:
        return ""
    told = "; ".join(f"{k}: {before.get(k, '(not recorded)')!s} in {RUN}, {now.get(k)!s} now" for k in changed)
    return f": the code changed since this stage ran ({told}), so its checkpoints were made by other code"


def prepare_out_dir(
    out_dir: Path, identity: dict[str, Any], resume: bool, overwrite: bool, *, write: bool = True,
    record: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a directory that holds a run's checkpoints or results; write ``run.json``.

    A directory with only ``run.json`` (a run that failed before its first epoch ended) is free.
    Every process of a distributed run checks; only the one with ``write`` writes. ``record`` is
    written beside the identity without being part of its hash (e.g. the process count, which may
    change when a run is resumed).
    """
    run_file = out_dir / RUN
    key = json.loads(json.dumps({k: v for k, v in identity.items() if k != "stage"}, default=str))
    key["stage"] = {k: v for k, v in identity["stage"].items() if k not in RESUMABLE}
    run_hash = config_hash(key)
    outputs = [out_dir / LAST, out_dir / BEST, out_dir / f"{RESULTS}.json", out_dir / f"{RESULTS}.csv"]
    taken = any(p.exists() for p in outputs)
    if overwrite:
        if write:
            for p in outputs + [run_file]:
                p.unlink(missing_ok=True)
    elif taken and run_file.is_file():
        prev = json.loads(run_file.read_text())
        if prev.get("hash") != run_hash:
            before, now = _flatten(prev.get("key", {})), _flatten(key)
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            why = _HINTS.get(next((k for k in diff if k in _HINTS), ""), "") or _code_changed(diff, before, now)
            raise RunDirError(
                f"{out_dir} holds a different run (settings differ in: {', '.join(diff[:8]) or 'run.json'}){why}; "
                f"use another output directory or overwrite=True (--overwrite) to replace it"
            )
        if not resume:
            raise RunDirError(
                f"{out_dir} already holds this run; pass resume=True (--resume) to continue it "
                f"or overwrite=True (--overwrite) to start over"
            )
    elif taken:
        raise RunDirError(f"{out_dir} holds checkpoints or results without {RUN}; use another directory or overwrite=True")
    if not write:  # another process of this run writes (the checks above ran in every process)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({"hash": run_hash, "key": key, "identity": identity, **dict(record or {})}, indent=2, default=str)
    atomic_write_bytes(run_file, blob.encode())
