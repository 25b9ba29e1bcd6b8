"""Evaluation with the real SmolLM2-135M student on real GSM8K test rows, real PEFT adapters and real files."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest
from _eval import PREDICTION_COLUMNS, one_torch_thread

from embedsdg_hf.common.answers import answers_equal
from embedsdg_hf.training.evaluate import (
    PROMPTS,
    add_evaluate_arguments,
    default_output_dir,
    evaluate_model,
    load_eval_data,
    run_evaluate,
    wilson_interval,
)

GSM8K_TEST = Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k/test.jsonl"
N_ROWS, BATCH, MAX_NEW_TOKENS = 8, 4, 64


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread for this module's generation (tests/_eval.py says why)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def gsm8k_test() -> Path:
    if not GSM8K_TEST.exists():
        pytest.skip(f"GSM8K test set not found at {GSM8K_TEST} (../shared is missing); tests never download it.")
    return GSM8K_TEST


def _cli_args(*argv: str) -> argparse.Namespace:
    return add_evaluate_arguments(argparse.ArgumentParser()).parse_args(list(argv))


@pytest.fixture(scope="module")
def evaluated(student, gsm8k_test, tmp_path_factory):
    """`embedsdg evaluate` on the first 8 GSM8K test rows, through argparse: (output dir, printed text)."""
    out = tmp_path_factory.mktemp("eval")
    args = _cli_args("--model", student, "--data", "gsm8k-test", "--limit", str(N_ROWS), "--batch-size", str(BATCH))
    args.max_new_tokens, args.output_dir = MAX_NEW_TOKENS, str(out)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_evaluate(args) == 0
    return out, printed.getvalue()


def test_run_evaluate_writes_results(evaluated, gsm8k_test):
    from datasets import load_from_disk

    out, printed = evaluated
    results = json.loads((out / "results.json").read_text())
    predictions = load_from_disk(str(out / "predictions"))
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]

    assert predictions.column_names == PREDICTION_COLUMNS
    assert len(predictions) == len(lines) == results["n"] == N_ROWS
    assert [row["completion"] for row in lines] == predictions["completion"]
    rows = [json.loads(line) for line in gsm8k_test.read_text().splitlines()[:N_ROWS]]
    assert predictions["question"] == [row["question"] for row in rows]
    assert predictions["reference"] == [row["answer"].rsplit("####", 1)[1].strip() for row in rows]

    correct = [answers_equal(p, r) for p, r in zip(predictions["predicted_answer"], predictions["reference"])]
    assert predictions["correct"] == correct
    assert results["correct"] == sum(correct)
    assert results["accuracy"] == pytest.approx(sum(correct) / N_ROWS)
    assert results["ci_low"] <= results["accuracy"] <= results["ci_high"]
    assert results["n_no_answer"] == sum(p is None for p in predictions["predicted_answer"])
    assert predictions["extracted"] == [p is not None for p in predictions["predicted_answer"]]
    assert not any(c for c, e in zip(predictions["correct"], predictions["extracted"]) if not e)  # no answer: wrong
    assert all(1 <= t <= MAX_NEW_TOKENS for t in predictions["num_tokens"])
    assert results["n_truncated"] == predictions["finish_reason"].count("length")

    assert results["prompt"] == PROMPTS["gsm8k"] and results["max_new_tokens"] == MAX_NEW_TOKENS
    assert results["data"]["spec"] == "gsm8k-test" and results["data"]["limit"] == N_ROWS
    assert results["model"] == "smollm2-135m-instruct" and results["adapter"] is None
    assert results["wall_seconds"] > 0 and results["versions"]["transformers"]
    assert "| n | accuracy | 95% CI |" in printed and f"({results['correct']}/{N_ROWS})" in printed


def test_matching_adapter_is_identity(student, evaluated, tmp_path):
    """An untrained LoRA (B = 0) on the student itself loads and changes no prediction."""
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from embedsdg_hf.common.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(student))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "lora")
    expected = load_from_disk(str(evaluated[0] / "predictions"))
    data, kind = load_eval_data("gsm8k-test", limit=N_ROWS)

    predictions, results = evaluate_model(
        student, data, kind=kind, adapter=tmp_path / "lora", batch_size=BATCH, max_new_tokens=MAX_NEW_TOKENS
    )
    assert results["adapter"] == str(tmp_path / "lora")
    assert predictions["completion"] == expected["completion"]
    assert predictions["correct"] == expected["correct"]


def _tiny_base(tmp_path: Path, name: str, config) -> str:
    """A freshly initialised model saved to disk (so its adapter records a base model path)."""
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / name)
    return str(tmp_path / name)


def _adapter_for(model_path: str, target_modules: list[str], out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path)
    get_peft_model(model, LoraConfig(r=4, target_modules=target_modules)).save_pretrained(out)
    return out


def _other_base(kind: str, student: str):
    from transformers import AutoConfig, GPT2Config, LlamaConfig

    from embedsdg_hf.common.models import resolve_model

    if kind == "hidden-64":
        config = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=128,
        )
        return config, ["q_proj", "v_proj"], "size mismatch"
    if kind == "fewer-layers":  # same shapes, 1 layer instead of 30: PEFT alone would only warn
        config = AutoConfig.from_pretrained(resolve_model(student))
        config.num_hidden_layers, config.vocab_size = 1, 128
        return config, ["q_proj", "v_proj"], "has no weights for"
    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, bos_token_id=0, eos_token_id=0)
    return config, ["c_attn"], "not found in the base model"


@pytest.mark.parametrize("other", ["hidden-64", "fewer-layers", "gpt2"])
def test_adapter_for_another_model_is_refused(student, tmp_path, other):
    from datasets import Dataset

    config, targets, reason = _other_base(other, student)
    base_path = _tiny_base(tmp_path, other, config)
    adapter = _adapter_for(base_path, targets, tmp_path / f"{other}-lora")
    data = Dataset.from_dict({"question": ["What is 2 + 3?"], "answer": ["2 + 3 = 5\n#### 5"]})
    with pytest.raises(ValueError, match="does not fit the model") as error:
        evaluate_model(student, data, kind="gsm8k", adapter=adapter, max_new_tokens=4)
    message = str(error.value)
    assert str(adapter) in message and base_path in message and student in message and reason in message


def test_adapter_folder_without_config(student, tmp_path):
    from datasets import Dataset

    data = Dataset.from_dict({"question": ["q"], "answer": ["#### 1"]})
    with pytest.raises(ValueError, match="not a PEFT adapter folder"):
        evaluate_model(student, data, kind="gsm8k", adapter=tmp_path, max_new_tokens=4)


def test_math_kind_end_to_end(student, tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [
        {"problem": "Compute $\\frac{1}{2} + \\frac{1}{4}$.", "solution": "It is $\\boxed{\\dfrac{3}{4}}$."},
        {"problem": "What is $2^3$?", "solution": "$2^3 = \\boxed{8}$."},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data, kind = load_eval_data(str(path))
    assert kind == "math"
    predictions, results = evaluate_model(student, data, kind=kind, batch_size=2, max_new_tokens=8)
    assert predictions["reference"] == ["\\dfrac{3}{4}", "8"]
    assert results["prompt"] == PROMPTS["math"] and "\\boxed{}" in PROMPTS["math"].format(question="q")
    assert results["n"] == 2 and results["n_no_answer"] == sum(not e for e in predictions["extracted"])


def test_math_completions_are_scored_with_math_verify():
    """The scoring evaluate_model applies to MATH completions: the last box, compared with math-verify."""
    from embedsdg_hf.training.evaluate import _score

    texts = [
        "So $x \\in \\boxed{[1,3)}$.",
        "The set is \\boxed{\\{2,1\\}}.",
        "The answer is \\boxed{\\text{(B)}}.",
        "That is \\boxed{3/4}.",
        "That is \\boxed{(1,3)}.",
        "no box at all",
    ]
    references = ["[1,3)", "\\{1,2\\}", "B", "0.75", "[1,3)", "1"]
    predicted, correct = _score(texts, references, "math", strict=False)
    assert predicted == ["[1,3)", "\\{2,1\\}", "\\text{(B)}", "3/4", "(1,3)", None]
    assert correct == [True, True, True, True, False, False]


def test_missing_answer_column_is_a_clear_error(student, tmp_path, capsys):
    from datasets import Dataset

    path = tmp_path / "no_answer.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 3?", "label": "5"}) + "\n")
    with pytest.raises(ValueError, match=r"'answer'.*Columns present: \['question', 'label'\]"):
        load_eval_data(str(path))
    data, kind = load_eval_data(str(path), kind="gsm8k")
    with pytest.raises(ValueError, match=r"no column 'answer'\. Columns present: \['question', 'label'\]"):
        evaluate_model(student, data, kind=kind)
    assert run_evaluate(_cli_args("--model", student, "--data", str(path), "--output-dir", str(tmp_path))) == 2
    assert "'answer'" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()

    with pytest.raises(ValueError, match="empty"):
        evaluate_model(student, Dataset.from_dict({"question": [], "answer": []}), kind="gsm8k")
    with pytest.raises(ValueError, match="row 1 has no final answer"):
        evaluate_model(student, Dataset.from_dict({"question": ["a", "b"], "answer": ["#### 1", "two"]}), kind="gsm8k")


def test_load_eval_data(gsm8k_test, tmp_path):
    data, kind = load_eval_data("gsm8k-test", limit=5)
    assert kind == "gsm8k" and len(data) == 5 and data.column_names == ["question", "answer"]
    first = data["question"]
    sampled, _ = load_eval_data("gsm8k-test", limit=5, seed=1)
    assert len(sampled) == 5 and sampled["question"] != first
    assert load_eval_data("gsm8k-test", limit=5, seed=1)[0]["question"] == sampled["question"]
    assert len(load_eval_data(str(gsm8k_test), limit=100_000)[0]) == 1319

    with pytest.raises(ValueError, match="is a gsm8k benchmark"):
        load_eval_data("gsm8k-test", kind="math")
    with pytest.raises(FileNotFoundError, match="neither a built-in name"):
        load_eval_data(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_eval_data("gsm8k-test", limit=0)


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(9, 200)
    assert low == pytest.approx(0.02389, abs=1e-4) and high == pytest.approx(0.08331, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_cli_arguments_and_default_output_dir():
    args = _cli_args("--model", "smollm2-135m-instruct")
    assert (args.data, args.batch_size, args.max_new_tokens, args.limit, args.adapter) == (
        "gsm8k-test",
        16,
        256,
        None,
        None,
    )
    assert default_output_dir("smollm2-135m-instruct", "gsm8k-test") == Path(
        "outputs/eval/smollm2-135m-instruct-gsm8k-test"
    )
    assert default_output_dir("org/Model", "data/x.jsonl", "runs/sft/") == Path("outputs/eval/Model+sft-x")


# The vLLM backend: the request path without vLLM; the real thing only where vLLM and a GPU are


def test_vllm_request_path(student, tmp_path):
    from embedsdg_hf.common.models import resolve_model
    from embedsdg_hf.training.evaluate import vllm_request

    path = resolve_model(student)
    plain = vllm_request(student, None, 64)
    assert plain == {
        "llm": {"model": path, "tokenizer": path, "seed": 0},
        "sampling": {"temperature": 0.0, "max_tokens": 64, "skip_special_tokens": True},
        "lora": None,
    }
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32, "base_model_name_or_path": path}))
    with_lora = vllm_request(student, adapter, 64)
    assert with_lora["llm"] == {**plain["llm"], "enable_lora": True, "max_lora_rank": 32, "max_loras": 1}
    assert with_lora["lora"] == ("adapter", 1, str(adapter.resolve()))
    with pytest.raises(ValueError, match="not a PEFT adapter folder"):
        vllm_request(student, tmp_path, 64)


def test_backend_is_checked_and_vllm_absence_is_a_clear_error(student):
    import importlib.util

    from datasets import Dataset

    data = Dataset.from_dict({"question": ["What is 2 + 3?"], "answer": ["2 + 3 = 5\n#### 5"]})
    with pytest.raises(ValueError, match=r"backend must be one of \['transformers', 'vllm', 'lm-eval'\]"):
        evaluate_model(student, data, kind="gsm8k", backend="sglang")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match=r"needs vLLM: `pip install vllm`"):
            evaluate_model(student, data, kind="gsm8k", backend="vllm")
    assert _cli_args("--model", student, "--backend", "vllm").backend == "vllm"


@pytest.mark.gpu
def test_vllm_backend_gives_the_same_results_format(student, gsm8k_test):
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA device")
    data, kind = load_eval_data("gsm8k-test", limit=4)
    ours, results = evaluate_model(student, data, kind=kind, max_new_tokens=32)
    theirs, vllm_results = evaluate_model(student, data, kind=kind, max_new_tokens=32, backend="vllm")
    assert theirs.column_names == ours.column_names and theirs["question"][:] == ours["question"][:]
    assert set(vllm_results) == set(results) and vllm_results["backend"] == "vllm" and vllm_results["n"] == 4
