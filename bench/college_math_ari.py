"""Plumbing check: do the k-means clusters of college_math follow its `data_topic` label?

Imports ../shared/data/math-benchmarks/college_math.jsonl (2,818 rows, 7 topics), clusters
it with spherical k-means (k = 7, the number of topics, and the map's default k) in two
spaces, and prints the adjusted Rand index against `data_topic`: gradient features of the
tiny-random proxy (random weights: a plumbing check, not the method) and the
sentence-embedding baseline.

    python bench/college_math_ari.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import SENTENCE, FeatureConfig, ProxySpec
from core.diversity import group_labels
from core.features import compute_features
from core.maps import clusters_for
from core.regions import default_k
from core.sentence import SENTENCE_MODEL
from core.workspace import Workspace

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "math-benchmarks"
    / "college_math.jsonl"
)


def main() -> None:
    if not DATA.exists():
        sys.exit("../shared/data is not beside the repository")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        info, _ = ws.import_dataset(DATA, name="college_math")
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
                adjusted_rand_score(topics, clusters_for(ws, fs, k=k).labels)
                for k in (n_topics, default_k(info.rows))
            ]
            print(f"| {label} | {scores[0]:.3f} | {scores[1]:.3f} |")
        counts = {t: int((topics == t).sum()) for t in np.unique(topics)}
        print("\ntopics:", json.dumps(counts))


if __name__ == "__main__":
    main()
