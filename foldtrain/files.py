"""Writing and identifying files safely: the one atomic-write helper and the one file fingerprint.

Every file foldtrain writes goes through `atomic_path`: the content lands under a hidden temporary name in the
target's folder and is renamed over the target only when complete, so a kill or a full disk leaves either the old
file or the new one, never half of one, and the temporary file is removed on every failure path. A full disk or an
unwritable folder becomes a `StorageError` whose one line names the path and the free space.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from foldtrain.user_error import UserError

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def _file_mode() -> int:
    # What open() would give a new file: writers such as safetensors create theirs private (0600), which would hide
    # weights from the team on a shared disk.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


class StorageError(OSError):
    """A file could not be written (disk full, quota, read-only or permission); the message says what to do."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def describe_storage_error(path: Path, err: OSError) -> str:
    """One line naming `path`, what went wrong and what to do."""
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**30:.1f} GiB free"
    except OSError:
        free = "free space unknown"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left writing {path} ({free} on {folder}): free disk space or point run.dir / " \
               f"data.cache_dir elsewhere"
    return f"cannot write {path} ({err.strerror or err}): make the folder writable or choose another one"


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed to `path` on success, removed on any failure.

    Args:
        path: the final file.
        suffix: kept at the end of the temporary name, for writers that choose the format by suffix (`.npy`).

    Raises:
        StorageError: the disk is full or the folder is not writable (the temporary file is gone).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        discard(tmp)
        if err.errno in STORAGE_ERRNOS and not isinstance(err, StorageError):
            raise StorageError(err.errno, describe_storage_error(path, err)) from err
        raise
    except BaseException:
        discard(tmp)
        raise


def discard(tmp: Path) -> None:
    """Remove a temporary file if it can be: cleaning up after a failure must never replace that failure's error
    with its own (a read-only folder fails both the write and the removal)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """`path`'s name in a private folder beside it, moved into place when the block ends.

    Inside the block the staged file can be handed on (an MLflow upload) before it becomes visible at `path`, so
    what is handed on is the bytes this process wrote, never a file another process put at `path` meanwhile.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    except OSError as err:
        raise StorageError(err.errno or 0, describe_storage_error(path, err)) from err
    try:
        yield folder / path.name
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (strict: NaN and infinities are written as null, which every reader accepts)."""
    write_text(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if data == data and abs(data) != float("inf") else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def read_json(path: str | Path, default: Any = None) -> Any:
    """JSON content, or `default` when the file does not exist.

    Raises:
        ValueError: the file exists but is not valid JSON (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); restore or delete it") from err


def read_csv(path: str | Path, **options: Any) -> pd.DataFrame:
    """A CSV this project wrote (metrics.csv, oof.csv, folds.csv), a damaged one named in one line.

    Raises:
        UserError: the file is missing, empty or not parseable, naming it and what to do.
    """
    path = Path(path)
    try:
        return pd.read_csv(path, **options)
    except FileNotFoundError as err:
        raise UserError(f"{path} not found: the run is incomplete; continue it with train.resume=true") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is damaged ({first}); restore it, or delete the fold or run it belongs to and "
                        f"train that part again (train.resume=true)") from err


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def fingerprint(paths: Iterable[str | Path], extra: Any = None, length: int = 20) -> str:
    """A short hash of files (resolved path, byte size, mtime) and any JSON-able `extra` settings.

    Cheap (no file is read) and changes whenever a file is replaced, edited or touched; caches are keyed by it.
    """
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for path in paths:
        path = Path(path)
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:length]
