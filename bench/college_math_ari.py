"""Plumbing check: do the k-means clusters of college_math follow its `data_topic` label?

Imports ../shared/data/math-benchmarks/college_math.jsonl (2,818 rows, 7 topics), clusters
it with spherical k-means (k = 7, the number of topics, and the map's default k) in two
spaces, and prints the adjusted Rand index against `data_topic`: gradient features of the
tiny-random proxy (random weights: a plumbing check, not the method) and the
sentence-embedding baseline.

    python bench/college_math_ari.py [--rows N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import parse_args, shared_data
from core.config import SENTENCE, FeatureConfig, ProxySpec

# scikit-learn and the core modules that load torch and pyarrow are imported after the flags
# are read, so that `--help` and importing this file stay instant.


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=None, help="a seeded random sample of N rows (default: all)"
    )
    args = parse_args(parser, {"rows": 100}, argv)
    data = shared_data() / "math-benchmarks" / "college_math.jsonl"
    from sklearn.metrics import adjusted_rand_score

    from core.diversity import group_labels
    from core.features import compute_features
    from core.maps import clusters_for
    from core.regions import default_k
    from core.sentence import SENTENCE_MODEL
    from core.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        if args.rows is not None:
            lines = data.read_text().splitlines(keepends=True)
            if not 0 < args.rows <= len(lines):
                parser.error(f"--rows: must be between 1 and {len(lines):,}, not {args.rows}")
            chosen = np.sort(np.random.default_rng(0).choice(len(lines), args.rows, replace=False))
            data = Path(tmp) / "college_math.jsonl"
            data.write_text("".join(lines[i] for i in chosen))
        ws = Workspace(Path(tmp) / "ws")
        info, _ = ws.import_dataset(data, name="college_math")
        topics = group_labels(ws, "college_math", "data_topic")
        n_topics = len(np.unique(topics))
        spaces = {
            "gradient features, tiny-random": (ProxySpec("tiny-random"), FeatureConfig()),
            "sentence embeddings (all-MiniLM-L6-v2)": (
                ProxySpec(SENTENCE_MODEL),
                FeatureConfig(method=SENTENCE),
            ),
        }
        print(f"college_math: {info.rows} rows, {n_topics} topics in data_topic\n")
        print(f"| space | ARI, k = {n_topics} | ARI, k = {default_k(info.rows)} (map default) |")
        print("| --- | ---: | ---: |")
        for label, (proxy, config) in spaces.items():
            fs = compute_features(ws, "college_math", proxy=proxy, config=config)
            scores = [
                adjusted_rand_score(topics, clusters_for(fs, k=k).labels)
                for k in (n_topics, default_k(info.rows))
            ]
            print(f"| {label} | {scores[0]:.3f} | {scores[1]:.3f} |")
        counts = {t: int((topics == t).sum()) for t in np.unique(topics)}
        print("\ntopics:", json.dumps(counts))


if __name__ == "__main__":
    main()
