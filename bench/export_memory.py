"""Export speed and peak memory: the curated set of 100k vs 1M rows written as JSONL
(chat messages, with provenance). Each export runs in a fresh process that reports its
own peak RSS; flat memory means the 1M-row peak stays close to the 100k-row one.

    python bench/export_memory.py [--rows 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REPO, in_fresh_process, parse_args
from bench.synthetic import problems_jsonl


def export_job(workspace: str, out: str) -> Callable[[], dict]:
    """(In the child process) the timed call: dataset `bench` curated and written to `out`."""
    from core import curation
    from core.export import export
    from core.workspace import Workspace

    ws = Workspace(workspace)

    def run() -> dict:
        result = export(curation.curated_records(ws, "bench"), out, format="messages")
        return {"rows": result["rows"]}

    return run


def measure_export(rows: int, tmp: Path) -> dict:
    data = problems_jsonl(tmp / f"{rows}.jsonl", rows)
    ws = tmp / f"ws-{rows}"
    imported = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "import",
            str(data),
            "--name",
            "bench",
            "--workspace",
            str(ws),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if imported.returncode != 0:
        raise RuntimeError(f"the import before the export failed:\n{imported.stderr}")
    out = tmp / f"out-{rows}.jsonl"
    result = in_fresh_process("bench.export_memory:export_job", str(ws), str(out))
    result["mb_out"] = out.stat().st_size / 2**20
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parse_args(parser, {"rows": 10_000}, argv)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = (measure_export(n, Path(tmp)) for n in (args.rows // 10, args.rows))
    print(f"{'rows':>10} {'output MB':>10} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12}")
    for r in (small, large):
        print(
            f"{r['rows']:>10,} {r['mb_out']:>10.1f} {r['seconds']:>8.2f} "
            f"{r['rows'] / r['seconds']:>9,.0f} {r['peak_mb']:>12.0f}"
        )
    print(
        f"peak memory ratio: {large['peak_mb'] / small['peak_mb']:.2f}x for "
        f"{large['rows'] / small['rows']:.0f}x the rows"
    )


if __name__ == "__main__":
    main()
