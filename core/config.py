"""What to compute, as plain frozen data (no torch import): the proxy, the feature settings,
and how to run. Everything in `ProxySpec` and `FeatureConfig` is part of a feature set's
cache key; `Runtime` changes speed, not numbers."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import bounded

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


@dataclass(frozen=True)
class FeatureConfig:
    """The feature settings (docs/method.md section 2)."""

    method: str = "factorized"
    dim: int = bounded(1024, low=8, high=65536)
    rank: int = bounded(128, low=1, high=8192)  # K, per-side sketch size of each weight matrix
    seed: int = bounded(0, low=0, high=2**31 - 1)
    max_length: int = bounded(512, low=8, high=131072)  # tokens per sample

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
    batch_size: int | None = bounded(None, low=1)  # at most this many samples per batch
    token_budget: int | None = bounded(None, low=8)  # at most this many padded tokens per batch
    chunk_rows: int = bounded(256, low=1, high=1_000_000)
