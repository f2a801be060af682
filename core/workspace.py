"""The workspace: a folder with a SQLite catalogue and the bulk data beside it.

Layout:
    workspace.sqlite        the catalogue (WAL mode): datasets, feature sets, meta
    datasets/<id>/records.parquet   each dataset's normalised records
    datasets/<id>/features/<key>/   its gradient feature sets (see core/features.py)
    tmp/<id>/               work in progress, owned by a live process (file `owner`)

Every change is atomic. An import stages its records under tmp/, then, holding the
catalogue's write lock, moves the folder into datasets/ and inserts the catalogue row in
one transaction. A process killed at any point leaves either the old state or the new
one; leftovers (a tmp/ folder of a dead process, a datasets/ folder with no catalogue row)
are removed the next time the workspace opens. Any number of processes may use one
workspace at once; SQLite serialises the writers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.progress import ProgressFn, no_progress
from core.records import Mapping, Report, stage
from core.sources import open_source

DEFAULT_ROOT = "cache"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_MIGRATIONS = [
    """
    CREATE TABLE datasets (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        rows        INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        source      TEXT NOT NULL,
        format      TEXT NOT NULL,
        mapping     TEXT NOT NULL,
        report      TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE feature_sets (
        key         TEXT PRIMARY KEY,
        dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        proxy       TEXT NOT NULL,
        identity    TEXT NOT NULL,
        config      TEXT NOT NULL,
        rows        INTEGER NOT NULL,
        dim         INTEGER NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0,
        facts       TEXT NOT NULL DEFAULT '{}',
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX feature_sets_dataset ON feature_sets(dataset_id);
    """,
    """
    CREATE TABLE maps (
        key         TEXT PRIMARY KEY,
        feature_key TEXT NOT NULL REFERENCES feature_sets(key) ON DELETE CASCADE,
        kind        TEXT NOT NULL,
        params      TEXT NOT NULL,
        file        TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE selections (
        dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        rows        TEXT NOT NULL,
        ids         TEXT NOT NULL,
        note        TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL,
        PRIMARY KEY (dataset_id, name)
    );
    """,
    """
    CREATE TABLE runs (
        id              TEXT PRIMARY KEY,
        dataset_id      TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        state           TEXT NOT NULL,
        settings        TEXT NOT NULL,
        counts          TEXT NOT NULL DEFAULT '{}',
        g_vendi_before  REAL,
        g_vendi_after   REAL,
        error           TEXT,
        pid             INTEGER,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE TABLE run_items (
        run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        item_id         TEXT NOT NULL,
        round           INTEGER NOT NULL,
        target_cluster  INTEGER,
        exemplar_ids    TEXT NOT NULL DEFAULT '[]',
        problem         TEXT NOT NULL DEFAULT '',
        solutions       TEXT NOT NULL DEFAULT '[]',
        answers         TEXT NOT NULL DEFAULT '[]',
        majority        TEXT,
        response        TEXT,
        status          TEXT NOT NULL,
        reason          TEXT,
        reason_kind     TEXT,
        landed_cluster  INTEGER,
        override        TEXT,
        PRIMARY KEY (run_id, item_id)
    );
    """,
    """
    CREATE TABLE removed (
        dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        row         INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (dataset_id, row)
    );
    """,
]


@dataclass(frozen=True)
class DatasetInfo:
    """A catalogue entry. `path` is the records' Parquet file."""

    id: str
    name: str
    rows: int
    fingerprint: str
    source: str
    format: str
    mapping: dict[str, Any]
    report: dict[str, Any]
    created_at: str
    path: Path


def resolve_root(path: str | os.PathLike | None = None) -> Path:
    """The workspace folder: `path`, else env PRISM_WORKSPACE, else ./cache."""
    return Path(path or os.environ.get("PRISM_WORKSPACE") or DEFAULT_ROOT).expanduser()


def check_name(name: str) -> str:
    """A dataset name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not _NAME.match(name or ""):
        raise UserError(
            f"dataset name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "val", "eval")


def dataset_vanished(error: OSError, root: str | os.PathLike | None) -> UserError | None:
    """The UserError to report when `error` says that a file of a dataset in the workspace at
    `root` is gone: another process deleted or replaced the dataset while this one read it.
    None for any other error."""
    if not isinstance(error, FileNotFoundError):
        return None
    folder = resolve_root(root).resolve() / "datasets"
    if error.filename:
        if not Path(os.fsdecode(error.filename)).resolve().is_relative_to(folder):
            return None
    elif str(folder) not in str(error):  # pyarrow names the file in the message only
        return None
    return UserError(
        "a dataset's files vanished while this ran: it was deleted or replaced by another "
        "command or tab; nothing was changed, run it again"
    )


def suggest_name(spec: str | os.PathLike) -> str:
    """A dataset name for a file, folder or hub name: its name before the first dot, in the
    allowed characters ("Café crème.v2.jsonl" -> "Cafe-creme"); a split file takes its
    folder's name too ("gsm8k/test.jsonl" -> "gsm8k-test")."""
    path = Path(str(spec).rstrip("/"))
    stem = path.name.split(".")[0]
    if stem.lower() in SPLIT_NAMES and path.parent.name:
        stem = f"{path.parent.name}-{stem}"
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_only).strip("-._")
    return cleaned[:64].rstrip("-._") or "dataset"


class Workspace:
    """A workspace folder; create it if needed. Cheap to construct, safe to share."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_root(root)
        try:
            for sub in ("datasets", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"workspace {self.root}: cannot create it ({e.strerror})") from e
        self.db_path = self.root / "workspace.sqlite"
        try:
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise UserError(f"workspace {self.db_path}: not a usable catalogue ({e})") from e
        self._collect_garbage()

    # --- the catalogue -----------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the catalogue (autocommit; use `transaction` to write)."""
        db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 60000")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding the write lock from its start; committed on success, else
        rolled back."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.connect() as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for i, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {i}")

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- datasets ------------------------------------------------------------------------

    def _info(self, row: sqlite3.Row) -> DatasetInfo:
        d = dict(row)
        d["mapping"] = json.loads(d["mapping"])
        d["report"] = json.loads(d["report"])
        return DatasetInfo(**d, path=self.root / "datasets" / d["id"] / "records.parquet")

    def datasets(self) -> list[DatasetInfo]:
        """All datasets, by name."""
        with self.connect() as db:
            rows = db.execute("SELECT * FROM datasets ORDER BY name").fetchall()
        return [self._info(r) for r in rows]

    def dataset(self, name: str) -> DatasetInfo:
        """One dataset by name; UserError listing the names when there is none."""
        with self.connect() as db:
            row = db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = ", ".join(d.name for d in self.datasets()) or "none yet"
            raise UserError(f"no dataset named {name!r} in {self.root} (datasets: {names})")
        return self._info(row)

    def has_dataset(self, name: str) -> bool:
        with self.connect() as db:
            return (
                db.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone() is not None
            )

    def import_dataset(
        self,
        spec: str | os.PathLike,
        *,
        name: str,
        mapping: Mapping | None = None,
        split: str | None = None,
        subset: str | None = None,
        encoding: str | None = None,
        limit: int | None = None,
        replace: bool = False,
        label: str | None = None,
        on_progress: ProgressFn = no_progress,
    ) -> tuple[DatasetInfo, Report]:
        """Read `spec` (file, folder or hub name) into a new dataset `name`, atomically.

        `label` is what the catalogue records as the source (default: `spec`), e.g. the
        name of an uploaded file rather than where the server keeps it.

        Raises UserError for bad input or a taken name (unless `replace`); on any failure
        the workspace is left exactly as it was.
        """
        check_name(name)
        if not replace and self.has_dataset(name):
            raise UserError(f"a dataset named {name!r} exists; choose another name or replace it")
        source = open_source(spec, split=split, subset=subset, encoding=encoding, limit=limit)
        with self.staging() as tmp:
            report = stage(
                source, mapping, tmp / "records.parquet", limit=limit, on_progress=on_progress
            )
            dataset_id = tmp.name
            final = self.root / "datasets" / dataset_id
            with self.transaction() as db:
                old = db.execute("SELECT id FROM datasets WHERE name = ?", (name,)).fetchone()
                if old and not replace:
                    raise UserError(
                        f"a dataset named {name!r} was created meanwhile; choose another name"
                    )
                if old:
                    db.execute("DELETE FROM datasets WHERE id = ?", (old["id"],))
                (tmp / "owner").unlink()
                os.replace(tmp, final)
                db.execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dataset_id,
                        name,
                        report.kept,
                        report.fingerprint,
                        label or str(spec),
                        source.format,
                        json.dumps(report.mapping),
                        json.dumps(report.to_dict()),
                        time.strftime("%Y-%m-%dT%H:%M:%S"),
                    ),
                )
        if old:
            shutil.rmtree(self.root / "datasets" / old["id"], ignore_errors=True)
        return self.dataset(name), report

    def rename_dataset(self, old: str, new: str) -> DatasetInfo:
        """Rename `old` to `new`; returns the renamed dataset."""
        check_name(new)
        self.dataset(old)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM datasets WHERE name = ?", (new,)).fetchone():
                raise UserError(f"a dataset named {new!r} exists; choose another name")
            db.execute("UPDATE datasets SET name = ? WHERE name = ?", (new, old))
        return self.dataset(new)

    def delete_dataset(self, name: str) -> DatasetInfo:
        """Remove a dataset and its files; returns what was deleted."""
        info = self.dataset(name)
        with self.transaction() as db:
            db.execute("DELETE FROM datasets WHERE id = ?", (info.id,))
        shutil.rmtree(info.path.parent, ignore_errors=True)
        return info

    # --- selections ------------------------------------------------------------------------

    def save_selection(
        self, dataset: str, name: str, rows: list[int], *, note: str = ""
    ) -> dict[str, Any]:
        """Keep a named set of rows of a dataset (for synthesis and export); replaces one of
        the same name. Rows are positions in the dataset; their record ids are kept too."""
        import pyarrow.parquet as pq

        info = self.dataset(dataset)
        if not name.strip():
            raise UserError("give the selection a name")
        rows = sorted({int(r) for r in rows})
        if not rows:
            raise UserError("the selection is empty; select some points or clusters first")
        if rows[0] < 0 or rows[-1] >= info.rows:
            raise UserError(f"selection rows must be between 0 and {info.rows - 1}")
        ids = pq.read_table(info.path, columns=["id"]).column(0).take(rows).to_pylist()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO selections VALUES (?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    name.strip(),
                    json.dumps(rows),
                    json.dumps(ids),
                    note,
                    time.strftime("%Y-%m-%dT%H:%M:%S"),
                ),
            )
        return self.selection(dataset, name.strip())

    def selections(self, dataset: str) -> list[dict[str, Any]]:
        """The saved selections of a dataset, newest first (without their rows)."""
        info = self.dataset(dataset)
        with self.connect() as db:
            found = db.execute(
                "SELECT name, note, created_at, json_array_length(rows) AS size FROM selections "
                "WHERE dataset_id = ? ORDER BY created_at DESC, name",
                (info.id,),
            ).fetchall()
        return [dict(r) for r in found]

    def selection(self, dataset: str, name: str) -> dict[str, Any]:
        """One saved selection with its rows and ids; UserError naming the others when missing."""
        info = self.dataset(dataset)
        with self.connect() as db:
            row = db.execute(
                "SELECT * FROM selections WHERE dataset_id = ? AND name = ?", (info.id, name)
            ).fetchone()
        if row is None:
            names = ", ".join(s["name"] for s in self.selections(dataset)) or "none yet"
            raise UserError(
                f"no selection named {name!r} for dataset {dataset!r} (selections: {names})"
            )
        return {**dict(row), "rows": json.loads(row["rows"]), "ids": json.loads(row["ids"])}

    def delete_selection(self, dataset: str, name: str) -> None:
        self.selection(dataset, name)
        with self.transaction() as db:
            db.execute(
                "DELETE FROM selections WHERE dataset_id = ? AND name = ?",
                (self.dataset(dataset).id, name),
            )

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether `path` is the workspace folder itself, its catalogue or inside datasets/:
        never a place to write user files."""
        target = Path(path).expanduser().resolve()
        root = self.root.resolve()
        if target == root or (target.parent == root and target.name.startswith(self.db_path.name)):
            return True  # the catalogue and its -wal and -shm files
        return target.is_relative_to(root / "datasets")

    # --- scratch space and cleaning up -------------------------------------------------

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder under tmp/ owned by this process; removed on exit if still there."""
        path = self.root / "tmp" / uuid.uuid4().hex
        path.mkdir()
        (path / "owner").write_text(str(os.getpid()))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _collect_garbage(self) -> None:
        """Remove tmp/ folders of dead processes and dataset folders the catalogue lacks."""
        for path in (self.root / "tmp").iterdir():
            if not _owner_alive(path):
                shutil.rmtree(path, ignore_errors=True)
        folders = {p.name for p in (self.root / "datasets").iterdir()}
        if not folders:
            return
        with self.connect() as db:
            known = {r[0] for r in db.execute("SELECT id FROM datasets")}
        if folders - known:
            # recheck under the write lock: an import moves its folder in under that lock
            with self.transaction() as db:
                known = {r[0] for r in db.execute("SELECT id FROM datasets")}
                for orphan in folders - known:
                    shutil.rmtree(self.root / "datasets" / orphan, ignore_errors=True)


def _owner_alive(path: Path) -> bool:
    try:
        pid = int((path / "owner").read_text())
    except (OSError, ValueError):
        return time.time() - path.stat().st_mtime < 3600  # an owner file may be coming
    return pid == os.getpid() or process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with this id is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True
