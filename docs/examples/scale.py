"""Score many customers without model.predict: tiled matrix products on every CPU, grouped top-k.

python docs/examples/scale.py
"""

import time

import numpy as np
import scipy.sparse as sp

from recommendations.ml.scoring import score_users

rng = np.random.default_rng(0)
n_users, n_items, dim, k = 20_000, 5_000, 32, 20
user_vectors = rng.standard_normal((n_users, dim), dtype=np.float32)
item_vectors = rng.standard_normal((n_items, dim), dtype=np.float32)
item_biases = rng.standard_normal(n_items).astype(np.float32)
bought = sp.random(n_users, n_items, density=0.002, format="csr", random_state=0)  # never recommended
available = rng.random(n_items) > 0.03  # unavailable books are never scored

started = time.perf_counter()
rows_done = 0
for rows, items, scores in score_users(
    user_vectors, np.zeros(n_users, np.float32), item_vectors, item_biases,
    k=k, allowed=available, exclude=bought, batch=2048,
):  # fmt: skip
    rows_done += rows.size  # a real caller stores each chunk; memory stays one chunk wide
seconds = time.perf_counter() - started
print(f"{rows_done} customers x {n_items} books, top {k} each, in {seconds:.2f} s")
