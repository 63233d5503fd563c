"""A self-contained local MLflow store: `mlflow.db` with its artifacts beside it in `mlartifacts/`.

MLflow records artifact locations as absolute paths, so a store folder moved to another place or machine would
point at artifacts that are gone. `relocate` rewrites those paths to the folder's new place; foldtrain runs it
whenever it opens a SQLite store, and `python -m foldtrain.track.store PATH/mlflow.db` runs it by hand (before
`mlflow ui`, say).
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

ARTIFACTS = "mlartifacts"
# Every column MLflow 3 stores an artifact path in.
COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
           ("model_versions", "storage_location"))


def db_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def relocate(db: Path) -> int:
    """Point artifact paths of a moved store at `<db folder>/mlartifacts`; returns how many rows changed.

    Only paths into an `mlartifacts` folder that no longer exists are rewritten, so stores with artifacts kept
    elsewhere on purpose are left alone.
    """
    here = (db.parent / ARTIFACTS).resolve()
    if not db.is_file() or not here.is_dir():
        return 0
    changed = 0
    with sqlite3.connect(db) as con:
        tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        old_roots = set()
        for (location,) in con.execute("select artifact_location from experiments"):
            path = str(location or "").removeprefix("file://")
            if f"/{ARTIFACTS}" in path:
                root = path[: path.index(f"/{ARTIFACTS}") + len(ARTIFACTS) + 1]
                if Path(root).resolve() != here and not Path(root).exists():
                    old_roots.add(root)
        for root in old_roots:
            for table, column in COLUMNS:
                if table in tables:
                    changed += con.execute(f"update {table} set {column} = replace({column}, ?, ?) "
                                           f"where {column} like ?", (root, str(here), f"%{root}%")).rowcount
    return changed


def store_problem(db: Path) -> str | None:
    """Why `db` is not an MLflow SQLite store this tool can rewrite, or None."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.DatabaseError as err:  # not SQLite, truncated, unreadable
        return f"is not a readable SQLite database ({err})"
    if "experiments" not in tables:
        return "is an SQLite database but not an MLflow store (it has no experiments table)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m foldtrain.track.store PATH/mlflow.db", file=sys.stderr)
        return 2
    db = Path(args[0])
    problem = store_problem(db)
    if problem:
        print(f"foldtrain.track.store: error: {db} {problem}; pass the mlflow.db of a store", file=sys.stderr)
        return 1
    if not (db.parent / ARTIFACTS).is_dir():
        print(f"no {ARTIFACTS}/ folder beside {db}: nothing to point the artifact paths at, nothing changed")
        return 0
    try:
        changed = relocate(db)
    except sqlite3.DatabaseError as err:  # read-only file or folder, a locked or damaged store
        print(f"foldtrain.track.store: error: cannot rewrite {db} ({err}); make it writable and run again",
              file=sys.stderr)
        return 1
    print(f"{changed} artifact paths now point into {db.parent / ARTIFACTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
