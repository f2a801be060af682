"""The catalogue: the workspace's SQLite file and every SQL statement of the project.

Tables (schema: MIGRATIONS): datasets, meta (key -> text), feature_sets, selections,
runs, run_items, removed (seed rows taken out of the curated set) and removed_revisions
(a number per dataset that changes with its removals). Other modules call
the typed methods of `Catalogue`; rows come back as the dataclasses below, JSON columns
decoded, and go in by column name.

What can be derived is derived, not stored: an item's decision (the curator's override,
else its automatic status) and a run's counts (RunCounts, from its items' decisions).

A method opens its own connection; `transaction()` gives a Catalogue whose methods all
run in one transaction that holds the write lock from its start (for work that must see
and change the catalogue atomically, e.g. moving a dataset's folder in with its row).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

# Each entry moves the schema one version on (PRAGMA user_version); never edit one that
# has shipped, add a new one. Statements are separated by ';' (none may contain one).
MIGRATIONS = [
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
    # 6: what nothing read goes (the maps table, feature_sets.identity); a run's item
    # counts are derived from its items, so `counts` keeps only the request usage, renamed;
    # the Synthesize page's widget key syn_k (solutions per problem) became syn_solutions.
    # feature_sets is rebuilt rather than altered (DROP COLUMN needs SQLite 3.35).
    """
    DROP TABLE maps;
    CREATE TABLE feature_sets_6 (
        key         TEXT PRIMARY KEY,
        dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        proxy       TEXT NOT NULL,
        config      TEXT NOT NULL,
        rows        INTEGER NOT NULL,
        dim         INTEGER NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0,
        facts       TEXT NOT NULL DEFAULT '{}',
        updated_at  TEXT NOT NULL
    );
    INSERT INTO feature_sets_6 (key, dataset_id, proxy, config, rows, dim, complete, facts,
        updated_at)
        SELECT key, dataset_id, proxy, config, rows, dim, complete, facts, updated_at
        FROM feature_sets;
    DROP TABLE feature_sets;
    ALTER TABLE feature_sets_6 RENAME TO feature_sets;
    CREATE INDEX feature_sets_dataset ON feature_sets(dataset_id);
    ALTER TABLE runs RENAME COLUMN counts TO usage;
    UPDATE runs SET usage = json_remove(usage, '$.items', '$.accepted', '$.rejected',
        '$.rejected_total', '$.pending') WHERE json_valid(usage);
    UPDATE meta SET value = json_set(json_remove(value, '$.syn_k'), '$.syn_solutions',
        json_extract(value, '$.syn_k'))
        WHERE key = 'generator_settings' AND json_valid(value)
        AND json_type(value, '$.syn_k') IS NOT NULL;
    """,
    # 7: a dataset's removals are numbered as they change, so that what is derived from
    # them (the curated set's summary) is computed once per change, not on every read.
    """
    CREATE TABLE removed_revisions (
        dataset_id  TEXT PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
        revision    INTEGER NOT NULL
    );
    """,
]

# An item's decision: the curator's override, else its automatic status (pending until
# the loop decides). The one definition, used by every query that reads decisions.
_DECISION = (
    "COALESCE(override, CASE WHEN status IN ('accepted', 'rejected') THEN status "
    "ELSE 'pending' END)"
)
CURATOR_REJECTED = "rejected by the curator"  # the reason kind of a rejection without one


def now() -> str:
    """The catalogue's timestamp format, local time to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# --- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRow:
    id: str
    name: str
    rows: int
    fingerprint: str
    source: str  # what was imported (a path, a hub name, an uploaded file's name)
    format: str
    mapping: dict[str, Any]
    report: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class FeatureSetRow:
    key: str
    dataset_id: str
    proxy: str
    config: dict[str, Any]  # the FeatureConfig's fields
    rows: int
    dim: int
    complete: bool
    facts: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class Selection:
    dataset_id: str
    name: str
    rows: list[int]  # positions in the dataset, ascending
    ids: list[str]  # the records' ids at those rows
    note: str
    created_at: str


@dataclass(frozen=True)
class SelectionInfo:
    """A selection without its rows."""

    name: str
    note: str
    created_at: str
    size: int


@dataclass(frozen=True)
class RunRow:
    id: str
    dataset_id: str
    dataset: str  # the dataset's name
    state: str  # as stored: created, running, done, budget, cancelled, failed
    settings: dict[str, Any]  # everything the run was created with (no API key)
    usage: dict[str, Any]  # request usage of its last invocation: requests, tokens, cost
    g_vendi_before: float | None
    g_vendi_after: float | None
    error: str | None
    pid: int | None  # the process running it, while state is running
    created_at: str
    updated_at: str


@dataclass
class RunItem:
    """One problem of a run (or the placeholder of a request that failed), as the loop
    writes it. status: generated, solved, accepted or rejected (with reason and its kind)."""

    item_id: str
    round: int
    target_cluster: int | None
    exemplar_ids: list[str]
    status: str
    problem: str = ""
    solutions: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    majority: str | None = None
    response: str | None = None
    reason: str | None = None
    reason_kind: str | None = None
    landed_cluster: int | None = None


@dataclass
class ReviewedItem(RunItem):
    """A stored item with the curator's override and the decision that counts."""

    override: str | None = None  # accepted, rejected, or None: the automatic one
    decision: str = "pending"  # accepted, rejected or pending


@dataclass(frozen=True)
class RunCounts:
    """A run's items by decision (curator overrides applied); `rejected` by reason kind,
    largest first."""

    items: int = 0
    accepted: int = 0
    pending: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "accepted": self.accepted,
            "rejected_total": self.rejected_total,
            "pending": self.pending,
            "rejected": dict(self.rejected),
        }


# The columns kept as JSON text, by table; every other column holds its field as it is.
_JSON = {
    "datasets": ("mapping", "report"),
    "feature_sets": ("config", "facts"),
    "selections": ("rows", "ids"),
    "runs": ("settings", "usage"),
    "run_items": ("exemplar_ids", "solutions", "answers"),
}
_ITEM_COLUMNS = tuple(f.name for f in fields(RunItem))
_RUN_SELECT = (
    "SELECT runs.id, runs.dataset_id, datasets.name AS dataset, runs.state, runs.settings, "
    "runs.usage, runs.g_vendi_before, runs.g_vendi_after, runs.error, runs.pid, "
    "runs.created_at, runs.updated_at FROM runs JOIN datasets ON datasets.id = runs.dataset_id"
)


def _columns(table: str, row: Any) -> dict[str, Any]:
    """A row dataclass's fields as the table's column values (JSON columns encoded)."""
    return {
        f.name: json.dumps(value) if f.name in _JSON[table] else value
        for f in fields(row)
        for value in [getattr(row, f.name)]
    }


def _insert(db: sqlite3.Connection, table: str, row: Any, *, replace: bool = False) -> None:
    """Insert a row dataclass into `table`, naming its columns (by key: replacing one)."""
    values = _columns(table, row)
    db.execute(
        f"INSERT {'OR REPLACE ' if replace else ''}INTO {table} ({', '.join(values)}) "
        f"VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()),
    )


def _read(cls: type, table: str, row: sqlite3.Row) -> Any:
    """A `cls` dataclass of a row of `table` (its fields named as the row's columns; JSON
    columns decoded; a bool field from SQLite's 0 or 1)."""

    def value(f: Field) -> Any:
        if f.name in _JSON[table]:
            return json.loads(row[f.name])
        return bool(row[f.name]) if f.type == "bool" else row[f.name]

    return cls(**{f.name: value(f) for f in fields(cls)})


class Catalogue:
    """The catalogue in the SQLite file at `path` (created by `migrate`)."""

    def __init__(self, path: Path, _db: sqlite3.Connection | None = None):
        self.path = path
        self._db = _db  # set: the open transaction every method runs in

    # --- connections -----------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection (autocommit)."""
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 60000")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _begin(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction holding the write lock from its start; committed
        on success, else rolled back."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """The open transaction's connection; else a new one (in a transaction to write)."""
        if self._db is not None:
            yield self._db
        else:
            with self._begin() if write else self._connect() as db:
                yield db

    @contextmanager
    def transaction(self) -> Iterator[Catalogue]:
        """This catalogue, every method of it in one transaction that holds the write lock
        from its start; committed when the block ends, rolled back when it raises."""
        if self._db is not None:
            yield self
            return
        with self._begin() as db:
            yield Catalogue(self.path, db)

    def migrate(self) -> None:
        """Create the catalogue, or bring an older one up to date (WAL mode)."""
        with self._connect() as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
        with self._begin() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    # --- meta: small values by key ----------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._connection(write=False) as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._connection(write=True) as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- datasets -------------------------------------------------------------------------

    def datasets(self) -> list[DatasetRow]:
        """All datasets, by name."""
        with self._connection(write=False) as db:
            rows = db.execute("SELECT * FROM datasets ORDER BY name").fetchall()
        return [_read(DatasetRow, "datasets", r) for r in rows]

    def dataset_named(self, name: str) -> DatasetRow | None:
        with self._connection(write=False) as db:
            row = db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return _read(DatasetRow, "datasets", row) if row else None

    def has_dataset_id(self, dataset_id: str) -> bool:
        with self._connection(write=False) as db:
            found = db.execute("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        return found is not None

    def dataset_ids(self) -> set[str]:
        with self._connection(write=False) as db:
            return {r["id"] for r in db.execute("SELECT id FROM datasets")}

    def add_dataset(self, row: DatasetRow) -> None:
        with self._connection(write=True) as db:
            _insert(db, "datasets", row)

    def rename_dataset(self, old: str, new: str) -> None:
        with self._connection(write=True) as db:
            db.execute("UPDATE datasets SET name = ? WHERE name = ?", (new, old))

    def delete_dataset(self, dataset_id: str) -> None:
        """The dataset's row and, by cascade, its feature sets, selections, runs, removals."""
        with self._connection(write=True) as db:
            db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))

    # --- feature sets -----------------------------------------------------------------------

    def feature_sets(self, dataset_id: str) -> list[FeatureSetRow]:
        """A dataset's feature sets, newest first."""
        with self._connection(write=False) as db:
            rows = db.execute(
                "SELECT * FROM feature_sets WHERE dataset_id = ? ORDER BY updated_at DESC, rowid DESC",
                (dataset_id,),
            ).fetchall()
        return [_read(FeatureSetRow, "feature_sets", r) for r in rows]

    def save_feature_set(self, row: FeatureSetRow) -> None:
        """Insert or replace a feature set (by key)."""
        with self._connection(write=True) as db:
            _insert(db, "feature_sets", row, replace=True)

    # --- selections -------------------------------------------------------------------------

    def save_selection(self, selection: Selection) -> None:
        """Insert a selection, or replace the dataset's selection of the same name."""
        with self._connection(write=True) as db:
            _insert(db, "selections", selection, replace=True)

    def selections(self, dataset_id: str) -> list[SelectionInfo]:
        """A dataset's selections, newest first."""
        with self._connection(write=False) as db:
            rows = db.execute(
                "SELECT name, note, created_at, json_array_length(rows) AS size FROM selections "
                "WHERE dataset_id = ? ORDER BY created_at DESC, name",
                (dataset_id,),
            ).fetchall()
        return [_read(SelectionInfo, "selections", r) for r in rows]

    def selection(self, dataset_id: str, name: str) -> Selection | None:
        with self._connection(write=False) as db:
            r = db.execute(
                "SELECT * FROM selections WHERE dataset_id = ? AND name = ?", (dataset_id, name)
            ).fetchone()
        return _read(Selection, "selections", r) if r else None

    def delete_selection(self, dataset_id: str, name: str) -> None:
        with self._connection(write=True) as db:
            db.execute(
                "DELETE FROM selections WHERE dataset_id = ? AND name = ?", (dataset_id, name)
            )

    # --- seed rows removed from the curated set -----------------------------------------------

    def removed_rows(self, dataset_id: str) -> dict[int, str]:
        """Removed rows of a dataset and why."""
        with self._connection(write=False) as db:
            rows = db.execute(
                "SELECT row, reason FROM removed WHERE dataset_id = ?", (dataset_id,)
            ).fetchall()
        return {r["row"]: r["reason"] for r in rows}

    def removed_revision(self, dataset_id: str) -> int:
        """A number that changes whenever the dataset's removed rows change (0: never)."""
        with self._connection(write=False) as db:
            row = db.execute(
                "SELECT revision FROM removed_revisions WHERE dataset_id = ?", (dataset_id,)
            ).fetchone()
        return row["revision"] if row else 0

    def removed_reasons(self, dataset_id: str) -> tuple[list[int], list[str]]:
        """(removed rows ascending, their reasons)."""
        with self._connection(write=False) as db:
            rows = db.execute(
                "SELECT row, reason FROM removed WHERE dataset_id = ? ORDER BY row", (dataset_id,)
            ).fetchall()
        return [r["row"] for r in rows], [r["reason"] for r in rows]

    def _removals_changed(self, db: sqlite3.Connection, dataset_id: str) -> None:
        db.execute(
            "INSERT INTO removed_revisions (dataset_id, revision) VALUES (?, 1) "
            "ON CONFLICT(dataset_id) DO UPDATE SET revision = revision + 1",
            (dataset_id,),
        )

    def remove_rows(self, dataset_id: str, rows: list[int], reason: str) -> None:
        """Mark rows removed (again: the newer reason wins)."""
        stamp = now()
        with self._connection(write=True) as db:
            db.executemany(
                "INSERT OR REPLACE INTO removed (dataset_id, row, reason, created_at) "
                "VALUES (?, ?, ?, ?)",
                [(dataset_id, int(r), reason, stamp) for r in rows],
            )
            self._removals_changed(db, dataset_id)

    def restore_rows(self, dataset_id: str, rows: list[int] | None = None) -> int:
        """Unmark removed rows (all when `rows` is None); returns how many were removed."""
        with self._connection(write=True) as db:
            self._removals_changed(db, dataset_id)
            if rows is None:
                return db.execute(
                    "DELETE FROM removed WHERE dataset_id = ?", (dataset_id,)
                ).rowcount
            return sum(
                db.execute(
                    "DELETE FROM removed WHERE dataset_id = ? AND row = ?", (dataset_id, int(r))
                ).rowcount
                for r in rows
            )

    # --- synthesis runs ------------------------------------------------------------------------

    def add_run(self, run_id: str, dataset_id: str, settings: dict[str, Any]) -> None:
        """A new run, state 'created'."""
        stamp = now()
        with self._connection(write=True) as db:
            db.execute(
                "INSERT INTO runs (id, dataset_id, state, settings, created_at, updated_at) "
                "VALUES (?, ?, 'created', ?, ?, ?)",
                (run_id, dataset_id, json.dumps(settings), stamp, stamp),
            )

    def run(self, run_id: str) -> RunRow | None:
        with self._connection(write=False) as db:
            row = db.execute(_RUN_SELECT + " WHERE runs.id = ?", (run_id,)).fetchone()
        return _read(RunRow, "runs", row) if row else None

    def runs(self, dataset_id: str | None = None) -> list[RunRow]:
        """Runs, newest first (of one dataset, or all); runs made in the same second in the
        order they were made (rowid: their ids end in random letters)."""
        where, args = (" WHERE runs.dataset_id = ?", (dataset_id,)) if dataset_id else ("", ())
        order = " ORDER BY runs.created_at DESC, runs.rowid DESC"
        with self._connection(write=False) as db:
            rows = db.execute(_RUN_SELECT + where + order, args).fetchall()
        return [_read(RunRow, "runs", r) for r in rows]

    def set_run_state(
        self, run_id: str, state: str, *, pid: int | None = None, error: str | None = None
    ) -> None:
        with self._connection(write=True) as db:
            db.execute(
                "UPDATE runs SET state = ?, pid = ?, error = ?, updated_at = ? WHERE id = ?",
                (state, pid, error, now(), run_id),
            )

    def set_run_progress(
        self,
        run_id: str,
        *,
        usage: dict[str, Any],
        g_vendi_before: float | None,
        g_vendi_after: float | None,
    ) -> None:
        with self._connection(write=True) as db:
            db.execute(
                "UPDATE runs SET usage = ?, g_vendi_before = ?, g_vendi_after = ?, "
                "updated_at = ? WHERE id = ?",
                (json.dumps(usage), g_vendi_before, g_vendi_after, now(), run_id),
            )

    # --- the items of runs ---------------------------------------------------------------------

    def save_items(self, run_id: str, items: list[RunItem]) -> None:
        """Insert or update items (by item id), keeping any curator override."""
        columns = ", ".join(_ITEM_COLUMNS)
        marks = ", ".join("?" * len(_ITEM_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _ITEM_COLUMNS if c != "item_id")
        rows = [(run_id, *_columns("run_items", it).values()) for it in items]
        with self._connection(write=True) as db:
            db.executemany(
                f"INSERT INTO run_items (run_id, {columns}) VALUES (?, {marks}) "
                f"ON CONFLICT(run_id, item_id) DO UPDATE SET {updates}",
                rows,
            )

    def drop_items(self, run_id: str, item_ids: list[str]) -> None:
        with self._connection(write=True) as db:
            db.executemany(
                "DELETE FROM run_items WHERE run_id = ? AND item_id = ?",
                [(run_id, item_id) for item_id in item_ids],
            )

    def items(self, run_id: str, item_id: str | None = None) -> list[ReviewedItem]:
        """A run's items (or the one with `item_id`), in the order they were planned."""
        query = f"SELECT *, {_DECISION} AS decision FROM run_items WHERE run_id = ?"
        args: tuple = (run_id,)
        if item_id is not None:
            query += " AND item_id = ?"
            args += (item_id,)
        with self._connection(write=False) as db:
            rows = db.execute(query + " ORDER BY round, rowid", args).fetchall()
        return [_read(ReviewedItem, "run_items", r) for r in rows]

    def set_override(self, run_id: str, item_id: str, decision: str | None) -> None:
        with self._connection(write=True) as db:
            db.execute(
                "UPDATE run_items SET override = ? WHERE run_id = ? AND item_id = ?",
                (decision, run_id, item_id),
            )

    def count_status(self, run_id: str, status: str) -> int:
        """How many items of a run have this automatic status (overrides not applied)."""
        with self._connection(write=False) as db:
            return db.execute(
                "SELECT COUNT(*) FROM run_items WHERE run_id = ? AND status = ?", (run_id, status)
            ).fetchone()[0]

    def run_counts(self, run_ids: list[str]) -> dict[str, RunCounts]:
        """Each run's counts, from its items' decisions (overrides applied)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        with self._connection(write=False) as db:
            tallies = db.execute(
                f"SELECT run_id, {_DECISION} AS decision, reason_kind, COUNT(*) AS n "
                f"FROM run_items WHERE run_id IN ({marks}) GROUP BY run_id, decision, reason_kind",
                run_ids,
            ).fetchall()
        by_run: dict[str, list[sqlite3.Row]] = {run_id: [] for run_id in run_ids}
        for t in tallies:
            by_run[t["run_id"]].append(t)
        return {run_id: _counts(rows) for run_id, rows in by_run.items()}


def _counts(tallies: list[sqlite3.Row]) -> RunCounts:
    decided: Counter = Counter()
    rejected: Counter = Counter()
    for t in tallies:
        decided[t["decision"]] += t["n"]
        if t["decision"] == "rejected":
            rejected[t["reason_kind"] or CURATOR_REJECTED] += t["n"]
    return RunCounts(
        items=decided.total(),
        accepted=decided["accepted"],
        pending=decided["pending"],
        rejected=dict(sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
