"""Import speed and peak memory: 100k vs 1M JSONL rows, and gsm8k when ../shared is there.

Each import runs in a fresh process that reports its own peak RSS, so the figures are
not mixed. Flat memory means the 1M-row peak stays close to the 100k-row peak.

    python bench/import_memory.py [--rows 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import SHARED_DATA, in_fresh_process, parse_args
from bench.synthetic import problems_jsonl


def import_job(workspace: str, path: str) -> Callable[[], dict]:
    """(In the child process) the timed call: `path` imported into a new workspace."""
    from core.workspace import Workspace

    def run() -> dict:
        info, _ = Workspace(workspace).import_dataset(path, name="bench")
        return {"rows": info.rows}

    return run


def measure_import(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as ws:
        result = in_fresh_process("bench.import_memory:import_job", ws, str(path))
    result["mb_file"] = path.stat().st_size / 2**20
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parse_args(parser, {"rows": 10_000}, argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (args.rows // 10, args.rows):
            t = time.perf_counter()
            path = problems_jsonl(Path(tmp) / f"{rows}.jsonl", rows)
            print(f"  (wrote {rows:,} rows in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
            results[f"synthetic {rows:,}"] = measure_import(path)
        gsm8k = SHARED_DATA / "gsm8k" / "train.jsonl"
        if gsm8k.exists():
            results["gsm8k train"] = measure_import(gsm8k)
    print(
        f"{'input':<22} {'rows':>9} {'file MB':>8} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12}"
    )
    for label, r in results.items():
        print(
            f"{label:<22} {r['rows']:>9,} {r['mb_file']:>8.1f} {r['seconds']:>8.2f} "
            f"{r['rows'] / r['seconds']:>9,.0f} {r['peak_mb']:>12.0f}"
        )
    small, large = list(results.values())[:2]
    print(
        f"peak memory ratio, {large['rows']:,} vs {small['rows']:,} rows: "
        f"{large['peak_mb'] / small['peak_mb']:.2f}x for {large['rows'] / small['rows']:.0f}x the rows"
    )


if __name__ == "__main__":
    main()
