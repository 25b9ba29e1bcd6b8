"""Accuracy of a student (optionally with a LoRA adapter) on GSM8K or MATH (METHOD.md section 7, paper section 4).

Greedy, batched generation with the model's chat template; the final answer is extracted from each completion
(:mod:`embedsdg_hf.common.answers`) and compared with the reference. A completion without an extractable answer counts
as wrong and is reported (``n_no_answer``). Accuracy comes with a 95% Wilson confidence interval. The ``lm-eval``
backend runs lm-evaluation-harness' stock task instead (its prompt and scoring) and reports in the same format
(:mod:`embedsdg_hf.training.lm_eval_backend`).

Generation is deliberately not cached through ``Dataset.map``: a fingerprint keyed on a model path would silently
return the accuracy of old weights after a model or adapter is retrained into the same folder.

Example:
    >>> from embedsdg_hf import evaluate_model, load_eval_data
    >>> data, kind = load_eval_data("gsm8k-test", limit=200)  # doctest: +SKIP
    >>> predictions, results = evaluate_model("smollm2-135m-instruct", data, kind=kind)  # doctest: +SKIP
    >>> results["accuracy"], results["ci_low"], results["ci_high"]  # doctest: +SKIP

CLI: ``embedsdg evaluate --model smollm2-135m-instruct --data gsm8k-test --limit 200 --batch-size 32``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ..common.answers import KINDS, answers_equal, extract_boxed, extract_gsm8k_answer, normalize_number
from ..data.eval_sets import BUILTIN_EVAL_DATA, load_eval_data

__all__ = [
    "BACKENDS",
    "PROMPTS",
    "PROMPT_VERSION",
    "add_evaluate_arguments",
    "evaluate_model",
    "format_results",
    "run_evaluate",
    "vllm_request",
    "wilson_interval",
]

logger = logging.getLogger(__name__)

PROMPT_VERSION = "eval_v1"
BACKENDS = ("transformers", "vllm", "lm-eval")
# The user turn: the problem, then how to state the final answer (what the extractors look for).
PROMPTS = {
    "gsm8k": (
        '{question}\n\nSolve the problem step by step. On the last line, write the final answer as "#### <number>".'
    ),
    "math": "{question}\n\nSolve the problem step by step. Put the final answer in \\boxed{{}}.",
}


def _default_columns(data, kind: str, question_column: str | None, answer_column: str | None) -> tuple[str, str]:
    columns = data.column_names
    if question_column is None:
        question_column = next((c for c in ("question", "problem") if c in columns), "question")
    if answer_column is None:
        candidates = ("answer",) if kind == "gsm8k" else ("answer", "solution")
        answer_column = next((c for c in candidates if c in columns), "answer")
    return question_column, answer_column


def _score(texts: list[str], references: list[str], kind: str, *, strict: bool) -> tuple[list, list[bool]]:
    """(predicted answers, correct flags) of completions: GSM8K's ``#### N`` compared as numbers; MATH's last
    ``\\boxed{}`` compared with :func:`~embedsdg_hf.common.answers.math_equal` (math-verify after our fast paths)."""
    if kind == "gsm8k":
        predicted = [extract_gsm8k_answer(text, strict=strict) for text in texts]
    else:
        predicted = [extract_boxed(text) for text in texts]
    return predicted, [answers_equal(p, r, kind=kind) for p, r in zip(predicted, references)]


def _reference_answers(texts: list, kind: str, column: str) -> list[str]:
    """The final answer of every reference: ``#### N`` (or a bare number) for GSM8K, the boxed (or whole) MATH one."""
    references = []
    for row, text in enumerate(texts):
        text = "" if text is None else str(text)
        if kind == "gsm8k":
            answer = extract_gsm8k_answer(text, strict=True) or normalize_number(text)
        else:
            answer = extract_boxed(text) or (text.strip() if "\\boxed" not in text else None)
        if not answer:
            expected = "a '#### N' line or a bare number" if kind == "gsm8k" else "a \\boxed{} answer or a plain one"
            raise ValueError(f"Reference {column!r} of row {row} has no final answer ({expected}): {text[-200:]!r}.")
        references.append(answer)
    return references


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound at 0 or n successes, unlike the normal one).

    ``statsmodels``' ``proportion_confint(..., method="wilson")`` gives the same numbers; it is not a dependency of
    this package, and this closed form (a few lines over the standard library) is all that is needed of it.

    Example:
        >>> tuple(round(x, 4) for x in wilson_interval(9, 200))
        (0.0239, 0.0833)
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}.")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def _load_model(model: str, adapter: str | Path | None, device: str):
    """``(model, tokenizer)``: the cached base model, or a fresh copy of it with the adapter on top (PEFT injects
    its layers into the base in place, so the cached base must not be used)."""
    from ..common.models import load_student

    if adapter is None:
        return load_student(model, device=device)
    base, tokenizer = load_student.__wrapped__(model, device=device)
    return _attach_adapter(base, model, Path(adapter)), tokenizer


def check_adapter(adapter: Path, model: str) -> str | None:
    """Raise ``ValueError`` unless ``adapter`` is a PEFT adapter folder; warn when it names another base model.

    Returns the base model the adapter says it was trained on."""
    from ..common.models import hub_id, resolve_model

    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        present = sorted(p.name for p in adapter.iterdir()) if adapter.is_dir() else "it does not exist"
        raise ValueError(f"Adapter {str(adapter)!r} is not a PEFT adapter folder (no adapter_config.json): {present}.")
    trained_on = json.loads(config_file.read_text()).get("base_model_name_or_path")
    resolved = resolve_model(model)
    same_name = trained_on in (model, resolved, hub_id(model)) or (
        trained_on is not None and Path(trained_on).exists() and Path(trained_on).resolve() == Path(resolved).resolve()
    )
    if not same_name:  # the same weights may live under another name (a Hub id vs a local copy): shapes decide
        logger.warning(
            "Adapter %s was trained on %r (adapter_config.json), evaluated on %r: checking that it fits",
            adapter,
            trained_on,
            model,
        )
    return trained_on


def _attach_adapter(base, model: str, adapter: Path):
    """``PeftModel.from_pretrained`` after checking that the adapter was made for this base model."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    trained_on = check_adapter(adapter, model)
    mismatch = f"Adapter {str(adapter)!r} (trained on {trained_on!r}) does not fit the model {model!r}"
    try:
        peft_model = PeftModel.from_pretrained(base, str(adapter))
    except ValueError as err:  # e.g. its target modules are not in this model
        raise ValueError(f"{mismatch}: {err}") from err
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ValueError(f"{mismatch}: {len(lines)} weight shape(s) differ, e.g. {lines[0]}") from err
    expected = set(get_peft_model_state_dict(peft_model))
    missing = sorted(expected - set(load_peft_weights(str(adapter), device="cpu")))
    if missing:  # PEFT only warns: those layers would keep their untrained (identity) LoRA weights
        raise ValueError(
            f"{mismatch}: it has no weights for {len(missing)} of the model's {len(expected)} adapter tensors "
            f"(e.g. {missing[0]!r}); it was made for a model with other layers."
        )
    return peft_model.eval()


def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[tuple[str, int, str]]:
    """Greedy completions of left-padded prompts: ``(text, generated tokens incl. the stop token, finish reason)``."""
    from ..common.models import cut_at_stop, fork_safe_torch, stop_token_ids

    torch = fork_safe_torch()
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    stops = stop_token_ids(model, tokenizer)
    completions = []
    for tokens in output[:, inputs["input_ids"].shape[1] :].tolist():
        kept, finish = cut_at_stop(tokens, stops)
        completions.append((tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept), finish))
    return completions


def _generate_with_calculator(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[tuple[str, int, str]]:
    """Greedy completions through the shared-prefix engine with the calculator on
    (:mod:`~embedsdg_hf.generation.constrained`): ``<<expr=`` is answered with the exact value, so an arithmetic slip
    inside an annotation cannot hide what the student learned. Same output as :func:`_generate`."""
    from ..common.models import fork_safe_torch, stop_token_ids
    from ..generation.constrained import RowConstraints
    from ..generation.shared_prefix import common_prefix_length, generate_after_prefix

    torch = fork_safe_torch()
    ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    shared = common_prefix_length(ids)
    embed = model.get_input_embeddings()
    with torch.inference_mode():
        tails = [embed(torch.tensor(row[shared:], device=model.device)) for row in ids]
    stops = stop_token_ids(model, tokenizer)
    budgets = [max_new_tokens] * len(prompts)
    tokens, finish = generate_after_prefix(
        model, ids[0][:shared], tails, budgets, stops=stops, control=RowConstraints(tokenizer, budgets)
    )
    texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens]
    return [(text, len(row), reason) for text, row, reason in zip(texts, tokens, finish)]


def vllm_request(model: str, adapter: str | Path | None, max_new_tokens: int) -> dict[str, Any]:
    """What the vLLM backend asks vLLM for, as plain data: ``LLM`` arguments, greedy ``SamplingParams`` arguments
    and the ``LoRARequest`` arguments of the adapter (None without one). Needs no vLLM (tested without it).

    Example:
        >>> vllm_request("smollm2-135m-instruct", None, 256)["sampling"]  # doctest: +SKIP
        {'temperature': 0.0, 'max_tokens': 256, 'skip_special_tokens': True}
    """
    from ..common.models import resolve_model

    path = resolve_model(model)
    llm: dict[str, Any] = {"model": path, "tokenizer": path, "seed": 0}
    lora = None
    if adapter is not None:
        config_file = Path(adapter) / "adapter_config.json"
        if not config_file.is_file():
            raise ValueError(f"Adapter {str(adapter)!r} is not a PEFT adapter folder (no adapter_config.json).")
        rank = int(json.loads(config_file.read_text()).get("r", 16))
        llm.update(enable_lora=True, max_lora_rank=max(8, rank), max_loras=1)
        lora = ("adapter", 1, str(Path(adapter).resolve()))
    sampling = {"temperature": 0.0, "max_tokens": max_new_tokens, "skip_special_tokens": True}
    return {"llm": llm, "sampling": sampling, "lora": lora}


def _generate_vllm(request: dict[str, Any], prompts: list[str]) -> list[tuple[str, int, str]]:
    """Greedy completions from vLLM's offline ``LLM`` (continuous batching over all prompts at once)."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise ValueError("backend='vllm' needs vLLM: `pip install vllm` (a CUDA machine).") from None
    llm = LLM(**request["llm"])
    lora = LoRARequest(*request["lora"]) if request["lora"] else None
    outputs = llm.generate(prompts, SamplingParams(**request["sampling"]), lora_request=lora)
    return [
        (out.outputs[0].text.strip(), len(out.outputs[0].token_ids), _finish(out.outputs[0].finish_reason))
        for out in outputs
    ]


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _default_device() -> str:
    from ..common.models import fork_safe_torch

    return "cuda" if fork_safe_torch().cuda.is_available() else "cpu"


def _complete(
    backend: str,
    model: str,
    adapter: str | Path | None,
    kind: str,
    questions: list[str],
    *,
    device: str | None,
    batch_size: int,
    max_new_tokens: int,
    system_prompt: str | None,
    calculator: bool = False,
) -> tuple[list[tuple[str, int, str]], Any, str]:
    """Greedy completions of our prompt (``PROMPTS[kind]`` through the chat template) with ``transformers`` or vLLM:
    ``(completions, the loaded model or None, device)``."""
    from datasets.utils.tqdm import tqdm  # silenced by datasets.disable_progress_bars()

    if backend == "vllm":
        import importlib.util

        from ..common.models import load_tokenizer

        if importlib.util.find_spec("vllm") is None:
            raise ValueError("backend='vllm' needs vLLM: `pip install vllm` (a CUDA machine).")
        if device is not None:
            logger.warning("device=%r is ignored with backend='vllm' (vLLM places the model itself).", device)
        request = vllm_request(model, adapter, max_new_tokens)
        student, tokenizer, device = None, load_tokenizer(model), "vllm"
    else:
        device = device or _default_device()
        student, tokenizer = _load_model(model, adapter, device)
    if not tokenizer.chat_template:
        raise ValueError(f"The tokenizer of {model!r} has no chat template; evaluation prompts through it.")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    prompts = [
        tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": PROMPTS[kind].format(question=question)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for question in questions
    ]
    completions: list[tuple[str, int, str]] = []
    if backend == "vllm":
        completions = _generate_vllm(request, prompts)
    else:
        generate = _generate_with_calculator if calculator else _generate
        with tqdm(total=len(prompts), desc=f"Evaluating on {kind}", unit="problem") as bar:
            for start in range(0, len(prompts), batch_size):
                completions += generate(student, tokenizer, prompts[start : start + batch_size], max_new_tokens)
                bar.update(len(prompts[start : start + batch_size]))
    return completions, student, device


def evaluate_model(
    model: str,
    data,
    *,
    kind: str,
    adapter: str | Path | None = None,
    question_column: str | None = None,
    answer_column: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    system_prompt: str | None = None,
    strict: bool = False,
    device: str | None = None,
    backend: str = "transformers",
    calculator: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Generate an answer to every problem and score it; return ``(predictions, results)``.

    Args:
        model: a student spec (built-in name, local folder, Hub id; see
        :func:`embedsdg_hf.common.models.resolve_model`). data: a ``Dataset`` of problems with references (e.g. from
        :func:`load_eval_data`). kind: ``"gsm8k"`` (answer after ``####``) or ``"math"`` (answer in ``\\boxed{}``,
            compared with :func:`embedsdg_hf.common.answers.math_equal`).
        adapter: a PEFT (LoRA) adapter folder loaded on top of ``model``; one made for another base model raises
            ``ValueError``. The base model's tokenizer and chat template are used.
        question_column / answer_column: default ``question`` (else ``problem``) and ``answer`` (MATH: else
            ``solution``). GSM8K references need ``#### N`` or a bare number; MATH ones a boxed or plain answer.
        batch_size / max_new_tokens: generation batch size and token budget (greedy decoding).
        system_prompt: an optional system turn before the user turn (``PROMPTS[kind]`` filled with the question).
        strict: GSM8K only: take an answer only from ``#### N``; by default a completion without it falls back to
            "the answer is N", then to its last number. MATH answers always come from the last ``\\boxed{}``.
        device: torch device; default CUDA when available, else CPU (``backend="transformers"`` or ``"lm-eval"``).
        backend: ``"transformers"`` (batched ``generate``, CPU or GPU) or ``"vllm"`` (vLLM's offline ``LLM``, GPU;
            the adapter as a ``LoRARequest``): the same prompts, greedy decoding, scoring and results format.
            ``"lm-eval"``: lm-evaluation-harness' stock ``gsm8k`` (5-shot) or ``hendrycks_math500`` task on these
            rows, with its prompt, answer filters and exact match, so the accuracy compares with published lm-eval
            numbers (:mod:`embedsdg_hf.training.lm_eval_backend`); the same predictions and results format, with
            lm-eval's metrics and task config under ``results["lm_eval"]``. Needs ``pip install
            'embedsdg-hf[lm-eval]'``.
        calculator: ``backend="transformers"`` only: decode through the shared-prefix engine with the calculator
            (``<<expr=`` answered with the exact value and ``>>``, :mod:`~embedsdg_hf.generation.constrained`), so
            arithmetic slips inside annotations do not hide what the student learned. Off by default (the plain
            ``generate`` path; the accuracy then compares with other evaluations).

    Returns:
        ``predictions``: a ``Dataset`` in the order of ``data`` with columns question, reference, completion,
        predicted_answer (None when none was extracted), correct, extracted, num_tokens, finish_reason.
        ``results``: a JSON-serialisable dict (model, adapter, data, kind, n, correct, accuracy, ci_low, ci_high,
        n_no_answer, n_truncated, prompt, settings, timings, versions, lm_eval: None except with that backend).

    Example:
        >>> from datasets import Dataset
        >>> data = Dataset.from_dict({"question": ["What is 2 + 3?"], "answer": ["2 + 3 = 5\\n#### 5"]})
        >>> predictions, results = evaluate_model("smollm2-135m-instruct", data, kind="gsm8k")  # doctest: +SKIP
        >>> results["n"], predictions.column_names[:3]  # doctest: +SKIP
        (1, ['question', 'reference', 'completion'])
    """
    started = time.perf_counter()
    from datasets import Dataset, Features, Value

    from ..common.validation import require_columns, require_rows
    from ..common.versions import library_versions
    from ..space.embed import model_revision

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}.")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}.")
    if strict and kind == "math":
        logger.warning("strict=True is ignored for MATH: answers always come from the last \\boxed{}")
    require_rows(data, what="evaluation data", step="evaluation")
    question_column, answer_column = _default_columns(data, kind, question_column, answer_column)
    require_columns(data, [question_column, answer_column], what="evaluation data")
    questions = [str(q) for q in data[question_column]]
    references = _reference_answers(data[answer_column], kind, answer_column)

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
    if calculator and (backend != "transformers" or kind != "gsm8k"):
        raise ValueError(f"calculator needs backend='transformers' and kind='gsm8k', got {backend!r} and {kind!r}.")
    run = None
    generation_started = time.perf_counter()
    if backend == "lm-eval":
        from .lm_eval_backend import run_lm_eval

        device = device or _default_device()
        answers = [None if a is None else str(a) for a in data[answer_column]]
        run = run_lm_eval(
            model, questions, answers, references, kind=kind, adapter=adapter, batch_size=batch_size,
            max_new_tokens=max_new_tokens, system_prompt=system_prompt, strict=strict, device=device,
        )  # fmt: skip
        completions, predicted, correct, student = run.completions, run.predicted, run.correct, None
    else:
        completions, student, device = _complete(
            backend, model, adapter, kind, questions, device=device, batch_size=batch_size,
            max_new_tokens=max_new_tokens, system_prompt=system_prompt, calculator=calculator,
        )  # fmt: skip
        predicted, correct = _score([text for text, _, _ in completions], references, kind, strict=strict)
    generation_seconds = time.perf_counter() - generation_started
    texts = [text for text, _, _ in completions]
    features = Features(
        {
            "question": Value("string"),
            "reference": Value("string"),
            "completion": Value("string"),
            "predicted_answer": Value("string"),
            "correct": Value("bool"),
            "extracted": Value("bool"),
            "num_tokens": Value("int32"),
            "finish_reason": Value("string"),
        }
    )
    predictions = Dataset.from_dict(
        {
            "question": questions,
            "reference": references,
            "completion": texts,
            "predicted_answer": predicted,
            "correct": correct,
            "extracted": [p is not None for p in predicted],
            "num_tokens": [tokens for _, tokens, _ in completions],
            "finish_reason": [finish for _, _, finish in completions],
        },
        features=features,
    )
    n, n_correct = len(correct), sum(correct)
    ci_low, ci_high = wilson_interval(n_correct, n)
    total_tokens = sum(tokens for _, tokens, _ in completions)
    results = {
        "model": model,
        "model_revision": model_revision(model),
        "adapter": None if adapter is None else str(adapter),
        "data": {"fingerprint": data._fingerprint, "question_column": question_column, "answer_column": answer_column},
        "kind": kind,
        "n": n,
        "correct": n_correct,
        "accuracy": n_correct / n,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_level": 0.95,
        "n_no_answer": sum(p is None for p in predicted),
        "n_truncated": sum(finish == "length" for _, _, finish in completions),
        "answer_extraction": _extraction(kind, strict, run),
        "prompt": PROMPTS[kind] if run is None else run.prompt,
        "prompt_version": PROMPT_VERSION if run is None else f"lm-eval {run.info['task']} v{run.info['task_version']}",
        "system_prompt": system_prompt,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "decoding": "greedy + calculator" if calculator else "greedy",
        "backend": backend,
        "device": device,
        "dtype": "auto" if student is None else str(student.dtype).removeprefix("torch."),
        "generated_tokens": total_tokens,
        "tokens_per_second": total_tokens / generation_seconds if generation_seconds > 0 else None,
        "generation_seconds": generation_seconds,
        "wall_seconds": time.perf_counter() - started,
        "versions": library_versions(),
        "lm_eval": None if run is None else run.info,
    }
    logger.info("Accuracy %.4f (%d/%d) on %s", results["accuracy"], n_correct, n, kind)
    return predictions, results


def _extraction(kind: str, strict: bool, run) -> str:
    """How answers were taken: ours (boxed / strict / flexible) or lm-eval's filter."""
    if run is not None:
        return f"lm-eval {run.info['filter']}"
    return "boxed" if kind == "math" else ("strict" if strict else "flexible")


def format_results(results: dict[str, Any]) -> str:
    """A short Markdown table of an evaluation's results.

    Example:
        >>> print(format_results({"model": "m", "adapter": None, "kind": "gsm8k", "n": 200, "correct": 9,
        ...     "accuracy": 0.045, "ci_low": 0.0239, "ci_high": 0.0833, "n_no_answer": 3, "n_truncated": 20,
        ...     "wall_seconds": 61.2, "data": {"spec": "gsm8k-test"}}))
        m on gsm8k-test (gsm8k)
        | n | accuracy | 95% CI | no answer | truncated | seconds |
        |---:|---:|---|---:|---:|---:|
        | 200 | 0.0450 (9/200) | [0.0239, 0.0833] | 3 | 20 | 61.2 |
    """
    model = results["model"] + (f" + adapter {results['adapter']}" if results.get("adapter") else "")
    data = results.get("data", {}).get("spec") or results["kind"]
    return "\n".join(
        [
            f"{model} on {data} ({results['kind']})",
            "| n | accuracy | 95% CI | no answer | truncated | seconds |",
            "|---:|---:|---|---:|---:|---:|",
            f"| {results['n']} | {results['accuracy']:.4f} ({results['correct']}/{results['n']}) "
            f"| [{results['ci_low']:.4f}, {results['ci_high']:.4f}] | {results['n_no_answer']} "
            f"| {results['n_truncated']} | {results['wall_seconds']:.1f} |",
        ]
    )


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``embedsdg evaluate`` options to ``parser`` (no heavy imports).

    Example:
        >>> parser = add_evaluate_arguments(argparse.ArgumentParser())
        >>> parser.parse_args(["--model", "smollm2-135m-instruct", "--limit", "8"]).data
        'gsm8k-test'
    """
    parser.add_argument("--model", required=True, help="Student spec: built-in name, local folder or Hub id.")
    parser.add_argument("--adapter", default=None, help="A PEFT (LoRA) adapter folder to load on top of --model.")
    parser.add_argument(
        "--data", default="gsm8k-test", help="gsm8k-test, math-test, or a local .jsonl/.json/.parquet/.csv file."
    )
    parser.add_argument("--kind", choices=KINDS, default=None, help="Benchmark kind of a local file (inferred).")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N rows.")
    parser.add_argument(
        "--sample-seed", type=int, default=None, help="With --limit: a random sample of N rows with this seed."
    )
    parser.add_argument("--batch-size", type=int, default=16, help="Generation batch size.")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Token budget per answer (greedy).")
    parser.add_argument("--system-prompt", default=None, help="Optional system turn before each problem.")
    parser.add_argument(
        "--strict", action="store_true", help="GSM8K: only '#### N' counts (default: fall back to the last number)."
    )
    parser.add_argument("--question-column", default=None, help="Default: question, else problem.")
    parser.add_argument("--answer-column", default=None, help="Default: answer (MATH: else solution).")
    parser.add_argument("--device", default=None, help="Torch device (default: cuda if available, else cpu).")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="transformers",
        help="transformers (CPU/GPU), vllm (GPU, batched) or lm-eval (lm-evaluation-harness' stock gsm8k 5-shot / "
        "hendrycks_math500 task on the same rows; pip install 'embedsdg-hf[lm-eval]').",
    )
    parser.add_argument(
        "--calculator",
        action="store_true",
        help="GSM8K, transformers backend: answer '<<expr=' with the exact value (arithmetic slips stop counting).",
    )
    parser.add_argument(
        "--output-dir", default=None, help="Where to write results (default: outputs/eval/<model-name>-<data>)."
    )
    return parser


def default_output_dir(model: str, data: str, adapter: str | None = None) -> Path:
    """``outputs/eval/<model-name>-<data>``; the model name is the adapter's folder name appended with ``+``.

    Example:
        >>> default_output_dir("HuggingFaceTB/SmolLM2-135M-Instruct", "../data/test.jsonl").as_posix()
        'outputs/eval/SmolLM2-135M-Instruct-test'
    """
    name = Path(model.rstrip("/")).name + (f"+{Path(adapter.rstrip('/')).name}" if adapter else "")
    data_name = data if data in BUILTIN_EVAL_DATA else Path(data).stem
    return Path("outputs") / "eval" / f"{name}-{data_name}"


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``embedsdg evaluate``: evaluate, print the table, write results.json, predictions/ and predictions.jsonl.

    Returns the exit code: 0, or 2 for bad input (the message goes to stderr; ``args.verbose`` re-raises).
    """
    import shutil

    try:
        data, kind = load_eval_data(args.data, kind=args.kind, limit=args.limit, seed=args.sample_seed)
        predictions, results = evaluate_model(
            args.model,
            data,
            kind=kind,
            adapter=args.adapter,
            question_column=args.question_column,
            answer_column=args.answer_column,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            system_prompt=args.system_prompt,
            strict=args.strict,
            device=args.device,
            backend=getattr(args, "backend", "transformers"),
            calculator=getattr(args, "calculator", False),
        )
    except (ValueError, FileNotFoundError) as err:
        if getattr(args, "verbose", False):
            raise
        print(f"embedsdg evaluate: error: {err}", file=sys.stderr)
        return 2
    results["data"].update(spec=args.data, limit=args.limit, sample_seed=args.sample_seed)
    out = Path(args.output_dir) if args.output_dir else default_output_dir(args.model, args.data, args.adapter)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(out / "predictions", ignore_errors=True)  # a previous run's files must not linger
    predictions.save_to_disk(str(out / "predictions"))
    predictions.to_json(str(out / "predictions.jsonl"), force_ascii=False)
    print(format_results(results))
    print(f"\nWrote {out}/ (results.json, predictions/, predictions.jsonl).")
    return 0
