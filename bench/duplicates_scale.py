"""Near-duplicate search at scale: `curation.similar_pairs` (upper-triangle bands, at most
SIMS_BYTES of products at once) against the reference of full-width blocks of 4096 rows
(every row against all rows), on the same features in the same process: time, memory
above the process's resident size before the run, and the pairs found (they must agree).

The features are clustered (thin and crowded regions) with some exact copies, unit rows.

    python bench/duplicates_scale.py [--rows 50000] [--dim 1024] [--threshold 0.98] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import gib, measure, parse_args
from bench.synthetic import clustered_features
from core.vendi import unit_rows


def reference_pairs(x: np.ndarray, threshold: float, block: int = 4096) -> list[tuple[int, int]]:
    """Every row against all rows, 4096 rows at a time (block x N products in memory)."""
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(x), block):
        a, b = np.nonzero(x[start : start + block] @ x.T > threshold)
        keep = (start + a) < b
        pairs += zip((start + a[keep]).tolist(), b[keep].tolist(), strict=True)
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--threshold", type=float, default=0.98)
    args = parse_args(parser, {"rows": 3000, "dim": 128}, argv)
    from core.curation import similar_pairs  # loads torch: after the flags are read

    x = clustered_features(args.rows, args.dim)
    chosen = np.random.default_rng(1).choice(args.rows, args.rows // 50, replace=False)
    copies, originals = np.split(chosen, 2)
    x[copies] = x[originals]  # 1% of rows are copies of other rows
    x = unit_rows(x, np.float32)
    found: dict[str, set] = {}

    def run(name, fn):
        def call():
            found[name] = set(fn(x, args.threshold))

        return measure(call, repeat=1, warmup=0)

    ref = run("reference", reference_pairs)
    new = run("bands", similar_pairs)
    assert found["bands"] == found["reference"], "the two searches disagree"
    print(f"{args.rows:,} x {args.dim} unit rows, cosine above {args.threshold}")
    print(f"{'search':<34} {'seconds':>8} {'extra memory':>13} {'pairs':>8}")
    for name, m, label in (
        ("reference", ref, "reference: full-width 4096 blocks"),
        ("bands", new, "similar_pairs: upper-triangle bands"),
    ):
        print(f"{label:<34} {m.seconds:>8.1f} {gib(m.extra_bytes):>13} {len(found[name]):>8,}")
    print(
        f"bands / reference: time {new.seconds / ref.seconds:.2f}x, "
        f"extra memory {new.extra_bytes / max(ref.extra_bytes, 1):.2f}x"
    )


if __name__ == "__main__":
    main()
