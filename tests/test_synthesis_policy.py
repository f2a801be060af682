"""The synthesis loop's decisions (core/synthesis_policy.py), without a server or a
workspace: the pool, the targets, the planned requests, and the acceptance policy with
each of its reasons."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core.errors import OutOfRange
from core.rows import Matrix
from core.synthesis import SynthesisSettings
from core.synthesis_policy import (
    Pool,
    Targets,
    check_clusters,
    choose_targets,
    decide,
    judge,
    plan_requests,
)

D = 4
CENTROIDS = np.eye(D, dtype=np.float32)  # cluster c: the direction of axis c


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def seed_pool() -> Pool:
    """Three seed samples near clusters 0, 0 and 2."""
    rows = np.stack([unit(1, 0.1, 0, 0), unit(1, 0, 0.1, 0), unit(0, 0, 1, 0.2)])
    return Pool(rows, ["What is 2 + 2?", "What is 3 + 5?", "Solve x^2 = 4."], ["a", "b", "c"])


AUTO = Targets(order=[1, 3], accepting={1, 3}, room={1: 2, 3: 1})


def decided(text: str, vector: np.ndarray, *, taken: Counter | None = None, mode="auto"):
    return decide(
        text,
        vector,
        seed_pool(),
        CENTROIDS,
        AUTO,
        taken or Counter(),
        duplicate_cosine=0.98,
        mode=mode,
    )


# --- the acceptance policy ----------------------------------------------------------------------


def test_a_candidate_that_lands_in_a_thin_cluster_with_room_is_accepted():
    d = decided("A train leaves at noon...", unit(0.1, 1, 0, 0))
    assert (d.status, d.landed, d.reason, d.reason_kind) == ("accepted", 1, None, None)


def test_the_same_text_as_a_pool_sample_is_a_duplicate():
    d = decided("  what IS 2 +  2? ", unit(0.1, 1, 0, 0))  # case and white space folded
    assert (d.status, d.reason_kind) == ("rejected", "duplicate")
    assert d.reason == "duplicate (the same text as an existing sample)" and d.landed == 1


def test_a_gradient_cosine_above_the_threshold_is_a_near_duplicate():
    d = decided("Another wording", unit(1, 0.1, 0.001, 0))  # cosine 0.99999 with seed "a"
    assert (d.status, d.reason_kind, d.landed) == ("rejected", "duplicate", 0)
    assert d.reason == "near-duplicate (gradient cosine 1.000 with an existing sample)"
    assert decided("Another wording", unit(1, 0.3, 0, 0.6)).reason_kind != "duplicate"


def test_landing_in_a_dense_or_non_target_cluster_is_rejected_with_the_cluster():
    vector = unit(0.2, 0, 1, 0.9)  # nearest centroid: 2, not accepting; cosine 0.84 to "c"
    d = decided("New problem", vector)
    assert (d.status, d.landed, d.reason_kind) == ("rejected", 2, "landed in a dense cluster")
    assert d.reason == "landed in dense cluster 2 (not under-represented)"
    d = decided("New problem", vector, mode="targeted")
    assert d.reason == "landed in cluster 2 (not a target)"
    assert d.reason_kind == "landed in a dense cluster"


def test_a_cluster_whose_room_is_taken_is_full():
    d = decided("New problem", unit(0, 0, 0.1, 1), taken=Counter({3: 1}))  # room of 3: 1
    assert (d.status, d.landed, d.reason_kind) == ("rejected", 3, "cluster full")
    assert d.reason == "cluster 3 is full (its room this round is taken)"
    assert decided("New problem", unit(0, 0.1, 0, 1), taken=Counter({1: 1})).status == "accepted"


def test_judge_adds_the_accepted_to_the_pool_and_caps_each_cluster_per_round():
    pool = seed_pool()
    candidates = [
        ("First", unit(0.1, 1, 0, 0), "s1"),  # cluster 1: accepted (room 2)
        ("first", unit(0, 1, 0.5, 0), "s2"),  # the same text as the one just accepted
        ("Second", unit(0.1, 1, 0.001, 0), "s3"),  # near-duplicate of the one just accepted
        ("Third", unit(0, 1, 0.3, 0.3), "s4"),  # cluster 1 again: accepted, its room now taken
        ("Fourth", unit(0.5, 1, 0, 0.5), "s5"),  # cluster 1 is full
        ("Fifth", unit(0, 0.3, 0, 1), "s6"),  # cluster 3: accepted (room 1)
        ("Sixth", unit(0.1, 0, 0.5, 1), "s7"),  # cluster 3 is full
    ]
    decisions = judge(candidates, pool, CENTROIDS, AUTO, duplicate_cosine=0.98, mode="auto")
    assert [(d.status, d.reason_kind) for d in decisions] == [
        ("accepted", None),
        ("rejected", "duplicate"),
        ("rejected", "duplicate"),
        ("accepted", None),
        ("rejected", "cluster full"),
        ("accepted", None),
        ("rejected", "cluster full"),
    ]
    assert pool.ids == ["a", "b", "c", "s1", "s4", "s6"] and pool.size == 6
    assert np.allclose(
        pool.features[3:], np.stack([c[1] for c in (candidates[0], candidates[3], candidates[5])])
    )
    # the cap is per round: the next round's judge starts with every cluster's room
    again = judge(
        [("Seventh", unit(0.3, 0, 0.3, 1), "s8")],
        pool,
        CENTROIDS,
        AUTO,
        duplicate_cosine=0.98,
        mode="auto",
    )
    assert again[0].status == "accepted"


# --- the pool -----------------------------------------------------------------------------------


def test_the_pool_adds_rows_without_copying_itself_each_time():
    rng = np.random.default_rng(0)
    seed = rng.standard_normal((50, 8)).astype(np.float32)
    pool = Pool(seed, [f"t{i}" for i in range(50)], [f"i{i}" for i in range(50)])
    added = rng.standard_normal((1000, 8)).astype(np.float32)
    pool.reserve(10)
    capacity = pool.capacity
    for i in range(10):  # reserved: written in place
        pool.add(added[i], f"new {i}", f"n{i}")
        assert pool.capacity == capacity
    growths = 0
    for i in range(10, 1000):
        before = pool.capacity
        pool.add(added[i], f"new {i}", f"n{i}")
        growths += pool.capacity != before
    assert growths <= 6  # geometric growth, not one copy per add
    assert pool.size == 1050 and pool.n_seed == 50
    assert np.array_equal(pool.features, np.vstack([seed, added]))
    assert pool.features.dtype == np.float32 and pool.features.flags.c_contiguous
    assert "new 999" in pool.normalised and pool.texts[-1] == "new 999"


def test_a_pool_of_rows_on_disk_is_allocated_once_with_room_for_the_run():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((300, D)).astype(np.float32)
    texts, ids = [f"seed {i}" for i in range(300)], [f"i{i}" for i in range(300)]
    pool = Pool.of_rows(Matrix(rows, block=64), texts, ids, room=20)  # filled block by block
    assert (pool.size, pool.n_seed, pool.capacity) == (300, 300, 320)
    assert np.allclose(pool.features, rows / np.linalg.norm(rows, axis=1, keepdims=True))
    seeded = pool.features
    candidates = [(f"new {i}", unit(*rng.standard_normal(D)), f"n{i}") for i in range(12)]
    one_by_one = [
        decide(t, v, pool, CENTROIDS, AUTO, Counter(), duplicate_cosine=0.999, mode="auto")
        for t, v, _ in candidates
    ]
    decisions = judge(candidates, pool, CENTROIDS, AUTO, duplicate_cosine=0.999, mode="auto")
    assert pool.capacity == 320 and np.shares_memory(seeded, pool.features)  # no copy
    # the cosines with the pool come from one pass: the same decisions as one by one
    first = next(i for i, d in enumerate(decisions) if d.status == "accepted")
    assert decisions[: first + 1] == one_by_one[: first + 1]
    assert {d.reason_kind for d in decisions[:first]} <= {"duplicate", "landed in a dense cluster"}


# --- targets and plans ---------------------------------------------------------------------------


LABELS = np.array([0] * 10 + [1] * 2 + [2] * 5 + [3] * 1)  # sizes 10, 2, 5, 1; median 3.5


def test_auto_targets_are_the_sparse_clusters_thinnest_first_with_room_to_the_percentile():
    targets = choose_targets(
        LABELS, mode="auto", sparse_below=50, cap=None, target_rows=set(), n_seed=18
    )
    assert targets == Targets(order=[3, 1], accepting={1, 3}, room={1: 2, 3: 3})
    capped = choose_targets(
        LABELS, mode="auto", sparse_below=50, cap=2, target_rows=set(), n_seed=18
    )
    assert capped.room == {1: 2, 3: 2}
    none = choose_targets(
        np.array([0, 0, 1, 1]), mode="auto", sparse_below=50, cap=None, target_rows=set(), n_seed=4
    )
    assert none.order == [] and none.accepting == set()


def test_targeted_clusters_are_those_mostly_in_the_target_region():
    # the target rows: most of cluster 2 (3 of 5); accepted samples (rows 18+) count too
    labels = np.concatenate([LABELS, [1, 1]])  # two accepted samples landed in cluster 1
    targets = choose_targets(
        labels, mode="targeted", sparse_below=50, cap=3, target_rows={12, 13, 14, 0}, n_seed=18
    )
    assert targets.order == [1, 2] and targets.accepting == {1, 2}  # sizes 4 and 5
    assert targets.room == {1: 3, 2: 3}
    only = choose_targets(
        LABELS, mode="targeted", sparse_below=50, cap=None, target_rows={0}, n_seed=18
    )
    assert only.accepting == {0}  # no cluster half in it: the one with the largest share


def test_planned_requests_are_seeded_round_robin_and_sized_to_what_is_left():
    texts = [f"problem {i}" for i in range(18)]
    pool = Pool(np.eye(18, dtype=np.float32), texts, [f"id{i}" for i in range(18)])
    settings = SynthesisSettings(target=10, rounds=2, problems_per_prompt=2, exemplars=3, seed=7)
    template = "{count} examples:\n{exemplars}\nWrite {n}."

    def plan(**overrides):
        kwargs = dict(remaining=10, target_rows=set(), settings=settings, template=template)
        return plan_requests(1, [3, 1, 2], LABELS, pool, **{**kwargs, **overrides})

    planned = plan()
    # ceil(10 remaining / 2 rounds left) x 2 (over-generation) / 2 per request = 5 requests
    assert [p.key for p in planned] == [
        "gen/r1/c3/0",
        "gen/r1/c1/0",
        "gen/r1/c2/0",
        "gen/r1/c3/1",
        "gen/r1/c1/1",
    ]
    members = {c: {f"id{i}" for i in np.flatnonzero(c == LABELS)} for c in range(4)}
    for p in planned:
        assert set(p.exemplar_ids) <= members[p.cluster]
        assert len(p.exemplar_ids) == min(3, len(members[p.cluster]))
        assert p.prompt.endswith("Write 2.") and all(
            texts[int(i[2:])] in p.prompt for i in p.exemplar_ids
        )
    assert plan() == planned  # the same run plans the same requests
    other_seed = SynthesisSettings(target=10, rounds=2, problems_per_prompt=2, exemplars=3, seed=8)
    assert [p.exemplar_ids for p in plan(settings=other_seed)] != [p.exemplar_ids for p in planned]
    assert len(plan(remaining=1)) == 1  # at least one request
    targeted = SynthesisSettings(clusters=(2,), exemplars=3, seed=7)
    (first,) = plan_requests(
        1,
        [2],
        LABELS,
        pool,
        remaining=1,
        target_rows={12, 13},
        settings=targeted,
        template=template,
    )
    assert sorted(first.exemplar_ids) == ["id12", "id13"]  # from the target region only


def test_clusters_outside_the_map_are_refused():
    check_clusters((0, 11), 12)
    with pytest.raises(OutOfRange, match="12 is not a cluster of the map: it has clusters 0 to 11"):
        check_clusters((3, 12), 12)
