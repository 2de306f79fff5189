"""The time holdout and the ranking metrics, on cases whose answer is known."""

import numpy as np
import pytest

from recommendations.ml.evaluate import evaluate, time_split
from recommendations.ml.matrices import combine


def test_time_split_holds_out_each_users_latest_share():
    # user 0: 5 interactions at times 1..5; user 1: 2 interactions (below the minimum of 3)
    inter = combine([0] * 5 + [1, 1], [0, 1, 2, 3, 4, 0, 1], [1] * 7, [1, 2, 3, 4, 5, 1, 2], 2, 5)
    test = time_split(inter, holdout=0.4, min_interactions=3)
    held = {(int(u), int(i)) for u, i in zip(inter.user[test], inter.item[test])}
    assert held == {(0, 3), (0, 4)}


def test_time_split_holds_out_at_least_one_and_never_untimed_pairs():
    inter = combine([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2], [1] * 6, [1, 2, 3, np.nan, np.nan, np.nan], 2, 3)
    test = time_split(inter, holdout=0.01, min_interactions=3)
    assert test.sum() == 1 and inter.item[test][0] == 2


def test_a_perfect_scorer_and_popularity_on_a_known_split():
    # 4 users, 6 items; each user's test item is known; item vectors make the scorer perfect.
    train = combine([0, 1, 2, 3], [0, 0, 1, 1], [1] * 4, [0] * 4, 4, 6).matrix()
    test = combine([0, 1, 2, 3], [2, 3, 4, 5], [1] * 4, [0] * 4, 4, 6).matrix()
    users = np.eye(4, dtype=np.float32)
    items = np.zeros((6, 4), dtype=np.float32)
    for u, i in enumerate([2, 3, 4, 5]):
        items[i, u] = 1.0
    m = evaluate(users, items, np.zeros(6, np.float32), train, test, k=1, users=np.arange(4))
    assert (m.precision, m.recall, m.ndcg, m.auc) == (1.0, 1.0, 1.0, 1.0)
    assert m.coverage == pytest.approx(4 / 6)

    # Popularity ranks items 5 > 4 > 3 > 2: only user 3's test item is first.
    pop = np.array([0, 0, 1, 2, 3, 4], dtype=np.float32)
    m = evaluate(np.ones((4, 1), np.float32), np.zeros((6, 1), np.float32), pop, train, test, k=1, users=np.arange(4))
    assert m.precision == pytest.approx(0.25) and m.auc < 1.0
