"""Choose a configuration on a time holdout, beat popularity, refit on everything.

python docs/examples/holdout.py
"""

import numpy as np

from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import FeatureSet
from recommendations.ml.pipeline import Candidate, EvaluationSettings, SourceData, TrainingData, train
from recommendations.ml.train import Hyper

rng = np.random.default_rng(0)
n_users, n_items = 300, 120
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
    sources=[SourceData("purchases", np.array(u), np.array(i), np.ones(len(u)), np.array(t))],
    item_metadata=meta.matrix(),
    item_metadata_names=meta.names,
    allowed=np.ones(n_items, bool),
)
result = train(
    data,
    Hyper(no_components=16, epochs=20),
    [Candidate("hybrid"), Candidate("hybrid + history", history_features=True), Candidate("collaborative", item_metadata=False)],
    EvaluationSettings(k=10, holdout=0.2),
)
m = result.metrics
print(f"popularity precision@10 {m['popularity']['precision@10']:.3f}")
for row in m["candidates"]:
    print(f"{row['candidate']:>18} @{row['epochs']:>2} epochs: precision@10 {row['precision@10']:.3f}")
print("chosen:", m["chosen"], "->", result.decision)
# The chosen configuration was refitted on all interactions: every customer has a vector.
assert result.reps.user_vectors.shape == (n_users, 16)
