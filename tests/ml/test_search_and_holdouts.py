"""The holdouts (target, cold items), the families and the Optuna search, on small stores."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.ml import search as srch
from recommendations.ml.als import ALSHyper, ALSTrainer, fold_in
from recommendations.ml.families import Config
from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import FeatureSet, combine
from recommendations.ml.pipeline import (
    EvaluationSettings,
    SearchSettings,
    SourceData,
    TrainingData,
    TrainSettings,
    build_holdout,
    train,
)
from recommendations.ml.train import Hyper


def genre_store(n_users=300, n_items=60, seed=0, views_noise=True):
    """Customers buy books of their genre; page views add books of any genre."""
    rng = np.random.default_rng(seed)
    genre = np.arange(n_items) % 3
    taste = rng.integers(0, 3, n_users)
    buys, views = [], []
    for u in range(n_users):
        for i in rng.choice(np.flatnonzero(genre == taste[u]), 6, replace=False):
            buys.append((u, int(i), float(rng.uniform(0, 1000))))
        if views_noise:
            for i in rng.choice(n_items, 4, replace=False):
                views.append((u, int(i), float(rng.uniform(0, 1000))))
    fs = FeatureSet(n_items)
    fs.add_category("genre", genre.astype(object))

    def source(name, rows, target):
        u, i, t = (np.array(x) for x in zip(*rows))
        return SourceData(name, u, i, np.ones(u.size), t, target=target)

    sources = [source("purchases", buys, True)] + ([source("views", views, False)] if views else [])
    return TrainingData(IdMap(np.arange(n_users)), IdMap(np.arange(n_items)), sources, fs.matrix(), fs.names,
                        np.ones(n_items, bool))


def test_held_out_views_are_not_successes_and_cold_books_are_held_out_whole():
    data = genre_store()
    holdout = build_holdout(data, EvaluationSettings(cold_items=0.2, min_users=10), np.random.default_rng(0))
    buys = {(int(u), int(i)) for u, i in zip(data.sources[0].user, data.sources[0].item)}
    for truth in (holdout.truth_warm, holdout.truth_cold):
        coo = truth.tocoo()
        assert all((int(u), int(i)) in buys for u, i in zip(coo.row, coo.col)), "only purchases are successes"
    cold = np.flatnonzero(holdout.cold)
    assert cold.size and holdout.stats["cold_items"] == cold.size
    keys = holdout.train_keys
    assert not np.isin(keys % data.n_items, cold).any(), "no row of a held-out book is trained on"
    assert not holdout.allowed_warm[cold].any()
    assert holdout.truth_cold.nnz > 0 and set(holdout.truth_cold.tocoo().col) <= set(cold.tolist())


def test_a_source_scaled_to_zero_is_left_out():
    data = genre_store()
    both, buys_only = data.interactions(), data.interactions({"views": 0.0})
    assert len(buys_only) < len(both)
    assert len(buys_only) == len({(u, i) for u, i in zip(data.sources[0].user, data.sources[0].item)})


def test_als_folds_in_a_customer_as_training_would():
    inter = combine(*zip(*[(u, i, 1.0, 0.0) for u in range(40) for i in range(10) if (u + i) % 3 == 0]), 40, 10)
    trainer = ALSTrainer(inter, ALSHyper(factors=4, regularization=0.1, iterations=10, num_threads=1))
    trainer.advance(10)
    users, items = trainer.vectors()
    row = inter.matrix().getrow(7)
    again = fold_in(items, row.indices, row.data, {"factors": 4, "regularization": 0.1, "alpha": 1.0})
    cosine = again @ users[7] / (np.linalg.norm(again) * np.linalg.norm(users[7]))
    assert cosine > 0.99, "the solve against the final item factors agrees with the trained vector"


def test_the_search_tries_the_seeds_first_then_stays_within_its_trials():
    data = genre_store()
    seeds = [Config("ALS first", "als", {"factors": 8}), Config("then LightFM", params={"no_components": 8})]
    result = train(data, TrainSettings(
        hyper=Hyper(no_components=8, epochs=6), candidates=seeds,
        evaluation=EvaluationSettings(k=5), search=SearchSettings(trials=5, seconds=600, blend=False),
    ))  # fmt: skip
    trials = result.metrics["trials"]
    assert [t["candidate"] for t in trials[:2]] == ["ALS first", "then LightFM"]
    assert len(trials) == 5 and all(t["state"] in {"complete", "pruned", "stopped", "failed"} for t in trials)
    assert result.metrics["model"]["precision@5"] > result.metrics["popularity"]["precision@5"]
    best = max((t for t in trials if t.get("precision@5") is not None), key=lambda t: t["precision@5"])
    assert result.metrics["chosen"]["candidate"] == best["candidate"]


def test_a_trial_that_diverges_does_not_end_the_search():
    data = genre_store()
    seeds = [Config("diverges", params={"learning_rate": 1e6, "no_components": 8}), Config("ALS", "als", {"factors": 8})]
    result = train(data, TrainSettings(
        hyper=Hyper(no_components=8, epochs=4), candidates=seeds,
        evaluation=EvaluationSettings(k=5), search=SearchSettings(trials=2, seconds=600, blend=False),
    ))  # fmt: skip
    states = {t["candidate"]: t["state"] for t in result.metrics["trials"]}
    assert states["diverges"] == "failed" and result.metrics["chosen"]["candidate"] == "ALS"


def test_the_time_budget_stops_the_search():
    calls = []

    def build(trial):
        return Config(f"t{trial.number}", "lightfm", {"x": trial.suggest_float("x", 0, 1)})

    def run(config, report):
        calls.append(config.name)
        for step in (1, 2, 3):
            report(0.5, step)
        return srch.Outcome(0.5, 3, {}, trained=3)

    budget = srch.Budget(trials=50, seconds=0.0)  # spent before the first checkpoint
    records = srch.search(build, run, [], budget)
    assert len(records) == 1 and records[0].state == "stopped"


def test_blends_are_kept_only_when_they_beat_the_best_single_model():
    data = genre_store()
    result = train(data, TrainSettings(
        hyper=Hyper(no_components=8, epochs=6),
        candidates=[Config("lightfm", params={"no_components": 8}), Config("als", "als", {"factors": 8})],
        evaluation=EvaluationSettings(k=5), search=SearchSettings(trials=2, seconds=600, blend=True),
    ))  # fmt: skip
    blends = result.metrics.get("blends") or []
    assert len(blends) == 3
    best_single = max(t["precision@5"] for t in result.metrics["trials"] if t.get("precision@5") is not None)
    if result.config.family == "blend":
        assert result.metrics["model"]["precision@5"] > best_single
        assert result.factors.item_vectors.shape[1] == 16, "one dot product over both parts' factors"
    else:
        assert all(b["precision@5"] <= best_single for b in blends)
