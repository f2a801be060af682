"""What to compute, as plain frozen data (no torch import): the proxy, the feature settings,
and how to run. Everything in `ProxySpec` and `FeatureConfig` is part of a feature set's
cache key; `Runtime` changes speed, not numbers."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROXY = "Qwen/Qwen2.5-0.5B-Instruct"
FEATURES_VERSION = 1  # bump when the features' numbers change for the same settings
METHODS = ("factorized", "exact")  # the gradient feature methods
SENTENCE = "sentence"  # the sentence-embedding baseline, stored and cached like features


@dataclass(frozen=True)
class ProxySpec:
    """Which proxy model: a hub name (optionally at a revision), a local folder, or tiny-random."""

    name: str = DEFAULT_PROXY
    revision: str | None = None
    trust_remote_code: bool = False


# The range of each numeric setting, inclusive (the CLI, the pages and the checks use these).
FEATURE_BOUNDS = {
    "dim": (8, 65536),
    "rank": (1, 8192),
    "seed": (0, 2**31 - 1),
    "max_length": (8, 131072),
}
RUNTIME_BOUNDS = {
    "batch_size": (1, 1_000_000),
    "token_budget": (8, 10**9),
    "chunk_rows": (1, 1_000_000),
}


@dataclass(frozen=True)
class FeatureConfig:
    """The feature settings (docs/method.md section 2)."""

    method: str = "factorized"
    dim: int = 1024
    rank: int = 128  # K, the per-side sketch size of each weight matrix (factorized only)
    seed: int = 0
    max_length: int = 512

    def key_fields(self) -> dict[str, object]:
        if self.method == SENTENCE:
            return {"method": SENTENCE, "version": FEATURES_VERSION}
        fields = {
            "method": self.method,
            "dim": self.dim,
            "seed": self.seed,
            "max_length": self.max_length,
        }
        if self.method == "factorized":
            fields["rank"] = self.rank
        return {**fields, "version": FEATURES_VERSION}


@dataclass(frozen=True)
class Runtime:
    """How to compute: the device, batch limits and the rows per stored chunk."""

    device: str = "auto"
    batch_size: int | None = None  # at most this many samples per batch
    token_budget: int | None = None  # at most this many padded tokens per batch
    chunk_rows: int = 256
