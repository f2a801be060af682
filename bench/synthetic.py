"""Synthetic inputs shared by the benchmarks: clustered feature rows, problem JSONL rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def clustered_features(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """rows x dim float32 around 200 random centres of uneven sizes (thin and crowded regions)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    weights = rng.dirichlet(np.full(200, 0.3))
    which = rng.choice(200, rows, p=weights)
    return centres[which] + 0.8 * rng.standard_normal((rows, dim)).astype(np.float32)


def problems_jsonl(path: Path, rows: int) -> Path:
    """Write `rows` distinct word problems with worked answers (question, answer, topic)."""
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
