"""Measures of a run that are neither a quality gate nor training: did the kept rows cover the sparse regions
(``coverage``: grid windows, ``knn_coverage``: k-NN balls, ``rarity_coverage``: balls in the rarity selector's view)
and is the student weaker where its pool is thin (``density``: density vs accuracy, paper §4.4)."""
