"""Build LightFM's matrices from plain arrays (no Django): python docs/examples/matrices.py"""

import numpy as np

from recommendations.ml.ids import IdMap
from recommendations.ml.matrices import FeatureSet, combine, history_affinities, item_features, user_features

# Interactions as the sources layer reads them: one row per order line or page-view row.
customers = np.array(["ann", "ann", "bob", "bob", "cem"])
books = np.array([2345, 2346, 2345, 2345, 9999])
weights = np.array([1.0, 0.3, 1.0, 0.6, 0.3])  # purchases 1 per copy, views 0.3 per view
times = np.array([10.0, 20.0, 30.0, 40.0, 50.0])  # seconds since the epoch

users = IdMap(customers)  # explicit maps: host key <-> matrix row
items = IdMap([2345, 2346, 2347, 9999])  # every book in the catalogue, even unsold ones
inter = combine(users.index(customers), items.index(books), weights, times, len(users), len(items))
print("interactions (users x items), combined weights:")
print(inter.matrix().toarray())  # bob's purchase and views of 2345 add up to 1.6

# Item metadata: one binary column per value ("author=…", "genres=…", "price=q…").
meta = FeatureSet(len(items))
meta.add_category("author", np.array(["le guin", "le guin", "herbert", None], dtype=object))
meta.add_tags("genres", items.index([2345, 2346, 2347, 2347]), np.array(["fantasy", "fantasy", "sf", "classics"]))
meta.add_number("price", np.array([9.99, 12.99, 7.50, np.nan]), buckets=2)
print("metadata columns:", meta.names)

# Item features: identity for books with interactions, metadata for all; rows sum to 1.
warm = np.bincount(inter.item, minlength=len(items)) > 0
X_items = item_features(meta.matrix(), warm)
print("item features shape:", X_items.shape)  # (4 books, 4 identities + 7 metadata columns)
print("book 2347 (unsold) has no identity feature:", X_items[items.index([2347])[0], :4].toarray())

# User features: identity, plus (an option the holdout may reject) history affinities.
X_users = user_features(len(users), history=history_affinities(inter.matrix(), meta.matrix()))
print("user features shape:", X_users.shape)
assert X_items.format == "csr" and X_users.format == "csr"  # scipy sparse: what LightFM takes
