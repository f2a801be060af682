"""Writing files so that a crash, a kill or a full disk never leaves a half-written target.

The one mechanism: write to a temporary name beside the target (same folder, so the final
rename is atomic), sync it, then rename it over the target. Temporary names carry the
writing process's id, `.<target name>.<pid>.<random>.part`, so that the leftovers of a
killed writer can be told from the work of a live one and removed by the next writer.

A replaced file keeps its permission bits; a new file gets the usual mode (0666 less the
umask), as any program's would, not the 0600 of a private temporary file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from core.errors import UserError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<kind>part|old)$")


class TargetExists(UserError):
    """The target exists and replacing it was not asked for."""


def check_target(target: Path, *, overwrite: bool, folder: bool = False) -> None:
    """Refuse, before any work, a target (a file, or with `folder` a folder) that cannot be
    written here or exists without `overwrite` (TargetExists). An empty folder counts as
    free. Whether a non-empty folder may be replaced is the caller's to judge first."""
    if not target.parent.is_dir():
        raise UserError(f"{target}: no folder {target.parent}")
    if not target.exists():
        if target.is_symlink():
            raise UserError(f"{target} is a broken symbolic link; give another name")
        return
    if folder and not target.is_dir():
        raise UserError(f"{target} is a file; give a folder name")
    if not folder and target.is_dir():
        raise UserError(f"{target} is a folder; give a file name")
    if not folder and not target.is_file():
        raise UserError(f"{target} is not a regular file; give a file name")
    if folder and not any(target.iterdir()):
        return
    if not overwrite:
        raise TargetExists(f"{target} exists; nothing was written")


def temp_path(target: Path) -> Path:
    """A fresh temporary name beside `target` owned by this process (nothing is created)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def clean_stale_temps(folder: Path) -> int:
    """Remove the temporary files and folders that dead writers left in `folder`; returns
    how many. Only names of this module's pattern whose process is gone are touched; an old
    folder moved aside by `replace_folder` goes back to its name if nothing took its place."""
    from core.workspace import process_alive

    removed = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for path in entries:
        match = _TEMP.match(path.name)
        if not match or process_alive(int(match["pid"])):
            continue
        original = folder / match["name"]
        if match["kind"] == "old" and not original.exists() and not original.is_symlink():
            os.replace(path, original)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


@contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temporary file path beside `target` to write; on a clean exit the file is
    synced and renamed over `target` (keeping the mode of a file it replaces); on an error
    it is removed and `target` is untouched. Stale temporaries of dead writers beside
    `target` are removed first."""
    clean_stale_temps(target.parent)
    tmp = temp_path(target)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies
    try:
        yield tmp
        _sync(tmp)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
        _sync_folder(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def scratch_folder(beside: Path) -> Iterator[Path]:
    """A new empty temporary folder beside `beside` (same file system, so what is built in
    it can be renamed into place); removed on exit with whatever is left in it."""
    clean_stale_temps(beside.parent)
    folder = temp_path(beside)
    folder.mkdir(mode=0o777)  # the umask applies
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` at `target` (same file system). A non-empty `target` is renamed
    aside first and removed once `new` is in place; if the writer dies between the two
    renames, `clean_stale_temps` puts the old folder back."""
    if target.is_dir() and any(target.iterdir()):
        aside = temp_path(target).with_suffix(".old")
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, target)  # over an empty folder, a rename is allowed
    _sync_folder(target.parent)


def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically (see `atomic_target`)."""
    with atomic_target(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _sync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


T = TypeVar("T")


def file_version(path: Path) -> tuple[str, int, int, int]:
    """What tells one version of a file from another: its resolved path, inode, size and
    modification time (ns). Every write here renames a new file into place (a new inode),
    so a rewritten file never keeps its version. OSError when it is missing."""
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns


class Memo:
    """The last `size` values computed, by key (shared by a server's threads): for what is
    read from a file once per `file_version`."""

    def __init__(self, size: int = 16):
        self.size, self.values, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]
        value = make()
        with self.lock:
            self.values[key] = value
            while len(self.values) > self.size:
                self.values.popitem(last=False)
        return value
