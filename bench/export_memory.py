"""Export speed and peak memory: the curated set of 100k vs 1M rows written as JSONL
(chat messages, with provenance). Each export runs in a fresh process that reports its
own peak RSS; flat memory means the 1M-row peak stays close to the 100k-row one.

    python bench/export_memory.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.import_memory import synthetic

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from core import curation
from core.export import export
from core.workspace import Workspace
ws = Workspace(sys.argv[1])
t = time.perf_counter()
result = export(curation.curated_records(ws, "bench"), sys.argv[2], format="messages")
print(json.dumps({"rows": result["rows"], "seconds": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(rows: int, tmp: Path) -> dict:
    data = synthetic(tmp / f"{rows}.jsonl", rows)
    ws = tmp / f"ws-{rows}"
    subprocess.run(
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
        check=True,
        capture_output=True,
    )
    out = tmp / f"out-{rows}.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ws), str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    result["mb_out"] = out.stat().st_size / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: measure(n, Path(tmp)) for n in (args.rows // 10, args.rows)}
    print(f"{'rows':>10} {'output MB':>10} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12}")
    for r in results.values():
        print(
            f"{r['rows']:>10,} {r['mb_out']:>10.0f} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['peak_mb']:>12.0f}"
        )
    small, large = results.values()
    print(
        f"peak memory ratio: {large['peak_mb'] / small['peak_mb']:.2f}x for {large['rows'] / small['rows']:.0f}x "
        "the rows"
    )


if __name__ == "__main__":
    main()
