"""The words a selection's seeds lean to (analysis/seed_words.py), on texts whose answer is known."""

from __future__ import annotations

from embedsdg_hf.analysis.seed_words import lean_sentence, seed_word_lean


def _pool():
    # 100 rows: 5 unit conversions (their own words), 95 sums; every row has "the" and a number
    texts = [f"How many grams are there in the {i} kilograms?" for i in range(5)]
    texts += [f"What is the sum of {i} and {i + 1}?" for i in range(95)]
    return texts


def test_the_seeds_lean_to_the_words_of_the_kind_they_piled_into():
    texts = _pool()
    seeds = [0, 1, 2, 3, 10, 11, 0, 1]  # 4 conversions and 2 sums; a row taken twice counts once
    lean = seed_word_lean(texts, seeds)
    assert [w["word"] for w in lean] == ["grams", "kilograms"]  # "the" is a stop word, numbers are masked
    grams = lean[0]
    assert grams["seeds"] == 4 and grams["seed_share"] == round(4 / 6, 4) and grams["pool_share"] == 0.05
    assert grams["lift"] == round((4 / 6) / 0.05, 2)
    assert lean_sentence(lean, 6) == (
        'The seeds lean to the words "grams" (4 of 6 seed rows, 5.0% of the pool), "kilograms" (4 of 6, 5.0%).'
    )


def test_a_spread_selection_leans_to_nothing():
    texts = _pool()
    # "sum" is in 5 of 6 seed rows but in 95% of the pool: no lean; one conversion in 6 rows: under a fifth
    assert seed_word_lean(texts, [0, 10, 20, 30, 40, 50]) == []
    assert seed_word_lean(texts, []) == [] and lean_sentence([], 0) == ""
    assert seed_word_lean(["the a", "of the"], [0]) == []  # no word but stop words


def test_the_pool_share_comes_from_a_fixed_sample_above_its_size():
    texts = _pool() * 10  # 1,000 rows, conversions at 5%
    seeds = [0, 1, 2, 3, 10, 11]
    full = seed_word_lean(texts, seeds)
    sampled = seed_word_lean(texts, seeds, sample=400, seed=3)
    assert sampled == seed_word_lean(texts, seeds, sample=400, seed=3)  # the same sample every time
    assert [w["word"] for w in sampled] == [w["word"] for w in full]
    assert abs(sampled[0]["pool_share"] - 0.05) < 0.03 and full[0]["pool_share"] == 0.05
