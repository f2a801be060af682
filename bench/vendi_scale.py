"""G-Vendi at scale: streamed from chunk files, against vendi-score's `score_dual` in memory.

1. 1,000,000 x 1024 float16 features written as chunk files (2 GiB), then streamed: time
   and peak memory above the process's resident size before the run (the files' page
   cache is not the process's memory);
2. 100,000 x 1024: the same streaming code against `score_dual` on the matrix in memory,
   time and peak memory of each, and the two scores.

The features have a decaying spectrum (a low-rank signal plus noise), as gradient
features do. Temporary files go to --tmp (default: the system's temporary folder).

    python bench/vendi_scale.py [--rows 1000000] [--dim 1024] [--tmp DIR] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import gib, measure, parse_args, peak_rss, rss_bytes
from core.vendi import spectrum, vendi

CHUNK = 16384


def write_chunks(folder: Path, rows: int, dim: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((64, dim)).astype(np.float32)
    scales = (1.0 / np.arange(1, 65)).astype(np.float32)
    paths = []
    for i, start in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - start)
        signal = (rng.standard_normal((n, 64)).astype(np.float32) * scales) @ basis
        chunk = (signal + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)).astype(np.float16)
        path = folder / f"chunk-{i:05d}.npy"
        np.save(path, chunk)
        paths.append(path)
    return paths


def streamed(paths: list[Path]) -> float:
    return vendi(spectrum(np.load(p) for p in paths).eigen()[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--tmp", default=None)
    args = parse_args(parser, {"rows": 20_000, "dim": 128}, argv)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t = time.perf_counter()
        paths = write_chunks(Path(tmp), args.rows, args.dim)
        size = sum(p.stat().st_size for p in paths)
        print(
            f"wrote {args.rows:,} x {args.dim} float16 in {len(paths)} chunk files ({gib(size)}) "
            f"in {time.perf_counter() - t:.0f} s"
        )
        start = rss_bytes()
        with peak_rss() as mem:
            t = time.perf_counter()
            score = streamed(paths)
            seconds = time.perf_counter() - t
        print(
            f"streamed G-Vendi of {args.rows:,} x {args.dim}: {score:.3f} in {seconds:.1f} s "
            f"(target <= 30 s), peak memory +{gib(mem['peak'] - start)} (target <= 1 GiB)"
        )

        small = args.rows // 10
        (Path(tmp) / "small").mkdir()
        small_paths = write_chunks(Path(tmp) / "small", small, args.dim, seed=1)
        matrix = np.concatenate([np.load(p) for p in small_paths]).astype(np.float32)
        from vendi_score.vendi import score_dual

        ours = measure(lambda: streamed(small_paths), repeat=1, warmup=0)
        ref = measure(lambda: score_dual(matrix), repeat=1, warmup=0)
        ours_score = streamed(small_paths)
        print(f"\n{small:,} x {args.dim}:")
        print(f"  streamed (chunk files): {ours.seconds:6.2f} s, peak +{gib(ours.extra_bytes)}")
        print(
            f"  vendi-score score_dual (matrix in memory, float32 given): {ref.seconds:6.2f} s, "
            f"peak +{gib(ref.extra_bytes)}"
        )
        print(
            f"  score_dual / streamed: {ref.seconds / ours.seconds:.1f}x the time, "
            f"{ref.extra_bytes / max(ours.extra_bytes, 1):.1f}x the memory"
        )
        print(f"  scores: ours {ours_score:.6f}, score_dual {score_dual(matrix):.6f}")


if __name__ == "__main__":
    main()
