"""The Prismatic Synthesis loop (docs/method.md section 3), as durable, resumable runs.

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

import hashlib
import json
import math
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from core.answers import majority_vote, verifier_named
from core.config import FeatureConfig, ProxySpec, Runtime
from core.errors import Cancelled, OutOfRange, UserError, bounded, check_bounds
from core.features import compute_features, encoder_for
from core.files import atomic_target
from core.llm import BudgetExhausted, ChatClient, LLMError, LLMSettings, RequestLog
from core.maps import clusters_for
from core.prompts import (
    generation_prompt,
    load_templates,
    normalise_text,
    parse_problems,
    solve_prompt,
)
from core.records import Record
from core.regions import default_k, k_problem, resolve_k, sparse_clusters, spherical_kmeans
from core.vendi import g_vendi, unit_rows
from core.workspace import Workspace, process_alive

OVERGENERATE = 2  # problems asked for per sample wanted: many are rejected on the way


@dataclass(frozen=True)
class SynthesisSettings:
    """What to aim at and how hard. No clusters and no selection: auto mode (sparse clusters).
    Number fields carry their allowed range (core.errors.Bound), shared by the CLI and the page."""

    clusters: tuple[int, ...] = ()  # targeted: cluster ids of the map (its k and seed)
    selection: str | None = None  # targeted: a saved selection's rows
    target: int = bounded(20, low=1)  # accepted samples wanted
    rounds: int = bounded(2, low=1)
    solutions: int = bounded(3, low=1)  # K solutions per problem
    problems_per_prompt: int = bounded(2, low=1)
    exemplars: int = bounded(5, low=1)
    k: float | None = None  # clusters (default: the map's); see regions.k_problem
    sparse_below: float = bounded(50.0, low=0.0, above=True, high=100.0)  # a percentile
    cap: int | None = bounded(None, low=1)  # at most this many accepted per cluster and round
    duplicate_cosine: float = bounded(0.98, low=-1.0, high=1.0)
    verifier: str = "math"
    generate_temperature: float = bounded(1.0, low=0.0)
    top_p: float = bounded(0.95, low=0.0, above=True, high=1.0)
    solve_temperature: float = bounded(0.75, low=0.0)
    max_tokens: int = bounded(2048, low=1)  # per request
    seed: int = 0

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.k is not None and (problem := k_problem(self.k)):
            raise OutOfRange("k", problem)
        if self.verifier not in ("math", "label"):
            raise UserError(f"verifier {self.verifier!r}: use math or label")

    @property
    def mode(self) -> str:
        return "targeted" if self.clusters or self.selection else "auto"

    def map_k(self, rows: int) -> int:
        """The clusters of the map that round 1 uses, for a dataset of `rows` rows."""
        return resolve_k(self.k, rows) if self.k else default_k(rows)


# --- runs in the catalogue -----------------------------------------------------------------


class RunFailed(UserError):
    """A run ended 'failed'; the message says which and why. It can be resumed."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


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
    if settings.selection:
        ws.selection(dataset, settings.selection)  # a clear error now, not mid-run
    _check_clusters(settings.clusters, settings.map_k(info.rows))
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
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO runs (id, dataset_id, state, settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, info.id, "created", json.dumps(record), _now(), _now()),
        )
    return run_id


def _check_clusters(clusters: tuple[int, ...], k: int) -> None:
    bad = [c for c in clusters if not 0 <= c < k]
    if bad:
        raise OutOfRange(
            "clusters", f"{bad[0]} is not a cluster of the map: it has clusters 0 to {k - 1}"
        )


def _drop_items(ws: Workspace, run_id: str, item_ids: list[str]) -> None:
    """Remove items (the placeholders of failed requests that have succeeded since)."""
    with ws.transaction() as db:
        db.executemany(
            "DELETE FROM run_items WHERE run_id = ? AND item_id = ?",
            [(run_id, item_id) for item_id in item_ids],
        )


def run_info(ws: Workspace, run_id: str) -> dict[str, Any]:
    with ws.connect() as db:
        row = db.execute(
            "SELECT runs.*, datasets.name AS dataset FROM runs JOIN datasets ON datasets.id = runs.dataset_id "
            "WHERE runs.id = ?",
            (run_id,),
        ).fetchone()
    if row is None:
        known = ", ".join(r["id"] for r in list_runs(ws)[:5]) or "none yet"
        raise UserError(f"no synthesis run {run_id!r} in this workspace (recent runs: {known})")
    return _run_dict(row)


def _run_dict(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["settings"], d["counts"] = json.loads(d["settings"]), json.loads(d["counts"])
    if d["state"] == "running" and d.get("pid") and not process_alive(d["pid"]):
        d["state"] = "interrupted"  # its process died: resume it
    return d


def list_runs(ws: Workspace, dataset: str | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their state and counts (of one dataset, or all)."""
    query = "SELECT runs.*, datasets.name AS dataset FROM runs JOIN datasets ON datasets.id = runs.dataset_id"
    args: tuple = ()
    if dataset:
        query += " WHERE datasets.id = ?"
        args = (ws.dataset(dataset).id,)
    with ws.connect() as db:
        rows = db.execute(query + " ORDER BY runs.created_at DESC, runs.id DESC", args).fetchall()
    return [_run_dict(r) for r in rows]


def _update_run(ws: Workspace, run_id: str, **fields: Any) -> None:
    fields["updated_at"] = _now()
    if "counts" in fields:
        fields["counts"] = json.dumps(fields["counts"])
    sets = ", ".join(f"{k} = ?" for k in fields)
    with ws.transaction() as db:
        db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))


ITEM_FIELDS = (
    "round",
    "target_cluster",
    "exemplar_ids",
    "problem",
    "solutions",
    "answers",
    "majority",
    "response",
    "status",
    "reason",
    "reason_kind",
    "landed_cluster",
)


def _save_items(ws: Workspace, run_id: str, items: list[dict[str, Any]]) -> None:
    """Insert or update items, keeping any curator override."""
    rows = []
    for it in items:
        values = [
            json.dumps(it[f]) if f in ("exemplar_ids", "solutions", "answers") else it.get(f)
            for f in ITEM_FIELDS
        ]
        rows.append((run_id, it["item_id"], *values))
    columns = ", ".join(ITEM_FIELDS)
    updates = ", ".join(f"{f} = excluded.{f}" for f in ITEM_FIELDS)
    with ws.transaction() as db:
        db.executemany(
            f"INSERT INTO run_items (run_id, item_id, {columns}) VALUES (?, ?, {', '.join('?' * len(ITEM_FIELDS))}) "
            f"ON CONFLICT(run_id, item_id) DO UPDATE SET {updates}",
            rows,
        )


def review(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """Every item of a run with its automatic decision, the curator's override, and the
    decision that counts (`decision`: accepted or rejected, or pending)."""
    run_info(ws, run_id)
    with ws.connect() as db:
        rows = db.execute(
            "SELECT * FROM run_items WHERE run_id = ? ORDER BY round, rowid", (run_id,)
        ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        for f in ("exemplar_ids", "solutions", "answers"):
            d[f] = json.loads(d[f])
        auto = d["status"] if d["status"] in ("accepted", "rejected") else "pending"
        d["decision"] = d["override"] or auto
        out.append(d)
    return out


def set_decision(ws: Workspace, run_id: str, item_id: str, decision: str | None) -> None:
    """The curator's verdict on an item: 'accepted', 'rejected', or None for the automatic one."""
    if decision not in (None, "accepted", "rejected"):
        raise UserError("a decision is accepted, rejected, or none (the automatic one)")
    with ws.transaction() as db:
        row = db.execute(
            "SELECT status, response FROM run_items WHERE run_id = ? AND item_id = ?",
            (run_id, item_id),
        ).fetchone()
        if row is None:
            raise UserError(f"run {run_id!r} has no item {item_id!r}")
        if decision == "accepted" and not row["response"]:
            raise UserError(f"item {item_id!r} has no usable solution to accept")
        db.execute(
            "UPDATE run_items SET override = ? WHERE run_id = ? AND item_id = ?",
            (decision, run_id, item_id),
        )


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
        s = run["settings"]
        if ProxySpec(**s["proxy"]) != proxy or FeatureConfig(**s["features"]) != config:
            continue
        folder = ws.dataset(dataset).path.parent / "runs" / run["id"]
        for path in folder.glob("features-r*.npz"):
            with np.load(path, allow_pickle=False) as saved:
                for item_id, vector in zip(saved["ids"], saved["features"], strict=True):
                    stored[f"syn-{run['id']}-{item_id}"] = vector
    missing = [r for r in records if r.id not in stored]
    if missing:
        encoder = encoder_for(proxy, config, runtime)
        values, _ = encoder.encode(
            [r.prompt for r in missing],
            [r.response for r in missing],
            [None] * len(missing),
            on_rows=lambda _rows: None,
        )
        for record, vector in zip(missing, unit_rows(values, np.float32), strict=True):
            stored[record.id] = vector
    if not records:
        return np.empty((0, config.dim), dtype=np.float32)
    return np.vstack([stored[r.id] for r in records])


# --- running ----------------------------------------------------------------------------------


@dataclass
class _Pool:
    """The seed samples and the ones accepted so far: unit features and texts."""

    features: np.ndarray
    texts: list[str]
    ids: list[str]
    n_seed: int
    normalised: set[str] = field(default_factory=set)

    def add(self, vector: np.ndarray, text: str, sample_id: str) -> None:
        self.features = np.vstack([self.features, vector[None, :]])
        self.texts.append(text)
        self.ids.append(sample_id)
        self.normalised.add(normalise_text(text))


def _rng(*parts: Any) -> random.Random:
    return random.Random(
        hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).hexdigest()
    )


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
    s = info["settings"]
    settings = SynthesisSettings(
        **{**s["synthesis"], "clusters": tuple(s["synthesis"]["clusters"])}
    )
    llm = LLMSettings(
        **s["llm"], api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    )
    _update_run(ws, run_id, state="running", pid=os.getpid(), error=None)
    runner: _Runner | None = None

    def stop(state: str, error: str | None = None) -> None:
        done_so_far = runner.stored() if runner else {}
        _update_run(ws, run_id, state=state, error=error, pid=None, **done_so_far)

    try:
        runner = _Runner(ws, info, settings, llm, on_update)
        summary = runner.execute()
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


class _Runner:
    def __init__(
        self,
        ws: Workspace,
        info: dict[str, Any],
        settings: SynthesisSettings,
        llm: LLMSettings,
        on_update: Callable[[dict[str, Any]], None],
    ):
        self.ws, self.run_id, self.settings, self.on_update = ws, info["id"], settings, on_update
        s = info["settings"]
        self.dataset = info["dataset"]
        self.proxy = ProxySpec(**s["proxy"])
        self.config = FeatureConfig(**s["features"])
        self.runtime = Runtime(**s["runtime"])
        self.templates = s["templates"]
        self.folder = ws.dataset(self.dataset).path.parent / "runs" / self.run_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.client = ChatClient(llm, RequestLog(self.folder / "requests.jsonl"))
        self.verifier = verifier_named(settings.verifier)
        self.counts: Counter = Counter()
        self.rejected: Counter = Counter()
        self.g_before: float | None = None
        self.g_now: float | None = None
        self.note: str | None = None

    # -- summary and progress --

    def summary(self, state: str) -> dict[str, Any]:
        usage = self.client.usage
        counts = {
            **self.counts,
            "rejected": dict(self.rejected),
            "requests_sent": usage.requests,
            "requests_from_log": usage.from_log,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "requests_failed": usage.failures,
            "cost": round(usage.cost(self.client.settings), 6),
        }
        return {
            "run": self.run_id,
            "dataset": self.dataset,
            "state": state,
            "accepted": self.counts["accepted"],
            "rejected": dict(self.rejected),
            "g_vendi_before": self.g_before,
            "g_vendi_after": self.g_now,
            "counts": counts,
            "note": self.note,
        }

    def stored(self) -> dict[str, Any]:
        """What the catalogue keeps of the run's progress (counts, G-Vendi)."""
        return {
            "counts": self.summary("")["counts"],
            "g_vendi_before": self.g_before,
            "g_vendi_after": self.g_now,
        }

    def progress(self, stage: str) -> None:
        summary = self.summary("running")
        summary["stage"] = stage
        _update_run(self.ws, self.run_id, **self.stored())
        self.on_update(summary)

    # -- the loop --

    def execute(self) -> dict[str, Any]:
        try:
            return self._execute()
        finally:
            self.verifier_close()  # on failure and cancel too: no worker process left behind

    def _execute(self) -> dict[str, Any]:
        st = self.settings
        try:  # a run that cannot work says so before any other work
            self.client.check()
        except LLMError as e:
            raise LLMError(f"the connection check failed: {e}", fatal=e.fatal) from None
        fs = compute_features(
            self.ws, self.dataset, proxy=self.proxy, config=self.config, runtime=self.runtime
        )
        table = pq.read_table(self.ws.dataset(self.dataset).path, columns=["id", "prompt"])
        prompts, ids = table.column("prompt").to_pylist(), table.column("id").to_pylist()
        pool = _Pool(
            unit_rows(fs.matrix(), np.float32),
            list(prompts),
            list(ids),
            len(prompts),
            {normalise_text(p) for p in prompts},
        )
        self.g_before = self.g_now = g_vendi(pool.features)
        k = st.map_k(fs.rows)
        first = clusters_for(self.ws, fs, k=k, seed=self.config.seed)
        target_rows = self._target_rows(first)
        encoder = None
        state = "done"
        self.progress("starting")
        try:
            for r in range(1, st.rounds + 1):
                if self.counts["accepted"] >= st.target:
                    break
                if r == 1:
                    labels, centroids = first.labels, first.centroids
                else:  # re-cluster the pool, accepted samples included
                    clustering = spherical_kmeans(
                        pool.features, min(k, len(pool.features)), seed=self.config.seed + r
                    )
                    labels, centroids = clustering.labels, clustering.centroids
                targets, accepting, limits = self._targets(labels, target_rows, pool)
                if not targets:
                    self.note = (
                        f"round {r}: no cluster to fill (none is below the {st.sparse_below:g}th "
                        "percentile of cluster sizes)"
                    )
                    break
                items = self._generate(r, targets, labels, target_rows, pool)
                candidates = self._solve(r, items)
                if candidates and encoder is None:
                    encoder = encoder_for(self.proxy, self.config, self.runtime)
                self._accept(r, candidates, encoder, centroids, accepting, limits, pool)
                self.g_now = g_vendi(pool.features)
                self.progress(f"round {r} done")
        except BudgetExhausted as e:
            state = "budget"
            self.note = f"stopped: {e}"
        summary = self.summary(state)
        _update_run(self.ws, self.run_id, state=state, pid=None, **self.stored())
        self.on_update(summary)
        return summary

    def verifier_close(self) -> None:
        close = getattr(self.verifier, "close", None)
        if close:
            close()

    def _target_rows(self, first) -> set[int]:
        """Targeted mode: the seed rows that define the target region."""
        st = self.settings
        if st.selection:
            return set(self.ws.selection(self.dataset, st.selection)["rows"])
        if st.clusters:
            _check_clusters(st.clusters, first.k)  # create_run checked them against k already
            return set(np.flatnonzero(np.isin(first.labels, list(st.clusters))).tolist())
        return set()

    def _targets(self, labels: np.ndarray, target_rows: set[int], pool: _Pool):
        """(clusters to generate for, clusters that accept, each cluster's room left)."""
        sizes = np.bincount(labels, minlength=int(labels.max()) + 1)
        if self.settings.mode == "auto":
            sparse = sparse_clusters(sizes, self.settings.sparse_below)
            threshold = np.percentile(sizes, self.settings.sparse_below)
            accepting = set(np.flatnonzero(sparse).tolist())
            room = {c: math.ceil(threshold - sizes[c]) for c in accepting}
            order = sorted(accepting, key=lambda c: (sizes[c], c))  # the thinnest first
        else:
            in_target = np.zeros(len(labels), dtype=bool)
            in_target[[r for r in target_rows if r < len(labels)]] = True
            in_target[pool.n_seed :] = True  # what this run accepted lies in the target region
            share = np.bincount(labels, weights=in_target, minlength=len(sizes)) / np.maximum(
                sizes, 1
            )
            accepting = set(np.flatnonzero(share >= 0.5).tolist()) or {int(np.argmax(share))}
            room = {c: 10**9 for c in accepting}
            order = sorted(accepting, key=lambda c: (sizes[c], c))
        if self.settings.cap:
            room = {c: min(v, self.settings.cap) for c, v in room.items()}
        return order, accepting, room

    def _generate(
        self, r: int, targets: list[int], labels: np.ndarray, target_rows: set[int], pool: _Pool
    ):
        st = self.settings
        remaining = st.target - self.counts["accepted"]
        wanted = math.ceil(remaining / (st.rounds - r + 1)) * OVERGENERATE
        n_requests = max(1, math.ceil(wanted / st.problems_per_prompt))
        plan: list[tuple[int, int]] = []  # (cluster, request index), round-robin over targets
        for i in range(n_requests):
            c = targets[i % len(targets)]
            plan.append((c, i // len(targets)))
        jobs, meta = [], {}
        for c, i in plan:
            members = np.flatnonzero(labels == c)
            if st.mode == "targeted":
                chosen = [m for m in members if m in target_rows or m >= pool.n_seed] or list(
                    members
                )
            else:
                chosen = list(members)
            rng = _rng(st.seed, r, c, i)  # the same seed, the same choices: runs reproduce
            exemplars = rng.sample(chosen, min(st.exemplars, len(chosen)))
            rng.shuffle(exemplars)
            prompt = generation_prompt(
                self.templates["generate"],
                [pool.texts[m] for m in exemplars],
                st.problems_per_prompt,
            )
            key = f"gen/r{r}/c{c}/{i}"
            meta[key] = (c, [pool.ids[m] for m in exemplars])
            jobs.append(
                (
                    key,
                    [{"role": "user", "content": prompt}],
                    1,
                    {
                        "temperature": st.generate_temperature,
                        "top_p": st.top_p,
                        "max_tokens": st.max_tokens,
                    },
                )
            )
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        recovered: list[str] = []  # requests that failed in an earlier try and answered now

        def done(key: str, choices, error) -> None:
            c, exemplar_ids = meta[key]
            base = {
                "round": r,
                "target_cluster": c,
                "exemplar_ids": exemplar_ids,
                "solutions": [],
                "answers": [],
                "majority": None,
                "response": None,
                "landed_cluster": None,
            }
            if error:
                items.append(
                    {
                        **base,
                        "item_id": key,
                        "problem": "",
                        "status": "rejected",
                        "reason": f"request failed: {error}",
                        "reason_kind": "request failed",
                    }
                )
                return
            problems = parse_problems(choices[0])
            if not problems:
                items.append(
                    {
                        **base,
                        "item_id": key,
                        "problem": choices[0][:2000],
                        "status": "rejected",
                        "reason": "parse failure (no [[Problem]] line in the reply)",
                        "reason_kind": "parse failure",
                    }
                )
                return
            recovered.append(key)  # a placeholder of an earlier failure goes
            for j, problem in enumerate(problems):
                if normalise_text(problem) in seen:
                    continue  # the same problem from another request of this round
                seen.add(normalise_text(problem))
                items.append(
                    {
                        **base,
                        "item_id": f"{key}/{j}",
                        "problem": problem,
                        "status": "generated",
                        "reason": None,
                        "reason_kind": None,
                    }
                )

        try:
            self._send(f"round {r}'s problem generation", jobs, done)
        finally:
            _drop_items(self.ws, self.run_id, recovered)
            items.sort(key=lambda it: _order(it["item_id"]))
            self._record(items)
        self.progress(f"round {r}: problems generated")
        return [it for it in items if it["status"] == "generated"]

    def _send(self, stage: str, jobs: list, done: Callable) -> None:
        """Send a stage's jobs (ChatClient.run_all). When every one of them failed, the
        endpoint is not working: raises LLMError, which ends the run 'failed'."""
        errors: list[Exception] = []

        def on_done(key: str, choices, error) -> None:
            if error:
                errors.append(error)
            done(key, choices, error)

        self.client.run_all(jobs, on_done)
        if jobs and len(errors) == len(jobs):
            raise LLMError(f"all {len(jobs)} requests of {stage} failed; the first: {errors[0]}")

    def _solve(self, r: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        st = self.settings
        by_key = {f"solve/{it['item_id']}": it for it in items}
        jobs = [
            (
                key,
                [{"role": "user", "content": solve_prompt(self.templates["solve"], it["problem"])}],
                st.solutions,
                {
                    "temperature": st.solve_temperature,
                    "top_p": st.top_p,
                    "max_tokens": st.max_tokens,
                },
            )
            for key, it in by_key.items()
        ]

        def done(key: str, choices, error) -> None:
            it = by_key[key]
            if error:
                it.update(
                    status="rejected",
                    reason=f"request failed: {error}",
                    reason_kind="request failed",
                )
                return
            vote = majority_vote(choices, self.verifier)
            it.update(solutions=choices, answers=vote.answers, majority=vote.majority)
            if vote.reason:
                shown = ", ".join(a or "none" for a in vote.answers)
                it.update(
                    status="rejected",
                    reason=f"{vote.reason} (answers: {shown})",
                    reason_kind=vote.reason,
                )
            else:
                it.update(status="solved", response=choices[vote.agreeing[0]])

        try:
            self._send(f"round {r}'s solutions", jobs, done)
        finally:
            self._record(items)
        self.progress("solutions checked")
        return [it for it in items if it["status"] == "solved"]

    def _accept(self, r, candidates, encoder, centroids, accepting, room, pool: _Pool) -> None:
        if not candidates:
            return
        features = self._features(r, candidates, encoder)
        taken: Counter = Counter()
        dense_word = "dense " if self.settings.mode == "auto" else ""
        for it, vector in zip(candidates, features, strict=True):
            landed = int(np.argmax(centroids @ vector))
            it["landed_cluster"] = landed
            nearest = float((pool.features @ vector).max())
            if normalise_text(it["problem"]) in pool.normalised:
                it.update(
                    status="rejected",
                    reason="duplicate (the same text as an existing sample)",
                    reason_kind="duplicate",
                )
            elif nearest > self.settings.duplicate_cosine:
                it.update(
                    status="rejected",
                    reason=f"near-duplicate (gradient cosine {nearest:.3f} with an "
                    "existing sample)",
                    reason_kind="duplicate",
                )
            elif landed not in accepting:
                where = (
                    "not a target" if self.settings.mode == "targeted" else "not under-represented"
                )
                it.update(
                    status="rejected",
                    reason=f"landed in {dense_word}cluster {landed} ({where})",
                    reason_kind="landed in a dense cluster",
                )
            elif taken[landed] >= room.get(landed, 0):
                it.update(
                    status="rejected",
                    reason=f"cluster {landed} is full (its room this round is taken)",
                    reason_kind="cluster full",
                )
            else:
                it.update(status="accepted", reason=None, reason_kind=None)
                taken[landed] += 1
                pool.add(vector, it["problem"], f"syn-{self.run_id}-{it['item_id']}")
        self._record(candidates)

    def _features(self, r: int, candidates: list[dict[str, Any]], encoder) -> np.ndarray:
        """Unit features of the candidates, cached per round so a resumed run skips them."""
        path = self.folder / f"features-r{r}.npz"
        ids = [it["item_id"] for it in candidates]
        if path.exists():
            with np.load(path, allow_pickle=False) as saved:
                if list(saved["ids"]) == ids:
                    return saved["features"]
        values, _ = encoder.encode(
            [it["problem"] for it in candidates],
            [it["response"] for it in candidates],
            [None] * len(candidates),
            on_rows=lambda _rows: None,
        )
        features = unit_rows(values, np.float32)
        with atomic_target(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids), features=features)
        return features

    def _record(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        _save_items(self.ws, self.run_id, items)
        # counts come from the catalogue, so a resumed run reports the whole run, not its part
        with self.ws.connect() as db:
            rows = db.execute(
                "SELECT status, reason_kind FROM run_items WHERE run_id = ?", (self.run_id,)
            ).fetchall()
        statuses = Counter(r["status"] for r in rows)
        self.rejected = Counter(r["reason_kind"] for r in rows if r["status"] == "rejected")
        self.counts["items"] = len(rows)
        self.counts["accepted"] = statuses.get("accepted", 0)
        self.counts["rejected_total"] = statuses.get("rejected", 0)
        self.counts["pending"] = statuses.get("generated", 0) + statuses.get("solved", 0)


def _order(item_id: str) -> tuple[int, ...]:
    """Items in the order their requests were planned: round, cluster, request, problem."""
    return tuple(int(n) for n in re.findall(r"\d+", item_id))
