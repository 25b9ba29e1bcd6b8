"""Coverage of k-NN regions (analysis/knn_coverage.py): constructed vectors with a known answer, membership in the
selector's own space (a wrong space gives other answers), the threshold, errors, the figure; then a real small
`embedsdg run` (SmolLM2-135M student, family teacher) with the RandomSDG comparison through the CLI."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from sklearn.decomposition import PCA

from embedsdg_hf.analysis.knn_coverage import measure_knn_coverage
from embedsdg_hf.space.knn_regions import knn_seed_pairs

K = 10

# ----------------------------------------------------------------------------------------------------------------
# Constructed vectors: three big clusters and two small ones (the sparse regions), k = 10


def _pool(seed: int = 0, dim: int = 24) -> tuple[np.ndarray, datasets.Dataset]:
    rng = np.random.default_rng(seed)
    sizes = [60, 60, 60, 6, 6]
    centres = rng.normal(size=(len(sizes), dim)) * 2.0
    vectors = np.concatenate([c + 0.3 * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)]).astype(np.float32)
    features = datasets.Features(
        {
            "embedding": datasets.List(datasets.Value("float32"), length=dim),
            "coords": datasets.List(datasets.Value("float32"), length=2),
        }
    )
    return vectors, datasets.Dataset.from_dict({"embedding": vectors, "coords": vectors[:, :2]}, features=features)


def _selection(density_dims=None):
    vectors, ds = _pool()
    regions, _ = knn_seed_pairs(ds, n_pairs=4, k=K, density_dims=density_dims, seed=0)
    return vectors, regions


def test_known_answer_in_the_selectors_space():
    vectors, regions = _selection()
    assert set(regions["centre"]) <= set(range(180, 192))  # the small clusters are the sparse ones
    mean = vectors.mean(axis=0)
    target, centre = regions["region_id"][0], regions["centre"][0]
    # Scaled away from the pool mean: the same point as the centre once centred and scaled to unit length.
    on_centre = mean + 3.0 * (vectors[centre] - mean)
    dense = vectors[:4]  # a big cluster: far from every sparse centre
    report = measure_knn_coverage(
        vectors,
        regions,
        {"hit": np.repeat(on_centre[None], K, axis=0), "miss": dense, "random": np.stack([on_centre, *dense[:3]])},
        synthetic_region_ids={"hit": [target] * K, "miss": [target] * 4},
    )
    assert report.target_regions == [target]  # the region the rows aim at
    radius = regions["knn_distance"][0]
    region = report.regions[0]
    assert region["before"] == K + 1 and region["radius"] == pytest.approx(radius, rel=1e-4)  # centre + k neighbours
    hit, miss, random = (report.methods[n] for n in ("hit", "miss", "random"))
    assert (hit["landed_in_target"], hit["landed_in_target_share"], hit["landed_in_targeted_regions"]) == (K, 1.0, K)
    assert region["after"]["hit"] == 2 * K + 1 and region["added"]["hit"] == K
    # k points at distance 0: the centre's k-th neighbour is now at 0 < tau, so the region is no longer sparse.
    assert region["knn_distance_after"]["hit"] == pytest.approx(0.0, abs=1e-3) and hit["regions_no_longer_sparse"] == 1
    assert (miss["landed_in_target"], miss["landed_in_targeted_regions"], miss["regions_no_longer_sparse"]) == (
        0,
        0,
        0,
    )
    assert region["after"]["miss"] == K + 1 and region["knn_distance_after"]["miss"] == pytest.approx(region["radius"])
    assert random["aimed_rows"] == 0 and random["landed_in_target_share"] is None
    assert random["landed_in_targeted_regions"] == 1 and random["landed_in_targeted_regions_share"] == 0.25
    # tau: the smallest radius among the regions the selector took; none is below it before.
    assert report.threshold == pytest.approx(min(regions["knn_distance"]), rel=1e-4)
    assert report.before["regions_not_sparse"] == 0 and report.before["dims"] == 24
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["selector"] == "knn" and saved["summary"]["hit"]["regions_no_longer_sparse"] == 1
    table = report.to_markdown()
    assert "| | hit | miss | random |" in table and f"{K}/{K} (100%)" in table and "(no longer sparse)" in table

    # The same point is far outside the ball in the raw (uncentred, unscaled) space: a coverage that skipped the
    # selector's transform would say it missed.
    raw_radius = np.sort(np.linalg.norm(np.delete(vectors, centre, axis=0) - vectors[centre], axis=1))[K - 1]
    assert np.linalg.norm(on_centre - vectors[centre]) > 1.5 * raw_radius


def test_membership_uses_the_pca_density_space_when_density_dims_is_set():
    vectors, regions = _selection(density_dims=3)
    target, centre = regions["region_id"][0], regions["centre"][0]
    pca = PCA(n_components=3, random_state=0).fit(vectors)
    off = np.random.default_rng(1).normal(size=vectors.shape[1])
    off -= pca.components_.T @ (pca.components_ @ off)  # orthogonal to the 3 PCA axes: invisible in that space
    far_but_same = vectors[centre] + 20 * off / np.linalg.norm(off)
    report = measure_knn_coverage(vectors, regions, {"x": far_but_same[None]}, synthetic_region_ids={"x": [target]})
    assert report.methods["x"]["landed_in_target"] == 1 and report.before["dims"] == 3
    # in the full centred unit space (the default selector's) the same point is outside the centre's ball
    full_vectors, full_regions = _selection(density_dims=None)
    assert np.array_equal(full_vectors, vectors)
    full = measure_knn_coverage(vectors, full_regions, {"x": far_but_same[None]})
    assert full.methods["x"]["landed_in_targeted_regions"] == 0


def test_errors_name_what_is_wrong():
    vectors, regions = _selection()
    shuffled = vectors[np.random.default_rng(0).permutation(len(vectors))]
    with pytest.raises(ValueError, match=r"pool vectors are not those the selector read"):
        measure_knn_coverage(shuffled, regions, {})
    other_k = regions.map(lambda row: {"k": K + 5})
    with pytest.raises(ValueError, match=r"15th-neighbour distance"):
        measure_knn_coverage(vectors, other_k, {})
    with pytest.raises(ValueError, match=r"no column\(s\) \['k'\].*older version"):
        measure_knn_coverage(vectors, regions.remove_columns("k"), {})
    with pytest.raises(ValueError, match="outside the pool's 20 rows"):
        measure_knn_coverage(vectors[:20], regions, {})
    with pytest.raises(ValueError, match=r"aim at region id\(s\) \[999\]"):
        measure_knn_coverage(vectors, regions, {"x": vectors[:1]}, synthetic_region_ids={"x": [999]})
    with pytest.raises(ValueError, match="'x' has 1 points but 2 region ids"):
        measure_knn_coverage(vectors, regions, {"x": vectors[:1]}, synthetic_region_ids={"x": [0, 1]})
    with pytest.raises(ValueError, match="fitted on 24-D vectors"):
        measure_knn_coverage(vectors, regions, {"x": vectors[:1, :5]})
    with pytest.raises(ValueError, match="mixes seed values"):
        measure_knn_coverage(vectors, regions.map(lambda row, i: {"seed": i}, with_indices=True), {})


def test_plot_shows_centres_before_and_after(tmp_path):
    vectors, regions = _selection()
    mean = vectors.mean(axis=0)
    centre = regions["centre"][0]
    on_centre = np.repeat((mean + 3.0 * (vectors[centre] - mean))[None], K, axis=0)
    synthetic = {"embedsdg": on_centre, "random": vectors[:5]}
    report = measure_knn_coverage(
        vectors,
        regions,
        synthetic,
        synthetic_region_ids={"embedsdg": [regions["region_id"][0]] * K},
        target_regions=regions["region_id"],
        pool_coords=vectors[:, :2],
        synthetic_coords={name: v[:, :2] for name, v in synthetic.items()},
    )
    path = report.plot(tmp_path / "coverage.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    no_map = measure_knn_coverage(vectors, regions, synthetic)
    with pytest.raises(ValueError, match="no map coordinates"):
        no_map.plot(tmp_path / "x.png")


# ----------------------------------------------------------------------------------------------------------------
# A real small run: 200 built-in word problems, SmolLM2-135M student, family teacher, 4 pairs (k-NN, question text)


@pytest.fixture(scope="module")
def runs(student, tmp_path_factory):
    """An EmbedSDG run (selector knn; coverage on, the default) and a RandomSDG run of the same budget."""
    from embedsdg_hf.config import PipelineConfig
    from embedsdg_hf.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("knn-coverage")
    settings = {
        "seed_pool": "word-problems",
        "pool_size": 200,
        "student": student,
        "teacher": "family:word-problems",
        "n_pairs": 4,
        "decode_examples": 1,  # a short copy prompt: decoding is the slow step and its text is not what is tested
        "decode_max_new_tokens": 12,
        "decontaminate": "none",
        "selector": "knn",
    }
    manifests = {}
    for method in ("embedsdg", "random"):
        config = PipelineConfig(**settings, method=method, output_dir=str(root / method))
        manifests[method] = run_pipeline(config)
    return {"root": root, "manifests": manifests, "settings": settings}


def test_a_knn_run_reports_coverage_of_its_regions(runs):
    manifest = runs["manifests"]["embedsdg"]
    run_dir = runs["root"] / "embedsdg"
    assert manifest["config"]["selector"] == "knn" and manifest["figures"]["coverage"] == "coverage.png"
    summary = manifest["coverage"]["embedsdg"]
    saved = json.loads((run_dir / "coverage.json").read_text())
    assert saved["selector"] == "knn" and saved["summary"] == manifest["coverage"]
    train = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    assert summary["synthetic_points"] == len(train) > 0
    assert summary["aimed_rows"] == len(train) and summary["targeted_regions"] == len({r["region_id"] for r in train})
    assert saved["settings"]["density_template"] == "{question}"  # knn_text: input, the default
    for region in saved["regions"]:  # the centre and its k = 20 nearest pool rows, distances do not tie here
        assert region["before"] == 21
        assert region["after"]["embedsdg"] == 21 + region["added"]["embedsdg"]
        assert region["knn_distance_after"]["embedsdg"] <= region["radius"]
    assert saved["before"]["threshold"] == pytest.approx(min(r["radius"] for r in saved["regions"]))
    assert (run_dir / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    from embedsdg_hf.hub import make_dataset_card
    from embedsdg_hf.report import format_summary

    line = f"{summary['regions_no_longer_sparse']}/{summary['targeted_regions']} are no longer sparse (20th-neighbour"
    assert line in format_summary(manifest)
    card = make_dataset_card(manifest, repo_id="me/knn-run")
    assert "| method | kept rows | in their target region | in a targeted region | regions gaining rows |" in card
    assert "occupancy entropy" not in card  # a grid notion: not in a k-NN run's card


def test_rows_are_measured_in_the_question_space(runs, student):
    """A row with a centre's question and an unrelated answer sits on the centre in the selector's (question) space,
    though far from it in the training-text space: it must count as landed."""
    from datasets import load_from_disk

    from embedsdg_hf.analysis.knn_coverage import knn_coverage_report
    from embedsdg_hf.space.reduce import Reducer

    run_dir = runs["root"] / "embedsdg"
    pool, regions = load_from_disk(str(run_dir / "pool")), load_from_disk(str(run_dir / "regions"))
    region_id, centre = regions["region_id"][0], regions["centre"][0]
    question = pool[centre]["question"]
    answer = "Unrelated. " + " ".join(pool[i]["answer"] for i in range(150, 156))  # a long answer from elsewhere
    rows = datasets.Dataset.from_list([{"question": question, "answer": answer, "region_id": region_id}])
    kwargs = {"model": student, "text_template": "{question}\n{answer}", "weights": "mean"}
    reducer = Reducer.load(run_dir / "reducer")
    report = knn_coverage_report(pool, regions, reducer, {"x": rows}, density_template="{question}", **kwargs)
    assert report.methods["x"]["landed_in_target"] == 1
    assert report.regions[0]["knn_distance_after"]["x"] < report.regions[0]["radius"]
    # the training text (question + answer) puts the same row elsewhere: the question space is what decides
    with pytest.raises(ValueError, match="pool vectors are not those the selector read"):
        knn_coverage_report(pool, regions, reducer, {"x": rows}, density_template=kwargs["text_template"], **kwargs)


def test_cli_compares_a_knn_run_with_random(runs, tmp_path, capsys):
    from embedsdg_hf.cli import main

    run_dir, random_dir = runs["root"] / "embedsdg", runs["root"] / "random"
    assert main(["coverage", str(run_dir), "--compare", f"random={random_dir}", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| | embedsdg | random |" in printed and "no longer sparse" in printed
    saved = json.loads((tmp_path / "coverage.json").read_text())
    random = saved["summary"]["random"]
    assert random["aimed_rows"] == 0 and random["landed_in_target_share"] is None
    assert random["synthetic_points"] == len((random_dir / "train.jsonl").read_text().splitlines())
    assert (tmp_path / "coverage.md").read_text().startswith("## Coverage of the targeted k-NN regions")
    assert (tmp_path / "coverage.png").read_bytes()[:4] == b"\x89PNG"
