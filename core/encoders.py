"""The kinds of feature vectors, behind one small interface: an `Encoder`.

An Encoder is a kind of vector with its settings, read from a `ProxySpec` (the model, or
whatever the vectors come from) and a `FeatureConfig` (whose `method` names the kind):

- `settings()`: the feature settings its vectors depend on, `method` first (what the
  pages show and the cache key holds); `identity()`: what pins the model's numbers, found
  without loading it; `key_fields()`: the two together, the cache key's part besides the
  data (core/features.py hashes it with the dataset's fingerprint).
- `open(runtime)`: the loaded encoder (`Loaded`): its `dim`, `encode(samples, on_rows)`,
  which gives one float32 row per sample and the count of samples cut short, and
  `facts()`, what the CLI and the pages say about it.

The kinds: gradient features of a proxy LM (`factorized` or `exact`, core/gradients.py),
sentence embeddings (`sentence`, the baseline, core/sentence.py), and vectors imported
from a file (`file`, core/vectorfiles.py): their `ProxySpec.name` is their identity,
`file:` and a hash of the file's contents (and of the id column that matched its rows),
`settings()` the method; the feature store writes them at import and nothing can compute
more of them (`unavailable()` says why). `encoder_for` is the one place that picks the
kind; the feature store, the cache key and the pages use only the interface.
"""

from __future__ import annotations

import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from core.config import (
    FEATURES_VERSION,
    FILE,
    METHODS,
    SENTENCE,
    FeatureConfig,
    ProxySpec,
    Runtime,
)
from core.errors import UserError
from core.gradients import collate, featurizer
from core.proxy import Encoded, load_proxy, proxy_facts, proxy_identity, resolve_device

TOKEN_BUDGET = {"cpu": 4096, "cuda": 32768}
MAX_BATCH = 64


@dataclass(frozen=True)
class Samples:
    """A batch of records to encode, in order. `messages`: each record's own chat as JSON
    text, or None (then prompt and response make the chat); `ids`: the records' ids, for a
    kind that looks vectors up (the feature store gives them; new samples have none)."""

    prompts: list[str]
    responses: list[str]
    messages: list[str | None] | None = None
    ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.prompts)


def _no_rows(done: int) -> None:
    """An `on_rows` that ignores progress."""


class Loaded(Protocol):
    """A loaded encoder: what `Encoder.open` returns."""

    dim: int

    def encode(
        self, samples: Samples, on_rows: Callable[[int], None] = _no_rows
    ) -> tuple[np.ndarray, int]:
        """(len(samples) x dim float32 rows in the samples' order, samples cut short);
        `on_rows(n)` may be told the rows done so far within the batch."""
        ...

    def facts(self) -> dict[str, Any]:
        """What the CLI and the pages say about the encoder (a "warning" for a random proxy)."""
        ...

    def token_counts(self, samples: Samples) -> list[int]:
        """Each sample's length in the encoder's tokens, before any cut (for estimates)."""
        ...


@dataclass(frozen=True)
class Encoder(ABC):
    """A kind of feature vector and its settings (see the module doc); loads nothing."""

    proxy: ProxySpec
    config: FeatureConfig

    def settings(self) -> dict[str, object]:
        return {"method": self.config.method}

    def identity(self) -> str:
        return proxy_identity(self.proxy.name, self.proxy.revision)

    def key_fields(self) -> dict[str, object]:
        return {"proxy": self.identity(), **self.settings(), "version": FEATURES_VERSION}

    def unavailable(self) -> str | None:
        """Why vectors of this kind cannot be computed for samples (new ones or a dataset's),
        or None when they can."""
        return None

    @abstractmethod
    def open(self, runtime: Runtime) -> Loaded:
        """Load what the vectors need (a model) on the runtime's device."""


class GradientFeatures(Encoder):
    """Per-sample gradient features of the proxy (`factorized` or `exact`)."""

    def settings(self) -> dict[str, object]:
        c = self.config
        rank = {"rank": c.rank} if c.method == "factorized" else {}
        return {
            "method": c.method,
            "dim": c.dim,
            **rank,
            "seed": c.seed,
            "max_length": c.max_length,
        }

    def open(self, runtime: Runtime) -> Loaded:
        return _Gradients(self.proxy, self.config, runtime)


class SentenceEmbeddings(Encoder):
    """Sentence-transformers embeddings of prompt + response (the baseline); the proxy's
    name is the sentence model."""

    def identity(self) -> str:
        from core.sentence import resolve_sentence_model

        return proxy_identity(resolve_sentence_model(self.proxy.name), self.proxy.revision)

    def open(self, runtime: Runtime) -> Loaded:
        from core.sentence import SentenceModel

        return SentenceModel(self.proxy.name, device=str(resolve_device(runtime.device)))


class FileVectors(Encoder):
    """Vectors imported from a file (core/features.py `import_features`): the proxy's name
    is their identity (`file:` and a hash of the file); only the import writes them."""

    def identity(self) -> str:
        return self.proxy.name

    def unavailable(self) -> str:
        return (
            f"the proxy that made the imported vectors {self.proxy.name} is unknown (the file "
            "names none), and vectors of new samples must come from the same proxy: for "
            "synthesis, compute gradient features here with a proxy, or import a file that "
            "this tool's `embed --out` wrote (it names its proxy)"
        )

    def open(self, runtime: Runtime) -> Loaded:  # noqa: ARG002 - the interface's
        raise UserError(self.unavailable())


KINDS: dict[str, type[Encoder]] = {
    **dict.fromkeys(METHODS, GradientFeatures),
    SENTENCE: SentenceEmbeddings,
    FILE: FileVectors,
}


def encoder_for(proxy: ProxySpec, config: FeatureConfig) -> Encoder:
    """The encoder of these settings (by `config.method`); loads nothing."""
    kind = KINDS.get(config.method)
    if kind is None:
        raise UserError(f"method {config.method!r}: use {', '.join(KINDS)}")
    return kind(proxy, config)


# --- gradient features ------------------------------------------------------------------------


class _Gradients:
    """Samples -> gradient features with a loaded proxy: length-sorted batches within a
    token budget, halved when the device runs out of memory."""

    def __init__(self, proxy: ProxySpec, config: FeatureConfig, runtime: Runtime):
        self.proxy = load_proxy(
            proxy.name,
            revision=proxy.revision,
            trust_remote_code=proxy.trust_remote_code,
            device=runtime.device,
        )
        self.config, self.dim = config, config.dim
        self.features = featurizer(self.proxy.model, config)
        self.budget = runtime.token_budget or TOKEN_BUDGET[self.proxy.device.type]
        self.max_batch = min(runtime.batch_size or MAX_BATCH, self.features.max_batch or MAX_BATCH)

    def facts(self) -> dict[str, Any]:
        return {
            **proxy_facts(self.proxy),
            "max_length": self.config.max_length,
            "uncovered_parameters": self.features.uncovered,
        }

    def _encoded(self, samples: Samples, max_length: int) -> list[Encoded]:
        messages = samples.messages or [None] * len(samples)
        return [
            self.proxy.encode(p, r, messages=json.loads(m) if m else None, max_length=max_length)
            for p, r, m in zip(samples.prompts, samples.responses, messages, strict=True)
        ]

    def token_counts(self, samples: Samples) -> list[int]:
        return [len(e.ids) for e in self._encoded(samples, sys.maxsize)]

    def encode(
        self, samples: Samples, on_rows: Callable[[int], None] = _no_rows
    ) -> tuple[np.ndarray, int]:
        encoded = self._encoded(samples, self.config.max_length)
        values = _run_chunk(
            self.features, encoded, self.proxy, self.budget, self.max_batch, on_rows
        )
        return values, sum(e.truncated for e in encoded)


def _run_chunk(
    features,
    encoded: list[Encoded],
    proxy,
    budget: int,
    max_batch: int,
    on_rows: Callable[[int], None],
) -> np.ndarray:
    """Features of one chunk in its row order: length-sorted batches within a token budget.
    `on_rows(n)` is told the rows done so far after each batch."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
    out = np.zeros((len(encoded), features.config.dim), dtype=np.float32)
    batches, current = [], []
    for i in order:
        longest = len(encoded[i].ids)
        if current and ((len(current) + 1) * longest > budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    done = 0
    for rows in batches:
        for part, values in _with_oom_retry(features, [encoded[i] for i in rows], rows, proxy):
            out[part] = values
            done += len(part)
            if done < len(encoded):  # the chunk's end is reported once it is stored
                on_rows(done)
    return out


def _with_oom_retry(
    features, samples: list[Encoded], rows: list[int], proxy
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Run a batch; when the device runs out of memory, halve it and go on."""
    try:
        batch = collate(samples, pad_id=_pad_id(proxy.tokenizer)).to(proxy.device)
        values = features(batch).float().cpu().numpy()
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not isinstance(e, torch.OutOfMemoryError) and "allocate memory" not in str(e):
            raise
        if proxy.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(samples) == 1:
            raise UserError(
                f"one sample of {len(samples[0].ids)} tokens does not fit in the device's memory; "
                "lower the max length (tokens per sample)"
            ) from e
        half = len(samples) // 2
        yield from _with_oom_retry(features, samples[:half], rows[:half], proxy)
        yield from _with_oom_retry(features, samples[half:], rows[half:], proxy)
        return
    yield rows, values


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0
