"""The Prismatic Synthesis loop (docs/method.md section 3), as durable, resumable runs:
their settings, their records and review, and running one (the loop itself is in
core/synthesis_loop.py, its decisions in core/synthesis_policy.py).

Each round: cluster the pool (seed samples + samples accepted so far) in gradient space;
pick the target clusters (the curator's, or the sparse ones); ask the generator for new
problems from up to 5 shuffled exemplars of each; solve each problem K times; keep the
problems whose solutions have a majority answer; compute their features with the same
proxy and projection; assign each to its nearest centroid, and ACCEPT it only if that
cluster is under-represented (a target cluster, or a sparse one with room left), and it
is not a duplicate of an existing sample. Every rejection keeps its reason.

Durability: every LLM request is keyed and logged as it completes (core/llm.py), every
item is written to the catalogue as its stage ends, and the run's choices are seeded, so
running a run again (resume) replays finished requests from the log, never sending them
twice, and continues where it stopped with the same decisions.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple

import numpy as np

from core.catalogue import RunCounts, RunRow
from core.config import FeatureConfig, ProxySpec, Runtime, SynthesisSettings
from core.encoders import Samples, encoder_for
from core.errors import Cancelled, UserError
from core.features import FeatureSet
from core.llm import LLMSettings
from core.maps import clusters_for
from core.prompts import load_templates
from core.records import Record
from core.regions import Clustering
from core.synthesis_loop import Loop
from core.synthesis_policy import check_clusters
from core.vendi import unit_rows
from core.workspace import Workspace, process_alive

# --- runs in the catalogue -----------------------------------------------------------------


class RunFailed(UserError):
    """A run ended 'failed'; the message says which and why. It can be resumed."""


def create_run(
    ws: Workspace,
    dataset: str,
    *,
    llm: LLMSettings,
    settings: SynthesisSettings,
    proxy: ProxySpec,
    config: FeatureConfig,
    runtime: Runtime = Runtime(),
) -> str:
    """Record a new run (state 'created'); returns its id. The templates are fixed now.
    Targets that cannot work (an unknown selection, a cluster the map lacks) are refused
    here, before any record or work."""
    info = ws.dataset(dataset)
    if problem := encoder_for(proxy, config).unavailable():  # imported vectors: no proxy
        raise UserError(problem)
    if settings.selection:
        ws.selection(dataset, settings.selection)  # a clear error now, not mid-run
    check_clusters(settings.clusters, settings.map_k(info.rows))
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    record = {
        "synthesis": {**asdict(settings), "clusters": list(settings.clusters)},
        "llm": llm.public(),
        "proxy": asdict(proxy),
        "features": asdict(config),
        "runtime": asdict(runtime),
        "templates": load_templates(ws),
        "dataset": dataset,
    }
    ws.catalogue.add_run(run_id, info.id, record)
    return run_id


class RunRequest(NamedTuple):
    """The settings a run was created with (unpacks as `proxy, config, settings`)."""

    proxy: ProxySpec
    config: FeatureConfig
    settings: SynthesisSettings

    def round1_clusters(self, fs: FeatureSet) -> Clustering:
        """The map's clusters that the run's round 1 uses, on its seed features `fs`: the
        map at `SynthesisSettings.map_k` of the dataset, the features' seed."""
        return clusters_for(fs, k=self.settings.map_k(fs.rows), seed=self.config.seed)


def run_request(run: dict[str, Any]) -> RunRequest:
    """The proxy, feature settings and synthesis settings of a run (a run_info dict)."""
    record = run["settings"]
    synthesis = record["synthesis"]
    return RunRequest(
        ProxySpec(**record["proxy"]),
        FeatureConfig(**record["features"]),
        SynthesisSettings(**{**synthesis, "clusters": tuple(synthesis["clusters"])}),
    )


def run_info(ws: Workspace, run_id: str) -> dict[str, Any]:
    """A run: its catalogue row (id, dataset, state, settings, usage, G-Vendi before and
    after, error, pid, times) and `counts`, derived from its items (RunCounts.as_dict)."""
    row = ws.catalogue.run(run_id)
    if row is None:
        known = ", ".join(r["id"] for r in list_runs(ws)[:5]) or "none yet"
        raise UserError(f"no synthesis run {run_id!r} in this workspace (recent runs: {known})")
    return _run_dict(row, ws.catalogue.run_counts([run_id])[run_id])


def list_runs(ws: Workspace, dataset: str | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, as run_info gives them (of one dataset, or all)."""
    rows = ws.catalogue.runs(ws.dataset(dataset).id if dataset else None)
    counts = ws.catalogue.run_counts([r.id for r in rows])
    return [_run_dict(r, counts[r.id]) for r in rows]


def _run_dict(row: RunRow, counts: RunCounts) -> dict[str, Any]:
    d = {**asdict(row), "counts": counts.as_dict()}
    if d["state"] == "running" and d["pid"] and not process_alive(d["pid"]):
        d["state"] = "interrupted"  # its process died: resume it
    return d


def review(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """Every item of a run (catalogue.ReviewedItem's fields) with its automatic decision
    (`status`), the curator's `override`, and the `decision` that counts (accepted,
    rejected or pending)."""
    run_info(ws, run_id)
    return [asdict(item) for item in ws.catalogue.items(run_id)]


def set_decision(ws: Workspace, run_id: str, item_id: str, decision: str | None) -> None:
    """The curator's verdict on an item: 'accepted', 'rejected', or None for the automatic one."""
    if decision not in (None, "accepted", "rejected"):
        raise UserError("a decision is accepted, rejected, or none (the automatic one)")
    with ws.catalogue.transaction() as catalogue:
        found = catalogue.items(run_id, item_id)
        if not found:
            raise UserError(f"run {run_id!r} has no item {item_id!r}")
        if decision == "accepted" and not found[0].response:
            raise UserError(f"item {item_id!r} has no usable solution to accept")
        catalogue.set_override(run_id, item_id, decision)


def synthetic_records(ws: Workspace, dataset: str) -> list[Record]:
    """The dataset's accepted synthetic samples (curator overrides applied), as records with
    source 'synthetic' and their provenance in meta."""
    out = []
    for run in reversed(list_runs(ws, dataset)):
        model = run["settings"]["llm"]["model"]
        for item in review(ws, run["id"]):
            if item["decision"] != "accepted":
                continue
            agreeing = sum(1 for a in item["answers"] if a is not None and a == item["majority"])
            out.append(
                Record(
                    id=f"syn-{run['id']}-{item['item_id']}",
                    prompt=item["problem"],
                    response=item["response"],
                    source="synthetic",
                    origin_file=f"run:{run['id']}",
                    origin_row=0,
                    meta={
                        "run": run["id"],
                        "round": item["round"],
                        "cluster": item["landed_cluster"],
                        "target_cluster": item["target_cluster"],
                        "exemplar_ids": item["exemplar_ids"],
                        "generator": model,
                        "votes": {
                            "answers": item["answers"],
                            "majority": item["majority"],
                            "agreeing": agreeing,
                        },
                    },
                )
            )
    return out


def run_features(ws: Workspace, run: dict[str, Any]) -> dict[str, np.ndarray]:
    """The unit features of a run's items that reached the acceptance stage, by item id
    (a run_info dict; the loop keeps them per round, core/synthesis_loop.py)."""
    folder = ws.dataset(run["dataset"]).path.parent / "runs" / run["id"]
    stored: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("features-r*.npz")):
        with np.load(path, allow_pickle=False) as saved:
            for item_id, vector in zip(saved["ids"], saved["features"], strict=True):
                stored[str(item_id)] = vector
    return stored


def synthetic_features(
    ws: Workspace,
    dataset: str,
    proxy: ProxySpec,
    config: FeatureConfig,
    runtime: Runtime = Runtime(),
) -> np.ndarray:
    """Unit features of the dataset's accepted synthetic samples (in `synthetic_records`
    order) under these feature settings: from the runs' stores where a run used the same
    settings, else computed."""
    records = synthetic_records(ws, dataset)
    stored: dict[str, np.ndarray] = {}
    for run in list_runs(ws, dataset):
        request = run_request(run)
        if (request.proxy, request.config) != (proxy, config):
            continue
        for item_id, vector in run_features(ws, run).items():
            stored[f"syn-{run['id']}-{item_id}"] = vector
    missing = [r for r in records if r.id not in stored]
    if missing:
        encoder = encoder_for(proxy, config).open(runtime)
        values, _ = encoder.encode(
            Samples([r.prompt for r in missing], [r.response for r in missing])
        )
        for record, vector in zip(missing, unit_rows(values, np.float32), strict=True):
            stored[record.id] = vector
    if not records:
        return np.empty((0, config.dim), dtype=np.float32)
    return np.vstack([stored[r.id] for r in records])


# --- running ----------------------------------------------------------------------------------


def run_synthesis(
    ws: Workspace,
    run_id: str,
    *,
    api_key: str | None = None,
    on_update: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """Run (or resume) a run to its end; returns its summary (state 'done', or 'budget' when
    a budget stopped it). `on_update(summary)` is called as stages end; it may raise
    Cancelled, which leaves the run resumable. A run that cannot work (the connection check
    fails, an error retries cannot fix, every request of a stage fails) ends 'failed' with
    the reason stored, and raises RunFailed; it is resumable too."""
    info = run_info(ws, run_id)
    if info["state"] == "running":
        raise UserError(f"run {run_id} is running in another process (pid {info['pid']})")
    request = run_request(info)
    llm = LLMSettings(
        **info["settings"]["llm"],
        api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"),
    )
    ws.catalogue.set_run_state(run_id, "running", pid=os.getpid())
    loop: Loop | None = None

    def stop(state: str, error: str | None = None) -> None:
        with ws.catalogue.transaction() as catalogue:
            if loop is not None:
                catalogue.set_run_progress(run_id, **loop.stored_progress())
            catalogue.set_run_state(run_id, state, error=error)

    try:
        loop = Loop(ws, info, request, llm, on_update)
        summary = loop.run()
    except Cancelled:
        stop("cancelled")
        raise
    except UserError as e:
        stop("failed", str(e))
        raise RunFailed(f"run {run_id} failed: {e}") from e
    except Exception as e:
        stop("failed", f"{type(e).__name__}: {e}")
        raise
    except BaseException:  # Ctrl-C, or the app stopping the script: resumable, not failed
        stop("cancelled")
        raise
    return summary
