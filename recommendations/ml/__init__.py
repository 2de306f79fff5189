"""Pure numerics of the recommender: id maps, matrices, training, evaluation, scoring.

Nothing here imports Django: every function takes and returns numpy arrays and scipy
sparse matrices, so the core can be tested (and reused) with plain arrays.
"""
