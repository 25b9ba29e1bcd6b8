"""The fixed choices of the run's options, in one place: ``config.py`` types its fields with ``Literal`` of these
(so ``embedsdg run --help`` lists them and one check serves the CLI, YAML and Python), and the modules that implement
an option import its choices from here. No imports: ``config.py`` stays light.

Example:
    >>> REDUCERS
    ('pca', 'svd', 'tsne', 'umap')
"""

from __future__ import annotations

#: Token weights of the pooled embedding (space/embed.py).
WEIGHTS = ("mask", "mean", "attention")
#: Dimension reducers (space/reduce.py).
REDUCERS = ("pca", "svd", "tsne", "umap")
#: Seed on each side of a grid region (space/pairs.py).
SIDE_CHOICES = ("random", "nearest")
#: How the k-NN selector pairs a centre's neighbours (space/knn_regions.py).
KNN_PAIRINGS = ("near", "extreme")
#: What the k-NN selector measures sparsity on (quality/selectors.py).
KNN_TEXTS = ("input", "full")
#: How the rarity selector's word view weighs a question's words (space/rarity.py): each once, or TF-IDF.
RARITY_WORD_WEIGHTS = ("presence", "tfidf")
#: Generation methods: EmbedSDG, or the RandomSDG baseline (generation/generate.py).
METHODS = ("embedsdg", "random")
#: Answer formats of verification, self-consistency and evaluation (common/answers.py).
ANSWER_FORMATS = ("gsm8k", "math")
#: How far ``embedsdg run`` goes: everything, or stop before decoding.
RUN_STAGES = ("all", "analysis")
#: Trackers of ``report_to`` (common/tracking.py); ``"none"`` is off, as in transformers' ``TrainingArguments``.
TRACKERS = ("none", "trackio")
