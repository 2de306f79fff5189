"""A store whose right answer is obvious: fans of genre A buy genre A, fans of B buy B.

The model must learn it (A fans get A books), and a brand-new A book that nobody has
bought must reach A fans from its features alone (no identity feature to lean on).
"""

import numpy as np
import pytest

from recommendations.ml import serving
from recommendations.ml.families import Config
from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import FeatureSet
from recommendations.ml.pipeline import (
    EvaluationSettings,
    SearchSettings,
    SourceData,
    TrainingData,
    TrainSettings,
    train,
)
from recommendations.ml.train import Hyper

N_PER_GENRE = 40
N_FANS = 150  # enough customers for the cold-item holdout to say something
NEW_BOOK = 2 * N_PER_GENRE  # the last item: genre A, by a new author, no interactions


def planted_store(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items = 2 * N_PER_GENRE + 1
    genre = np.array(["A"] * N_PER_GENRE + ["B"] * N_PER_GENRE + ["A"], dtype=object)
    author = np.array([f"a{i // 4}" for i in range(2 * N_PER_GENRE)] + ["newcomer"], dtype=object)
    users, items, times = [], [], []
    for u in range(2 * N_FANS):
        shelf = np.arange(N_PER_GENRE) + (0 if u < N_FANS else N_PER_GENRE)
        for i in rng.choice(shelf, size=8, replace=False):
            users.append(u)
            items.append(int(i))
            times.append(float(rng.integers(0, 1000)))
    fs = FeatureSet(n_items)
    fs.add_category("genre", genre)
    fs.add_category("author", author)
    data = TrainingData(
        users=IdMap(np.arange(2 * N_FANS)),
        items=IdMap(np.arange(n_items)),
        sources=[SourceData("purchases", np.array(users), np.array(items), np.ones(len(users)), np.array(times))],
        item_metadata=fs.matrix(),
        item_metadata_names=fs.names,
        allowed=np.ones(n_items, bool),
    )
    return data


HYBRID = Config("hybrid")
COLLABORATIVE = Config("collaborative", item_metadata=False)
ALS = Config("als", "als", params={"factors": 16, "regularization": 0.1})


def lists_of(result, data, k=10):
    """Every customer's served list, new books mixed in as the run would mix them."""
    f, ni = result.factors, result.new_items
    represents_new = result.config.family == "lightfm" and result.config.item_metadata
    how = serving.mode(ni.new, ni.calibration, represents_new, ni.max_share)
    lists = {}
    for rows, items, _ in serving.personal_lists(
        f.user_vectors, f.user_biases, f.item_vectors, f.item_biases, k=k, allowed=data.allowed,
        new_rows=ni.new, how=how, exclude=result.interactions.matrix(), tower=ni.tower, profiles=ni.profiles,
        calibration=ni.calibration,
    ):  # fmt: skip
        lists.update(zip(rows.tolist(), items.tolist()))
    return lists, how


def settings_for(candidates, evaluate, trials=None):
    return TrainSettings(
        hyper=Hyper(no_components=16, epochs=30, learning_rate=0.05, random_state=7),
        candidates=candidates,
        evaluation=EvaluationSettings(enabled=evaluate, k=5, min_users=10),
        search=SearchSettings(trials=trials or len(candidates), seconds=600, blend=False),
    )


@pytest.mark.parametrize(
    "candidates, evaluate",
    [
        ([HYBRID, COLLABORATIVE], False),  # no holdout: the hybrid scores the new book from its features
        ([HYBRID, COLLABORATIVE, ALS], True),  # whichever the holdout picks
        ([COLLABORATIVE], True),  # the collaborative model chosen: new books come from the tower
        ([ALS], True),
    ],
    ids=["hybrid-unevaluated", "holdout-picks", "collaborative", "als"],
)
def test_fans_get_their_genre_and_a_new_book_reaches_them(candidates, evaluate):
    data = planted_store()
    result = train(data, settings_for(candidates, evaluate))
    if evaluate:
        assert result.metrics["model"]["precision@5"] > result.metrics["popularity"]["precision@5"]
        assert result.new_items.calibration is not None, result.metrics.get("cold")
    lists, how = lists_of(result, data)
    is_a = lambda i: i < N_PER_GENRE or i == NEW_BOOK  # noqa: E731
    a_fans, b_fans = range(N_FANS), range(N_FANS, 2 * N_FANS)
    share_a = np.mean([np.mean([is_a(i) for i in lists[u]]) for u in a_fans])
    share_b = np.mean([np.mean([not is_a(i) for i in lists[u]]) for u in b_fans])
    assert share_a > 0.9 and share_b > 0.9
    reached_a = np.mean([NEW_BOOK in lists[u] for u in a_fans])
    reached_b = np.mean([NEW_BOOK in lists[u] for u in b_fans])
    assert reached_a >= 0.5, f"the new A book reached only {reached_a:.0%} of A fans ({how}, {result.config.name})"
    assert reached_b == 0.0
