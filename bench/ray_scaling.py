"""Throughput of the ray engine against the local engine, on the same rows, as ratios.

The rows are the demo's math problems, repeated with a number appended until there are
`--rows`; each engine computes their features from scratch in a workspace of its own:
the local engine in this process, then the ray engine with 1 and with 2 workers of
`--cpus-per-worker` CPUs on a Ray cluster (by default one started in this process, over
this machine's CPUs, in a temporary folder removed at the end; `--address` uses one
running elsewhere). Each time is the whole `compute_features` call: for Ray that includes
connecting, checking the cluster, loading the proxy on a worker for the check and in each
actor, and moving records out and features back. Printed: samples/s of each, the 1-worker
overhead (ray at 1 worker / local) and the 2-worker scaling efficiency (ray 2 / (2 x ray 1)).
The features of every run are checked equal to the local engine's (to 1e-6).

    python bench/ray_scaling.py                  # 2,000 rows, tiny-random
    python bench/ray_scaling.py --proxy ./my-model --rows 5000 --gpus-per-worker 1
    python bench/ray_scaling.py --quick          # 192 rows: a check that it runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import parse_args

# ray, torch and core.features (which loads them) are imported where they are used, so
# that `--help` and importing this file stay instant.


def write_rows(path: Path, n: int) -> Path:
    """`n` rows of the demo, repeated with a number appended, as JSONL."""
    from core.demo import demo_rows

    base = demo_rows()
    with open(path, "w") as f:
        for i in range(n):
            row = base[i % len(base)]
            question = row["question"] + (f" ({i // len(base)})" if i >= len(base) else "")
            f.write(json.dumps({"question": question, "answer": row["answer"]}) + "\n")
    return path


def timed(folder: Path, rows: Path, runtime, proxy) -> tuple[float, object]:
    """Seconds to compute the rows' features from scratch in a new workspace; the matrix."""
    from core.features import compute_features
    from core.workspace import Workspace

    ws = Workspace(folder)
    ws.import_dataset(rows, name="d")
    started = time.perf_counter()
    fs = compute_features(ws, "d", proxy=proxy, runtime=runtime)
    return time.perf_counter() - started, fs.matrix()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--proxy", default="tiny-random")
    parser.add_argument("--chunk-rows", type=int, default=64)
    parser.add_argument("--address", help="a running Ray cluster (default: one started here)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = parse_args(parser, {"rows": 192}, argv)

    import numpy as np
    import ray

    from core.config import ProxySpec, Runtime

    proxy = ProxySpec(args.proxy)
    folder = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    try:
        rows = write_rows(folder / "rows.jsonl", args.rows)
        local = Runtime(chunk_rows=args.chunk_rows)
        local_s, expected = timed(folder / "local", rows, local, proxy)
        if not args.address:  # a cluster of this machine, its files in the temporary folder
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                _temp_dir=str(folder / "ray"),
            )
        seconds = {}
        for workers in (1, 2):
            runtime = Runtime(
                chunk_rows=args.chunk_rows,
                engine="ray",
                address=args.address,
                workers=workers,
                cpus_per_worker=args.cpus_per_worker,
                gpus_per_worker=args.gpus_per_worker,
            )
            seconds[workers], got = timed(folder / f"ray{workers}", rows, runtime, proxy)
            assert np.allclose(got, expected, atol=1e-6, rtol=0), "features differ"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)

    n = args.rows
    print(f"{n:,} rows, proxy {args.proxy}, chunks of {args.chunk_rows}")
    print("| engine | seconds | samples/s |")
    print("| --- | ---: | ---: |")
    print(f"| local | {local_s:.1f} | {n / local_s:.1f} |")
    for workers, s in seconds.items():
        print(f"| ray, {workers} worker{'s' if workers > 1 else ''} | {s:.1f} | {n / s:.1f} |")
    overhead = seconds[1] / local_s
    efficiency = seconds[1] / (2 * seconds[2])
    print(
        f"ray 1 worker / local: {overhead:.2f}x the time; "
        f"2-worker scaling efficiency: {efficiency:.2f}"
    )


if __name__ == "__main__":
    main()
