"""Paths read from tables stay inside their root.

A `path` in train.csv or an `ImageID` in info.csv is data, often from someone else's disk: `../../etc`, an
absolute path or a symlink pointing out of the data set would make training read (and folds.csv, oof.csv and
MLflow publish) files the user never meant to hand over. Every such value is resolved here and refused unless it
lands inside its root; symlinks that leave the root are refused too unless `data.follow_symlinks=true` allows them.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class PathEscapeError(ValueError):
    """A path from a table points outside its root; the message names the table, the row and the value."""


def inside_root(root: Path, value: object, table: Path | str, row: int | str,
                follow_symlinks: bool = False) -> Path:
    """`root / value`, checked to stay inside `root`.

    Args:
        root: the folder the value is relative to.
        value: the path as written in the table (posix separators; a backslash is read as one too).
        table: the table the value came from (for the message).
        row: the value's row (1-based data row, or an id) for the message.
        follow_symlinks: accept a path whose symlinks resolve outside `root` (the written path must still be
            relative and free of `..`).

    Raises:
        PathEscapeError: the value is empty, absolute, climbs out with `..`, or resolves outside `root`.
    """
    text = str(value).strip()
    where = f"{table}, row {row}: path {text!r}"
    if not text or text in (".", "nan"):
        raise PathEscapeError(f"{where} is empty; every row needs a path relative to {root}")
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise PathEscapeError(f"{where} is absolute; paths must be relative to {root}")
    if ".." in posix.parts:
        raise PathEscapeError(f"{where} climbs out with '..'; paths must stay inside {root}")
    candidate = root / Path(*posix.parts)
    if not follow_symlinks and not _resolves_inside(candidate, root):
        raise PathEscapeError(f"{where} is a symlink leading outside {root}; copy the file into the data set or "
                              f"set data.follow_symlinks=true")
    return candidate


def _resolves_inside(candidate: Path, root: Path) -> bool:
    return candidate.resolve().is_relative_to(root.resolve())


def check_inside(path: Path, root: Path, what: str, follow_symlinks: bool = False) -> Path:
    """`path` (found by walking `root`), refused when a symlink takes it outside `root`.

    Raises:
        PathEscapeError: naming `what` (e.g. the folder being listed) and the path.
    """
    if not follow_symlinks and not _resolves_inside(path, root):
        raise PathEscapeError(f"{what}: {path} is a symlink leading outside {root}; copy the file into the data set "
                              f"or set data.follow_symlinks=true")
    return path
