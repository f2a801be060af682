"""One synthesis run's loop (docs/method.md section 3): a thin loop over the decisions in
core/synthesis_policy.py, and the stages that talk to the generator (core/llm.py), to the
proxy (features of the candidates) and to the catalogue (every item as its stage ends).

A round: cluster the pool (round 1: the map's clusters) -> choose the targets -> plan the
generation requests -> generate problems -> solve each K times and vote -> features of the
solved ones -> the acceptance policy -> G-Vendi of the pool. The loop stops after the round
that reaches the target (that round's accepted samples are all kept: they are paid for).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from core.answers import Verifier, majority_vote, verifier_named
from core.catalogue import RunItem
from core.config import Runtime
from core.encoders import Samples, encoder_for
from core.features import compute_features
from core.files import atomic_target
from core.llm import BudgetExhausted, ChatClient, LLMError, LLMSettings, RequestLog
from core.prompts import normalise_text, parse_problems, solve_prompt
from core.regions import Clustering, spherical_kmeans
from core.synthesis_policy import (
    MIN_GROWTH,
    POOL_ROOM,
    PlannedRequest,
    Pool,
    Targets,
    check_clusters,
    choose_targets,
    judge,
    plan_requests,
)
from core.vendi import g_vendi, unit_rows
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.synthesis import RunRequest

Job = tuple[str, list[dict[str, str]], int, dict[str, Any]]  # ChatClient.run_all's


class Loop:
    """The loop of the run `run` (a synthesis.run_info dict), with its settings (`request`:
    synthesis.run_request's) and this generator; `on_update(summary)` is called as stages
    end."""

    def __init__(
        self,
        ws: Workspace,
        run: dict[str, Any],
        request: RunRequest,
        llm: LLMSettings,
        on_update: Callable[[dict[str, Any]], None],
    ):
        self.ws, self.catalogue = ws, ws.catalogue
        self.run_id, self.dataset = run["id"], run["dataset"]
        self.request, self.on_update = request, on_update
        self.proxy, self.config, self.settings = request
        record = run["settings"]
        self.runtime = Runtime(**record["runtime"])
        self.templates = record["templates"]
        self.folder = ws.dataset(self.dataset).path.parent / "runs" / self.run_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.client = ChatClient(llm, RequestLog(self.folder / "requests.jsonl"))
        self.verifier: Verifier = verifier_named(self.settings.verifier)
        self.encoder = None  # the proxy, loaded when a candidate's features are not cached
        # Accepted by the loop so far (automatic decisions): what the target counts. It
        # starts at 0 on a resume too, so round 1 is planned as in the first try, and
        # is read from the catalogue after each stage (the whole run, not this part).
        self.accepted = 0
        self.g_before: float | None = None
        self.g_now: float | None = None
        self.note: str | None = None

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the rounds; returns the summary (state 'done', or 'budget' when a budget
        stopped it) and stores the state. Raises LLMError when the generator cannot work."""
        try:
            return self._rounds()
        finally:  # on failure and cancel too: no worker process or open connection left
            close = getattr(self.verifier, "close", None)
            if close:
                close()
            self.client.close()

    def _rounds(self) -> dict[str, Any]:
        settings = self.settings
        try:  # a run that cannot work says so before any other work
            self.client.check()
        except LLMError as e:
            raise LLMError(f"the connection check failed: {e}", fatal=e.fatal) from None
        pool, first = self._seed()
        target_rows = self._target_rows(first)
        k = settings.map_k(pool.n_seed)
        state = "done"
        self._report("starting")
        try:
            for round_no in range(1, settings.rounds + 1):
                if self.accepted >= settings.target:
                    break
                clustering = first
                if round_no > 1:  # re-cluster the pool, accepted samples included
                    clustering = spherical_kmeans(
                        pool.features, min(k, pool.size), seed=self.config.seed + round_no
                    )
                if not self._round(round_no, clustering, target_rows, pool):
                    break
        except BudgetExhausted as e:
            state = "budget"
            self.note = f"stopped: {e}"
        summary = self.summary(state)
        with self.catalogue.transaction() as catalogue:
            catalogue.set_run_progress(self.run_id, **self.stored_progress())
            catalogue.set_run_state(self.run_id, state)
        self.on_update(summary)
        return summary

    def _round(
        self, round_no: int, clustering: Clustering, target_rows: set[int], pool: Pool
    ) -> bool:
        """One round; False when there is no cluster to fill."""
        settings = self.settings
        targets = choose_targets(
            clustering.labels,
            mode=settings.mode,
            sparse_below=settings.sparse_below,
            cap=settings.cap,
            target_rows=target_rows,
            n_seed=pool.n_seed,
        )
        if not targets.order:
            self.note = (
                f"round {round_no}: no cluster to fill (none is below the "
                f"{settings.sparse_below:g}th percentile of cluster sizes)"
            )
            return False
        planned = plan_requests(
            round_no,
            targets.order,
            clustering.labels,
            pool,
            remaining=settings.target - self.accepted,
            target_rows=target_rows,
            settings=settings,
            template=self.templates["generate"],
        )
        problems = self._generate(round_no, planned)
        solved = self._solve(round_no, problems)
        self._accept(round_no, solved, clustering.centroids, targets, pool)
        self.g_now = g_vendi(pool.features)
        self._report(f"round {round_no} done")
        return True

    def _seed(self) -> tuple[Pool, Clustering]:
        """The pool of seed samples (G-Vendi before) and the map's clusters for round 1."""
        fs = compute_features(
            self.ws, self.dataset, proxy=self.proxy, config=self.config, runtime=self.runtime
        )
        table = pq.read_table(self.ws.dataset(self.dataset).path, columns=["id", "prompt"])
        pool = Pool.of_rows(
            fs,
            table.column("prompt").to_pylist(),
            table.column("id").to_pylist(),
            room=POOL_ROOM * self.settings.target + MIN_GROWTH,
        )
        self.g_before = self.g_now = g_vendi(pool.features)
        return pool, self.request.round1_clusters(fs)

    def _target_rows(self, first: Clustering) -> set[int]:
        """Targeted mode: the seed rows that define the target region."""
        settings = self.settings
        if settings.selection:
            return set(self.ws.selection(self.dataset, settings.selection)["rows"])
        if settings.clusters:
            check_clusters(settings.clusters, first.k)  # create_run checked them already
            return set(np.flatnonzero(np.isin(first.labels, list(settings.clusters))).tolist())
        return set()

    # --- the stages ------------------------------------------------------------------------------

    def _generate(self, round_no: int, planned: list[PlannedRequest]) -> list[RunItem]:
        """Ask for the planned problems; returns the new ones (status 'generated')."""
        by_key = {p.key: p for p in planned}
        jobs = [
            (p.key, _user(p.prompt), 1, self._params(self.settings.generate_temperature))
            for p in planned
        ]
        items: list[RunItem] = []
        seen: set[str] = set()  # problems of this round so far, normalised
        answered: list[str] = []  # requests whose reply parsed

        def done(key: str, choices: list[str] | None, error: Exception | None) -> None:
            made, parsed = reply_items(by_key[key], round_no, choices, error, seen)
            items.extend(made)
            if parsed:
                answered.append(key)

        try:
            self._send(f"round {round_no}'s problem generation", jobs, done)
        finally:
            if answered:  # the placeholders of earlier tries that failed go
                self.catalogue.drop_items(self.run_id, answered)
            items.sort(key=lambda it: _order(it.item_id))
            self._record(items)
        self._report(f"round {round_no}: problems generated")
        return [it for it in items if it.status == "generated"]

    def _solve(self, round_no: int, items: list[RunItem]) -> list[RunItem]:
        """Solve each problem K times and vote; returns those with a majority ('solved')."""
        by_key = {f"solve/{it.item_id}": it for it in items}
        jobs = [
            (
                key,
                _user(solve_prompt(self.templates["solve"], it.problem)),
                self.settings.solutions,
                self._params(self.settings.solve_temperature),
            )
            for key, it in by_key.items()
        ]

        def done(key: str, choices: list[str] | None, error: Exception | None) -> None:
            item = by_key[key]
            if error:
                item.status, item.reason = "rejected", f"request failed: {error}"
                item.reason_kind = "request failed"
            else:
                vote(item, choices, self.verifier)

        try:
            self._send(f"round {round_no}'s solutions", jobs, done)
        finally:
            self._record(items)
        self._report("solutions checked")
        return [it for it in items if it.status == "solved"]

    def _accept(
        self,
        round_no: int,
        candidates: list[RunItem],
        centroids: np.ndarray,
        targets: Targets,
        pool: Pool,
    ) -> None:
        """The acceptance policy on the solved problems; the accepted join `pool`."""
        if not candidates:
            return
        features = self._features(round_no, candidates)
        decisions = judge(
            [
                (it.problem, vector, f"syn-{self.run_id}-{it.item_id}")
                for it, vector in zip(candidates, features, strict=True)
            ],
            pool,
            centroids,
            targets,
            duplicate_cosine=self.settings.duplicate_cosine,
            mode=self.settings.mode,
        )
        for item, decision in zip(candidates, decisions, strict=True):
            item.landed_cluster, item.status = decision.landed, decision.status
            item.reason, item.reason_kind = decision.reason, decision.reason_kind
        self._record(candidates)

    def _features(self, round_no: int, candidates: list[RunItem]) -> np.ndarray:
        """Unit features of the candidates, kept per round so a resumed run skips them."""
        path = self.folder / f"features-r{round_no}.npz"
        ids = [it.item_id for it in candidates]
        if path.exists():
            with np.load(path, allow_pickle=False) as saved:
                if list(saved["ids"]) == ids:
                    return saved["features"]
        if self.encoder is None:
            self.encoder = encoder_for(self.proxy, self.config).open(self.runtime)
        values, _ = self.encoder.encode(
            Samples([it.problem for it in candidates], [it.response for it in candidates])
        )
        features = unit_rows(values, np.float32)
        with atomic_target(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids), features=features)
        return features

    # --- the generator ---------------------------------------------------------------------------

    def _params(self, temperature: float) -> dict[str, Any]:
        return {
            "temperature": temperature,
            "top_p": self.settings.top_p,
            "max_tokens": self.settings.max_tokens,
        }

    def _send(self, stage: str, jobs: list[Job], done: Callable) -> None:
        """Send a stage's jobs (ChatClient.run_all). When every one of them failed, the
        endpoint is not working: raises LLMError, which ends the run 'failed'."""
        errors: list[Exception] = []

        def on_done(key: str, choices: list[str] | None, error: Exception | None) -> None:
            if error:
                errors.append(error)
            done(key, choices, error)

        self.client.run_all(jobs, on_done)
        if jobs and len(errors) == len(jobs):
            raise LLMError(f"all {len(jobs)} requests of {stage} failed; the first: {errors[0]}")

    # --- the record and the summary ------------------------------------------------------------

    def _record(self, items: list[RunItem]) -> None:
        if items:
            self.catalogue.save_items(self.run_id, items)
            self.accepted = self.catalogue.count_status(self.run_id, "accepted")

    def usage(self) -> dict[str, Any]:
        """The generator's usage in this invocation: requests, tokens, cost."""
        usage = self.client.usage
        return {
            "requests_sent": usage.requests,
            "requests_from_log": usage.from_log,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "requests_failed": usage.failures,
            "cost": round(usage.cost(self.client.settings), 6),
        }

    def stored_progress(self) -> dict[str, Any]:
        """What the catalogue keeps of the run's progress (Catalogue.set_run_progress)."""
        return {"usage": self.usage(), "g_vendi_before": self.g_before, "g_vendi_after": self.g_now}

    def summary(self, state: str) -> dict[str, Any]:
        """The run's state, counts (from its items, curator overrides applied), usage and
        G-Vendi before and now."""
        counts = self.catalogue.run_counts([self.run_id])[self.run_id]
        return {
            "run": self.run_id,
            "dataset": self.dataset,
            "state": state,
            "accepted": counts.accepted,
            "rejected": dict(counts.rejected),
            "g_vendi_before": self.g_before,
            "g_vendi_after": self.g_now,
            "counts": {**counts.as_dict(), **self.usage()},
            "note": self.note,
        }

    def _report(self, stage: str) -> None:
        self.catalogue.set_run_progress(self.run_id, **self.stored_progress())
        summary = self.summary("running")
        summary["stage"] = stage
        self.on_update(summary)


# --- the parts of the stages ------------------------------------------------------------------


def _user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def reply_items(
    plan: PlannedRequest,
    round_no: int,
    choices: list[str] | None,
    error: Exception | None,
    seen: set[str],
) -> tuple[list[RunItem], bool]:
    """The items of one generation reply, and whether it parsed. A failed request or a
    reply without problems is one rejected item keyed by the request (its placeholder); a
    problem already in `seen` (normalised; from another reply of the round) is left out."""

    def item(item_id: str, status: str, problem: str = "", **rejection: str) -> RunItem:
        return RunItem(
            item_id, round_no, plan.cluster, plan.exemplar_ids, status, problem, **rejection
        )

    if error:
        failed = f"request failed: {error}"
        return [item(plan.key, "rejected", reason=failed, reason_kind="request failed")], False
    problems = parse_problems(choices[0])
    if not problems:
        reason = "parse failure (no [[Problem]] line in the reply)"
        placeholder = item(
            plan.key, "rejected", choices[0][:2000], reason=reason, reason_kind="parse failure"
        )
        return [placeholder], False
    made = []
    for j, problem in enumerate(problems):
        if normalise_text(problem) not in seen:
            seen.add(normalise_text(problem))
            made.append(item(f"{plan.key}/{j}", "generated", problem))
    return made, True


def vote(item: RunItem, choices: list[str], verifier: Verifier) -> None:
    """Record the item's solutions and their majority vote: 'solved' with the first
    agreeing solution as its response, or 'rejected' with the vote's reason."""
    result = majority_vote(choices, verifier)
    item.solutions, item.answers, item.majority = choices, result.answers, result.majority
    if result.reason:
        shown = ", ".join(a or "none" for a in result.answers)
        item.status, item.reason = "rejected", f"{result.reason} (answers: {shown})"
        item.reason_kind = result.reason
    else:
        item.status, item.response = "solved", choices[result.agreeing[0]]


def _order(item_id: str) -> tuple[int, ...]:
    """Items in the order their requests were planned: round, cluster, request, problem."""
    return tuple(int(n) for n in re.findall(r"\d+", item_id))
