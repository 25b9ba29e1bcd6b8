"""The ``lm-eval`` backend of evaluation: EleutherAI's lm-evaluation-harness with its stock task definitions.

``embedsdg evaluate --backend lm-eval`` runs lm-eval's own ``gsm8k`` (5-shot, strict-match / flexible-extract) or
``hendrycks_math500`` task through ``lm_eval.simple_evaluate``, on the rows the other backends would score, read from
local JSONL files: the shipped task groups in ``recipes/lm-eval/`` point the stock tasks at local files and change
nothing else, so the accuracy compares with published lm-eval numbers. A LoRA adapter is loaded by lm-eval's HF
model (``peft=<adapter dir>``). lm-eval's per-sample output is mapped into the same predictions ``Dataset`` and
results dict as the ``transformers`` and ``vllm`` backends (:func:`~embedsdg_hf.training.evaluate.evaluate_model`).

Unlike the other backends the prompt is lm-eval's (no chat template; few-shot for GSM8K) and the answer is extracted
and scored by lm-eval's filters and metric, not by :mod:`embedsdg_hf.common.answers`.

Example:
    >>> from embedsdg_hf import evaluate_model, load_eval_data
    >>> data, kind = load_eval_data("gsm8k-test", limit=200)  # doctest: +SKIP
    >>> student = "smollm2-135m-instruct"
    >>> predictions, results = evaluate_model(student, data, kind=kind, backend="lm-eval")  # doctest: +SKIP
    >>> results["lm_eval"]["task"], results["lm_eval"]["filter"], results["lm_eval"]["n_shot"]  # doctest: +SKIP
    ('gsm8k', 'flexible-extract', 5)

CLI: ``embedsdg evaluate --model smollm2-135m-instruct --data gsm8k-test --limit 200 --backend lm-eval``; lm-eval's
own CLI runs the same groups: ``lm_eval --model hf --model_args pretrained=<model dir> --include_path recipes/lm-eval
--tasks embedsdg_gsm8k``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.recipes import RECIPES_DIR

__all__ = ["LM_EVAL_TASKS", "LmEvalRun", "lm_eval_task", "lm_eval_task_dir", "map_lm_eval_output", "run_lm_eval"]

logger = logging.getLogger(__name__)

# kind -> (shipped group, the stock lm-eval task inside it, the columns that task reads)
LM_EVAL_TASKS = {
    "gsm8k": ("embedsdg_gsm8k", "gsm8k", ("question", "answer")),
    "math": ("embedsdg_hendrycks_math", "hendrycks_math500", ("problem", "solution")),
}
# lm-eval's regex filter writes this when its pattern finds nothing (lm_eval/filters/extraction.py).
_NO_MATCH = "[invalid]"
_INSTALL = "backend='lm-eval' needs lm-evaluation-harness: pip install 'embedsdg-hf[lm-eval]' (or 'lm-eval>=0.4.13')."


def lm_eval_task_dir() -> Path:
    """The folder of the shipped lm-eval task groups (``recipes/lm-eval``), for ``TaskManager(include_path=...)``
    or ``lm_eval --include_path``."""
    return RECIPES_DIR / "lm-eval"


def _check_kind(kind: str) -> tuple[str, str, tuple[str, str]]:
    if kind not in LM_EVAL_TASKS:
        shipped = ", ".join(f"{k} ({group})" for k, (group, _, _) in LM_EVAL_TASKS.items())
        raise ValueError(f"lm-eval has no shipped task for kind {kind!r}; kinds with one: {shipped}.")
    return LM_EVAL_TASKS[kind]


def lm_eval_task(kind: str, test_file: str | Path, train_file: str | Path | None = None) -> dict[str, Any]:
    """The shipped task group of ``kind`` (``recipes/lm-eval/<group>.yaml``) with its data files replaced, as plain
    data (needs no lm-eval); :func:`run_lm_eval` writes it to a task folder for ``TaskManager(include_path=...)``.

    Example:
        >>> config = lm_eval_task("gsm8k", "/data/test.jsonl", "/data/train.jsonl")
        >>> config["group"], config["task"][0]["task"], config["task"][0]["dataset_kwargs"]
        ('embedsdg_gsm8k', 'gsm8k', {'data_files': {'train': '/data/train.jsonl', 'test': '/data/test.jsonl'}})
    """
    import yaml

    group, task, _ = _check_kind(kind)
    config = yaml.safe_load((lm_eval_task_dir() / f"{group}.yaml").read_text())
    (member,) = [m for m in config["task"] if m["task"] == task]
    data_files = {"test": str(Path(test_file).resolve())}
    if "train" in member["dataset_kwargs"]["data_files"]:
        if train_file is None:
            raise ValueError(f"lm-eval's {task} task takes its few-shot examples from a train file: pass train_file.")
        data_files = {"train": str(Path(train_file).resolve()), **data_files}
    member["dataset_kwargs"]["data_files"] = data_files
    return config


@dataclass
class LmEvalRun:
    """What lm-eval produced, in the other backends' terms: per row, in the order of the data, ``completions``
    (text, generated tokens, finish reason), ``predicted`` (None where its filter found no answer) and ``correct``;
    ``info``: lm-eval's task, filter, metrics, few-shot count, version and task config (``results["lm_eval"]``)."""

    completions: list[tuple[str, int, str]]
    predicted: list[str | None]
    correct: list[bool]
    prompt: str
    info: dict[str, Any] = field(default_factory=dict)


def _math_answer(text: str) -> str:
    """The answer hendrycks_math's ``process_results`` compares: the text between the first and the last ``$``, or
    the whole completion with fewer than two (lm_eval/tasks/hendrycks_math/utils.py)."""
    dollars = [i for i, char in enumerate(text) if char == "$"]
    return text if len(dollars) <= 1 else text[dollars[0] + 1 : dollars[-1]]


def map_lm_eval_output(
    output: dict[str, Any], *, kind: str, n: int, strict: bool, count_tokens, max_new_tokens: int
) -> LmEvalRun:
    """Map the dict ``lm_eval.simple_evaluate(..., log_samples=True)`` returned into an :class:`LmEvalRun`.

    GSM8K takes the ``strict-match`` filter (only ``#### N``) when ``strict``, else ``flexible-extract`` (the last
    number), as the other backends' ``strict`` does; MATH has lm-eval's single ``none`` filter. ``count_tokens(text)``
    gives a completion's token count; lm-eval does not report why generation ended, so a completion of
    ``max_new_tokens`` tokens or more counts as cut at the limit (``"length"``), any other as stopped.

    Raises ``ValueError`` when the output lacks the task or has another number of samples than ``n``.
    """
    _, task, _ = _check_kind(kind)
    filter_name = ("strict-match" if strict else "flexible-extract") if kind == "gsm8k" else "none"
    samples = output.get("samples", {}).get(task)
    if samples is None:
        raise ValueError(
            f"lm-eval's output has no samples of task {task!r} (tasks: {sorted(output.get('samples', {}))}); "
            "it must come from simple_evaluate(..., log_samples=True)."
        )
    chosen = sorted((s for s in samples if s["filter"] == filter_name), key=lambda s: s["doc_id"])
    if [s["doc_id"] for s in chosen] != list(range(n)):
        filters = sorted({s["filter"] for s in samples})
        raise ValueError(
            f"lm-eval's {task!r} output has {len(chosen)} samples under filter {filter_name!r} (filters: {filters}), "
            f"expected one per row for doc ids 0..{n - 1}."
        )
    completions, predicted, correct = [], [], []
    for sample in chosen:
        text = sample["resps"][0][0]
        tokens = count_tokens(text)
        completions.append((text.strip(), tokens, "length" if tokens >= max_new_tokens else "stop"))
        answer = sample["filtered_resps"][0]
        if kind == "math":
            answer = _math_answer(answer)
        answer = None if answer in (_NO_MATCH, None) or not str(answer).strip() else str(answer).strip()
        predicted.append(answer)
        correct.append(bool(sample["exact_match"]))
    metrics = {k: v for k, v in output["results"][task].items() if k not in ("name", "alias", "sample_len")}
    reported = metrics.get(f"exact_match,{filter_name}")
    if reported is not None and abs(reported - sum(correct) / n) > 1e-9:
        raise ValueError(
            f"lm-eval reports exact_match {reported} for {task!r} ({filter_name}) but its samples give "
            f"{sum(correct)}/{n}: the output was not mapped correctly."
        )
    config = json.loads(json.dumps(output.get("configs", {}).get(task, {}), default=str))
    info = {
        "task": task,
        "filter": filter_name,
        "metrics": metrics,
        "n_shot": output.get("n-shot", {}).get(task),
        "task_version": output.get("versions", {}).get(task),
        "lm_eval_version": output.get("lm_eval_version"),
        "config": config,
    }
    return LmEvalRun(completions, predicted, correct, str(config.get("doc_to_text", "")), info)


def _rows(questions: list[str], answers: list[str], references: list[str], kind: str) -> list[dict[str, str]]:
    """The rows in the columns the stock task reads, its reference marked the way it extracts it."""
    _, _, (question_key, answer_key) = _check_kind(kind)
    rows = []
    for question, answer, reference in zip(questions, answers, references):
        answer = "" if answer is None else str(answer)
        if kind == "gsm8k" and "####" not in answer:
            answer = f"{answer}\n#### {reference}".lstrip()
        if kind == "math" and "\\boxed" not in answer:
            answer = f"\\boxed{{{reference}}}"
        rows.append({question_key: question, answer_key: answer})
    return rows


def _gsm8k_train_file() -> Path:
    """GSM8K train, where the stock task draws its few-shot examples (a seeded sample): the local copy of the
    train split, ``../shared/data/gsm8k/train.jsonl``."""
    from ..data.eval_sets import local_gsm8k_file

    local = local_gsm8k_file("train")
    if local is None:
        raise FileNotFoundError(
            "lm-eval's gsm8k task takes its 5 few-shot examples from GSM8K train: ../shared/data/gsm8k/train.jsonl "
            "was not found next to the working directory or this repository."
        )
    return local


def run_lm_eval(
    model: str,
    questions: list[str],
    answers: list[str],
    references: list[str],
    *,
    kind: str,
    adapter: str | Path | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    system_prompt: str | None = None,
    strict: bool = False,
    device: str = "cpu",
) -> LmEvalRun:
    """Run lm-eval's stock task for ``kind`` on these rows and map its output (:func:`map_lm_eval_output`).

    The rows are written to a temporary JSONL file in the stock task's columns; GSM8K's few-shot examples come from
    the local GSM8K train file. ``system_prompt`` becomes lm-eval's ``system_instruction``; ``max_new_tokens`` its
    ``max_gen_toks``. Raises ``ValueError`` when lm-eval is not installed, the kind has no shipped task or the
    adapter folder has no ``adapter_config.json``; ``FileNotFoundError`` when GSM8K train is not there.
    """
    _check_kind(kind)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError(_INSTALL) from None
    import yaml

    from ..common.models import load_tokenizer, resolve_model

    model_args: dict[str, Any] = {"pretrained": resolve_model(model)}
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ValueError(f"Adapter {str(adapter)!r} is not a PEFT adapter folder (no adapter_config.json).")
        model_args["peft"] = str(Path(adapter).resolve())
    train = _gsm8k_train_file() if kind == "gsm8k" else None
    tokenizer = load_tokenizer(model)
    with tempfile.TemporaryDirectory(prefix="embedsdg-lm-eval-") as tmp:
        test = Path(tmp) / "test.jsonl"
        rows = _rows(questions, answers, references, kind)
        test.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        # The shipped group with these files, loaded by name from its own folder: a group passed as a dict would
        # hand its own keys (metadata, so the stock task's version) down to the task as overrides.
        group = lm_eval_task(kind, test, train)
        tasks = Path(tmp) / "tasks"
        tasks.mkdir()
        (tasks / f"{group['group']}.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=[group["group"]],
            task_manager=TaskManager(include_path=str(tasks)),
            batch_size=batch_size,
            device=device,
            gen_kwargs={"max_gen_toks": max_new_tokens},
            system_instruction=system_prompt,
            log_samples=True,
        )
    return map_lm_eval_output(
        output,
        kind=kind,
        n=len(questions),
        strict=strict,
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
        max_new_tokens=max_new_tokens,
    )
