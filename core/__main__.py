"""The command line: `python -m core VERB ...`.

Contract (every verb): `--workspace DIR` (else env PRISM_WORKSPACE, else ./cache) and
`--json` (one JSON object on stdout). Exit 0 on success; exit 2 for bad input or usage,
with one line on stderr beginning `error:`; exit 1 only for an internal fault. Long work
shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import Cancelled, UserError
from core.progress import ProgressFn

Result = tuple[dict[str, Any], list[str]]  # (the --json object, the human-readable lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage and exits 2; make it one line
        raise UserError(f"{self.prog}: {message} (see --help)")


@contextmanager
def progress_bar(desc: str, unit: str = "") -> Iterator[ProgressFn]:
    """A tqdm bar on a terminal's stderr, shown only when the work lasts over a second."""
    from tqdm import tqdm

    bar = tqdm(
        desc=desc,
        unit=unit,
        unit_scale=True,
        delay=1.0,
        mininterval=0.5,
        leave=False,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        # a terminal that reports a 0 x 0 size would hide the bar: fall back to 80 x 24
        ncols=shutil.get_terminal_size().columns,
        nrows=shutil.get_terminal_size().lines,
    )
    try:

        def update(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield update
    finally:
        bar.close()


def _workspace(args: argparse.Namespace):
    from core.workspace import Workspace

    return Workspace(args.workspace)


def _mapping(args: argparse.Namespace):
    from core.records import Mapping

    if not (args.prompt or args.response or args.messages or args.id):
        return None
    return Mapping(prompt=args.prompt, response=args.response, messages=args.messages, id=args.id)


# --- verbs ---------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> Result:
    import tempfile

    from core.records import stage
    from core.sources import open_source

    mapping = _mapping(args)
    source = open_source(args.path, split=args.split, subset=args.subset, encoding=args.encoding)
    with tempfile.TemporaryDirectory() as tmp, progress_bar("validating") as bar:
        out = Path(tmp) / "records.parquet"
        report = stage(source, mapping, out, limit=args.limit, on_progress=bar)
    return report.to_dict(), report.lines()


def cmd_import(args: argparse.Namespace) -> Result:
    mapping = _mapping(args)
    ws = _workspace(args)
    name = args.name or _name_from(args.path)
    with progress_bar(f"importing {name}") as bar:
        info, report = ws.import_dataset(
            args.path,
            name=name,
            mapping=mapping,
            split=args.split,
            subset=args.subset,
            encoding=args.encoding,
            limit=args.limit,
            replace=args.replace,
            on_progress=bar,
        )
    data = {
        "dataset": info.name,
        "rows": info.rows,
        "skipped": report.skipped,
        "report": report.to_dict(),
    }
    return data, [
        *report.lines(),
        f"imported {info.rows} rows as dataset {info.name!r} in {ws.root}",
    ]


def _name_from(path: str) -> str:
    stem = Path(path.rstrip("/")).name.split(".")[0]
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._")
    return cleaned[:64] or "dataset"


def cmd_datasets(args: argparse.Namespace) -> Result:
    ws = _workspace(args)
    items = ws.datasets()
    data = {
        "workspace": str(ws.root),
        "datasets": [
            {"name": d.name, "rows": d.rows, "source": d.source, "created_at": d.created_at}
            for d in items
        ],
    }
    width = max((len(d.name) for d in items), default=4)
    lines = [f"{'name':<{width}}  {'rows':>9}  source"]
    lines += [f"{d.name:<{width}}  {d.rows:>9}  {d.source}" for d in items]
    return data, lines if items else [f"no datasets in {ws.root}"]


def cmd_rename(args: argparse.Namespace) -> Result:
    _workspace(args).rename_dataset(args.old, args.new)
    return {"renamed": args.old, "to": args.new}, [f"renamed {args.old!r} to {args.new!r}"]


def cmd_delete(args: argparse.Namespace) -> Result:
    _workspace(args).delete_dataset(args.name)
    return {"deleted": args.name}, [f"deleted {args.name!r}"]


def cmd_demo(args: argparse.Namespace) -> Result:
    from core import demo

    if args.out:
        n = demo.write_jsonl(Path(args.out))
        return {"rows": n, "path": args.out}, [f"wrote {n} demo problems to {args.out}"]
    info = demo.ensure_demo(_workspace(args), force=True)
    return {"dataset": info.name, "rows": info.rows}, [f"dataset {info.name!r}: {info.rows} rows"]


# --- the parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace", metavar="DIR", help="workspace folder (default: $PRISM_WORKSPACE or ./cache)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    mapping = argparse.ArgumentParser(add_help=False)
    g = mapping.add_argument_group("field mapping (detected from common names when omitted)")
    g.add_argument(
        "--prompt",
        metavar="X",
        help='prompt: field, dotted path, or template like "{Body} {Question}"',
    )
    g.add_argument("--response", metavar="Y", help="response: field, dotted path, or template")
    g.add_argument(
        "--messages", metavar="FIELD", help="a chat field (list of role/content) instead"
    )
    g.add_argument("--id", metavar="FIELD", help="a field with unique ids (default: row numbers)")
    g.add_argument("--split", help="split of a Hugging Face dataset")
    g.add_argument("--subset", help="configuration of a Hugging Face hub dataset")
    g.add_argument("--limit", type=int, metavar="N", help="read at most N rows")
    g.add_argument("--encoding", help="text encoding of the file (default UTF-8)")

    parser = _Parser(
        prog="python -m core", description="Prism Studio: gradient-space data curation."
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    def verb(
        name: str, run: Callable[[argparse.Namespace], Result], help: str, *parents
    ) -> _Parser:
        p = verbs.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(run=run)
        return p

    p = verb(
        "validate",
        cmd_validate,
        "read a file and report on it; the workspace is not touched",
        mapping,
    )
    p.add_argument("path", help="a file, a save_to_disk folder, or a Hugging Face dataset name")
    p = verb("import", cmd_import, "import a file or dataset into the workspace", mapping)
    p.add_argument("path", help="a file, a save_to_disk folder, or a Hugging Face dataset name")
    p.add_argument("--name", help="dataset name (default: from the file name)")
    p.add_argument("--replace", action="store_true", help="replace a dataset of the same name")
    verb("datasets", cmd_datasets, "list the datasets in the workspace")
    p = verb("rename", cmd_rename, "rename a dataset")
    p.add_argument("old")
    p.add_argument("new")
    p = verb("delete", cmd_delete, "delete a dataset")
    p.add_argument("name")
    p = verb("demo", cmd_demo, "import the built-in demo dataset (or write it to --out)")
    p.add_argument(
        "--out", metavar="FILE.jsonl", help="write the demo problems to this file instead"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "limit", None) is not None and args.limit < 1:
            raise UserError("--limit must be at least 1")
        data, lines = args.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except Exception as e:
        if os.environ.get("PRISM_DEBUG"):
            traceback.print_exc()
        print(
            f"internal error: {type(e).__name__}: {e} (set PRISM_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(data, ensure_ascii=False, default=str))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
