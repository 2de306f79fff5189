"""Top-k selection and chunked scoring agree with brute force."""

import numpy as np
import scipy.sparse as sp

import pytest

from recommendations.ml.scoring import popularity, score_users, similar_items, top_k, top_k_numpy, top_popular


def brute_top_k(scores, k):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("select", [top_k, top_k_numpy], ids=["compiled", "numpy"])
def test_top_k_matches_a_full_sort(select):
    rng = np.random.default_rng(0)
    for n, m, k in [(50, 5000, 10), (7, 1001, 20), (3, 64, 5), (10, 3000, 1), (4, 30, 30)]:
        scores = rng.standard_normal((n, m)).astype(np.float32)
        scores[0, : m // 2] = -np.inf  # masked entries are never picked
        cols, values = select(scores.copy(), k)
        _, expected = brute_top_k(scores, k)
        assert np.array_equal(values, expected)
        assert np.array_equal(np.take_along_axis(scores, cols, axis=1), values)


@pytest.mark.parametrize("select", [top_k, top_k_numpy], ids=["compiled", "numpy"])
def test_rows_with_fewer_candidates_than_k_end_in_minus_infinity(select):
    scores = np.full((1, 2000), -np.inf, dtype=np.float32)
    scores[0, [3, 1500]] = [1.0, 2.0]
    cols, values = select(scores, 5)
    assert cols[0, :2].tolist() == [1500, 3] and np.isinf(values[0, 2:]).all()


def test_score_users_excludes_and_respects_allowed():
    rng = np.random.default_rng(1)
    users = rng.standard_normal((30, 4)).astype(np.float32)
    items = rng.standard_normal((40, 4)).astype(np.float32)
    item_bias = rng.standard_normal(40).astype(np.float32)
    allowed = np.ones(40, bool)
    allowed[[0, 1, 2]] = False
    exclude = sp.csr_matrix((np.ones(2), ([0, 0], [5, 6])), shape=(30, 40))
    out = {}
    for rows, item_rows, scores in score_users(users, np.zeros(30, np.float32), items, item_bias, k=10, allowed=allowed, exclude=exclude, batch=7):
        for r, i, s in zip(rows, item_rows, scores):
            out[r] = (i, s)
    assert sorted(out) == list(range(30))
    full = users @ items.T + item_bias
    full[:, ~allowed] = -np.inf
    full[0, [5, 6]] = -np.inf
    for r, (item_rows, scores) in out.items():
        expected = np.argsort(-full[r], kind="stable")[:10]
        assert set(item_rows) == set(expected)
        assert np.allclose(scores, full[r, item_rows], atol=1e-5)
        assert not set(item_rows) & {0, 1, 2}
    assert not set(out[0][0]) & {5, 6}


def test_similar_items_are_nearest_by_cosine_and_never_themselves():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], dtype=np.float32)
    result = {int(r): s.tolist() for rows, sim, _ in similar_items(vectors, k=1) for r, s in zip(rows, sim)}
    assert result == {0: [1], 1: [0], 2: [3], 3: [2], 4: [2]} or result[4] in ([2], [3])


def test_popularity_counts_people_not_reloads():
    user = np.array([0, 0, 0, 1, 2])
    item = np.array([0, 0, 0, 1, 1])
    assert popularity(user, item, 3).tolist() == [1, 2, 0]
    time = np.array([1.0, 1.0, 1.0, 5.0, 9.0])
    assert popularity(user, item, 3, time=time, since=6.0).tolist() == [0, 1, 0]
    assert top_popular(np.array([3.0, 5.0, 0.0, 5.0]), 10).tolist() == [1, 3, 0]


def _brute_lists(users, user_bias, items, item_bias, k, allowed, exclude):
    full = users @ items.T + item_bias
    full[:, ~allowed] = -np.inf
    full[exclude.nonzero()] = -np.inf
    order = np.argsort(-full, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(full, order, axis=1)
    return np.where(np.isfinite(values), order, -1), values + user_bias[:, None]


@pytest.mark.parametrize("threads", [1, 2])
def test_score_users_across_tiles_and_threads_matches_brute_force(threads):
    # Enough users for many tiles per chunk, and items for a padded layout of super-groups.
    rng = np.random.default_rng(3)
    n_users, n_items, k = 700, 2501, 15
    users = rng.standard_normal((n_users, 8)).astype(np.float32)
    items = rng.standard_normal((n_items, 8)).astype(np.float32)
    user_bias = rng.standard_normal(n_users).astype(np.float32)
    item_bias = rng.standard_normal(n_items).astype(np.float32)
    allowed = rng.random(n_items) < 0.9
    exclude = sp.random(n_users, n_items, density=0.01, format="csr", random_state=4)
    exclude.data[:] = 1
    # One user may have nothing left but k - 3 items: the list ends early, padded with -1.
    exclude = exclude.tolil()
    exclude[5, :] = 1
    exclude[5, np.flatnonzero(allowed)[: k - 3]] = 0
    exclude = exclude.tocsr()
    exclude.eliminate_zeros()
    expected_rows, expected_scores = _brute_lists(users, user_bias, items, item_bias, k, allowed, exclude)
    got_rows = np.full((n_users, k), -2)
    got_scores = np.zeros((n_users, k), np.float32)
    for rows, item_rows, scores in score_users(
        users, user_bias, items, item_bias, k=k, allowed=allowed, exclude=exclude, batch=256, threads=threads
    ):
        got_rows[rows] = item_rows
        got_scores[rows] = scores
    assert np.array_equal(got_rows, expected_rows)
    finite = expected_rows >= 0
    assert np.allclose(got_scores[finite], expected_scores[finite], atol=1e-4)
    assert (got_rows[5, k - 3 :] == -1).all()


def test_scoring_without_numba_gives_the_same_lists(monkeypatch):
    from recommendations.ml import scoring

    rng = np.random.default_rng(5)
    users = rng.standard_normal((90, 6)).astype(np.float32)
    items = rng.standard_normal((300, 6)).astype(np.float32)
    bias = np.zeros(300, np.float32)
    exclude = sp.random(90, 300, density=0.05, format="csr", random_state=6)
    compiled = [r for _, r, _ in score_users(users, np.zeros(90, np.float32), items, bias, k=7, exclude=exclude, batch=32)]
    similar = [r for _, r, _ in similar_items(items, k=5, batch=64)]
    monkeypatch.setattr(scoring, "_KERNELS", None)
    plain = [r for _, r, _ in score_users(users, np.zeros(90, np.float32), items, bias, k=7, exclude=exclude, batch=32)]
    plain_similar = [r for _, r, _ in similar_items(items, k=5, batch=64)]
    assert np.array_equal(np.vstack(compiled), np.vstack(plain))
    assert np.array_equal(np.vstack(similar), np.vstack(plain_similar))


@pytest.mark.slow
def test_compiled_kernels_load_from_numba_cache_in_a_new_process():
    # A kernel that numba cannot find in its disk cache is compiled again in every process
    # (a second or more per retrain and per web process) and adds a file to the cache each time.
    import os
    import subprocess
    import sys

    code = "import numpy as np; from recommendations.ml.scoring import top_k; top_k(np.ones((3, 900), np.float32), 5)"
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)  # fills the cache if needed
    second = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert "data loaded" in second.stdout + second.stderr
    assert "data saved" not in second.stdout + second.stderr


def test_a_few_customers_get_the_lists_the_tiled_path_gives():
    """A rescore or a list scored on demand takes the short path (one product, no tiles)."""
    rng = np.random.default_rng(3)
    users, items = rng.standard_normal((40, 16)).astype(np.float32), rng.standard_normal((300, 16)).astype(np.float32)
    user_bias, item_bias = rng.standard_normal(40).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    allowed = rng.random(300) > 0.2
    exclude = sp.random(40, 300, density=0.05, format="csr", random_state=3, dtype=np.float32)
    tiled = {}
    for rows, item_rows, scores in score_users(users, user_bias, items, item_bias, k=10, allowed=allowed, exclude=exclude):
        tiled.update({int(r): (list(i), s) for r, i, s in zip(rows, item_rows, scores, strict=True)})
    few = np.array([3, 17, 29])
    ((rows, item_rows, scores),) = score_users(users, user_bias, items, item_bias, k=10, allowed=allowed, exclude=exclude,
                                               users=few)  # fmt: skip
    assert rows.tolist() == few.tolist()
    for r, i, s in zip(rows, item_rows, scores, strict=True):
        assert list(i) == tiled[int(r)][0]
        np.testing.assert_allclose(s, tiled[int(r)][1], rtol=1e-5, atol=1e-5)
        assert allowed[i].all() and not set(exclude[r].indices) & set(i)


@pytest.mark.parametrize("threads", [1, 2])
def test_scoring_holds_blas_to_the_threads_it_was_given(threads, monkeypatch):
    """With two scoring workers on two cores the shards' scoring took six times as long as with
    one when BLAS started a thread per core in each: with ``threads`` given, every product runs on one BLAS thread."""
    from threadpoolctl import threadpool_info

    from recommendations.ml import scoring

    seen = []
    real_matmul = np.matmul

    def watching(a, b, *args, **kwargs):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return real_matmul(a, b, *args, **kwargs)

    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    monkeypatch.setattr(scoring.np, "matmul", watching)
    list(score_users(users, np.zeros(300, np.float32), items, np.zeros(50, np.float32), k=5, threads=threads))
    if not any(p["user_api"] == "blas" for p in threadpool_info()):
        pytest.skip("numpy has no BLAS that threadpoolctl can see")
    assert seen and set(seen) == {1}
