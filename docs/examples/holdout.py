"""Choose a model on the holdouts, beat popularity, refit on everything.

python docs/examples/holdout.py
"""

import numpy as np

from recommendations.ml.families import Config
from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import FeatureSet
from recommendations.ml.pipeline import EvaluationSettings, SearchSettings, SourceData, TrainingData, TrainSettings, train
from recommendations.ml.train import Hyper

rng = np.random.default_rng(0)
n_users, n_items = 600, 150
genre = rng.integers(0, 4, n_items)  # each book has one of four genres
taste = rng.integers(0, 4, n_users)  # each customer prefers one genre
popularity = rng.pareto(1.5, n_items) + 0.1
u, i, t = [], [], []
for user in range(n_users):
    liked = np.flatnonzero(genre == taste[user])
    p = popularity.copy()
    p[liked] *= 8  # taste matters more than popularity
    for item in rng.choice(n_items, size=10, replace=False, p=p / p.sum()):
        u.append(user), i.append(item), t.append(rng.uniform(0, 365 * 86400))

meta = FeatureSet(n_items)
meta.add_category("genre", genre.astype(object))
data = TrainingData(
    users=IdMap(np.arange(n_users)),
    items=IdMap(np.arange(n_items)),
    # One source, and it is the target: its held-out rows are the successes.
    sources=[SourceData("purchases", np.array(u), np.array(i), np.ones(len(u)), np.array(t), target=True)],
    item_metadata=meta.matrix(),
    item_metadata_names=meta.names,
    allowed=np.ones(n_items, bool),
)
settings = TrainSettings(
    hyper=Hyper(no_components=16, epochs=20),
    # Tried first, in this order; then Optuna proposes (here: 8 trials in all).
    candidates=[Config("hybrid"), Config("ALS", "als"), Config("collaborative", item_metadata=False)],
    evaluation=EvaluationSettings(k=10, holdout=0.2),
    search=SearchSettings(trials=8, seconds=120),
)
result = train(data, settings)
m = result.metrics
print(f"popularity precision@10 {m['popularity']['precision@10']:.3f}")
for row in m["trials"]:
    value = row.get("precision@10")
    print(f"{row['candidate']:>14} {row['family']:>7} {row['state']:>8} @{row['epochs']} epochs: precision@10 "
          f"{value if value is None else round(value, 3)}")
print("chosen:", m["chosen"]["candidate"], "->", result.decision)
print("new books on the cold-item holdout:", m.get("cold"))
# The chosen configuration was refitted on all interactions: every customer has a vector.
assert result.factors.user_vectors.shape[0] == n_users
