"""Import speed and peak memory: 100k vs 1M JSONL rows, and gsm8k when ../shared is there.

Each import runs in a fresh process that reports its own peak RSS, so the figures are
not mixed. Flat memory means the 1M-row peak stays close to the 100k-row peak.

    python bench/import_memory.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from core.workspace import Workspace
t = time.perf_counter()
info, report = Workspace(sys.argv[1]).import_dataset(sys.argv[2], name="bench")
print(json.dumps({"rows": info.rows, "seconds": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic(path: Path, rows: int) -> Path:
    with open(path, "w") as f:
        for i in range(rows):
            f.write(
                json.dumps(
                    {
                        "question": f"A shop sells {i % 97 + 3} pens at ${i % 13 + 1} each. "
                        f"What do {i % 7 + 2} customers pay if each buys all of them? (#{i})",
                        "answer": f"Each pays {(i % 97 + 3) * (i % 13 + 1)}.\nAll pay "
                        f"{(i % 97 + 3) * (i % 13 + 1) * (i % 7 + 2)}.\n#### {i}",
                        "topic": ["retail", "algebra", "rates"][i % 3],
                    }
                )
                + "\n"
            )
    return path


def measure(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as ws:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, ws, str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(out.stdout)
    result["mb_file"] = path.stat().st_size / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(
        f"{'input':<22} {'rows':>9} {'file MB':>8} {'seconds':>8} {'rows/s':>9} {'peak RSS MB':>12}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [
            ("synthetic 100k", args.rows // 10),
            (f"synthetic {args.rows // 1000}k", args.rows),
        ]
        gsm8k = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
        for label, rows in inputs:
            t = time.perf_counter()
            path = synthetic(Path(tmp) / f"{rows}.jsonl", rows)
            print(f"  (wrote {label} in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
            results[label] = measure(path)
        if gsm8k.exists():
            results["gsm8k train"] = measure(gsm8k)
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
