"""Surface diversity baselines over the text: distinct n-grams and lengths."""

from __future__ import annotations

import re
from collections.abc import Iterable

_TOKEN = re.compile(r"\w+|[^\w\s]")


def distinct_n(texts: Iterable[str], n_max: int = 4) -> dict[int, float]:
    """For n = 1..n_max: distinct n-grams / all n-grams over the texts (lower-cased words
    and punctuation marks). 1.0 means no n-gram repeats."""
    seen: list[set[int]] = [set() for _ in range(n_max)]
    totals = [0] * n_max
    for text in texts:
        tokens = _TOKEN.findall(text.lower())
        for n in range(1, n_max + 1):
            grams = list(zip(*(tokens[i:] for i in range(n)), strict=False))
            totals[n - 1] += len(grams)
            seen[n - 1].update(map(hash, grams))
    return {
        n: (len(seen[n - 1]) / totals[n - 1] if totals[n - 1] else 0.0) for n in range(1, n_max + 1)
    }


def mean_length(texts: Iterable[str]) -> dict[str, float]:
    """Mean length of the texts in characters and in words."""
    count = chars = words = 0
    for text in texts:
        count += 1
        chars += len(text)
        words += len(text.split())
    return {"chars": chars / count if count else 0.0, "words": words / count if count else 0.0}
