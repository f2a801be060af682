"""How long computing a dataset's features will take on this machine, said before starting.

The encoder (the proxy model) is loaded on the runtime's device and runs batches of the
dataset's own samples, from about START_TOKENS tokens up, four times more each time, until
a batch lasts TIMED_SECONDS or fills the device's token budget, the size of the batches the
computation runs (the shortest sample warms up first); batches of that size are then timed
until they last TIMED_SECONDS in all (at most MAX_BATCHES). Their tokens per second,
applied to the tokens the computation will process (each sample cut at max_length, as it
is then), is the estimate: length-aware, since a dataset of long samples costs more per
sample. Token counts are exact up to SAMPLE_ROWS rows; a larger dataset is counted on a
seeded random sample of that many rows and extrapolated, and the estimate says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.config import FeatureConfig, ProxySpec, Runtime
from core.encoders import TOKEN_BUDGET, Loaded, Samples, encoder_for
from core.errors import UserError
from core.progress import ProgressFn, no_progress
from core.proxy import resolve_device
from core.rows import sample
from core.workspace import DatasetInfo, Workspace

SAMPLE_ROWS = 10_000  # rows counted exactly; more are sampled
START_TOKENS = 256  # the first timed batch
TIMED_SECONDS = 1.0  # timed batches this long in all measure the rate well enough
MAX_BATCHES = 8  # at most this many timed batches of the final size
GPU_WORK_SECONDS = 3600  # on a CPU, an estimate above this says the work is for a GPU
_COUNT_PIECE = 1000  # rows tokenised between progress reports


@dataclass(frozen=True)
class TokenCounts:
    """The dataset's lengths in the encoder's tokens. `counted` rows were tokenised (all,
    or a random sample: `sampled`); `total` and `over_max_length` are then extrapolated to
    all `rows`. `computed`: the tokens the computation processes, each sample cut at
    `max_length`."""

    rows: int
    counted: int
    total: int
    computed: int
    mean: float
    p95: float
    max: int
    over_max_length: int
    max_length: int

    @property
    def sampled(self) -> bool:
        return self.counted < self.rows


@dataclass(frozen=True)
class Estimate:
    """The time to compute a dataset's features here: `seconds` for all its rows at the
    calibration's `tokens_per_second` on `device`; `rows_left` of them remain (fewer when a
    run resumes), taking `seconds_left`."""

    dataset: str
    proxy: str
    method: str
    device: str
    tokens: TokenCounts
    calibration: dict[str, float]  # batches, samples, tokens, seconds: the timed batches
    tokens_per_second: float
    seconds: float
    rows_left: int

    @property
    def seconds_left(self) -> float:
        return self.seconds * self.rows_left / self.tokens.rows

    @property
    def gpu_work(self) -> bool:
        """Whether this is GPU work: over GPU_WORK_SECONDS on a CPU."""
        return self.device == "cpu" and self.seconds_left > GPU_WORK_SECONDS

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens": {**asdict(self.tokens), "sampled": self.tokens.sampled},
            "seconds_left": self.seconds_left,
            "gpu_work": self.gpu_work,
        }

    def lines(self) -> list[str]:
        """What the CLI and the Features page say."""
        t = self.tokens
        left = f" ({self.rows_left:,} of {t.rows:,} rows left)" if self.rows_left < t.rows else ""
        said = [
            f"about {duration(self.seconds_left)} on {self.device} for {t.rows:,} samples{left}: "
            f"{t.computed:,} tokens at {self.tokens_per_second:,.0f} tokens/s (timed on "
            f"{self.calibration['samples']:.0f} samples of this dataset, in "
            f"{self.calibration['seconds']:.1f} s)",
            f"tokens per sample: mean {t.mean:,.0f}, p95 {t.p95:,.0f}, max {t.max:,}; "
            f"{t.total:,} in all; {t.over_max_length:,} samples "
            f"({t.over_max_length / t.rows:.1%}) over the max length {t.max_length:,}, cut to it"
            + (
                f" (counted on a random {t.counted:,} of the {t.rows:,} rows, extrapolated)"
                if t.sampled
                else ""
            ),
        ]
        if self.gpu_work:
            said.append(
                "this is GPU work: compute the features on a machine with a GPU (`python -m "
                "core embed NAME --out features.safetensors`) and attach the file here "
                "(`python -m core features-import NAME features.safetensors`, or the "
                "Features page)"
            )
        return said


def duration(seconds: float) -> str:
    """A duration in words: 40 s, 12 min, 2 h 5 min, 3 d 4 h."""
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def estimate_features(
    ws: Workspace,
    dataset: str,
    *,
    proxy: ProxySpec = ProxySpec(),
    config: FeatureConfig = FeatureConfig(),
    runtime: Runtime = Runtime(),
    sample_rows: int = SAMPLE_ROWS,
    on_progress: ProgressFn = no_progress,
) -> Estimate:
    """The estimate for computing the dataset's features with these settings (see the
    module doc); loads the proxy, computes and stores nothing. `on_progress(done, total)`
    follows the counting and the timing."""
    encoder = encoder_for(proxy, config)
    if problem := encoder.unavailable():
        raise UserError(problem)
    info = ws.dataset(dataset)
    loaded = encoder.open(runtime)
    return measure(
        loaded, info, proxy, config, runtime, sample_rows=sample_rows, on_progress=on_progress
    )


def measure(
    loaded: Loaded,
    info: DatasetInfo,
    proxy: ProxySpec,
    config: FeatureConfig,
    runtime: Runtime,
    *,
    rows_left: int | None = None,
    sample_rows: int = SAMPLE_ROWS,
    on_progress: ProgressFn = no_progress,
) -> Estimate:
    """The estimate with an encoder already loaded (compute_features uses its own)."""
    samples = _sample(info, sample_rows)
    steps = len(samples) + 1  # counting, then the timing as one step
    lengths: list[int] = []
    for start in range(0, len(samples), _COUNT_PIECE):
        lengths += loaded.token_counts(_part(samples, start, start + _COUNT_PIECE))
        on_progress(len(lengths), steps)
    tokens = _counts(np.array(lengths, dtype=np.int64), info.rows, config.max_length)
    device = resolve_device(runtime.device).type
    budget = runtime.token_budget or TOKEN_BUDGET.get(device, TOKEN_BUDGET["cpu"])
    timed = _time(loaded, samples, lengths, config.max_length, budget)
    on_progress(steps, steps)
    rate = timed["tokens"] / max(timed["seconds"], 1e-9)
    return Estimate(
        dataset=info.name,
        proxy=proxy.name,
        method=config.method,
        device=device,
        tokens=tokens,
        calibration=timed,
        tokens_per_second=rate,
        seconds=tokens.computed / rate,
        rows_left=info.rows if rows_left is None else rows_left,
    )


def _sample(info: DatasetInfo, sample_rows: int) -> Samples:
    """All the dataset's samples, or a seeded random `sample_rows` of them in row order,
    read batch by batch (memory: the sample, not the dataset)."""
    columns = ["prompt", "response", "messages"]
    wanted = None
    if info.rows > sample_rows:
        wanted = sample(info.rows, sample_rows, seed=0)
    kept: dict[str, list] = {c: [] for c in columns}
    first = 0
    for batch in pq.ParquetFile(info.path).iter_batches(batch_size=65536, columns=columns):
        if wanted is None:
            part = batch
        else:
            lo, hi = np.searchsorted(wanted, [first, first + batch.num_rows])
            part = batch.take(wanted[lo:hi] - first)
        for c in columns:
            kept[c] += part.column(c).to_pylist()
        first += batch.num_rows
    return Samples(kept["prompt"], kept["response"], kept["messages"])


def _part(samples: Samples, start: int, end: int) -> Samples:
    return Samples(
        samples.prompts[start:end],
        samples.responses[start:end],
        samples.messages[start:end] if samples.messages else None,
    )


def _counts(lengths: np.ndarray, rows: int, max_length: int) -> TokenCounts:
    """The token counts of all `rows` from the lengths of those counted."""
    scale = rows / len(lengths)
    return TokenCounts(
        rows=rows,
        counted=len(lengths),
        total=round(int(lengths.sum()) * scale),
        computed=round(int(np.minimum(lengths, max_length).sum()) * scale),
        mean=round(float(lengths.mean()), 1),
        p95=round(float(np.percentile(lengths, 95)), 1),
        max=int(lengths.max()),
        over_max_length=round(int((lengths > max_length).sum()) * scale),
        max_length=max_length,
    )


def _time(
    loaded: Loaded, samples: Samples, lengths: list[int], max_length: int, budget: int
) -> dict[str, float]:
    """The timed batches at their final size (see the module doc): their count and their
    samples, tokens (cut at max_length) and seconds in all. Batches are drawn in turn from
    a seeded shuffle of the samples (round again when a small dataset runs out)."""
    order = [int(i) for i in np.random.default_rng(1).permutation(len(lengths))]
    loaded.encode(_pick(samples, [int(np.argmin(lengths))]))  # warm-up, untimed
    timed = {"batches": 0, "samples": 0, "tokens": 0, "seconds": 0.0}
    target, at = START_TOKENS, 0
    while True:
        chosen, tokens = [], 0
        while tokens < target:
            row = order[at % len(order)]
            chosen.append(row)
            tokens += min(lengths[row], max_length)
            at += 1
        started = time.perf_counter()
        loaded.encode(_pick(samples, chosen))
        seconds = time.perf_counter() - started
        if target < budget and seconds < TIMED_SECONDS:
            target = min(target * 4, budget)  # too short to measure: a larger batch
            continue
        for name, value in zip(timed, (1, len(chosen), tokens, seconds), strict=True):
            timed[name] += value
        if timed["seconds"] >= TIMED_SECONDS or timed["batches"] >= MAX_BATCHES:
            return timed


def _pick(samples: Samples, rows: list[int]) -> Samples:
    return Samples(
        [samples.prompts[i] for i in rows],
        [samples.responses[i] for i in rows],
        [samples.messages[i] for i in rows] if samples.messages else None,
    )
