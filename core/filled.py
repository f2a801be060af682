"""What a synthesis run filled: per cluster of the map, what it had and what the run added,
and where the run's samples sit on the map. Works on a finished run and on one in progress
(its items so far).

The clusters are the map's that the run's round 1 used (`SynthesisSettings.map_k` of the
dataset, the features' seed): the clusters the Map page shows at that k. Later rounds
cluster the pool again, so their cluster ids name other clusters; every item is therefore
put back on the map's clusters:

- an item accepted (its decision, the curator's override applied) counts in the cluster
  its features landed in: the nearest centroid of the map (round 1's `landed_cluster`);
- any other item (rejected, or still pending) counts in the cluster it was made for: round
  1's `target_cluster`; in later rounds the map cluster where most of its request's
  exemplars lie (they were drawn from the round's target cluster), ties to the lowest id;
- an item whose target is on no cluster of the map (no exemplar found) counts in a row of
  its own, cluster None.

So every item is in exactly one row, and the rows' items add up to the run's items.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from core import synthesis
from core.catalogue import CURATOR_REJECTED, ReviewedItem
from core.errors import UserError
from core.features import FeatureSet, find_features
from core.files import Memo
from core.layout import place
from core.records import read_columns
from core.regions import Clustering, sparse_clusters
from core.vendi import SecondMoment, score_with, spectrum, swapped, vendi, with_rows
from core.workspace import Workspace

REPEATS = 5  # draws of the equal-size comparison
_MOMENTS = Memo(size=4)  # the seed's second moment, by feature set: a live view reads it once


def _features(ws: Workspace, run: dict[str, Any]) -> FeatureSet:
    """The seed features the run was made with; a UserError when they are gone."""
    proxy, config, _ = synthesis.run_request(run)
    fs = find_features(ws, run["dataset"], proxy=proxy, config=config)
    if fs is None:
        raise UserError(
            f"the features run {run['id']} was made with (proxy {proxy.name}, dim {config.dim}) "
            f"are not in the workspace: compute them (python -m core embed {run['dataset']} "
            f"--proxy {proxy.name} --dim {config.dim})"
        )
    return fs


def _placed(
    ws: Workspace, run: dict[str, Any], items: list[ReviewedItem], clustering: Clustering
) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, int | None]]:
    """The items' stored features, the map cluster each featured item landed in, and the map
    cluster each item was made for (module docstring), by item id."""
    vectors = synthesis.run_features(ws, run)
    vectors = {i.item_id: vectors[i.item_id] for i in items if i.item_id in vectors}
    landed: dict[str, int] = {}
    if vectors:
        nearest = np.argmax(np.stack(list(vectors.values())) @ clustering.centroids.T, axis=1)
        landed = dict(zip(vectors, nearest.tolist(), strict=True))
    prefix = f"syn-{run['id']}-"
    wanted = {e for i in items if i.round > 1 for e in i.exemplar_ids if not e.startswith(prefix)}
    row_of: dict[str, int] = {}
    if wanted:  # seed exemplars of later rounds: their rows, read once
        ids = read_columns(ws.dataset(run["dataset"]).path, ["id"])["id"]
        row_of = {sample_id: r for r, sample_id in enumerate(ids) if sample_id in wanted}
    k = clustering.k
    made_for: dict[str, int | None] = {}
    for item in items:
        if item.round == 1:
            c = item.target_cluster
            made_for[item.item_id] = c if c is not None and 0 <= c < k else None
            continue
        votes: Counter = Counter()
        for e in item.exemplar_ids:
            if e.startswith(prefix) and e[len(prefix) :] in landed:
                votes[landed[e[len(prefix) :]]] += 1
            elif e in row_of:
                votes[int(clustering.labels[row_of[e]])] += 1
        most = max(votes.values(), default=0)
        made_for[item.item_id] = min(c for c, n in votes.items() if n == most) if most else None
    return vectors, landed, made_for


def _seed_moment(fs: FeatureSet) -> tuple[SecondMoment, float]:
    """The seed's second moment and G-Vendi, once per feature set."""

    def make() -> tuple[SecondMoment, float]:
        moment = spectrum(fs.arrays(), rows=fs.rows)
        return moment, vendi(moment.eigen()[0])

    return _MOMENTS.get((str(fs.folder), fs.key), make)


def fill_table(
    ws: Workspace, run_id: str, *, repeats: int = REPEATS, seed: int = 0
) -> dict[str, Any]:
    """What run `run_id` filled, so far when it is running.

    Returns a plain dict:
    - `run`, `dataset`, `state`, `k` (the map's clusters), `counts` (synthesis.run_info's:
      items, accepted, rejected by reason, pending; curator overrides applied);
    - `clusters`: one row per map cluster the run made items for or accepted into (module
      docstring: each item in one row), by cluster id, then cluster None if any: `cluster`,
      `sparse` (below the run's percentile), `size_before` (seed rows), `made_for` (items
      made for it, wherever they went), `items` (the items counted in it: accepted +
      rejected_total + pending), `accepted` (accepted into it), `rejected_total`,
      `rejected` (by reason kind, largest first), `pending`, `size_after` (size_before +
      accepted), `g_vendi_before` (its seed rows) and `g_vendi_after` (with the features
      of its accepted samples added); None for cluster None;
    - `whole`: G-Vendi of the seed (`rows_before` rows) and of the seed with every accepted
      sample (`rows_after`), `gain`, and `equal_size`: a comparison at equal size (below),
      or None with `equal_size_note` saying why (nothing accepted yet, as many accepted
      as seed rows, or `repeats` 0);
    - `accepted_without_features`: accepted items with no stored features (none, unless the
      run's files were removed): counted in their target's row, left out of G-Vendi.

    Equal size: G-Vendi grows with the number of rows, so "after" is above "before" in part
    only because the set is larger. `equal_size` keeps the size at N: the seed with k
    random rows taken out and the run's k accepted samples in their place (`repeats` seeded
    draws, `seed`: `mean` and `sd`), against the seed itself, which is the same N - k rows
    plus the k taken out (`seed_g_vendi`). `gain` = mean - seed_g_vendi: what the accepted
    samples add beyond k rows of the data. Adding k random seed rows again instead (copies)
    would not be an honest control: copies add no new direction, where k more rows of the
    same data would add some, so the run's samples would seem to gain more than they do.
    Per cluster, `g_vendi_after` includes the growth of size.
    """
    run = synthesis.run_info(ws, run_id)
    items = ws.catalogue.items(run_id)
    fs = _features(ws, run)
    request = synthesis.run_request(run)
    clustering = request.round1_clusters(fs)
    sizes = clustering.sizes()
    sparse = sparse_clusters(sizes, request.settings.sparse_below)
    vectors, landed, made_for = _placed(ws, run, items, clustering)

    rows: dict[int | None, dict[str, Any]] = {}

    def row(c: int | None) -> dict[str, Any]:
        if c not in rows:
            rows[c] = {
                "cluster": c,
                "sparse": bool(sparse[c]) if c is not None else None,
                "size_before": int(sizes[c]) if c is not None else 0,
                "made_for": 0,
                "items": 0,
                "accepted": 0,
                "rejected_total": 0,
                "rejected": Counter(),
                "pending": 0,
                "new": [],
            }
        return rows[c]

    unplaced = 0
    for item in items:
        row(made_for[item.item_id])["made_for"] += 1
        if item.decision == "accepted" and item.item_id in landed:
            r = row(landed[item.item_id])
            r["new"].append(vectors[item.item_id])
        else:
            r = row(made_for[item.item_id])
            unplaced += item.decision == "accepted"
        r["items"] += 1
        if item.decision == "rejected":
            r["rejected_total"] += 1
            r["rejected"][item.reason_kind or CURATOR_REJECTED] += 1
        else:
            r[item.decision] += 1  # accepted or pending

    table = []
    for c in sorted(rows, key=lambda c: (c is None, c or 0)):
        r = rows[c]
        new = r.pop("new")
        r["rejected"] = dict(sorted(r["rejected"].items(), key=lambda kv: (-kv[1], kv[0])))
        r["size_after"] = r["size_before"] + len(new)
        r["g_vendi_before"] = r["g_vendi_after"] = None
        if c is not None and r["size_before"]:
            members = np.flatnonzero(clustering.labels == c)
            extra = np.stack(new) if new else np.empty((0, fs.dim), dtype=np.float32)
            r["g_vendi_before"] = score_with(fs, members, extra[:0])
            r["g_vendi_after"] = score_with(fs, members, extra) if new else r["g_vendi_before"]
        table.append(r)

    accepted = [
        vectors[i.item_id] for i in items if i.decision == "accepted" and i.item_id in landed
    ]
    return {
        "run": run_id,
        "dataset": run["dataset"],
        "state": run["state"],
        "k": clustering.k,
        "counts": run["counts"],
        "clusters": table,
        "whole": _whole(fs, np.array(accepted, dtype=np.float32), repeats, seed),
        "accepted_without_features": unplaced,
    }


def _whole(fs: FeatureSet, accepted: np.ndarray, repeats: int, seed: int) -> dict[str, Any]:
    """The whole set's G-Vendi before and after, and the equal-size comparison."""
    moment, before = _seed_moment(fs)
    k = len(accepted)
    after = vendi(with_rows(moment, accepted).eigen()[0]) if k else before
    out: dict[str, Any] = {
        "rows_before": fs.rows,
        "rows_after": fs.rows + k,
        "g_vendi_before": before,
        "g_vendi_after": after,
        "gain": after - before,
        "equal_size": None,
        "equal_size_note": None,
    }
    if not k:
        out["equal_size_note"] = "nothing accepted yet"
    elif k >= fs.rows:
        out["equal_size_note"] = f"{k} accepted, not fewer than the {fs.rows} seed rows"
    elif not repeats:
        out["equal_size_note"] = "repeats = 0: no draws asked for"
    else:
        mean, sd = swapped(fs, moment, accepted, repeats=repeats, seed=seed)
        out["equal_size"] = {
            "rows": fs.rows,
            "swapped": k,
            "repeats": repeats,
            "seed": seed,
            "mean": mean,
            "sd": sd,
            "seed_g_vendi": before,
            "gain": mean - before,
        }
    return out


def placeable_runs(ws: Workspace, dataset: str, fs: FeatureSet) -> list[str]:
    """The ids of the dataset's runs made with the feature set `fs` (those `run_points` can
    place on its map), newest first."""
    out = []
    for run in synthesis.list_runs(ws, dataset):
        proxy, config, _ = synthesis.run_request(run)
        found = find_features(ws, dataset, proxy=proxy, config=config)
        if found is not None and found.key == fs.key:
            out.append(run["id"])
    return out


def run_points(
    ws: Workspace,
    run_id: str,
    fs: FeatureSet,
    coords: np.ndarray,
    *,
    rejected: bool = False,
) -> dict[str, Any]:
    """Where a run's accepted samples (and, with `rejected`, its rejected ones) sit on the
    map of `fs` whose layout is `coords` (N x 2): `points`, one dict per item with features
    (item_id, decision, reason_kind, cluster: the cluster it landed in of the run's round-1
    map, whose k is `map_k` (not necessarily the k the map page shows), x, y, problem),
    placed by `core.layout.place` (its neighbours in feature space); `not_placed`: how many
    of the items asked for have no features (rejected before the acceptance stage: a
    failed request, no parse, no majority), so no place. A UserError when the run was made
    with other feature settings than `fs`."""
    run = synthesis.run_info(ws, run_id)
    if _features(ws, run).key != fs.key:
        raise UserError(
            f"run {run_id} was made with other feature settings than this map's: choose its "
            f"proxy ({run['settings']['proxy']['name']}) and settings to see it here"
        )
    wanted = ("accepted", "rejected") if rejected else ("accepted",)
    items = [i for i in ws.catalogue.items(run_id) if i.decision in wanted]
    vectors = synthesis.run_features(ws, run)
    shown = [i for i in items if i.item_id in vectors]
    points = []
    if shown:
        matrix = np.stack([vectors[i.item_id] for i in shown])
        where = place(fs, coords, matrix)
        clustering = synthesis.run_request(run).round1_clusters(fs)
        landed = np.argmax(matrix @ clustering.centroids.T, axis=1)
        for item, (x, y), c in zip(shown, where.tolist(), landed.tolist(), strict=True):
            points.append(
                {
                    "item_id": item.item_id,
                    "decision": item.decision,
                    "reason_kind": (item.reason_kind or CURATOR_REJECTED)
                    if item.decision == "rejected"
                    else None,
                    "cluster": int(c),
                    "map_k": clustering.k,
                    "x": x,
                    "y": y,
                    "problem": item.problem,
                }
            )
    return {"run": run_id, "points": points, "not_placed": len(items) - len(shown)}
