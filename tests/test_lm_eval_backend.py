"""`embedsdg evaluate --backend lm-eval`: the shipped task groups in real lm-eval, its output mapped into our results
format, clear errors, and (slow) real runs of the built-in SmolLM2-135M on real GSM8K test rows and a MATH file."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
from _eval import PREDICTION_COLUMNS, one_torch_thread

from embedsdg_hf.training.evaluate import add_evaluate_arguments, evaluate_model, load_eval_data, run_evaluate
from embedsdg_hf.training.lm_eval_backend import (
    LM_EVAL_TASKS,
    lm_eval_task,
    lm_eval_task_dir,
    map_lm_eval_output,
)

GSM8K_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread for this module's generation (tests/_eval.py says why)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR} (../shared is missing); tests never download it.")
    return GSM8K_DIR


def _args(*argv: str) -> argparse.Namespace:
    return add_evaluate_arguments(argparse.ArgumentParser()).parse_args(list(argv))


# ----------------------------------------------------------------------------------------------------------------
# The shipped task groups, as real lm-eval reads them


def test_shipped_groups_point_the_stock_tasks_at_local_files(tmp_path):
    for kind, (group, task, _) in LM_EVAL_TASKS.items():
        assert (lm_eval_task_dir() / f"{group}.yaml").is_file()
        config = lm_eval_task(kind, tmp_path / "test.jsonl", tmp_path / "train.jsonl")
        (member,) = config["task"]
        assert config["group"] == group and member["task"] == task
        assert member["dataset_path"] == "json" and member["dataset_name"] is None
        files = member["dataset_kwargs"]["data_files"]
        assert files["test"] == str((tmp_path / "test.jsonl").resolve())
        assert set(member) == {"task", "dataset_path", "dataset_name", "dataset_kwargs"}  # nothing else overridden
    assert lm_eval_task("gsm8k", "t.jsonl", "tr.jsonl")["task"][0]["dataset_kwargs"]["data_files"]["train"].endswith(
        "tr.jsonl"
    )
    assert "train" not in lm_eval_task("math", "t.jsonl")["task"][0]["dataset_kwargs"]["data_files"]  # zero-shot
    with pytest.raises(ValueError, match="takes its few-shot examples from a train file"):
        lm_eval_task("gsm8k", "t.jsonl")
    with pytest.raises(ValueError, match=r"no shipped task for kind 'mmlu'; kinds with one: gsm8k \(embedsdg_gsm8k\)"):
        lm_eval_task("mmlu", "t.jsonl")


def test_real_lm_eval_builds_the_stock_tasks_on_our_rows(gsm8k_dir, tmp_path):
    """TaskManager with the shipped folder indexes both groups; each builds lm-eval's own task on our local rows."""
    import yaml
    from lm_eval.tasks import TaskManager

    from embedsdg_hf.training.lm_eval_backend import _rows

    shipped = TaskManager(include_path=str(lm_eval_task_dir()), include_defaults=False)
    assert {"embedsdg_gsm8k", "embedsdg_hendrycks_math"} <= set(shipped.all_groups)

    gsm8k = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:3]]
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(row) + "\n" for row in gsm8k))
    rows = _rows(["What is $2^3$?", "Half of 1?"], ["$2^3 = \\boxed{8}$.", "1/2"], ["8", "\\frac{1}{2}"], "math")
    assert rows[1] == {"problem": "Half of 1?", "solution": "\\boxed{\\frac{1}{2}}"}  # a plain answer, boxed
    (tmp_path / "math.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    # Built the way run_lm_eval does: each group, its files filled in, written to a task folder and loaded by name.
    folder = tmp_path / "tasks"
    folder.mkdir()
    for config in (
        lm_eval_task("gsm8k", tmp_path / "gsm8k.jsonl", gsm8k_dir / "train.jsonl"),
        lm_eval_task("math", tmp_path / "math.jsonl"),
    ):
        (folder / f"{config['group']}.yaml").write_text(yaml.safe_dump(config))
    tasks = TaskManager(include_path=str(folder)).load(["embedsdg_gsm8k", "embedsdg_hendrycks_math"])["tasks"]

    task = tasks["gsm8k"]
    assert task.config.num_fewshot == 5 and task.config.doc_to_text == "Question: {{question}}\nAnswer:"
    assert task.config.metadata["version"] == 3.0  # the stock task's own version: nothing of the group leaked in
    assert [f["name"] for f in task.config.filter_list] == ["strict-match", "flexible-extract"]
    assert [doc["question"] for doc in task.eval_docs] == [row["question"] for row in gsm8k]
    assert len(task.fewshot_docs()) == 7473  # the whole train split

    task = tasks["hendrycks_math500"]
    assert task.config.num_fewshot in (None, 0) and task.config.doc_to_text == "Problem: {{problem}}\nAnswer:"
    assert [doc["answer"] for doc in task.eval_docs] == ["8", "\\frac{1}{2}"]  # its own reference extraction


# ----------------------------------------------------------------------------------------------------------------
# Mapping lm-eval's output (the shape simple_evaluate(log_samples=True) returns, as a real run printed it)


def _sample(doc_id: int, text: str, filtered: str, filter_name: str, exact_match: float) -> dict:
    return {
        "doc_id": doc_id,
        "doc": {"question": f"q{doc_id}", "answer": "... #### 18"},
        "target": "... #### 18",
        "arguments": [["Question: ...\nAnswer:", {"until": ["Question:"], "max_gen_toks": 8}]],
        "resps": [[text]],
        "filtered_resps": [filtered],
        "filter": filter_name,
        "metrics": ["exact_match"],
        "exact_match": exact_match,
    }


def _gsm8k_output(flexible_accuracy: float = 0.5) -> dict:
    texts = [" She makes 9 * 2 = 18.\n#### 18", " 2 bolts of blue fiber = 2 * 2 = 4 bolts"]
    samples = [
        _sample(1, texts[1], "[invalid]", "strict-match", 0.0),  # lm-eval lists filters and docs in any order
        _sample(0, texts[0], "18", "strict-match", 1.0),
        _sample(0, texts[0], "18", "flexible-extract", 1.0),
        _sample(1, texts[1], "4", "flexible-extract", 0.0),
    ]
    results = {
        "gsm8k": {
            "name": "gsm8k",
            "alias": "gsm8k",
            "sample_len": 2,
            "exact_match,strict-match": 0.5,
            "exact_match_stderr,strict-match": 0.5,
            "exact_match,flexible-extract": flexible_accuracy,
            "exact_match_stderr,flexible-extract": 0.5,
        },
        "embedsdg_gsm8k": {"alias": "embedsdg_gsm8k", "name": "embedsdg_gsm8k"},
    }
    config = {"task": "gsm8k", "doc_to_text": "Question: {{question}}\nAnswer:", "num_fewshot": 5, "fn": len}
    return {
        "results": results,
        "configs": {"gsm8k": config},
        "versions": {"gsm8k": 3.0, "embedsdg_gsm8k": "1"},
        "n-shot": {"gsm8k": 5, "embedsdg_gsm8k": 5},
        "lm_eval_version": "0.4.13",
        "samples": {"gsm8k": samples},
    }


def _words(text: str) -> int:
    return len(text.split())


def test_mapping_follows_doc_ids_and_the_chosen_filter():
    flexible = map_lm_eval_output(
        _gsm8k_output(), kind="gsm8k", n=2, strict=False, count_tokens=_words, max_new_tokens=12
    )
    assert flexible.predicted == ["18", "4"] and flexible.correct == [True, False]
    assert flexible.completions == [
        ("She makes 9 * 2 = 18.\n#### 18", 9, "stop"),
        ("2 bolts of blue fiber = 2 * 2 = 4 bolts", 12, "length"),  # 12 tokens of 12: cut at the limit
    ]
    strict = map_lm_eval_output(
        _gsm8k_output(), kind="gsm8k", n=2, strict=True, count_tokens=_words, max_new_tokens=64
    )
    assert strict.predicted == ["18", None] and strict.correct == [True, False]  # "[invalid]": no answer
    assert [finish for _, _, finish in strict.completions] == ["stop", "stop"]
    assert strict.prompt == "Question: {{question}}\nAnswer:"
    info = strict.info
    assert info["task"] == "gsm8k" and info["filter"] == "strict-match" and info["n_shot"] == 5
    assert info["task_version"] == 3.0 and info["lm_eval_version"] == "0.4.13"
    assert info["metrics"]["exact_match,flexible-extract"] == 0.5 and "alias" not in info["metrics"]
    assert info["config"]["fn"].startswith("<built-in function len")  # functions are kept as text: plain JSON
    json.dumps(info)


def test_mapping_of_math_takes_hendrycks_answer_span():
    samples = [
        _sample(0, " The sum is $\\frac{3}{4}$.", " The sum is $\\frac{3}{4}$.", "none", 1.0),
        _sample(1, " 8", " 8", "none", 0.0),
        _sample(2, "", "", "none", 0.0),
    ]
    output = {
        "results": {"hendrycks_math500": {"exact_match,none": 1 / 3, "exact_match_stderr,none": 0.33}},
        "samples": {"hendrycks_math500": samples},
    }
    run = map_lm_eval_output(output, kind="math", n=3, strict=False, count_tokens=_words, max_new_tokens=16)
    assert run.predicted == ["\\frac{3}{4}", "8", None] and run.correct == [True, False, False]
    assert run.info["filter"] == "none" and run.info["n_shot"] is None


def test_mapping_refuses_output_it_cannot_read():
    kwargs = {"kind": "gsm8k", "strict": False, "count_tokens": _words, "max_new_tokens": 8}
    with pytest.raises(ValueError, match=r"no samples of task 'gsm8k' \(tasks: \[\]\).*log_samples=True"):
        map_lm_eval_output({"results": {}}, n=2, **kwargs)
    with pytest.raises(ValueError, match=r"has 2 samples under filter 'flexible-extract'.*expected one per row"):
        map_lm_eval_output(_gsm8k_output(), n=3, **kwargs)
    with pytest.raises(ValueError, match=r"reports exact_match 1.0 .* but its samples give 1/2"):
        map_lm_eval_output(_gsm8k_output(flexible_accuracy=1.0), n=2, **kwargs)
    with pytest.raises(ValueError, match="no shipped task for kind 'mbpp'"):
        map_lm_eval_output(_gsm8k_output(), n=2, **{**kwargs, "kind": "mbpp"})


# ----------------------------------------------------------------------------------------------------------------
# Clear errors


def test_missing_lm_eval_is_a_clear_error(student, monkeypatch, capsys, tmp_path):
    from datasets import Dataset

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what `import lm_eval` meets where it is not installed
    data = Dataset.from_dict({"question": ["What is 2 + 3?"], "answer": ["2 + 3 = 5\n#### 5"]})
    with pytest.raises(ValueError, match=r"backend='lm-eval' needs lm-evaluation-harness: pip install 'embedsdg-hf\["):
        evaluate_model(student, data, kind="gsm8k", backend="lm-eval")
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"}) + "\n")
    args = _args("--model", student, "--data", str(path), "--backend", "lm-eval", "--output-dir", str(tmp_path / "o"))
    assert run_evaluate(args) == 2
    assert "needs lm-evaluation-harness" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_adapter_folder_without_config_is_refused(student, tmp_path):
    from datasets import Dataset

    pytest.importorskip("lm_eval")
    data = Dataset.from_dict({"problem": ["What is $2^3$?"], "solution": ["$\\boxed{8}$"]})
    with pytest.raises(ValueError, match="is not a PEFT adapter folder"):
        evaluate_model(student, data, kind="math", adapter=tmp_path, backend="lm-eval")


# ----------------------------------------------------------------------------------------------------------------
# Real runs: the built-in SmolLM2-135M through lm-eval's HF model


@pytest.mark.slow
def test_cli_lm_eval_run_on_gsm8k_has_the_results_format_of_the_other_backends(student, gsm8k_dir, tmp_path):
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from embedsdg_hf.common.models import resolve_model

    n, tokens = 3, 24
    argv = ["--model", student, "--data", "gsm8k-test", "--limit", str(n), "--max-new-tokens", str(tokens)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_evaluate(_args(*argv, "--backend", "lm-eval", "--output-dir", str(tmp_path / "lm"))) == 0
    results = json.loads((tmp_path / "lm" / "results.json").read_text())
    predictions = load_from_disk(str(tmp_path / "lm" / "predictions"))
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:n]]

    assert predictions.column_names == PREDICTION_COLUMNS and len(predictions) == results["n"] == n
    assert predictions["question"] == [row["question"] for row in rows]
    assert predictions["reference"] == [row["answer"].rsplit("####", 1)[1].strip() for row in rows]
    lm = results["lm_eval"]
    assert results["backend"] == "lm-eval" and lm["task"] == "gsm8k" and lm["filter"] == "flexible-extract"
    assert lm["n_shot"] == 5 and lm["config"]["dataset_path"] == "json" and lm["lm_eval_version"]
    assert lm["config"]["generation_kwargs"]["max_gen_toks"] == tokens
    assert results["accuracy"] == pytest.approx(lm["metrics"]["exact_match,flexible-extract"])
    assert results["correct"] == sum(predictions["correct"])
    assert results["ci_low"] <= results["accuracy"] <= results["ci_high"]
    assert all(1 <= t <= tokens + 2 for t in predictions["num_tokens"])  # re-tokenised text: about the budget
    assert results["prompt"] == "Question: {{question}}\nAnswer:" and results["prompt_version"] == "lm-eval gsm8k v3.0"
    assert "| n | accuracy | 95% CI |" in printed.getvalue()

    # The same results format as the transformers backend (same keys; lm_eval is None there).
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_evaluate(_args(*argv, "--output-dir", str(tmp_path / "hf"))) == 0
    ours = json.loads((tmp_path / "hf" / "results.json").read_text())
    assert set(ours) == set(results) and ours["lm_eval"] is None
    assert load_from_disk(str(tmp_path / "hf" / "predictions")).features == predictions.features

    # A LoRA adapter through lm-eval's peft= (untrained, B = 0: the same completions).
    base = AutoModelForCausalLM.from_pretrained(resolve_model(student))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "lora")
    data, kind = load_eval_data("gsm8k-test", limit=n)
    with_adapter, adapter_results = evaluate_model(
        student, data, kind=kind, adapter=tmp_path / "lora", max_new_tokens=tokens, backend="lm-eval"
    )
    assert adapter_results["adapter"] == str(tmp_path / "lora")
    assert with_adapter["completion"] == predictions["completion"]


@pytest.mark.slow
def test_lm_eval_run_on_a_local_math_file(student, tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [
        {"problem": "Compute $\\frac{1}{2} + \\frac{1}{4}$.", "solution": "It is $\\boxed{\\dfrac{3}{4}}$."},
        {"problem": "What is $2^3$?", "solution": "$2^3 = \\boxed{8}$."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data, kind = load_eval_data(str(path))
    predictions, results = evaluate_model(student, data, kind=kind, max_new_tokens=12, backend="lm-eval")
    assert predictions["reference"] == ["\\dfrac{3}{4}", "8"] and results["n"] == 2
    assert results["lm_eval"]["task"] == "hendrycks_math500" and results["answer_extraction"] == "lm-eval none"
    assert results["accuracy"] == pytest.approx(results["lm_eval"]["metrics"]["exact_match,none"])
    assert results["prompt"] == "Problem: {{problem}}\nAnswer:"
