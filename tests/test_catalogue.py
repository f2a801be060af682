"""The catalogue (core/catalogue.py) against a real SQLite file: each table's typed
functions, transactions, derived counts, the migration of a workspace made by the old
schema, and that no SQL lives anywhere else."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from core import catalogue as catalogue_module
from core import synthesis
from core.catalogue import (
    CURATOR_REJECTED,
    MIGRATIONS,
    Catalogue,
    DatasetRow,
    FeatureSetRow,
    RunCounts,
    RunItem,
    Selection,
)
from core.features import feature_sets
from core.workspace import Workspace
from tests.conftest import REPO


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    made = Catalogue(tmp_path / "workspace.sqlite")
    made.migrate()
    return made


def dataset(dataset_id: str = "d1", name: str = "gsm8k") -> DatasetRow:
    return DatasetRow(
        id=dataset_id,
        name=name,
        rows=3,
        fingerprint="f" * 8,
        source="data/train.jsonl",
        format="jsonl",
        mapping={"prompt": "question", "response": "answer"},
        report={"kept": 3, "skipped": 0},
        created_at="2026-01-01T00:00:00",
    )


def item(item_id: str, status: str, **fields) -> RunItem:
    return RunItem(item_id, 1, 0, ["seed-1"], status, **fields)


def test_datasets_and_meta(catalogue):
    assert catalogue.get_meta("k") is None
    catalogue.set_meta("k", "v")
    catalogue.set_meta("k", "w")
    assert catalogue.get_meta("k") == "w"
    catalogue.add_dataset(dataset("d2", "b"))
    catalogue.add_dataset(dataset("d1", "a"))
    assert [d.name for d in catalogue.datasets()] == ["a", "b"]
    assert catalogue.dataset_named("a") == dataset("d1", "a")  # JSON columns decoded
    assert catalogue.dataset_ids() == {"d1", "d2"} and catalogue.has_dataset_id("d2")
    catalogue.rename_dataset("a", "c")
    assert catalogue.dataset_named("a") is None and catalogue.dataset_named("c").id == "d1"
    with pytest.raises(sqlite3.IntegrityError):
        catalogue.add_dataset(dataset("d3", "b"))  # names are unique
    catalogue.delete_dataset("d2")
    assert [d.name for d in catalogue.datasets()] == ["c"]


def test_a_transaction_is_one_change_or_none(catalogue):
    with catalogue.transaction() as inside:
        inside.add_dataset(dataset())
        assert inside.has_dataset_id("d1")  # seen inside before the commit
        assert not Catalogue(catalogue.path).has_dataset_id("d1")  # not outside yet
    assert catalogue.has_dataset_id("d1")
    with pytest.raises(RuntimeError), catalogue.transaction() as inside:
        inside.delete_dataset("d1")
        inside.set_meta("k", "v")
        raise RuntimeError("stop")
    assert catalogue.has_dataset_id("d1") and catalogue.get_meta("k") is None


def test_feature_sets_selections_and_removed_rows(catalogue):
    catalogue.add_dataset(dataset())
    old = FeatureSetRow("k1", "d1", "tiny-random", {"dim": 8}, 3, 8, False, {}, "2026-01-01")
    catalogue.save_feature_set(old)
    catalogue.save_feature_set(
        FeatureSetRow("k2", "d1", "other", {"dim": 16}, 3, 16, True, {"seconds": 1.5}, "2026-01-02")
    )
    catalogue.save_feature_set(replace(old, complete=True))  # the same key: replaced
    assert [(f.key, f.complete) for f in catalogue.feature_sets("d1")] == [
        ("k2", True),
        ("k1", True),
    ]
    assert catalogue.feature_sets("d1")[0].facts == {"seconds": 1.5}
    assert catalogue.feature_sets("d1")[0].complete is True  # a bool, not SQLite's 1

    first = Selection("d1", "thin", [0, 2], ["a", "c"], "cluster 4", "2026-01-01T00:00:00")
    catalogue.save_selection(first)
    catalogue.save_selection(Selection("d1", "all", [0, 1, 2], ["a", "b", "c"], "", "2026-01-02"))
    assert catalogue.selection("d1", "thin") == first
    assert [(s.name, s.size) for s in catalogue.selections("d1")] == [("all", 3), ("thin", 2)]
    catalogue.delete_selection("d1", "all")
    assert catalogue.selection("d1", "all") is None

    catalogue.remove_rows("d1", [0, 1], "redundant")
    catalogue.remove_rows("d1", [1], "exact duplicate of row 0")  # the newer reason wins
    assert catalogue.removed_rows("d1") == {0: "redundant", 1: "exact duplicate of row 0"}
    assert catalogue.restore_rows("d1", [1, 2]) == 1
    assert catalogue.restore_rows("d1") == 1 and catalogue.removed_rows("d1") == {}

    catalogue.remove_rows("d1", [2], "redundant")
    catalogue.add_run("r1", "d1", {"dataset": "gsm8k"})
    catalogue.delete_dataset("d1")  # everything of the dataset goes with it
    assert catalogue.feature_sets("d1") == [] and catalogue.selections("d1") == []
    assert catalogue.removed_rows("d1") == {} and catalogue.runs() == []


def test_runs_made_in_one_second_are_listed_newest_first(catalogue, monkeypatch):
    monkeypatch.setattr(catalogue_module, "now", lambda: "2026-01-01T00:00:00")
    catalogue.add_dataset(dataset())
    for run_id in ("20260101-000000-ffffff", "20260101-000000-000000", "20260101-000000-7a7a7a"):
        catalogue.add_run(run_id, "d1", {})
    assert [r.id for r in catalogue.runs("d1")] == [
        "20260101-000000-7a7a7a",
        "20260101-000000-000000",
        "20260101-000000-ffffff",
    ]


def test_runs_items_and_counts_derived_with_overrides(catalogue):
    catalogue.add_dataset(dataset())
    catalogue.add_run("r1", "d1", {"llm": {"model": "m"}})
    catalogue.add_run("r2", "d1", {})
    run = catalogue.run("r1")
    assert (run.state, run.dataset, run.settings, run.usage) == (
        "created",
        "gsm8k",
        {"llm": {"model": "m"}},
        {},
    )
    catalogue.set_run_state("r1", "running", pid=123)
    catalogue.set_run_progress(
        "r1", usage={"requests_sent": 4}, g_vendi_before=2.0, g_vendi_after=2.5
    )
    run = catalogue.run("r1")
    assert (run.state, run.pid, run.usage, run.g_vendi_after) == (
        "running",
        123,
        {"requests_sent": 4},
        2.5,
    )
    catalogue.set_run_state("r1", "failed", error="HTTP 401")
    assert (catalogue.run("r1").pid, catalogue.run("r1").error) == (None, "HTTP 401")
    assert catalogue.run("nope") is None

    rejected = dict(reason="landed in dense cluster 3", reason_kind="landed in a dense cluster")
    catalogue.save_items(
        "r1",
        [
            item("gen/r1/c0/0/0", "accepted", problem="p0", response="s0", answers=["1", None]),
            item("gen/r1/c0/0/1", "rejected", problem="p1", response="s1", **rejected),
            item(
                "gen/r1/c0/1/0",
                "rejected",
                problem="p2",
                reason="no majority",
                reason_kind="no majority",
            ),
            item("gen/r1/c0/1/1", "generated", problem="p3"),
            item(
                "gen/r1/c0/2", "rejected", reason="request failed: x", reason_kind="request failed"
            ),
        ],
    )
    counts = catalogue.run_counts(["r1", "r2"])
    assert counts["r2"] == RunCounts()
    assert counts["r1"] == RunCounts(
        items=5,
        accepted=1,
        pending=1,
        rejected={"landed in a dense cluster": 1, "no majority": 1, "request failed": 1},
    )
    catalogue.set_override("r1", "gen/r1/c0/0/0", "rejected")  # the curator's verdicts
    catalogue.set_override("r1", "gen/r1/c0/0/1", "accepted")
    catalogue.set_override("r1", "gen/r1/c0/1/1", "rejected")
    # the loop writes its items again (a resume): the overrides stay
    catalogue.save_items("r1", [item("gen/r1/c0/1/1", "solved", problem="p3", response="s3")])
    counts = catalogue.run_counts(["r1"])["r1"]
    assert (counts.accepted, counts.pending, counts.rejected_total) == (1, 0, 4)
    assert counts.rejected == {
        CURATOR_REJECTED: 2,
        "no majority": 1,
        "request failed": 1,
    }
    assert counts.as_dict()["rejected_total"] == 4
    assert catalogue.count_status("r1", "accepted") == 1  # the loop's own decisions

    stored = catalogue.items("r1")
    assert [i.item_id for i in stored][:2] == ["gen/r1/c0/0/0", "gen/r1/c0/0/1"]  # as planned
    first = catalogue.items("r1", "gen/r1/c0/0/0")[0]
    assert (first.status, first.override, first.decision) == ("accepted", "rejected", "rejected")
    assert first.answers == ["1", None] and first.exemplar_ids == ["seed-1"]
    solved = catalogue.items("r1", "gen/r1/c0/1/1")[0]
    assert (solved.status, solved.response, solved.decision) == ("solved", "s3", "rejected")
    catalogue.drop_items("r1", ["gen/r1/c0/2"])
    assert catalogue.run_counts(["r1"])["r1"].items == 4
    assert [r.id for r in catalogue.runs("d1")] == ["r2", "r1"]  # newest first


# --- a workspace made by the old schema opens and migrates ----------------------------------------

# The schema as it shipped up to version 5, frozen here: the first five MIGRATIONS must
# never change, and a catalogue made by them must open.
OLD_SCHEMA = """
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
CREATE TABLE removed (
    dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    row         INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dataset_id, row)
);
"""

OLD_ROWS = """
INSERT INTO datasets VALUES ('d1', 'gsm8k', 3, 'fp', 'train.jsonl', 'jsonl',
    '{"prompt": "question"}', '{"kept": 3}', '2026-01-01T00:00:00');
INSERT INTO meta VALUES ('active_dataset', 'gsm8k');
INSERT INTO meta VALUES ('generator_settings', '{"syn_url": "http://h/v1", "syn_k": 5}');
INSERT INTO feature_sets VALUES ('k1', 'd1', 'tiny-random', 'tiny-random@abc',
    '{"method": "factorized", "dim": 8}', 3, 8, 1, '{"seconds": 2.0}', '2026-01-01T00:00:01');
INSERT INTO maps VALUES ('m1', 'k1', 'clusters', '{}', 'clusters-m1.npz', '2026-01-01');
INSERT INTO selections VALUES ('d1', 'thin', '[0, 2]', '["a", "c"]', 'cluster 4', '2026-01-02');
INSERT INTO removed VALUES ('d1', 1, 'redundant', '2026-01-03');
INSERT INTO runs VALUES ('r1', 'd1', 'done', '{"llm": {"model": "m"}, "synthesis": {}}',
    '{"items": 3, "accepted": 2, "rejected_total": 1, "pending": 0,
      "rejected": {"no majority": 1}, "requests_sent": 9, "cost": 0.5}',
    1.0, 1.5, NULL, NULL, '2026-01-04', '2026-01-04');
INSERT INTO run_items (run_id, item_id, round, problem, response, status, reason_kind,
    override) VALUES
    ('r1', 'gen/r1/c0/0/0', 1, 'p0', 's0', 'accepted', NULL, NULL),
    ('r1', 'gen/r1/c0/0/1', 1, 'p1', 's1', 'accepted', NULL, 'rejected'),
    ('r1', 'gen/r1/c0/1/0', 1, 'p2', NULL, 'rejected', 'no majority', NULL);
"""


def test_the_shipped_migrations_are_unchanged():
    def words(sql: str) -> list[str]:
        return sql.split()

    assert words("".join(MIGRATIONS[:5])) == words(OLD_SCHEMA)


def test_a_workspace_of_the_old_schema_opens_and_migrates(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    with closing(sqlite3.connect(root / "workspace.sqlite")) as db:
        db.executescript(OLD_SCHEMA + OLD_ROWS + "PRAGMA user_version = 5;")
    ws = Workspace(root)

    assert [(d.name, d.rows, d.mapping) for d in ws.datasets()] == [
        ("gsm8k", 3, {"prompt": "question"})
    ]
    assert ws.selection("gsm8k", "thin")["rows"] == [0, 2]
    assert ws.catalogue.removed_rows("d1") == {1: "redundant"}
    assert ws.get_meta("active_dataset") == "gsm8k"
    # the generator settings saved under the widget's old key load under its new one
    assert json.loads(ws.get_meta("generator_settings")) == {
        "syn_url": "http://h/v1",
        "syn_solutions": 5,
    }
    (run,) = synthesis.list_runs(ws, "gsm8k")
    assert (run["id"], run["state"], run["g_vendi_after"]) == ("r1", "done", 1.5)
    assert run["usage"] == {"requests_sent": 9, "cost": 0.5}  # the stored counts are gone
    assert run["counts"]["accepted"] == 1  # derived, the override applied (2 were stored)
    assert run["counts"]["rejected"] == {CURATOR_REJECTED: 1, "no majority": 1}
    (features,) = feature_sets(ws, "gsm8k")
    assert (features["key"], features["complete"], features["facts"]) == (
        "k1",
        True,
        {"seconds": 2.0},
    )
    assert "identity" not in features

    with closing(sqlite3.connect(ws.db_path)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(feature_sets)")}
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        indexes = {r[1] for r in db.execute("PRAGMA index_list(feature_sets)")}
    assert "maps" not in tables and "identity" not in columns
    assert "feature_sets_dataset" in indexes
    ws.delete_dataset("gsm8k")  # the cascades still hold after the rebuild
    assert synthesis.list_runs(ws) == [] and ws.catalogue.feature_sets("d1") == []
    assert Workspace(root).datasets() == []  # opening again migrates nothing twice


# --- one owner --------------------------------------------------------------------------------

SQL = re.compile(
    r"\.execute(many|script)?\(|sqlite3\.connect\(|\b(SELECT|INSERT|UPDATE|DELETE)\s+\w"
)


def test_no_sql_outside_the_catalogue():
    """Every SQL statement of the project is in core/catalogue.py; its INSERTs name their
    columns."""
    sources = [*REPO.glob("*.py"), *REPO.glob("core/*.py"), *REPO.glob("app_pages/*.py")]
    sources += list(REPO.glob("bench/*.py"))
    offenders = [
        p.relative_to(REPO).as_posix()
        for p in sources
        if p.name != "catalogue.py" and SQL.search(p.read_text())
    ]
    assert offenders == []
    text = (REPO / "core" / "catalogue.py").read_text()
    assert "INSERT INTO" in text
    assert not re.search(r"INSERT (OR REPLACE )?INTO \w+ VALUES", text)
