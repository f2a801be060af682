"""The workspace: a folder with a SQLite catalogue and the bulk data beside it.

Layout:
    workspace.sqlite        the catalogue (core/catalogue.py: every table and SQL statement)
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

import os
import re
import shutil
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.catalogue import Catalogue, DatasetRow, Selection, now
from core.errors import UserError
from core.progress import ProgressFn, no_progress
from core.records import Mapping, Report, stage
from core.sources import open_source

DEFAULT_ROOT = "cache"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
        self.catalogue = Catalogue(self.db_path)
        try:
            self.catalogue.migrate()
        except sqlite3.DatabaseError as e:
            raise UserError(f"workspace {self.db_path}: not a usable catalogue ({e})") from e
        self._collect_garbage()

    # --- small values kept by key ----------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.catalogue.get_meta(key)
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        self.catalogue.set_meta(key, value)

    # --- datasets ------------------------------------------------------------------------

    def _info(self, row: DatasetRow) -> DatasetInfo:
        return DatasetInfo(**asdict(row), path=self.root / "datasets" / row.id / "records.parquet")

    def datasets(self) -> list[DatasetInfo]:
        """All datasets, by name."""
        return [self._info(r) for r in self.catalogue.datasets()]

    def dataset(self, name: str) -> DatasetInfo:
        """One dataset by name; UserError listing the names when there is none."""
        row = self.catalogue.dataset_named(name)
        if row is None:
            names = ", ".join(d.name for d in self.datasets()) or "none yet"
            raise UserError(f"no dataset named {name!r} in {self.root} (datasets: {names})")
        return self._info(row)

    def has_dataset(self, name: str) -> bool:
        return self.catalogue.dataset_named(name) is not None

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
            with self.catalogue.transaction() as catalogue:
                old = catalogue.dataset_named(name)
                if old and not replace:
                    raise UserError(
                        f"a dataset named {name!r} was created meanwhile; choose another name"
                    )
                if old:
                    catalogue.delete_dataset(old.id)
                (tmp / "owner").unlink()
                os.replace(tmp, final)
                catalogue.add_dataset(
                    DatasetRow(
                        id=dataset_id,
                        name=name,
                        rows=report.kept,
                        fingerprint=report.fingerprint,
                        source=label or str(spec),
                        format=source.format,
                        mapping=report.mapping,
                        report=report.to_dict(),
                        created_at=now(),
                    )
                )
        if old:
            shutil.rmtree(self.root / "datasets" / old.id, ignore_errors=True)
        return self.dataset(name), report

    def rename_dataset(self, old: str, new: str) -> DatasetInfo:
        """Rename `old` to `new`; returns the renamed dataset."""
        check_name(new)
        self.dataset(old)
        with self.catalogue.transaction() as catalogue:
            if catalogue.dataset_named(new):
                raise UserError(f"a dataset named {new!r} exists; choose another name")
            catalogue.rename_dataset(old, new)
        return self.dataset(new)

    def delete_dataset(self, name: str) -> DatasetInfo:
        """Remove a dataset and its files; returns what was deleted."""
        info = self.dataset(name)
        self.catalogue.delete_dataset(info.id)
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
        self.catalogue.save_selection(
            Selection(
                dataset_id=info.id,
                name=name.strip(),
                rows=rows,
                ids=ids,
                note=note,
                created_at=now(),
            )
        )
        return self.selection(dataset, name.strip())

    def selections(self, dataset: str) -> list[dict[str, Any]]:
        """The saved selections of a dataset, newest first (without their rows)."""
        return [asdict(s) for s in self.catalogue.selections(self.dataset(dataset).id)]

    def selection(self, dataset: str, name: str) -> dict[str, Any]:
        """One saved selection with its rows and ids; UserError naming the others when missing."""
        found = self.catalogue.selection(self.dataset(dataset).id, name)
        if found is None:
            names = ", ".join(s["name"] for s in self.selections(dataset)) or "none yet"
            raise UserError(
                f"no selection named {name!r} for dataset {dataset!r} (selections: {names})"
            )
        return asdict(found)

    def delete_selection(self, dataset: str, name: str) -> None:
        self.selection(dataset, name)
        self.catalogue.delete_selection(self.dataset(dataset).id, name)

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
        if folders - self.catalogue.dataset_ids():
            # recheck under the write lock: an import moves its folder in under that lock
            with self.catalogue.transaction() as catalogue:
                known = catalogue.dataset_ids()
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
