"""What to compute, as plain frozen data (no torch import): the proxy, the feature settings,
how to run, the three together as a `FeatureRequest`, and the synthesis settings.
`ProxySpec` and `FeatureConfig` choose the encoder (core/encoders.py) whose settings make
a feature set's cache key; `Runtime` changes speed, not numbers. Every field declares its
default, help and range once (core/settings.py); the CLI's flags and the pages' widgets
come from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from core.errors import OutOfRange, UserError
from core.settings import check_bounds, default_of, flat_name, kind_of, setting

DEFAULT_PROXY = "Qwen/Qwen2.5-0.5B-Instruct"
FEATURES_VERSION = 1  # bump when the features' numbers change for the same settings
METHODS = ("factorized", "exact")  # the gradient feature methods
SENTENCE = "sentence"  # the sentence-embedding baseline, stored and cached like features
SPACES = ("gradient", SENTENCE)  # the spaces a map is drawn in (core/maps.py space_request)
# how `select` chooses its rows (core/selection.py): greedy in gradient / sentence space
SELECTION_METHODS = ("greedy", "sentence", "random")
FILE = "file"  # vectors imported from a file (features-import); their proxy is their identity
FILE_PREFIX = "file:"  # how such an identity starts: file:<hash of the file's contents>
DEVICES = ("auto", "cpu", "cuda")  # the usual devices (cuda:N works too)
VERIFIERS = ("math", "label")  # how the solutions of a synthetic problem agree
ENGINES = ("local", "ray")  # where feature chunks are computed


@dataclass(frozen=True)
class ProxySpec:
    """Which proxy model: a hub name (optionally at a revision), a local folder, or tiny-random."""

    name: str = setting(
        DEFAULT_PROXY,
        flag="--proxy",
        help="the small causal LM whose gradients define the feature space: a hub name, a "
        "local folder, or tiny-random (a random model for trying the workflow offline: its "
        "scores mean nothing); for the method file, the identity of imported vectors "
        "(file:..., as features-import says)",
    )
    revision: str | None = setting(
        None, help="pin the proxy to a hub revision (branch, tag or commit)"
    )
    trust_remote_code: bool = setting(False, help="allow a proxy's own code to run")


@dataclass(frozen=True)
class FeatureConfig:
    """The feature settings (docs/method.md section 2)."""

    method: str = setting(
        "factorized",
        choices=(*METHODS, FILE),
        help="factorized: fast, batched; exact: the paper's reference, slow; file: vectors "
        "attached with features-import",
    )
    dim: int = setting(1024, help="feature dimensions", low=8, high=65536)
    # K, the per-side sketch size of each weight matrix
    rank: int = setting(128, help="per-layer sketch rank (factorized)", low=1, high=8192)
    seed: int = setting(0, help="projection seed", low=0, high=2**31 - 1)
    max_length: int = setting(512, help="tokens per sample", low=8, high=131072)


@dataclass(frozen=True)
class Runtime:
    """How to compute: the device, batch limits, the rows per stored chunk, and the engine
    (this process, or a Ray cluster's actors) with its resources."""

    device: str = setting(
        "auto", help="auto (a CUDA GPU when there is one, else the CPU), cpu or cuda"
    )
    batch_size: int | None = setting(None, help="at most this many samples per batch", low=1)
    token_budget: int | None = setting(
        None, help="at most this many padded tokens per batch", low=8
    )
    chunk_rows: int = setting(256, help="rows per stored chunk", low=1, high=1_000_000)
    # where the chunks are computed (core/engines.py): here, or by a Ray cluster's actors
    engine: str = setting(
        "local",
        choices=ENGINES,
        help="local: in this process; ray: by an actor pool on a Ray cluster (see --address)",
    )
    address: str | None = setting(
        None,
        help="the Ray cluster for --engine ray: host:port of its head (ray start --head), "
        "ray://host:port, or auto (one started on this machine); default: $RAY_ADDRESS, "
        "else a cluster of this machine's CPUs and GPUs started for the run",
    )
    workers: int = setting(1, help="Ray actors computing features (--engine ray)", low=1, high=4096)
    gpus_per_worker: float = setting(
        0.0, help="GPUs each Ray actor holds (--engine ray; 0: it computes on CPUs)", low=0, high=64
    )
    cpus_per_worker: float = setting(
        1.0, help="CPUs each Ray actor holds (--engine ray)", low=0, high=1024
    )


@dataclass(frozen=True)
class SynthesisSettings:
    """What to aim at and how hard. No clusters and no selection: auto mode (sparse clusters).
    Each field declares its default, help and range once (core/settings.py), for the CLI's
    flags and the page's widgets."""

    # targeted: cluster ids of the map (its k and seed)
    clusters: tuple[int, ...] = setting(
        (), help="map cluster ids to fill (comma-separated), or auto: the sparse clusters"
    )
    selection: str | None = setting(None, help="a saved selection to fill instead")
    target: int = setting(20, help="accepted samples wanted", low=1)
    rounds: int = setting(2, help="rounds, re-clustering between them", low=1)
    solutions: int = setting(3, help="solutions per problem for the vote", low=1)
    problems_per_prompt: int = setting(
        2, flag="--problems", help="problems asked for per request", low=1
    )
    exemplars: int = setting(5, help="exemplars shown per request", low=1)
    # see regions.k_problem
    k: float | None = setting(None, help="clusters: a count or a fraction (default: the map's)")
    sparse_below: float = setting(
        50.0,
        help="a cluster is sparse below this percentile of cluster sizes",
        low=0.0,
        above=True,
        high=100.0,
    )
    cap: int | None = setting(None, help="at most this many accepted per cluster and round", low=1)
    duplicate_cosine: float = setting(
        0.98, help="a gradient cosine above this with a sample is a duplicate", low=-1.0, high=1.0
    )
    verifier: str = setting(
        "math",
        choices=VERIFIERS,
        help="how answers agree: math (math-verify equivalence of \\boxed{} answers) or "
        "label (exact label match)",
    )
    generate_temperature: float = setting(1.0, help="temperature of the problem requests", low=0.0)
    top_p: float = setting(0.95, help="top-p of the requests", low=0.0, above=True, high=1.0)
    solve_temperature: float = setting(0.75, help="temperature of the solution requests", low=0.0)
    max_tokens: int = setting(2048, help="completion tokens per request", low=1)
    seed: int = setting(0, help="the seed of the run's random choices")

    def __post_init__(self) -> None:
        from core.regions import k_problem

        check_bounds(self)
        if self.k is not None and (problem := k_problem(self.k)):
            raise OutOfRange("k", problem)
        if self.verifier not in VERIFIERS:
            raise UserError(f"verifier {self.verifier!r}: use math or label")

    @property
    def mode(self) -> str:
        return "targeted" if self.clusters or self.selection else "auto"

    def map_k(self, rows: int) -> int:
        """The clusters of the map that round 1 uses, for a dataset of `rows` rows."""
        from core.regions import default_k, resolve_k

        return resolve_k(self.k, rows) if self.k else default_k(rows)


class FeatureRequest(NamedTuple):
    """The proxy, the feature settings and the runtime a feature set is asked for with
    (unpacks as `proxy, config, runtime`). The one mapping from flat settings, each field
    under its flat name (`proxy`, `revision`, `method`, `dim`, ..., `device`, `chunk_rows`):
    the CLI's arguments and the sidebar's saved settings alike."""

    proxy: ProxySpec = ProxySpec()
    config: FeatureConfig = FeatureConfig()
    runtime: Runtime = Runtime()

    @classmethod
    def from_flags(cls, args: Any) -> FeatureRequest:
        """From the CLI's parsed arguments (an argparse Namespace)."""
        return cls.from_settings(vars(args))

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> FeatureRequest:
        """From the settings the app saved (`to_saved`). Remote code never runs from the
        app: only the command line allows it."""
        return cls.from_settings({k: v for k, v in saved.items() if k != "trust_remote_code"})

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> FeatureRequest:
        """From flat settings; a missing or None value takes the field's default, and an
        empty text one that may be None (a revision) is None."""
        return cls(*(_from_flat(part, values) for part in (ProxySpec, FeatureConfig, Runtime)))

    def to_saved(self) -> dict[str, Any]:
        """The flat settings that `from_saved` reads back."""
        return {
            flat_name(type(part), f.name): getattr(part, f.name)
            for part in self
            for f in fields(part)
            if f.name != "trust_remote_code"
        }


def _from_flat(settings: type, values: Mapping[str, Any]) -> Any:
    """An instance of the settings dataclass from its fields' flat names in `values`."""
    given = {}
    for f in fields(settings):
        value = values.get(flat_name(settings, f.name))
        if value is None:
            continue
        if value == "" and default_of(settings, f.name) is None:
            value = None
        elif (kind := kind_of(settings, f.name)) in (int, float):
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise UserError(
                    f"setting {flat_name(settings, f.name)}: {value!r} is not a number"
                ) from None
        given[f.name] = value
    return settings(**given)
