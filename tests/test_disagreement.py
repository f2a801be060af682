"""Where the gradient and sentence spaces disagree: the score of core/disagreement.py, and
`map --space sentence --disagreement` on the command line."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import SENTENCE, FeatureConfig, ProxySpec
from core.disagreement import Space, disagreement
from core.features import find_features
from core.maps import clusters_for
from core.rows import Matrix
from core.sentence import SENTENCE_MODEL
from core.workspace import Workspace
from tests.conftest import assert_user_error


def planted() -> tuple[Space, Space]:
    """90 rows in three clusters of 30, identical in both spaces except one: cluster 0 of
    the gradient space is two far-apart groups of 15 in the sentence space (its clusters 0
    and 3). Points sit on orthogonal unit vectors, so every distance is 0 or 1."""
    axes = np.eye(8, dtype=np.float32)
    gradient = np.repeat([0, 1, 2], 30)
    sentence = np.array([0] * 15 + [3] * 15 + [1] * 30 + [2] * 30)
    places = np.array([4] * 15 + [5] * 15 + [1] * 30 + [2] * 30)
    # streamed 7 rows at a time, so the sums cross blocks as a feature set's chunks do
    return (
        Space("gradient", Matrix(axes[gradient] * 3.0, block=7), gradient),
        Space("sentence", Matrix(axes[places], block=7), sentence),
    )


def test_a_cluster_split_in_the_other_space_ranks_first():
    """The split cluster scores (its spread in the sentence space) / (the spread of all rows
    there): its cross pairs are 2*15*15 of 30*29, all rows' are 1 - (15*14*2 + 30*29*2) /
    (90*89); every cluster the spaces agree on scores 0."""
    gradient, sentence = planted()
    found = disagreement(gradient, sentence)
    first, *rest = found["clusters"]
    spread = 450 / 870
    assert first["space"] == "gradient" and first["cluster"] == 0
    assert first["spread"] == pytest.approx(spread)
    assert first["score"] == pytest.approx(spread / (1 - 2160 / 8010))  # 0.708
    assert first["other_space"] == "sentence" and first["other_clusters"] == 2
    assert first["splits_into"] == [{"cluster": 0, "rows": 15}, {"cluster": 3, "rows": 15}]
    assert len(rest) == 2 + 4  # the other clusters of both spaces
    assert all(r["score"] == pytest.approx(0, abs=1e-9) for r in rest)
    assert found["spaces"]["sentence"] == pytest.approx(
        {"typical_spread": 0, "all_spread": 1 - 2160 / 8010}
    )
    # the same ranking with the spaces given the other way round
    again = disagreement(sentence, gradient)
    assert again["clusters"][0] == first


def test_a_split_spread_over_more_clusters_scores_higher():
    """The score grows with how many of the other space's groups a cluster's rows are
    spread over: halves (0.708) below thirds."""
    gradient, _ = planted()
    axes = np.eye(9, dtype=np.float32)
    thirds = np.array([4] * 10 + [5] * 10 + [6] * 10 + [1] * 30 + [2] * 30)
    sentence = Space("sentence", axes[thirds], np.unique(thirds, return_inverse=True)[1])
    first = disagreement(gradient, sentence)["clusters"][0]
    spread = 1 - 3 * 10 * 9 / (30 * 29)
    everything = 1 - (3 * 10 * 9 + 2 * 30 * 29) / (90 * 89)
    assert (first["space"], first["cluster"]) == ("gradient", 0)
    assert first["score"] == pytest.approx(spread / everything)
    assert first["score"] > 0.708 + 0.1


def test_spaces_that_agree_score_low():
    """The same three clusters in two spaces with their own centres and noise: every
    cluster is about as tight in the other space as that space's own (|score| < 0.05),
    where a planted split scores 0.7."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    spaces = []
    for name in ("gradient", "sentence"):
        centres = rng.normal(size=(3, 32))
        spaces.append(Space(name, centres[labels] + 0.2 * rng.normal(size=(120, 32)), labels))
    found = disagreement(*spaces)
    assert len(found["clusters"]) == 6
    assert all(abs(r["score"]) < 0.05 for r in found["clusters"]), found["clusters"]
    assert all(r["other_clusters"] == 1 for r in found["clusters"])


def test_a_cluster_of_one_row_has_no_score():
    gradient, sentence = planted()
    labels = sentence.labels.copy()
    labels[0] = 4  # a cluster of one row in the sentence space
    found = disagreement(gradient, Space("sentence", sentence.features, labels))
    assert (4, "sentence") not in {(r["cluster"], r["space"]) for r in found["clusters"]}
    with pytest.raises(ValueError, match="90 rows"):
        disagreement(gradient, Space("sentence", sentence.features, labels[:-1]))


def test_map_in_the_sentence_space(cli, workspace_dir):
    """`map --space sentence` clusters the sentence embeddings (the baseline's feature set,
    the bundled all-MiniLM-L6-v2) with the map's output; --disagreement ranks the clusters
    of both spaces; a space that is not one is one error line."""
    assert cli("demo").code == 0
    r = cli(
        "map", "demo", "--space", "sentence", "--proxy", "tiny-random", "--dim", "64",
        "--k", "6", "--disagreement", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    out = r.json
    assert (out["space"], out["rows"], out["k"]) == ("sentence", 360, 6)
    ws = Workspace(workspace_dir)
    fs = find_features(
        ws, "demo", proxy=ProxySpec(SENTENCE_MODEL), config=FeatureConfig(method=SENTENCE)
    )
    assert fs is not None and fs.dim == 384
    sizes = np.bincount(clusters_for(fs, k=6).labels, minlength=6)
    assert [c["size"] for c in out["clusters"]] == sizes.tolist()
    ranked = out["disagreement"]["clusters"]
    assert len(ranked) == 12 and {r["space"] for r in ranked} == {"gradient", "sentence"}
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert all(r["keywords"] for r in ranked)
    assert set(out["disagreement"]["spaces"]) == {"gradient", "sentence"}

    text = cli("map", "demo", "--space", "sentence", "--k", "6", "--proxy", "tiny-random")
    assert text.code == 0 and "6 clusters of 360 rows in sentence space" in text.out
    assert_user_error(cli("map", "demo", "--space", "meaning"), "--space", "'meaning'", "sentence")
