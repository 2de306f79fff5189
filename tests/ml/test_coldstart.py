"""New books: the metadata tower, the calibration onto the model's scale, the merge."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.ml.coldstart import Calibration, ContentTower, merge, slots, top_new


def tower_fixture():
    # Items 0-3 were bought; 4 and 5 are new.  Features: genre=a, genre=b, author=x, author=y,
    # author=debut (only the new book 5 has it).
    names = ["genre=a", "genre=b", "author=x", "author=y", "author=debut"]
    rows = [(0, 0), (0, 2), (1, 0), (1, 2), (2, 1), (2, 3), (3, 1), (3, 3), (4, 0), (4, 2), (5, 0), (5, 4)]
    m = sp.csr_matrix((np.ones(len(rows), np.float32), tuple(zip(*rows))), shape=(6, 5))
    trained = np.array([True, True, True, True, False, False])
    return ContentTower(m, trained, names), m


def test_rare_values_weigh_more_and_a_debut_author_weighs_like_a_typical_author():
    tower, _ = tower_fixture()
    idf = dict(zip(["genre=a", "genre=b", "author=x", "author=y", "author=debut"], tower.idf))
    assert idf["author=debut"] == pytest.approx((idf["author=x"] + idf["author=y"]) / 2)
    norms = np.sqrt(np.asarray(tower.items.multiply(tower.items).sum(axis=1)).ravel())
    assert np.allclose(norms, 1.0)


def test_a_customer_who_read_an_author_gets_that_authors_new_book_first():
    tower, _ = tower_fixture()
    history = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], np.float32))  # reader of x / of y
    profiles = tower.profiles(history)
    items, scores = top_new(tower, profiles, np.array([4, 5]), 2)
    assert items[0, 0] == 4, "the sequel by author x beats the debut in the same genre"
    assert scores[0, 0] > scores[0, 1] > 0
    assert (items[1] == -1).all(), "a reader of genre b and author y shares nothing with either new book"


def test_similar_books_by_metadata_leave_the_book_itself_out():
    tower, _ = tower_fixture()
    found, values = tower.similar(np.array([4]), np.arange(6), 3)
    assert 4 not in found[0] and set(found[0][:2]) == {0, 1}
    assert values[0, 0] >= values[0, 1]


def test_calibration_curves_are_monotone_and_map_new_books_onto_the_warm_scale():
    rng = np.random.default_rng(0)
    warm = rng.normal(size=5000)
    warm_hits = rng.random(5000) < 1 / (1 + np.exp(-(warm - 2)))  # higher score, more purchases
    cold = rng.random(2000)
    cold_hits = rng.random(2000) < cold * 0.2
    cal = Calibration.fit(warm, warm_hits, cold, cold_hits)
    assert cal.usable
    assert (np.diff(cal.warm_p) >= 0).all() and (np.diff(cal.cold_p) >= 0).all()
    mapped = cal.to_warm(np.linspace(0, 1, 50))
    assert (np.diff(mapped) >= -1e-6).all(), "a better new book never lands below a worse one"
    cal.boost = 0.05
    assert (cal.to_warm(np.linspace(0, 1, 50)) >= mapped - 1e-6).all(), "a boost only lifts new books"
    again = Calibration.from_arrays(cal.as_arrays())
    assert np.allclose(again.to_warm(np.linspace(0, 1, 9)), cal.to_warm(np.linspace(0, 1, 9)))


def test_a_small_sample_gives_a_coarse_curve_not_a_noisy_one():
    scores = np.linspace(0, 1, 400)
    hits = np.zeros(400, bool)
    hits[[50, 300, 399]] = True  # three purchases: too few for more than two knots
    cal = Calibration.fit(scores, hits, scores, hits)
    assert cal.warm_x.size == 2


def test_merge_ranks_on_one_scale_and_caps_new_books():
    warm_items = np.array([[10, 11, 12, 13]])
    warm_scores = np.array([[4.0, 3.0, 2.0, 1.0]], np.float32)
    new_items = np.array([[20, 21, 22]])
    new_scores = np.array([[3.5, 2.5, 0.5]], np.float32)
    items, scores = merge(warm_items, warm_scores, new_items, new_scores, 4, 3)
    assert items.tolist() == [[10, 20, 11, 21]]
    items, _ = merge(warm_items, warm_scores, new_items, new_scores, 4, 1)
    assert items.tolist() == [[10, 20, 11, 12]], "at most one new book"
    tied, _ = merge(warm_items, warm_scores, np.array([[20]]), np.array([[3.0]], np.float32), 4, 1)
    assert tied.tolist() == [[10, 11, 20, 12]], "a tie goes to the known book"
    assert slots(0.2, 10) == 2 and slots(0.0, 10) == 0 and slots(1.0, 7) == 7
