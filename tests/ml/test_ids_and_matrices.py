"""Id maps and the sparse matrices LightFM trains on."""

import numpy as np
import pytest

from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import (
    DataError,
    FeatureSet,
    combine,
    history_affinities,
    item_features,
    keep_top_per_row,
    user_features,
)


def test_id_map_round_trip_and_unknown_keys():
    ids = IdMap([30, 10, 20, 10])
    assert ids.keys.tolist() == [10, 20, 30]
    assert ids.index([20, 99, 10]).tolist() == [1, -1, 0]
    assert ids.key([2, 0]).tolist() == [30, 10]
    assert IdMap(["b", "a"]).index(np.array(["a", "zz"])).tolist() == [0, -1]
    assert IdMap([]).index([1]).tolist() == [-1]
    assert IdMap([1, 2]).index(np.array(["1"])).tolist() == [-1], "a string never matches an integer key"


def test_combine_sums_weights_and_keeps_the_first_time():
    inter = combine(
        user=[0, 0, 1, 0], item=[1, 1, 0, 2], weight=[1.0, 2.0, 1.0, 0.0], time=[50, 10, 5, 1], n_users=2, n_items=3
    )
    pairs = {(u, i): (w, t) for u, i, w, t in zip(inter.user, inter.item, inter.weight, inter.time)}
    assert pairs == {(0, 1): (3.0, 10.0), (1, 0): (1.0, 5.0)}, "zero weights are dropped"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_combine_refuses_non_finite_or_negative_weights(bad):
    with pytest.raises(DataError):
        combine([0], [0], [bad], [0.0], 1, 1)


def test_feature_set_kinds():
    fs = FeatureSet(4)
    fs.add_category("author", np.array([7, 7, None, 8], dtype=object))
    fs.add_tags("genres", np.array([0, 0, 1]), np.array([1, 2, 1]))
    fs.add_number("price", np.array([1.0, 5.0, 9.0, np.nan]), buckets=2)
    m = fs.matrix().toarray()
    names = fs.names
    assert names[:2] == ["author=7", "author=8"]
    assert m[0, names.index("author=7")] == 1 and m[2, :2].sum() == 0
    assert m[0, names.index("genres=1")] == m[0, names.index("genres=2")] == m[1, names.index("genres=1")] == 1
    assert m[3, [i for i, n in enumerate(names) if n.startswith("price=")]].sum() == 0, "missing price: no bucket"
    assert fs.edges["price"] == [5.0]


def test_cold_items_get_metadata_only_and_rows_sum_to_one():
    meta = FeatureSet(3)
    meta.add_category("genre", np.array(["a", "a", None], dtype=object))
    warm = np.array([True, False, False])
    m = item_features(meta.matrix(), warm).toarray()
    assert m.shape == (3, 3 + 1)
    assert np.allclose(m.sum(axis=1), 1)
    assert m[0, 0] == pytest.approx(0.5) and m[0, 3] == pytest.approx(0.5), "warm: identity plus metadata"
    assert m[1, 1] == 0 and m[1, 3] == 1, "cold with metadata: no untrained identity feature"
    assert m[2, 2] == 1, "cold without metadata keeps its identity (no empty row)"


def test_history_affinities_and_user_features():
    interactions = combine([0, 0, 1], [0, 1, 1], [3.0, 1.0, 1.0], [0, 0, 0], 2, 2).matrix()
    meta = FeatureSet(2)
    meta.add_category("genre", np.array(["a", "b"], dtype=object))
    hist = history_affinities(interactions, meta.matrix()).toarray()
    assert hist[0].tolist() == pytest.approx([0.75, 0.25]) and hist[1].tolist() == [0, 1]
    uf = user_features(2, history=history_affinities(interactions, meta.matrix())).toarray()
    assert uf.shape == (2, 4) and np.allclose(uf.sum(axis=1), 1) and uf[0, 0] == pytest.approx(0.5)


def test_keep_top_per_row():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[5, 1, 3, 0], [0, 2, 0, 0]], dtype=np.float32))
    assert keep_top_per_row(m, 2).toarray().tolist() == [[5, 0, 3, 0], [0, 2, 0, 0]]
